//! The Kafka source (Flink's `KafkaSource`, on librdkafka): each subtask reads the
//! partitions [`owner`] gives it, with manual assignment (no consumer-group rebalancing);
//! each partition is a split with its own watermark. Its position (the next offset to read,
//! and the stop offset of a bounded source) is operator state, union redistributed, so a
//! restored job — at the same or another parallelism — resumes every partition exactly after
//! the last checkpointed record. Offsets are also committed to the consumer group when a
//! checkpoint completes, for monitoring only.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::assignment::{owner, TopicPartition};
use super::config::{
    KafkaConfigError, KafkaSourceConfig, OffsetFallback, StartingOffsets, StoppingOffsets, Topics,
};
use super::dead_letter::DeadLetters;
use super::format::{Deserializer, KafkaRecord};
use crate::api::{Source, SourceReader, SplitStatus, TaskContext, TaskError};
use crate::connectors::throttle::Throttle;

/// How long a metadata or offsets request may wait for the brokers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read waits for a record when none is buffered (bounds how late a checkpoint
/// barrier can be injected by an idle source).
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// Reads records of type `T` from Kafka topics.
pub struct KafkaSource<T> {
    config: Arc<KafkaSourceConfig>,
    deserialize: Deserializer<T>,
}

impl<T> KafkaSource<T> {
    /// A source configured by `config`, turning each record into a `T` with `deserialize`
    /// (see [`super::format`]).
    ///
    /// # Errors
    /// [`KafkaConfigError`] from [`KafkaSourceConfig::validate`].
    pub fn new(
        config: KafkaSourceConfig,
        deserialize: Deserializer<T>,
    ) -> Result<Self, KafkaConfigError> {
        config.validate()?;
        Ok(Self {
            config: Arc::new(config),
            deserialize,
        })
    }
}

/// One partition's position, stored in operator state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartitionPosition {
    topic: String,
    partition: i32,
    /// The next offset to read.
    offset: i64,
    /// The offset the partition ends before (bounded sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop: Option<i64>,
}

/// The librdkafka settings of a subtask's consumer.
fn client_config(config: &KafkaSourceConfig, job: &str, subtask: u32) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", format!("weir-{job}-{subtask}"))
        // Where offsets go on commit; no group membership is used (manual assignment).
        .set(
            "group.id",
            config
                .group_id
                .clone()
                .unwrap_or_else(|| format!("weir-{job}")),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // librdkafka stops fetching a partition whose local queue holds more than
        // `queued.min.messages` (100,000) and looks again only after this pause, 1 s by
        // default: a subtask that drains 100,000 records in a fraction of a second then
        // idles for the rest of it (a backlog was read at half speed, 119k records/s per
        // partition). 10 ms keeps the queue topped up for a few wake-ups per second more.
        .set("fetch.queue.backoff.ms", "10")
        // A restored offset that retention has deleted: resume at the earliest record left.
        .set("auto.offset.reset", "earliest");
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    c
}

fn kafka_error(action: String) -> impl FnOnce(KafkaError) -> TaskError {
    move |source| TaskError::Kafka { action, source }
}

impl<T: Send + 'static> Source<T> for KafkaSource<T> {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<T>>, TaskError> {
        let restored: Vec<PartitionPosition> = positions
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| TaskError::Restore(format!("kafka source position: {e}")))?;
        // After a restore, partitions missing from the checkpoint were created since: none
        // of their records were read, so they start at the earliest offset.
        let resumed = ctx.restored_checkpoint_id().is_some() && !restored.is_empty();
        let client = client_config(&self.config, &ctx.job_name, ctx.subtask);
        let consumer: BaseConsumer = client
            .create()
            .map_err(kafka_error("create the consumer".into()))?;
        let dead_letters = self
            .config
            .dead_letter_topic
            .as_deref()
            .map(|t| DeadLetters::new(&client, t))
            .transpose()?;
        let (wake, wakeups) = crossbeam_channel::bounded(1);
        let pattern = match &self.config.topics {
            Topics::Pattern(p) => Some(
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| TaskError::Graph(format!("topicPattern: {e}")))?,
            ),
            Topics::List(_) => None,
        };
        let mut reader = KafkaReader {
            consumer: Arc::new(consumer),
            config: self.config.clone(),
            deserialize: self.deserialize.clone(),
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            pattern,
            splits: Vec::new(),
            queues: Vec::new(),
            current: 0,
            last: None,
            wake,
            wakeups,
            next_discovery: None,
            dead_letters,
            invalid: 0,
            pending_commits: VecDeque::new(),
            throttle: Throttle::new(self.config.max_records_per_second),
        };
        let mut owned: BTreeSet<TopicPartition> = reader.discover(true)?.into_iter().collect();
        // Restored partitions of this subtask (the positions are every old subtask's) stay
        // even if metadata missed them this time.
        owned.extend(
            restored
                .iter()
                .map(|p| TopicPartition::new(p.topic.clone(), p.partition))
                .filter(|tp| reader.wanted(tp) && owner(tp, ctx.parallelism) == ctx.subtask),
        );
        let start = if resumed {
            StartingOffsets::Earliest
        } else {
            self.config.starting_offsets
        };
        for tp in owned {
            let position = match restored
                .iter()
                .find(|p| p.topic == tp.topic && p.partition == tp.partition)
            {
                Some(p) => p.clone(),
                None => reader.initial_position(&tp, start, self.config.stopping_offsets)?,
            };
            reader.add_split(position);
        }
        reader.assign()?;
        reader.schedule_discovery();
        tracing::info!(
            subtask = ctx.subtask,
            partitions = ?reader.splits.iter().map(|s| (&s.id, s.offset, s.stop)).collect::<Vec<_>>(),
            "kafka source assigned"
        );
        Ok(Box::new(reader))
    }
}

/// A partition this reader owns.
struct Split {
    tp: TopicPartition,
    id: String,
    /// The next offset to read.
    offset: i64,
    stop: Option<i64>,
    ended: bool,
    /// Messages of this partition that arrived on the consumer's main queue (before its own
    /// queue was split off), in offset order, read before its queue.
    early: VecDeque<OwnedMessage>,
}

struct KafkaReader<T> {
    consumer: Arc<BaseConsumer>,
    config: Arc<KafkaSourceConfig>,
    deserialize: Deserializer<T>,
    subtask: u32,
    parallelism: u32,
    pattern: Option<regex::Regex>,
    splits: Vec<Split>,
    /// Each split's own queue (parallel to `splits`).
    queues: Vec<Option<PartitionQueue<DefaultConsumerContext>>>,
    /// The split the next batch comes from.
    current: usize,
    /// The split the last batch came from.
    last: Option<usize>,
    /// Signalled by librdkafka when a split's queue becomes non-empty.
    wake: Sender<()>,
    wakeups: Receiver<()>,
    next_discovery: Option<Instant>,
    dead_letters: Option<DeadLetters>,
    /// Records that did not deserialize since the last report.
    invalid: u64,
    /// Per checkpoint taken and not yet completed, the offsets it recorded.
    pending_commits: VecDeque<(u64, Vec<(TopicPartition, i64)>)>,
    throttle: Throttle,
}

impl<T> KafkaReader<T> {
    /// Whether `tp`'s topic is one the source reads.
    fn wanted(&self, tp: &TopicPartition) -> bool {
        match (&self.config.topics, &self.pattern) {
            (Topics::List(topics), _) => topics.contains(&tp.topic),
            (Topics::Pattern(_), Some(re)) => re.is_match(&tp.topic),
            (Topics::Pattern(_), None) => false,
        }
    }

    /// The partitions of the source's topics this subtask owns. At the start
    /// (`must_exist`) a listed topic that does not exist is an error.
    fn discover(&self, must_exist: bool) -> Result<Vec<TopicPartition>, TaskError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(kafka_error(format!(
                "fetch metadata from {}",
                self.config.bootstrap_servers
            )))?;
        let mut found = Vec::new();
        for topic in metadata.topics() {
            if topic.name().starts_with("__") || topic.error().is_some() {
                continue;
            }
            for p in topic.partitions() {
                let tp = TopicPartition::new(topic.name(), p.id());
                if self.wanted(&tp) && owner(&tp, self.parallelism) == self.subtask {
                    found.push(tp);
                }
            }
        }
        if let (true, Topics::List(topics)) = (must_exist, &self.config.topics) {
            if let Some(missing) = topics
                .iter()
                .find(|t| !metadata.topics().iter().any(|m| m.name() == t.as_str()))
            {
                return Err(TaskError::Data(format!(
                    "kafka topic `{missing}` does not exist on {}: create it, or fix the source's topics",
                    self.config.bootstrap_servers
                )));
            }
        }
        Ok(found)
    }

    /// Where `tp` starts (by `start`) and stops (by `stop`), resolved to offsets now.
    fn initial_position(
        &self,
        tp: &TopicPartition,
        start: StartingOffsets,
        stop: StoppingOffsets,
    ) -> Result<PartitionPosition, TaskError> {
        let (low, high) = self
            .consumer
            .fetch_watermarks(&tp.topic, tp.partition, REQUEST_TIMEOUT)
            .map_err(kafka_error(format!(
                "fetch the offsets of {}",
                tp.split_id()
            )))?;
        let at_time = |ts: i64| -> Result<i64, TaskError> {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ts))
                .map_err(kafka_error(format!("look up {} by time", tp.split_id())))?;
            let found = self
                .consumer
                .offsets_for_times(tpl, REQUEST_TIMEOUT)
                .map_err(kafka_error(format!("look up {} by time", tp.split_id())))?;
            Ok(
                match found
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                },
            )
        };
        let offset = match start {
            StartingOffsets::Earliest => low,
            StartingOffsets::Latest => high,
            StartingOffsets::Timestamp(ts) => at_time(ts)?,
            StartingOffsets::Committed { fallback } => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&tp.topic, tp.partition);
                let committed = self
                    .consumer
                    .committed_offsets(tpl, REQUEST_TIMEOUT)
                    .map_err(kafka_error(format!(
                        "fetch the committed offset of {}",
                        tp.split_id()
                    )))?;
                match committed
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => match fallback {
                        OffsetFallback::Earliest => low,
                        OffsetFallback::Latest => high,
                    },
                }
            }
        };
        let stop = match stop {
            StoppingOffsets::Never => None,
            StoppingOffsets::Latest => Some(high),
            StoppingOffsets::Timestamp(ts) => Some(at_time(ts)?),
        };
        Ok(PartitionPosition {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: offset.clamp(low, high.max(low)),
            stop,
        })
    }

    fn add_split(&mut self, p: PartitionPosition) {
        let tp = TopicPartition::new(p.topic, p.partition);
        self.splits.push(Split {
            id: tp.split_id(),
            tp,
            offset: p.offset,
            ended: p.stop.is_some_and(|s| p.offset >= s),
            stop: p.stop,
            early: VecDeque::new(),
        });
        self.queues.push(None);
    }

    /// Assigns every unfinished split at its position and splits off its queue (assigning
    /// again drops what the old queues held: it is fetched again from the positions).
    fn assign(&mut self) -> Result<(), TaskError> {
        let mut tpl = TopicPartitionList::new();
        for s in self.splits.iter().filter(|s| !s.ended) {
            tpl.add_partition_offset(&s.tp.topic, s.tp.partition, Offset::Offset(s.offset))
                .map_err(kafka_error(format!("assign {}", s.id)))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(kafka_error("assign partitions".into()))?;
        for (i, s) in self.splits.iter().enumerate() {
            self.queues[i] = if s.ended {
                None
            } else {
                let mut q = self
                    .consumer
                    .split_partition_queue(&s.tp.topic, s.tp.partition)
                    .ok_or_else(|| {
                        TaskError::Data(format!("kafka partition {} cannot be read", s.id))
                    })?;
                let wake = self.wake.clone();
                q.set_nonempty_callback(move || {
                    let _ = wake.try_send(());
                });
                Some(q)
            };
        }
        Ok(())
    }

    fn schedule_discovery(&mut self) {
        self.next_discovery = self
            .config
            .effective_discovery_interval_ms()
            .map(|ms| Instant::now() + Duration::from_millis(ms));
    }

    /// Adds partitions created since the last look, from their earliest offset.
    fn discover_new(&mut self) -> Result<(), TaskError> {
        if self.next_discovery.is_none_or(|t| Instant::now() < t) {
            return Ok(());
        }
        self.schedule_discovery();
        let found = match self.discover(false) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "kafka partition discovery failed; trying again later");
                return Ok(());
            }
        };
        let new: Vec<TopicPartition> = found
            .into_iter()
            .filter(|tp| !self.splits.iter().any(|s| &s.tp == tp))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        for tp in &new {
            let p = self.initial_position(tp, StartingOffsets::Earliest, StoppingOffsets::Never)?;
            self.add_split(p);
        }
        tracing::info!(subtask = self.subtask, partitions = ?new.iter().map(TopicPartition::split_id).collect::<Vec<_>>(), "kafka partitions discovered");
        self.assign()
    }

    fn split_index(&self, topic: &str, partition: i32) -> Option<usize> {
        self.splits
            .iter()
            .position(|s| s.tp.partition == partition && s.tp.topic == topic)
    }

    fn bounded(&self) -> bool {
        self.config.stopping_offsets != StoppingOffsets::Never
    }
}

impl<T> KafkaReader<T> {
    /// Deserializes `m` into `out` (or the dead letters) and advances `split` past it; a
    /// message at or past the stop offset ends the split instead.
    fn take(
        split: &mut Split,
        m: &impl Message,
        deserialize: &Deserializer<T>,
        dead_letters: Option<&DeadLetters>,
        invalid: &mut u64,
        out: &mut Vec<T>,
    ) -> Result<(), TaskError> {
        let offset = m.offset();
        if offset < split.offset {
            // Fetched again after a re-assignment: already read.
            return Ok(());
        }
        if split.stop.is_some_and(|s| offset >= s) {
            split.ended = true;
            return Ok(());
        }
        let record = KafkaRecord {
            topic: m.topic(),
            partition: m.partition(),
            offset,
            timestamp: m.timestamp().to_millis(),
            key: m.key(),
            payload: m.payload(),
        };
        match deserialize(&record) {
            Ok(v) => out.push(v),
            Err(error) => {
                *invalid += 1;
                match dead_letters {
                    Some(d) => d.send(&record, &error)?,
                    None => tracing::warn!(
                        topic = record.topic,
                        partition = record.partition,
                        offset,
                        error,
                        "kafka record does not deserialize; dropped (no dead-letter topic)"
                    ),
                }
            }
        }
        split.offset = offset + 1;
        if split.stop.is_some_and(|s| split.offset >= s) {
            split.ended = true;
        }
        Ok(())
    }

    /// Serves the consumer's main queue: errors, and messages of partitions whose queue was
    /// not split off yet (kept, in order, for their split).
    fn serve_main_queue(&mut self) -> Result<(), TaskError> {
        while let Some(event) = self.consumer.poll(Duration::ZERO) {
            match event {
                Ok(m) => {
                    if let Some(idx) = self.split_index(m.topic(), m.partition()) {
                        self.splits[idx].early.push_back(m.detach());
                    }
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    // Only the partition number is known: end every bounded split of that
                    // number that has nothing buffered.
                    for s in self.splits.iter_mut().filter(|s| s.tp.partition == p) {
                        if s.stop.is_some() && s.early.is_empty() {
                            s.ended = true;
                        }
                    }
                }
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(TaskError::Kafka {
                        action: "consume".into(),
                        source: e,
                    })
                }
                Err(e) => tracing::warn!(error = %e, "kafka consumer error; librdkafka retries"),
            }
        }
        Ok(())
    }
}

impl<T: Send> SourceReader<T> for KafkaReader<T> {
    /// Appends up to `max` records of one partition (the next unfinished one in turn that
    /// has records) to `out`; waits up to 50 ms when no partition has any.
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool, TaskError> {
        self.last = None;
        self.serve_main_queue()?;
        self.discover_new()?;
        if self.bounded() && self.splits.iter().all(|s| s.ended) {
            return Ok(false);
        }
        while self.wakeups.try_recv().is_ok() {}
        let n = self.splits.len();
        let start_len = out.len();
        for i in 0..n {
            let idx = (self.current + i) % n;
            if self.splits[idx].ended {
                continue;
            }
            let Some(queue) = self.queues[idx].as_ref() else {
                continue;
            };
            let split = &mut self.splits[idx];
            let mut touched = false;
            while out.len() - start_len < max && !split.ended {
                let Some(m) = split.early.pop_front() else {
                    break;
                };
                touched = true;
                Self::take(
                    split,
                    &m,
                    &self.deserialize,
                    self.dead_letters.as_ref(),
                    &mut self.invalid,
                    out,
                )?;
            }
            while out.len() - start_len < max && !split.ended && split.early.is_empty() {
                match queue.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(m)) => {
                        touched = true;
                        Self::take(
                            split,
                            &m,
                            &self.deserialize,
                            self.dead_letters.as_ref(),
                            &mut self.invalid,
                            out,
                        )?;
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        // The end of what is readable now; past a bounded split's stop
                        // offset, which was at most the end when the job started.
                        if split.stop.is_some() {
                            split.ended = true;
                            touched = true;
                        }
                        break;
                    }
                    Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                        return Err(TaskError::Kafka {
                            action: format!("consume {}", split.id),
                            source: e,
                        })
                    }
                    Some(Err(e)) => {
                        tracing::warn!(partition = %split.id, error = %e, "kafka consumer error; librdkafka retries");
                        break;
                    }
                }
            }
            if touched {
                self.throttle.pass((out.len() - start_len) as u64);
                self.last = Some(idx);
                self.current = (idx + 1) % n;
                if split.ended {
                    self.queues[idx] = None;
                }
                return Ok(!(self.bounded() && self.splits.iter().all(|s| s.ended)));
            }
        }
        let _ = self.wakeups.recv_timeout(IDLE_WAIT);
        Ok(true)
    }

    fn positions(&self) -> Vec<serde_json::Value> {
        self.splits
            .iter()
            .map(|s| {
                serde_json::to_value(PartitionPosition {
                    topic: s.tp.topic.clone(),
                    partition: s.tp.partition,
                    offset: s.offset,
                    stop: s.stop,
                })
                .expect("invariant: positions serialize")
            })
            .collect()
    }

    fn prepare_checkpoint(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        if let Some(d) = &self.dead_letters {
            d.flush()?;
        }
        let offsets = self
            .splits
            .iter()
            .map(|s| (s.tp.clone(), s.offset))
            .collect();
        self.pending_commits.push_back((checkpoint_id, offsets));
        Ok(())
    }

    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        let mut latest = None;
        while self
            .pending_commits
            .front()
            .is_some_and(|(id, _)| *id <= checkpoint_id)
        {
            latest = self.pending_commits.pop_front();
        }
        let Some((_, offsets)) = latest else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in offsets {
            if tpl
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))
                .is_err()
            {
                return;
            }
        }
        // For monitoring (consumer lag) only: restore never reads these.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, checkpoint = checkpoint_id, "committing kafka offsets failed");
        }
    }

    fn splits(&self) -> Vec<SplitStatus> {
        self.splits
            .iter()
            .map(|s| SplitStatus {
                id: s.id.clone(),
                ended: s.ended,
            })
            .collect()
    }

    fn last_split(&self) -> Option<&str> {
        self.last.map(|i| self.splits[i].id.as_str())
    }

    fn take_invalid_records(&mut self) -> u64 {
        std::mem::take(&mut self.invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_is_fetched_without_pausing_for_a_second_unless_the_job_says() {
        let mut config = KafkaSourceConfig::new("k:9092", Topics::List(vec!["t".into()]));
        let c = client_config(&config, "job", 0);
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        config
            .properties
            .insert("fetch.queue.backoff.ms".into(), "100".into());
        let c = client_config(&config, "job", 0);
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("100"));
    }
}
