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
//! | `input` | a file, a directory (its files, sorted), or a comma-separated list; `.gz` is decompressed | required |
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
//!
//! Output lines (CSV, no header): key columns..., window start, window end
//! (`YYYY-MM-DD HH:MM:SS`, UTC; with `.mmm` when the window is not whole seconds), then the
//! aggregates in the order given. Empty values count as rows for `count` and are ignored by
//! the others (SQL semantics); an aggregate over no values is an empty field.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ArgError, JobArgs};
use crate::api::{AggregateFunction, JobGraph, Key, Stream, WatermarkStrategy, WindowResult};
use crate::connectors::csv_source::{open_at, CsvSourceConfig, RecordParser};
use crate::connectors::file_sink::LineEncoder;
use crate::connectors::{CsvSource, FileSink};

/// The registry name of this job.
pub const ENTRY: &str = "csv-window-aggregate";

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
];

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

const DEFAULT_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";

/// A parsed input row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Compound key, encoded as `Vec<String>` keys are (see [`Key`]).
    pub key: Vec<u8>,
    /// Event time, ms since the epoch.
    pub ts: i64,
    /// The value expression, `None` when a field is empty.
    pub value: Option<f64>,
}

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
}

/// Validated arguments.
#[derive(Debug, Clone)]
pub struct Args {
    /// Input files.
    pub files: Vec<PathBuf>,
    /// Files start with a header row.
    pub has_header: bool,
    /// Field delimiter.
    pub delimiter: u8,
    /// Column names.
    pub columns: Vec<String>,
    /// Index of the timestamp column.
    pub timestamp: usize,
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
    /// Output directory.
    pub output: PathBuf,
    /// Digits after the point for float aggregates.
    pub decimals: Option<usize>,
    /// Throttle per source subtask.
    pub max_records_per_second: Option<u64>,
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
    if let Some(unknown) = args.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ArgError::new(
            unknown,
            format!("unknown argument; known: {}", KNOWN.join(", ")),
        ));
    }
    let files = resolve_inputs(required(args, "input")?)?;
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
    let delimiter = match args.get("delimiter").map(|s| s.as_bytes()) {
        None => b',',
        Some([d]) => *d,
        Some(b"\\t") => b'\t',
        Some(_) => {
            return Err(ArgError::new(
                "delimiter",
                "must be one byte, such as , or ; or \\t",
            ))
        }
    };
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
    let column = |arg: &str, name: &str| -> Result<usize, ArgError> {
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
    };
    let timestamp = column("timestamp", required(args, "timestamp")?)?;
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
    let parsed = Args {
        has_header,
        delimiter,
        timestamp,
        timestamp_format,
        key,
        value,
        window_ms,
        aggregates,
        out_of_orderness_ms: duration_ms(args, "outOfOrderness", "0s")?,
        output: PathBuf::from(required(args, "output")?),
        decimals: number("decimals")?.map(|d| d as usize),
        max_records_per_second: number("maxRecordsPerSecond")?.filter(|r| *r > 0),
        columns,
        files,
    };
    let sample = if has_header {
        first.get(1)
    } else {
        first.first()
    };
    if let Some(rec) = sample {
        parse_row(&parsed, rec).map_err(|msg| {
            ArgError::new(
                if msg.starts_with("timestamp") {
                    "timestampFormat"
                } else {
                    "value"
                },
                format!("first data row of `{}`: {msg}", parsed.files[0].display()),
            )
        })?;
    }
    Ok(parsed)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff...]` (or with `T`) as UTC ms since the epoch.
pub fn parse_default_timestamp(s: &[u8]) -> Option<i64> {
    if s.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        s[r].iter().try_fold(0i64, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as i64)
        })
    };
    if s[4] != b'-'
        || s[7] != b'-'
        || !(s[10] == b' ' || s[10] == b'T')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut ms = 0;
    if s.len() > 19 {
        if s[19] != b'.' || s.len() == 20 || !s[20..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        for (i, b) in s[20..].iter().take(3).enumerate() {
            ms += (b - b'0') as i64 * [100, 10, 1][i];
        }
    }
    Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

fn parse_timestamp(format: &TimestampFormat, field: &[u8]) -> Result<i64, String> {
    let text = || String::from_utf8_lossy(field).into_owned();
    let bad = |expected: &str| format!("timestamp `{}` is not {expected}", text());
    match format {
        TimestampFormat::Default => {
            parse_default_timestamp(field).ok_or_else(|| bad("YYYY-MM-DD HH:MM:SS[.fff]"))
        }
        TimestampFormat::EpochMillis => text()
            .trim()
            .parse::<i64>()
            .map_err(|_| bad("integer epoch milliseconds")),
        TimestampFormat::EpochSeconds => text()
            .trim()
            .parse::<f64>()
            .map(|s| (s * 1000.0).round() as i64)
            .map_err(|_| bad("epoch seconds")),
        TimestampFormat::Strftime(f) => chrono::NaiveDateTime::parse_from_str(text().trim(), f)
            .map(|t| t.and_utc().timestamp_millis())
            .map_err(|e| format!("timestamp `{}` does not match `{f}`: {e}", text())),
    }
}

fn parse_number(
    rec: &csv::ByteRecord,
    col: usize,
    columns: &[String],
) -> Result<Option<f64>, String> {
    let field = rec.get(col).unwrap_or(b"");
    let s = std::str::from_utf8(field)
        .map_err(|_| format!("column {} is not UTF-8", columns[col]))?
        .trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<f64>()
        .map(Some)
        .map_err(|_| format!("value `{s}` of column {} is not a number", columns[col]))
}

/// Parses one record into a [`Row`].
///
/// # Errors
/// A message naming the column when the timestamp or a value does not parse.
pub fn parse_row(args: &Args, rec: &csv::ByteRecord) -> Result<Row, String> {
    let ts = parse_timestamp(
        &args.timestamp_format,
        rec.get(args.timestamp).unwrap_or(b""),
    )?;
    let mut key = Vec::with_capacity(16);
    for &k in &args.key {
        let f = rec.get(k).unwrap_or(b"");
        key.extend_from_slice(&(f.len() as u32).to_be_bytes());
        key.extend_from_slice(f);
    }
    let value = match args.value.as_slice() {
        [] => None,
        [a] => parse_number(rec, *a, &args.columns)?,
        [a, b] => match (
            parse_number(rec, *a, &args.columns)?,
            parse_number(rec, *b, &args.columns)?,
        ) {
            (Some(x), Some(y)) => Some(x * y),
            _ => None,
        },
        _ => unreachable!("invariant: value has at most two columns"),
    };
    Ok(Row { key, ts, value })
}

/// Appends a window bound as `YYYY-MM-DD HH:MM:SS[.mmm]` UTC.
pub fn push_time(out: &mut Vec<u8>, ms: i64, with_millis: bool) {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let s = ms_of_day / 1000;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    if with_millis {
        let _ = write!(out, ".{:03}", ms_of_day % 1000);
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

fn push_csv_field(out: &mut Vec<u8>, field: &[u8]) {
    if field
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for b in field {
            if *b == b'"' {
                out.push(b'"');
            }
            out.push(*b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

fn format_float(v: f64, decimals: Option<usize>) -> String {
    match decimals {
        Some(d) => {
            let s = format!("{v:.d$}");
            // avoid "-0.00"
            if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') {
                s[1..].to_string()
            } else {
                s
            }
        }
        None => v.to_string(),
    }
}

/// Encodes one output line (see the module docs).
pub fn encode_result(args: &Args, r: &WindowResult<Vec<u8>, Acc>, out: &mut Vec<u8>) {
    let parts = <Vec<String> as Key>::decode(&r.key).unwrap_or_default();
    for p in &parts {
        push_csv_field(out, p.as_bytes());
        out.push(b',');
    }
    let millis = args.window_ms % 1000 != 0;
    push_time(out, r.window.start, millis);
    out.push(b',');
    push_time(out, r.window.end, millis);
    let a = &r.value;
    for agg in &args.aggregates {
        out.push(b',');
        let v = match agg {
            Aggregate::Count => Some(a.count.to_string()),
            _ if a.values == 0 => None,
            Aggregate::Sum => Some(format_float(a.sum, args.decimals)),
            Aggregate::Min => Some(format_float(a.min, args.decimals)),
            Aggregate::Max => Some(format_float(a.max, args.decimals)),
            Aggregate::Avg => Some(format_float(a.sum / a.values as f64, args.decimals)),
        };
        if let Some(v) = v {
            out.extend_from_slice(v.as_bytes());
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
    let sink = FileSink::new(args.output.clone(), encode);
    let graph_err = |e: crate::api::TaskError| ArgError::new("(job graph)", e.to_string());
    let graph = Stream::from_source(
        "csv-source",
        source,
        WatermarkStrategy::bounded_out_of_orderness(args.out_of_orderness_ms, |r: &Row| r.ts),
    )
    .key_by(|r: &Row| r.key.clone())
    .tumbling_window(args.window_ms)
    .aggregate("window-aggregate", RowAggregate)
    .map_err(graph_err)?
    .sink("file-sink", sink)
    .map_err(graph_err)?;
    Ok(graph.with_output(args.output.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timestamps() {
        assert_eq!(parse_default_timestamp(b"1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_default_timestamp(b"2010-12-01 08:26:00"),
            Some(1291191960000)
        );
        assert_eq!(
            parse_default_timestamp(b"2024-01-01 00:00:02.5"),
            Some(1704067202500)
        );
        assert_eq!(
            parse_default_timestamp(b"2024-01-01T00:00:02.123456"),
            Some(1704067202123)
        );
        assert_eq!(parse_default_timestamp(b"2024-13-01 00:00:00"), None);
        assert_eq!(parse_default_timestamp(b"2024-01-01 00:00"), None);
        assert_eq!(parse_default_timestamp(b"2024-01-01 00:00:00."), None);
    }

    #[test]
    fn other_timestamp_formats() {
        assert_eq!(
            parse_timestamp(&TimestampFormat::EpochMillis, b"1500"),
            Ok(1500)
        );
        assert_eq!(
            parse_timestamp(&TimestampFormat::EpochSeconds, b"1.5"),
            Ok(1500)
        );
        assert_eq!(
            parse_timestamp(
                &TimestampFormat::Strftime("%d/%m/%Y %H:%M".into()),
                b"01/12/2010 08:26"
            ),
            Ok(1291191960000)
        );
        assert!(parse_timestamp(&TimestampFormat::Default, b"yesterday").is_err());
    }

    #[test]
    fn times_format_like_chrono() {
        for ms in [
            0i64,
            1291191960000,
            1704067202123,
            -86_400_001,
            951_782_400_000,
        ] {
            let mut out = Vec::new();
            push_time(&mut out, ms, true);
            let expected = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut out = Vec::new();
        push_csv_field(&mut out, b"a,\"b\"");
        assert_eq!(out, b"\"a,\"\"b\"\"\"");
        assert_eq!(format_float(-0.001, Some(2)), "0.00");
        assert_eq!(format_float(2.5, None), "2.5");
    }
}
