//! Stateless chained operators: map, filter, flat_map. They forward every control event.

use std::sync::Arc;

use crate::api::{CheckpointBarrier, Collector, OperatorSnapshot, TaskError, Timestamp};

macro_rules! forward_control {
    () => {
        fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
            self.next.watermark(watermark)
        }
        fn checkpoint(
            &mut self,
            barrier: CheckpointBarrier,
            out: &mut Vec<OperatorSnapshot>,
        ) -> Result<(), TaskError> {
            self.next.checkpoint(barrier, out)
        }
        fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
            self.next.checkpoint_complete(id)
        }
        fn end_of_input(&mut self) -> Result<(), TaskError> {
            self.next.end_of_input()
        }
        fn idle(&mut self) -> Result<(), TaskError> {
            self.next.idle()
        }
    };
}

/// Applies a function to every record.
pub struct Map<F, U> {
    pub(crate) f: Arc<F>,
    pub(crate) next: Box<dyn Collector<U>>,
}

impl<T, U, F: Fn(T) -> U + Send + Sync> Collector<T> for Map<F, U> {
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError> {
        self.next.record(ts, (self.f)(value))
    }
    forward_control!();
}

/// Keeps the records a predicate accepts.
pub struct Filter<F, T> {
    pub(crate) f: Arc<F>,
    pub(crate) next: Box<dyn Collector<T>>,
}

impl<T, F: Fn(&T) -> bool + Send + Sync> Collector<T> for Filter<F, T> {
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError> {
        if (self.f)(&value) {
            self.next.record(ts, value)?;
        }
        Ok(())
    }
    forward_control!();
}

/// Replaces every record by zero or more records.
pub struct FlatMap<F, U> {
    pub(crate) f: Arc<F>,
    pub(crate) next: Box<dyn Collector<U>>,
}

impl<T, U, I: IntoIterator<Item = U>, F: Fn(T) -> I + Send + Sync> Collector<T> for FlatMap<F, U> {
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError> {
        for u in (self.f)(value) {
            self.next.record(ts, u)?;
        }
        Ok(())
    }
    forward_control!();
}
