//! The network-namespace helper: the one privileged piece the agent needs for other
//! network namespaces, as a separate process (`aupwatch netns-helper`, socket-activated by
//! `systemd/aupwatch-netns.socket`) with `CAP_SYS_ADMIN` and nothing else.
//!
//! A socket stays in the network namespace it was created in, whoever uses it later. So the
//! agent, which can open `/proc/<pid>/ns/net` (`CAP_SYS_PTRACE`) but not enter it (no
//! `CAP_SYS_ADMIN`), asks the helper for a socket *created inside* that namespace, and then
//! does the sock_diag dump or the probe's bind/listen/connect itself.
//!
//! The protocol, on a Unix `SOCK_SEQPACKET` socket (one message each way per request):
//! - request: one byte, the [`SocketKind`], with exactly one descriptor (`SCM_RIGHTS`): the
//!   namespace. Nothing else: no path, no address, no pid.
//! - reply: five bytes, a status byte and an errno (little-endian `i32`, 0 if none); with
//!   status 0 exactly one descriptor, the new socket.
//!
//! The helper refuses a peer that is not root or the allowed user (`SO_PEERCRED`:
//! its first request is answered [`Status::Denied`], then the helper hangs up), a request that is not one byte or carries
//! not exactly one descriptor, a descriptor that is not a namespace file (`fstatfs`: nsfs)
//! or not a *network* namespace (`setns(fd, CLONE_NEWNET)` says `EINVAL`), and an unknown
//! kind. Each request is served by a short-lived thread that `setns`es and exits, so the
//! helper's own threads never move.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the packaged units put the helper's socket (`aupwatch-netns.socket`).
pub const DEFAULT_SOCKET: &str = "/run/aupwatch-netns.sock";
/// How long the client waits for the helper's answer, and the helper for a request.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The most connections the helper serves at once (the agent uses one per sock_diag pass
/// and one per probe thread: at most 9); more are told [`Status::Busy`].
pub const MAX_CONNECTIONS: usize = 16;
/// `NSFS_MAGIC` (linux/magic.h): the file system of `/proc/<pid>/ns/*`.
const NSFS_MAGIC: rustix::fs::FsWord = 0x6e73_6673;
const REPLY_LEN: usize = 5;

/// What socket a request asks for, created inside the namespace sent along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SocketKind {
    /// `AF_NETLINK`, `SOCK_DGRAM`, `NETLINK_SOCK_DIAG`: the namespace's socket tables.
    SockDiag = 1,
    /// `AF_INET`, `SOCK_STREAM`: a probe connection or its canary.
    Tcp4 = 2,
    /// `AF_INET6`, `SOCK_STREAM`.
    Tcp6 = 3,
}

impl SocketKind {
    pub fn from_byte(b: u8) -> Option<SocketKind> {
        match b {
            1 => Some(SocketKind::SockDiag),
            2 => Some(SocketKind::Tcp4),
            3 => Some(SocketKind::Tcp6),
            _ => None,
        }
    }

    /// Whether `fd` is a socket of this kind (`SO_DOMAIN`, `SO_TYPE`, `SO_PROTOCOL`).
    pub fn is(self, fd: &OwnedFd) -> bool {
        use rustix::net::sockopt::{socket_domain, socket_protocol, socket_type};
        let (family, ty, proto) = self.parts();
        let want_proto = proto.map(|p| p.as_raw().get()).unwrap_or(match self {
            SocketKind::SockDiag => 0,
            SocketKind::Tcp4 | SocketKind::Tcp6 => 6, // IPPROTO_TCP
        });
        socket_domain(fd).is_ok_and(|d| d == family)
            && socket_type(fd).is_ok_and(|t| t == ty)
            && socket_protocol(fd).is_ok_and(|p| p.map_or(0, |p| p.as_raw().get()) == want_proto)
    }

    fn parts(self) -> (AddressFamily, SocketType, Option<rustix::net::Protocol>) {
        match self {
            SocketKind::SockDiag => (
                AddressFamily::NETLINK,
                SocketType::DGRAM,
                Some(rustix::net::netlink::SOCK_DIAG),
            ),
            SocketKind::Tcp4 => (AddressFamily::INET, SocketType::STREAM, None),
            SocketKind::Tcp6 => (AddressFamily::INET6, SocketType::STREAM, None),
        }
    }

    /// Creates this socket in the calling thread's network namespace (close-on-exec).
    pub fn create(self) -> Result<OwnedFd, Errno> {
        let (family, ty, proto) = self.parts();
        rustix::net::socket_with(family, ty, SocketFlags::CLOEXEC, proto)
    }
}

/// The status byte of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    /// The peer is not root or the allowed user.
    Denied = 1,
    /// Not one byte with exactly one descriptor.
    Malformed = 2,
    /// The descriptor is not a network namespace.
    NotNetns = 3,
    /// The kind byte names no [`SocketKind`].
    UnknownKind = 4,
    /// `setns` failed (errno).
    Enter = 5,
    /// Creating the socket failed (errno).
    Socket = 6,
    /// Too many connections at once.
    Busy = 7,
}

impl Status {
    fn from_byte(b: u8) -> Option<Status> {
        [
            Status::Ok,
            Status::Denied,
            Status::Malformed,
            Status::NotNetns,
            Status::UnknownKind,
            Status::Enter,
            Status::Socket,
            Status::Busy,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }

    fn says(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Denied => "this user may not use the helper",
            Status::Malformed => "malformed request",
            Status::NotNetns => "not a network namespace",
            Status::UnknownKind => "unknown request kind",
            Status::Enter => "cannot enter the namespace (setns)",
            Status::Socket => "cannot create the socket",
            Status::Busy => "too many connections",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    #[error("netns helper {path}: {what}: {errno}")]
    Sys {
        path: PathBuf,
        what: &'static str,
        errno: Errno,
    },
    #[error("netns helper {path}: refused: {}{}", .status.says(), errno_suffix(*.errno))]
    Refused {
        path: PathBuf,
        status: Status,
        errno: i32,
    },
    #[error("netns helper {path}: {what}")]
    Protocol { path: PathBuf, what: &'static str },
}

impl HelperError {
    /// For `map_err`: the system call `what` on the helper's socket at `path` failed.
    fn sys<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(Errno) -> HelperError + 'a {
        move |errno| HelperError::Sys {
            path: path.to_path_buf(),
            what,
            errno,
        }
    }
}

/// A close-on-exec `SOCK_SEQPACKET` Unix socket: the kind of both ends, the agent's and the
/// helper's listener at `path`.
fn seqpacket_socket(path: &Path) -> Result<OwnedFd, HelperError> {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(HelperError::sys(path, "socket"))
}

fn errno_suffix(errno: i32) -> String {
    if errno == 0 {
        String::new()
    } else {
        format!(": {}", Errno::from_raw_os_error(errno))
    }
}

/// The agent's side: one connection to the helper, for any number of requests.
#[derive(Debug)]
pub struct Connection {
    fd: OwnedFd,
    path: PathBuf,
    /// Set when the connection failed as a whole (a timeout, a hang-up, a garbled answer):
    /// later requests fail at once with it instead of waiting out the timeout again.
    broken: Option<HelperError>,
}

impl Connection {
    /// Connects to the helper's socket (with [`TIMEOUT`] on every answer).
    pub fn open(path: &Path) -> Result<Connection, HelperError> {
        let sys = |what| HelperError::sys(path, what);
        let fd = seqpacket_socket(path)?;
        for t in [
            rustix::net::sockopt::Timeout::Recv,
            rustix::net::sockopt::Timeout::Send,
        ] {
            rustix::net::sockopt::set_socket_timeout(&fd, t, Some(TIMEOUT))
                .map_err(sys("setsockopt"))?;
        }
        let addr = SocketAddrUnix::new(path).map_err(sys("address"))?;
        rustix::net::connect(&fd, &addr).map_err(sys("connect"))?;
        Ok(Connection {
            fd,
            path: path.to_path_buf(),
            broken: None,
        })
    }

    /// Asks for a socket of `kind` created inside the network namespace `netns` (an open
    /// `/proc/<pid>/ns/net`).
    /// The answer is checked to be that kind of socket (whatever listens on the path).
    pub fn socket(
        &mut self,
        netns: BorrowedFd<'_>,
        kind: SocketKind,
    ) -> Result<OwnedFd, HelperError> {
        let sock = self.raw_request(&[kind as u8], Some(netns))?;
        if !kind.is(&sock) {
            return Err(HelperError::Protocol {
                path: self.path.clone(),
                what: "the descriptor sent back is not the socket asked for",
            });
        }
        Ok(sock)
    }

    /// Sends any bytes with at most one descriptor and reads the reply (the tests' hostile
    /// client uses it directly).
    pub fn raw_request(
        &mut self,
        bytes: &[u8],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd, HelperError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let r = self.exchange(bytes, fd);
        if let Err(e) = &r {
            // A refusal of this request leaves the connection usable, except the two after
            // which the helper hangs up.
            let usable = matches!(e, HelperError::Refused { status, .. }
                if !matches!(status, Status::Denied | Status::Busy));
            if !usable {
                self.broken = Some(e.clone());
            }
        }
        r
    }

    fn exchange(
        &mut self,
        bytes: &[u8],
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd, HelperError> {
        let path = &self.path;
        let sys = |what| HelperError::sys(path, what);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds;
        if let Some(fd) = fd {
            fds = [fd];
            if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(HelperError::Protocol {
                    path: path.clone(),
                    what: "control buffer too small",
                });
            }
        }
        let sent = match rustix::net::sendmsg(
            &self.fd,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => n,
            // The helper answered at once and hung up (busy, denied): its answer, if any,
            // is waiting to be read and says why.
            Err(Errno::PIPE | Errno::CONNRESET) => bytes.len(),
            Err(e) => return Err(sys("send")(e)),
        };
        if sent != bytes.len() {
            return Err(HelperError::Protocol {
                path: path.clone(),
                what: "short send",
            });
        }
        let Some(mut got) =
            recv_one(self.fd.as_fd(), RecvFlags::empty()).map_err(sys("receive"))?
        else {
            return Err(HelperError::Protocol {
                path: path.clone(),
                what: "the helper hung up without an answer",
            });
        };
        if got.len != REPLY_LEN || !got.whole || got.fds.len() > 1 {
            return Err(HelperError::Protocol {
                path: path.clone(),
                what: "malformed answer",
            });
        }
        let r = got.head;
        let Some(status) = Status::from_byte(r[0]) else {
            return Err(HelperError::Protocol {
                path: path.clone(),
                what: "unknown status",
            });
        };
        let errno = i32::from_le_bytes([r[1], r[2], r[3], r[4]]);
        let got = got.fds.pop();
        match (status, got) {
            (Status::Ok, Some(sock)) => Ok(sock),
            (Status::Ok, None) => Err(HelperError::Protocol {
                path: path.clone(),
                what: "answer without a descriptor",
            }),
            (status, _) => Err(HelperError::Refused {
                path: path.clone(),
                status,
                errno,
            }),
        }
    }
}

/// One message as received: its first bytes, its length, whether it arrived whole, and
/// its descriptors (all of them, so extra ones are closed, not leaked).
struct Received {
    head: [u8; REPLY_LEN],
    len: usize,
    whole: bool,
    fds: Vec<OwnedFd>,
}

/// Receives one message (`None`: the peer hung up). `flags` besides `MSG_CMSG_CLOEXEC`.
fn recv_one(fd: BorrowedFd<'_>, flags: RecvFlags) -> Result<Option<Received>, Errno> {
    let mut head = [0u8; REPLY_LEN];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        fd,
        &mut [IoSliceMut::new(&mut head)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | flags,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(got) = m {
            fds.extend(got);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some(Received {
        head,
        len: msg.bytes,
        whole: !msg
            .flags
            .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC),
        fds,
    }))
}

/// Who may use the helper besides root: one user, the agent's. Not its group: members of
/// group `aupwatch` are the operators who may read `aupwatch status`, and a socket inside any
/// namespace whose file they can open (`/run/netns/*` is world-readable) would give them
/// network access they do not otherwise have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed {
    pub uid: Option<u32>,
}

impl Allowed {
    pub fn admits(&self, uid: u32) -> bool {
        uid == 0 || self.uid == Some(uid)
    }
}

/// How the helper runs.
#[derive(Debug)]
pub struct ServeOptions {
    /// The listening `SOCK_SEQPACKET` socket (systemd's, or one [`bind`] made).
    pub listener: OwnedFd,
    pub allowed: Allowed,
    /// Exit after this long without a connection (none open); `None`: never.
    pub idle_exit: Option<Duration>,
}

/// Binds and listens on `path` (replacing a stale socket file), mode 0660.
pub fn bind(path: &Path) -> Result<OwnedFd, HelperError> {
    let sys = |what| HelperError::sys(path, what);
    let fd = seqpacket_socket(path)?;
    match rustix::fs::lstat(path) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket =>
        {
            rustix::fs::unlink(path).map_err(sys("unlink the old socket"))?;
        }
        _ => {}
    }
    let addr = SocketAddrUnix::new(path).map_err(sys("address"))?;
    rustix::net::bind(&fd, &addr).map_err(sys("bind"))?;
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o660)).map_err(sys("chmod"))?;
    rustix::net::listen(&fd, 16).map_err(sys("listen"))?;
    Ok(fd)
}

/// The listening socket systemd passed as standard input (`StandardInput=socket` with
/// `Accept=no`), if standard input is one. Standard input rather than `LISTEN_FDS`'
/// descriptor 3: taking ownership of a raw descriptor number needs `unsafe`, which this
/// crate denies, while standard input is already a safe `BorrowedFd`.
pub fn stdin_listener() -> Option<OwnedFd> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let st = rustix::fs::fstat(fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        return None;
    }
    if !rustix::net::sockopt::socket_acceptconn(fd).ok()? {
        return None;
    }
    rustix::io::fcntl_dupfd_cloexec(fd, 3).ok()
}

/// Serves until idle (or forever): accepts, checks the peer, answers requests.
pub fn serve(opts: ServeOptions) -> Result<(), HelperError> {
    let path = PathBuf::from("(listener)");
    let active = Arc::new(AtomicUsize::new(0));
    // accept(2) honours the receive timeout: wake up to check for idleness.
    let tick = Duration::from_millis(500);
    rustix::net::sockopt::set_socket_timeout(
        &opts.listener,
        rustix::net::sockopt::Timeout::Recv,
        Some(tick),
    )
    .map_err(HelperError::sys(&path, "setsockopt"))?;
    let mut last = Instant::now();
    loop {
        match rustix::net::accept_with(&opts.listener, SocketFlags::CLOEXEC) {
            Ok(conn) => {
                last = Instant::now();
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    // Take a request already sent (without waiting for one): closing with it
                    // unread would reset the connection before the answer is read.
                    let _ = recv_one(conn.as_fd(), RecvFlags::DONTWAIT);
                    let _ = reply(conn.as_fd(), Status::Busy, 0, None);
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let a = Arc::clone(&active);
                let allowed = opts.allowed;
                let spawned =
                    std::thread::Builder::new()
                        .name("netns-conn".into())
                        .spawn(move || {
                            serve_connection(conn.as_fd(), allowed);
                            a.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => {}
            Err(errno) => return Err(HelperError::sys(&path, "accept")(errno)),
        }
        if active.load(Ordering::SeqCst) > 0 {
            last = Instant::now();
        }
        if opts.idle_exit.is_some_and(|idle| last.elapsed() >= idle) {
            return Ok(());
        }
    }
}

fn reply(
    fd: BorrowedFd<'_>,
    status: Status,
    errno: i32,
    sock: Option<&OwnedFd>,
) -> Result<(), Errno> {
    let mut bytes = [0u8; REPLY_LEN];
    bytes[0] = status as u8;
    bytes[1..].copy_from_slice(&errno.to_le_bytes());
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(s) = sock {
        fds = [s.as_fd()];
        control.push(SendAncillaryMessage::ScmRights(&fds));
    }
    rustix::net::sendmsg(
        fd,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// One client: the peer check, then requests until it hangs up or stays silent for
/// [`TIMEOUT`] × 5.
fn serve_connection(conn: BorrowedFd<'_>, allowed: Allowed) {
    for t in [
        rustix::net::sockopt::Timeout::Recv,
        rustix::net::sockopt::Timeout::Send,
    ] {
        if rustix::net::sockopt::set_socket_timeout(conn, t, Some(TIMEOUT * 5)).is_err() {
            return;
        }
    }
    let admitted =
        rustix::net::sockopt::socket_peercred(conn).is_ok_and(|c| allowed.admits(c.uid.as_raw()));
    if !admitted {
        // Read the request first (its descriptors are closed unused): closing with it
        // unread would reset the connection and lose the answer.
        if let Ok(Some(_)) = recv_one(conn, RecvFlags::empty()) {
            let _ = reply(conn, Status::Denied, 0, None);
        }
        return;
    }
    loop {
        let Ok(Some(mut msg)) = recv_one(conn, RecvFlags::empty()) else {
            return;
        };
        let fd = (msg.whole && msg.fds.len() == 1 && msg.len == 1)
            .then(|| msg.fds.pop())
            .flatten();
        let (status, errno, sock) = answer(msg.head[0], fd);
        if reply(conn, status, errno, sock.as_ref()).is_err() {
            return;
        }
    }
}

/// The answer to one request: `kind`, with descriptor `fd` (`None`: the request was not one
/// byte with exactly one descriptor).
fn answer(kind: u8, fd: Option<OwnedFd>) -> (Status, i32, Option<OwnedFd>) {
    let Some(ns) = fd else {
        return (Status::Malformed, 0, None);
    };
    match rustix::fs::fstatfs(&ns) {
        Ok(st) if st.f_type == NSFS_MAGIC => {}
        Ok(_) => return (Status::NotNetns, 0, None),
        Err(e) => return (Status::NotNetns, e.raw_os_error(), None),
    }
    let Some(kind) = SocketKind::from_byte(kind) else {
        return (Status::UnknownKind, 0, None);
    };
    let worker = std::thread::Builder::new()
        .name("netns-enter".into())
        .spawn(move || {
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            // EINVAL: a namespace of another type.
            .map_err(|e| {
                if e == Errno::INVAL {
                    (Status::NotNetns, e.raw_os_error())
                } else {
                    (Status::Enter, e.raw_os_error())
                }
            })?;
            kind.create()
                .map_err(|e| (Status::Socket, e.raw_os_error()))
        });
    match worker.map(|h| h.join()) {
        Ok(Ok(Ok(sock))) => (Status::Ok, 0, Some(sock)),
        Ok(Ok(Err((status, errno)))) => (status, errno, None),
        _ => (Status::Socket, Errno::AGAIN.raw_os_error(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper that never answers (a listener nobody accepts on) costs the client one
    /// timeout, not one per request.
    #[test]
    fn a_silent_helper_costs_one_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("silent.sock");
        let _listener = bind(&path).expect("bind");
        let ns = std::fs::File::open("/proc/self/ns/net").expect("own netns");
        let mut conn = Connection::open(&path).expect("connect (queued, never accepted)");
        let started = Instant::now();
        let first = conn.socket(ns.as_fd(), SocketKind::Tcp4);
        assert!(
            matches!(&first, Err(HelperError::Sys { what: "receive", errno, .. }) if *errno == Errno::AGAIN),
            "{first:?}"
        );
        let waited = started.elapsed();
        let again = Instant::now();
        let second = conn.socket(ns.as_fd(), SocketKind::SockDiag);
        assert_eq!(second.err(), first.err(), "the same error, at once");
        // Side by side in one run: the first waited for the timeout, the second did not.
        assert!(
            again.elapsed() < waited,
            "{:?} vs {waited:?}",
            again.elapsed()
        );
    }

    #[test]
    fn kinds_are_checked_on_the_sockets_themselves() {
        let kinds = [SocketKind::SockDiag, SocketKind::Tcp4, SocketKind::Tcp6];
        for made in kinds {
            let Ok(sock) = made.create() else { continue }; // no IPv6 or netlink here
            for asked in kinds {
                assert_eq!(asked.is(&sock), asked == made, "{made:?} as {asked:?}");
            }
        }
        let file: OwnedFd = std::fs::File::open("/dev/null").expect("/dev/null").into();
        assert!(!SocketKind::Tcp4.is(&file));
    }

    #[test]
    fn only_root_and_the_allowed_user() {
        let a = Allowed { uid: Some(108) };
        assert!(a.admits(0) && a.admits(108));
        assert!(!a.admits(109) && !Allowed::default().admits(108));
    }
}
