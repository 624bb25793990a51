//! A records-per-second limit for connectors (demos, tests and benchmarks that need a slow
//! source or a slow sink): sleeps so that `n` records take at least `n / rate` seconds.

use std::time::{Duration, Instant};

/// Limits a stream of records to `rate` records/s on average since its start.
#[derive(Debug, Clone)]
pub struct Throttle {
    rate: Option<u64>,
    started: Instant,
    count: u64,
}

impl Throttle {
    /// A throttle of `rate` records/s; `None` never sleeps.
    pub fn new(rate: Option<u64>) -> Self {
        Self {
            rate: rate.filter(|r| *r > 0),
            started: Instant::now(),
            count: 0,
        }
    }

    /// Counts `n` records and sleeps while ahead of the rate.
    pub fn pass(&mut self, n: u64) {
        let Some(rate) = self.rate else { return };
        self.count += n;
        let due = Duration::from_secs_f64(self.count as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}
