//! The timer service of a keyed operator (Flink's `InternalTimerService`): event-time and
//! processing-time timers per (key, namespace, timestamp). Pure apart from the backend it is
//! given.
//!
//! Timers are keyed state. Each domain is a value state of the operator (`_timers/event-time`,
//! `_timers/processing-time`) whose namespace is the timer's timestamp (i64 big endian)
//! followed by the timer's own namespace, with an empty value; so timers are snapshotted per
//! key group with the rest of the operator's state, redistributed on rescale like any keyed
//! state, and restored into either backend. In memory, a priority queue per domain (ordered
//! by timestamp, then key group, key and namespace) is rebuilt from the backend on open.
//!
//! A timer is set at most once per (key, namespace, timestamp): registering it again does
//! nothing. A timer fires once: it is removed from the queue and from state before its
//! callback runs, so a checkpoint taken after it fired no longer holds it, and one taken
//! before still does (the restored job fires it again, exactly as the uninterrupted one did
//! after that checkpoint).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{KeyGroup, KeyRef, KeyedStateBackend, StateError, StateId, StateInfo, StateKind};

/// Name of the state holding event-time timers.
pub const EVENT_TIME_TIMERS: &str = "_timers/event-time";
/// Name of the state holding processing-time timers.
pub const PROCESSING_TIME_TIMERS: &str = "_timers/processing-time";
/// State names starting with this are reserved for the runtime.
pub const RESERVED_PREFIX: &str = "_timers/";

/// The clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timestamp.
    EventTime,
    /// Fires when the wall clock reaches the timestamp.
    ProcessingTime,
}

/// One timer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// When it fires, ms (event time or processing time since the epoch).
    pub timestamp: i64,
    /// Key group of its key.
    pub key_group: KeyGroup,
    /// The encoded key ([`crate::api::Key::encode`]).
    pub key: Box<[u8]>,
    /// The operator's namespace for it (empty for process functions; a window for windows).
    pub namespace: Box<[u8]>,
}

impl Timer {
    fn state_namespace(&self) -> Vec<u8> {
        let mut ns = Vec::with_capacity(8 + self.namespace.len());
        ns.extend_from_slice(&self.timestamp.to_be_bytes());
        ns.extend_from_slice(&self.namespace);
        ns
    }
}

#[derive(Debug)]
struct Queue {
    state: StateId,
    timers: BTreeSet<Timer>,
}

/// The timers of one operator subtask, in both domains.
#[derive(Debug)]
pub struct TimerQueue {
    event: Queue,
    processing: Queue,
}

impl TimerQueue {
    /// Registers the timer states in `backend` and loads the timers it holds (restored ones).
    ///
    /// # Errors
    /// Backend failures; [`StateError::MalformedSnapshot`] when a stored timer's namespace is
    /// shorter than its 8-byte timestamp.
    pub fn open(backend: &mut dyn KeyedStateBackend) -> Result<Self, StateError> {
        let mut load = |name: &str| -> Result<Queue, StateError> {
            let state = backend.register(&StateInfo::new(name, StateKind::Value))?;
            let mut timers = BTreeSet::new();
            let mut malformed = false;
            backend.for_each_key(state, &mut |key_group, key, ns| match ns
                .get(..8)
                .map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
            {
                Some(timestamp) => {
                    timers.insert(Timer {
                        timestamp,
                        key_group,
                        key: key.into(),
                        namespace: ns[8..].into(),
                    });
                }
                None => malformed = true,
            })?;
            if malformed {
                return Err(StateError::MalformedSnapshot(format!(
                    "state `{name}` holds a timer without its 8-byte timestamp"
                )));
            }
            Ok(Queue { state, timers })
        };
        Ok(Self {
            event: load(EVENT_TIME_TIMERS)?,
            processing: load(PROCESSING_TIME_TIMERS)?,
        })
    }

    fn queue(&mut self, domain: TimeDomain) -> &mut Queue {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Sets `timer` in `domain`; false when it was already set.
    ///
    /// # Errors
    /// Backend failures.
    pub fn register(
        &mut self,
        backend: &mut dyn KeyedStateBackend,
        domain: TimeDomain,
        timer: Timer,
    ) -> Result<bool, StateError> {
        let q = self.queue(domain);
        if q.timers.contains(&timer) {
            return Ok(false);
        }
        let key = KeyRef {
            key_group: timer.key_group,
            key: &timer.key,
        };
        backend.put(q.state, key, &timer.state_namespace(), &[])?;
        q.timers.insert(timer);
        Ok(true)
    }

    /// Removes `timer` from `domain`; false when it was not set.
    ///
    /// # Errors
    /// Backend failures.
    pub fn delete(
        &mut self,
        backend: &mut dyn KeyedStateBackend,
        domain: TimeDomain,
        timer: &Timer,
    ) -> Result<bool, StateError> {
        let q = self.queue(domain);
        if !q.timers.remove(timer) {
            return Ok(false);
        }
        let key = KeyRef {
            key_group: timer.key_group,
            key: &timer.key,
        };
        backend.remove(q.state, key, &timer.state_namespace())?;
        Ok(true)
    }

    /// The earliest timestamp set in `domain`.
    pub fn next(&self, domain: TimeDomain) -> Option<i64> {
        match domain {
            TimeDomain::EventTime => &self.event,
            TimeDomain::ProcessingTime => &self.processing,
        }
        .timers
        .first()
        .map(|t| t.timestamp)
    }

    /// Removes and returns the earliest timer of `domain` with `timestamp <= upto`, if any,
    /// deleting it from state.
    ///
    /// # Errors
    /// Backend failures.
    pub fn pop_due(
        &mut self,
        backend: &mut dyn KeyedStateBackend,
        domain: TimeDomain,
        upto: i64,
    ) -> Result<Option<Timer>, StateError> {
        let q = self.queue(domain);
        match q.timers.first() {
            Some(t) if t.timestamp <= upto => {}
            _ => return Ok(None),
        }
        let timer = q.timers.pop_first().expect("invariant: checked above");
        let key = KeyRef {
            key_group: timer.key_group,
            key: &timer.key,
        };
        backend.remove(q.state, key, &timer.state_namespace())?;
        Ok(Some(timer))
    }

    /// Number of timers set in `domain`.
    pub fn len(&self, domain: TimeDomain) -> usize {
        match domain {
            TimeDomain::EventTime => self.event.timers.len(),
            TimeDomain::ProcessingTime => self.processing.timers.len(),
        }
    }

    /// True when no timer is set in either domain.
    pub fn is_empty(&self) -> bool {
        self.event.timers.is_empty() && self.processing.timers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::heap::HeapBackend;
    use crate::state::{KeyGroupRange, KeyedStateInput};
    use TimeDomain::*;

    fn timer(ts: i64, kg: u16, key: &str) -> Timer {
        Timer {
            timestamp: ts,
            key_group: KeyGroup(kg),
            key: key.as_bytes().into(),
            namespace: Box::new([]),
        }
    }

    fn range(start: u16, end: u16) -> KeyGroupRange {
        KeyGroupRange { start, end }
    }

    fn drain(q: &mut TimerQueue, b: &mut HeapBackend, d: TimeDomain, upto: i64) -> Vec<Timer> {
        std::iter::from_fn(|| q.pop_due(b, d, upto).unwrap()).collect()
    }

    #[test]
    fn timers_fire_in_timestamp_order_once_and_deleted_ones_never() {
        let mut b = HeapBackend::new(range(0, 127));
        let mut q = TimerQueue::open(&mut b).unwrap();
        assert!(q.register(&mut b, EventTime, timer(30, 1, "a")).unwrap());
        assert!(q.register(&mut b, EventTime, timer(10, 5, "b")).unwrap());
        assert!(!q.register(&mut b, EventTime, timer(10, 5, "b")).unwrap());
        q.register(&mut b, EventTime, timer(20, 2, "c")).unwrap();
        q.register(&mut b, ProcessingTime, timer(15, 2, "c"))
            .unwrap();
        assert!(q.delete(&mut b, EventTime, &timer(20, 2, "c")).unwrap());
        assert!(!q.delete(&mut b, EventTime, &timer(20, 2, "c")).unwrap());
        assert_eq!(q.next(EventTime), Some(10));
        assert_eq!(q.next(ProcessingTime), Some(15));
        let fired: Vec<i64> = drain(&mut q, &mut b, EventTime, 29)
            .iter()
            .map(|t| t.timestamp)
            .collect();
        assert_eq!(fired, vec![10]);
        assert_eq!(
            drain(&mut q, &mut b, EventTime, 30),
            vec![timer(30, 1, "a")]
        );
        assert!(drain(&mut q, &mut b, EventTime, i64::MAX).is_empty());
        assert_eq!(q.len(ProcessingTime), 1);
        // Fired and deleted timers are gone from state too: a reopened queue has only the
        // processing-time timer.
        let mut again = TimerQueue::open(&mut b).unwrap();
        assert_eq!(again.len(EventTime), 0);
        assert_eq!(
            drain(&mut again, &mut b, ProcessingTime, 15),
            vec![timer(15, 2, "c")]
        );
    }

    #[test]
    fn timers_snapshot_per_key_group_and_restore_into_the_owning_range() {
        let mut b = HeapBackend::new(range(0, 7));
        let mut q = TimerQueue::open(&mut b).unwrap();
        for kg in 0..8u16 {
            q.register(&mut b, EventTime, timer(100 + kg as i64, kg, "k"))
                .unwrap();
            q.register(&mut b, ProcessingTime, timer(7, kg, "p"))
                .unwrap();
        }
        let snap = b.snapshot(0).unwrap();
        // A new subtask owning key groups 2..=4 gets exactly their timers.
        let mut restored = HeapBackend::new(range(2, 4));
        restored
            .restore(&KeyedStateInput {
                range: range(2, 4),
                sections: vec![snap.section()],
            })
            .unwrap();
        let mut q = TimerQueue::open(&mut restored).unwrap();
        let kgs: Vec<u16> = drain(&mut q, &mut restored, EventTime, i64::MAX)
            .iter()
            .map(|t| t.key_group.0)
            .collect();
        assert_eq!(kgs, vec![2, 3, 4]);
        assert_eq!(q.len(ProcessingTime), 3);
    }
}

#[cfg(test)]
mod redistribution {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::state::heap::HeapBackend;
    use crate::state::key_group::{key_group_for_bytes, key_group_range};
    use crate::state::KeyedStateInput;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Timers set on `old` subtasks and restored on `new` ones land in the subtask that
        /// owns their key group and nowhere else, and none is lost.
        #[test]
        fn timers_land_in_the_owning_subtask_at_any_parallelism(
            max_parallelism in 1u32..=96,
            old in 1u32..=8,
            new in 1u32..=8,
            timers in proptest::collection::vec((any::<u16>(), -1000i64..1000, any::<bool>()), 0..200),
        ) {
            let old = old.min(max_parallelism);
            let new = new.min(max_parallelism);
            let mut all = BTreeSet::new();
            let mut snapshots = Vec::new();
            for s in 0..old {
                let range = key_group_range(s, max_parallelism, old);
                let mut b = HeapBackend::new(range);
                let mut q = TimerQueue::open(&mut b).unwrap();
                for (key, ts, event) in &timers {
                    let key = key.to_be_bytes();
                    let kg = key_group_for_bytes(&key, max_parallelism);
                    if !range.contains(kg) {
                        continue;
                    }
                    let domain = if *event { TimeDomain::EventTime } else { TimeDomain::ProcessingTime };
                    let t = Timer { timestamp: *ts, key_group: kg, key: key.into(), namespace: Box::new([]) };
                    q.register(&mut b, domain, t.clone()).unwrap();
                    all.insert((domain == TimeDomain::EventTime, t));
                }
                snapshots.push(b.snapshot(0).unwrap());
            }
            let mut restored = BTreeSet::new();
            for s in 0..new {
                let range = key_group_range(s, max_parallelism, new);
                let mut b = HeapBackend::new(range);
                b.restore(&KeyedStateInput {
                    range,
                    sections: snapshots
                        .iter()
                        .filter(|k| k.range.intersect(&range).is_some())
                        .map(|k| k.section())
                        .collect(),
                })
                .unwrap();
                let mut q = TimerQueue::open(&mut b).unwrap();
                for domain in [TimeDomain::EventTime, TimeDomain::ProcessingTime] {
                    while let Some(t) = q.pop_due(&mut b, domain, i64::MAX).unwrap() {
                        prop_assert!(range.contains(t.key_group), "timer of {:?} on subtask {s} owning {range:?}", t.key_group);
                        prop_assert!(restored.insert((domain == TimeDomain::EventTime, t)), "restored twice");
                    }
                }
            }
            prop_assert_eq!(restored, all);
        }
    }
}
