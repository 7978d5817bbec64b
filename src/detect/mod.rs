//! Detection: a pure function of (snapshot, history, signature set) → findings.
//!
//! No clock, no file system, no network, no logging here: time arrives in the snapshot.
//! The output is sorted, so the same input always gives the same findings.

mod cache;
mod history;
mod host;
pub mod probe;
pub mod verdict;

pub use history::{
    key as process_key, CpuWindow, History, InterfaceKey, ProcessKey, TrafficWindow, MAX_SAMPLES,
};

use crate::inventory::{Process, Snapshot, Socket};
use crate::signatures::{
    BindFilter, Category, Match, PeerCount, Predicate, Severity, Signature, SignatureSet,
    SocketFilter, StateFilter, Subject,
};
use cache::Bits;
pub use cache::Cache;
use history::ConnKey;
use serde::Serialize;
use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};

/// A signature matched on this host.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub signature: String,
    pub category: Category,
    pub severity: Severity,
    pub description: String,
    pub aup: String,
    /// The (topmost) process, for process signatures.
    pub process: Option<ProcessRef>,
    /// The interface, for interface signatures.
    pub interface: Option<InterfaceRef>,
    /// A host signature's finding: about the host as a whole, no process or interface.
    pub host: bool,
    /// Descendants of `process` that matched the same signature, folded into this finding.
    pub related_pids: Vec<i32>,
    pub sockets: Vec<SocketRef>,
    pub evidence: Vec<Evidence>,
    /// The active probe's result for the signature's `probe`, set by [`probe::apply`].
    pub probe: Option<crate::probe::ProbeReport>,
}

impl Finding {
    /// A finding of `sig` with `evidence` and no subject yet (no process, interface or host).
    fn of(sig: &Signature, evidence: Vec<Evidence>) -> Finding {
        Finding {
            signature: sig.id.clone(),
            category: sig.category,
            severity: sig.severity,
            description: sig.description.clone(),
            aup: sig.aup.clone(),
            process: None,
            interface: None,
            host: false,
            related_pids: Vec::new(),
            sockets: Vec::new(),
            evidence,
            probe: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessRef {
    pub pid: i32,
    pub ppid: i32,
    pub start_ticks: u64,
    pub uid: u32,
    pub user: Option<String>,
    pub comm: String,
    pub exe: Option<String>,
    pub exe_deleted: bool,
    pub cmdline: Vec<String>,
    pub netns: u64,
    pub container: Option<String>,
}

impl ProcessRef {
    fn of(p: &Process) -> ProcessRef {
        ProcessRef {
            pid: p.pid,
            ppid: p.ppid,
            start_ticks: p.start_ticks,
            uid: p.uid,
            user: p.user.clone(),
            comm: p.comm.clone(),
            exe: p.exe.clone(),
            exe_deleted: p.exe_deleted,
            cmdline: p.cmdline.clone(),
            netns: p.netns,
            container: p.container.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InterfaceRef {
    pub netns: u64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SocketRef {
    pub protocol: crate::inventory::Protocol,
    pub local: std::net::SocketAddr,
    pub remote: Option<std::net::SocketAddr>,
    pub state: crate::inventory::SocketState,
    pub netns: u64,
    pub inode: u64,
}

impl SocketRef {
    fn of(s: &Socket) -> SocketRef {
        SocketRef {
            protocol: s.protocol,
            local: s.local,
            remote: s.remote,
            state: s.state,
            netns: s.netns,
            inode: s.inode,
        }
    }
}

/// Which predicate saw which value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Evidence {
    pub predicate: String,
    pub value: String,
}

/// One predicate tried on one subject: whether it held and what it saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub predicate: &'static str,
    pub matched: bool,
    pub seen: String,
    sockets: Vec<usize>,
}

/// Everything a process signature saw on one process (`aupwatch scan --explain`).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub signature: String,
    pub category: Category,
    pub severity: Severity,
    pub matched: bool,
    pub trials: Vec<Trial>,
}

/// The inputs shared by every evaluation in one run.
struct Ctx<'a> {
    snap: &'a Snapshot,
    history: &'a History,
    set: &'a SignatureSet,
    /// Socket indices per owning pid.
    sockets_of: HashMap<i32, Vec<usize>>,
    /// Per process (same index as `snap.processes`), computed when first needed.
    per: Vec<PerProc<'a>>,
}

/// What one run prepares for one process, once, when first needed.
#[derive(Default)]
struct PerProc<'a> {
    /// The command line joined by spaces.
    cmdline: OnceCell<String>,
    /// comm, exe basename and argv[0] basename, prepared for glob matching.
    names: OnceCell<[(&'static str, Option<globset::Candidate<'a>>); 3]>,
    /// The executable path, prepared likewise.
    exe: OnceCell<Option<globset::Candidate<'a>>>,
    /// The name predicates that match and which name matched first (0 comm, 1 exe
    /// basename, 2 argv[0] basename), from one pass of the set's name globs.
    name_hits: OnceCell<Vec<(usize, u8)>>,
    /// Which `cmdline` regexes of the set match, from one pass of the whole set.
    cmdline_hits: OnceCell<Bits>,
    /// Signatures the process may match (from the cache); `None`: all.
    possible: Option<Bits>,
}

impl<'a> Ctx<'a> {
    fn new(snap: &'a Snapshot, history: &'a History, set: &'a SignatureSet) -> Ctx<'a> {
        let mut sockets_of: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, s) in snap.sockets.iter().enumerate() {
            for &pid in &s.owners {
                sockets_of.entry(pid).or_default().push(i);
            }
        }
        Ctx {
            snap,
            history,
            set,
            sockets_of,
            per: (0..snap.processes.len())
                .map(|_| PerProc::default())
                .collect(),
        }
    }

    fn cmdline(&self, pi: usize) -> &str {
        self.per[pi]
            .cmdline
            .get_or_init(|| self.snap.processes[pi].cmdline_joined())
    }

    fn names(&self, pi: usize) -> &[(&'static str, Option<globset::Candidate<'a>>); 3] {
        self.per[pi].names.get_or_init(|| {
            let p: &'a Process = &self.snap.processes[pi];
            [
                ("comm", Some(globset::Candidate::new(p.comm.as_str()))),
                (
                    "exe basename",
                    p.exe_basename().map(globset::Candidate::new),
                ),
                (
                    "argv[0] basename",
                    p.argv0_basename().map(globset::Candidate::new),
                ),
            ]
        })
    }

    fn exe(&self, pi: usize) -> Option<&globset::Candidate<'a>> {
        self.per[pi]
            .exe
            .get_or_init(|| {
                let p: &'a Process = &self.snap.processes[pi];
                p.exe.as_deref().map(globset::Candidate::new)
            })
            .as_ref()
    }

    /// The set's name predicates matching process `pi`, from one pass of all its globs
    /// (`None`: the set has no combined glob set; try each list on its own).
    fn name_hits(&self, pi: usize) -> Option<&[(usize, u8)]> {
        let (globs, owner) = self.set.names.as_ref()?;
        Some(self.per[pi].name_hits.get_or_init(|| {
            let mut found = Vec::new();
            let mut hits: Vec<(usize, u8)> = Vec::new();
            for (slot, (_, c)) in self.names(pi).iter().enumerate() {
                let Some(c) = c else { continue };
                globs.matches_candidate_into(c, &mut found);
                for &g in &found {
                    let pred = owner[g];
                    if !hits.iter().any(|(p, _)| *p == pred) {
                        hits.push((pred, slot as u8));
                    }
                }
            }
            hits
        }))
    }

    /// Whether the set's `index`th command-line regex matches process `pi`, from one pass
    /// of the whole set (`None`: the set has no combined regex set).
    fn cmdline_hit(&self, pi: usize, index: usize) -> Option<bool> {
        let rs = self.set.cmdlines.as_ref()?;
        let bits = self.per[pi].cmdline_hits.get_or_init(|| {
            let mut bits = Bits::new(rs.len());
            for i in rs.matches(self.cmdline(pi)).iter() {
                bits.set(i);
            }
            bits
        });
        Some(bits.get(index))
    }

    fn sockets(&self, pid: i32) -> impl Iterator<Item = (usize, &'a Socket)> + '_ {
        let snap = self.snap;
        self.sockets_of
            .get(&pid)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(move |&i| (i, &snap.sockets[i]))
    }

    /// Fills each process's text matches and possible signatures from `cache` where the
    /// process did not change, and computes them where it did. The entries move into this
    /// run (no copies); [`Ctx::return_to`] moves them back, so that `cache` then holds
    /// exactly the processes of this snapshot. Returns (key, fingerprint, process index) of
    /// each.
    fn use_cache(&mut self, cache: &mut Cache) -> Vec<(history::ProcessKey, u64, usize)> {
        cache.for_set(&self.set.digest);
        let mut old = std::mem::take(&mut cache.entries);
        let mut taken = Vec::with_capacity(self.snap.processes.len());
        for (pi, p) in self.snap.processes.iter().enumerate() {
            if p.kernel_thread {
                continue;
            }
            let k = history::key(p);
            let fingerprint = cache.fingerprint(p);
            let possible = match old.remove(&k) {
                Some(e) if e.fingerprint == fingerprint => {
                    let per = &mut self.per[pi];
                    let _ = per.name_hits.set(e.name_hits);
                    let _ = per.cmdline_hits.set(e.cmdline_hits);
                    e.possible
                }
                _ => self.learn(pi),
            };
            self.per[pi].possible = Some(possible);
            taken.push((k, fingerprint, pi));
        }
        taken
    }

    /// Moves what [`Ctx::use_cache`] took back into `cache`.
    fn return_to(mut self, cache: &mut Cache, taken: Vec<(history::ProcessKey, u64, usize)>) {
        cache.entries = taken
            .into_iter()
            .map(|(k, fingerprint, pi)| {
                let per = &mut self.per[pi];
                let entry = cache::Entry {
                    fingerprint,
                    name_hits: per.name_hits.take().unwrap_or_default(),
                    cmdline_hits: per.cmdline_hits.take().unwrap_or_default(),
                    possible: per.possible.take().unwrap_or_default(),
                };
                (k, entry)
            })
            .collect();
    }

    /// Whether static predicate `pred` ([`cache::is_static`]) holds for process `pi`, without
    /// preparing any evidence: the one place these are decided ([`try_predicate`] asks here
    /// and adds the evidence; `name` and `cmdline`, whose evidence needs the match itself,
    /// read the same per-run matches).
    fn static_match(&self, pi: usize, pred: &Predicate) -> bool {
        let p = &self.snap.processes[pi];
        match pred {
            Predicate::Name { globs, index } => match self.name_hits(pi) {
                Some(hits) => hits.iter().any(|(h, _)| h == index),
                None => self
                    .names(pi)
                    .iter()
                    .any(|(_, c)| c.as_ref().is_some_and(|c| globs.is_match_candidate(c))),
            },
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
            // Not static: `cache::decided` never asks about these.
            _ => false,
        }
    }

    /// What the unchanging facts of process `pi` say, for the cache: the signatures they do
    /// not rule out. Also fills the process's text matches, which the cache keeps too.
    fn learn(&self, pi: usize) -> Bits {
        let _ = self.name_hits(pi);
        let _ = self.cmdline_hit(pi, 0);
        let mut possible = Bits::new(self.set.signatures.len());
        for (si, sig) in self.set.signatures.iter().enumerate() {
            if sig.subject != Subject::Process {
                continue;
            }
            let verdict = cache::decided(&sig.matcher, &mut |pred| self.static_match(pi, pred));
            if verdict != Some(false) {
                possible.set(si);
            }
        }
        possible
    }
}

/// Runs every signature of `set` against `snap`.
pub fn run(snap: &Snapshot, history: &History, set: &SignatureSet) -> Vec<Finding> {
    run_in(&Ctx::new(snap, history, set))
}

/// Like [`run`], remembering in `cache` what cannot change for a process until it does (its
/// text matches, and the signatures its unchanging facts rule out), so that a steady-state
/// scan re-judges only sockets, CPU and scheduling. Same findings as [`run`].
pub fn run_cached(
    snap: &Snapshot,
    history: &History,
    set: &SignatureSet,
    cache: &mut Cache,
) -> Vec<Finding> {
    let mut ctx = Ctx::new(snap, history, set);
    let taken = ctx.use_cache(cache);
    let findings = run_in(&ctx);
    ctx.return_to(cache, taken);
    findings
}

fn run_in(ctx: &Ctx) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (si, sig) in ctx.set.signatures.iter().enumerate() {
        match sig.subject {
            Subject::Process => findings.extend(process_findings(ctx, si, sig)),
            Subject::Interface => findings.extend(interface_findings(ctx, sig)),
            Subject::Host => findings.extend(host::host_findings(ctx, sig)),
        }
    }
    sort(&mut findings);
    findings
}

/// The order of findings: severity (highest first), category, signature, subject.
fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.category.cmp(&b.category))
            .then_with(|| a.signature.cmp(&b.signature))
            .then_with(|| sort_key(a).cmp(&sort_key(b)))
    });
}

fn sort_key(f: &Finding) -> (i32, u64, String) {
    match (&f.process, &f.interface) {
        (Some(p), _) => (p.pid, p.netns, String::new()),
        (None, Some(i)) => (0, i.netns, i.name.clone()),
        (None, None) => (0, 0, String::new()),
    }
}

/// Explains every process signature against one process.
pub fn explain(
    snap: &Snapshot,
    history: &History,
    set: &SignatureSet,
    pid: i32,
) -> Option<Vec<Explanation>> {
    let ctx = Ctx::new(snap, history, set);
    let pi = snap.processes.iter().position(|p| p.pid == pid)?;
    let p = &snap.processes[pi];
    Some(
        set.signatures
            .iter()
            .filter(|s| s.subject == Subject::Process)
            .map(|sig| {
                let mut trials = Vec::new();
                let matched = eval(&ctx, pi, &sig.matcher, &mut Some(&mut trials)).is_some();
                Explanation {
                    signature: sig.id.clone(),
                    category: sig.category,
                    severity: sig.severity,
                    matched: matched && !p.kernel_thread,
                    trials,
                }
            })
            .collect(),
    )
}

/// What matched: evidence and the sockets involved.
#[derive(Default)]
struct Hit {
    evidence: Vec<Evidence>,
    sockets: Vec<usize>,
}

impl Hit {
    fn absorb(&mut self, other: Hit) {
        self.evidence.extend(other.evidence);
        self.sockets.extend(other.sockets);
    }
}

fn process_findings(ctx: &Ctx, si: usize, sig: &Signature) -> Vec<Finding> {
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
                .map(|&s| SocketRef::of(&ctx.snap.sockets[s]))
                .collect();
            let mut evidence: BTreeSet<Evidence> = hit.evidence.into_iter().collect();
            evidence.extend(host::hidden_evidence(ctx.snap, p.pid));
            Finding {
                process: Some(ProcessRef::of(p)),
                related_pids: related,
                sockets: sockets.into_iter().collect(),
                ..Finding::of(sig, evidence.into_iter().collect())
            }
        })
        .collect()
}

fn interface_findings(ctx: &Ctx, sig: &Signature) -> Vec<Finding> {
    let mut out = Vec::new();
    for iface in &ctx.snap.interfaces {
        let hit = combine(&sig.matcher, &mut None, &mut |pred, _| {
            try_interface(ctx, iface, pred)
        });
        if let Some(hit) = hit {
            out.push(Finding {
                interface: Some(InterfaceRef {
                    netns: iface.netns,
                    name: iface.name.clone(),
                }),
                ..Finding::of(sig, hit.evidence)
            });
        }
    }
    out
}

/// Tries one interface predicate (compilation keeps process predicates out of interface
/// signatures).
fn try_interface(ctx: &Ctx, iface: &crate::inventory::Interface, pred: &Predicate) -> Trial {
    let (matched, seen) = match pred {
        Predicate::Interface(globs) => (
            globs.is_match(&iface.name),
            format!("name {:?}", iface.name),
        ),
        Predicate::Traffic {
            min_pps,
            max_avg_packet_bytes,
            for_secs,
        } => {
            match ctx.history.tx_window(
                iface.netns,
                &iface.name,
                ctx.snap.uptime_secs,
                *for_secs as f64,
            ) {
                None => (false, "no traffic rate yet (one sample)".into()),
                Some(w) => {
                    let covered = *for_secs == 0 || w.covered_secs + 0.5 >= *for_secs as f64;
                    let avg = w.avg_packet_bytes().unwrap_or(0.0);
                    (
                        covered && w.packets_per_sec >= *min_pps && avg < *max_avg_packet_bytes,
                        format!(
                            "sent {:.0} packets/s at {:.0} kbit/s ({:.0} bytes/packet on average) over {}",
                            w.packets_per_sec,
                            w.bytes_per_sec * 8.0 / 1000.0,
                            avg,
                            human_secs(w.covered_secs)
                        ),
                    )
                }
            }
        }
        Predicate::MulticastGroups { min } => {
            let joined: Vec<&std::net::IpAddr> = iface
                .multicast_groups
                .iter()
                .filter(|g| !always_joined(g))
                .collect();
            (
                joined.len() >= *min as usize,
                if joined.is_empty() {
                    "no multicast group beyond all-hosts and solicited-node".into()
                } else {
                    let shown: Vec<String> = joined.iter().map(|g| g.to_string()).collect();
                    format!("joined {} group(s): {}", joined.len(), shown.join(", "))
                },
            )
        }
        _ => (false, "not an interface predicate".into()),
    };
    Trial {
        predicate: pred.key(),
        matched,
        seen,
        sockets: Vec::new(),
    }
}

/// Groups the kernel joins on every interface: all-hosts (224.0.0.1, ff01::1, ff02::1) and
/// IPv6 solicited-node groups (ff02::1:ff00:0/104).
fn always_joined(g: &std::net::IpAddr) -> bool {
    match g {
        std::net::IpAddr::V4(v4) => *v4 == std::net::Ipv4Addr::new(224, 0, 0, 1),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            *v6 == std::net::Ipv6Addr::new(0xff01, 0, 0, 0, 0, 0, 0, 1)
                || *v6 == std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
                || (s[..5] == [0xff02, 0, 0, 0, 0] && s[5] == 1 && s[6] >> 8 == 0xff)
        }
    }
}

/// Evaluates `m` on process `pi`; `Some` with evidence when it matches. With `trace`,
/// records every predicate tried (and tries them all, for `--explain`).
fn eval(ctx: &Ctx, pi: usize, m: &Match, trace: &mut Option<&mut Vec<Trial>>) -> Option<Hit> {
    combine(m, trace, &mut |pred, detail| {
        try_predicate(ctx, pi, pred, detail)
    })
}

/// The all / any / not walk shared by every subject: `try_pred(predicate, detail)` tries one
/// predicate; a failed `all` leaves no evidence behind, `any` keeps the evidence of every
/// alternative that held.
fn combine(
    m: &Match,
    trace: &mut Option<&mut Vec<Trial>>,
    try_pred: &mut impl FnMut(&Predicate, bool) -> Trial,
) -> Option<Hit> {
    match m {
        Match::All(items) => {
            let mut hit = Hit::default();
            let mut ok = true;
            for item in items {
                match combine(item, trace, try_pred) {
                    Some(h) => hit.absorb(h),
                    None => {
                        ok = false;
                        if trace.is_none() {
                            break;
                        }
                    }
                }
            }
            ok.then_some(hit)
        }
        Match::Any(items) => {
            let mut hit: Option<Hit> = None;
            for item in items {
                if let Some(h) = combine(item, trace, try_pred) {
                    hit.get_or_insert_with(Hit::default).absorb(h);
                }
            }
            hit
        }
        Match::Not(inner) => match combine(inner, trace, try_pred) {
            Some(_) => None,
            None => Some(Hit::default()),
        },
        Match::Pred(pred) => {
            let trial = try_pred(pred, trace.is_some());
            let hit = trial.matched.then(|| Hit {
                evidence: vec![Evidence {
                    predicate: trial.predicate.to_string(),
                    value: trial.seen.clone(),
                }],
                sockets: trial.sockets.clone(),
            });
            if let Some(t) = trace {
                t.push(trial);
            }
            hit
        }
    }
}

/// At most this many sockets are spelled out in one piece of evidence.
const SHOWN_SOCKETS: usize = 5;
/// Command lines are cut to this many characters in evidence.
const SHOWN_CMDLINE: usize = 200;

/// Tries one predicate. The text of what it saw is built only when it matched (evidence) or
/// when `detail` asks for it (`--explain`): formatting for every miss was most of a scan.
fn try_predicate(ctx: &Ctx, pi: usize, pred: &Predicate, detail: bool) -> Trial {
    let p = &ctx.snap.processes[pi];
    let key = pred.key();
    let mut sockets = Vec::new();
    let (matched, seen): (bool, Box<dyn FnOnce() -> String + '_>) = match pred {
        Predicate::Name { globs, index } => {
            let hit = match ctx.name_hits(pi) {
                Some(hits) => hits
                    .iter()
                    .find(|(p, _)| p == index)
                    .map(|(_, slot)| usize::from(*slot)),
                None => ctx
                    .names(pi)
                    .iter()
                    .position(|(_, c)| c.as_ref().is_some_and(|c| globs.is_match_candidate(c))),
            };
            match hit {
                Some(at) => {
                    let what = ctx.names(pi)[at].0;
                    let v = match at {
                        0 => Some(p.comm.as_str()),
                        1 => p.exe_basename(),
                        _ => p.argv0_basename(),
                    }
                    .unwrap_or("");
                    (true, Box::new(move || format!("{what} {v:?}")))
                }
                None => (
                    false,
                    Box::new(|| {
                        format!(
                            "comm {:?}, exe {:?}, argv[0] {:?}",
                            p.comm,
                            p.exe_basename().unwrap_or(""),
                            p.argv0_basename().unwrap_or("")
                        )
                    }),
                ),
            }
        }
        Predicate::Exe(_) => match p.exe.as_deref() {
            Some(exe) => (
                ctx.static_match(pi, pred),
                Box::new(move || {
                    format!("{exe:?}{}", if p.exe_deleted { " (deleted)" } else { "" })
                }),
            ),
            _ => (false, Box::new(|| "no executable".into())),
        },
        Predicate::Cmdline { re, index } => {
            let line = ctx.cmdline(pi);
            let hit = match ctx.cmdline_hit(pi, *index) {
                Some(hit) => hit,
                None => re.regex().is_some_and(|r| r.is_match(line)),
            };
            match hit.then(|| re.regex().and_then(|r| r.find(line))).flatten() {
                Some(m) => (
                    true,
                    Box::new(move || format!("{:?} in {:?}", m.as_str(), cut(line, SHOWN_CMDLINE))),
                ),
                None => (
                    false,
                    Box::new(move || format!("{:?}", cut(line, SHOWN_CMDLINE))),
                ),
            }
        }
        Predicate::Sha256(_) => match &p.exe_sha256 {
            Some(h) => (ctx.static_match(pi, pred), Box::new(move || h.clone())),
            None => (false, Box::new(|| "executable not hashed".into())),
        },
        Predicate::User(_) => {
            let name = p.user.as_deref();
            (
                ctx.static_match(pi, pred),
                Box::new(move || format!("{} (uid {})", name.unwrap_or("?"), p.uid)),
            )
        }
        Predicate::Listen(filter) => {
            let found: Vec<(usize, &Socket)> = ctx
                .sockets(p.pid)
                .filter(|(_, s)| s.is_listening() && fits(filter, s))
                .collect();
            sockets = found.iter().map(|(i, _)| *i).collect();
            if found.is_empty() {
                (false, Box::new(move || listening_summary(ctx, p)))
            } else {
                (true, Box::new(move || list_sockets(&found, false)))
            }
        }
        Predicate::Remote {
            filter,
            states,
            min,
            for_secs,
            min_age_secs,
        } => {
            let fits_conn = |protocol, remote: std::net::SocketAddr| {
                filter.protocol.allows(protocol) && filter.ports.contains(remote.port())
            };
            let old_enough = |s: &Socket| {
                *min_age_secs == 0
                    || s.remote.is_some_and(|remote| {
                        let k = ConnKey {
                            protocol: s.protocol,
                            local: s.local,
                            remote,
                        };
                        ctx.history.connections(p).any(|(c, seen)| {
                            *c == k
                                && seen.first_seen <= ctx.snap.uptime_secs - *min_age_secs as f64
                        })
                    })
            };
            let found: Vec<(usize, &Socket)> = ctx
                .sockets(p.pid)
                .filter(|(_, s)| {
                    s.is_connected()
                        && states.allows(s.state)
                        && s.remote.is_some_and(|r| fits_conn(s.protocol, r))
                        && old_enough(s)
                })
                .collect();
            sockets = found.iter().map(|(i, _)| *i).collect();
            if *for_secs == 0 {
                let n = found.len();
                let age = if *min_age_secs > 0 {
                    format!(" open for at least {}", human_secs(*min_age_secs as f64))
                } else {
                    String::new()
                };
                (
                    n >= *min as usize,
                    Box::new(move || {
                        if n == 0 {
                            format!("no connection to those ports{age}")
                        } else {
                            format!("{n} connection(s){age}: {}", list_sockets(&found, true))
                        }
                    }),
                )
            } else {
                let seen = windowed(ctx, p, *for_secs, states, |k| {
                    fits_conn(k.protocol, k.remote)
                });
                let n = seen.len();
                let w = *for_secs as f64;
                (
                    n >= *min as usize,
                    Box::new(move || {
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
                            human_secs(w),
                            shown.join(", ")
                        )
                    }),
                )
            }
        }
        Predicate::Peers {
            min,
            count,
            local_ports,
            remote_ports,
            protocol,
            states,
            for_secs,
        } => {
            let fits_conn = |proto, local: std::net::SocketAddr, remote: std::net::SocketAddr| {
                protocol.allows(proto)
                    && local_ports.contains(local.port())
                    && remote_ports.contains(remote.port())
            };
            let found: Vec<(usize, &Socket)> = ctx
                .sockets(p.pid)
                .filter(|(_, s)| {
                    s.is_connected()
                        && states.allows(s.state)
                        && s.remote.is_some_and(|r| fits_conn(s.protocol, s.local, r))
                })
                .collect();
            sockets = found.iter().map(|(i, _)| *i).collect();
            let remotes: Vec<std::net::SocketAddr> = if *for_secs == 0 {
                found.iter().filter_map(|(_, s)| s.remote).collect()
            } else {
                windowed(ctx, p, *for_secs, states, |k| {
                    fits_conn(k.protocol, k.local, k.remote)
                })
                .iter()
                .map(|k| k.remote)
                .collect()
            };
            let (n, shown, what) = match count {
                PeerCount::Addresses => {
                    let set: BTreeSet<std::net::IpAddr> = remotes.iter().map(|r| r.ip()).collect();
                    let shown: Vec<String> = set
                        .iter()
                        .take(SHOWN_SOCKETS)
                        .map(ToString::to_string)
                        .collect();
                    (set.len(), shown, "peer(s)")
                }
                PeerCount::Ports => {
                    let set: BTreeSet<u16> = remotes.iter().map(|r| r.port()).collect();
                    let shown: Vec<String> = set
                        .iter()
                        .take(SHOWN_SOCKETS)
                        .map(ToString::to_string)
                        .collect();
                    (set.len(), shown, "remote port(s)")
                }
            };
            let over = if *for_secs == 0 {
                String::new()
            } else {
                format!(" over the last {}", human_secs(*for_secs as f64))
            };
            (
                n >= *min as usize,
                Box::new(move || {
                    let more = if n > SHOWN_SOCKETS {
                        format!(", +{} more", n - SHOWN_SOCKETS)
                    } else {
                        String::new()
                    };
                    format!("{n} distinct {what}{over} [{}{more}]", shown.join(", "))
                }),
            )
        }
        Predicate::Cpu {
            min_percent,
            for_secs,
            max_variation,
        } => cpu(ctx, p, *min_percent, *for_secs, *max_variation),
        Predicate::Policy(names) => {
            let name = p.sched_policy_name();
            (
                names.iter().any(|n| n == name),
                Box::new(move || format!("scheduling policy {name}")),
            )
        }
        Predicate::Threads { min } => (
            p.threads >= i64::from(*min),
            Box::new(move || format!("{} threads", p.threads)),
        ),
        Predicate::Nice { min } => (p.nice >= *min, Box::new(move || format!("nice {}", p.nice))),
        Predicate::ExeDeleted(_) => match p.exe.as_deref() {
            Some(exe) => (
                ctx.static_match(pi, pred),
                Box::new(move || {
                    if exe.starts_with("/memfd:") {
                        format!("runs from a memfd {exe:?}")
                    } else if p.exe_deleted {
                        format!("executable {exe:?} was deleted")
                    } else {
                        format!("executable {exe:?} exists")
                    }
                }),
            ),
            None => (false, Box::new(|| "no executable".into())),
        },
        Predicate::ExeStrings { strings, .. } => {
            let found: Vec<&str> = strings
                .iter()
                .filter(|s| p.exe_strings.contains(s))
                .map(String::as_str)
                .collect();
            let n = found.len();
            (
                ctx.static_match(pi, pred),
                Box::new(move || {
                    if n == 0 {
                        "none of the strings in the executable".into()
                    } else {
                        format!("executable contains {}", quoted(&found))
                    }
                }),
            )
        }
        Predicate::CommMismatch(_) => (
            ctx.static_match(pi, pred),
            Box::new(move || {
                format!(
                    "comm {:?}, exe {:?}, argv[0] {:?}",
                    p.comm,
                    p.exe_basename().unwrap_or(""),
                    p.argv0_basename().unwrap_or("")
                )
            }),
        ),
        Predicate::Multicast => {
            let found: Vec<(usize, &Socket)> = ctx
                .sockets(p.pid)
                .filter(|(_, s)| {
                    s.protocol == crate::inventory::Protocol::Udp
                        && (s.local.ip().is_multicast()
                            || s.remote.is_some_and(|r| r.ip().is_multicast()))
                })
                .collect();
            sockets = found.iter().map(|(i, _)| *i).collect();
            if found.is_empty() {
                (false, Box::new(|| "no multicast socket".into()))
            } else {
                (
                    true,
                    Box::new(move || {
                        format!("multicast socket(s): {}", list_sockets(&found, true))
                    }),
                )
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
        | Predicate::Msr { .. } => (false, Box::new(|| "not a process predicate".into())),
    };
    let seen = if matched || detail {
        seen()
    } else {
        String::new()
    };
    Trial {
        predicate: key,
        matched,
        seen,
        sockets,
    }
}

/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

fn fits(filter: &SocketFilter, s: &Socket) -> bool {
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

/// The distinct connections of `p` seen over the last `for_secs` (history) in one of
/// `states` that `fits`, sorted.
fn windowed(
    ctx: &Ctx,
    p: &Process,
    for_secs: u64,
    states: &StateFilter,
    fits: impl Fn(&ConnKey) -> bool,
) -> Vec<ConnKey> {
    let start = ctx.snap.uptime_secs - for_secs as f64;
    let mut out: Vec<ConnKey> = ctx
        .history
        .connections(p)
        .filter(|(k, c)| {
            c.last_seen >= start
                && (states.0.is_empty() || states.0.iter().any(|&s| c.was(s)))
                && fits(k)
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

/// Whether `p` used at least `min_percent` for `for_secs`, and (lazily) what it saw.
fn cpu<'a>(
    ctx: &Ctx,
    p: &Process,
    min_percent: f64,
    for_secs: u64,
    max_variation: Option<f64>,
) -> (bool, Box<dyn FnOnce() -> String + 'a>) {
    let now = ctx.snap.uptime_secs;
    let window = ctx.history.cpu_window(p, now, for_secs as f64);
    if let Some(w) = window.clone() {
        if w.covered_secs + 0.5 >= for_secs as f64 {
            let steady = match (max_variation, w.variation) {
                (None, _) => true,
                (Some(max), Some(v)) => v <= max,
                (Some(_), None) => false,
            };
            return (
                w.min_percent >= min_percent && steady,
                Box::new(move || {
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
                }),
            );
        }
    }
    // Steadiness needs samples over the whole window: the agent's history, not a one-shot
    // scan's short sample.
    if max_variation.is_some() {
        return (
            false,
            Box::new(move || {
                format!(
                    "steadiness needs samples over {}; history covers {}",
                    human_secs(for_secs as f64),
                    human_secs(window.map_or(0.0, |w| w.covered_secs))
                )
            }),
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
        Box::new(move || {
            let recent = match &window {
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
        }),
    )
}

fn human_secs(secs: f64) -> String {
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

#[cfg(test)]
mod tests;
