//! The fast path of the commonest window: event-time tumbling windows aligned to the epoch,
//! aggregated incrementally, no allowed lateness and no late side output (Flink's
//! `WindowOperator` with an `AggregateFunction`). The general operator ([`super::operator`])
//! handles every other window; this one keeps no timer state.
//!
//! State: one accumulator per (key, window) in aggregating state `window-contents`, namespace
//! = the window's end (i64 big endian). Timers (one per key and window, at `end - 1`) are not
//! stored: they are derived from the state's (key, namespace) pairs after a restore. Because
//! the timer set holds exactly the (key, window) pairs that have state, a record whose pair is
//! not in it creates its accumulator without reading the backend first.
//! A record is late when its window already fired (`end - 1 <= watermark`, Flink's default
//! allowed lateness of 0); late records are dropped and counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use ahash::AHashSet;

use crate::api::{
    AggregateFunction, CheckpointBarrier, Collector, Key, KeyedRecord, OperatorSnapshot, TaskError,
    TimeWindow, Timestamp, WindowResult, MIN_WATERMARK,
};
use crate::metrics::{JobMetrics, OperatorCounters};
use crate::state::typed::AggregatingState;
use crate::state::{KeyGroup, KeyedStateStore};

/// Name of the accumulator state.
pub const WINDOW_STATE: &str = "window-contents";

/// The window operator of one subtask.
pub struct TumblingAggregateOperator<K, A: AggregateFunction> {
    uid: String,
    store: KeyedStateStore,
    acc: AggregatingState<A>,
    size_ms: i64,
    /// Pending timers: window end -> keys with state in that window, each as key group
    /// (2 bytes, big endian) + key bytes.
    timers: BTreeMap<i64, AHashSet<Box<[u8]>>>,
    watermark: Timestamp,
    next: Box<dyn Collector<WindowResult<K, A::Out>>>,
    metrics: Arc<JobMetrics>,
    counters: Arc<OperatorCounters>,
    subtask: usize,
    key_buf: Vec<u8>,
}

impl<K: Key, A: AggregateFunction> TumblingAggregateOperator<K, A> {
    /// Creates the operator over `store` (already restored) and rebuilds its timers.
    ///
    /// # Errors
    /// [`TaskError::State`] when the state cannot be registered or scanned.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        uid: &str,
        mut store: KeyedStateStore,
        function: Arc<A>,
        size_ms: i64,
        next: Box<dyn Collector<WindowResult<K, A::Out>>>,
        metrics: Arc<JobMetrics>,
        subtask: usize,
    ) -> Result<Self, TaskError> {
        let err = |source| TaskError::State {
            uid: uid.to_string(),
            source,
        };
        let acc = store
            .aggregating_state(WINDOW_STATE, None, function)
            .map_err(err)?;
        let mut timers: BTreeMap<i64, AHashSet<Box<[u8]>>> = BTreeMap::new();
        let mut bad_namespace = false;
        store
            .backend()
            .for_each_key(acc.id(), &mut |kg, key, ns| match ns.try_into() {
                Ok(b) => {
                    timers
                        .entry(i64::from_be_bytes(b))
                        .or_default()
                        .insert(timer_key(kg, key));
                }
                Err(_) => bad_namespace = true,
            })
            .map_err(err)?;
        if bad_namespace {
            return Err(TaskError::Restore(format!(
                "operator `{uid}`: state `{WINDOW_STATE}` holds a namespace that is not a window end"
            )));
        }
        Ok(Self {
            uid: uid.to_string(),
            store,
            acc,
            size_ms,
            timers,
            watermark: MIN_WATERMARK,
            next,
            counters: metrics.operator(uid, subtask as u32),
            metrics,
            subtask,
            key_buf: Vec::with_capacity(32),
        })
    }

    fn state_err(&self, source: crate::state::StateError) -> TaskError {
        TaskError::State {
            uid: self.uid.clone(),
            source,
        }
    }

    fn fire(&mut self, end: i64, keys: AHashSet<Box<[u8]>>) -> Result<(), TaskError> {
        let ns = end.to_be_bytes();
        let window = TimeWindow {
            start: end - self.size_ms,
            end,
        };
        // In the backend's row order (key group, key length, key): neighbouring lookups share
        // most of their search path, which keeps RocksDB's memtable in cache.
        let mut keys: Vec<Box<[u8]>> = keys.into_iter().collect();
        keys.sort_unstable_by(|a, b| (&a[..2], a.len(), &a[2..]).cmp(&(&b[..2], b.len(), &b[2..])));
        for timer in keys {
            let (kg, key_bytes) = (
                KeyGroup(u16::from_be_bytes([timer[0], timer[1]])),
                &timer[2..],
            );
            self.store.set_current_key(kg, key_bytes);
            let result = self
                .acc
                .get(&mut self.store, &ns)
                .map_err(|e| self.state_err(e))?;
            self.acc
                .clear(&mut self.store, &ns)
                .map_err(|e| self.state_err(e))?;
            if let Some(value) = result {
                let key = K::decode(key_bytes)
                    .map_err(|e| TaskError::Restore(format!("operator `{}`: {e}", self.uid)))?;
                self.next
                    .record(end - 1, WindowResult { key, window, value })?;
            }
        }
        Ok(())
    }
}

impl<K: Key, T, A: AggregateFunction<In = T>> Collector<KeyedRecord<K, T>>
    for TumblingAggregateOperator<K, A>
{
    fn record(&mut self, ts: Timestamp, rec: KeyedRecord<K, T>) -> Result<(), TaskError> {
        let start = ts - ts.rem_euclid(self.size_ms);
        let end = start + self.size_ms;
        if end - 1 <= self.watermark {
            OperatorCounters::add(&self.counters.late_records, 1);
            return Ok(());
        }
        self.key_buf.clear();
        self.key_buf
            .extend_from_slice(&rec.key_group.0.to_be_bytes());
        rec.key.encode(&mut self.key_buf);
        self.store
            .set_current_key(rec.key_group, &self.key_buf[2..]);
        let ns = end.to_be_bytes();
        let timers = self.timers.entry(end).or_default();
        let result = if timers.contains(self.key_buf.as_slice()) {
            self.acc.add(&mut self.store, &ns, &rec.value).map(|_| ())
        } else {
            timers.insert(self.key_buf.as_slice().into());
            self.acc.add_to_new(&mut self.store, &ns, &rec.value)
        };
        result.map_err(|e| self.state_err(e))
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        while let Some(entry) = self.timers.first_entry() {
            if entry.key() - 1 > watermark {
                break;
            }
            let (end, keys) = entry.remove_entry();
            self.fire(end, keys)?;
        }
        self.metrics.set_watermark(self.subtask, watermark);
        self.next.watermark(watermark)
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        out.push(crate::operators::keyed_snapshot(
            &self.uid,
            &mut self.store,
            barrier,
        )?);
        self.next.checkpoint(barrier, out)
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.next.checkpoint_complete(id)
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.next.end_of_input()
    }
}

/// A timer entry: key group (2 bytes, big endian) + key bytes.
fn timer_key(kg: KeyGroup, key: &[u8]) -> Box<[u8]> {
    let mut b = Vec::with_capacity(2 + key.len());
    b.extend_from_slice(&kg.0.to_be_bytes());
    b.extend_from_slice(key);
    b.into_boxed_slice()
}
