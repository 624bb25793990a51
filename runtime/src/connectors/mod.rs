//! Sources and sinks: a replayable CSV file source, an exactly-once file sink, and a Kafka
//! source.

pub mod csv_source;
pub mod file_sink;
pub mod kafka;
pub mod throttle;

pub use csv_source::{CsvSource, CsvSourceConfig};
pub use file_sink::FileSink;
