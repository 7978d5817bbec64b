//! The collector's query API (`/api/v1/…`): host rows, finding rows, the summary. Read by
//! operators' tools and the collector's own CLI (`--json`); additive changes only.

use crate::finding::Tracked;
use crate::vocab::Severity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The host list's path.
pub const HOSTS_PATH: &str = "/api/v1/hosts";
/// The finding list's path (`/api/v1/findings/{id}` for one).
pub const FINDINGS_PATH: &str = "/api/v1/findings";
/// The fleet summary's path.
pub const SUMMARY_PATH: &str = "/api/v1/summary";

/// Where a host is, from the collector's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Reported within 2 announced intervals.
    Online,
    /// Last report older than 2 intervals, not older than 5.
    Late,
    /// Last report older than 5 intervals: the agent stopped without saying so.
    Silent,
    /// The agent said goodbye (a clean stop).
    Stopped,
    /// Enrolled, nothing received yet.
    NeverReported,
    /// Waiting for an operator's approval; its reports are refused.
    Pending,
    /// Its node key was revoked; it must enroll again.
    Revoked,
    /// Unseen for long, kept for history.
    Archived,
    /// Blocked by an operator: refused, and cannot enroll again.
    Blocked,
}

impl Liveness {
    /// Every value, in order.
    pub const ALL: &'static [Liveness] = &[
        Liveness::Online,
        Liveness::Late,
        Liveness::Silent,
        Liveness::Stopped,
        Liveness::NeverReported,
        Liveness::Pending,
        Liveness::Revoked,
        Liveness::Archived,
        Liveness::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Online => "online",
            Liveness::Late => "late",
            Liveness::Silent => "silent",
            Liveness::Stopped => "stopped",
            Liveness::NeverReported => "never_reported",
            Liveness::Pending => "pending",
            Liveness::Revoked => "revoked",
            Liveness::Archived => "archived",
            Liveness::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Liveness> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// One enrolled host (host-supplied text inside: hostname, labels, versions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HostRow {
    pub host_id: String,
    pub machine_id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub liveness: Liveness,
    pub enrolled_unix_ms: u64,
    pub last_seen_unix_ms: Option<u64>,
    /// The interval the agent announced in its last heartbeat.
    pub interval_secs: Option<u64>,
    pub agent_version: Option<String>,
    pub signature_version: Option<String>,
    pub last_sequence: Option<u64>,
    pub boot_id: Option<String>,
    /// Reports missing by sequence number, summed over the host's life.
    pub sequence_gaps: u64,
    /// Times the sequence went backwards (a reset agent state).
    pub sequence_resets: u64,
    /// Times the boot id changed (reboots).
    pub boot_changes: u64,
    /// The last sequence or boot anomaly, for a person.
    pub last_anomaly: Option<String>,
    pub open_findings: u64,
}

/// One finding on one host: the collector's current view of the agent's tracked finding,
/// or a collector-made row (`category = "agent"`, signature `agent.silent`) for a host that
/// went silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FindingRow {
    /// `<host_id>:<tracked id>`.
    pub id: String,
    pub host_id: String,
    pub hostname: String,
    /// The host's `customer` label, when it has one.
    pub customer: Option<String>,
    /// A [`crate::Category`] name, or `agent` for collector-made rows.
    pub category: String,
    pub severity: Severity,
    /// `new`, `ongoing`, `resolved`.
    pub state: String,
    pub signatures: Vec<String>,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
    pub resolved_unix_ms: Option<u64>,
    pub excepted: bool,
    /// The agent's tracked finding as last reported; none for collector-made rows.
    pub tracked: Option<Tracked>,
}

/// A page of findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FindingPage {
    pub findings: Vec<FindingRow>,
    /// Pass as `after` for the next page; none on the last page.
    pub next: Option<String>,
}

/// The fleet at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub hosts: u64,
    /// Hosts per [`Liveness`] name.
    pub hosts_by_liveness: BTreeMap<String, u64>,
    /// Open findings (not resolved), collector-made `agent.silent` rows included.
    pub open_findings: u64,
    /// Open findings per category name.
    pub open_by_category: BTreeMap<String, u64>,
    /// Open findings per severity name.
    pub open_by_severity: BTreeMap<String, u64>,
    pub reports: u64,
    pub events: u64,
}
