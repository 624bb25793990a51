//! The checkpoint coordinator of a local run: triggers checkpoints and savepoints at the
//! sources, collects acknowledgements, writes state files and `_metadata` (last), applies
//! retention to checkpoints, tells the tasks the outcome, aborts on timeout or failed writes,
//! answers the admin API and prints progress. Its decisions about one checkpoint are the pure
//! [`PendingCheckpoint`]; this is the I/O around it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use tracing::{error, info, warn};
use weir_crds::{CheckpointSettings, S3Spec, StorageLocation};

use super::summary::format_watermark;
use super::taskset::{JobEvent, TaskSet};
use super::{error_chain, open_storage, RunEnd, RunError};
use crate::admin::{
    AdminRequest, ApiError, CheckpointInfo, CheckpointsInfo, JobInfo, SavepointState,
    SavepointStatus, StopRequest,
};
use crate::api::CheckpointBarrier;
use crate::checkpoint::coordinator::{checkpoints_to_delete, PendingCheckpoint};
use crate::checkpoint::metadata::{SnapshotKind, SubtaskMetadata};
use crate::checkpoint::restore::list_checkpoint_ids;
use crate::checkpoint::writer::SnapshotTarget;
use crate::metrics::JobMetrics;
use crate::storage::paths::{join, savepoint_dir_name, JobPaths, METADATA};
use crate::storage::{CheckpointStorage, StorageStats};
use crate::task::Control;

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
    /// `[source, keyed operator, sink]` uids for the per-operator record metrics' labels
    /// (empty for jobs of another shape: see `JobGraph::metric_operators`).
    pub uids: Vec<String>,
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
        }
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
        let mut last_trigger = Instant::now();
        let mut last_end = Instant::now()
            .checked_sub(self.settings.min_pause)
            .unwrap_or_else(Instant::now);
        let mut final_done = false;
        let mut last_progress = (Instant::now(), 0u64);
        self.load_complete();
        loop {
            let now = Instant::now();
            let all_exhausted = exhausted == tasks.sources();
            self.finishing = all_exhausted;
            // A final snapshot waits for the ones in flight; others may overlap them up to
            // maxConcurrent, unless a minimum pause separates checkpoints.
            let idle = self.pending.is_empty();
            let may_overlap = self.pending.len() < self.settings.max_concurrent
                && self.settings.min_pause.is_zero()
                && !all_exhausted;
            if (idle || may_overlap) && !final_done {
                if all_exhausted {
                    for t in std::mem::take(&mut self.queued_savepoints) {
                        self.fail_trigger(
                            &t,
                            "the input ended before the savepoint could be taken".into(),
                        );
                    }
                }
                let drain_target = self.stop.as_mut().and_then(|s| s.drain_target.take());
                if let (true, true, Some(target)) = (idle, all_exhausted, drain_target) {
                    // Stop with drain: the drained job's final snapshot is the savepoint.
                    self.trigger(tasks, now, target, true);
                } else if let Some(target) = self.queued_savepoints.pop_front() {
                    self.trigger(tasks, now, target, false);
                } else {
                    let due = now.duration_since(last_trigger) >= self.settings.interval
                        && now.duration_since(last_end) >= self.settings.min_pause;
                    if (all_exhausted && idle) || (due && !all_exhausted) {
                        last_trigger = now;
                        let target = Target {
                            storage: self.storage.clone(),
                            dir: String::new(),
                            kind: SnapshotKind::Checkpoint,
                            trigger: None,
                        };
                        self.trigger(tasks, now, target, all_exhausted);
                    }
                }
            }
            let expired: Vec<u64> = self
                .pending
                .values()
                .filter(|p| p.checkpoint.is_expired(now, self.settings.timeout))
                .map(|p| p.checkpoint.id)
                .collect();
            for id in expired {
                let cause = format!("expired after {:?}", self.settings.timeout);
                warn!(checkpoint = id, "checkpoint {id} {cause}; aborting it");
                self.abort(id, cause);
                tasks.control(Control::AbortCheckpoint(id));
                last_end = now;
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
                default(Duration::from_millis(50)) => continue,
            };
            match event {
                JobEvent::Declined { checkpoint, cause } => {
                    if self.pending.contains_key(&checkpoint) {
                        warn!(checkpoint, "checkpoint {checkpoint} failed: {cause}; aborting it, the job continues");
                        self.abort(checkpoint, cause);
                        tasks.control(Control::AbortCheckpoint(checkpoint));
                        last_end = Instant::now();
                    }
                }
                JobEvent::Ack {
                    task,
                    checkpoint,
                    metas,
                } => {
                    if let Some(done) = self.acknowledge(task, checkpoint, metas) {
                        last_end = Instant::now();
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
    /// and incomplete ones older than the newest complete one. Which checkpoints are complete
    /// is known from [`Coordinator::complete`]; only the listing is read.
    fn retain(&mut self) {
        let storage = self.storage.clone();
        let ids = match list_checkpoint_ids(storage.as_ref(), self.paths) {
            Ok(ids) => ids,
            Err(e) => return warn!("retention: {}", error_chain(&e)),
        };
        let (complete, incomplete): (Vec<u64>, Vec<u64>) = ids
            .into_iter()
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

    /// Answers an admin request.
    fn answer(&mut self, request: AdminRequest, tasks: &dyn TaskSet, metrics: &JobMetrics) {
        // A requester that went away needs no answer.
        match request {
            AdminRequest::Job(reply) => {
                let watermark = metrics.watermark();
                let _ = reply.send(JobInfo {
                    name: self.job.to_string(),
                    id: self.info.job_id.clone(),
                    state: if self.finishing {
                        "FINISHING"
                    } else {
                        "RUNNING"
                    }
                    .into(),
                    restarts: self.info.restarts,
                    failure: self.info.failure.clone(),
                    parallelism: self.parallelism,
                    max_parallelism: self.max_parallelism,
                    start_time: self.info.start_time.clone(),
                    restored_from: self.info.restored_from.clone(),
                    records_in: metrics.records_in(),
                    records_out: metrics.records_out(),
                    watermark: (watermark != i64::MIN).then_some(watermark),
                });
            }
            AdminRequest::Checkpoints(reply) => {
                let _ = reply.send(CheckpointsInfo {
                    latest: self.history.stats.last_info.clone(),
                    in_progress: self.pending.keys().next().copied(),
                    completed: self.history.stats.completed,
                    failed: self.history.stats.failed,
                    recent_failures: self.history.recent_failures.iter().cloned().collect(),
                });
            }
            AdminRequest::TriggerSavepoint {
                directory,
                trigger_id,
                reply,
            } => {
                let _ = reply.send(self.queue_savepoint(directory, trigger_id));
            }
            AdminRequest::Stop { request, reply } => {
                let _ = reply.send(self.request_stop(request, tasks));
            }
            AdminRequest::Metrics(reply) => {
                let _ = reply.send(self.render_metrics(metrics));
            }
            AdminRequest::Savepoint { trigger_id, reply } => {
                let _ = reply.send(self.history.savepoints.get(&trigger_id).cloned());
            }
        }
    }

    /// The target of a savepoint into `directory` (default: the job's savepoint directory),
    /// checked writable by writing and deleting a probe object.
    fn savepoint_target(&self, directory: Option<String>) -> Result<Target, ApiError> {
        let invalid =
            |m: String| ApiError::new(400, "invalid_directory", format!("directory: {m}"));
        let (storage, dir) = match directory {
            None => (self.storage.clone(), self.paths.savepoints()),
            Some(uri) => {
                let location = StorageLocation::parse_with(&uri, self.s3).map_err(invalid)?;
                let storage = open_storage(&location).map_err(|e| invalid(error_chain(&e)))?;
                (storage, String::new())
            }
        };
        let probe = join(&dir, ".weir-write-probe");
        storage
            .write(&probe, b"probe")
            .and_then(|()| storage.delete_all(&probe))
            .map_err(|e| {
                ApiError::new(
                    400,
                    "unwritable_directory",
                    format!(
                        "cannot write savepoints to {}: {}",
                        storage.uri(&dir),
                        error_chain(&e)
                    ),
                )
            })?;
        Ok(Target {
            storage,
            dir,
            kind: SnapshotKind::Savepoint,
            trigger: None,
        })
    }

    /// Registers a new savepoint trigger as in progress, under the caller's id if given.
    fn new_trigger(&mut self, id: Option<String>) -> String {
        self.history.next_trigger += 1;
        let trigger =
            id.unwrap_or_else(|| format!("{:x}-{}", std::process::id(), self.history.next_trigger));
        self.history.savepoints.insert(
            trigger.clone(),
            SavepointStatus {
                trigger_id: trigger.clone(),
                status: SavepointState::InProgress,
                location: None,
                failure: None,
            },
        );
        trigger
    }

    fn refuse_when_finishing(&self) -> Result<(), ApiError> {
        if self.finishing {
            return Err(ApiError::new(
                409,
                "job_finishing",
                "the input has ended; the job takes its final checkpoint",
            ));
        }
        Ok(())
    }

    fn queue_savepoint(
        &mut self,
        directory: Option<String>,
        trigger_id: Option<String>,
    ) -> Result<String, ApiError> {
        if let Some(known) = self.history.known_trigger(trigger_id.as_deref()) {
            return Ok(known);
        }
        self.refuse_when_finishing()?;
        let mut target = self.savepoint_target(directory)?;
        let trigger = self.new_trigger(trigger_id);
        target.trigger = Some(trigger.clone());
        self.queued_savepoints.push_back(target);
        info!(trigger = %trigger, "savepoint requested");
        Ok(trigger)
    }

    fn request_stop(
        &mut self,
        request: StopRequest,
        tasks: &dyn TaskSet,
    ) -> Result<Option<String>, ApiError> {
        if let Some(known) = self.history.known_trigger(request.trigger_id.as_deref()) {
            return Ok(Some(known));
        }
        if self.stop.is_some() || self.cancelled {
            return Err(ApiError::new(
                409,
                "stop_in_progress",
                "the job is already stopping",
            ));
        }
        self.refuse_when_finishing()?;
        if !request.with_savepoint {
            self.cancelled = true;
            return Ok(None);
        }
        let mut target = self.savepoint_target(request.directory)?;
        let trigger = self.new_trigger(request.trigger_id);
        target.trigger = Some(trigger.clone());
        info!(trigger = %trigger, drain = request.drain, "stop with savepoint requested");
        if request.drain {
            tasks.control(Control::Drain);
            self.stop = Some(Stop {
                trigger: trigger.clone(),
                drain: true,
                drain_target: Some(target),
            });
        } else {
            self.queued_savepoints.push_front(target);
            self.stop = Some(Stop {
                trigger: trigger.clone(),
                drain: false,
                drain_target: None,
            });
        }
        Ok(Some(trigger))
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

    /// Per operator and subtask: records in and out of the source, the window and the sink,
    /// and records the window dropped as late; per task and subtask: time blocked on a full
    /// shuffle.
    fn register_subtask_metrics(
        &self,
        r: &mut prometheus_client::registry::Registry,
        metrics: &JobMetrics,
    ) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        type Labels = Vec<(String, String)>;
        let uids = &self.info.uids;
        let (Some(source), Some(sink)) = (uids.first(), uids.last()) else {
            return;
        };
        let window = (uids.len() >= 3).then(|| &uids[uids.len() - 2]);
        let records_in = Family::<Labels, Counter>::default();
        let records_out = Family::<Labels, Counter>::default();
        let late = Family::<Labels, Counter>::default();
        let backpressure = Family::<Labels, Counter<f64>>::default();
        let labels = |uid: &str, subtask: u32| {
            vec![
                ("operator".to_string(), uid.to_string()),
                ("subtask".to_string(), subtask.to_string()),
            ]
        };
        for f in metrics.all_figures() {
            // The source reads records and sends what its chain makes of them into the
            // shuffle; the window takes them from the shuffle and emits results, which the
            // sink writes.
            let count = |uid: &str, input: u64, output: u64| {
                records_in
                    .get_or_create(&labels(uid, f.subtask))
                    .inc_by(input);
                records_out
                    .get_or_create(&labels(uid, f.subtask))
                    .inc_by(output);
            };
            count(source, f.records_in, f.shuffled_out);
            if let Some(w) = window {
                count(w, f.shuffled_in, f.records_out);
                late.get_or_create(&labels(w, f.subtask))
                    .inc_by(f.late_records);
            }
            count(sink, f.records_out, f.records_out);
            backpressure
                .get_or_create(&labels(source, f.subtask))
                .inc_by(f.backpressure_ns as f64 / 1e9);
        }
        r.register(
            "operator_records_in",
            "Records into an operator (read by a source), per operator and subtask",
            records_in,
        );
        r.register(
            "operator_records_out",
            "Records out of an operator (written by a sink), per operator and subtask",
            records_out,
        );
        r.register(
            "operator_late_records",
            "Records dropped as late, per window operator and subtask",
            late,
        );
        r.register(
            "backpressure_seconds",
            "Time a subtask's shuffle output waited for buffer space downstream, per task (named by its first operator) and subtask",
            backpressure,
        );
    }

    /// The job's metrics in the Prometheus text format.
    fn render_metrics(&self, metrics: &JobMetrics) -> String {
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let mut r = prometheus_client::registry::Registry::with_prefix("weir");
        let io = self.storage.stats();
        r.register(
            "records_in",
            "Records read by sources",
            ConstCounter::new(metrics.records_in()),
        );
        r.register(
            "records_out",
            "Records written by sinks",
            ConstCounter::new(metrics.records_out()),
        );
        r.register(
            "late_records",
            "Records dropped as late",
            ConstCounter::new(metrics.late_records()),
        );
        r.register(
            "checkpoints_completed",
            "Checkpoints completed",
            ConstCounter::new(self.history.stats.completed),
        );
        r.register(
            "checkpoints_failed",
            "Checkpoints aborted",
            ConstCounter::new(self.history.stats.failed),
        );
        let (duration, size) = self
            .history
            .stats
            .last_info
            .as_ref()
            .map(|c| (c.duration_ms as f64 / 1000.0, c.size_bytes as i64))
            .unwrap_or((0.0, 0));
        r.register(
            "last_checkpoint_duration_seconds",
            "Duration of the last completed checkpoint",
            ConstGauge::new(duration),
        );
        r.register(
            "last_checkpoint_size_bytes",
            "State bytes of the last completed checkpoint",
            ConstGauge::new(size),
        );
        r.register(
            "storage_requests",
            "Checkpoint storage requests",
            ConstCounter::new(io.requests),
        );
        r.register(
            "storage_written_bytes",
            "Bytes written to checkpoint storage",
            ConstCounter::new(io.bytes_written),
        );
        r.register(
            "storage_read_bytes",
            "Bytes read from checkpoint storage",
            ConstCounter::new(io.bytes_read),
        );
        let watermark = metrics.watermark();
        if watermark != i64::MIN && watermark != i64::MAX {
            r.register(
                "watermark_milliseconds",
                "Event-time watermark (ms since the epoch)",
                ConstGauge::new(watermark),
            );
            r.register(
                "watermark_lag_milliseconds",
                "Wall-clock time minus the event-time watermark",
                ConstGauge::new(chrono::Utc::now().timestamp_millis() - watermark),
            );
        }
        r.register(
            "restarts",
            "Restarts of the job after failures",
            ConstCounter::new(u64::from(self.info.restarts)),
        );
        self.register_subtask_metrics(&mut r, metrics);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("invariant: writing to a String cannot fail");
        out
    }
}
