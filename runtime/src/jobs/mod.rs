//! The registry of named jobs that `job.entry` selects. A user's image registers its own jobs
//! next to the built-in ones by building a [`Registry`] and calling the runtime's CLI with it.

pub mod csv_window_aggregate;
pub mod nexmark;

use std::collections::BTreeMap;

use crate::api::JobGraph;

/// Job arguments (`job.args`).
pub type JobArgs = BTreeMap<String, String>;

/// An invalid `job.args` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.job.args.{arg}: {message}")]
pub struct ArgError {
    /// The argument's name.
    pub arg: String,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl ArgError {
    /// An error about argument `arg`.
    pub fn new(arg: &str, message: impl Into<String>) -> Self {
        Self {
            arg: arg.to_string(),
            message: message.into(),
        }
    }
}

/// Argument `name` of `args` parsed as a `T` (a number, a flag), `None` when absent: for the
/// optional arguments of a job's builder.
///
/// # Errors
/// [`ArgError`] naming the argument, its value and the parse error when it does not parse.
pub fn optional_arg<T>(args: &JobArgs, name: &str) -> Result<Option<T>, ArgError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    args.get(name)
        .map(|v| {
            v.trim().parse::<T>().map_err(|e| {
                ArgError::new(
                    name,
                    format!("`{v}` is not a valid {}: {e}", std::any::type_name::<T>()),
                )
            })
        })
        .transpose()
}

/// Builds a job graph from its arguments, validating them; must not start any work.
pub type JobBuilder = fn(&JobArgs) -> Result<JobGraph, ArgError>;

/// A registered job.
#[derive(Clone)]
pub struct JobEntry {
    /// One line on what the job does.
    pub description: &'static str,
    /// Its builder.
    pub build: JobBuilder,
}

/// Named jobs.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: BTreeMap<String, JobEntry>,
}

impl Registry {
    /// The built-in jobs (`csv-window-aggregate`, `nexmark`).
    pub fn builtin() -> Self {
        let mut r = Self::default();
        r.register(
            csv_window_aggregate::ENTRY,
            JobEntry {
                description: "event-time tumbling-window aggregates (count, sum, min, max, avg) per key over CSV files",
                build: csv_window_aggregate::build,
            },
        );
        r.register(
            nexmark::ENTRY,
            JobEntry {
                description: "the Nexmark benchmark's queries (job.args.query: q0, q1, ...) over its generated auction events",
                build: nexmark::build,
            },
        );
        r
    }

    /// Adds (or replaces) a job under `name`.
    pub fn register(&mut self, name: &str, entry: JobEntry) {
        self.jobs.insert(name.to_string(), entry);
    }

    /// Looks a job up by name.
    ///
    /// # Errors
    /// A message for `spec.job.entry` listing the known names.
    pub fn get(&self, name: &str) -> Result<&JobEntry, String> {
        self.jobs.get(name).ok_or_else(|| {
            format!(
                "spec.job.entry: unknown job `{name}`; this binary knows: {}",
                self.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Parses and validates a manifest and builds its job graph (no work starts), and checks
    /// its sinks against the checkpoint timing. The job is built from `job.args` plus the
    /// `job.argsFromSecrets` values, read from this process's environment
    /// ([`weir_crds::secret_arg_env`]); the returned manifest holds only the references.
    ///
    /// # Errors
    /// A message naming the invalid field: the manifest's, `spec.job.entry`, a job argument,
    /// an argument from a Secret whose environment variable is not set, or the checkpoint
    /// settings a sink cannot work with.
    pub fn load(&self, yaml: &str) -> Result<(weir_crds::LoadedManifest, JobGraph), String> {
        let loaded = weir_crds::load_manifest(yaml).map_err(|e| e.to_string())?;
        let entry = self.get(&loaded.spec.spec.job.entry)?;
        let args = weir_crds::resolved_args(&loaded.spec.spec.job, |var| std::env::var(var).ok())
            .map_err(|e| e.to_string())?;
        let graph = (entry.build)(&args).map_err(|e| e.to_string())?;
        let checkpointing = &loaded.spec.spec.checkpointing;
        let ms = |field: &str, text: &str| {
            weir_crds::parse_duration(text)
                .map(|d| d.as_millis() as u64)
                .map_err(|e| format!("spec.checkpointing.{field}: {e}"))
        };
        graph.check_checkpointing(&crate::api::CheckpointTiming {
            interval_ms: ms("interval", &checkpointing.interval)?,
            timeout_ms: ms("timeout", &checkpointing.timeout)?,
        })?;
        Ok((loaded, graph))
    }

    /// Names and descriptions, sorted by name.
    pub fn list(&self) -> impl Iterator<Item = (&str, &JobEntry)> {
        self.jobs.iter().map(|(k, v)| (k.as_str(), v))
    }
}
