//! The control protocol between the coordinator and its workers: JSON messages in
//! length-prefixed frames over one TCP connection per worker. Only processes of the same build
//! talk to each other; the worker's first message names its protocol version.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use weir_api_types::AdminToken;

use super::summary::RestoreShare;
use crate::checkpoint::{SnapshotKind, SubtaskMetadata};
use crate::metrics::SubtaskFigures;
use crate::net::{read_frame, write_frame};

/// Version of this protocol; a coordinator refuses workers of another.
pub const PROTOCOL_VERSION: u32 = 3;

/// A worker's message to the coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToCoordinator {
    /// First message on a connection.
    Register {
        /// [`PROTOCOL_VERSION`] of the worker.
        protocol: u32,
        /// The worker's id (unique per process).
        worker: String,
        /// Where peers reach the worker's data server.
        data_addr: SocketAddr,
        /// Registrations of this worker process with a coordinator, this one included (1 for
        /// the first; more after it lost earlier coordinators and reconnected).
        registrations: u32,
        /// The job's admin token (`--admin-token-file`); a coordinator with a token closes
        /// the connection of a worker without it (a malformed one does not decode: closed
        /// too).
        token: Option<AdminToken>,
    },
    /// Sent every heartbeat interval, with the counters of the worker's subtasks.
    Heartbeat {
        /// Counters of the subtasks of the current attempt.
        figures: Vec<SubtaskFigures>,
    },
    /// A task event of deployment `attempt`, or the worker's restore of it.
    Event {
        /// The deployment attempt.
        attempt: u64,
        /// The event.
        event: WireEvent,
    },
}

/// A task event as it crosses the wire; tasks are named `uid#subtask`.
#[derive(Debug, Serialize, Deserialize)]
pub enum WireEvent {
    /// A task snapshotted checkpoint `checkpoint`; its files are written.
    Ack {
        /// `uid#subtask`.
        task: String,
        /// Checkpoint id.
        checkpoint: u64,
        /// The written state, per operator uid.
        metas: Vec<(String, SubtaskMetadata)>,
    },
    /// Writing a snapshot of `checkpoint` failed.
    Declined {
        /// Checkpoint id.
        checkpoint: u64,
        /// Why.
        cause: String,
    },
    /// The worker read its share of the snapshot the deployment restores (sent once per
    /// deployment that restores one, before its tasks start).
    Restored(RestoreShare),
    /// A source task read all its input.
    SourceExhausted,
    /// A task ended normally.
    Finished,
    /// A task (or the deployment) failed.
    Failed {
        /// `uid#subtask`, or `(deployment)`.
        task: String,
        /// Bounded category.
        category: String,
        /// The error with its sources.
        cause: String,
    },
}

/// What a worker runs in one deployment attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// The attempt (grows with every restart of the job).
    pub attempt: u64,
    /// The StreamJob manifest (YAML).
    pub manifest: String,
    /// The subtasks this worker runs (all operators of each).
    pub subtasks: Vec<u32>,
    /// Data address of the worker of each subtask (index = subtask).
    pub peers: Vec<SocketAddr>,
    /// What to restore, if anything.
    pub restore: Option<RestoreSource>,
}

/// The snapshot a deployment restores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RestoreSource {
    /// Checkpoint `id` in the job's checkpoint storage.
    Checkpoint {
        /// Checkpoint id.
        id: u64,
    },
    /// The savepoint in directory `uri`.
    Savepoint {
        /// Directory URI.
        uri: String,
    },
}

/// A command of the coordinator to a worker's tasks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum WireControl {
    /// Checkpoint `id` completed: commit.
    CheckpointComplete(u64),
    /// Checkpoint `id` was aborted.
    AbortCheckpoint(u64),
    /// The final checkpoint completed: end and exit.
    Finish,
    /// Sources: stop reading and move event time to its end.
    Drain,
}

/// The coordinator's message to a worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run these subtasks.
    Deploy(Deployment),
    /// Sources: inject a barrier; snapshots go to `target` (a directory URI; `None`: the
    /// job's checkpoint directory of `id`).
    Trigger {
        /// The attempt the command is for.
        attempt: u64,
        /// Checkpoint id.
        id: u64,
        /// Checkpoint or savepoint.
        kind: SnapshotKind,
        /// Directory URI of a savepoint.
        target: Option<String>,
    },
    /// A command for every task.
    Control {
        /// The attempt the command is for.
        attempt: u64,
        /// The command.
        control: WireControl,
    },
    /// Stop the tasks of `attempt` now (failover or cancel) and wait for the next deployment.
    Cancel {
        /// The attempt.
        attempt: u64,
    },
    /// The job ended: exit.
    Shutdown,
}

/// Writes one message as a JSON frame.
///
/// # Errors
/// I/O errors.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_frame(w, &bytes)
}

/// Reads one message; `Ok(None)` at a clean end of stream.
///
/// # Errors
/// I/O errors, or `InvalidData` for a frame that is not a valid message.
pub fn receive<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<Option<T>> {
    let mut buf = Vec::new();
    if !read_frame(r, &mut buf)? {
        return Ok(None);
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
