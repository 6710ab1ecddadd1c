//! The crate's one error type.

use std::fmt;
use std::net::SocketAddr;

/// What went wrong starting, reloading or configuring a proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is wrong; nothing was changed.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A listener could not bind its address; nothing was changed.
    #[error("listener {name:?}: cannot bind {addr}: {source}")]
    Bind {
        /// The listener.
        name: String,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics endpoint could not start.
    #[error("metrics on {addr}: {source}")]
    Metrics {
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A coroutine could not start (out of stacks), or the call was made outside a
    /// kcoro runtime.
    #[error("runtime: {0}")]
    Runtime(String),
    /// The proxy has been shut down.
    #[error("the proxy is shut down")]
    ShutDown,
}

/// A configuration mistake: where (`file:line:column`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    origin: String,
    at: Option<(usize, usize)>,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(origin: String, at: Option<(usize, usize)>, message: String) -> Self {
        ConfigError { origin, at, message }
    }

    /// The 1-based line of the mistake, when it has one.
    pub fn line(&self) -> Option<usize> {
        self.at.map(|(line, _)| line)
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}
