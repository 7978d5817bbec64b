//! The text of `/proc/<pid>/net`: socket tables (`tcp`, `tcp6`, `udp`, `udp6`: the fallback
//! when sock_diag cannot be used), interface counters (`dev`) and multicast groups (`igmp`,
//! `igmp6`), parsed from bytes.

use super::model::{socket_from_parts, Interface, Protocol, Socket};
use super::procdir::parse_u64;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One line of `/proc/net/{tcp,tcp6,udp,udp6}` after the header.
#[derive(Debug, PartialEq)]
pub(super) enum TableLine {
    Socket(Socket),
    UnknownState,
    Malformed,
}

/// `   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108  0 4242 …`
/// Addresses are the kernel's in-memory 32-bit words printed as host-order hex, so the
/// bytes of each word are `to_ne_bytes` of the printed number; ports are plain hex.
pub(super) fn parse_table_line(line: &[u8], protocol: Protocol, v6: bool, netns: u64) -> TableLine {
    let mut f = line
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|s| !s.is_empty());
    let mut field = || f.next();
    let parsed = (|| {
        let _sl = field()?;
        let local = parse_hex_addr(field()?, v6)?;
        let remote = parse_hex_addr(field()?, v6)?;
        let state = field()?;
        if state.len() != 2 {
            return None;
        }
        let state = u8::try_from(parse_hex(state)?).ok()?;
        let (_queues, _timer, _retr) = (field()?, field()?, field()?);
        let uid = u32::try_from(parse_u64(field()?)?).ok()?;
        let _timeout = field()?;
        let inode = parse_u64(field()?)?;
        Some((local, remote, state, uid, inode))
    })();
    match parsed {
        None => TableLine::Malformed,
        Some((local, remote, state, uid, inode)) => {
            match socket_from_parts(netns, protocol, local, remote, state, uid, inode) {
                Some(s) => TableLine::Socket(s),
                None => TableLine::UnknownState,
            }
        }
    }
}

fn parse_hex(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    let mut v = 0u32;
    for &b in s {
        let d = (b as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

fn parse_hex_addr(s: &[u8], v6: bool) -> Option<SocketAddr> {
    let colon = s.iter().position(|&b| b == b':')?;
    let (addr, port) = (&s[..colon], &s[colon + 1..]);
    if port.len() != 4 {
        return None;
    }
    let port = u16::try_from(parse_hex(port)?).ok()?;
    let ip: IpAddr = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut octets = [0u8; 16];
        for (i, word) in addr.chunks(8).enumerate() {
            octets[i * 4..i * 4 + 4].copy_from_slice(&parse_hex(word)?.to_ne_bytes());
        }
        Ipv6Addr::from(octets).into()
    } else {
        if addr.len() != 8 {
            return None;
        }
        Ipv4Addr::from(parse_hex(addr)?.to_ne_bytes()).into()
    };
    Some(SocketAddr::new(ip, port))
}

/// `/proc/net/igmp`: a device line (`1\tlo        :     1      V3`) followed by its groups
/// (`\t\t\t\t010000E0     1 0:00000000\t\t0`), the address as the kernel's in-memory
/// network-order word printed in hex, so its native-endian bytes are the address.
pub(super) fn parse_igmp(text: &[u8], out: &mut Vec<(String, IpAddr)>) {
    let mut device: Option<String> = None;
    for line in text.split(|&b| b == b'\n').skip(1) {
        let mut words = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty());
        if line.first().is_some_and(|b| b.is_ascii_digit()) {
            // `Idx Device : Count Querier`
            device = words
                .nth(1)
                .map(|d| String::from_utf8_lossy(d.strip_suffix(b":").unwrap_or(d)).into_owned());
            continue;
        }
        let (Some(dev), Some(hex)) = (&device, words.next()) else {
            continue;
        };
        let Some(word) = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        out.push((
            dev.clone(),
            IpAddr::V4(std::net::Ipv4Addr::from(word.to_ne_bytes())),
        ));
    }
}

/// `/proc/net/igmp6`: `1    lo              ff020000000000000000000000000001     1 0000000C 0`.
pub(super) fn parse_igmp6(text: &[u8], out: &mut Vec<(String, IpAddr)>) {
    for line in text.split(|&b| b == b'\n') {
        let mut words = line
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|w| !w.is_empty());
        let (Some(_), Some(dev), Some(hex)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if hex.len() != 32 {
            continue;
        }
        let Some(n) = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u128::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        out.push((
            String::from_utf8_lossy(dev).into_owned(),
            IpAddr::V6(std::net::Ipv6Addr::from(n)),
        ));
    }
}

/// `    lo: 1234 5 0 0 0 0 0 0 1234 5 0 0 0 0 0 0` (receive then transmit counters).
pub(super) fn parse_dev_line(line: &[u8], netns: u64) -> Option<Interface> {
    let colon = line.iter().rposition(|&b| b == b':')?;
    let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
    if name.is_empty() {
        return None;
    }
    let mut n = [0u64; 16];
    let mut count = 0;
    for (i, v) in line[colon + 1..]
        .split(|&b| b == b' ')
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        if i < n.len() {
            n[i] = parse_u64(v)?;
        }
        count += 1;
    }
    if count < 10 {
        return None;
    }
    Some(Interface {
        netns,
        name,
        rx_bytes: n[0],
        rx_packets: n[1],
        tx_bytes: n[8],
        tx_packets: n[9],
        multicast_groups: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::SocketState;

    fn sock(line: &str, protocol: Protocol, v6: bool) -> Socket {
        match parse_table_line(line.as_bytes(), protocol, v6, 7) {
            TableLine::Socket(s) => s,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn tcp4_lines() {
        let l = sock(
            "   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 4242 1 0000000000000000 100 0 0 10 0",
            Protocol::Tcp,
            false,
        );
        assert_eq!(l.local, "127.0.0.1:3306".parse().expect("addr"));
        assert_eq!(
            (l.state, l.remote, l.uid, l.inode, l.netns),
            (SocketState::Listen, None, 108, 4242, 7)
        );
        let c = sock(
            "  12: 0200000A:9C40 0900000A:0D05 01 00000000:00000000 02:000A7F2E 00000000  1000        0 4243 2 0000000000000000 20 4 30 10 -1",
            Protocol::Tcp,
            false,
        );
        assert_eq!(c.local, "10.0.0.2:40000".parse().expect("addr"));
        assert_eq!(c.remote, Some("10.0.0.9:3333".parse().expect("addr")));
        assert_eq!(c.state, SocketState::Established);
        // TIME_WAIT: inode 0, no owner possible.
        let t = sock(
            "   3: 0100007F:8C1E 0100007F:0CEA 06 00000000:00000000 03:00001523 00000000     0        0 0 3 0000000000000000",
            Protocol::Tcp,
            false,
        );
        assert_eq!((t.state, t.inode), (SocketState::TimeWait, 0));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn tcp6_lines_are_word_swapped() {
        // ::1 is printed as four host-order words: 00000000 00000000 00000000 01000000.
        let l = sock(
            "   0: 00000000000000000000000001000000:1A0B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0",
            Protocol::Tcp,
            true,
        );
        assert_eq!(l.local, "[::1]:6667".parse().expect("addr"));
        // 2001:db8::1 → words 2001 0db8 | 0 | 0 | 0000 0001 as little-endian u32s.
        let c = sock(
            "   1: B80D0120000000000000000001000000:C350 0000000000000000FFFF00000100007F:1A0B 01 00000000:00000000 00:00000000 00000000  1000        0 78 1 0000000000000000 20 4 30 10 -1",
            Protocol::Tcp,
            true,
        );
        assert_eq!(c.local, "[2001:db8::1]:50000".parse().expect("addr"));
        assert_eq!(
            c.remote,
            Some("[::ffff:127.0.0.1]:6667".parse().expect("addr"))
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn udp_lines() {
        let bound = sock(
            "  283: 00000000:04AA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5555 2 0000000000000000 0",
            Protocol::Udp,
            false,
        );
        assert_eq!(
            (bound.state, bound.remote),
            (SocketState::Unconnected, None)
        );
        assert!(bound.is_listening());
        let conn = sock(
            "  283: 0100007F:D431 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 5556 2 0000000000000000 0",
            Protocol::Udp,
            false,
        );
        assert_eq!(conn.state, SocketState::Established);
        assert_eq!(conn.remote, Some("127.0.0.1:53".parse().expect("addr")));
    }

    #[test]
    fn bad_table_lines() {
        for bad in [
            "",
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            "   0: 0100007F:0CEA",
            "   0: 0100007:0CEA 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "   0: 0100007F:CEA 00000000:0000 0A 0:0 0:0 0 0 0 1",
            "   0: 0100007F:0CEA 00000000:0000 0A 0:0 0:0 0 -1 0 1",
            "   0: 0100007F:0CEA 00000000:0000 0G 0:0 0:0 0 0 0 1",
            "   0: 0100007F:0CEA 00000000:0000 0A 0:0 0:0 0 0 0 x",
            "   0: 0100007F:0CEA 00000000:0000 0A 0:0 0:0 0 0 0",
        ] {
            assert_eq!(
                parse_table_line(bad.as_bytes(), Protocol::Tcp, false, 1),
                TableLine::Malformed,
                "{bad:?}"
            );
        }
        // v4 text in a v6 table and the reverse.
        assert_eq!(
            parse_table_line(
                b"   0: 0100007F:0CEA 00000000:0000 0A 0:0 0:0 0 0 0 1",
                Protocol::Tcp,
                true,
                1
            ),
            TableLine::Malformed
        );
        assert_eq!(
            parse_table_line(
                b"   0: 0100007F:0CEA 00000000:0000 0D 0:0 0:0 0 0 0 1",
                Protocol::Tcp,
                false,
                1
            ),
            TableLine::UnknownState
        );
    }

    #[test]
    fn dev_lines() {
        let l = parse_dev_line(
            b"    lo: 1234       5    0    0    0     0          0         0     1234       5    0    0    0     0       0          0",
            3,
        )
        .expect("parses");
        assert_eq!(
            (
                l.name.as_str(),
                l.rx_bytes,
                l.rx_packets,
                l.tx_bytes,
                l.tx_packets
            ),
            ("lo", 1234, 5, 1234, 5)
        );
        let e = parse_dev_line(b"  eth0: 10 2 0 0 0 0 0 0 30 4 0 0 0 0 0 0", 3).expect("parses");
        assert_eq!((e.rx_bytes, e.tx_bytes, e.tx_packets), (10, 30, 4));
        assert_eq!(parse_dev_line(b"Inter-|   Receive", 3), None);
        assert_eq!(parse_dev_line(b" face |bytes    packets errs", 3), None);
        assert_eq!(parse_dev_line(b"  eth0: 1 2 3", 3), None);
        assert_eq!(
            parse_dev_line(b"  eth0: 1 2 x 0 0 0 0 0 0 0 0 0 0 0 0 0", 3),
            None
        );
    }

    #[test]
    fn multicast_groups_from_igmp_tables() {
        let mut out = Vec::new();
        parse_igmp(
            b"Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n1\tlo        :     2      V3\n\t\t\t\t030201EF     1 0:00000000\t\t0\n\t\t\t\t010000E0     1 0:00000000\t\t0\n4\teth0      :     1      V3\n\t\t\t\t010000E0     1 0:00000000\t\t0\n",
            &mut out,
        );
        parse_igmp6(
            b"1    lo              ff020000000000000000000000000001     1 0000000C 0\n4    eth0            ff0200000000000000000001ff000002     1 00000004 0\n",
            &mut out,
        );
        let want: Vec<(String, IpAddr)> = [
            ("lo", "239.1.2.3"),
            ("lo", "224.0.0.1"),
            ("eth0", "224.0.0.1"),
            ("lo", "ff02::1"),
            ("eth0", "ff02::1:ff00:2"),
        ]
        .iter()
        .map(|(d, a)| (d.to_string(), a.parse().expect("ip")))
        .collect();
        if cfg!(target_endian = "little") {
            assert_eq!(out, want);
        }
    }
}
