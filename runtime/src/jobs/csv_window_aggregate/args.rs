//! `job.args` of `csv-window-aggregate`: validation into typed [`Args`]. Reads the first rows
//! of the first input file (to learn the header and check the first row parses); runs nothing.

use std::path::{Path, PathBuf};

use super::parse::parse_row;
use crate::connectors::csv_source::open_at;
use crate::connectors::file_sink::OutputLocation;
use crate::connectors::kafka::config::{parse_starting_offsets, parse_stopping_offsets};
use crate::connectors::kafka::{
    DeliveryGuarantee, KafkaAddress, KafkaConfigError, KafkaSinkConfig, KafkaSourceConfig, Topics,
};
use crate::jobs::{ArgError, JobArgs};

const KNOWN: &[&str] = &[
    "input",
    "header",
    "columns",
    "delimiter",
    "timestamp",
    "timestampFormat",
    "key",
    "value",
    "window",
    "aggregates",
    "outOfOrderness",
    "output",
    "decimals",
    "maxRecordsPerSecond",
    "sinkMaxRecordsPerSecond",
    "idleTimeout",
    "deadLetterFile",
];

/// Arguments that only apply to a `kafka://` output.
const KAFKA_OUTPUT_ONLY: &[&str] = &[
    "deliveryGuarantee",
    "transactionalIdPrefix",
    "transactionTimeout",
];

/// Arguments that only apply to a `kafka://` input (besides `kafka.*` properties).
const KAFKA_ONLY: &[&str] = &[
    "format",
    "topicPattern",
    "startingOffsets",
    "stoppingOffsets",
    "groupId",
    "partitionDiscoveryInterval",
    "deadLetterTopic",
];

/// Where the job reads from.
#[derive(Debug, Clone)]
pub enum Input {
    /// CSV files, in reading order.
    Files(Vec<PathBuf>),
    /// Kafka topics (`input: kafka://host:port/topic`).
    Kafka {
        /// The source's settings.
        config: KafkaSourceConfig,
        /// How each record's value is written.
        format: RecordFormat,
    },
}

/// Where the job writes.
#[derive(Debug, Clone)]
pub enum Output {
    /// A directory or `s3://bucket/prefix`, owned by the exactly-once file sink.
    Files(OutputLocation),
    /// A Kafka topic (`output: kafka://host:port/topic`): each result line a record, keyed
    /// by the key columns.
    Kafka(KafkaSinkConfig),
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Files(l) => write!(f, "{l}"),
            Output::Kafka(c) => write!(f, "kafka://{}/{}", c.bootstrap_servers, c.topic),
        }
    }
}

/// How a Kafka record's value is written (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// One CSV line, with the fields named by `columns`.
    Csv,
    /// A JSON object; `key`, `value` and `timestamp` name its fields.
    Json,
}

/// One aggregate of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Number of rows.
    Count,
    /// Sum of values.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean of values.
    Avg,
}

/// How event time is written in the timestamp column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// `YYYY-MM-DD HH:MM:SS[.fff]` (also with `T`), UTC; parsed without chrono.
    Default,
    /// Integer milliseconds since the epoch.
    EpochMillis,
    /// Integer (or fractional) seconds since the epoch.
    EpochSeconds,
    /// A chrono strftime format for a naive date-time, read as UTC.
    Strftime(String),
}

pub(super) const DEFAULT_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
/// Validated arguments.
#[derive(Debug, Clone)]
pub struct Args {
    /// Where records come from.
    pub input: Input,
    /// Files start with a header row.
    pub has_header: bool,
    /// Field delimiter.
    pub delimiter: u8,
    /// Column names.
    pub columns: Vec<String>,
    /// Index of the timestamp column; none for a Kafka input that takes each record's
    /// timestamp.
    pub timestamp: Option<usize>,
    /// Its format.
    pub timestamp_format: TimestampFormat,
    /// Indexes of the key columns.
    pub key: Vec<usize>,
    /// Indexes of the value expression's columns (one, or two multiplied).
    pub value: Vec<usize>,
    /// Window size, ms.
    pub window_ms: i64,
    /// Output aggregates, in order.
    pub aggregates: Vec<Aggregate>,
    /// Bounded out-of-orderness, ms.
    pub out_of_orderness_ms: i64,
    /// Where results go.
    pub output: Output,
    /// Digits after the point for float aggregates.
    pub decimals: Option<usize>,
    /// Throttle per source subtask.
    pub max_records_per_second: Option<u64>,
    /// Throttle of each sink subtask, records/s (a slow consumer for tests and benchmarks).
    pub sink_max_records_per_second: Option<u64>,
    /// A source split (file, partition) that gives no record for this long (ms) does not
    /// hold back event time.
    pub idle_timeout_ms: Option<u64>,
    /// File input: where records that do not parse go.
    pub dead_letter_file: Option<PathBuf>,
}

fn required<'a>(args: &'a JobArgs, name: &str) -> Result<&'a str, ArgError> {
    args.get(name)
        .map(|s| s.as_str())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ArgError::new(name, "is required"))
}

fn duration_ms(args: &JobArgs, name: &str, default: &str) -> Result<i64, ArgError> {
    let text = args.get(name).map(|s| s.as_str()).unwrap_or(default);
    weir_crds::parse_duration(text)
        .map(|d| d.as_millis() as i64)
        .map_err(|e| ArgError::new(name, e.to_string()))
}

fn resolve_inputs(spec: &str) -> Result<Vec<PathBuf>, ArgError> {
    let mut files = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(part);
        if p.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| ArgError::new("input", format!("cannot list `{part}`: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && !f
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else if p.is_file() {
            files.push(p);
        } else {
            return Err(ArgError::new(
                "input",
                format!("`{part}` does not exist (paths are relative to the working directory)"),
            ));
        }
    }
    if files.is_empty() {
        return Err(ArgError::new("input", format!("`{spec}` names no files")));
    }
    Ok(files)
}

/// The first `n` records of `file`.
fn peek(file: &Path, delimiter: u8, n: usize) -> Result<Vec<csv::ByteRecord>, ArgError> {
    let r = open_at(file, 0)
        .map_err(|e| ArgError::new("input", format!("cannot read `{}`: {e}", file.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(r);
    let mut out = Vec::new();
    let mut rec = csv::ByteRecord::new();
    while out.len() < n
        && reader
            .read_byte_record(&mut rec)
            .map_err(|e| ArgError::new("input", format!("`{}` is not CSV: {e}", file.display())))?
    {
        out.push(rec.clone());
    }
    Ok(out)
}

/// Validates `job.args` without running anything (reads the first rows of the first file).
///
/// # Errors
/// [`ArgError`] naming the argument: unknown names, missing required ones, unknown columns
/// (listing the known ones), malformed durations, numbers or aggregates, and a first row whose
/// timestamp or value does not parse.
pub fn parse_args(args: &JobArgs) -> Result<Args, ArgError> {
    let known: Vec<&str> = [KNOWN, KAFKA_ONLY, KAFKA_OUTPUT_ONLY].concat();
    if let Some(unknown) = args
        .keys()
        .find(|k| !known.contains(&k.as_str()) && !k.starts_with("kafka."))
    {
        return Err(ArgError::new(
            unknown,
            format!(
                "unknown argument; known: {}, and kafka.<librdkafka setting>",
                known.join(", ")
            ),
        ));
    }
    let input_spec = required(args, "input")?;
    if KafkaAddress::is_kafka(input_spec) {
        return parse_kafka_args(args, input_spec);
    }
    let kafka_output = args
        .get("output")
        .is_some_and(|o| KafkaAddress::is_kafka(o));
    if let Some(k) = args
        .keys()
        .find(|k| KAFKA_ONLY.contains(&k.as_str()) || (k.starts_with("kafka.") && !kafka_output))
    {
        return Err(ArgError::new(
            k,
            "only applies to a Kafka input (input: kafka://host:port/topic)",
        ));
    }
    let files = resolve_inputs(input_spec)?;
    let has_header = match args.get("header").map(|s| s.as_str()).unwrap_or("true") {
        "true" => true,
        "false" => false,
        other => {
            return Err(ArgError::new(
                "header",
                format!("`{other}` must be true or false"),
            ))
        }
    };
    let delimiter = parse_delimiter(args)?;
    let first = peek(&files[0], delimiter, 2)?;
    let columns: Vec<String> = match args.get("columns") {
        Some(c) => c.split(',').map(|s| s.trim().to_string()).collect(),
        None if has_header => first
            .first()
            .ok_or_else(|| ArgError::new("input", format!("`{}` is empty", files[0].display())))?
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect(),
        None => return Err(ArgError::new("columns", "is required when header is false")),
    };
    let timestamp = Some(column_index(
        &columns,
        "timestamp",
        required(args, "timestamp")?,
    )?);
    let mut parsed = common_args(args, columns, timestamp, has_header, delimiter)?;
    parsed.input = Input::Files(files);
    let sample = if has_header {
        first.get(1)
    } else {
        first.first()
    };
    if let Some(rec) = sample {
        parse_row(&parsed, rec, None).map_err(|msg| {
            let Input::Files(files) = &parsed.input else {
                unreachable!("invariant: set above")
            };
            ArgError::new(
                if msg.starts_with("timestamp") {
                    "timestampFormat"
                } else {
                    "value"
                },
                format!("first data row of `{}`: {msg}", files[0].display()),
            )
        })?;
    }
    Ok(parsed)
}

/// The index of column `name` in `columns`, for argument `arg`.
fn column_index(columns: &[String], arg: &str, name: &str) -> Result<usize, ArgError> {
    columns
        .iter()
        .position(|c| c == name.trim())
        .ok_or_else(|| {
            ArgError::new(
                arg,
                format!(
                    "unknown column `{}`; columns: {}",
                    name.trim(),
                    columns.join(", ")
                ),
            )
        })
}

/// The arguments of a `kafka://` input.
fn parse_kafka_args(args: &JobArgs, input: &str) -> Result<Args, ArgError> {
    let kafka_err = |e: KafkaConfigError| ArgError::new(&e.field, e.message);
    let format = match args.get("format").map(|s| s.trim()).unwrap_or("csv") {
        "csv" => RecordFormat::Csv,
        "json" => RecordFormat::Json,
        other => {
            return Err(ArgError::new(
                "format",
                format!("`{other}` must be csv or json"),
            ))
        }
    };
    if args.get("header").is_some_and(|h| h != "false") {
        return Err(ArgError::new(
            "header",
            "a Kafka record has no header row: name the fields with `columns` (csv) or use format json",
        ));
    }
    let pattern = args.get("topicPattern").map(|p| p.trim().to_string());
    let address = KafkaAddress::parse(input, "input", pattern.is_some()).map_err(kafka_err)?;
    let topics = match pattern {
        Some(_) if !address.topics.is_empty() => return Err(ArgError::new(
            "topicPattern",
            "give topics either in input (kafka://host:port/topic) or as topicPattern, not both",
        )),
        Some(p) => Topics::Pattern(p),
        None => Topics::List(address.topics),
    };
    let mut config = KafkaSourceConfig::new(address.bootstrap_servers, topics);
    if let Some(s) = args.get("startingOffsets") {
        config.starting_offsets =
            parse_starting_offsets(s, "startingOffsets").map_err(kafka_err)?;
    }
    if let Some(s) = args.get("stoppingOffsets") {
        config.stopping_offsets =
            parse_stopping_offsets(s, "stoppingOffsets").map_err(kafka_err)?;
    }
    config.group_id = args.get("groupId").map(|g| g.trim().to_string());
    config.discovery_interval_ms = match args.get("partitionDiscoveryInterval").map(|s| s.trim()) {
        Some("off") => None,
        _ => Some(duration_ms(args, "partitionDiscoveryInterval", "30s")?.max(0) as u64),
    };
    config.dead_letter_topic = args.get("deadLetterTopic").map(|t| t.trim().to_string());
    config.properties = args
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("kafka.")?.to_string(), v.clone())))
        .collect();
    config.validate().map_err(|e| {
        if e.field == "partitionDiscoveryInterval" {
            ArgError::new(&e.field, "must be more than 0s, or off")
        } else {
            kafka_err(e)
        }
    })?;
    let delimiter = parse_delimiter(args)?;
    let columns: Vec<String> = match (format, args.get("columns")) {
        (RecordFormat::Csv, Some(c)) => c.split(',').map(|s| s.trim().to_string()).collect(),
        (RecordFormat::Csv, None) => return Err(ArgError::new(
            "columns",
            "is required for a Kafka input in csv format: name the fields of each record's value",
        )),
        (RecordFormat::Json, Some(_)) => {
            return Err(ArgError::new(
                "columns",
                "does not apply to format json: key, value and timestamp name the JSON fields",
            ))
        }
        (RecordFormat::Json, None) => {
            // The JSON fields the job reads, as the columns of a record.
            let mut names: Vec<String> = Vec::new();
            let named = [
                args.get("key").map(|k| k.split(',').collect::<Vec<_>>()),
                args.get("value").map(|v| v.split('*').collect()),
                args.get("timestamp").map(|t| vec![t.as_str()]),
            ];
            for n in named.into_iter().flatten().flatten() {
                let n = n.trim().to_string();
                if !n.is_empty() && !names.contains(&n) {
                    names.push(n);
                }
            }
            names
        }
    };
    let timestamp = args
        .get("timestamp")
        .map(|t| column_index(&columns, "timestamp", t))
        .transpose()?;
    if args.contains_key("deadLetterFile") {
        return Err(ArgError::new(
            "deadLetterFile",
            "applies to file input; a Kafka input sends such records to `deadLetterTopic`",
        ));
    }
    let mut parsed = common_args(args, columns, timestamp, false, delimiter)?;
    config.max_records_per_second = parsed.max_records_per_second;
    parsed.input = Input::Kafka { config, format };
    if parsed.idle_timeout_ms.is_none() {
        parsed.idle_timeout_ms = Some(DEFAULT_KAFKA_IDLE_TIMEOUT_MS);
    }
    Ok(parsed)
}

/// The `output` argument: a directory, or a Kafka topic with its sink settings.
fn parse_output(args: &JobArgs) -> Result<Output, ArgError> {
    let spec = required(args, "output")?;
    if !KafkaAddress::is_kafka(spec) {
        if let Some(k) = args
            .keys()
            .find(|k| KAFKA_OUTPUT_ONLY.contains(&k.as_str()))
        {
            return Err(ArgError::new(
                k,
                "only applies to a Kafka output (output: kafka://host:port/topic)",
            ));
        }
        return OutputLocation::parse(spec)
            .map(Output::Files)
            .map_err(|e| ArgError::new("output", e));
    }
    let kafka_err = |e: KafkaConfigError| ArgError::new(&e.field, e.message);
    let address = KafkaAddress::parse(spec, "output", false).map_err(kafka_err)?;
    let [topic] = address.topics.as_slice() else {
        return Err(ArgError::new(
            "output",
            "name exactly one topic: kafka://host:port/topic",
        ));
    };
    let mut config = KafkaSinkConfig::new(address.bootstrap_servers.clone(), topic.clone());
    if let Some(d) = args.get("deliveryGuarantee") {
        config.delivery = DeliveryGuarantee::parse(d, "deliveryGuarantee").map_err(kafka_err)?;
    }
    config.transactional_id_prefix = args
        .get("transactionalIdPrefix")
        .map(|p| p.trim().to_string());
    if args.contains_key("transactionTimeout") {
        config.transaction_timeout_ms =
            duration_ms(args, "transactionTimeout", "15m")?.max(0) as u64;
    }
    config.properties = args
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("kafka.")?.to_string(), v.clone())))
        .collect();
    config.validate().map_err(kafka_err)?;
    Ok(Output::Kafka(config))
}

/// A Kafka input's `idleTimeout` when none is given: an empty partition stops holding back
/// event time after this long.
pub const DEFAULT_KAFKA_IDLE_TIMEOUT_MS: u64 = 10_000;

fn parse_delimiter(args: &JobArgs) -> Result<u8, ArgError> {
    match args.get("delimiter").map(|s| s.as_bytes()) {
        None => Ok(b','),
        Some([d]) => Ok(*d),
        Some(b"\\t") => Ok(b'\t'),
        Some(_) => Err(ArgError::new(
            "delimiter",
            "must be one byte, such as , or ; or \\t",
        )),
    }
}

/// The arguments every input shares, given the input's columns and timestamp column.
fn common_args(
    args: &JobArgs,
    columns: Vec<String>,
    timestamp: Option<usize>,
    has_header: bool,
    delimiter: u8,
) -> Result<Args, ArgError> {
    let column = |arg: &str, name: &str| column_index(&columns, arg, name);
    let timestamp_format = match args.get("timestampFormat").map(|s| s.as_str()) {
        None | Some(DEFAULT_FORMAT) => TimestampFormat::Default,
        Some("epoch-ms") => TimestampFormat::EpochMillis,
        Some("epoch-s") => TimestampFormat::EpochSeconds,
        Some(f) if f.contains('%') => TimestampFormat::Strftime(f.to_string()),
        Some(f) => {
            return Err(ArgError::new(
                "timestampFormat",
                format!(
                "`{f}` is not a strftime format (such as %d/%m/%Y %H:%M) nor epoch-ms / epoch-s"
            ),
            ))
        }
    };
    let key = required(args, "key")?
        .split(',')
        .map(|k| column("key", k))
        .collect::<Result<Vec<_>, _>>()?;
    let value = match args.get("value") {
        Some(expr) => {
            let parts: Vec<&str> = expr.split('*').collect();
            if parts.len() > 2 {
                return Err(ArgError::new(
                    "value",
                    "must be a column or the product of two columns (A * B)",
                ));
            }
            parts
                .iter()
                .map(|p| column("value", p))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let aggregates = args
        .get("aggregates")
        .map(|s| s.as_str())
        .unwrap_or("count")
        .split(',')
        .map(|a| match a.trim() {
            "count" => Ok(Aggregate::Count),
            "sum" => Ok(Aggregate::Sum),
            "min" => Ok(Aggregate::Min),
            "max" => Ok(Aggregate::Max),
            "avg" => Ok(Aggregate::Avg),
            other => Err(ArgError::new(
                "aggregates",
                format!("unknown aggregate `{other}`; allowed: count, sum, min, max, avg"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if value.is_empty() {
        if let Some(a) = aggregates.iter().find(|a| **a != Aggregate::Count) {
            return Err(ArgError::new(
                "value",
                format!("is required by aggregate {a:?}"),
            ));
        }
    }
    let window_ms = duration_ms(args, "window", required(args, "window")?)?;
    if window_ms <= 0 {
        return Err(ArgError::new("window", "must be at least 1ms"));
    }
    let number = |name: &str| -> Result<Option<u64>, ArgError> {
        args.get(name)
            .map(|s| {
                s.trim().parse::<u64>().map_err(|_| {
                    ArgError::new(name, format!("`{s}` is not a non-negative integer"))
                })
            })
            .transpose()
    };
    let idle_timeout_ms = args
        .get("idleTimeout")
        .map(|_| duration_ms(args, "idleTimeout", "0s"))
        .transpose()?
        .filter(|ms| *ms > 0)
        .map(|ms| ms as u64);
    Ok(Args {
        input: Input::Files(Vec::new()),
        has_header,
        delimiter,
        timestamp,
        timestamp_format,
        key,
        value,
        window_ms,
        aggregates,
        out_of_orderness_ms: duration_ms(args, "outOfOrderness", "0s")?,
        output: parse_output(args)?,
        decimals: number("decimals")?.map(|d| d as usize),
        max_records_per_second: number("maxRecordsPerSecond")?.filter(|r| *r > 0),
        sink_max_records_per_second: number("sinkMaxRecordsPerSecond")?.filter(|r| *r > 0),
        idle_timeout_ms,
        dead_letter_file: args.get("deadLetterFile").map(|f| PathBuf::from(f.trim())),
        columns,
    })
}
