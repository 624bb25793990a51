//! The Kafka sink (Flink's `KafkaSink`), exactly once with transactions: each subtask writes
//! the records between two checkpoint barriers in one transaction, with the transactional
//! id `<prefix>-<subtask>-<checkpoint id>` (the prefix defaults to `weir-<job>-<operator
//! uid>`); at the barrier it flushes the transaction (pre-commit) and records its id,
//! producer id and epoch in the checkpoint; when the checkpoint completes it commits. A
//! restored job first commits the transactions its checkpoint recorded (an `EndTxn` with the
//! recorded producer id and epoch: the pre-committed records become visible exactly once),
//! then aborts every transaction still open under its prefix that belongs to its subtasks
//! (those the failed run wrote after that checkpoint), so `read_committed` consumers see
//! each record once. At-least-once (flush at each barrier) and none are the other
//! guarantees.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use super::config::{valid_topic_name, KafkaConfigError};
use super::protocol::{self, ProtocolError};
use crate::api::{
    CheckpointBarrier, CheckpointTiming, Collector, OperatorListState, OperatorSnapshot,
    OperatorStateMap, RedistributionMode, Sink, TaskContext, TaskError, Timestamp,
};
use crate::metrics::JobMetrics;

/// Name of the operator state list holding the pre-committed transactions.
const STATE: &str = "transactions";
/// How long a flush, a commit or `init_transactions` may wait for the brokers.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Flink's default transaction timeout for its Kafka sink is an hour; brokers cap it at
/// `transaction.max.timeout.ms`, 15 minutes by default, so that is the default here.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 900_000;

/// What a sink promises about its records after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Each record is visible to `read_committed` consumers exactly once (transactions).
    ExactlyOnce,
    /// Each record is written at least once (flushed at every barrier; a restored job
    /// writes again what came after its checkpoint).
    AtLeastOnce,
    /// Records may be lost or repeated on failure (nothing waits for the brokers).
    None,
}

impl DeliveryGuarantee {
    /// Parses `exactly-once`, `at-least-once` or `none`.
    ///
    /// # Errors
    /// [`KafkaConfigError`] on `field` naming the accepted values.
    pub fn parse(s: &str, field: &str) -> Result<Self, KafkaConfigError> {
        match s.trim() {
            "exactly-once" => Ok(Self::ExactlyOnce),
            "at-least-once" => Ok(Self::AtLeastOnce),
            "none" => Ok(Self::None),
            other => Err(KafkaConfigError::new(
                field,
                format!("`{other}` is not one of exactly-once, at-least-once, none"),
            )),
        }
    }
}

/// Settings of a [`KafkaSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    /// `host:port[,host:port...]` of the brokers.
    pub bootstrap_servers: String,
    /// The topic written.
    pub topic: String,
    /// The delivery guarantee; default exactly once.
    pub delivery: DeliveryGuarantee,
    /// Transactional ids start with this; default `weir-<job name>-<operator uid>`. Two
    /// jobs writing with the same prefix would abort each other's transactions.
    pub transactional_id_prefix: Option<String>,
    /// librdkafka's `transaction.timeout.ms`: how long the broker keeps a transaction open
    /// before aborting it. Must exceed the checkpoint interval plus the checkpoint timeout
    /// (checked when the job is validated), and cover the time a failed job takes to come
    /// back, or the transactions of its last checkpoint are lost.
    pub transaction_timeout_ms: u64,
    /// Further librdkafka producer settings (`security.protocol`, `compression.type`, ...);
    /// `transactional.id` and `transaction.timeout.ms` have their own settings.
    pub properties: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    /// A sink to `topic` on `bootstrap_servers`, exactly once, with the default prefix and a
    /// 15-minute transaction timeout.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            delivery: DeliveryGuarantee::ExactlyOnce,
            transactional_id_prefix: None,
            transaction_timeout_ms: DEFAULT_TRANSACTION_TIMEOUT_MS,
            properties: BTreeMap::new(),
        }
    }

    /// Checks the settings before anything runs.
    ///
    /// # Errors
    /// [`KafkaConfigError`] naming the setting: no brokers, an illegal topic name, a
    /// property with its own setting.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(KafkaConfigError::new(
                "bootstrapServers",
                "no brokers: give host:port of at least one",
            ));
        }
        if !valid_topic_name(&self.topic) {
            return Err(KafkaConfigError::new(
                "output",
                format!(
                    "`{}` is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
                    self.topic
                ),
            ));
        }
        for (key, own) in [
            ("transactional.id", "transactionalIdPrefix"),
            ("transaction.timeout.ms", "transactionTimeout"),
            ("bootstrap.servers", "output"),
        ] {
            if self.properties.contains_key(key) {
                return Err(KafkaConfigError::new(
                    format!("kafka.{key}"),
                    format!("is set by the sink; use `{own}`"),
                ));
            }
        }
        Ok(())
    }

    /// Checks that a transaction outlives a checkpoint: `transaction.timeout.ms` must exceed
    /// the checkpoint interval plus the checkpoint timeout (a transaction is open from one
    /// barrier to the completion of the next checkpoint).
    ///
    /// # Errors
    /// A message naming both settings and their values.
    pub fn check_checkpointing(&self, timing: &CheckpointTiming) -> Result<(), String> {
        if self.delivery != DeliveryGuarantee::ExactlyOnce {
            return Ok(());
        }
        let needed = timing.interval_ms + timing.timeout_ms;
        if self.transaction_timeout_ms <= needed {
            return Err(format!(
                "the Kafka sink's transaction timeout ({} ms, `transactionTimeout`) must exceed spec.checkpointing.interval ({} ms) plus spec.checkpointing.timeout ({} ms): raise it (and the brokers' transaction.max.timeout.ms if needed) or checkpoint more often",
                self.transaction_timeout_ms, timing.interval_ms, timing.timeout_ms
            ));
        }
        Ok(())
    }
}

/// Writes a record's key (left empty: no key) and value into the two buffers.
pub type Serializer<T> = Arc<dyn Fn(&T, &mut Vec<u8>, &mut Vec<u8>) + Send + Sync>;

/// Writes records of type `T` to a Kafka topic.
pub struct KafkaSink<T> {
    config: Arc<KafkaSinkConfig>,
    serialize: Serializer<T>,
}

impl<T> KafkaSink<T> {
    /// A sink configured by `config`, turning each record into a key and value with
    /// `serialize`. Records with a key go to the partition Java clients would choose
    /// (murmur2 of the key); records without one are spread.
    ///
    /// # Errors
    /// [`KafkaConfigError`] from [`KafkaSinkConfig::validate`].
    pub fn new(
        config: KafkaSinkConfig,
        serialize: Serializer<T>,
    ) -> Result<Self, KafkaConfigError> {
        config.validate()?;
        Ok(Self {
            config: Arc::new(config),
            serialize,
        })
    }
}

/// A pre-committed transaction, as the checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreCommitted {
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    /// The checkpoint at whose barrier it was flushed.
    checkpoint: u64,
}

/// One subtask's entry of the sink's operator state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubtaskState {
    subtask: u32,
    pending: Vec<PreCommitted>,
}

/// Per-producer callbacks: the first delivery failure, and the producer id and epoch from
/// librdkafka's statistics (librdkafka has no other way to tell them).
#[derive(Default)]
struct Watch {
    failed: AtomicBool,
    failure: Mutex<Option<KafkaError>>,
    producer: Mutex<Option<(i64, i16)>>,
}

#[derive(Clone, Default)]
struct SinkContext(Arc<Watch>);

impl ClientContext for SinkContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(eos) = statistics.eos {
            if eos.producer_id >= 0 && eos.producer_epoch >= 0 {
                *self
                    .0
                    .producer
                    .lock()
                    .expect("invariant: lock not poisoned") =
                    Some((eos.producer_id, eos.producer_epoch as i16));
            }
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.failed.store(true, Ordering::Relaxed);
            self.0
                .failure
                .lock()
                .expect("invariant: lock not poisoned")
                .get_or_insert_with(|| e.clone());
        }
    }
}

type SinkProducer = ThreadedProducer<SinkContext>;

/// A producer and its callbacks.
struct Writer {
    producer: SinkProducer,
    watch: Arc<Watch>,
}

impl Writer {
    fn check(&self, topic: &str) -> Result<(), TaskError> {
        if !self.watch.failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let failure = self
            .watch
            .failure
            .lock()
            .expect("invariant: lock not poisoned");
        Err(TaskError::Kafka {
            action: format!("deliver records to `{topic}`"),
            source: failure
                .clone()
                .unwrap_or(KafkaError::MessageProduction(RDKafkaErrorCode::Fail)),
        })
    }

    fn flush(&self, topic: &str) -> Result<(), TaskError> {
        self.producer
            .flush(TIMEOUT)
            .map_err(|source| TaskError::Kafka {
                action: format!("flush records to `{topic}`"),
                source,
            })?;
        self.check(topic)
    }
}

/// An open transaction: the records since the last barrier.
struct OpenTransaction {
    id: String,
    writer: Writer,
}

/// A pre-committed transaction of this run, with its producer (which commits it).
struct Pending {
    state: PreCommitted,
    writer: Option<Writer>,
}

struct KafkaWriter<T> {
    config: Arc<KafkaSinkConfig>,
    serialize: Serializer<T>,
    uid: String,
    subtask: u32,
    prefix: String,
    client: ClientConfig,
    /// At least once and none: the one producer.
    plain: Option<Writer>,
    /// Exactly once: the transaction since the last barrier, once a record came.
    open: Option<OpenTransaction>,
    pending: Vec<Pending>,
    /// The id of the next checkpoint, which names the next transaction.
    next_checkpoint: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    metrics: Arc<JobMetrics>,
}

/// The producer settings shared by every producer of the sink.
fn producer_config(config: &KafkaSinkConfig, job: &str, subtask: u32) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", format!("weir-{job}-sink-{subtask}"))
        .set("enable.idempotence", "true")
        // The partition Java producers choose for a key (librdkafka's default differs).
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5");
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    c
}

fn kafka_error(action: String) -> impl FnOnce(KafkaError) -> TaskError {
    move |source| TaskError::Kafka { action, source }
}

fn create_writer(config: &ClientConfig, what: &str) -> Result<Writer, TaskError> {
    let context = SinkContext::default();
    let watch = context.0.clone();
    let producer: SinkProducer = config
        .create_with_context(context)
        .map_err(kafka_error(format!("create the {what}")))?;
    Ok(Writer { producer, watch })
}

/// `<subtask>` of a transactional id `<prefix>-<subtask>-<checkpoint>`.
fn subtask_of(prefix: &str, transactional_id: &str) -> Option<u32> {
    let rest = transactional_id.strip_prefix(prefix)?.strip_prefix('-')?;
    let (subtask, checkpoint) = rest.split_once('-')?;
    checkpoint.parse::<u64>().ok()?;
    subtask.parse().ok()
}

impl<T: Send + 'static> Sink<T> for KafkaSink<T> {
    fn create_writer(
        &self,
        ctx: &TaskContext,
        uid: &str,
        mut restored: OperatorStateMap,
    ) -> Result<Box<dyn Collector<T>>, TaskError> {
        let prefix = self
            .config
            .transactional_id_prefix
            .clone()
            .unwrap_or_else(|| format!("weir-{}-{uid}", ctx.job_name));
        let client = producer_config(&self.config, &ctx.job_name, ctx.subtask);
        let mut writer = KafkaWriter {
            config: self.config.clone(),
            serialize: self.serialize.clone(),
            uid: uid.to_string(),
            subtask: ctx.subtask,
            prefix,
            client,
            plain: None,
            open: None,
            pending: Vec::new(),
            next_checkpoint: ctx.restored_checkpoint_id().map_or(1, |id| id + 1),
            key: Vec::with_capacity(64),
            value: Vec::with_capacity(256),
            metrics: ctx.metrics.clone(),
        };
        let brokers = writer.brokers()?;
        match self.config.delivery {
            DeliveryGuarantee::ExactlyOnce => {
                let mut entries = Vec::new();
                for v in restored.remove(STATE).unwrap_or_default() {
                    let s: SubtaskState = serde_json::from_value(v)
                        .map_err(|e| TaskError::Restore(format!("sink `{uid}` state: {e}")))?;
                    if s.subtask % ctx.parallelism == ctx.subtask {
                        entries.push(s);
                    }
                }
                writer.recover(&entries, &brokers, ctx.parallelism)?;
            }
            DeliveryGuarantee::AtLeastOnce | DeliveryGuarantee::None => {
                writer.plain = Some(create_writer(&writer.client, "producer")?);
            }
        }
        Ok(Box::new(writer))
    }

    fn check_checkpointing(&self, timing: &CheckpointTiming) -> Result<(), String> {
        self.config.check_checkpointing(timing)
    }
}

impl<T> KafkaWriter<T> {
    /// `host:port` of every broker; checks that the topic exists.
    fn brokers(&self) -> Result<Vec<String>, TaskError> {
        let probe: BaseConsumer = self
            .client_without_producer_settings()
            .create()
            .map_err(kafka_error("create a metadata client".into()))?;
        let metadata = probe
            .fetch_metadata(Some(&self.config.topic), TIMEOUT)
            .map_err(kafka_error(format!(
                "fetch metadata from {}",
                self.config.bootstrap_servers
            )))?;
        if metadata
            .topics()
            .first()
            .is_none_or(|t| t.error().is_some() || t.partitions().is_empty())
        {
            return Err(TaskError::Data(format!(
                "kafka topic `{}` does not exist on {}: create it, or fix the sink's topic",
                self.config.topic, self.config.bootstrap_servers
            )));
        }
        Ok(metadata
            .brokers()
            .iter()
            .map(|b| format!("{}:{}", b.host(), b.port()))
            .collect())
    }

    fn client_without_producer_settings(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.config.bootstrap_servers);
        for (k, v) in &self.config.properties {
            if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
                c.set(k, v);
            }
        }
        c
    }

    /// Commits what the restored checkpoint pre-committed (old subtasks `entries`), then
    /// aborts every transaction still open under the prefix that an old subtask mapping to
    /// this one left.
    fn recover(
        &mut self,
        entries: &[SubtaskState],
        brokers: &[String],
        parallelism: u32,
    ) -> Result<(), TaskError> {
        let bootstraps: Vec<String> = self
            .config
            .bootstrap_servers
            .split(',')
            .map(|b| b.trim().to_string())
            .collect();
        let mut committed = Vec::new();
        for t in entries.iter().flat_map(|e| &e.pending) {
            let outcome = protocol::commit_transaction(
                &bootstraps,
                &t.transactional_id,
                t.producer_id,
                t.epoch,
            )
            .map_err(|e| match e {
                ProtocolError::Fenced { .. } => TaskError::Restore(format!(
                    "sink `{}`: transaction `{}` of checkpoint {} can no longer be committed: the broker aborted it (was the job down longer than its transaction timeout, {} ms?) or a later run took its id over; its records are lost",
                    self.uid, t.transactional_id, t.checkpoint, self.config.transaction_timeout_ms
                )),
                other => TaskError::Restore(format!(
                    "sink `{}`: commit transaction `{}` of checkpoint {}: {other}",
                    self.uid, t.transactional_id, t.checkpoint
                )),
            })?;
            tracing::debug!(transaction = %t.transactional_id, ?outcome, "kafka sink recovered a pre-committed transaction");
            committed.push(t.transactional_id.clone());
        }
        if !committed.is_empty() {
            tracing::info!(subtask = self.subtask, transactions = ?committed, "kafka sink committed the restored checkpoint's transactions");
        }
        let open = protocol::open_transactions(brokers).map_err(|e| {
            TaskError::Restore(format!("sink `{}`: list open transactions: {e}", self.uid))
        })?;
        let lingering: Vec<String> = open
            .into_iter()
            .filter(|id| {
                subtask_of(&self.prefix, id).is_some_and(|o| o % parallelism == self.subtask)
                    && !committed.contains(id)
            })
            .collect();
        for id in &lingering {
            // A producer with the same transactional id fences the old one and aborts its
            // open transaction.
            let mut config = self.client.clone();
            config.set("transactional.id", id).set(
                "transaction.timeout.ms",
                self.config.transaction_timeout_ms.to_string(),
            );
            let fence = create_writer(&config, "producer that aborts a lingering transaction")?;
            fence
                .producer
                .init_transactions(TIMEOUT)
                .map_err(kafka_error(format!("abort lingering transaction `{id}`")))?;
        }
        if !lingering.is_empty() {
            tracing::info!(subtask = self.subtask, transactions = ?lingering, "kafka sink aborted transactions its failed run left open");
        }
        Ok(())
    }

    /// The transaction of the records after the last barrier, begun on first use.
    fn transaction(&mut self) -> Result<&Writer, TaskError> {
        if self.open.is_none() {
            let id = format!("{}-{}-{}", self.prefix, self.subtask, self.next_checkpoint);
            let mut config = self.client.clone();
            config
                .set("transactional.id", &id)
                .set(
                    "transaction.timeout.ms",
                    self.config.transaction_timeout_ms.to_string(),
                )
                // The producer id and epoch come with the statistics.
                .set("statistics.interval.ms", "100");
            let started = Instant::now();
            let writer = create_writer(&config, "transactional producer")?;
            writer
                .producer
                .init_transactions(TIMEOUT)
                .map_err(kafka_error(format!("initialize transactions of `{id}`")))?;
            tracing::debug!(transaction = %id, ms = started.elapsed().as_millis() as u64, "kafka transaction initialized");
            writer
                .producer
                .begin_transaction()
                .map_err(kafka_error(format!("begin transaction `{id}`")))?;
            self.open = Some(OpenTransaction { id, writer });
        }
        Ok(&self.open.as_ref().expect("invariant: opened above").writer)
    }

    fn send(&mut self, writer: &Writer) -> Result<(), TaskError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.config.topic).payload(&self.value);
        if !self.key.is_empty() {
            record = record.key(&self.key);
        }
        let mut pending = record;
        let started = Instant::now();
        loop {
            match writer.producer.send(pending) {
                Ok(()) => return writer.check(&self.config.topic),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < TIMEOUT =>
                {
                    pending = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => {
                    return Err(TaskError::Kafka {
                        action: format!("send a record to `{}`", self.config.topic),
                        source,
                    })
                }
            }
        }
    }
}

/// Waits (up to 10 s) until the statistics named the producer's id and epoch.
fn producer_identity(writer: &Writer, id: &str) -> Result<(i64, i16), TaskError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = *writer
            .watch
            .producer
            .lock()
            .expect("invariant: lock not poisoned")
        {
            return Ok(p);
        }
        if Instant::now() > deadline {
            return Err(TaskError::Kafka {
                action: format!("learn the producer id of transaction `{id}`"),
                source: KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl<T: Send> Collector<T> for KafkaWriter<T> {
    fn record(&mut self, _ts: Timestamp, value: T) -> Result<(), TaskError> {
        self.key.clear();
        self.value.clear();
        (self.serialize)(&value, &mut self.key, &mut self.value);
        match self.config.delivery {
            DeliveryGuarantee::ExactlyOnce => {
                self.transaction()?;
                let open = self.open.take().expect("invariant: opened above");
                let sent = self.send(&open.writer);
                self.open = Some(open);
                sent?;
            }
            _ => {
                let plain = self
                    .plain
                    .take()
                    .expect("invariant: created with the writer");
                let sent = self.send(&plain);
                self.plain = Some(plain);
                sent?;
            }
        }
        self.metrics.add_out(self.subtask, 1);
        Ok(())
    }

    fn watermark(&mut self, _watermark: Timestamp) -> Result<(), TaskError> {
        Ok(())
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        let topic = self.config.topic.clone();
        match self.config.delivery {
            DeliveryGuarantee::ExactlyOnce => {
                if let Some(open) = self.open.take() {
                    let started = Instant::now();
                    open.writer.flush(&topic)?;
                    let flushed = started.elapsed().as_millis() as u64;
                    let (producer_id, epoch) = producer_identity(&open.writer, &open.id)?;
                    tracing::debug!(transaction = %open.id, flush_ms = flushed, ms = started.elapsed().as_millis() as u64, "kafka transaction pre-committed");
                    self.pending.push(Pending {
                        state: PreCommitted {
                            transactional_id: open.id,
                            producer_id,
                            epoch,
                            checkpoint: barrier.id,
                        },
                        writer: Some(open.writer),
                    });
                }
                self.next_checkpoint = barrier.id + 1;
            }
            DeliveryGuarantee::AtLeastOnce => {
                if let Some(p) = &self.plain {
                    p.flush(&topic)?;
                }
            }
            DeliveryGuarantee::None => {}
        }
        let entry = SubtaskState {
            subtask: self.subtask,
            pending: self.pending.iter().map(|p| p.state.clone()).collect(),
        };
        let mut operator_state = BTreeMap::new();
        operator_state.insert(
            STATE.to_string(),
            OperatorListState {
                mode: RedistributionMode::Union,
                entries: vec![
                    serde_json::to_value(entry).expect("invariant: sink state serializes")
                ],
            },
        );
        out.push(OperatorSnapshot {
            uid: self.uid.clone(),
            keyed: None,
            operator_state,
        });
        Ok(())
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.state.checkpoint <= id);
        self.pending = waiting;
        for p in ready {
            let t = &p.state;
            match &p.writer {
                Some(w) => w
                    .producer
                    .commit_transaction(TIMEOUT)
                    .map_err(kafka_error(format!(
                        "commit transaction `{}`",
                        t.transactional_id
                    )))?,
                None => {
                    protocol::commit_transaction(
                        std::slice::from_ref(&self.config.bootstrap_servers),
                        &t.transactional_id,
                        t.producer_id,
                        t.epoch,
                    )
                    .map_err(|e| {
                        TaskError::Restore(format!("commit `{}`: {e}", t.transactional_id))
                    })?;
                }
            }
            tracing::debug!(checkpoint = id, transaction = %t.transactional_id, "kafka transaction committed");
        }
        Ok(())
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        // The final checkpoint's barrier follows the last record: nothing is left open.
        if self.open.is_some() {
            return Err(TaskError::Data(
                "records reached the Kafka sink after the final checkpoint; they are not committed"
                    .into(),
            ));
        }
        if let Some(p) = &self.plain {
            p.flush(&self.config.topic)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_ids_name_their_subtask() {
        assert_eq!(subtask_of("weir-job-sink", "weir-job-sink-3-17"), Some(3));
        assert_eq!(subtask_of("weir-job-sink", "weir-job-sink-x-17"), None);
        assert_eq!(subtask_of("weir-job-sink", "weir-job-sink2-3-17"), None);
        assert_eq!(subtask_of("weir-job-sink", "other-3-17"), None);
    }

    #[test]
    fn the_transaction_timeout_must_outlive_a_checkpoint() {
        let mut c = KafkaSinkConfig::new("k:9092", "out");
        let timing = CheckpointTiming {
            interval_ms: 10_000,
            timeout_ms: 600_000,
        };
        assert!(c.check_checkpointing(&timing).is_ok());
        c.transaction_timeout_ms = 60_000;
        let e = c.check_checkpointing(&timing).unwrap_err();
        assert!(
            e.contains("spec.checkpointing.interval") && e.contains("transactionTimeout"),
            "{e}"
        );
        c.delivery = DeliveryGuarantee::AtLeastOnce;
        assert!(c.check_checkpointing(&timing).is_ok());
    }
}
