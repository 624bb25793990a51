//! `weir run`: runs a job in this process. One thread per task; the calling thread is the
//! checkpoint coordinator (triggers, acknowledgements, writing state files and `_metadata`,
//! retention, completion notices) and prints progress.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use serde::Serialize;
use tracing::{error, info, warn};
use weir_crds::{LoadedManifest, StorageLocation};

use crate::api::{Instantiation, JobGraph, OperatorSnapshot, TaskContext, TaskError};
use crate::checkpoint::coordinator::{checkpoints_to_delete, PendingCheckpoint};
use crate::checkpoint::metadata::{KeyedStateFile, SubtaskMetadata};
use crate::checkpoint::restore::list_checkpoint_ids;
use crate::checkpoint::{find_latest_checkpoint, RestorePlan};
use crate::metrics::JobMetrics;
use crate::state::key_group::key_group_range;
use crate::state::typed::system_clock;
use crate::storage::paths::{state_file_name, JobPaths};
use crate::storage::{CheckpointStorage, LocalStorage, StorageError};
use crate::task::{Control, TaskEvent, TaskIo};

/// Options of a local run besides the manifest.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Discard the job's checkpoints and start from the beginning of the input.
    pub fresh: bool,
    /// Directory for RocksDB working files (default: the system temp directory); the run
    /// uses `<dir>/weir-<job>/` and deletes it at start and end.
    pub local_state_dir: Option<PathBuf>,
    /// Seconds between progress lines (0 = none).
    pub progress_interval: Duration,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Checkpoint storage failed before the job could start.
    #[error("checkpoint storage")]
    Storage(#[from] StorageError),
    /// The local working directory cannot be prepared.
    #[error("prepare local state directory {path}")]
    LocalDir {
        /// The directory or lock file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another run of the same job on the same storage holds the lock.
    #[error("another `weir run` of job {job} with checkpoint storage {storage} is running")]
    AlreadyRunning {
        /// Job name.
        job: String,
        /// Storage URI of the job.
        storage: String,
    },
    /// The latest checkpoint cannot restore this job.
    #[error("cannot restore: {0}")]
    Incompatible(String),
    /// A task failed; the job stopped. Run again to resume from the latest checkpoint.
    #[error("task {task} failed ({category})")]
    Task {
        /// `uid#subtask` of the failed task.
        task: String,
        /// Bounded category of the error.
        category: &'static str,
        /// The task's error.
        #[source]
        source: TaskError,
    },
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Job name.
    pub job: String,
    /// Checkpoint the run restored from, if any.
    pub restored_from: Option<u64>,
    /// Records read by sources in this run.
    pub records_in: u64,
    /// Records written by sinks in this run.
    pub records_out: u64,
    /// Records dropped as late.
    pub late_records: u64,
    /// Checkpoints completed in this run.
    pub checkpoints_completed: u64,
    /// Checkpoints aborted (timeout, failed write) in this run.
    pub checkpoints_failed: u64,
    /// Id of the last completed checkpoint.
    pub last_checkpoint: Option<u64>,
    /// Location of the last completed checkpoint.
    pub last_checkpoint_location: Option<String>,
    /// Mean checkpoint duration (trigger to `_metadata`), ms.
    pub checkpoint_duration_mean_ms: f64,
    /// Longest checkpoint duration, ms.
    pub checkpoint_duration_max_ms: f64,
    /// Size of the last completed checkpoint's state files, bytes.
    pub last_checkpoint_size_bytes: u64,
    /// Size of the largest checkpoint of the run, bytes.
    pub checkpoint_size_max_bytes: u64,
    /// Wall time of the run, seconds.
    pub elapsed_seconds: f64,
    /// `records_in / elapsed_seconds`.
    pub records_per_second: f64,
    /// Peak resident memory of the process, bytes (Linux; 0 elsewhere).
    pub peak_rss_bytes: u64,
    /// Where the job's output went, if its sink said.
    pub output: Option<String>,
}

/// Opens the checkpoint storage a manifest names.
pub fn open_storage(location: &StorageLocation) -> Arc<dyn CheckpointStorage> {
    match location {
        StorageLocation::Local(root) => Arc::new(LocalStorage::new(root.clone())),
    }
}

/// Runs `graph` as described by `manifest` until its input ends (or a task fails).
///
/// # Errors
/// [`RunError`] when storage is unreachable, the latest checkpoint cannot restore the job, or
/// a task fails.
pub fn run_job(
    manifest: &LoadedManifest,
    graph: JobGraph,
    options: &RunOptions,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let spec = &manifest.spec;
    let settings = &spec.checkpointing;
    let storage = open_storage(&settings.storage);
    let paths = JobPaths::new(&manifest.name);
    let (local_dir, _lock) =
        lock_local_dir(options, &manifest.name, &storage.uri(&paths.job_root()))?;
    if options.fresh {
        info!(location = %storage.uri(&paths.job_root()), "--fresh: deleting the job's checkpoints");
        storage.delete_all(&paths.job_root())?;
    }
    // Incomplete checkpoints can never complete: remove them.
    for id in list_checkpoint_ids(storage.as_ref(), &paths)? {
        if storage.read(&paths.metadata(id))?.is_none() {
            warn!(
                checkpoint = id,
                "checkpoint {id} has no _metadata (incomplete); it is never restored, deleting it"
            );
            storage.delete_all(&paths.checkpoint(id))?;
        }
    }
    let restore = match find_latest_checkpoint(storage.as_ref(), &paths)? {
        Some(loaded) => {
            let plan = RestorePlan::new(
                loaded,
                graph.uids(),
                spec.max_parallelism,
                spec.spec.job.allow_non_restored_state,
            )
            .map_err(RunError::Incompatible)?;
            info!(
                checkpoint = plan.checkpoint_id(),
                location = plan.location(),
                "restoring from checkpoint {}",
                plan.checkpoint_id()
            );
            Some(Arc::new(plan))
        }
        None => {
            info!("no checkpoint to restore; starting from the beginning of the input");
            None
        }
    };
    let mut next_id = list_checkpoint_ids(storage.as_ref(), &paths)?
        .last()
        .copied()
        .unwrap_or(0)
        + 1;
    let p = spec.parallelism;
    let metrics = Arc::new(JobMetrics::new(p as usize));
    let contexts = (0..p)
        .map(|i| TaskContext {
            job_name: manifest.name.clone(),
            subtask: i,
            parallelism: p,
            max_parallelism: spec.max_parallelism,
            key_group_range: key_group_range(i, spec.max_parallelism, p),
            metrics: metrics.clone(),
            state_backend: spec.spec.state_backend,
            local_dir: local_dir.clone(),
            restore: restore.clone(),
            clock: system_clock(),
        })
        .collect();
    let output = graph.output().map(str::to_string);
    let mut inst = Instantiation {
        contexts,
        tasks: Vec::new(),
        mode: spec.spec.checkpointing.mode,
        batch_size: 1024,
        channel_capacity: 16,
    };
    let build = graph.build;
    let restored_from = restore.as_ref().map(|r| r.checkpoint_id());
    drop(restore);
    build(&mut inst).map_err(|source| RunError::Task {
        task: "(instantiation)".into(),
        category: source.category(),
        source,
    })?;

    let (events_tx, events) = unbounded();
    let mut controls: Vec<Sender<Control>> = Vec::new();
    let mut names = Vec::new();
    let mut sources = HashSet::new();
    let mut handles = Vec::new();
    let task_subtasks: Vec<u32> = inst.tasks.iter().map(|t| t.subtask).collect();
    for (index, spec_task) in inst.tasks.into_iter().enumerate() {
        let (ctl_tx, ctl_rx) = unbounded();
        controls.push(ctl_tx);
        names.push(format!("{}#{}", spec_task.name, spec_task.subtask));
        if spec_task.is_source {
            sources.insert(index);
        }
        let io = TaskIo {
            index,
            control: ctl_rx,
            events: events_tx.clone(),
        };
        let task = spec_task.task;
        handles.push(
            std::thread::Builder::new()
                .name(names[index].clone())
                .spawn(move || {
                    if let Err(error) = task.run(&io) {
                        io.send(TaskEvent::Failed { task: index, error });
                    }
                })
                .expect("invariant: threads can be spawned"),
        );
    }
    drop(events_tx);
    drop(inst.contexts);
    let tasks = controls.len();
    let broadcast = |c: Control, only_sources: bool| {
        for (i, tx) in controls.iter().enumerate() {
            if !only_sources || sources.contains(&i) {
                let _ = tx.send(c);
            }
        }
    };

    let mut coord = Coordinator {
        storage: storage.as_ref(),
        paths: &paths,
        job: &manifest.name,
        max_parallelism: spec.max_parallelism,
        parallelism: p,
        task_subtasks,
        retained: settings.retained,
        pending: None,
        completed: 0,
        failed: 0,
        durations_ms: Vec::new(),
        max_size: 0,
        last: None,
    };
    let mut exhausted = 0usize;
    let mut finished = 0usize;
    let mut last_trigger = Instant::now();
    let mut last_end = Instant::now()
        .checked_sub(settings.min_pause)
        .unwrap_or_else(Instant::now);
    let mut final_done = false;
    let mut last_progress = (Instant::now(), 0u64);
    let run_result: Result<(), RunError> = loop {
        let now = Instant::now();
        let all_exhausted = exhausted == sources.len();
        if coord.pending.is_none() && !final_done {
            let due = now.duration_since(last_trigger) >= settings.interval
                && now.duration_since(last_end) >= settings.min_pause;
            if all_exhausted || due {
                let id = next_id;
                next_id += 1;
                last_trigger = now;
                info!(
                    checkpoint = id,
                    final_checkpoint = all_exhausted,
                    "triggering checkpoint {id}"
                );
                coord.pending = Some(PendingCheckpoint::new(id, tasks, now, all_exhausted));
                broadcast(Control::TriggerCheckpoint(id), true);
            }
        }
        if let Some(pending) = &coord.pending {
            if pending.is_expired(now, settings.timeout) {
                let id = pending.id;
                warn!(
                    checkpoint = id,
                    "checkpoint {id} expired after {:?}; aborting it", settings.timeout
                );
                coord.abort(id);
                broadcast(Control::AbortCheckpoint(id), false);
                last_end = now;
            }
        }
        if !options.progress_interval.is_zero()
            && now.duration_since(last_progress.0) >= options.progress_interval
        {
            let n = metrics.records_in();
            let rate =
                (n - last_progress.1) as f64 / now.duration_since(last_progress.0).as_secs_f64();
            info!(
                records_in = n,
                records_out = metrics.records_out(),
                "progress: {rate:.0} records/s, watermark {}, last checkpoint {}",
                format_watermark(metrics.watermark()),
                coord
                    .last
                    .as_ref()
                    .map(|(id, _)| id.to_string())
                    .unwrap_or_else(|| "none".into())
            );
            last_progress = (now, n);
        }
        let event = match events.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
        };
        match event {
            TaskEvent::Ack {
                task,
                checkpoint,
                snapshots,
            } => {
                if let Some(done) = coord.acknowledge(task, checkpoint, snapshots) {
                    last_end = Instant::now();
                    match done {
                        Ok(is_final) => {
                            broadcast(Control::CheckpointComplete(checkpoint), false);
                            if is_final {
                                final_done = true;
                                broadcast(Control::Finish, false);
                            }
                        }
                        Err(()) => broadcast(Control::AbortCheckpoint(checkpoint), false),
                    }
                }
            }
            TaskEvent::SourceExhausted => exhausted += 1,
            TaskEvent::Finished => {
                finished += 1;
                if finished == tasks {
                    break Ok(());
                }
            }
            TaskEvent::Failed { task, error } => {
                error!(task = %names[task], category = error.category(), "task failed: {}", error_chain(&error));
                break Err(RunError::Task {
                    task: names[task].clone(),
                    category: error.category(),
                    source: error,
                });
            }
        }
    };
    if run_result.is_ok() {
        for h in handles {
            let _ = h.join();
        }
    }
    let _ = std::fs::remove_dir_all(&local_dir);
    run_result?;
    let elapsed = started.elapsed().as_secs_f64();
    let durations = &coord.durations_ms;
    Ok(RunSummary {
        job: manifest.name.clone(),
        restored_from,
        records_in: metrics.records_in(),
        records_out: metrics.records_out(),
        late_records: metrics.late_records(),
        checkpoints_completed: coord.completed,
        checkpoints_failed: coord.failed,
        last_checkpoint: coord.last.as_ref().map(|(id, _)| *id),
        last_checkpoint_location: coord
            .last
            .as_ref()
            .map(|(id, _)| storage.uri(&paths.checkpoint(*id))),
        checkpoint_duration_mean_ms: if durations.is_empty() {
            0.0
        } else {
            durations.iter().sum::<f64>() / durations.len() as f64
        },
        checkpoint_duration_max_ms: durations.iter().copied().fold(0.0, f64::max),
        last_checkpoint_size_bytes: coord.last.as_ref().map(|(_, s)| *s).unwrap_or(0),
        checkpoint_size_max_bytes: coord.max_size,
        elapsed_seconds: elapsed,
        records_per_second: metrics.records_in() as f64 / elapsed.max(1e-9),
        peak_rss_bytes: peak_rss_bytes(),
        output,
    })
}

/// The coordinator's I/O around [`PendingCheckpoint`].
struct Coordinator<'a> {
    storage: &'a dyn CheckpointStorage,
    paths: &'a JobPaths,
    job: &'a str,
    max_parallelism: u32,
    parallelism: u32,
    /// Subtask index of each task.
    task_subtasks: Vec<u32>,
    retained: usize,
    pending: Option<PendingCheckpoint>,
    completed: u64,
    failed: u64,
    durations_ms: Vec<f64>,
    /// Largest checkpoint, bytes.
    max_size: u64,
    /// Last completed checkpoint: (id, state bytes).
    last: Option<(u64, u64)>,
}

impl Coordinator<'_> {
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
            self.failed += 1;
            let _ = self.storage.delete_all(&self.paths.checkpoint(id));
            return Some(Err(()));
        }
        let size = metadata.state_size();
        self.completed += 1;
        self.durations_ms.push(duration_ms);
        self.last = Some((id, size));
        self.max_size = self.max_size.max(size);
        info!(
            checkpoint = id,
            duration_ms = duration_ms as u64,
            size_bytes = size,
            "checkpoint {id} complete"
        );
        self.retain();
        Some(Ok(is_final))
    }

    fn abort(&mut self, id: u64) {
        if self.pending.as_ref().map(|p| p.id) == Some(id) {
            self.pending = None;
        }
        self.failed += 1;
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
        for id in checkpoints_to_delete(&complete, &incomplete, self.retained) {
            if let Err(e) = self.storage.delete_all(&self.paths.checkpoint(id)) {
                warn!(checkpoint = id, "retention: {}", error_chain(&e));
            }
        }
    }
}

/// The local working directory of this job and storage, `<dir>/weir-<job>-<hash of the
/// storage URI>`, emptied, with an exclusive lock held on `<that>.lock` for the run so that
/// two runs of the same job on the same storage cannot interleave.
fn lock_local_dir(
    options: &RunOptions,
    job: &str,
    storage_uri: &str,
) -> Result<(PathBuf, std::fs::File), RunError> {
    let base = options
        .local_state_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let tag = xxhash_rust::xxh3::xxh3_64(storage_uri.as_bytes()) as u32;
    let dir = base.join(format!("weir-{job}-{tag:08x}"));
    let lock_path = dir.with_extension("lock");
    let io = |source| RunError::LocalDir {
        path: lock_path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&base).map_err(io)?;
    let lock = std::fs::File::create(&lock_path).map_err(io)?;
    if lock.try_lock().is_err() {
        return Err(RunError::AlreadyRunning {
            job: job.to_string(),
            storage: storage_uri.to_string(),
        });
    }
    // Working files of an earlier run of this job (killed before it could clean up).
    let _ = std::fs::remove_dir_all(&dir);
    Ok((dir, lock))
}

/// An error with its sources, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn format_watermark(w: i64) -> String {
    match w {
        i64::MIN => "none".into(),
        i64::MAX => "end of input".into(),
        w => chrono::DateTime::from_timestamp_millis(w)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_else(|| w.to_string()),
    }
}

/// Peak resident set size of this process in bytes, from `/proc/self/status` (`VmHWM`).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
