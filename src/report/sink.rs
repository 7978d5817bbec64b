//! A sink's delivery counters (syslog, event log). The agent keeps them apart from the sink
//! itself, so they count since the agent started and survive a reload that rebuilds the sink.

use aupwatch_proto::status::Sink;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub errors: u64,
    /// Events lost: a failed delivery is not retried (the sink reconnects for the next).
    pub dropped: u64,
    /// The error of the latest delivery; `None` once one succeeds again.
    pub last_error: Option<String>,
}

impl Counters {
    /// Counts one delivery of one event. Returns whether this failure follows a success
    /// (the one worth a log line; later ones are counted in status).
    pub fn record<E: std::fmt::Display>(&mut self, result: Result<(), E>) -> bool {
        match result {
            Ok(()) => {
                self.sent += 1;
                self.last_error = None;
                false
            }
            Err(e) => {
                self.errors += 1;
                self.dropped += 1;
                self.last_error.replace(e.to_string()).is_none()
            }
        }
    }

    /// The sink was pointed elsewhere: its last error was about the old target.
    pub fn retarget(&mut self) {
        self.last_error = None;
    }

    /// As the status document shows it.
    pub fn sink(&self, target: String) -> Sink {
        Sink {
            target,
            sent: self.sent,
            errors: self.errors,
            dropped: self.dropped,
            last_error: self.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reports_the_first_failure_only() {
        let mut c = Counters::default();
        assert!(!c.record(Ok::<(), String>(())));
        assert!(c.record(Err("down")));
        assert!(!c.record(Err("still down")));
        assert_eq!(
            (c.sent, c.errors, c.dropped, c.last_error.as_deref()),
            (1, 2, 2, Some("still down"))
        );
        assert!(!c.record(Ok::<(), String>(())));
        assert_eq!(c.last_error, None);
        let s = c.sink("t".into());
        assert_eq!((s.sent, s.errors, s.target.as_str()), (2, 2, "t"));
    }
}
