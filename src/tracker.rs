//! Tracker: gives verdicts a lifecycle (new → ongoing → resolved) under a stable identity,
//! and applies exceptions. An excepted finding stays tracked and visible, marked excepted.
//! Pure: time arrives as an argument; no I/O.
//!
//! A tracked finding is one offender's verdict ([`Finding`], from
//! [`crate::detect::verdict::roll_up`]): its identity is (host, category, subject), where a
//! process subject is its pid and start time. Signatures joining or leaving the offender
//! keep the one finding; a change of its severity or of its set of signatures is a
//! [`EventKind::Changed`] event.

use crate::config::Exception;
use aupwatch_proto::{
    Event, EventKind, Exception as Excepted, Finding, LifecycleState as State, Subject, Tracked,
    SCHEMA_VERSION,
};
use std::collections::{BTreeMap, VecDeque};

/// Resolved findings remembered for status.
pub const RECENTLY_RESOLVED: usize = 50;

#[derive(Debug, Clone, Default)]
pub struct Tracker {
    host: String,
    active: BTreeMap<String, Tracked>,
    resolved: VecDeque<Tracked>,
}

/// The identity of a finding: host, category and subject — the process's start identity
/// (pid and start time), the interface, or the host. Not the signatures: the same offender
/// keeps its identity whichever of its category's signatures match it.
pub fn identity(host: &str, f: &Finding) -> String {
    use sha2::{Digest, Sha256};
    let subject = match &f.subject {
        Subject::Process(p) => format!("process:{}:{}", p.pid, p.start_ticks),
        Subject::Interface(i) => format!("interface:{}:{}", i.netns, i.name),
        Subject::Host => "host".to_string(),
    };
    let digest = Sha256::digest(format!("{host}\0{}\0{subject}", f.category).as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What a `Changed` event is about: the severity and the signatures that matched.
fn shape(f: &Finding) -> (aupwatch_proto::Severity, Vec<&str>) {
    (f.severity, f.signatures().collect())
}

impl Tracker {
    pub fn new(host: &str) -> Tracker {
        Tracker {
            host: host.to_string(),
            ..Tracker::default()
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host is now called `host`: every active finding is resolved (the returned
    /// `Resolved` events still name the old host), so the next [`Tracker::update`] finds
    /// them again, as new, under identities that name the new host. Recently resolved
    /// findings are kept.
    pub fn rehost(&mut self, host: &str, now_unix_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        let mut gone: Vec<Tracked> = std::mem::take(&mut self.active).into_values().collect();
        gone.sort_by(|a, b| a.id.cmp(&b.id));
        for mut t in gone {
            t.state = State::Resolved;
            events.push(self.event(EventKind::Resolved, now_unix_ms, &t));
            self.resolved.push_back(t);
            while self.resolved.len() > RECENTLY_RESOLVED {
                self.resolved.pop_front();
            }
        }
        self.host = host.to_string();
        events
    }

    /// Active findings, oldest first.
    pub fn active(&self) -> Vec<&Tracked> {
        let mut v: Vec<&Tracked> = self.active.values().collect();
        v.sort_by(|a, b| {
            a.first_seen_unix_ms
                .cmp(&b.first_seen_unix_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }

    /// Recently resolved findings, newest first.
    pub fn recently_resolved(&self) -> impl Iterator<Item = &Tracked> {
        self.resolved.iter().rev()
    }

    /// Takes one scan's verdicts; returns the lifecycle events, in a stable order: the
    /// resolved (by id), then per active finding (oldest first) `New`, or `Changed` when
    /// its severity or signatures changed and `ExceptionChanged` when an exception started
    /// or stopped applying (both, in that order, when both happened).
    pub fn update(
        &mut self,
        findings: Vec<Finding>,
        exceptions: &[Exception],
        now_unix_ms: u64,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut seen = BTreeMap::new();
        let mut changed = std::collections::BTreeSet::new();
        for f in findings {
            let id = identity(&self.host, &f);
            let tracked = match self.active.remove(&id) {
                Some(mut t) => {
                    if shape(&t.finding) != shape(&f) {
                        changed.insert(id.clone());
                    }
                    t.state = State::Ongoing;
                    t.last_seen_unix_ms = now_unix_ms;
                    t.scans += 1;
                    t.finding = f;
                    t
                }
                None => Tracked {
                    id: id.clone(),
                    state: State::New,
                    first_seen_unix_ms: now_unix_ms,
                    last_seen_unix_ms: now_unix_ms,
                    scans: 1,
                    excepted: None,
                    finding: f,
                },
            };
            // Two verdicts of one identity cannot come from one roll-up; should they, the
            // later one wins rather than both being tracked under one id.
            seen.insert(id, tracked);
        }
        for (_, mut gone) in std::mem::take(&mut self.active) {
            gone.state = State::Resolved;
            events.push(self.event(EventKind::Resolved, now_unix_ms, &gone));
            self.resolved.push_back(gone);
            while self.resolved.len() > RECENTLY_RESOLVED {
                self.resolved.pop_front();
            }
        }
        self.active = seen;
        let previous: BTreeMap<String, Option<Excepted>> = self
            .active
            .iter()
            .map(|(id, t)| (id.clone(), t.excepted.clone()))
            .collect();
        self.apply_exceptions(exceptions, now_unix_ms);
        let mut news = Vec::new();
        for t in self.active() {
            if t.state == State::New {
                news.push(self.event(EventKind::New, now_unix_ms, t));
                continue;
            }
            if changed.contains(&t.id) {
                news.push(self.event(EventKind::Changed, now_unix_ms, t));
            }
            if previous.get(&t.id).is_some_and(|p| *p != t.excepted) {
                news.push(self.event(EventKind::ExceptionChanged, now_unix_ms, t));
            }
        }
        events.extend(news);
        events
    }

    /// Marks active findings excepted, oldest first so `max_count` keeps the earliest.
    fn apply_exceptions(&mut self, exceptions: &[Exception], now_unix_ms: u64) {
        let order: Vec<String> = self.active().iter().map(|t| t.id.clone()).collect();
        let mut used = vec![0u32; exceptions.len()];
        for id in order {
            let Some(t) = self.active.get_mut(&id) else {
                continue;
            };
            t.excepted = None;
            for (i, ex) in exceptions.iter().enumerate() {
                if ex.expires_unix_ms.is_some_and(|e| now_unix_ms >= e) || !covers(ex, &t.finding) {
                    continue;
                }
                if ex.max_count.is_some_and(|m| used[i] >= m) {
                    continue;
                }
                used[i] += 1;
                t.excepted = Some(Excepted {
                    reason: ex.reason.clone(),
                    ticket: ex.ticket.clone(),
                    expires: ex.expires_text.clone(),
                    source: ex.source.clone(),
                });
                break;
            }
        }
    }

    fn event(&self, kind: EventKind, at: u64, t: &Tracked) -> Event {
        Event {
            schema_version: SCHEMA_VERSION,
            kind,
            at_unix_ms: at,
            host: self.host.clone(),
            tracked: t.clone(),
        }
    }
}

/// Whether an exception's scope covers a verdict (expiry and max_count aside): when it
/// covers any one of the verdict's matches as it would cover that signature's finding on
/// its own — the signature patterns name the match's signature, `user` and `process` the
/// verdict's process, `port` one of that match's sockets. One covered match excepts the
/// whole verdict (and counts once towards `max_count`).
fn covers(ex: &Exception, f: &Finding) -> bool {
    let p = f.process();
    if let Some(user) = &ex.user {
        let ok = p.is_some_and(|p| {
            p.user.as_deref() == Some(user.as_str()) || p.uid.to_string() == *user
        });
        if !ok {
            return false;
        }
    }
    if let Some(m) = &ex.process {
        let ok = p.is_some_and(|p| {
            m.is_match(&p.comm)
                || p.exe
                    .as_deref()
                    .and_then(|e| e.rsplit('/').next())
                    .is_some_and(|b| m.is_match(b))
        });
        if !ok {
            return false;
        }
    }
    f.matches.iter().any(|m| {
        ex.signatures.is_match(&m.signature)
            && ex.port.is_none_or(|port| {
                m.sockets
                    .iter()
                    .any(|s| s.local.port() == port || s.remote.is_some_and(|r| r.port() == port))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::detect::verdict::{roll_up, tests::on_process};
    use crate::detect::SocketRef;
    use crate::inventory::{Protocol, SocketState};
    use crate::signatures::{Category, Severity};

    /// One per-signature detection finding on process `pid` (started at `start`).
    fn detected(
        sig: &str,
        pid: i32,
        start: u64,
        user: &str,
        remote_port: Option<u16>,
    ) -> crate::detect::Finding {
        let mut f = on_process(sig, Category::Irc, Severity::Low, pid, start);
        if let Some(p) = f.process.as_mut() {
            p.user = Some(user.into());
        }
        f.sockets = remote_port
            .map(|p| SocketRef {
                protocol: Protocol::Tcp,
                local: "127.0.0.1:40000".parse().expect("addr"),
                remote: Some(format!("127.0.0.1:{p}").parse().expect("addr")),
                state: SocketState::Established,
                netns: 1,
                inode: 7,
            })
            .into_iter()
            .collect();
        f
    }

    /// The verdict of one signature on one process.
    fn finding(sig: &str, pid: i32, start: u64, user: &str, remote_port: Option<u16>) -> Finding {
        let mut v = roll_up(vec![detected(sig, pid, start, user, remote_port)]);
        v.pop().expect("one verdict")
    }

    fn exceptions(text: &str) -> Vec<Exception> {
        config::parse("agent.toml", text)
            .expect("valid config")
            .exceptions
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, i32)> {
        events
            .iter()
            .map(|e| (e.kind, e.tracked.finding.process().map_or(0, |p| p.pid)))
            .collect()
    }

    #[test]
    fn lifecycle_new_ongoing_resolved() {
        let mut t = Tracker::new("h");
        let e = t.update(vec![finding("irc.a", 10, 5, "u", None)], &[], 1000);
        assert_eq!(kinds(&e), vec![(EventKind::New, 10)]);
        assert_eq!(e[0].schema_version, SCHEMA_VERSION);
        let id = t.active()[0].id.clone();
        let e = t.update(vec![finding("irc.a", 10, 5, "u", None)], &[], 2000);
        assert!(e.is_empty(), "ongoing is not an event: {e:?}");
        let a = t.active();
        assert_eq!(
            (
                a[0].id.as_str(),
                a[0].state,
                a[0].scans,
                a[0].first_seen_unix_ms,
                a[0].last_seen_unix_ms
            ),
            (id.as_str(), State::Ongoing, 2, 1000, 2000)
        );
        // same pid, new process (pid reuse): the old one resolved, a new one appears
        let e = t.update(vec![finding("irc.a", 10, 6, "u", None)], &[], 3000);
        assert_eq!(
            kinds(&e),
            vec![(EventKind::Resolved, 10), (EventKind::New, 10)]
        );
        let e = t.update(vec![], &[], 4000);
        assert_eq!(kinds(&e), vec![(EventKind::Resolved, 10)]);
        assert!(t.active().is_empty());
        assert_eq!(t.recently_resolved().count(), 2);
        assert_eq!(
            t.recently_resolved().next().map(|r| r.state),
            Some(State::Resolved)
        );
    }

    #[test]
    fn a_new_host_name_resolves_every_finding_and_finds_it_again() {
        let mut t = Tracker::new("old");
        t.update(
            vec![
                finding("irc.a", 10, 5, "u", None),
                finding("irc.a", 11, 5, "u", None),
            ],
            &[],
            1000,
        );
        let old_ids: Vec<String> = t.active().iter().map(|x| x.id.clone()).collect();
        let e = t.rehost("new", 2000);
        let mut got = kinds(&e);
        got.sort_by_key(|k| k.1);
        assert_eq!(
            got,
            vec![(EventKind::Resolved, 10), (EventKind::Resolved, 11)],
            "(in id order)"
        );
        assert!(e.iter().all(|e| e.host == "old" && e.at_unix_ms == 2000));
        assert!(t.active().is_empty());
        assert_eq!(t.host(), "new");
        assert_eq!(t.recently_resolved().count(), 2);
        let e = t.update(vec![finding("irc.a", 10, 5, "u", None)], &[], 3000);
        assert_eq!(kinds(&e), vec![(EventKind::New, 10)]);
        assert_eq!(e[0].host, "new");
        assert!(
            !old_ids.contains(&e[0].tracked.id),
            "the identity names the new host"
        );
    }

    #[test]
    fn identity_is_host_category_and_subject_not_signature() {
        let a = finding("irc.a", 10, 5, "u", None);
        assert_eq!(identity("h", &a), identity("h", &a));
        assert_ne!(identity("h", &a), identity("h2", &a));
        // another signature of the same category on the same process: the same offender
        assert_eq!(
            identity("h", &a),
            identity("h", &finding("irc.b", 10, 5, "u", None))
        );
        assert_ne!(
            identity("h", &a),
            identity("h", &finding("irc.a", 10, 6, "u", None))
        );
        let mut tor = a.clone();
        tor.category = Category::Tor;
        assert_ne!(identity("h", &a), identity("h", &tor));
    }

    #[test]
    fn a_miner_whose_cpu_evidence_joins_later_is_one_finding_raised() {
        let mut t = Tracker::new("h");
        let sig = |id: &str, sev, predicates: &[&str]| {
            let mut f = on_process(id, Category::Mining, sev, 10, 5);
            f.evidence = predicates
                .iter()
                .map(|p| crate::detect::Evidence {
                    predicate: (*p).into(),
                    value: "v".into(),
                })
                .collect();
            f
        };
        // Strings and a pool connection: two kinds, high.
        let first = vec![
            sig("mining.exe-strings", Severity::High, &["exe_strings"]),
            sig("mining.pool-port", Severity::Low, &["remote"]),
        ];
        let e = t.update(roll_up(first.clone()), &[], 1000);
        assert_eq!(kinds(&e), vec![(EventKind::New, 10)]);
        let id = t.active()[0].id.clone();
        assert_eq!(t.active()[0].finding.severity, Severity::High);
        // The CPU window fills: a third kind joins, the same finding is raised to critical.
        let mut later = first;
        later.push(sig(
            "mining.pool-port-busy",
            Severity::Medium,
            &["remote", "cpu"],
        ));
        let e = t.update(roll_up(later), &[], 2000);
        assert_eq!(kinds(&e), vec![(EventKind::Changed, 10)]);
        let tracked = &e[0].tracked;
        assert_eq!(tracked.id, id);
        assert_eq!(tracked.finding.severity, Severity::Critical);
        assert!(
            tracked
                .finding
                .raised
                .as_deref()
                .is_some_and(|r| r.starts_with("raised from high: 3 independent kinds")),
            "{tracked:?}"
        );
        assert_eq!(t.active().len(), 1);
    }

    #[test]
    fn signatures_joining_and_leaving_keep_one_finding_and_are_changes() {
        let mut t = Tracker::new("h");
        let scan = |sigs: &[(&str, Severity)]| {
            roll_up(
                sigs.iter()
                    .map(|(s, sev)| on_process(s, Category::Irc, *sev, 10, 5))
                    .collect(),
            )
        };
        let e = t.update(scan(&[("irc.a", Severity::Low)]), &[], 1000);
        assert_eq!(kinds(&e), vec![(EventKind::New, 10)]);
        let id = t.active()[0].id.clone();
        // a second signature joins, and raises the severity
        let e = t.update(
            scan(&[("irc.a", Severity::Low), ("irc.b", Severity::High)]),
            &[],
            2000,
        );
        assert_eq!(kinds(&e), vec![(EventKind::Changed, 10)]);
        let tracked = &e[0].tracked;
        assert_eq!(
            (
                tracked.id.as_str(),
                tracked.state,
                tracked.finding.severity,
                tracked.finding.signatures().collect::<Vec<_>>()
            ),
            (
                id.as_str(),
                State::Ongoing,
                Severity::High,
                vec!["irc.b", "irc.a"]
            )
        );
        // the same again: no event
        let e = t.update(
            scan(&[("irc.b", Severity::High), ("irc.a", Severity::Low)]),
            &[],
            3000,
        );
        assert!(e.is_empty(), "{e:?}");
        // the first leaves: still the one finding, changed
        let e = t.update(scan(&[("irc.b", Severity::High)]), &[], 4000);
        assert_eq!(kinds(&e), vec![(EventKind::Changed, 10)]);
        assert_eq!(t.active().len(), 1);
        assert_eq!(
            (t.active()[0].id.as_str(), t.active()[0].first_seen_unix_ms),
            (id.as_str(), 1000)
        );
        // evidence alone changing is not a change
        let mut other = scan(&[("irc.b", Severity::High)]);
        other[0].matches[0].evidence.clear();
        assert!(t.update(other, &[], 5000).is_empty());
    }

    #[test]
    fn an_exception_covers_a_verdict_when_it_covers_any_of_its_matches() {
        let ex = exceptions(
            "[[exception]]\nsignatures = [\"irc.client*\"]\nport = 6697\nreason = \"personal IRC\"\n",
        );
        let mut t = Tracker::new("h");
        let v = roll_up(vec![
            detected("irc.client-connection", 10, 1, "alice", Some(6697)),
            detected("irc.bot", 10, 1, "alice", None),
        ]);
        t.update(v, &ex, 1000);
        assert!(t.active()[0].excepted.is_some());
        // the port belongs to another signature's match: not covered
        let v = roll_up(vec![
            detected("irc.client-connection", 11, 1, "alice", None),
            detected("irc.bot", 11, 1, "alice", Some(6697)),
        ]);
        let e = t.update(v, &ex, 2000);
        assert_eq!(
            kinds(&e),
            vec![(EventKind::Resolved, 10), (EventKind::New, 11)]
        );
        assert!(t.active()[0].excepted.is_none());
    }

    #[test]
    fn exceptions_scope_count_and_expiry() {
        let ex = exceptions(
            "[[exception]]\nsignatures = [\"irc.client*\"]\nuser = \"alice\"\nport = 6697\nmax_count = 1\nreason = \"personal IRC\"\nticket = \"T-1\"\nexpires = 2027-01-01\n",
        );
        let before_expiry = 1_790_000_000_000;
        let mut t = Tracker::new("h");
        let e = t.update(
            vec![
                finding("irc.client-connection", 10, 1, "alice", Some(6697)),
                finding("irc.client-connection", 11, 1, "bob", Some(6697)),
                finding("irc.client-connection", 12, 1, "alice", Some(6667)),
                finding("irc.server", 13, 1, "alice", Some(6697)),
            ],
            &ex,
            before_expiry,
        );
        assert_eq!(e.len(), 4, "excepted findings are still new events");
        let excepted: Vec<(i32, bool)> = t
            .active()
            .iter()
            .map(|t| {
                (
                    t.finding.process().map_or(0, |p| p.pid),
                    t.excepted.is_some(),
                )
            })
            .collect();
        assert_eq!(
            excepted
                .iter()
                .filter(|(_, x)| *x)
                .map(|(p, _)| *p)
                .collect::<Vec<_>>(),
            vec![10]
        );
        // a second personal connection exceeds max_count = 1
        t.update(
            vec![
                finding("irc.client-connection", 10, 1, "alice", Some(6697)),
                finding("irc.client-connection", 14, 1, "alice", Some(6697)),
            ],
            &ex,
            before_expiry + 1,
        );
        let by_pid = |t: &Tracker, pid: i32| {
            t.active()
                .iter()
                .find(|x| x.finding.process().is_some_and(|p| p.pid == pid))
                .map(|x| x.excepted.is_some())
        };
        assert_eq!((by_pid(&t, 10), by_pid(&t, 14)), (Some(true), Some(false)));
        // after expiry nothing is excepted, and that is an event
        let e = t.update(
            vec![finding("irc.client-connection", 10, 1, "alice", Some(6697))],
            &ex,
            1_900_000_000_000,
        );
        assert_eq!(
            kinds(&e),
            vec![(EventKind::Resolved, 14), (EventKind::ExceptionChanged, 10)]
        );
        assert_eq!(by_pid(&t, 10), Some(false));
    }
}
