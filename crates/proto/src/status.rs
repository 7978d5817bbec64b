//! The agent's status document: what `aupwatch status` reads from the status socket (and
//! renders as a table, JSON or Prometheus text). The agent builds it after every scan.

use crate::finding::Tracked;
use serde::{Deserialize, Serialize};

/// Everything the agent tells about itself and its findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub schema_version: u32,
    pub agent: Agent,
    pub last_scan: Option<Scan>,
    /// Scans since the agent started.
    pub scans: u64,
    pub last_reload: Option<Reload>,
    pub signatures: SignatureSet,
    /// Open findings, oldest first.
    pub findings: Vec<Tracked>,
    /// Recently resolved findings, newest first (a bounded list).
    pub recently_resolved: Vec<Tracked>,
    pub reporting: Reporting,
    /// Open findings left out of `findings` (the newest) to keep the document within
    /// [`crate::bounds::MAX_STATUS_BYTES`]; recently resolved ones go first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub findings_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How the agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No scan finished yet.
    Starting,
    /// Scanning on time, every sink working.
    Ok,
    /// Scanning, but a sink fails or the last reload was refused.
    Degraded,
    /// The last scan is older than two intervals: the loop is stuck.
    Stalled,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Stalled => "stalled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub version: String,
    pub pid: u32,
    /// The host name it reports as.
    pub host: String,
    pub health: Health,
    pub started_at_unix_ms: u64,
    pub uptime_secs: u64,
    /// The config file, when one was read.
    pub config: Option<String>,
    pub interval_secs: u64,
    /// CPU time used since start (user + system).
    pub cpu_ms: f64,
    /// Peak resident memory.
    pub max_rss_kib: u64,
    pub history: HistorySize,
}

/// What the detection history holds: bounded by the longest signature window, not by
/// uptime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HistorySize {
    /// Processes and interfaces tracked.
    pub subjects: u64,
    /// CPU samples and connections held.
    pub entries: u64,
}

/// The last scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Scan {
    pub at_unix_ms: u64,
    pub duration_ms: f64,
    pub cpu_ms: f64,
    pub processes: u64,
    pub sockets: u64,
    pub namespaces: u64,
    /// Things the inventory could not read.
    pub gaps: u64,
    pub findings: u64,
    /// Listening sockets the proxy probe was asked about (most answered from its cache).
    pub probe_candidates: u64,
}

/// The last configuration reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Reload {
    pub at_unix_ms: u64,
    /// What asked for it: `SIGHUP`, `file change`, ….
    pub trigger: String,
    /// False when the new config or signatures had errors and the running ones stayed.
    pub ok: bool,
    pub error: Option<String>,
}

/// The signature set in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SignatureSet {
    pub count: u64,
    /// A digest of the whole set.
    pub version: String,
    /// `bundled`, or the directory the shipped packs were read from.
    pub shipped: String,
    /// The local signature directory, when configured.
    pub local: Option<String>,
    /// Shipped signature ids that a local file redefines.
    #[serde(default)]
    pub overridden: Vec<String>,
}

/// Where findings go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Reporting {
    pub syslog: Option<Sink>,
    pub event_log: Option<Sink>,
    /// `None` when no collector is configured.
    pub collector: Option<Collector>,
}

/// A local sink's counters since the agent started (kept across reloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Sink {
    pub target: String,
    pub sent: u64,
    pub errors: u64,
    /// Events that could not be written and are lost (counted, never silent).
    #[serde(default)]
    pub dropped: u64,
    pub last_error: Option<String>,
}

/// Delivery to the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Collector {
    pub url: String,
    /// A node key is in hand.
    pub enrolled: bool,
    /// Reports written to the spool and not yet acknowledged.
    pub spool_reports: u64,
    pub spool_bytes: u64,
    /// The spool is at a bound (bytes, reports, age) or its file system is full: the last
    /// report written had to drop older ones, or could not be written. Cleared by the next
    /// report that fits. The drops are counted in `dropped`.
    #[serde(default)]
    pub spool_full: bool,
    pub delivered: u64,
    pub last_delivery_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub dropped: crate::protocol::Dropped,
    /// Reports the collector refused as malformed, kept aside and never resent.
    pub quarantined: u64,
}
