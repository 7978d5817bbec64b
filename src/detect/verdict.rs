//! Verdicts: one finding per offender. Detection produces one [`Finding`] per signature and
//! subject; [`roll_up`] groups those of the same subject (a process by pid and start time,
//! an interface, the host) and category into one [`proto::Finding`] whose `matches` list
//! every signature that matched, with its evidence, sockets, related pids and probe result.
//!
//! The severity is the highest match's, **raised one level** (to at most critical) when at
//! least [`AGREEING_KINDS`] independent kinds of evidence ([`Kind`]) agree among the matches:
//! what the process is called, what its executable contains, whom it talks to, how it uses
//! the CPU, and an open-proxy probe's proof. `raised` then says from what and why. The rules
//! are documented in `signatures/README.md` ("One verdict per offender").
//!
//! Every verdict is bounded in bytes ([`super::bound`]): the documents built from it are.
//!
//! Pure, like the rest of detection; the output order is deterministic.

use super::Finding;
use aupwatch_proto as proto;
use std::collections::{BTreeMap, BTreeSet};

/// How many independent kinds of evidence must agree to raise a verdict one level.
pub const AGREEING_KINDS: usize = 3;

/// The independent kinds of evidence escalation counts. Each predicate belongs to at most
/// one ([`Kind::of`]); those that belong to none (`user`, `listen`, `policy`, `nice`,
/// `threads`, interface and host predicates) describe context, not an independent sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// What the process is called: `name`, `exe` (its path), `cmdline`, `comm_mismatch`.
    Identity,
    /// What its executable is: `exe_strings`, `sha256`, `exe_deleted`.
    Contents,
    /// Whom it talks to: `remote`, `peers` (connections it holds, not what it listens on).
    Network,
    /// How it uses the CPU: `cpu`.
    Cpu,
    /// An open-proxy probe that proved the listener `open`.
    Probe,
}

impl Kind {
    /// The kind a matched predicate's evidence belongs to.
    pub fn of(predicate: &str) -> Option<Kind> {
        match predicate {
            "name" | "exe" | "cmdline" | "comm_mismatch" => Some(Kind::Identity),
            "exe_strings" | "sha256" | "exe_deleted" => Some(Kind::Contents),
            "remote" | "peers" => Some(Kind::Network),
            "cpu" => Some(Kind::Cpu),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Identity => "name or command line",
            Kind::Contents => "executable contents",
            Kind::Network => "network behaviour",
            Kind::Cpu => "CPU behaviour",
            Kind::Probe => "open-proxy probe",
        }
    }
}

/// The kinds of evidence one match shows.
fn kinds(m: &proto::Match) -> BTreeSet<Kind> {
    let mut k: BTreeSet<Kind> = m
        .evidence
        .iter()
        .filter_map(|e| Kind::of(&e.predicate))
        .collect();
    if m.probe
        .as_ref()
        .is_some_and(|p| p.verdict == proto::ProbeVerdict::Open)
    {
        k.insert(Kind::Probe);
    }
    k
}

fn one_level_up(s: proto::Severity) -> proto::Severity {
    use proto::Severity::*;
    match s {
        Info => Low,
        Low => Medium,
        Medium => High,
        High | Critical => Critical,
    }
}

/// The severity of a verdict whose highest match is `highest`, and why it is above that:
/// one level up when [`AGREEING_KINDS`] kinds of evidence agree (a critical verdict stays
/// critical, and says nothing).
pub fn escalate(
    highest: proto::Severity,
    matches: &[proto::Match],
) -> (proto::Severity, Option<String>) {
    let mut by_kind: BTreeMap<Kind, Vec<&str>> = BTreeMap::new();
    for m in matches {
        for k in kinds(m) {
            by_kind.entry(k).or_default().push(&m.signature);
        }
    }
    let raised = one_level_up(highest);
    if by_kind.len() < AGREEING_KINDS || raised == highest {
        return (highest, None);
    }
    let agree: Vec<String> = by_kind
        .iter()
        .map(|(k, sigs)| format!("{} ({})", k.as_str(), sigs.join(", ")))
        .collect();
    let why = format!(
        "raised from {highest}: {} independent kinds of evidence agree: {}",
        by_kind.len(),
        agree.join("; ")
    );
    (raised, Some(why))
}

/// The subject part of a verdict's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SubjectKey {
    Host,
    Interface(u64, String),
    /// pid and start time: a reused pid is another process.
    Process(i32, u64),
}

fn subject_key(f: &Finding) -> SubjectKey {
    match (&f.process, &f.interface) {
        (Some(p), _) => SubjectKey::Process(p.pid, p.start_ticks),
        (None, Some(i)) => SubjectKey::Interface(i.netns, i.name.clone()),
        (None, None) => SubjectKey::Host,
    }
}

/// Groups per-signature findings into one verdict per (subject, category).
///
/// Verdicts come highest severity first, then by category, then by subject (host,
/// interfaces by namespace and name, processes by pid and start time); matches within a
/// verdict highest severity first, then by signature id.
pub fn roll_up(findings: Vec<Finding>) -> Vec<proto::Finding> {
    let mut groups: BTreeMap<(proto::Category, SubjectKey), Vec<Finding>> = BTreeMap::new();
    for f in findings {
        groups
            .entry((f.category, subject_key(&f)))
            .or_default()
            .push(f);
    }
    let mut verdicts: Vec<(SubjectKey, proto::Finding)> = groups
        .into_iter()
        .filter_map(|((category, key), group)| {
            let subject = subject(group.first()?);
            let mut matches: Vec<proto::Match> = group.into_iter().map(to_match).collect();
            matches.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then_with(|| a.signature.cmp(&b.signature))
            });
            let (severity, raised) = escalate(matches.first()?.severity, &matches);
            Some((
                key,
                proto::Finding {
                    category,
                    severity,
                    subject,
                    matches,
                    raised,
                },
            ))
        })
        .collect();
    verdicts.sort_by(|(ka, a), (kb, b)| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.category.cmp(&b.category))
            .then_with(|| ka.cmp(kb))
    });
    verdicts
        .into_iter()
        .map(|(_, mut v)| {
            super::bound::finding(&mut v);
            v
        })
        .collect()
}

fn subject(f: &Finding) -> proto::Subject {
    match (&f.process, &f.interface) {
        (Some(p), _) => proto::Subject::Process(p.clone()),
        (None, Some(i)) => proto::Subject::Interface(i.clone()),
        (None, None) => proto::Subject::Host,
    }
}

fn to_match(f: Finding) -> proto::Match {
    proto::Match {
        signature: f.signature,
        severity: f.severity,
        description: f.description,
        aup: f.aup,
        related_pids: f.related_pids,
        sockets: f.sockets,
        evidence: f.evidence,
        probe: f.probe,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::detect::{Evidence, InterfaceRef, ProcessRef, SocketRef};
    use crate::inventory::{Protocol, SocketState};
    use crate::probe::{ProbeReport, ProxyProtocol, Verdict};
    use crate::signatures::{Category, Severity};

    /// A per-signature finding of `sig` on process `pid` (started at `start`).
    pub(crate) fn on_process(
        sig: &str,
        category: Category,
        severity: Severity,
        pid: i32,
        start: u64,
    ) -> Finding {
        Finding {
            signature: sig.into(),
            category,
            severity,
            description: format!("{sig} description"),
            aup: "a".into(),
            process: Some(ProcessRef {
                pid,
                ppid: 1,
                start_ticks: start,
                uid: 1000,
                user: Some("u".into()),
                comm: "irssi".into(),
                exe: Some("/usr/bin/irssi".into()),
                exe_deleted: false,
                cmdline: vec!["irssi".into()],
                netns: 1,
                container: None,
                cmdline_truncated: None,
            }),
            interface: None,
            host: false,
            related_pids: vec![],
            sockets: vec![],
            evidence: vec![Evidence {
                predicate: "name".into(),
                value: sig.into(),
            }],
            probe: None,
        }
    }

    fn on_interface(sig: &str, name: &str) -> Finding {
        let mut f = on_process(sig, Category::Multicast, Severity::Low, 0, 0);
        f.process = None;
        f.interface = Some(InterfaceRef {
            netns: 1,
            name: name.into(),
        });
        f
    }

    fn on_host(sig: &str, severity: Severity) -> Finding {
        let mut f = on_process(sig, Category::Evasion, severity, 0, 0);
        f.process = None;
        f.host = true;
        f
    }

    fn ids(v: &proto::Finding) -> Vec<&str> {
        v.signatures().collect()
    }

    #[test]
    fn one_verdict_per_subject_and_category_with_every_match() {
        let mut with_socket = on_process("irc.client", Category::Irc, Severity::Low, 10, 5);
        with_socket.sockets.push(SocketRef {
            protocol: Protocol::Tcp,
            local: "127.0.0.1:40000".parse().expect("addr"),
            remote: Some("127.0.0.1:6667".parse().expect("addr")),
            state: SocketState::Established,
            netns: 1,
            inode: 7,
        });
        with_socket.related_pids = vec![11];
        let verdicts = roll_up(vec![
            with_socket,
            on_process("irc.bot", Category::Irc, Severity::Medium, 10, 5),
            // same pid, another process (pid reuse): another offender
            on_process("irc.client", Category::Irc, Severity::Low, 10, 6),
            // same process, another category: another verdict
            on_process("tor.client", Category::Tor, Severity::Low, 10, 5),
            on_interface("multicast.a", "eth0"),
            on_interface("multicast.b", "eth0"),
            on_interface("multicast.a", "eth1"),
            on_host("evasion.preload", Severity::High),
            on_host("evasion.hidden", Severity::Critical),
        ]);
        let shape: Vec<(Category, Severity, Vec<&str>)> = verdicts
            .iter()
            .map(|v| (v.category, v.severity, ids(v)))
            .collect();
        assert_eq!(
            shape,
            vec![
                (
                    Category::Evasion,
                    Severity::Critical,
                    vec!["evasion.hidden", "evasion.preload"]
                ),
                (
                    Category::Irc,
                    Severity::Medium,
                    vec!["irc.bot", "irc.client"]
                ),
                (Category::Irc, Severity::Low, vec!["irc.client"]),
                (Category::Tor, Severity::Low, vec!["tor.client"]),
                (
                    Category::Multicast,
                    Severity::Low,
                    vec!["multicast.a", "multicast.b"]
                ),
                (Category::Multicast, Severity::Low, vec!["multicast.a"]),
            ]
        );
        let irc = &verdicts[1];
        assert_eq!(irc.process().map(|p| (p.pid, p.start_ticks)), Some((10, 5)));
        let client = &irc.matches[1];
        assert_eq!(client.related_pids, vec![11]);
        assert_eq!(client.sockets.len(), 1);
        assert_eq!(client.evidence[0].value, "irc.client");
        assert_eq!(irc.raised, None);
        assert!(matches!(verdicts[0].subject, proto::Subject::Host));
        assert!(matches!(&verdicts[4].subject, proto::Subject::Interface(i) if i.name == "eth0"));
    }

    /// A match of `sig` on process 10 whose evidence names `predicates`.
    fn showing(sig: &str, severity: Severity, predicates: &[&str]) -> Finding {
        let mut f = on_process(sig, Category::Mining, severity, 10, 5);
        f.evidence = predicates
            .iter()
            .map(|p| Evidence {
                predicate: (*p).into(),
                value: "v".into(),
            })
            .collect();
        f
    }

    #[test]
    fn independent_kinds_of_evidence_that_agree_raise_the_verdict_one_level() {
        // The renamed miner of tests/behaviour.rs: its executable's strings (high), deleted
        // and busy and connected (high), on a pool port and busy (medium): contents,
        // network and CPU agree → critical.
        let v = roll_up(vec![
            showing("mining.exe-strings", Severity::High, &["exe_strings"]),
            showing(
                "mining.hidden-busy-exe",
                Severity::High,
                &["exe_deleted", "cpu", "remote"],
            ),
            showing(
                "mining.pool-port-busy",
                Severity::Medium,
                &["remote", "cpu"],
            ),
        ]);
        assert_eq!(v.len(), 1, "one verdict: {v:#?}");
        assert_eq!(v[0].severity, Severity::Critical);
        assert_eq!(v[0].matches.len(), 3);
        let why = v[0].raised.as_deref().expect("raised says why");
        assert!(
            why.starts_with("raised from high: 3 independent kinds of evidence agree: ")
                && why.contains("executable contents (mining.exe-strings, mining.hidden-busy-exe)")
                && why
                    .contains("network behaviour (mining.hidden-busy-exe, mining.pool-port-busy)")
                && why.contains("CPU behaviour"),
            "{why}"
        );
        // Two kinds are not enough: a name and a connection stay as they are.
        let v = roll_up(vec![
            showing("irc.client", Severity::Low, &["name"]),
            showing("irc.port", Severity::Medium, &["remote"]),
        ]);
        assert_eq!(
            (v[0].severity, v[0].raised.as_deref()),
            (Severity::Medium, None)
        );
        // Context predicates count for nothing: listen, user, policy, nice, threads.
        let v = roll_up(vec![showing(
            "tor.relay",
            Severity::Medium,
            &["name", "listen", "user", "policy", "nice", "threads"],
        )]);
        assert_eq!(
            (v[0].severity, v[0].raised.as_deref()),
            (Severity::Medium, None)
        );
        // One signature whose own conjunction shows three kinds is raised too: the kinds are
        // independent whichever signature saw them.
        let v = roll_up(vec![showing(
            "mining.miner-named-cpu",
            Severity::Medium,
            &["name", "cpu", "peers"],
        )]);
        assert_eq!(v[0].severity, Severity::High);
        // A critical verdict stays critical and says nothing.
        let v = roll_up(vec![showing(
            "mining.xmrig",
            Severity::Critical,
            &["name", "cpu", "remote", "exe_strings"],
        )]);
        assert_eq!(
            (v[0].severity, v[0].raised.as_deref()),
            (Severity::Critical, None)
        );
        // An open probe is a kind of its own; any other verdict is not.
        let probed = |verdict| {
            let mut f = showing("proxy.software-public", Severity::High, &["name", "listen"]);
            f.category = Category::Proxy;
            f.probe = Some(ProbeReport {
                verdict,
                protocol: Some(ProxyProtocol::Socks5),
                address: "127.0.0.1:1080".parse().expect("addr"),
                netns: 1,
                inode: 2,
                evidence: "e".into(),
                probed_at_unix_ms: 3,
            });
            let mut busy = showing("proxy.many-clients", Severity::High, &["name", "peers"]);
            busy.category = Category::Proxy;
            roll_up(vec![f, busy])
        };
        let v = probed(Verdict::Open);
        assert_eq!(v[0].severity, Severity::Critical, "{v:#?}");
        assert!(v[0]
            .raised
            .as_deref()
            .is_some_and(|w| w.contains("open-proxy probe (proxy.software-public)")));
        let v = probed(Verdict::Restricted);
        assert_eq!(
            (v[0].severity, v[0].raised.as_deref()),
            (Severity::High, None)
        );
    }

    #[test]
    fn kinds_of_predicates() {
        for (p, k) in [
            ("name", Some(Kind::Identity)),
            ("exe", Some(Kind::Identity)),
            ("cmdline", Some(Kind::Identity)),
            ("comm_mismatch", Some(Kind::Identity)),
            ("exe_strings", Some(Kind::Contents)),
            ("sha256", Some(Kind::Contents)),
            ("exe_deleted", Some(Kind::Contents)),
            ("remote", Some(Kind::Network)),
            ("peers", Some(Kind::Network)),
            ("cpu", Some(Kind::Cpu)),
            ("listen", None),
            ("user", None),
            ("policy", None),
            ("hidden", None),
            ("traffic", None),
        ] {
            assert_eq!(Kind::of(p), k, "{p}");
        }
    }

    #[test]
    fn order_does_not_depend_on_the_input_order() {
        let input = vec![
            on_process("irc.client", Category::Irc, Severity::Low, 10, 5),
            on_process("irc.bot", Category::Irc, Severity::Low, 10, 5),
            on_process("irc.bot", Category::Irc, Severity::Low, 9, 5),
            on_interface("multicast.a", "eth0"),
        ];
        let mut reversed = input.clone();
        reversed.reverse();
        assert_eq!(roll_up(input), roll_up(reversed));
        assert!(roll_up(vec![]).is_empty());
    }

    #[test]
    fn a_probe_result_is_carried_on_its_match() {
        let mut f = on_process("proxy.squid", Category::Proxy, Severity::High, 3, 1);
        f.probe = Some(ProbeReport {
            verdict: Verdict::Open,
            protocol: Some(ProxyProtocol::Socks5),
            address: "127.0.0.1:1080".parse().expect("addr"),
            netns: 1,
            inode: 2,
            evidence: "e".into(),
            probed_at_unix_ms: 3,
        });
        let v = roll_up(vec![f]);
        let p = v[0].matches[0].probe.as_ref().expect("probe");
        assert_eq!(
            (p.verdict, p.protocol),
            (
                proto::ProbeVerdict::Open,
                Some(proto::ProxyProtocol::Socks5)
            )
        );
    }
}
