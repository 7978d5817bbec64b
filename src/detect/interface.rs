//! Interface signatures (`subject = "interface"`): predicates on each interface of the
//! snapshot (name, sent traffic over a window of history, multicast groups), combined with
//! the same all / any / not walk as processes.

use super::evidence::human_secs;
use super::{combine, Ctx, Finding, InterfaceRef, Trial};
use crate::signatures::{Predicate, Signature};

pub(super) fn interface_findings(ctx: &Ctx, sig: &Signature) -> Vec<Finding> {
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
        | Predicate::Preload
        | Predicate::HiddenProcesses { .. }
        | Predicate::ProcMounts
        | Predicate::UnlistedTasks { .. }
        | Predicate::HugePages { .. }
        | Predicate::Msr { .. } => (false, "not an interface predicate".into()),
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
