//! Durations in the manifest (`10s`, `500ms`, `5m`, `1h 30m`), parsed with `humantime`. Pure.

use std::time::Duration;

/// A duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason}; write a number with a unit, such as 500ms, 10s, 5m or 1h")]
pub struct DurationError {
    /// The text as written in the manifest.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

/// Parses a manifest duration such as `10s`, `500ms`, `5m` or `1h 30m`.
///
/// # Errors
/// [`DurationError`] when the text is empty, has no unit, or has an unknown unit.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(input.trim()).map_err(|e| DurationError {
        input: input.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn refuses_missing_or_unknown_units() {
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
