//! Stream builders: `Stream<T>`, `KeyedStream<K, T>`, `WindowedStream<K, T>` and the finished
//! `JobGraph`. Building is pure; [`JobGraph`] is instantiated by the runtime into tasks.
//!
//! Operators between two `key_by` boundaries are chained into one task per subtask (records
//! are passed by function call); a `key_by` is a hash shuffle through bounded channels.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_crds::CheckpointingMode;

use super::{
    AggregateFunction, Collector, Key, OperatorStateMap, TaskContext, TaskError, Timestamp,
};
use crate::checkpoint::JobShape;
use crate::net::NetworkContext;
use crate::operators::stateless::{Filter, FlatMap, Map};
use crate::operators::window::{WindowOperator, WINDOW_STATE};
use crate::state::{KeyGroup, StateInfo, StateKind};
use crate::task::exchange::{build_exchange, Codec, Partitioner};
use crate::task::input::KeyedInputTask;
use crate::task::source::SourceTask;
use crate::task::wire::{decode_keyed, encode_keyed};
use crate::task::Task;

/// A source of records, read by one reader per subtask.
pub trait Source<T>: Send + Sync + 'static {
    /// Opens the reader of subtask `ctx.subtask`, positioned after the restored `positions`
    /// (the entries this source wrote in [`SourceReader::positions`], every subtask's, since
    /// positions are union-redistributed).
    ///
    /// # Errors
    /// [`TaskError::Io`] when the input cannot be opened, [`TaskError::Restore`] when a
    /// position does not fit the input.
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<T>>, TaskError>;
}

/// The reader of one source subtask.
pub trait SourceReader<T>: Send {
    /// Appends up to `max` records to `out`; returns false once the input is exhausted.
    ///
    /// # Errors
    /// I/O or malformed data.
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool, TaskError>;
    /// The reader's position after the records returned so far, as operator state entries.
    fn positions(&self) -> Vec<serde_json::Value>;
}

/// A sink: one writer per subtask, which is the last operator of its chain.
pub trait Sink<T>: Send + Sync + 'static {
    /// Creates the writer of subtask `ctx.subtask` for the operator `uid`, given the operator
    /// state restored for it.
    ///
    /// # Errors
    /// [`TaskError::Io`] when the output cannot be prepared or restored.
    fn create_writer(
        &self,
        ctx: &TaskContext,
        uid: &str,
        restored: OperatorStateMap,
    ) -> Result<Box<dyn Collector<T>>, TaskError>;
}

/// Event-time assignment at the source: a timestamp per record and a bounded
/// out-of-orderness watermark (`max timestamp seen - out_of_orderness - 1`, as Flink's
/// `BoundedOutOfOrdernessWatermarks`).
pub struct WatermarkStrategy<T> {
    pub(crate) out_of_orderness_ms: i64,
    pub(crate) timestamp: Arc<dyn Fn(&T) -> Timestamp + Send + Sync>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        Self {
            out_of_orderness_ms: self.out_of_orderness_ms,
            timestamp: self.timestamp.clone(),
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// Watermarks trail the largest timestamp seen by `out_of_orderness_ms`; `timestamp`
    /// gives a record's event time in ms since the epoch.
    pub fn bounded_out_of_orderness(
        out_of_orderness_ms: i64,
        timestamp: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        Self {
            out_of_orderness_ms: out_of_orderness_ms.max(0),
            timestamp: Arc::new(timestamp),
        }
    }
}

/// A record of a keyed stream with its key and key group, as it travels a hash shuffle.
#[derive(Debug, Clone)]
pub struct KeyedRecord<K, T> {
    /// Key group of `key`.
    pub key_group: KeyGroup,
    /// The key.
    pub key: K,
    /// The record.
    pub value: T,
}

/// An event-time window `[start, end)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeWindow {
    /// First ms of the window, inclusive.
    pub start: Timestamp,
    /// End of the window, exclusive.
    pub end: Timestamp,
}

/// A fired window's result for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult<K, O> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The aggregate's result.
    pub value: O,
}

pub(crate) type GraphBuildFn = Box<dyn FnOnce(&mut Instantiation) -> Result<(), TaskError>>;

pub(crate) type BuildFn<T> =
    Box<dyn FnOnce(&mut Instantiation, Vec<Box<dyn Collector<T>>>) -> Result<(), TaskError>>;

/// One task of an instantiated job.
pub(crate) struct TaskSpec {
    pub name: String,
    pub subtask: u32,
    pub is_source: bool,
    pub task: Box<dyn Task>,
}

/// The runtime's side of instantiation: the contexts of the subtasks this process runs (all
/// of them in a local run, a worker's share in distributed mode) and the tasks created so far.
pub(crate) struct Instantiation {
    pub contexts: Vec<TaskContext>,
    /// Subtasks per operator in the whole job.
    pub parallelism: u32,
    /// Exchanges built so far (numbers them in build order, the same in every process).
    pub exchanges: u32,
    /// Channels to other workers; `None` in a local run.
    pub network: Option<NetworkContext>,
    pub tasks: Vec<TaskSpec>,
    pub mode: CheckpointingMode,
    /// Records per batch on a shuffle.
    pub batch_size: usize,
    /// Batches buffered per shuffle channel before the producer blocks.
    pub channel_capacity: usize,
}

/// A stream of records of type `T`.
pub struct Stream<T> {
    build: BuildFn<T>,
    uids: Vec<String>,
    /// Keyed states each stateful operator registers, by uid.
    keyed_states: BTreeMap<String, Vec<StateInfo>>,
    /// Uid of the first operator of each chain (task), sources first.
    chains: Vec<String>,
}

impl<T: Send + 'static> Stream<T> {
    /// A stream read from `source`, with event time assigned by `watermarks`. The source's
    /// positions are operator state of `uid`.
    pub fn from_source(
        uid: &str,
        source: impl Source<T>,
        watermarks: WatermarkStrategy<T>,
    ) -> Self {
        let uid_owned = uid.to_string();
        Stream {
            uids: vec![uid.to_string()],
            keyed_states: BTreeMap::new(),
            chains: vec![uid.to_string()],
            build: Box::new(move |inst, downs| {
                for (i, down) in downs.into_iter().enumerate() {
                    let ctx = &inst.contexts[i];
                    let positions = ctx
                        .operator_state(&uid_owned)
                        .remove(crate::task::source::POSITIONS)
                        .unwrap_or_default();
                    let reader = source.create_reader(ctx, positions)?;
                    let task = SourceTask::new(
                        uid_owned.clone(),
                        reader,
                        watermarks.clone(),
                        down,
                        ctx.metrics.clone(),
                        ctx.subtask,
                        inst.batch_size,
                    );
                    inst.tasks.push(TaskSpec {
                        name: uid_owned.clone(),
                        subtask: ctx.subtask,
                        is_source: true,
                        task: Box::new(task),
                    });
                }
                Ok(())
            }),
        }
    }

    /// Appends a chained operator: `wrap` puts it in front of the next operator of each
    /// subtask.
    fn chain<U: 'static>(
        self,
        wrap: impl Fn(Box<dyn Collector<U>>) -> Box<dyn Collector<T>> + 'static,
    ) -> Stream<U> {
        let up = self.build;
        Stream {
            uids: self.uids,
            keyed_states: self.keyed_states,
            chains: self.chains,
            build: Box::new(move |inst, downs| up(inst, downs.into_iter().map(&wrap).collect())),
        }
    }

    /// Applies `f` to every record.
    pub fn map<U: Send + 'static>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<U> {
        let f = Arc::new(f);
        self.chain(move |next| Box::new(Map { f: f.clone(), next }))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        let f = Arc::new(f);
        self.chain(move |next| Box::new(Filter { f: f.clone(), next }))
    }

    /// Replaces every record by the records `f` returns for it.
    pub fn flat_map<U: Send + 'static, I: IntoIterator<Item = U>>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        let f = Arc::new(f);
        self.chain(move |next| Box::new(FlatMap { f: f.clone(), next }))
    }

    /// Partitions the stream by the key `selector` returns: records with equal keys meet in
    /// the same subtask, which owns the key's key group.
    pub fn key_by<K: Key>(
        self,
        selector: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<K, T> {
        KeyedStream {
            upstream: self,
            selector: Arc::new(selector),
        }
    }

    /// Ends the stream in `sink`, whose state is operator state of `uid`.
    ///
    /// # Errors
    /// [`TaskError::Graph`] when `uid` is used twice in the job.
    pub fn sink(self, uid: &str, sink: impl Sink<T>) -> Result<JobGraph, TaskError> {
        let mut uids = self.uids;
        add_uid(&mut uids, uid)?;
        let up = self.build;
        let uid = uid.to_string();
        Ok(JobGraph {
            uids,
            keyed_states: self.keyed_states,
            chains: self.chains,
            output: None,
            build: Box::new(move |inst| {
                let mut downs = Vec::with_capacity(inst.contexts.len());
                for ctx in &inst.contexts {
                    downs.push(sink.create_writer(ctx, &uid, ctx.operator_state(&uid))?);
                }
                up(inst, downs)
            }),
        })
    }
}

fn add_uid(uids: &mut Vec<String>, uid: &str) -> Result<(), TaskError> {
    if uids.iter().any(|u| u == uid) {
        return Err(TaskError::Graph(format!(
            "operator uid `{uid}` is used twice; every stateful operator needs its own uid"
        )));
    }
    uids.push(uid.to_string());
    Ok(())
}

/// A stream partitioned by key.
pub struct KeyedStream<K, T> {
    upstream: Stream<T>,
    selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<K: Key, T: Send + 'static> KeyedStream<K, T> {
    /// Tumbling event-time windows of `size_ms` aligned to the epoch (Flink's
    /// `TumblingEventTimeWindows.of(size)`).
    pub fn tumbling_window(self, size_ms: i64) -> WindowedStream<K, T> {
        WindowedStream {
            keyed: self,
            size_ms: size_ms.max(1),
        }
    }
}

/// A keyed stream cut into event-time windows.
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    size_ms: i64,
}

impl<K: Key, T: Send + 'static> WindowedStream<K, T> {
    /// Aggregates each key's records per window with `function`; the accumulator is keyed
    /// state of `uid`. Emits one [`WindowResult`] per key and window when the watermark passes
    /// the window's end, with event time `end - 1`.
    ///
    /// # Errors
    /// [`TaskError::Graph`] when `uid` is used twice in the job.
    pub fn aggregate<A>(
        self,
        uid: &str,
        function: A,
    ) -> Result<Stream<WindowResult<K, A::Out>>, TaskError>
    where
        A: AggregateFunction<In = T>,
        T: Serialize + DeserializeOwned,
    {
        let KeyedStream { upstream, selector } = self.keyed;
        let mut uids = upstream.uids;
        add_uid(&mut uids, uid)?;
        let mut chains = upstream.chains;
        chains.push(uid.to_string());
        let mut keyed_states = upstream.keyed_states;
        keyed_states.insert(
            uid.to_string(),
            vec![StateInfo {
                name: WINDOW_STATE.to_string(),
                kind: StateKind::Aggregating,
            }],
        );
        let up = upstream.build;
        let uid = uid.to_string();
        let function = Arc::new(function);
        let size = self.size_ms;
        Ok(Stream {
            uids,
            keyed_states,
            chains,
            build: Box::new(move |inst, downs| {
                let local: Vec<u32> = inst.contexts.iter().map(|c| c.subtask).collect();
                let exchange = inst.exchanges;
                inst.exchanges += 1;
                let (senders, receivers) = build_exchange::<KeyedRecord<K, T>>(
                    exchange,
                    &local,
                    inst.parallelism,
                    inst.channel_capacity,
                    inst.network.as_ref(),
                    Codec {
                        encode: encode_keyed::<K, T>,
                        decode: decode_keyed::<K, T>,
                    },
                )?;
                for ((j, down), inputs) in downs.into_iter().enumerate().zip(receivers) {
                    let ctx = &inst.contexts[j];
                    let store = ctx.keyed_state(&uid)?;
                    let op = WindowOperator::new(
                        &uid,
                        store,
                        function.clone(),
                        size,
                        down,
                        ctx.metrics.clone(),
                        ctx.subtask as usize,
                    )?;
                    inst.tasks.push(TaskSpec {
                        name: uid.clone(),
                        subtask: ctx.subtask,
                        is_source: false,
                        task: Box::new(KeyedInputTask::new(
                            inputs,
                            Box::new(op),
                            inst.mode,
                            ctx.metrics.clone(),
                            ctx.subtask,
                        )),
                    });
                }
                let batch = inst.batch_size;
                let parts = senders
                    .into_iter()
                    .zip(&inst.contexts)
                    .map(|(s, ctx)| {
                        Box::new(Partitioner::new(
                            selector.clone(),
                            s,
                            ctx.max_parallelism,
                            batch,
                            ctx.metrics.clone(),
                            ctx.subtask,
                        )) as Box<dyn Collector<T>>
                    })
                    .collect();
                up(inst, parts)
            }),
        })
    }
}

/// A finished job: what the runtime instantiates.
pub struct JobGraph {
    pub(crate) build: GraphBuildFn,
    uids: Vec<String>,
    keyed_states: BTreeMap<String, Vec<StateInfo>>,
    chains: Vec<String>,
    output: Option<String>,
}

impl JobGraph {
    /// Records where the job's output goes (shown in the run summary).
    pub fn with_output(mut self, location: impl Into<String>) -> Self {
        self.output = Some(location.into());
        self
    }

    /// Where the job's output goes, if its sink said.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// The tasks of each subtask, named by the uid of their first operator, the source's
    /// first: operators between two shuffles are chained into one task.
    pub fn chains(&self) -> &[String] {
        &self.chains
    }

    /// The operator uids of the job, in pipeline order.
    pub fn uids(&self) -> &[String] {
        &self.uids
    }

    /// The keyed states (name and kind) each stateful operator registers, by uid.
    pub fn keyed_states(&self) -> &BTreeMap<String, Vec<StateInfo>> {
        &self.keyed_states
    }

    /// What a snapshot must fit to restore this graph with `max_parallelism` key groups
    /// (see [`crate::checkpoint::incompatibilities`]).
    pub fn shape(&self, max_parallelism: u32, allow_non_restored_state: bool) -> JobShape<'_> {
        JobShape {
            uids: &self.uids,
            keyed_states: &self.keyed_states,
            max_parallelism,
            allow_non_restored_state,
        }
    }
}
