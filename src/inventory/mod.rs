//! Inventory: the only code that reads the host. Walks `/proc` once and returns an owned
//! [`Snapshot`]: processes, the TCP/UDP sockets of every network namespace joined to their
//! owners by inode, and interface counters.
//!
//! It never judges anything, and it never fails because one process misbehaves: a process
//! that exits mid-read is counted as vanished, anything else unreadable becomes a [`Gap`].

mod model;
mod net;
mod rates;

pub use model::{Gap, Interface, Process, Protocol, Snapshot, Socket, SocketState};
pub use rates::{cpu_percent, InterfaceRate};

use procfs::process::{FDTarget, Process as ProcHandle};
use procfs::ProcError;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where to read from and what to compute.
#[derive(Debug, Clone)]
pub struct Options {
    /// The procfs mount, `/proc` on a live host; a fixture tree in tests.
    pub proc_root: PathBuf,
    /// The passwd database used to name uids.
    pub passwd: PathBuf,
    /// Compute the SHA-256 of every executable (only when a signature uses `sha256`).
    pub hash_exes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proc_root: PathBuf::from("/proc"),
            passwd: PathBuf::from("/etc/passwd"),
            hash_exes: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot list processes in {path}: {source}")]
    ListProcesses {
        path: PathBuf,
        #[source]
        source: ProcError,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Executables larger than this are not hashed (recorded as a gap instead).
const MAX_HASH_BYTES: u64 = 256 * 1024 * 1024;

/// A reader of the host that may remember, between inventories, what cannot change for a
/// process (keyed by pid and start time). The agent keeps one for its whole life.
#[derive(Debug)]
pub struct Inventory {
    opts: Options,
}

impl Inventory {
    pub fn new(opts: Options) -> Inventory {
        Inventory { opts }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Takes one inventory of the host.
    pub fn take(&mut self) -> Result<Snapshot, InventoryError> {
        take(&self.opts)
    }
}

/// Takes one inventory of the host, remembering nothing.
pub fn take(opts: &Options) -> Result<Snapshot, InventoryError> {
    let taken_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let uptime_secs = read_uptime(&opts.proc_root)?;
    let users = read_passwd(&opts.passwd);
    let mut snap = Snapshot {
        taken_at_unix_ms,
        uptime_secs,
        ticks_per_second: procfs::ticks_per_second(),
        hostname: read_trimmed(&opts.proc_root.join("sys/kernel/hostname")).unwrap_or_default(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        ..Snapshot::default()
    };

    let iter = procfs::process::all_processes_with_root(&opts.proc_root).map_err(|source| {
        InventoryError::ListProcesses {
            path: opts.proc_root.clone(),
            source,
        }
    })?;
    let mut hashes: HashMap<String, Option<String>> = HashMap::new();
    for handle in iter {
        let handle = match handle {
            Ok(h) => h,
            Err(e) if is_vanished(&e) => {
                snap.vanished += 1;
                continue;
            }
            Err(e) => {
                snap.gaps.push(Gap {
                    what: opts.proc_root.display().to_string(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        match read_process(&handle, &opts.proc_root, &users, &mut snap.gaps) {
            Ok(mut p) => {
                if opts.hash_exes && !p.kernel_thread {
                    p.exe_sha256 = hash_exe(&opts.proc_root, &p, &mut hashes, &mut snap.gaps);
                }
                snap.processes.push(p)
            }
            Err(e) if is_vanished(&e) => snap.vanished += 1,
            Err(e) => snap.gaps.push(Gap {
                what: format!("{}/{}", opts.proc_root.display(), handle.pid()),
                error: e.to_string(),
            }),
        }
    }
    snap.processes.sort_by_key(|p| p.pid);

    // One reader per network namespace: the lowest pid in it.
    let mut namespaces: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
    for p in &snap.processes {
        if p.netns != 0 {
            namespaces.entry(p.netns).or_default().push(p.pid);
        }
    }
    for (netns, pids) in &namespaces {
        net::read_namespace(&opts.proc_root, *netns, pids, &mut snap);
    }

    // Join sockets to the processes that hold them.
    let mut by_inode: HashMap<u64, usize> = HashMap::with_capacity(snap.sockets.len());
    for (i, s) in snap.sockets.iter().enumerate() {
        if s.inode != 0 {
            by_inode.insert(s.inode, i);
        }
    }
    for p in &snap.processes {
        for inode in &p.socket_inodes {
            if let Some(&i) = by_inode.get(inode) {
                snap.sockets[i].owners.push(p.pid);
            }
        }
    }
    Ok(snap)
}

fn read_process(
    h: &ProcHandle,
    proc_root: &Path,
    users: &HashMap<u32, String>,
    gaps: &mut Vec<Gap>,
) -> Result<Process, ProcError> {
    let stat = h.stat()?;
    let status = h.status()?;
    let uid = status.euid;
    let kernel_thread = stat.flags & PF_KTHREAD != 0;
    let mut p = Process {
        pid: stat.pid,
        ppid: stat.ppid,
        uid,
        user: users.get(&uid).cloned(),
        comm: stat.comm.clone(),
        start_ticks: stat.starttime,
        cpu_ticks: stat.utime + stat.stime,
        threads: stat.num_threads,
        nice: stat.nice,
        rss_bytes: stat.rss * procfs::page_size(),
        kernel_thread,
        ..Process::default()
    };
    if kernel_thread {
        return Ok(p);
    }
    p.cmdline = read_cmdline(h)?;
    match h.exe() {
        Ok(path) => {
            let s = path.to_string_lossy();
            match s.strip_suffix(" (deleted)") {
                Some(stripped) => {
                    p.exe_deleted = true;
                    p.exe = Some(stripped.to_string());
                }
                None => {
                    p.exe_deleted = s.starts_with("/memfd:");
                    p.exe = Some(s.into_owned());
                }
            }
        }
        // Zombies and processes whose main thread exited have no exe link.
        Err(ProcError::NotFound(_)) => {}
        Err(e) if is_vanished(&e) => return Err(e),
        // Not allowed to follow it (another user's process, or ptrace rules): the rest of
        // the process is still worth matching.
        Err(e) => gaps.push(Gap {
            what: proc_root
                .join(stat.pid.to_string())
                .join("exe")
                .display()
                .to_string(),
            error: e.to_string(),
        }),
    }
    let dir = proc_root.join(stat.pid.to_string());
    match read_ns_inode(&dir.join("ns/net")) {
        Ok(inode) => p.netns = inode,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(3) => {
            return Err(ProcError::NotFound(None))
        }
        Err(e) => gaps.push(Gap {
            what: dir.join("ns/net").display().to_string(),
            error: e.to_string(),
        }),
    }
    if let Some(text) = read_trimmed(&dir.join("cgroup")) {
        p.cgroup = cgroup_path(&text);
        p.container = p.cgroup.as_deref().and_then(container_id);
    }
    match h.fd() {
        Ok(fds) => {
            for fd in fds {
                match fd {
                    Ok(fd) => {
                        if let FDTarget::Socket(inode) = fd.target {
                            p.socket_inodes.push(inode);
                        }
                    }
                    // An fd closed between readdir and readlink is normal.
                    Err(e) if is_vanished(&e) => {}
                    Err(e) => gaps.push(Gap {
                        what: dir.join("fd").display().to_string(),
                        error: e.to_string(),
                    }),
                }
            }
        }
        Err(e) if is_vanished(&e) => return Err(e),
        Err(e) => gaps.push(Gap {
            what: dir.join("fd").display().to_string(),
            error: e.to_string(),
        }),
    }
    p.socket_inodes.sort_unstable();
    p.socket_inodes.dedup();
    Ok(p)
}

const PF_KTHREAD: u32 = 0x0020_0000;

fn read_cmdline(h: &ProcHandle) -> Result<Vec<String>, ProcError> {
    let mut buf = Vec::new();
    let mut f = h.open_relative("cmdline")?;
    f.read_to_end(&mut buf)
        .map_err(|e| ProcError::Io(e, None))?;
    Ok(split_cmdline(&buf))
}

/// Splits a NUL-separated `cmdline` into arguments, replacing non-UTF-8 bytes.
pub(crate) fn split_cmdline(buf: &[u8]) -> Vec<String> {
    let buf = buf.strip_suffix(b"\0").unwrap_or(buf);
    if buf.is_empty() {
        return Vec::new();
    }
    buf.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn is_vanished(e: &ProcError) -> bool {
    match e {
        ProcError::NotFound(_) => true,
        ProcError::Io(io, _) => io.raw_os_error() == Some(3), // ESRCH
        _ => false,
    }
}

fn read_uptime(proc_root: &Path) -> Result<f64, InventoryError> {
    let path = proc_root.join("uptime");
    let text = std::fs::read_to_string(&path).map_err(|source| InventoryError::Read {
        path: path.clone(),
        source,
    })?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| InventoryError::Read {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
        })
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end().to_string())
}

fn read_ns_inode(link: &Path) -> std::io::Result<u64> {
    let target = std::fs::read_link(link)?;
    parse_ns_link(&target.to_string_lossy()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected namespace link {target:?}"),
        )
    })
}

/// `net:[4026531840]` → 4026531840.
pub(crate) fn parse_ns_link(s: &str) -> Option<u64> {
    s.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// The cgroup v2 path (`0::/path`), else the first v1 hierarchy's path.
pub(crate) fn cgroup_path(text: &str) -> Option<String> {
    let mut first = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, _, path) = (parts.next()?, parts.next()?, parts.next()?);
        if id == "0" {
            return Some(path.to_string());
        }
        if first.is_none() {
            first = Some(path.to_string());
        }
    }
    first
}

/// A 64-hex container id in a cgroup path: `/docker/<id>`, `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `libpod-<id>.scope`, `/kubepods/…/<id>`.
pub(crate) fn container_id(cgroup: &str) -> Option<String> {
    for segment in cgroup.rsplit('/') {
        let trimmed = segment.strip_suffix(".scope").unwrap_or(segment);
        let candidate = trimmed.rsplit(['-', ':']).next().unwrap_or(trimmed);
        if candidate.len() == 64 && candidate.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(candidate.to_string());
        }
    }
    None
}

/// uid → name from a passwd file; an unreadable file gives an empty map (uids stay numeric).
fn read_passwd(path: &Path) -> HashMap<u32, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) {
            if let Ok(uid) = uid.parse::<u32>() {
                users.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }
    users
}

/// Hashes `/proc/<pid>/exe` (works for deleted files too), once per executable path.
fn hash_exe(
    proc_root: &Path,
    p: &Process,
    cache: &mut HashMap<String, Option<String>>,
    gaps: &mut Vec<Gap>,
) -> Option<String> {
    use sha2::{Digest, Sha256};
    let key = format!(
        "{}{}",
        p.exe.as_deref()?,
        if p.exe_deleted { p.pid } else { 0 }
    );
    if let Some(h) = cache.get(&key) {
        return h.clone();
    }
    let path = proc_root.join(p.pid.to_string()).join("exe");
    let result = (|| -> std::io::Result<String> {
        let mut f = std::fs::File::open(&path)?;
        if f.metadata()?.len() > MAX_HASH_BYTES {
            return Err(std::io::Error::other("executable too large to hash"));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    })();
    let hash = match result {
        Ok(h) => Some(h),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            gaps.push(Gap {
                what: path.display().to_string(),
                error: e.to_string(),
            });
            None
        }
    };
    cache.insert(key, hash.clone());
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_split_keeps_empty_args_and_replaces_bad_utf8() {
        assert_eq!(split_cmdline(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert_eq!(split_cmdline(b""), Vec::<String>::new());
        assert_eq!(split_cmdline(b"x\xffy\0"), vec!["x\u{fffd}y"]);
        // Processes may overwrite their argv without NULs (setproctitle).
        assert_eq!(split_cmdline(b"nginx: worker"), vec!["nginx: worker"]);
    }

    #[test]
    fn ns_link() {
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("net:4026531840"), None);
    }

    #[test]
    fn cgroups_and_containers() {
        let v2 = "0::/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n";
        let path = cgroup_path(v2);
        assert_eq!(
            path.as_deref().and_then(container_id).as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        let v1 = "12:pids:/docker/abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd\n11:cpu:/x\n";
        assert_eq!(
            cgroup_path(v1).as_deref().and_then(container_id).as_deref(),
            Some("abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd")
        );
        assert_eq!(
            container_id("/user.slice/user-1000.slice/session-2.scope"),
            None
        );
    }
}
