//! The process's own resource use and the wall clock, by the OS's accounting: what
//! `scan --iterations` prints and what the agent reports about itself.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// CPU time used so far and peak resident memory (getrusage of this process).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub user: Duration,
    pub sys: Duration,
    pub max_rss_kib: u64,
}

impl Usage {
    /// This process's usage now. getrusage(RUSAGE_SELF) cannot fail with valid arguments;
    /// should it, zeros are reported.
    pub fn own() -> Usage {
        use nix::sys::resource::{getrusage, UsageWho};
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(u) => {
                let d = |t: nix::sys::time::TimeVal| {
                    Duration::from_secs(t.tv_sec().max(0) as u64)
                        + Duration::from_micros(t.tv_usec().max(0) as u64)
                };
                Usage {
                    user: d(u.user_time()),
                    sys: d(u.system_time()),
                    max_rss_kib: u.max_rss().max(0) as u64,
                }
            }
            Err(_) => Usage::default(),
        }
    }

    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// Measures one piece of work: wall time and the CPU time this process spent on it.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    wall: Instant,
    at: Usage,
}

/// What a piece of work cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spent {
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
}

impl Cost {
    pub fn start() -> Cost {
        Cost {
            wall: Instant::now(),
            at: Usage::own(),
        }
    }

    pub fn stop(&self) -> Spent {
        let now = Usage::own();
        Spent {
            wall: self.wall.elapsed(),
            user: now.user.saturating_sub(self.at.user),
            sys: now.sys.saturating_sub(self.at.sys),
        }
    }
}

impl Spent {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// Milliseconds as a float, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
