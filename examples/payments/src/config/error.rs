//! The one error of configuration: which key, and what is wrong with it.

/// A configuration problem naming the key (a dotted path such as `momo.allowed_ips[1]`) and
/// what is wrong with it. Start-up stops on it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value the service cannot use: fix the value named.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// The dotted key path.
        key: String,
        /// What is wrong, and what would be accepted.
        problem: String,
    },
    /// The file could not be read: check the path given to `--config`.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this service (unknown key, wrong type, syntax): the
    /// message names the line and the key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
