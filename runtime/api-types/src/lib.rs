//! The JSON bodies of the Weir admin API (`/v1/...`), shared by the runtime that serves it and
//! the operator that calls it. Serde only; the API itself is described in
//! `runtime/admin-api.yaml` (OpenAPI 3).

use serde::{Deserialize, Serialize};

mod token;
pub use token::{AdminToken, TokenError, ADMIN_TOKEN_KEY};

/// `GET /v1/job`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    /// Job name.
    pub name: String,
    /// Job id: 32 hex digits, fixed for the life of the coordinator process (or local run).
    pub id: String,
    /// Where the job is; see [`JobRunState`].
    pub state: JobRunState,
    /// Restarts after failures since the coordinator started.
    #[serde(default)]
    pub restarts: u32,
    /// The cause of the last failure, if any.
    #[serde(default)]
    pub failure: Option<String>,
    /// Subtasks per operator.
    pub parallelism: u32,
    /// Key groups.
    pub max_parallelism: u32,
    /// Start of this run, RFC 3339.
    pub start_time: String,
    /// Checkpoint or savepoint the run restored from.
    pub restored_from: Option<String>,
    /// Records read so far.
    pub records_in: u64,
    /// Records written so far.
    pub records_out: u64,
    /// Event-time watermark (ms since the epoch), if any.
    pub watermark: Option<i64>,
}

/// A job's state as its coordinator reports it, after Flink's `JobStatus`; JSON: the
/// upper-case names (`"RUNNING"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobRunState {
    /// Waiting for its workers (the first attempt).
    #[default]
    Created,
    /// Running; checkpoints and savepoints can be taken.
    Running,
    /// The input is exhausted; the final checkpoint is being taken.
    Finishing,
    /// After a failure, waiting for the restart back-off and the workers.
    Restarting,
    /// The restart strategy is exhausted (`failure` says why); the coordinator keeps answering
    /// until it is cancelled.
    Failed,
    /// The input was exhausted and the job ended (answered with `--linger`).
    Finished,
    /// Stopped with a savepoint (answered with `--linger`).
    Stopped,
    /// Cancelled (answered with `--linger`).
    Canceled,
}

impl JobRunState {
    /// True once the job has ended and will not run again in this coordinator: `FAILED`,
    /// `FINISHED`, `STOPPED`, `CANCELED`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobRunState::Failed
                | JobRunState::Finished
                | JobRunState::Stopped
                | JobRunState::Canceled
        )
    }

    /// The JSON name, `"RUNNING"` and so on.
    pub fn as_str(self) -> &'static str {
        match self {
            JobRunState::Created => "CREATED",
            JobRunState::Running => "RUNNING",
            JobRunState::Finishing => "FINISHING",
            JobRunState::Restarting => "RESTARTING",
            JobRunState::Failed => "FAILED",
            JobRunState::Finished => "FINISHED",
            JobRunState::Stopped => "STOPPED",
            JobRunState::Canceled => "CANCELED",
        }
    }
}

impl std::fmt::Display for JobRunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for a caller-chosen trigger id the API accepts: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -`.
pub fn valid_trigger_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A completed checkpoint or savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    /// Checkpoint id.
    pub id: u64,
    /// Location of its directory.
    pub location: String,
    /// State bytes.
    pub size_bytes: u64,
    /// Trigger to `_metadata`, ms.
    pub duration_ms: u64,
}

/// `GET /v1/checkpoints`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointsInfo {
    /// Latest completed checkpoint of this run.
    pub latest: Option<CheckpointInfo>,
    /// Id of the checkpoint or savepoint in progress.
    pub in_progress: Option<u64>,
    /// Completed in this run.
    pub completed: u64,
    /// Failed in this run.
    pub failed: u64,
    /// The most recent failures: (id, cause), newest last, at most 10.
    pub recent_failures: Vec<(u64, String)>,
}

/// `POST /v1/savepoints` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerRequest {
    /// Directory URI for the savepoint (default: the job's savepoint directory).
    #[serde(default)]
    pub directory: Option<String>,
    /// The caller's id for this trigger (1-64 of `A-Z a-z 0-9 . _ -`), which makes the
    /// request idempotent: repeating it answers the same trigger instead of taking a second
    /// savepoint (Flink's `triggerId`). Default: the coordinator picks one.
    #[serde(default)]
    pub trigger_id: Option<String>,
}

/// `POST /v1/savepoint-disposal` body: delete a savepoint's files (Flink's savepoint
/// disposal). The coordinator checks that `location` holds a savepoint's `_metadata` before
/// deleting anything; a checkpoint or a directory without `_metadata` is refused (409).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisposeRequest {
    /// The savepoint directory URI, as a savepoint trigger reported it.
    pub location: String,
}

/// `POST /v1/job/stop` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopRequest {
    /// Take a savepoint before stopping (default true); false cancels.
    #[serde(default = "yes")]
    pub with_savepoint: bool,
    /// Directory URI for the savepoint.
    #[serde(default)]
    pub directory: Option<String>,
    /// The caller's id for the savepoint trigger, as in [`TriggerRequest::trigger_id`]:
    /// repeating a stop with the same id (also after the job stopped) answers the same trigger.
    #[serde(default)]
    pub trigger_id: Option<String>,
    /// End the input first (sources stop reading, event time jumps to the end, every window
    /// fires), then take the savepoint (Flink's `--drain`).
    #[serde(default)]
    pub drain: bool,
}

fn yes() -> bool {
    true
}

impl Default for StopRequest {
    fn default() -> Self {
        Self {
            with_savepoint: true,
            directory: None,
            trigger_id: None,
            drain: false,
        }
    }
}

/// `POST /v1/job/stop` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopResponse {
    /// The savepoint trigger, when stopping with a savepoint: poll
    /// `GET /v1/savepoints/{triggerId}`.
    pub trigger_id: Option<String>,
}

/// `POST /v1/savepoints` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerResponse {
    /// Poll `GET /v1/savepoints/{triggerId}`.
    pub trigger_id: String,
}

/// Where a savepoint trigger stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SavepointState {
    /// Queued or running.
    InProgress,
    /// Written; `location` says where.
    Completed,
    /// Failed; `failure` says why.
    Failed,
}

/// `GET /v1/savepoints/{triggerId}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    /// The trigger id.
    pub trigger_id: String,
    /// Where it stands.
    pub status: SavepointState,
    /// Location of the savepoint directory, once completed.
    pub location: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
}

/// An error answer: HTTP status, stable code, message.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// Stable machine-readable code, e.g. `invalid_directory`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// What `weir check` reports (stdout, and the `--report-file`, which in Kubernetes is the
/// container's termination message): whether the manifest's job graph can restore the job's
/// snapshot. The operator runs it before an upgrade stops anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompatibilityReport {
    /// True when the snapshot restores (or there is no snapshot to restore).
    pub compatible: bool,
    /// The snapshot compared with (directory URI); `None` when the job has none.
    pub snapshot: Option<String>,
    /// Its checkpoint id.
    pub checkpoint_id: Option<u64>,
    /// Why it does not restore, one sentence each naming the field and the fix; also an
    /// invalid manifest or job argument.
    pub reasons: Vec<String>,
}

/// An error with its sources, `a: b: c` (for logs and API messages; shared by the runtime
/// and the operator).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_travel_as_their_upper_case_names() {
        for (state, name) in [
            (JobRunState::Created, "CREATED"),
            (JobRunState::Restarting, "RESTARTING"),
            (JobRunState::Canceled, "CANCELED"),
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(state.as_str(), name);
            assert_eq!(serde_json::from_str::<JobRunState>(&json).unwrap(), state);
        }
        assert!(serde_json::from_str::<JobRunState>("\"running\"").is_err());
        assert!(JobRunState::Stopped.is_terminal() && !JobRunState::Running.is_terminal());
    }
}
