//! Sources and sinks: a replayable CSV file source and an exactly-once file sink.

pub mod csv_source;
pub mod file_sink;
pub mod throttle;

pub use csv_source::{CsvSource, CsvSourceConfig};
pub use file_sink::FileSink;
