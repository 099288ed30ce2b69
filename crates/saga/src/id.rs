//! Saga ids: stable, caller-chosen, so that a redelivered request finds its saga again.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The longest saga id, in bytes.
pub const MAX_ID_LEN: usize = 200;

/// A saga's id: 1 to [`MAX_ID_LEN`] visible ASCII characters.
///
/// Choose it from the thing that starts the saga (a message id, a transfer id), not at
/// random: starting a saga whose id exists returns the existing one, which is what makes a
/// redelivered message harmless. The id is also the prefix of every step's idempotency key
/// (`<saga id>:<step name>`).
///
/// ```
/// use steadfast_saga::SagaId;
///
/// let id = SagaId::derive("reply-actions", "wamid.HBgL123")?;
/// assert_eq!(id.as_str(), "reply-actions/wamid.HBgL123");
/// assert!(SagaId::new("").is_err());
/// # Ok::<(), steadfast_saga::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SagaId(String);

impl SagaId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(Error::InvalidInput(format!(
                "saga id must be 1 to {MAX_ID_LEN} bytes, got {}",
                id.len()
            )));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidInput(
                "saga id must be visible ASCII (no spaces or control characters)".to_owned(),
            ));
        }
        Ok(SagaId(id))
    }

    /// `<namespace>/<key>`: a stable id for the saga that `key` (e.g. a message id) starts,
    /// in a namespace of its own so that two kinds of saga started by one message do not meet.
    pub fn derive(namespace: &str, key: &str) -> Result<Self, Error> {
        Self::new(format!("{namespace}/{key}"))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The idempotency key of step `step`: `<saga id>:<step name>`.
    pub fn step_key(&self, step: &str) -> String {
        format!("{}:{step}", self.0)
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SagaId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        SagaId::new(s)
    }
}

impl From<SagaId> for String {
    fn from(id: SagaId) -> String {
        id.0
    }
}

impl std::str::FromStr for SagaId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        SagaId::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(SagaId::new("a").is_ok());
        assert!(SagaId::new("x".repeat(MAX_ID_LEN)).is_ok());
        assert!(SagaId::new("x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(SagaId::new("has space").is_err());
        assert!(SagaId::new("tab\t").is_err());
        assert!(serde_json::from_str::<SagaId>("\"\"").is_err());
        let id = SagaId::new("t-1").unwrap();
        assert_eq!(id.step_key("reserve"), "t-1:reserve");
    }
}
