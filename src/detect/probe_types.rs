//! The words probes and detection share: which sockets to probe ([`Target`]) and what a
//! probe concluded ([`Verdict`], [`ProxyProtocol`], [`ProbeReport`], [`ProbeResults`]).
//! Plain data, on detection's side: the pure engine names the targets and reads the results;
//! the side-effecting prober (`crate::probe`) imports these from here.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a probe concluded about one listening socket, the protocol that answered, and one
/// probe's result as findings carry it: the documents' own types (`aupwatch-proto`), so a
/// probe result travels to the status socket and the collector unchanged.
pub use aupwatch_proto::{Probe as ProbeReport, ProbeVerdict as Verdict, ProxyProtocol};

/// Probe results of one scan, by (network namespace, socket inode).
pub type ProbeResults = BTreeMap<(u64, u64), ProbeReport>;

/// Which listeners the open-proxy probe asks (`probes` in `agent.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeMode {
    /// The listeners of findings whose signature says `probe = "proxy"`, and every other
    /// public TCP listener that no finding of another category explains (a renamed proxy on
    /// any port); an `open` result alone is a `proxy.verified-open` finding.
    #[default]
    All,
    /// Only the listeners of findings whose signature says `probe = "proxy"`.
    Suspected,
    /// No probes.
    Off,
}

impl ProbeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::All => "all",
            ProbeMode::Suspected => "suspected",
            ProbeMode::Off => "off",
        }
    }

    /// The mode named `s` ("all", "suspected", "off").
    pub fn parse(s: &str) -> Option<ProbeMode> {
        [ProbeMode::All, ProbeMode::Suspected, ProbeMode::Off]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// One listening TCP socket to probe.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub netns: u64,
    pub inode: u64,
    /// The listener's local address.
    pub listen: SocketAddr,
    /// Processes holding it: the namespace is entered through one of them.
    pub owners: Vec<i32>,
    /// What to ask it.
    pub question: crate::signatures::ProbeKind,
}

impl Target {
    pub fn key(&self) -> (u64, u64) {
        (self.netns, self.inode)
    }

    /// Where a probe connects when the namespace has no non-loopback address: the
    /// listener's address, loopback for an unspecified one (the prober decides the real
    /// route inside the namespace).
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
