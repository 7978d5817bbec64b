//! HTTP proxy requests and the status line of a reply. Pure: no I/O.
//!
//! Requests name only the probe's canary (a listener of its own, local to the proxy's
//! namespace), carry no credentials, and ask the server to close the connection.

use std::net::SocketAddr;

/// The most bytes read looking for a status line.
pub const MAX_STATUS_LINE: usize = 1024;

/// `CONNECT <canary>`: a proxy that tunnels for us connects to the canary.
pub fn connect_request(canary: SocketAddr) -> String {
    format!("CONNECT {canary} HTTP/1.1\r\nHost: {canary}\r\nUser-Agent: aupwatch-probe\r\n\r\n")
}

/// `GET http://<canary>/<token>` (absolute form, what a forward proxy takes): a proxy that
/// forwards it connects to the canary and asks for the token's path.
pub fn get_request(canary: SocketAddr, token: &str) -> String {
    format!(
        "GET http://{canary}/{token} HTTP/1.1\r\nHost: {canary}\r\nUser-Agent: aupwatch-probe\r\nConnection: close\r\n\r\n"
    )
}

/// A reply's status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    /// The status line without its line end, at most 120 characters (host-supplied text:
    /// escape before printing).
    pub line: String,
}

/// Parses the status line at the start of `reply`. `None`: read more. `Err`: not HTTP.
pub fn parse_status(reply: &[u8]) -> Option<Result<Status, ()>> {
    const PREFIX: &[u8] = b"HTTP/";
    let n = reply.len().min(PREFIX.len());
    if reply[..n] != PREFIX[..n] {
        return Some(Err(()));
    }
    let Some(end) = reply.iter().position(|&b| b == b'\n') else {
        return if reply.len() >= MAX_STATUS_LINE {
            Some(Err(()))
        } else {
            None
        };
    };
    let line = &reply[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // HTTP/x.y SP 3DIGIT [SP reason]
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let version_ok = version.len() >= 6
        && version[PREFIX.len()..]
            .iter()
            .all(|b| b.is_ascii_digit() || *b == b'.');
    if !version_ok || code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Some(Err(()));
    }
    let code = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return Some(Err(()));
    }
    let text: String = String::from_utf8_lossy(line).chars().take(120).collect();
    Some(Ok(Status { code, line: text }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(code: u16, line: &str) -> Option<Result<Status, ()>> {
        Some(Ok(Status {
            code,
            line: line.into(),
        }))
    }

    #[test]
    fn requests_name_only_the_canary_and_carry_no_credentials() {
        let canary: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let c = connect_request(canary);
        assert!(
            c.starts_with("CONNECT 127.0.0.1:40000 HTTP/1.1\r\nHost: 127.0.0.1:40000\r\n"),
            "{c}"
        );
        let g = get_request(canary, "t0k");
        assert!(
            g.starts_with("GET http://127.0.0.1:40000/t0k HTTP/1.1\r\n"),
            "{g}"
        );
        let v6 = connect_request("[::1]:5".parse().expect("addr"));
        assert!(v6.starts_with("CONNECT [::1]:5 HTTP/1.1\r\n"), "{v6}");
        for r in [c, g] {
            assert!(r.ends_with("\r\n\r\n"));
            assert!(!r.to_ascii_lowercase().contains("authorization"), "{r}");
        }
    }

    #[test]
    fn status_lines() {
        let squid = b"HTTP/1.1 503 Service Unavailable\r\nServer: squid/6.13\r\n";
        assert_eq!(
            parse_status(squid),
            ok(503, "HTTP/1.1 503 Service Unavailable")
        );
        assert_eq!(
            parse_status(b"HTTP/1.0 407 Proxy Authentication Required\r\n"),
            ok(407, "HTTP/1.0 407 Proxy Authentication Required")
        );
        assert_eq!(parse_status(b"HTTP/1.1 200\n"), ok(200, "HTTP/1.1 200"));
        assert_eq!(parse_status(b"HTTP/2 403 \r\n"), ok(403, "HTTP/2 403 "));
        // Not yet complete: read more.
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"HTT"), None);
        assert_eq!(parse_status(b"HTTP/1.1 200 OK"), None);
        // Not HTTP at all, or broken status lines.
        assert_eq!(parse_status(&[5, 0]), Some(Err(())));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH_9.2\r\n"), Some(Err(())));
        assert_eq!(parse_status(b"HTTP/1.1 20 OK\r\n"), Some(Err(())));
        assert_eq!(parse_status(b"HTTP/1.1 abc OK\r\n"), Some(Err(())));
        assert_eq!(parse_status(b"HTTP/x.y 200 OK\r\n"), Some(Err(())));
        assert_eq!(parse_status(b"HTTP/1.1 999 Nope\r\n"), Some(Err(())));
        assert_eq!(parse_status(b"HTTP/\r\n"), Some(Err(())));
        // A status line that never ends is not HTTP.
        let mut long = b"HTTP/1.1 200 ".to_vec();
        long.resize(MAX_STATUS_LINE, b'a');
        assert_eq!(parse_status(&long), Some(Err(())));
        // Long reasons are cut.
        let mut reason = b"HTTP/1.1 200 ".to_vec();
        reason.extend(std::iter::repeat_n(b'x', 300));
        reason.extend(b"\r\n");
        let got = parse_status(&reason)
            .and_then(Result::ok)
            .map(|s| s.line.len());
        assert_eq!(got, Some(120));
    }
}
