//! Barrier alignment and watermark merging for tasks with several inputs. Pure: no channels,
//! no threads; the input task asks what to do.
//!
//! Exactly-once (aligned): an input that delivered barrier n is blocked until every input has
//! delivered it; then the task snapshots and all inputs unblock. At-least-once: nothing is
//! blocked; the task snapshots when the last input delivers barrier n.

/// Tracks barriers of the checkpoint in progress over `n` inputs.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    aligned: bool,
    current: Option<u64>,
    seen: Vec<bool>,
    ended: Vec<bool>,
}

impl BarrierAligner {
    /// An aligner over `inputs` channels; `aligned` = exactly-once.
    pub fn new(inputs: usize, aligned: bool) -> Self {
        Self {
            aligned,
            current: None,
            seen: vec![false; inputs],
            ended: vec![false; inputs],
        }
    }

    /// True when records of `input` must wait (it delivered the barrier being aligned).
    pub fn is_blocked(&self, input: usize) -> bool {
        self.aligned && self.current.is_some() && self.seen[input]
    }

    /// Barrier `id` arrived on `input`. Returns `Some(id)` when the task must snapshot now.
    /// A barrier older than the one in progress is ignored; a newer one abandons the old
    /// checkpoint (it was aborted) and starts aligning the new one.
    pub fn on_barrier(&mut self, input: usize, id: u64) -> Option<u64> {
        match self.current {
            Some(cur) if id < cur => return None,
            Some(cur) if id > cur => self.reset(),
            _ => {}
        }
        self.current = Some(id);
        self.seen[input] = true;
        self.complete_if_aligned()
    }

    /// `input` ended: it counts as aligned from now on. May complete an alignment.
    pub fn on_end_of_input(&mut self, input: usize) -> Option<u64> {
        self.ended[input] = true;
        self.current?;
        self.complete_if_aligned()
    }

    /// Checkpoint `id` was aborted: unblock its inputs.
    pub fn abort(&mut self, id: u64) {
        if self.current == Some(id) {
            self.reset();
        }
    }

    fn complete_if_aligned(&mut self) -> Option<u64> {
        let all = self.seen.iter().zip(&self.ended).all(|(s, e)| *s || *e);
        if all {
            let id = self.current;
            self.reset();
            id
        } else {
            None
        }
    }

    fn reset(&mut self) {
        self.current = None;
        self.seen.iter_mut().for_each(|s| *s = false);
    }
}

/// The minimum watermark over inputs; an ended input no longer holds time back.
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    inputs: Vec<i64>,
    emitted: i64,
}

impl WatermarkValve {
    /// A valve over `inputs` channels, all at the minimum watermark.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: vec![i64::MIN; inputs],
            emitted: i64::MIN,
        }
    }

    /// `input` reports `watermark`; returns the combined watermark when it advanced.
    pub fn update(&mut self, input: usize, watermark: i64) -> Option<i64> {
        self.inputs[input] = self.inputs[input].max(watermark);
        let min = self.inputs.iter().copied().min().unwrap_or(i64::MAX);
        (min > self.emitted).then(|| {
            self.emitted = min;
            min
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_blocks_until_all_inputs_deliver() {
        let mut a = BarrierAligner::new(3, true);
        assert_eq!(a.on_barrier(0, 1), None);
        assert!(a.is_blocked(0) && !a.is_blocked(1));
        assert_eq!(a.on_barrier(2, 1), None);
        assert_eq!(a.on_barrier(1, 1), Some(1));
        assert!(!a.is_blocked(0) && !a.is_blocked(2));
    }

    #[test]
    fn at_least_once_never_blocks() {
        let mut a = BarrierAligner::new(2, false);
        assert_eq!(a.on_barrier(0, 4), None);
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(1, 4), Some(4));
    }

    #[test]
    fn newer_barrier_supersedes_and_ended_inputs_count() {
        let mut a = BarrierAligner::new(2, true);
        assert_eq!(a.on_barrier(0, 1), None);
        assert_eq!(a.on_barrier(0, 2), None);
        assert_eq!(a.on_barrier(1, 1), None, "stale barrier ignored");
        assert_eq!(a.on_end_of_input(1), Some(2));
        a.abort(2);
        assert_eq!(a.on_barrier(0, 3), Some(3), "ended input stays aligned");
    }

    #[test]
    fn abort_unblocks() {
        let mut a = BarrierAligner::new(2, true);
        a.on_barrier(0, 7);
        a.abort(7);
        assert!(!a.is_blocked(0));
    }

    #[test]
    fn valve_emits_the_minimum_once() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.update(0, 10), None);
        assert_eq!(v.update(1, 5), Some(5));
        assert_eq!(v.update(1, 5), None);
        assert_eq!(v.update(1, 20), Some(10));
        assert_eq!(v.update(0, i64::MAX), Some(20));
    }
}
