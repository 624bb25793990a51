//! The source task: reads batches from its reader, assigns event time, emits watermarks
//! after every batch, and injects checkpoint barriers between batches when told to.
//!
//! The watermark survives failures: the largest timestamp seen is checkpointed with the
//! reader's positions (operator state `watermark`), and a restored source emits the watermark
//! it had before its first record, so the restored job makes the same late-data decisions as
//! an uninterrupted one. After a rescale a subtask starts from the smallest restored value
//! (never later than any old subtask was).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Control, Task, TaskEvent, TaskIo};
use crate::api::{
    CheckpointBarrier, Collector, OperatorListState, OperatorSnapshot, RedistributionMode,
    SourceReader, SplitStatus, TaskContext, TaskError, WatermarkStrategy, MAX_WATERMARK,
    MIN_WATERMARK,
};
use crate::metrics::{JobMetrics, OperatorCounters};

/// Name of the operator state list holding a source's positions.
pub(crate) const POSITIONS: &str = "positions";
/// Name of the operator state list holding a source subtask's largest timestamp seen.
pub(crate) const WATERMARK: &str = "watermark";

/// One entry of the `watermark` list: the largest timestamp old subtask `subtask` of
/// `parallelism` had seen, over all its records, or (with `split`) in that split.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WatermarkEntry {
    pub subtask: u32,
    pub parallelism: u32,
    pub max_timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

/// What a source subtask resumes event time from, given the restored `watermark` entries
/// (every old subtask's: the list is union state).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RestoredEventTime {
    /// The subtask's largest timestamp: its own at unchanged parallelism (its splits are the
    /// same), else the smallest of them (its splits may come from any old subtask); none on
    /// a fresh start. A bare number (written before entries named their subtask) counts as
    /// any subtask's.
    pub max_timestamp: Option<i64>,
    /// The largest timestamp per split, whichever subtask read it.
    pub splits: BTreeMap<String, i64>,
}

/// See [`RestoredEventTime`].
pub(crate) fn restored_event_time(
    entries: &[serde_json::Value],
    subtask: u32,
    parallelism: u32,
) -> RestoredEventTime {
    let mut out = RestoredEventTime::default();
    let mut whole: Vec<(Option<WatermarkEntry>, i64)> = Vec::new();
    for v in entries {
        match serde_json::from_value::<WatermarkEntry>(v.clone()) {
            Ok(WatermarkEntry {
                split: Some(split),
                max_timestamp,
                ..
            }) => {
                let ts = out.splits.entry(split).or_insert(max_timestamp);
                *ts = (*ts).max(max_timestamp);
            }
            Ok(e) => whole.push((Some(e.clone()), e.max_timestamp)),
            Err(_) => {
                if let Some(ts) = v.as_i64() {
                    whole.push((None, ts));
                }
            }
        }
    }
    let own = whole.iter().find_map(|(e, ts)| {
        e.as_ref()
            .filter(|e| e.subtask == subtask && e.parallelism == parallelism)
            .map(|_| *ts)
    });
    out.max_timestamp = own.or_else(|| whole.iter().map(|(_, ts)| *ts).min());
    out
}

pub(crate) struct SourceTask<T> {
    uid: String,
    reader: Box<dyn SourceReader<T>>,
    watermarks: WatermarkStrategy<T>,
    chain: Box<dyn Collector<T>>,
    metrics: Arc<JobMetrics>,
    counters: Arc<OperatorCounters>,
    subtask: u32,
    parallelism: u32,
    batch_size: usize,
    max_ts: i64,
    /// Per split (readers with [`SourceReader::splits`]): the largest timestamp seen.
    split_max: BTreeMap<String, i64>,
    last_watermark: i64,
    /// When the last record was read.
    last_record: std::time::Instant,
    /// Whether downstream was told this subtask is idle.
    idle: bool,
    /// Per split, when it last gave records (for per-split idleness).
    split_last_record: BTreeMap<String, std::time::Instant>,
    /// When the task started: a split that never gave a record counts from here.
    started: std::time::Instant,
}

impl<T: Send> SourceTask<T> {
    /// The task of source `uid` in subtask `ctx.subtask`, reading batches of `batch_size`
    /// records from `reader` into `chain`.
    pub fn new(
        uid: String,
        reader: Box<dyn SourceReader<T>>,
        watermarks: WatermarkStrategy<T>,
        chain: Box<dyn Collector<T>>,
        ctx: &TaskContext,
        batch_size: usize,
    ) -> Self {
        let (subtask, parallelism, metrics) = (ctx.subtask, ctx.parallelism, ctx.metrics.clone());
        Self {
            counters: metrics.operator(&uid, subtask),
            uid,
            reader,
            watermarks,
            chain,
            metrics,
            subtask,
            parallelism,
            batch_size,
            max_ts: MIN_WATERMARK,
            split_max: BTreeMap::new(),
            last_watermark: MIN_WATERMARK,
            last_record: std::time::Instant::now(),
            idle: false,
            split_last_record: BTreeMap::new(),
            started: std::time::Instant::now(),
        }
    }

    /// Tracks idleness after a batch of `n` records: with an idle timeout, a subtask that read
    /// nothing for that long tells downstream it is idle; its next record makes it active
    /// again (its watermark is re-sent, so downstream counts it again).
    fn track_idleness(&mut self, n: usize) -> Result<(), TaskError> {
        let Some(timeout) = self.watermarks.idle_timeout_ms else {
            return Ok(());
        };
        if n > 0 {
            self.last_record = std::time::Instant::now();
            if self.idle {
                self.idle = false;
                self.chain.watermark(self.last_watermark)?;
            }
        } else if !self.idle && self.last_record.elapsed().as_millis() as u64 >= timeout {
            self.idle = true;
            self.chain.idle()?;
        }
        Ok(())
    }

    /// Resumes event time from what a restored checkpoint recorded: the first thing the task
    /// emits is that watermark.
    pub fn with_restored_event_time(mut self, restored: RestoredEventTime) -> Self {
        if let Some(ts) = restored.max_timestamp {
            self.max_ts = ts;
        }
        self.split_max = restored.splits;
        self
    }

    /// The largest timestamp event time has reached: over all records, or, for a reader of
    /// splits, the smallest over its unfinished splits of each one's largest (a split not
    /// read yet holds it back). With an idle timeout, splits that gave no record for that
    /// long (processing time) do not count, as Flink's per-split idleness, unless all of
    /// them are idle (then the subtask as a whole is idle, see `track_idleness`).
    fn event_time(&self) -> i64 {
        let splits = self.reader.splits();
        if splits.is_empty() {
            return self.max_ts;
        }
        let unfinished = || splits.iter().filter(|s| !s.ended);
        let of = |s: &SplitStatus| self.split_max.get(&s.id).copied().unwrap_or(MIN_WATERMARK);
        let active = self.watermarks.idle_timeout_ms.and_then(|timeout| {
            let now = std::time::Instant::now();
            let timeout = std::time::Duration::from_millis(timeout);
            unfinished()
                .filter(|s| {
                    let last = self.split_last_record.get(&s.id).unwrap_or(&self.started);
                    now.duration_since(*last) < timeout
                })
                .map(of)
                .min()
        });
        active
            .or_else(|| unfinished().map(of).min())
            .unwrap_or(self.max_ts)
    }

    /// The watermark for the event time reached.
    fn current_watermark(&self) -> i64 {
        let ts = self.event_time();
        if ts == MIN_WATERMARK {
            return MIN_WATERMARK;
        }
        ts.saturating_sub(self.watermarks.out_of_orderness_ms)
            .saturating_sub(1)
    }

    fn checkpoint(&mut self, barrier: CheckpointBarrier, io: &TaskIo) -> Result<(), TaskError> {
        self.reader.prepare_checkpoint(barrier.id)?;
        let mut operator_state = BTreeMap::new();
        operator_state.insert(
            POSITIONS.to_string(),
            OperatorListState {
                mode: RedistributionMode::Union,
                entries: self.reader.positions(),
            },
        );
        operator_state.insert(
            WATERMARK.to_string(),
            OperatorListState {
                mode: RedistributionMode::Union,
                entries: std::iter::once((None, self.max_ts))
                    .chain(
                        self.split_max
                            .iter()
                            .map(|(split, ts)| (Some(split.clone()), *ts)),
                    )
                    .map(|(split, max_timestamp)| {
                        serde_json::to_value(WatermarkEntry {
                            subtask: self.subtask,
                            parallelism: self.parallelism,
                            max_timestamp,
                            split,
                        })
                        .expect("invariant: a watermark entry serializes")
                    })
                    .collect(),
            },
        );
        let mut snapshots = vec![OperatorSnapshot {
            uid: self.uid.clone(),
            keyed: None,
            operator_state,
        }];
        self.chain.checkpoint(barrier, &mut snapshots)?;
        io.send(TaskEvent::Ack {
            task: io.index,
            checkpoint: barrier.id,
            snapshots,
        });
        Ok(())
    }
}

impl<T: Send> Task for SourceTask<T> {
    fn run(mut self: Box<Self>, io: &TaskIo) -> Result<(), TaskError> {
        let mut exhausted = false;
        let mut batch = Vec::with_capacity(self.batch_size);
        let restored = self.current_watermark();
        if restored > self.last_watermark {
            self.last_watermark = restored;
            self.chain.watermark(restored)?;
        }
        loop {
            let control = if exhausted {
                Some(io.control.recv().map_err(|_| TaskError::DownstreamGone)?)
            } else {
                io.control.try_recv().ok()
            };
            if let Some(c) = control {
                match c {
                    Control::TriggerCheckpoint(barrier) => self.checkpoint(barrier, io)?,
                    Control::CheckpointComplete(id) => {
                        self.reader.checkpoint_complete(id);
                        self.chain.checkpoint_complete(id)?
                    }
                    Control::AbortCheckpoint(_) => {}
                    Control::Drain if !exhausted => {
                        self.chain.watermark(MAX_WATERMARK)?;
                        exhausted = true;
                        io.send(TaskEvent::SourceExhausted);
                    }
                    Control::Drain => {}
                    Control::Cancel => return Ok(()),
                    Control::Finish => {
                        self.chain.end_of_input()?;
                        break;
                    }
                }
                continue;
            }
            let more = self.reader.read_batch(&mut batch, self.batch_size)?;
            self.metrics.add_in(self.subtask, batch.len() as u64);
            OperatorCounters::add(&self.counters.records_in, batch.len() as u64);
            let invalid = self.reader.take_invalid_records();
            if invalid > 0 {
                OperatorCounters::add(&self.counters.invalid_records, invalid);
            }
            self.track_idleness(batch.len())?;
            let before = self.max_ts;
            let mut batch_max = MIN_WATERMARK;
            for r in batch.drain(..) {
                let ts = (self.watermarks.timestamp)(&r);
                batch_max = batch_max.max(ts);
                self.chain.record(ts, r)?;
            }
            self.max_ts = before.max(batch_max);
            if batch_max != MIN_WATERMARK && self.watermarks.idle_timeout_ms.is_some() {
                if let Some(split) = self.reader.last_split() {
                    let now = std::time::Instant::now();
                    match self.split_last_record.get_mut(split) {
                        Some(t) => *t = now,
                        None => {
                            self.split_last_record.insert(split.to_string(), now);
                        }
                    }
                }
            }
            if batch_max != MIN_WATERMARK {
                if let Some(split) = self.reader.last_split() {
                    match self.split_max.get_mut(split) {
                        Some(ts) => *ts = (*ts).max(batch_max),
                        None => {
                            self.split_max.insert(split.to_string(), batch_max);
                        }
                    }
                }
            }
            let wm = self.current_watermark();
            if wm > self.last_watermark {
                self.last_watermark = wm;
                self.chain.watermark(wm)?;
            }
            if !more {
                self.chain.watermark(MAX_WATERMARK)?;
                exhausted = true;
                io.send(TaskEvent::SourceExhausted);
            }
        }
        io.send(TaskEvent::Finished);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        subtask: u32,
        parallelism: u32,
        max_ts: i64,
        split: Option<&str>,
    ) -> serde_json::Value {
        serde_json::to_value(WatermarkEntry {
            subtask,
            parallelism,
            max_timestamp: max_ts,
            split: split.map(str::to_string),
        })
        .unwrap()
    }

    #[test]
    fn a_source_resumes_its_own_watermark_and_the_smallest_after_a_rescale() {
        let entries = [entry(0, 2, 900, None), entry(1, 2, 400, None)];
        let at = |s, p| restored_event_time(&entries, s, p).max_timestamp;
        assert_eq!(at(0, 2), Some(900));
        assert_eq!(at(1, 2), Some(400));
        assert_eq!(at(2, 3), Some(400));
        assert_eq!(restored_event_time(&[], 0, 1), RestoredEventTime::default());
        // Bare numbers, as written before entries named their subtask.
        let bare = restored_event_time(&[7.into(), 5.into()], 0, 2);
        assert_eq!(bare.max_timestamp, Some(5));
    }

    #[test]
    fn split_entries_restore_per_split_whichever_subtask_wrote_them() {
        let entries = [
            entry(0, 2, 900, None),
            entry(0, 2, 900, Some("a.csv")),
            entry(1, 2, 300, Some("b.csv")),
        ];
        let r = restored_event_time(&entries, 0, 3);
        assert_eq!(r.splits["a.csv"], 900);
        assert_eq!(r.splits["b.csv"], 300);
        assert_eq!(r.max_timestamp, Some(900), "subtask-wide entries only");
    }
}
