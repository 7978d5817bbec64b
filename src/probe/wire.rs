//! One probe of one listening socket: the order of questions and what each answer means
//! ([`sequence`], pure over a [`Wire`]), and the real wire ([`Tcp`]): one TCP connection
//! per question, with timeouts, closed as soon as the reply is read.

use super::http::{self, parse_status};
use super::socks::{self, parse_socks4, parse_socks5, Socks4Reply, Socks5Reply};
use super::{ProxyProtocol, Verdict};
use nix::sys::socket::{
    bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use nix::sys::time::TimeVal;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How one question's reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reply was complete (enough bytes to judge).
    Complete,
    /// The server closed (or reset) the connection.
    Closed,
    /// The server said nothing more within the timeout.
    Quiet,
}

/// The result of one question: a connection, the request, whatever came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    Reply {
        bytes: Vec<u8>,
        end: End,
    },
    /// No connection could be made (refused, timed out, budget used up): why.
    NoConnection(String),
}

/// Something that asks one question per connection.
pub trait Wire {
    /// Connects, sends `request`, reads until `complete` says the reply can be judged, the
    /// server closes, or the timeout; then closes the connection.
    fn exchange(&mut self, request: &[u8], complete: &dyn Fn(&[u8]) -> bool) -> Exchange;
}

/// What a probe concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    pub verdict: Verdict,
    pub protocol: Option<ProxyProtocol>,
    pub evidence: String,
}

fn conclude(verdict: Verdict, protocol: Option<ProxyProtocol>, evidence: String) -> Conclusion {
    Conclusion {
        verdict,
        protocol,
        evidence,
    }
}

/// A gateway answer, or a tunnel: the proxy tried to serve the request.
fn served(code: u16) -> bool {
    matches!(code, 200 | 502 | 503 | 504)
}

/// Asks, in order, until one answer is conclusive: HTTP `CONNECT 127.0.0.1:<closed_port>`
/// (then an absolute-form GET when CONNECT did not settle it, and an origin-form `GET /` as
/// a control when either looked served), the SOCKS5 method negotiation, a SOCKS4 CONNECT.
/// A server that answers HTTP is not asked SOCKS (it would wait for a line end).
pub fn sequence(wire: &mut dyn Wire, closed_port: u16) -> Conclusion {
    let http_done = |b: &[u8]| parse_status(b).is_some();
    let mut notes: Vec<String> = Vec::new();
    let mut heard = false;

    // 1. HTTP CONNECT.
    let connect = http::connect_request(closed_port);
    let c = match wire.exchange(connect.as_bytes(), &http_done) {
        Exchange::NoConnection(why) => {
            return conclude(Verdict::NoAnswer, None, format!("cannot connect: {why}"))
        }
        Exchange::Reply { bytes, end } => match parse_status(&bytes) {
            Some(Ok(s)) => Some(s),
            _ => {
                heard |= !bytes.is_empty();
                notes.push(format!("HTTP CONNECT: {}", describe(&bytes, end)));
                None
            }
        },
    };
    if let Some(c) = c {
        return http_verdict(wire, closed_port, c);
    }

    // 2. SOCKS5 method negotiation.
    match wire.exchange(&socks::SOCKS5_GREETING, &|b| {
        b.len() >= socks::SOCKS5_REPLY_LEN
    }) {
        Exchange::NoConnection(why) => notes.push(format!("SOCKS5: cannot connect: {why}")),
        Exchange::Reply { bytes, end } => {
            let said = |what: &str| {
                format!("SOCKS5 method negotiation (offered 0x00 no authentication, 0x02 username/password): {what}")
            };
            let p = Some(ProxyProtocol::Socks5);
            match parse_socks5(&bytes) {
                Some(Ok(Socks5Reply::NoAuth)) => {
                    return conclude(
                        Verdict::Open,
                        p,
                        said("server chose 0x00, no authentication"),
                    )
                }
                Some(Ok(Socks5Reply::UserPass)) => {
                    return conclude(
                        Verdict::Authenticated,
                        p,
                        said("server chose 0x02, username/password"),
                    )
                }
                Some(Ok(Socks5Reply::NoAcceptable)) => {
                    return conclude(
                        Verdict::Authenticated,
                        p,
                        said("server refused both (0xFF): it wants another authentication method"),
                    )
                }
                Some(Ok(Socks5Reply::Unoffered(m))) => {
                    return conclude(
                        Verdict::Inconclusive,
                        p,
                        said(&format!("server chose 0x{m:02x}, which was not offered")),
                    )
                }
                _ => {
                    heard |= !bytes.is_empty();
                    notes.push(format!("SOCKS5: {}", describe(&bytes, end)));
                }
            }
        }
    }

    // 3. SOCKS4 CONNECT to the closed port.
    let req = socks::socks4_connect(closed_port);
    match wire.exchange(&req, &|b| b.len() >= socks::SOCKS4_REPLY_LEN) {
        Exchange::NoConnection(why) => notes.push(format!("SOCKS4: cannot connect: {why}")),
        Exchange::Reply { bytes, end } => {
            let said = |what: &str| format!("SOCKS4 CONNECT 127.0.0.1:{closed_port}: {what}");
            let p = Some(ProxyProtocol::Socks4);
            match parse_socks4(&bytes) {
                Some(Ok(Socks4Reply::Granted)) => {
                    return conclude(Verdict::Open, p, said("granted (0x5A)"))
                }
                Some(Ok(Socks4Reply::RejectedOrFailed)) => {
                    return conclude(
                        Verdict::Inconclusive,
                        p,
                        said("rejected or failed (0x5B): SOCKS4 does not tell a refusal from a failed connection to the closed port"),
                    )
                }
                Some(Ok(Socks4Reply::Ident(c))) => {
                    return conclude(
                        Verdict::Authenticated,
                        p,
                        said(&format!("wants identd to vouch for the user (0x{c:02X})")),
                    )
                }
                _ => {
                    heard |= !bytes.is_empty();
                    notes.push(format!("SOCKS4: {}", describe(&bytes, end)));
                }
            }
        }
    }
    let verdict = if heard {
        Verdict::NotProxy
    } else {
        Verdict::NoAnswer
    };
    conclude(verdict, None, notes.join("; "))
}

/// The HTTP side once CONNECT got a status line.
fn http_verdict(wire: &mut dyn Wire, port: u16, c: http::Status) -> Conclusion {
    let p = Some(ProxyProtocol::Http);
    let connect = format!("CONNECT 127.0.0.1:{port} → {:?}", c.line);
    if c.code == 407 {
        return conclude(
            Verdict::Authenticated,
            p,
            format!("{connect}: wants proxy credentials"),
        );
    }
    let mut said = vec![connect];
    let mut served_by = served(c.code).then_some(c.code);
    if served_by.is_none() {
        match status_of(wire, &http::get_request(port, true)) {
            Some(g) => {
                said.push(format!("GET http://127.0.0.1:{port}/ → {:?}", g.line));
                if g.code == 407 {
                    return conclude(
                        Verdict::Authenticated,
                        p,
                        format!("{}: wants proxy credentials", said.join(", ")),
                    );
                }
                // 200 is not one: a web server answers an absolute-form GET with its own
                // page (HTTP/1.1 servers must accept that form), and a proxy cannot have
                // fetched anything from the closed port.
                if matches!(g.code, 502..=504) {
                    served_by = Some(g.code);
                }
            }
            None => said.push(format!("GET http://127.0.0.1:{port}/ → no HTTP reply")),
        }
    }
    if let Some(code) = served_by {
        // The control: a server that answers `GET /` the same way answers everything so
        // (a gateway whose own backend is down, a catch-all page): it did not serve us.
        let control = status_of(wire, &http::get_request(port, false));
        let same = control
            .as_ref()
            .is_some_and(|k| served(k.code) && (k.code == 200) == (code == 200));
        said.push(match &control {
            Some(k) => format!("control GET / → {:?}", k.line),
            None => "control GET / → no HTTP reply".to_string(),
        });
        if !same {
            return conclude(
                Verdict::Open,
                p,
                format!(
                    "{}: it tried to reach 127.0.0.1:{port} for us, without credentials",
                    said.join(", ")
                ),
            );
        }
        said.push("it answers every request so: not a forward proxy".into());
    }
    if c.code == 403 {
        return conclude(
            Verdict::Restricted,
            p,
            format!("{}: refuses this client", said.join(", ")),
        );
    }
    conclude(
        Verdict::NotProxy,
        p,
        format!("{}: an HTTP server, not a proxy", said.join(", ")),
    )
}

fn status_of(wire: &mut dyn Wire, request: &str) -> Option<http::Status> {
    match wire.exchange(request.as_bytes(), &|b| parse_status(b).is_some()) {
        Exchange::Reply { bytes, .. } => parse_status(&bytes).and_then(Result::ok),
        Exchange::NoConnection(_) => None,
    }
}

/// A few words on an unrecognised reply: what ended it and its first bytes.
fn describe(bytes: &[u8], end: End) -> String {
    let how = match end {
        End::Complete => "replied",
        End::Closed => "closed the connection",
        End::Quiet => "went quiet",
    };
    if bytes.is_empty() {
        return format!("{how} without a reply");
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 8 { " …" } else { "" };
    format!(
        "{how} after {} byte(s) that are not a reply of this protocol ({}{more})",
        bytes.len(),
        hex.join(" ")
    )
}

/// The real wire: a TCP connection per question to `addr`, in the calling thread's network
/// namespace. With `bind_source`, the client socket is bound to `addr`'s own IP first: that
/// fails unless the address is local in this namespace, so the probe never leaves the host
/// (a listener can bind a foreign address with `IP_FREEBIND`), and the proxy sees a client
/// that is not 127.0.0.1.
#[derive(Debug)]
pub struct Tcp {
    pub addr: SocketAddr,
    pub bind_source: bool,
    /// Timeout of each connect and each question.
    pub step: Duration,
    /// No question starts, and none lasts, past this.
    pub deadline: Instant,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the probe's time budget is used up")]
    Budget,
    #[error("{what}: {errno}")]
    Sys {
        what: &'static str,
        errno: nix::Error,
    },
    #[error("{0} is not a local address in this network namespace ({1}); not probed")]
    NotLocal(IpAddr, nix::Error),
    #[error("no answer to the connection within {0:?}")]
    Timeout(Duration),
}

impl Tcp {
    fn connect(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let sys = |what| move |errno| ConnectError::Sys { what, errno };
        let family = match self.addr {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .map_err(sys("socket"))?;
        // Linux bounds a blocking connect by the send timeout.
        let tv = TimeVal::new(
            timeout.as_secs().try_into().unwrap_or(i64::MAX),
            timeout.subsec_micros().into(),
        );
        setsockopt(&fd, sockopt::SendTimeout, &tv).map_err(sys("setsockopt"))?;
        if self.bind_source {
            let source = SockaddrStorage::from(SocketAddr::new(self.addr.ip(), 0));
            bind(fd.as_raw_fd(), &source).map_err(|e| ConnectError::NotLocal(self.addr.ip(), e))?;
        }
        match connect(fd.as_raw_fd(), &SockaddrStorage::from(self.addr)) {
            Ok(()) => Ok(TcpStream::from(fd)),
            Err(nix::Error::EINPROGRESS | nix::Error::EAGAIN | nix::Error::ETIMEDOUT) => {
                Err(ConnectError::Timeout(timeout))
            }
            Err(errno) => Err(ConnectError::Sys {
                what: "connect",
                errno,
            }),
        }
    }
}

impl Wire for Tcp {
    fn exchange(&mut self, request: &[u8], complete: &dyn Fn(&[u8]) -> bool) -> Exchange {
        let start = Instant::now();
        let step = self
            .step
            .min(self.deadline.saturating_duration_since(start));
        if step < Duration::from_millis(10) {
            return Exchange::NoConnection(ConnectError::Budget.to_string());
        }
        let end_at = start + step;
        let mut stream = match self.connect(step) {
            Ok(s) => s,
            Err(e) => return Exchange::NoConnection(e.to_string()),
        };
        let left = || end_at.saturating_duration_since(Instant::now());
        let quiet = |bytes: Vec<u8>| Exchange::Reply {
            bytes,
            end: End::Quiet,
        };
        if stream
            .set_write_timeout(Some(left().max(Duration::from_millis(1))))
            .is_err()
            || stream.write_all(request).is_err()
        {
            return Exchange::Reply {
                bytes: Vec::new(),
                end: End::Closed,
            };
        }
        let mut bytes = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            if complete(&bytes) {
                return Exchange::Reply {
                    bytes,
                    end: End::Complete,
                };
            }
            if bytes.len() >= http::MAX_STATUS_LINE {
                return quiet(bytes);
            }
            let t = left();
            if t.is_zero() || stream.set_read_timeout(Some(t)).is_err() {
                return quiet(bytes);
            }
            match stream.read(&mut buf) {
                Ok(0) => {
                    return Exchange::Reply {
                        bytes,
                        end: End::Closed,
                    }
                }
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return quiet(bytes)
                }
                Err(_) => {
                    return Exchange::Reply {
                        bytes,
                        end: End::Closed,
                    }
                }
            }
        }
        // `stream` is dropped here: the connection is closed right after the reply.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies scripted per request kind, recording what was asked.
    struct Script {
        replies: Vec<(&'static str, Exchange)>,
        asked: Vec<String>,
    }

    fn kind(request: &[u8]) -> &'static str {
        if request.starts_with(b"CONNECT ") {
            "connect"
        } else if request.starts_with(b"GET http://") {
            "get"
        } else if request.starts_with(b"GET / ") {
            "control"
        } else if request.first() == Some(&5) {
            "socks5"
        } else if request.first() == Some(&4) {
            "socks4"
        } else {
            "?"
        }
    }

    impl Wire for Script {
        fn exchange(&mut self, request: &[u8], _: &dyn Fn(&[u8]) -> bool) -> Exchange {
            let k = kind(request);
            self.asked.push(k.to_string());
            self.replies
                .iter()
                .find(|(want, _)| *want == k)
                .map(|(_, r)| r.clone())
                .unwrap_or(Exchange::Reply {
                    bytes: Vec::new(),
                    end: End::Closed,
                })
        }
    }

    fn reply(bytes: &[u8]) -> Exchange {
        Exchange::Reply {
            bytes: bytes.to_vec(),
            end: End::Complete,
        }
    }

    fn run(replies: Vec<(&'static str, Exchange)>) -> (Conclusion, Vec<String>) {
        let mut s = Script {
            replies,
            asked: Vec::new(),
        };
        let c = sequence(&mut s, 443);
        (c, s.asked)
    }

    #[test]
    fn socks5_servers() {
        // microsocks / dante without authentication: HTTP gets dropped, SOCKS5 chooses 0x00.
        let (c, asked) = run(vec![("socks5", reply(&[5, 0]))]);
        assert_eq!(c.verdict, Verdict::Open);
        assert_eq!(c.protocol, Some(ProxyProtocol::Socks5));
        assert!(
            c.evidence.contains("server chose 0x00, no authentication"),
            "{}",
            c.evidence
        );
        assert_eq!(asked, ["connect", "socks5"]);
        // With username/password, and one that wants GSSAPI.
        let (c, _) = run(vec![("socks5", reply(&[5, 2]))]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        let (c, _) = run(vec![("socks5", reply(&[5, 0xFF]))]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        let (c, _) = run(vec![("socks5", reply(&[5, 1]))]);
        assert_eq!(c.verdict, Verdict::Inconclusive);
    }

    #[test]
    fn socks4_servers() {
        let r = |cd: u8| reply(&[0, cd, 0, 0, 0, 0, 0, 0]);
        let (c, asked) = run(vec![("socks4", r(0x5A))]);
        assert_eq!(
            (c.verdict, c.protocol),
            (Verdict::Open, Some(ProxyProtocol::Socks4))
        );
        assert_eq!(asked, ["connect", "socks5", "socks4"]);
        let (c, _) = run(vec![("socks4", r(0x5B))]);
        assert_eq!(c.verdict, Verdict::Inconclusive);
        let (c, _) = run(vec![("socks4", r(0x5D))]);
        assert_eq!(c.verdict, Verdict::Authenticated);
    }

    #[test]
    fn http_proxies() {
        let st = |line: &str| reply(format!("{line}\r\nServer: x\r\n").as_bytes());
        // squid, http_access allow all: CONNECT to the closed port fails with 503; the
        // control GET / is an invalid-URL 400.
        let (c, asked) = run(vec![
            ("connect", st("HTTP/1.1 503 Service Unavailable")),
            ("control", st("HTTP/1.1 400 Bad Request")),
        ]);
        assert_eq!(
            (c.verdict, c.protocol),
            (Verdict::Open, Some(ProxyProtocol::Http))
        );
        assert_eq!(asked, ["connect", "control"]);
        // Credentials wanted: on CONNECT, or only on GET.
        let (c, asked) = run(vec![(
            "connect",
            st("HTTP/1.1 407 Proxy Authentication Required"),
        )]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        assert_eq!(asked, ["connect"]);
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 405 Method Not Allowed")),
            ("get", st("HTTP/1.1 407 Proxy Authentication Required")),
        ]);
        assert_eq!(c.verdict, Verdict::Authenticated);
        // squid, http_access deny all: 403 everywhere.
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 403 Forbidden")),
            ("get", st("HTTP/1.1 403 Forbidden")),
        ]);
        assert_eq!(c.verdict, Verdict::Restricted);
        // CONNECT refused for its port, but an absolute GET is forwarded: open.
        let (c, asked) = run(vec![
            ("connect", st("HTTP/1.1 403 Forbidden")),
            ("get", st("HTTP/1.1 502 Bad Gateway")),
            ("control", st("HTTP/1.1 400 Bad Request")),
        ]);
        assert_eq!(c.verdict, Verdict::Open);
        assert_eq!(asked, ["connect", "get", "control"]);
    }

    #[test]
    fn http_servers_that_are_not_proxies() {
        let st = |line: &str| reply(format!("{line}\r\n").as_bytes());
        // python3 -m http.server: 501 to CONNECT, its own listing for the absolute GET.
        let (c, asked) = run(vec![
            ("connect", st("HTTP/1.0 501 Unsupported method ('CONNECT')")),
            ("get", st("HTTP/1.0 200 OK")),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
        assert_eq!(asked, ["connect", "get"]);
        // A reverse proxy whose backend is down: 502 for anything, the control too.
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 400 Bad Request")),
            ("get", st("HTTP/1.1 502 Bad Gateway")),
            ("control", st("HTTP/1.1 502 Bad Gateway")),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
        // A catch-all server that says 200 to everything, CONNECT included.
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 200 OK")),
            ("control", st("HTTP/1.1 200 OK")),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
        // A web server that forbids "/": a 403 to GET alone is not a proxy's refusal.
        let (c, _) = run(vec![
            ("connect", st("HTTP/1.1 400 Bad Request")),
            ("get", st("HTTP/1.1 403 Forbidden")),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
    }

    #[test]
    fn silence_refusal_and_other_protocols() {
        // Nothing listens any more.
        let (c, asked) = run(vec![(
            "connect",
            Exchange::NoConnection("connect: ECONNREFUSED".into()),
        )]);
        assert_eq!(c.verdict, Verdict::NoAnswer);
        assert_eq!(asked, ["connect"]);
        // Accepts and closes every time.
        let (c, asked) = run(vec![]);
        assert_eq!(c.verdict, Verdict::NoAnswer);
        assert_eq!(asked, ["connect", "socks5", "socks4"]);
        // An SSH server: a banner, not a proxy reply.
        let banner = reply(b"SSH-2.0-OpenSSH_9.2p1\r\n");
        let (c, _) = run(vec![
            ("connect", banner.clone()),
            ("socks5", banner.clone()),
            ("socks4", banner),
        ]);
        assert_eq!(c.verdict, Verdict::NotProxy);
        assert!(c.evidence.contains("53 53 48 2d"), "{}", c.evidence);
    }
}
