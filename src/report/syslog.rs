//! Findings and lifecycle changes to syslog, RFC 5424 with structured data, so SIEM pipelines
//! get signature id, category, severity, pid and exe as fields. A syslog that is down costs
//! a counted error and a reconnect on the next event, never the agent.

use super::printable;
use crate::signatures::Severity;
use crate::tracker::{Event, EventKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use syslog::{Facility, Formatter5424, Logger, LoggerBackend};

/// SD-ID of our structured data element: RFC 5612's documentation enterprise number.
pub const SD_ID: &str = "aupwatch@32473";

pub struct Syslog {
    socket: PathBuf,
    formatter: Formatter5424,
    logger: Option<Logger<LoggerBackend, Formatter5424>>,
    pub sent: u64,
    pub errors: u64,
    /// The error of the latest send; `None` once a send succeeds again.
    pub last_error: Option<String>,
}

impl Syslog {
    pub fn new(socket: &Path, facility: Facility, hostname: &str) -> Syslog {
        Syslog {
            socket: socket.to_path_buf(),
            formatter: Formatter5424 {
                facility,
                hostname: Some(header_hostname(hostname)),
                process: "aupwatch".into(),
                pid: std::process::id(),
            },
            logger: None,
            sent: 0,
            errors: 0,
            last_error: None,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one event; on failure counts it, drops the connection and returns the error.
    pub fn send(&mut self, event: &Event) -> Result<(), String> {
        let result = self.try_send(event);
        match &result {
            Ok(()) => {
                self.sent += 1;
                self.last_error = None;
            }
            Err(e) => {
                self.errors += 1;
                self.last_error = Some(e.clone());
                self.logger = None;
            }
        }
        result
    }

    fn try_send(&mut self, event: &Event) -> Result<(), String> {
        if self.logger.is_none() {
            let logger =
                syslog::unix_custom(self.formatter.clone(), &self.socket).map_err(|e| {
                    format!("cannot connect to syslog at {}: {e}", self.socket.display())
                })?;
            self.logger = Some(logger);
        }
        let (msgid, data, message) = render(event);
        let logger = self.logger.as_mut().ok_or("syslog not connected")?;
        let excepted = event.tracked.excepted.is_some();
        let severity = event.tracked.finding.severity;
        let payload = (msgid, data, message);
        let sent = match (event.kind, excepted, severity) {
            (EventKind::Resolved, _, _) | (_, true, _) | (_, _, Severity::Info) => {
                logger.info(payload)
            }
            (_, _, Severity::Low) => logger.notice(payload),
            (_, _, Severity::Medium) => logger.warning(payload),
            (_, _, Severity::High) => logger.err(payload),
            (_, _, Severity::Critical) => logger.crit(payload),
        };
        sent.map_err(|e| format!("syslog write to {} failed: {e}", self.socket.display()))
    }
}

/// An RFC 5424 HOSTNAME: 1-255 printable US-ASCII characters, no spaces; `-` when unknown.
/// Anything else (the kernel accepts any bytes as a host name) becomes `_`.
fn header_hostname(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(255)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "-".to_string()
    } else {
        cleaned
    }
}

/// MSGID (numeric, as the crate wants), structured data and message text of one event.
pub fn render(event: &Event) -> (u32, BTreeMap<String, BTreeMap<String, String>>, String) {
    let t = &event.tracked;
    let f = &t.finding;
    let mut sd = BTreeMap::new();
    sd.insert("event".to_string(), kind(event.kind).to_string());
    sd.insert("id".to_string(), t.id.clone());
    sd.insert("signature".to_string(), f.signature.clone());
    sd.insert("category".to_string(), f.category.to_string());
    sd.insert("severity".to_string(), f.severity.to_string());
    let subject = match (&f.process, &f.interface) {
        (Some(p), _) => {
            sd.insert("pid".to_string(), p.pid.to_string());
            sd.insert("uid".to_string(), p.uid.to_string());
            if let Some(exe) = &p.exe {
                sd.insert("exe".to_string(), printable(exe));
            }
            sd.insert("comm".to_string(), printable(&p.comm));
            sd.insert("netns".to_string(), p.netns.to_string());
            format!(
                "pid {} ({}) user {}",
                p.pid,
                printable(&p.comm),
                printable(p.user.as_deref().unwrap_or("?"))
            )
        }
        (None, Some(i)) => {
            sd.insert("interface".to_string(), printable(&i.name));
            sd.insert("netns".to_string(), i.netns.to_string());
            format!("interface {}", printable(&i.name))
        }
        (None, None) => "host".to_string(),
    };
    if let Some(x) = &t.excepted {
        sd.insert("excepted".to_string(), printable(&x.reason));
    }
    let probe = match &f.probe {
        Some(p) => {
            sd.insert("probe".to_string(), p.verdict.to_string());
            if let Some(proto) = p.protocol {
                sd.insert("probe_protocol".to_string(), proto.to_string());
            }
            sd.insert("probe_address".to_string(), p.address.to_string());
            let protocol = p.protocol.map_or(String::new(), |x| format!(" {x}"));
            format!(
                "; probe: {}{protocol} at {}: {}",
                p.verdict,
                p.address,
                printable(&p.evidence)
            )
        }
        None => String::new(),
    };
    let evidence: Vec<String> = f
        .evidence
        .iter()
        .map(|e| format!("{}: {}", e.predicate, printable(&e.value)))
        .collect();
    let excepted = match &t.excepted {
        Some(x) => format!(" [excepted: {}]", printable(&x.reason)),
        None => String::new(),
    };
    let message = format!(
        "{} {} ({} {}): {}; {}{probe}{excepted}",
        kind(event.kind),
        f.signature,
        f.category,
        f.severity,
        subject,
        evidence.join("; ")
    );
    let mut data = BTreeMap::new();
    data.insert(SD_ID.to_string(), sd);
    let msgid = match event.kind {
        EventKind::New => 1,
        EventKind::Resolved => 2,
        EventKind::ExceptionChanged => 3,
    };
    (msgid, data, message)
}

fn kind(k: EventKind) -> &'static str {
    match k {
        EventKind::New => "new",
        EventKind::Resolved => "resolved",
        EventKind::ExceptionChanged => "exception-changed",
    }
}

#[cfg(test)]
mod tests {
    use crate::probe::{ProbeReport, ProxyProtocol, Verdict};

    #[test]
    fn a_probe_result_is_in_the_structured_data_and_the_message() {
        let finding = crate::detect::Finding {
            signature: "proxy.software-public".into(),
            category: crate::signatures::Category::Proxy,
            severity: crate::signatures::Severity::High,
            description: "d".into(),
            aup: "a".into(),
            process: None,
            interface: None,
            host: false,
            related_pids: vec![],
            sockets: vec![],
            evidence: vec![],
            probe: Some(ProbeReport {
                verdict: Verdict::Open,
                protocol: Some(ProxyProtocol::Socks5),
                address: "127.0.0.1:1080".parse().expect("addr"),
                netns: 1,
                inode: 2,
                evidence: "server chose 0x00\u{1b}[31m".into(),
                probed_at_unix_ms: 3,
            }),
        };
        let mut tracker = crate::tracker::Tracker::new("h");
        let events = tracker.update(vec![finding], &[], 10);
        let (_, sd, message) = super::render(&events[0]);
        let sd = &sd[super::SD_ID];
        assert_eq!(sd.get("probe").map(String::as_str), Some("open"));
        assert_eq!(sd.get("probe_protocol").map(String::as_str), Some("socks5"));
        assert_eq!(
            sd.get("probe_address").map(String::as_str),
            Some("127.0.0.1:1080")
        );
        assert!(
            message.contains("; probe: open socks5 at 127.0.0.1:1080: server chose 0x00"),
            "{message}"
        );
        // Host-supplied bytes are escaped.
        assert!(!message.contains('\u{1b}'), "{message}");
    }

    /// A process name with a right-to-left override, a zero-width space and an escape
    /// sequence: escaped in the structured data and the message alike.
    #[test]
    fn format_and_control_characters_are_escaped() {
        let finding = crate::detect::Finding {
            signature: "mining.xmrig".into(),
            category: crate::signatures::Category::Mining,
            severity: crate::signatures::Severity::High,
            description: "d".into(),
            aup: "a".into(),
            process: Some(crate::detect::ProcessRef {
                pid: 7,
                ppid: 1,
                start_ticks: 1,
                uid: 0,
                user: Some("r\u{200b}oot".into()),
                comm: "gpj\u{202e}xcod\u{1b}[2J".into(),
                exe: Some("/tmp/gpj\u{202e}xcod".into()),
                exe_deleted: false,
                cmdline: vec![],
                netns: 1,
                container: None,
            }),
            interface: None,
            host: false,
            related_pids: vec![],
            sockets: vec![],
            evidence: vec![crate::detect::Evidence {
                predicate: "name".into(),
                value: "comm \"gpj\u{202e}xcod\"".into(),
            }],
            probe: None,
        };
        let mut tracker = crate::tracker::Tracker::new("h");
        let events = tracker.update(vec![finding], &[], 10);
        let (_, sd, message) = super::render(&events[0]);
        let sd = &sd[super::SD_ID];
        assert_eq!(
            sd.get("comm").map(String::as_str),
            Some("gpj\\u{202e}xcod\\u{1b}[2J")
        );
        assert_eq!(
            sd.get("exe").map(String::as_str),
            Some("/tmp/gpj\\u{202e}xcod")
        );
        for text in sd.values().chain([&message]) {
            assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() || "\u{202e}\u{200b}".contains(c)),
                "{text:?}"
            );
        }
        assert!(message.contains("user r\\u{200b}oot"), "{message}");
    }

    #[test]
    fn header_hostnames_stay_one_token() {
        assert_eq!(super::header_hostname("web-17.example"), "web-17.example");
        assert_eq!(super::header_hostname("a host\n"), "a_host_");
        assert_eq!(super::header_hostname(""), "-");
        assert_eq!(super::header_hostname("hôte"), "h_te");
    }
}
