//! Tracker: gives findings a lifecycle (new → ongoing → resolved) under a stable identity,
//! and applies exceptions. An excepted finding stays tracked and visible, marked excepted.
//! Pure: time arrives as an argument; no I/O.

use crate::config::Exception;
use crate::detect::Finding;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Resolved findings remembered for status.
pub const RECENTLY_RESOLVED: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    New,
    Ongoing,
    Resolved,
}

/// Why a finding is excepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excepted {
    pub reason: String,
    pub ticket: Option<String>,
    pub expires: Option<String>,
    /// `file:line` of the exception.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracked {
    /// Stable identity: the same offender keeps it across scans and restarts.
    pub id: String,
    pub state: State,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
    /// Scans it was seen in.
    pub scans: u64,
    pub excepted: Option<Excepted>,
    pub finding: Finding,
}

/// A lifecycle change worth telling the outside.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub kind: EventKind,
    pub at_unix_ms: u64,
    pub host: String,
    pub tracked: Tracked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// First seen.
    New,
    /// Gone (the process exited, the listener closed, the signature no longer matches).
    Resolved,
    /// An exception started or stopped applying (added, expired, max_count reached).
    ExceptionChanged,
}

#[derive(Debug, Clone, Default)]
pub struct Tracker {
    host: String,
    active: BTreeMap<String, Tracked>,
    resolved: VecDeque<Tracked>,
}

/// The identity of a finding: host, signature and the process's start identity (pid and
/// start time), or the interface.
pub fn identity(host: &str, f: &Finding) -> String {
    use sha2::{Digest, Sha256};
    let subject = match (&f.process, &f.interface) {
        (Some(p), _) => format!("process:{}:{}", p.pid, p.start_ticks),
        (None, Some(i)) => format!("interface:{}:{}", i.netns, i.name),
        (None, None) => "host".to_string(),
    };
    let digest = Sha256::digest(format!("{host}\0{}\0{subject}", f.signature).as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
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

    /// Takes one scan's findings; returns the lifecycle events, in a stable order.
    pub fn update(
        &mut self,
        findings: Vec<Finding>,
        exceptions: &[Exception],
        now_unix_ms: u64,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut seen = BTreeMap::new();
        for f in findings {
            let id = identity(&self.host, &f);
            let tracked = match self.active.remove(&id) {
                Some(mut t) => {
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
            } else if previous.get(&t.id).is_some_and(|p| *p != t.excepted) {
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
            kind,
            at_unix_ms: at,
            host: self.host.clone(),
            tracked: t.clone(),
        }
    }
}

/// Whether an exception's scope covers a finding (expiry and max_count aside).
fn covers(ex: &Exception, f: &Finding) -> bool {
    if !ex.signatures.is_match(&f.signature) {
        return false;
    }
    let p = f.process.as_ref();
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
    if let Some(port) = ex.port {
        let ok = f
            .sockets
            .iter()
            .any(|s| s.local.port() == port || s.remote.is_some_and(|r| r.port() == port));
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::detect::{ProcessRef, SocketRef};
    use crate::inventory::{Protocol, SocketState};
    use crate::signatures::{Category, Severity};

    fn finding(sig: &str, pid: i32, start: u64, user: &str, remote_port: Option<u16>) -> Finding {
        Finding {
            signature: sig.into(),
            category: Category::Irc,
            severity: Severity::Low,
            description: "d".into(),
            aup: "a".into(),
            process: Some(ProcessRef {
                pid,
                ppid: 1,
                start_ticks: start,
                uid: 1000,
                user: Some(user.into()),
                comm: "irssi".into(),
                exe: Some("/usr/bin/irssi".into()),
                exe_deleted: false,
                cmdline: vec!["irssi".into()],
                netns: 1,
                container: None,
            }),
            interface: None,
            host: false,
            related_pids: vec![],
            sockets: remote_port
                .map(|p| SocketRef {
                    protocol: Protocol::Tcp,
                    local: "127.0.0.1:40000".parse().expect("addr"),
                    remote: Some(format!("127.0.0.1:{p}").parse().expect("addr")),
                    state: SocketState::Established,
                    netns: 1,
                    inode: 7,
                })
                .into_iter()
                .collect(),
            evidence: vec![],
            probe: None,
        }
    }

    fn exceptions(text: &str) -> Vec<Exception> {
        config::parse("agent.toml", text)
            .expect("valid config")
            .exceptions
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, i32)> {
        events
            .iter()
            .map(|e| {
                (
                    e.kind,
                    e.tracked.finding.process.as_ref().map_or(0, |p| p.pid),
                )
            })
            .collect()
    }

    #[test]
    fn lifecycle_new_ongoing_resolved() {
        let mut t = Tracker::new("h");
        let e = t.update(vec![finding("irc.a", 10, 5, "u", None)], &[], 1000);
        assert_eq!(kinds(&e), vec![(EventKind::New, 10)]);
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
    fn identity_is_stable_and_distinct() {
        let a = finding("irc.a", 10, 5, "u", None);
        assert_eq!(identity("h", &a), identity("h", &a));
        assert_ne!(identity("h", &a), identity("h2", &a));
        assert_ne!(
            identity("h", &a),
            identity("h", &finding("irc.b", 10, 5, "u", None))
        );
        assert_ne!(
            identity("h", &a),
            identity("h", &finding("irc.a", 10, 6, "u", None))
        );
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
                    t.finding.process.as_ref().map_or(0, |p| p.pid),
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
                .find(|x| x.finding.process.as_ref().is_some_and(|p| p.pid == pid))
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
