//! aupwatch's documents: the one serialization boundary of the project.
//!
//! Every JSON that leaves a process is one of these types: the findings and lifecycle
//! events the agent writes to its event log and sends to the collector, the status
//! document its socket serves, and the agent→collector protocol (enrollment, reports,
//! acknowledgements). Readers deserialize these types and read typed fields; nobody reads
//! a document back by string keys.
//!
//! # Versions
//! Each top-level document carries `schema_version` ([`SCHEMA_VERSION`]). Within a version
//! changes are additive only: a new optional field, a new enum value in a field documented
//! as open. Every reader here is strict (unknown fields are refused, so a typo or a
//! document from a newer writer is an error, never a silent loss): readers are upgraded
//! before writers — the collector before its agents; the status client ships with its
//! agent. A removal or a change of meaning is a new version, and the collector then accepts
//! the previous one too.
//!
//! # Hostile text
//! Process names, command lines, paths, user names and probe answers come from the
//! monitored host and may be chosen by an attacker. They are carried as received (bounded
//! by the agent); whoever prints them escapes them for their medium.
//!
//! Must never: do I/O, depend on the agent's or the collector's internals.

pub mod api;
pub mod bounds;
pub mod finding;
pub mod protocol;
#[cfg(feature = "schema")]
pub mod schema;
pub mod status;
pub mod vocab;

pub use finding::{
    Event, EventKind, Evidence, Exception, Finding, Interface, LifecycleState, Match, Probe,
    Process, Socket, Subject, Tracked, Truncated,
};
pub use vocab::{Category, ProbeVerdict, Protocol, ProxyProtocol, Severity, SocketState};

/// The version of every document in this crate.
pub const SCHEMA_VERSION: u32 = 1;

/// The oldest `schema_version` a reader of this crate accepts.
pub const OLDEST_ACCEPTED_VERSION: u32 = 1;
