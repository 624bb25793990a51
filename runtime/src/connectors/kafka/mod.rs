//! Kafka: a partitioned source with its offsets in checkpoints (Flink's `KafkaSource`), on
//! librdkafka (the `rdkafka` crate, built from its bundled sources).
//!
//! - [`assignment`]: which subtask reads which partition (pure).
//! - [`config`]: settings, their validation and `kafka://` addresses (pure).
//! - [`format`]: JSON, CSV and raw records.
//! - [`source`]: the source and its reader.
//! - `dead_letter`: where records that do not deserialize go.

pub mod assignment;
pub mod config;
mod dead_letter;
pub mod format;
pub mod source;

pub use assignment::{owner, TopicPartition};
pub use config::{
    KafkaAddress, KafkaConfigError, KafkaSourceConfig, OffsetFallback, StartingOffsets,
    StoppingOffsets, Topics,
};
pub use dead_letter::{HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC};
pub use format::{Deserializer, KafkaMessage, KafkaRecord};
pub use source::KafkaSource;
