//! What a kubelet enforces from a pod's and a container's `securityContext` and `resources`,
//! so that a pod that works here works on a real cluster: the user and groups the process runs
//! as (set before exec), `runAsNonRoot`, `fsGroup` ownership of the pod's volumes, a read-only
//! root file system, `allowPrivilegeEscalation: false` (no_new_privs), and the memory limit
//! through a cgroup v1 memory controller, an OOM kill reported as `OOMKilled`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Container, PodSpec};

/// How one container's process is confined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Confinement {
    /// User id (`runAsUser`; the image's user, root here, when unset).
    pub uid: u32,
    /// Primary group id (`runAsGroup`; 0 when unset, as for an image without a group).
    pub gid: u32,
    /// Supplementary groups: `supplementalGroups` and `fsGroup`.
    pub groups: Vec<u32>,
    /// `readOnlyRootFilesystem`: only the volumes (and the termination log) are writable.
    pub read_only_root: bool,
    /// `allowPrivilegeEscalation: false`: PR_SET_NO_NEW_PRIVS before exec.
    pub no_new_privs: bool,
    /// `resources.limits.memory` in bytes.
    pub memory_limit: Option<u64>,
}

/// The confinement of container `c` of a pod with spec `pod` (container settings win over the
/// pod's, as in Kubernetes).
///
/// # Errors
/// `runAsNonRoot` with a root user (the kubelet's `CreateContainerConfigError`), or a memory
/// limit that is not a quantity.
pub fn confinement(pod: &PodSpec, c: &Container) -> anyhow::Result<Confinement> {
    let p = pod.security_context.clone().unwrap_or_default();
    let s = c.security_context.clone().unwrap_or_default();
    let uid = s.run_as_user.or(p.run_as_user).unwrap_or(0);
    if s.run_as_non_root.or(p.run_as_non_root) == Some(true) && uid == 0 {
        anyhow::bail!(
            "container {:?} has runAsNonRoot and image will run as root",
            c.name
        );
    }
    let gid = s.run_as_group.or(p.run_as_group).unwrap_or(0);
    let mut groups: Vec<u32> = p
        .supplemental_groups
        .unwrap_or_default()
        .into_iter()
        .chain(p.fs_group)
        .map(|g| g as u32)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let memory_limit = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref()?.get("memory"))
        .map(|q| {
            quantity_bytes(&q.0)
                .with_context(|| format!("container {:?}: memory limit {:?}", c.name, q.0))
        })
        .transpose()?;
    Ok(Confinement {
        uid: uid as u32,
        gid: gid as u32,
        groups,
        read_only_root: s.read_only_root_filesystem == Some(true),
        no_new_privs: s.allow_privilege_escalation == Some(false),
        memory_limit,
    })
}

/// Bytes of a Kubernetes quantity: `512Mi`, `1G`, `1e9`, `134217728`.
///
/// # Errors
/// Anything else.
pub fn quantity_bytes(q: &str) -> anyhow::Result<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "m" => 1e-3,
        other => anyhow::bail!("unknown suffix {other:?}"),
    };
    let n: f64 = number.parse().context("not a number")?;
    Ok((n * factor).ceil() as u64)
}

/// Gives the files of a volume directory to `fs_group` as the kubelet does: group `fs_group`,
/// group read (and write for a writable volume) on files, and on directories also group
/// search and the set-group-id bit, so files created later belong to the group too.
///
/// # Errors
/// I/O errors walking, chowning or chmodding.
pub fn give_to_fs_group(dir: &Path, fs_group: u32, writable: bool) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(dir, None, Some(fs_group))
        .with_context(|| format!("chown {}", dir.display()))?;
    let mut mask = if writable { 0o660 } else { 0o440 };
    if meta.is_dir() {
        mask |= 0o2110;
    }
    std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(meta.mode() & 0o7777 | mask),
    )?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            give_to_fs_group(&entry?.path(), fs_group, writable)?;
        }
    }
    Ok(())
}

/// A memory cgroup (v1) of one container run, below the agent's own, removed on drop.
pub struct MemoryCgroup {
    dir: PathBuf,
}

/// Where the memory controller of cgroup v1 is mounted.
const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

impl MemoryCgroup {
    /// Creates cgroup `name` (a path of plain names) limited to `limit` bytes, below the
    /// agent's own memory cgroup.
    ///
    /// # Errors
    /// No cgroup v1 memory controller, or it refuses the cgroup or the limit.
    pub fn create(name: &str, limit: u64) -> anyhow::Result<Self> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then(|| path.trim_start_matches('/').to_string())
            })
            .context("no cgroup v1 memory controller: memory limits cannot be enforced")?;
        let dir = Path::new(MEMORY_ROOT).join(own).join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let cgroup = Self { dir };
        for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            let path = cgroup.dir.join(file);
            // Without swap accounting the second file is absent.
            if file == "memory.limit_in_bytes" || path.exists() {
                std::fs::write(&path, limit.to_string())
                    .with_context(|| format!("write {}", path.display()))?;
            }
        }
        Ok(cgroup)
    }

    /// The file a process writes `0` to in order to join.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup (`oom_kill` of
    /// `memory.oom_control`).
    pub fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.dir.join("memory.oom_control"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once the container's processes are gone; they may take a moment to be reaped.
        for _ in 0..20 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("512Mi").unwrap(), 512 << 20);
        assert_eq!(quantity_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(quantity_bytes("1e9").unwrap(), 1_000_000_000);
        assert_eq!(quantity_bytes("134217728").unwrap(), 134_217_728);
        assert!(quantity_bytes("12 apples").is_err());
    }

    #[test]
    fn container_settings_win_over_the_pods() {
        let pod: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000,
                                "supplementalGroups": [3000]},
        }))
        .unwrap();
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "main",
            "securityContext": {"runAsUser": 65532, "readOnlyRootFilesystem": true,
                                "allowPrivilegeEscalation": false},
            "resources": {"limits": {"memory": "64Mi"}},
        }))
        .unwrap();
        assert_eq!(
            confinement(&pod, &c).unwrap(),
            Confinement {
                uid: 65532,
                gid: 1000,
                groups: vec![2000, 3000],
                read_only_root: true,
                no_new_privs: true,
                memory_limit: Some(64 << 20),
            }
        );
        let root: Container = serde_json::from_value(serde_json::json!({
            "name": "root", "securityContext": {"runAsNonRoot": true},
        }))
        .unwrap();
        assert!(confinement(&PodSpec::default(), &root).is_err());
    }
}
