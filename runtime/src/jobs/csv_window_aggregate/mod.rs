//! `csv-window-aggregate`: event-time tumbling-window aggregates per key over CSV files or
//! Kafka topics.
//!
//! ```text
//! CSV source -> key_by(key columns) -> tumbling window (aggregate) -> exactly-once file sink
//! ```
//!
//! Arguments (`job.args`, all strings):
//!
//! | arg | meaning | default |
//! | --- | --- | --- |
//! | `input` | a file, a directory (its files, sorted), or a comma-separated list; `.gz` is decompressed; each file is a split with its own watermark, dealt to subtasks round-robin. Or Kafka topics: `kafka://host:port[,host:port]/topic[,topic]`, each partition a split | required |
//! | `header` | `true` if each file starts with a header row (Kafka: `false`) | `true` |
//! | `columns` | comma-separated column names (required without a header, and for Kafka in CSV format) | from the header |
//! | `delimiter` | one-byte field delimiter | `,` |
//! | `timestamp` | event-time column (Kafka: optional, else each record's timestamp) | required |
//! | `timestampFormat` | chrono strftime format, or `epoch-ms` / `epoch-s` | `%Y-%m-%d %H:%M:%S%.f` |
//! | `key` | comma-separated key column(s) | required |
//! | `value` | a column, or the product of two: `Quantity * UnitPrice` | required by sum/min/max/avg |
//! | `window` | window size, e.g. `1h`, `10s` | required |
//! | `aggregates` | comma-separated from `count`, `sum`, `min`, `max`, `avg` | `count` |
//! | `outOfOrderness` | bounded out-of-orderness of event time, e.g. `5s` | `0s` |
//! | `output` | output directory or `s3://bucket/prefix` (owned by the exactly-once file sink; S3 settings from `checkpointing.s3`), or a Kafka topic: `kafka://host:port/topic` (each result line a record keyed by the key columns) | required |
//! | `decimals` | digits after the point for sum/min/max/avg | shortest exact form |
//! | `maxRecordsPerSecond` | throttle per source subtask (demos, tests) | unbounded |
//! | `sinkMaxRecordsPerSecond` | throttle per sink subtask: a slow consumer (tests, benchmarks) | unbounded |
//! | `deadLetterFile` | file input: records that do not parse are written here as JSON lines (subtask `i` appends to `<file>.<i>`, at least once) | none: counted and dropped |
//! | `idleTimeout` | a split (file, partition) without records for this long stops holding back event time | none; Kafka `10s` |
//!
//! With a Kafka input also (see [`crate::connectors::kafka`]):
//!
//! | arg | meaning | default |
//! | --- | --- | --- |
//! | `format` | `csv` (one line per record, fields named by `columns`) or `json` (an object; `key`, `value`, `timestamp` name its fields) | `csv` |
//! | `topicPattern` | a regular expression for topic names, instead of topics in `input` | |
//! | `startingOffsets` | `earliest`, `latest`, `timestamp:<ms>`, `committed` (else earliest), `committed-or-latest` | `earliest` |
//! | `stoppingOffsets` | `never`, `latest` (the end offsets at the first start), `timestamp:<ms>`: a bounded job | `never` |
//! | `groupId` | consumer group offsets are committed to when a checkpoint completes (monitoring only) | `weir-<job name>` |
//! | `partitionDiscoveryInterval` | how often new partitions (and pattern topics) are looked for; `off` | `30s` |
//! | `deadLetterTopic` | topic receiving records that do not parse, with headers `weir.source.topic`, `weir.source.partition`, `weir.source.offset`, `weir.error` (at least once) | none: counted and dropped |
//! | `kafka.<setting>` | a librdkafka setting for the consumer (and the producer of a Kafka output), e.g. `kafka.security.protocol`, `kafka.isolation.level` | librdkafka's |
//!
//! With a Kafka output also:
//!
//! | arg | meaning | default |
//! | --- | --- | --- |
//! | `deliveryGuarantee` | `exactly-once` (transactions, committed when a checkpoint completes), `at-least-once`, `none` | `exactly-once` |
//! | `transactionalIdPrefix` | transactional ids are `<prefix>-<subtask>-<checkpoint id>` | `weir-<job name>-kafka-sink` |
//! | `transactionTimeout` | the transactions' timeout; must exceed `spec.checkpointing.interval` + `timeout` (checked before the job runs) | `15m` |
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

pub use args::{
    parse_args, Aggregate, Args, Input, Output, RecordFormat, TimestampFormat,
    DEFAULT_KAFKA_IDLE_TIMEOUT_MS,
};
pub use output::{encode_result, push_time};
pub use parse::{parse_default_timestamp, parse_row, Row};

use super::{ArgError, JobArgs};
use crate::api::{AggregateFunction, JobBuilder, JobGraph, Key, WatermarkStrategy, WindowResult};
use crate::connectors::csv_source::{CsvSourceConfig, RecordParser};
use crate::connectors::file_sink::LineEncoder;
use crate::connectors::kafka::format::{csv_record, payload, Deserializer};
use crate::connectors::kafka::{KafkaSink, KafkaSource, Serializer};
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

/// A Kafka record's value as a [`Row`]: a CSV line of `args.columns`, or a JSON object whose
/// fields `args.columns` names (strings as they are, numbers and booleans as written, null
/// or missing as empty); event time from the timestamp column, else the record's timestamp.
fn kafka_rows(args: Arc<Args>, format: RecordFormat) -> Deserializer<Row> {
    match format {
        RecordFormat::Csv => Arc::new(move |r| {
            let rec = csv_record(payload(r)?, args.delimiter)?;
            parse_row(&args, &rec, r.timestamp)
        }),
        RecordFormat::Json => Arc::new(move |r| {
            let doc: serde_json::Value = serde_json::from_slice(payload(r)?)
                .map_err(|e| format!("value is not JSON: {e}"))?;
            let fields = doc.as_object().ok_or("value is not a JSON object")?;
            let mut rec = csv::ByteRecord::new();
            for c in &args.columns {
                match fields.get(c) {
                    Some(serde_json::Value::String(s)) => rec.push_field(s.as_bytes()),
                    None | Some(serde_json::Value::Null) => rec.push_field(b""),
                    Some(other) => rec.push_field(other.to_string().as_bytes()),
                }
            }
            parse_row(&args, &rec, r.timestamp)
        }),
    }
}

/// Builds the job from `job.args`.
///
/// # Errors
/// [`ArgError`] from [`parse_args`].
pub fn build(job_args: &JobArgs) -> Result<JobGraph, ArgError> {
    let args = Arc::new(parse_args(job_args)?);
    let mut watermarks =
        WatermarkStrategy::bounded_out_of_orderness(args.out_of_orderness_ms, |r: &Row| r.ts);
    if let Some(ms) = args.idle_timeout_ms {
        watermarks = watermarks.with_idleness(ms);
    }
    let job = JobBuilder::new();
    let rows = match &args.input {
        Input::Files(files) => {
            let parser_args = args.clone();
            let parse: RecordParser<Row> = Arc::new(move |rec| parse_row(&parser_args, rec, None));
            let source = CsvSource::new(
                CsvSourceConfig {
                    files: files.clone(),
                    has_header: args.has_header,
                    delimiter: args.delimiter,
                    max_records_per_second: args.max_records_per_second,
                    dead_letter: args.dead_letter_file.clone(),
                },
                parse,
            );
            job.source("csv-source", source, watermarks)
        }
        Input::Kafka { config, format } => {
            let source = KafkaSource::new(config.clone(), kafka_rows(args.clone(), *format))
                .map_err(|e| ArgError::new(&e.field, e.message))?;
            job.source("kafka-source", source, watermarks)
        }
    };
    let results = rows
        .key_by(|r: &Row| r.key.clone())
        .tumbling_window(args.window_ms)
        .aggregate("window-aggregate", RowAggregate);
    let enc_args = args.clone();
    match &args.output {
        Output::Files(location) => {
            let encode: LineEncoder<WindowResult<Vec<u8>, Acc>> =
                Arc::new(move |r, out| encode_result(&enc_args, r, out));
            let sink = FileSink::new(location.clone(), encode)
                .with_max_records_per_second(args.sink_max_records_per_second);
            results.sink("file-sink", sink);
        }
        Output::Kafka(config) => {
            // Key: the key columns (comma-separated); value: the result line.
            let serialize: Serializer<WindowResult<Vec<u8>, Acc>> =
                Arc::new(move |r, key, value| {
                    let parts = <Vec<String> as Key>::decode(&r.key).unwrap_or_default();
                    key.extend_from_slice(parts.join(",").as_bytes());
                    encode_result(&enc_args, r, value);
                });
            let sink = KafkaSink::new(config.clone(), serialize)
                .map_err(|e| ArgError::new(&e.field, e.message))?;
            results.sink("kafka-sink", sink);
        }
    }
    job.set_output(args.output.to_string());
    job.build()
        .map_err(|e| ArgError::new("(job graph)", e.to_string()))
}
