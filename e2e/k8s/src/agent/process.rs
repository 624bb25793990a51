//! A container as a process: joined to its pod's network namespace, in a mount namespace of
//! its own where the pod's volumes, the image's files and the pod's `resolv.conf` and `hosts`
//! are bind-mounted at their paths (over a read-only root when the container asks for one), in
//! its memory cgroup, in a session of its own (so a signal reaches everything it started),
//! running as the container's user and groups, and killed if the agent dies.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Gid, Pid, Uid};

use super::security::Confinement;

/// One bind mount: host path onto a path inside the container.
#[derive(Clone, Debug)]
pub struct Bind {
    /// Host file or directory.
    pub source: PathBuf,
    /// Path inside the container (created on the host as an empty mount point if missing).
    pub target: PathBuf,
    /// Remount read-only.
    pub read_only: bool,
}

/// What to run and where.
pub struct Spec<'a> {
    /// argv; the first element a host path.
    pub argv: &'a [String],
    /// The complete environment.
    pub env: &'a [(String, String)],
    /// Working directory inside the container.
    pub working_dir: Option<&'a str>,
    /// The pod's network namespace name (`/run/netns/<name>`).
    pub netns: &'a str,
    /// Bind mounts, applied in order (parents before children).
    pub binds: &'a [Bind],
    /// stdout and stderr go here (appended).
    pub log: &'a Path,
    /// User, groups, read-only root, no_new_privs.
    pub confinement: &'a Confinement,
    /// The `cgroup.procs` file of the container's memory cgroup, if it has a limit.
    pub cgroup_procs: Option<&'a Path>,
}

fn cstr(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path with a NUL byte")
}

/// Creates the mount point of `bind` on the host when missing: a directory for a directory,
/// an empty file for a file.
fn mount_point(bind: &Bind) -> anyhow::Result<()> {
    if bind.target.exists() {
        return Ok(());
    }
    if bind.source.is_dir() {
        std::fs::create_dir_all(&bind.target)?;
    } else {
        if let Some(parent) = bind.target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        File::create(&bind.target)?;
    }
    Ok(())
}

/// Starts the process. Errors: a missing binary, namespace or mount source.
pub fn spawn(spec: &Spec) -> anyhow::Result<Child> {
    let program = spec.argv.first().context("empty command")?;
    let netns =
        File::open(format!("/run/netns/{}", spec.netns)).context("open network namespace")?;
    let mut mounts = Vec::new();
    for (i, b) in spec.binds.iter().enumerate() {
        // Mounts apply in order in the container's namespace: one over a parent of a later
        // source would hide that source.
        if let Some(later) = spec.binds[i + 1..]
            .iter()
            .find(|l| l.source.starts_with(&b.target))
        {
            anyhow::bail!(
                "the mount at {} would hide {}: keep the node agent's state directory outside the pods' mount paths",
                b.target.display(),
                later.source.display()
            );
        }
        anyhow::ensure!(
            b.source.exists(),
            "mount source {} does not exist",
            b.source.display()
        );
        mount_point(b).with_context(|| format!("mount point {}", b.target.display()))?;
        mounts.push((cstr(&b.source)?, cstr(&b.target)?, b.read_only));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.log)
        .context("container log")?;
    // The binary is opened here and executed through /proc/self/fd: its host path may lie
    // under a directory a pod mounts over (a build under /tmp, where pods get a scratch
    // volume), which the path would no longer reach from inside the mount namespace.
    let exe = File::open(program).with_context(|| format!("start {program}"))?;
    let mut cmd = Command::new(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    cmd.arg0(program)
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(dir) = spec.working_dir {
        cmd.current_dir(dir);
    }
    let confinement = spec.confinement.clone();
    let groups: Vec<Gid> = confinement
        .groups
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    let cgroup_procs = spec.cgroup_procs.map(cstr).transpose()?;
    // Between fork and exec: only system calls, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let err = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(err)?;
            nix::unistd::setsid().map_err(err)?;
            setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(err)?;
            unshare(CloneFlags::CLONE_NEWNS).map_err(err)?;
            mount(
                None::<&std::ffi::CStr>,
                c"/",
                None::<&std::ffi::CStr>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&std::ffi::CStr>,
            )
            .map_err(err)?;
            for (source, target, read_only) in &mounts {
                mount(
                    Some(source.as_c_str()),
                    target.as_c_str(),
                    None::<&std::ffi::CStr>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&std::ffi::CStr>,
                )
                .map_err(err)?;
                if *read_only {
                    mount(
                        None::<&std::ffi::CStr>,
                        target.as_c_str(),
                        None::<&std::ffi::CStr>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None::<&std::ffi::CStr>,
                    )
                    .map_err(err)?;
                }
            }
            if confinement.read_only_root {
                // This namespace's view of `/` only, after the binds: a bind made from a
                // read-only mount would be read-only too, and the binds keep their own flags.
                mount(
                    None::<&std::ffi::CStr>,
                    c"/",
                    None::<&std::ffi::CStr>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&std::ffi::CStr>,
                )
                .map_err(err)?;
            }
            if let Some(procs) = &cgroup_procs {
                let fd = nix::fcntl::open(
                    procs.as_c_str(),
                    nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(err)?;
                nix::unistd::write(&fd, b"0").map_err(err)?;
            }
            nix::unistd::setgroups(&groups).map_err(err)?;
            nix::unistd::setgid(Gid::from_raw(confinement.gid)).map_err(err)?;
            nix::unistd::setuid(Uid::from_raw(confinement.uid)).map_err(err)?;
            // A change of user makes the process non-dumpable, which gives its /proc entries
            // to root; the exec below goes through /proc/self/fd.
            nix::sys::prctl::set_dumpable(true).map_err(err)?;
            if confinement.no_new_privs {
                nix::sys::prctl::set_no_new_privs().map_err(err)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("start {program}"));
    drop(exe);
    child
}

/// Sends `signal` to the process's session (its process group: it called `setsid`).
pub fn signal(child: &Child, signal: Signal) {
    let _ = killpg(Pid::from_raw(child.id() as i32), signal);
}
