//! What the decide function reads and returns. Pure data: the shells fill [`Observed`] and
//! carry out [`Action`]s.

use crate::pod_failures::ContainerFailure;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use weir_api_types::{
    CheckpointInfo, CheckpointsInfo, CompatibilityReport, JobInfo, JobRunState, SavepointState,
    SavepointStatus,
};
pub use weir_crds::Restore;
use weir_crds::{StreamJobSpec, StreamJobStatus, ValidatedSpec};

/// The StreamJob as the user wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec`, defaults filled in, validated (durations parsed).
    pub spec: ValidatedSpec,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

/// Facts the shell gathered this reconcile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Any of the job's pods or workload objects exist (coordinator or workers).
    pub pods_present: bool,
    /// Both workload objects exist (the coordinator's Deployment and the workers'
    /// StatefulSet). Only one of them: a half-applied deployment (an apply refused or failed,
    /// or an operator exit between the two) that the operator completes.
    pub workloads_complete: bool,
    /// The coordinator's admin API answer; `None` when it is absent or unreachable.
    pub job: Option<ObservedJob>,
    /// The status of the savepoint trigger the status names (`upgrade.triggerId` or
    /// `savepoints.pending.triggerId`); `None` when not asked or the coordinator does not know
    /// the id (it restarted).
    pub savepoint: Option<ObservedSavepoint>,
    /// The pre-flight check of the generation being upgraded to, if one was started.
    pub check: Option<ObservedCheck>,
    /// Containers of the job's pods that are down for a reason the user must act on.
    pub container_failures: Vec<ContainerFailure>,
}

/// The job as its coordinator reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedJob {
    /// Job id.
    pub id: String,
    /// Where the job is.
    pub state: JobRunState,
    /// Subtasks per operator.
    pub parallelism: u32,
    /// Restarts after failures.
    pub restarts: u32,
    /// Cause of the last failure.
    pub failure: Option<String>,
    /// Start of the run, RFC 3339.
    pub start_time: String,
    /// What the run restored.
    pub restored_from: Option<String>,
    /// The latest checkpoint this coordinator completed.
    pub latest_checkpoint: Option<CheckpointInfo>,
    /// Checkpoints that failed since the latest completed one.
    pub failing_checkpoints: u32,
}

impl ObservedJob {
    /// The job as the admin API's `GET /v1/job` and `GET /v1/checkpoints` describe it; failing
    /// checkpoints are those that failed after the latest completed one.
    pub fn from_api(info: JobInfo, checkpoints: CheckpointsInfo) -> Self {
        let latest = checkpoints.latest.as_ref().map_or(0, |l| l.id);
        ObservedJob {
            id: info.id,
            state: info.state,
            parallelism: info.parallelism,
            restarts: info.restarts,
            failure: info.failure,
            start_time: info.start_time,
            restored_from: info.restored_from,
            failing_checkpoints: checkpoints
                .recent_failures
                .iter()
                .filter(|(id, _)| *id > latest)
                .count() as u32,
            latest_checkpoint: checkpoints.latest,
        }
    }

    /// True when the job runs and can take a savepoint.
    pub fn is_running(&self) -> bool {
        self.state == JobRunState::Running
    }
}

/// Where a savepoint trigger stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedSavepoint {
    /// The trigger id.
    pub trigger_id: String,
    /// In progress, completed or failed.
    pub state: SavepointState,
    /// Location once completed.
    pub location: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
}

impl From<SavepointStatus> for ObservedSavepoint {
    fn from(s: SavepointStatus) -> Self {
        ObservedSavepoint {
            trigger_id: s.trigger_id,
            state: s.status,
            location: s.location,
            failure: s.failure,
        }
    }
}

/// A pre-flight check (`weir check` run with the new spec's image).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedCheck {
    /// The generation it checks.
    pub generation: i64,
    /// Its result.
    pub outcome: CheckOutcome,
}

/// Result of a pre-flight check.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    /// Still running.
    Running,
    /// Finished with a report.
    Done(CompatibilityReport),
    /// Could not run or report (for example storage unreadable): the message says why.
    Error(String),
}

/// Severity of a Kubernetes Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A lifecycle step.
    Normal,
    /// A failure or a blocked change.
    Warning,
}

/// One side effect for the shell, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create or update the coordinator and workers for `spec` (server-side apply; repeating
    /// it with the same arguments changes nothing).
    Deploy {
        /// The spec to run.
        spec: Box<StreamJobSpec>,
        /// The deployment id (`weir coordinator --lineage`).
        lineage: String,
        /// What the coordinator restores.
        restore: Restore,
        /// The deployment whose state is still in the legacy storage root (`<name>/`, a
        /// deployment made before roots were per namespace): `weir coordinator
        /// --migrate-lineage`.
        migrate_lineage: Option<String>,
    },
    /// Delete the coordinator and workers (the job, if still running, is cancelled).
    DeleteCluster,
    /// Start the pre-flight check of `spec` (idempotent per generation): compare its job graph
    /// with `snapshot`, or with the job's latest checkpoint when `None`.
    RunCheck {
        /// The generation checked.
        generation: i64,
        /// Its spec.
        spec: Box<StreamJobSpec>,
        /// The snapshot to compare with.
        snapshot: Option<String>,
    },
    /// Take a savepoint of the running job under this trigger id (idempotent).
    TriggerSavepoint {
        /// Caller-chosen trigger id.
        trigger_id: String,
        /// Target directory URI (default: the job's savepoint directory).
        directory: Option<String>,
    },
    /// Stop the job with a savepoint under this trigger id (idempotent).
    StopWithSavepoint {
        /// Caller-chosen trigger id.
        trigger_id: String,
        /// Target directory URI.
        directory: Option<String>,
    },
    /// Delete a savepoint's files (history pruning).
    DisposeSavepoint {
        /// The savepoint directory URI.
        location: String,
    },
    /// Record a Kubernetes Event on the StreamJob.
    Event {
        /// Normal or Warning.
        kind: EventType,
        /// A bounded CamelCase reason, e.g. `SavepointCompleted`.
        reason: &'static str,
        /// For people.
        message: String,
    },
    /// Remove the operator's finalizer: the StreamJob may go.
    RemoveFinalizer,
}

impl Observed {
    /// The savepoint trigger the status waits for: the upgrade's, else the pending one.
    pub fn awaited_trigger(status: &StreamJobStatus) -> Option<String> {
        status
            .upgrade
            .as_ref()
            .and_then(|u| u.trigger_id.clone())
            .or_else(|| {
                status
                    .savepoints
                    .pending
                    .as_ref()
                    .map(|p| p.trigger_id.clone())
            })
    }
}

/// The decision of one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The new status; the shell writes it *before* carrying out `actions`.
    pub status: StreamJobStatus,
    /// Side effects, in order.
    pub actions: Vec<Action>,
    /// Reconcile again after this long (sooner on any change of the StreamJob).
    pub requeue_after: Duration,
}

/// Parses an RFC 3339 time written by the operator; `None` for anything else.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}
