//! User functions with state-facing contracts.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Incremental aggregation of inputs into an accumulator (Flink's `AggregateFunction`).
/// The accumulator is what keyed state stores, so it must be serializable; its encoding is
/// part of the job's checkpoint format.
pub trait AggregateFunction: Send + Sync + 'static {
    /// Input record type.
    type In;
    /// Accumulator stored in state.
    type Acc: Serialize + DeserializeOwned + Send;
    /// Result emitted when a window fires.
    type Out: Send + 'static;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one input to the accumulator.
    fn add(&self, input: &Self::In, acc: &mut Self::Acc);
    /// The result of an accumulator.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// One accumulator holding the inputs of both (Flink's `merge`): session windows merge
    /// their accumulators when a record joins two sessions.
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}
