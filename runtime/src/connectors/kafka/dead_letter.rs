//! The dead-letter output of the Kafka source: records that do not deserialize are written,
//! key and value unchanged, to a topic, with headers naming where they came from and why
//! they were rejected. At least once: flushed before each checkpoint, so a record counted as
//! read by a checkpoint has reached the topic; a restored job writes again the bad records
//! it reads again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::format::KafkaRecord;
use crate::api::TaskError;

/// Header naming the topic a dead letter was read from.
pub const HEADER_TOPIC: &str = "weir.source.topic";
/// Header naming its partition (decimal).
pub const HEADER_PARTITION: &str = "weir.source.partition";
/// Header naming its offset (decimal).
pub const HEADER_OFFSET: &str = "weir.source.offset";
/// Header saying why it did not deserialize.
pub const HEADER_ERROR: &str = "weir.error";

/// How long a flush before a checkpoint may wait for the broker.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Remembers the first delivery failure, which fails the source's next batch or checkpoint.
#[derive(Default)]
struct DeliveryWatch {
    failure: Arc<Mutex<Option<KafkaError>>>,
}

impl ClientContext for DeliveryWatch {}

impl ProducerContext for DeliveryWatch {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failure = self.failure.lock().expect("invariant: lock not poisoned");
            failure.get_or_insert_with(|| e.clone());
        }
    }
}

/// A producer of dead letters to one topic.
pub(crate) struct DeadLetters {
    topic: String,
    producer: ThreadedProducer<DeliveryWatch>,
    failure: Arc<Mutex<Option<KafkaError>>>,
}

impl DeadLetters {
    /// A producer to `topic` with the consumer's connection settings `config` (idempotent,
    /// so retries do not duplicate).
    pub fn new(config: &ClientConfig, topic: &str) -> Result<Self, TaskError> {
        let watch = DeliveryWatch::default();
        let failure = watch.failure.clone();
        let mut config = config.clone();
        config.set("enable.idempotence", "true");
        // Consumer-only settings would make the producer log warnings.
        for key in [
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "enable.partition.eof",
            "auto.offset.reset",
            "isolation.level",
        ] {
            config.remove(key);
        }
        let producer = config
            .create_with_context(watch)
            .map_err(|source| TaskError::Kafka {
                action: format!("create the dead-letter producer for `{topic}`"),
                source,
            })?;
        Ok(Self {
            topic: topic.to_string(),
            producer,
            failure,
        })
    }

    /// Queues `record`, rejected with `error`, for the dead-letter topic.
    ///
    /// # Errors
    /// [`TaskError::Kafka`] when the producer's queue stays full or an earlier dead letter
    /// could not be delivered.
    pub fn send(&self, record: &KafkaRecord<'_>, error: &str) -> Result<(), TaskError> {
        self.check()?;
        let (partition, offset) = (record.partition.to_string(), record.offset.to_string());
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(record.topic),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(&offset),
            })
            .insert(Header {
                key: HEADER_ERROR,
                value: Some(error),
            });
        let mut out = BaseRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(k) = record.key {
            out = out.key(k);
        }
        if let Some(p) = record.payload {
            out = out.payload(p);
        }
        if let Some(ts) = record.timestamp {
            out = out.timestamp(ts);
        }
        let mut pending = out;
        for _ in 0..600 {
            match self.producer.send(pending) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    pending = back;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err((source, _)) => {
                    return Err(TaskError::Kafka {
                        action: format!("send a dead letter to `{}`", self.topic),
                        source,
                    })
                }
            }
        }
        Err(TaskError::Kafka {
            action: format!(
                "send a dead letter to `{}` (queue full for 60 s)",
                self.topic
            ),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
        })
    }

    /// Waits until every queued dead letter is delivered.
    ///
    /// # Errors
    /// [`TaskError::Kafka`] when one could not be, or the broker did not answer in 60 s.
    pub fn flush(&self) -> Result<(), TaskError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|source| TaskError::Kafka {
                action: format!("flush dead letters to `{}`", self.topic),
                source,
            })?;
        self.check()
    }

    fn check(&self) -> Result<(), TaskError> {
        let failure = self.failure.lock().expect("invariant: lock not poisoned");
        match failure.as_ref() {
            None => Ok(()),
            Some(e) => Err(TaskError::Kafka {
                action: format!("deliver a dead letter to `{}`", self.topic),
                source: e.clone(),
            }),
        }
    }
}
