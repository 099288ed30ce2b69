//! The kit's error type.

/// What can go wrong in the kit's plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQLite file could not be opened (its folder, the instance lock, the pool).
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// A `[telemetry]` value (or its standard environment variable) is invalid.
    #[error("invalid {key}: {message}")]
    InvalidSetting {
        /// The key, e.g. `telemetry.sample_ratio`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

impl Error {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidSetting {
            key: key.into(),
            message: message.into(),
        }
    }
}
