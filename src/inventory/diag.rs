//! TCP and UDP sockets from the kernel's `NETLINK_SOCK_DIAG` (`inet_diag`) dumps: binary
//! records, about half the kernel time of formatting and parsing `/proc/net/tcp` text.
//!
//! A netlink socket answers for the network namespace it was created in, whoever uses it
//! later. [`open_in_namespaces`] creates one socket per foreign namespace from a helper
//! thread that enters each namespace with `setns(CLONE_NEWNET)` and then exits (its
//! namespace dies with it; the calling thread never moves). Entering a namespace needs
//! `CAP_SYS_ADMIN`; without it the caller falls back to `/proc/<pid>/net`.
//!
//! Requests are built and replies parsed from bytes here, without `unsafe`: every length
//! and offset in a reply is checked before it is used; the kernel is trusted no more than a
//! file an attacker wrote. Only the kernel (netlink port 0) may answer: the socket is
//! connected to it, so the kernel refuses other senders, and every reply's sender is checked.

use super::model::{socket_from_parts, Protocol, Socket};
use crate::netns::{self, Place};
use nix::sys::socket::{
    connect, recvfrom, send, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The original `inet_diag` request (`struct inet_diag_req`): TCP of both address families.
const TCPDIAG_GETSOCK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x300; // NLM_F_ROOT | NLM_F_MATCH
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `struct nlmsghdr` + `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = NLMSG_HDRLEN + 56;
/// `struct nlmsghdr` + `struct inet_diag_req` (v1).
const COMPAT_REQUEST_LEN: usize = NLMSG_HDRLEN + 60;
/// `struct inet_diag_msg` (attributes may follow; they are skipped).
const DIAG_MSG_LEN: usize = 72;
/// TCP states 1..=12 (ESTABLISHED … NEW_SYN_RECV): what `/proc/net/tcp` shows. Not bit 13,
/// TCP_BOUND_INACTIVE (bound, never listened or connected), which only sock_diag has.
const STATES: u32 = 0x1ffe;
/// Receive buffer. The kernel fills at most ~32 KiB per dump message batch; a datagram that
/// fills the whole buffer is treated as truncated.
pub(super) const RECV_BUF: usize = 64 * 1024;

/// One dump request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dump {
    /// `SOCK_DIAG_BY_FAMILY` for one protocol and address family.
    Family(Protocol, u8),
    /// `TCPDIAG_GETSOCK`: the kernel dumps TCP with `AF_UNSPEC`, both address families in
    /// one walk of its (global) TCP hash tables instead of one walk per family. The kernel
    /// still serves this request of the first `inet_diag` (older `ss` sends it); if it does
    /// not, [`TCP_BY_FAMILY`] does the same in two dumps.
    TcpBothFamilies,
}

pub(super) const TCP_BY_FAMILY: [Dump; 2] = [
    Dump::Family(Protocol::Tcp, AF_INET),
    Dump::Family(Protocol::Tcp, AF_INET6),
];
pub(super) const UDP_BY_FAMILY: [Dump; 2] = [
    Dump::Family(Protocol::Udp, AF_INET),
    Dump::Family(Protocol::Udp, AF_INET6),
];

impl Dump {
    fn protocol(self) -> Protocol {
        match self {
            Dump::Family(p, _) => p,
            Dump::TcpBothFamilies => Protocol::Tcp,
        }
    }

    /// The family every record must have, `None` for either.
    fn family(self) -> Option<u8> {
        match self {
            Dump::Family(_, f) => Some(f),
            Dump::TcpBothFamilies => None,
        }
    }

    /// The message type of the request and of every record answering it.
    fn msg_type(self) -> u16 {
        match self {
            Dump::Family(..) => SOCK_DIAG_BY_FAMILY,
            Dump::TcpBothFamilies => TCPDIAG_GETSOCK,
        }
    }
}

#[derive(Debug)]
pub(super) enum DiagError {
    /// A system call failed.
    Sys(&'static str, nix::Error),
    /// The kernel answered with an error (errno).
    Kernel(i32),
    /// The reply does not have the expected shape.
    Malformed(&'static str),
}

impl fmt::Display for DiagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiagError::Sys(what, e) => write!(f, "sock_diag {what}: {e}"),
            DiagError::Kernel(errno) => write!(
                f,
                "sock_diag: kernel error: {}",
                nix::errno::Errno::from_raw(*errno)
            ),
            DiagError::Malformed(what) => write!(f, "sock_diag: malformed reply: {what}"),
        }
    }
}

/// The dump request for one (protocol, address family): every socket in [`STATES`].
pub(super) fn request(protocol: Protocol, family: u8, seq: u32) -> [u8; REQUEST_LEN] {
    let mut r = [0u8; REQUEST_LEN];
    r[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: to the kernel.
    r[16] = family;
    r[17] = match protocol {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    };
    // idiag_ext 0 (no attributes asked), pad 0.
    r[20..24].copy_from_slice(&STATES.to_ne_bytes());
    // inet_diag_sockid all zero: no filter.
    r
}

/// The `TCPDIAG_GETSOCK` dump request: `struct inet_diag_req` with every state in
/// [`STATES`] (its family field is not used by a dump: the kernel dumps both).
pub(super) fn compat_request(seq: u32) -> [u8; COMPAT_REQUEST_LEN] {
    let mut r = [0u8; COMPAT_REQUEST_LEN];
    r[0..4].copy_from_slice(&(COMPAT_REQUEST_LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    r[16] = AF_INET;
    // idiag_src_len, idiag_dst_len, idiag_ext 0; inet_diag_sockid (48 bytes) zero.
    r[68..72].copy_from_slice(&STATES.to_ne_bytes());
    // idiag_dbs 0.
    r
}

/// What one received datagram said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// More datagrams follow.
    More,
    /// `NLMSG_DONE`: the dump is complete.
    Done,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses one datagram of a dump answering request `seq` for `(protocol, family)`,
/// appending the sockets to `out`. Returns how many records had a state this reader does
/// not know (skipped) along with the step.
pub(super) fn parse_datagram(
    buf: &[u8],
    seq: u32,
    dump: Dump,
    netns: u64,
    out: &mut Vec<Socket>,
) -> Result<(Step, u32), DiagError> {
    let mut rest = buf;
    let mut skipped = 0;
    while !rest.is_empty() {
        let len = u32_at(rest, 0).ok_or(DiagError::Malformed("truncated header"))? as usize;
        let ty = u16_at(rest, 4).ok_or(DiagError::Malformed("truncated header"))?;
        let mseq = u32_at(rest, 8).ok_or(DiagError::Malformed("truncated header"))?;
        if rest.len() < NLMSG_HDRLEN {
            return Err(DiagError::Malformed("truncated header"));
        }
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(DiagError::Malformed("message length out of bounds"));
        }
        if mseq != seq {
            return Err(DiagError::Malformed("reply to another request"));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        match ty {
            NLMSG_DONE => {
                // The payload of a dump's DONE is the dump's status (0 or -errno).
                if let Some(status) = i32_at(payload, 0) {
                    if status < 0 {
                        return Err(DiagError::Kernel(status.saturating_neg()));
                    }
                }
                return Ok((Step::Done, skipped));
            }
            NLMSG_ERROR => {
                let status = i32_at(payload, 0).ok_or(DiagError::Malformed("short error"))?;
                if status != 0 {
                    return Err(DiagError::Kernel(status.saturating_neg()));
                }
            }
            NLMSG_NOOP => {}
            t if t == dump.msg_type() => {
                match parse_record(payload, dump.protocol(), dump.family(), netns)? {
                    Some(s) => out.push(s),
                    None => skipped += 1,
                }
            }
            _ => return Err(DiagError::Malformed("unexpected message type")),
        }
        // Messages are 4-byte aligned; the last one may end the datagram unpadded.
        let next = len.checked_add(3).ok_or(DiagError::Malformed("length"))? & !3;
        rest = rest.get(next..).unwrap_or(&[]);
    }
    Ok((Step::More, skipped))
}

/// One `struct inet_diag_msg`. `None` for a state outside [`STATES`]. `family`: the
/// family the request asked for, `None` for either.
pub(super) fn parse_record(
    p: &[u8],
    protocol: Protocol,
    family: Option<u8>,
    netns: u64,
) -> Result<Option<Socket>, DiagError> {
    if p.len() < DIAG_MSG_LEN {
        return Err(DiagError::Malformed("short inet_diag_msg"));
    }
    let got = p[0];
    if got != AF_INET && got != AF_INET6 {
        return Err(DiagError::Malformed("not an internet address family"));
    }
    if family.is_some_and(|f| f != got) {
        return Err(DiagError::Malformed(
            "address family differs from the request",
        ));
    }
    let family = got;
    let state = p[1];
    let sport = u16::from_be_bytes([p[4], p[5]]);
    let dport = u16::from_be_bytes([p[6], p[7]]);
    let (src, dst): (IpAddr, IpAddr) = if family == AF_INET {
        (
            Ipv4Addr::new(p[8], p[9], p[10], p[11]).into(),
            Ipv4Addr::new(p[24], p[25], p[26], p[27]).into(),
        )
    } else {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&p[8..24]);
        d.copy_from_slice(&p[24..40]);
        (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())
    };
    let uid = u32_at(p, 64).ok_or(DiagError::Malformed("short inet_diag_msg"))?;
    let inode = u32_at(p, 68).ok_or(DiagError::Malformed("short inet_diag_msg"))?;
    Ok(socket_from_parts(
        netns,
        protocol,
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        state,
        uid,
        u64::from(inode),
    ))
}

/// A `NETLINK_SOCK_DIAG` socket of one network namespace.
#[derive(Debug)]
pub(super) struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
}

impl DiagSocket {
    /// A socket in the calling thread's network namespace, connected to the kernel.
    pub(super) fn open() -> Result<DiagSocket, DiagError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .map_err(|e| DiagError::Sys("socket", e))?;
        DiagSocket::from_socket(fd)
    }

    /// Makes a `NETLINK_SOCK_DIAG` datagram socket created elsewhere (in another namespace,
    /// by [`crate::netns::Inside::socket`]) ready for dumps.
    pub(super) fn from_socket(fd: OwnedFd) -> Result<DiagSocket, DiagError> {
        // Connected to port 0, the kernel refuses unicasts from other processes to it.
        connect(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| DiagError::Sys("connect", e))?;
        // A dump never stalls, but a scan must not hang on one if it did.
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::seconds(5))
            .map_err(|e| DiagError::Sys("setsockopt", e))?;
        Ok(DiagSocket { fd, seq: 0 })
    }

    /// Dumps one table into `out`; returns the number of records skipped for an unknown
    /// state. On error `out` may hold part of the table: the caller discards it.
    pub(super) fn dump(
        &mut self,
        dump: Dump,
        netns: u64,
        buf: &mut [u8],
        out: &mut Vec<Socket>,
    ) -> Result<u32, DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let (v2, v1);
        let req: &[u8] = match dump {
            Dump::Family(protocol, family) => {
                v2 = request(protocol, family, self.seq);
                &v2
            }
            Dump::TcpBothFamilies => {
                v1 = compat_request(self.seq);
                &v1
            }
        };
        let sent = send(self.fd.as_raw_fd(), req, MsgFlags::empty())
            .map_err(|e| DiagError::Sys("send", e))?;
        if sent != req.len() {
            return Err(DiagError::Malformed("short send"));
        }
        let mut skipped = 0;
        loop {
            let (n, from) = recvfrom::<NetlinkAddr>(self.fd.as_raw_fd(), buf)
                .map_err(|e| DiagError::Sys("recv", e))?;
            if from.map(|a| a.pid()) != Some(0) {
                return Err(DiagError::Malformed("datagram not from the kernel"));
            }
            if n >= buf.len() {
                return Err(DiagError::Malformed("datagram larger than the buffer"));
            }
            let (step, s) = parse_datagram(&buf[..n], self.seq, dump, netns, out)?;
            skipped += s;
            if step == Step::Done {
                return Ok(skipped);
            }
        }
    }
}

/// Creates a [`DiagSocket`] inside each namespace, given an open `/proc/<pid>/ns/net` of
/// each, from one helper thread ([`crate::netns::spawn_in`]) that `setns`es from namespace
/// to namespace and then exits, or, without the privilege, asks the network-namespace
/// helper at `helper` for each socket.
pub(super) fn open_in_namespaces(
    namespaces: Vec<(u64, OwnedFd)>,
    helper: Option<std::path::PathBuf>,
) -> Vec<(u64, Result<DiagSocket, String>)> {
    let ids: Vec<u64> = namespaces.iter().map(|(ns, _)| *ns).collect();
    let stops = namespaces
        .into_iter()
        .map(|(ns, fd)| (ns, Place::Enter(fd)))
        .collect();
    let worker = netns::spawn_in("aupwatch-netns", stops, helper, |_, inside| {
        let fd = inside.socket(crate::netns_helper::SocketKind::SockDiag)?;
        DiagSocket::from_socket(fd).map_err(|e| e.to_string())
    });
    let failed = |why: String| {
        ids.iter()
            .map(|ns| (*ns, Err(why.clone())))
            .collect::<Vec<_>>()
    };
    match worker {
        Ok(handle) => match handle.join() {
            Ok(results) => results
                .into_iter()
                .map(|(ns, r)| (ns, r.map_err(|e| e.to_string()).and_then(|s| s)))
                .collect(),
            Err(_) => failed("the namespace helper thread panicked".into()),
        },
        Err(e) => failed(format!("cannot start the namespace helper thread: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::SocketState;

    fn header(len: usize, ty: u16, seq: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&(len as u32).to_ne_bytes());
        h.extend_from_slice(&ty.to_ne_bytes());
        h.extend_from_slice(&0x2u16.to_ne_bytes()); // NLM_F_MULTI
        h.extend_from_slice(&seq.to_ne_bytes());
        h.extend_from_slice(&0u32.to_ne_bytes());
        h
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        family: u8,
        state: u8,
        sport: u16,
        dport: u16,
        src: &[u8],
        dst: &[u8],
        uid: u32,
        inode: u32,
    ) -> Vec<u8> {
        let mut m = vec![0u8; DIAG_MSG_LEN];
        m[0] = family;
        m[1] = state;
        m[4..6].copy_from_slice(&sport.to_be_bytes());
        m[6..8].copy_from_slice(&dport.to_be_bytes());
        m[8..8 + src.len()].copy_from_slice(src);
        m[24..24 + dst.len()].copy_from_slice(dst);
        m[64..68].copy_from_slice(&uid.to_ne_bytes());
        m[68..72].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    fn message(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = header(NLMSG_HDRLEN + payload.len(), ty, seq);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn request_layout() {
        let r = request(Protocol::Udp, AF_INET6, 7);
        assert_eq!(u32_at(&r, 0), Some(72));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_at(&r, 6), Some(0x301));
        assert_eq!(u32_at(&r, 8), Some(7));
        assert_eq!(u32_at(&r, 12), Some(0));
        assert_eq!((r[16], r[17], r[18], r[19]), (AF_INET6, IPPROTO_UDP, 0, 0));
        assert_eq!(u32_at(&r, 20), Some(STATES));
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn parses_a_v4_listener_and_a_v6_connection() {
        let mut out = Vec::new();
        let mut dgram = message(
            SOCK_DIAG_BY_FAMILY,
            3,
            &record(AF_INET, 10, 9050, 0, &[127, 0, 0, 1], &[0; 4], 108, 4242),
        );
        // An attribute after the record (INET_DIAG_SHUTDOWN) is skipped.
        let mut with_attr = record(
            AF_INET,
            1,
            40000,
            3333,
            &[10, 0, 0, 2],
            &[10, 0, 0, 9],
            1000,
            4243,
        );
        with_attr.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        dgram.extend(message(SOCK_DIAG_BY_FAMILY, 3, &with_attr));
        let (step, skipped) =
            parse_datagram(&dgram, 3, TCP_BY_FAMILY[0], 9, &mut out).expect("parses");
        assert_eq!((step, skipped), (Step::More, 0));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].local, "127.0.0.1:9050".parse().expect("addr"));
        assert_eq!(out[0].state, SocketState::Listen);
        assert_eq!(out[0].remote, None);
        assert_eq!((out[0].uid, out[0].inode, out[0].netns), (108, 4242, 9));
        assert_eq!(out[1].remote, Some("10.0.0.9:3333".parse().expect("addr")));
        assert_eq!(out[1].state, SocketState::Established);

        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
        let peer = Ipv6Addr::LOCALHOST.octets();
        let mut out = Vec::new();
        let mut dgram = message(
            SOCK_DIAG_BY_FAMILY,
            4,
            &record(AF_INET6, 1, 6667, 50000, &v6, &peer, 0, 77),
        );
        dgram.extend(message(NLMSG_DONE, 4, &0i32.to_ne_bytes()));
        let (step, _) = parse_datagram(&dgram, 4, UDP_BY_FAMILY[1], 1, &mut out).expect("parses");
        assert_eq!(step, Step::Done);
        assert_eq!(out[0].local, "[2001:db8::1]:6667".parse().expect("addr"));
        assert_eq!(out[0].remote, Some("[::1]:50000".parse().expect("addr")));
        assert_eq!(out[0].protocol, Protocol::Udp);
        assert_eq!(out[0].state, SocketState::Established);
    }

    #[test]
    fn unknown_states_are_counted_not_returned() {
        let dgram = message(
            SOCK_DIAG_BY_FAMILY,
            1,
            &record(AF_INET, 13, 1, 0, &[0; 4], &[0; 4], 0, 5),
        );
        let mut out = Vec::new();
        let r = parse_datagram(&dgram, 1, TCP_BY_FAMILY[0], 1, &mut out).expect("parses");
        assert_eq!(r, (Step::More, 1));
        assert!(out.is_empty());
    }

    #[test]
    fn errors_and_malformed_replies() {
        let mut out = Vec::new();
        let mut parse = |b: &[u8]| parse_datagram(b, 1, TCP_BY_FAMILY[0], 1, &mut out);
        let ok = record(AF_INET, 10, 1, 0, &[0; 4], &[0; 4], 0, 5);

        // An error message carries -errno.
        let e = parse(&message(NLMSG_ERROR, 1, &(-13i32).to_ne_bytes()));
        assert!(matches!(e, Err(DiagError::Kernel(13))), "{e:?}");
        // DONE with a negative status.
        let e = parse(&message(NLMSG_DONE, 1, &(-22i32).to_ne_bytes()));
        assert!(matches!(e, Err(DiagError::Kernel(22))), "{e:?}");
        // i32::MIN does not overflow.
        assert!(parse(&message(NLMSG_ERROR, 1, &i32::MIN.to_ne_bytes())).is_err());
        // Short error payload.
        assert!(matches!(
            parse(&message(NLMSG_ERROR, 1, &[1, 2])),
            Err(DiagError::Malformed(_))
        ));
        // Truncated header.
        assert!(parse(&header(16, NLMSG_DONE, 1)[..10]).is_err());
        // Length larger than the datagram, smaller than a header, zero.
        let mut m = message(SOCK_DIAG_BY_FAMILY, 1, &ok);
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse(&m).is_err());
        m[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(parse(&m).is_err());
        m[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(parse(&m).is_err());
        // A record cut short.
        assert!(parse(&message(SOCK_DIAG_BY_FAMILY, 1, &ok[..40])).is_err());
        // Another request's reply, another family, an unknown type.
        assert!(parse(&message(SOCK_DIAG_BY_FAMILY, 2, &ok)).is_err());
        let v6 = record(AF_INET6, 10, 1, 0, &[0; 16], &[0; 16], 0, 5);
        assert!(parse(&message(SOCK_DIAG_BY_FAMILY, 1, &v6)).is_err());
        assert!(parse(&message(99, 1, &ok)).is_err());
        // Empty datagram: nothing, more to come.
        assert_eq!(parse(&[]).expect("empty"), (Step::More, 0));
        // A datagram cut inside the second message.
        let mut two = message(SOCK_DIAG_BY_FAMILY, 1, &ok);
        two.extend(message(SOCK_DIAG_BY_FAMILY, 1, &ok));
        assert!(parse(&two[..two.len() - 5]).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // A small xorshift generator: random bytes, and valid messages with random bytes
        // flipped, must give an error or a result, never a panic.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = {
            let mut d = message(
                SOCK_DIAG_BY_FAMILY,
                1,
                &record(AF_INET, 1, 1, 2, &[1, 2, 3, 4], &[5, 6, 7, 8], 0, 9),
            );
            d.extend(message(NLMSG_DONE, 1, &0i32.to_ne_bytes()));
            d
        };
        let mut out = Vec::new();
        for round in 0..20_000 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let len = (next() % 300) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut d = valid.clone();
                for _ in 0..(next() % 4) {
                    let i = (next() as usize) % d.len();
                    d[i] = next() as u8;
                }
                d.truncate((next() as usize) % (d.len() + 1));
                d
            };
            let dump = [TCP_BY_FAMILY[0], Dump::TcpBothFamilies][round % 2];
            let _ = parse_datagram(&buf, 1, dump, 1, &mut out);
            out.clear();
        }
    }

    #[test]
    fn dumps_this_namespace() {
        // The kernel answers an unprivileged dump of the caller's own namespace; a listener
        // of this test must be in it, with its inode.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // The inventory's socket source on every Linux: without it the test fails rather
        // than passes doing nothing.
        let mut sock = DiagSocket::open().expect("a NETLINK_SOCK_DIAG socket");
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = Vec::new();
        sock.dump(TCP_BY_FAMILY[0], 0, &mut buf, &mut out)
            .expect("dump");
        let mine: Vec<&Socket> = out
            .iter()
            .filter(|s| s.local.port() == port && s.state == SocketState::Listen)
            .collect();
        assert_eq!(mine.len(), 1, "{out:?}");
        assert!(mine[0].inode != 0);
        // The socket is reusable: a second dump on it works too.
        out.clear();
        sock.dump(TCP_BY_FAMILY[0], 0, &mut buf, &mut out)
            .expect("second dump");
        assert!(out.iter().any(|s| s.local.port() == port));
        // The one-walk request for both families gives the same sockets as the two
        // per-family requests (the kernel may refuse it: then the reader falls back).
        let listener6 = std::net::TcpListener::bind("[::1]:0");
        let mut both = Vec::new();
        if sock
            .dump(Dump::TcpBothFamilies, 0, &mut buf, &mut both)
            .is_ok()
        {
            let mut by_family = Vec::new();
            for d in TCP_BY_FAMILY {
                sock.dump(d, 0, &mut buf, &mut by_family).expect("dump");
            }
            let key = |s: &Socket| (s.inode, s.local, s.remote, s.state);
            let mut a: Vec<_> = both.iter().filter(|s| s.inode != 0).map(key).collect();
            let mut b: Vec<_> = by_family.iter().filter(|s| s.inode != 0).map(key).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
            assert!(both.iter().any(|s| s.local.port() == port));
            if let Ok(l6) = &listener6 {
                let p6 = l6.local_addr().expect("addr").port();
                assert!(both
                    .iter()
                    .any(|s| s.local.port() == p6 && s.local.is_ipv6()));
            }
        }
    }

    #[test]
    fn compat_request_layout() {
        let r = compat_request(9);
        assert_eq!(u32_at(&r, 0), Some(76));
        assert_eq!(u16_at(&r, 4), Some(TCPDIAG_GETSOCK));
        assert_eq!(u16_at(&r, 6), Some(0x301));
        assert_eq!(u32_at(&r, 8), Some(9));
        // struct inet_diag_req: family, src_len, dst_len, ext, sockid[48], states, dbs.
        assert_eq!(r[16], AF_INET);
        assert!(r[17..68].iter().all(|&b| b == 0));
        assert_eq!(u32_at(&r, 68), Some(STATES));
        assert_eq!(u32_at(&r, 72), Some(0));
    }

    #[test]
    fn both_families_in_one_dump() {
        let mut dgram = message(
            TCPDIAG_GETSOCK,
            2,
            &record(AF_INET, 10, 22, 0, &[0; 4], &[0; 4], 0, 1),
        );
        dgram.extend(message(
            TCPDIAG_GETSOCK,
            2,
            &record(AF_INET6, 10, 22, 0, &[0; 16], &[0; 16], 0, 2),
        ));
        let mut out = Vec::new();
        parse_datagram(&dgram, 2, Dump::TcpBothFamilies, 1, &mut out).expect("parses");
        assert_eq!(out.len(), 2);
        assert!(out[0].local.is_ipv4() && out[1].local.is_ipv6());
        // Records of the other request type, or of no internet family, are refused.
        let mut out = Vec::new();
        assert!(parse_datagram(&dgram, 2, TCP_BY_FAMILY[0], 1, &mut out).is_err());
        let bad = message(
            TCPDIAG_GETSOCK,
            2,
            &record(1, 10, 22, 0, &[0; 4], &[0; 4], 0, 1),
        );
        assert!(parse_datagram(&bad, 2, Dump::TcpBothFamilies, 1, &mut out).is_err());
    }
}
