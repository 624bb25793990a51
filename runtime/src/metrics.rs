//! Job counters shared by the tasks of a process: records in and out, late records,
//! watermarks and backpressure, per subtask. Atomics, updated per batch; read by the progress
//! line, the run summary, the admin API's `/metrics` and a worker's heartbeats.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
struct SubtaskCounters {
    records_in: AtomicU64,
    records_out: AtomicU64,
    shuffled_out: AtomicU64,
    shuffled_in: AtomicU64,
    late_records: AtomicU64,
    backpressure_ns: AtomicU64,
    watermark: AtomicI64,
}

/// Counters of one job run, per subtask.
#[derive(Debug)]
pub struct JobMetrics {
    subtasks: Vec<SubtaskCounters>,
}

/// The counters of one subtask at one moment (what a worker reports in its heartbeats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskFigures {
    /// Subtask index.
    pub subtask: u32,
    /// Records read by the source subtask.
    pub records_in: u64,
    /// Records written by the sink subtask.
    pub records_out: u64,
    /// Records the subtask's source chain sent into the shuffle.
    #[serde(default)]
    pub shuffled_out: u64,
    /// Records the subtask's keyed task received from the shuffle.
    #[serde(default)]
    pub shuffled_in: u64,
    /// Records dropped as late by the window subtask.
    pub late_records: u64,
    /// Time the subtask's shuffle output waited for buffer space downstream (ns).
    pub backpressure_ns: u64,
    /// The keyed subtask's event-time watermark (ms), `i64::MIN` before any.
    pub watermark: i64,
}

impl JobMetrics {
    /// Counters for a job of `parallelism` subtasks per operator.
    pub fn new(parallelism: usize) -> Self {
        Self {
            subtasks: (0..parallelism)
                .map(|_| SubtaskCounters {
                    watermark: AtomicI64::new(i64::MIN),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn at(&self, subtask: u32) -> Option<&SubtaskCounters> {
        self.subtasks.get(subtask as usize)
    }

    /// Counts `n` records read by source subtask `subtask`.
    pub fn add_in(&self, subtask: u32, n: u64) {
        if let Some(c) = self.at(subtask) {
            c.records_in.fetch_add(n, Relaxed);
        }
    }

    /// Counts `n` records written by sink subtask `subtask`.
    pub fn add_out(&self, subtask: u32, n: u64) {
        if let Some(c) = self.at(subtask) {
            c.records_out.fetch_add(n, Relaxed);
        }
    }

    /// Counts `n` records sent into the shuffle by subtask `subtask`.
    pub fn add_shuffled_out(&self, subtask: u32, n: u64) {
        if let Some(c) = self.at(subtask) {
            c.shuffled_out.fetch_add(n, Relaxed);
        }
    }

    /// Counts `n` records received from the shuffle by keyed subtask `subtask`.
    pub fn add_shuffled_in(&self, subtask: u32, n: u64) {
        if let Some(c) = self.at(subtask) {
            c.shuffled_in.fetch_add(n, Relaxed);
        }
    }

    /// Counts records dropped as late by window subtask `subtask`.
    pub fn add_late(&self, subtask: u32, n: u64) {
        if let Some(c) = self.at(subtask) {
            c.late_records.fetch_add(n, Relaxed);
        }
    }

    /// Adds time subtask `subtask` waited for downstream buffer space.
    pub fn add_backpressure(&self, subtask: u32, waited: Duration) {
        if let Some(c) = self.at(subtask) {
            c.backpressure_ns
                .fetch_add(waited.as_nanos() as u64, Relaxed);
        }
    }

    /// Records the event-time watermark (ms) reached by keyed subtask `subtask`.
    pub fn set_watermark(&self, subtask: usize, watermark: i64) {
        if let Some(c) = self.subtasks.get(subtask) {
            c.watermark.store(watermark, Relaxed);
        }
    }

    /// Replaces the counters of the subtasks in `figures` (a worker's report).
    pub fn set_figures(&self, figures: &[SubtaskFigures]) {
        for f in figures {
            if let Some(c) = self.at(f.subtask) {
                c.records_in.store(f.records_in, Relaxed);
                c.records_out.store(f.records_out, Relaxed);
                c.shuffled_out.store(f.shuffled_out, Relaxed);
                c.shuffled_in.store(f.shuffled_in, Relaxed);
                c.late_records.store(f.late_records, Relaxed);
                c.backpressure_ns.store(f.backpressure_ns, Relaxed);
                c.watermark.store(f.watermark, Relaxed);
            }
        }
    }

    /// The counters of the subtasks in `subtasks`.
    pub fn figures(&self, subtasks: &[u32]) -> Vec<SubtaskFigures> {
        subtasks
            .iter()
            .filter_map(|&s| {
                self.at(s).map(|c| SubtaskFigures {
                    subtask: s,
                    records_in: c.records_in.load(Relaxed),
                    records_out: c.records_out.load(Relaxed),
                    shuffled_out: c.shuffled_out.load(Relaxed),
                    shuffled_in: c.shuffled_in.load(Relaxed),
                    late_records: c.late_records.load(Relaxed),
                    backpressure_ns: c.backpressure_ns.load(Relaxed),
                    watermark: c.watermark.load(Relaxed),
                })
            })
            .collect()
    }

    /// The counters of every subtask.
    pub fn all_figures(&self) -> Vec<SubtaskFigures> {
        let all: Vec<u32> = (0..self.subtasks.len() as u32).collect();
        self.figures(&all)
    }

    fn sum(&self, f: impl Fn(&SubtaskCounters) -> &AtomicU64) -> u64 {
        self.subtasks.iter().map(|c| f(c).load(Relaxed)).sum()
    }

    /// Records read by sources since the run started.
    pub fn records_in(&self) -> u64 {
        self.sum(|c| &c.records_in)
    }

    /// Records written by sinks since the run started.
    pub fn records_out(&self) -> u64 {
        self.sum(|c| &c.records_out)
    }

    /// Late records dropped since the run started.
    pub fn late_records(&self) -> u64 {
        self.sum(|c| &c.late_records)
    }

    /// The job's watermark: the minimum over keyed subtasks (ms), `i64::MIN` before any.
    pub fn watermark(&self) -> i64 {
        self.subtasks
            .iter()
            .map(|c| c.watermark.load(Relaxed))
            .min()
            .unwrap_or(i64::MIN)
    }
}
