//! `job.args` of `csv-window-aggregate`: validation into typed [`Args`]. Reads the first rows
//! of the first input file (to learn the header and check the first row parses); runs nothing.

use std::path::{Path, PathBuf};

use super::parse::parse_row;
use crate::connectors::csv_source::open_at;
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

pub(super) const DEFAULT_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
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
    /// Throttle of each sink subtask, records/s (a slow consumer for tests and benchmarks).
    pub sink_max_records_per_second: Option<u64>,
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
        sink_max_records_per_second: number("sinkMaxRecordsPerSecond")?.filter(|r| *r > 0),
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
