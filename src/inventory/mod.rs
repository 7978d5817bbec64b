//! Inventory: the only code that reads the host. Walks `/proc` once and returns an owned
//! [`Snapshot`]: processes, the TCP/UDP sockets of every network namespace joined to their
//! owners by inode, and interface counters.
//!
//! It never judges anything, and it never fails because one process misbehaves: a process
//! that exits mid-read is counted as vanished, anything else unreadable becomes a [`Gap`].
//!
//! # Cost
//!
//! A cold inventory ([`take`], or the first [`Inventory::take`]) reads, per process, the
//! owner of `/proc/<pid>` (the effective uid), `stat`, `cmdline`, `cgroup`, the `exe` and
//! `ns/net` links and every descriptor link under `fd/`: each file once, relative to a
//! descriptor of `/proc/<pid>`, into one reused buffer, parsed from bytes. Each network
//! namespace's sockets are read once, through netlink sock_diag (`net.rs`, `diag.rs`), and
//! joined to processes by inode in a hash map.
//!
//! An [`Inventory`] kept between scans remembers per process, keyed by pid, start time and
//! the addresses of its program image, what does not change without an `execve`, and reads
//! per scan only `/proc/uptime`, `stat` and the directory owner of each process and the
//! socket tables (the host name and the CPU count every [`REFRESH_SCANS`] scans). A caller
//! that hands each snapshot back ([`Inventory::recycle`]) lets the next one reuse its
//! memory: no per-process or per-socket allocation in steady state. Beyond that:
//!
//! - `exe` (and its hash), `cmdline`, `cgroup`, `ns/net` and the socket list are read for a
//!   new process or a new program image (start time, or code/stack/argv addresses in `stat`
//!   differ: a reused pid or an `execve` is a new process);
//! - `cmdline` also when `comm` changes (a process renaming itself with `prctl` usually
//!   rewrites its argv too);
//! - a process's `fd/` when a socket appears that no known process holds and the process is
//!   a candidate for it: first the holders of a listener on the same port (accepted
//!   connections), then the processes of the socket's namespace running as the socket's
//!   uid; a socket still unowned one scan later widens to the root processes of its
//!   namespace (to all of them if the socket's uid is 0: a daemon that dropped privileges
//!   holds sockets root created), then to every process. A socket nobody holds after that
//!   (a kernel socket, a process that cannot be read) is not searched again while it exists.
//!   The last step is skipped for a socket that a process whose `fd/` cannot be read may
//!   hold (in the socket's namespace or one unknown, running as the socket's uid or the
//!   socket being root's): such a socket (pid 1's listeners in a sandbox where even root
//!   cannot read `/proc/1/fd`) is not searched again until it closes or the set of
//!   unreadable processes changes. A new process is read whole, so its sockets are found
//!   regardless;
//! - everything but `fd/` for 1/[`REFRESH_SCANS`] of the processes per scan, in turn, and
//!   `fd/` too for 1/[`FD_REFRESH_SCANS`]: what the cache can miss (argv rewritten without
//!   renaming — `setproctitle`, a binary deleted after start, a move to another cgroup or
//!   namespace without `execve`, a descriptor passed to a known process, one of two holders
//!   closing its copy) is at most that many scans old.

mod crosscheck;
mod diag;
mod hash;
mod model;
mod net;
mod procdir;
mod rates;

pub use model::{
    CgroupWalk, Gap, HiddenHow, HiddenProcess, HostState, HugePages, Interface, Msr, NetnsSource,
    ProcMount, Process, Protocol, Snapshot, Socket, SocketSource, SocketState, TaskCount,
};
pub use rates::{cpu_percent, cpu_percent_of_ticks, InterfaceRate};

use nix::errno::Errno;
use procdir::{is_vanished, open_pid_dir, Buf, FdError, FileKey};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where to read from and what to compute.
#[derive(Debug, Clone)]
pub struct Options {
    /// The procfs mount, `/proc` on a live host; a fixture tree in tests.
    pub proc_root: PathBuf,
    /// The passwd database used to name uids.
    pub passwd: PathBuf,
    /// Compute the SHA-256 of every executable (only when a signature uses `sha256`).
    pub hash_exes: bool,
    /// Search every executable for these strings, ignoring ASCII case (the `exe_strings`
    /// of the loaded signatures); found ones land in [`Process::exe_strings`].
    pub exe_strings: Vec<String>,
    /// The sysfs mount (huge page pools, the `msr` module).
    pub sys_root: PathBuf,
    /// The dynamic loader's preload list.
    pub preload_file: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            proc_root: PathBuf::from("/proc"),
            passwd: PathBuf::from("/etc/passwd"),
            hash_exes: false,
            exe_strings: Vec::new(),
            sys_root: PathBuf::from("/sys"),
            preload_file: PathBuf::from("/etc/ld.so.preload"),
        }
    }
}

impl Options {
    /// Whether `proc_root` is the live host's procfs: only then do the cgroup file system
    /// and `kill(pid, 0)` speak of the same processes (a fixture tree skips the cross-check).
    fn live(&self) -> bool {
        self.proc_root == Path::new("/proc")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot list processes in {path}: {source}")]
    ListProcesses {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A steady-state scan re-reads everything but `fd/` of 1/`REFRESH_SCANS` of the processes.
pub const REFRESH_SCANS: u64 = 32;
/// … and `fd/` of 1/`FD_REFRESH_SCANS` of them (a multiple of [`REFRESH_SCANS`]).
pub const FD_REFRESH_SCANS: u64 = 4 * REFRESH_SCANS;

/// A hasher for pids and inodes (kernel-assigned integers, not attacker-chosen values):
/// one multiply per word instead of SipHash.
#[derive(Default, Clone, Copy)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;
type IdMap<K, V> = HashMap<K, V, IdBuild>;
pub(super) type IdSet<K> = HashSet<K, IdBuild>;

/// What of a process was read, for keeping the gaps of each part until it is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Cmdline,
    /// `exe` (and its hash) and `cgroup`.
    Exe,
    Netns,
    Fds,
}

const ALL_PARTS: [Part; 4] = [Part::Cmdline, Part::Exe, Part::Netns, Part::Fds];
const REFRESH_PARTS: [Part; 3] = [Part::Cmdline, Part::Exe, Part::Netns];

/// What the inventory remembers of one process between scans.
#[derive(Debug)]
struct Entry {
    p: Process,
    /// Program image addresses from `stat` (see `procdir::Stat::image`).
    image: [u64; 5],
    /// [`Users::generation`] when `p.user` was looked up.
    users_generation: u64,
    exe_key: Option<FileKey>,
    gaps: Vec<(Part, Gap)>,
    /// Its `fd/` cannot be listed (permission): not a candidate for unknown sockets.
    fds_unreadable: bool,
}

impl Entry {
    fn set_gap(&mut self, part: Part, gap: Option<Gap>) {
        self.gaps.retain(|(p, _)| *p != part);
        if let Some(g) = gap {
            self.gaps.push((part, g));
        }
    }
}

enum Outcome {
    Live(Box<Entry>),
    Vanished,
    Gap(Gap),
}

/// The process exited while it was being read.
struct Vanished;

/// The values of `stat` a scan keeps (copied out of the read buffer).
struct StatVals {
    ppid: i32,
    cpu_ticks: u64,
    threads: i64,
    nice: i64,
    policy: u32,
    rss_pages: u64,
    start_ticks: u64,
    image: [u64; 5],
    kernel_thread: bool,
}

impl StatVals {
    fn of(st: &procdir::Stat<'_>) -> StatVals {
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

    fn same_process(&self, e: &Entry) -> bool {
        e.p.start_ticks == self.start_ticks
            && e.image == self.image
            && e.p.kernel_thread == self.kernel_thread
    }
}

/// A reader of the host that remembers, between inventories, what cannot change for a
/// process (keyed by pid, start time and program image) and the sock_diag socket of each
/// network namespace. The agent keeps one for its whole life; see the module documentation
/// for what a steady-state scan reads.
pub struct Inventory {
    opts: Options,
    scan: u64,
    procs: IdMap<i32, Box<Entry>>,
    net: net::NetReader,
    /// Reads executables (what `opts` wants of them) off this thread, with a deadline.
    exes: hash::ExeReader,
    users: Users,
    /// Inodes of the TCP/UDP sockets of the last inventory (to their index in it).
    prev_index: IdMap<u64, usize>,
    spare_index: IdMap<u64, usize>,
    /// Sockets without a known holder in the last inventory (searched wider if they stay).
    pending: IdSet<u64>,
    /// Sockets no process holds after a search of every process; not searched again.
    orphans: IdSet<u64>,
    /// Sockets still unowned after the search of their namespace that a process whose `fd/`
    /// cannot be read may hold (see [`Unreadable::explains`]): not searched again while they
    /// exist and the set of such processes stays the same.
    explained: IdSet<u64>,
    /// The processes whose `fd/` could not be read in the last scan.
    unreadable: Vec<Unreadable>,
    buf: Buf,
    dents: Vec<u8>,
    ticks_per_second: u64,
    page_size: u64,
    /// Tests: pids left out of every listing of `/proc`, as a rootkit filtering `getdents`
    /// would (the cross-check must still find them).
    #[cfg(test)]
    unlisted: Vec<i32>,
    /// Host name and CPU count, re-read every [`REFRESH_SCANS`] scans (finding the CPU
    /// count reads the cgroup's CPU quota: several files).
    hostname: String,
    cpus: u32,
    /// What a recycled snapshot gave back: its process list (whose strings `clone_from`
    /// reuses), its socket list (emptied) and its sockets' owner lists (emptied).
    spare_processes: Vec<Process>,
    spare_sockets: Vec<Socket>,
    spare_owners: Vec<Vec<i32>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("opts", &self.opts)
            .field("scans", &self.scan)
            .field("processes", &self.procs.len())
            .finish_non_exhaustive()
    }
}

impl Inventory {
    pub fn new(opts: Options) -> Inventory {
        let sysconf = |var| {
            nix::unistd::sysconf(var)
                .ok()
                .flatten()
                .and_then(|v| u64::try_from(v).ok())
                .filter(|&v| v > 0)
        };
        Inventory {
            exes: hash::ExeReader::new(
                hash::Wanted::new(opts.hash_exes, &opts.exe_strings),
                hash::READ_TIMEOUT,
            ),
            opts,
            scan: 0,
            procs: IdMap::default(),
            net: net::NetReader::new(),
            users: Users::default(),
            prev_index: IdMap::default(),
            spare_index: IdMap::default(),
            pending: IdSet::default(),
            orphans: IdSet::default(),
            explained: IdSet::default(),
            unreadable: Vec::new(),
            buf: Buf::default(),
            dents: Vec::new(),
            ticks_per_second: sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100),
            page_size: sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096),
            #[cfg(test)]
            unlisted: Vec::new(),
            hostname: String::new(),
            cpus: 1,
            spare_processes: Vec::new(),
            spare_sockets: Vec::new(),
            spare_owners: Vec::new(),
        }
    }

    /// Hands a snapshot this inventory took back once the caller is done with it, so that
    /// the next one reuses its memory instead of allocating every process's strings and
    /// every socket's owner list again. Optional: without it the next snapshot allocates.
    pub fn recycle(&mut self, snap: Snapshot) {
        let Snapshot {
            processes,
            mut sockets,
            ..
        } = snap;
        self.spare_processes = processes;
        for s in sockets.drain(..) {
            let mut owners = s.owners;
            if owners.capacity() > 0 {
                owners.clear();
                self.spare_owners.push(owners);
            }
        }
        self.spare_sockets = sockets;
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Takes one inventory of the host.
    pub fn take(&mut self) -> Result<Snapshot, InventoryError> {
        let cold = self.scan == 0;
        self.scan += 1;
        let taken_at_unix_ms = crate::usage::now_unix_ms();
        let root = self.opts.proc_root.clone();
        let uptime_secs = read_uptime(&root, &mut self.buf)?;
        if self.scan % REFRESH_SCANS == 1 {
            self.hostname =
                read_trimmed(&root.join("sys/kernel/hostname"), &mut self.buf).unwrap_or_default();
            self.cpus = std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1);
        }
        self.users.refresh(&self.opts.passwd);
        let mut sockets = std::mem::take(&mut self.spare_sockets);
        sockets.clear();
        let mut snap = Snapshot {
            taken_at_unix_ms,
            uptime_secs,
            ticks_per_second: self.ticks_per_second,
            hostname: self.hostname.clone(),
            cpus: self.cpus,
            sockets,
            ..Snapshot::default()
        };
        let list_err = |e: Errno| InventoryError::ListProcesses {
            path: root.clone(),
            source: e.into(),
        };
        let proc_dir: OwnedFd =
            procdir::open_path(&root, rustix::fs::OFlags::DIRECTORY).map_err(list_err)?;
        let tasks_before = self.loadavg_tasks();
        let listed = self.list(proc_dir.as_fd()).map_err(list_err)?;

        let mut prev = std::mem::take(&mut self.procs);
        let mut next: IdMap<i32, Box<Entry>> =
            IdMap::with_capacity_and_hasher(listed.len(), IdBuild::default());
        for &pid in &listed {
            let outcome = match prev.remove(&pid) {
                Some(e) => self.read_known(proc_dir.as_fd(), pid, e),
                None => self.read_new(proc_dir.as_fd(), pid),
            };
            match outcome {
                Outcome::Live(mut e) => {
                    if e.users_generation != self.users.generation {
                        e.p.user = self.users.map.get(&e.p.uid).cloned();
                        e.users_generation = self.users.generation;
                    }
                    next.insert(pid, e);
                }
                Outcome::Vanished => snap.vanished += 1,
                Outcome::Gap(g) => snap.gaps.push(g),
            }
        }
        drop(prev);
        snap.host = self.host_state(proc_dir.as_fd(), &mut next, &mut snap.gaps);
        // A masked process was listed and counted as vanished: it is not.
        let masked_listed = snap
            .host
            .hidden
            .iter()
            .filter(|h| h.how == HiddenHow::Masked && listed.contains(&h.pid))
            .count();
        snap.vanished = snap.vanished.saturating_sub(masked_listed as u32);
        if let Some(before) = tasks_before {
            let after = self.loadavg_tasks().unwrap_or(before);
            // A process that exited while being read was listed: at least one task.
            let listed = next
                .values()
                .map(|e| e.p.threads.max(1) as u64)
                .sum::<u64>()
                + u64::from(snap.vanished);
            snap.host.tasks = Some(TaskCount {
                kernel: before.min(after),
                listed,
            });
        }
        let mut pids: Vec<i32> = next.keys().copied().collect();
        pids.sort_unstable();

        // One reader per network namespace (the lowest pid in it, the next if it exited).
        let mut namespaces: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
        for pid in &pids {
            let netns = next[pid].p.netns;
            if netns != 0 {
                namespaces.entry(netns).or_default().push(*pid);
            }
        }
        // The socket tables of the last scan are the best guess of this one's size.
        snap.sockets
            .reserve(self.prev_index.len() + self.prev_index.len() / 8);
        self.net.read(
            proc_dir.as_fd(),
            &namespaces,
            self.scan,
            &mut self.buf,
            &mut snap,
        );

        // Two index maps take turns (this scan's, the last scan's): no rehash into new memory.
        let mut index = std::mem::take(&mut self.spare_index);
        index.clear();
        index.reserve(snap.sockets.len());
        for (i, s) in snap.sockets.iter().enumerate() {
            if s.inode != 0 {
                index.insert(s.inode, i);
            }
        }
        let prev_index = std::mem::take(&mut self.prev_index);
        self.join(
            &pids,
            &mut next,
            &mut snap.sockets,
            &index,
            Some(&prev_index),
        );
        // A process whose descriptors cannot be read appeared, went or changed: the sockets
        // it was taken to explain are searched for again.
        let unreadable = Unreadable::of(&pids, &next);
        if unreadable != self.unreadable {
            self.explained.clear();
            self.unreadable = unreadable;
        }
        let unknown = snap
            .sockets
            .iter()
            .any(|s| s.inode != 0 && s.owners.is_empty() && !self.settled(s.inode));
        if unknown && !cold {
            self.find_holders(proc_dir.as_fd(), &mut next, &snap.sockets, &index);
            for s in &mut snap.sockets {
                s.owners.clear();
            }
            self.join(&pids, &mut next, &mut snap.sockets, &index, None);
        }
        let unowned: IdSet<u64> = snap
            .sockets
            .iter()
            .filter(|s| s.inode != 0 && s.owners.is_empty())
            .map(|s| s.inode)
            .collect();
        self.orphans.retain(|i| unowned.contains(i));
        self.explained.retain(|i| unowned.contains(i));
        self.pending = unowned.into_iter().filter(|i| !self.settled(*i)).collect();
        self.prev_index = index;
        self.spare_index = prev_index;

        // Into the recycled list when there is one: `clone_from` reuses its strings.
        let mut processes = std::mem::take(&mut self.spare_processes);
        processes.truncate(pids.len());
        processes.reserve(pids.len() - processes.len());
        for (i, pid) in pids.iter().enumerate() {
            let e = &next[pid];
            snap.gaps.extend(e.gaps.iter().map(|(_, g)| g.clone()));
            match processes.get_mut(i) {
                Some(p) => p.clone_from(&e.p),
                None => processes.push(e.p.clone()),
            }
        }
        snap.processes = processes;
        if self.exes.wanted().any() {
            let live: HashSet<FileKey> = next.values().filter_map(|e| e.exe_key).collect();
            self.exes.retain(live);
        }
        self.procs = next;
        Ok(snap)
    }

    /// Not searched for: no process holds it after a search of every process, or one whose
    /// descriptors cannot be read may.
    fn settled(&self, inode: u64) -> bool {
        self.orphans.contains(&inode) || self.explained.contains(&inode)
    }

    fn gap(&self, pid: i32, what: &str, error: String) -> Gap {
        Gap {
            what: format!("{}/{pid}{what}", self.opts.proc_root.display()),
            error,
        }
    }

    /// Reads a process seen for the first time: everything, through a descriptor of its
    /// directory.
    fn read_new(&mut self, proc_dir: BorrowedFd<'_>, pid: i32) -> Outcome {
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
    fn read_known(&mut self, proc_dir: BorrowedFd<'_>, pid: i32, mut e: Box<Entry>) -> Outcome {
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

    /// The pids of the procfs root.
    fn list(&mut self, proc_dir: BorrowedFd<'_>) -> Result<Vec<i32>, Errno> {
        #[allow(unused_mut)]
        let mut pids = list_pids(proc_dir, &mut self.dents, self.procs.len())?;
        #[cfg(test)]
        pids.retain(|p| !self.unlisted.contains(p));
        Ok(pids)
    }

    /// The kernel's task count from `<proc>/loadavg`.
    fn loadavg_tasks(&mut self) -> Option<u64> {
        let path = self.opts.proc_root.join("loadavg");
        self.buf
            .read_path(&path)
            .ok()
            .and_then(crosscheck::loadavg_tasks)
    }

    /// Host artefacts, and the cross-check of the processes read (`procs`) against the
    /// cgroup file system (see `crosscheck.rs`). A process hidden from the listing whose
    /// `/proc/<pid>` still reads is added to `procs`.
    fn host_state(
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
    fn masked(&mut self, proc_dir: BorrowedFd<'_>, pid: i32) -> bool {
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

    /// The per-scan values: from `stat`, and the uid from the directory owner.
    fn apply(&self, e: &mut Entry, vals: &StatVals, owner: u32) {
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

    fn read_part(
        &mut self,
        dir: BorrowedFd<'_>,
        e: &mut Entry,
        part: Part,
    ) -> Result<(), Vanished> {
        let pid = e.p.pid;
        match part {
            Part::Cmdline => {
                let mut gap = None;
                match self.buf.read_at(dir, c"cmdline", false) {
                    Ok(b) => e.p.cmdline = procdir::split_cmdline(b),
                    Err(err) if is_vanished(err) => return Err(Vanished),
                    Err(err) => {
                        e.p.cmdline.clear();
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

    /// Joins sockets to the processes holding them (owners in ascending pid order). With
    /// `prev`, the inodes of the last scan's sockets, a remembered descriptor list first
    /// drops the sockets that closed since (other kinds of socket, never in the tables,
    /// stay until the process's next walk).
    fn join(
        &mut self,
        pids: &[i32],
        procs: &mut IdMap<i32, Box<Entry>>,
        sockets: &mut [Socket],
        index: &IdMap<u64, usize>,
        prev: Option<&IdMap<u64, usize>>,
    ) {
        let spare = &mut self.spare_owners;
        for pid in pids {
            let Some(e) = procs.get_mut(pid) else {
                continue;
            };
            e.p.socket_inodes.retain(|inode| match index.get(inode) {
                Some(&i) => {
                    let owners = &mut sockets[i].owners;
                    if owners.capacity() == 0 {
                        if let Some(v) = spare.pop() {
                            *owners = v;
                        }
                    }
                    owners.push(*pid);
                    true
                }
                None => prev.is_none_or(|prev| !prev.contains_key(inode)),
            });
        }
    }

    /// Finds the holders of sockets that appeared since the last scan, walking the `fd/` of
    /// candidate processes only (see the module documentation for the order).
    fn find_holders(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        procs: &mut IdMap<i32, Box<Entry>>,
        sockets: &[Socket],
        index: &IdMap<u64, usize>,
    ) {
        let mut owned: Vec<bool> = sockets.iter().map(|s| !s.owners.is_empty()).collect();
        let mut unknown: Vec<usize> = (0..sockets.len())
            .filter(|&k| !owned[k] && sockets[k].inode != 0 && !self.settled(sockets[k].inode))
            .collect();
        if unknown.is_empty() {
            return;
        }
        let mut walked: IdSet<i32> = IdSet::default();

        // 1. Accepted connections: the holders of a listener on the same local port.
        let mut listeners: HashMap<(u64, u16), Vec<usize>, IdBuild> = HashMap::default();
        for (i, s) in sockets.iter().enumerate() {
            if s.protocol == Protocol::Tcp && s.state == SocketState::Listen && s.inode != 0 {
                listeners
                    .entry((s.netns, s.local.port()))
                    .or_default()
                    .push(i);
            }
        }
        let mut candidates: IdSet<i32> = IdSet::default();
        for &k in &unknown {
            let s = &sockets[k];
            if s.protocol != Protocol::Tcp || s.state == SocketState::Listen {
                continue;
            }
            for l in listeners
                .get(&(s.netns, s.local.port()))
                .into_iter()
                .flatten()
            {
                candidates.extend(&sockets[*l].owners);
            }
        }
        self.walk(proc_dir, procs, candidates, &mut walked, index, &mut owned);
        unknown.retain(|&k| !owned[k]);

        // 2. The processes of the socket's namespace running as the socket's uid.
        if !unknown.is_empty() {
            let keys: HashSet<(u64, u32), IdBuild> = unknown
                .iter()
                .map(|&k| (sockets[k].netns, sockets[k].uid))
                .collect();
            let candidates = procs
                .values()
                .filter(|e| keys.contains(&(e.p.netns, e.p.uid)))
                .map(|e| e.p.pid)
                .collect();
            self.walk(proc_dir, procs, candidates, &mut walked, index, &mut owned);
            unknown.retain(|&k| !owned[k]);
        }

        // Sockets already unowned in the last scan: 3. the root processes of the namespace
        // (every process of it if the socket is root's), 4. every process.
        unknown.retain(|&k| self.pending.contains(&sockets[k].inode));
        if !unknown.is_empty() {
            let any: IdSet<u64> = unknown
                .iter()
                .filter(|&&k| sockets[k].uid == 0)
                .map(|&k| sockets[k].netns)
                .collect();
            let root: IdSet<u64> = unknown.iter().map(|&k| sockets[k].netns).collect();
            let candidates = procs
                .values()
                .filter(|e| any.contains(&e.p.netns) || (e.p.uid == 0 && root.contains(&e.p.netns)))
                .map(|e| e.p.pid)
                .collect();
            self.walk(proc_dir, procs, candidates, &mut walked, index, &mut owned);
            unknown.retain(|&k| !owned[k]);
        }
        // A socket that a process whose `fd/` cannot be read may hold (pid 1 in some
        // sandboxes) would send every scan to step 4, to find nothing: it is left alone.
        let unreadable = &self.unreadable;
        let explained: Vec<u64> = unknown
            .iter()
            .map(|&k| &sockets[k])
            .filter(|s| unreadable.iter().any(|u| u.explains(s)))
            .map(|s| s.inode)
            .collect();
        self.explained.extend(explained);
        unknown.retain(|&k| !self.explained.contains(&sockets[k].inode));
        if !unknown.is_empty() {
            let candidates = procs.keys().copied().collect();
            self.walk(proc_dir, procs, candidates, &mut walked, index, &mut owned);
            unknown.retain(|&k| !owned[k]);
            self.orphans
                .extend(unknown.iter().map(|&k| sockets[k].inode));
        }
    }

    /// Re-reads the socket lists of `candidates` not walked yet in this search, marking the
    /// sockets they hold as owned.
    fn walk(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        procs: &mut IdMap<i32, Box<Entry>>,
        candidates: IdSet<i32>,
        walked: &mut IdSet<i32>,
        index: &IdMap<u64, usize>,
        owned: &mut [bool],
    ) {
        let mut candidates: Vec<i32> = candidates.into_iter().collect();
        candidates.sort_unstable();
        for pid in candidates {
            let Some(e) = procs.get_mut(&pid) else {
                continue;
            };
            if e.p.kernel_thread || e.fds_unreadable || !walked.insert(pid) {
                continue;
            }
            // The same process? (The pid may have been reused since it was read.)
            let Ok(dir) = open_pid_dir(proc_dir, pid) else {
                continue;
            };
            let same = self
                .buf
                .read_at(dir.as_fd(), c"stat", true)
                .ok()
                .and_then(procdir::parse_stat)
                .is_some_and(|st| StatVals::of(&st).same_process(e));
            if !same || self.read_part(dir.as_fd(), e, Part::Fds).is_err() {
                continue;
            }
            for inode in &e.p.socket_inodes {
                if let Some(&k) = index.get(inode) {
                    owned[k] = true;
                }
            }
        }
    }
}

/// `<pid>` and `<pid>/<file>` relative to the procfs root, formatted without allocating.
struct PidPath {
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

/// A process whose `fd/` could not be read (wholly or in part): it may hold sockets that no
/// search can attribute to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unreadable {
    pid: i32,
    start_ticks: u64,
    uid: u32,
    /// 0 when its namespace could not be read either.
    netns: u64,
}

impl Unreadable {
    /// The unreadable processes among `procs`, in `pids` order (ascending).
    fn of(pids: &[i32], procs: &IdMap<i32, Box<Entry>>) -> Vec<Unreadable> {
        pids.iter()
            .filter_map(|pid| procs.get(pid))
            .filter(|e| !e.p.kernel_thread && e.gaps.iter().any(|(part, _)| *part == Part::Fds))
            .map(|e| Unreadable {
                pid: e.p.pid,
                start_ticks: e.p.start_ticks,
                uid: e.p.uid,
                netns: e.p.netns,
            })
            .collect()
    }

    /// Whether it may hold `s`: in the socket's namespace (or one it cannot be told apart
    /// from), and a candidate by uid as the search's own steps choose them: the socket's
    /// owner, or any process for a socket root created (a daemon that dropped privileges).
    fn explains(&self, s: &Socket) -> bool {
        (self.netns == 0 || self.netns == s.netns) && (self.uid == s.uid || s.uid == 0)
    }
}

/// Takes one inventory of the host, remembering nothing.
pub fn take(opts: &Options) -> Result<Snapshot, InventoryError> {
    Inventory::new(opts.clone()).take()
}

/// Opens `<proc_root>/<pid>/ns/net` of the first of `pids` whose network namespace is still
/// `netns` (a pid may have exited and been reused), for entering that namespace (probes).
/// Returns the descriptor and the namespace file's (device, inode).
pub fn open_netns(
    proc_root: &Path,
    netns: u64,
    pids: &[i32],
) -> Result<(OwnedFd, (u64, u64)), String> {
    // Directly by system call, like every other /proc read (no libc hook in the path).
    let proc_dir = rustix::fs::open(
        proc_root,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", proc_root.display()))?;
    net::open_ns_file(proc_dir.as_fd(), netns, pids)
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

/// The numeric entries of the procfs root (`expect`: about how many, the last count).
fn list_pids<Fd: AsFd>(proc_dir: Fd, buf: &mut Vec<u8>, expect: usize) -> Result<Vec<i32>, Errno> {
    use rustix::fs::{openat, Mode, OFlags, RawDir};
    let errno = procdir::errno;
    // A descriptor of its own: getdents moves the offset of the one it reads.
    let dir = openat(
        proc_dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    if buf.capacity() < procdir::DENTS_BUF {
        *buf = Vec::with_capacity(procdir::DENTS_BUF);
    }
    let mut entries = RawDir::new(&dir, buf.spare_capacity_mut());
    let mut pids = Vec::with_capacity(expect + expect / 8 + 16);
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(errno)?;
        if let Some(pid) =
            procdir::parse_u64(entry.file_name().to_bytes()).and_then(|p| i32::try_from(p).ok())
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// uid → name from the passwd file, re-read only when the file changes.
#[derive(Debug, Default)]
struct Users {
    key: Option<(u64, u64, i64, i64, u64)>,
    map: HashMap<u32, String>,
    /// Bumped on every reload; starts at 1 so that 0 means "never looked up".
    generation: u64,
}

impl Users {
    fn refresh(&mut self, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        let key = std::fs::metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()));
        if self.generation > 0 && key.is_some() && key == self.key {
            return;
        }
        match read_passwd(path) {
            Some(map) => {
                self.key = key;
                self.map = map;
            }
            // Unreadable for a moment (being replaced, say): keep the names we had and
            // try again next scan.
            None if self.generation > 0 => return,
            None => self.map.clear(),
        }
        self.generation += 1;
    }
}

fn read_uptime(proc_root: &Path, buf: &mut Buf) -> Result<f64, InventoryError> {
    let path = proc_root.join("uptime");
    let bytes = buf.read_path(&path).map_err(|e| InventoryError::Read {
        path: path.clone(),
        source: e.into(),
    })?;
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| InventoryError::Read {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"),
        })
}

/// A small procfs or sysfs file as text, trailing whitespace removed (direct system calls).
fn read_trimmed(path: &Path, buf: &mut Buf) -> Option<String> {
    buf.read_path(path)
        .ok()
        .map(|b| String::from_utf8_lossy(b).trim_end().to_string())
}

/// uid → name from a passwd file; an unreadable file gives an empty map (uids stay numeric).
fn read_passwd(path: &Path) -> Option<HashMap<u32, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) {
            if let Ok(uid) = uid.parse::<u32>() {
                users.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }
    Some(users)
}

#[cfg(test)]
mod tests;
