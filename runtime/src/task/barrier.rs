//! Barrier alignment and watermark merging for tasks with several inputs. Pure: no channels,
//! no threads; the input task asks what to do.
//!
//! Exactly-once (aligned): an input that delivered barrier n is blocked until every input has
//! delivered it; then the task snapshots and all inputs unblock. At-least-once: nothing is
//! blocked; the task snapshots when the last input delivers barrier n.

use std::collections::{BTreeMap, BTreeSet};

/// Tracks the barriers of the checkpoints in progress (several with `maxConcurrent > 1`)
/// over `n` inputs. Barriers arrive in id order on every input, so checkpoints complete in
/// id order; aligning blocks an input only for the oldest checkpoint in progress.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    aligned: bool,
    /// Checkpoints in progress: which inputs delivered their barrier.
    pending: BTreeMap<u64, Vec<bool>>,
    ended: Vec<bool>,
    /// Highest checkpoint completed here.
    done: u64,
    /// Aborted checkpoints above `done`: their late barriers are ignored.
    aborted: BTreeSet<u64>,
}

impl BarrierAligner {
    /// An aligner over `inputs` channels; `aligned` = exactly-once.
    pub fn new(inputs: usize, aligned: bool) -> Self {
        Self {
            aligned,
            pending: BTreeMap::new(),
            ended: vec![false; inputs],
            done: 0,
            aborted: BTreeSet::new(),
        }
    }

    /// True when records of `input` must wait (it delivered the barrier being aligned).
    pub fn is_blocked(&self, input: usize) -> bool {
        self.aligned
            && self
                .pending
                .first_key_value()
                .is_some_and(|(_, seen)| seen[input])
    }

    /// Barrier `id` arrived on `input`. Returns the checkpoints the task must snapshot now,
    /// in id order. A barrier of a completed or aborted checkpoint is ignored.
    pub fn on_barrier(&mut self, input: usize, id: u64) -> Vec<u64> {
        if id <= self.done || self.aborted.contains(&id) {
            return Vec::new();
        }
        let n = self.ended.len();
        self.pending.entry(id).or_insert_with(|| vec![false; n])[input] = true;
        self.complete()
    }

    /// `input` ended: it counts as aligned from now on. May complete alignments.
    pub fn on_end_of_input(&mut self, input: usize) -> Vec<u64> {
        self.ended[input] = true;
        self.complete()
    }

    /// Checkpoint `id` was aborted: stop aligning for it and unblock its inputs.
    pub fn abort(&mut self, id: u64) {
        self.pending.remove(&id);
        if id > self.done {
            self.aborted.insert(id);
        }
    }

    fn complete(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((&id, seen)) = self.pending.first_key_value() {
            if !seen.iter().zip(&self.ended).all(|(s, e)| *s || *e) {
                break;
            }
            self.pending.pop_first();
            self.done = id;
            out.push(id);
        }
        let done = self.done;
        self.aborted.retain(|a| *a > done);
        out
    }
}

/// The minimum watermark over inputs; an ended input no longer holds time back.
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    inputs: Vec<i64>,
    idle: Vec<bool>,
    emitted: i64,
}

impl WatermarkValve {
    /// A valve over `inputs` channels, all at the minimum watermark.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: vec![i64::MIN; inputs],
            idle: vec![false; inputs],
            emitted: i64::MIN,
        }
    }

    /// `input` reports `watermark` (and is active again); returns the combined watermark
    /// when it advanced.
    pub fn update(&mut self, input: usize, watermark: i64) -> Option<i64> {
        self.inputs[input] = self.inputs[input].max(watermark);
        self.idle[input] = false;
        self.advance()
    }

    /// `input` is idle: the combined watermark is the smallest of the active inputs' (and
    /// does not move while every input is idle, as Flink's `StatusWatermarkValve`); returns
    /// it when it advanced.
    pub fn set_idle(&mut self, input: usize) -> Option<i64> {
        self.idle[input] = true;
        self.advance()
    }

    fn advance(&mut self) -> Option<i64> {
        let min = self
            .inputs
            .iter()
            .zip(&self.idle)
            .filter(|(_, idle)| !**idle)
            .map(|(w, _)| *w)
            .min()?;
        (min > self.emitted).then(|| {
            self.emitted = min;
            min
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Vec<u64> = Vec::new();

    #[test]
    fn aligned_blocks_until_all_inputs_deliver() {
        let mut a = BarrierAligner::new(3, true);
        assert_eq!(a.on_barrier(0, 1), NONE);
        assert!(a.is_blocked(0) && !a.is_blocked(1));
        assert_eq!(a.on_barrier(2, 1), NONE);
        assert_eq!(a.on_barrier(1, 1), vec![1]);
        assert!(!a.is_blocked(0) && !a.is_blocked(2));
    }

    #[test]
    fn at_least_once_never_blocks_and_overlapping_checkpoints_complete_in_order() {
        let mut a = BarrierAligner::new(2, false);
        assert_eq!(a.on_barrier(0, 4), NONE);
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(0, 5), NONE, "a second checkpoint in flight");
        assert_eq!(a.on_barrier(1, 4), vec![4]);
        assert_eq!(a.on_barrier(1, 5), vec![5]);
    }

    #[test]
    fn late_barriers_of_aborted_or_completed_checkpoints_are_ignored() {
        let mut a = BarrierAligner::new(2, true);
        assert_eq!(a.on_barrier(0, 1), NONE);
        a.abort(1);
        assert!(!a.is_blocked(0));
        assert_eq!(a.on_barrier(1, 1), NONE, "late barrier of the aborted one");
        assert!(!a.is_blocked(1));
        assert_eq!(a.on_barrier(0, 2), NONE);
        assert_eq!(a.on_barrier(1, 2), vec![2]);
        assert_eq!(a.on_barrier(1, 2), NONE, "completed");
    }

    #[test]
    fn ended_inputs_count_as_aligned() {
        let mut a = BarrierAligner::new(2, false);
        assert_eq!(a.on_barrier(0, 1), NONE);
        assert_eq!(a.on_barrier(0, 2), NONE);
        assert_eq!(a.on_end_of_input(1), vec![1, 2]);
        assert_eq!(a.on_barrier(0, 3), vec![3], "an ended input stays aligned");
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

    #[test]
    fn idle_inputs_do_not_hold_the_watermark_back_until_they_speak_again() {
        let mut v = WatermarkValve::new(3);
        assert_eq!(v.update(0, 10), None);
        assert_eq!(v.update(1, 20), None, "input 2 has said nothing");
        assert_eq!(v.set_idle(2), Some(10));
        assert_eq!(v.update(0, 30), Some(20));
        assert_eq!(v.set_idle(0), None, "input 1 still holds 20");
        assert_eq!(v.set_idle(1), None, "all idle: nothing moves");
        assert_eq!(
            v.update(2, 5),
            None,
            "an input back at 5 never moves it backwards"
        );
        assert_eq!(v.update(1, 40), None, "input 2 is active again at 5");
        assert_eq!(v.update(2, 50), Some(40));
    }
}
