//! The Nexmark generator as a source: the event numbers are dealt into [`SPLITS`] splits
//! (split `j` holds the numbers `n` with `n % SPLITS == j`), split `j` is read by subtask
//! `j % parallelism`, and each subtask emits its splits' events in increasing `n`, so its event
//! time never goes back. A split's position (its next event number) is operator state: a job
//! restored at any parallelism continues every split where it stopped, and the events are the
//! same whatever the parallelism.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::generator::GeneratorConfig;
use super::model::Event;
use crate::api::{Source, SourceReader, TaskContext, TaskError};
use crate::connectors::throttle::Throttle;

/// Number of splits of the event numbers (the source's largest useful parallelism).
pub const SPLITS: u64 = 64;

/// The generator as a [`Source`] of [`Event`]s.
#[derive(Debug, Clone, Copy)]
pub struct NexmarkSource {
    /// What to generate.
    pub config: GeneratorConfig,
    /// Events per second per subtask at most (demos, tests); `None`: as fast as it can.
    pub max_events_per_second: Option<u64>,
}

struct NexmarkReader {
    config: GeneratorConfig,
    throttle: Throttle,
    /// Next event number of each owned split that has one left, smallest first.
    next: BinaryHeap<Reverse<(u64, u64)>>,
    /// Every owned split's next event number (ended splits included), by split.
    positions: BTreeMap<u64, u64>,
}

impl Source<Event> for NexmarkSource {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<Event>>, TaskError> {
        let restored: BTreeMap<u64, u64> = positions
            .iter()
            .map(|p| serde_json::from_value::<(u64, u64)>(p.clone()))
            .collect::<Result<_, _>>()
            .map_err(|e| TaskError::Restore(format!("nexmark source positions: {e}")))?;
        let owned =
            (0..SPLITS).filter(|j| j % u64::from(ctx.parallelism) == u64::from(ctx.subtask));
        let positions: BTreeMap<u64, u64> = owned
            .map(|j| (j, restored.get(&j).copied().unwrap_or(j)))
            .collect();
        let next = positions
            .iter()
            .filter(|(_, n)| **n < self.config.events)
            .map(|(j, n)| Reverse((*n, *j)))
            .collect();
        Ok(Box::new(NexmarkReader {
            config: self.config,
            throttle: Throttle::new(self.max_events_per_second),
            next,
            positions,
        }))
    }
}

impl SourceReader<Event> for NexmarkReader {
    fn read_batch(&mut self, out: &mut Vec<Event>, max: usize) -> Result<bool, TaskError> {
        let before = out.len();
        for _ in 0..max.max(1) {
            let Some(Reverse((n, j))) = self.next.pop() else {
                break;
            };
            out.push(self.config.event(n));
            let following = n + SPLITS;
            self.positions.insert(j, following);
            if following < self.config.events {
                self.next.push(Reverse((following, j)));
            }
        }
        self.throttle.pass((out.len() - before) as u64);
        Ok(!self.next.is_empty())
    }

    fn positions(&self) -> Vec<serde_json::Value> {
        self.positions
            .iter()
            .map(|(j, n)| serde_json::json!([j, n]))
            .collect()
    }
}
