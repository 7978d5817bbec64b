//! The owned data an inventory returns. Plain data: no I/O, no clock.
//! Everything here came from the host and is attacker-chosen where it is text.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One inventory of the host, taken at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Wall-clock time the inventory started, milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// `/proc/uptime` when the inventory started: the monotonic clock rates are computed on.
    pub uptime_secs: f64,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of CPU times and start times.
    pub ticks_per_second: u64,
    /// Host name as the kernel knows it.
    pub hostname: String,
    /// Number of online CPUs.
    pub cpus: u32,
    pub processes: Vec<Process>,
    pub sockets: Vec<Socket>,
    pub interfaces: Vec<Interface>,
    /// What could not be read, and why. A process that vanished mid-read is not a gap.
    pub gaps: Vec<Gap>,
    /// Processes that exited while the inventory was being taken.
    pub vanished: u32,
    /// Where the socket tables of each network namespace came from, ascending by namespace.
    #[serde(default)]
    pub socket_sources: Vec<NetnsSource>,
    /// Host-wide state: what hides processes and what miners tune (`crosscheck.rs`).
    #[serde(default)]
    pub host: HostState,
}

/// What the host says beyond its processes: preload libraries, processes hidden from the
/// `/proc` listing, mounts over `/proc/<pid>`, huge pages, the `msr` module.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostState {
    /// Entries of `/etc/ld.so.preload`: libraries every dynamically linked program loads.
    #[serde(default)]
    pub preload: Vec<String>,
    /// `LD_PRELOAD` in the agent's own environment (from `/proc/self/environ`), when set.
    #[serde(default)]
    pub preload_env: Option<String>,
    /// Processes the cgroup file system knows that the `/proc` listing hid, ascending by pid.
    #[serde(default)]
    pub hidden: Vec<HiddenProcess>,
    /// Mounts on a `/proc/<pid>` directory (or below one), which hide that process.
    #[serde(default)]
    pub proc_mounts: Vec<ProcMount>,
    /// The kernel's count of tasks against the threads of the processes listed.
    #[serde(default)]
    pub tasks: Option<TaskCount>,
    /// The cgroup hierarchy the process list was checked against, when it was.
    #[serde(default)]
    pub cgroups: Option<CgroupWalk>,
    /// Huge page pools with pages reserved, ascending by page size.
    #[serde(default)]
    pub hugepages: Vec<HugePages>,
    /// The `msr` module (CPU model-specific registers), when loaded or built in.
    #[serde(default)]
    pub msr: Option<Msr>,
}

/// A process hidden from the `/proc` directory listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HiddenProcess {
    pub pid: i32,
    pub how: HiddenHow,
    /// The cgroup (relative to the hierarchy walked) whose `cgroup.procs` lists it.
    pub cgroup: String,
    /// Its `/proc/<pid>` could still be read: it is among the snapshot's processes.
    pub inventoried: bool,
}

/// How a process was hidden.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum HiddenHow {
    /// Missing from the listing of `/proc`, yet `/proc/<pid>` opens by name (a hook on the
    /// kernel's `getdents`: a rootkit module).
    Unlisted,
    /// Its `/proc/<pid>` cannot be read (something is mounted over it, say), yet the process
    /// exists (`kill(pid, 0)`).
    Masked,
}

impl HiddenHow {
    pub fn describe(self) -> &'static str {
        match self {
            HiddenHow::Unlisted => "missing from the /proc listing, /proc/<pid> readable by name",
            HiddenHow::Masked => "its /proc/<pid> cannot be read but the process exists",
        }
    }
}

/// A mount on `/proc/<pid>` or below it, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcMount {
    pub pid: i32,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    /// The directory of the source file system that is mounted there.
    pub root: String,
}

/// The number of tasks (threads) the kernel counts against those the inventory saw.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskCount {
    /// The lower of `/proc/loadavg`'s total before and after the listing.
    pub kernel: u64,
    /// The sum of the threads of every process read, kernel threads included.
    pub listed: u64,
}

impl TaskCount {
    /// Tasks the kernel counts and the listing did not show (0 when it showed more).
    pub fn unlisted(&self) -> u64 {
        self.kernel.saturating_sub(self.listed)
    }
}

/// The cgroup hierarchy walked for the cross-check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CgroupWalk {
    /// Where it is mounted.
    pub mount: String,
    /// 2 for the unified hierarchy, 1 for a v1 one.
    pub version: u8,
    /// Cgroups (directories) read.
    pub cgroups: u32,
    /// Pids their `cgroup.procs` listed.
    pub pids: u32,
}

/// One huge page pool.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct HugePages {
    pub size_kb: u64,
    /// Pages reserved (`nr_hugepages`).
    pub total: u64,
}

impl HugePages {
    pub fn mib(&self) -> u64 {
        self.size_kb.saturating_mul(self.total) / 1024
    }
}

/// The `msr` module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Msr {
    /// Its `allow_writes` parameter: `on`, `off` or `default` (writes allowed, with a kernel
    /// warning); `None` when it could not be read.
    pub allow_writes: Option<String>,
}

/// How the sockets of one network namespace were read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetnsSource {
    pub netns: u64,
    pub source: SocketSource,
    /// Why the preferred source (sock_diag) was not used, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// The reader of a namespace's TCP and UDP tables.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SocketSource {
    /// Netlink `NETLINK_SOCK_DIAG` dumps (`inet_diag`), one socket per namespace.
    SockDiag,
    /// The `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` text tables of a process in the namespace.
    ProcNet,
    /// Not read: no process in the namespace could be read through (see the gaps).
    None,
}

/// A process, identified across snapshots by `(pid, start_ticks)`.
///
/// `Clone` is written out so that `clone_from` reuses the strings and vectors of the
/// target: the inventory copies every process into each snapshot, and with a recycled
/// snapshot ([`super::Inventory::recycle`]) that costs no allocation in steady state.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    /// Effective uid.
    pub uid: u32,
    /// User name for `uid` from the host's passwd database, when it has one.
    pub user: Option<String>,
    /// `comm`: the kernel's 15-byte process name. Settable by the process itself.
    pub comm: String,
    /// Executable path (readlink of `/proc/<pid>/exe`), without the ` (deleted)` suffix.
    pub exe: Option<String>,
    /// The executable was deleted (or is a memfd) after the process started it.
    pub exe_deleted: bool,
    /// Command-line arguments; non-UTF-8 bytes replaced. At most the first
    /// [`aupwatch_proto::bounds::MAX_CMDLINE_BYTES`] bytes of the command line are kept.
    pub cmdline: Vec<String>,
    /// Set when `cmdline` is cut: the whole command line's length and SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline_truncated: Option<aupwatch_proto::Truncated>,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
    pub threads: i64,
    pub nice: i64,
    /// Scheduling policy number (`SCHED_OTHER` 0, `FIFO` 1, `RR` 2, `BATCH` 3, `IDLE` 5,
    /// `DEADLINE` 6); see [`Process::sched_policy_name`].
    #[serde(default)]
    pub sched_policy: u32,
    pub rss_bytes: u64,
    /// Kernel threads have no user space and are never matched.
    pub kernel_thread: bool,
    /// The process's cgroup path (v2 unified, else the first v1 line).
    pub cgroup: Option<String>,
    /// Container id found in the cgroup path (docker, containerd, podman, …).
    pub container: Option<String>,
    /// Inode of the process's network namespace.
    pub netns: u64,
    /// Inodes of the sockets among its open file descriptors.
    pub socket_inodes: Vec<u64>,
    /// SHA-256 of the executable, computed only when a loaded signature asks for it.
    pub exe_sha256: Option<String>,
    /// The indicator strings a loaded signature looks for (`exe_strings`) that the
    /// executable contains, lowercased, in the order the set lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exe_strings: Vec<String>,
}

impl Clone for Process {
    fn clone(&self) -> Process {
        let mut p = Process::default();
        p.clone_from(self);
        p
    }

    fn clone_from(&mut self, source: &Process) {
        // Destructured, so that a new field does not compile until it is copied here.
        let Process {
            pid,
            ppid,
            uid,
            user,
            comm,
            exe,
            exe_deleted,
            cmdline,
            cmdline_truncated,
            start_ticks,
            cpu_ticks,
            threads,
            nice,
            rss_bytes,
            kernel_thread,
            cgroup,
            container,
            netns,
            socket_inodes,
            exe_sha256,
            sched_policy,
            exe_strings,
        } = source;
        self.pid = *pid;
        self.ppid = *ppid;
        self.uid = *uid;
        self.user.clone_from(user);
        self.comm.clone_from(comm);
        self.exe.clone_from(exe);
        self.exe_deleted = *exe_deleted;
        self.cmdline.clone_from(cmdline);
        self.cmdline_truncated.clone_from(cmdline_truncated);
        self.start_ticks = *start_ticks;
        self.cpu_ticks = *cpu_ticks;
        self.threads = *threads;
        self.nice = *nice;
        self.rss_bytes = *rss_bytes;
        self.kernel_thread = *kernel_thread;
        self.cgroup.clone_from(cgroup);
        self.container.clone_from(container);
        self.netns = *netns;
        self.socket_inodes.clone_from(socket_inodes);
        self.exe_sha256.clone_from(exe_sha256);
        self.sched_policy = *sched_policy;
        self.exe_strings.clone_from(exe_strings);
    }
}

impl Process {
    /// Basename of the executable path.
    pub fn exe_basename(&self) -> Option<&str> {
        self.exe.as_deref().map(basename)
    }

    /// Basename of `argv[0]`.
    pub fn argv0_basename(&self) -> Option<&str> {
        self.cmdline.first().map(|a| basename(a))
    }

    /// The command line as one string, arguments joined by single spaces.
    pub fn cmdline_joined(&self) -> String {
        self.cmdline.join(" ")
    }

    /// The scheduling policy's name: `other`, `fifo`, `rr`, `batch`, `idle`, `deadline`, or
    /// `unknown`.
    pub fn sched_policy_name(&self) -> &'static str {
        sched_policy_name(self.sched_policy)
    }

    /// The best single name to show an operator.
    pub fn display_name(&self) -> &str {
        self.exe_basename().unwrap_or(&self.comm)
    }
}

/// The name of a `SCHED_*` policy number, as signatures write it.
pub fn sched_policy_name(policy: u32) -> &'static str {
    match policy {
        0 => "other",
        1 => "fifo",
        2 => "rr",
        3 => "batch",
        5 => "idle",
        6 => "deadline",
        _ => "unknown",
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A socket's transport and state are the documents' words (`aupwatch-proto`). UDP sockets
/// are `Unconnected` (bound, no peer) or `Established` (connected).
pub use aupwatch_proto::{Protocol, SocketState};

/// A TCP or UDP socket of one network namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Socket {
    pub netns: u64,
    pub protocol: Protocol,
    pub local: SocketAddr,
    /// `None` when the socket has no peer (listening or unconnected UDP).
    pub remote: Option<SocketAddr>,
    pub state: SocketState,
    pub uid: u32,
    /// 0 for sockets no file descriptor refers to any more (TIME_WAIT) and kernel sockets.
    pub inode: u64,
    /// Pids of the processes holding a descriptor to it, ascending.
    pub owners: Vec<i32>,
}

impl Socket {
    /// Listening TCP, or bound-but-unconnected UDP.
    pub fn is_listening(&self) -> bool {
        match self.protocol {
            Protocol::Tcp => self.state == SocketState::Listen,
            Protocol::Udp => self.state == SocketState::Unconnected && self.local.port() != 0,
        }
    }

    /// Connected, or trying to connect, to a peer.
    pub fn is_connected(&self) -> bool {
        self.remote.is_some()
            && matches!(
                self.state,
                SocketState::Established | SocketState::SynSent | SocketState::SynRecv
            )
    }

    /// Bound to the unspecified address or any non-loopback address.
    pub fn is_public_bind(&self) -> bool {
        !self.local.ip().is_loopback() && !is_v4_mapped_loopback(&self.local)
    }
}

fn is_v4_mapped_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        SocketAddr::V4(_) => false,
    }
}

/// Byte and packet counters of one network interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub netns: u64,
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// Multicast groups joined on this interface (`/proc/net/igmp`, `/proc/net/igmp6`),
    /// ascending, including the ones every interface joins (all-hosts, solicited-node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multicast_groups: Vec<std::net::IpAddr>,
}

/// Something the inventory could not read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gap {
    /// What was being read (a path).
    pub what: String,
    pub error: String,
}

/// A peer address, or `None` for the all-zero "no peer".
fn peer(addr: SocketAddr) -> Option<SocketAddr> {
    (addr.port() != 0 || !addr.ip().is_unspecified()).then_some(addr)
}

/// A [`Socket`] from the kernel's numbers, shared by both readers (sock_diag, `diag.rs`, and
/// the `/proc/<pid>/net` text, `net.rs`). `state` is the kernel's
/// TCP state number (UDP uses 1, connected, and 7, not). `None` for an unknown TCP state.
pub(super) fn socket_from_parts(
    netns: u64,
    protocol: Protocol,
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    uid: u32,
    inode: u64,
) -> Option<Socket> {
    let (state, remote) = match protocol {
        Protocol::Tcp => {
            let state = match state {
                1 => SocketState::Established,
                2 => SocketState::SynSent,
                3 | 12 => SocketState::SynRecv, // 12: TCP_NEW_SYN_RECV (request socket)
                4 => SocketState::FinWait1,
                5 => SocketState::FinWait2,
                6 => SocketState::TimeWait,
                7 => SocketState::Close,
                8 => SocketState::CloseWait,
                9 => SocketState::LastAck,
                10 => SocketState::Listen,
                11 => SocketState::Closing,
                _ => return None,
            };
            let remote = if state == SocketState::Listen {
                None
            } else {
                peer(remote)
            };
            (state, remote)
        }
        Protocol::Udp => match (state, peer(remote)) {
            (1, Some(r)) => (SocketState::Established, Some(r)),
            _ => (SocketState::Unconnected, None),
        },
    };
    Some(Socket {
        netns,
        protocol,
        local,
        remote,
        state,
        uid,
        inode,
        owners: Vec::new(),
    })
}
