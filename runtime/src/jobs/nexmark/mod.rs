//! `nexmark`: the Nexmark benchmark's queries over its generated auction events, written with
//! the public job API only ([`queries`]), as a user would write them.
//!
//! ```text
//! Nexmark generator (source, 64 splits) -> the query's operators -> exactly-once file sink
//! ```
//!
//! Arguments (`job.args`, all strings):
//!
//! | arg | meaning | default |
//! | --- | --- | --- |
//! | `query` | one of [`queries::QUERIES`] (`q0`, `q1`, ...) | required |
//! | `events` | number of events to generate | `1000000` |
//! | `eventsPerSecond` | event-time rate: event `n` happens `n / rate` s after the first | `10000` |
//! | `seed` | seed of the generator | `0` |
//! | `baseTime` | event time of the first event, ms since the epoch | `1577836800000` (2020-01-01) |
//! | `output` | output directory, or `s3://bucket/prefix` (owned by the sink) | required |
//! | `maxEventsPerSecond` | throttle per source subtask (demos, tests) | unbounded |
//! | `sideInput` | q13's side input, a CSV file of `key,value` lines | the one `weir nexmark generate` writes |
//!
//! `weir nexmark generate` writes the same events as JSON files for other systems.

pub mod enrichment;
pub mod generator;
pub mod lookup_join;
pub mod model;
pub mod queries;
pub mod ranking;
pub mod reports;
pub mod results;
pub mod source;

use std::path::Path;

use super::{optional_arg, ArgError, JobArgs};
use crate::api::JobGraph;
use crate::connectors::file_sink::OutputLocation;
use generator::GeneratorConfig;
use model::Event;

/// The registry name of this job.
pub const ENTRY: &str = "nexmark";
/// Default event time of the first event: 2020-01-01T00:00:00Z.
pub const DEFAULT_BASE_TIME_MS: i64 = 1_577_836_800_000;

/// The generator settings of `job.args` (`events`, `eventsPerSecond`, `seed`, `baseTime`).
///
/// # Errors
/// [`ArgError`] naming an argument that does not parse or a rate of 0.
pub fn generator_config(args: &JobArgs) -> Result<GeneratorConfig, ArgError> {
    let events_per_second = optional_arg::<u64>(args, "eventsPerSecond")?.unwrap_or(10_000);
    if events_per_second == 0 {
        return Err(ArgError::new(
            "eventsPerSecond",
            "must be at least 1 event per second",
        ));
    }
    Ok(GeneratorConfig {
        seed: optional_arg(args, "seed")?.unwrap_or(0),
        events_per_second,
        base_time_ms: optional_arg(args, "baseTime")?.unwrap_or(DEFAULT_BASE_TIME_MS),
        events: optional_arg(args, "events")?.unwrap_or(1_000_000),
    })
}

/// Builds the job from `job.args`.
///
/// # Errors
/// [`ArgError`] for a missing or unknown `query`, a missing `output`, or a generator argument
/// that does not parse.
pub fn build(args: &JobArgs) -> Result<JobGraph, ArgError> {
    let config = generator_config(args)?;
    let query = args.get("query").ok_or_else(|| {
        ArgError::new(
            "query",
            format!("required; one of {}", queries::QUERIES.join(", ")),
        )
    })?;
    let output = args
        .get("output")
        .ok_or_else(|| ArgError::new("output", "required: the output directory"))?;
    let location = OutputLocation::parse(output).map_err(|e| ArgError::new("output", e))?;
    let rate = optional_arg::<u64>(args, "maxEventsPerSecond")?;
    let side_input = match args.get("sideInput") {
        Some(path) if query == "q13" => Some(std::sync::Arc::new(
            enrichment::read_side_input(Path::new(path))
                .map_err(|e| ArgError::new("sideInput", e))?,
        )),
        _ => None,
    };
    queries::build(query, config, rate, &location, side_input)
        .map_err(|e| match e {
            queries::QueryError::Unknown(q) => ArgError::new(
                "query",
                format!(
                    "unknown query `{q}`; one of {}",
                    queries::QUERIES.join(", ")
                ),
            ),
            queries::QueryError::Graph(e) => ArgError::new("query", e.to_string()),
        })
        .map(|g| g.with_output(output.clone()))
}

/// Writes the events of `config` to `dir` as JSON lines, one file per kind (`person.json`,
/// `auction.json`, `bid.json`), with the field names of the Nexmark suite and timestamps as
/// SQL timestamps; all of them in event order in `events.json`, one object per line in the
/// shape of the suite's generator table (`event_type` 0 person, 1 auction, 2 bid, and
/// `person`, `auction`, `bid`, one of them set); and q13's side input as `side_input.csv`
/// (`key,value` lines). Returns the number of persons, auctions and bids written.
///
/// # Errors
/// I/O errors creating or writing the files.
pub fn write_events(config: &GeneratorConfig, dir: &Path) -> std::io::Result<(u64, u64, u64)> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let open = |name: &str| -> std::io::Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(dir.join(name))?,
        ))
    };
    let (mut persons, mut auctions, mut bids, mut all) = (
        open("person.json")?,
        open("auction.json")?,
        open("bid.json")?,
        open("events.json")?,
    );
    let mut counts = (0, 0, 0);
    for n in 0..config.events {
        let (kind, json, file) = match config.event(n) {
            Event::Person(p) => {
                counts.0 += 1;
                (0, p.to_json(), &mut persons)
            }
            Event::Auction(a) => {
                counts.1 += 1;
                (1, a.to_json(), &mut auctions)
            }
            Event::Bid(b) => {
                counts.2 += 1;
                (2, b.to_json(), &mut bids)
            }
        };
        writeln!(file, "{json}")?;
        let slot = |k: u8| if k == kind { json.as_str() } else { "null" };
        writeln!(
            all,
            r#"{{"event_type":{kind},"person":{},"auction":{},"bid":{}}}"#,
            slot(0),
            slot(1),
            slot(2)
        )?;
    }
    for file in [&mut persons, &mut auctions, &mut bids, &mut all] {
        file.flush()?;
    }
    let mut side = open("side_input.csv")?;
    for key in 0..enrichment::SIDE_INPUT_ROWS {
        writeln!(side, "{key},{}", enrichment::side_input_value(key))?;
    }
    side.flush()?;
    Ok(counts)
}
