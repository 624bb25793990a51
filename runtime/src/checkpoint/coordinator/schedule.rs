//! When the coordinator starts the next snapshot, and when one in flight has run too long.
//! Pure: time is passed in, so `interval`, `minPause`, `maxConcurrent` and `timeout` are
//! unit-tested with virtual time (the semantics of Flink's `CheckpointRequestDecider`).

use std::time::{Duration, Instant};

use weir_crds::CheckpointSettings;

/// What the coordinator sees when it decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Situation {
    /// Snapshots in flight.
    pub in_flight: usize,
    /// Every source has read all its input: the next checkpoint is the final one.
    pub input_ended: bool,
    /// A savepoint requested through the admin API waits.
    pub savepoint_queued: bool,
    /// A stop with drain waits for its savepoint (taken as the final snapshot).
    pub drain_savepoint: bool,
    /// The final snapshot has completed: nothing more is triggered.
    pub final_done: bool,
}

/// The snapshot to start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing yet.
    Wait,
    /// A periodic checkpoint; `is_final` once the input ended (it lets sinks commit all).
    Checkpoint {
        /// The last snapshot of the run.
        is_final: bool,
    },
    /// The oldest queued savepoint.
    Savepoint,
    /// The drained job's savepoint, as its final snapshot.
    DrainSavepoint,
}

/// The trigger clock of one run.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    min_pause: Duration,
    max_concurrent: usize,
    timeout: Duration,
    last_trigger: Instant,
    /// When the last snapshot completed or was aborted.
    last_end: Option<Instant>,
}

impl Schedule {
    /// A schedule with `settings`' interval, minimum pause, concurrency and timeout, whose
    /// first periodic checkpoint is due one interval after `start`.
    pub fn new(settings: &CheckpointSettings, start: Instant) -> Self {
        Self {
            interval: settings.interval,
            min_pause: settings.min_pause,
            max_concurrent: settings.max_concurrent.max(1),
            timeout: settings.timeout,
            last_trigger: start,
            last_end: None,
        }
    }

    /// What to start at `now`:
    ///
    /// - nothing after the final snapshot;
    /// - snapshots overlap (up to `maxConcurrent` in flight) only with a zero `minPause`,
    ///   and never once the input ended (the final snapshot waits for the ones in flight);
    /// - a drain's savepoint once nothing is in flight and the input ended;
    /// - a queued savepoint as soon as a slot is free (savepoints ignore the interval and
    ///   the pause: someone is waiting for them);
    /// - after the input ended, the final checkpoint once nothing is in flight;
    /// - else a periodic checkpoint when `interval` has passed since the last trigger and
    ///   `minPause` since the last snapshot ended.
    pub fn next(&self, now: Instant, s: Situation) -> Next {
        if s.final_done {
            return Next::Wait;
        }
        let idle = s.in_flight == 0;
        let may_overlap =
            s.in_flight < self.max_concurrent && self.min_pause.is_zero() && !s.input_ended;
        if !(idle || may_overlap) {
            return Next::Wait;
        }
        if idle && s.input_ended && s.drain_savepoint {
            return Next::DrainSavepoint;
        }
        if s.savepoint_queued {
            return Next::Savepoint;
        }
        if s.input_ended {
            return if idle && !s.drain_savepoint {
                Next::Checkpoint { is_final: true }
            } else {
                Next::Wait
            };
        }
        let paused = self
            .last_end
            .is_some_and(|end| now.duration_since(end) < self.min_pause);
        if now.duration_since(self.last_trigger) >= self.interval && !paused {
            Next::Checkpoint { is_final: false }
        } else {
            Next::Wait
        }
    }

    /// Time from `now` until a periodic checkpoint may be due (zero when it is): how long the
    /// coordinator may wait for events before deciding again.
    pub fn due_in(&self, now: Instant) -> Duration {
        let due = self.last_trigger + self.interval;
        let due = match self.last_end {
            Some(end) => due.max(end + self.min_pause),
            None => due,
        };
        due.saturating_duration_since(now)
    }

    /// A periodic checkpoint was started at `now`: the next is due one interval later.
    pub fn periodic_triggered(&mut self, now: Instant) {
        self.last_trigger = now;
    }

    /// Time since the last snapshot ended (completed or aborted), if one has.
    pub fn since_last_end(&self, now: Instant) -> Option<Duration> {
        self.last_end.map(|end| now.duration_since(end))
    }

    /// A snapshot completed or was aborted at `now`: the minimum pause counts from here.
    pub fn ended(&mut self, now: Instant) {
        self.last_end = Some(now);
    }

    /// True when a snapshot started at `started` has run longer than the timeout at `now`.
    pub fn is_expired(&self, started: Instant, now: Instant) -> bool {
        now.duration_since(started) > self.timeout
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn settings(
        interval_ms: u64,
        min_pause_ms: u64,
        max_concurrent: usize,
    ) -> CheckpointSettings {
        CheckpointSettings {
            interval: Duration::from_millis(interval_ms),
            min_pause: Duration::from_millis(min_pause_ms),
            max_concurrent,
            timeout: Duration::from_millis(1000),
            retained: 1,
            incremental: false,
            storage: weir_crds::StorageLocation::Local("/nonexistent".into()),
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    const PERIODIC: Next = Next::Checkpoint { is_final: false };

    #[test]
    fn a_checkpoint_is_due_one_interval_after_the_last_trigger() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(100, 0, 1), t0);
        let idle = Situation::default();
        assert_eq!(s.next(ms(t0, 99), idle), Next::Wait);
        assert_eq!(s.due_in(ms(t0, 60)), Duration::from_millis(40));
        assert_eq!(s.next(ms(t0, 100), idle), PERIODIC);
        s.periodic_triggered(ms(t0, 100));
        let busy = Situation {
            in_flight: 1,
            ..idle
        };
        // One at a time: the next waits for the one in flight even when it is due.
        assert_eq!(s.next(ms(t0, 250), busy), Next::Wait);
        s.ended(ms(t0, 250));
        assert_eq!(s.next(ms(t0, 250), idle), PERIODIC);
    }

    #[test]
    fn max_concurrent_lets_checkpoints_overlap_up_to_the_limit() {
        let t0 = Instant::now();
        let s = Schedule::new(&settings(10, 0, 2), t0);
        let with = |in_flight| Situation {
            in_flight,
            ..Situation::default()
        };
        assert_eq!(s.next(ms(t0, 10), with(1)), PERIODIC);
        assert_eq!(s.next(ms(t0, 10), with(2)), Next::Wait);
    }

    #[test]
    fn min_pause_separates_the_end_of_one_from_the_start_of_the_next() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(10, 500, 3), t0);
        s.periodic_triggered(ms(t0, 10));
        // A pause forbids overlap even with maxConcurrent 3.
        let busy = Situation {
            in_flight: 1,
            ..Situation::default()
        };
        assert_eq!(s.next(ms(t0, 100), busy), Next::Wait);
        s.ended(ms(t0, 400));
        let idle = Situation::default();
        assert_eq!(s.next(ms(t0, 899), idle), Next::Wait);
        assert_eq!(s.due_in(ms(t0, 800)), Duration::from_millis(100));
        assert_eq!(s.next(ms(t0, 900), idle), PERIODIC);
    }

    #[test]
    fn a_queued_savepoint_ignores_interval_and_pause_but_not_the_slots() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&settings(60_000, 60_000, 1), t0);
        s.ended(t0);
        let queued = Situation {
            savepoint_queued: true,
            ..Situation::default()
        };
        assert_eq!(s.next(ms(t0, 1), queued), Next::Savepoint);
        let busy = Situation {
            in_flight: 1,
            ..queued
        };
        assert_eq!(s.next(ms(t0, 1), busy), Next::Wait);
    }

    #[test]
    fn the_final_checkpoint_waits_for_the_ones_in_flight_and_comes_once() {
        let t0 = Instant::now();
        let s = Schedule::new(&settings(60_000, 0, 4), t0);
        let ended = Situation {
            input_ended: true,
            ..Situation::default()
        };
        let busy = Situation {
            in_flight: 1,
            ..ended
        };
        assert_eq!(s.next(t0, busy), Next::Wait);
        assert_eq!(s.next(t0, ended), Next::Checkpoint { is_final: true });
        let done = Situation {
            final_done: true,
            ..ended
        };
        assert_eq!(s.next(t0, done), Next::Wait);
    }

    #[test]
    fn a_drain_takes_its_savepoint_as_the_final_snapshot() {
        let t0 = Instant::now();
        let s = Schedule::new(&settings(10, 0, 1), t0);
        let draining = Situation {
            drain_savepoint: true,
            ..Situation::default()
        };
        // Before the sources drained: periodic checkpoints go on.
        assert_eq!(s.next(ms(t0, 10), draining), PERIODIC);
        let drained = Situation {
            input_ended: true,
            ..draining
        };
        assert_eq!(s.next(ms(t0, 10), drained), Next::DrainSavepoint);
    }

    #[test]
    fn a_snapshot_expires_after_the_timeout() {
        let t0 = Instant::now();
        let s = Schedule::new(&settings(10, 0, 1), t0);
        assert!(!s.is_expired(t0, ms(t0, 1000)));
        assert!(s.is_expired(t0, ms(t0, 1001)));
    }
}
