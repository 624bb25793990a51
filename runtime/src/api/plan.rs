//! The planning step: turns a [`StreamGraph`] into the tasks of the subtasks one process runs
//! (all of them in a local run, a worker's share in distributed mode).
//!
//! For each exchange edge (in edge order, which numbers the exchange the same way in every
//! process) the planner builds the channels; then it walks the nodes backwards, creating each
//! subtask's operator with its outputs already in hand: the next operator of its chain, the
//! sending end of an exchange, or several of these behind a tee. A node that starts a task
//! (a source, or a node fed by exchanges) becomes a task.
//!
//! Typed code lives in the builder closures; the planner moves their values around as
//! [`ErasedCollector`]s and `Box<dyn Any>` and never needs to know a record type.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use weir_crds::CheckpointingMode;

use super::graph::{AnyBox, Erased, NodeId, OutputPort, StreamGraph};
use super::{CheckpointBarrier, Collector, OperatorSnapshot, TaskContext, TaskError, Timestamp};
use crate::metrics::OperatorCounters;
use crate::net::NetworkContext;
use crate::task::Task;

/// One task of an instantiated job.
pub(crate) struct TaskSpec {
    /// Uid of the task's first operator.
    pub name: String,
    pub subtask: u32,
    pub is_source: bool,
    pub task: Box<dyn Task>,
}

/// What the planner needs besides the graph: the contexts of the subtasks this process runs
/// and how channels are built.
pub(crate) struct Instantiation {
    pub contexts: Vec<TaskContext>,
    /// Subtasks per operator in the whole job.
    pub parallelism: u32,
    /// Channels to other workers; `None` in a local run.
    pub network: Option<NetworkContext>,
    pub mode: CheckpointingMode,
    /// Records per batch on an exchange.
    pub batch_size: usize,
    /// Batches buffered per exchange channel before the producer blocks.
    pub channel_capacity: usize,
}

impl Instantiation {
    /// The subtask indexes of this process, in context order.
    pub fn local_subtasks(&self) -> Vec<u32> {
        self.contexts.iter().map(|c| c.subtask).collect()
    }
}

/// A collector whose record type is known only to the closures that made it: the control
/// events every operator forwards, and a way back to the typed `Box<dyn Collector<T>>`.
pub(crate) trait ErasedCollector: Send {
    /// The typed collector, as `Box<Box<dyn Collector<T>>>` inside the `Any`.
    fn into_any(self: Box<Self>) -> AnyBox;
    /// The typed collector, as `&mut Box<dyn Collector<T>>` inside the `Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError>;
    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError>;
    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError>;
    fn end_of_input(&mut self) -> Result<(), TaskError>;
}

/// The erased form of a `Box<dyn Collector<T>>`.
pub(crate) struct Typed<T>(pub Box<dyn Collector<T>>);

impl<T: 'static> Typed<T> {
    pub fn erase(c: Box<dyn Collector<T>>) -> Erased {
        Box::new(Typed(c))
    }
}

impl<T: 'static> ErasedCollector for Typed<T> {
    fn into_any(self: Box<Self>) -> AnyBox {
        Box::new(self.0)
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.0
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        self.0.watermark(watermark)
    }
    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        self.0.checkpoint(barrier, out)
    }
    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.0.checkpoint_complete(id)
    }
    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.0.end_of_input()
    }
}

/// Recovers the typed collector from its erased form.
pub(crate) fn unerase<T: 'static>(c: Erased) -> Box<dyn Collector<T>> {
    *c.into_any()
        .downcast::<Box<dyn Collector<T>>>()
        .expect("invariant: the builder connects ports of one record type")
}

/// Fans a port out to its consumers: none (records are dropped), one, or several (each gets
/// a clone), counting the records into the operator's `records_out`.
pub(crate) type TeeBuilder = fn(Vec<Erased>, Arc<OperatorCounters>) -> Erased;

/// Wraps an operator's erased input collector so that it counts the records into the
/// operator's `records_in`.
pub(crate) type InputCounter = fn(Erased, Arc<OperatorCounters>) -> Erased;

/// The [`TeeBuilder`] of record type `T`.
pub(crate) fn tee<T: Clone + Send + 'static>(
    mut outs: Vec<Erased>,
    counters: Arc<OperatorCounters>,
) -> Erased {
    let inner: Box<dyn Collector<T>> = match outs.len() {
        0 => Box::new(Discard),
        1 => unerase::<T>(outs.pop().expect("invariant: one output")),
        _ => Box::new(Tee {
            outs: outs.into_iter().map(unerase::<T>).collect(),
        }),
    };
    Typed::<T>::erase(Box::new(Counted {
        inner,
        counters,
        input: false,
    }))
}

/// The [`InputCounter`] of record type `T`.
pub(crate) fn count_input<T: Send + 'static>(
    input: Erased,
    counters: Arc<OperatorCounters>,
) -> Erased {
    Typed::<T>::erase(Box::new(Counted {
        inner: unerase::<T>(input),
        counters,
        input: true,
    }))
}

/// Counts the records passing into (`input`) or out of an operator subtask, and forwards
/// everything, processing time included.
struct Counted<T> {
    inner: Box<dyn Collector<T>>,
    counters: Arc<OperatorCounters>,
    input: bool,
}

impl<T: Send> Collector<T> for Counted<T> {
    #[inline]
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError> {
        let c = &*self.counters;
        OperatorCounters::add(
            if self.input {
                &c.records_in
            } else {
                &c.records_out
            },
            1,
        );
        self.inner.record(ts, value)
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        self.inner.watermark(watermark)
    }
    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        self.inner.checkpoint(barrier, out)
    }
    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.inner.checkpoint_complete(id)
    }
    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.inner.end_of_input()
    }
    fn idle(&mut self) -> Result<(), TaskError> {
        self.inner.idle()
    }
    fn processing_time(&mut self, now: Timestamp) -> Result<(), TaskError> {
        self.inner.processing_time(now)
    }
    fn next_processing_timer(&self) -> Option<Timestamp> {
        self.inner.next_processing_timer()
    }
}

/// Drops records; forwards nothing (an output nobody reads).
struct Discard;

impl<T> Collector<T> for Discard {
    fn record(&mut self, _ts: Timestamp, _value: T) -> Result<(), TaskError> {
        Ok(())
    }
    fn watermark(&mut self, _watermark: Timestamp) -> Result<(), TaskError> {
        Ok(())
    }
    fn checkpoint(
        &mut self,
        _barrier: CheckpointBarrier,
        _out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        Ok(())
    }
    fn checkpoint_complete(&mut self, _id: u64) -> Result<(), TaskError> {
        Ok(())
    }
    fn end_of_input(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Sends every record and event to each of several collectors.
struct Tee<T> {
    outs: Vec<Box<dyn Collector<T>>>,
}

impl<T: Clone + Send> Collector<T> for Tee<T> {
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError> {
        let (last, rest) = self
            .outs
            .split_last_mut()
            .expect("invariant: a tee has outputs");
        for o in rest {
            o.record(ts, value.clone())?;
        }
        last.record(ts, value)
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|o| o.watermark(watermark))
    }
    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|o| o.checkpoint(barrier, out))
    }
    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|o| o.checkpoint_complete(id))
    }
    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.end_of_input())
    }
    fn idle(&mut self) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.idle())
    }
}

/// The outputs of one subtask of an operator, by port, each already fanned out.
pub(crate) struct Outputs {
    ports: BTreeMap<OutputPort, Erased>,
}

impl Outputs {
    /// The main output as a typed collector.
    pub fn main<T: 'static>(&mut self) -> Box<dyn Collector<T>> {
        unerase(
            self.ports
                .remove(&OutputPort::Main)
                .expect("invariant: the builder registers the main port"),
        )
    }

    /// The side outputs, by tag id.
    pub fn sides(&mut self) -> BTreeMap<String, Erased> {
        let sides = std::mem::take(&mut self.ports);
        sides
            .into_iter()
            .filter_map(|(p, c)| match p {
                OutputPort::Side(tag) => Some((tag, c)),
                OutputPort::Main => None,
            })
            .collect()
    }
}

/// Creates a source subtask's task, given its outputs.
pub(crate) type SourceFactory =
    dyn Fn(&TaskContext, &Instantiation, Outputs) -> Result<Box<dyn Task>, TaskError> + Send + Sync;
/// Creates an operator subtask, given its outputs; returns its input as an erased collector.
pub(crate) type OperatorFactory =
    dyn Fn(&TaskContext, Outputs) -> Result<Erased, TaskError> + Send + Sync;
/// Creates the task of an exchange-fed operator from its input channels (one erased
/// `Vec<Receiver<Message<In>>>` per input edge) and its erased input collector.
pub(crate) type InputTaskFactory =
    dyn Fn(Vec<AnyBox>, Erased, &TaskContext, CheckpointingMode) -> Box<dyn Task> + Send + Sync;

/// How a node's subtasks are made.
pub(crate) enum NodeFactory {
    /// A source: becomes a task.
    Source(Arc<SourceFactory>),
    /// Any other operator.
    Operator {
        create: Arc<OperatorFactory>,
        input_task: Arc<InputTaskFactory>,
        count_input: InputCounter,
    },
}

/// The channels of one exchange, seen from this process: per local producer subtask the
/// erased collector that sends into it, per local consumer subtask its erased receivers.
pub(crate) struct ExchangeEnds {
    pub producers: Vec<Erased>,
    pub consumers: Vec<AnyBox>,
}

/// Builds the channels of an exchange edge, given its number.
pub(crate) type ExchangeBuilder =
    Arc<dyn Fn(&Instantiation, u32) -> Result<ExchangeEnds, TaskError> + Send + Sync>;

/// Creates the tasks of `inst`'s subtasks of `graph`, ordered by task head and subtask.
///
/// # Errors
/// [`TaskError`] when an operator cannot be created (its state does not restore, its input
/// does not open, a peer worker cannot be reached).
pub(crate) fn plan(graph: &StreamGraph, inst: &Instantiation) -> Result<Vec<TaskSpec>, TaskError> {
    let locals = inst.contexts.len();
    // Exchanges first, numbered by edge index.
    let mut producers: BTreeMap<usize, Vec<Option<Erased>>> = BTreeMap::new();
    let mut consumers: BTreeMap<usize, Vec<Option<AnyBox>>> = BTreeMap::new();
    for (i, edge) in graph.edges.iter().enumerate() {
        if graph.is_chained(edge) {
            continue;
        }
        let build = edge
            .exchange
            .as_ref()
            .expect("invariant: the builder gives every non-chained edge an exchange");
        let ends = build(inst, i as u32)?;
        producers.insert(i, ends.producers.into_iter().map(Some).collect());
        consumers.insert(i, ends.consumers.into_iter().map(Some).collect());
    }
    // Input collectors of chained nodes, per local subtask.
    let mut chained: Vec<Vec<Option<Erased>>> = (0..graph.nodes.len())
        .map(|_| (0..locals).map(|_| None).collect())
        .collect();
    let mut tasks: Vec<(usize, TaskSpec)> = Vec::new();
    for n in (0..graph.nodes.len()).rev() {
        let id = NodeId(n);
        let node = &graph.nodes[n];
        let heads_task = !graph.inputs(id).any(|(_, e)| graph.is_chained(e));
        for (l, ctx) in inst.contexts.iter().enumerate() {
            let mut ports = BTreeMap::new();
            let counters = ctx.metrics.operator(&node.uid, ctx.subtask);
            for (port, tee) in &node.ports {
                let outs: Vec<Erased> = graph
                    .outputs(id)
                    .filter(|(_, e)| &e.port == port)
                    .map(|(i, e)| {
                        if graph.is_chained(e) {
                            chained[e.to.0][l].take()
                        } else {
                            producers.get_mut(&i).and_then(|p| p[l].take())
                        }
                        .expect("invariant: each output end is used once")
                    })
                    .collect();
                ports.insert(port.clone(), tee(outs, counters.clone()));
            }
            let outputs = Outputs { ports };
            match &node.factory {
                NodeFactory::Source(create) => {
                    let task = create(ctx, inst, outputs)?;
                    tasks.push((
                        n,
                        TaskSpec {
                            name: node.uid.clone(),
                            subtask: ctx.subtask,
                            is_source: true,
                            task,
                        },
                    ));
                }
                NodeFactory::Operator {
                    create,
                    input_task,
                    count_input,
                } => {
                    let input = count_input(create(ctx, outputs)?, counters);
                    if heads_task {
                        let receivers = graph
                            .inputs(id)
                            .map(|(i, _)| {
                                consumers
                                    .get_mut(&i)
                                    .and_then(|c| c[l].take())
                                    .expect("invariant: each exchange input is used once")
                            })
                            .collect();
                        tasks.push((
                            n,
                            TaskSpec {
                                name: node.uid.clone(),
                                subtask: ctx.subtask,
                                is_source: false,
                                task: input_task(receivers, input, ctx, inst.mode),
                            },
                        ));
                    } else {
                        chained[n][l] = Some(input);
                    }
                }
            }
        }
    }
    tasks.sort_by_key(|(n, t)| (*n, t.subtask));
    Ok(tasks.into_iter().map(|(_, t)| t).collect())
}
