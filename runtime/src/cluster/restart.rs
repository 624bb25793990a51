//! The restart strategy after a failure: exponential backoff with a limit (Flink's
//! `exponential-delay` restart strategy without jitter). Pure.

use std::time::Duration;

/// When to restart a failed job, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartStrategy {
    /// Delay before the first restart.
    pub initial_backoff: Duration,
    /// Largest delay.
    pub max_backoff: Duration,
    /// Factor between consecutive delays.
    pub multiplier: f64,
    /// Restarts allowed before the job is FAILED.
    pub max_restarts: u32,
}

impl Default for RestartStrategy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
            max_restarts: 10,
        }
    }
}

impl RestartStrategy {
    /// The delay before restart number `restarts + 1`, or `None` when `restarts` restarts
    /// already used up the limit.
    pub fn delay(&self, restarts: u32) -> Option<Duration> {
        if restarts >= self.max_restarts {
            return None;
        }
        let factor = self.multiplier.max(1.0).powi(restarts.min(64) as i32);
        let secs =
            (self.initial_backoff.as_secs_f64() * factor).min(self.max_backoff.as_secs_f64());
        Some(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_the_limit_ends_restarts() {
        let s = RestartStrategy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            multiplier: 2.0,
            max_restarts: 5,
        };
        let delays: Vec<_> = (0..6).map(|r| s.delay(r)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(500)),
                Some(Duration::from_millis(500)),
                None
            ]
        );
        let none = RestartStrategy {
            max_restarts: 0,
            ..s
        };
        assert_eq!(none.delay(0), None);
    }
}
