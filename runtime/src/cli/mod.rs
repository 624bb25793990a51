//! The `weir` command line: `run`, `coordinator`, `worker`, `validate`, `check`, `jobs`,
//! `savepoint create|inspect|list`, `checkpoints gc`.
//!
//! Exit codes: 0 success; 1 the job failed (run again to resume from the latest checkpoint);
//! 2 the manifest or its arguments are invalid (nothing was run or written).

mod check;
mod cluster;
mod nexmark;
mod savepoint;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use tracing::error;

use crate::jobs::Registry;
use crate::runner::{error_chain, run_job, RunOptions, RunSummary};

/// Weir: stateful stream processing with exactly-once checkpoints.
#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about,
    after_help = "Examples:
  weir run examples/retail-revenue.yaml          # run a job here; run again to resume
  weir savepoint create examples/retail-revenue.yaml
  weir coordinator job.yaml --workers 3          # the same job over worker processes
  weir jobs                                      # the jobs this binary can run

Each command's --help gives its own examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a StreamJob manifest in this process; resumes from the job's latest checkpoint.
    #[command(after_help = "Examples:
  weir run examples/retail-revenue.yaml            # resumes from the latest checkpoint
  weir run examples/retail-revenue.yaml --fresh    # discards the checkpoints, starts over
  weir run job.yaml --from-savepoint file:///tmp/weir/savepoints/savepoint-4-1764680000000
  weir run job.yaml --summary-json /tmp/summary.json --progress-interval 0s")]
    Run {
        /// The StreamJob manifest (YAML).
        manifest: PathBuf,
        /// Delete the job's checkpoints and start from the beginning of the input.
        #[arg(long)]
        fresh: bool,
        /// Directory for RocksDB working files (default: the system temp directory).
        #[arg(long)]
        local_state_dir: Option<PathBuf>,
        /// Time between progress lines, e.g. 2s; 0s for none.
        #[arg(long, default_value = "2s")]
        progress_interval: String,
        /// Also write the run summary as JSON to this file.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Restore from this savepoint directory (file:// or s3:// URI): it starts a new
        /// lineage (the job's older checkpoints are deleted); the same command again after a
        /// crash resumes that lineage's latest checkpoint.
        #[arg(long)]
        from_savepoint: Option<String>,
        /// Port of the admin API on 127.0.0.1 (default: any free port, published next to
        /// the local state directory for `weir savepoint create`).
        #[arg(long, default_value_t = 0)]
        admin_port: u16,
    },
    /// Run the coordinator of a distributed job: waits for workers, deploys the subtasks,
    /// coordinates checkpoints, serves the admin API, restarts the job after failures.
    #[command(after_help = "Examples:
  weir coordinator job.yaml --workers 3
  weir coordinator job.yaml --workers 2 --bind 0.0.0.0:6123 --admin-bind 127.0.0.1:8081")]
    Coordinator(cluster::CoordinatorArgs),
    /// Run a worker: registers with the coordinator and runs the subtasks it is given.
    #[command(after_help = "Examples:
  weir worker --coordinator 127.0.0.1:6123
  weir worker --coordinator weir-coordinator:6123 --local-state-dir /var/lib/weir")]
    Worker(cluster::WorkerArgs),
    /// Savepoints: take one of a running job, inspect one, list a directory of them.
    #[command(
        subcommand,
        after_help = "Examples:
  weir savepoint create examples/retail-revenue.yaml
  weir savepoint list file:///tmp/weir/checkpoints/retail-revenue/savepoints"
    )]
    Savepoint(savepoint::SavepointCommand),
    /// Checkpoint storage maintenance.
    #[command(
        subcommand,
        after_help = "Examples:
  weir checkpoints gc --dry-run file:///tmp/weir/checkpoints/retail-revenue"
    )]
    Checkpoints(CheckpointsCommand),
    /// Check a manifest and its job arguments without running anything.
    #[command(after_help = "Examples:
  weir validate examples/retail-revenue.yaml")]
    Validate {
        /// The StreamJob manifest (YAML).
        manifest: PathBuf,
    },
    /// Check that a manifest's job graph can restore the job's latest checkpoint (or a given
    /// snapshot): operator uids, keyed state kinds, max parallelism. Prints a JSON report;
    /// exit 0 compatible, 3 incompatible, 2 invalid manifest, 1 storage unreadable.
    #[command(after_help = "Examples:
  weir check new-version.yaml              # against the job's latest complete checkpoint
  weir check new-version.yaml --snapshot file:///tmp/weir/savepoints/savepoint-4-1764680000000")]
    Check(check::CheckArgs),
    /// List the jobs this binary can run (`spec.job.entry`).
    #[command(after_help = "Examples:
  weir jobs")]
    Jobs,
    /// The Nexmark benchmark's events as files (the `nexmark` job generates them itself).
    #[command(
        subcommand,
        after_help = "Examples:
  weir nexmark generate --events 1000000 --out /tmp/nexmark"
    )]
    Nexmark(nexmark::NexmarkCommand),
}

#[derive(Debug, Subcommand)]
enum CheckpointsCommand {
    /// List the objects under a job's root (`<storage>/<job>`) that no complete checkpoint or
    /// savepoint references, with their total size. Nothing is deleted: running jobs delete
    /// their own garbage.
    #[command(after_help = "Examples:
  weir checkpoints gc --dry-run file:///tmp/weir/checkpoints/retail-revenue
  weir checkpoints gc --dry-run s3://my-bucket/weir/my-job --manifest job.yaml")]
    Gc {
        /// Only report (required: this command never deletes).
        #[arg(long, required = true)]
        dry_run: bool,
        /// The job's root URI, e.g. s3://bucket/prefix/my-job or file:///var/weir/my-job.
        uri: String,
        /// Take S3 settings (endpoint, region, addressing) from this manifest.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
}

fn checkpoints_gc(uri: &str, manifest: Option<&Path>) -> Result<(), String> {
    let s3 = match manifest {
        Some(m) => {
            let text = std::fs::read_to_string(m)
                .map_err(|e| format!("cannot read {}: {e}", m.display()))?;
            weir_crds::load_manifest(&text)
                .map_err(|e| format!("{}: {e}", m.display()))?
                .spec
                .spec
                .checkpointing
                .s3
        }
        None => None,
    };
    let location = weir_crds::StorageLocation::parse_with(uri, s3.as_ref())?;
    let storage = crate::runner::open_storage(&location).map_err(|e| error_chain(&e))?;
    let orphans = crate::checkpoint::gc::scan_job(storage.as_ref()).map_err(|e| error_chain(&e))?;
    let total: u64 = orphans.iter().map(|o| o.size).sum();
    for o in &orphans {
        println!("{}\t{} bytes\t{}", storage.uri(&o.path), o.size, o.reason);
    }
    println!(
        "{} orphaned objects, {total} bytes (dry run: nothing deleted)",
        orphans.len()
    );
    Ok(())
}

/// Runs the CLI with `registry`'s jobs and returns the process exit code.
pub fn main(registry: Registry) -> i32 {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Coordinator(args) => cluster::coordinator(&registry, args),
        Command::Worker(args) => cluster::worker(&registry, args),
        Command::Savepoint(cmd) => savepoint::run(cmd),
        Command::Nexmark(cmd) => nexmark::run(cmd),
        Command::Check(args) => check::run(&registry, args),
        Command::Checkpoints(CheckpointsCommand::Gc { uri, manifest, .. }) => {
            match checkpoints_gc(&uri, manifest.as_deref()) {
                Ok(()) => 0,
                Err(msg) => {
                    eprintln!("error: {msg}");
                    1
                }
            }
        }
        Command::Jobs => {
            for (name, entry) in registry.list() {
                println!("{name}\t{}", entry.description);
            }
            0
        }
        Command::Validate { manifest } => match load(&registry, &manifest) {
            Ok(_) => {
                println!("{}: valid", manifest.display());
                0
            }
            Err(msg) => {
                eprintln!("error: {msg}");
                2
            }
        },
        Command::Run {
            manifest,
            fresh,
            local_state_dir,
            progress_interval,
            summary_json,
            from_savepoint,
            admin_port,
        } => {
            let progress_interval = match weir_crds::parse_duration(&progress_interval) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: --progress-interval: {e}");
                    return 2;
                }
            };
            let (loaded, graph) = match load(&registry, &manifest) {
                Ok(x) => x,
                Err(msg) => {
                    eprintln!("error: {msg}");
                    return 2;
                }
            };
            let options = RunOptions {
                fresh,
                local_state_dir,
                progress_interval,
                from_savepoint,
                admin_port,
            };
            match run_job(&loaded, graph, &options) {
                Ok(summary) => {
                    print_summary(&summary);
                    match write_summary_json(summary_json.as_deref(), &summary) {
                        Ok(()) => 0,
                        Err(msg) => {
                            eprintln!("error: {msg}");
                            1
                        }
                    }
                }
                Err(e) => {
                    error!("job failed: {}", error_chain(&e));
                    eprintln!("the job stopped; run the same command again to resume from its latest checkpoint");
                    1
                }
            }
        }
    }
}

/// Reads, parses and validates a manifest and builds its job graph.
fn load(
    registry: &Registry,
    path: &Path,
) -> Result<(weir_crds::LoadedManifest, crate::api::JobGraph), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    registry
        .load(&text)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `summary` as pretty JSON to `path` when one was given (`--summary-json`).
///
/// # Errors
/// A message naming the file when it cannot be written.
fn write_summary_json(path: Option<&Path>, summary: &impl serde::Serialize) -> Result<(), String> {
    let Some(path) = path else {
        return Ok(());
    };
    let json = serde_json::to_string_pretty(summary).expect("invariant: summary serializes");
    std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))
}

fn print_summary(s: &RunSummary) {
    match &s.end {
        crate::runner::RunEnd::Finished => println!("job {} finished", s.job),
        crate::runner::RunEnd::Stopped { savepoint } => {
            println!("job {} stopped with savepoint {savepoint}", s.job)
        }
        crate::runner::RunEnd::Cancelled => println!("job {} cancelled", s.job),
    }
    println!(
        "  restored from:  {}",
        match (s.restored_from, &s.restored_location) {
            (Some(id), Some(location)) => format!("checkpoint {id} ({location})"),
            _ => "nothing (fresh start)".into(),
        }
    );
    println!("  records in:     {}", s.records_in);
    println!("  records out:    {}", s.records_out);
    println!("  late records:   {}", s.late_records);
    if s.invalid_records > 0 {
        println!("  invalid records: {}", s.invalid_records);
    }
    println!(
        "  checkpoints:    {} completed, {} failed; mean {:.0} ms, max {:.0} ms, largest {} bytes",
        s.checkpoints_completed,
        s.checkpoints_failed,
        s.checkpoint_duration_mean_ms,
        s.checkpoint_duration_max_ms,
        s.checkpoint_size_max_bytes
    );
    println!(
        "  last checkpoint: {}",
        s.last_checkpoint_location.as_deref().unwrap_or("none")
    );
    println!(
        "  storage:        {} requests, {} bytes written, {} bytes read; last checkpoint {} requests, {} bytes written",
        s.storage.requests,
        s.storage.bytes_written,
        s.storage.bytes_read,
        s.last_checkpoint_storage.requests,
        s.last_checkpoint_storage.bytes_written
    );
    println!(
        "  throughput:     {:.0} records/s over {:.2} s; peak memory {} MiB",
        s.records_per_second,
        s.elapsed_seconds,
        s.peak_rss_bytes / (1 << 20)
    );
    if let Some(out) = &s.output {
        println!("  output:         {out}");
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// Walks the command tree: every command's `--help` ends with examples, and each example
    /// parses (these very arguments) as an invocation of that command.
    fn check_examples(cmd: &clap::Command, path: &[String], checked: &mut usize) {
        let help = cmd
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let examples: Vec<&str> = help
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("weir "))
            .collect();
        let name = path.join(" ");
        assert!(!examples.is_empty(), "`{name} --help` gives no example");
        for example in examples {
            let words: Vec<&str> = example
                .split(" # ")
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!("the example `{example}` of `{name} --help` does not parse: {e}");
            }
            assert_eq!(
                words[..path.len()],
                path.iter().map(String::as_str).collect::<Vec<_>>()[..],
                "the example `{example}` is not an invocation of `{name}`"
            );
            *checked += 1;
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut sub_path = path.to_vec();
            sub_path.push(sub.get_name().to_string());
            check_examples(sub, &sub_path, checked);
        }
    }

    #[test]
    fn every_command_help_gives_examples_that_parse() {
        let mut checked = 0;
        check_examples(&Cli::command(), &["weir".to_string()], &mut checked);
        // 16 commands (weir, run, coordinator, worker, savepoint and its 4, checkpoints, gc,
        // validate, check, jobs, nexmark and its generate), each with at least one example.
        assert!(checked >= 17, "only {checked} examples checked");
    }
}
