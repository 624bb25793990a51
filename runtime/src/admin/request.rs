//! What the admin API's handlers ask the coordinator thread, with a channel for the answer.

use tokio::sync::oneshot;
use weir_api_types::{ApiError, CheckpointsInfo, JobInfo, SavepointStatus, StopRequest};

use crate::storage::paths::OutsideStorage;

impl From<OutsideStorage> for ApiError {
    /// 403 `outside_job_storage`, naming the allowed prefixes.
    fn from(e: OutsideStorage) -> Self {
        ApiError::new(403, "outside_job_storage", e.to_string())
    }
}

/// A question or command for the coordinator, with the channel for its answer.
#[derive(Debug)]
pub enum AdminRequest {
    /// The job's status.
    Job(oneshot::Sender<JobInfo>),
    /// The job's checkpoints.
    Checkpoints(oneshot::Sender<CheckpointsInfo>),
    /// Take a savepoint into `directory` (a storage URI; default: the job's savepoint
    /// directory); answers the trigger id.
    TriggerSavepoint {
        /// Target directory URI.
        directory: Option<String>,
        /// The caller's trigger id (idempotent retries), validated by the server.
        trigger_id: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<String, ApiError>>,
    },
    /// Stop the job (with a savepoint, optionally draining first, or cancel); answers the
    /// savepoint trigger id, if any.
    Stop {
        /// The request.
        request: StopRequest,
        /// The answer.
        reply: oneshot::Sender<Result<Option<String>, ApiError>>,
    },
    /// Metrics in the Prometheus text format.
    Metrics(oneshot::Sender<String>),
    /// The status of a savepoint trigger; `None` for an unknown id.
    Savepoint {
        /// The trigger id.
        trigger_id: String,
        /// The answer.
        reply: oneshot::Sender<Option<SavepointStatus>>,
    },
}
