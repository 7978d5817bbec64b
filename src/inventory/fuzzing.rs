//! Entry points for the fuzz targets (`fuzz/`): each runs one of the inventory's parsers on
//! arbitrary bytes, as the host could hand them over. Not an API: the parsers stay private.

use super::diag::{self, Dump};
use super::model::Protocol;
use super::{crosscheck, nettext, procdir};

/// `/proc/<pid>/stat`, `cmdline`, `cgroup` and the `exe` link's target.
pub fn proc_files(data: &[u8]) {
    let _ = procdir::parse_stat(data).map(|s| s.kernel_thread());
    let _ = procdir::split_cmdline(data);
    let text = String::from_utf8_lossy(data);
    if let Some(path) = procdir::cgroup_path(&text) {
        let _ = procdir::container_id(&path);
    }
    let _ = procdir::exe_path(data);
    let _ = procdir::parse_socket_link(data);
    let _ = procdir::parse_ns_link(data);
}

/// `/proc/self/mountinfo`, `/proc/loadavg`, `/etc/ld.so.preload`, `/proc/self/environ`,
/// `/proc/meminfo`.
pub fn host_files(data: &[u8]) {
    let _ = crosscheck::parse_mountinfo(data, "/proc");
    let _ = crosscheck::loadavg_tasks(data);
    let _ = crosscheck::preload_entries(data);
    let _ = crosscheck::environ_var(data, "LD_PRELOAD");
    let _ = crosscheck::meminfo_hugepages(data);
}

/// The `/proc/<pid>/net` text tables: `tcp`, `tcp6`, `udp`, `udp6` lines, `dev`, `igmp`,
/// `igmp6`.
pub fn net_text(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let _ = nettext::parse_table_line(line, Protocol::Tcp, false, 1);
        let _ = nettext::parse_table_line(line, Protocol::Udp, true, 1);
        let _ = nettext::parse_dev_line(line, 1);
    }
    let mut groups = Vec::new();
    nettext::parse_igmp(data, &mut groups);
    nettext::parse_igmp6(data, &mut groups);
}

/// One sock_diag reply datagram; the first byte picks the dump it answers.
pub fn sock_diag(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let dump = match pick % 5 {
        0 => Dump::TcpBothFamilies,
        1 => Dump::Family(Protocol::Tcp, 2),
        2 => Dump::Family(Protocol::Tcp, 10),
        3 => Dump::Family(Protocol::Udp, 2),
        _ => Dump::Family(Protocol::Udp, 10),
    };
    let mut out = Vec::new();
    let seq = rest
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_ne_bytes);
    let _ = diag::parse_datagram(rest, seq, dump, 1, &mut out);
}
