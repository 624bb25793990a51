//! The keyed process operator: runs a [`KeyedProcessFunction`] over a keyed stream with its
//! declared keyed state and its timers (Flink's `KeyedProcessOperator`).
//!
//! Event-time timers fire when the watermark reaches them, before the watermark is passed on
//! (so a downstream operator sees what the timers emitted before it sees the watermark);
//! processing-time timers fire when the task's clock reaches them. The state and the timers
//! are snapshotted together at the barrier.

use crate::api::process::{Context, OpenContext, Output, SideOutputs};
use crate::api::state::DeclaredStates;
use crate::api::{
    CheckpointBarrier, Collector, Key, KeyedProcessFunction, KeyedRecord, OperatorSnapshot,
    TaskContext, TaskError, Timestamp, MIN_WATERMARK,
};
use crate::checkpoint::SnapshotKind;
use crate::state::timers::{TimeDomain, TimerQueue};
use crate::state::typed::Clock;
use crate::state::KeyedStateStore;

/// The keyed process operator of one subtask.
pub struct KeyedProcessOperator<F: KeyedProcessFunction> {
    uid: String,
    function: F,
    store: KeyedStateStore,
    states: DeclaredStates,
    timers: TimerQueue,
    watermark: Timestamp,
    clock: Clock,
    next: Box<dyn Collector<F::Out>>,
    sides: SideOutputs,
    key_buf: Vec<u8>,
}

impl<F: KeyedProcessFunction> KeyedProcessOperator<F> {
    /// Opens the subtask's keyed state (restored when the job restores), its timers, and the
    /// function.
    ///
    /// # Errors
    /// [`TaskError::State`] when the state cannot be opened or restored; what the function's
    /// `open` returns.
    pub(crate) fn new(
        uid: &str,
        ctx: &TaskContext,
        mut function: F,
        next: Box<dyn Collector<F::Out>>,
        sides: SideOutputs,
    ) -> Result<Self, TaskError> {
        let mut store = ctx.keyed_state(uid)?;
        let timers = TimerQueue::open(store.backend()).map_err(|source| TaskError::State {
            uid: uid.to_string(),
            source,
        })?;
        let mut states = DeclaredStates::default();
        function.open(&mut OpenContext {
            uid,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            store: &mut store,
            states: &mut states,
        })?;
        Ok(Self {
            uid: uid.to_string(),
            function,
            store,
            states,
            timers,
            watermark: MIN_WATERMARK,
            clock: ctx.clock.clone(),
            next,
            sides,
            key_buf: Vec::with_capacity(32),
        })
    }

    /// Fires the timers of `domain` due at `upto`, in timestamp order; timers the callbacks
    /// set at or before `upto` fire in the same pass.
    fn fire(&mut self, domain: TimeDomain, upto: Timestamp) -> Result<(), TaskError> {
        loop {
            let popped = self
                .timers
                .pop_due(self.store.backend(), domain, upto)
                .map_err(|source| TaskError::State {
                    uid: self.uid.clone(),
                    source,
                })?;
            let Some(timer) = popped else {
                return Ok(());
            };
            let key = F::Key::decode(&timer.key).map_err(|e| {
                TaskError::Restore(format!("operator `{}`: timer key: {e}", self.uid))
            })?;
            self.store.set_current_key(timer.key_group, &timer.key);
            let mut ctx = Context {
                uid: &self.uid,
                key: &key,
                key_group: timer.key_group,
                key_bytes: &timer.key,
                timestamp: timer.timestamp,
                watermark: self.watermark,
                domain: Some(domain),
                store: &mut self.store,
                states: &self.states,
                timers: &mut self.timers,
                clock: &self.clock,
                sides: &mut self.sides,
            };
            let mut out = Output {
                next: self.next.as_mut(),
                timestamp: timer.timestamp,
            };
            self.function
                .on_timer(timer.timestamp, &mut ctx, &mut out)?;
        }
    }
}

impl<F: KeyedProcessFunction> Collector<KeyedRecord<F::Key, F::In>> for KeyedProcessOperator<F> {
    fn record(&mut self, ts: Timestamp, rec: KeyedRecord<F::Key, F::In>) -> Result<(), TaskError> {
        self.key_buf.clear();
        rec.key.encode(&mut self.key_buf);
        self.store.set_current_key(rec.key_group, &self.key_buf);
        let mut ctx = Context {
            uid: &self.uid,
            key: &rec.key,
            key_group: rec.key_group,
            key_bytes: &self.key_buf,
            timestamp: ts,
            watermark: self.watermark,
            domain: None,
            store: &mut self.store,
            states: &self.states,
            timers: &mut self.timers,
            clock: &self.clock,
            sides: &mut self.sides,
        };
        let mut out = Output {
            next: self.next.as_mut(),
            timestamp: ts,
        };
        self.function.process_element(rec.value, &mut ctx, &mut out)
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark)?;
        self.next.watermark(watermark)?;
        self.sides.watermark(watermark)
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        let keyed = self
            .store
            .snapshot(barrier.id, barrier.kind == SnapshotKind::Checkpoint)
            .map_err(|source| TaskError::State {
                uid: self.uid.clone(),
                source,
            })?;
        out.push(OperatorSnapshot {
            uid: self.uid.clone(),
            keyed: Some(keyed),
            operator_state: Default::default(),
        });
        self.next.checkpoint(barrier, out)?;
        self.sides.checkpoint(barrier, out)
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.next.checkpoint_complete(id)?;
        self.sides.checkpoint_complete(id)
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.next.end_of_input()?;
        self.sides.end_of_input()
    }

    fn processing_time(&mut self, now: Timestamp) -> Result<(), TaskError> {
        self.fire(TimeDomain::ProcessingTime, now)
    }

    fn next_processing_timer(&self) -> Option<Timestamp> {
        self.timers.next(TimeDomain::ProcessingTime)
    }
}
