//! A finding (one offender's verdict in one category, with every signature that matched
//! and its evidence), its tracked lifecycle on the host, and the lifecycle event.

use crate::vocab::{Category, ProbeVerdict, Protocol, ProxyProtocol, Severity, SocketState};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One offender's verdict: a subject (a process tree, an interface, or the host) and a
/// category, with every signature of that category that matched it. The severity is the
/// highest of the matches', raised when independent kinds of evidence agree (`raised`).
///
/// The same offender keeps one finding while signatures join or leave it, so a fleet view
/// counts offenders, not signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub category: Category,
    pub severity: Severity,
    pub subject: Subject,
    /// Every signature that matched, highest severity first, then by id. Never empty.
    pub matches: Vec<Match>,
    /// Why `severity` is above the highest match's, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raised: Option<String>,
}

impl Finding {
    /// The process the finding is about, if it is about one.
    pub fn process(&self) -> Option<&Process> {
        match &self.subject {
            Subject::Process(p) => Some(p),
            Subject::Interface(_) | Subject::Host => None,
        }
    }

    /// The signature ids that matched, in order.
    pub fn signatures(&self) -> impl Iterator<Item = &str> {
        self.matches.iter().map(|m| m.signature.as_str())
    }
}

/// What a finding is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Subject {
    /// A process (the topmost of a tree that matched alike; the others are each match's
    /// `related_pids`).
    Process(Process),
    /// A network interface (traffic shape, multicast groups).
    Interface(Interface),
    /// The host as a whole (preload libraries, hidden processes, huge pages, …).
    Host,
}

/// A process as the agent saw it. Names, command line, paths and user are host-supplied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    /// Start time in clock ticks after boot: with `pid`, the process's identity.
    pub start_ticks: u64,
    pub uid: u32,
    /// The user name, when the host's passwd names the uid.
    pub user: Option<String>,
    /// The kernel's command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// The executable's path, when readable.
    pub exe: Option<String>,
    /// The executable was deleted or is a memfd.
    pub exe_deleted: bool,
    /// The command line's arguments as kept: at most the first
    /// [`crate::bounds::MAX_CMDLINE_BYTES`] bytes of it were read into memory.
    pub cmdline: Vec<String>,
    /// Inode of its network namespace.
    pub netns: u64,
    /// Container id or cgroup name, when it runs in one.
    pub container: Option<String>,
    /// Set when `cmdline` is not the whole command line: its full length and SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline_truncated: Option<Truncated>,
}

/// What was cut off a host string: the whole of it, as a length and a digest, so that a
/// bounded copy hides nothing (two command lines that differ past the cut differ here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Truncated {
    /// The whole string's length in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole string (lowercase hex).
    pub sha256: String,
}

/// A network interface, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub netns: u64,
    pub name: String,
}

/// A socket a match stands on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Socket {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
    pub state: SocketState,
    pub netns: u64,
    pub inode: u64,
}

/// Which predicate saw which value (host-supplied text inside).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub predicate: String,
    pub value: String,
}

/// An active probe's result on one listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub verdict: ProbeVerdict,
    /// The protocol that answered, when one did.
    pub protocol: Option<ProxyProtocol>,
    /// The address connected to.
    pub address: SocketAddr,
    pub netns: u64,
    /// Inode of the listening socket.
    pub inode: u64,
    /// What was asked and what came back (host-supplied bytes).
    pub evidence: String,
    pub probed_at_unix_ms: u64,
}

/// One signature that matched a finding's subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The signature id (`category.name`).
    pub signature: String,
    /// The signature's severity, as moved by a probe result.
    pub severity: Severity,
    pub description: String,
    /// The AUP rule it enforces.
    pub aup: String,
    /// Descendants of the subject process that matched this signature too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_pids: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sockets: Vec<Socket>,
    pub evidence: Vec<Evidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

/// Where a tracked finding is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// Seen in the latest scan for the first time.
    New,
    /// Seen in more than one scan, still present.
    Ongoing,
    /// No longer present.
    Resolved,
}

impl LifecycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::New => "new",
            LifecycleState::Ongoing => "ongoing",
            LifecycleState::Resolved => "resolved",
        }
    }
}

/// Why a finding is excepted (an operator's permission from the agent's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub reason: String,
    pub ticket: Option<String>,
    /// When it stops applying, as written in the config.
    pub expires: Option<String>,
    /// `file:line` of the exception.
    pub source: String,
}

/// A finding with its lifecycle on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Tracked {
    /// Stable identity on the host (hex): host, category and subject (a process's pid and
    /// start time, an interface). The same offender keeps it across scans and agent
    /// restarts, whichever signatures match it.
    pub id: String,
    pub state: LifecycleState,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
    /// Scans it was seen in.
    pub scans: u64,
    /// Set while an exception applies; the finding stays visible.
    pub excepted: Option<Exception>,
    pub finding: Finding,
}

/// A lifecycle change: one line of the event log, one entry of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// [`crate::SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    pub kind: EventKind,
    pub at_unix_ms: u64,
    /// The host name the agent reports as.
    pub host: String,
    pub tracked: Tracked,
}

/// What changed. Open: readers treat an unknown kind as a change of the finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// First seen.
    New,
    /// Still present (a periodic repeat; reports carry the open set instead).
    Ongoing,
    /// Its severity or its matching signatures changed.
    Changed,
    /// Gone: the process exited, the listener closed, no signature matches any more.
    Resolved,
    /// An exception started or stopped applying.
    ExceptionChanged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::New => "new",
            EventKind::Ongoing => "ongoing",
            EventKind::Changed => "changed",
            EventKind::Resolved => "resolved",
            EventKind::ExceptionChanged => "exception_changed",
        }
    }
}
