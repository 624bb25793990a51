//! `weir check`: can this manifest's job graph restore the job's snapshot? Reads the manifest,
//! builds its graph (validating its job arguments), reads one `_metadata` (the given snapshot
//! or the job's latest complete checkpoint) and applies
//! [`crate::checkpoint::incompatibilities`]. Nothing is written to checkpoint storage.
//!
//! Exit codes: 0 compatible (or nothing to restore); 3 incompatible; 2 invalid manifest or
//! job arguments (also reported as incompatible); 1 storage could not be read.

use std::path::PathBuf;

use clap::Args;
use weir_api_types::CompatibilityReport;

use crate::checkpoint::restore::list_checkpoint_ids;
use crate::checkpoint::{incompatibilities, CheckpointMetadata, LineageRecord};
use crate::jobs::Registry;
use crate::runner::{error_chain, open_storage};
use crate::storage::paths::{join, JobPaths, METADATA};
use crate::storage::CheckpointStorage;

/// Flags of `weir check`.
#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The StreamJob manifest (YAML) of the new version of the job.
    manifest: PathBuf,
    /// Compare with this savepoint or checkpoint directory (file:// or s3:// URI) instead of
    /// the job's latest complete checkpoint.
    #[arg(long)]
    snapshot: Option<String>,
    /// Also write the JSON report here (in Kubernetes: /dev/termination-log).
    #[arg(long)]
    report_file: Option<PathBuf>,
}

/// Runs `weir check` and returns the exit code.
pub(super) fn run(registry: &Registry, a: CheckArgs) -> i32 {
    let (report, code) = match check(registry, &a) {
        Ok(report) if report.compatible => (report, 0),
        Ok(report) => (report, 3),
        Err(Failure::Invalid(reason)) => (
            CompatibilityReport {
                compatible: false,
                snapshot: None,
                checkpoint_id: None,
                reasons: vec![reason],
            },
            2,
        ),
        Err(Failure::Storage(reason)) => {
            eprintln!("error: {reason}");
            return 1;
        }
    };
    let json = serde_json::to_string(&report).expect("invariant: the report serializes");
    println!("{json}");
    if let Some(path) = &a.report_file {
        if let Err(e) = std::fs::write(path, &json) {
            eprintln!("error: write {}: {e}", path.display());
            return 1;
        }
    }
    code
}

enum Failure {
    Invalid(String),
    Storage(String),
}

fn check(registry: &Registry, a: &CheckArgs) -> Result<CompatibilityReport, Failure> {
    let text = std::fs::read_to_string(&a.manifest)
        .map_err(|e| Failure::Invalid(format!("cannot read {}: {e}", a.manifest.display())))?;
    let (loaded, graph) = registry
        .load(&text)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", a.manifest.display())))?;
    let spec = &loaded.spec;
    let storage_error = |e: &dyn std::error::Error| Failure::Storage(error_chain(e));
    let found = match &a.snapshot {
        Some(uri) => {
            let location =
                weir_crds::StorageLocation::parse_with(uri, spec.spec.checkpointing.s3.as_ref())
                    .map_err(|e| Failure::Invalid(format!("--snapshot: {e}")))?;
            let storage = open_storage(&location).map_err(|e| storage_error(&e))?;
            let metadata = read_metadata(storage.as_ref(), "")
                .map_err(Failure::Storage)?
                .ok_or_else(|| {
                    Failure::Invalid(format!(
                        "--snapshot {uri}: no readable _metadata (not a complete savepoint or checkpoint)"
                    ))
                })?;
            Some((uri.clone(), metadata))
        }
        None => {
            let storage =
                open_storage(&spec.checkpointing.storage).map_err(|e| storage_error(&e))?;
            latest_metadata(
                storage.as_ref(),
                &JobPaths::of_job(&loaded.name, loaded.namespace.as_deref()),
            )?
        }
    };
    let Some((snapshot, metadata)) = found else {
        return Ok(CompatibilityReport {
            compatible: true,
            snapshot: None,
            checkpoint_id: None,
            reasons: vec![],
        });
    };
    let reasons = incompatibilities(
        &metadata,
        graph.shape(spec.max_parallelism, spec.spec.job.allow_non_restored_state),
    );
    Ok(CompatibilityReport {
        compatible: reasons.is_empty(),
        snapshot: Some(snapshot),
        checkpoint_id: Some(metadata.checkpoint_id),
        reasons,
    })
}

/// The newest complete checkpoint of the job's lineage: its location and metadata.
fn latest_metadata(
    storage: &dyn CheckpointStorage,
    paths: &JobPaths,
) -> Result<Option<(String, CheckpointMetadata)>, Failure> {
    let since = storage
        .read(&paths.lineage())
        .map_err(|e| Failure::Storage(error_chain(&e)))?
        .map_or(0, |b| LineageRecord::decode(&b).first_checkpoint);
    let ids = list_checkpoint_ids(storage, paths).map_err(|e| Failure::Storage(error_chain(&e)))?;
    for id in ids.into_iter().rev().take_while(|&id| id >= since) {
        if let Some(m) = read_metadata(storage, &paths.checkpoint(id)).map_err(Failure::Storage)? {
            return Ok(Some((storage.uri(&paths.checkpoint(id)), m)));
        }
    }
    Ok(None)
}

/// The decoded `_metadata` of directory `dir`; `None` when absent or undecodable.
fn read_metadata(
    storage: &dyn CheckpointStorage,
    dir: &str,
) -> Result<Option<CheckpointMetadata>, String> {
    let bytes = storage
        .read(&join(dir, METADATA))
        .map_err(|e| error_chain(&e))?;
    Ok(bytes.and_then(|b| CheckpointMetadata::decode(&b).ok()))
}
