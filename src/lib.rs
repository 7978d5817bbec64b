//! aupwatch: a host-level acceptable-use watchdog.
//!
//! Data flows one way: [`inventory`] reads the host into a `Snapshot`, [`signatures`] loads
//! and compiles the rules, [`detect`] judges (pure), and the binary prints or reports.

pub mod config;
pub mod daemon;
pub mod detect;
pub mod inventory;
pub mod netns;
pub mod probe;
pub mod report;
pub mod scanner;
pub mod signatures;
pub mod tracker;
pub mod usage;
