//! Process signatures: the yes/no test of every process predicate ([`test`]; the words for
//! what it saw are `evidence.rs`), and the findings, each process folded into its topmost
//! ancestor that matched the same signature.

use super::evidence::{self, CpuSeen, PeerSet, Seen};
use super::history::ConnKey;
use super::{combine, host, Ctx, Evidence, Finding, Hit, SocketRef, Trial};
use crate::inventory::{Process, Socket};
use crate::signatures::{
    BindFilter, ConnFilter, GlobList, Match, PeerCount, Predicate, Signature, SocketFilter,
};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

pub(super) fn process_findings(ctx: &Ctx, si: usize, sig: &Signature) -> Vec<Finding> {
    let mut hits: Vec<(usize, Hit)> = Vec::new();
    for (i, p) in ctx.snap.processes.iter().enumerate() {
        if p.kernel_thread || ctx.per[i].possible.as_ref().is_some_and(|b| !b.get(si)) {
            continue;
        }
        if let Some(hit) = eval(ctx, i, &sig.matcher, &mut None) {
            hits.push((i, hit));
        }
    }
    if hits.is_empty() {
        return Vec::new();
    }
    // Fold each process into its topmost ancestor that matched the same signature and runs
    // the same program in the same network namespace (a daemon's workers). A different
    // program below it (a miner started from a matching shell, or anything below a parent
    // whose executable is also deleted) keeps a finding of its own.
    let matched: HashMap<i32, usize> = hits
        .iter()
        .enumerate()
        .map(|(h, (i, _))| (ctx.snap.processes[*i].pid, h))
        .collect();
    let index_of: HashMap<i32, usize> = ctx
        .snap
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.pid, i))
        .collect();
    let mut top: Vec<usize> = (0..hits.len()).collect();
    for (h, (i, _)) in hits.iter().enumerate() {
        let mut cur = &ctx.snap.processes[*i];
        for _ in 0..4096 {
            let Some(&pi) = index_of.get(&cur.ppid) else {
                break;
            };
            if cur.ppid == cur.pid {
                break;
            }
            cur = &ctx.snap.processes[pi];
            let me = &ctx.snap.processes[*i];
            if let Some(&ah) = matched.get(&cur.pid) {
                if cur.exe == me.exe && cur.exe_deleted == me.exe_deleted && cur.netns == me.netns {
                    top[h] = ah;
                }
            }
        }
    }
    let mut grouped: Vec<(usize, Hit, Vec<i32>)> = Vec::new();
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for (h, (i, hit)) in hits.into_iter().enumerate() {
        let t = top[h];
        let g = *slot.entry(t).or_insert_with(|| {
            grouped.push((usize::MAX, Hit::default(), Vec::new()));
            grouped.len() - 1
        });
        if t == h {
            grouped[g].0 = i;
        } else {
            grouped[g].2.push(ctx.snap.processes[i].pid);
        }
        grouped[g].1.absorb(hit);
    }
    grouped
        .into_iter()
        .filter(|(i, _, _)| *i != usize::MAX)
        .map(|(i, hit, mut related)| {
            related.sort_unstable();
            let p = &ctx.snap.processes[i];
            let sockets: BTreeSet<SocketRef> = hit
                .sockets
                .iter()
                .map(|&s| super::socket_ref(&ctx.snap.sockets[s]))
                .collect();
            let mut evidence: BTreeSet<Evidence> = hit.evidence.into_iter().collect();
            evidence.extend(host::hidden_evidence(ctx.snap, p.pid));
            Finding {
                process: Some(super::process_ref(p)),
                related_pids: related,
                sockets: sockets.into_iter().collect(),
                ..Finding::of(sig, evidence.into_iter().collect())
            }
        })
        .collect()
}

/// Evaluates `m` on process `pi`; `Some` with evidence when it matches. With `trace`,
/// records every predicate tried (and tries them all, for `--explain`).
pub(super) fn eval(
    ctx: &Ctx,
    pi: usize,
    m: &Match,
    trace: &mut Option<&mut Vec<Trial>>,
) -> Option<Hit> {
    combine(m, trace, &mut |pred, detail| {
        try_predicate(ctx, pi, pred, detail)
    })
}

/// What the yes/no test of a process predicate found: whether it held, the sockets it stands
/// on (indices in the snapshot), and what it saw, in words only when needed
/// ([`evidence::describe`]).
struct Outcome<'a> {
    matched: bool,
    sockets: Vec<usize>,
    seen: Seen<'a>,
}

impl<'a> Outcome<'a> {
    fn of(matched: bool, seen: Seen<'a>) -> Outcome<'a> {
        Outcome {
            matched,
            sockets: Vec::new(),
            seen,
        }
    }

    fn on(matched: bool, found: &[(usize, &Socket)], seen: Seen<'a>) -> Outcome<'a> {
        Outcome {
            matched,
            sockets: found.iter().map(|(i, _)| *i).collect(),
            seen,
        }
    }
}

/// Tries one predicate: the yes/no test ([`test`]), then the text of what it saw, built
/// only when it matched (evidence) or when `detail` asks for it (`--explain`).
fn try_predicate(ctx: &Ctx, pi: usize, pred: &Predicate, detail: bool) -> Trial {
    let Outcome {
        matched,
        sockets,
        seen,
    } = test(ctx, pi, pred);
    let seen = if matched || detail {
        evidence::describe(ctx, &seen)
    } else {
        String::new()
    };
    Trial {
        predicate: pred.key(),
        matched,
        seen,
        sockets,
    }
}

/// Whether `pred` holds for process `pi`, and what it saw (unformatted). Static predicates
/// are decided by [`Ctx::static_match`].
fn test<'c>(ctx: &'c Ctx, pi: usize, pred: &'c Predicate) -> Outcome<'c> {
    let p = &ctx.snap.processes[pi];
    match pred {
        Predicate::Name { globs, index } => match ctx.name_slot(pi, globs, *index) {
            Some(at) => {
                let value = match at {
                    0 => Some(p.comm.as_str()),
                    1 => p.exe_basename(),
                    _ => p.argv0_basename(),
                }
                .unwrap_or("");
                let what = ctx.names(pi)[at].0;
                Outcome::of(true, Seen::Name { what, value })
            }
            None => Outcome::of(false, Seen::Names(p)),
        },
        Predicate::Exe(_) => match p.exe.as_deref() {
            Some(exe) => Outcome::of(ctx.static_match(pi, pred), Seen::Exe(p, exe)),
            None => Outcome::of(false, Seen::Words("no executable")),
        },
        Predicate::Cmdline { re, .. } => {
            let line = ctx.cmdline(pi);
            let hit = ctx.static_match(pi, pred);
            let found = hit
                .then(|| re.regex().and_then(|r| r.find(line)))
                .flatten()
                .map(|m| m.as_str());
            Outcome::of(found.is_some(), Seen::Cmdline { found, line })
        }
        Predicate::Sha256(_) => match &p.exe_sha256 {
            Some(h) => Outcome::of(ctx.static_match(pi, pred), Seen::Sha256(h)),
            None => Outcome::of(false, Seen::Words("executable not hashed")),
        },
        Predicate::User(_) => Outcome::of(ctx.static_match(pi, pred), Seen::User(p)),
        Predicate::Listen(filter) => {
            let found: Vec<(usize, &Socket)> = ctx
                .sockets(p.pid)
                .filter(|(_, s)| s.is_listening() && fits_listen(filter, s))
                .collect();
            if found.is_empty() {
                Outcome::on(false, &found, Seen::NotListening(p))
            } else {
                Outcome::on(true, &found, Seen::Listening(found.clone()))
            }
        }
        Predicate::Remote {
            conn,
            min,
            for_secs,
            min_age_secs,
        } => remote(ctx, p, conn, *min, *for_secs, *min_age_secs),
        Predicate::Peers {
            min,
            count,
            conn,
            for_secs,
        } => peers(ctx, p, *min, *count, conn, *for_secs),
        Predicate::Cpu {
            min_percent,
            for_secs,
            max_variation,
        } => {
            let (matched, seen) = cpu(ctx, p, *min_percent, *for_secs, *max_variation);
            Outcome::of(matched, Seen::Cpu(seen))
        }
        Predicate::Policy(names) => {
            let name = p.sched_policy_name();
            Outcome::of(names.iter().any(|n| n == name), Seen::Policy(name))
        }
        Predicate::Threads { min } => {
            Outcome::of(p.threads >= i64::from(*min), Seen::Threads(p.threads))
        }
        Predicate::Nice { min } => Outcome::of(p.nice >= *min, Seen::Nice(p.nice)),
        Predicate::ExeDeleted(_) => match p.exe.as_deref() {
            Some(exe) => Outcome::of(ctx.static_match(pi, pred), Seen::ExeState(p, exe)),
            None => Outcome::of(false, Seen::Words("no executable")),
        },
        Predicate::ExeStrings { strings, .. } => {
            let found: Vec<&str> = strings
                .iter()
                .filter(|s| p.exe_strings.contains(s))
                .map(String::as_str)
                .collect();
            Outcome::of(ctx.static_match(pi, pred), Seen::ExeStrings(found))
        }
        Predicate::CommMismatch(_) => Outcome::of(ctx.static_match(pi, pred), Seen::Names(p)),
        Predicate::Multicast => {
            let found: Vec<(usize, &Socket)> = ctx
                .sockets(p.pid)
                .filter(|(_, s)| {
                    s.protocol == crate::inventory::Protocol::Udp
                        && (s.local.ip().is_multicast()
                            || s.remote.is_some_and(|r| r.ip().is_multicast()))
                })
                .collect();
            if found.is_empty() {
                Outcome::of(false, Seen::Words("no multicast socket"))
            } else {
                Outcome::on(true, &found, Seen::Multicast(found.clone()))
            }
        }
        Predicate::Interface(_)
        | Predicate::Traffic { .. }
        | Predicate::MulticastGroups { .. }
        | Predicate::Preload
        | Predicate::HiddenProcesses { .. }
        | Predicate::ProcMounts
        | Predicate::UnlistedTasks { .. }
        | Predicate::HugePages { .. }
        | Predicate::Msr { .. } => Outcome::of(false, Seen::Words("not a process predicate")),
    }
}

/// `remote`: at least `min` connections of `p` that fit `conn` (open for `min_age_secs`),
/// now, or with `for_secs`, distinct ones seen over that window of history.
fn remote<'c>(
    ctx: &'c Ctx,
    p: &'c Process,
    conn: &ConnFilter,
    min: u32,
    for_secs: u64,
    min_age_secs: u64,
) -> Outcome<'c> {
    let old_enough = |s: &Socket| {
        min_age_secs == 0
            || s.remote.is_some_and(|remote| {
                let k = ConnKey {
                    protocol: s.protocol,
                    local: s.local,
                    remote,
                };
                ctx.history.connections(p).any(|(c, seen)| {
                    *c == k && seen.first_seen <= ctx.snap.uptime_secs - min_age_secs as f64
                })
            })
    };
    let found: Vec<(usize, &Socket)> = ctx
        .sockets(p.pid)
        .filter(|(_, s)| s.is_connected() && conn.fits(s) && old_enough(s))
        .collect();
    let sockets = found.iter().map(|(i, _)| *i).collect();
    if for_secs == 0 {
        Outcome {
            matched: found.len() >= min as usize,
            sockets,
            seen: Seen::Connections {
                found,
                min_age_secs,
            },
        }
    } else {
        let seen = windowed(ctx, p, for_secs, conn);
        Outcome {
            matched: seen.len() >= min as usize,
            sockets,
            seen: Seen::Window { seen, for_secs },
        }
    }
}

/// `peers`: at least `min` distinct remote addresses (or ports) over the connections of `p`
/// that fit `conn`, now, or with `for_secs`, over that window of history.
fn peers<'c>(
    ctx: &'c Ctx,
    p: &'c Process,
    min: u32,
    count: PeerCount,
    conn: &ConnFilter,
    for_secs: u64,
) -> Outcome<'c> {
    let found: Vec<(usize, &Socket)> = ctx
        .sockets(p.pid)
        .filter(|(_, s)| s.is_connected() && conn.fits(s))
        .collect();
    let remotes: Vec<SocketAddr> = if for_secs == 0 {
        found.iter().filter_map(|(_, s)| s.remote).collect()
    } else {
        windowed(ctx, p, for_secs, conn)
            .iter()
            .map(|k| k.remote)
            .collect()
    };
    let peers = match count {
        PeerCount::Addresses => PeerSet::Addresses(remotes.iter().map(|r| r.ip()).collect()),
        PeerCount::Ports => PeerSet::Ports(remotes.iter().map(|r| r.port()).collect()),
    };
    Outcome::on(
        peers.len() >= min as usize,
        &found,
        Seen::Peers { peers, for_secs },
    )
}

impl Ctx<'_> {
    /// Whether static predicate `pred` ([`Predicate::is_static`]) holds for process `pi`,
    /// without preparing any evidence: the one place these are decided ([`test`] asks here
    /// and adds what it saw; the cache's three-valued evaluation asks here too).
    pub(super) fn static_match(&self, pi: usize, pred: &Predicate) -> bool {
        let p = &self.snap.processes[pi];
        match pred {
            Predicate::Name { globs, index } => self.name_slot(pi, globs, *index).is_some(),
            Predicate::Exe(globs) => {
                p.exe.is_some() && self.exe(pi).is_some_and(|c| globs.is_match_candidate(c))
            }
            Predicate::Cmdline { re, index } => match self.cmdline_hit(pi, *index) {
                Some(hit) => hit,
                None => re.regex().is_some_and(|r| r.is_match(self.cmdline(pi))),
            },
            Predicate::Sha256(hashes) => p.exe_sha256.as_ref().is_some_and(|h| hashes.contains(h)),
            Predicate::User(users) => users.iter().any(|u| {
                Some(u.as_str()) == p.user.as_deref() || u.parse::<u32>().ok() == Some(p.uid)
            }),
            Predicate::ExeDeleted(want) => p.exe.is_some() && p.exe_deleted == *want,
            Predicate::ExeStrings { strings, min } => {
                strings.iter().filter(|s| p.exe_strings.contains(s)).count() >= *min as usize
            }
            Predicate::CommMismatch(want) => comm_mismatch(p) == *want,
            // Not static ([`Predicate::is_static`]): `cache::decided` never asks about these.
            Predicate::Listen(_)
            | Predicate::Remote { .. }
            | Predicate::Peers { .. }
            | Predicate::Cpu { .. }
            | Predicate::Policy(_)
            | Predicate::Nice { .. }
            | Predicate::Threads { .. }
            | Predicate::Multicast
            | Predicate::Interface(_)
            | Predicate::MulticastGroups { .. }
            | Predicate::Traffic { .. }
            | Predicate::Preload
            | Predicate::HiddenProcesses { .. }
            | Predicate::ProcMounts
            | Predicate::UnlistedTasks { .. }
            | Predicate::HugePages { .. }
            | Predicate::Msr { .. } => false,
        }
    }

    /// Which of process `pi`'s names (0 comm, 1 exe basename, 2 argv[0] basename) the name
    /// predicate of `globs` and set index `index` matches first.
    fn name_slot(&self, pi: usize, globs: &GlobList, index: usize) -> Option<usize> {
        match self.name_hits(pi) {
            Some(hits) => hits
                .iter()
                .find(|(p, _)| *p == index)
                .map(|(_, slot)| usize::from(*slot)),
            None => self
                .names(pi)
                .iter()
                .position(|(_, c)| c.as_ref().is_some_and(|c| globs.is_match_candidate(c))),
        }
    }
}

/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

fn fits_listen(filter: &SocketFilter, s: &Socket) -> bool {
    // An unconnected UDP socket on an ephemeral port is a client's (a resolver's, say), not a
    // service; it counts only when the signature names its port.
    let udp_client = s.protocol == crate::inventory::Protocol::Udp
        && filter.ports.0.is_empty()
        && EPHEMERAL_PORTS.contains(&s.local.port());
    !udp_client
        && filter.protocol.allows(s.protocol)
        && filter.ports.contains(s.local.port())
        && match filter.bind {
            BindFilter::Any => true,
            BindFilter::Public => s.is_public_bind(),
            BindFilter::Loopback => !s.is_public_bind(),
        }
}

/// The distinct connections of `p` seen over the last `for_secs` (history) that fit `conn`
/// (seen at least once in one of its states), sorted.
fn windowed(ctx: &Ctx, p: &Process, for_secs: u64, conn: &ConnFilter) -> Vec<ConnKey> {
    let start = ctx.snap.uptime_secs - for_secs as f64;
    let mut out: Vec<ConnKey> = ctx
        .history
        .connections(p)
        .filter(|(k, c)| {
            c.last_seen >= start && conn.fits_seen(k.protocol, k.local, k.remote, |s| c.was(s))
        })
        .map(|(k, _)| *k)
        .collect();
    out.sort_by_key(|k| (k.remote, k.local));
    out
}

/// `comm` is neither the executable's basename nor `argv[0]`'s (each cut to the kernel's 15
/// bytes of `comm`). Processes without an executable (kernel threads, zombies) never
/// mismatch.
fn comm_mismatch(p: &Process) -> bool {
    let Some(exe) = p.exe_basename() else {
        return false;
    };
    let same = |name: &str| {
        let name = name.as_bytes();
        let cut = &name[..name.len().min(15)];
        cut == p.comm.as_bytes()
    };
    !(same(exe) || p.argv0_basename().is_some_and(same))
}

/// Whether `p` used at least `min_percent` for `for_secs`, and what it saw.
fn cpu(
    ctx: &Ctx,
    p: &Process,
    min_percent: f64,
    for_secs: u64,
    max_variation: Option<f64>,
) -> (bool, CpuSeen) {
    let now = ctx.snap.uptime_secs;
    let window = ctx.history.cpu_window(p, now, for_secs as f64);
    if let Some(w) = window.clone() {
        if w.covered_secs + 0.5 >= for_secs as f64 {
            let steady = match (max_variation, w.variation) {
                (None, _) => true,
                (Some(max), Some(v)) => v <= max,
                (Some(_), None) => false,
            };
            return (w.min_percent >= min_percent && steady, CpuSeen::Window(w));
        }
    }
    // Steadiness needs samples over the whole window: the agent's history, not a one-shot
    // scan's short sample.
    if max_variation.is_some() {
        return (
            false,
            CpuSeen::Unsteady {
                for_secs,
                covered_secs: window.map_or(0.0, |w| w.covered_secs),
            },
        );
    }
    // The samples do not reach back far enough: fall back to the average since start,
    // which must hold for long enough, and the recent samples must agree.
    let tps = ctx.snap.ticks_per_second.max(1) as f64;
    let age = now - p.start_ticks as f64 / tps;
    let lifetime = if age > 0.0 {
        p.cpu_ticks as f64 / tps / age * 100.0
    } else {
        0.0
    };
    let recent_ok = window.as_ref().is_none_or(|w| w.min_percent >= min_percent);
    (
        age >= for_secs as f64 && lifetime >= min_percent && recent_ok,
        CpuSeen::Lifetime {
            lifetime,
            age,
            window,
        },
    )
}
