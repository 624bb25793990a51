//! Encoding one window result as an output line. Pure.

use std::io::Write;

use super::args::{Aggregate, Args};
use super::Acc;
use crate::api::{Key, WindowResult};

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

#[cfg(test)]
mod tests {
    use super::*;

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
