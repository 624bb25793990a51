//! Where a job's objects live in checkpoint storage; the only place paths are formatted.
//!
//! `<job>` is the job's storage root: `<namespace>/<name>` for a StreamJob the operator runs
//! (two teams' jobs of one name never share a root), `<name>` under `weir run`.
//!
//! ```text
//! <job>/checkpoints/chk-<n>/_metadata        complete iff present; written last
//! <job>/checkpoints/chk-<n>/<uid>-<subtask>.state
//! <job>/savepoints/savepoint-<n>-<ms>/_metadata   (and its state files)
//! <job>/_lineage                              the deployment whose checkpoints these are
//! ```

/// Paths of one job's objects.
#[derive(Debug, Clone)]
pub struct JobPaths {
    job: String,
}

/// Name of the metadata object of a checkpoint.
pub const METADATA: &str = "_metadata";
/// Name of the object at the job root that holds the lineage (deployment id) of the job's
/// checkpoints (see `weir coordinator --lineage`).
pub const LINEAGE: &str = "_lineage";

impl JobPaths {
    /// Paths under the storage root `root` (see [`job_root`]).
    pub fn new(root: &str) -> Self {
        Self {
            job: root.to_string(),
        }
    }

    /// Paths of the job `name` of `namespace` (the manifest's metadata): root [`job_root`].
    pub fn of_job(name: &str, namespace: Option<&str>) -> Self {
        Self::new(&job_root(name, namespace))
    }

    /// The job's root: everything it owns is below.
    pub fn job_root(&self) -> String {
        self.job.clone()
    }

    /// The directory holding all checkpoints.
    pub fn checkpoints(&self) -> String {
        format!("{}/checkpoints", self.job)
    }

    /// The directory of checkpoint `id`.
    pub fn checkpoint(&self, id: u64) -> String {
        format!("{}/checkpoints/{}", self.job, checkpoint_dir_name(id))
    }

    /// The `_metadata` object of checkpoint `id`.
    pub fn metadata(&self, id: u64) -> String {
        format!("{}/{METADATA}", self.checkpoint(id))
    }

    /// The directory of files shared by incremental checkpoints.
    pub fn shared(&self) -> String {
        format!("{}/shared", self.job)
    }

    /// The object naming the deployment the job's checkpoints belong to.
    pub fn lineage(&self) -> String {
        format!("{}/{LINEAGE}", self.job)
    }

    /// The directory holding the job's savepoints (by default).
    pub fn savepoints(&self) -> String {
        format!("{}/savepoints", self.job)
    }

    /// A file of checkpoint `id`, by its name inside the checkpoint directory.
    pub fn checkpoint_file(&self, id: u64, name: &str) -> String {
        format!("{}/{name}", self.checkpoint(id))
    }
}

/// The storage root of job `name`: `<namespace>/<name>` when the manifest names a namespace
/// (the operator writes it into the manifests of its pods), else `<name>` (`weir run`, and
/// every StreamJob deployed before roots were per namespace: see `docs/operator.md`,
/// "Storage per job").
pub fn job_root(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// True when `uri` is `prefix` or lies below it (`prefix/...`); trailing slashes are ignored,
/// so `s3://b/team-a` does not contain `s3://b/team-ab`.
pub fn within(uri: &str, prefix: &str) -> bool {
    let (uri, prefix) = (uri.trim_end_matches('/'), prefix.trim_end_matches('/'));
    uri == prefix
        || uri
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A savepoint location outside every prefix a job may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location} is outside this job's storage ({}); a savepoint goes to, and is disposed from, only these (spec.savepoints.directory adds one)", allowed.join(", "))]
pub struct OutsideStorage {
    /// The refused location.
    pub location: String,
    /// The prefixes it may lie in.
    pub allowed: Vec<String>,
}

/// Checks that `uri` lies [`within`] one of `prefixes`.
///
/// # Errors
/// [`OutsideStorage`] naming the allowed prefixes.
pub fn check_within(uri: &str, prefixes: &[String]) -> Result<(), OutsideStorage> {
    if prefixes.iter().any(|p| within(uri, p)) {
        Ok(())
    } else {
        Err(OutsideStorage {
            location: uri.to_string(),
            allowed: prefixes.to_vec(),
        })
    }
}

/// `dir/name`, or `name` when `dir` is the root (`""`).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// `savepoint-<id>-<time ms>`: unique per job, ordered by checkpoint id.
pub fn savepoint_dir_name(id: u64, time_ms: i64) -> String {
    format!("savepoint-{id}-{time_ms}")
}

/// `chk-<id>`.
pub fn checkpoint_dir_name(id: u64) -> String {
    format!("chk-{id}")
}

/// The id of a `chk-<id>` directory name.
pub fn parse_checkpoint_dir_name(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// Name of the keyed state file of operator `uid`, subtask `subtask`.
pub fn state_file_name(uid: &str, subtask: u32) -> String {
    format!("{uid}-{subtask}.state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_roundtrip() {
        assert_eq!(
            parse_checkpoint_dir_name(&checkpoint_dir_name(42)),
            Some(42)
        );
        assert_eq!(parse_checkpoint_dir_name("chk-x"), None);
        assert_eq!(
            JobPaths::new("j").metadata(3),
            "j/checkpoints/chk-3/_metadata"
        );
        assert_eq!(
            JobPaths::of_job("orders", Some("team-a")).lineage(),
            "team-a/orders/_lineage"
        );
        assert_eq!(JobPaths::of_job("orders", None).job_root(), "orders");
        assert!(within(
            "s3://b/team-a/orders/savepoints/sp-1",
            "s3://b/team-a/orders/"
        ));
        assert!(within("s3://b/team-a/orders", "s3://b/team-a/orders"));
        assert!(!within("s3://b/team-a/orders-2/sp", "s3://b/team-a/orders"));
        assert!(!within("s3://b/team-a", "s3://b/team-a/orders"));
    }
}
