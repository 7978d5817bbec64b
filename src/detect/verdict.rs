//! Verdicts: one finding per offender. Detection produces one [`Finding`] per signature and
//! subject; [`roll_up`] groups those of the same subject (a process by pid and start time,
//! an interface, the host) and category into one [`proto::Finding`] whose `matches` list
//! every signature that matched, with its evidence, sockets, related pids and probe result.
//!
//! The severity is the highest match's. `raised` stays `None`: raising a verdict when
//! independent kinds of evidence agree is a later step.
//!
//! Every verdict is bounded in bytes ([`super::bound`]): the documents built from it are.
//!
//! Pure, like the rest of detection; the output order is deterministic.

use super::Finding;
use aupwatch_proto as proto;
use std::collections::BTreeMap;

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
            let severity = matches.first()?.severity;
            Some((
                key,
                proto::Finding {
                    category,
                    severity,
                    subject,
                    matches,
                    raised: None,
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
