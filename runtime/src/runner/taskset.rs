//! The tasks of a local run as the checkpoint coordinator drives them ([`TaskSet`]): threads
//! of this process, with an uploader thread writing their snapshots.

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::tasks::RunningTasks;
use super::uploader::{spawn_uploader, UploadCommand};
use crate::api::{CheckpointBarrier, TaskSpec};
use crate::checkpoint::coordinator::{JobEvent, TaskSet};
use crate::checkpoint::writer::{SnapshotTarget, SnapshotWriter};
use crate::task::Control;

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
