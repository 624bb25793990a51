//! Session merging, pure: a key's sessions are a list of windows sorted by start, no two of
//! which intersect (overlap or touch); a record's window is merged with every session it
//! intersects (Flink's `MergingWindowSet.addWindow` over `TimeWindow.mergeWindows`).

use crate::api::TimeWindow;

/// What adding a window to a key's sessions changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMerge {
    /// The session the record belongs to now.
    pub result: TimeWindow,
    /// Sessions that existed before and are now part of `result` (never `result` itself):
    /// their contents move into `result`'s, their timers go.
    pub merged: Vec<TimeWindow>,
    /// False when `result` is a session that existed before unchanged (the record fell inside
    /// it): no state moves, no timer changes.
    pub changed: bool,
}

/// Adds `new` to `sessions` (sorted by start, pairwise not intersecting) and keeps that
/// invariant.
pub fn add_window(sessions: &mut Vec<TimeWindow>, new: TimeWindow) -> SessionMerge {
    let touching: Vec<usize> = sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| s.intersects(&new))
        .map(|(i, _)| i)
        .collect();
    if let [only] = touching.as_slice() {
        let s = sessions[*only];
        if s.start <= new.start && new.end <= s.end {
            return SessionMerge {
                result: s,
                merged: Vec::new(),
                changed: false,
            };
        }
    }
    let result = touching.iter().fold(new, |acc, &i| acc.cover(&sessions[i]));
    let merged: Vec<TimeWindow> = touching.iter().map(|&i| sessions[i]).collect();
    sessions.retain(|s| !s.intersects(&new));
    let at = sessions.partition_point(|s| s.start < result.start);
    sessions.insert(at, result);
    SessionMerge {
        result,
        merged,
        changed: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> TimeWindow {
        TimeWindow { start, end }
    }

    #[test]
    fn a_window_inside_a_session_changes_nothing() {
        let mut s = vec![w(0, 30)];
        let m = add_window(&mut s, w(5, 20));
        assert_eq!(
            m,
            SessionMerge {
                result: w(0, 30),
                merged: vec![],
                changed: false
            }
        );
        assert_eq!(s, vec![w(0, 30)]);
    }

    #[test]
    fn a_window_between_sessions_merges_both_and_touching_counts() {
        let mut s = vec![w(0, 10), w(20, 30), w(50, 60)];
        let m = add_window(&mut s, w(10, 20));
        assert_eq!(m.result, w(0, 30));
        assert_eq!(m.merged, vec![w(0, 10), w(20, 30)]);
        assert!(m.changed);
        assert_eq!(s, vec![w(0, 30), w(50, 60)]);
    }

    #[test]
    fn a_new_session_is_inserted_in_order_and_an_extension_replaces_its_session() {
        let mut s = vec![w(0, 10), w(50, 60)];
        let m = add_window(&mut s, w(25, 35));
        assert_eq!((m.result, m.merged.len()), (w(25, 35), 0));
        assert_eq!(s, vec![w(0, 10), w(25, 35), w(50, 60)]);
        let m = add_window(&mut s, w(55, 70));
        assert_eq!((m.result, m.merged), (w(50, 70), vec![w(50, 60)]));
        assert_eq!(s, vec![w(0, 10), w(25, 35), w(50, 70)]);
    }

    #[test]
    fn sessions_stay_sorted_and_apart_for_any_order_of_records() {
        // Every order of the same records ends in the same sessions.
        let times = [3, 40, 17, 90, 61, 25, 8, 75, 52, 33];
        let gap = 10;
        let expected = {
            let mut sorted = times.to_vec();
            sorted.sort();
            let mut s: Vec<TimeWindow> = Vec::new();
            for t in sorted {
                add_window(&mut s, w(t, t + gap));
            }
            s
        };
        for rot in 0..times.len() {
            let mut s = Vec::new();
            for &t in times.iter().cycle().skip(rot).take(times.len()) {
                add_window(&mut s, w(t, t + gap));
                for pair in s.windows(2) {
                    assert!(pair[0].end < pair[1].start, "{s:?}");
                }
            }
            assert_eq!(s, expected);
        }
    }
}
