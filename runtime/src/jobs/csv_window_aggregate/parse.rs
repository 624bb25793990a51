//! Parsing one CSV record into a [`Row`]: event time, compound key, value expression. Pure.

use super::args::{Args, TimestampFormat};

/// A parsed input row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Compound key, encoded as `Vec<String>` keys are (see [`Key`]).
    pub key: Vec<u8>,
    /// Event time, ms since the epoch.
    pub ts: i64,
    /// The value expression, `None` when a field is empty.
    pub value: Option<f64>,
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

/// Parses one record into a [`Row`]; event time comes from the timestamp column, or, when
/// the job has none (a Kafka input without `timestamp`), is `record_timestamp` (the Kafka
/// record's timestamp, ms).
///
/// # Errors
/// A message naming the column when the timestamp or a value does not parse, or when there
/// is neither a timestamp column nor a record timestamp.
pub fn parse_row(
    args: &Args,
    rec: &csv::ByteRecord,
    record_timestamp: Option<i64>,
) -> Result<Row, String> {
    let ts = match args.timestamp {
        Some(col) => parse_timestamp(&args.timestamp_format, rec.get(col).unwrap_or(b""))?,
        None => record_timestamp.ok_or("timestamp: the record has no timestamp")?,
    };
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
}
