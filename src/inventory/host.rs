//! The host part of a scan: host artefacts and the cross-check of the processes read against
//! the cgroup file system and the kernel's task count (the parsing is `crosscheck.rs`).

use super::model::{Gap, HiddenHow, HiddenProcess, HostState};
use super::procdir::{self, open_pid_dir};
use super::process::{Entry, Outcome};
use super::{crosscheck, IdMap, IdSet, Inventory};
use nix::errno::Errno;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

impl Inventory {
    /// The kernel's task count from `<proc>/loadavg`.
    pub(super) fn loadavg_tasks(&mut self) -> Option<u64> {
        let path = self.opts.proc_root.join("loadavg");
        self.buf
            .read_path(&path)
            .ok()
            .and_then(crosscheck::loadavg_tasks)
    }

    /// Whether this `/proc` lists the machine's initial PID namespace. The kernel's task
    /// count (`loadavg`) covers every task of the machine, while the `/proc` of a container's
    /// PID namespace (nspawn, LXC, Docker) lists only the container's: there the count says
    /// nothing about hidden processes and is not compared. The initial namespace has the
    /// fixed inode `PROC_PID_INIT_INO` (Linux ≥ 3.8), which no other namespace can take.
    /// A `/proc` without `self/ns/pid` (a fixture directory) counts as the initial one.
    pub(super) fn initial_pid_namespace(proc_dir: BorrowedFd<'_>) -> bool {
        const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
        match procdir::readlink(proc_dir, c"self/ns/pid") {
            Ok(target) => crosscheck::ns_inode(target.as_encoded_bytes())
                .is_none_or(|ino| ino == PROC_PID_INIT_INO),
            Err(_) => true,
        }
    }

    /// Host artefacts, and the cross-check of the processes read (`procs`) against the
    /// cgroup file system (see `crosscheck.rs`). A process hidden from the listing whose
    /// `/proc/<pid>` still reads is added to `procs`.
    pub(super) fn host_state(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        procs: &mut IdMap<i32, Box<Entry>>,
        gaps: &mut Vec<Gap>,
    ) -> HostState {
        let mut host = HostState::default();
        let preload_file = self.opts.preload_file.clone();
        match self.buf.read_path(&preload_file) {
            Ok(text) => host.preload = crosscheck::preload_entries(text),
            Err(Errno::ENOENT) => {}
            Err(e) => gaps.push(Gap {
                what: preload_file.display().to_string(),
                error: e.to_string(),
            }),
        }
        let root = self.opts.proc_root.clone();
        if let Ok(env) = self.buf.read_path(root.join("self/environ")) {
            host.preload_env = crosscheck::environ_var(env, "LD_PRELOAD");
        }
        let sys = self.opts.sys_root.clone();
        host.hugepages = crosscheck::hugepages(&sys, &root, &mut self.buf, &mut self.dents);
        host.msr = crosscheck::msr(&sys, &mut self.buf);
        let mounts = match self.buf.read_path(root.join("self/mountinfo")) {
            Ok(text) => crosscheck::parse_mountinfo(text, &root.to_string_lossy()),
            Err(_) => crosscheck::Mounts::default(),
        };
        host.proc_mounts = mounts.proc_mounts;
        if !self.opts.live() {
            return host;
        }
        let Some((mount, version)) = mounts.cgroup else {
            gaps.push(Gap {
                what: "cgroup file system".into(),
                error: "not mounted: the process list is not cross-checked".into(),
            });
            return host;
        };
        let Some((cg, walk)) = crosscheck::walk_cgroups(
            Path::new(&mount),
            version,
            &mut self.buf,
            &mut self.dents,
            gaps,
        ) else {
            return host;
        };
        host.cgroups = Some(walk);
        let mut candidates: Vec<(i32, u32)> = cg
            .pids
            .into_iter()
            .filter(|(pid, _)| !procs.contains_key(pid))
            .collect();
        candidates.sort_unstable();
        candidates.dedup_by_key(|(pid, _)| *pid);
        if candidates.is_empty() {
            return host;
        }
        // Started after the first listing, gone, or hidden: a second listing (after the
        // walk) tells a new process from one the listing hides.
        let relisted: IdSet<i32> = self
            .list(proc_dir)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        for (pid, cgroup) in candidates {
            let cgroup = cg.names.get(cgroup as usize).cloned().unwrap_or_default();
            match self.read_new(proc_dir, pid) {
                Outcome::Live(e) => {
                    if !relisted.contains(&pid) {
                        host.hidden.push(HiddenProcess {
                            pid,
                            how: HiddenHow::Unlisted,
                            cgroup,
                            inventoried: true,
                        });
                    }
                    procs.insert(pid, e);
                }
                Outcome::Vanished => {
                    if self.masked(proc_dir, pid) && process_exists(pid, mounts.hidepid) {
                        host.hidden.push(HiddenProcess {
                            pid,
                            how: HiddenHow::Masked,
                            cgroup,
                            inventoried: false,
                        });
                    }
                }
                // Not readable for another reason (permission): a gap, not evidence.
                Outcome::Gap(g) => gaps.push(g),
            }
        }
        host
    }

    /// Whether `/proc/<pid>` is not the process's own directory: another file system is
    /// mounted on it, or it has no `stat`, or a `stat` of another pid (a bind mount of a
    /// decoy's directory). A process that is merely exiting shows none of these: its
    /// directory is procfs, and it reads until it is gone (then `kill(pid, 0)` fails too).
    pub(super) fn masked(&mut self, proc_dir: BorrowedFd<'_>, pid: i32) -> bool {
        let Ok(dir) = open_pid_dir(proc_dir, pid) else {
            return false;
        };
        let foreign = rustix::fs::fstatfs(&dir)
            .map(|st| st.f_type != rustix::fs::PROC_SUPER_MAGIC)
            .unwrap_or(false);
        foreign
            || match self.buf.read_at(dir.as_fd(), c"stat", true) {
                Ok(b) => procdir::parse_stat(b).is_none_or(|st| st.pid != pid),
                Err(e) => e == Errno::ENOENT,
            }
    }
}

/// Whether process `pid` exists, by `kill(pid, 0)`: it does unless the kernel says `ESRCH`
/// (`EPERM` is another user's process). With `hidepid` on procfs, another user's process is
/// invisible by design, so only a process this reader may signal counts.
fn process_exists(pid: i32, hidepid: bool) -> bool {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(rustix::io::Errno::PERM) => !hidepid,
        Err(_) => false,
    }
}
