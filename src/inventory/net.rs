//! The socket source: the TCP/UDP sockets and interface counters of every network namespace,
//! each namespace read once.
//!
//! Sockets come from netlink sock_diag ([`super::diag`]) through one netlink socket per
//! namespace, kept between inventories while the namespace has processes. When that fails
//! (no `CAP_SYS_ADMIN` to enter a foreign namespace, a kernel without `inet_diag`, a reply
//! that does not parse), the namespace is read from the `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`
//! text of a process inside it, and the snapshot says so ([`NetnsSource`]). Interface
//! counters always come from `/proc/<pid>/net/dev` (a few lines per namespace).

use super::diag::{self, DiagSocket, RECV_BUF};
use super::model::{Gap, Interface, NetnsSource, Protocol, Snapshot, Socket, SocketSource};
use super::nettext::{parse_dev_line, parse_igmp, parse_igmp6, parse_table_line, TableLine};
use super::procdir::{self, open_pid_dir, Buf};
use super::IdSet;
use nix::errno::Errno;
use rustix::fs::OFlags;
use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// After a namespace could not be entered or its sock_diag socket not opened (no
/// privilege: not going to change soon), scans until it is tried again.
const DIAG_RETRY_SCANS: u64 = 64;

#[derive(Debug, Default)]
struct NsState {
    diag: Option<DiagSocket>,
    /// Why sock_diag is not used for this namespace, and the scan to retry at.
    failed: Option<(String, u64)>,
}

/// Reads the network namespaces; keeps one sock_diag socket per live namespace.
#[derive(Debug)]
pub(super) struct NetReader {
    namespaces: HashMap<u64, NsState>,
    /// (device, inode) of this thread's own network namespace.
    own: Option<(u64, u64)>,
    recv: Vec<u8>,
    /// Whether the kernel serves the one-walk TCP dump (`None`: not tried yet).
    tcp_both: Option<bool>,
    /// The network-namespace helper's socket, for namespaces this process cannot enter.
    helper: Option<std::path::PathBuf>,
}

impl NetReader {
    pub(super) fn new(helper: Option<std::path::PathBuf>) -> NetReader {
        NetReader {
            helper,
            namespaces: HashMap::new(),
            own: crate::netns::own(),
            recv: Vec::new(),
            tcp_both: None,
        }
    }

    /// Reads every namespace of `namespaces` (inode → its pids, ascending) into `snap`.
    /// `scan` numbers the inventories (for retrying sock_diag after a failure).
    pub(super) fn read(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        namespaces: &BTreeMap<u64, Vec<i32>>,
        scan: u64,
        buf: &mut Buf,
        snap: &mut Snapshot,
    ) {
        // A socket pins its namespace: let go of namespaces without processes.
        self.namespaces.retain(|ns, _| namespaces.contains_key(ns));
        self.open_missing(proc_dir, namespaces, scan);
        if self.recv.len() != RECV_BUF {
            self.recv = vec![0; RECV_BUF];
        }
        for (&netns, pids) in namespaces {
            let state = self.namespaces.entry(netns).or_default();
            let first = snap.sockets.len();
            let mut source = SocketSource::None;
            let mut skipped = 0;
            if let Some(sock) = state.diag.as_mut() {
                match dump_all(
                    sock,
                    &mut self.tcp_both,
                    netns,
                    &mut self.recv,
                    &mut snap.sockets,
                ) {
                    Ok(n) => {
                        source = SocketSource::SockDiag;
                        skipped = n;
                    }
                    // Maybe transient: a new socket is tried next scan.
                    Err(e) => {
                        snap.sockets.truncate(first);
                        state.diag = None;
                        state.failed = Some((e.to_string(), scan + 1));
                    }
                }
            }
            if source == SocketSource::None {
                match read_text_tables(proc_dir, netns, pids, buf, &mut snap.sockets) {
                    Ok(n) => {
                        source = SocketSource::ProcNet;
                        skipped = n;
                    }
                    Err(e) => {
                        snap.sockets.truncate(first);
                        snap.gaps.push(Gap {
                            what: format!("sockets of network namespace {netns}"),
                            error: e,
                        });
                    }
                }
            }
            dedup_inodes(&mut snap.sockets, first);
            if skipped > 0 {
                snap.gaps.push(Gap {
                    what: format!("sockets of network namespace {netns}"),
                    error: format!("{skipped} sockets in a state this reader does not know"),
                });
            }
            match read_interfaces(proc_dir, netns, pids, buf) {
                Ok(mut ifs) => {
                    ifs.sort_by(|a, b| a.name.cmp(&b.name));
                    snap.interfaces.extend(ifs);
                }
                Err(e) => snap.gaps.push(Gap {
                    what: format!("interfaces of network namespace {netns}"),
                    error: e,
                }),
            }
            snap.socket_sources.push(NetnsSource {
                netns,
                source,
                fallback_reason: match source {
                    SocketSource::SockDiag => None,
                    _ => state.failed.as_ref().map(|(why, _)| why.clone()),
                },
            });
        }
    }

    /// Opens a sock_diag socket for every namespace that has none (and is not waiting to
    /// retry): directly for this thread's own namespace, through the helper thread for the
    /// others. When this process may not create netlink sockets at all (the agent's unit
    /// leaves `AF_NETLINK` out of `RestrictAddressFamilies=`), its own namespace's socket
    /// comes from the network-namespace helper too, if there is one.
    fn open_missing(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        namespaces: &BTreeMap<u64, Vec<i32>>,
        scan: u64,
    ) {
        let mut foreign = Vec::new();
        for (&netns, pids) in namespaces {
            let state = self.namespaces.entry(netns).or_default();
            if state.diag.is_some() || state.failed.as_ref().is_some_and(|(_, at)| *at > scan) {
                continue;
            }
            match open_ns_file(proc_dir, netns, pids) {
                Ok((fd, id)) if Some(id) == self.own => match DiagSocket::open() {
                    Ok(s) => {
                        state.diag = Some(s);
                        state.failed = None;
                    }
                    Err(_) if self.helper.as_ref().is_some_and(|p| p.exists()) => {
                        foreign.push((netns, fd));
                    }
                    Err(e) => state.failed = Some((e.to_string(), scan + DIAG_RETRY_SCANS)),
                },
                Ok((fd, _)) => foreign.push((netns, fd)),
                Err(e) => state.failed = Some((e, scan + DIAG_RETRY_SCANS)),
            }
        }
        if foreign.is_empty() {
            return;
        }
        for (netns, result) in diag::open_in_namespaces(foreign, self.helper.clone()) {
            let state = self.namespaces.entry(netns).or_default();
            match result {
                Ok(s) => {
                    state.diag = Some(s);
                    state.failed = None;
                }
                Err(e) => state.failed = Some((e, scan + DIAG_RETRY_SCANS)),
            }
        }
    }
}

/// The sock_diag dumps of one namespace: TCP of both families in one dump when the kernel
/// takes that request (`tcp_both`, learnt on first use), else per family; UDP per family.
fn dump_all(
    sock: &mut DiagSocket,
    tcp_both: &mut Option<bool>,
    netns: u64,
    buf: &mut [u8],
    out: &mut Vec<Socket>,
) -> Result<u32, diag::DiagError> {
    let mut skipped = 0;
    let first = out.len();
    let mut tcp_done = false;
    if *tcp_both != Some(false) {
        match sock.dump(diag::Dump::TcpBothFamilies, netns, buf, out) {
            Ok(n) => {
                *tcp_both = Some(true);
                skipped += n;
                tcp_done = true;
            }
            // Refused (an error reply): this kernel does not serve it; ask per family.
            Err(diag::DiagError::Kernel(_)) if tcp_both.is_none() => {
                out.truncate(first);
                *tcp_both = Some(false);
            }
            Err(e) => return Err(e),
        }
    }
    if !tcp_done {
        for d in diag::TCP_BY_FAMILY {
            skipped += sock.dump(d, netns, buf, out)?;
        }
    }
    for d in diag::UDP_BY_FAMILY {
        skipped += sock.dump(d, netns, buf, out)?;
    }
    Ok(skipped)
}

/// `/proc/<pid>/ns/net` of the first pid whose namespace file really is `netns` (the
/// pid may have exited and been reused), with the file's (device, inode).
pub(super) fn open_ns_file(
    proc_dir: BorrowedFd<'_>,
    netns: u64,
    pids: &[i32],
) -> Result<(OwnedFd, (u64, u64)), String> {
    let mut last = String::from("no process to enter it through");
    for &pid in pids {
        let opened = open_pid_dir(proc_dir, pid)
            .and_then(|dir| procdir::open_at(dir.as_fd(), c"ns/net", OFlags::empty()));
        let stat = |fd: OwnedFd| {
            rustix::fs::fstat(&fd)
                .map(|st| (fd, st))
                .map_err(procdir::errno)
        };
        match opened.and_then(stat) {
            Ok((fd, st)) if st.st_ino == netns => return Ok((fd, (st.st_dev, st.st_ino))),
            Ok(_) => last = format!("/proc/{pid}/ns/net is another namespace now"),
            Err(e) => last = format!("/proc/{pid}/ns/net: {e}"),
        }
    }
    Err(last)
}

/// A namespace's sockets from the text tables of the first pid that can be read, checking
/// afterwards that the pid is still in the namespace. Returns the unknown-state count.
fn read_text_tables(
    proc_dir: BorrowedFd<'_>,
    netns: u64,
    pids: &[i32],
    buf: &mut Buf,
    out: &mut Vec<Socket>,
) -> Result<u32, String> {
    const FILES: [(&CStr, Protocol, bool); 4] = [
        (c"net/tcp", Protocol::Tcp, false),
        (c"net/tcp6", Protocol::Tcp, true),
        (c"net/udp", Protocol::Udp, false),
        (c"net/udp6", Protocol::Udp, true),
    ];
    let first = out.len();
    let mut last = String::from("no process to read it through");
    'pids: for &pid in pids {
        out.truncate(first);
        let dir = match open_pid_dir(proc_dir, pid) {
            Ok(d) => d,
            Err(e) => {
                last = format!("/proc/{pid}: {e}");
                continue;
            }
        };
        let mut skipped = 0;
        let mut malformed = 0;
        for (name, protocol, v6) in FILES {
            let fd = match procdir::open_at(dir.as_fd(), name, OFlags::empty()) {
                Ok(fd) => fd,
                // A kernel without IPv6 has no tcp6/udp6.
                Err(Errno::ENOENT) if v6 && still_in(dir.as_fd(), netns) => continue,
                Err(e) => {
                    last = format!("/proc/{pid}/{}: {e}", name.to_string_lossy());
                    continue 'pids;
                }
            };
            let mut header = true;
            let read = buf.for_each_line(&fd, |line| {
                if std::mem::take(&mut header) || line.is_empty() {
                    return;
                }
                match parse_table_line(line, protocol, v6, netns) {
                    TableLine::Socket(s) => out.push(s),
                    TableLine::UnknownState => skipped += 1,
                    TableLine::Malformed => malformed += 1,
                }
            });
            if let Err(e) = read {
                last = format!("/proc/{pid}/{}: {e}", name.to_string_lossy());
                continue 'pids;
            }
        }
        if !still_in(dir.as_fd(), netns) {
            last = format!("/proc/{pid} left the namespace while being read");
            continue;
        }
        if malformed > 0 {
            return Err(format!(
                "/proc/{pid}/net: {malformed} lines that are not socket records"
            ));
        }
        return Ok(skipped);
    }
    out.truncate(first);
    Err(last)
}

fn still_in(dir: BorrowedFd<'_>, netns: u64) -> bool {
    procdir::readlink(dir, c"ns/net")
        .ok()
        .and_then(|t| procdir::parse_ns_link(t.as_encoded_bytes()))
        == Some(netns)
}

fn read_interfaces(
    proc_dir: BorrowedFd<'_>,
    netns: u64,
    pids: &[i32],
    buf: &mut Buf,
) -> Result<Vec<Interface>, String> {
    let mut last = String::from("no process to read it through");
    for &pid in pids {
        let dir = match open_pid_dir(proc_dir, pid) {
            Ok(d) => d,
            Err(e) => {
                last = format!("/proc/{pid}: {e}");
                continue;
            }
        };
        let text = match buf.read_at(dir.as_fd(), c"net/dev", false) {
            Ok(t) => t,
            Err(e) => {
                last = format!("/proc/{pid}/net/dev: {e}");
                continue;
            }
        };
        let mut ifs: Vec<Interface> = text
            .split(|&b| b == b'\n')
            .skip(2)
            .filter_map(|l| parse_dev_line(l, netns))
            .collect();
        // Group memberships: absent tables (no IPv6, say) mean no groups.
        let mut groups: Vec<(String, IpAddr)> = Vec::new();
        if let Ok(t) = buf.read_at(dir.as_fd(), c"net/igmp", false) {
            parse_igmp(t, &mut groups);
        }
        if let Ok(t) = buf.read_at(dir.as_fd(), c"net/igmp6", false) {
            parse_igmp6(t, &mut groups);
        }
        for (name, group) in groups {
            if let Some(i) = ifs.iter_mut().find(|i| i.name == name) {
                i.multicast_groups.push(group);
            }
        }
        for i in &mut ifs {
            i.multicast_groups.sort();
            i.multicast_groups.dedup();
        }
        if still_in(dir.as_fd(), netns) {
            return Ok(ifs);
        }
        last = format!("/proc/{pid} left the namespace while being read");
    }
    Err(last)
}

/// Drops later records of an inode already seen in `sockets[from..]` (a table that changed
/// during a dump can list a socket twice).
fn dedup_inodes(sockets: &mut Vec<Socket>, from: usize) {
    let mut seen: IdSet<u64> = IdSet::default();
    seen.reserve(sockets.len() - from);
    let mut i = from;
    let mut keep = from;
    while i < sockets.len() {
        let inode = sockets[i].inode;
        if inode == 0 || seen.insert(inode) {
            sockets.swap(keep, i);
            keep += 1;
        }
        i += 1;
    }
    sockets.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::socket_from_parts;

    #[test]
    fn duplicate_inodes_are_dropped() {
        let mk = |inode| {
            socket_from_parts(
                1,
                Protocol::Tcp,
                "127.0.0.1:1".parse().expect("addr"),
                "0.0.0.0:0".parse().expect("addr"),
                10,
                0,
                inode,
            )
            .expect("socket")
        };
        let mut v = vec![mk(9), mk(1), mk(0), mk(2), mk(1), mk(0), mk(2)];
        dedup_inodes(&mut v, 1);
        let inodes: Vec<u64> = v.iter().map(|s| s.inode).collect();
        assert_eq!(inodes, vec![9, 1, 0, 2, 0]);
    }

    fn own_netns() -> u64 {
        let t = std::fs::read_link("/proc/self/ns/net").expect("ns link");
        procdir::parse_ns_link(t.as_os_str().as_encoded_bytes()).expect("ns inode")
    }

    #[test]
    fn text_tables_and_sock_diag_agree() {
        // Sockets of this test in both readers, field for field.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(tcp.local_addr().expect("addr")).expect("connect");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let tcp6 = std::net::TcpListener::bind("[::1]:0").ok();
        let mut ports = vec![
            tcp.local_addr().expect("addr").port(),
            client.local_addr().expect("addr").port(),
            udp.local_addr().expect("addr").port(),
        ];
        ports.extend(tcp6.iter().map(|l| l.local_addr().expect("addr").port()));
        let netns = own_netns();
        let proc_dir = procdir::open_path("/proc", OFlags::DIRECTORY).expect("/proc");
        let me = std::process::id() as i32;
        let mut text = Vec::new();
        let skipped = read_text_tables(
            proc_dir.as_fd(),
            netns,
            &[me],
            &mut Buf::default(),
            &mut text,
        )
        .expect("text tables");
        assert_eq!(skipped, 0);
        // The inventory's socket source on every Linux: without it the test fails rather
        // than passes doing nothing.
        let mut sock = DiagSocket::open().expect("a NETLINK_SOCK_DIAG socket");
        let mut diag = Vec::new();
        let mut recv = vec![0; RECV_BUF];
        let mut tcp_both = None;
        dump_all(&mut sock, &mut tcp_both, netns, &mut recv, &mut diag).expect("sock_diag");
        let mine = |v: &[Socket]| {
            let mut m: Vec<Socket> = v
                .iter()
                .filter(|s| s.inode != 0 && ports.contains(&s.local.port()))
                .cloned()
                .collect();
            m.sort_by_key(|s| s.inode);
            m
        };
        let (t, d) = (mine(&text), mine(&diag));
        assert!(t.len() >= ports.len(), "{t:?}");
        assert_eq!(t, d);
        // A pid that is not in the namespace is not read through.
        assert!(read_text_tables(
            proc_dir.as_fd(),
            netns + 1,
            &[me],
            &mut Buf::default(),
            &mut text
        )
        .is_err());
    }

    #[test]
    fn the_namespace_helper_reports_failures() {
        // Not a namespace file: setns fails, and says so for that namespace only.
        let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
        let r = diag::open_in_namespaces(vec![(42, devnull.into())], None);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, 42);
        assert!(
            r[0].1.as_ref().is_err_and(|e| e.contains("setns")),
            "{:?}",
            r[0].1
        );
        // Its own namespace, entered from the helper thread (needs CAP_SYS_ADMIN).
        if nix::unistd::geteuid().is_root() {
            let ns = std::fs::File::open("/proc/self/ns/net").expect("ns");
            let mut r = diag::open_in_namespaces(vec![(own_netns(), ns.into())], None);
            let (_, sock) = r.pop().expect("one result");
            let mut sock = sock.expect("a sock_diag socket from the helper");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let mut out = Vec::new();
            sock.dump(diag::TCP_BY_FAMILY[0], 1, &mut vec![0; RECV_BUF], &mut out)
                .expect("dump");
            assert!(out.iter().any(|s| s.local.port() == port));
        }
        // The calling thread never moved.
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").expect("ns"),
            std::fs::read_link("/proc/self/ns/net").expect("ns")
        );
    }
}
