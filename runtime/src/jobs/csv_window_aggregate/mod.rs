//! `csv-window-aggregate`: event-time tumbling-window aggregates per key over CSV files.
//!
//! ```text
//! CSV source -> key_by(key columns) -> tumbling window (aggregate) -> exactly-once file sink
//! ```
//!
//! Arguments (`job.args`, all strings):
//!
//! | arg | meaning | default |
//! | --- | --- | --- |
//! | `input` | a file, a directory (its files, sorted), or a comma-separated list; `.gz` is decompressed; each file is a split with its own watermark, dealt to subtasks round-robin | required |
//! | `header` | `true` if each file starts with a header row | `true` |
//! | `columns` | comma-separated column names (required without a header) | from the header |
//! | `delimiter` | one-byte field delimiter | `,` |
//! | `timestamp` | event-time column | required |
//! | `timestampFormat` | chrono strftime format, or `epoch-ms` / `epoch-s` | `%Y-%m-%d %H:%M:%S%.f` |
//! | `key` | comma-separated key column(s) | required |
//! | `value` | a column, or the product of two: `Quantity * UnitPrice` | required by sum/min/max/avg |
//! | `window` | window size, e.g. `1h`, `10s` | required |
//! | `aggregates` | comma-separated from `count`, `sum`, `min`, `max`, `avg` | `count` |
//! | `outOfOrderness` | bounded out-of-orderness of event time, e.g. `5s` | `0s` |
//! | `output` | output directory (owned by the sink) | required |
//! | `decimals` | digits after the point for sum/min/max/avg | shortest exact form |
//! | `maxRecordsPerSecond` | throttle per source subtask (demos, tests) | unbounded |
//! | `sinkMaxRecordsPerSecond` | throttle per sink subtask: a slow consumer (tests, benchmarks) | unbounded |
//!
//! Output lines (CSV, no header): key columns..., window start, window end
//! (`YYYY-MM-DD HH:MM:SS`, UTC; with `.mmm` when the window is not whole seconds), then the
//! aggregates in the order given. Empty values count as rows for `count` and are ignored by
//! the others (SQL semantics); an aggregate over no values is an empty field.

mod args;
mod output;
mod parse;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use args::{parse_args, Aggregate, Args, TimestampFormat};
pub use output::{encode_result, push_time};
pub use parse::{parse_default_timestamp, parse_row, Row};

use super::{ArgError, JobArgs};
use crate::api::{AggregateFunction, JobBuilder, JobGraph, WatermarkStrategy, WindowResult};
use crate::connectors::csv_source::{CsvSourceConfig, RecordParser};
use crate::connectors::file_sink::LineEncoder;
use crate::connectors::{CsvSource, FileSink};

/// The registry name of this job.
pub const ENTRY: &str = "csv-window-aggregate";

/// The accumulator: everything any aggregate needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    /// Rows.
    pub count: u64,
    /// Rows with a value.
    pub values: u64,
    /// Sum of values.
    pub sum: f64,
    /// Smallest value (+inf when none).
    pub min: f64,
    /// Largest value (-inf when none).
    pub max: f64,
}

/// The aggregate function over [`Row`]s.
pub struct RowAggregate;

impl AggregateFunction for RowAggregate {
    type In = Row;
    type Acc = Acc;
    type Out = Acc;

    fn create_accumulator(&self) -> Acc {
        Acc {
            count: 0,
            values: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    fn add(&self, input: &Row, acc: &mut Acc) {
        acc.count += 1;
        if let Some(v) = input.value {
            acc.values += 1;
            acc.sum += v;
            acc.min = acc.min.min(v);
            acc.max = acc.max.max(v);
        }
    }

    fn get_result(&self, acc: &Acc) -> Acc {
        *acc
    }

    fn merge(&self, a: Acc, b: Acc) -> Acc {
        Acc {
            count: a.count + b.count,
            values: a.values + b.values,
            sum: a.sum + b.sum,
            min: a.min.min(b.min),
            max: a.max.max(b.max),
        }
    }
}

/// Builds the job from `job.args`.
///
/// # Errors
/// [`ArgError`] from [`parse_args`].
pub fn build(job_args: &JobArgs) -> Result<JobGraph, ArgError> {
    let args = Arc::new(parse_args(job_args)?);
    let parser_args = args.clone();
    let parse: RecordParser<Row> = Arc::new(move |rec| parse_row(&parser_args, rec));
    let source = CsvSource::new(
        CsvSourceConfig {
            files: args.files.clone(),
            has_header: args.has_header,
            delimiter: args.delimiter,
            max_records_per_second: args.max_records_per_second,
        },
        parse,
    );
    let enc_args = args.clone();
    let encode: LineEncoder<WindowResult<Vec<u8>, Acc>> =
        Arc::new(move |r, out| encode_result(&enc_args, r, out));
    let sink = FileSink::new(args.output.clone(), encode)
        .with_max_records_per_second(args.sink_max_records_per_second);
    let job = JobBuilder::new();
    job.source(
        "csv-source",
        source,
        WatermarkStrategy::bounded_out_of_orderness(args.out_of_orderness_ms, |r: &Row| r.ts),
    )
    .key_by(|r: &Row| r.key.clone())
    .tumbling_window(args.window_ms)
    .aggregate("window-aggregate", RowAggregate)
    .sink("file-sink", sink);
    job.set_output(args.output.display().to_string());
    job.build()
        .map_err(|e| ArgError::new("(job graph)", e.to_string()))
}
