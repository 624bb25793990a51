//! Flink's fraud-detection walkthrough as a Weir job (`job.entry: fraud-detection`).
//!
//! A small transaction (under $1.00) followed within one minute of event time by a large one
//! (over $500.00) on the same account raises an alert. The detector is a keyed process
//! function keyed by account: a [`ValueStateDescriptor`] flag remembers the small
//! transaction, and a timer one minute later clears it (an event-time timer by default, a
//! processing-time timer with `timeDomain: processing-time`, as in Flink's walkthrough).
//! Transactions with an amount of zero or less are invalid: they go to the side output
//! `rejected` and from there to their own sink, and never reach the detector's state.
//!
//! ```text
//! transactions -> key_by(account) -> fraud-detector -> alerts sink
//!                                          \-> rejected (side output) -> rejected sink
//! ```
//!
//! The transactions are generated deterministically ([`transaction`]): transaction `n` has
//! event time `n * 250 ms` after 2026-01-01 and an account and amount drawn from `seed` and
//! `n`. The source splits them into [`SPLITS`] splits by account and reads, on each
//! subtask, the transactions of its splits in event-time order; its positions (per split)
//! are operator state, so a restored job, at any parallelism, continues exactly where the
//! checkpoint was taken.
//!
//! Arguments (`job.args`):
//!
//! | arg | meaning | default |
//! | --- | --- | --- |
//! | `input` | `kafka://host:port/topic`: read the transactions from Kafka (JSON objects with `id`, `account`, `timestamp`, `amount`, keyed by account so each account's transactions stay in order) instead of generating them | generated |
//! | `stoppingOffsets` | with a Kafka input: `latest` (the end offsets at the first start) or `timestamp:<ms>` to stop there | unbounded |
//! | `output` | directory (or `s3://bucket/prefix`) of the alerts (`account,timestamp ms,amount cents` per line), or `kafka://host:port/topic` to write them exactly once to Kafka (JSON, keyed by account) | required |
//! | `kafka.<setting>` | a librdkafka setting for the Kafka input and output (`kafka.security.protocol`, ...) | |
//! | `rejectedOutput` | directory (or `s3://bucket/prefix`) of the rejected transactions | `<output>-rejected` |
//! | `transactions` | number of transactions | `200000` |
//! | `accounts` | number of accounts | `100` |
//! | `seed` | generator seed | `42` |
//! | `timeDomain` | `event-time` or `processing-time` | `event-time` |
//! | `maxRecordsPerSecond` | throttle per source subtask (demos, tests) | unbounded |

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_runtime::api::{
    Context, JobBuilder, JobGraph, KeyedProcessFunction, OpenContext, Output, OutputTag, Source,
    SourceReader, TaskContext, TaskError, TimeDomain, Timestamp, ValueStateDescriptor,
    WatermarkStrategy,
};
use weir_runtime::connectors::file_sink::{LineEncoder, OutputLocation};
use weir_runtime::connectors::kafka::config::parse_stopping_offsets;
use weir_runtime::connectors::kafka::{
    format, KafkaAddress, KafkaConfigError, KafkaSink, KafkaSinkConfig, KafkaSource,
    KafkaSourceConfig, Serializer, Topics,
};
use weir_runtime::connectors::throttle::Throttle;
use weir_runtime::connectors::FileSink;
use weir_runtime::jobs::{optional_arg, ArgError, JobArgs, JobEntry, Registry};

/// The registry name of the job.
pub const ENTRY: &str = "fraud-detection";
/// Splits of the transaction stream (accounts modulo this); the most useful parallelism.
pub const SPLITS: u64 = 12;
/// Event time of transaction 0: 2026-01-01T00:00:00Z, in ms.
pub const START_MS: i64 = 1_767_225_600_000;
/// Event time between two consecutive transactions, in ms.
pub const SPACING_MS: i64 = 250;
/// Below this a transaction is small (cents).
pub const SMALL_AMOUNT: i64 = 100;
/// Above this a transaction is large (cents).
pub const LARGE_AMOUNT: i64 = 50_000;
/// How long a small transaction keeps the account flagged, in ms.
pub const ONE_MINUTE: i64 = 60_000;

/// One card transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Its index in the generated stream.
    pub id: u64,
    /// The account.
    pub account: u64,
    /// Event time, ms since the epoch.
    pub timestamp: i64,
    /// Amount in cents; zero or less is invalid.
    pub amount: i64,
}

/// An alert: the large transaction that followed a small one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The account.
    pub account: u64,
    /// Event time of the large transaction, ms.
    pub timestamp: i64,
    /// Its amount in cents.
    pub amount: i64,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Transaction `n` of the stream generated from `seed` over `accounts` accounts: 20 % are
/// small (1 to 99 cents), 5 % large ($500.01 to $1,000.00), 2 % invalid (zero or negative),
/// the rest in between. Pure.
pub fn transaction(seed: u64, accounts: u64, n: u64) -> Transaction {
    let h = splitmix64(seed ^ splitmix64(n));
    let account = h % accounts.max(1);
    let roll = (h >> 32) % 100;
    let r = (h >> 40) as i64;
    let amount = match roll {
        0..=19 => 1 + r % 99,
        20..=24 => LARGE_AMOUNT + 1 + r % 50_000,
        25..=26 => -(r % 10_000),
        _ => SMALL_AMOUNT + r % (LARGE_AMOUNT - SMALL_AMOUNT),
    };
    Transaction {
        id: n,
        account,
        timestamp: START_MS + n as i64 * SPACING_MS,
        amount,
    }
}

/// The generated transactions, split by account, read in event-time order.
#[derive(Debug, Clone)]
pub struct TransactionSource {
    /// Generator seed.
    pub seed: u64,
    /// Number of accounts.
    pub accounts: u64,
    /// Number of transactions.
    pub count: u64,
    /// Throttle per subtask (records/s).
    pub max_records_per_second: Option<u64>,
}

/// Where one split stands: the next transaction index to look at.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SplitPosition {
    split: u64,
    next: u64,
}

struct TransactionReader {
    source: TransactionSource,
    /// Next index per owned split.
    splits: Vec<SplitPosition>,
    /// Next index to look at (the smallest of the splits').
    cursor: u64,
    throttle: Throttle,
}

impl Source<Transaction> for TransactionSource {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<Transaction>>, TaskError> {
        let restored: Vec<SplitPosition> = positions
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| TaskError::Restore(format!("transaction source position: {e}")))?;
        let splits: Vec<SplitPosition> = (0..SPLITS)
            .filter(|s| s % ctx.parallelism as u64 == ctx.subtask as u64)
            .map(|split| SplitPosition {
                split,
                next: restored
                    .iter()
                    .find(|p| p.split == split)
                    .map_or(0, |p| p.next),
            })
            .collect();
        let cursor = splits.iter().map(|s| s.next).min().unwrap_or(self.count);
        Ok(Box::new(TransactionReader {
            source: self.clone(),
            splits,
            cursor,
            throttle: Throttle::new(self.max_records_per_second),
        }))
    }
}

impl SourceReader<Transaction> for TransactionReader {
    fn read_batch(&mut self, out: &mut Vec<Transaction>, max: usize) -> Result<bool, TaskError> {
        let s = &self.source;
        let before = out.len();
        while self.cursor < s.count && out.len() - before < max.min(256) {
            let tx = transaction(s.seed, s.accounts, self.cursor);
            let split = tx.account % SPLITS;
            if let Some(pos) = self.splits.iter_mut().find(|p| p.split == split) {
                if pos.next <= self.cursor {
                    pos.next = self.cursor + 1;
                    out.push(tx);
                }
            }
            self.cursor += 1;
        }
        self.throttle.pass((out.len() - before) as u64);
        if self.cursor >= s.count {
            // Every owned split is read to the end.
            for p in &mut self.splits {
                p.next = p.next.max(s.count);
            }
        }
        Ok(self.cursor < s.count)
    }

    fn positions(&self) -> Vec<serde_json::Value> {
        self.splits
            .iter()
            .map(|p| {
                // A split's position is the reader's cursor: every index before it was
                // looked at.
                let p = SplitPosition {
                    split: p.split,
                    next: p.next.max(self.cursor),
                };
                serde_json::to_value(p).expect("invariant: a position serializes")
            })
            .collect()
    }
}

/// The side output of invalid transactions.
pub const REJECTED: OutputTag<Transaction> = OutputTag::new("rejected");

/// The flag: set (to the event time at which it expires) by a small transaction.
const FLAG_UNTIL: ValueStateDescriptor<i64> = ValueStateDescriptor::new("flag-until");

/// The detector: Flink's `FraudDetector`, with the flag's expiry as its value so that the
/// decision depends only on event time, not on when the timer happens to fire.
#[derive(Debug, Clone)]
pub struct FraudDetector {
    /// The clock of the clean-up timer.
    pub time_domain: TimeDomain,
}

impl FraudDetector {
    fn clean_up(&self, ctx: &mut Context<'_, u64>, until: i64) -> Result<(), TaskError> {
        match self.time_domain {
            TimeDomain::EventTime => ctx.timer_service().delete_event_time_timer(until)?,
            TimeDomain::ProcessingTime => {
                ctx.timer_service().delete_processing_time_timer(until)?
            }
        }
        ctx.value(&FLAG_UNTIL).clear()
    }
}

impl KeyedProcessFunction for FraudDetector {
    type Key = u64;
    type In = Transaction;
    type Out = Alert;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&FLAG_UNTIL)
    }

    fn process_element(
        &mut self,
        tx: Transaction,
        ctx: &mut Context<'_, u64>,
        out: &mut Output<'_, Alert>,
    ) -> Result<(), TaskError> {
        if tx.amount <= 0 {
            return ctx.output(&REJECTED, tx);
        }
        let now = match self.time_domain {
            TimeDomain::EventTime => tx.timestamp,
            TimeDomain::ProcessingTime => ctx.current_processing_time(),
        };
        if let Some(until) = ctx.value(&FLAG_UNTIL).get()? {
            if tx.amount > LARGE_AMOUNT && now < until {
                out.collect(Alert {
                    account: tx.account,
                    timestamp: tx.timestamp,
                    amount: tx.amount,
                })?;
            }
            self.clean_up(ctx, until)?;
        }
        if tx.amount < SMALL_AMOUNT {
            let until = now + ONE_MINUTE;
            ctx.value(&FLAG_UNTIL).update(&until)?;
            match self.time_domain {
                TimeDomain::EventTime => ctx.timer_service().register_event_time_timer(until)?,
                TimeDomain::ProcessingTime => {
                    ctx.timer_service().register_processing_time_timer(until)?
                }
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        ctx: &mut Context<'_, u64>,
        _out: &mut Output<'_, Alert>,
    ) -> Result<(), TaskError> {
        ctx.value(&FLAG_UNTIL).clear()
    }
}

/// The alerts a straightforward batch computation finds in `txs` (any order): per account,
/// in event-time order, a large transaction less than a minute after a small one that no
/// other transaction followed in between. Sorted by account and time.
pub fn reference_alerts(txs: &[Transaction]) -> Vec<Alert> {
    let mut sorted: Vec<&Transaction> = txs.iter().filter(|t| t.amount > 0).collect();
    sorted.sort_by_key(|t| (t.account, t.timestamp));
    let mut alerts = Vec::new();
    let mut flag: Option<(u64, i64)> = None;
    for t in sorted {
        if flag.is_some_and(|(a, _)| a != t.account) {
            flag = None;
        }
        if let Some((_, until)) = flag.take() {
            if t.amount > LARGE_AMOUNT && t.timestamp < until {
                alerts.push(Alert {
                    account: t.account,
                    timestamp: t.timestamp,
                    amount: t.amount,
                });
            }
        }
        if t.amount < SMALL_AMOUNT {
            flag = Some((t.account, t.timestamp + ONE_MINUTE));
        }
    }
    alerts
}

/// One output line of an alert: `account,timestamp ms,amount cents`.
pub fn alert_line(a: &Alert) -> String {
    format!("{},{},{}", a.account, a.timestamp, a.amount)
}

/// One output line of a rejected transaction: `id,account,timestamp ms,amount cents`.
pub fn rejected_line(t: &Transaction) -> String {
    format!("{},{},{},{}", t.id, t.account, t.timestamp, t.amount)
}

/// Builds the job from `job.args` (see the crate docs).
///
/// # Errors
/// [`ArgError`] naming the argument that is missing or malformed.
pub fn build(args: &JobArgs) -> Result<JobGraph, ArgError> {
    let output = args
        .get("output")
        .ok_or_else(|| ArgError::new("output", "required: the directory of the alerts"))?
        .clone();
    let rejected = args
        .get("rejectedOutput")
        .cloned()
        .unwrap_or_else(|| format!("{output}-rejected"));
    let rejected = OutputLocation::parse(&rejected).map_err(|e| {
        ArgError::new(
            "rejectedOutput",
            format!("{e} (with a Kafka output, name a directory or s3:// location here)"),
        )
    })?;
    let time_domain = match args.get("timeDomain").map(String::as_str) {
        None | Some("event-time") => TimeDomain::EventTime,
        Some("processing-time") => TimeDomain::ProcessingTime,
        Some(other) => {
            return Err(ArgError::new(
                "timeDomain",
                format!("`{other}` is not `event-time` or `processing-time`"),
            ))
        }
    };
    let max_records_per_second = optional_arg(args, "maxRecordsPerSecond")?;
    let kafka_properties: std::collections::BTreeMap<String, String> = args
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("kafka.")?.to_string(), v.clone())))
        .collect();
    let kafka_err = |e: KafkaConfigError| ArgError::new(&e.field, e.message);
    let alert_encoder: LineEncoder<Alert> = Arc::new(|a: &Alert, out: &mut Vec<u8>| {
        out.extend_from_slice(alert_line(a).as_bytes());
    });
    let rejected_encoder: LineEncoder<Transaction> =
        Arc::new(|t: &Transaction, out: &mut Vec<u8>| {
            out.extend_from_slice(rejected_line(t).as_bytes());
        });

    let job = JobBuilder::new();
    let watermarks = WatermarkStrategy::bounded_out_of_orderness(0, |t: &Transaction| t.timestamp);
    let transactions = match args.get("input") {
        Some(input) => {
            let address = KafkaAddress::parse(input, "input", false).map_err(kafka_err)?;
            let mut config =
                KafkaSourceConfig::new(address.bootstrap_servers, Topics::List(address.topics));
            if let Some(s) = args.get("stoppingOffsets") {
                config.stopping_offsets =
                    parse_stopping_offsets(s, "stoppingOffsets").map_err(kafka_err)?;
            }
            config.properties = kafka_properties.clone();
            config.max_records_per_second = max_records_per_second;
            let source =
                KafkaSource::new(config, format::json::<Transaction>()).map_err(kafka_err)?;
            job.source("transactions", source, watermarks)
        }
        None => {
            let source = TransactionSource {
                seed: optional_arg(args, "seed")?.unwrap_or(42),
                accounts: optional_arg(args, "accounts")?.unwrap_or(100).max(1),
                count: optional_arg(args, "transactions")?.unwrap_or(200_000),
                max_records_per_second,
            };
            job.source("transactions", source, watermarks)
        }
    };
    let alerts = transactions
        .key_by(|t: &Transaction| t.account)
        .process("fraud-detector", FraudDetector { time_domain });
    alerts
        .side_output(&REJECTED)
        .sink("rejected-sink", FileSink::new(rejected, rejected_encoder));
    if KafkaAddress::is_kafka(&output) {
        let address = KafkaAddress::parse(&output, "output", false).map_err(kafka_err)?;
        let [topic] = address.topics.as_slice() else {
            return Err(ArgError::new("output", "name exactly one topic to write"));
        };
        let mut config = KafkaSinkConfig::new(address.bootstrap_servers, topic.as_str());
        config.properties = kafka_properties;
        let serialize: Serializer<Alert> =
            Arc::new(|a: &Alert, key: &mut Vec<u8>, value: &mut Vec<u8>| {
                key.extend_from_slice(a.account.to_string().as_bytes());
                serde_json::to_writer(value, a).expect("invariant: an alert serializes");
            });
        alerts.sink(
            "alerts-sink",
            KafkaSink::new(config, serialize).map_err(kafka_err)?,
        );
    } else {
        let location = OutputLocation::parse(&output).map_err(|e| ArgError::new("output", e))?;
        alerts.sink("alerts-sink", FileSink::new(location, alert_encoder));
    }
    job.set_output(output);
    job.build()
        .map_err(|e| ArgError::new("(job graph)", e.to_string()))
}

/// The built-in jobs plus `fraud-detection`.
pub fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register(
        ENTRY,
        JobEntry {
            description: "alerts on a small transaction followed within a minute by a large one (Flink's fraud-detection walkthrough)",
            build,
        },
    );
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_has_every_kind_of_transaction() {
        let txs: Vec<Transaction> = (0..10_000).map(|n| transaction(7, 100, n)).collect();
        assert_eq!(
            txs,
            (0..10_000)
                .map(|n| transaction(7, 100, n))
                .collect::<Vec<_>>()
        );
        assert!(txs.iter().any(|t| t.amount <= 0));
        assert!(txs.iter().any(|t| t.amount < SMALL_AMOUNT && t.amount > 0));
        assert!(txs.iter().any(|t| t.amount > LARGE_AMOUNT));
        assert!(!reference_alerts(&txs).is_empty());
    }

    #[test]
    fn the_reference_flags_only_a_large_transaction_right_after_a_small_one() {
        let t = |account, secs: i64, amount| Transaction {
            id: 0,
            account,
            timestamp: secs * 1000,
            amount,
        };
        let txs = [
            t(1, 0, 50),
            t(1, 30, 60_000), // alert
            t(2, 0, 50),
            t(2, 61, 60_000), // too late
            t(3, 0, 50),
            t(3, 10, 5_000),  // clears the flag
            t(3, 20, 60_000), // no alert
        ];
        assert_eq!(
            reference_alerts(&txs),
            vec![Alert {
                account: 1,
                timestamp: 30_000,
                amount: 60_000
            }]
        );
    }
}
