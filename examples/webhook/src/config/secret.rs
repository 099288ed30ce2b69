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
    pub(crate) fn trimmed_len(&self) -> usize {
        self.0.trim().chars().count()
    }
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
