use std::net::SocketAddr;

/// Everything that can go wrong in the load generator, each variant saying what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or unparsable: fix the named option.
    #[error("invalid option `{option}`: {problem}")]
    Config {
        /// The option (CLI flag or builder method) at fault.
        option: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// A listener could not bind: pick another address or free the port.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built (TLS backend or options).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// External fakes (`--external-fakes`) did not answer or answered garbage: check the URL and
    /// that `steadfast-loadgen fakes` is running there.
    #[error("external fakes at {url}: {problem}")]
    ExternalFakes {
        /// The URL that was called.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// The target never answered `GET /health` with 200 within `--wait-ready`: start it first.
    #[error("target {target} not ready after {waited_secs} s")]
    TargetNotReady {
        /// The target base URL.
        target: String,
        /// How long we polled.
        waited_secs: u64,
    },
    /// Writing the report or the config file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn config(option: &'static str, problem: impl Into<String>) -> Self {
        Error::Config {
            option,
            problem: problem.into(),
        }
    }
}
