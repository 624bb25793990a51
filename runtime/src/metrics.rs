//! Job counters shared by all tasks: records in and out, late records, watermarks. Atomics,
//! updated per batch; read by the progress line and the run summary.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Counters of one job run.
#[derive(Debug)]
pub struct JobMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    late_records: AtomicU64,
    watermarks: Vec<AtomicI64>,
}

impl JobMetrics {
    /// Counters for a job of `parallelism` subtasks per operator.
    pub fn new(parallelism: usize) -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            late_records: AtomicU64::new(0),
            watermarks: (0..parallelism).map(|_| AtomicI64::new(i64::MIN)).collect(),
        }
    }

    /// Counts records read by sources.
    pub fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Relaxed);
    }

    /// Counts records written by sinks.
    pub fn add_out(&self, n: u64) {
        self.records_out.fetch_add(n, Relaxed);
    }

    /// Counts records dropped as late by window operators.
    pub fn add_late(&self, n: u64) {
        self.late_records.fetch_add(n, Relaxed);
    }

    /// Records the event-time watermark (ms) reached by a keyed subtask.
    pub fn set_watermark(&self, subtask: usize, watermark: i64) {
        if let Some(w) = self.watermarks.get(subtask) {
            w.store(watermark, Relaxed);
        }
    }

    /// Records read by sources since the run started.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Relaxed)
    }

    /// Records written by sinks since the run started.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Relaxed)
    }

    /// Late records dropped since the run started.
    pub fn late_records(&self) -> u64 {
        self.late_records.load(Relaxed)
    }

    /// The job's watermark: the minimum over keyed subtasks (ms), `i64::MIN` before any.
    pub fn watermark(&self) -> i64 {
        self.watermarks
            .iter()
            .map(|w| w.load(Relaxed))
            .min()
            .unwrap_or(i64::MIN)
    }
}
