//! `weir nexmark generate`: the Nexmark generator's events as files, so that another system
//! (Flink, for the side-by-side benchmark) reads exactly the events a `nexmark` job generates.

use std::path::PathBuf;

use clap::Subcommand;

use crate::jobs::nexmark::generator::GeneratorConfig;
use crate::jobs::nexmark::{write_events, DEFAULT_BASE_TIME_MS};

/// Nexmark commands.
#[derive(Debug, Subcommand)]
pub enum NexmarkCommand {
    /// Write the events a `nexmark` job with the same arguments generates as JSON lines, one
    /// file per kind: `person.json`, `auction.json`, `bid.json` (the Nexmark suite's field
    /// names; `dateTime` and `expires` as `YYYY-MM-DD HH:MM:SS.mmm`, UTC); all of them in order
    /// in `events.json` (the suite's generator-table shape: `event_type` and one of `person`,
    /// `auction`, `bid`); and q13's side input, `side_input.csv` (`key,value`).
    #[command(after_help = "Examples:
  weir nexmark generate --events 1000000 --out /tmp/nexmark
  weir nexmark generate --events 10000000 --events-per-second 10000000 --seed 7 --out /tmp/nexmark")]
    Generate {
        /// Number of events (persons, auctions and bids together).
        #[arg(long)]
        events: u64,
        /// Output directory (created if missing; the five files are replaced).
        #[arg(long)]
        out: PathBuf,
        /// Event-time rate (the job's `eventsPerSecond`).
        #[arg(long, default_value_t = 10_000)]
        events_per_second: u64,
        /// Generator seed (the job's `seed`).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Event time of the first event, ms since the epoch (the job's `baseTime`).
        #[arg(long, default_value_t = DEFAULT_BASE_TIME_MS)]
        base_time: i64,
    },
}

/// Runs a Nexmark command; returns the exit code (0, or 1 with the error on stderr).
pub fn run(cmd: NexmarkCommand) -> i32 {
    let NexmarkCommand::Generate {
        events,
        out,
        events_per_second,
        seed,
        base_time,
    } = cmd;
    if events_per_second == 0 {
        eprintln!("error: --events-per-second must be at least 1");
        return 1;
    }
    let config = GeneratorConfig {
        seed,
        events_per_second,
        base_time_ms: base_time,
        events,
    };
    match write_events(&config, &out) {
        Ok((persons, auctions, bids)) => {
            println!(
                "{}: {persons} persons, {auctions} auctions, {bids} bids",
                out.display()
            );
            0
        }
        Err(e) => {
            eprintln!("error: writing {}: {e}", out.display());
            1
        }
    }
}
