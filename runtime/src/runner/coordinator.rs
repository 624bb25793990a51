//! The checkpoint coordinator of a local run: triggers checkpoints at the sources, collects
//! acknowledgements, writes state files and `_metadata` (last), applies retention, tells the
//! tasks the outcome, aborts on timeout or failed writes, and prints progress. Its decisions
//! about one checkpoint are the pure [`PendingCheckpoint`]; this is the I/O around it.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use tracing::{error, info, warn};
use weir_crds::CheckpointSettings;

use super::summary::format_watermark;
use super::tasks::RunningTasks;
use super::{error_chain, RunError};
use crate::api::OperatorSnapshot;
use crate::checkpoint::coordinator::{checkpoints_to_delete, PendingCheckpoint};
use crate::checkpoint::metadata::{KeyedStateFile, SubtaskMetadata};
use crate::checkpoint::restore::list_checkpoint_ids;
use crate::metrics::JobMetrics;
use crate::storage::paths::{state_file_name, JobPaths};
use crate::storage::{CheckpointStorage, StorageStats};
use crate::task::{Control, TaskEvent};

/// Figures of the checkpoints of one run.
#[derive(Debug, Default, Clone)]
pub(super) struct CheckpointStats {
    pub completed: u64,
    pub failed: u64,
    pub durations_ms: Vec<f64>,
    /// Largest checkpoint, bytes.
    pub max_size: u64,
    /// Last completed checkpoint: (id, state bytes).
    pub last: Option<(u64, u64)>,
    /// Storage requests and bytes of the last completed checkpoint (trigger to `_metadata`,
    /// retention included).
    pub last_storage: StorageStats,
}

/// The coordinator of one run.
pub(super) struct Coordinator<'a> {
    pub storage: &'a dyn CheckpointStorage,
    pub paths: &'a JobPaths,
    pub job: &'a str,
    pub settings: &'a CheckpointSettings,
    pub max_parallelism: u32,
    pub parallelism: u32,
    /// Id of the next checkpoint (above every id in storage).
    pub next_id: u64,
    /// Subtask index of each task.
    pub task_subtasks: Vec<u32>,
    pub pending: Option<PendingCheckpoint>,
    pub stats: CheckpointStats,
    /// Storage counters when the pending checkpoint was triggered.
    pub storage_at_trigger: StorageStats,
}

impl Coordinator<'_> {
    /// Runs until every task finished (after the final checkpoint) or one failed.
    ///
    /// # Errors
    /// [`RunError::Task`] with the first task failure.
    pub fn run(
        &mut self,
        tasks: &RunningTasks,
        metrics: &JobMetrics,
        progress_interval: Duration,
    ) -> Result<(), RunError> {
        let mut exhausted = 0usize;
        let mut finished = 0usize;
        let mut last_trigger = Instant::now();
        let mut last_end = Instant::now()
            .checked_sub(self.settings.min_pause)
            .unwrap_or_else(Instant::now);
        let mut final_done = false;
        let mut last_progress = (Instant::now(), 0u64);
        loop {
            let now = Instant::now();
            let all_exhausted = exhausted == tasks.sources();
            if self.pending.is_none() && !final_done {
                let due = now.duration_since(last_trigger) >= self.settings.interval
                    && now.duration_since(last_end) >= self.settings.min_pause;
                if all_exhausted || due {
                    last_trigger = now;
                    self.trigger(tasks, now, all_exhausted);
                }
            }
            if let Some(pending) = &self.pending {
                if pending.is_expired(now, self.settings.timeout) {
                    let id = pending.id;
                    warn!(
                        checkpoint = id,
                        "checkpoint {id} expired after {:?}; aborting it", self.settings.timeout
                    );
                    self.abort(id);
                    tasks.broadcast(Control::AbortCheckpoint(id), false);
                    last_end = now;
                }
            }
            if !progress_interval.is_zero()
                && now.duration_since(last_progress.0) >= progress_interval
            {
                let n = metrics.records_in();
                let rate = (n - last_progress.1) as f64
                    / now.duration_since(last_progress.0).as_secs_f64();
                info!(
                    records_in = n,
                    records_out = metrics.records_out(),
                    "progress: {rate:.0} records/s, watermark {}, last checkpoint {}",
                    format_watermark(metrics.watermark()),
                    self.stats
                        .last
                        .map(|(id, _)| id.to_string())
                        .unwrap_or_else(|| "none".into())
                );
                last_progress = (now, n);
            }
            let event = match tasks.events.recv_timeout(Duration::from_millis(50)) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match event {
                TaskEvent::Ack {
                    task,
                    checkpoint,
                    snapshots,
                } => {
                    if let Some(done) = self.acknowledge(task, checkpoint, snapshots) {
                        last_end = Instant::now();
                        match done {
                            Ok(is_final) => {
                                tasks.broadcast(Control::CheckpointComplete(checkpoint), false);
                                if is_final {
                                    final_done = true;
                                    tasks.broadcast(Control::Finish, false);
                                }
                            }
                            Err(()) => tasks.broadcast(Control::AbortCheckpoint(checkpoint), false),
                        }
                    }
                }
                TaskEvent::SourceExhausted => exhausted += 1,
                TaskEvent::Finished => {
                    finished += 1;
                    if finished == tasks.len() {
                        return Ok(());
                    }
                }
                TaskEvent::Failed { task, error } => {
                    let name = tasks.name(task).to_string();
                    error!(task = %name, category = error.category(), "task failed: {}", error_chain(&error));
                    return Err(RunError::Task {
                        task: name,
                        category: error.category(),
                        source: error,
                    });
                }
            }
        }
    }

    /// Starts checkpoint `next_id`: the sources inject its barrier.
    fn trigger(&mut self, tasks: &RunningTasks, now: Instant, is_final: bool) {
        let id = self.next_id;
        self.next_id += 1;
        info!(
            checkpoint = id,
            final_checkpoint = is_final,
            "triggering checkpoint {id}"
        );
        self.pending = Some(PendingCheckpoint::new(id, tasks.len(), now, is_final));
        self.storage_at_trigger = self.storage.stats();
        tasks.broadcast(Control::TriggerCheckpoint(id), true);
    }

    /// Handles an acknowledgement. Returns `Some(Ok(is_final))` when the checkpoint completed,
    /// `Some(Err(()))` when it failed and was aborted, `None` while it is still pending (or
    /// the ack is stale).
    fn acknowledge(
        &mut self,
        task: usize,
        id: u64,
        snapshots: Vec<OperatorSnapshot>,
    ) -> Option<Result<bool, ()>> {
        if self.pending.as_ref().map(|p| p.id) != Some(id) {
            return None;
        }
        let subtask = self.task_subtasks[task];
        let mut metas = Vec::new();
        for s in snapshots {
            let keyed_state = match s.keyed {
                Some(k) => {
                    let name = state_file_name(&s.uid, subtask);
                    if let Err(e) = self
                        .storage
                        .write(&self.paths.checkpoint_file(id, &name), &k.bytes)
                    {
                        warn!(
                            checkpoint = id,
                            "checkpoint {id} failed: {}; aborting it, the job continues",
                            error_chain(&e)
                        );
                        self.abort(id);
                        return Some(Err(()));
                    }
                    Some(KeyedStateFile {
                        file: name,
                        size: k.bytes.len() as u64,
                        crc32c: crc32c::crc32c(&k.bytes),
                        key_group_range: k.range,
                        key_group_offsets: k.key_group_offsets,
                        states: k.states,
                        entries: k.entries,
                    })
                }
                None => None,
            };
            metas.push((
                s.uid,
                SubtaskMetadata {
                    subtask,
                    keyed_state,
                    operator_state: s.operator_state,
                },
            ));
        }
        let pending = self.pending.as_mut().expect("invariant: checked above");
        if !pending.acknowledge(task, self.parallelism, metas) {
            return None;
        }
        let pending = self.pending.take().expect("invariant: checked above");
        let duration_ms = pending.started.elapsed().as_secs_f64() * 1000.0;
        let is_final = pending.is_final;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let metadata = pending.into_metadata(self.job, self.max_parallelism, now_ms);
        if let Err(e) = self
            .storage
            .write(&self.paths.metadata(id), &metadata.encode())
        {
            warn!(
                checkpoint = id,
                "checkpoint {id} failed writing _metadata: {}; aborting it",
                error_chain(&e)
            );
            self.stats.failed += 1;
            let _ = self.storage.delete_all(&self.paths.checkpoint(id));
            return Some(Err(()));
        }
        let size = metadata.state_size();
        self.stats.completed += 1;
        self.stats.durations_ms.push(duration_ms);
        self.stats.last = Some((id, size));
        self.stats.max_size = self.stats.max_size.max(size);
        self.retain();
        let io = self.storage.stats().since(&self.storage_at_trigger);
        self.stats.last_storage = io;
        info!(
            checkpoint = id,
            duration_ms = duration_ms as u64,
            size_bytes = size,
            storage_requests = io.requests,
            storage_bytes_written = io.bytes_written,
            "checkpoint {id} complete"
        );
        Some(Ok(is_final))
    }

    fn abort(&mut self, id: u64) {
        if self.pending.as_ref().map(|p| p.id) == Some(id) {
            self.pending = None;
        }
        self.stats.failed += 1;
        if let Err(e) = self.storage.delete_all(&self.paths.checkpoint(id)) {
            warn!(
                checkpoint = id,
                "could not delete aborted checkpoint {id}: {}",
                error_chain(&e)
            );
        }
    }

    fn retain(&mut self) {
        let ids = match list_checkpoint_ids(self.storage, self.paths) {
            Ok(ids) => ids,
            Err(e) => return warn!("retention: {}", error_chain(&e)),
        };
        let pending = self.pending.as_ref().map(|p| p.id);
        let (mut complete, mut incomplete) = (Vec::new(), Vec::new());
        for id in ids.into_iter().filter(|i| Some(*i) != pending) {
            match self.storage.read(&self.paths.metadata(id)) {
                Ok(Some(_)) => complete.push(id),
                _ => incomplete.push(id),
            }
        }
        for id in checkpoints_to_delete(&complete, &incomplete, self.settings.retained) {
            if let Err(e) = self.storage.delete_all(&self.paths.checkpoint(id)) {
                warn!(checkpoint = id, "retention: {}", error_chain(&e));
            }
        }
    }
}
