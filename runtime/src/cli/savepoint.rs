//! `weir savepoint create | inspect | list | dispose`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use weir_crds::{S3Spec, StorageLocation};

use crate::admin::{
    discovery_file, token_file, AdminToken, SavepointState, SavepointStatus, TriggerResponse,
};
use crate::checkpoint::{load_snapshot, CheckpointMetadata};
use crate::runner::{error_chain, load_savepoint, local_dir_path, open_storage};
use crate::storage::paths::{join, JobPaths, METADATA};

/// Savepoint commands.
#[derive(Debug, Subcommand)]
pub enum SavepointCommand {
    /// Take a savepoint of the job a `weir run <manifest>` on this machine is running and
    /// print its location.
    #[command(after_help = "Examples:
  weir savepoint create examples/retail-revenue.yaml
  weir savepoint create job.yaml --dir s3://my-bucket/savepoints --timeout 2m")]
    Create {
        /// The manifest the job runs.
        manifest: PathBuf,
        /// Directory URI for the savepoint (default: `<storage>/<job>/savepoints/`).
        #[arg(long)]
        dir: Option<String>,
        /// The `--local-state-dir` the run uses, if it set one.
        #[arg(long)]
        local_state_dir: Option<PathBuf>,
        /// Give up after this long, e.g. 10m.
        #[arg(long, default_value = "10m")]
        timeout: String,
    },
    /// Describe a savepoint (or checkpoint): operators by uid, key-group ranges, state sizes,
    /// creation time, format version.
    #[command(after_help = "Examples:
  weir savepoint inspect file:///tmp/weir/savepoints/savepoint-4-1764680000000
  weir savepoint inspect s3://my-bucket/savepoints/savepoint-4-1764680000000 --manifest job.yaml --json")]
    Inspect {
        /// The savepoint directory URI.
        uri: String,
        /// Take S3 settings (endpoint, region, addressing) from this manifest.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Print the `_metadata` JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// List the savepoints in a directory (default layout: `<storage>/<job>/savepoints`).
    #[command(after_help = "Examples:
  weir savepoint list file:///tmp/weir/checkpoints/retail-revenue/savepoints")]
    List {
        /// The directory URI.
        uri: String,
        /// Take S3 settings from this manifest.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Delete a savepoint's files (refused unless the directory holds a savepoint's
    /// `_metadata`; a savepoint already gone is not an error).
    #[command(after_help = "Examples:
  weir savepoint dispose file:///tmp/weir/savepoints/savepoint-4-1764680000000")]
    Dispose {
        /// The savepoint directory URI.
        uri: String,
        /// Take S3 settings from this manifest.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
}

/// Runs a savepoint command; returns the exit code.
pub fn run(cmd: SavepointCommand) -> i32 {
    let result = match cmd {
        SavepointCommand::Create {
            manifest,
            dir,
            local_state_dir,
            timeout,
        } => create(&manifest, dir, local_state_dir.as_deref(), &timeout),
        SavepointCommand::Inspect {
            uri,
            manifest,
            json,
        } => s3_settings(manifest.as_deref()).and_then(|s3| inspect(&uri, s3.as_ref(), json)),
        SavepointCommand::List { uri, manifest } => {
            s3_settings(manifest.as_deref()).and_then(|s3| list(&uri, s3.as_ref()))
        }
        SavepointCommand::Dispose { uri, manifest } => {
            s3_settings(manifest.as_deref()).and_then(|s3| {
                crate::runner::dispose_savepoint(&uri, s3.as_ref())
                    .map(|()| println!("disposed {uri}"))
                    .map_err(|e| error_chain(&e))
            })
        }
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("error: {msg}");
            1
        }
    }
}

fn read_manifest(path: &Path) -> Result<weir_crds::LoadedManifest, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    weir_crds::load_manifest(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn s3_settings(manifest: Option<&Path>) -> Result<Option<S3Spec>, String> {
    Ok(match manifest {
        Some(m) => read_manifest(m)?.spec.spec.checkpointing.s3,
        None => None,
    })
}

fn create(
    manifest: &Path,
    dir: Option<String>,
    local_state_dir: Option<&Path>,
    timeout: &str,
) -> Result<(), String> {
    let timeout = weir_crds::parse_duration(timeout).map_err(|e| format!("--timeout: {e}"))?;
    let m = read_manifest(manifest)?;
    let storage = open_storage(&m.spec.checkpointing.storage).map_err(|e| error_chain(&e))?;
    let job_root = storage.uri(&JobPaths::of_job(&m.name, m.namespace.as_deref()).job_root());
    let local_dir = local_dir_path(local_state_dir, &m.name, &job_root);
    let discovery = discovery_file(&local_dir);
    let url = std::fs::read_to_string(&discovery).map_err(|_| {
        format!(
            "job {} is not running here (no admin API published at {})",
            m.name,
            discovery.display()
        )
    })?;
    let url = url.trim();
    // The run's token, written next to its URL (mode 0600: only its user can read it).
    let token_path = token_file(&local_dir);
    let authorization = std::fs::read_to_string(&token_path)
        .map_err(|e| {
            format!(
                "cannot read the job's admin token {}: {e}",
                token_path.display()
            )
        })
        .and_then(|t| AdminToken::parse(&t).map_err(|e| format!("{}: {e}", token_path.display())))?
        .authorization();
    let body = serde_json::json!({ "directory": dir });
    let trigger: TriggerResponse = ureq::post(&format!("{url}/v1/savepoints"))
        .header("authorization", &authorization)
        .send_json(&body)
        .map_err(|e| format!("trigger savepoint at {url}: {e}"))?
        .body_mut()
        .read_json()
        .map_err(|e| format!("trigger savepoint at {url}: {e}"))?;
    eprintln!("savepoint triggered ({})", trigger.trigger_id);
    let start = Instant::now();
    loop {
        let status: SavepointStatus =
            ureq::get(&format!("{url}/v1/savepoints/{}", trigger.trigger_id))
                .header("authorization", &authorization)
                .call()
                .map_err(|e| format!("poll savepoint: {e}"))?
                .body_mut()
                .read_json()
                .map_err(|e| format!("poll savepoint: {e}"))?;
        match status.status {
            SavepointState::Completed => {
                println!("{}", status.location.unwrap_or_default());
                return Ok(());
            }
            SavepointState::Failed => {
                return Err(format!(
                    "savepoint failed: {}",
                    status.failure.unwrap_or_default()
                ));
            }
            SavepointState::InProgress if start.elapsed() > timeout => {
                return Err(format!(
                    "savepoint not complete after {timeout:?}; trigger {}",
                    trigger.trigger_id
                ));
            }
            SavepointState::InProgress => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn inspect(uri: &str, s3: Option<&S3Spec>, json: bool) -> Result<(), String> {
    let loaded = load_savepoint(uri, s3).map_err(|e| error_chain(&e))?;
    let m = &loaded.metadata;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(m).expect("invariant: metadata serializes")
        );
        return Ok(());
    }
    let created = chrono::DateTime::from_timestamp_millis(m.timestamp_ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    println!("{uri}");
    println!("  kind:            {:?}", m.kind);
    println!("  format version:  {}", m.format_version);
    println!("  job:             {}", m.job);
    println!("  checkpoint id:   {}", m.checkpoint_id);
    println!("  created:         {created}");
    println!("  max parallelism: {}", m.max_parallelism);
    println!("  state size:      {} bytes", m.state_size());
    for (uid, op) in &m.operators {
        println!("  operator {uid} (parallelism {})", op.parallelism);
        for s in &op.subtasks {
            if let Some(k) = &s.keyed_state {
                let states: Vec<String> = k
                    .states
                    .iter()
                    .map(|st| format!("{} ({:?})", st.name, st.kind))
                    .collect();
                println!(
                    "    subtask {}: key groups {}..={}, {} bytes, {} entries, states: {}",
                    s.subtask,
                    k.key_group_range.start,
                    k.key_group_range.end,
                    k.size,
                    k.entries,
                    states.join(", ")
                );
            }
            for (name, list) in &s.operator_state {
                println!(
                    "    subtask {}: operator state {name} ({:?}, {} entries)",
                    s.subtask,
                    list.mode,
                    list.entries.len()
                );
            }
        }
    }
    Ok(())
}

fn list(uri: &str, s3: Option<&S3Spec>) -> Result<(), String> {
    let location = StorageLocation::parse_with(uri, s3)?;
    let storage = open_storage(&location).map_err(|e| error_chain(&e))?;
    let mut rows = Vec::new();
    for name in storage.list("").map_err(|e| error_chain(&e))? {
        if storage
            .read(&join(&name, METADATA))
            .map_err(|e| error_chain(&e))?
            .is_none()
        {
            continue;
        }
        match load_snapshot(storage.as_ref(), &name).map_err(|e| error_chain(&e))? {
            Ok(c) => rows.push((name, Some(c.metadata))),
            Err(_) => rows.push((name, None)),
        }
    }
    if rows.is_empty() {
        println!("no savepoints in {uri}");
    }
    for (name, meta) in rows {
        match meta {
            Some(CheckpointMetadata {
                checkpoint_id,
                timestamp_ms,
                kind,
                ref job,
                ..
            }) => {
                let created = chrono::DateTime::from_timestamp_millis(timestamp_ms)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let size = meta.as_ref().map(|m| m.state_size()).unwrap_or(0);
                println!(
                    "{}\t{kind:?}\tjob {job}\tcheckpoint {checkpoint_id}\t{created}\t{size} bytes",
                    storage.uri(&name)
                );
            }
            None => println!("{}\tdamaged (does not verify)", storage.uri(&name)),
        }
    }
    Ok(())
}
