//! SOCKS4 and SOCKS5 requests and replies, as bytes. Pure: no I/O.
//!
//! SOCKS5 (RFC 1928): the client offers authentication methods, the server picks one. The
//! probe offers "no authentication" (0x00) and "username/password" (0x02); a server that
//! picks 0x00 is then asked to CONNECT to the probe's canary ([`socks5_connect`]), one that
//! picks 0x02 (or refuses both, 0xFF) wants credentials, which the probe never sends.
//!
//! SOCKS4 (the 1990s NEC protocol; no RFC): the first message is already a request, so the
//! probe names its canary (an IPv4 address) with an empty user id. Reply code 0x5A
//! (granted) means it served us — the canary must see the connection too; 0x5B (rejected or
//! failed) to a canary that listens means it refused; 0x5C/0x5D mean the server wants to
//! check the user with identd, a form of authentication.

use std::net::{IpAddr, SocketAddr};

/// Version 5, two methods: 0x00 no authentication, 0x02 username/password.
pub const SOCKS5_GREETING: [u8; 4] = [0x05, 0x02, 0x00, 0x02];
/// Bytes of a SOCKS5 method-selection reply.
pub const SOCKS5_REPLY_LEN: usize = 2;
/// Bytes of a SOCKS4 reply.
pub const SOCKS4_REPLY_LEN: usize = 8;

/// The SOCKS4 CONNECT request for the IPv4 `canary` with an empty user id; `None` for an
/// IPv6 canary (SOCKS4 has no IPv6).
pub fn socks4_connect(canary: SocketAddr) -> Option<[u8; 9]> {
    let IpAddr::V4(ip) = canary.ip() else {
        return None;
    };
    let p = canary.port().to_be_bytes();
    let a = ip.octets();
    Some([0x04, 0x01, p[0], p[1], a[0], a[1], a[2], a[3], 0x00])
}

/// The SOCKS4a CONNECT request (destination 0.0.0.1, empty user id, then the host name) for
/// `canary`, its address written as the host name: what reaches an IPv6 canary over SOCKS4.
pub fn socks4a_connect(canary: SocketAddr) -> Vec<u8> {
    let p = canary.port().to_be_bytes();
    let mut r = vec![0x04, 0x01, p[0], p[1], 0, 0, 0, 1, 0x00];
    r.extend_from_slice(canary.ip().to_string().as_bytes());
    r.push(0x00);
    r
}

/// The SOCKS5 CONNECT request for `canary` (address type 1, IPv4, or 4, IPv6).
pub fn socks5_connect(canary: SocketAddr) -> Vec<u8> {
    let mut r = vec![0x05, 0x01, 0x00];
    match canary.ip() {
        IpAddr::V4(ip) => {
            r.push(0x01);
            r.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            r.push(0x04);
            r.extend_from_slice(&ip.octets());
        }
    }
    r.extend_from_slice(&canary.port().to_be_bytes());
    r
}

/// The reply code of a SOCKS5 CONNECT reply (`VER REP RSV ATYP ADDR PORT`): `None` when
/// shorter than two bytes, `Err` when it is not a SOCKS5 reply.
pub fn parse_socks5_connect(reply: &[u8]) -> Option<Result<u8, ()>> {
    let (&version, &code) = (reply.first()?, reply.get(1)?);
    Some(if version == 0x05 { Ok(code) } else { Err(()) })
}

/// Whether a SOCKS5 CONNECT reply is complete: its bound address is in, or it failed.
pub fn socks5_connect_complete(reply: &[u8]) -> bool {
    let need = match (reply.get(1), reply.get(3)) {
        (Some(&code), _) if code != 0 => return true,
        (_, Some(0x01)) => 4 + 4 + 2,
        (_, Some(0x04)) => 4 + 16 + 2,
        (_, Some(0x03)) => 4 + 1 + usize::from(reply.get(4).copied().unwrap_or(0)) + 2,
        (_, Some(_)) => return true,
        _ => return reply.first().is_some_and(|&v| v != 0x05),
    };
    reply.len() >= need
}

/// What a SOCKS5 reply code says (RFC 1928, 6).
pub fn socks5_code(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned code",
    }
}

/// What a SOCKS5 server answered to [`SOCKS5_GREETING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks5Reply {
    /// Method 0x00: no authentication.
    NoAuth,
    /// Method 0x02: username/password.
    UserPass,
    /// 0xFF: none of the offered methods (it wants another, such as GSSAPI).
    NoAcceptable,
    /// A method that was not offered: not a conforming SOCKS5 server.
    Unoffered(u8),
}

/// Parses a SOCKS5 method-selection reply. `None` when `reply` is shorter than two bytes
/// (read more, or it is not SOCKS5); `Err` with the bytes when it is not a SOCKS5 reply.
pub fn parse_socks5(reply: &[u8]) -> Option<Result<Socks5Reply, [u8; 2]>> {
    let (&version, &method) = (reply.first()?, reply.get(1)?);
    Some(match (version, method) {
        (0x05, 0x00) => Ok(Socks5Reply::NoAuth),
        (0x05, 0x02) => Ok(Socks5Reply::UserPass),
        (0x05, 0xFF) => Ok(Socks5Reply::NoAcceptable),
        (0x05, m) => Ok(Socks5Reply::Unoffered(m)),
        (v, m) => Err([v, m]),
    })
}

/// What a SOCKS4 server answered to [`socks4_connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks4Reply {
    /// 0x5A: request granted.
    Granted,
    /// 0x5B: request rejected or failed.
    RejectedOrFailed,
    /// 0x5C / 0x5D: the server wants identd to vouch for the user.
    Ident(u8),
}

/// Parses a SOCKS4 reply (8 bytes: VN = 0, CD, port, address). `None` when shorter than
/// 8 bytes; `Err` when it is not a SOCKS4 reply. A reply version of 4 is accepted too: some
/// servers echo the request's version.
pub fn parse_socks4(reply: &[u8]) -> Option<Result<Socks4Reply, ()>> {
    let head = reply.get(..SOCKS4_REPLY_LEN)?;
    if head[0] != 0x00 && head[0] != 0x04 {
        return Some(Err(()));
    }
    Some(match head[1] {
        0x5A => Ok(Socks4Reply::Granted),
        0x5B => Ok(Socks4Reply::RejectedOrFailed),
        c @ (0x5C | 0x5D) => Ok(Socks4Reply::Ident(c)),
        _ => Err(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks5_method_replies() {
        assert_eq!(parse_socks5(&[]), None);
        assert_eq!(parse_socks5(&[5]), None);
        assert_eq!(parse_socks5(&[5, 0]), Some(Ok(Socks5Reply::NoAuth)));
        assert_eq!(parse_socks5(&[5, 2]), Some(Ok(Socks5Reply::UserPass)));
        assert_eq!(
            parse_socks5(&[5, 0xFF]),
            Some(Ok(Socks5Reply::NoAcceptable))
        );
        assert_eq!(parse_socks5(&[5, 1]), Some(Ok(Socks5Reply::Unoffered(1))));
        // Trailing bytes do not matter: the choice is in the first two.
        assert_eq!(parse_socks5(&[5, 0, 9, 9]), Some(Ok(Socks5Reply::NoAuth)));
        // An HTTP server's answer, a SOCKS4 reply: not SOCKS5.
        assert_eq!(parse_socks5(b"HTTP/1.1 400"), Some(Err([b'H', b'T'])));
        assert_eq!(parse_socks5(&[0, 0x5B]), Some(Err([0, 0x5B])));
    }

    #[test]
    fn requests_name_only_the_canary() {
        let c: SocketAddr = "192.0.2.10:443".parse().expect("addr");
        assert_eq!(
            socks4_connect(c),
            Some([4, 1, 0x01, 0xBB, 192, 0, 2, 10, 0])
        );
        assert_eq!(socks4_connect("[::1]:1".parse().expect("addr")), None);
        assert_eq!(
            socks4a_connect("[::1]:1".parse().expect("addr")),
            [4, 1, 0, 1, 0, 0, 0, 1, 0, b':', b':', b'1', 0]
        );
        assert_eq!(socks5_connect(c), [5, 1, 0, 1, 192, 0, 2, 10, 0x01, 0xBB]);
        let v6 = socks5_connect("[::1]:2".parse().expect("addr"));
        assert_eq!(v6.len(), 22);
        assert_eq!((v6[3], v6[19], v6[20], v6[21]), (4, 1, 0, 2));
    }

    #[test]
    fn socks5_connect_replies() {
        let ok4 = [5, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39];
        assert!(socks5_connect_complete(&ok4));
        assert!(!socks5_connect_complete(&ok4[..9]));
        assert_eq!(parse_socks5_connect(&ok4), Some(Ok(0)));
        assert!(socks5_connect_complete(&[5, 2]));
        assert_eq!(parse_socks5_connect(&[5, 2]), Some(Ok(2)));
        assert!(!socks5_connect_complete(&[5, 0, 0, 4, 0, 0]));
        assert!(socks5_connect_complete(&[5, 0, 0, 3, 1, b'a', 0, 1]));
        assert!(socks5_connect_complete(b"HTTP/1.1"));
        assert_eq!(parse_socks5_connect(b"HT"), Some(Err(())));
        assert_eq!(parse_socks5_connect(&[5]), None);
        assert_eq!(socks5_code(2), "connection not allowed by ruleset");
    }

    #[test]
    fn socks4_replies() {
        let reply = |vn: u8, cd: u8| [vn, cd, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_socks4(&reply(0, 0x5A)[..7]), None);
        assert_eq!(
            parse_socks4(&reply(0, 0x5A)),
            Some(Ok(Socks4Reply::Granted))
        );
        assert_eq!(
            parse_socks4(&reply(4, 0x5B)),
            Some(Ok(Socks4Reply::RejectedOrFailed))
        );
        assert_eq!(
            parse_socks4(&reply(0, 0x5C)),
            Some(Ok(Socks4Reply::Ident(0x5C)))
        );
        assert_eq!(
            parse_socks4(&reply(0, 0x5D)),
            Some(Ok(Socks4Reply::Ident(0x5D)))
        );
        assert_eq!(parse_socks4(&reply(5, 0x5A)), Some(Err(())));
        assert_eq!(parse_socks4(&reply(0, 0x00)), Some(Err(())));
        assert_eq!(parse_socks4(b"HTTP/1.0 400 Bad"), Some(Err(())));
    }
}
