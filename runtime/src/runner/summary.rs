//! What a finished run reports, and the figures it is built from.

use std::time::Duration;

use serde::Serialize;

use super::RunEnd;
use crate::checkpoint::coordinator::CheckpointStats;
use crate::checkpoint::{SkippedCheckpoint, SnapshotKind};
use crate::metrics::JobMetrics;
use crate::storage::StorageStats;

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Job name.
    pub job: String,
    /// Checkpoint the run restored from, if any (a savepoint's is the id of the checkpoint
    /// it was taken as).
    pub restored_from: Option<u64>,
    /// Whether that was a checkpoint or a savepoint; set exactly when `restored_from` is.
    pub restored_kind: Option<SnapshotKind>,
    /// Where that checkpoint (or savepoint) is: its directory URI; set exactly when
    /// `restored_from` is.
    pub restored_location: Option<String>,
    /// Checkpoints passed over when choosing what to restore, newest first: incomplete ones
    /// (deleted) and damaged ones (kept for inspection), each with the reason.
    pub skipped_checkpoints: Vec<SkippedCheckpoint>,
    /// Records read by sources in this run.
    pub records_in: u64,
    /// Records written by sinks in this run.
    pub records_out: u64,
    /// Records dropped as late.
    pub late_records: u64,
    /// Records sources read that did not deserialize (sent to a dead-letter output).
    pub invalid_records: u64,
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
    /// Most checkpoints (and savepoints) in flight at once (`maxConcurrent` bounds it).
    pub checkpoints_in_flight_max: u64,
    /// Shortest pause between the end of one checkpoint and the trigger of the next periodic
    /// one, ms (`minPause` bounds it; the final checkpoint does not wait); `None` with fewer
    /// than two checkpoints.
    pub checkpoint_pause_min_ms: Option<f64>,
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
    /// Checkpoint storage requests and bytes of the whole run.
    pub storage: StorageStats,
    /// Checkpoint storage requests and bytes of the last completed checkpoint.
    pub last_checkpoint_storage: StorageStats,
    /// Per operator of the job graph (in graph order): records in, out, late and invalid, summed
    /// over its subtasks.
    pub operators: Vec<OperatorSummary>,
    /// How the run ended.
    pub end: RunEnd,
}

/// One operator's records in a run, summed over its subtasks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorSummary {
    /// Operator uid.
    pub uid: String,
    /// Records into the operator (read, for a source).
    pub records_in: u64,
    /// Records out of the operator, main and side outputs.
    pub records_out: u64,
    /// Records it dropped as late.
    pub late_records: u64,
    /// Records it read that did not deserialize (sources).
    pub invalid_records: u64,
}

impl RunSummary {
    /// The summary of a finished run from its counters and checkpoint figures.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        job: &str,
        operators: &[String],
        restored: Option<(u64, String, SnapshotKind)>,
        skipped_checkpoints: Vec<SkippedCheckpoint>,
        metrics: &JobMetrics,
        stats: &CheckpointStats,
        last_checkpoint_location: Option<String>,
        storage: StorageStats,
        elapsed: Duration,
        output: Option<String>,
        end: RunEnd,
    ) -> Self {
        let elapsed = elapsed.as_secs_f64();
        let d = &stats.durations_ms;
        RunSummary {
            job: job.to_string(),
            restored_from: restored.as_ref().map(|(id, _, _)| *id),
            restored_kind: restored.as_ref().map(|(_, _, kind)| *kind),
            restored_location: restored.map(|(_, location, _)| location),
            skipped_checkpoints,
            records_in: metrics.records_in(),
            records_out: metrics.records_out(),
            late_records: metrics.late_records(),
            invalid_records: metrics.invalid_records(),
            checkpoints_completed: stats.completed,
            checkpoints_failed: stats.failed,
            last_checkpoint: stats.last.map(|(id, _)| id),
            last_checkpoint_location,
            checkpoint_duration_mean_ms: if d.is_empty() {
                0.0
            } else {
                d.iter().sum::<f64>() / d.len() as f64
            },
            checkpoint_duration_max_ms: d.iter().copied().fold(0.0, f64::max),
            checkpoints_in_flight_max: stats.max_in_flight,
            checkpoint_pause_min_ms: stats.min_pause_ms,
            last_checkpoint_size_bytes: stats.last.map(|(_, s)| s).unwrap_or(0),
            checkpoint_size_max_bytes: stats.max_size,
            elapsed_seconds: elapsed,
            records_per_second: metrics.records_in() as f64 / elapsed.max(1e-9),
            peak_rss_bytes: peak_rss_bytes(),
            output,
            storage,
            last_checkpoint_storage: stats.last_storage,
            operators: operator_summaries(operators, metrics),
            end,
        }
    }
}

/// Per operator of `uids` (in that order), its counters summed over the subtasks.
fn operator_summaries(uids: &[String], metrics: &JobMetrics) -> Vec<OperatorSummary> {
    let mut by_uid: std::collections::HashMap<&str, OperatorSummary> = uids
        .iter()
        .map(|uid| {
            let o = OperatorSummary {
                uid: uid.clone(),
                records_in: 0,
                records_out: 0,
                late_records: 0,
                invalid_records: 0,
            };
            (uid.as_str(), o)
        })
        .collect();
    for f in metrics.all_figures() {
        for c in &f.operators {
            if let Some(o) = by_uid.get_mut(c.uid.as_str()) {
                o.records_in += c.records_in;
                o.records_out += c.records_out;
                o.late_records += c.late_records;
                o.invalid_records += c.invalid_records;
            }
        }
    }
    uids.iter()
        .filter_map(|uid| by_uid.remove(uid.as_str()))
        .collect()
}

/// Formats a watermark (ms since the epoch) for the progress line.
pub(crate) fn format_watermark(w: i64) -> String {
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
