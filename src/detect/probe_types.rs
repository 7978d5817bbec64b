//! The words probes and detection share: which sockets to probe ([`Target`]) and what a
//! probe concluded ([`Verdict`], [`ProxyProtocol`], [`ProbeReport`], [`ProbeResults`]).
//! Plain data, on detection's side: the pure engine names the targets and reads the results;
//! the side-effecting prober (`crate::probe`) imports these from here.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a probe concluded about one listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Serves without credentials: SOCKS5 chose "no authentication", SOCKS4 granted, or an
    /// HTTP proxy tried to reach the closed port for us.
    Open,
    /// Wants credentials: SOCKS5 chose username/password (or refused both offers), SOCKS4
    /// wants identd, HTTP 407.
    Authenticated,
    /// An HTTP proxy that refuses this client (403 to CONNECT).
    Restricted,
    /// Speaks a proxy protocol, but its answer cannot tell (SOCKS4 0x5B: refused or failed).
    Inconclusive,
    /// Answered, but not as a proxy (an HTTP server, another protocol).
    NotProxy,
    /// Accepted nothing, or said nothing any protocol recognises in time.
    NoAnswer,
    /// Not asked: its namespace could not be entered, the stage ran out of time, …
    NotProbed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Open => "open",
            Verdict::Authenticated => "authenticated",
            Verdict::Restricted => "restricted",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotProxy => "not_proxy",
            Verdict::NoAnswer => "no_answer",
            Verdict::NotProbed => "not_probed",
        }
    }

    /// How much the verdict says about abuse: of several sockets, the finding shows the
    /// highest.
    pub fn weight(self) -> u8 {
        match self {
            Verdict::Open => 6,
            Verdict::Authenticated => 5,
            Verdict::Restricted => 4,
            Verdict::Inconclusive => 3,
            Verdict::NotProxy => 2,
            Verdict::NoAnswer => 1,
            Verdict::NotProbed => 0,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    Http,
    Socks4,
    Socks5,
}

impl std::fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyProtocol::Http => "http",
            ProxyProtocol::Socks4 => "socks4",
            ProxyProtocol::Socks5 => "socks5",
        })
    }
}

/// One probe's result, as findings carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub verdict: Verdict,
    /// The protocol that answered, when one did.
    pub protocol: Option<ProxyProtocol>,
    /// The address connected to (the listener's, or loopback for an unspecified bind).
    pub address: SocketAddr,
    pub netns: u64,
    /// Inode of the listening socket.
    pub inode: u64,
    /// What was asked and what came back (host-supplied bytes: escape before printing).
    pub evidence: String,
    /// When the probe ran: the prober reuses results for a while (`crate::probe::Options`).
    pub probed_at_unix_ms: u64,
}

/// Probe results of one scan, by (network namespace, socket inode).
pub type ProbeResults = BTreeMap<(u64, u64), ProbeReport>;

/// One listening TCP socket to probe.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub netns: u64,
    pub inode: u64,
    /// The listener's local address.
    pub listen: SocketAddr,
    /// Processes holding it: the namespace is entered through one of them.
    pub owners: Vec<i32>,
    /// A port on which nothing listens in the namespace: the only destination named.
    pub closed_port: u16,
}

impl Target {
    pub fn key(&self) -> (u64, u64) {
        (self.netns, self.inode)
    }

    /// Where to connect: the listener's address, loopback for an unspecified one.
    pub fn address(&self) -> SocketAddr {
        let ip = match self.listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            ip => ip,
        };
        SocketAddr::new(ip, self.listen.port())
    }
}
