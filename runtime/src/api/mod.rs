//! The job-building API users write against: a [`JobBuilder`] and its streams, keys, keyed
//! process functions with state and timers, windows, side outputs, sources, sinks and the operator
//! hooks ([`Collector`]). Building is pure: it yields a [`JobGraph`] (the logical
//! [`StreamGraph`] and what is read from it); nothing runs until the runtime plans it into
//! tasks (`plan`).

pub mod broadcast;
mod collector;
mod context;
mod error;
mod functions;
pub mod graph;
pub mod join;
mod key;
pub mod operator_state;
pub(crate) mod plan;
pub mod process;
pub mod state;
mod stream;
pub mod window;

pub use crate::state::timers::TimeDomain;
pub use crate::state::{StateTtl, TtlUpdate};
pub use broadcast::{
    BroadcastConnectedStream, BroadcastContext, BroadcastState, BroadcastStream,
    KeyedBroadcastProcessFunction,
};
pub use collector::{
    CheckpointBarrier, Collector, OperatorListState, OperatorSnapshot, RedistributionMode,
};
pub use context::{OperatorStateMap, TaskContext};
pub use error::TaskError;
pub use functions::AggregateFunction;
pub use graph::{NodeId, OperatorKind, OutputPort, Partitioning, StreamGraph};
pub use join::{IntervalJoin, WindowJoin};
pub use key::{Key, KeyDecodeError};
pub use operator_state::{OperatorListDescriptor, ProcessContext, ProcessFunction, StateContext};
pub(crate) use plan::{Instantiation, TaskSpec};
pub use process::{
    CoInput, Context, KeyedCoProcessFunction, KeyedProcessFunction, OpenContext, Output, OutputTag,
    TimerService,
};
pub use state::{
    ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor, StateDescriptor,
    ValueStateDescriptor,
};
pub use stream::{
    CheckpointTiming, ConnectedStreams, JobBuilder, JobGraph, KeyedRecord, KeyedStream, Sink,
    Source, SourceReader, SplitStatus, Stream, WatermarkStrategy, WindowedStream,
};
pub use window::{ProcessWindowFunction, TimeWindow, WindowAssigner, WindowResult};

/// Event time, in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The watermark that ends event time: every window fires.
pub const MAX_WATERMARK: Timestamp = i64::MAX;
/// The watermark before any record.
pub const MIN_WATERMARK: Timestamp = i64::MIN;
