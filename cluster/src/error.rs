//! The harness's error type: everything that can go wrong while starting,
//! driving or inspecting nodes. Invariant *violations* are not errors; they
//! are reported in a [`crate::report::ScenarioReport`].

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A node failed to start, exited unexpectedly or misbehaved; the
    /// message carries the tail of its log.
    #[error("{0}")]
    Node(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// A node answered something the contract does not allow.
    #[error("unexpected answer: {0}")]
    Answer(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl HarnessError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
