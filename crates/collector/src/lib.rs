//! aupwatch-collector: the central collector of aupwatch agents.
//!
//! Agents enroll with a shared enroll secret and get their own node key; they send reports
//! (heartbeat, lifecycle events, the full open set of findings) which the collector stores
//! once each (idempotent by report id), acknowledging only after the commit. Operators read
//! the fleet through the query API (bearer tokens with roles) or the CLI.
//!
//! ```text
//! agent ──HTTP(S)──► http::app ──► Store (sqlite: one writer, group commit | postgres)
//!                                      ▲
//!          CLI (same binary) ──────────┘  liveness (a clock as input) · metrics
//! ```

pub mod alerts;
pub mod clock;
pub mod config;
pub mod escape;
pub mod http;
pub mod liveness;
pub mod metrics;
pub mod secret;
pub mod server;
pub mod store;
pub mod web;

/// One line of the collector's own log on stderr (escaped: it may quote host input).
pub fn log(message: &str) {
    eprintln!("aupwatch-collector: {}", escape::printable(message));
}
