use std::time::Duration;

/// Everything that can go wrong in this crate, with what the caller should do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `Idempotency-Key` (or message id) does not follow the configured syntax.
    /// Reject the request (HTTP 400 `invalid_idempotency_key`).
    #[error("invalid idempotency key: {0}")]
    InvalidKey(#[from] KeyError),
    /// The store could not be reached or answered with an error. Fail closed (503, let the
    /// client retry) or fail open (run unprotected and count it), as configured.
    #[error("idempotency store unavailable: {0}")]
    StoreUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The lease was lost: it expired and another holder claimed the key, or it was already
    /// completed or released. The result was NOT stored; the other holder's outcome wins.
    #[error("stale lease: the key was re-claimed or already settled (fence {fence})")]
    StaleLease {
        /// The fencing token the caller held.
        fence: u64,
    },
    /// A stored record could not be decoded (corrupted, or written by an incompatible version).
    /// Treat like an unavailable store.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The response body is larger than the configured limit, so it is not stored; the key was
    /// released so the client may retry.
    #[error("response body of {size} bytes exceeds the {limit}-byte storage limit")]
    ResponseTooLarge {
        /// Body size in bytes.
        size: usize,
        /// Configured limit in bytes.
        limit: usize,
    },
    /// A builder was given values that cannot work; the message names the setting.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
}

impl Error {
    /// Wrap a store-specific error as [`Error::StoreUnavailable`].
    pub fn store(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::StoreUnavailable(Box::new(source))
    }

    /// Whether this error means the store is down (as opposed to a caller error).
    pub fn is_store_unavailable(&self) -> bool {
        matches!(self, Error::StoreUnavailable(_) | Error::Corrupt(_))
    }
}

/// Why a key was rejected by [`KeyRules`](crate::KeyRules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Shorter than the minimum length.
    #[error("key has {len} characters, at least {min} required")]
    TooShort {
        /// Actual length.
        len: usize,
        /// Configured minimum.
        min: usize,
    },
    /// Longer than the maximum length.
    #[error("key has {len} characters, at most {max} allowed")]
    TooLong {
        /// Actual length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A character outside visible ASCII (`!`..=`~`).
    #[error("key has a character outside visible ASCII at byte {position}")]
    InvalidCharacter {
        /// Byte offset of the first offending character.
        position: usize,
    },
    /// A header value starting with `"` that is not one Structured Field string
    /// (RFC 8941 §3.3.3): unterminated, a bad escape, a character outside `%x20-7E`, or
    /// anything after the closing quote.
    #[error("key is not a valid structured-field string: {reason}")]
    MalformedString {
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A configuration value that cannot work; returned by `build()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive was zero.
    #[error("{name} must be longer than zero")]
    ZeroDuration {
        /// The setting's name.
        name: &'static str,
    },
    /// The key length bounds are empty or start at zero.
    #[error("key length bounds must satisfy 1 <= min <= max, got {min}..={max}")]
    KeyLengthBounds {
        /// Configured minimum.
        min: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The lease must be shorter than the completed-record TTL, or a replay could outlive
    /// nothing while a lease still runs.
    #[error("lease duration ({lease:?}) must not exceed the completed TTL ({ttl:?})")]
    LeaseLongerThanTtl {
        /// Configured lease duration.
        lease: Duration,
        /// Configured TTL.
        ttl: Duration,
    },
}
