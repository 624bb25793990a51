//! Windows over a keyed stream (Flink's `WindowedStream`): which windows a record belongs to
//! ([`WindowAssigner`]: tumbling, sliding, session; event or processing time), what a window
//! computes (`reduce`, `aggregate`, or `process` over all its elements), how long a fired
//! window keeps its state for late records ([`WindowedStream::allowed_lateness`]), and where
//! records later than that go ([`WindowedStream::side_output_late_data`]).
//!
//! ```
//! # use weir_runtime::api::*;
//! # fn demo(bids: KeyedStream<u64, u64>) -> Stream<WindowResult<u64, u64>> {
//! // Bids per auction over the last 10 s, every 2 s; records up to 5 s late update the result.
//! bids.window(WindowAssigner::sliding_event_time(10_000, 2_000))
//!     .allowed_lateness(5_000)
//!     .aggregate("bids-per-auction", Count)
//! # }
//! # struct Count;
//! # impl AggregateFunction for Count {
//! #     type In = u64; type Acc = u64; type Out = u64;
//! #     fn create_accumulator(&self) -> u64 { 0 }
//! #     fn add(&self, _: &u64, acc: &mut u64) { *acc += 1 }
//! #     fn get_result(&self, acc: &u64) -> u64 { *acc }
//! #     fn merge(&self, a: u64, b: u64) -> u64 { a + b }
//! # }
//! ```
//!
//! Semantics follow Flink's `WindowOperator` with the default triggers: an event-time window
//! fires when the watermark reaches its last millisecond (`end - 1`), a processing-time window
//! when the clock does; results carry event time `end - 1`. A record for a window that already
//! fired but is within the allowed lateness fires that window again with the updated result; a
//! record whose every window is past `end - 1 + allowed lateness` is late: it goes to the late
//! side output if one is set and is counted in the operator's late records. Session windows
//! merge when a record's window `[t, t + gap)` overlaps or touches another of its key's
//! sessions; the merged contents survive checkpoints and rescales like all keyed state. When a
//! bounded input ends, its final watermark fires every pending window, processing-time ones
//! included.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::process::Output;
use super::{Key, TaskError, TimeDomain, Timestamp};

/// A window `[start, end)` in ms (event time, or processing time since the epoch).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub struct TimeWindow {
    /// First ms of the window, inclusive.
    pub start: Timestamp,
    /// End of the window, exclusive.
    pub end: Timestamp,
}

impl TimeWindow {
    /// The window's last millisecond, `end - 1`: when it fires, and the event time of its
    /// results (Flink's `maxTimestamp`).
    pub fn max_timestamp(&self) -> Timestamp {
        self.end - 1
    }

    /// True when the two windows overlap or touch (Flink's `TimeWindow.intersects`): session
    /// windows that do are merged.
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// The window as a state namespace: start and end, 8 bytes each, big endian.
    pub(crate) fn namespace(&self) -> [u8; 16] {
        let mut ns = [0u8; 16];
        ns[..8].copy_from_slice(&self.start.to_be_bytes());
        ns[8..].copy_from_slice(&self.end.to_be_bytes());
        ns
    }

    /// The window of a state namespace written by [`TimeWindow::namespace`].
    pub(crate) fn from_namespace(ns: &[u8]) -> Option<TimeWindow> {
        let start = i64::from_be_bytes(ns.get(..8)?.try_into().ok()?);
        let end = i64::from_be_bytes(ns.get(8..16)?.try_into().ok()?);
        (ns.len() == 16).then_some(TimeWindow { start, end })
    }
}

/// A fired window's result for one key (serializable, so a result stream can be keyed again).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct WindowResult<K, O> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The aggregate's result.
    pub value: O,
}

/// What windows a record belongs to (Flink's window assigners). Sizes, slides, gaps and offsets
/// are in ms; windows are aligned to the epoch plus the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    /// Consecutive windows of `size_ms` (Flink's `TumblingEventTimeWindows` and
    /// `TumblingProcessingTimeWindows`).
    Tumbling {
        /// Window length, ms (> 0).
        size_ms: i64,
        /// Shift of the window starts from the epoch, ms (`0 <= offset < size`).
        offset_ms: i64,
        /// Which clock assigns and fires the windows.
        domain: TimeDomain,
    },
    /// Windows of `size_ms` starting every `slide_ms`; a record belongs to
    /// `ceil(size / slide)` of them (Flink's `SlidingEventTimeWindows`).
    Sliding {
        /// Window length, ms (> 0).
        size_ms: i64,
        /// Distance between window starts, ms (> 0).
        slide_ms: i64,
        /// Shift of the window starts from the epoch, ms (`0 <= offset < slide`).
        offset_ms: i64,
        /// Which clock assigns and fires the windows.
        domain: TimeDomain,
    },
    /// Per key, records closer than `gap_ms` to each other form one window (Flink's
    /// `EventTimeSessionWindows.withGap`): a record at `t` opens `[t, t + gap)`, merged with
    /// every session it overlaps or touches.
    Session {
        /// Inactivity that closes a session, ms (> 0).
        gap_ms: i64,
        /// Which clock assigns and fires the windows.
        domain: TimeDomain,
    },
}

impl WindowAssigner {
    /// Tumbling event-time windows of `size_ms`.
    pub const fn tumbling_event_time(size_ms: i64) -> Self {
        WindowAssigner::Tumbling {
            size_ms,
            offset_ms: 0,
            domain: TimeDomain::EventTime,
        }
    }

    /// Tumbling processing-time windows of `size_ms`.
    pub const fn tumbling_processing_time(size_ms: i64) -> Self {
        WindowAssigner::Tumbling {
            size_ms,
            offset_ms: 0,
            domain: TimeDomain::ProcessingTime,
        }
    }

    /// Sliding event-time windows of `size_ms`, one starting every `slide_ms`.
    pub const fn sliding_event_time(size_ms: i64, slide_ms: i64) -> Self {
        WindowAssigner::Sliding {
            size_ms,
            slide_ms,
            offset_ms: 0,
            domain: TimeDomain::EventTime,
        }
    }

    /// Sliding processing-time windows of `size_ms`, one starting every `slide_ms`.
    pub const fn sliding_processing_time(size_ms: i64, slide_ms: i64) -> Self {
        WindowAssigner::Sliding {
            size_ms,
            slide_ms,
            offset_ms: 0,
            domain: TimeDomain::ProcessingTime,
        }
    }

    /// Event-time session windows closed by `gap_ms` without records.
    pub const fn event_time_session(gap_ms: i64) -> Self {
        WindowAssigner::Session {
            gap_ms,
            domain: TimeDomain::EventTime,
        }
    }

    /// Processing-time session windows closed by `gap_ms` without records.
    pub const fn processing_time_session(gap_ms: i64) -> Self {
        WindowAssigner::Session {
            gap_ms,
            domain: TimeDomain::ProcessingTime,
        }
    }

    /// The same windows shifted by `offset_ms` from the epoch (for example -8 h for days in
    /// UTC+8, as Flink's `of(size, offset)`); sessions have no offset and stay unchanged.
    /// The offset is taken modulo the slide (the size for tumbling windows).
    pub const fn with_offset(self, offset_ms: i64) -> Self {
        match self {
            WindowAssigner::Tumbling {
                size_ms, domain, ..
            } => WindowAssigner::Tumbling {
                size_ms,
                offset_ms: if size_ms > 0 {
                    offset_ms.rem_euclid(size_ms)
                } else {
                    offset_ms
                },
                domain,
            },
            WindowAssigner::Sliding {
                size_ms,
                slide_ms,
                domain,
                ..
            } => WindowAssigner::Sliding {
                size_ms,
                slide_ms,
                offset_ms: if slide_ms > 0 {
                    offset_ms.rem_euclid(slide_ms)
                } else {
                    offset_ms
                },
                domain,
            },
            session => session,
        }
    }

    /// Which clock assigns and fires the windows.
    pub fn domain(&self) -> TimeDomain {
        match *self {
            WindowAssigner::Tumbling { domain, .. }
            | WindowAssigner::Sliding { domain, .. }
            | WindowAssigner::Session { domain, .. } => domain,
        }
    }

    /// True for session windows, whose windows merge.
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A message naming the field that is not positive.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: i64| {
            if v > 0 {
                Ok(())
            } else {
                Err(format!("window {name} must be positive, got {v} ms"))
            }
        };
        match *self {
            WindowAssigner::Tumbling { size_ms, .. } => positive("size", size_ms),
            WindowAssigner::Sliding {
                size_ms, slide_ms, ..
            } => positive("size", size_ms).and(positive("slide", slide_ms)),
            WindowAssigner::Session { gap_ms, .. } => positive("gap", gap_ms),
        }
    }

    /// The windows of a record at `timestamp` (event time, or the processing time when it
    /// arrives), in ascending order of start. Assumes [`WindowAssigner::validate`] passed.
    pub fn assign(&self, timestamp: Timestamp, out: &mut Vec<TimeWindow>) {
        out.clear();
        match *self {
            WindowAssigner::Tumbling {
                size_ms, offset_ms, ..
            } => {
                let start = window_start(timestamp, offset_ms, size_ms);
                out.push(TimeWindow {
                    start,
                    end: start + size_ms,
                });
            }
            WindowAssigner::Sliding {
                size_ms,
                slide_ms,
                offset_ms,
                ..
            } => {
                let mut start = window_start(timestamp, offset_ms, slide_ms);
                while start > timestamp - size_ms {
                    out.push(TimeWindow {
                        start,
                        end: start + size_ms,
                    });
                    start -= slide_ms;
                }
                out.reverse();
            }
            WindowAssigner::Session { gap_ms, .. } => out.push(TimeWindow {
                start: timestamp,
                end: timestamp + gap_ms,
            }),
        }
    }
}

/// The start of the window of length `size` (shifted by `offset`) holding `timestamp`
/// (Flink's `TimeWindow.getWindowStartWithOffset`).
fn window_start(timestamp: Timestamp, offset: i64, size: i64) -> Timestamp {
    timestamp - (timestamp - offset).rem_euclid(size)
}

/// A function over all elements of a fired window of one key (Flink's
/// `ProcessWindowFunction`). The elements are kept as list state until the window is purged,
/// so prefer `reduce` or `aggregate` when the result can be computed incrementally.
pub trait ProcessWindowFunction: Clone + Send + Sync + 'static {
    /// The key of the stream.
    type Key: Key;
    /// The window's elements.
    type In: Clone + Send + Serialize + DeserializeOwned + 'static;
    /// Output records.
    type Out: Clone + Send + 'static;

    /// Called when `window` fires for `key` with its elements in arrival order (merged
    /// sessions: the merged windows' elements one after the other). Emitted records carry
    /// event time `window.max_timestamp()` unless given another.
    ///
    /// # Errors
    /// A [`TaskError`] restarts the job from its latest checkpoint.
    fn process(
        &mut self,
        key: &Self::Key,
        window: TimeWindow,
        elements: Vec<Self::In>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(a: WindowAssigner, ts: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        a.assign(ts, &mut out);
        out.iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_windows_hold_their_timestamps_also_before_the_epoch_and_with_an_offset() {
        let t = WindowAssigner::tumbling_event_time(10);
        assert_eq!(windows(t, 0), vec![(0, 10)]);
        assert_eq!(windows(t, 9), vec![(0, 10)]);
        assert_eq!(windows(t, 10), vec![(10, 20)]);
        assert_eq!(windows(t, -1), vec![(-10, 0)]);
        assert_eq!(windows(t.with_offset(3), 2), vec![(-7, 3)]);
        assert_eq!(windows(t.with_offset(-7), 3), vec![(3, 13)]);
    }

    #[test]
    fn a_record_belongs_to_size_over_slide_sliding_windows() {
        let s = WindowAssigner::sliding_event_time(10, 5);
        assert_eq!(windows(s, 7), vec![(0, 10), (5, 15)]);
        assert_eq!(windows(s, 5), vec![(0, 10), (5, 15)]);
        assert_eq!(windows(s, 4), vec![(-5, 5), (0, 10)]);
        let uneven = WindowAssigner::sliding_event_time(10, 3);
        assert_eq!(windows(uneven, 10), vec![(3, 13), (6, 16), (9, 19)]);
        // A slide longer than the size leaves gaps: some records belong to no window.
        let gaps = WindowAssigner::sliding_event_time(2, 5);
        assert_eq!(windows(gaps, 6), vec![(5, 7)]);
        assert_eq!(windows(gaps, 8), vec![]);
        for ts in -50..50 {
            for w in windows(uneven, ts) {
                assert!(w.0 <= ts && ts < w.1, "{ts} in {w:?}");
            }
            assert_eq!(
                windows(uneven, ts).len(),
                4 - usize::from(ts.rem_euclid(3) != 0)
            );
        }
    }

    #[test]
    fn a_session_window_opens_at_the_record_and_merges_with_what_it_touches() {
        let s = WindowAssigner::event_time_session(30);
        assert_eq!(windows(s, 100), vec![(100, 130)]);
        let a = TimeWindow { start: 0, end: 10 };
        assert!(a.intersects(&TimeWindow { start: 10, end: 20 }));
        assert!(!a.intersects(&TimeWindow { start: 11, end: 20 }));
        assert_eq!(
            a.cover(&TimeWindow { start: 5, end: 20 }),
            TimeWindow { start: 0, end: 20 }
        );
    }

    #[test]
    fn windows_round_trip_through_their_namespace() {
        for w in [
            TimeWindow { start: -5, end: 7 },
            TimeWindow {
                start: i64::MIN,
                end: i64::MAX,
            },
        ] {
            assert_eq!(TimeWindow::from_namespace(&w.namespace()), Some(w));
        }
        assert_eq!(TimeWindow::from_namespace(&[0; 8]), None);
    }

    #[test]
    fn sizes_must_be_positive() {
        assert!(WindowAssigner::tumbling_event_time(0).validate().is_err());
        assert!(WindowAssigner::sliding_event_time(10, 0)
            .validate()
            .unwrap_err()
            .contains("slide"));
        assert!(WindowAssigner::event_time_session(-1).validate().is_err());
        assert!(WindowAssigner::sliding_processing_time(10, 2)
            .validate()
            .is_ok());
    }
}
