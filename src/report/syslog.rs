//! Findings and lifecycle changes to syslog, RFC 5424 with structured data, so SIEM pipelines
//! get signature ids, category, severity, pid and exe as fields. Rendered from the same typed
//! events (`aupwatch_proto::Event`) as the event log: one message per verdict. A syslog that
//! is down costs a counted error (the agent counts) and a reconnect on the next event, never
//! the agent.

use super::printable;
use aupwatch_proto::{Event, EventKind, Severity, Subject};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use syslog::{Facility, Formatter5424, Logger, LoggerBackend};

/// SD-ID of our structured data element: RFC 5612's documentation enterprise number.
pub const SD_ID: &str = "aupwatch@32473";

pub struct Syslog {
    socket: PathBuf,
    formatter: Formatter5424,
    logger: Option<Logger<LoggerBackend, Formatter5424>>,
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
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one event; on failure drops the connection (the next send reconnects) and
    /// returns the error for the caller to count.
    pub fn send(&mut self, event: &Event) -> Result<(), String> {
        let result = self.try_send(event);
        if result.is_err() {
            self.logger = None;
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
        // A change or a repeat is told at the finding's severity, like its first sighting.
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
///
/// `signature` in the structured data lists the verdict's signatures, comma-separated,
/// highest severity first; the probe fields are the weightiest probe result of its matches.
pub fn render(event: &Event) -> (u32, BTreeMap<String, BTreeMap<String, String>>, String) {
    let t = &event.tracked;
    let f = &t.finding;
    let signatures: Vec<&str> = f.signatures().collect();
    let mut sd = BTreeMap::new();
    sd.insert("event".to_string(), kind(event.kind).to_string());
    sd.insert("id".to_string(), t.id.clone());
    sd.insert("signature".to_string(), signatures.join(","));
    sd.insert("category".to_string(), f.category.to_string());
    sd.insert("severity".to_string(), f.severity.to_string());
    let subject = match &f.subject {
        Subject::Process(p) => {
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
        Subject::Interface(i) => {
            sd.insert("interface".to_string(), printable(&i.name));
            sd.insert("netns".to_string(), i.netns.to_string());
            format!("interface {}", printable(&i.name))
        }
        Subject::Host => "host".to_string(),
    };
    if let Some(x) = &t.excepted {
        sd.insert("excepted".to_string(), printable(&x.reason));
    }
    let weightiest = f
        .matches
        .iter()
        .filter_map(|m| m.probe.as_ref())
        .max_by_key(|p| p.verdict.weight());
    let probe = match weightiest {
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
        .matches
        .iter()
        .map(|m| {
            let seen: Vec<String> = m
                .evidence
                .iter()
                .map(|e| format!("{}: {}", e.predicate, printable(&e.value)))
                .collect();
            if f.matches.len() == 1 {
                seen.join("; ")
            } else {
                format!("{} [{}]", m.signature, seen.join("; "))
            }
        })
        .collect();
    let excepted = match &t.excepted {
        Some(x) => format!(" [excepted: {}]", printable(&x.reason)),
        None => String::new(),
    };
    let message = format!(
        "{} {} ({} {}): {}; {}{probe}{excepted}",
        kind(event.kind),
        signatures.join(", "),
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
        EventKind::Changed => 4,
        EventKind::Ongoing => 5,
    };
    (msgid, data, message)
}

fn kind(k: EventKind) -> &'static str {
    match k {
        EventKind::New => "new",
        EventKind::Resolved => "resolved",
        EventKind::ExceptionChanged => "exception-changed",
        EventKind::Changed => "changed",
        EventKind::Ongoing => "ongoing",
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
        let verdicts = crate::detect::verdict::roll_up(vec![finding]);
        let events = tracker.update(verdicts, &[], 10);
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
                cmdline_truncated: None,
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
        let events = tracker.update(crate::detect::verdict::roll_up(vec![finding]), &[], 10);
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
