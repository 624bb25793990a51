//! What the checkpoint coordinator drives: the tasks of a job, in this process
//! ([`LocalTasks`]) or on worker processes (the distributed coordinator's `RemoteTasks`).
//! Both deliver [`JobEvent`]s in which snapshots are already written.

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::tasks::RunningTasks;
use super::uploader::{spawn_uploader, UploadCommand};
use crate::api::{CheckpointBarrier, TaskSpec};
use crate::checkpoint::writer::{SnapshotTarget, SnapshotWriter};
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

/// The tasks of a local run: threads of this process, with an uploader thread writing
/// their snapshots.
pub(crate) struct LocalTasks {
    pub running: RunningTasks,
    uploads: Sender<UploadCommand>,
    events: Receiver<JobEvent>,
}

impl LocalTasks {
    /// Starts `specs` and their uploader.
    pub fn spawn(specs: Vec<TaskSpec>, writer: SnapshotWriter) -> Self {
        let (running, task_events) = RunningTasks::spawn(specs);
        let (uploads, commands) = unbounded();
        let (events_tx, events) = unbounded();
        spawn_uploader(
            task_events,
            commands,
            writer,
            running.subtasks.clone(),
            move |e| {
                let _ = events_tx.send(e);
            },
        );
        Self {
            running,
            uploads,
            events,
        }
    }
}

impl TaskSet for LocalTasks {
    fn len(&self) -> usize {
        self.running.len()
    }
    fn sources(&self) -> usize {
        self.running.sources()
    }
    fn name(&self, task: usize) -> String {
        self.running.name(task).to_string()
    }
    fn events(&self) -> &Receiver<JobEvent> {
        &self.events
    }
    fn trigger(&self, barrier: CheckpointBarrier, target: &SnapshotTarget) {
        let _ = self.uploads.send(UploadCommand::Target {
            id: barrier.id,
            target: target.clone(),
        });
        self.running
            .broadcast(Control::TriggerCheckpoint(barrier), true);
    }
    fn control(&self, control: Control) {
        match control {
            Control::CheckpointComplete(id) => {
                let _ = self.uploads.send(UploadCommand::Complete(id));
            }
            Control::AbortCheckpoint(id) => {
                let _ = self.uploads.send(UploadCommand::Abort(id));
            }
            _ => {}
        }
        self.running
            .broadcast(control, matches!(control, Control::Drain));
    }
}
