//! Host liveness from the interval each agent announces, with `now` as an argument:
//! blocked, archived, revoked and pending come from operator flags; then never reported,
//! stopped (the last report said goodbye); then by the age of the last report:
//! online (≤ `late_after_intervals` × interval, default 2), late (≤ `silent_after_intervals`
//! × interval, default 5), silent beyond. A silent host also shows as an `agent.silent`
//! finding-like row: a customer with root can stop the agent, and the silence is a signal.
//!
//! Must never: read a clock itself.

use crate::config::LivenessRules;
use crate::store::HostRecord;
use aupwatch_proto::api::{FindingRow, HostRow, Liveness};
use aupwatch_proto::Severity;

/// The interval assumed when a host never announced one.
pub const DEFAULT_INTERVAL_SECS: u64 = 60;

/// The signature id of collector-made silent rows.
pub const SILENT_SIGNATURE: &str = "agent.silent";

pub fn classify(h: &HostRecord, now_unix_ms: u64, rules: &LivenessRules) -> Liveness {
    if h.blocked {
        return Liveness::Blocked;
    }
    if h.archived {
        return Liveness::Archived;
    }
    if h.revoked {
        return Liveness::Revoked;
    }
    if !h.approved {
        return Liveness::Pending;
    }
    let Some(last) = h.last_seen_unix_ms else {
        return Liveness::NeverReported;
    };
    if h.stopped {
        return Liveness::Stopped;
    }
    let interval_ms = h
        .interval_secs
        .filter(|i| *i > 0)
        .unwrap_or(DEFAULT_INTERVAL_SECS)
        .saturating_mul(1000);
    let age = now_unix_ms.saturating_sub(last);
    if age <= interval_ms.saturating_mul(rules.late_after_intervals) {
        Liveness::Online
    } else if age <= interval_ms.saturating_mul(rules.silent_after_intervals) {
        Liveness::Late
    } else {
        Liveness::Silent
    }
}

pub fn host_row(h: HostRecord, now_unix_ms: u64, rules: &LivenessRules) -> HostRow {
    let liveness = classify(&h, now_unix_ms, rules);
    HostRow {
        host_id: h.host_id,
        machine_id: h.machine_id,
        hostname: h.hostname,
        labels: h.labels,
        liveness,
        enrolled_unix_ms: h.enrolled_unix_ms,
        last_seen_unix_ms: h.last_seen_unix_ms,
        interval_secs: h.interval_secs,
        agent_version: h.agent_version,
        signature_version: h.signature_version,
        last_sequence: h.last_sequence,
        boot_id: h.boot_id,
        sequence_gaps: h.sequence_gaps,
        sequence_resets: h.sequence_resets,
        boot_changes: h.boot_changes,
        last_anomaly: h.last_anomaly,
        open_findings: h.open_findings,
    }
}

/// The `agent.silent` row of a silent host (none for any other liveness).
pub fn silent_row(h: &HostRow) -> Option<FindingRow> {
    if h.liveness != Liveness::Silent {
        return None;
    }
    let last = h.last_seen_unix_ms.unwrap_or(h.enrolled_unix_ms);
    Some(FindingRow {
        id: crate::store::finding_id(&h.host_id, SILENT_SIGNATURE),
        host_id: h.host_id.clone(),
        hostname: h.hostname.clone(),
        customer: h.labels.get("customer").cloned(),
        category: "agent".into(),
        severity: Severity::High,
        state: "ongoing".into(),
        signatures: vec![SILENT_SIGNATURE.into()],
        first_seen_unix_ms: last,
        last_seen_unix_ms: last,
        resolved_unix_ms: None,
        excepted: false,
        tracked: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(last: Option<u64>, interval: u64) -> HostRecord {
        HostRecord {
            host_id: "h1".into(),
            machine_id: "m1".into(),
            hostname: "vm".into(),
            labels: Default::default(),
            approved: true,
            blocked: false,
            revoked: false,
            archived: false,
            stopped: false,
            enrolled_unix_ms: 0,
            last_seen_unix_ms: last,
            interval_secs: Some(interval),
            agent_version: None,
            signature_version: None,
            last_sequence: None,
            boot_id: None,
            sequence_gaps: 0,
            sequence_resets: 0,
            boot_changes: 0,
            last_anomaly: None,
            open_findings: 0,
        }
    }

    #[test]
    fn liveness_follows_the_announced_interval() {
        let r = LivenessRules::default();
        let h = host(Some(1_000_000), 15);
        assert_eq!(classify(&h, 1_000_000 + 30_000, &r), Liveness::Online);
        assert_eq!(classify(&h, 1_000_000 + 30_001, &r), Liveness::Late);
        assert_eq!(classify(&h, 1_000_000 + 75_000, &r), Liveness::Late);
        assert_eq!(classify(&h, 1_000_000 + 75_001, &r), Liveness::Silent);
        assert_eq!(classify(&host(None, 15), 5, &r), Liveness::NeverReported);
        let mut stopped = host(Some(0), 15);
        stopped.stopped = true;
        assert_eq!(classify(&stopped, 10_000_000, &r), Liveness::Stopped);
        stopped.blocked = true;
        assert_eq!(classify(&stopped, 0, &r), Liveness::Blocked);
        let row = host_row(host(Some(0), 15), 10_000_000, &r);
        assert!(silent_row(&row).is_some());
    }
}
