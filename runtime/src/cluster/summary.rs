//! What `weir coordinator --summary-json` writes when the coordinator ends: every deployment
//! attempt with the snapshot it restored, the subtasks each worker ran and the share of the
//! snapshot each worker read, why the attempt ended, and every worker the coordinator lost.
//! Structured counterparts of the coordinator's log lines, for scripts and tests.

use serde::{Deserialize, Serialize};

use crate::checkpoint::SnapshotKind;
use crate::runner::{RunEnd, RunError};

/// What a coordinator reports when it ends (the job finished, stopped, was cancelled, or
/// failed beyond its restart strategy). A coordinator killed before that writes nothing; a
/// restarted one reports only its own attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorSummary {
    /// Job name.
    pub job: String,
    /// How the job ended; `None` when it failed beyond the restart strategy (the last
    /// attempt's `failure` says why).
    pub end: Option<RunEnd>,
    /// Restarts after failures (attempts - 1, unless the first attempt never ran).
    pub restarts: u32,
    /// Deployment attempts, in order.
    pub attempts: Vec<AttemptSummary>,
    /// Workers that left while the job was running (not at its end), in order.
    pub workers_lost: Vec<LostWorker>,
}

/// One deployment attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptSummary {
    /// The attempt number (1 for the first deployment of this coordinator).
    pub attempt: u64,
    /// The snapshot the attempt restored; `None`: it started from the beginning of the input.
    pub restored: Option<RestoredSnapshot>,
    /// The workers that ran subtasks of the attempt, in registration order.
    pub workers: Vec<WorkerAssignment>,
    /// Why the attempt ended early; `None` when it ended the job.
    pub failure: Option<AttemptFailure>,
}

/// The snapshot an attempt restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoredSnapshot {
    /// The checkpoint id (a savepoint's is the id of the checkpoint it was taken as).
    pub checkpoint_id: u64,
    /// Checkpoint or savepoint.
    pub kind: SnapshotKind,
    /// Its directory URI.
    pub location: String,
}

/// What one worker ran in an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerAssignment {
    /// The worker's id (`<HOSTNAME>-<pid>`).
    pub worker: String,
    /// How many times the worker process had registered with a coordinator when this one
    /// deployed it (1: this coordinator is its first; more: it reconnected after losing
    /// earlier ones).
    pub registrations: u32,
    /// Its subtasks (subtask i runs on worker `i % workers`).
    pub subtasks: Vec<u32>,
    /// The share of the restored snapshot it read; `None` when the attempt restored nothing
    /// or the worker did not report before the attempt ended.
    pub restore: Option<RestoreShare>,
}

/// The share of a snapshot's keyed state a worker read to restore its subtasks: only the
/// state of operator subtasks whose key groups meet its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreShare {
    /// Operator subtasks with keyed state whose state it read.
    pub keyed_subtasks_read: u32,
    /// Operator subtasks with keyed state in the snapshot.
    pub keyed_subtasks: u32,
    /// Bytes of state files it read (ranged reads of the key groups it owns).
    pub bytes: u64,
}

/// Why an attempt ended early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum AttemptFailure {
    /// A worker running subtasks of the attempt was lost (see `workersLost` for how).
    WorkerLost {
        /// The worker's id.
        worker: String,
        /// The error text.
        cause: String,
    },
    /// A task failed (on a worker, or the deployment of a worker as `(deployment)`).
    TaskFailed {
        /// `uid#subtask` of the task.
        task: String,
        /// Bounded category of the error (`state`, `io`, `data`, `restore`, ...).
        category: String,
        /// The error text.
        cause: String,
    },
    /// Anything else (storage, a checkpoint that cannot restore the job, ...).
    Other {
        /// The error text.
        cause: String,
    },
}

impl AttemptFailure {
    /// The failure an attempt's error stands for.
    pub fn of(error: &RunError, cause: String) -> Self {
        match error {
            RunError::WorkerLost { worker, .. } => Self::WorkerLost {
                worker: worker.clone(),
                cause,
            },
            RunError::Task { task, category, .. } => Self::TaskFailed {
                task: task.clone(),
                category: category.clone(),
                cause,
            },
            _ => Self::Other { cause },
        }
    }
}

/// A worker the coordinator lost while the job ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LostWorker {
    /// The worker's id.
    pub worker: String,
    /// The attempt running then; `None` between attempts.
    pub attempt: Option<u64>,
    /// Whether it ran subtasks of that attempt (then the attempt failed).
    pub had_subtasks: bool,
    /// How it was lost.
    pub reason: WorkerLoss,
}

/// How the coordinator lost a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum WorkerLoss {
    /// Its control connection ended (the process exited or was killed).
    ConnectionClosed,
    /// Reading from its control connection failed.
    ConnectionFailed {
        /// The I/O error.
        error: String,
    },
    /// It sent no heartbeat for longer than `--heartbeat-timeout`.
    HeartbeatTimeout {
        /// How long it had been silent, ms.
        silent_ms: u64,
    },
}

impl std::fmt::Display for WorkerLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ConnectionClosed => write!(f, "connection closed"),
            Self::ConnectionFailed { error } => write!(f, "connection failed: {error}"),
            Self::HeartbeatTimeout { silent_ms } => {
                write!(f, "no heartbeat for {:.1}s", *silent_ms as f64 / 1000.0)
            }
        }
    }
}
