//! The kit's error type.

/// What can go wrong in the kit's plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQLite file could not be opened (its folder, the instance lock, the pool).
    #[error("sqlite: {0}")]
    Sqlite(String),
}
