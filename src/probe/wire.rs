//! One probe of one listening socket: the order of questions and what each answer means
//! ([`sequence`], pure over a [`Wire`]), and the real wire ([`Tcp`]): TCP connections to the
//! listener, and the probe's own **canary**, a listener on a local address of the same
//! network namespace that is the only destination any question names.
//!
//! Proof, not heuristics: a proxy is `open` when the canary saw it connect on our behalf
//! (for a tunnel — HTTP `CONNECT`, SOCKS — the probe also sends a token through it and
//! the canary's answer must come back). Error pages and status codes only decide between
//! `authenticated`, `restricted` and `not_proxy` when the canary saw nothing.

use super::http::{self, parse_status};
use super::socks::{
    self, parse_socks4, parse_socks5, parse_socks5_connect, socks5_code, Socks4Reply, Socks5Reply,
};
use super::{ProxyProtocol, Verdict};
use crate::netns::Inside;
use crate::netns_helper::SocketKind;
use nix::sys::socket::{bind, connect, listen, setsockopt, sockopt, Backlog, SockaddrStorage};
use nix::sys::time::TimeVal;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The most bytes read for one question (a status line, a SOCKS reply, a proxied page).
pub const MAX_REPLY: usize = 8192;

/// How one question's reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reply was complete (enough bytes to judge).
    Complete,
    /// The server closed (or reset) the connection.
    Closed,
    /// The server said nothing more within the timeout.
    Quiet,
}

/// The result of one question: whatever came back on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    Reply {
        bytes: Vec<u8>,
        end: End,
    },
    /// No connection could be made (refused, timed out, budget used up): why.
    NoConnection(String),
}

/// What the canary saw since it was last asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Connections it accepted.
    pub connections: usize,
    /// Whether one of them carried the probe's token.
    pub token: bool,
    /// The first line it received, cut to 120 characters (host-supplied: escape it).
    pub first_line: Option<String>,
}

/// Something that asks questions over connections to one listener, and watches a canary.
pub trait Wire {
    /// The canary's address: the one destination questions name.
    fn canary(&self) -> SocketAddr;
    /// The token the canary listens for; it answers a connection that carries it with
    /// [`echo_of`] the token.
    fn token(&self) -> String;
    /// Opens a connection to the listener (closing one still open).
    fn open(&mut self) -> Result<(), String>;
    /// Sends `request` on the open connection and reads until `complete` says the bytes read
    /// by this call can be judged, the server closes, or the timeout. The canary is served
    /// meanwhile.
    fn ask(&mut self, request: &[u8], complete: &dyn Fn(&[u8]) -> bool) -> Exchange;
    /// Closes the open connection.
    fn close(&mut self);
    /// What the canary saw since the last call.
    fn seen(&mut self) -> Seen;
}

/// What the canary answers to a connection that carried `token`.
pub fn echo_of(token: &str) -> String {
    format!("{token}-echo")
}

/// What a probe concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    pub verdict: Verdict,
    pub protocol: Option<ProxyProtocol>,
    pub evidence: String,
}

fn conclude(verdict: Verdict, protocol: Option<ProxyProtocol>, evidence: String) -> Conclusion {
    Conclusion {
        verdict,
        protocol,
        evidence,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The canary's part of the evidence.
fn canary_said(seen: &Seen) -> String {
    match (seen.connections, &seen.first_line) {
        (0, _) => "the canary saw no connection".into(),
        (n, Some(line)) => format!("the canary saw {n} connection(s) and received {line:?}"),
        (n, None) => format!("the canary saw {n} connection(s)"),
    }
}

/// Sends the token through an open tunnel; whether the canary's echo came back.
fn tunnel(wire: &mut dyn Wire) -> bool {
    let token = wire.token();
    let echo = echo_of(&token);
    let line = format!("{token}\r\n");
    match wire.ask(line.as_bytes(), &|b| contains(b, echo.as_bytes())) {
        Exchange::Reply { bytes, .. } => contains(&bytes, echo.as_bytes()),
        Exchange::NoConnection(_) => false,
    }
}

/// Asks, in order, until one answer is conclusive: HTTP `CONNECT <canary>` (then an
/// absolute-form `GET http://<canary>/<token>` unless the tunnel proved it), the SOCKS5
/// method negotiation (and, offered no authentication, a SOCKS5 CONNECT to the canary), a
/// SOCKS4 CONNECT to the canary (SOCKS4a for an IPv6 canary). A server that answers HTTP is not asked SOCKS (it would
/// wait for a line end).
pub fn sequence(wire: &mut dyn Wire) -> Conclusion {
    let canary = wire.canary();
    let http_done = |b: &[u8]| parse_status(b).is_some();
    let mut notes: Vec<String> = Vec::new();
    let mut heard = false;

    // 1. HTTP CONNECT.
    if let Err(why) = wire.open() {
        return conclude(Verdict::NoAnswer, None, format!("cannot connect: {why}"));
    }
    let connect = http::connect_request(canary);
    match wire.ask(connect.as_bytes(), &http_done) {
        Exchange::NoConnection(why) => {
            wire.close();
            return conclude(Verdict::NoAnswer, None, format!("cannot connect: {why}"));
        }
        Exchange::Reply { bytes, end } => match parse_status(&bytes) {
            Some(Ok(s)) => return http_verdict(wire, s),
            _ => {
                heard |= !bytes.is_empty();
                notes.push(format!("HTTP CONNECT: {}", describe(&bytes, end)));
            }
        },
    }
    wire.close();

    // 2. SOCKS5.
    if let Some(c) = socks5(wire, &mut notes, &mut heard) {
        return c;
    }

    // 3. SOCKS4 CONNECT to the canary; SOCKS4a, naming it as a host name, for an IPv6 one.
    let req = socks::socks4_connect(canary)
        .map(|r| r.to_vec())
        .unwrap_or_else(|| socks::socks4a_connect(canary));
    if let Some(c) = socks4(wire, &req, &mut notes, &mut heard) {
        return c;
    }
    let _ = wire.seen();
    let verdict = if heard {
        Verdict::NotProxy
    } else {
        Verdict::NoAnswer
    };
    conclude(verdict, None, notes.join("; "))
}

fn socks5(wire: &mut dyn Wire, notes: &mut Vec<String>, heard: &mut bool) -> Option<Conclusion> {
    let canary = wire.canary();
    if let Err(why) = wire.open() {
        notes.push(format!("SOCKS5: cannot connect: {why}"));
        return None;
    }
    let reply = wire.ask(&socks::SOCKS5_GREETING, &|b| {
        b.len() >= socks::SOCKS5_REPLY_LEN
    });
    let said = |what: &str| {
        format!(
            "SOCKS5 method negotiation (offered 0x00 no authentication, 0x02 username/password): {what}"
        )
    };
    let p = Some(ProxyProtocol::Socks5);
    let (bytes, end) = match reply {
        Exchange::NoConnection(why) => {
            wire.close();
            notes.push(format!("SOCKS5: cannot connect: {why}"));
            return None;
        }
        Exchange::Reply { bytes, end } => (bytes, end),
    };
    let method = match parse_socks5(&bytes) {
        Some(Ok(m)) => m,
        _ => {
            wire.close();
            *heard |= !bytes.is_empty();
            notes.push(format!("SOCKS5: {}", describe(&bytes, end)));
            return None;
        }
    };
    let done = |wire: &mut dyn Wire, c| {
        wire.close();
        Some(c)
    };
    match method {
        Socks5Reply::UserPass => done(
            wire,
            conclude(
                Verdict::Authenticated,
                p,
                said("server chose 0x02, username/password"),
            ),
        ),
        Socks5Reply::NoAcceptable => done(
            wire,
            conclude(
                Verdict::Authenticated,
                p,
                said("server refused both (0xFF): it wants another authentication method"),
            ),
        ),
        Socks5Reply::Unoffered(m) => done(
            wire,
            conclude(
                Verdict::Inconclusive,
                p,
                said(&format!("server chose 0x{m:02x}, which was not offered")),
            ),
        ),
        Socks5Reply::NoAuth => {
            let first = said("server chose 0x00, no authentication");
            let req = socks::socks5_connect(canary);
            let (code, relayed) = match wire.ask(&req, &socks::socks5_connect_complete) {
                Exchange::Reply { bytes, .. } => match parse_socks5_connect(&bytes) {
                    Some(Ok(0)) => (Some(0), tunnel(wire)),
                    Some(Ok(c)) => (Some(c), false),
                    _ => (None, false),
                },
                Exchange::NoConnection(_) => (None, false),
            };
            let seen = wire.seen();
            wire.close();
            let answer = match code {
                Some(c) => format!("0x{c:02X} {}", socks5_code(c)),
                None => "no SOCKS5 reply".into(),
            };
            let mut evidence = format!(
                "{first}; CONNECT {canary} → {answer}; {}",
                canary_said(&seen)
            );
            if relayed {
                evidence.push_str("; our bytes went through and the canary's answer came back");
            }
            Some(if seen.connections > 0 {
                evidence.push_str(": it connects for anyone, without credentials");
                conclude(Verdict::Open, p, evidence)
            } else if code == Some(0x02) {
                conclude(Verdict::Restricted, p, evidence)
            } else {
                conclude(Verdict::Inconclusive, p, evidence)
            })
        }
    }
}

fn socks4(
    wire: &mut dyn Wire,
    req: &[u8],
    notes: &mut Vec<String>,
    heard: &mut bool,
) -> Option<Conclusion> {
    let canary = wire.canary();
    if let Err(why) = wire.open() {
        notes.push(format!("SOCKS4: cannot connect: {why}"));
        return None;
    }
    let (bytes, end) = match wire.ask(req, &|b| b.len() >= socks::SOCKS4_REPLY_LEN) {
        Exchange::NoConnection(why) => {
            wire.close();
            notes.push(format!("SOCKS4: cannot connect: {why}"));
            return None;
        }
        Exchange::Reply { bytes, end } => (bytes, end),
    };
    let p = Some(ProxyProtocol::Socks4);
    let reply = parse_socks4(&bytes);
    let relayed = matches!(reply, Some(Ok(Socks4Reply::Granted))) && tunnel(wire);
    let seen = wire.seen();
    wire.close();
    let said = |what: &str| format!("SOCKS4 CONNECT {canary}: {what}; {}", canary_said(&seen));
    let c = match reply {
        Some(Ok(Socks4Reply::Granted)) if seen.connections > 0 => {
            let relay = if relayed {
                ", our bytes went through and the canary's answer came back"
            } else {
                ""
            };
            conclude(
                Verdict::Open,
                p,
                said(&format!(
                    "granted (0x5A){relay}: it connects for anyone, without credentials"
                )),
            )
        }
        Some(Ok(Socks4Reply::Granted)) => conclude(Verdict::Inconclusive, p, said("granted (0x5A)")),
        Some(Ok(Socks4Reply::RejectedOrFailed)) if seen.connections == 0 => conclude(
            Verdict::Restricted,
            p,
            said("rejected or failed (0x5B) a connection to the canary, which listens: it refuses this client"),
        ),
        Some(Ok(Socks4Reply::RejectedOrFailed)) => {
            conclude(Verdict::Inconclusive, p, said("rejected or failed (0x5B)"))
        }
        Some(Ok(Socks4Reply::Ident(c))) => conclude(
            Verdict::Authenticated,
            p,
            said(&format!("wants identd to vouch for the user (0x{c:02X})")),
        ),
        _ => {
            *heard |= !bytes.is_empty();
            notes.push(format!("SOCKS4: {}", describe(&bytes, end)));
            return None;
        }
    };
    Some(c)
}

/// The HTTP side once CONNECT got a status line (the connection is still open).
fn http_verdict(wire: &mut dyn Wire, c: http::Status) -> Conclusion {
    let p = Some(ProxyProtocol::Http);
    let canary = wire.canary();
    let token = wire.token();
    let echo = echo_of(&token);
    let mut said = vec![format!("CONNECT {canary} → {:?}", c.line)];
    if c.code == 407 {
        wire.close();
        return conclude(
            Verdict::Authenticated,
            p,
            format!("{}: wants proxy credentials", said.join(", ")),
        );
    }
    if (200..300).contains(&c.code) {
        let relayed = tunnel(wire);
        let seen = wire.seen();
        wire.close();
        if relayed && seen.token {
            said.push(canary_said(&seen));
            return conclude(
                Verdict::Open,
                p,
                format!(
                    "{}; our bytes went through the tunnel and the canary's answer came back: it connects for anyone, without credentials",
                    said.join(", ")
                ),
            );
        }
        said.push(format!(
            "{}, nothing relayed both ways through the tunnel",
            canary_said(&seen)
        ));
    } else {
        wire.close();
    }
    let _ = wire.seen();
    // The absolute-form GET.
    let get = http::get_request(canary, &token);
    let got = match wire.open() {
        Err(why) => {
            said.push(format!("GET: cannot connect: {why}"));
            None
        }
        Ok(()) => {
            let reply = wire.ask(get.as_bytes(), &|b| match parse_status(b) {
                Some(Ok(s)) => s.code != 200 || contains(b, echo.as_bytes()),
                Some(Err(())) => true,
                None => false,
            });
            let seen = wire.seen();
            wire.close();
            let status = match reply {
                Exchange::Reply { bytes, .. } => parse_status(&bytes).and_then(Result::ok),
                Exchange::NoConnection(_) => None,
            };
            said.push(match &status {
                Some(g) => format!("GET http://{canary}/… → {:?}", g.line),
                None => format!("GET http://{canary}/… → no HTTP reply"),
            });
            said.push(canary_said(&seen));
            if seen.connections > 0 {
                return conclude(
                    Verdict::Open,
                    p,
                    format!(
                        "{}: it fetched from the canary for us, without credentials",
                        said.join(", ")
                    ),
                );
            }
            status
        }
    };
    if got.as_ref().is_some_and(|g| g.code == 407) {
        return conclude(
            Verdict::Authenticated,
            p,
            format!("{}: wants proxy credentials", said.join(", ")),
        );
    }
    if c.code == 403 {
        return conclude(
            Verdict::Restricted,
            p,
            format!("{}: refuses this client", said.join(", ")),
        );
    }
    conclude(
        Verdict::NotProxy,
        p,
        format!("{}: an HTTP server, not a proxy", said.join(", ")),
    )
}

/// A few words on an unrecognised reply: what ended it and its first bytes.
fn describe(bytes: &[u8], end: End) -> String {
    let how = match end {
        End::Complete => "replied",
        End::Closed => "closed the connection",
        End::Quiet => "went quiet",
    };
    if bytes.is_empty() {
        return format!("{how} without a reply");
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 8 { " …" } else { "" };
    format!(
        "{how} after {} byte(s) that are not a reply of this protocol ({}{more})",
        bytes.len(),
        hex.join(" ")
    )
}

/// Of a namespace's local addresses, the one to probe from: not loopback, link-local,
/// multicast or unspecified, of `v4` or IPv6 as asked; the lowest, for a stable choice.
pub fn pick_source(addrs: impl IntoIterator<Item = IpAddr>, v4: bool) -> Option<IpAddr> {
    addrs
        .into_iter()
        .filter(|a| a.is_ipv4() == v4)
        .filter(|a| match a {
            IpAddr::V4(x) => {
                !(x.is_loopback() || x.is_link_local() || x.is_unspecified() || x.is_multicast())
            }
            IpAddr::V6(x) => {
                !(x.is_loopback()
                    || x.is_unspecified()
                    || x.is_multicast()
                    || (x.segments()[0] & 0xffc0) == 0xfe80
                    || x.to_ipv4_mapped().is_some())
            }
        })
        .min()
}

/// The calling thread's network namespace's addresses (getifaddrs: netlink, in that
/// namespace; where netlink sockets are not allowed, as in the agent's unit, the same from
/// `/proc/thread-self/net`).
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return addresses_in(std::path::Path::new("/proc/thread-self/net"));
    };
    list.filter_map(|i| {
        let a = i.address?;
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(IpAddr::V4(v4.ip()));
        }
        a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
    })
    .collect()
}

/// The addresses of the network namespace of process `pid`, from its `net/fib_trie` (IPv4:
/// the `/32 host LOCAL` entries) and `net/if_inet6`: what [`local_addresses`] says from
/// inside, for a probe that works through the network-namespace helper and so is not in
/// that namespace itself. Unreadable files give no addresses (the probe then comes from
/// loopback and says so).
pub fn local_addresses_of(proc_root: &std::path::Path, pid: i32) -> Vec<IpAddr> {
    addresses_in(&proc_root.join(pid.to_string()).join("net"))
}

/// The addresses of the namespace whose `net` directory (of procfs) is `net`.
fn addresses_in(net: &std::path::Path) -> Vec<IpAddr> {
    let read = |name: &str| std::fs::read(net.join(name)).unwrap_or_default();
    let mut out = parse_fib_trie_local(&read("fib_trie"));
    out.extend(parse_if_inet6(&read("if_inet6")));
    out.sort();
    out.dedup();
    out
}

/// The local IPv4 addresses of a `/proc/net/fib_trie`: each `|-- a.b.c.d` leaf followed by
/// a `/32 host LOCAL` line.
pub fn parse_fib_trie_local(text: &[u8]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            leaf = None;
            continue;
        };
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if t.starts_with('/') {
            if let (Some(a), ["/32", "host", "LOCAL"]) =
                (leaf, t.split_whitespace().collect::<Vec<_>>().as_slice())
            {
                out.push(IpAddr::V4(a));
            }
        } else {
            leaf = None;
        }
    }
    out
}

/// The addresses of a `/proc/net/if_inet6` (first field: 32 hex digits).
pub fn parse_if_inet6(text: &[u8]) -> Vec<IpAddr> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let hex = line.split(|&b| b == b' ').next()?;
            if hex.len() != 32 {
                return None;
            }
            let v = u128::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(v)))
        })
        .collect()
}

/// Where a probe connects from and to, decided inside the listener's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The address connected to.
    pub addr: SocketAddr,
    /// The source address bound before connecting (`None`: the kernel's choice, loopback).
    pub source: Option<IpAddr>,
    /// Where the canary listens.
    pub canary: IpAddr,
    /// For the evidence: which source was used and why.
    pub note: String,
}

/// The route for a listener on `listen`, given the namespace's local addresses: a listener
/// on the unspecified address is reached at a non-loopback local address, from it, so its
/// ACL sees a client that is not localhost (the packets are still delivered locally); a
/// listener on a specific address is reached there, from it; one on loopback from loopback.
/// The canary listens on the source address (or on loopback).
pub fn route(listen: SocketAddr, local: &[IpAddr]) -> Route {
    let ip = match listen.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        ip => ip,
    };
    let port = listen.port();
    let loopback = |v4: bool| {
        if v4 {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
    };
    if ip.is_unspecified() {
        // A dual-stack [::] listener takes IPv4 too: prefer an IPv4 source.
        let v4_ok = ip.is_ipv4() || matches!(listen.ip(), IpAddr::V6(_));
        let src = v4_ok
            .then(|| pick_source(local.iter().copied(), true))
            .flatten()
            .or_else(|| {
                (!ip.is_ipv4())
                    .then(|| pick_source(local.iter().copied(), false))
                    .flatten()
            });
        return match src {
            Some(src) => Route {
                addr: SocketAddr::new(src, port),
                source: Some(src),
                canary: src,
                note: format!("probed from {src}, a non-loopback address of the namespace"),
            },
            None => {
                let lo = loopback(ip.is_ipv4());
                Route {
                    addr: SocketAddr::new(lo, port),
                    source: None,
                    canary: lo,
                    note: format!(
                        "probed from {lo}: the namespace has no non-loopback address, so the listener sees a localhost client (a proxy that admits only localhost looks open)"
                    ),
                }
            }
        };
    }
    if ip.is_loopback() {
        return Route {
            addr: SocketAddr::new(ip, port),
            source: None,
            canary: loopback(ip.is_ipv4()),
            note: format!("probed from loopback: the listener is bound to {ip}"),
        };
    }
    Route {
        addr: SocketAddr::new(ip, port),
        source: Some(ip),
        canary: ip,
        note: format!("probed from {ip}, the listener's own address"),
    }
}

/// The most connections the canary keeps open at once.
const MAX_CANARY_CONNS: usize = 8;

/// The probe's canary: a listener of its own on a local address, and the connections it
/// accepted. Served without threads, between reads of the probe's own connection.
#[derive(Debug)]
struct Canary {
    listener: TcpListener,
    addr: SocketAddr,
    token: String,
    conns: Vec<(TcpStream, Vec<u8>)>,
    seen: Seen,
}

/// Where a probe's sockets come from: created in the thread's namespace, or by the
/// network-namespace helper inside the listener's ([`Inside`]).
pub trait Sockets {
    /// A new TCP socket of the family of `ip`.
    fn tcp(&mut self, v4: bool) -> Result<OwnedFd, String>;
}

impl Sockets for Inside<'_> {
    fn tcp(&mut self, v4: bool) -> Result<OwnedFd, String> {
        self.socket(if v4 {
            SocketKind::Tcp4
        } else {
            SocketKind::Tcp6
        })
    }
}

impl Canary {
    fn open(ip: IpAddr, sockets: &mut dyn Sockets) -> std::io::Result<Canary> {
        let fd = sockets.tcp(ip.is_ipv4()).map_err(std::io::Error::other)?;
        // What `TcpListener::bind` does (SO_REUSEADDR, bind, listen), on a socket that may
        // come from another namespace.
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(std::io::Error::from)?;
        bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(ip, 0)),
        )
        .map_err(std::io::Error::from)?;
        listen(&fd, Backlog::new(128).map_err(std::io::Error::from)?)
            .map_err(std::io::Error::from)?;
        let listener = TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut raw = [0u8; 8];
        // A token nobody can guess: the canary answers only the probe's own requests.
        let filled = rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty())
            .map_err(std::io::Error::from)?;
        if filled != raw.len() {
            return Err(std::io::Error::other("short getrandom"));
        }
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Canary {
            listener,
            addr,
            token: format!("aupwatch-canary-{hex}"),
            conns: Vec::new(),
            seen: Seen::default(),
        })
    }

    /// Accepts what is waiting and answers what carried the token; never blocks.
    fn serve(&mut self) {
        while let Ok((s, _)) = self.listener.accept() {
            // Counted, but at most MAX_CANARY_CONNS kept open: a listener that floods the
            // canary cannot make the probe hold many descriptors.
            if self.conns.len() < MAX_CANARY_CONNS && s.set_nonblocking(true).is_ok() {
                self.conns.push((s, Vec::new()));
            }
            self.seen.connections += 1;
        }
        let token = self.token.clone();
        let seen = &mut self.seen;
        self.conns.retain_mut(|(s, buf)| {
            let mut chunk = [0u8; 1024];
            let open = loop {
                match s.read(&mut chunk) {
                    Ok(0) => break false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                    Err(_) => break false,
                }
                if buf.len() >= MAX_REPLY {
                    break false;
                }
            };
            if seen.first_line.is_none() {
                if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
                    seen.first_line =
                        Some(String::from_utf8_lossy(line).chars().take(120).collect());
                }
            }
            if contains(buf, token.as_bytes()) {
                seen.token = true;
                let body = format!("{}\n", echo_of(&token));
                let answer = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes());
                let _ = s.shutdown(Shutdown::Write);
                return false;
            }
            open && !contains(buf, b"\r\n\r\n")
        });
    }
}

/// The real wire: TCP connections to `route.addr` in the calling thread's network
/// namespace, from `route.source` when set. Binding the source first fails unless the
/// address is local in this namespace, so the probe never leaves the host (a listener can
/// bind a foreign address with `IP_FREEBIND`).
pub struct Tcp<'a> {
    sockets: &'a mut dyn Sockets,
    addr: SocketAddr,
    source: Option<IpAddr>,
    /// Timeout of each connect and each question.
    step: Duration,
    /// No question starts, and none lasts, past this.
    deadline: Instant,
    canary: Canary,
    stream: Option<TcpStream>,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the probe's time budget is used up")]
    Budget,
    #[error("{what}: {errno}")]
    Sys {
        what: &'static str,
        errno: nix::Error,
    },
    #[error("{0} is not a local address in this network namespace ({1}); not probed")]
    NotLocal(IpAddr, nix::Error),
    #[error("no answer to the connection within {0:?}")]
    Timeout(Duration),
    #[error("cannot get a socket in the namespace: {0}")]
    Socket(String),
    #[error("cannot open the canary listener on {0}: {1}")]
    Canary(IpAddr, std::io::Error),
}

impl std::fmt::Debug for Tcp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcp")
            .field("addr", &self.addr)
            .field("source", &self.source)
            .field("canary", &self.canary)
            .finish_non_exhaustive()
    }
}

impl<'a> Tcp<'a> {
    /// Opens the canary of `route`, with sockets from `sockets` (the listener's namespace).
    pub fn new(
        route: &Route,
        step: Duration,
        deadline: Instant,
        sockets: &'a mut dyn Sockets,
    ) -> Result<Tcp<'a>, ConnectError> {
        let canary = Canary::open(route.canary, sockets)
            .map_err(|e| ConnectError::Canary(route.canary, e))?;
        Ok(Tcp {
            sockets,
            addr: route.addr,
            source: route.source,
            step,
            deadline,
            canary,
            stream: None,
        })
    }

    fn connect(&mut self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let sys = |what| move |errno| ConnectError::Sys { what, errno };
        let fd = self
            .sockets
            .tcp(self.addr.is_ipv4())
            .map_err(ConnectError::Socket)?;
        // Linux bounds a blocking connect by the send timeout.
        let tv = TimeVal::new(
            timeout.as_secs().try_into().unwrap_or(i64::MAX),
            timeout.subsec_micros().into(),
        );
        setsockopt(&fd, sockopt::SendTimeout, &tv).map_err(sys("setsockopt"))?;
        if let Some(ip) = self.source {
            let source = SockaddrStorage::from(SocketAddr::new(ip, 0));
            bind(fd.as_raw_fd(), &source).map_err(|e| ConnectError::NotLocal(ip, e))?;
        }
        match connect(fd.as_raw_fd(), &SockaddrStorage::from(self.addr)) {
            Ok(()) => Ok(TcpStream::from(fd)),
            Err(nix::Error::EINPROGRESS | nix::Error::EAGAIN | nix::Error::ETIMEDOUT) => {
                Err(ConnectError::Timeout(timeout))
            }
            Err(errno) => Err(ConnectError::Sys {
                what: "connect",
                errno,
            }),
        }
    }

    fn step_now(&self) -> Result<Duration, ConnectError> {
        let step = self
            .step
            .min(self.deadline.saturating_duration_since(Instant::now()));
        if step < Duration::from_millis(10) {
            return Err(ConnectError::Budget);
        }
        Ok(step)
    }
}

/// How long one read waits before the canary is served again.
const TICK: Duration = Duration::from_millis(5);

impl Wire for Tcp<'_> {
    fn canary(&self) -> SocketAddr {
        self.canary.addr
    }

    fn token(&self) -> String {
        self.canary.token.clone()
    }

    fn open(&mut self) -> Result<(), String> {
        self.stream = None;
        let step = self.step_now().map_err(|e| e.to_string())?;
        self.stream = Some(self.connect(step).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn ask(&mut self, request: &[u8], complete: &dyn Fn(&[u8]) -> bool) -> Exchange {
        let step = match self.step_now() {
            Ok(s) => s,
            Err(e) => return Exchange::NoConnection(e.to_string()),
        };
        let end_at = Instant::now() + step;
        let left = || end_at.saturating_duration_since(Instant::now());
        let Some(stream) = self.stream.as_mut() else {
            return Exchange::NoConnection("not connected".into());
        };
        let closed = |bytes| Exchange::Reply {
            bytes,
            end: End::Closed,
        };
        if stream
            .set_write_timeout(Some(left().max(Duration::from_millis(1))))
            .is_err()
            || stream.write_all(request).is_err()
        {
            return closed(Vec::new());
        }
        let mut bytes = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            self.canary.serve();
            if complete(&bytes) {
                return Exchange::Reply {
                    bytes,
                    end: End::Complete,
                };
            }
            let t = left();
            if bytes.len() >= MAX_REPLY
                || t.is_zero()
                || stream.set_read_timeout(Some(t.min(TICK))).is_err()
            {
                return Exchange::Reply {
                    bytes,
                    end: End::Quiet,
                };
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    // What the canary got meanwhile still counts.
                    self.canary.serve();
                    return closed(bytes);
                }
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return closed(bytes),
            }
        }
    }

    fn close(&mut self) {
        self.stream = None;
    }

    fn seen(&mut self) -> Seen {
        self.canary.serve();
        std::mem::take(&mut self.canary.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_from_proc_net_text() {
        // A real /proc/net/fib_trie (trimmed) and if_inet6.
        let fib = b"Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n     +-- 192.0.2.0/24 2 0 2\n           |-- 192.0.2.0\n              /24 link UNICAST\n           |-- 192.0.2.2\n              /32 host LOCAL\nLocal:\n           |-- 127.0.0.1\n              /32 host LOCAL\n";
        let v4: Vec<IpAddr> = parse_fib_trie_local(fib);
        let want: Vec<IpAddr> = ["127.0.0.1", "192.0.2.2", "127.0.0.1"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(v4, want);
        let v6 = parse_if_inet6(b"fd000000000000000000000000000002 04 40 00 82     eth0\n00000000000000000000000000000001 01 80 10 80       lo\nshort 01\n");
        let want: Vec<IpAddr> = ["fd00::2", "::1"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(v6, want);
        // What a probe through the helper would pick, as it would from inside.
        let mut all = v4;
        all.extend(v6);
        assert_eq!(
            pick_source(all, true),
            Some("192.0.2.2".parse().expect("ip"))
        );
        assert!(parse_fib_trie_local(b"\xff\xfe|-- 1.2.3.4\n/32 host LOCAL garbage\n").is_empty());
    }

    const TOKEN: &str = "aupwatch-canary-0011223344556677";

    /// Replies scripted per request kind, and what the canary sees after each kind, recording
    /// what was asked.
    struct Script {
        replies: Vec<(&'static str, Exchange)>,
        canary: Vec<(&'static str, Seen)>,
        asked: Vec<String>,
        seen: Seen,
        open: bool,
    }

    fn kind(request: &[u8]) -> &'static str {
        if request.starts_with(b"CONNECT ") {
            "connect"
        } else if request.starts_with(b"GET http://") {
            "get"
        } else if request.starts_with(TOKEN.as_bytes()) {
            "tunnel"
        } else if request == socks::SOCKS5_GREETING {
            "socks5"
        } else if request.starts_with(&[5, 1, 0]) {
            "socks5-connect"
        } else if request.first() == Some(&4) {
            "socks4"
        } else {
            "?"
        }
    }

    impl Wire for Script {
        fn canary(&self) -> SocketAddr {
            "192.0.2.10:40000".parse().expect("addr")
        }
        fn token(&self) -> String {
            TOKEN.into()
        }
        fn open(&mut self) -> Result<(), String> {
            self.open = true;
            Ok(())
        }
        fn ask(&mut self, request: &[u8], _: &dyn Fn(&[u8]) -> bool) -> Exchange {
            assert!(self.open, "asked without a connection");
            let k = kind(request);
            self.asked.push(k.to_string());
            if let Some((_, s)) = self.canary.iter().find(|(want, _)| *want == k) {
                self.seen.connections += s.connections;
                self.seen.token |= s.token;
                if self.seen.first_line.is_none() {
                    self.seen.first_line.clone_from(&s.first_line);
                }
            }
            self.replies
                .iter()
                .find(|(want, _)| *want == k)
                .map(|(_, r)| r.clone())
                .unwrap_or(Exchange::Reply {
                    bytes: Vec::new(),
                    end: End::Closed,
                })
        }
        fn close(&mut self) {
            self.open = false;
        }
        fn seen(&mut self) -> Seen {
            std::mem::take(&mut self.seen)
        }
    }

    fn reply(bytes: &[u8]) -> Exchange {
        Exchange::Reply {
            bytes: bytes.to_vec(),
            end: End::Complete,
        }
    }

    fn echo() -> Exchange {
        reply(format!("HTTP/1.0 200 OK\r\n\r\n{}\n", echo_of(TOKEN)).as_bytes())
    }

    /// The canary saw one connection carrying the token.
    fn hit(line: &str) -> Seen {
        Seen {
            connections: 1,
            token: true,
            first_line: Some(line.into()),
        }
    }

    fn run_with(
        replies: Vec<(&'static str, Exchange)>,
        canary: Vec<(&'static str, Seen)>,
    ) -> (Conclusion, Vec<String>) {
        let mut s = Script {
            replies,
            canary,
            asked: Vec::new(),
            seen: Seen::default(),
            open: false,
        };
        let c = sequence(&mut s);
        (c, s.asked)
    }

    fn run(replies: Vec<(&'static str, Exchange)>) -> (Conclusion, Vec<String>) {
        run_with(replies, Vec::new())
    }

    #[test]
    fn socks5_servers() {
        // microsocks / dante without authentication: HTTP gets dropped, SOCKS5 chooses 0x00,
        // the CONNECT reaches the canary and the token comes back.
        let ok = reply(&[5, 0, 0, 1, 192, 0, 2, 10, 0x9c, 0x40]);
        let (c, asked) = run_with(
            vec![
                ("socks5", reply(&[5, 0])),
                ("socks5-connect", ok.clone()),
                ("tunnel", echo()),
            ],
            vec![("socks5-connect", hit(TOKEN))],
        );
        assert_eq!(c.verdict, Verdict::Open, "{}", c.evidence);
        assert_eq!(c.protocol, Some(ProxyProtocol::Socks5));
        assert!(
            c.evidence.contains("server chose 0x00, no authentication")
                && c.evidence
                    .contains("CONNECT 192.0.2.10:40000 → 0x00 succeeded")
                && c.evidence.contains("the canary's answer came back"),
            "{}",
            c.evidence
        );
        assert_eq!(asked, ["connect", "socks5", "socks5-connect", "tunnel"]);
        // Success claimed, but the canary saw nothing: not proof.
        let (c, _) = run(vec![("socks5", reply(&[5, 0])), ("socks5-connect", ok)]);
        assert_eq!(c.verdict, Verdict::Inconclusive, "{}", c.evidence);
        // Refused by its rules.
        let (c, _) = run(vec![
            ("socks5", reply(&[5, 0])),
            ("socks5-connect", reply(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0])),
        ]);
        assert_eq!(c.verdict, Verdict::Restricted, "{}", c.evidence);
        assert!(
            c.evidence.contains("not allowed by ruleset"),
            "{}",
            c.evidence
        );
        // With username/password, and one that wants GSSAPI: no request is sent.
        let (c, asked) = run(vec![("socks5", reply(&[5, 2]))]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        assert_eq!(asked, ["connect", "socks5"]);
        let (c, _) = run(vec![("socks5", reply(&[5, 0xFF]))]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        let (c, _) = run(vec![("socks5", reply(&[5, 1]))]);
        assert_eq!(c.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn socks4_servers() {
        let r = |cd: u8| reply(&[0, cd, 0, 0, 0, 0, 0, 0]);
        let (c, asked) = run_with(
            vec![("socks4", r(0x5A)), ("tunnel", echo())],
            vec![("socks4", hit(TOKEN))],
        );
        assert_eq!(
            (c.verdict, c.protocol),
            (Verdict::Open, Some(ProxyProtocol::Socks4)),
            "{}",
            c.evidence
        );
        assert_eq!(asked, ["connect", "socks5", "socks4", "tunnel"]);
        // Granted without the canary seeing anything: not proof.
        let (c, _) = run(vec![("socks4", r(0x5A))]);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        // Rejected though the canary listens: refused.
        let (c, _) = run(vec![("socks4", r(0x5B))]);
        assert_eq!(c.verdict, Verdict::Restricted);
        let (c, _) = run(vec![("socks4", r(0x5D))]);
        assert_eq!(c.verdict, Verdict::Authenticated);
    }

    #[test]
    fn http_proxies() {
        let st = |line: &str| reply(format!("{line}\r\nServer: x\r\n\r\n").as_bytes());
        // A tunnel: 200 to CONNECT, the token through it, the canary's answer back.
        let (c, asked) = run_with(
            vec![
                ("connect", st("HTTP/1.1 200 Connection established")),
                ("tunnel", echo()),
            ],
            vec![("tunnel", hit(TOKEN))],
        );
        assert_eq!(
            (c.verdict, c.protocol),
            (Verdict::Open, Some(ProxyProtocol::Http)),
            "{}",
            c.evidence
        );
        assert_eq!(asked, ["connect", "tunnel"]);
        // 200 to CONNECT but nothing relayed (a catch-all server): the GET decides; the
        // canary saw nothing, so not a proxy.
        let (c, asked) = run(vec![
            ("connect", st("HTTP/1.1 200 OK")),
            ("get", st("HTTP/1.1 200 OK")),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy, "{}", c.evidence);
        assert_eq!(asked, ["connect", "tunnel", "get"]);
        // CONNECT refused for its port, but the absolute GET reaches the canary: open,
        // whatever the status codes say (Tinyproxy's own error pages included).
        let (c, asked) = run_with(
            vec![
                ("connect", st("HTTP/1.1 403 Forbidden")),
                ("get", st("HTTP/1.0 200 OK")),
            ],
            vec![("get", hit("GET /aupwatch-canary-0011223344556677 HTTP/1.1"))],
        );
        assert_eq!(c.verdict, Verdict::Open, "{}", c.evidence);
        assert!(
            c.evidence.contains("received \"GET /aupwatch-canary"),
            "{}",
            c.evidence
        );
        assert_eq!(asked, ["connect", "get"]);
        // Credentials wanted: on CONNECT, or only on GET.
        let (c, asked) = run(vec![(
            "connect",
            st("HTTP/1.1 407 Proxy Authentication Required"),
        )]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        assert_eq!(asked, ["connect"]);
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 405 Method Not Allowed")),
            ("get", st("HTTP/1.1 407 Proxy Authentication Required")),
        ]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        // squid, http_access deny all: 403 everywhere, the canary sees nothing.
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 403 Forbidden")),
            ("get", st("HTTP/1.1 403 Forbidden")),
        ]);
        assert_eq!(c.verdict, Verdict::Restricted);
    }

    #[test]
    fn http_servers_that_are_not_proxies() {
        let st = |line: &str| reply(format!("{line}\r\n\r\n").as_bytes());
        // python3 -m http.server: 501 to CONNECT, its own listing for the absolute GET.
        let (c, asked) = run(vec![
            ("connect", st("HTTP/1.0 501 Unsupported method ('CONNECT')")),
            ("get", st("HTTP/1.0 200 OK")),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
        assert_eq!(asked, ["connect", "get"]);
        // A server whose error page says what a failing proxy says ("500 Unable to connect",
        // 502, 503 for anything): the canary saw nothing, so not a proxy.
        for line in [
            "HTTP/1.0 500 Unable to connect",
            "HTTP/1.1 502 Bad Gateway",
            "HTTP/1.1 503 Service Unavailable",
        ] {
            let (c, _) = run(vec![("connect", st(line)), ("get", st(line))]);
            assert_eq!(c.verdict, Verdict::NotProxy, "{line}: {}", c.evidence);
            assert!(
                c.evidence.contains("the canary saw no connection"),
                "{}",
                c.evidence
            );
        }
        // A web server that forbids "/": a 403 to GET alone is not a proxy's refusal.
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 400 Bad Request")),
            ("get", st("HTTP/1.1 403 Forbidden")),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
    }

    #[test]
    fn silence_refusal_and_other_protocols() {
        // Accepts and closes every time.
        let (c, asked) = run(vec![]);
        assert_eq!(c.verdict, Verdict::NoAnswer);
        assert_eq!(asked, ["connect", "socks5", "socks4"]);
        // An SSH server: a banner, not a proxy reply.
        let banner = reply(b"SSH-2.0-OpenSSH_9.2p1\r\n");
        let (c, _) = run(vec![
            ("connect", banner.clone()),
            ("socks5", banner.clone()),
            ("socks4", banner),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
        assert!(c.evidence.contains("53 53 48 2d"), "{}", c.evidence);
    }

    #[test]
    fn routes() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let sa = |s: &str| s.parse::<SocketAddr>().expect("addr");
        let local = [ip("127.0.0.1"), ip("::1"), ip("fe80::1"), ip("192.0.2.10")];
        // Unspecified: from the non-loopback address, to it, the canary there too.
        let r = route(sa("0.0.0.0:3128"), &local);
        assert_eq!(
            (r.addr, r.source, r.canary),
            (
                sa("192.0.2.10:3128"),
                Some(ip("192.0.2.10")),
                ip("192.0.2.10")
            )
        );
        assert!(r.note.contains("probed from 192.0.2.10"), "{}", r.note);
        // Dual-stack [::]: IPv4 preferred.
        assert_eq!(route(sa("[::]:3128"), &local).addr, sa("192.0.2.10:3128"));
        // IPv6 only when there is nothing else for [::].
        let v6 = [ip("::1"), ip("2001:db8::7")];
        assert_eq!(route(sa("[::]:1"), &v6).addr, sa("[2001:db8::7]:1"));
        // No non-loopback address: loopback, and the evidence says so.
        let r = route(sa("0.0.0.0:8888"), &[ip("127.0.0.1"), ip("::1")]);
        assert_eq!((r.addr, r.source), (sa("127.0.0.1:8888"), None));
        assert!(r.note.contains("no non-loopback address"), "{}", r.note);
        assert_eq!(
            route(sa("[::ffff:0.0.0.0]:3128"), &[]).addr,
            sa("127.0.0.1:3128")
        );
        // Specific addresses: that one, from itself; loopback from loopback.
        let r = route(sa("[::ffff:127.0.0.5]:8118"), &local);
        assert_eq!((r.addr, r.source), (sa("127.0.0.5:8118"), None));
        let r = route(sa("[2001:db8::1]:8888"), &local);
        assert_eq!(
            (r.addr, r.source, r.canary),
            (
                sa("[2001:db8::1]:8888"),
                Some(ip("2001:db8::1")),
                ip("2001:db8::1")
            )
        );
        assert_eq!(
            pick_source([ip("10.0.0.2"), ip("192.0.2.10"), ip("169.254.1.1")], true),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn the_canary_answers_its_token_and_bounds_what_it_keeps() {
        let mut c =
            Canary::open(IpAddr::V4(Ipv4Addr::LOCALHOST), &mut Inside::Native).expect("canary");
        // One connection carrying the token gets the echo.
        let mut s = TcpStream::connect(c.addr).expect("connect");
        s.write_all(format!("{}\r\n", c.token).as_bytes())
            .expect("write");
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..200 {
            c.serve();
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        assert!(
            contains(&got, echo_of(&c.token).as_bytes()),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert!(c.seen.token && c.seen.connections == 1, "{:?}", c.seen);
        // A flood: every connection counted, few kept.
        let flood: Vec<TcpStream> = (0..20)
            .map(|_| TcpStream::connect(c.addr).expect("connect"))
            .collect();
        c.serve();
        c.serve();
        assert_eq!(c.seen.connections, 21);
        assert!(c.conns.len() <= MAX_CANARY_CONNS, "{}", c.conns.len());
        drop(flood);
    }
}
