//! Turning a Kafka record into a job's record: JSON, CSV or the raw bytes. A record that does
//! not deserialize is an `Err` naming the problem; the source sends it to its dead-letter
//! topic and counts it, it never fails the job.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connectors::csv_source::RecordParser;

/// One record as read from Kafka, borrowed from the consumer.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    /// Topic it was read from.
    pub topic: &'a str,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (create or log-append time, ms since the epoch), if it has one.
    pub timestamp: Option<i64>,
    /// Its key bytes.
    pub key: Option<&'a [u8]>,
    /// Its value bytes (`None` for a tombstone).
    pub payload: Option<&'a [u8]>,
}

/// Turns a record into a `T`; `Err` is a message naming the field and the problem.
pub type Deserializer<T> = Arc<dyn Fn(&KafkaRecord<'_>) -> Result<T, String> + Send + Sync>;

/// A record's bytes and coordinates, owned: what the raw format yields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaMessage {
    /// Topic it was read from.
    pub topic: String,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (ms since the epoch), if it has one.
    pub timestamp: Option<i64>,
    /// Its key bytes.
    pub key: Option<Vec<u8>>,
    /// Its value bytes.
    pub payload: Option<Vec<u8>>,
}

/// The record's value.
///
/// # Errors
/// A tombstone (no value).
pub fn payload<'a>(record: &KafkaRecord<'a>) -> Result<&'a [u8], String> {
    record
        .payload
        .ok_or_else(|| "the record has no value (a tombstone)".to_string())
}

/// Each record's value as a JSON document of `T` (serde_json).
pub fn json<T: DeserializeOwned + 'static>() -> Deserializer<T> {
    Arc::new(|record| {
        serde_json::from_slice(payload(record)?)
            .map_err(|e| format!("value is not the expected JSON: {e}"))
    })
}

/// Each record's value as one CSV line (fields split by `delimiter`, quotes as RFC 4180),
/// parsed into a `T` by `parse` (as the CSV file source's parsers).
pub fn csv<T: 'static>(delimiter: u8, parse: RecordParser<T>) -> Deserializer<T> {
    Arc::new(move |record| parse(&csv_record(payload(record)?, delimiter)?))
}

/// One CSV line (a trailing line break is ignored) as a record: split at `delimiter` when it
/// has no quotes (the common case, without the CSV reader's buffers), else read by the CSV
/// reader.
///
/// # Errors
/// Malformed quoting.
pub fn csv_record(line: &[u8], delimiter: u8) -> Result<csv::ByteRecord, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.contains(&b'"') {
        let mut record = csv::ByteRecord::new();
        for field in line.split(|b| *b == delimiter) {
            record.push_field(field);
        }
        return Ok(record);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(line);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => Ok(record),
        Ok(false) => Ok(csv::ByteRecord::new()),
        Err(e) => Err(format!("value is not a CSV line: {e}")),
    }
}

/// Each record as its bytes and coordinates ([`KafkaMessage`]); never fails.
pub fn raw() -> Deserializer<KafkaMessage> {
    Arc::new(|r| {
        Ok(KafkaMessage {
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            payload: r.payload.map(<[u8]>::to_vec),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: Option<&[u8]>) -> KafkaRecord<'_> {
        KafkaRecord {
            topic: "t",
            partition: 1,
            offset: 7,
            timestamp: Some(5),
            key: None,
            payload,
        }
    }

    #[test]
    fn json_csv_and_raw_deserialize_and_failures_say_why() {
        #[derive(Debug, Deserialize)]
        struct Bid {
            auction: u64,
        }
        let parse = json::<Bid>();
        assert_eq!(
            parse(&record(Some(br#"{"auction": 3}"#))).unwrap().auction,
            3
        );
        assert!(parse(&record(Some(b"{oops"))).unwrap_err().contains("JSON"));
        assert!(parse(&record(None)).unwrap_err().contains("tombstone"));

        let fields: RecordParser<Vec<String>> = Arc::new(|r| {
            Ok(r.iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect())
        });
        let parse = csv(b',', fields);
        assert_eq!(
            parse(&record(Some(b"a,b,c\n"))).unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            parse(&record(Some(b"\"x,y\",z"))).unwrap(),
            vec!["x,y", "z"]
        );

        let m = raw()(&record(Some(b"v"))).unwrap();
        assert_eq!(
            (m.partition, m.offset, m.payload),
            (1, 7, Some(b"v".to_vec()))
        );
    }
}
