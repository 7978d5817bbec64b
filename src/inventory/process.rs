//! Reading one process: what the inventory remembers of it between scans ([`Entry`]), and
//! the reads of a new process (everything) and of a known one (`stat` and the directory
//! owner, the rest only when its image changed, `comm` changed, or its turn in the refresh
//! came), each part of `/proc/<pid>` through a descriptor of its directory.

use super::model::{Gap, Process};
use super::procdir::{self, is_vanished, open_pid_dir, FdError, FileKey};
use super::{hash, Inventory, FD_REFRESH_SCANS, REFRESH_SCANS};
use aupwatch_proto::bounds::MAX_CMDLINE_BYTES;
use nix::errno::Errno;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// What of a process was read, for keeping the gaps of each part until it is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Cmdline,
    /// `exe` (and its hash) and `cgroup`.
    Exe,
    Netns,
    Fds,
}

pub(super) const ALL_PARTS: [Part; 4] = [Part::Cmdline, Part::Exe, Part::Netns, Part::Fds];
pub(super) const REFRESH_PARTS: [Part; 3] = [Part::Cmdline, Part::Exe, Part::Netns];

/// What the inventory remembers of one process between scans.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) p: Process,
    /// Program image addresses from `stat` (see `procdir::Stat::image`).
    pub(super) image: [u64; 5],
    /// [`Users::generation`] when `p.user` was looked up.
    pub(super) users_generation: u64,
    pub(super) exe_key: Option<FileKey>,
    pub(super) gaps: Vec<(Part, Gap)>,
    /// Its `fd/` cannot be listed (permission): not a candidate for unknown sockets.
    pub(super) fds_unreadable: bool,
}

impl Entry {
    pub(super) fn set_gap(&mut self, part: Part, gap: Option<Gap>) {
        self.gaps.retain(|(p, _)| *p != part);
        if let Some(g) = gap {
            self.gaps.push((part, g));
        }
    }
}

pub(super) enum Outcome {
    Live(Box<Entry>),
    Vanished,
    Gap(Gap),
}

/// The process exited while it was being read.
pub(super) struct Vanished;

/// The values of `stat` a scan keeps (copied out of the read buffer).
pub(super) struct StatVals {
    pub(super) ppid: i32,
    pub(super) cpu_ticks: u64,
    pub(super) threads: i64,
    pub(super) nice: i64,
    pub(super) policy: u32,
    pub(super) rss_pages: u64,
    pub(super) start_ticks: u64,
    pub(super) image: [u64; 5],
    pub(super) kernel_thread: bool,
}

impl StatVals {
    pub(super) fn of(st: &procdir::Stat<'_>) -> StatVals {
        StatVals {
            ppid: st.ppid,
            cpu_ticks: st.utime.saturating_add(st.stime),
            threads: st.threads,
            nice: st.nice,
            policy: st.policy,
            rss_pages: st.rss_pages,
            start_ticks: st.start_ticks,
            image: st.image,
            kernel_thread: st.kernel_thread(),
        }
    }

    pub(super) fn same_process(&self, e: &Entry) -> bool {
        e.p.start_ticks == self.start_ticks
            && e.image == self.image
            && e.p.kernel_thread == self.kernel_thread
    }
}

impl Inventory {
    /// Reads a process seen for the first time: everything, through a descriptor of its
    /// directory.
    pub(super) fn read_new(&mut self, proc_dir: BorrowedFd<'_>, pid: i32) -> Outcome {
        let dir = match open_pid_dir(proc_dir, pid) {
            Ok(d) => d,
            Err(e) if is_vanished(e) => return Outcome::Vanished,
            Err(e) => return Outcome::Gap(self.gap(pid, "", e.to_string())),
        };
        // The owner of /proc/<pid> is the effective uid. The kernel shows the files *in*
        // the directory of a non-dumpable process (setuid, PR_SET_DUMPABLE 0) as root's,
        // but not the directory itself (`task_dump_owner`), so no `status` is needed.
        let owner = match procdir::dir_owner(dir.as_fd()) {
            Ok(uid) => uid,
            Err(e) if is_vanished(e) => return Outcome::Vanished,
            Err(e) => return Outcome::Gap(self.gap(pid, "", e.to_string())),
        };
        let (vals, comm) = match self.buf.read_at(dir.as_fd(), c"stat", true) {
            Ok(b) => match procdir::parse_stat(b) {
                // Another process's directory mounted over this one (a decoy): not this
                // process; the cross-check tells whether it is masked.
                Some(st) if st.pid != pid => return Outcome::Vanished,
                Some(st) => (
                    StatVals::of(&st),
                    String::from_utf8_lossy(st.comm).into_owned(),
                ),
                None => return Outcome::Gap(self.gap(pid, "/stat", "unparseable".into())),
            },
            Err(e) if is_vanished(e) => return Outcome::Vanished,
            Err(e) => return Outcome::Gap(self.gap(pid, "/stat", e.to_string())),
        };
        let mut e = Box::new(Entry {
            p: Process {
                pid,
                comm,
                uid: owner,
                start_ticks: vals.start_ticks,
                kernel_thread: vals.kernel_thread,
                ..Process::default()
            },
            image: vals.image,
            users_generation: 0,
            exe_key: None,
            gaps: Vec::new(),
            fds_unreadable: false,
        });
        self.apply(&mut e, &vals, owner);
        if !vals.kernel_thread {
            for part in ALL_PARTS {
                if self.read_part(dir.as_fd(), &mut e, part).is_err() {
                    return Outcome::Vanished;
                }
            }
        }
        Outcome::Live(e)
    }

    /// Reads a process known from the last scan: its owner and `stat` by path (two system
    /// calls and a read), more only if it changed or its turn to be refreshed came.
    pub(super) fn read_known(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        pid: i32,
        mut e: Box<Entry>,
    ) -> Outcome {
        let turn = (pid.unsigned_abs() as u64).wrapping_add(self.scan);
        let refresh: &[Part] = if e.p.kernel_thread {
            &[]
        } else if turn % FD_REFRESH_SCANS == 0 {
            &ALL_PARTS
        } else if turn % REFRESH_SCANS == 0 {
            &REFRESH_PARTS
        } else {
            &[]
        };
        // Its turn: everything is read through a descriptor of the directory.
        let dir = if refresh.is_empty() {
            None
        } else {
            match open_pid_dir(proc_dir, pid) {
                Ok(d) => Some(d),
                Err(err) if is_vanished(err) => return Outcome::Vanished,
                Err(err) => return Outcome::Gap(self.gap(pid, "", err.to_string())),
            }
        };
        let path = PidPath::new(pid);
        let owner = match &dir {
            Some(d) => procdir::dir_owner(d.as_fd()),
            None => rustix::fs::statat(proc_dir, path.dir(), rustix::fs::AtFlags::empty())
                .map(|st| st.st_uid)
                .map_err(procdir::errno),
        };
        let owner = match owner {
            Ok(uid) => uid,
            Err(err) if is_vanished(err) => return Outcome::Vanished,
            Err(err) => return Outcome::Gap(self.gap(pid, "", err.to_string())),
        };
        let mut path = path;
        let stat = match &dir {
            Some(d) => self.buf.read_at(d.as_fd(), c"stat", true),
            None => self.buf.read_at(proc_dir, path.file(b"stat"), true),
        };
        let stat = match stat {
            Ok(b) => b,
            Err(err) if is_vanished(err) => return Outcome::Vanished,
            Err(err) => return Outcome::Gap(self.gap(pid, "/stat", err.to_string())),
        };
        let Some(st) = procdir::parse_stat(stat) else {
            return Outcome::Gap(self.gap(pid, "/stat", "unparseable".into()));
        };
        let vals = StatVals::of(&st);
        if !vals.same_process(&e) {
            // A reused pid, or the same process running a new program: a new process.
            return self.read_new(proc_dir, pid);
        }
        let comm_changed = e.p.comm.as_bytes() != st.comm;
        if comm_changed {
            e.p.comm = String::from_utf8_lossy(st.comm).into_owned();
        }
        self.apply(&mut e, &vals, owner);
        if vals.kernel_thread {
            return Outcome::Live(e);
        }
        let (dir, parts): (OwnedFd, &[Part]) = match dir {
            Some(d) => (d, refresh),
            None if comm_changed => {
                // Read through a descriptor of the directory, after checking it is still
                // the process whose stat was just read.
                let d = match open_pid_dir(proc_dir, pid) {
                    Ok(d) => d,
                    Err(err) if is_vanished(err) => return Outcome::Vanished,
                    Err(err) => return Outcome::Gap(self.gap(pid, "", err.to_string())),
                };
                let same = match self.buf.read_at(d.as_fd(), c"stat", true) {
                    Ok(b) => {
                        procdir::parse_stat(b).is_some_and(|st| StatVals::of(&st).same_process(&e))
                    }
                    Err(err) if is_vanished(err) => return Outcome::Vanished,
                    Err(_) => false,
                };
                if !same {
                    return self.read_new(proc_dir, pid);
                }
                (d, &[Part::Cmdline])
            }
            None => return Outcome::Live(e),
        };
        for &part in parts {
            if self.read_part(dir.as_fd(), &mut e, part).is_err() {
                return Outcome::Vanished;
            }
        }
        Outcome::Live(e)
    }

    /// The per-scan values: from `stat`, and the uid from the directory owner.
    pub(super) fn apply(&self, e: &mut Entry, vals: &StatVals, owner: u32) {
        e.p.ppid = vals.ppid;
        e.p.cpu_ticks = vals.cpu_ticks;
        e.p.threads = vals.threads;
        e.p.nice = vals.nice;
        e.p.sched_policy = vals.policy;
        e.p.rss_bytes = vals.rss_pages.saturating_mul(self.page_size);
        if e.p.uid != owner {
            e.p.uid = owner;
            e.users_generation = 0;
        }
    }

    pub(super) fn read_part(
        &mut self,
        dir: BorrowedFd<'_>,
        e: &mut Entry,
        part: Part,
    ) -> Result<(), Vanished> {
        let pid = e.p.pid;
        match part {
            Part::Cmdline => {
                let mut gap = None;
                match self.buf.read_at_most(dir, c"cmdline", MAX_CMDLINE_BYTES) {
                    Ok((b, cut)) => {
                        e.p.cmdline = procdir::split_cmdline(b);
                        e.p.cmdline_truncated = cut;
                    }
                    Err(err) if is_vanished(err) => return Err(Vanished),
                    Err(err) => {
                        e.p.cmdline.clear();
                        e.p.cmdline_truncated = None;
                        gap = Some(self.gap(pid, "/cmdline", err.to_string()));
                    }
                }
                e.set_gap(Part::Cmdline, gap);
            }
            Part::Exe => {
                let mut gap = None;
                match procdir::readlink(dir, c"exe") {
                    Ok(target) => {
                        let (path, deleted) = procdir::exe_path(target.as_encoded_bytes());
                        e.p.exe = Some(path);
                        e.p.exe_deleted = deleted;
                    }
                    // Zombies and processes whose main thread exited have no exe link.
                    Err(Errno::ENOENT) => {
                        e.p.exe = None;
                        e.p.exe_deleted = false;
                    }
                    Err(err) if is_vanished(err) => return Err(Vanished),
                    // Not allowed to follow it (another user's process, or ptrace rules):
                    // the rest of the process is still worth matching.
                    Err(err) => {
                        e.p.exe = None;
                        e.p.exe_deleted = false;
                        gap = Some(self.gap(pid, "/exe", err.to_string()));
                    }
                }
                e.p.exe_sha256 = None;
                e.p.exe_strings.clear();
                e.exe_key = None;
                if let (true, Some(exe)) = (self.exes.wanted().any(), &e.p.exe) {
                    match self.exes.hash(dir, pid, exe) {
                        hash::Hashed::Facts(key, facts, g) => {
                            e.exe_key = Some(key);
                            e.p.exe_sha256 = facts.sha256;
                            e.p.exe_strings = facts.strings;
                            gap = gap.or(g);
                        }
                        hash::Hashed::Nothing => {}
                        hash::Hashed::Gap(g) => gap = gap.or(Some(g)),
                    }
                }
                e.set_gap(Part::Exe, gap);
                // The cgroup is read with the executable: neither changes without an exec
                // or a refresh noticing.
                if let Ok(b) = self.buf.read_at(dir, c"cgroup", true) {
                    e.p.cgroup = procdir::cgroup_path(String::from_utf8_lossy(b).trim_end());
                    e.p.container = e.p.cgroup.as_deref().and_then(procdir::container_id);
                }
            }
            Part::Netns => {
                let mut gap = None;
                match procdir::readlink(dir, c"ns/net") {
                    Ok(t) => match procdir::parse_ns_link(t.as_encoded_bytes()) {
                        Some(ns) => e.p.netns = ns,
                        None => {
                            gap = Some(self.gap(
                                pid,
                                "/ns/net",
                                format!("unexpected namespace link {t:?}"),
                            ))
                        }
                    },
                    Err(err) if is_vanished(err) => return Err(Vanished),
                    Err(err) => gap = Some(self.gap(pid, "/ns/net", err.to_string())),
                }
                e.set_gap(Part::Netns, gap);
            }
            Part::Fds => {
                let mut inodes = std::mem::take(&mut e.p.socket_inodes);
                inodes.clear();
                let gap = match procdir::socket_inodes(dir, &mut self.dents, &mut inodes) {
                    Ok(()) => {
                        e.fds_unreadable = false;
                        None
                    }
                    Err(FdError::Vanished) => return Err(Vanished),
                    Err(FdError::Unreadable(err)) => {
                        e.fds_unreadable = inodes.is_empty();
                        Some(self.gap(pid, "/fd", err.to_string()))
                    }
                };
                e.p.socket_inodes = inodes;
                e.set_gap(Part::Fds, gap);
            }
        }
        Ok(())
    }
}

/// `<pid>` and `<pid>/<file>` relative to the procfs root, formatted without allocating.
pub(super) struct PidPath {
    buf: [u8; 40],
    dir_len: usize,
}

impl PidPath {
    fn new(pid: i32) -> PidPath {
        let mut buf = [0u8; 40];
        let mut digits = [0u8; 12];
        let mut v = pid.unsigned_abs();
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            v /= 10;
            n += 1;
            if v == 0 {
                break;
            }
        }
        for i in 0..n {
            buf[i] = digits[n - 1 - i];
        }
        PidPath { buf, dir_len: n }
    }

    fn dir(&self) -> &[u8] {
        &self.buf[..self.dir_len]
    }

    /// `<pid>/<name>` (`name` short: a procfs file name).
    fn file(&mut self, name: &[u8]) -> &[u8] {
        let end = (self.dir_len + 1 + name.len()).min(self.buf.len());
        self.buf[self.dir_len] = b'/';
        let n = end - self.dir_len - 1;
        self.buf[self.dir_len + 1..end].copy_from_slice(&name[..n]);
        &self.buf[..end]
    }
}
