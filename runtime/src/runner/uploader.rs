//! The uploader thread between a process's tasks and the checkpoint coordinator: it writes
//! the state each task snapshotted at a barrier (canonical files or incremental native
//! uploads) and passes the coordinator only the handles, so neither the tasks nor the
//! coordinator wait for storage. A failed write declines that checkpoint, not the job.

use std::collections::HashMap;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use tracing::warn;

use crate::checkpoint::coordinator::JobEvent;
use crate::checkpoint::writer::{SnapshotTarget, SnapshotWriter};
use crate::task::TaskEvent;

/// Commands from the coordinator side to the uploader. A target is sent before the barrier
/// that needs it, so it is always known when the acknowledgements arrive.
pub(crate) enum UploadCommand {
    /// Snapshot `id` goes to `target`.
    Target { id: u64, target: SnapshotTarget },
    /// Snapshot `id` completed.
    Complete(u64),
    /// Snapshot `id` was aborted.
    Abort(u64),
}

/// Starts the uploader: reads `events` of the tasks (whose subtask indices are `subtasks`)
/// until every task is gone, writes snapshots with `writer`, and hands every event to `out`.
pub(crate) fn spawn_uploader(
    events: Receiver<TaskEvent>,
    commands: Receiver<UploadCommand>,
    mut writer: SnapshotWriter,
    subtasks: Vec<u32>,
    out: impl Fn(JobEvent) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("uploader".into())
        .spawn(move || {
            let mut targets: HashMap<u64, SnapshotTarget> = HashMap::new();
            for event in events {
                for command in commands.try_iter() {
                    match command {
                        UploadCommand::Target { id, target } => {
                            targets.insert(id, target);
                        }
                        UploadCommand::Complete(id) => {
                            targets.retain(|k, _| *k > id);
                            writer.complete(id);
                        }
                        UploadCommand::Abort(id) => {
                            targets.remove(&id);
                            writer.abort(id);
                        }
                    }
                }
                out(match event {
                    TaskEvent::Ack {
                        task,
                        checkpoint,
                        snapshots,
                    } => {
                        let Some(target) = targets.get(&checkpoint) else {
                            // Aborted meanwhile: its state is not needed.
                            for s in snapshots {
                                if let Some(crate::state::KeyedSnapshotData::Native(n)) = s.keyed {
                                    let _ = std::fs::remove_dir_all(&n.dir);
                                }
                            }
                            continue;
                        };
                        match writer.write(checkpoint, subtasks[task], target, snapshots) {
                            Ok(metas) => JobEvent::Ack {
                                task,
                                checkpoint,
                                metas,
                            },
                            Err(cause) => {
                                warn!(
                                    checkpoint,
                                    "writing checkpoint {checkpoint} failed: {cause}"
                                );
                                JobEvent::Declined { checkpoint, cause }
                            }
                        }
                    }
                    TaskEvent::SourceExhausted => JobEvent::SourceExhausted,
                    TaskEvent::Finished => JobEvent::Finished,
                    TaskEvent::Failed { task, error } => JobEvent::Failed {
                        task,
                        category: error.category().to_string(),
                        cause: super::error_chain(&error),
                    },
                });
            }
        })
        .expect("invariant: threads can be spawned")
}
