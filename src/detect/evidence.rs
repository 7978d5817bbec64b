//! Evidence: what a process predicate saw, put in words. The yes/no tests (`process.rs`)
//! return a [`Seen`], which holds only what they looked at (references, counts, windows);
//! [`describe`] formats it, and only for predicates that matched (or for `--explain`):
//! formatting for every miss was most of a scan.

use super::history::{ConnKey, CpuWindow};
use super::Ctx;
use crate::inventory::{Process, Socket};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// At most this many sockets are spelled out in one piece of evidence.
const SHOWN_SOCKETS: usize = 5;
/// Command lines are cut to this many characters in evidence.
const SHOWN_CMDLINE: usize = 200;

/// What a process predicate saw, unformatted.
pub(super) enum Seen<'a> {
    /// Fixed words ("no executable", …).
    Words(&'static str),
    /// The process's comm, executable basename and argv[0] basename (a `name` that did not
    /// match; `comm_mismatch`).
    Names(&'a Process),
    /// The name that matched a `name`: which name and its value.
    Name {
        what: &'static str,
        value: &'a str,
    },
    /// The executable path (`exe`), and whether it was deleted.
    Exe(&'a Process, &'a str),
    /// The command line, and the part a `cmdline` regex found in it.
    Cmdline {
        found: Option<&'a str>,
        line: &'a str,
    },
    Sha256(&'a str),
    User(&'a Process),
    /// The listening sockets a `listen` found.
    Listening(Vec<(usize, &'a Socket)>),
    /// A `listen` found none: what the process listens on instead.
    NotListening(&'a Process),
    /// The connected sockets a `remote` (without `for`) counted.
    Connections {
        found: Vec<(usize, &'a Socket)>,
        min_age_secs: u64,
    },
    /// The distinct connections a `remote` with `for` counted from history.
    Window {
        seen: Vec<ConnKey>,
        for_secs: u64,
    },
    /// What a `peers` counted, now (`for_secs` 0) or over a window of history.
    Peers {
        peers: PeerSet,
        for_secs: u64,
    },
    Cpu(CpuSeen),
    Policy(&'static str),
    Threads(i64),
    Nice(i64),
    /// The executable path (`exe_deleted`): a memfd, deleted, or there.
    ExeState(&'a Process, &'a str),
    /// The `exe_strings` found in the executable.
    ExeStrings(Vec<&'a str>),
    /// The multicast sockets found.
    Multicast(Vec<(usize, &'a Socket)>),
}

/// The distinct remote addresses, or ports, a `peers` predicate counted.
pub(super) enum PeerSet {
    Addresses(BTreeSet<IpAddr>),
    Ports(BTreeSet<u16>),
}

impl PeerSet {
    pub(super) fn len(&self) -> usize {
        match self {
            PeerSet::Addresses(set) => set.len(),
            PeerSet::Ports(set) => set.len(),
        }
    }
}

/// What a `cpu` predicate saw.
pub(super) enum CpuSeen {
    /// History covering the window.
    Window(CpuWindow),
    /// Steadiness asked for, but history does not cover `for_secs`.
    Unsteady { for_secs: u64, covered_secs: f64 },
    /// The average since the process started, `age` seconds ago, and the recent samples.
    Lifetime {
        lifetime: f64,
        age: f64,
        window: Option<CpuWindow>,
    },
}

/// `seen` in words: the value of a piece of evidence, or of a trial for `--explain`.
pub(super) fn describe(ctx: &Ctx, seen: &Seen) -> String {
    match seen {
        Seen::Words(words) => (*words).into(),
        Seen::Names(p) => format!(
            "comm {:?}, exe {:?}, argv[0] {:?}",
            p.comm,
            p.exe_basename().unwrap_or(""),
            p.argv0_basename().unwrap_or("")
        ),
        Seen::Name { what, value } => format!("{what} {value:?}"),
        Seen::Exe(p, exe) => format!("{exe:?}{}", if p.exe_deleted { " (deleted)" } else { "" }),
        Seen::Cmdline {
            found: Some(m),
            line,
        } => format!("{m:?} in {:?}", cut(line, SHOWN_CMDLINE)),
        Seen::Cmdline { found: None, line } => format!("{:?}", cut(line, SHOWN_CMDLINE)),
        Seen::Sha256(h) => (*h).to_string(),
        Seen::User(p) => format!("{} (uid {})", p.user.as_deref().unwrap_or("?"), p.uid),
        Seen::Listening(found) => list_sockets(found, false),
        Seen::NotListening(p) => listening_summary(ctx, p),
        Seen::Connections {
            found,
            min_age_secs,
        } => {
            let n = found.len();
            let age = if *min_age_secs > 0 {
                format!(" open for at least {}", human_secs(*min_age_secs as f64))
            } else {
                String::new()
            };
            if n == 0 {
                format!("no connection to those ports{age}")
            } else {
                format!("{n} connection(s){age}: {}", list_sockets(found, true))
            }
        }
        Seen::Window { seen, for_secs } => {
            let n = seen.len();
            let shown: Vec<String> = seen
                .iter()
                .take(SHOWN_SOCKETS)
                .map(|k| format!("{} {} -> {}", k.protocol, k.local, k.remote))
                .collect();
            let more = if n > SHOWN_SOCKETS {
                format!(", +{} more", n - SHOWN_SOCKETS)
            } else {
                String::new()
            };
            format!(
                "{n} distinct connection(s) seen over the last {} [{}{more}]",
                human_secs(*for_secs as f64),
                shown.join(", ")
            )
        }
        Seen::Peers { peers, for_secs } => {
            let n = peers.len();
            let (shown, what): (Vec<String>, &str) = match peers {
                PeerSet::Addresses(set) => (
                    set.iter()
                        .take(SHOWN_SOCKETS)
                        .map(ToString::to_string)
                        .collect(),
                    "peer(s)",
                ),
                PeerSet::Ports(set) => (
                    set.iter()
                        .take(SHOWN_SOCKETS)
                        .map(ToString::to_string)
                        .collect(),
                    "remote port(s)",
                ),
            };
            let over = if *for_secs == 0 {
                String::new()
            } else {
                format!(" over the last {}", human_secs(*for_secs as f64))
            };
            let more = if n > SHOWN_SOCKETS {
                format!(", +{} more", n - SHOWN_SOCKETS)
            } else {
                String::new()
            };
            format!("{n} distinct {what}{over} [{}{more}]", shown.join(", "))
        }
        Seen::Cpu(cpu) => describe_cpu(cpu),
        Seen::Policy(name) => format!("scheduling policy {name}"),
        Seen::Threads(n) => format!("{n} threads"),
        Seen::Nice(n) => format!("nice {n}"),
        Seen::ExeState(p, exe) => {
            if exe.starts_with("/memfd:") {
                format!("runs from a memfd {exe:?}")
            } else if p.exe_deleted {
                format!("executable {exe:?} was deleted")
            } else {
                format!("executable {exe:?} exists")
            }
        }
        Seen::ExeStrings(found) => {
            if found.is_empty() {
                "none of the strings in the executable".into()
            } else {
                format!("executable contains {}", quoted(found))
            }
        }
        Seen::Multicast(found) => format!("multicast socket(s): {}", list_sockets(found, true)),
    }
}

fn describe_cpu(cpu: &CpuSeen) -> String {
    match cpu {
        CpuSeen::Window(w) => {
            let var = match w.variation {
                Some(v) => format!(", variation {v:.2}"),
                None => String::new(),
            };
            format!(
                "at least {:.0}% (mean {:.0}%{var}) of a core over the last {} ({} samples)",
                w.min_percent,
                w.mean_percent,
                human_secs(w.covered_secs),
                w.intervals + 1
            )
        }
        CpuSeen::Unsteady {
            for_secs,
            covered_secs,
        } => format!(
            "steadiness needs samples over {}; history covers {}",
            human_secs(*for_secs as f64),
            human_secs(*covered_secs)
        ),
        CpuSeen::Lifetime {
            lifetime,
            age,
            window,
        } => {
            let recent = match window {
                Some(w) => format!(
                    "; {:.0}% over the last {}",
                    w.min_percent,
                    human_secs(w.covered_secs)
                ),
                None => String::new(),
            };
            format!(
                "{lifetime:.0}% of a core on average since start {} ago{recent}",
                human_secs(age.max(0.0))
            )
        }
    }
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_sockets(found: &[(usize, &Socket)], remote: bool) -> String {
    let mut parts: Vec<String> = found
        .iter()
        .take(SHOWN_SOCKETS)
        .map(|(_, s)| match (remote, s.remote) {
            (true, Some(r)) => format!("{} {} -> {r}", s.protocol, s.local),
            _ => format!("{} {}", s.protocol, s.local),
        })
        .collect();
    if found.len() > SHOWN_SOCKETS {
        parts.push(format!("+{} more", found.len() - SHOWN_SOCKETS));
    }
    parts.join(", ")
}

fn listening_summary(ctx: &Ctx, p: &Process) -> String {
    let found: Vec<(usize, &Socket)> = ctx
        .sockets(p.pid)
        .filter(|(_, s)| s.is_listening())
        .collect();
    if found.is_empty() {
        "not listening".into()
    } else {
        format!("listens on {}", list_sockets(&found, false))
    }
}

pub(super) fn human_secs(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}
