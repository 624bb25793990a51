//! Tasks: the threads that run chains of operators. A source task polls its reader; a keyed
//! input task selects over its shuffle inputs with barrier alignment. Both obey control
//! messages from the checkpoint coordinator and report to it.

pub mod barrier;
pub mod exchange;
pub mod input;
pub mod source;
pub(crate) mod wire;

use crossbeam_channel::{Receiver, Sender};

use crate::api::{CheckpointBarrier, OperatorSnapshot, TaskError, Timestamp};

/// What travels on a shuffle channel, in stream order.
#[derive(Debug)]
pub(crate) enum Message<T> {
    /// A batch of records with their event times.
    Records(Vec<(Timestamp, T)>),
    /// The sender's watermark.
    Watermark(Timestamp),
    /// The sender is idle: it sends no records for now, so its watermark must not hold back
    /// the consumer's (until its next watermark).
    Idle,
    /// Checkpoint barrier.
    Barrier(CheckpointBarrier),
    /// The sender has no more input.
    EndOfInput,
}

/// Commands from the coordinator to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Sources only: inject this barrier now.
    TriggerCheckpoint(CheckpointBarrier),
    /// Checkpoint `id` completed: commit.
    CheckpointComplete(u64),
    /// Checkpoint `id` was aborted: stop aligning for it.
    AbortCheckpoint(u64),
    /// The final checkpoint completed: end input and exit.
    Finish,
    /// Stop now, without ending the input or committing anything (cancel, or after a stop's
    /// savepoint): the task returns and drops its state cleanly.
    Cancel,
    /// Sources only: stop reading, move event time to its end (every window fires) and
    /// report the input exhausted (stop with drain).
    Drain,
}

/// Reports from a task to the coordinator.
pub(crate) enum TaskEvent {
    /// The task snapshotted checkpoint `checkpoint`.
    Ack {
        task: usize,
        checkpoint: u64,
        snapshots: Vec<OperatorSnapshot>,
    },
    /// A source read all its input.
    SourceExhausted,
    /// The task ended normally.
    Finished,
    /// The task failed.
    Failed { task: usize, error: TaskError },
}

/// A task's connection to the coordinator.
pub(crate) struct TaskIo {
    pub index: usize,
    pub control: Receiver<Control>,
    pub events: Sender<TaskEvent>,
}

impl TaskIo {
    pub fn send(&self, event: TaskEvent) {
        // The coordinator outlives every task; a send can only fail while the process exits.
        let _ = self.events.send(event);
    }
}

/// A runnable task.
pub(crate) trait Task: Send {
    /// Runs until the coordinator says `Finish` and the input has ended.
    fn run(self: Box<Self>, io: &TaskIo) -> Result<(), TaskError>;
}
