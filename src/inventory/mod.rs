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
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod holders;
mod host;
mod model;
mod net;
mod nettext;
mod procdir;
mod process;
mod rates;
mod users;

pub use model::{
    CgroupWalk, Gap, HiddenHow, HiddenProcess, HostState, HugePages, Interface, Msr, NetnsSource,
    ProcMount, Process, Protocol, Snapshot, Socket, SocketSource, SocketState, TaskCount,
};
pub use rates::{cpu_percent, cpu_percent_of_ticks, InterfaceRate};

use holders::Unreadable;
use nix::errno::Errno;
use procdir::{open_pid_dir, Buf, FileKey};
use process::{Entry, Outcome, Part, StatVals};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use users::Users;

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
    /// The network-namespace helper's socket, used for the sock_diag sockets of namespaces
    /// this process cannot enter itself, when the file exists ([`crate::netns_helper`]).
    pub netns_helper: Option<PathBuf>,
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
            netns_helper: Some(PathBuf::from(crate::netns_helper::DEFAULT_SOCKET)),
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
        let helper = opts.netns_helper.clone();
        Inventory {
            exes: hash::ExeReader::new(
                hash::Wanted::new(opts.hash_exes, &opts.exe_strings),
                hash::READ_TIMEOUT,
            ),
            opts,
            scan: 0,
            procs: IdMap::default(),
            net: net::NetReader::new(helper),
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
        let tasks_before = if Inventory::initial_pid_namespace(proc_dir.as_fd()) {
            self.loadavg_tasks()
        } else {
            None
        };
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
        holders::settled(&self.orphans, &self.explained, inode)
    }

    fn gap(&self, pid: i32, what: &str, error: String) -> Gap {
        Gap {
            what: format!("{}/{pid}{what}", self.opts.proc_root.display()),
            error,
        }
    }

    /// The pids of the procfs root.
    fn list(&mut self, proc_dir: BorrowedFd<'_>) -> Result<Vec<i32>, Errno> {
        #[allow(unused_mut)]
        let mut pids = list_pids(proc_dir, &mut self.dents, self.procs.len())?;
        #[cfg(test)]
        pids.retain(|p| !self.unlisted.contains(p));
        Ok(pids)
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
    /// candidate processes only (`holders.rs` chooses them; see the module documentation for
    /// the order).
    fn find_holders(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        procs: &mut IdMap<i32, Box<Entry>>,
        sockets: &[Socket],
        index: &IdMap<u64, usize>,
    ) {
        let candidates: Vec<holders::Proc> = procs
            .values()
            .map(|e| holders::Proc {
                pid: e.p.pid,
                netns: e.p.netns,
                uid: e.p.uid,
            })
            .collect();
        // The search's memory, out of `self` while `walk` reads descriptors through it.
        let pending = std::mem::take(&mut self.pending);
        let mut orphans = std::mem::take(&mut self.orphans);
        let mut explained = std::mem::take(&mut self.explained);
        let unreadable = std::mem::take(&mut self.unreadable);
        let memory = holders::Memory {
            pending: &pending,
            orphans: &mut orphans,
            explained: &mut explained,
            unreadable: &unreadable,
        };
        holders::search(sockets, &candidates, memory, &mut |pids, owned| {
            self.walk(proc_dir, procs, pids, index, owned)
        });
        self.pending = pending;
        self.orphans = orphans;
        self.explained = explained;
        self.unreadable = unreadable;
    }

    /// Re-reads the socket lists of `pids` (each once per search, `holders::search` sees to
    /// that), marking the sockets they hold as owned.
    fn walk(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        procs: &mut IdMap<i32, Box<Entry>>,
        pids: &[i32],
        index: &IdMap<u64, usize>,
        owned: &mut [bool],
    ) {
        for &pid in pids {
            let Some(e) = procs.get_mut(&pid) else {
                continue;
            };
            if e.p.kernel_thread || e.fds_unreadable {
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

#[cfg(test)]
mod tests;
