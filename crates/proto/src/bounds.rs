//! The sizes of what the agent keeps and writes of host-supplied text. Every process name,
//! command line, path and probe answer may be chosen by an attacker, so each is bounded
//! where it is read, and every document built from them is bounded in bytes. A bounded
//! string says so: a cut command line carries its full length and SHA-256
//! ([`crate::Truncated`]); other cut strings end in a marker naming their full length.

/// Bytes of a process's command line read into memory (the rest is hashed and counted).
pub const MAX_CMDLINE_BYTES: usize = 4096;

/// Bytes of one finding as one line of JSON with every control and format character
/// escaped (`\uXXXX`): what an event-log line, a syslog message's structured data, an
/// entry of the status document and an entry of a collector report carry of it.
pub const MAX_FINDING_BYTES: usize = 12 * 1024;

/// Bytes of one event-log line (a finding and its lifecycle around it).
pub const MAX_EVENT_LINE_BYTES: usize = 16 * 1024;

/// Bytes of the status document the status socket serves; findings past it are counted,
/// not listed.
pub const MAX_STATUS_BYTES: usize = 4 * 1024 * 1024;
