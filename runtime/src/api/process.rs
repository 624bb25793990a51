//! Keyed process functions (Flink's `KeyedProcessFunction`): user code that sees one record
//! at a time with its key, its event time and the watermark, reads and writes the keyed state
//! it declared, sets event-time and processing-time timers, and emits to its main output and
//! to side outputs.
//!
//! ```
//! use weir_runtime::api::{Context, KeyedProcessFunction, OpenContext, Output, TaskError,
//!     Timestamp, ValueStateDescriptor};
//!
//! /// Counts records per key and emits the count one minute (event time) after the first.
//! #[derive(Clone)]
//! struct CountPerMinute;
//!
//! const COUNT: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count");
//!
//! impl KeyedProcessFunction for CountPerMinute {
//!     type Key = String;
//!     type In = String;
//!     type Out = (String, u64);
//!
//!     fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
//!         ctx.declare(&COUNT)
//!     }
//!
//!     fn process_element(&mut self, _value: String, ctx: &mut Context<'_, String>,
//!         _out: &mut Output<'_, (String, u64)>) -> Result<(), TaskError> {
//!         let count = ctx.value(&COUNT).get()?.unwrap_or(0);
//!         if count == 0 {
//!             let at = ctx.timestamp() + 60_000;
//!             ctx.timer_service().register_event_time_timer(at)?;
//!         }
//!         ctx.value(&COUNT).update(&(count + 1))
//!     }
//!
//!     fn on_timer(&mut self, _timestamp: Timestamp, ctx: &mut Context<'_, String>,
//!         out: &mut Output<'_, (String, u64)>) -> Result<(), TaskError> {
//!         let count = ctx.value(&COUNT).get()?.unwrap_or(0);
//!         ctx.value(&COUNT).clear()?;
//!         out.collect((ctx.key().clone(), count))
//!     }
//! }
//! ```

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::graph::Erased;
use super::state::{
    DeclaredStates, ListAccess, MapAccess, ReducingAccess, StateDescriptor, ValueAccess,
};
use super::{
    CheckpointBarrier, Collector, Key, ListStateDescriptor, MapStateDescriptor, OperatorSnapshot,
    ReducingStateDescriptor, TaskError, Timestamp, ValueStateDescriptor,
};
use crate::state::timers::{TimeDomain, Timer, TimerQueue};
use crate::state::typed::{Clock, ListState, MapState, ReducingState, ValueState};
use crate::state::{KeyGroup, KeyedStateStore};

/// A function over a keyed stream with keyed state and timers. One instance per subtask
/// (cloned from the one given to [`super::KeyedStream::process`]); `open` runs once per
/// subtask before any record, also when the graph is built (to learn the declared states).
///
/// Every method may fail with a [`TaskError`]; the job then restarts from its latest
/// checkpoint (for [`TaskError::Data`], that repeats until the input or the job changes, so
/// route bad records to a side output instead).
pub trait KeyedProcessFunction: Clone + Send + Sync + 'static {
    /// The key of the stream.
    type Key: Key;
    /// Input records.
    type In: Send + 'static;
    /// Main output records.
    type Out: Clone + Send + 'static;

    /// Declares the function's states ([`OpenContext::declare`]).
    ///
    /// # Errors
    /// A state that cannot be declared (a reserved name, a kind that differs from the
    /// restored state's).
    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record; `ctx` is set to its key and timestamp. Emitted records carry
    /// the input's timestamp unless given another.
    ///
    /// # Errors
    /// See the trait.
    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;

    /// A timer of the current key fired at `timestamp` (ms; [`Context::time_domain`] says
    /// which clock). Emitted records carry the timer's timestamp unless given another.
    ///
    /// # Errors
    /// See the trait.
    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let _ = (timestamp, ctx, out);
        Ok(())
    }
}

/// Identifies a side output of records `T` (Flink's `OutputTag`). Emit with
/// [`Context::output`], read with [`super::Stream::side_output`]; records for a tag that no
/// stream reads are dropped.
pub struct OutputTag<T> {
    id: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    /// The tag `id`, unique within its operator.
    pub const fn new(id: &'static str) -> Self {
        Self {
            id,
            _t: PhantomData,
        }
    }

    /// The tag's id.
    pub fn id(&self) -> &'static str {
        self.id
    }
}

/// What `open` sees: where the subtask stands, and the declaration of states.
pub struct OpenContext<'a> {
    pub(crate) uid: &'a str,
    pub(crate) subtask: u32,
    pub(crate) parallelism: u32,
    pub(crate) store: &'a mut KeyedStateStore,
    pub(crate) states: &'a mut DeclaredStates,
}

impl OpenContext<'_> {
    /// Declares the state `descriptor` describes (and restores it, after a restore).
    ///
    /// # Errors
    /// [`TaskError::Graph`] for a reserved or empty name or a name declared twice
    /// differently; [`TaskError::State`] when the restored state has another kind.
    pub fn declare<D: StateDescriptor>(&mut self, descriptor: &D) -> Result<(), TaskError> {
        self.states.declare(self.uid, self.store, descriptor)
    }

    /// The operator's uid.
    pub fn uid(&self) -> &str {
        self.uid
    }

    /// This subtask's index, `0..parallelism`.
    pub fn subtask(&self) -> u32 {
        self.subtask
    }

    /// The operator's parallelism.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }
}

/// The side outputs of an operator subtask, by tag id.
#[derive(Default)]
pub(crate) struct SideOutputs {
    outs: Vec<(String, Erased)>,
}

impl SideOutputs {
    pub fn new(outs: impl IntoIterator<Item = (String, Erased)>) -> Self {
        Self {
            outs: outs.into_iter().collect(),
        }
    }

    pub(crate) fn emit<T: 'static>(
        &mut self,
        uid: &str,
        tag: &OutputTag<T>,
        ts: Timestamp,
        value: T,
    ) -> Result<(), TaskError> {
        let Some((_, out)) = self.outs.iter_mut().find(|(id, _)| id == tag.id) else {
            return Ok(());
        };
        match out.as_any_mut().downcast_mut::<Box<dyn Collector<T>>>() {
            Some(c) => c.record(ts, value),
            None => Err(TaskError::Graph(format!(
                "operator `{uid}`: side output `{}` is read as another type than it is emitted; use one OutputTag for both",
                tag.id
            ))),
        }
    }

    pub fn watermark(&mut self, w: Timestamp) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|(_, o)| o.watermark(w))
    }

    pub fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|(_, o)| o.checkpoint(barrier, out))
    }

    pub fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|(_, o)| o.checkpoint_complete(id))
    }

    pub fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|(_, o)| o.end_of_input())
    }
}

/// The main output of a function call: records go to the next operator.
pub struct Output<'a, O> {
    pub(crate) next: &'a mut dyn Collector<O>,
    pub(crate) timestamp: Timestamp,
}

impl<O> Output<'_, O> {
    /// Emits `value` with the timestamp of the record (or timer) being processed.
    ///
    /// # Errors
    /// [`TaskError`] from the next operator (a sink's I/O, a gone downstream task).
    pub fn collect(&mut self, value: O) -> Result<(), TaskError> {
        self.next.record(self.timestamp, value)
    }

    /// Emits `value` with event time `timestamp` (ms).
    ///
    /// # Errors
    /// As [`Output::collect`].
    pub fn collect_with_timestamp(
        &mut self,
        timestamp: Timestamp,
        value: O,
    ) -> Result<(), TaskError> {
        self.next.record(timestamp, value)
    }
}

/// What a keyed function sees while it processes a record or a timer: the current key, the
/// time, its declared state (of the current key), its timers and its side outputs.
pub struct Context<'a, K> {
    pub(crate) uid: &'a str,
    pub(crate) key: &'a K,
    pub(crate) key_group: KeyGroup,
    pub(crate) key_bytes: &'a [u8],
    pub(crate) timestamp: Timestamp,
    pub(crate) watermark: Timestamp,
    pub(crate) domain: Option<TimeDomain>,
    pub(crate) store: &'a mut KeyedStateStore,
    pub(crate) states: &'a DeclaredStates,
    pub(crate) timers: &'a mut TimerQueue,
    pub(crate) clock: &'a Clock,
    pub(crate) sides: &'a mut SideOutputs,
}

impl<K> Context<'_, K> {
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// Event time of the record being processed, or the timestamp of the firing timer (ms).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The operator's current event-time watermark (ms; `i64::MIN` before the first).
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Processing time now (ms since the epoch).
    pub fn current_processing_time(&self) -> Timestamp {
        (self.clock)()
    }

    /// The clock of the firing timer in `on_timer`; `None` in `process_element`.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// The current key's value of `state`.
    pub fn value<T: Serialize + DeserializeOwned + 'static>(
        &mut self,
        state: &ValueStateDescriptor<T>,
    ) -> ValueAccess<'_, T> {
        ValueAccess {
            handle: self.states.get::<ValueState<T>>(self.uid, state.name()),
            store: self.store,
            uid: self.uid,
        }
    }

    /// The current key's list of `state`.
    pub fn list<T: Serialize + DeserializeOwned + 'static>(
        &mut self,
        state: &ListStateDescriptor<T>,
    ) -> ListAccess<'_, T> {
        ListAccess {
            handle: self.states.get::<ListState<T>>(self.uid, state.name()),
            store: self.store,
            uid: self.uid,
        }
    }

    /// The current key's map of `state`.
    pub fn map<UK, V>(&mut self, state: &MapStateDescriptor<UK, V>) -> MapAccess<'_, UK, V>
    where
        UK: Serialize + DeserializeOwned + 'static,
        V: Serialize + DeserializeOwned + 'static,
    {
        MapAccess {
            handle: self.states.get::<MapState<UK, V>>(self.uid, state.name()),
            store: self.store,
            uid: self.uid,
        }
    }

    /// The current key's folded value of `state`.
    pub fn reducing<T: Serialize + DeserializeOwned + 'static>(
        &mut self,
        state: &ReducingStateDescriptor<T>,
    ) -> ReducingAccess<'_, T> {
        ReducingAccess {
            handle: self.states.get::<ReducingState<T>>(self.uid, state.name()),
            store: self.store,
            uid: self.uid,
        }
    }

    /// The current key's timers.
    pub fn timer_service(&mut self) -> TimerService<'_> {
        TimerService {
            uid: self.uid,
            key_group: self.key_group,
            key: self.key_bytes,
            store: self.store,
            timers: self.timers,
        }
    }

    /// Emits `value` to the side output `tag`, with the current timestamp.
    ///
    /// # Errors
    /// [`TaskError`] from the side output's next operator; [`TaskError::Graph`] when the
    /// side output is read as another type.
    pub fn output<T: 'static>(&mut self, tag: &OutputTag<T>, value: T) -> Result<(), TaskError> {
        self.sides.emit(self.uid, tag, self.timestamp, value)
    }
}

/// The timers of the current key (Flink's `TimerService`). Timers are keyed state: they are
/// checkpointed, restored and redistributed with the key, and each fires once.
pub struct TimerService<'a> {
    uid: &'a str,
    key_group: KeyGroup,
    key: &'a [u8],
    store: &'a mut KeyedStateStore,
    timers: &'a mut TimerQueue,
}

impl TimerService<'_> {
    fn timer(&self, timestamp: Timestamp) -> Timer {
        Timer {
            timestamp,
            key_group: self.key_group,
            key: self.key.into(),
            namespace: Box::new([]),
        }
    }

    fn change(
        &mut self,
        domain: TimeDomain,
        timestamp: Timestamp,
        set: bool,
    ) -> Result<(), TaskError> {
        let timer = self.timer(timestamp);
        let backend = self.store.backend();
        let r = if set {
            self.timers.register(backend, domain, timer)
        } else {
            self.timers.delete(backend, domain, &timer)
        };
        r.map(|_| ()).map_err(|source| TaskError::State {
            uid: self.uid.to_string(),
            source,
        })
    }

    /// Sets a timer that fires when the watermark reaches `timestamp` (ms); setting the same
    /// timer again does nothing.
    ///
    /// # Errors
    /// [`TaskError::State`] when the state backend fails.
    pub fn register_event_time_timer(&mut self, timestamp: Timestamp) -> Result<(), TaskError> {
        self.change(TimeDomain::EventTime, timestamp, true)
    }

    /// Removes the event-time timer at `timestamp`, if set.
    ///
    /// # Errors
    /// As [`TimerService::register_event_time_timer`].
    pub fn delete_event_time_timer(&mut self, timestamp: Timestamp) -> Result<(), TaskError> {
        self.change(TimeDomain::EventTime, timestamp, false)
    }

    /// Sets a timer that fires when processing time reaches `timestamp` (ms since the epoch).
    ///
    /// # Errors
    /// As [`TimerService::register_event_time_timer`].
    pub fn register_processing_time_timer(
        &mut self,
        timestamp: Timestamp,
    ) -> Result<(), TaskError> {
        self.change(TimeDomain::ProcessingTime, timestamp, true)
    }

    /// Removes the processing-time timer at `timestamp`, if set.
    ///
    /// # Errors
    /// As [`TimerService::register_event_time_timer`].
    pub fn delete_processing_time_timer(&mut self, timestamp: Timestamp) -> Result<(), TaskError> {
        self.change(TimeDomain::ProcessingTime, timestamp, false)
    }
}

/// A function over two connected keyed streams with shared keyed state and timers (Flink's
/// `KeyedCoProcessFunction`): the building block of joins. Records of both inputs with the
/// same key meet in the same subtask and see the same state.
pub trait KeyedCoProcessFunction: Clone + Send + Sync + 'static {
    /// The key both streams are keyed by.
    type Key: Key;
    /// Records of the first input.
    type In1: Send + 'static;
    /// Records of the second input.
    type In2: Send + 'static;
    /// Main output records.
    type Out: Clone + Send + 'static;

    /// Declares the function's states, as [`KeyedProcessFunction::open`].
    ///
    /// # Errors
    /// As [`KeyedProcessFunction::open`].
    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes a record of the first input.
    ///
    /// # Errors
    /// As [`KeyedProcessFunction::process_element`].
    fn process_element1(
        &mut self,
        value: Self::In1,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;

    /// Processes a record of the second input.
    ///
    /// # Errors
    /// As [`KeyedProcessFunction::process_element`].
    fn process_element2(
        &mut self,
        value: Self::In2,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;

    /// A timer of the current key fired, as [`KeyedProcessFunction::on_timer`].
    ///
    /// # Errors
    /// As [`KeyedProcessFunction::on_timer`].
    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let _ = (timestamp, ctx, out);
        Ok(())
    }
}

/// A record of either input of connected streams, as it travels their common exchange.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum CoInput<A, B> {
    /// From the first input.
    First(A),
    /// From the second input.
    Second(B),
}

/// Runs a [`KeyedCoProcessFunction`] as the keyed process function of its tagged inputs.
#[derive(Clone)]
pub(crate) struct CoProcess<F>(pub F);

impl<F: KeyedCoProcessFunction> KeyedProcessFunction for CoProcess<F> {
    type Key = F::Key;
    type In = CoInput<F::In1, F::In2>;
    type Out = F::Out;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        self.0.open(ctx)
    }

    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        match value {
            CoInput::First(a) => self.0.process_element1(a, ctx, out),
            CoInput::Second(b) => self.0.process_element2(b, ctx, out),
        }
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, Self::Key>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        self.0.on_timer(timestamp, ctx, out)
    }
}
