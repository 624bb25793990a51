//! Stream builders: [`JobBuilder`], `Stream<T>`, `KeyedStream<K, T>`, `WindowedStream<K, T>`
//! and the finished [`JobGraph`]. Building is pure: each call adds an operator (and the edges
//! into it) to the job's [`StreamGraph`]; nothing runs until the runtime plans the graph.
//!
//! ```
//! # use weir_runtime::api::*;
//! # fn demo(source: impl Source<String>, sink: impl Sink<(String, u64)>) -> Result<JobGraph, TaskError> {
//! let job = JobBuilder::new();
//! job.source("words", source, WatermarkStrategy::bounded_out_of_orderness(0, |_: &String| 0))
//!     .map(|w: String| (w, 1u64))
//!     .sink("counts", sink);
//! job.build()
//! # }
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::broadcast::{
    BroadcastConnectedStream, BroadcastStream, Connected, KeyedBroadcastProcessFunction,
};
use super::graph::{Edge, Node, NodeId, OperatorKind, OutputPort, Partitioning, StreamGraph};
use super::join::{IntervalJoin, WindowJoin};
use super::operator_state::{ProcessFunction, ProcessOperator};
use super::plan::{tee, ExchangeBuilder, NodeFactory, Typed};
use super::process::{
    CoInput, CoProcess, KeyedCoProcessFunction, OpenContext, OutputTag, SideOutputs,
};
use super::state::DeclaredStates;
use super::state::MapStateDescriptor;
use super::window::{ProcessWindowFunction, WindowAssigner, WindowResult};
use super::{
    AggregateFunction, Collector, Key, KeyedProcessFunction, OperatorStateMap, TaskContext,
    TaskError, Timestamp,
};
use crate::checkpoint::JobShape;
use crate::operators::broadcast::KeyedBroadcastOperator;
use crate::operators::keyed_process::KeyedProcessOperator;
use crate::operators::stateless::{Filter, FlatMap, Map};
use crate::operators::window::contents::{Aggregated, Elements, Reduced, WindowContents};
use crate::operators::window::operator::{sessions_info, WindowOperator, WindowSettings};
use crate::operators::window::sliced_aggregate::{
    SlicedAggregateOperator, SlicedAggregateSetup, Slicing, WINDOW_STATE,
};
use crate::state::heap::HeapBackend;
use crate::state::timers::TimeDomain;
use crate::state::typed::{system_clock, KeyedStateStore};
use crate::state::{KeyGroupRange, StateInfo, StateKind};
use crate::task::exchange::{
    broadcast_exchange, forward_exchange, hash_exchange, hash_exchange_from,
    keyed_into_broadcast_exchange, rebalance_exchange,
};
use crate::task::input::input_task;
use crate::task::source::SourceTask;

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
    /// The splits this reader owns (files, partitions), each read in event-time order, with
    /// whether it has ended. A reader of several splits returns them, and returns the records
    /// of one split per [`SourceReader::read_batch`] call, so that the source's watermark is
    /// the smallest over its unfinished splits (Flink's per-split watermarks: a split read
    /// ahead does not make another split's records late), and each split's largest timestamp
    /// is checkpointed with the positions. Default: none, the subtask's records are one
    /// stream.
    fn splits(&self) -> Vec<SplitStatus> {
        Vec::new()
    }
    /// The split the records of the last [`SourceReader::read_batch`] came from, for readers
    /// that return [`SourceReader::splits`].
    fn last_split(&self) -> Option<&str> {
        None
    }
    /// Called at checkpoint barrier `checkpoint_id`, before [`SourceReader::positions`]:
    /// make durable what the positions will claim (a Kafka source flushes its dead letters).
    /// Default: nothing.
    ///
    /// # Errors
    /// Whatever could not be made durable; the task fails and the job restarts from its
    /// last completed checkpoint.
    fn prepare_checkpoint(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        let _ = checkpoint_id;
        Ok(())
    }
    /// Checkpoint `checkpoint_id` completed (a Kafka source commits the offsets it recorded
    /// to its consumer group, for monitoring). Default: nothing.
    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        let _ = checkpoint_id;
    }
    /// Records read since the last call that did not deserialize (sent to the reader's
    /// dead-letter output, not to the job), for the `invalid records` metric. Default: 0.
    fn take_invalid_records(&mut self) -> u64 {
        0
    }
}

/// One split of a source reader (see [`SourceReader::splits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitStatus {
    /// Its id, stable across restores (a file name, a partition).
    pub id: String,
    /// True once it has no more records.
    pub ended: bool,
}

/// The checkpoint timing of a job (`spec.checkpointing`), which some sinks must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointTiming {
    /// `interval`, ms.
    pub interval_ms: u64,
    /// `timeout`, ms.
    pub timeout_ms: u64,
}

/// A check of the job's checkpoint timing (see [`Sink::check_checkpointing`]).
type TimingCheck = Arc<dyn Fn(&CheckpointTiming) -> Result<(), String> + Send + Sync>;

/// A sink: one writer per subtask, which is the last operator of its chain.
pub trait Sink<T>: Send + Sync + 'static {
    /// Checks, before anything runs, that the sink works with the job's checkpoint timing
    /// (a Kafka transaction must outlive a checkpoint). Default: anything goes.
    ///
    /// # Errors
    /// A message naming the settings that do not fit and the fix.
    fn check_checkpointing(&self, timing: &CheckpointTiming) -> Result<(), String> {
        let _ = timing;
        Ok(())
    }

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
    /// After this long without a record (ms of processing time) a source subtask is idle.
    pub(crate) idle_timeout_ms: Option<u64>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        Self {
            out_of_orderness_ms: self.out_of_orderness_ms,
            timestamp: self.timestamp.clone(),
            idle_timeout_ms: self.idle_timeout_ms,
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
            idle_timeout_ms: None,
        }
    }

    /// A source subtask that reads no record for `timeout_ms` ms (processing time) is idle
    /// (Flink's `withIdleness`): downstream operators stop waiting for its watermark, so an
    /// empty or stalled split does not hold back event time. Its next record makes it active
    /// again; from then on its watermark counts once it has caught up. Whether a record
    /// arrives before or after the timeout depends on timing, so with idleness a restored
    /// job's late-data decisions can differ from an uninterrupted run's.
    pub fn with_idleness(mut self, timeout_ms: u64) -> Self {
        self.idle_timeout_ms = Some(timeout_ms);
        self
    }
}

/// A record of a keyed stream with its key and key group, as it travels a hash exchange.
#[derive(Debug, Clone)]
pub struct KeyedRecord<K, T> {
    /// Key group of `key`.
    pub key_group: crate::state::KeyGroup,
    /// The key.
    pub key: K,
    /// The record.
    pub value: T,
}

/// The graph under construction and the first problem found, shared by the streams of one
/// job.
#[derive(Default)]
struct Building {
    graph: StreamGraph,
    problems: Vec<String>,
    output: Option<String>,
    timing_checks: Vec<TimingCheck>,
}

/// Builds a job: sources start streams, operators extend them, sinks end them; [`build`]
/// returns the finished [`JobGraph`].
///
/// Operator uids are the identity of state across versions of a job: every stateful
/// operator (source, keyed process, window, sink) is given one and must keep it. Stateless
/// operators (map, filter, flat_map) are named after their kind and position.
///
/// [`build`]: JobBuilder::build
#[derive(Clone, Default)]
pub struct JobBuilder {
    inner: Rc<RefCell<Building>>,
}

impl JobBuilder {
    /// An empty job.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream read from `source` with event time assigned by `watermarks`; the source's
    /// positions are operator state of `uid`.
    pub fn source<T: Clone + Send + 'static>(
        &self,
        uid: &str,
        source: impl Source<T>,
        watermarks: WatermarkStrategy<T>,
    ) -> Stream<T> {
        let uid_owned = uid.to_string();
        let source = Arc::new(source);
        let create = move |ctx: &TaskContext,
                           inst: &super::plan::Instantiation,
                           mut outputs: super::plan::Outputs| {
            let mut restored = ctx.operator_state(&uid_owned);
            let positions = restored
                .remove(crate::task::source::POSITIONS)
                .unwrap_or_default();
            let event_time = crate::task::source::restored_event_time(
                &restored
                    .remove(crate::task::source::WATERMARK)
                    .unwrap_or_default(),
                ctx.subtask,
                ctx.parallelism,
            );
            let reader = source.create_reader(ctx, positions)?;
            Ok(Box::new(
                SourceTask::new(
                    uid_owned.clone(),
                    reader,
                    watermarks.clone(),
                    outputs.main::<T>(),
                    ctx,
                    inst.batch_size,
                )
                .with_restored_event_time(event_time),
            ) as Box<dyn crate::task::Task>)
        };
        let id = self.add_node(Node {
            uid: uid.to_string(),
            kind: OperatorKind::Source,
            states: Vec::new(),
            factory: NodeFactory::Source(Arc::new(create)),
            ports: BTreeMap::from([(OutputPort::Main, tee::<T> as super::plan::TeeBuilder)]),
        });
        Stream::new(self.clone(), vec![(id, OutputPort::Main)], None)
    }

    /// Records where the job's output goes (shown in the run summary).
    pub fn set_output(&self, location: impl Into<String>) {
        self.inner.borrow_mut().output = Some(location.into());
    }

    /// The finished graph.
    ///
    /// # Errors
    /// [`TaskError::Graph`] naming every problem found while building: a uid used twice, a
    /// function whose `open` fails, a side output read from a union.
    pub fn build(&self) -> Result<JobGraph, TaskError> {
        let mut b = self.inner.borrow_mut();
        let graph = std::mem::take(&mut b.graph);
        let mut problems = std::mem::take(&mut b.problems);
        problems.extend(graph.problems());
        if !problems.is_empty() {
            return Err(TaskError::Graph(problems.join("; ")));
        }
        let mut job = JobGraph::new(graph, b.output.take());
        job.timing_checks = std::mem::take(&mut b.timing_checks);
        Ok(job)
    }

    fn add_node(&self, node: Node) -> NodeId {
        self.inner.borrow_mut().graph.add_node(node)
    }

    pub(super) fn problem(&self, problem: String) {
        self.inner.borrow_mut().problems.push(problem);
    }

    fn next_auto_uid(&self, kind: &str) -> String {
        format!("{kind}-{}", self.inner.borrow().graph.nodes.len())
    }
}

/// A stream of records of type `T`: the output of one operator, or the union of several.
/// Cloning a stream lets several operators consume it (each gets every record).
pub struct Stream<T> {
    pub(super) job: JobBuilder,
    /// The operator outputs the stream is made of (several after a union).
    inputs: Vec<(NodeId, OutputPort)>,
    /// Builds a forward exchange of `T` (set when the stream's type is serializable; needed
    /// when a union feeds a non-keyed operator).
    forward_exchange: Option<fn() -> ExchangeBuilder>,
    /// Set by [`Stream::rebalance`]: the next operator reads through this exchange.
    rebalance: Option<ExchangeBuilder>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Self {
            job: self.job.clone(),
            inputs: self.inputs.clone(),
            forward_exchange: self.forward_exchange,
            rebalance: self.rebalance.clone(),
            _t: PhantomData,
        }
    }
}

/// The boxed factory of an operator: its subtask's input collector from its outputs.
type Create = super::plan::OperatorFactory;

impl<T: Clone + Send + 'static> Stream<T> {
    fn new(
        job: JobBuilder,
        inputs: Vec<(NodeId, OutputPort)>,
        forward_exchange: Option<fn() -> ExchangeBuilder>,
    ) -> Self {
        Self {
            job,
            inputs,
            forward_exchange,
            rebalance: None,
            _t: PhantomData,
        }
    }

    /// This stream dealt round-robin over the subtasks of the operator that reads it (Flink's
    /// `rebalance`): evens out a skewed producer, at the cost of an exchange.
    pub fn rebalance(&self) -> Stream<T>
    where
        T: Serialize + DeserializeOwned,
    {
        let mut s = self.clone();
        s.rebalance = Some(rebalance_exchange::<T>());
        s
    }

    /// Adds an operator fed by this stream through forward edges (chained when this stream
    /// is one operator's output; a forward exchange after a union).
    fn forward_to<U: Clone + Send + 'static>(
        &self,
        uid: Option<&str>,
        kind: OperatorKind,
        main_port: bool,
        create: Arc<Create>,
    ) -> Stream<U> {
        let exchange = if self.inputs.len() > 1 && self.rebalance.is_none() {
            match self.forward_exchange {
                Some(make) => Some(make()),
                None => {
                    self.job.problem(format!(
                        "a union of streams that are not serializable feeds a {kind:?} operator; map the inputs to a type with serde's Serialize and Deserialize before the union"
                    ));
                    None
                }
            }
        } else {
            None
        };
        let (partitioning, exchange) = match &self.rebalance {
            Some(r) => (Partitioning::Rebalance, Some(r.clone())),
            None => (Partitioning::Forward, exchange),
        };
        let edges = self
            .inputs
            .iter()
            .map(|(from, port)| (*from, port.clone(), partitioning, exchange.clone()))
            .collect();
        self.job
            .add_operator::<U, T>(uid, kind, Vec::new(), main_port, create, edges)
    }

    /// Applies `f` to every record.
    pub fn map<U: Clone + Send + 'static>(
        &self,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Stream<U> {
        let f = Arc::new(f);
        self.forward_to(
            None,
            OperatorKind::Map,
            true,
            Arc::new(move |_ctx, mut outs| {
                Ok(Typed::<T>::erase(Box::new(Map {
                    f: f.clone(),
                    next: outs.main::<U>(),
                })))
            }),
        )
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        let f = Arc::new(f);
        self.forward_to(
            None,
            OperatorKind::Filter,
            true,
            Arc::new(move |_ctx, mut outs| {
                Ok(Typed::<T>::erase(Box::new(Filter {
                    f: f.clone(),
                    next: outs.main::<T>(),
                })))
            }),
        )
    }

    /// Replaces every record by the records `f` returns for it.
    pub fn flat_map<U: Clone + Send + 'static, I: IntoIterator<Item = U>>(
        &self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        let f = Arc::new(f);
        self.forward_to(
            None,
            OperatorKind::FlatMap,
            true,
            Arc::new(move |_ctx, mut outs| {
                Ok(Typed::<T>::erase(Box::new(FlatMap {
                    f: f.clone(),
                    next: outs.main::<U>(),
                })))
            }),
        )
    }

    /// The records of `self` and of `others` as one stream (Flink's `union`); record order
    /// between the inputs is not defined, and the watermark is the smallest of the inputs'.
    pub fn union(&self, others: &[Stream<T>]) -> Stream<T>
    where
        T: Serialize + DeserializeOwned,
    {
        let mut inputs = self.inputs.clone();
        for o in others {
            if !Rc::ptr_eq(&o.job.inner, &self.job.inner) {
                self.job.problem(
                    "union of streams of different JobBuilders; build one job with one JobBuilder"
                        .into(),
                );
            }
            inputs.extend(o.inputs.iter().cloned());
        }
        Stream::new(self.job.clone(), inputs, Some(forward_exchange::<T>))
    }

    /// This stream broadcast to every subtask of the keyed operator it is connected to
    /// ([`KeyedStream::connect_broadcast`]), which keeps broadcast state in the map
    /// `descriptor` declares (more with [`BroadcastStream::and`]); Flink's `broadcast`.
    pub fn broadcast<K, V>(&self, descriptor: &MapStateDescriptor<K, V>) -> BroadcastStream<T>
    where
        K: Ord + Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        BroadcastStream::new(self.clone(), descriptor)
    }

    /// The records the operator that produced this stream emitted to side output `tag`
    /// (Flink's `getSideOutput`).
    pub fn side_output<S: Clone + Send + 'static>(&self, tag: &OutputTag<S>) -> Stream<S> {
        let [(node, OutputPort::Main)] = self.inputs.as_slice() else {
            self.job.problem(format!(
                "side output `{}` is read from a union; read it from the stream of the operator that emits it",
                tag.id()
            ));
            return Stream::new(self.job.clone(), Vec::new(), None);
        };
        let port = OutputPort::Side(tag.id().to_string());
        self.job.inner.borrow_mut().graph.nodes[node.0]
            .ports
            .insert(port.clone(), tee::<S>);
        Stream::new(self.job.clone(), vec![(*node, port)], None)
    }

    /// Runs `function` on every record, with operator state of `uid` (restored after a
    /// failure, redistributed on a rescale) and side outputs; chained to the operator before
    /// it.
    pub fn process<F>(&self, uid: &str, function: F) -> Stream<F::Out>
    where
        F: ProcessFunction<In = T>,
    {
        let uid_owned = uid.to_string();
        self.forward_to(
            Some(uid),
            OperatorKind::Process,
            true,
            Arc::new(move |ctx, mut outs| {
                let next = outs.main::<F::Out>();
                let sides = SideOutputs::new(outs.sides());
                let op = ProcessOperator::new(&uid_owned, ctx, function.clone(), next, sides)?;
                Ok(Typed::<T>::erase(Box::new(op)))
            }),
        )
    }

    /// Partitions the stream by the key `selector` returns: records with equal keys meet in
    /// the same subtask, which owns the key's key group.
    pub fn key_by<K: Key>(
        &self,
        selector: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<K, T>
    where
        T: Serialize + DeserializeOwned,
    {
        KeyedStream {
            upstream: self.clone(),
            selector: Arc::new(selector),
        }
    }

    /// Ends the stream in `sink`, whose state is operator state of `uid`.
    pub fn sink(&self, uid: &str, sink: impl Sink<T>) {
        let uid_owned = uid.to_string();
        let sink = Arc::new(sink);
        let checked = sink.clone();
        self.job
            .inner
            .borrow_mut()
            .timing_checks
            .push(Arc::new(move |t| checked.check_checkpointing(t)));
        let _: Stream<()> = self.forward_to(
            Some(uid),
            OperatorKind::Sink,
            false,
            Arc::new(move |ctx, _outs| {
                let writer = sink.create_writer(ctx, &uid_owned, ctx.operator_state(&uid_owned))?;
                Ok(Typed::<T>::erase(writer))
            }),
        );
    }
}

impl JobBuilder {
    /// Adds a node with input records `I` (what its collector takes) and main output `U`,
    /// fed by `edges` (from, port, partitioning, exchange builder when not chained).
    fn add_operator<U: Clone + Send + 'static, I: Send + 'static>(
        &self,
        uid: Option<&str>,
        kind: OperatorKind,
        states: Vec<StateInfo>,
        main_port: bool,
        create: Arc<Create>,
        edges: Vec<(NodeId, OutputPort, Partitioning, Option<ExchangeBuilder>)>,
    ) -> Stream<U> {
        let uid = match uid {
            Some(u) => u.to_string(),
            None => self.next_auto_uid(match kind {
                OperatorKind::Map => "map",
                OperatorKind::Filter => "filter",
                OperatorKind::FlatMap => "flat-map",
                _ => "operator",
            }),
        };
        if edges.is_empty() {
            self.problem(format!("operator `{uid}` has no input"));
        }
        let mut ports = BTreeMap::new();
        if main_port {
            ports.insert(OutputPort::Main, tee::<U> as super::plan::TeeBuilder);
        }
        let id = self.add_node(Node {
            uid,
            kind,
            states,
            factory: NodeFactory::Operator {
                create,
                input_task: Arc::new(input_task::<I>),
                count_input: super::plan::count_input::<I>,
            },
            ports,
        });
        let mut b = self.inner.borrow_mut();
        for (from, port, partitioning, exchange) in edges {
            b.graph.add_edge(Edge {
                from,
                port,
                to: id,
                partitioning,
                exchange,
            });
        }
        drop(b);
        Stream::new(self.clone(), vec![(id, OutputPort::Main)], None)
    }
}

/// A shared key selector.
type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// A stream partitioned by key. Cloning it reads the same stream again: each operator added
/// to a clone gets every record.
pub struct KeyedStream<K, T> {
    pub(super) upstream: Stream<T>,
    selector: KeySelector<T, K>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        Self {
            upstream: self.upstream.clone(),
            selector: self.selector.clone(),
        }
    }
}

impl<K: Key, T: Clone + Send + Serialize + DeserializeOwned + 'static> KeyedStream<K, T> {
    /// Hash edges from every input of the upstream stream.
    fn hash_edges(&self) -> Vec<(NodeId, OutputPort, Partitioning, Option<ExchangeBuilder>)> {
        let exchange = hash_exchange::<K, T>(self.selector.clone());
        self.upstream
            .inputs
            .iter()
            .map(|(from, port)| {
                (
                    *from,
                    port.clone(),
                    Partitioning::Hash,
                    Some(exchange.clone()),
                )
            })
            .collect()
    }

    /// Runs `function` on every record with its key's state and timers; its state and
    /// timers are keyed state of `uid`. The declared states are learned now, by calling
    /// `open` on a clone of `function` against empty state.
    pub fn process<F>(&self, uid: &str, function: F) -> Stream<F::Out>
    where
        F: KeyedProcessFunction<Key = K, In = T>,
    {
        add_keyed_process(&self.upstream.job, uid, function, self.hash_edges())
    }

    /// This stream and `other`, keyed by the same key type, as the two inputs of one keyed
    /// operator (Flink's `connect`).
    pub fn connect<B: Clone + Send + Serialize + DeserializeOwned + 'static>(
        &self,
        other: &KeyedStream<K, B>,
    ) -> ConnectedStreams<K, T, B> {
        ConnectedStreams {
            first: KeyedStream {
                upstream: self.upstream.clone(),
                selector: self.selector.clone(),
            },
            second: KeyedStream {
                upstream: other.upstream.clone(),
                selector: other.selector.clone(),
            },
        }
    }

    /// This stream connected to `broadcast`, whose every element reaches every subtask
    /// (Flink's `connect` of a keyed stream with a `BroadcastStream`).
    pub fn connect_broadcast<B: Clone + Send + Serialize + DeserializeOwned + 'static>(
        &self,
        broadcast: &BroadcastStream<B>,
    ) -> BroadcastConnectedStream<K, T, B> {
        BroadcastConnectedStream {
            keyed: KeyedStream {
                upstream: self.upstream.clone(),
                selector: self.selector.clone(),
            },
            broadcast: BroadcastStream {
                upstream: broadcast.upstream.clone(),
                descriptors: broadcast.descriptors.clone(),
            },
        }
    }

    /// Tumbling event-time windows of `size_ms` aligned to the epoch (Flink's
    /// `TumblingEventTimeWindows.of(size)`); the same as
    /// `window(WindowAssigner::tumbling_event_time(size_ms))`.
    pub fn tumbling_window(self, size_ms: i64) -> WindowedStream<K, T> {
        self.window(WindowAssigner::tumbling_event_time(size_ms))
    }

    /// Cuts the stream into the windows of `assigner`, per key (Flink's `window`). An
    /// assigner with a size, slide or gap that is not positive is a problem of the job,
    /// reported by [`JobBuilder::build`].
    pub fn window(self, assigner: WindowAssigner) -> WindowedStream<K, T> {
        if let Err(e) = assigner.validate() {
            self.upstream.job.problem(e);
        }
        WindowedStream {
            keyed: self,
            settings: WindowSettings {
                assigner,
                allowed_lateness_ms: 0,
                late_tag: None,
            },
        }
    }

    /// This stream's and `other`'s records with the same key in the same window of
    /// `assigner`, paired (Flink's window join; see [`super::join`]).
    pub fn window_join<B: Clone + Send + Serialize + DeserializeOwned + 'static>(
        &self,
        other: &KeyedStream<K, B>,
        assigner: WindowAssigner,
    ) -> WindowJoin<K, T, B> {
        WindowJoin {
            first: self.clone(),
            second: other.clone(),
            assigner,
        }
    }

    /// This stream's records `a` with `other`'s records `b` of the same key whose event time
    /// lies in `[a.ts + lower_ms, a.ts + upper_ms]` (Flink's interval join with
    /// `between(lower, upper)`; see [`super::join`]).
    pub fn interval_join<B: Clone + Send + Serialize + DeserializeOwned + 'static>(
        &self,
        other: &KeyedStream<K, B>,
        lower_ms: i64,
        upper_ms: i64,
    ) -> IntervalJoin<K, T, B> {
        IntervalJoin {
            first: self.clone(),
            second: other.clone(),
            lower_ms,
            upper_ms,
        }
    }
}

/// Adds a keyed process operator `uid` running `function`, fed by `edges`.
fn add_keyed_process<F: KeyedProcessFunction>(
    job: &JobBuilder,
    uid: &str,
    function: F,
    edges: Vec<(NodeId, OutputPort, Partitioning, Option<ExchangeBuilder>)>,
) -> Stream<F::Out> {
    let states = match declared_states(uid, function.clone()) {
        Ok(s) => s,
        Err(e) => {
            job.problem(e.to_string());
            Vec::new()
        }
    };
    let uid_owned = uid.to_string();
    let create = move |ctx: &TaskContext, mut outs: super::plan::Outputs| {
        let next = outs.main::<F::Out>();
        let sides = SideOutputs::new(outs.sides());
        let op = KeyedProcessOperator::new(&uid_owned, ctx, function.clone(), next, sides)?;
        Ok(Typed::<KeyedRecord<F::Key, F::In>>::erase(Box::new(op)))
    };
    job.add_operator::<F::Out, KeyedRecord<F::Key, F::In>>(
        Some(uid),
        OperatorKind::KeyedProcess,
        states,
        true,
        Arc::new(create),
        edges,
    )
}

/// Two keyed streams with the same key type, to be processed by one
/// [`KeyedCoProcessFunction`].
pub struct ConnectedStreams<K, A, B> {
    first: KeyedStream<K, A>,
    second: KeyedStream<K, B>,
}

impl<K, A, B> ConnectedStreams<K, A, B>
where
    K: Key,
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    B: Clone + Send + Serialize + DeserializeOwned + 'static,
{
    /// Runs `function` on the records of both streams with their key's shared state and
    /// timers, keyed state of `uid`.
    pub fn process<F>(&self, uid: &str, function: F) -> Stream<F::Out>
    where
        F: KeyedCoProcessFunction<Key = K, In1 = A, In2 = B>,
    {
        let edges = co_edges(&self.first, &self.second);
        add_keyed_process(&self.first.upstream.job, uid, CoProcess(function), edges)
    }
}

/// Hash edges from both streams' inputs into one keyed operator whose input is
/// [`CoInput`]: records of `first` arrive as `CoInput::First`, of `second` as
/// `CoInput::Second`, each in the key group of its key.
pub(super) fn co_edges<K, A, B>(
    first: &KeyedStream<K, A>,
    second: &KeyedStream<K, B>,
) -> Vec<(NodeId, OutputPort, Partitioning, Option<ExchangeBuilder>)>
where
    K: Key,
    A: Clone + Send + Serialize + DeserializeOwned + 'static,
    B: Clone + Send + Serialize + DeserializeOwned + 'static,
{
    let first_selector = first.selector.clone();
    let second_selector = second.selector.clone();
    let selector: KeySelector<CoInput<A, B>, K> = Arc::new(move |r: &CoInput<A, B>| match r {
        CoInput::First(a) => first_selector(a),
        CoInput::Second(b) => second_selector(b),
    });
    let first_exchange =
        hash_exchange_from::<K, A, CoInput<A, B>>(selector.clone(), CoInput::First);
    let second_exchange = hash_exchange_from::<K, B, CoInput<A, B>>(selector, CoInput::Second);
    let mut edges = Vec::new();
    for (from, port) in &first.upstream.inputs {
        edges.push((
            *from,
            port.clone(),
            Partitioning::Hash,
            Some(first_exchange.clone()),
        ));
    }
    for (from, port) in &second.upstream.inputs {
        edges.push((
            *from,
            port.clone(),
            Partitioning::Hash,
            Some(second_exchange.clone()),
        ));
    }
    edges
}

impl<K, T, B> BroadcastConnectedStream<K, T, B>
where
    K: Key,
    T: Clone + Send + Serialize + DeserializeOwned + 'static,
    B: Clone + Send + Serialize + DeserializeOwned + 'static,
{
    /// Runs `function` on the keyed records (with their key's state and timers, keyed state
    /// of `uid`) and the broadcast elements (with the broadcast state, operator state of
    /// `uid`).
    pub fn process<F>(&self, uid: &str, function: F) -> Stream<F::Out>
    where
        F: KeyedBroadcastProcessFunction<Key = K, In = T, Broadcast = B>,
    {
        let job = &self.keyed.upstream.job;
        let mut probe = function.clone();
        let states = match declared_states_of(uid, |c| probe.open(c)) {
            Ok(s) => s,
            Err(e) => {
                job.problem(e.to_string());
                Vec::new()
            }
        };
        let keyed_exchange = keyed_into_broadcast_exchange::<K, T, B>(self.keyed.selector.clone());
        let broadcast_exchange = broadcast_exchange::<K, T, B>();
        let edges = self
            .keyed
            .upstream
            .inputs
            .iter()
            .map(|(from, port)| (*from, port.clone(), Partitioning::Hash, &keyed_exchange))
            .chain(self.broadcast.upstream.inputs.iter().map(|(from, port)| {
                (
                    *from,
                    port.clone(),
                    Partitioning::Broadcast,
                    &broadcast_exchange,
                )
            }))
            .map(|(from, port, p, e)| (from, port, p, Some(e.clone())))
            .collect();
        let uid_owned = uid.to_string();
        let descriptors = self.broadcast.descriptors.clone();
        let create = move |ctx: &TaskContext, mut outs: super::plan::Outputs| {
            let next = outs.main::<F::Out>();
            let sides = SideOutputs::new(outs.sides());
            let op = KeyedBroadcastOperator::new(
                &uid_owned,
                ctx,
                function.clone(),
                &descriptors,
                next,
                sides,
            )?;
            Ok(Typed::<Connected<K, T, B>>::erase(Box::new(op)))
        };
        job.add_operator::<F::Out, Connected<K, T, B>>(
            Some(uid),
            OperatorKind::KeyedBroadcastProcess,
            states,
            true,
            Arc::new(create),
            edges,
        )
    }
}

/// The states `function`'s `open` declares, learned against a throwaway heap backend.
fn declared_states<F: KeyedProcessFunction>(
    uid: &str,
    mut function: F,
) -> Result<Vec<StateInfo>, TaskError> {
    declared_states_of(uid, |c| function.open(c))
}

/// The states `open` declares (with the timers' states), learned against a throwaway heap
/// backend.
fn declared_states_of(
    uid: &str,
    open: impl FnOnce(&mut OpenContext<'_>) -> Result<(), TaskError>,
) -> Result<Vec<StateInfo>, TaskError> {
    let mut store = KeyedStateStore::new(
        Box::new(HeapBackend::new(KeyGroupRange { start: 0, end: 0 })),
        system_clock(),
    );
    let mut states = DeclaredStates::default();
    open(&mut OpenContext {
        uid,
        subtask: 0,
        parallelism: 1,
        store: &mut store,
        states: &mut states,
    })?;
    let mut infos = states.infos;
    infos.push(StateInfo::new(
        crate::state::timers::EVENT_TIME_TIMERS,
        StateKind::Value,
    ));
    infos.push(StateInfo::new(
        crate::state::timers::PROCESSING_TIME_TIMERS,
        StateKind::Value,
    ));
    Ok(infos)
}

/// A keyed stream cut into windows (see [`super::window`] for the semantics).
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    settings: WindowSettings,
}

impl<K: Key, T: Clone + Send + Serialize + DeserializeOwned + 'static> WindowedStream<K, T> {
    /// Keeps each event-time window's contents `lateness_ms` after it fired: a record within
    /// that time fires the window again with the updated result (Flink's `allowedLateness`).
    /// Default 0. A negative value is a problem of the job; processing-time windows have no
    /// late records and ignore it.
    pub fn allowed_lateness(mut self, lateness_ms: i64) -> Self {
        if lateness_ms < 0 {
            self.keyed.upstream.job.problem(format!(
                "window allowed lateness must be 0 or more, got {lateness_ms} ms"
            ));
        }
        self.settings.allowed_lateness_ms = lateness_ms.max(0);
        self
    }

    /// Sends records later than the allowed lateness to the side output `tag` instead of
    /// dropping them (Flink's `sideOutputLateData`); read it with
    /// [`Stream::side_output`] on the window's result stream. Dropped late records are
    /// counted in the operator's late records.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.settings.late_tag = Some(tag.id());
        self
    }

    /// The slicing of this window when the fast path runs it: event-time tumbling or sliding
    /// windows at offset 0, without lateness and late side output.
    fn slicing(&self) -> Option<Slicing> {
        if self.settings.allowed_lateness_ms != 0 || self.settings.late_tag.is_some() {
            return None;
        }
        match self.settings.assigner {
            WindowAssigner::Tumbling {
                size_ms,
                offset_ms: 0,
                domain: TimeDomain::EventTime,
            } => Some(Slicing::new(size_ms, size_ms)),
            WindowAssigner::Sliding {
                size_ms,
                slide_ms,
                offset_ms: 0,
                domain: TimeDomain::EventTime,
            } => Some(Slicing::new(size_ms, slide_ms)),
            _ => None,
        }
    }

    /// Aggregates each key's records per window with `function`; the accumulators are keyed
    /// state of `uid`. Emits one [`WindowResult`] per key and window when the window fires,
    /// with event time `end - 1`.
    pub fn aggregate<A>(self, uid: &str, function: A) -> Stream<WindowResult<K, A::Out>>
    where
        A: AggregateFunction<In = T>,
        A::Out: Clone,
    {
        let function = Arc::new(function);
        if let Some(slicing) = self.slicing() {
            return self.sliced_aggregate(uid, function, slicing);
        }
        self.add_window_operator(uid, vec![Aggregated::<A>::info()], move |store| {
            Aggregated::open(store, function.clone())
        })
    }

    /// Folds each key's records per window with `reduce`; the folded values are keyed state
    /// of `uid`. Emits one [`WindowResult`] per key and window when the window fires, with
    /// event time `end - 1`.
    pub fn reduce<F>(self, uid: &str, reduce: F) -> Stream<WindowResult<K, T>>
    where
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.add_window_operator(uid, vec![Reduced::<T>::info()], move |store| {
            Reduced::open(store, reduce.clone())
        })
    }

    /// Keeps every record of each key's windows (list state of `uid`) and calls `function`
    /// with all of them when a window fires (Flink's `process` with a
    /// `ProcessWindowFunction`).
    pub fn process<P>(self, uid: &str, function: P) -> Stream<P::Out>
    where
        P: ProcessWindowFunction<Key = K, In = T>,
    {
        self.add_window_operator(uid, vec![Elements::<P>::info()], move |store| {
            Elements::open(store, function.clone())
        })
    }

    /// Adds the general window operator `uid` over this keyed stream.
    fn add_window_operator<C, O>(self, uid: &str, states: Vec<StateInfo>, open: O) -> Stream<C::Out>
    where
        C: WindowContents<K, T>,
        C::Out: Clone,
        O: Fn(&mut KeyedStateStore) -> Result<C, crate::state::StateError> + Send + Sync + 'static,
    {
        let edges = self.keyed.hash_edges();
        add_window_operator(
            &self.keyed.upstream.job,
            uid,
            self.settings,
            states,
            open,
            edges,
        )
    }

    /// The fast path of [`WindowedStream::aggregate`] (see
    /// [`crate::operators::window::sliced_aggregate`]).
    fn sliced_aggregate<A>(
        self,
        uid: &str,
        function: Arc<A>,
        slicing: Slicing,
    ) -> Stream<WindowResult<K, A::Out>>
    where
        A: AggregateFunction<In = T>,
        A::Out: Clone,
    {
        let uid_owned = uid.to_string();
        let create = move |ctx: &TaskContext, mut outs: super::plan::Outputs| {
            let store = ctx.keyed_state(&uid_owned)?;
            let setup = SlicedAggregateSetup {
                slicing,
                key_groups: ctx.key_group_range,
                restored: ctx.operator_state(&uid_owned),
                next: outs.main::<WindowResult<K, A::Out>>(),
                metrics: ctx.metrics.clone(),
                subtask: ctx.subtask as usize,
            };
            let op = SlicedAggregateOperator::new(&uid_owned, store, function.clone(), setup)?;
            Ok(Typed::<KeyedRecord<K, T>>::erase(Box::new(op)))
        };
        self.keyed
            .upstream
            .job
            .add_operator::<WindowResult<K, A::Out>, KeyedRecord<K, T>>(
                Some(uid),
                OperatorKind::WindowAggregate,
                vec![StateInfo::new(WINDOW_STATE, StateKind::Aggregating)],
                true,
                Arc::new(create),
                self.keyed.hash_edges(),
            )
    }
}

/// Adds the general window operator `uid` with `settings`, fed by `edges`, whose window
/// function keeps `states` and is opened on each subtask's store by `open`.
pub(super) fn add_window_operator<K, T, C, O>(
    job: &JobBuilder,
    uid: &str,
    settings: WindowSettings,
    mut states: Vec<StateInfo>,
    open: O,
    edges: Vec<(NodeId, OutputPort, Partitioning, Option<ExchangeBuilder>)>,
) -> Stream<C::Out>
where
    K: Key,
    T: Clone + Send + 'static,
    C: WindowContents<K, T>,
    C::Out: Clone,
    O: Fn(&mut KeyedStateStore) -> Result<C, crate::state::StateError> + Send + Sync + 'static,
{
    if settings.assigner.is_merging() {
        states.push(sessions_info());
    }
    states.push(StateInfo::new(
        crate::state::timers::EVENT_TIME_TIMERS,
        StateKind::Value,
    ));
    states.push(StateInfo::new(
        crate::state::timers::PROCESSING_TIME_TIMERS,
        StateKind::Value,
    ));
    let uid_owned = uid.to_string();
    let create = move |ctx: &TaskContext, mut outs: super::plan::Outputs| {
        let next = outs.main::<C::Out>();
        let sides = SideOutputs::new(outs.sides());
        let op = WindowOperator::<K, T, C>::new(&uid_owned, ctx, settings, &open, next, sides)?;
        Ok(Typed::<KeyedRecord<K, T>>::erase(Box::new(op)))
    };
    job.add_operator::<C::Out, KeyedRecord<K, T>>(
        Some(uid),
        OperatorKind::Window,
        states,
        true,
        Arc::new(create),
        edges,
    )
}

/// A finished job: its logical graph, and what the runtime and `weir check` read of it.
pub struct JobGraph {
    pub(crate) graph: StreamGraph,
    uids: Vec<String>,
    keyed_states: BTreeMap<String, Vec<StateInfo>>,
    fixed_states: Vec<String>,
    chains: Vec<String>,
    output: Option<String>,
    timing_checks: Vec<TimingCheck>,
}

impl JobGraph {
    /// Checks the job's sinks against its checkpoint timing (see
    /// [`Sink::check_checkpointing`]).
    ///
    /// # Errors
    /// The first sink's message.
    pub fn check_checkpointing(&self, timing: &CheckpointTiming) -> Result<(), String> {
        self.timing_checks
            .iter()
            .try_for_each(|check| check(timing))
    }

    fn new(graph: StreamGraph, output: Option<String>) -> Self {
        let uids = graph
            .nodes()
            .iter()
            .filter(|n| !n.kind.is_stateless())
            .map(|n| n.uid.clone())
            .collect();
        let keyed_states = graph
            .nodes()
            .iter()
            .filter(|n| !n.states.is_empty())
            .map(|n| (n.uid.clone(), n.states.clone()))
            .collect();
        let fixed_states = graph
            .nodes()
            .iter()
            .filter(|n| n.kind.declares_all_states())
            .map(|n| n.uid.clone())
            .collect();
        let chains = graph
            .task_heads()
            .into_iter()
            .map(|id| graph.node(id).uid.clone())
            .collect();
        Self {
            graph,
            uids,
            keyed_states,
            fixed_states,
            chains,
            output,
            timing_checks: Vec::new(),
        }
    }

    /// Records where the job's output goes (shown in the run summary).
    pub fn with_output(mut self, location: impl Into<String>) -> Self {
        self.output = Some(location.into());
        self
    }

    /// Where the job's output goes, if its builder said.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// The logical graph.
    pub fn stream_graph(&self) -> &StreamGraph {
        &self.graph
    }

    /// The tasks of each subtask, named by the uid of their first operator, in topological
    /// order: operators joined by chained edges run in one task.
    pub fn chains(&self) -> &[String] {
        &self.chains
    }

    /// The uids of the job's named (stateful) operators, in topological order.
    pub fn uids(&self) -> &[String] {
        &self.uids
    }

    /// The keyed states (name, kind, type and version) each keyed operator declares, by uid.
    pub fn keyed_states(&self) -> &BTreeMap<String, Vec<StateInfo>> {
        &self.keyed_states
    }

    /// Number of source operators.
    pub fn source_count(&self) -> usize {
        self.graph.source_count()
    }

    /// The uid of every operator of the graph, stateless ones included (the per-operator
    /// metrics' `operator` label), in graph order.
    pub fn operator_uids(&self) -> Vec<String> {
        self.graph.nodes().iter().map(|n| n.uid.clone()).collect()
    }

    /// What a snapshot must fit to restore this graph with `max_parallelism` key groups
    /// (see [`crate::checkpoint::incompatibilities`]).
    pub fn shape(&self, max_parallelism: u32, allow_non_restored_state: bool) -> JobShape<'_> {
        JobShape {
            uids: &self.uids,
            keyed_states: &self.keyed_states,
            fixed_states: &self.fixed_states,
            max_parallelism,
            allow_non_restored_state,
        }
    }
}
