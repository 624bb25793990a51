//! `weir coordinator` and `weir worker`: their flags and how they map onto
//! [`crate::cluster`]. Exit codes: 0 the job ended (finished, stopped, cancelled) or the worker
//! was told to exit; 1 the job failed or the worker gave up; 2 invalid flags or manifest.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use tracing::error;

use crate::cluster::{
    run_coordinator, run_worker, CoordinatorOptions, RestartStrategy, WorkerOptions,
};
use crate::jobs::Registry;
use crate::runner::{error_chain, RunEnd};

/// Flags of `weir coordinator`.
#[derive(Debug, Args)]
pub(super) struct CoordinatorArgs {
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
    /// Restore from this savepoint: it starts a new lineage (the job's older checkpoints are
    /// deleted); a restart of that lineage resumes its own latest checkpoint instead.
    /// Overrides job.initialSavepointPath.
    #[arg(long)]
    from_savepoint: Option<String>,
    /// Delete the job's checkpoints and start from the beginning of the input.
    #[arg(long)]
    fresh: bool,
    /// Deployment id (the operator sets it): a coordinator of a new lineage applies --fresh
    /// and --from-savepoint exactly; a restarted one of the same lineage resumes from the
    /// job's latest checkpoint.
    #[arg(long, env = "WEIR_LINEAGE")]
    lineage: Option<String>,
    /// One-time migration of a job deployed before storage roots were per namespace (the
    /// operator sets it): the deployment id whose lineage the legacy root `<storage>/<name>/`
    /// holds. While the job's own root `<storage>/<namespace>/<name>/` has no checkpoint yet,
    /// the legacy root's latest checkpoint of that lineage is restored.
    #[arg(long)]
    migrate_lineage: Option<String>,
    /// File holding the job's admin token (the operator mounts its Secret here): every admin
    /// request but /healthz and /readyz needs `Authorization: Bearer <token>`, and every worker
    /// must present it when it registers. Without it both admit anyone.
    #[arg(long, env = "WEIR_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// After the job ends, keep serving the admin API (FINISHED, STOPPED, CANCELED) until
    /// terminated, so the final savepoint can be read.
    #[arg(long, env = "WEIR_LINGER")]
    linger: bool,
    /// Time between progress lines, e.g. 2s; 0s for none.
    #[arg(long, default_value = "2s")]
    progress_interval: String,
    /// Write the admin URL and control address as JSON to this file once listening.
    #[arg(long)]
    address_file: Option<PathBuf>,
    /// When the coordinator ends, write its attempts (restored snapshot, workers and their
    /// subtasks, what each read to restore, why the attempt ended), restarts, lost workers
    /// and how the job ended as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// Flags of `weir worker`.
#[derive(Debug, Args)]
pub(super) struct WorkerArgs {
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
    /// File holding the job's admin token (the operator mounts its Secret here): presented to
    /// the coordinator and to peers, and required of peers opening data channels to this
    /// worker. It must be the coordinator's.
    #[arg(long, env = "WEIR_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
}

/// The admin token in `path` (`--admin-token-file`).
fn read_token_file(path: &std::path::Path) -> Result<weir_api_types::AdminToken, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--admin-token-file {}: {e}", path.display()))?;
    weir_api_types::AdminToken::parse(&text)
        .map_err(|e| format!("--admin-token-file {}: {e}", path.display()))
}

/// Prints a usage error and returns exit code 2.
fn usage(msg: &str) -> i32 {
    eprintln!("error: {msg}");
    2
}

/// Runs `weir coordinator`.
pub(super) fn coordinator(registry: &Registry, a: CoordinatorArgs) -> i32 {
    let options = (|| {
        if a.workers == 0 {
            return Err("--workers must be at least 1".to_string());
        }
        Ok(CoordinatorOptions {
            bind: a.bind,
            admin_bind: a.admin_bind,
            workers: a.workers,
            heartbeat_timeout: duration_arg("--heartbeat-timeout", &a.heartbeat_timeout)?,
            restart: RestartStrategy {
                initial_backoff: duration_arg("--restart-backoff", &a.restart_backoff)?,
                max_backoff: duration_arg("--restart-max-backoff", &a.restart_max_backoff)?,
                multiplier: 2.0,
                max_restarts: a.restart_attempts,
            },
            from_savepoint: a.from_savepoint.clone(),
            fresh: a.fresh,
            lineage: a.lineage.clone(),
            migrate_lineage: a.migrate_lineage.clone(),
            admin_token: a
                .admin_token_file
                .as_deref()
                .map(read_token_file)
                .transpose()?,
            linger: a.linger,
            progress_interval: duration_arg("--progress-interval", &a.progress_interval)?,
            address_file: a.address_file.clone(),
        })
    })();
    let options = match options {
        Ok(o) => o,
        Err(msg) => return usage(&msg),
    };
    let (text, loaded, graph) = match load_text(registry, &a.manifest) {
        Ok(x) => x,
        Err(msg) => return usage(&msg),
    };
    let (result, summary) = run_coordinator(&loaded, &text, graph, &options);
    if let Err(msg) = super::write_summary_json(a.summary_json.as_deref(), &summary) {
        eprintln!("error: {msg}");
        return 1;
    }
    match result {
        Ok(end) => {
            match end {
                RunEnd::Finished => println!("job {} finished", loaded.name),
                RunEnd::Stopped { savepoint } => {
                    println!("job {} stopped with savepoint {savepoint}", loaded.name)
                }
                RunEnd::Cancelled => println!("job {} cancelled", loaded.name),
            }
            0
        }
        Err(e) => {
            error!("job failed: {}", error_chain(&e));
            1
        }
    }
}

/// Runs `weir worker`.
pub(super) fn worker(registry: &Registry, a: WorkerArgs) -> i32 {
    let options = (|| {
        Ok::<_, String>(WorkerOptions {
            coordinator: a.coordinator.clone(),
            data_bind: a.data_bind,
            local_state_dir: a.local_state_dir.clone(),
            connect_attempts: a.connect_attempts,
            connect_backoff: duration_arg("--connect-backoff", &a.connect_backoff)?,
            heartbeat_interval: duration_arg("--heartbeat-interval", &a.heartbeat_interval)?,
            token: a
                .admin_token_file
                .as_deref()
                .map(read_token_file)
                .transpose()?,
        })
    })();
    let options = match options {
        Ok(o) => o,
        Err(msg) => return usage(&msg),
    };
    match run_worker(registry, &options) {
        Ok(()) => 0,
        Err(e) => {
            error!("worker failed: {}", error_chain(&e));
            eprintln!("error: {}", error_chain(&e));
            1
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
