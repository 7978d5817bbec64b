//! Cross-checks of the process listing, and the host artefacts that hide processes or tune
//! a host for mining. Reads only; judges nothing (`detect` does, with `subject = "host"`).
//!
//! A user-space rootkit (a library in `/etc/ld.so.preload` hooking `readdir`, `open`,
//! `fopen`) cannot blind the inventory, which makes its system calls directly
//! (`procdir.rs`). What can still hide a process from the `/proc` listing is a kernel module
//! hooking `getdents`, or a mount over `/proc/<pid>`. Both leave the process in the cgroup
//! file system, which neither touches: every process is in exactly one cgroup of each
//! hierarchy, so the pids of every `cgroup.procs` of one hierarchy are every process. A pid
//! found there and not among the processes read is either new (started after the listing),
//! gone, or hidden; it is read again by name and probed with `kill(pid, 0)`:
//!
//! - readable by name, and missing from a second listing taken after the cgroup walk:
//!   [`HiddenHow::Unlisted`] (and inventoried like any process);
//! - not readable (`/proc/<pid>` is empty or gone) while `kill(pid, 0)` finds the process:
//!   [`HiddenHow::Masked`].
//!
//! The kernel's task count (`/proc/loadavg`, fourth field `running/total`) is compared with
//! the threads of the processes read, the lower of a reading before and after the listing
//! (tasks come and go: a gap of a few is normal; signatures set the threshold). Only when
//! the `/proc` read shows the machine's initial PID namespace: the count is the machine's,
//! and a container's `/proc` lists only its own processes.
//!
//! Host artefacts: `/etc/ld.so.preload` entries, `LD_PRELOAD` in the agent's own environment
//! (`/proc/self/environ`: the kernel's copy, which a library's `unsetenv` does not change),
//! mounts on `/proc/<pid>` (`/proc/self/mountinfo`), huge page pools
//! (`/sys/kernel/mm/hugepages`, else `/proc/meminfo`), the `msr` module and its
//! `allow_writes` parameter.
//!
//! Cost per scan: four small files, `/proc/self/mountinfo`, and one directory listing plus
//! one `cgroup.procs` read per cgroup of one hierarchy (bounded by [`MAX_CGROUPS`]).

use super::model::{CgroupWalk, Gap, HugePages, Msr, ProcMount};
use super::procdir::{self, is_vanished, parse_u64, Buf};
use rustix::fs::{FileType, OFlags, RawDir};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// The cgroup walk stops after this many cgroups (and says so in a gap).
pub(super) const MAX_CGROUPS: usize = 65_536;
/// … or this deep.
const MAX_DEPTH: usize = 64;

/// The inode of a namespace link's target, `pid:[4026531836]`.
pub(super) fn ns_inode(link: &[u8]) -> Option<u64> {
    let open = link.iter().position(|&b| b == b'[')?;
    let digits = link[open + 1..].strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The total of `/proc/loadavg`'s `running/total` field: tasks (threads) of the system.
pub(super) fn loadavg_tasks(text: &[u8]) -> Option<u64> {
    let field = text.split(|&b| b == b' ').nth(3)?;
    let total = field.split(|&b| b == b'/').nth(1)?;
    parse_u64(total)
}

/// The entries of `/etc/ld.so.preload`: separated by white space or colons (ld.so(8)).
pub(super) fn preload_entries(text: &[u8]) -> Vec<String> {
    text.split(|&b| b.is_ascii_whitespace() || b == b':')
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

/// The value of `name` in a NUL-separated environment block (`/proc/<pid>/environ`), when
/// set and not empty.
pub(super) fn environ_var(block: &[u8], name: &str) -> Option<String> {
    block
        .split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
        .next_back()
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// What `/proc/self/mountinfo` says that the cross-check needs.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Mounts {
    pub proc_mounts: Vec<ProcMount>,
    /// The cgroup hierarchy to walk: the unified (v2) one if mounted, else the first v1.
    pub cgroup: Option<(String, u8)>,
    /// The procfs at `proc_root` is mounted with `hidepid` (other users' processes may be
    /// invisible to an unprivileged reader: not evidence of hiding).
    pub hidepid: bool,
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`).
fn unescape(field: &[u8]) -> String {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let oct = &field[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, &d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo (proc(5)): `id parent maj:min root mount-point options [optional…] -
/// fstype source super-options`.
pub(super) fn parse_mountinfo(text: &[u8], proc_root: &str) -> Mounts {
    struct Line {
        root: String,
        mount_point: String,
        fstype: String,
        source: String,
        super_opts: String,
    }
    let mut lines = Vec::new();
    for raw in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = raw.split(|&b| b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if dash < 6 || fields.len() < dash + 3 {
            continue;
        }
        lines.push(Line {
            root: unescape(fields[3]),
            mount_point: unescape(fields[4]),
            fstype: unescape(fields[dash + 1]),
            source: unescape(fields[dash + 2]),
            super_opts: fields
                .get(dash + 3)
                .map(|f| unescape(f))
                .unwrap_or_default(),
        });
    }
    let mut m = Mounts::default();
    let procs: Vec<&str> = lines
        .iter()
        .filter(|l| l.fstype == "proc")
        .map(|l| l.mount_point.as_str())
        .collect();
    for l in &lines {
        if l.fstype == "proc" && l.mount_point == proc_root {
            m.hidepid = l.super_opts.split(',').any(|o| {
                o.strip_prefix("hidepid=")
                    .is_some_and(|v| v != "0" && v != "off")
            });
        }
        for p in &procs {
            let Some(rest) = l
                .mount_point
                .strip_prefix(p)
                .and_then(|r| r.strip_prefix('/'))
            else {
                continue;
            };
            let first = rest.split('/').next().unwrap_or("");
            if let Some(pid) = parse_u64(first.as_bytes()).and_then(|v| i32::try_from(v).ok()) {
                m.proc_mounts.push(ProcMount {
                    pid,
                    mount_point: l.mount_point.clone(),
                    fstype: l.fstype.clone(),
                    source: l.source.clone(),
                    root: l.root.clone(),
                });
                break;
            }
        }
    }
    m.cgroup = lines
        .iter()
        .find(|l| l.fstype == "cgroup2")
        .map(|l| (l.mount_point.clone(), 2))
        .or_else(|| {
            lines
                .iter()
                .find(|l| l.fstype == "cgroup")
                .map(|l| (l.mount_point.clone(), 1))
        });
    m.proc_mounts
        .sort_by(|a, b| (a.pid, &a.mount_point).cmp(&(b.pid, &b.mount_point)));
    m
}

/// The pids of every `cgroup.procs` under `mount`: (pid, index of its cgroup in the names).
#[derive(Debug, Default)]
pub(super) struct CgroupPids {
    pub pids: Vec<(i32, u32)>,
    /// Cgroup paths relative to the mount (`/` for the root).
    pub names: Vec<String>,
}

/// Walks one cgroup hierarchy, reading every `cgroup.procs`. Stops after [`MAX_CGROUPS`]
/// cgroups or [`MAX_DEPTH`] levels, with a gap.
pub(super) fn walk_cgroups(
    mount: &Path,
    version: u8,
    buf: &mut Buf,
    dents: &mut Vec<u8>,
    gaps: &mut Vec<Gap>,
) -> Option<(CgroupPids, CgroupWalk)> {
    let root = match procdir::open_path(mount, OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => {
            gaps.push(Gap {
                what: mount.display().to_string(),
                error: e.to_string(),
            });
            return None;
        }
    };
    if dents.capacity() < procdir::DENTS_BUF {
        *dents = Vec::with_capacity(procdir::DENTS_BUF);
    }
    let mut out = CgroupPids::default();
    // Relative paths ("." for the root) and their depth.
    let mut stack: Vec<(String, usize)> = vec![(".".to_string(), 0)];
    let mut truncated = None;
    while let Some((rel, depth)) = stack.pop() {
        if out.names.len() >= MAX_CGROUPS {
            truncated = Some(format!("stopped after {MAX_CGROUPS} cgroups"));
            break;
        }
        let dir = match procdir::open_at(root.as_fd(), rel.as_str(), OFlags::DIRECTORY) {
            Ok(d) => d,
            // Removed while walking.
            Err(e) if is_vanished(e) => continue,
            Err(e) => {
                gaps.push(Gap {
                    what: format!("{}/{rel}", mount.display()),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let index = out.names.len() as u32;
        let name = rel.strip_prefix('.').unwrap_or(&rel);
        out.names
            .push(if name.is_empty() { "/" } else { name }.to_string());
        match buf.read_at(dir.as_fd(), c"cgroup.procs", false) {
            Ok(text) => {
                for line in text.split(|&b| b == b'\n') {
                    if let Some(pid) = parse_u64(line).and_then(|v| i32::try_from(v).ok()) {
                        // 0: a process of another pid namespace, invisible from here.
                        if pid > 0 {
                            out.pids.push((pid, index));
                        }
                    }
                }
            }
            Err(e) if is_vanished(e) => continue,
            Err(e) => gaps.push(Gap {
                what: format!("{}/{rel}/cgroup.procs", mount.display()),
                error: e.to_string(),
            }),
        }
        if depth >= MAX_DEPTH {
            truncated = Some(format!("stopped at depth {MAX_DEPTH}"));
            continue;
        }
        subdirs(dir.as_fd(), dents, |name| {
            stack.push((format!("{rel}/{name}"), depth + 1));
        });
    }
    if let Some(why) = truncated {
        gaps.push(Gap {
            what: format!("{} (cgroup walk)", mount.display()),
            error: why,
        });
    }
    let walk = CgroupWalk {
        mount: mount.display().to_string(),
        version,
        cgroups: out.names.len() as u32,
        pids: out.pids.len() as u32,
    };
    Some((out, walk))
}

/// Calls `each` with the name of every sub-directory of `dir`.
fn subdirs(dir: BorrowedFd<'_>, dents: &mut Vec<u8>, mut each: impl FnMut(&str)) {
    let mut entries = RawDir::new(dir, dents.spare_capacity_mut());
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        if entry.file_type() != FileType::Directory || name == b"." || name == b".." {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(name) {
            each(name);
        }
    }
}

/// The entries of a directory (sysfs), by direct system calls.
fn list_dir(path: &Path, dents: &mut Vec<u8>) -> Vec<String> {
    let Ok(dir) = procdir::open_path(path, OFlags::DIRECTORY) else {
        return Vec::new();
    };
    if dents.capacity() < procdir::DENTS_BUF {
        *dents = Vec::with_capacity(procdir::DENTS_BUF);
    }
    let mut out = Vec::new();
    let mut entries = RawDir::new(&dir, dents.spare_capacity_mut());
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    out
}

/// A small file's first line as a number.
fn read_number(path: &Path, buf: &mut Buf) -> Option<u64> {
    let text = buf.read_path(path).ok()?;
    let line = text.split(|&b| b == b'\n').next()?;
    parse_u64(line.trim_ascii())
}

/// `HugePages_Total` and `Hugepagesize` (kB) of `/proc/meminfo`.
pub(super) fn meminfo_hugepages(text: &[u8]) -> Option<HugePages> {
    let mut total = None;
    let mut size_kb = None;
    for line in text.split(|&b| b == b'\n') {
        let value = |key: &[u8]| {
            let rest = line.strip_prefix(key)?.trim_ascii();
            let num = rest.split(|&b| b == b' ').next()?;
            parse_u64(num)
        };
        total = total.or_else(|| value(b"HugePages_Total:"));
        size_kb = size_kb.or_else(|| value(b"Hugepagesize:"));
    }
    Some(HugePages {
        size_kb: size_kb?,
        total: total?,
    })
}

/// Huge page pools with pages reserved: every size under
/// `<sys>/kernel/mm/hugepages/hugepages-<N>kB/nr_hugepages`, else the default size from
/// `<proc>/meminfo`.
pub(super) fn hugepages(
    sys_root: &Path,
    proc_root: &Path,
    buf: &mut Buf,
    dents: &mut Vec<u8>,
) -> Vec<HugePages> {
    let base = sys_root.join("kernel/mm/hugepages");
    let mut pools: Vec<HugePages> = Vec::new();
    for name in list_dir(&base, dents) {
        let Some(size_kb) = name
            .strip_prefix("hugepages-")
            .and_then(|n| n.strip_suffix("kB"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        if let Some(total) = read_number(&base.join(&name).join("nr_hugepages"), buf) {
            pools.push(HugePages { size_kb, total });
        }
    }
    if pools.is_empty() {
        if let Some(p) = buf
            .read_path(proc_root.join("meminfo"))
            .ok()
            .and_then(meminfo_hugepages)
        {
            pools.push(p);
        }
    }
    pools.retain(|p| p.total > 0);
    pools.sort_by_key(|p| p.size_kb);
    pools
}

/// The `msr` module, when `<sys>/module/msr` exists.
pub(super) fn msr(sys_root: &Path, buf: &mut Buf) -> Option<Msr> {
    let dir = sys_root.join("module/msr");
    procdir::open_path(&dir, OFlags::DIRECTORY).ok()?;
    let allow_writes = buf
        .read_path(dir.join("parameters/allow_writes"))
        .ok()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .filter(|s| !s.is_empty());
    Some(Msr { allow_writes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_inodes() {
        assert_eq!(ns_inode(b"pid:[4026531836]"), Some(4_026_531_836));
        assert_eq!(ns_inode(b"pid:[4026532712]"), Some(4_026_532_712));
        assert_eq!(ns_inode(b"pid:[]"), None);
        assert_eq!(ns_inode(b"pid:[12"), None);
        assert_eq!(ns_inode(b"garbage"), None);
    }

    #[test]
    fn loadavg_total() {
        assert_eq!(loadavg_tasks(b"5.36 7.85 20.73 5/422 6480\n"), Some(422));
        assert_eq!(loadavg_tasks(b"0.00 0.01 0.05 1/93 12"), Some(93));
        assert_eq!(loadavg_tasks(b"garbage"), None);
        assert_eq!(loadavg_tasks(b"1 2 3 4 5"), None);
    }

    #[test]
    fn preload_file_entries() {
        assert_eq!(
            preload_entries(b"/usr/local/lib/libprocesshider.so\n/lib/x.so:/lib/y.so  \n"),
            vec![
                "/usr/local/lib/libprocesshider.so",
                "/lib/x.so",
                "/lib/y.so"
            ]
        );
        assert!(preload_entries(b"\n \t\n").is_empty());
    }

    #[test]
    fn environment_variables() {
        let env = b"PATH=/bin\0LD_PRELOAD=/tmp/h.so\0LD_PRELOADX=no\0";
        assert_eq!(environ_var(env, "LD_PRELOAD").as_deref(), Some("/tmp/h.so"));
        assert_eq!(environ_var(b"LD_PRELOAD=\0", "LD_PRELOAD"), None);
        assert_eq!(environ_var(b"PATH=/bin\0", "LD_PRELOAD"), None);
    }

    const MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
25 22 0:23 / /proc/sys/fs/binfmt_misc rw,relatime shared:13 - autofs systemd-1 rw
30 1 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/pids rw shared:14 - cgroup cgroup rw,pids
90 22 254:1 /tmp/empty\\040dir /proc/4242 rw,relatime - ext4 /dev/vda1 rw
91 22 0:45 / /proc/77/task rw,relatime - tmpfs none rw
";

    #[test]
    fn mountinfo_proc_mounts_and_cgroups() {
        let m = parse_mountinfo(MOUNTINFO.as_bytes(), "/proc");
        assert_eq!(m.cgroup, Some(("/sys/fs/cgroup/unified".to_string(), 2)));
        assert!(!m.hidepid);
        let pids: Vec<i32> = m.proc_mounts.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![77, 4242]);
        assert_eq!(m.proc_mounts[1].root, "/tmp/empty dir");
        assert_eq!(m.proc_mounts[1].source, "/dev/vda1");
        assert_eq!(m.proc_mounts[1].fstype, "ext4");
        // v1 only: the first hierarchy; hidepid noticed.
        let v1 = "22 1 0:21 / /proc rw - proc proc rw,hidepid=invisible\n\
                  32 30 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let m = parse_mountinfo(v1.as_bytes(), "/proc");
        assert_eq!(m.cgroup, Some(("/sys/fs/cgroup/pids".to_string(), 1)));
        assert!(m.hidepid);
        assert!(m.proc_mounts.is_empty());
        // Lines that are not mountinfo are skipped.
        assert_eq!(
            parse_mountinfo(b"x y z\n- a b\n", "/proc"),
            Mounts::default()
        );
    }

    #[test]
    fn meminfo_pool() {
        let text = b"MemTotal: 1 kB\nHugePages_Total:    1280\nHugePages_Free: 0\nHugepagesize:       2048 kB\n";
        assert_eq!(
            meminfo_hugepages(text),
            Some(HugePages {
                size_kb: 2048,
                total: 1280
            })
        );
        assert_eq!(meminfo_hugepages(b"MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn sysfs_fixtures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path().join("sys");
        let pool = |size: &str, n: &str| {
            let d = sys.join(format!("kernel/mm/hugepages/hugepages-{size}kB"));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("nr_hugepages"), n).expect("write");
        };
        pool("2048", "1280\n");
        pool("1048576", "0\n");
        let mut buf = Buf::default();
        let mut dents = Vec::new();
        assert_eq!(
            hugepages(&sys, dir.path(), &mut buf, &mut dents),
            vec![HugePages {
                size_kb: 2048,
                total: 1280
            }]
        );
        assert_eq!(msr(&sys, &mut buf), None);
        std::fs::create_dir_all(sys.join("module/msr/parameters")).expect("mkdir");
        assert_eq!(msr(&sys, &mut buf), Some(Msr { allow_writes: None }));
        std::fs::write(sys.join("module/msr/parameters/allow_writes"), "on\n").expect("write");
        assert_eq!(
            msr(&sys, &mut buf),
            Some(Msr {
                allow_writes: Some("on".into())
            })
        );
    }

    #[test]
    fn cgroup_walk_of_a_fixture_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("cgroup.procs"), "1\n2\n").expect("write");
        std::fs::create_dir_all(root.join("system.slice/cron.service")).expect("mkdir");
        std::fs::write(root.join("system.slice/cgroup.procs"), "").expect("write");
        std::fs::write(
            root.join("system.slice/cron.service/cgroup.procs"),
            "300\n0\n",
        )
        .expect("write");
        let mut gaps = Vec::new();
        let (pids, walk) =
            walk_cgroups(root, 2, &mut Buf::default(), &mut Vec::new(), &mut gaps).expect("walk");
        assert!(gaps.is_empty(), "{gaps:?}");
        assert_eq!(walk.cgroups, 3);
        assert_eq!(walk.pids, 3);
        let mut named: Vec<(i32, &str)> = pids
            .pids
            .iter()
            .map(|&(p, i)| (p, pids.names[i as usize].as_str()))
            .collect();
        named.sort();
        assert_eq!(
            named,
            vec![(1, "/"), (2, "/"), (300, "/system.slice/cron.service")]
        );
    }
}
