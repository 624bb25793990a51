//! Errors of a running task.

use crate::state::StateError;

/// Why a task failed. Retrying the job from its latest checkpoint can help for I/O and state
/// failures; `Data` failures repeat on every retry until the input or the job changes.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The keyed state backend failed.
    #[error("operator `{uid}`: state backend")]
    State {
        /// Operator uid.
        uid: String,
        /// The backend error.
        #[source]
        source: StateError,
    },
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was attempted (`open input`, `write part file`, ...).
        action: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A Kafka client call failed (a retry can help once the brokers answer).
    #[error("kafka: {action}")]
    Kafka {
        /// What was attempted (`fetch metadata of topic orders`, ...).
        action: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// An object store call failed after the client's retries (a sink's multipart upload).
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The input holds a value the job cannot process.
    #[error("{0}")]
    Data(String),
    /// Restored state does not fit the job.
    #[error("restore: {0}")]
    Restore(String),
    /// A downstream task stopped; this one cannot deliver its output.
    #[error("downstream task is gone")]
    DownstreamGone,
    /// The job graph cannot be built (duplicate uid and the like).
    #[error("job graph: {0}")]
    Graph(String),
}

impl TaskError {
    /// A bounded category for logs and metrics labels.
    pub fn category(&self) -> &'static str {
        match self {
            TaskError::State { .. } => "state",
            TaskError::Io { .. } => "io",
            TaskError::Kafka { .. } => "kafka",
            TaskError::Storage(_) => "storage",
            TaskError::Data(_) => "data",
            TaskError::Restore(_) => "restore",
            TaskError::DownstreamGone => "downstream",
            TaskError::Graph(_) => "graph",
        }
    }
}
