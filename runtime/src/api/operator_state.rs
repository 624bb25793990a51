//! Non-keyed process functions with operator state (Flink's `ProcessFunction` with
//! `CheckpointedFunction`): user code over a plain stream that keeps small lists of state
//! per subtask, restored after a failure and redistributed when the parallelism changes.
//!
//! A list is declared with an [`OperatorListDescriptor`]: `split` lists are concatenated over
//! the old subtasks and dealt out round-robin to the new ones (Flink's `ListState`), `union`
//! lists go whole to every new subtask (Flink's `UnionListState`). Entries are serde values
//! stored as JSON in the checkpoint's `_metadata`, so keep them small (positions, counters,
//! pending work); large state belongs in keyed state.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::process::{Output, OutputTag, SideOutputs};
use super::{
    CheckpointBarrier, Collector, OperatorListState, OperatorSnapshot, OperatorStateMap,
    RedistributionMode, TaskError, Timestamp, MIN_WATERMARK,
};

/// Declares a list of operator state of `T` (Flink's `ListStateDescriptor` for operator
/// state).
pub struct OperatorListDescriptor<T> {
    name: &'static str,
    mode: RedistributionMode,
    _t: PhantomData<fn() -> T>,
}

impl<T> OperatorListDescriptor<T> {
    /// A list whose entries are dealt round-robin over the subtasks on a rescale.
    pub const fn split(name: &'static str) -> Self {
        Self {
            name,
            mode: RedistributionMode::Split,
            _t: PhantomData,
        }
    }

    /// A list that every subtask receives whole on a restore at another parallelism.
    pub const fn union(name: &'static str) -> Self {
        Self {
            name,
            mode: RedistributionMode::Union,
            _t: PhantomData,
        }
    }
}

/// A function over a plain (non-keyed) stream, with operator state and side outputs. One
/// instance per subtask (cloned from the one given to [`super::Stream::process`]).
///
/// Every method may fail with a [`TaskError`]; the job then restarts from its latest
/// checkpoint.
pub trait ProcessFunction: Clone + Send + Sync + 'static {
    /// Input records.
    type In: Send + 'static;
    /// Main output records.
    type Out: Clone + Send + 'static;

    /// Reads the restored operator state ([`StateContext::restored`]); runs once per subtask
    /// before any record.
    ///
    /// # Errors
    /// A restored list that does not decode.
    fn open(&mut self, ctx: &mut StateContext<'_>) -> Result<(), TaskError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record; emitted records carry its timestamp unless given another.
    ///
    /// # Errors
    /// See the trait.
    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut ProcessContext<'_>,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;

    /// Writes the operator state at a checkpoint barrier ([`StateContext::set`]); a list not
    /// set is empty in the checkpoint.
    ///
    /// # Errors
    /// A value that does not serialize.
    fn snapshot_state(&mut self, ctx: &mut StateContext<'_>) -> Result<(), TaskError> {
        let _ = ctx;
        Ok(())
    }
}

/// Operator state of one subtask: what was restored (in `open`) and what is written (in
/// `snapshot_state`).
pub struct StateContext<'a> {
    uid: &'a str,
    subtask: u32,
    parallelism: u32,
    restored: &'a OperatorStateMap,
    written: &'a mut BTreeMap<String, OperatorListState>,
}

impl StateContext<'_> {
    /// The entries of list `d` restored for this subtask (redistributed by the list's
    /// mode); empty on a fresh start.
    ///
    /// # Errors
    /// [`TaskError::Restore`] when an entry does not decode as `T`.
    pub fn restored<T: DeserializeOwned>(
        &self,
        d: &OperatorListDescriptor<T>,
    ) -> Result<Vec<T>, TaskError> {
        self.restored
            .get(d.name)
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| serde_json::from_value(e.clone()))
                    .collect::<Result<Vec<T>, _>>()
            })
            .transpose()
            .map_err(|e| {
                TaskError::Restore(format!(
                    "operator `{}`: operator state `{}`: {e}",
                    self.uid, d.name
                ))
            })
            .map(Option::unwrap_or_default)
    }

    /// Sets list `d` to `values` in the checkpoint being taken.
    ///
    /// # Errors
    /// [`TaskError::Data`] when a value does not serialize to JSON.
    pub fn set<T: Serialize>(
        &mut self,
        d: &OperatorListDescriptor<T>,
        values: &[T],
    ) -> Result<(), TaskError> {
        let entries = values
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                TaskError::Data(format!(
                    "operator `{}`: operator state `{}`: {e}",
                    self.uid, d.name
                ))
            })?;
        self.written.insert(
            d.name.to_string(),
            OperatorListState {
                mode: d.mode,
                entries,
            },
        );
        Ok(())
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

/// What a non-keyed function sees while it processes a record.
pub struct ProcessContext<'a> {
    uid: &'a str,
    subtask: u32,
    timestamp: Timestamp,
    watermark: Timestamp,
    sides: &'a mut SideOutputs,
}

impl ProcessContext<'_> {
    /// Event time of the record (ms).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The latest watermark this subtask passed on (ms; `i64::MIN` before the first).
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// This subtask's index.
    pub fn subtask(&self) -> u32 {
        self.subtask
    }

    /// Emits `value` to side output `tag` with the record's timestamp.
    ///
    /// # Errors
    /// As [`super::Context::output`].
    pub fn output<T: 'static>(&mut self, tag: &OutputTag<T>, value: T) -> Result<(), TaskError> {
        self.sides.emit(self.uid, tag, self.timestamp, value)
    }
}

/// The operator running a [`ProcessFunction`] in one subtask.
pub(crate) struct ProcessOperator<F: ProcessFunction> {
    uid: String,
    subtask: u32,
    parallelism: u32,
    function: F,
    watermark: Timestamp,
    next: Box<dyn Collector<F::Out>>,
    sides: SideOutputs,
}

impl<F: ProcessFunction> ProcessOperator<F> {
    /// Opens `function` with the operator state restored for this subtask.
    ///
    /// # Errors
    /// What the function's `open` returns.
    pub fn new(
        uid: &str,
        ctx: &super::TaskContext,
        mut function: F,
        next: Box<dyn Collector<F::Out>>,
        sides: SideOutputs,
    ) -> Result<Self, TaskError> {
        let restored = ctx.operator_state(uid);
        let mut unused = BTreeMap::new();
        function.open(&mut StateContext {
            uid,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            restored: &restored,
            written: &mut unused,
        })?;
        Ok(Self {
            uid: uid.to_string(),
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            function,
            watermark: MIN_WATERMARK,
            next,
            sides,
        })
    }
}

impl<F: ProcessFunction> Collector<F::In> for ProcessOperator<F> {
    fn record(&mut self, ts: Timestamp, value: F::In) -> Result<(), TaskError> {
        let mut ctx = ProcessContext {
            uid: &self.uid,
            subtask: self.subtask,
            timestamp: ts,
            watermark: self.watermark,
            sides: &mut self.sides,
        };
        let mut out = Output {
            next: self.next.as_mut(),
            timestamp: ts,
        };
        self.function.process_element(value, &mut ctx, &mut out)
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        self.watermark = self.watermark.max(watermark);
        self.next.watermark(watermark)?;
        self.sides.watermark(watermark)
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        let restored = OperatorStateMap::new();
        let mut written = BTreeMap::new();
        self.function.snapshot_state(&mut StateContext {
            uid: &self.uid,
            subtask: self.subtask,
            parallelism: self.parallelism,
            restored: &restored,
            written: &mut written,
        })?;
        out.push(OperatorSnapshot {
            uid: self.uid.clone(),
            keyed: None,
            operator_state: written,
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

    fn idle(&mut self) -> Result<(), TaskError> {
        self.next.idle()
    }
}
