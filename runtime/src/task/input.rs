//! The task after an exchange: selects over its input channels (of every input edge) and its
//! control channel, aligns checkpoint barriers (exactly-once), merges watermarks, fires
//! processing-time timers when they are due, and drives its chain.

use std::collections::BTreeMap;

use crossbeam_channel::{Receiver, Select};
use weir_crds::CheckpointingMode;

use super::barrier::{BarrierAligner, WatermarkValve};
use super::{Control, Message, Task, TaskEvent, TaskIo};
use crate::api::graph::{AnyBox, Erased};
use crate::api::plan::unerase;
use crate::api::{CheckpointBarrier, Collector, TaskContext, TaskError};
use crate::state::typed::Clock;

/// The task of an exchange-fed operator whose input records are `I`: `receivers` holds one
/// `Vec<Receiver<Message<I>>>` per input edge, `head` the operator's erased input.
pub(crate) fn input_task<I: Send + 'static>(
    receivers: Vec<AnyBox>,
    head: Erased,
    ctx: &TaskContext,
    mode: CheckpointingMode,
) -> Box<dyn Task> {
    let inputs = receivers
        .into_iter()
        .flat_map(|r| {
            *r.downcast::<Vec<Receiver<Message<I>>>>()
                .expect("invariant: an exchange carries its consumer's input type")
        })
        .collect();
    Box::new(KeyedInputTask::new(inputs, unerase::<I>(head), mode, ctx))
}

pub(crate) struct KeyedInputTask<T> {
    inputs: Vec<Receiver<Message<T>>>,
    head: Box<dyn Collector<T>>,
    aligner: BarrierAligner,
    valve: WatermarkValve,
    ended: Vec<bool>,
    /// Barriers of the checkpoints being aligned, by id.
    barriers: BTreeMap<u64, CheckpointBarrier>,
    /// Processing time for the head's timers.
    clock: Clock,
}

impl<T: Send> KeyedInputTask<T> {
    pub fn new(
        inputs: Vec<Receiver<Message<T>>>,
        head: Box<dyn Collector<T>>,
        mode: CheckpointingMode,
        ctx: &TaskContext,
    ) -> Self {
        let n = inputs.len();
        Self {
            inputs,
            head,
            aligner: BarrierAligner::new(n, mode == CheckpointingMode::ExactlyOnce),
            valve: WatermarkValve::new(n),
            ended: vec![false; n],
            barriers: BTreeMap::new(),
            clock: ctx.clock.clone(),
        }
    }

    /// Fires the head's due processing-time timers; returns how long until the next one.
    fn fire_processing_timers(&mut self) -> Result<Option<std::time::Duration>, TaskError> {
        let Some(due) = self.head.next_processing_timer() else {
            return Ok(None);
        };
        let now = (self.clock)();
        if due <= now {
            self.head.processing_time(now)?;
        }
        Ok(self
            .head
            .next_processing_timer()
            .map(|due| std::time::Duration::from_millis(due.saturating_sub(now).max(0) as u64)))
    }

    fn snapshot(&mut self, id: u64, io: &TaskIo) -> Result<(), TaskError> {
        let barrier = self
            .barriers
            .remove(&id)
            .expect("invariant: the aligner completes only barriers it was given");
        let mut snapshots = Vec::new();
        self.head.checkpoint(barrier, &mut snapshots)?;
        io.send(TaskEvent::Ack {
            task: io.index,
            checkpoint: id,
            snapshots,
        });
        Ok(())
    }

    fn on_message(&mut self, i: usize, msg: Message<T>, io: &TaskIo) -> Result<(), TaskError> {
        match msg {
            Message::Records(batch) => {
                for (ts, r) in batch {
                    self.head.record(ts, r)?;
                }
            }
            Message::Watermark(w) => {
                if let Some(w) = self.valve.update(i, w) {
                    self.head.watermark(w)?;
                }
            }
            Message::Barrier(barrier) => {
                self.barriers.entry(barrier.id).or_insert(barrier);
                for id in self.aligner.on_barrier(i, barrier.id) {
                    self.snapshot(id, io)?;
                }
            }
            Message::Idle => {
                if let Some(w) = self.valve.set_idle(i) {
                    self.head.watermark(w)?;
                }
            }
            Message::EndOfInput => {
                self.ended[i] = true;
                if let Some(w) = self.valve.update(i, i64::MAX) {
                    self.head.watermark(w)?;
                }
                for id in self.aligner.on_end_of_input(i) {
                    self.snapshot(id, io)?;
                }
            }
        }
        Ok(())
    }

    /// Returns true when the task should exit.
    fn on_control(&mut self, c: Control, finish_requested: &mut bool) -> Result<bool, TaskError> {
        match c {
            Control::CheckpointComplete(id) => self.head.checkpoint_complete(id)?,
            Control::AbortCheckpoint(id) => {
                self.aligner.abort(id);
                self.barriers.remove(&id);
            }
            Control::TriggerCheckpoint(_) | Control::Drain => {}
            Control::Cancel => return Ok(true),
            Control::Finish => *finish_requested = true,
        }
        Ok(*finish_requested && self.ended.iter().all(|e| *e))
    }
}

impl<T: Send> Task for KeyedInputTask<T> {
    fn run(mut self: Box<Self>, io: &TaskIo) -> Result<(), TaskError> {
        let mut finish_requested = false;
        let mut input_closed = false;
        loop {
            let wait = self.fire_processing_timers()?;
            let mut sel = Select::new();
            let ctl = sel.recv(&io.control);
            let mut map = Vec::with_capacity(self.inputs.len());
            for (i, r) in self.inputs.iter().enumerate() {
                if !self.ended[i] && !self.aligner.is_blocked(i) {
                    map.push((sel.recv(r), i));
                }
            }
            let op = match wait {
                Some(wait) => match sel.select_timeout(wait) {
                    Ok(op) => op,
                    Err(_) => continue,
                },
                None => sel.select(),
            };
            let idx = op.index();
            if idx == ctl {
                let c = op
                    .recv(&io.control)
                    .map_err(|_| TaskError::DownstreamGone)?;
                if self.on_control(c, &mut finish_requested)? {
                    break;
                }
                continue;
            }
            let i = map
                .iter()
                .find(|(k, _)| *k == idx)
                .map(|(_, i)| *i)
                .expect("invariant: selected operation is an input");
            match op.recv(&self.inputs[i]) {
                Ok(msg) => self.on_message(i, msg, io)?,
                Err(_) => {
                    // A producer vanished without end of input: it failed.
                    return Err(TaskError::DownstreamGone);
                }
            }
            if self.ended.iter().all(|e| *e) && !input_closed {
                input_closed = true;
                self.head.end_of_input()?;
                if finish_requested {
                    break;
                }
            }
        }
        io.send(TaskEvent::Finished);
        Ok(())
    }
}
