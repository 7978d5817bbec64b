//! Detection: a pure function of (snapshot, history, signature set) → findings.
//!
//! No clock, no file system, no network, no logging here: time arrives in the snapshot.
//! The output is sorted, so the same input always gives the same findings.
//!
//! Here: the finding types, [`run`], [`run_cached`], [`explain`] and the all / any / not walk
//! shared by the three subjects. `ctx.rs`: what one run prepares (per process text matches,
//! sockets, the cache's entries moved in and back); `process.rs`: process signatures (the
//! yes/no test of each predicate, and the folding of process trees); `evidence.rs`: what a
//! test saw, in words; `interface.rs` and `host.rs`: the other two subjects; `cache.rs`,
//! `history.rs`; `probe.rs` (with `probe_types.rs`): probes as input.

pub mod bound;
mod cache;
mod ctx;
mod evidence;
mod history;
mod host;
mod interface;
pub mod probe;
mod probe_types;
mod process;
pub mod verdict;

pub use history::{
    key as process_key, CpuWindow, History, InterfaceKey, ProcessKey, TrafficWindow, MAX_SAMPLES,
};

use crate::inventory::{Process, Snapshot, Socket};
use crate::signatures::{Category, Match, Predicate, Severity, Signature, SignatureSet, Subject};
pub use cache::Cache;
use ctx::Ctx;
use serde::Serialize;

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
    pub probe: Option<probe::ProbeReport>,
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

/// The process, interface, socket and evidence a finding names are the documents' own types
/// (`aupwatch-proto`): what detection says is what the status socket, the event log and the
/// collector carry, field for field.
pub use aupwatch_proto::{
    Evidence, Interface as InterfaceRef, Process as ProcessRef, Socket as SocketRef,
};

/// What a finding says of process `p`.
fn process_ref(p: &Process) -> ProcessRef {
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
        cmdline_truncated: p.cmdline_truncated.clone(),
    }
}

/// What a finding says of socket `s`.
fn socket_ref(s: &Socket) -> SocketRef {
    SocketRef {
        protocol: s.protocol,
        local: s.local,
        remote: s.remote,
        state: s.state,
        netns: s.netns,
        inode: s.inode,
    }
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
            Subject::Process => findings.extend(process::process_findings(ctx, si, sig)),
            Subject::Interface => findings.extend(interface::interface_findings(ctx, sig)),
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
                let matched =
                    process::eval(&ctx, pi, &sig.matcher, &mut Some(&mut trials)).is_some();
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

#[cfg(test)]
mod tests;
