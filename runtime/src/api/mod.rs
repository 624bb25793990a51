//! The job-building API users write against: streams, keys, functions, sources, sinks and
//! the operator hooks ([`Collector`]). Building a job is pure: nothing runs until the
//! runtime instantiates the [`JobGraph`].

mod collector;
mod context;
mod error;
mod functions;
mod key;
mod stream;

pub use collector::{
    CheckpointBarrier, Collector, OperatorListState, OperatorSnapshot, RedistributionMode,
};
pub use context::{OperatorStateMap, TaskContext};
pub use error::TaskError;
pub use functions::AggregateFunction;
pub use key::{Key, KeyDecodeError};
pub(crate) use stream::{Instantiation, TaskSpec};
pub use stream::{
    JobGraph, KeyedRecord, KeyedStream, Sink, Source, SourceReader, Stream, TimeWindow,
    WatermarkStrategy, WindowResult, WindowedStream,
};

/// Event time, in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The watermark that ends event time: every window fires.
pub const MAX_WATERMARK: Timestamp = i64::MAX;
/// The watermark before any record.
pub const MIN_WATERMARK: Timestamp = i64::MIN;
