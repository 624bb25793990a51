//! Sources and sinks: a replayable CSV file source, an exactly-once file sink, and a Kafka
//! source.

pub mod csv_source;
pub mod file_sink;
pub mod kafka;
pub mod throttle;

pub use csv_source::{CsvSource, CsvSourceConfig};
pub use file_sink::FileSink;

/// Turns an I/O error on `path` during `action` (`open input`, `write part file`, ...) into a
/// [`crate::api::TaskError::Io`].
pub(crate) fn io_err(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> crate::api::TaskError {
    let path = path.display().to_string();
    move |source| crate::api::TaskError::Io {
        action,
        path,
        source,
    }
}
