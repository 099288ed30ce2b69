//! Definitions by name and version, and migrations between versions.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::definition::Definition;
use crate::error::{DefinitionError, Error};
use crate::instance::Instance;
use crate::types::{Event, StateId};

/// A restored instance with the definition it runs on.
pub type Restored<S, E, C> = (Arc<Definition<S, E, C>>, Instance<S, C>);

type Versions<S, E, C> = BTreeMap<u32, Arc<Definition<S, E, C>>>;

type Migration = Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// Definitions by name and version, so that an instance loaded from storage finds the
/// definition it was written with, and instances of retired versions are migrated forward.
///
/// Migrations work on the stored JSON (an old version's context may not deserialize into
/// today's type). A migration registered for `(name, from)` turns a `from` instance into a
/// `to` one; [`restore`](Registry::restore) chains them until it reaches a registered version.
pub struct Registry<S: StateId, E: Event, C> {
    definitions: HashMap<String, Versions<S, E, C>>,
    migrations: HashMap<(String, u32), (u32, Migration)>,
}

impl<S: StateId, E: Event, C> Default for Registry<S, E, C> {
    fn default() -> Self {
        Registry {
            definitions: HashMap::new(),
            migrations: HashMap::new(),
        }
    }
}

impl<S: StateId, E: Event, C> fmt::Debug for Registry<S, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defs: Vec<(&String, Vec<&u32>)> = self
            .definitions
            .iter()
            .map(|(n, v)| (n, v.keys().collect()))
            .collect();
        f.debug_struct("Registry")
            .field("definitions", &defs)
            .field("migrations", &self.migrations.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<S, E, C> Registry<S, E, C>
where
    S: StateId,
    E: Event,
    C: Serialize + DeserializeOwned,
{
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a definition under its name and version.
    ///
    /// # Errors
    /// [`DefinitionError::DuplicateDefinition`] if that name and version is already registered.
    pub fn register(
        &mut self,
        definition: Arc<Definition<S, E, C>>,
    ) -> Result<(), DefinitionError> {
        let versions = self
            .definitions
            .entry(definition.name().to_owned())
            .or_default();
        let version = definition.version();
        if versions.contains_key(&version) {
            return Err(DefinitionError::DuplicateDefinition {
                name: definition.name().to_owned(),
                version,
            });
        }
        versions.insert(version, definition);
        Ok(())
    }

    /// Registers a migration of stored instances of `name` from version `from` to `to`. The
    /// function receives the instance JSON and returns the migrated one (the registry then sets
    /// its definition version to `to`); an `Err(reason)` becomes [`Error::Migration`].
    pub fn migration(
        &mut self,
        name: impl Into<String>,
        from: u32,
        to: u32,
        migrate: impl Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.migrations
            .insert((name.into(), from), (to, Arc::new(migrate)));
        self
    }

    /// The definition `name` at `version`.
    pub fn get(&self, name: &str, version: u32) -> Option<Arc<Definition<S, E, C>>> {
        self.definitions.get(name)?.get(&version).cloned()
    }

    /// The highest registered version of `name`.
    pub fn latest(&self, name: &str) -> Option<Arc<Definition<S, E, C>>> {
        self.definitions
            .get(name)?
            .last_key_value()
            .map(|(_, d)| d.clone())
    }

    /// Restores a stored instance: finds its definition by name and version, migrating the JSON
    /// forward while its version is not registered.
    ///
    /// # Errors
    /// [`Error::UnknownDefinition`] when neither the version nor a migration path exists,
    /// [`Error::Migration`] when a migration fails, [`Error::Serialization`] when the JSON does
    /// not fit the types.
    pub fn restore(&self, mut value: serde_json::Value) -> Result<Restored<S, E, C>, Error> {
        let name = value
            .get("definition")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let mut version = read_version(&value);
        // Each migration strictly changes the version; bound the chain so a cycle cannot spin.
        for _ in 0..=self.migrations.len() {
            if let Some(def) = self.get(&name, version) {
                let instance: Instance<S, C> = serde_json::from_value(value)?;
                return Ok((def, instance));
            }
            let Some((to, migrate)) = self.migrations.get(&(name.clone(), version)) else {
                break;
            };
            value = migrate(value).map_err(|reason| Error::Migration {
                name: name.clone(),
                from: version,
                reason,
            })?;
            if let Some(obj) = value.as_object_mut() {
                obj.insert("definition_version".to_owned(), (*to).into());
            }
            version = *to;
        }
        Err(Error::UnknownDefinition {
            name,
            version: read_version(&value),
        })
    }
}

fn read_version(value: &serde_json::Value) -> u32 {
    value
        .get("definition_version")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(u32::MAX)
}
