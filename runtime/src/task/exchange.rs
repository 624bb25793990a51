//! The hash shuffle behind `key_by`: a partitioner at the end of the upstream chain routes
//! each record to the subtask owning its key group, in batches over bounded channels (a full
//! channel blocks the producer: backpressure, never unbounded buffering).

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::Message;
use crate::api::{
    CheckpointBarrier, Collector, Key, KeyedRecord, OperatorSnapshot, TaskError, Timestamp,
};
use crate::state::key_group::{key_group_for_bytes, subtask_for_key_group};

/// Channels of a shuffle from `producers` to `consumers` subtasks: `senders[i][j]` and
/// `receivers[j][i]` connect producer i to consumer j; each holds `capacity` batches.
#[allow(clippy::type_complexity)]
pub(crate) fn exchange_channels<T>(
    producers: usize,
    consumers: usize,
    capacity: usize,
) -> (Vec<Vec<Sender<Message<T>>>>, Vec<Vec<Receiver<Message<T>>>>) {
    let mut senders: Vec<Vec<Sender<Message<T>>>> = (0..producers).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<Receiver<Message<T>>>> =
        (0..consumers).map(|_| Vec::new()).collect();
    for receivers_of_j in receivers.iter_mut() {
        for senders_of_i in senders.iter_mut() {
            let (s, r) = bounded(capacity);
            senders_of_i.push(s);
            receivers_of_j.push(r);
        }
    }
    (senders, receivers)
}

/// Routes records by key group; broadcasts watermarks, barriers and end of input after
/// flushing its batches, so every channel keeps stream order.
pub(crate) struct Partitioner<K, T> {
    selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    outputs: Vec<Sender<Message<KeyedRecord<K, T>>>>,
    buffers: Vec<Vec<(Timestamp, KeyedRecord<K, T>)>>,
    max_parallelism: u32,
    batch_size: usize,
    key_buf: Vec<u8>,
}

impl<K: Key, T: Send> Partitioner<K, T> {
    pub fn new(
        selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
        outputs: Vec<Sender<Message<KeyedRecord<K, T>>>>,
        max_parallelism: u32,
        batch_size: usize,
    ) -> Self {
        let buffers = outputs
            .iter()
            .map(|_| Vec::with_capacity(batch_size))
            .collect();
        Self {
            selector,
            outputs,
            buffers,
            max_parallelism,
            batch_size,
            key_buf: Vec::with_capacity(32),
        }
    }

    fn send(&self, target: usize, msg: Message<KeyedRecord<K, T>>) -> Result<(), TaskError> {
        self.outputs[target]
            .send(msg)
            .map_err(|_| TaskError::DownstreamGone)
    }

    fn flush(&mut self, target: usize) -> Result<(), TaskError> {
        if self.buffers[target].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(
            &mut self.buffers[target],
            Vec::with_capacity(self.batch_size),
        );
        self.send(target, Message::Records(batch))
    }

    fn broadcast(
        &mut self,
        make: impl Fn() -> Message<KeyedRecord<K, T>>,
    ) -> Result<(), TaskError> {
        for t in 0..self.outputs.len() {
            self.flush(t)?;
            self.send(t, make())?;
        }
        Ok(())
    }
}

impl<K: Key, T: Send> Collector<T> for Partitioner<K, T> {
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError> {
        let key = (self.selector)(&value);
        self.key_buf.clear();
        key.encode(&mut self.key_buf);
        let key_group = key_group_for_bytes(&self.key_buf, self.max_parallelism);
        let target =
            subtask_for_key_group(key_group, self.max_parallelism, self.outputs.len() as u32)
                as usize;
        self.buffers[target].push((
            ts,
            KeyedRecord {
                key_group,
                key,
                value,
            },
        ));
        if self.buffers[target].len() >= self.batch_size {
            self.flush(target)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        self.broadcast(|| Message::Watermark(watermark))
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        _out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        self.broadcast(|| Message::Barrier(barrier))
    }

    fn checkpoint_complete(&mut self, _id: u64) -> Result<(), TaskError> {
        Ok(())
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.broadcast(|| Message::EndOfInput)
    }
}
