//! Kafka: a partitioned source with its offsets in checkpoints (Flink's `KafkaSource`) and an
//! exactly-once transactional sink (Flink's `KafkaSink`), on librdkafka (the `rdkafka` crate,
//! built from its bundled sources).
//!
//! - [`assignment`]: which subtask reads which partition (pure).
//! - [`config`]: settings, their validation and `kafka://` addresses (pure).
//! - [`format`]: JSON, CSV and raw records.
//! - [`source`]: the source and its reader.
//! - [`sink`]: the transactional (exactly-once) sink and its writer.
//! - `dead_letter`: where records that do not deserialize go.
//! - `protocol`: the transaction-coordinator requests librdkafka lacks.

pub mod assignment;
pub mod config;
mod dead_letter;
pub mod format;
mod protocol;
pub mod sink;
pub mod source;

pub use assignment::{owner, TopicPartition};
pub use config::{
    KafkaAddress, KafkaConfigError, KafkaSourceConfig, OffsetFallback, StartingOffsets,
    StoppingOffsets, Topics,
};
pub use dead_letter::{HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC};
pub use format::{Deserializer, KafkaMessage, KafkaRecord};
pub use sink::{DeliveryGuarantee, KafkaSink, KafkaSinkConfig, Serializer};
pub use source::KafkaSource;
