//! Report: every side effect towards the outside — syslog, the JSON event log, the status
//! socket, sd_notify — and the agent's own log lines. Nothing here decides anything.

pub mod collector;
pub mod eventlog;
pub mod notify;
pub mod spool;
pub mod status;
pub mod syslog;

/// Makes host-supplied text safe for a terminal or a log line: control characters (escape
/// sequences, newlines) become visible escapes.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

/// One line of the agent's own log on stderr. Under systemd (`$JOURNAL_STREAM` set) the
/// line carries a `<N>` priority prefix the journal understands.
pub fn log(level: Level, message: &str) {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let (prefix, word) = match level {
        Level::Error => ("<3>", "error"),
        Level::Warning => ("<4>", "warning"),
        Level::Info => ("<6>", "info"),
    };
    if journal {
        eprintln!("{prefix}{}", printable(message));
    } else {
        eprintln!("aupwatch: {word}: {}", printable(message));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(super::printable("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(super::printable("héllo wörld"), "héllo wörld");
    }
}
