//! What the checkpoint coordinator drives: the tasks of a job, in this process (the local
//! runner's `LocalTasks`) or on worker processes (the distributed coordinator's
//! `RemoteTasks`), or a fake in unit tests. Both deliver [`JobEvent`]s in which snapshots are
//! already written.

use crossbeam_channel::Receiver;

use crate::api::CheckpointBarrier;
use crate::checkpoint::writer::SnapshotTarget;
use crate::checkpoint::SubtaskMetadata;
use crate::task::Control;

/// What the coordinator hears from the tasks.
#[derive(Debug)]
pub(crate) enum JobEvent {
    /// Task `task` snapshotted checkpoint `checkpoint`; its files are written.
    Ack {
        task: usize,
        checkpoint: u64,
        metas: Vec<(String, SubtaskMetadata)>,
    },
    /// Writing a task's snapshot of `checkpoint` failed: abort that checkpoint.
    Declined { checkpoint: u64, cause: String },
    /// A source read all its input.
    SourceExhausted,
    /// A task ended normally.
    Finished,
    /// A task failed.
    Failed {
        task: usize,
        category: String,
        cause: String,
    },
    /// A worker process is gone (connection lost, heartbeats missed).
    WorkerLost { worker: String, cause: String },
}

/// The tasks of a job as the coordinator sees them.
pub(crate) trait TaskSet {
    /// Number of tasks (each acknowledges every checkpoint).
    fn len(&self) -> usize;
    /// Number of source tasks.
    fn sources(&self) -> usize;
    /// `uid#subtask` of task `task`.
    fn name(&self, task: usize) -> String;
    /// The tasks' events.
    fn events(&self) -> &Receiver<JobEvent>;
    /// Starts a snapshot: its files go to `target`, then the sources inject `barrier`.
    fn trigger(&self, barrier: CheckpointBarrier, target: &SnapshotTarget);
    /// Sends `control` to every task that needs it (`Drain` to sources only).
    fn control(&self, control: Control);
}
