//! The Kafka source's settings, their validation, and the `kafka://` address the built-in
//! jobs accept. Pure.

use std::collections::BTreeMap;

use thiserror::Error;

/// A setting that cannot work, naming it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct KafkaConfigError {
    /// The setting (a job argument or a field of the config).
    pub field: String,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl KafkaConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The topics a source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topics {
    /// These topics.
    List(Vec<String>),
    /// Every topic whose whole name matches this regular expression (Rust `regex` syntax),
    /// found again at every partition discovery.
    Pattern(String),
}

/// Where a partition is read from when the job starts without restored state (Flink's
/// `OffsetsInitializer`). Partitions discovered while the job runs are read from the
/// earliest offset, whatever this says (they are new: none of their records were read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingOffsets {
    /// The earliest offset still in the log.
    Earliest,
    /// The end of the log when the job starts: only records written after.
    Latest,
    /// The first record with a timestamp at or after this (ms since the epoch); the end of
    /// the log if there is none.
    Timestamp(i64),
    /// The consumer group's committed offsets; a partition without one starts at
    /// `fallback`.
    Committed {
        /// Where a partition without a committed offset starts.
        fallback: OffsetFallback,
    },
}

/// Where a partition without a committed offset starts ([`StartingOffsets::Committed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetFallback {
    /// The earliest offset.
    Earliest,
    /// The end of the log.
    Latest,
}

/// Where a bounded source stops (Flink's `setBounded`): each partition ends there, and the
/// job finishes once every partition has. Partition discovery is off for a bounded source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoppingOffsets {
    /// Never: the source is unbounded.
    Never,
    /// The end of each partition when the job first started (its high watermark, or last
    /// stable offset when reading `read_committed`), kept in the checkpointed positions so
    /// a restored job stops at the same place.
    Latest,
    /// Before the first record with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
}

/// Settings of a [`super::KafkaSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port...]` of the brokers (librdkafka's `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// The topics read.
    pub topics: Topics,
    /// The consumer group the source commits its offsets to when a checkpoint completes, for
    /// monitoring only (the source never reads them back unless
    /// [`StartingOffsets::Committed`]); default `weir-<job name>`.
    pub group_id: Option<String>,
    /// Where partitions start on a fresh start.
    pub starting_offsets: StartingOffsets,
    /// Where the source stops.
    pub stopping_offsets: StoppingOffsets,
    /// How often each subtask looks for new partitions (and, with a pattern, new topics), in
    /// ms; `None` turns discovery off. Default 30 s (Flink's default is 5 minutes).
    pub discovery_interval_ms: Option<u64>,
    /// A topic that receives each record that does not deserialize, with headers naming its
    /// topic, partition, offset and the error (at least once: a restored job sends the bad
    /// records it reads again). Without it, such records are counted and dropped.
    pub dead_letter_topic: Option<String>,
    /// Further librdkafka settings for the consumer and the dead-letter producer (for
    /// example `security.protocol`, `sasl.username`, `isolation.level`); the source's own
    /// (`enable.auto.commit`, `group.id`, `enable.partition.eof`) cannot be overridden.
    pub properties: BTreeMap<String, String>,
    /// Upper bound on records per second per subtask (demos, tests); `None` = unbounded.
    pub max_records_per_second: Option<u64>,
}

/// Settings the source sets itself.
pub(crate) const RESERVED_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

impl KafkaSourceConfig {
    /// A source of `topics` on `bootstrap_servers`, from the earliest offsets, unbounded,
    /// discovering partitions every 30 s, without a dead-letter topic.
    pub fn new(bootstrap_servers: impl Into<String>, topics: Topics) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topics,
            group_id: None,
            starting_offsets: StartingOffsets::Earliest,
            stopping_offsets: StoppingOffsets::Never,
            discovery_interval_ms: Some(30_000),
            dead_letter_topic: None,
            properties: BTreeMap::new(),
            max_records_per_second: None,
        }
    }

    /// Checks the settings before anything runs.
    ///
    /// # Errors
    /// [`KafkaConfigError`] naming the setting: no brokers, no topics, an empty topic name,
    /// a pattern that is not a regular expression, a zero discovery interval, or a property
    /// the source sets itself.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(KafkaConfigError::new(
                "bootstrapServers",
                "no brokers: give host:port of at least one",
            ));
        }
        match &self.topics {
            Topics::List(topics) if topics.is_empty() => {
                return Err(KafkaConfigError::new("topics", "no topic given"));
            }
            Topics::List(topics) => {
                if let Some(bad) = topics.iter().find(|t| !valid_topic_name(t)) {
                    return Err(KafkaConfigError::new(
                        "topics",
                        format!("`{bad}` is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
                    ));
                }
            }
            Topics::Pattern(p) => {
                regex::Regex::new(p).map_err(|e| {
                    KafkaConfigError::new(
                        "topicPattern",
                        format!("`{p}` is not a regular expression: {e}"),
                    )
                })?;
            }
        }
        if self.discovery_interval_ms == Some(0) {
            return Err(KafkaConfigError::new(
                "partitionDiscoveryInterval",
                "must be more than 0; leave it out to turn discovery off",
            ));
        }
        if let Some(t) = &self.dead_letter_topic {
            if !valid_topic_name(t) {
                return Err(KafkaConfigError::new(
                    "deadLetterTopic",
                    format!("`{t}` is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
                ));
            }
        }
        if let Some(p) = self
            .properties
            .keys()
            .find(|k| RESERVED_PROPERTIES.contains(&k.as_str()))
        {
            return Err(KafkaConfigError::new(
                format!("kafka.{p}"),
                "is set by the source; remove it (bootstrap servers and group id have their own settings)",
            ));
        }
        Ok(())
    }

    /// The discovery interval that applies: none for a bounded source.
    pub fn effective_discovery_interval_ms(&self) -> Option<u64> {
        match self.stopping_offsets {
            StoppingOffsets::Never => self.discovery_interval_ms,
            _ => None,
        }
    }
}

/// Whether `name` is a legal Kafka topic name.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A `kafka://host:port[,host:port...]/topic[,topic...]` address: the brokers and topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaAddress {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The topics, in the order given.
    pub topics: Vec<String>,
}

impl KafkaAddress {
    /// Whether `s` is meant as a Kafka address (starts with `kafka://`).
    pub fn is_kafka(s: &str) -> bool {
        s.starts_with("kafka://")
    }

    /// Parses `kafka://host:port[,host:port...]/topic[,topic...]`; `field` names the setting
    /// in errors. A topic may be left out when `topic_optional` (a source given a pattern).
    ///
    /// # Errors
    /// [`KafkaConfigError`] on `field` for a missing `kafka://` scheme, no broker, a broker
    /// without a port, or a missing or illegal topic name.
    pub fn parse(s: &str, field: &str, topic_optional: bool) -> Result<Self, KafkaConfigError> {
        let err = |m: String| KafkaConfigError::new(field, m);
        let rest = s.strip_prefix("kafka://").ok_or_else(|| {
            err(format!(
                "`{s}` is not a Kafka address: write kafka://host:port/topic"
            ))
        })?;
        let (brokers, topics) = rest.split_once('/').unwrap_or((rest, ""));
        let brokers: Vec<&str> = brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if brokers.is_empty() {
            return Err(err(format!(
                "`{s}` names no broker: write kafka://host:port/topic"
            )));
        }
        if let Some(b) = brokers.iter().find(|b| {
            b.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        }) {
            return Err(err(format!(
                "broker `{b}` has no port: write host:port (Kafka's default is 9092)"
            )));
        }
        let topics: Vec<String> = topics
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if topics.is_empty() && !topic_optional {
            return Err(err(format!(
                "`{s}` names no topic: write kafka://host:port/topic"
            )));
        }
        if let Some(bad) = topics.iter().find(|t| !valid_topic_name(t)) {
            return Err(err(format!(
                "`{bad}` is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
            )));
        }
        Ok(Self {
            bootstrap_servers: brokers.join(","),
            topics,
        })
    }
}

/// Parses a starting-offsets setting: `earliest`, `latest`, `timestamp:<ms>`,
/// `committed` (falling back to earliest) or `committed-or-latest`.
///
/// # Errors
/// [`KafkaConfigError`] on `field` naming the accepted forms.
pub fn parse_starting_offsets(s: &str, field: &str) -> Result<StartingOffsets, KafkaConfigError> {
    match s.trim() {
        "earliest" => Ok(StartingOffsets::Earliest),
        "latest" => Ok(StartingOffsets::Latest),
        "committed" | "committed-or-earliest" => Ok(StartingOffsets::Committed {
            fallback: OffsetFallback::Earliest,
        }),
        "committed-or-latest" => Ok(StartingOffsets::Committed {
            fallback: OffsetFallback::Latest,
        }),
        other => parse_timestamp(other)
            .map(StartingOffsets::Timestamp)
            .ok_or_else(|| {
                KafkaConfigError::new(
                    field,
                    format!("`{other}` is not one of earliest, latest, committed, committed-or-latest, timestamp:<ms since the epoch>"),
                )
            }),
    }
}

/// Parses a stopping-offsets setting: `never`, `latest` or `timestamp:<ms>`.
///
/// # Errors
/// [`KafkaConfigError`] on `field` naming the accepted forms.
pub fn parse_stopping_offsets(s: &str, field: &str) -> Result<StoppingOffsets, KafkaConfigError> {
    match s.trim() {
        "never" => Ok(StoppingOffsets::Never),
        "latest" => Ok(StoppingOffsets::Latest),
        other => parse_timestamp(other)
            .map(StoppingOffsets::Timestamp)
            .ok_or_else(|| {
                KafkaConfigError::new(
                    field,
                    format!(
                        "`{other}` is not one of never, latest, timestamp:<ms since the epoch>"
                    ),
                )
            }),
    }
}

fn parse_timestamp(s: &str) -> Option<i64> {
    s.strip_prefix("timestamp:")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_bad_ones_name_the_field_and_the_fix() {
        let a =
            KafkaAddress::parse("kafka://a:9092,b:9093/orders,refunds", "input", false).unwrap();
        assert_eq!(a.bootstrap_servers, "a:9092,b:9093");
        assert_eq!(a.topics, vec!["orders", "refunds"]);
        let e = KafkaAddress::parse("kafka://a/orders", "input", false).unwrap_err();
        assert_eq!(e.field, "input");
        assert!(e.message.contains("host:port"), "{e}");
        let e = KafkaAddress::parse("kafka://a:1", "output", false).unwrap_err();
        assert!(e.message.contains("no topic"), "{e}");
        assert!(KafkaAddress::parse("kafka://a:1", "input", true).is_ok());
        let e = KafkaAddress::parse("kafka://a:1/bad topic", "input", false).unwrap_err();
        assert!(e.message.contains("not a topic name"), "{e}");
        assert!(KafkaAddress::parse("http://a:1/t", "input", false).is_err());
    }

    #[test]
    fn offsets_settings_parse() {
        assert_eq!(
            parse_starting_offsets("timestamp:1700000000000", "s").unwrap(),
            StartingOffsets::Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            parse_starting_offsets("committed-or-latest", "s").unwrap(),
            StartingOffsets::Committed {
                fallback: OffsetFallback::Latest
            }
        );
        assert!(parse_starting_offsets("first", "startingOffsets")
            .unwrap_err()
            .to_string()
            .starts_with("startingOffsets:"));
        assert_eq!(
            parse_stopping_offsets("latest", "s").unwrap(),
            StoppingOffsets::Latest
        );
        assert!(parse_stopping_offsets("timestamp:x", "s").is_err());
    }

    #[test]
    fn validation_names_the_setting() {
        let ok = KafkaSourceConfig::new("k:9092", Topics::List(vec!["t".into()]));
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.topics = Topics::Pattern("(".into());
        assert_eq!(c.validate().unwrap_err().field, "topicPattern");
        let mut c = ok.clone();
        c.properties.insert("group.id".into(), "x".into());
        assert_eq!(c.validate().unwrap_err().field, "kafka.group.id");
        let mut c = ok.clone();
        c.discovery_interval_ms = Some(0);
        assert_eq!(
            c.validate().unwrap_err().field,
            "partitionDiscoveryInterval"
        );
        let mut c = ok;
        c.stopping_offsets = StoppingOffsets::Latest;
        assert_eq!(c.effective_discovery_interval_ms(), None);
    }
}
