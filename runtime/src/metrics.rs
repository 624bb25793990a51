//! Job counters shared by the tasks of a process: per subtask, records read by sources and
//! written by sinks, watermarks and backpressure; per operator (by uid, from the job graph)
//! and subtask, records in and out, late records and records that did not deserialize. Atomics; read by the progress line, the
//! run summary, the admin API's `/metrics` and a worker's heartbeats.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
struct SubtaskCounters {
    records_in: AtomicU64,
    records_out: AtomicU64,
    backpressure_ns: AtomicU64,
    watermark: AtomicI64,
}

/// The counters of one operator subtask. Each is written by the one thread that runs the
/// subtask, so [`OperatorCounters::add`] is a load and a store, not a locked read-modify-write;
/// aligned to a cache line so that subtasks on other threads never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct OperatorCounters {
    /// Records into the operator (for a source: read).
    pub records_in: AtomicU64,
    /// Records out of the operator, main and side outputs.
    pub records_out: AtomicU64,
    /// Records the operator dropped as late.
    pub late_records: AtomicU64,
    /// Records a source read that did not deserialize (sent to its dead-letter output).
    pub invalid_records: AtomicU64,
}

impl OperatorCounters {
    /// Adds `n` to `counter`, which only the calling thread writes.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed) + n, Relaxed);
    }
}

/// Counters of one job run, per subtask and per operator subtask.
#[derive(Debug)]
pub struct JobMetrics {
    subtasks: Vec<SubtaskCounters>,
    /// Per operator uid, per subtask.
    operators: BTreeMap<String, Vec<Arc<OperatorCounters>>>,
}

/// The counters of one operator subtask at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorFigures {
    /// Operator uid.
    pub uid: String,
    /// Records in (read, for a source).
    pub records_in: u64,
    /// Records out, main and side outputs.
    pub records_out: u64,
    /// Records dropped as late.
    pub late_records: u64,
    /// Records that did not deserialize (sources; sent to their dead-letter output).
    #[serde(default)]
    pub invalid_records: u64,
}

/// The counters of one subtask at one moment (what a worker reports in its heartbeats).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskFigures {
    /// Subtask index.
    pub subtask: u32,
    /// Records read by the subtask's sources.
    pub records_in: u64,
    /// Records written by the subtask's sinks.
    pub records_out: u64,
    /// Time the subtask's exchange outputs waited for buffer space downstream (ns).
    pub backpressure_ns: u64,
    /// The subtask's event-time watermark (ms) as its keyed operators saw it, `i64::MIN`
    /// before any.
    pub watermark: i64,
    /// Per operator of the job, this subtask's counters.
    #[serde(default)]
    pub operators: Vec<OperatorFigures>,
}

impl JobMetrics {
    /// Counters for a job of `parallelism` subtasks of each of the operators `uids`.
    pub fn new(parallelism: usize, uids: &[String]) -> Self {
        Self {
            subtasks: (0..parallelism)
                .map(|_| SubtaskCounters {
                    watermark: AtomicI64::new(i64::MIN),
                    ..Default::default()
                })
                .collect(),
            operators: uids
                .iter()
                .map(|u| {
                    let counters = (0..parallelism).map(|_| Arc::default()).collect();
                    (u.clone(), counters)
                })
                .collect(),
        }
    }

    /// The counters of subtask `subtask` of operator `uid`; a detached set (counted, never
    /// reported) for an operator or subtask the metrics were not made for.
    pub fn operator(&self, uid: &str, subtask: u32) -> Arc<OperatorCounters> {
        self.operators
            .get(uid)
            .and_then(|v| v.get(subtask as usize))
            .cloned()
            .unwrap_or_default()
    }

    /// The operator uids counted, in uid order.
    pub fn operator_uids(&self) -> impl Iterator<Item = &str> {
        self.operators.keys().map(String::as_str)
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
                c.backpressure_ns.store(f.backpressure_ns, Relaxed);
                c.watermark.store(f.watermark, Relaxed);
            }
            for o in &f.operators {
                let c = self.operator(&o.uid, f.subtask);
                c.records_in.store(o.records_in, Relaxed);
                c.records_out.store(o.records_out, Relaxed);
                c.late_records.store(o.late_records, Relaxed);
                c.invalid_records.store(o.invalid_records, Relaxed);
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
                    backpressure_ns: c.backpressure_ns.load(Relaxed),
                    watermark: c.watermark.load(Relaxed),
                    operators: self
                        .operators
                        .iter()
                        .filter_map(|(uid, v)| {
                            let o = v.get(s as usize)?;
                            Some(OperatorFigures {
                                uid: uid.clone(),
                                records_in: o.records_in.load(Relaxed),
                                records_out: o.records_out.load(Relaxed),
                                late_records: o.late_records.load(Relaxed),
                                invalid_records: o.invalid_records.load(Relaxed),
                            })
                        })
                        .collect(),
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

    /// Late records dropped by any operator since the run started.
    pub fn late_records(&self) -> u64 {
        self.operators
            .values()
            .flatten()
            .map(|o| o.late_records.load(Relaxed))
            .sum()
    }

    /// Records that did not deserialize, over every source, since the run started.
    pub fn invalid_records(&self) -> u64 {
        self.operators
            .values()
            .flatten()
            .map(|o| o.invalid_records.load(Relaxed))
            .sum()
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
