//! Secrets that never show in logs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string: shown as `***` by `Debug` and `Display`, so that logging a config never
/// leaks it. Read it with [`Secret::expose`].
///
/// Serialising writes the value itself: that is how a tool (the load generator) writes a
/// config file the service then reads. Serialise a config only to write such a file.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in characters, not counting surrounding spaces: what the minimum length
    /// of a token is judged on.
    pub fn trimmed_len(&self) -> usize {
        self.0.trim().chars().count()
    }
}

/// Fills every empty slot with a random 32-hex-digit token and returns `(key, value)` of each
/// one generated, in slot order, for the binary to print once (the first run of a service
/// needs no set-up). The payments service uses it too.
pub fn generate_missing<'a>(
    slots: impl IntoIterator<Item = (&'a str, &'a mut Option<Secret>)>,
) -> Vec<(String, String)> {
    use rand::Rng;
    let mut generated = Vec::new();
    for (key, slot) in slots {
        if slot.is_none() {
            let bytes: [u8; 16] = rand::rng().random();
            let value = hex::encode(bytes);
            generated.push((key.to_owned(), value.clone()));
            *slot = Some(Secret::new(value));
        }
    }
    generated
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
