//! Probes as input to detection: which listening sockets to probe ([`candidates`]), and how
//! probe results refine findings ([`apply`]). Pure, like the rest of detection: the probes
//! themselves run elsewhere (`crate::probe`), between the two calls.
//!
//! A finding of a signature with `probe = "proxy"` names the TCP listeners in its `sockets`
//! (or, if it lists none, every TCP listener of its process and related processes). Of
//! their results, the finding carries the weightiest ([`Verdict::weight`]), and its
//! severity follows it: `open` raises it to at least high; `authenticated` and
//! `restricted` lower it to at most low; anything else leaves the signature's own.

use super::Finding;
use crate::inventory::{Protocol, Snapshot, SocketState};
use crate::signatures::{ProbeKind, Severity, SignatureSet};
use std::collections::BTreeSet;

pub use super::probe_types::{ProbeReport, ProbeResults, ProxyProtocol, Target, Verdict};

/// The (netns, inode) of the TCP listeners a probed finding stands on.
fn probed_sockets(f: &Finding, snap: &Snapshot) -> Vec<(u64, u64)> {
    let listed: Vec<(u64, u64)> = f
        .sockets
        .iter()
        .filter(|s| s.protocol == Protocol::Tcp && s.state == SocketState::Listen && s.inode != 0)
        .map(|s| (s.netns, s.inode))
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    let Some(p) = &f.process else {
        return Vec::new();
    };
    let pids: BTreeSet<i32> = std::iter::once(p.pid)
        .chain(f.related_pids.iter().copied())
        .collect();
    snap.sockets
        .iter()
        .filter(|s| {
            s.protocol == Protocol::Tcp
                && s.state == SocketState::Listen
                && s.inode != 0
                && s.owners.iter().any(|o| pids.contains(o))
        })
        .map(|s| (s.netns, s.inode))
        .collect()
}

/// Whether `f`'s signature asks for the proxy probe.
fn wants_probe(f: &Finding, set: &SignatureSet) -> bool {
    f.process.is_some()
        && set
            .signatures
            .iter()
            .any(|s| s.id == f.signature && s.probe == Some(ProbeKind::Proxy))
}

/// The sockets to probe for `findings`: each once, sorted.
pub fn candidates(findings: &[Finding], snap: &Snapshot, set: &SignatureSet) -> Vec<Target> {
    let keys: BTreeSet<(u64, u64)> = findings
        .iter()
        .filter(|f| wants_probe(f, set))
        .flat_map(|f| probed_sockets(f, snap))
        .collect();
    if keys.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for s in &snap.sockets {
        if s.protocol != Protocol::Tcp
            || s.state != SocketState::Listen
            || !keys.contains(&(s.netns, s.inode))
            || out.iter().any(|t: &Target| t.key() == (s.netns, s.inode))
        {
            continue;
        }
        out.push(Target {
            netns: s.netns,
            inode: s.inode,
            listen: s.local,
            owners: s.owners.clone(),
        });
    }
    out.sort();
    out
}

/// Sets each probed finding's `probe` and severity from `results`, and sorts the findings
/// again.
pub fn apply(
    findings: &mut [Finding],
    snap: &Snapshot,
    set: &SignatureSet,
    results: &ProbeResults,
) {
    if results.is_empty() {
        return;
    }
    let mut changed = false;
    for f in findings.iter_mut() {
        if !wants_probe(f, set) {
            continue;
        }
        let keys: BTreeSet<(u64, u64)> = probed_sockets(f, snap).into_iter().collect();
        let best = keys.iter().filter_map(|k| results.get(k)).max_by(|a, b| {
            a.verdict
                .weight()
                .cmp(&b.verdict.weight())
                // Of equal weight, the lowest (netns, inode): a stable choice.
                .then_with(|| (b.netns, b.inode).cmp(&(a.netns, a.inode)))
        });
        let Some(report) = best else {
            continue;
        };
        let severity = match report.verdict {
            Verdict::Open => f.severity.max(Severity::High),
            Verdict::Authenticated | Verdict::Restricted => f.severity.min(Severity::Low),
            Verdict::Inconclusive | Verdict::NotProxy | Verdict::NoAnswer | Verdict::NotProbed => {
                f.severity
            }
        };
        changed |= severity != f.severity;
        f.severity = severity;
        f.probe = Some(report.clone());
    }
    if changed {
        super::sort(findings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::History;
    use crate::inventory::{Process, Socket};

    const PACK: &str = r#"
[[signature]]
id = "proxy.soft"
category = "proxy"
severity = "medium"
description = "d"
aup = "a"
probe = "proxy"
match = { all = [ { name = ["microsocks"] }, { listen = { protocol = "tcp" } } ] }

[[signature]]
id = "proxy.named"
category = "proxy"
severity = "medium"
description = "d"
aup = "a"
match = { name = ["microsocks"] }
"#;

    fn set() -> SignatureSet {
        crate::signatures::load_sources(&[("p.toml".into(), PACK.into())]).expect("valid")
    }

    fn socket(netns: u64, local: &str, state: SocketState, inode: u64, pid: i32) -> Socket {
        Socket {
            netns,
            protocol: Protocol::Tcp,
            local: local.parse().expect("addr"),
            remote: None,
            state,
            uid: 0,
            inode,
            owners: vec![pid],
        }
    }

    fn snap() -> Snapshot {
        Snapshot {
            processes: vec![Process {
                pid: 10,
                ppid: 1,
                comm: "microsocks".into(),
                netns: 7,
                socket_inodes: vec![100, 101],
                ..Process::default()
            }],
            sockets: vec![
                socket(7, "0.0.0.0:1080", SocketState::Listen, 100, 10),
                socket(7, "127.0.0.1:1081", SocketState::Listen, 101, 10),
                // Something else of the namespace: not a candidate.
                socket(7, "0.0.0.0:443", SocketState::Listen, 200, 99),
                socket(8, "0.0.0.0:1080", SocketState::Listen, 300, 77),
            ],
            ..Snapshot::default()
        }
    }

    fn report(netns: u64, inode: u64, verdict: Verdict) -> ProbeReport {
        ProbeReport {
            verdict,
            protocol: Some(ProxyProtocol::Socks5),
            address: "127.0.0.1:1080".parse().expect("addr"),
            netns,
            inode,
            evidence: "e".into(),
            probed_at_unix_ms: 1,
        }
    }

    fn findings() -> Vec<Finding> {
        crate::detect::run(&snap(), &History::new(60), &set())
    }

    #[test]
    fn candidates_are_the_listeners_of_probed_findings() {
        let f = findings();
        assert_eq!(f.len(), 2);
        let t = candidates(&f, &snap(), &set());
        let keys: Vec<(u64, u64)> = t.iter().map(Target::key).collect();
        assert_eq!(keys, [(7, 100), (7, 101)]);
        assert_eq!(t[0].listen, "0.0.0.0:1080".parse().expect("addr"));
        assert_eq!(t[0].owners, [10]);
        // A finding without sockets: its process's TCP listeners.
        let mut bare = f.clone();
        for x in &mut bare {
            x.sockets.clear();
        }
        assert_eq!(candidates(&bare, &snap(), &set()).len(), 2);
        // No signature asks: nothing to probe.
        let unprobed: Vec<Finding> = f
            .into_iter()
            .filter(|x| x.signature == "proxy.named")
            .collect();
        assert!(candidates(&unprobed, &snap(), &set()).is_empty());
    }

    fn applied(results: &[ProbeReport]) -> Vec<Finding> {
        let mut f = findings();
        let r: ProbeResults = results
            .iter()
            .map(|r| ((r.netns, r.inode), r.clone()))
            .collect();
        apply(&mut f, &snap(), &set(), &r);
        f
    }

    fn soft(f: &[Finding]) -> &Finding {
        f.iter()
            .find(|x| x.signature == "proxy.soft")
            .expect("the probed finding")
    }

    #[test]
    fn verdicts_set_severity() {
        let cases = [
            (Verdict::Open, Severity::High),
            (Verdict::Authenticated, Severity::Low),
            (Verdict::Restricted, Severity::Low),
            (Verdict::Inconclusive, Severity::Medium),
            (Verdict::NotProxy, Severity::Medium),
            (Verdict::NoAnswer, Severity::Medium),
            (Verdict::NotProbed, Severity::Medium),
        ];
        for (verdict, want) in cases {
            let f = applied(&[report(7, 100, verdict)]);
            let s = soft(&f);
            assert_eq!(s.severity, want, "{verdict}");
            assert_eq!(s.probe.as_ref().map(|p| p.verdict), Some(verdict));
            // The finding without `probe` is untouched.
            let named = f
                .iter()
                .find(|x| x.signature == "proxy.named")
                .expect("named");
            assert_eq!(
                (named.severity, named.probe.is_none()),
                (Severity::Medium, true)
            );
        }
        // Open sorts the finding first.
        let f = applied(&[report(7, 100, Verdict::Open)]);
        assert_eq!(f[0].signature, "proxy.soft");
    }

    #[test]
    fn the_weightiest_socket_counts() {
        let f = applied(&[
            report(7, 100, Verdict::NotProxy),
            report(7, 101, Verdict::Open),
            // Another namespace's socket is not this finding's.
            report(8, 300, Verdict::Authenticated),
        ]);
        let s = soft(&f);
        assert_eq!(s.probe.as_ref().map(|p| p.inode), Some(101));
        assert_eq!(s.severity, Severity::High);
        // No result for its sockets: nothing changes.
        let f = applied(&[report(8, 300, Verdict::Open)]);
        assert!(soft(&f).probe.is_none());
        assert_eq!(soft(&f).severity, Severity::Medium);
        // The same input gives the same output.
        assert_eq!(
            applied(&[report(7, 100, Verdict::Open)]),
            applied(&[report(7, 100, Verdict::Open)])
        );
    }
}
