//! The `weir` command line: `run`, `coordinator`, `worker`, `validate`, `jobs`,
//! `savepoint create|inspect|list`, `checkpoints gc`.
//!
//! Exit codes: 0 success; 1 the job failed (run again to resume from the latest checkpoint);
//! 2 the manifest or its arguments are invalid (nothing was run or written).

mod savepoint;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tracing::error;

use crate::jobs::Registry;
use crate::runner::{error_chain, run_job, RunOptions, RunSummary};

/// Weir: stateful stream processing with exactly-once checkpoints.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a StreamJob manifest in this process; resumes from the job's latest checkpoint.
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
        /// Restore from this savepoint directory (file:// or s3:// URI) instead of the
        /// latest checkpoint.
        #[arg(long)]
        from_savepoint: Option<String>,
        /// Port of the admin API on 127.0.0.1 (default: any free port, published next to
        /// the local state directory for `weir savepoint create`).
        #[arg(long, default_value_t = 0)]
        admin_port: u16,
    },
    /// Run the coordinator of a distributed job: waits for workers, deploys the subtasks,
    /// coordinates checkpoints, serves the admin API, restarts the job after failures.
    Coordinator {
        /// The StreamJob manifest (YAML).
        manifest: PathBuf,
        /// Address workers connect to.
        #[arg(long, env = "WEIR_COORDINATOR_BIND", default_value = "0.0.0.0:6123")]
        bind: SocketAddr,
        /// Address of the admin API.
        #[arg(long, env = "WEIR_ADMIN_BIND", default_value = "0.0.0.0:8081")]
        admin_bind: SocketAddr,
        /// Workers to wait for; subtask i runs on worker i % workers.
        #[arg(long, env = "WEIR_WORKERS", default_value_t = 1)]
        workers: u32,
        /// A worker silent for this long is lost, e.g. 10s.
        #[arg(long, default_value = "10s")]
        heartbeat_timeout: String,
        /// Restarts after failures before the job is FAILED.
        #[arg(long, default_value_t = 10)]
        restart_attempts: u32,
        /// Delay before the first restart; doubles with each restart.
        #[arg(long, default_value = "1s")]
        restart_backoff: String,
        /// Largest delay between restarts.
        #[arg(long, default_value = "60s")]
        restart_max_backoff: String,
        /// Restore from this savepoint unless the job has a newer checkpoint (overrides
        /// job.initialSavepointPath).
        #[arg(long)]
        from_savepoint: Option<String>,
        /// Delete the job's checkpoints and start from the beginning of the input.
        #[arg(long)]
        fresh: bool,
        /// Time between progress lines, e.g. 2s; 0s for none.
        #[arg(long, default_value = "2s")]
        progress_interval: String,
        /// Write the admin URL and control address as JSON to this file once listening.
        #[arg(long)]
        address_file: Option<PathBuf>,
    },
    /// Run a worker: registers with the coordinator and runs the subtasks it is given.
    Worker {
        /// The coordinator's address, host:port.
        #[arg(long, env = "WEIR_COORDINATOR")]
        coordinator: String,
        /// Address of this worker's data server (peers connect to it).
        #[arg(long, env = "WEIR_DATA_BIND", default_value = "0.0.0.0:0")]
        data_bind: SocketAddr,
        /// Directory for RocksDB working files (default: the system temp directory).
        #[arg(long)]
        local_state_dir: Option<PathBuf>,
        /// Connection attempts before giving up on the coordinator.
        #[arg(long, env = "WEIR_CONNECT_ATTEMPTS", default_value_t = 30)]
        connect_attempts: u32,
        /// Delay before the second attempt; doubles up to 10s.
        #[arg(long, default_value = "500ms")]
        connect_backoff: String,
        /// Time between heartbeats.
        #[arg(long, default_value = "1s")]
        heartbeat_interval: String,
    },
    /// Savepoints: take one of a running job, inspect one, list a directory of them.
    #[command(subcommand)]
    Savepoint(savepoint::SavepointCommand),
    /// Checkpoint storage maintenance.
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
    /// Check a manifest and its job arguments without running anything.
    Validate {
        /// The StreamJob manifest (YAML).
        manifest: PathBuf,
    },
    /// List the jobs this binary can run (`spec.job.entry`).
    Jobs,
}

#[derive(Debug, Subcommand)]
enum CheckpointsCommand {
    /// List the objects under a job's root (`<storage>/<job>`) that no complete checkpoint or
    /// savepoint references, with their total size. Nothing is deleted: running jobs delete
    /// their own garbage.
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
        Command::Coordinator {
            manifest,
            bind,
            admin_bind,
            workers,
            heartbeat_timeout,
            restart_attempts,
            restart_backoff,
            restart_max_backoff,
            from_savepoint,
            fresh,
            progress_interval,
            address_file,
        } => {
            let durations = (|| {
                Ok::<_, String>((
                    duration_arg("--heartbeat-timeout", &heartbeat_timeout)?,
                    duration_arg("--restart-backoff", &restart_backoff)?,
                    duration_arg("--restart-max-backoff", &restart_max_backoff)?,
                    duration_arg("--progress-interval", &progress_interval)?,
                ))
            })();
            let (heartbeat_timeout, initial_backoff, max_backoff, progress_interval) =
                match durations {
                    Ok(d) => d,
                    Err(msg) => {
                        eprintln!("error: {msg}");
                        return 2;
                    }
                };
            if workers == 0 {
                eprintln!("error: --workers must be at least 1");
                return 2;
            }
            let (text, loaded, graph) = match load_text(&registry, &manifest) {
                Ok(x) => x,
                Err(msg) => {
                    eprintln!("error: {msg}");
                    return 2;
                }
            };
            let options = crate::cluster::CoordinatorOptions {
                bind,
                admin_bind,
                workers,
                heartbeat_timeout,
                restart: crate::cluster::RestartStrategy {
                    initial_backoff,
                    max_backoff,
                    multiplier: 2.0,
                    max_restarts: restart_attempts,
                },
                from_savepoint,
                fresh,
                progress_interval,
                address_file,
            };
            match crate::cluster::run_coordinator(&loaded, &text, graph, &options) {
                Ok(end) => {
                    match end {
                        crate::runner::RunEnd::Finished => println!("job {} finished", loaded.name),
                        crate::runner::RunEnd::Stopped { savepoint } => {
                            println!("job {} stopped with savepoint {savepoint}", loaded.name)
                        }
                        crate::runner::RunEnd::Cancelled => {
                            println!("job {} cancelled", loaded.name)
                        }
                    }
                    0
                }
                Err(e) => {
                    error!("job failed: {}", error_chain(&e));
                    1
                }
            }
        }
        Command::Worker {
            coordinator,
            data_bind,
            local_state_dir,
            connect_attempts,
            connect_backoff,
            heartbeat_interval,
        } => {
            let durations = (|| {
                Ok::<_, String>((
                    duration_arg("--connect-backoff", &connect_backoff)?,
                    duration_arg("--heartbeat-interval", &heartbeat_interval)?,
                ))
            })();
            let (connect_backoff, heartbeat_interval) = match durations {
                Ok(d) => d,
                Err(msg) => {
                    eprintln!("error: {msg}");
                    return 2;
                }
            };
            let options = crate::cluster::WorkerOptions {
                coordinator,
                data_bind,
                local_state_dir,
                connect_attempts,
                connect_backoff,
                heartbeat_interval,
            };
            match crate::cluster::run_worker(&registry, &options) {
                Ok(()) => 0,
                Err(e) => {
                    error!("worker failed: {}", error_chain(&e));
                    eprintln!("error: {}", error_chain(&e));
                    1
                }
            }
        }
        Command::Savepoint(cmd) => savepoint::run(cmd),
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
                    if let Some(path) = summary_json {
                        let json = serde_json::to_string_pretty(&summary)
                            .expect("invariant: summary serializes");
                        if let Err(e) = std::fs::write(&path, json) {
                            eprintln!("error: write {}: {e}", path.display());
                            return 1;
                        }
                    }
                    0
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

fn duration_arg(flag: &str, value: &str) -> Result<std::time::Duration, String> {
    weir_crds::parse_duration(value).map_err(|e| format!("{flag}: {e}"))
}

/// Like [`load`], also returning the manifest's text.
#[allow(clippy::type_complexity)]
fn load_text(
    registry: &Registry,
    path: &Path,
) -> Result<(String, weir_crds::LoadedManifest, crate::api::JobGraph), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (loaded, graph) = registry
        .load(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((text, loaded, graph))
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
        s.restored_from
            .map(|c| format!("checkpoint {c}"))
            .unwrap_or_else(|| "nothing (fresh start)".into())
    );
    println!("  records in:     {}", s.records_in);
    println!("  records out:    {}", s.records_out);
    println!("  late records:   {}", s.late_records);
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
