//! The open-relay question to an SMTP server, over a [`Wire`]: the greeting, `EHLO`, `MAIL
//! FROM`, `RCPT TO` an address in a domain no server can serve (`.invalid`, RFC 2606), then
//! `RSET` and `QUIT` — never `DATA`, so no message is ever sent. Pure over the wire.
//!
//! `250`/`251` to RCPT: it would relay for this client (`open`). A refusal that names
//! relaying (`554 5.7.1 Relay access denied`, Postfix's `454 4.7.1 … Relay access denied`
//! with `defer_unauth_destination`, Exim's `550 relay not permitted`) or any other permanent
//! 5xx: `restricted`. A temporary or unrecognised answer: `inconclusive`, with the answer as
//! evidence.

use super::wire::{Conclusion, Exchange, Wire};
use super::{ProxyProtocol, Verdict};

/// The envelope sender and the foreign recipient the probe names.
pub const MAIL_FROM: &str = "aupwatch-probe@relay-probe.invalid";
pub const RCPT_TO: &str = "aupwatch-relay-test@relay-probe.invalid";

/// A complete SMTP reply: its code and its text (the lines joined by " / ", at most 200
/// characters; host-supplied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// Parses a complete reply (`NNN-…` continuation lines, then `NNN …`). `None`: read more.
/// `Some(Err)`: not SMTP.
pub fn parse_reply(bytes: &[u8]) -> Option<Result<Reply, ()>> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = Vec::new();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            return if bytes.len() > 4096 {
                Some(Err(()))
            } else {
                None
            };
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let b = line.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
            return Some(Err(()));
        }
        lines.push(line[3..].trim_start_matches(['-', ' ']).to_string());
        match b.get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => {
                let code: u16 = line[..3].parse().map_err(|_| ()).ok()?;
                if !(200..=599).contains(&code) {
                    return Some(Err(()));
                }
                let text: String = lines.join(" / ").chars().take(200).collect();
                return Some(Ok(Reply { code, text }));
            }
            Some(_) => return Some(Err(())),
        }
    }
    None
}

fn complete(b: &[u8]) -> bool {
    parse_reply(b).is_some()
}

fn conclude(verdict: Verdict, evidence: String) -> Conclusion {
    Conclusion {
        verdict,
        protocol: Some(ProxyProtocol::Smtp),
        evidence,
    }
}

/// Whether a refusal's text says it is about relaying.
fn names_relaying(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("relay")
        && [
            "denied",
            "not permitted",
            "prohibited",
            "not allowed",
            "refused",
        ]
        .iter()
        .any(|w| t.contains(w))
}

/// Asks the open-relay question and says goodbye.
pub fn relay(wire: &mut dyn Wire) -> Conclusion {
    if let Err(why) = wire.open() {
        return Conclusion {
            verdict: Verdict::NoAnswer,
            protocol: None,
            evidence: format!("cannot connect: {why}"),
        };
    }
    let mut said: Vec<String> = Vec::new();
    let c = converse(wire, &mut said);
    // Be polite whatever happened; the answers do not matter.
    let _ = wire.ask(b"RSET\r\n", &complete);
    let _ = wire.ask(b"QUIT\r\n", &complete);
    wire.close();
    c
}

fn converse(wire: &mut dyn Wire, said: &mut Vec<String>) -> Conclusion {
    let mut step = |wire: &mut dyn Wire, what: &str, request: &[u8]| -> Result<Reply, Conclusion> {
        match wire.ask(request, &complete) {
            Exchange::Reply { bytes, .. } => match parse_reply(&bytes) {
                Some(Ok(r)) => {
                    said.push(format!("{what} → {} {}", r.code, r.text));
                    Ok(r)
                }
                _ if bytes.is_empty() => Err(Conclusion {
                    verdict: Verdict::NoAnswer,
                    protocol: None,
                    evidence: format!("{}{what} → no answer", prefix(said)),
                }),
                _ => Err(Conclusion {
                    verdict: Verdict::NotProxy,
                    protocol: None,
                    evidence: format!("{}{what} → not an SMTP reply", prefix(said)),
                }),
            },
            Exchange::NoConnection(why) => Err(Conclusion {
                verdict: Verdict::NoAnswer,
                protocol: None,
                evidence: format!("{}{what}: {why}", prefix(said)),
            }),
        }
    };
    let greeting = match step(wire, "greeting", b"") {
        Ok(r) => r,
        Err(c) => return c,
    };
    if greeting.code != 220 {
        return conclude(
            Verdict::Inconclusive,
            format!("{}: it does not take mail now", said.join(", ")),
        );
    }
    let ehlo = match step(wire, "EHLO", b"EHLO aupwatch-probe.invalid\r\n") {
        Ok(r) => r,
        Err(c) => return c,
    };
    if ehlo.code != 250 {
        // An old server: HELO.
        match step(wire, "HELO", b"HELO aupwatch-probe.invalid\r\n") {
            Ok(r) if r.code == 250 => {}
            Ok(_) => {
                return conclude(
                    Verdict::Inconclusive,
                    format!("{}: no session", said.join(", ")),
                )
            }
            Err(c) => return c,
        }
    }
    let from = format!("MAIL FROM:<{MAIL_FROM}>\r\n");
    let mail = match step(wire, "MAIL FROM", from.as_bytes()) {
        Ok(r) => r,
        Err(c) => return c,
    };
    if mail.code != 250 {
        let v = if mail.code >= 500 {
            Verdict::Restricted
        } else {
            Verdict::Inconclusive
        };
        return conclude(
            v,
            format!("{}: the sender was not accepted", said.join(", ")),
        );
    }
    let to = format!("RCPT TO:<{RCPT_TO}>\r\n");
    let rcpt = match step(wire, "RCPT TO", to.as_bytes()) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let all = said.join(", ");
    match rcpt.code {
        250 | 251 => conclude(
            Verdict::Open,
            format!("{all}: it accepts mail for a domain it does not serve from a stranger, without authentication: an open relay (no DATA was sent)"),
        ),
        _ if names_relaying(&rcpt.text) => conclude(
            Verdict::Restricted,
            format!("{all}: it refuses to relay for this client"),
        ),
        500..=599 => conclude(
            Verdict::Restricted,
            format!("{all}: refused"),
        ),
        _ => conclude(
            Verdict::Inconclusive,
            format!("{all}: a temporary or unclear answer"),
        ),
    }
}

fn prefix(said: &[String]) -> String {
    if said.is_empty() {
        String::new()
    } else {
        format!("{}, ", said.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::wire::{End, Seen};
    use std::net::SocketAddr;

    /// An SMTP server scripted by command, recording what was sent.
    struct Mta {
        replies: Vec<(&'static str, &'static str)>,
        sent: Vec<String>,
    }

    impl Wire for Mta {
        fn canary(&self) -> SocketAddr {
            "127.0.0.1:1".parse().expect("addr")
        }
        fn token(&self) -> String {
            "t".into()
        }
        fn open(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn ask(&mut self, request: &[u8], _: &dyn Fn(&[u8]) -> bool) -> Exchange {
            let r = String::from_utf8_lossy(request).to_string();
            let key = if r.is_empty() {
                "greeting".to_string()
            } else {
                r.split([' ', ':', '\r'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            self.sent.push(r);
            let bytes = self
                .replies
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_bytes().to_vec())
                .unwrap_or_default();
            Exchange::Reply {
                bytes,
                end: End::Complete,
            }
        }
        fn close(&mut self) {}
        fn seen(&mut self) -> Seen {
            Seen::default()
        }
    }

    fn run(rcpt: &'static str) -> (Conclusion, Vec<String>) {
        let mut m = Mta {
            replies: vec![
                ("greeting", "220 mx.example ESMTP Postfix (Debian/GNU)\r\n"),
                (
                    "EHLO",
                    "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                ),
                ("MAIL", "250 2.1.0 Ok\r\n"),
                ("RCPT", rcpt),
                ("RSET", "250 2.0.0 Ok\r\n"),
                ("QUIT", "221 2.0.0 Bye\r\n"),
            ],
            sent: Vec::new(),
        };
        let c = relay(&mut m);
        (c, m.sent)
    }

    #[test]
    fn relay_verdicts() {
        let (c, sent) = run("250 2.1.5 Ok\r\n");
        assert_eq!(c.verdict, Verdict::Open, "{}", c.evidence);
        assert_eq!(c.protocol, Some(ProxyProtocol::Smtp));
        // Never DATA; RCPT names the .invalid domain; the session ends with QUIT.
        assert!(sent.iter().all(|s| !s.starts_with("DATA")), "{sent:?}");
        assert_eq!(
            sent.iter()
                .map(|s| s.split([' ', ':', '\r']).next().unwrap_or_default())
                .collect::<Vec<_>>(),
            ["", "EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
        );
        assert!(sent[3].contains("@relay-probe.invalid>"), "{sent:?}");
        // Postfix's default: defer_unauth_destination, a 4xx that names relaying.
        let (c, _) =
            run("454 4.7.1 <aupwatch-relay-test@relay-probe.invalid>: Relay access denied\r\n");
        assert_eq!(c.verdict, Verdict::Restricted, "{}", c.evidence);
        assert!(c.evidence.contains("Relay access denied"), "{}", c.evidence);
        // Exim's.
        let (c, _) = run("550 relay not permitted\r\n");
        assert_eq!(c.verdict, Verdict::Restricted);
        // Another permanent refusal.
        let (c, _) = run("550 5.1.1 no such user\r\n");
        assert_eq!(c.verdict, Verdict::Restricted);
        // Greylisting, a full disk: temporary, with the answer as evidence.
        let (c, _) = run("451 4.7.1 Please try again later\r\n");
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert!(
            c.evidence.contains("451 4.7.1 Please try again later"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(b"250-a\r\n250 b\r\n"),
            Some(Ok(Reply {
                code: 250,
                text: "a / b".into()
            }))
        );
        assert_eq!(parse_reply(b"250-a\r\n"), None);
        assert_eq!(parse_reply(b"220 x"), None);
        assert_eq!(parse_reply(b"HTTP/1.1 400 Bad\r\n"), Some(Err(())));
        assert_eq!(
            parse_reply(b"220\r\n").map(|r| r.map(|r| r.code)),
            Some(Ok(220))
        );
    }

    #[test]
    fn not_smtp() {
        let mut m = Mta {
            replies: vec![("greeting", "SSH-2.0-OpenSSH_9.2\r\n")],
            sent: Vec::new(),
        };
        let c = relay(&mut m);
        assert_eq!(c.verdict, Verdict::NotProxy, "{}", c.evidence);
    }
}
