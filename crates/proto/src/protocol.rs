//! The agent→collector protocol: enrollment, reports and their acknowledgements, errors.
//!
//! ```text
//! POST /api/agent/v1/enroll   EnrollRequest  → 200 EnrollResponse | 401/403 ApiError
//! POST /api/agent/v1/report   ReportBatch    → 200 ReportAck      | 4xx/5xx ApiError
//!      Authorization: Bearer <node key>, Content-Encoding: gzip (optional)
//! ```
//! A report is minted once, when the agent spools it, with a random `report_id`; retries
//! send the same id, and the collector stores it once (`duplicate` afterwards). The
//! collector answers only after the database commit. Status codes: 400 malformed (never
//! retried: the agent quarantines it), 401 unknown or revoked key (re-enroll), 403 blocked
//! or not approved, 413 too large (split), 429/503 with `Retry-After` (back off).

use crate::finding::{Event, Tracked};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where enrollment is.
pub const ENROLL_PATH: &str = "/api/agent/v1/enroll";
/// Where reports go.
pub const REPORT_PATH: &str = "/api/agent/v1/report";

/// An agent asks for a node key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub schema_version: u32,
    /// One of the collector's active enroll secrets.
    pub enroll_secret: String,
    /// Stable across reboots and reinstalls of the agent (`/etc/machine-id`).
    pub machine_id: String,
    pub hostname: String,
    pub agent_version: String,
    /// Operator-chosen labels (`customer = "c-1042"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The collector's answer to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    pub schema_version: u32,
    /// The collector's id of this host.
    pub host_id: String,
    /// The secret the agent authenticates with from now on (the collector keeps only its
    /// hash). 256 bits, hex.
    pub node_key: String,
    /// When the collector requires approval, reports are refused (403) until an operator
    /// approves the host.
    pub pending_approval: bool,
}

/// What the agent sends: one or more spooled reports, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    pub schema_version: u32,
    pub reports: Vec<Report>,
}

/// One report: a heartbeat, the lifecycle events since the previous report, and the full
/// set of open findings (so the collector reconciles after any loss).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Random, 128 bits, hex; minted at spool time and reused on every retry.
    pub report_id: String,
    /// Per agent state directory, from 1, +1 per report; a gap tells of lost reports.
    pub sequence: u64,
    /// The kernel's boot id; a change with a sequence reset is a reboot, without one a
    /// possible tampering.
    pub boot_id: String,
    pub machine_id: String,
    pub hostname: String,
    pub created_unix_ms: u64,
    pub heartbeat: Heartbeat,
    #[serde(default)]
    pub events: Vec<Event>,
    /// Every open finding at `created_unix_ms`.
    #[serde(default)]
    pub open_findings: Vec<Tracked>,
    /// The agent is stopping cleanly: it will be `stopped`, not `silent`.
    #[serde(default)]
    pub goodbye: bool,
}

/// The agent's liveness and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub agent_version: String,
    /// The signature set's digest and size.
    pub signature_version: String,
    pub signature_count: u64,
    /// The scan interval: the collector derives late and silent from it.
    pub interval_secs: u64,
    pub started_at_unix_ms: u64,
    pub scans: u64,
    pub cpu_ms: f64,
    pub max_rss_kib: u64,
    /// Reports waiting in the spool, this one included.
    pub spool_reports: u64,
    pub spool_bytes: u64,
    pub dropped: Dropped,
    pub quarantined: u64,
}

/// What the spool gave up to stay within its bounds, since the agent's state began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Dropped {
    /// Heartbeat-only reports.
    pub heartbeats: u64,
    /// `ongoing` repeats.
    pub ongoing: u64,
    /// Lifecycle transitions (`new`, `resolved`, …): only when nothing else was left.
    pub transitions: u64,
}

/// The collector's answer to a batch, after its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportAck {
    pub schema_version: u32,
    /// One per report, in the batch's order.
    pub results: Vec<ReportResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportResult {
    pub report_id: String,
    pub status: Stored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Stored {
    /// Committed now.
    Stored,
    /// Committed before: the agent may forget it.
    Duplicate,
}

/// Every error answer of the collector's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// Machine-readable: `bad_json`, `bad_schema_version`, `too_large`, `unauthorized`, ….
    pub code: String,
    /// For a person; never internals.
    pub error: String,
}
