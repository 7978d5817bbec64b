//! The collector's own counters and the Prometheus text of `/metrics`.
//!
//! Must never: block the request path (atomics only).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit latency buckets, in seconds.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 11],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                if let Some(b) = self.buckets.get(i) {
                    b.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Prometheus histogram lines named `name`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let n = self.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Why a report request was refused (the `reason` label).
pub const REJECT_REASONS: &[&str] = &[
    "bad_json",
    "bad_schema_version",
    "bad_request",
    "too_large",
    "unauthorized",
    "forbidden",
    "busy",
    "internal",
];

/// Ingest counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub reports_stored: AtomicU64,
    pub reports_duplicate: AtomicU64,
    rejected: [AtomicU64; 8],
    pub enrollments: AtomicU64,
    /// Enrollments refused because the machine id's key is in use by a reporting agent.
    pub enrollments_in_use: AtomicU64,
}

impl Metrics {
    /// Counts a refused request under `reason` (one of [`REJECT_REASONS`]).
    pub fn reject(&self, reason: &str) {
        let i = REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REJECT_REASONS.len() - 1);
        if let Some(c) = self.rejected.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.rejected.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The counters as Prometheus text.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP aupwatch_collector_reports_total Reports received, by outcome.\n\
             # TYPE aupwatch_collector_reports_total counter\n\
             aupwatch_collector_reports_total{{outcome=\"stored\"}} {}\n\
             aupwatch_collector_reports_total{{outcome=\"duplicate\"}} {}",
            self.reports_stored.load(Ordering::Relaxed),
            self.reports_duplicate.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aupwatch_collector_rejected_requests_total Report requests refused, by reason.\n\
             # TYPE aupwatch_collector_rejected_requests_total counter"
        );
        for r in REJECT_REASONS {
            let _ = writeln!(
                out,
                "aupwatch_collector_rejected_requests_total{{reason=\"{r}\"}} {}",
                self.rejected(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP aupwatch_collector_enrollments_total Successful enrollments.\n\
             # TYPE aupwatch_collector_enrollments_total counter\n\
             aupwatch_collector_enrollments_total {}",
            self.enrollments.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aupwatch_collector_enrollments_in_use_total Enrollments refused because \
             another agent reports with the machine id's current key (duplicate machine ids).\n\
             # TYPE aupwatch_collector_enrollments_in_use_total counter\n\
             aupwatch_collector_enrollments_in_use_total {}",
            self.enrollments_in_use.load(Ordering::Relaxed)
        );
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
