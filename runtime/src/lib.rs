//! Weir's streaming runtime: the job API ([`api`]), operators, keyed state with heap and
//! RocksDB backends ([`state`]), aligned-barrier checkpoints ([`checkpoint`]) in checkpoint
//! storage ([`storage`]), connectors, the registry of named jobs ([`jobs`]), the local runner
//! behind `weir run` ([`runner`]), distributed execution behind `weir coordinator` and
//! `weir worker` ([`cluster`]) with its credit-based data plane ([`net`]), the admin API
//! ([`admin`]) and the command line ([`cli`]).
//!
//! A user image registers its own jobs and reuses the CLI:
//!
//! ```no_run
//! let mut registry = weir_runtime::jobs::Registry::builtin();
//! // registry.register("my-job", weir_runtime::jobs::JobEntry { .. });
//! std::process::exit(weir_runtime::cli::main(registry));
//! ```

pub mod admin;
pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod connectors;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod operators;
pub mod runner;
pub mod state;
pub mod storage;
pub(crate) mod task;
