//! The keyed broadcast operator: runs a [`KeyedBroadcastProcessFunction`] over a keyed stream
//! and a broadcast stream (Flink's `CoBroadcastWithKeyedOperator`). Keyed records and timers
//! behave as in the keyed process operator; broadcast elements update the subtask's
//! [`BroadcastState`], which subtask 0 checkpoints once as union operator state, so that every
//! subtask of a restored job (at any parallelism) starts from the same copy.

use super::keyed_process::Keyed;
use crate::api::broadcast::{
    BroadcastContext, BroadcastState, Connected, KeyedBroadcastProcessFunction, SlotOpener,
};
use crate::api::process::{Output, SideOutputs};
use crate::api::{
    CheckpointBarrier, Collector, Key, OperatorSnapshot, TaskContext, TaskError, Timestamp,
};
use crate::state::timers::TimeDomain;

/// The keyed broadcast operator of one subtask.
pub struct KeyedBroadcastOperator<F: KeyedBroadcastProcessFunction> {
    function: F,
    keyed: Keyed,
    broadcast: BroadcastState,
    subtask: u32,
    next: Box<dyn Collector<F::Out>>,
    key_buf: Vec<u8>,
}

impl<F: KeyedBroadcastProcessFunction> KeyedBroadcastOperator<F> {
    /// Opens the subtask's keyed state and timers, its broadcast state `descriptors` (restored
    /// when the job restores), and the function.
    ///
    /// # Errors
    /// [`TaskError::State`] when the keyed state cannot be opened; [`TaskError::Restore`] when
    /// restored broadcast state does not decode; what the function's `open` returns.
    pub(crate) fn new(
        uid: &str,
        ctx: &TaskContext,
        mut function: F,
        descriptors: &[(&'static str, SlotOpener)],
        next: Box<dyn Collector<F::Out>>,
        sides: SideOutputs,
    ) -> Result<Self, TaskError> {
        let broadcast = BroadcastState::open(uid, descriptors, &ctx.operator_state(uid))?;
        let keyed = Keyed::open(uid, ctx, sides, |c| function.open(c))?;
        Ok(Self {
            function,
            keyed,
            broadcast,
            subtask: ctx.subtask,
            next,
            key_buf: Vec::with_capacity(32),
        })
    }

    /// Fires the timers of `domain` due at `upto` (see [`Keyed::fire`]).
    fn fire(&mut self, domain: TimeDomain, upto: Timestamp) -> Result<(), TaskError> {
        let (function, next, broadcast) = (&mut self.function, &mut self.next, &self.broadcast);
        self.keyed.fire::<F::Key>(domain, upto, |timestamp, ctx| {
            let mut out = Output {
                next: next.as_mut(),
                timestamp,
            };
            function.on_timer(timestamp, ctx, broadcast, &mut out)
        })
    }
}

impl<F: KeyedBroadcastProcessFunction> Collector<Connected<F::Key, F::In, F::Broadcast>>
    for KeyedBroadcastOperator<F>
{
    fn record(
        &mut self,
        ts: Timestamp,
        element: Connected<F::Key, F::In, F::Broadcast>,
    ) -> Result<(), TaskError> {
        let mut out = Output {
            next: self.next.as_mut(),
            timestamp: ts,
        };
        match element {
            Connected::Keyed(rec) => {
                self.key_buf.clear();
                rec.key.encode(&mut self.key_buf);
                let mut ctx = self
                    .keyed
                    .context(&rec.key, rec.key_group, &self.key_buf, ts, None);
                self.function
                    .process_element(rec.value, &mut ctx, &self.broadcast, &mut out)
            }
            Connected::Broadcast(value) => {
                let k = &mut self.keyed;
                let mut ctx = BroadcastContext {
                    uid: &k.uid,
                    subtask: self.subtask,
                    timestamp: ts,
                    watermark: k.watermark,
                    sides: &mut k.sides,
                };
                self.function.process_broadcast_element(
                    value,
                    &mut ctx,
                    &mut self.broadcast,
                    &mut out,
                )
            }
        }
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        if watermark <= self.keyed.watermark {
            return Ok(());
        }
        self.keyed.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark)?;
        self.next.watermark(watermark)?;
        self.keyed.sides.watermark(watermark)
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        let k = &mut self.keyed;
        let mut snapshot = super::keyed_snapshot(&k.uid, &mut k.store, barrier)?;
        // Every subtask holds the same broadcast state: one copy is enough, and a union
        // restore hands it to every subtask.
        if self.subtask == 0 {
            snapshot.operator_state = self.broadcast.snapshot()?;
        }
        out.push(snapshot);
        self.next.checkpoint(barrier, out)?;
        self.keyed.sides.checkpoint(barrier, out)
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.next.checkpoint_complete(id)?;
        self.keyed.sides.checkpoint_complete(id)
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.next.end_of_input()?;
        self.keyed.sides.end_of_input()
    }

    fn processing_time(&mut self, now: Timestamp) -> Result<(), TaskError> {
        self.fire(TimeDomain::ProcessingTime, now)
    }

    fn next_processing_timer(&self) -> Option<Timestamp> {
        self.keyed.timers.next(TimeDomain::ProcessingTime)
    }
}
