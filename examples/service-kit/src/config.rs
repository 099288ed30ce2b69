//! The one error of a service's configuration: which key, and what is wrong with it. Both
//! services' config loaders return it (`steadfast_webhook::config::ConfigError`,
//! `steadfast_payments::config::ConfigError`).

/// A configuration problem, naming the key (a dotted path such as `services[1].endpoints[0]`
/// or `momo.allowed_ips[1]`) and what is wrong with it. Start-up stops on it.
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
    /// The file is not valid TOML for this service (unknown key, wrong type, syntax).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the line and the key.
        message: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key`.
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// Puts `prefix` in front of the key. An entry of a list (`[[services]]`) is checked
    /// without knowing its place in the list; the list names it (`services[1]`).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::Invalid { key, problem } => Self::Invalid {
                key: format!("{prefix}.{key}"),
                problem,
            },
            other => other,
        }
    }

    /// The key the error is about, when it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}
