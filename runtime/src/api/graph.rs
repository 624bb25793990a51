//! The logical job graph: operators (nodes) with a stable uid, a kind and the keyed states
//! they declare, and the edges between them with their partitioning. Built by the stream API
//! ([`super::JobBuilder`]), read by everything that needs the job's shape (the compatibility
//! check, restore, task naming) and turned into tasks by the planner ([`super::plan`]). Pure.
//!
//! Every operator runs at the job's parallelism (`spec.job.parallelism`). An edge is
//! *chained* (records pass by function call inside one task) when it is a forward edge into
//! an operator with exactly one input; every other edge is an exchange between tasks.

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::{ErasedCollector, ExchangeBuilder, NodeFactory, TeeBuilder};
use crate::state::StateInfo;

/// Index of a node in its graph (nodes are added in topological order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeId(pub usize);

/// What an operator does; shown by `weir check` and used to name metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorKind {
    /// Reads records from outside; its positions are operator state.
    Source,
    /// One record in, one out.
    Map,
    /// One record in, zero or one out.
    Filter,
    /// One record in, any number out.
    FlatMap,
    /// A process function over a plain stream, with operator state.
    Process,
    /// A keyed process function with keyed state and timers.
    KeyedProcess,
    /// A keyed broadcast process function: keyed state and timers, and broadcast state.
    KeyedBroadcastProcess,
    /// Event-time tumbling or sliding window aggregation over keyed state (the fast path,
    /// sliding windows sliced).
    WindowAggregate,
    /// Windows of any assigner and window function over keyed state and timers.
    Window,
    /// Writes records outside; its pending output is operator state.
    Sink,
}

impl OperatorKind {
    /// True for the kinds whose keyed states are all Weir's and declared when the graph is
    /// built (windows): a state of theirs in a snapshot that they no longer declare was
    /// written by another kind of window (see [`crate::checkpoint::incompatibilities`]).
    pub fn declares_all_states(self) -> bool {
        matches!(self, OperatorKind::WindowAggregate | OperatorKind::Window)
    }

    /// True for the kinds without state (map, filter, flat_map): the builder names them
    /// after their kind and position, and they never appear in snapshots.
    pub fn is_stateless(self) -> bool {
        matches!(
            self,
            OperatorKind::Map | OperatorKind::Filter | OperatorKind::FlatMap
        )
    }
}

/// How records travel an edge from the producer's subtasks to the consumer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// Subtask i to subtask i (chained when the consumer has one input).
    Forward,
    /// By key group of the record's key (`key_by`).
    Hash,
    /// Every record to every subtask (`broadcast`).
    Broadcast,
    /// Round-robin over the subtasks (`rebalance`), to even out skewed producers.
    Rebalance,
}

/// Which output of an operator an edge leaves from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputPort {
    /// The main output.
    Main,
    /// The side output of this tag id ([`super::OutputTag`]).
    Side(String),
}

/// An operator of the logical graph.
pub struct Node {
    /// Its uid: stable across versions of the job; state is matched to operators by it.
    pub uid: String,
    /// Its kind.
    pub kind: OperatorKind,
    /// The keyed states it declares (empty for non-keyed operators).
    pub states: Vec<StateInfo>,
    pub(crate) factory: NodeFactory,
    /// The output ports in use, with how to fan a port out to several consumers.
    pub(crate) ports: BTreeMap<OutputPort, TeeBuilder>,
}

/// An edge of the logical graph.
pub struct Edge {
    /// Producer.
    pub from: NodeId,
    /// The producer's output the edge leaves from.
    pub port: OutputPort,
    /// Consumer.
    pub to: NodeId,
    /// How records are routed.
    pub partitioning: Partitioning,
    /// Builds the exchange's channels; `None` for chained edges.
    pub(crate) exchange: Option<ExchangeBuilder>,
}

/// The logical graph of a job. Nodes are stored in the order they were added, which is a
/// topological order: an edge always goes from an earlier node to a later one.
#[derive(Default)]
pub struct StreamGraph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
}

impl StreamGraph {
    /// The nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The edges, in the order they were added.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// The edges into `id`, in the order they were added.
    pub fn inputs(&self, id: NodeId) -> impl Iterator<Item = (usize, &Edge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.to == id)
    }

    /// The edges out of `id`, in the order they were added.
    pub fn outputs(&self, id: NodeId) -> impl Iterator<Item = (usize, &Edge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.from == id)
    }

    /// True when `edge` is chained: forward into a node with exactly one input.
    pub fn is_chained(&self, edge: &Edge) -> bool {
        edge.partitioning == Partitioning::Forward && self.inputs(edge.to).count() == 1
    }

    /// The nodes that start a task: sources and nodes fed by an exchange, in topological
    /// order. A task is named after the uid of its head.
    pub fn task_heads(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .map(NodeId)
            .filter(|&id| !self.inputs(id).any(|(_, e)| self.is_chained(e)))
            .collect()
    }

    /// Number of source operators.
    pub fn source_count(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.kind == OperatorKind::Source)
            .count()
    }

    pub(crate) fn add_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId(self.nodes.len() - 1)
    }

    pub(crate) fn add_edge(&mut self, edge: Edge) {
        debug_assert!(edge.from < edge.to, "edges follow the topological order");
        self.edges.push(edge);
    }

    /// Checks what the builder cannot check as it goes: uids are unique. Returns the
    /// problems, each a sentence.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut seen = BTreeMap::new();
        let mut problems = Vec::new();
        for n in &self.nodes {
            if let Some(kind) = seen.insert(n.uid.as_str(), n.kind) {
                problems.push(format!(
                    "operator uid `{}` is used twice ({:?} and {:?}); every operator needs its own uid",
                    n.uid, kind, n.kind
                ));
            }
        }
        problems
    }
}

/// A type-erased value moved between the typed builder closures and the planner.
pub(crate) type AnyBox = Box<dyn Any + Send>;

/// Shorthand for the erased collector the planner passes around.
pub(crate) type Erased = Box<dyn ErasedCollector>;
