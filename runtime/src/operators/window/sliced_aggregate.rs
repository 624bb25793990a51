//! The fast path of the commonest windows: event-time tumbling and sliding windows aligned to
//! the epoch, aggregated incrementally, without allowed lateness or late side output (Flink's
//! `WindowOperator` with an `AggregateFunction`). The general operator ([`super::operator`])
//! handles every other window; this one keeps no timer state.
//!
//! Sliding windows are sliced, as Flink's SQL window aggregation slices them (FLIP-145,
//! `SliceAssigners.hopping`): time is cut into slices of `gcd(size, slide)` ms ([`Slicing`]); a
//! record is added to the one accumulator of its slice instead of to each of the `size /
//! slide` windows that contain it, and a window's result merges the accumulators of its
//! slices ([`AggregateFunction::merge`]) when it fires. A tumbling window is the case `slide =
//! size`: one slice per window.
//!
//! State: one accumulator per (key, slice) in aggregating state `window-contents`, namespace =
//! the slice's end (i64 big endian; for tumbling windows the window's end). Which keys have an
//! accumulator in which slice is kept in memory and derived from the state's (key, namespace)
//! pairs after a restore; a key's first record in a slice creates its accumulator without
//! reading the backend. A window `[start, start + size)` (start a multiple of the slide) fires
//! when the watermark reaches `end - 1`, emitting per key with an accumulator in one of its
//! slices the merged result at event time `end - 1`; a slice goes once the last window
//! containing it has fired.
//!
//! The slices of sliding windows outlive the windows that fired before a checkpoint, so for
//! them the end of the last window fired is operator state (`fired-through`, per subtask with
//! its key-group range, union redistributed): a restored job, at any parallelism, never fires a
//! window twice for a key. Records between windows that slide further than their size are
//! dropped (counted as late when behind the watermark), as the general operator drops them.
//!
//! A record is late when the last window containing it has fired (`end - 1 <= watermark`,
//! Flink's default allowed lateness of 0): it is dropped and counted. A record some of whose
//! windows fired joins the ones still to fire.

use std::collections::BTreeMap;
use std::sync::Arc;

use ahash::AHashSet;
use serde::{Deserialize, Serialize};

use super::contents::state_err;
use crate::api::{
    AggregateFunction, CheckpointBarrier, Collector, Key, KeyedRecord, OperatorListState,
    OperatorSnapshot, OperatorStateMap, RedistributionMode, TaskError, TimeWindow, Timestamp,
    WindowResult, MIN_WATERMARK,
};
use crate::metrics::{JobMetrics, OperatorCounters};
use crate::state::typed::AggregatingState;
use crate::state::{KeyGroup, KeyGroupRange, KeyedStateStore};

/// Name of the accumulator state.
pub const WINDOW_STATE: &str = "window-contents";
/// Name of the operator state list recording the last window fired.
pub const FIRED_THROUGH: &str = "fired-through";

/// How windows of `size` sliding by `slide` (both ms, > 0, starts aligned to the epoch) cut
/// time into slices of `gcd(size, slide)` ms. Pure arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slicing {
    size: i64,
    slide: i64,
    slice: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Slicing {
    /// Windows of `size_ms` starting every `slide_ms` (tumbling: `slide_ms = size_ms`); both
    /// are taken as at least 1.
    pub fn new(size_ms: i64, slide_ms: i64) -> Self {
        let (size, slide) = (size_ms.max(1), slide_ms.max(1));
        Self {
            size,
            slide,
            slice: gcd(size, slide),
        }
    }

    /// The end of the slice holding time `ts`.
    pub fn slice_end(&self, ts: Timestamp) -> i64 {
        ts - ts.rem_euclid(self.slice) + self.slice
    }

    /// The end of the first window containing the slice ending at `slice_end`.
    pub fn first_window_end(&self, slice_end: i64) -> i64 {
        // The smallest start (a multiple of the slide) with start + size >= slice_end.
        let lowest = slice_end - self.size;
        lowest + (self.slide - lowest.rem_euclid(self.slide)) % self.slide + self.size
    }

    /// The end of the last window containing the slice ending at `slice_end`.
    pub fn last_window_end(&self, slice_end: i64) -> i64 {
        let start = slice_end - self.slice;
        start - start.rem_euclid(self.slide) + self.size
    }

    /// True when no window contains the slice ending at `slice_end`: a gap between windows
    /// that slide further than their size.
    pub fn in_no_window(&self, slice_end: i64) -> bool {
        self.first_window_end(slice_end) > self.last_window_end(slice_end)
    }

    /// True when a slice can outlive a window that fired (it belongs to several windows:
    /// the size exceeds the slide); tumbling windows' slices go when their window fires.
    pub fn slices_outlive_windows(&self) -> bool {
        self.size > self.slide
    }

    /// True when the window ending at `window_end` contains the slice ending at `slice_end`.
    pub fn contains(&self, window_end: i64, slice_end: i64) -> bool {
        slice_end <= window_end && slice_end > window_end - self.size
    }
}

/// One `fired-through` entry: windows ending at or before `end` have fired for the keys of
/// `key_groups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FiredThrough {
    key_groups: KeyGroupRange,
    end: i64,
}

/// The window operator of one subtask.
pub struct SlicedAggregateOperator<K, A: AggregateFunction> {
    uid: String,
    store: KeyedStateStore,
    acc: AggregatingState<A>,
    function: Arc<A>,
    slicing: Slicing,
    key_groups: KeyGroupRange,
    /// Slice end -> keys with an accumulator in that slice, each as key group (2 bytes, big
    /// endian) + key bytes.
    slices: BTreeMap<i64, AHashSet<Box<[u8]>>>,
    /// The end of the last window this subtask fired.
    fired_through: Option<i64>,
    /// Restored entries later than `fired_through` for some of this subtask's key groups:
    /// their keys skip the windows up to the entry's end.
    restored: Vec<FiredThrough>,
    watermark: Timestamp,
    next: Box<dyn Collector<WindowResult<K, A::Out>>>,
    metrics: Arc<JobMetrics>,
    counters: Arc<OperatorCounters>,
    subtask: usize,
    key_buf: Vec<u8>,
}

/// What the operator needs besides its state and function.
pub struct SlicedAggregateSetup<K, O> {
    /// Window length and distance between window starts.
    pub slicing: Slicing,
    /// The key groups this subtask owns.
    pub key_groups: KeyGroupRange,
    /// The restored operator state of the uid (empty on a fresh start).
    pub restored: OperatorStateMap,
    /// Where results go.
    pub next: Box<dyn Collector<WindowResult<K, O>>>,
    /// The job's metrics.
    pub metrics: Arc<JobMetrics>,
    /// This subtask's index.
    pub subtask: usize,
}

impl<K: Key, A: AggregateFunction> SlicedAggregateOperator<K, A> {
    /// Creates the operator over `store` (already restored) and rebuilds its slices.
    ///
    /// # Errors
    /// [`TaskError::State`] when the state cannot be registered or scanned;
    /// [`TaskError::Restore`] when a namespace is not a slice end or `fired-through` does not
    /// parse.
    pub fn new(
        uid: &str,
        mut store: KeyedStateStore,
        function: Arc<A>,
        setup: SlicedAggregateSetup<K, A::Out>,
    ) -> Result<Self, TaskError> {
        let err = |source| TaskError::State {
            uid: uid.to_string(),
            source,
        };
        let acc = store
            .aggregating_state(WINDOW_STATE, None, function.clone())
            .map_err(err)?;
        let mut slices: BTreeMap<i64, AHashSet<Box<[u8]>>> = BTreeMap::new();
        let mut bad_namespace = false;
        store
            .backend()
            .for_each_key(acc.id(), &mut |kg, key, ns| match ns.try_into() {
                Ok(b) => {
                    slices
                        .entry(i64::from_be_bytes(b))
                        .or_default()
                        .insert(timer_key(kg, key));
                }
                Err(_) => bad_namespace = true,
            })
            .map_err(err)?;
        if bad_namespace {
            return Err(TaskError::Restore(format!(
                "operator `{uid}`: state `{WINDOW_STATE}` holds a namespace that is not a slice end"
            )));
        }
        let mut restored = Vec::new();
        for v in setup
            .restored
            .get(FIRED_THROUGH)
            .into_iter()
            .flatten()
            .cloned()
        {
            let entry: FiredThrough = serde_json::from_value(v).map_err(|e| {
                TaskError::Restore(format!("operator `{uid}`: `{FIRED_THROUGH}`: {e}"))
            })?;
            if let Some(key_groups) = entry.key_groups.intersect(&setup.key_groups) {
                restored.push(FiredThrough {
                    key_groups,
                    end: entry.end,
                });
            }
        }
        let fired_through = fired_through_of(setup.key_groups, &restored);
        let mut op = Self {
            uid: uid.to_string(),
            store,
            acc,
            function,
            slicing: setup.slicing,
            key_groups: setup.key_groups,
            slices,
            fired_through,
            restored,
            watermark: MIN_WATERMARK,
            next: setup.next,
            counters: setup.metrics.operator(uid, setup.subtask as u32),
            metrics: setup.metrics,
            subtask: setup.subtask,
            key_buf: Vec::with_capacity(32),
        };
        op.forget_passed_entries();
        Ok(op)
    }

    /// Drops restored entries this subtask's own `fired_through` has caught up with.
    fn forget_passed_entries(&mut self) {
        if let Some(f) = self.fired_through {
            self.restored.retain(|e| e.end > f);
        }
    }

    /// The end of the next window to fire, if any slice is pending.
    fn next_window_end(&self) -> Option<i64> {
        let (&first, _) = self.slices.first_key_value()?;
        let end = self.slicing.first_window_end(first);
        Some(match self.fired_through {
            Some(f) => end.max(f + self.slicing.slide),
            None => end,
        })
    }

    /// Fires the window ending at `end`: per key with an accumulator in one of its slices,
    /// the merged result; removes the slices no later window contains.
    fn fire(&mut self, end: i64) -> Result<(), TaskError> {
        let window = TimeWindow {
            start: end - self.slicing.size,
            end,
        };
        let in_window: Vec<(i64, bool)> = self
            .slices
            .range(window.start + 1..=end)
            .map(|(&s, _)| (s, self.slicing.last_window_end(s) <= end))
            .collect();
        let sets: Vec<&AHashSet<Box<[u8]>>> =
            in_window.iter().map(|(s, _)| &self.slices[s]).collect();
        let mut keys: Vec<&[u8]> = sets
            .iter()
            .flat_map(|set| set.iter().map(|k| &k[..]))
            .collect();
        // In the backend's row order (key group, key length, key): neighbouring lookups share
        // most of their search path, which keeps RocksDB's memtable in cache.
        keys.sort_unstable_by(|a, b| (&a[..2], a.len(), &a[2..]).cmp(&(&b[..2], b.len(), &b[2..])));
        if sets.len() > 1 {
            keys.dedup();
        }
        for timer in keys {
            let (kg, key_bytes) = (
                KeyGroup(u16::from_be_bytes([timer[0], timer[1]])),
                &timer[2..],
            );
            self.store.set_current_key(kg, key_bytes);
            let mut merged: Option<A::Acc> = None;
            for (&(s, expires), set) in in_window.iter().zip(&sets) {
                if sets.len() > 1 && !set.contains(timer) {
                    continue;
                }
                let ns = s.to_be_bytes();
                let part = self.acc.accumulator(&mut self.store, &ns);
                let part = part.map_err(state_err(&self.uid))?;
                if expires {
                    let cleared = self.acc.clear(&mut self.store, &ns);
                    cleared.map_err(state_err(&self.uid))?;
                }
                merged = match (merged, part) {
                    (Some(a), Some(b)) => Some(self.function.merge(a, b)),
                    (a, b) => a.or(b),
                };
            }
            let Some(acc) = merged else { continue };
            if fired_before(&self.restored, timer, end) {
                continue;
            }
            let key = K::decode(key_bytes)
                .map_err(|e| TaskError::Restore(format!("operator `{}`: {e}", self.uid)))?;
            let value = self.function.get_result(&acc);
            self.next
                .record(end - 1, WindowResult { key, window, value })?;
        }
        for (s, expires) in in_window {
            if expires {
                self.slices.remove(&s);
            }
        }
        self.fired_through = Some(end);
        self.forget_passed_entries();
        Ok(())
    }

    /// The `fired-through` entries of this subtask's snapshot (none for tumbling windows: no
    /// slice outlives its window, so a restore cannot fire one twice).
    fn fired_entries(&self) -> Vec<serde_json::Value> {
        if !self.slicing.slices_outlive_windows() {
            return Vec::new();
        }
        let own = self.fired_through.map(|end| FiredThrough {
            key_groups: self.key_groups,
            end,
        });
        own.into_iter()
            .chain(self.restored.iter().copied())
            .map(|e| serde_json::to_value(e).expect("invariant: entries serialize"))
            .collect()
    }
}

impl<K: Key, T, A: AggregateFunction<In = T>> Collector<KeyedRecord<K, T>>
    for SlicedAggregateOperator<K, A>
{
    fn record(&mut self, ts: Timestamp, rec: KeyedRecord<K, T>) -> Result<(), TaskError> {
        let slice = self.slicing.slice_end(ts);
        if self.slicing.in_no_window(slice) {
            // Between windows: dropped, and counted as late once the watermark has passed it
            // (as the general operator does).
            if ts <= self.watermark {
                OperatorCounters::add(&self.counters.late_records, 1);
            }
            return Ok(());
        }
        let last = self.slicing.last_window_end(slice);
        self.key_buf.clear();
        self.key_buf
            .extend_from_slice(&rec.key_group.0.to_be_bytes());
        rec.key.encode(&mut self.key_buf);
        // Late: its last window fired (the watermark passed it, or it fired before a
        // restore, when the watermark starts again from the beginning).
        if last - 1 <= self.watermark
            || self.fired_through.is_some_and(|f| last <= f)
            || fired_before(&self.restored, &self.key_buf, last)
        {
            OperatorCounters::add(&self.counters.late_records, 1);
            return Ok(());
        }
        self.store
            .set_current_key(rec.key_group, &self.key_buf[2..]);
        let ns = slice.to_be_bytes();
        let keys = self.slices.entry(slice).or_default();
        let result = if keys.contains(self.key_buf.as_slice()) {
            self.acc.add(&mut self.store, &ns, &rec.value).map(|_| ())
        } else {
            keys.insert(self.key_buf.as_slice().into());
            self.acc.add_to_new(&mut self.store, &ns, &rec.value)
        };
        result.map_err(state_err(&self.uid))
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        while let Some(end) = self.next_window_end() {
            if end - 1 > watermark {
                break;
            }
            self.fire(end)?;
        }
        self.metrics.set_watermark(self.subtask, watermark);
        self.next.watermark(watermark)
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        let mut snapshot = crate::operators::keyed_snapshot(&self.uid, &mut self.store, barrier)?;
        let entries = self.fired_entries();
        if !entries.is_empty() {
            snapshot.operator_state.insert(
                FIRED_THROUGH.to_string(),
                OperatorListState {
                    mode: RedistributionMode::Union,
                    entries,
                },
            );
        }
        out.push(snapshot);
        self.next.checkpoint(barrier, out)
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.next.checkpoint_complete(id)
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.next.end_of_input()
    }
}

/// What the subtask owning `key_groups` has fired after a restore: per key group the latest
/// end an entry gives it, the earliest of those; `None` when a key group has no entry (its old
/// subtask had fired nothing).
fn fired_through_of(key_groups: KeyGroupRange, entries: &[FiredThrough]) -> Option<i64> {
    key_groups
        .iter()
        .map(|kg| {
            entries
                .iter()
                .filter(|e| e.key_groups.contains(kg))
                .map(|e| e.end)
                .max()
        })
        .min()
        .flatten()
}

/// True when restored entries say window `end` already fired for the key of `timer` (key
/// group + key).
fn fired_before(restored: &[FiredThrough], timer: &[u8], end: i64) -> bool {
    if restored.is_empty() {
        return false;
    }
    let kg = KeyGroup(u16::from_be_bytes([timer[0], timer[1]]));
    restored
        .iter()
        .any(|e| e.end >= end && e.key_groups.contains(kg))
}

/// A slice entry: key group (2 bytes, big endian) + key bytes.
fn timer_key(kg: KeyGroup, key: &[u8]) -> Box<[u8]> {
    let mut b = Vec::with_capacity(2 + key.len());
    b.extend_from_slice(&kg.0.to_be_bytes());
    b.extend_from_slice(key);
    b.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window end containing `ts`, by brute force over the window starts.
    fn windows_of(size: i64, slide: i64, ts: i64) -> Vec<i64> {
        (-100..100)
            .map(|k| k * slide)
            .filter(|&start| start <= ts && ts < start + size)
            .map(|start| start + size)
            .collect()
    }

    #[test]
    fn slices_lie_in_exactly_the_windows_of_their_records() {
        for (size, slide) in [(10, 2), (10, 4), (6, 4), (10, 10), (3, 7), (5, 1)] {
            let s = Slicing::new(size, slide);
            for ts in -60..60 {
                let slice = s.slice_end(ts);
                assert!(
                    slice - s.slice <= ts && ts < slice,
                    "{size}/{slide} at {ts}"
                );
                let expected = windows_of(size, slide, ts);
                let by_slice: Vec<i64> = (-100..100)
                    .map(|k| k * slide + size)
                    .filter(|&end| s.contains(end, slice))
                    .collect();
                assert_eq!(by_slice, expected, "{size}/{slide} at {ts}");
                assert_eq!(
                    s.in_no_window(slice),
                    expected.is_empty(),
                    "{size}/{slide} at {ts}"
                );
                if let (Some(first), Some(last)) = (expected.first(), expected.last()) {
                    assert_eq!(s.first_window_end(slice), *first, "{size}/{slide} at {ts}");
                    assert_eq!(s.last_window_end(slice), *last, "{size}/{slide} at {ts}");
                }
            }
        }
    }

    #[test]
    fn a_restored_subtask_has_fired_what_all_its_key_groups_have() {
        let entry = |start, end, fired| FiredThrough {
            key_groups: KeyGroupRange { start, end },
            end: fired,
        };
        let range = KeyGroupRange { start: 0, end: 9 };
        // Key groups 5..=9 came from a subtask that had fired nothing.
        assert_eq!(
            fired_through_of(range, &[entry(0, 4, 100), entry(0, 4, 120)]),
            None
        );
        assert_eq!(
            fired_through_of(
                range,
                &[entry(0, 4, 100), entry(0, 4, 120), entry(5, 9, 110)]
            ),
            Some(110)
        );
        assert_eq!(fired_through_of(range, &[entry(0, 20, 90)]), Some(90));
        let restored = [entry(0, 4, 120)];
        assert!(fired_before(&restored, &[0, 3, 7], 120));
        assert!(!fired_before(&restored, &[0, 3, 7], 122));
        assert!(!fired_before(&restored, &[0, 5, 7], 100));
    }

    #[test]
    fn a_tumbling_window_is_one_slice() {
        let s = Slicing::new(10, 10);
        assert_eq!(s.slice_end(13), 20);
        assert_eq!(s.first_window_end(20), 20);
        assert_eq!(s.last_window_end(20), 20);
    }
}
