//! aupwatch: a host-level acceptable-use watchdog.
//!
//! Data flows one way: [`inventory`] reads the host into a `Snapshot`, [`signatures`] loads
//! and compiles the rules, [`detect`] judges (pure), and the binary prints or reports.

// stdout or stderr may be a closed pipe: `println!`/`eprintln!` would panic there. Writes go
// through `report::stderr_line` or a handled `write!`.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod config;
pub mod daemon;
pub mod detect;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod netns;
pub mod netns_helper;
pub mod probe;
pub mod report;
pub mod safefile;
pub mod scanner;
pub mod signatures;
pub mod tracker;
pub mod trust;
pub mod usage;
