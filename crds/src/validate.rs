//! Validation of a parsed spec: the one place that decides whether a manifest may run. Pure.

use std::time::Duration;

use crate::duration::parse_duration;
use crate::spec::{secret_arg_env, JobSpec, StreamJobSpec, MAX_MAX_PARALLELISM};
use crate::storage::StorageLocation;

/// One invalid field: its path in the manifest (`spec.job.parallelism`) and what is wrong,
/// including the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the field, for example `spec.checkpointing.interval`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

/// Checkpoint settings with durations parsed and the storage location resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// Time between checkpoint triggers.
    pub interval: Duration,
    /// A checkpoint older than this is aborted.
    pub timeout: Duration,
    /// Least time between the end of a checkpoint and the next trigger.
    pub min_pause: Duration,
    /// Checkpoints in flight at once (at least 1).
    pub max_concurrent: usize,
    /// Newest complete checkpoints kept (at least 1).
    pub retained: usize,
    /// Incremental RocksDB checkpoints.
    pub incremental: bool,
    /// Where checkpoints go.
    pub storage: StorageLocation,
}

/// A spec that passed validation, with its typed settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSpec {
    /// The spec as written, defaults filled in.
    pub spec: StreamJobSpec,
    /// Parallelism, at least 1.
    pub parallelism: u32,
    /// Max parallelism (number of key groups), between `parallelism` and 32768.
    pub max_parallelism: u32,
    /// Parsed checkpoint settings.
    pub checkpointing: CheckpointSettings,
    /// The operator's settings with their durations parsed.
    pub lifecycle: LifecycleSettings,
}

/// The durations of `spec.savepoints` and `spec.upgrade`, parsed (the operator reads them on
/// every reconcile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// `spec.savepoints.periodicInterval`: time between periodic savepoints; `None`: none.
    pub periodic_savepoint_interval: Option<Duration>,
    /// `spec.savepoints.historyMaxAge`: completed savepoints older than this are deleted.
    pub savepoint_history_max_age: Option<Duration>,
    /// `spec.upgrade.stableTimeout`: time a new deployment has to become stable before a
    /// rollback (when `spec.upgrade.rollback` is set).
    pub stable_timeout: Duration,
}

/// Validates a spec whose structure serde already accepted (known fields, known enum values).
///
/// # Errors
/// Every invalid field at once, each naming its path and the allowed values: parallelism
/// below 1; max parallelism below parallelism or above 32768; a malformed or zero duration;
/// `retained` below 1; a storage URI with an unsupported scheme or a relative path; an empty
/// `job.entry`.
pub fn validate_spec(spec: &StreamJobSpec) -> Result<ValidatedSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
        })
    };
    if spec.job.entry.trim().is_empty() {
        err(
            "spec.job.entry",
            "must name a job of the runtime's registry, for example csv-window-aggregate".into(),
        );
    }
    if spec.restore.is_some() && spec.job.initial_savepoint_path.is_some() {
        err(
            "spec.restore",
            "spec.job.initialSavepointPath says the same; keep one of the two (spec.restore)"
                .into(),
        );
    }
    let mut env_vars: std::collections::BTreeMap<String, &str> = Default::default();
    for (arg, secret) in &spec.job.args_from_secrets {
        let field = format!("spec.job.argsFromSecrets.{arg}");
        if spec.job.args.contains_key(arg) {
            err(
                &field,
                format!("`{arg}` is also in spec.job.args; keep it in one of the two"),
            );
        }
        if !is_dns_subdomain(&secret.name) {
            err(
                &format!("{field}.name"),
                format!(
                    "`{}` is not a Secret name (lowercase letters, digits, '-' and '.', at most 253)",
                    secret.name
                ),
            );
        }
        if secret.key.is_empty()
            || !secret
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            err(
                &format!("{field}.key"),
                format!(
                    "`{}` is not a Secret key (letters, digits, '-', '_' and '.')",
                    secret.key
                ),
            );
        }
        if let Some(other) = env_vars.insert(secret_arg_env(arg), arg) {
            err(
                &field,
                format!(
                    "`{arg}` and `{other}` share the environment variable {}; rename one",
                    secret_arg_env(arg)
                ),
            );
        }
    }
    let p = spec.job.parallelism;
    let mp = spec.job.max_parallelism;
    if p < 1 {
        err(
            "spec.job.parallelism",
            format!("must be at least 1 (got {p})"),
        );
    }
    if mp < p.max(1) || mp > MAX_MAX_PARALLELISM {
        err(
            "spec.job.maxParallelism",
            format!(
                "must be between spec.job.parallelism ({p}) and {MAX_MAX_PARALLELISM} (got {mp})"
            ),
        );
    }
    let c = &spec.checkpointing;
    let mut duration = |field: &str, text: &str, allow_zero: bool| match parse_duration(text) {
        Ok(d) if d.is_zero() && !allow_zero => {
            err(field, format!("must be greater than zero (got `{text}`)"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            err(field, e.to_string());
            None
        }
    };
    let interval = duration("spec.checkpointing.interval", &c.interval, false);
    let timeout = duration("spec.checkpointing.timeout", &c.timeout, false);
    let min_pause = duration("spec.checkpointing.minPause", &c.min_pause, true);
    let sp = &spec.savepoints;
    let periodic_savepoint_interval = sp
        .periodic_interval
        .as_ref()
        .map(|text| duration("spec.savepoints.periodicInterval", text, false));
    let savepoint_history_max_age = sp
        .history_max_age
        .as_ref()
        .map(|text| duration("spec.savepoints.historyMaxAge", text, false));
    let stable_timeout = duration(
        "spec.upgrade.stableTimeout",
        &spec.upgrade.stable_timeout,
        false,
    );
    if c.incremental && spec.state_backend != crate::spec::StateBackend::Rocksdb {
        err(
            "spec.checkpointing.incremental",
            "requires stateBackend: rocksdb (heap state is checkpointed in full)".into(),
        );
    }
    if c.max_concurrent < 1 {
        err(
            "spec.checkpointing.maxConcurrent",
            format!("must be at least 1 (got {})", c.max_concurrent),
        );
    }
    if c.retained < 1 {
        err(
            "spec.checkpointing.retained",
            format!("must be at least 1 (got {})", c.retained),
        );
    }
    if c.s3.is_some() && !c.storage.starts_with("s3://") {
        err(
            "spec.checkpointing.s3",
            "only applies to s3:// storage; remove it or use an s3:// storage URI".into(),
        );
    }
    if sp.history_max_count < 1 {
        err(
            "spec.savepoints.historyMaxCount",
            format!("must be at least 1 (got {})", sp.history_max_count),
        );
    }
    if let Some(dir) = &sp.directory {
        if let Err(message) = StorageLocation::parse_with(dir, c.s3.as_ref()) {
            err("spec.savepoints.directory", message);
        }
    }
    for (component, o) in [
        ("coordinator", &spec.coordinator),
        ("workers", &spec.workers),
    ] {
        for (i, v) in o.volumes.iter().enumerate() {
            if ["manifest", "scratch"].contains(&v.name.as_str()) {
                err(
                    &format!("spec.{component}.volumes[{i}].name"),
                    format!(
                        "{:?} is the operator's own volume; choose another name",
                        v.name
                    ),
                );
            }
        }
        for (i, m) in o.volume_mounts.iter().enumerate() {
            if !o.volumes.iter().any(|v| v.name == m.name) {
                err(
                    &format!("spec.{component}.volumeMounts[{i}].name"),
                    format!(
                        "no volume named {:?} in spec.{component}.volumes; add it there",
                        m.name
                    ),
                );
            }
            // The operator mounts the scratch volume at /tmp and the manifest at /etc/weir.
            if ["/tmp", "/etc/weir"].contains(&m.mount_path.trim_end_matches('/')) {
                err(
                    &format!("spec.{component}.volumeMounts[{i}].mountPath"),
                    format!(
                        "{} is the operator's own mount; mount below another directory",
                        m.mount_path
                    ),
                );
            }
        }
    }
    if spec.coordinator.replicas.is_some() {
        err(
            "spec.coordinator.replicas",
            "the coordinator is always one pod; remove the field".into(),
        );
    }
    if let Some(r) = spec.workers.replicas.filter(|r| *r < 1) {
        err(
            "spec.workers.replicas",
            format!("must be at least 1 (got {r})"),
        );
    }
    let storage = match StorageLocation::parse_with(&c.storage, c.s3.as_ref()) {
        Ok(s) => Some(s),
        Err(message) => {
            err("spec.checkpointing.storage", message);
            None
        }
    };
    match (interval, timeout, min_pause, storage, stable_timeout) {
        (Some(interval), Some(timeout), Some(min_pause), Some(storage), Some(stable_timeout))
            if errors.is_empty() =>
        {
            Ok(ValidatedSpec {
                spec: spec.clone(),
                parallelism: p as u32,
                max_parallelism: mp as u32,
                checkpointing: CheckpointSettings {
                    interval,
                    timeout,
                    min_pause,
                    max_concurrent: c.max_concurrent as usize,
                    retained: c.retained as usize,
                    incremental: c.incremental,
                    storage,
                },
                lifecycle: LifecycleSettings {
                    periodic_savepoint_interval: periodic_savepoint_interval.flatten(),
                    savepoint_history_max_age: savepoint_history_max_age.flatten(),
                    stable_timeout,
                },
            })
        }
        _ => Err(errors),
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `job.args` with the values of `job.argsFromSecrets` added, each read through `env` from
/// the variable [`secret_arg_env`] names (the operator sets it from the Secret; for `weir run`,
/// set it yourself). Reads nothing else.
///
/// # Errors
/// A [`FieldError`] for `spec.job.argsFromSecrets.<arg>` naming the variable to set when it is
/// missing.
pub fn resolved_args(
    job: &JobSpec,
    env: impl Fn(&str) -> Option<String>,
) -> Result<std::collections::BTreeMap<String, String>, FieldError> {
    let mut args = job.args.clone();
    for (arg, secret) in &job.args_from_secrets {
        let var = secret_arg_env(arg);
        let value = env(&var).ok_or_else(|| FieldError {
            field: format!("spec.job.argsFromSecrets.{arg}"),
            message: format!(
                "environment variable {var} is not set; in Kubernetes the operator sets it from key `{}` of Secret `{}`, elsewhere set it to the value",
                secret.key, secret.name
            ),
        })?;
        args.insert(arg.clone(), value);
    }
    Ok(args)
}
