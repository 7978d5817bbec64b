//! Probes as input to detection: which listening sockets to probe ([`candidates`]), and how
//! probe results refine findings ([`apply`]). Pure, like the rest of detection: the probes
//! themselves run elsewhere (`crate::probe`), between the two calls.
//!
//! A finding of a signature with `probe = "proxy"` names the TCP listeners in its `sockets`
//! (or, if it lists none, every TCP listener of its process and related processes). Of
//! their results, the finding carries the weightiest ([`Verdict::weight`]), and its
//! severity follows it: `open` raises it to at least high; `authenticated` and
//! `restricted` lower it to at most low; anything else leaves the signature's own.
//!
//! With [`ProbeMode::All`], every other public TCP listener is a candidate too, unless a
//! finding of another category than proxy explains its process (an IRC server, a tor relay,
//! …: a known service that is not a proxy). Such a listener found `open` becomes a finding of
//! its own, [`VERIFIED_OPEN`] (high); any other result makes none.

use super::Finding;
use crate::inventory::{Protocol, Snapshot, SocketState};
use crate::signatures::{ProbeKind, Severity, SignatureSet};
use std::collections::BTreeSet;

pub use super::probe_types::{
    ProbeMode, ProbeReport, ProbeResults, ProxyProtocol, Target, Verdict,
};
use super::{process_ref, socket_ref, Evidence};
use crate::signatures::Category;

/// The finding of a listener no signature suspected that the probe proved an open proxy.
pub const VERIFIED_OPEN: &str = "proxy.verified-open";

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

/// The probe `f`'s signature asks for, if any.
fn probe_kind(f: &Finding, set: &SignatureSet) -> Option<ProbeKind> {
    f.process.as_ref()?;
    set.signatures
        .iter()
        .find(|s| s.id == f.signature)
        .and_then(|s| s.probe)
}

/// Whether `f`'s signature asks for a probe.
fn wants_probe(f: &Finding, set: &SignatureSet) -> bool {
    probe_kind(f, set).is_some()
}

/// The pids of a finding's process and its folded relatives.
fn pids_of(f: &Finding) -> impl Iterator<Item = i32> + '_ {
    f.process
        .iter()
        .map(|p| p.pid)
        .chain(f.related_pids.iter().copied())
}

/// The public TCP listeners [`ProbeMode::All`] adds: not loopback-bound, held by a process,
/// and not held by a process that a finding of another category than proxy explains.
fn unexplained_listeners(findings: &[Finding], snap: &Snapshot) -> BTreeSet<(u64, u64)> {
    let explained: BTreeSet<i32> = findings
        .iter()
        .filter(|f| f.category != Category::Proxy)
        .flat_map(pids_of)
        .collect();
    snap.sockets
        .iter()
        .filter(|s| {
            s.protocol == Protocol::Tcp
                && s.state == SocketState::Listen
                && s.inode != 0
                && s.is_public_bind()
                && !s.owners.is_empty()
                && !s.owners.iter().any(|o| explained.contains(o))
        })
        .map(|s| (s.netns, s.inode))
        .collect()
}

/// The sockets to probe for `findings` in `mode`: each once, sorted.
pub fn candidates(
    findings: &[Finding],
    snap: &Snapshot,
    set: &SignatureSet,
    mode: ProbeMode,
) -> Vec<Target> {
    // A socket two signatures ask about is asked the first kind (proxy before SMTP).
    let mut keys: std::collections::BTreeMap<(u64, u64), ProbeKind> = match mode {
        ProbeMode::Off => return Vec::new(),
        ProbeMode::All | ProbeMode::Suspected => {
            let mut keys = std::collections::BTreeMap::new();
            for f in findings {
                let Some(kind) = probe_kind(f, set) else {
                    continue;
                };
                for k in probed_sockets(f, snap) {
                    let e = keys.entry(k).or_insert(kind);
                    *e = (*e).min(kind);
                }
            }
            keys
        }
    };
    if mode == ProbeMode::All {
        for k in unexplained_listeners(findings, snap) {
            keys.entry(k).or_insert(ProbeKind::Proxy);
        }
    }
    if keys.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for s in &snap.sockets {
        if s.protocol != Protocol::Tcp
            || s.state != SocketState::Listen
            || out.iter().any(|t: &Target| t.key() == (s.netns, s.inode))
        {
            continue;
        }
        let Some(&question) = keys.get(&(s.netns, s.inode)) else {
            continue;
        };
        out.push(Target {
            netns: s.netns,
            inode: s.inode,
            listen: s.local,
            owners: s.owners.clone(),
            question,
        });
    }
    out.sort();
    out
}

/// Sets each probed finding's `probe` and severity from `results`, adds a
/// [`VERIFIED_OPEN`] finding for each process holding an open listener no probed finding
/// covers, and sorts the findings again.
pub fn apply(
    findings: &mut Vec<Finding>,
    snap: &Snapshot,
    set: &SignatureSet,
    results: &ProbeResults,
) {
    if results.is_empty() {
        return;
    }
    let mut changed = false;
    let mut covered: BTreeSet<(u64, u64)> = BTreeSet::new();
    for f in findings.iter_mut() {
        if !wants_probe(f, set) {
            continue;
        }
        let keys: BTreeSet<(u64, u64)> = probed_sockets(f, snap).into_iter().collect();
        covered.extend(keys.iter().copied());
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
    let verified = verified_open(snap, results, &covered);
    if changed || !verified.is_empty() {
        findings.extend(verified);
        super::sort(findings);
    }
}

/// `proxy.verified-open` findings: one per process holding a listener that no probed finding
/// covers and that the probe proved open (the owner with the lowest pid that the snapshot
/// has; its other such listeners are listed with it).
fn verified_open(
    snap: &Snapshot,
    results: &ProbeResults,
    covered: &BTreeSet<(u64, u64)>,
) -> Vec<Finding> {
    let mut by_pid: std::collections::BTreeMap<i32, Finding> = std::collections::BTreeMap::new();
    for (key, report) in results {
        if report.verdict != Verdict::Open || covered.contains(key) {
            continue;
        }
        let Some(socket) = snap
            .sockets
            .iter()
            .find(|s| (s.netns, s.inode) == *key && s.state == SocketState::Listen)
        else {
            continue;
        };
        let mut owners = socket.owners.clone();
        owners.sort_unstable();
        let Some(process) = owners
            .iter()
            .find_map(|o| snap.processes.iter().find(|p| p.pid == *o))
        else {
            continue;
        };
        let protocol = report.protocol.map_or("a proxy protocol", |p| p.as_str());
        let f = by_pid.entry(process.pid).or_insert_with(|| Finding {
            signature: VERIFIED_OPEN.into(),
            category: Category::Proxy,
            severity: Severity::High,
            description: "A TCP listener that no signature suspected, proved an open proxy by the probe: it connected to the probe's canary for a stranger, without credentials".into(),
            aup: "Open proxies and proxy services".into(),
            process: Some(process_ref(process)),
            interface: None,
            host: false,
            related_pids: Vec::new(),
            sockets: Vec::new(),
            evidence: Vec::new(),
            probe: None,
        });
        f.sockets.push(socket_ref(socket));
        f.evidence.push(Evidence {
            predicate: "probe".into(),
            value: format!("open: {protocol} on {}", socket.local),
        });
        // The first (lowest netns, inode) open listener's result is the finding's.
        if f.probe.is_none() {
            f.probe = Some(report.clone());
        }
    }
    by_pid.into_values().collect()
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
        let t = candidates(&f, &snap(), &set(), ProbeMode::Suspected);
        let keys: Vec<(u64, u64)> = t.iter().map(Target::key).collect();
        assert_eq!(keys, [(7, 100), (7, 101)]);
        assert_eq!(t[0].listen, "0.0.0.0:1080".parse().expect("addr"));
        assert_eq!(t[0].owners, [10]);
        // A finding without sockets: its process's TCP listeners.
        let mut bare = f.clone();
        for x in &mut bare {
            x.sockets.clear();
        }
        assert_eq!(
            candidates(&bare, &snap(), &set(), ProbeMode::Suspected).len(),
            2
        );
        // No signature asks: nothing to probe.
        let unprobed: Vec<Finding> = f
            .into_iter()
            .filter(|x| x.signature == "proxy.named")
            .collect();
        assert!(candidates(&unprobed, &snap(), &set(), ProbeMode::Suspected).is_empty());
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

    #[test]
    fn all_mode_probes_unexplained_public_listeners_and_open_alone_is_a_finding() {
        let mut snap = snap();
        snap.processes.push(Process {
            pid: 99,
            ppid: 1,
            comm: "node-exporter".into(),
            netns: 7,
            socket_inodes: vec![200],
            ..Process::default()
        });
        snap.processes.push(Process {
            pid: 77,
            ppid: 1,
            comm: "ngircd".into(),
            netns: 8,
            socket_inodes: vec![300],
            ..Process::default()
        });
        let mut f = findings();
        // A finding of another category explains pid 77 (an IRC server): not probed.
        let mut irc = f[0].clone();
        irc.signature = "irc.server".into();
        irc.category = Category::Irc;
        irc.sockets.clear();
        if let Some(p) = irc.process.as_mut() {
            p.pid = 77;
        }
        f.push(irc);
        let keys = |mode| {
            candidates(&f, &snap, &set(), mode)
                .iter()
                .map(Target::key)
                .collect::<Vec<_>>()
        };
        // 101 is on loopback: a suspected proxy's listener all the same, never an
        // unexplained one.
        assert_eq!(keys(ProbeMode::All), [(7, 100), (7, 101), (7, 200)]);
        assert_eq!(keys(ProbeMode::Suspected), [(7, 100), (7, 101)]);
        assert!(keys(ProbeMode::Off).is_empty());

        let results = |verdict_200, verdict_100| -> ProbeResults {
            [report(7, 200, verdict_200), report(7, 100, verdict_100)]
                .into_iter()
                .map(|r| ((r.netns, r.inode), r))
                .collect()
        };
        let mut g = f.clone();
        apply(
            &mut g,
            &snap,
            &set(),
            &results(Verdict::Open, Verdict::Open),
        );
        let verified: Vec<&Finding> = g.iter().filter(|x| x.signature == VERIFIED_OPEN).collect();
        assert_eq!(verified.len(), 1, "{g:#?}");
        let v = verified[0];
        assert_eq!(
            (
                v.category,
                v.severity,
                v.process.as_ref().map(|p| p.pid),
                v.sockets.iter().map(|s| s.inode).collect::<Vec<_>>(),
                v.probe.as_ref().map(|p| (p.verdict, p.inode)),
            ),
            (
                Category::Proxy,
                Severity::High,
                Some(99),
                vec![200],
                Some((Verdict::Open, 200)),
            )
        );
        assert_eq!(v.evidence[0].value, "open: socks5 on 0.0.0.0:443");
        // Sorted: high first.
        assert_eq!(g[0].severity, Severity::High);
        // Any other verdict makes no finding; the suspected proxy's open listener is its own
        // finding's result, not a second finding.
        for other in [
            Verdict::NotProxy,
            Verdict::Restricted,
            Verdict::Authenticated,
            Verdict::Inconclusive,
            Verdict::NoAnswer,
            Verdict::NotProbed,
        ] {
            let mut g = f.clone();
            apply(&mut g, &snap, &set(), &results(other, Verdict::Open));
            assert!(
                g.iter().all(|x| x.signature != VERIFIED_OPEN),
                "{other}: {g:#?}"
            );
        }
    }
}
