//! SOCKS4 and SOCKS5 requests and replies, as bytes. Pure: no I/O.
//!
//! SOCKS5 (RFC 1928): the client offers authentication methods, the server picks one. The
//! probe offers "no authentication" (0x00) and "username/password" (0x02) and stops at the
//! server's choice, before any request: a server that picks 0x00 serves anyone, one that
//! picks 0x02 (or refuses both, 0xFF) wants credentials.
//!
//! SOCKS4 (the 1990s NEC protocol; no RFC): the first message is already a request, so the
//! probe names 127.0.0.1 and a port that is closed in the proxy's namespace, with an empty
//! user id. Reply code 0x5A (granted) means it served us; 0x5B (rejected *or failed*) cannot
//! tell a refusal by rule from a failed connection to the closed port; 0x5C/0x5D mean the
//! server wants to check the user with identd, a form of authentication.

/// Version 5, two methods: 0x00 no authentication, 0x02 username/password.
pub const SOCKS5_GREETING: [u8; 4] = [0x05, 0x02, 0x00, 0x02];
/// Bytes of a SOCKS5 method-selection reply.
pub const SOCKS5_REPLY_LEN: usize = 2;
/// Bytes of a SOCKS4 reply.
pub const SOCKS4_REPLY_LEN: usize = 8;

/// The SOCKS4 CONNECT request for 127.0.0.1:`port` with an empty user id.
pub fn socks4_connect(port: u16) -> [u8; 9] {
    let p = port.to_be_bytes();
    [0x04, 0x01, p[0], p[1], 127, 0, 0, 1, 0x00]
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
    fn socks4_request_names_only_loopback() {
        assert_eq!(socks4_connect(443), [4, 1, 0x01, 0xBB, 127, 0, 0, 1, 0]);
        assert_eq!(socks4_connect(1)[2..8], [0, 1, 127, 0, 0, 1]);
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
