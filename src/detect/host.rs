//! Host signatures (`subject = "host"`): predicates on `Snapshot.host`, combined with the
//! same all / any / not walk as processes and interfaces. One finding per signature at
//! most; it has neither a process nor an interface (`Finding.host` is true).

use super::{combine, Ctx, Evidence, Finding, Trial};
use crate::inventory::{HiddenHow, HostState, Snapshot};
use crate::signatures::{Predicate, Signature};

/// At most this many items (libraries, pids, mounts) are spelled out in one piece of evidence.
const SHOWN: usize = 5;

pub(super) fn host_findings(ctx: &Ctx, sig: &Signature) -> Option<Finding> {
    let hit = combine(&sig.matcher, &mut None, &mut |pred, _| {
        try_host(ctx.snap, pred)
    })?;
    let mut evidence = hit.evidence;
    evidence.sort();
    evidence.dedup();
    Some(Finding {
        host: true,
        ..Finding::of(sig, evidence)
    })
}

/// Evidence for a process finding whose process the listing hid.
pub(super) fn hidden_evidence(snap: &Snapshot, pid: i32) -> Option<Evidence> {
    let h = snap.host.hidden.iter().find(|h| h.pid == pid)?;
    Some(Evidence {
        predicate: "hidden".into(),
        value: format!("hidden from /proc listing: {}", h.how.describe()),
    })
}

/// Tries one host predicate (compilation keeps the others out of host signatures).
pub(super) fn try_host(snap: &Snapshot, pred: &Predicate) -> Trial {
    let host = &snap.host;
    let (matched, seen) = match pred {
        Predicate::Preload => preload(host),
        Predicate::HiddenProcesses { min } => {
            let n = host.hidden.len();
            (n >= *min as usize, hidden(snap))
        }
        Predicate::ProcMounts => {
            let shown: Vec<String> = host
                .proc_mounts
                .iter()
                .take(SHOWN)
                .map(|m| {
                    format!(
                        "{} over {} (pid {}): {} {}",
                        m.root, m.mount_point, m.pid, m.fstype, m.source
                    )
                })
                .collect();
            (
                !host.proc_mounts.is_empty(),
                if shown.is_empty() {
                    "nothing mounted on /proc/<pid>".into()
                } else {
                    with_more(shown, host.proc_mounts.len())
                },
            )
        }
        Predicate::UnlistedTasks { min } => match host.tasks {
            Some(t) => (
                t.unlisted() >= u64::from(*min),
                format!(
                    "the kernel counts {} tasks (/proc/loadavg), the processes listed have {} threads: {} unlisted",
                    t.kernel,
                    t.listed,
                    t.unlisted()
                ),
            ),
            None => (false, "no task count (/proc/loadavg unreadable)".into()),
        },
        Predicate::HugePages { min_mib } => {
            let total: u64 = host.hugepages.iter().map(|p| p.mib()).sum();
            let pools: Vec<String> = host
                .hugepages
                .iter()
                .map(|p| format!("{} × {} kB", p.total, p.size_kb))
                .collect();
            (
                total >= *min_mib,
                if pools.is_empty() {
                    "no huge pages reserved".into()
                } else {
                    format!("{total} MiB reserved in huge pages: {}", pools.join(", "))
                },
            )
        }
        Predicate::Msr { allow_writes } => match &host.msr {
            None => (false, "msr module not loaded".into()),
            Some(m) => {
                let value = m.allow_writes.as_deref();
                (
                    allow_writes.is_empty() || value.is_some_and(|v| allow_writes.iter().any(|a| a == v)),
                    format!(
                        "msr module loaded, allow_writes={}",
                        value.unwrap_or("(unreadable)")
                    ),
                )
            }
        },
        Predicate::Name { .. }
        | Predicate::Exe(_)
        | Predicate::Cmdline { .. }
        | Predicate::Sha256(_)
        | Predicate::User(_)
        | Predicate::Listen(_)
        | Predicate::Remote { .. }
        | Predicate::Peers { .. }
        | Predicate::Cpu { .. }
        | Predicate::Policy(_)
        | Predicate::Nice { .. }
        | Predicate::Threads { .. }
        | Predicate::ExeDeleted(_)
        | Predicate::ExeStrings { .. }
        | Predicate::CommMismatch(_)
        | Predicate::Multicast
        | Predicate::Interface(_)
        | Predicate::MulticastGroups { .. }
        | Predicate::Traffic { .. } => {
            (false, "not a host predicate".into())
        }
    };
    Trial {
        predicate: pred.key(),
        matched,
        seen,
        sockets: Vec::new(),
    }
}

fn preload(host: &HostState) -> (bool, String) {
    let mut parts = Vec::new();
    if !host.preload.is_empty() {
        parts.push(format!(
            "/etc/ld.so.preload: {}",
            with_more(
                host.preload.iter().take(SHOWN).cloned().collect(),
                host.preload.len()
            )
        ));
    }
    if let Some(env) = &host.preload_env {
        parts.push(format!("LD_PRELOAD of the agent: {env}"));
    }
    if parts.is_empty() {
        (false, "no preload library".into())
    } else {
        (true, parts.join("; "))
    }
}

fn hidden(snap: &Snapshot) -> String {
    let host = &snap.host;
    if host.hidden.is_empty() {
        return match &host.cgroups {
            Some(c) => format!(
                "none: every pid of {} cgroups under {} was listed",
                c.cgroups, c.mount
            ),
            None => "not cross-checked (no cgroup file system)".into(),
        };
    }
    let shown: Vec<String> = host
        .hidden
        .iter()
        .take(SHOWN)
        .map(|h| {
            let name = snap
                .processes
                .iter()
                .find(|p| p.pid == h.pid)
                .map(|p| format!(" {:?}", p.display_name()))
                .unwrap_or_default();
            let how = match h.how {
                HiddenHow::Unlisted => "missing from the /proc listing",
                HiddenHow::Masked => "its /proc/<pid> cannot be read",
            };
            format!("pid {}{name} ({how}; cgroup {})", h.pid, h.cgroup)
        })
        .collect();
    format!(
        "{} hidden: {}",
        host.hidden.len(),
        with_more(shown, host.hidden.len())
    )
}

fn with_more(mut shown: Vec<String>, total: usize) -> String {
    if total > shown.len() {
        shown.push(format!("+{} more", total - shown.len()));
    }
    shown.join(", ")
}
