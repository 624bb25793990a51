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
use crate::state::timers::{TimeDomain, TimerQueue};
use crate::state::typed::Clock;
use crate::state::{KeyGroup, KeyedStateStore};

/// What a function call sees besides its key: the operator's state, timers, time and side
/// outputs. Shared by the keyed operators that run user functions.
pub(super) struct Keyed {
    pub uid: String,
    pub store: KeyedStateStore,
    pub states: DeclaredStates,
    pub timers: TimerQueue,
    pub watermark: Timestamp,
    pub clock: Clock,
    pub sides: SideOutputs,
}

impl Keyed {
    /// Opens the subtask's keyed state of `uid` (restored when the job restores) and its
    /// timers, and runs the function's `open`, which declares its states.
    ///
    /// # Errors
    /// [`TaskError::State`] when the state cannot be opened or restored; what `open` returns.
    pub fn open(
        uid: &str,
        ctx: &TaskContext,
        sides: SideOutputs,
        open: impl FnOnce(&mut OpenContext<'_>) -> Result<(), TaskError>,
    ) -> Result<Self, TaskError> {
        let mut store = ctx.keyed_state(uid)?;
        let timers = TimerQueue::open(store.backend()).map_err(|source| TaskError::State {
            uid: uid.to_string(),
            source,
        })?;
        let mut states = DeclaredStates::default();
        open(&mut OpenContext {
            uid,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            store: &mut store,
            states: &mut states,
        })?;
        Ok(Self {
            uid: uid.to_string(),
            store,
            states,
            timers,
            watermark: MIN_WATERMARK,
            clock: ctx.clock.clone(),
            sides,
        })
    }

    /// The context of a call for `key` (encoded `key_bytes`, in `key_group`) at `timestamp`;
    /// `domain` is set for timer callbacks.
    pub fn context<'a, K>(
        &'a mut self,
        key: &'a K,
        key_group: KeyGroup,
        key_bytes: &'a [u8],
        timestamp: Timestamp,
        domain: Option<TimeDomain>,
    ) -> Context<'a, K> {
        self.store.set_current_key(key_group, key_bytes);
        Context {
            uid: &self.uid,
            key,
            key_group,
            key_bytes,
            timestamp,
            watermark: self.watermark,
            domain,
            store: &mut self.store,
            states: &self.states,
            timers: &mut self.timers,
            clock: &self.clock,
            sides: &mut self.sides,
        }
    }

    /// Fires the timers of `domain` due at `upto`, in timestamp order, calling `on_timer`
    /// with each one's timestamp and its key's context; timers the callbacks set at or before
    /// `upto` fire in the same pass. Each timer leaves the queue and state before its call.
    ///
    /// # Errors
    /// State failures; a stored timer key that does not decode as `K`; what `on_timer`
    /// returns.
    pub fn fire<K: Key>(
        &mut self,
        domain: TimeDomain,
        upto: Timestamp,
        mut on_timer: impl FnMut(Timestamp, &mut Context<'_, K>) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        loop {
            let Some(timer) = self
                .timers
                .pop_due(self.store.backend(), domain, upto)
                .map_err(|e| self.state_err(e))?
            else {
                return Ok(());
            };
            let key = K::decode(&timer.key).map_err(|e| {
                TaskError::Restore(format!("operator `{}`: timer key: {e}", self.uid))
            })?;
            let mut ctx = self.context(
                &key,
                timer.key_group,
                &timer.key,
                timer.timestamp,
                Some(domain),
            );
            on_timer(timer.timestamp, &mut ctx)?;
        }
    }

    /// `source` as the task error of this operator's state.
    pub fn state_err(&self, source: crate::state::StateError) -> TaskError {
        TaskError::State {
            uid: self.uid.clone(),
            source,
        }
    }
}

/// The keyed process operator of one subtask.
pub struct KeyedProcessOperator<F: KeyedProcessFunction> {
    function: F,
    keyed: Keyed,
    next: Box<dyn Collector<F::Out>>,
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
        let keyed = Keyed::open(uid, ctx, sides, |c| function.open(c))?;
        Ok(Self {
            function,
            keyed,
            next,
            key_buf: Vec::with_capacity(32),
        })
    }

    /// Fires the timers of `domain` due at `upto` (see [`Keyed::fire`]).
    fn fire(&mut self, domain: TimeDomain, upto: Timestamp) -> Result<(), TaskError> {
        let (function, next) = (&mut self.function, &mut self.next);
        self.keyed.fire::<F::Key>(domain, upto, |timestamp, ctx| {
            let mut out = Output {
                next: next.as_mut(),
                timestamp,
            };
            function.on_timer(timestamp, ctx, &mut out)
        })
    }
}

impl<F: KeyedProcessFunction> Collector<KeyedRecord<F::Key, F::In>> for KeyedProcessOperator<F> {
    fn record(&mut self, ts: Timestamp, rec: KeyedRecord<F::Key, F::In>) -> Result<(), TaskError> {
        self.key_buf.clear();
        rec.key.encode(&mut self.key_buf);
        let mut ctx = self
            .keyed
            .context(&rec.key, rec.key_group, &self.key_buf, ts, None);
        let mut out = Output {
            next: self.next.as_mut(),
            timestamp: ts,
        };
        self.function.process_element(rec.value, &mut ctx, &mut out)
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
        out.push(super::keyed_snapshot(&k.uid, &mut k.store, barrier)?);
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
