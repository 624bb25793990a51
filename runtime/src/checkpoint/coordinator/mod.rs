//! The checkpoint coordinator, one for a local run (`weir run`) and for the distributed
//! coordinator (`weir coordinator`): triggers checkpoints and savepoints at the sources,
//! collects acknowledgements, writes `_metadata` (last), applies retention to checkpoints and
//! collects unreferenced shared files, tells the tasks the outcome, aborts on timeout or
//! failed writes, answers the admin API ([`admin`]), renders metrics ([`metrics`]) and
//! prints progress.
//!
//! Its decisions are pure: when to trigger and what has expired ([`schedule`]), the state of
//! one snapshot in flight and retention ([`pending`]). It drives any [`TaskSet`] (threads,
//! worker processes, or a fake in its unit tests) and any
//! [`CheckpointStorage`](crate::storage::CheckpointStorage).

mod admin;
mod metrics;
pub mod pending;
pub mod schedule;
mod tasks;
#[cfg(test)]
mod tests;

pub(crate) use tasks::{JobEvent, TaskSet};

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use tracing::{error, info, warn};
use weir_crds::{CheckpointSettings, S3Spec};

use crate::admin::{AdminRequest, CheckpointInfo, SavepointState, SavepointStatus};
use crate::api::CheckpointBarrier;
use crate::checkpoint::metadata::{SnapshotKind, SubtaskMetadata};
use crate::checkpoint::restore::list_checkpoint_ids;
use crate::checkpoint::writer::SnapshotTarget;
use crate::metrics::JobMetrics;
use crate::runner::summary::format_watermark;
use crate::runner::{error_chain, RunEnd, RunError};
use crate::storage::paths::{join, savepoint_dir_name, JobPaths, METADATA};
use crate::storage::{CheckpointStorage, StorageStats};
use crate::task::Control;
use pending::{checkpoints_to_delete, PendingCheckpoint};
use schedule::{Next, Schedule, Situation};

/// Figures of the checkpoints of one run.
#[derive(Debug, Default, Clone)]
pub(crate) struct CheckpointStats {
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
    /// Last completed checkpoint's details, for the admin API.
    pub last_info: Option<CheckpointInfo>,
    /// Most snapshots (checkpoints and savepoints) in flight at once.
    pub max_in_flight: u64,
    /// Shortest time between the end of a snapshot and the trigger of the next periodic,
    /// non-final checkpoint, ms (what `minPause` bounds); `None` before there is one.
    pub min_pause_ms: Option<f64>,
}

/// Where a snapshot goes.
#[derive(Clone)]
struct Target {
    storage: Arc<dyn CheckpointStorage>,
    /// Directory of the snapshot (for savepoints in the queue: the parent directory).
    dir: String,
    kind: SnapshotKind,
    /// The admin trigger of a savepoint.
    trigger: Option<String>,
}

struct Pending {
    checkpoint: PendingCheckpoint,
    target: Target,
    /// Storage counters at the trigger.
    storage_at_trigger: StorageStats,
}

/// A stop with savepoint in progress.
struct Stop {
    trigger: String,
    drain: bool,
    /// With drain: the savepoint target, taken as the final snapshot once the sources drained.
    drain_target: Option<Target>,
}

/// Fixed facts about the run, for the admin API.
pub(crate) struct RunInfo {
    pub job_id: String,
    pub start_time: String,
    pub restored_from: Option<String>,
    /// Restarts after failures so far.
    pub restarts: u32,
    /// The cause of the last failure.
    pub failure: Option<String>,
}

/// What outlives one attempt of a job: checkpoint figures, savepoint triggers, failures.
#[derive(Default)]
pub(crate) struct History {
    pub stats: CheckpointStats,
    pub savepoints: BTreeMap<String, SavepointStatus>,
    pub recent_failures: VecDeque<(u64, String)>,
    next_trigger: usize,
}

impl History {
    /// `id` when a trigger with that caller-chosen id exists already (a retried request).
    pub fn known_trigger(&self, id: Option<&str>) -> Option<String> {
        id.filter(|id| self.savepoints.contains_key(*id))
            .map(str::to_string)
    }
}

/// The coordinator of one run.
pub(crate) struct Coordinator<'a> {
    storage: Arc<dyn CheckpointStorage>,
    paths: &'a JobPaths,
    job: &'a str,
    settings: &'a CheckpointSettings,
    s3: Option<&'a S3Spec>,
    max_parallelism: u32,
    parallelism: u32,
    next_id: u64,
    info: RunInfo,
    /// Snapshots in flight, by id (at most `maxConcurrent`).
    pending: BTreeMap<u64, Pending>,
    queued_savepoints: VecDeque<Target>,
    finishing: bool,
    /// A stop with savepoint in progress.
    stop: Option<Stop>,
    /// Location of the stop's completed savepoint.
    stopped_at: Option<String>,
    /// Cancel requested.
    cancelled: bool,
    /// The complete checkpoints in storage, with the shared files each references.
    complete: BTreeMap<u64, Vec<String>>,
    /// Figures, savepoint triggers and failures, kept across attempts.
    pub history: History,
    /// Where savepoints may go (URI prefixes); `None`: anywhere the job's credentials reach.
    savepoint_prefixes: Option<Vec<String>>,
    /// The lineage's first checkpoint id: retention never deletes checkpoints below it (a
    /// predecessor's, see [`crate::checkpoint::LineageRecord`]).
    lineage_start: u64,
}

impl<'a> Coordinator<'a> {
    /// A coordinator writing checkpoints to `storage` from id `next_id` on.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: Arc<dyn CheckpointStorage>,
        paths: &'a JobPaths,
        job: &'a str,
        settings: &'a CheckpointSettings,
        s3: Option<&'a S3Spec>,
        max_parallelism: u32,
        parallelism: u32,
        next_id: u64,
        info: RunInfo,
    ) -> Self {
        Self {
            storage,
            paths,
            job,
            settings,
            s3,
            max_parallelism,
            parallelism,
            next_id,
            info,
            pending: BTreeMap::new(),
            queued_savepoints: VecDeque::new(),
            finishing: false,
            stop: None,
            stopped_at: None,
            cancelled: false,
            complete: BTreeMap::new(),
            history: History::default(),
            savepoint_prefixes: None,
            lineage_start: 0,
        }
    }

    /// Keeps retention off the checkpoints below `first` (the lineage's first checkpoint):
    /// they belong to a predecessor, which this job neither restores nor deletes. Their shared
    /// files stay referenced.
    pub fn with_lineage_start(mut self, first: u64) -> Self {
        self.lineage_start = first;
        self
    }

    /// Confines savepoint directories to `prefixes` (URI prefixes: the job's storage root and
    /// the manifest's `savepoints.directory`); a trigger elsewhere is refused 403
    /// `outside_job_storage`.
    pub fn confine_savepoints(mut self, prefixes: Option<Vec<String>>) -> Self {
        self.savepoint_prefixes = prefixes;
        self
    }

    /// Restores what earlier attempts of the job left: figures, savepoint triggers, failures.
    pub fn with_history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// Ends the attempt after a failure with `cause`: the snapshot in flight and the queued
    /// savepoints fail (their files are deleted), and what later attempts need is returned.
    pub fn into_history(mut self, cause: &str) -> History {
        for (id, Pending { target, .. }) in std::mem::take(&mut self.pending) {
            self.abort_target(id, &target, format!("the job failed: {cause}"));
        }
        for t in std::mem::take(&mut self.queued_savepoints) {
            self.fail_trigger(&t, format!("the job failed: {cause}"));
        }
        if let Some(target) = self.stop.as_mut().and_then(|s| s.drain_target.take()) {
            self.fail_trigger(&target, format!("the job failed: {cause}"));
        }
        self.history
    }

    /// The id the next snapshot gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Runs until every task finished (after the final checkpoint) or one failed, answering
    /// `admin` requests meanwhile.
    ///
    /// # Errors
    /// [`RunError::Task`] with the first task failure.
    pub fn run(
        &mut self,
        tasks: &dyn TaskSet,
        metrics: &JobMetrics,
        progress_interval: Duration,
        admin: &Receiver<AdminRequest>,
    ) -> Result<RunEnd, RunError> {
        let mut exhausted = 0usize;
        let mut finished = 0usize;
        let mut schedule = Schedule::new(self.settings, Instant::now());
        let mut final_done = false;
        let mut last_progress = (Instant::now(), 0u64);
        self.load_complete();
        loop {
            let now = Instant::now();
            let input_ended = exhausted == tasks.sources();
            self.finishing = input_ended;
            if input_ended {
                for t in std::mem::take(&mut self.queued_savepoints) {
                    self.fail_trigger(
                        &t,
                        "the input ended before the savepoint could be taken".into(),
                    );
                }
            }
            let situation = Situation {
                in_flight: self.pending.len(),
                input_ended,
                savepoint_queued: !self.queued_savepoints.is_empty(),
                drain_savepoint: self.stop.as_ref().is_some_and(|s| s.drain_target.is_some()),
                final_done,
            };
            match schedule.next(now, situation) {
                Next::Wait => {}
                Next::DrainSavepoint => {
                    // Stop with drain: the drained job's final snapshot is the savepoint.
                    if let Some(target) = self.stop.as_mut().and_then(|s| s.drain_target.take()) {
                        self.trigger(tasks, now, target, true);
                    }
                }
                Next::Savepoint => {
                    if let Some(target) = self.queued_savepoints.pop_front() {
                        self.trigger(tasks, now, target, false);
                    }
                }
                Next::Checkpoint { is_final } => {
                    schedule.periodic_triggered(now);
                    if let Some(pause) = schedule.since_last_end(now).filter(|_| !is_final) {
                        let ms = pause.as_secs_f64() * 1000.0;
                        let min = &mut self.history.stats.min_pause_ms;
                        *min = Some(min.map_or(ms, |m| m.min(ms)));
                    }
                    let target = Target {
                        storage: self.storage.clone(),
                        dir: String::new(),
                        kind: SnapshotKind::Checkpoint,
                        trigger: None,
                    };
                    self.trigger(tasks, now, target, is_final);
                }
            }
            let expired: Vec<u64> = self
                .pending
                .values()
                .filter(|p| schedule.is_expired(p.checkpoint.started, now))
                .map(|p| p.checkpoint.id)
                .collect();
            for id in expired {
                let cause = format!("expired after {:?}", self.settings.timeout);
                warn!(checkpoint = id, "checkpoint {id} {cause}; aborting it");
                self.abort(id, cause);
                tasks.control(Control::AbortCheckpoint(id));
                schedule.ended(now);
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
                    self.history
                        .stats
                        .last
                        .map(|(id, _)| id.to_string())
                        .unwrap_or_else(|| "none".into())
                );
                last_progress = (now, n);
            }
            // Decide again when the next checkpoint is due, or after 50 ms (expiry, progress);
            // one that is due but waits for a free slot is decided on the event that frees it.
            let wait = match schedule.due_in(Instant::now()) {
                d if d.is_zero() => Duration::from_millis(50),
                d => d.min(Duration::from_millis(50)),
            };
            let event = select! {
                recv(tasks.events()) -> e => match e {
                    Ok(e) => e,
                    Err(_) => return Ok(self.end()),
                },
                recv(admin) -> r => {
                    if let Ok(r) = r {
                        self.answer(r, tasks, metrics);
                    }
                    if self.cancelled {
                        warn!("cancelled through the admin API");
                        return Ok(RunEnd::Cancelled);
                    }
                    continue;
                }
                default(wait) => continue,
            };
            match event {
                JobEvent::Declined { checkpoint, cause } => {
                    if self.pending.contains_key(&checkpoint) {
                        warn!(checkpoint, "checkpoint {checkpoint} failed: {cause}; aborting it, the job continues");
                        self.abort(checkpoint, cause);
                        tasks.control(Control::AbortCheckpoint(checkpoint));
                        schedule.ended(Instant::now());
                    }
                }
                JobEvent::Ack {
                    task,
                    checkpoint,
                    metas,
                } => {
                    if let Some(done) = self.acknowledge(task, checkpoint, metas) {
                        schedule.ended(Instant::now());
                        if let Some(location) = self.stopped_at.clone() {
                            if !self.stop.as_ref().is_some_and(|s| s.drain) {
                                // Stop without drain: the savepoint is the job's last state.
                                tasks.control(Control::CheckpointComplete(checkpoint));
                                info!(%location, "stopped with savepoint");
                                return Ok(RunEnd::Stopped {
                                    savepoint: location,
                                });
                            }
                        }
                        match done {
                            Ok(is_final) => {
                                tasks.control(Control::CheckpointComplete(checkpoint));
                                if is_final {
                                    final_done = true;
                                    tasks.control(Control::Finish);
                                }
                            }
                            Err(()) => tasks.control(Control::AbortCheckpoint(checkpoint)),
                        }
                    }
                }
                JobEvent::SourceExhausted => exhausted += 1,
                JobEvent::Finished => {
                    finished += 1;
                    if finished == tasks.len() {
                        return Ok(self.end());
                    }
                }
                JobEvent::Failed {
                    task,
                    category,
                    cause,
                } => {
                    let name = tasks.name(task);
                    error!(task = %name, category = %category, "task failed: {cause}");
                    return Err(RunError::Task {
                        task: name,
                        category,
                        cause,
                    });
                }
                JobEvent::WorkerLost { worker, cause } => {
                    error!(worker = %worker, "worker lost: {cause}");
                    return Err(RunError::WorkerLost { worker, cause });
                }
            }
        }
    }

    /// Starts snapshot `next_id` into `target`: the sources inject its barrier.
    fn trigger(&mut self, tasks: &dyn TaskSet, now: Instant, mut target: Target, is_final: bool) {
        let id = self.next_id;
        self.next_id += 1;
        target.dir = match target.kind {
            SnapshotKind::Checkpoint => self.paths.checkpoint(id),
            SnapshotKind::Savepoint => join(
                &target.dir,
                &savepoint_dir_name(id, chrono::Utc::now().timestamp_millis()),
            ),
        };
        match target.kind {
            SnapshotKind::Checkpoint => {
                info!(
                    checkpoint = id,
                    final_checkpoint = is_final,
                    "triggering checkpoint {id}"
                )
            }
            SnapshotKind::Savepoint => {
                info!(checkpoint = id, location = %target.storage.uri(&target.dir), "triggering savepoint {id}")
            }
        }
        let kind = target.kind;
        let snapshot_target = SnapshotTarget {
            storage: target.storage.clone(),
            dir: target.dir.clone(),
        };
        self.pending.insert(
            id,
            Pending {
                checkpoint: PendingCheckpoint::new(id, tasks.len(), now, is_final),
                storage_at_trigger: target.storage.stats(),
                target,
            },
        );
        let stats = &mut self.history.stats;
        stats.max_in_flight = stats.max_in_flight.max(self.pending.len() as u64);
        tasks.trigger(CheckpointBarrier { id, kind }, &snapshot_target);
    }

    /// Handles an acknowledgement. Returns `Some(Ok(is_final))` when the snapshot completed,
    /// `Some(Err(()))` when it failed and was aborted, `None` while it is still pending (or
    /// the ack is stale).
    fn acknowledge(
        &mut self,
        task: usize,
        id: u64,
        metas: Vec<(String, SubtaskMetadata)>,
    ) -> Option<Result<bool, ()>> {
        let pending = self.pending.get_mut(&id)?;
        if !pending
            .checkpoint
            .acknowledge(task, self.parallelism, metas)
        {
            return None;
        }
        let Pending {
            checkpoint,
            target,
            storage_at_trigger,
        } = self.pending.remove(&id).expect("invariant: found above");
        let duration_ms = checkpoint.started.elapsed().as_secs_f64() * 1000.0;
        let is_final = checkpoint.is_final;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let metadata =
            checkpoint.into_metadata(self.job, target.kind, self.max_parallelism, now_ms);
        if let Err(e) = target
            .storage
            .write(&join(&target.dir, METADATA), &metadata.encode())
        {
            let cause = format!("writing _metadata: {}", error_chain(&e));
            warn!(
                checkpoint = id,
                "checkpoint {id} failed {cause}; aborting it, the job continues"
            );
            self.abort_target(id, &target, cause);
            return Some(Err(()));
        }
        let size = metadata.state_size();
        let location = target.storage.uri(&target.dir);
        if target.kind == SnapshotKind::Savepoint {
            info!(checkpoint = id, duration_ms = duration_ms as u64, size_bytes = size, %location, "savepoint {id} complete");
            if let Some(t) = &target.trigger {
                if self.stop.as_ref().is_some_and(|s| s.trigger == *t) {
                    self.stopped_at = Some(location.clone());
                }
                self.history.savepoints.insert(
                    t.clone(),
                    SavepointStatus {
                        trigger_id: t.clone(),
                        status: SavepointState::Completed,
                        location: Some(location),
                        failure: None,
                    },
                );
            }
            return Some(Ok(is_final));
        }
        self.history.stats.completed += 1;
        self.history.stats.durations_ms.push(duration_ms);
        self.history.stats.last = Some((id, size));
        self.history.stats.max_size = self.history.stats.max_size.max(size);
        self.history.stats.last_info = Some(CheckpointInfo {
            id,
            location,
            size_bytes: size,
            duration_ms: duration_ms as u64,
        });
        self.complete.insert(id, metadata.shared_paths());
        self.retain();
        if self.pending.is_empty() {
            // Snapshots in flight may have uploaded shared files no complete checkpoint
            // references yet: collect only between snapshots.
            self.collect_shared_garbage();
        }
        let io = target.storage.stats().since(&storage_at_trigger);
        self.history.stats.last_storage = io;
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

    /// Aborts the pending snapshot `id`: deletes what it wrote and records why.
    fn abort(&mut self, id: u64, cause: String) {
        if let Some(Pending { target, .. }) = self.pending.remove(&id) {
            self.abort_target(id, &target, cause);
        }
    }

    fn abort_target(&mut self, id: u64, target: &Target, cause: String) {
        self.history.stats.failed += 1;
        self.history.recent_failures.push_back((id, cause.clone()));
        if self.history.recent_failures.len() > 10 {
            self.history.recent_failures.pop_front();
        }
        if let Err(e) = target.storage.delete_all(&target.dir) {
            warn!(
                checkpoint = id,
                "could not delete aborted checkpoint {id} (retention will): {}",
                error_chain(&e)
            );
        }
        self.fail_trigger(target, cause);
    }

    fn fail_trigger(&mut self, target: &Target, cause: String) {
        if let Some(t) = &target.trigger {
            if self.stop.as_ref().is_some_and(|s| s.trigger == *t) {
                warn!("stop with savepoint failed: {cause}; the job keeps running");
                self.stop = None;
            }
            self.history.savepoints.insert(
                t.clone(),
                SavepointStatus {
                    trigger_id: t.clone(),
                    status: SavepointState::Failed,
                    location: None,
                    failure: Some(cause),
                },
            );
        }
    }

    /// Deletes the checkpoints retention drops: all but the newest `retained` complete ones,
    /// and incomplete ones older than the newest complete one, of the lineage (from
    /// `lineage_start` on). Which checkpoints are complete is known from
    /// [`Coordinator::complete`]; only the listing is read.
    fn retain(&mut self) {
        let storage = self.storage.clone();
        let ids = match list_checkpoint_ids(storage.as_ref(), self.paths) {
            Ok(ids) => ids,
            Err(e) => return warn!("retention: {}", error_chain(&e)),
        };
        let (complete, incomplete): (Vec<u64>, Vec<u64>) = ids
            .into_iter()
            .filter(|&id| id >= self.lineage_start)
            .partition(|id| self.complete.contains_key(id));
        for id in checkpoints_to_delete(&complete, &incomplete, self.settings.retained) {
            match storage.delete_all(&self.paths.checkpoint(id)) {
                Ok(()) => {
                    self.complete.remove(&id);
                }
                Err(e) => warn!(checkpoint = id, "retention: {}", error_chain(&e)),
            }
        }
    }

    /// Reads the complete checkpoints in storage and the shared files each references (after
    /// a restart the reference counts are rebuilt from the `_metadata` files). A `_metadata`
    /// that does not decode still marks its checkpoint complete, referencing nothing.
    fn load_complete(&mut self) {
        let storage = self.storage.clone();
        let Ok(ids) = list_checkpoint_ids(storage.as_ref(), self.paths) else {
            return;
        };
        for id in ids {
            if let Ok(Some(bytes)) = storage.read(&self.paths.metadata(id)) {
                let shared = crate::checkpoint::CheckpointMetadata::decode(&bytes)
                    .map(|m| m.shared_paths())
                    .unwrap_or_default();
                self.complete.insert(id, shared);
            }
        }
    }

    /// Deletes every object in `<job>/shared/` that no retained checkpoint references.
    fn collect_shared_garbage(&mut self) {
        let referenced: std::collections::HashSet<&String> =
            self.complete.values().flatten().collect();
        let dir = self.paths.shared();
        let names = match self.storage.list(&dir) {
            Ok(n) => n,
            Err(e) => return warn!("shared-file collection: {}", error_chain(&e)),
        };
        for name in names {
            let path = format!("shared/{name}");
            if !referenced.contains(&path) {
                if let Err(e) = self
                    .storage
                    .delete_all(&join(&self.paths.job_root(), &path))
                {
                    warn!("shared-file collection: {}", error_chain(&e));
                }
            }
        }
    }

    /// How the run ends once every task finished.
    fn end(&self) -> RunEnd {
        match &self.stopped_at {
            Some(savepoint) => RunEnd::Stopped {
                savepoint: savepoint.clone(),
            },
            None => RunEnd::Finished,
        }
    }
}
