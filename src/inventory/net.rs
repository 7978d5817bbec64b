//! Socket tables and interface counters of one network namespace, read through
//! `/proc/<pid>/net/*` of a process inside it. This is the replaceable socket source:
//! netlink sock_diag would fill the same `Socket` records.

use super::model::{Gap, Interface, Protocol, Snapshot, Socket, SocketState};
use procfs::net::{TcpNetEntry, TcpState, UdpNetEntry, UdpState};
use procfs::process::Process as ProcHandle;
use procfs::ProcResult;
use std::net::SocketAddr;
use std::path::Path;

/// Reads tcp, tcp6, udp, udp6 and dev of the namespace `netns` through the first of `pids`
/// that is still alive.
pub(super) fn read_namespace(proc_root: &Path, netns: u64, pids: &[i32], snap: &mut Snapshot) {
    let mut last_err = None;
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        let h = match ProcHandle::new_with_root(dir.clone()) {
            Ok(h) => h,
            Err(e) => {
                last_err = Some(e.to_string());
                continue;
            }
        };
        match read_tables(&h, netns) {
            Ok((sockets, interfaces)) => {
                snap.sockets.extend(sockets);
                snap.interfaces.extend(interfaces);
                return;
            }
            Err(e) => last_err = Some(format!("{}: {e}", dir.join("net").display())),
        }
    }
    snap.gaps.push(Gap {
        what: format!("sockets of network namespace {netns}"),
        error: last_err.unwrap_or_else(|| "no process to read it through".into()),
    });
}

type Tables = (Vec<Socket>, Vec<Interface>);

fn read_tables(h: &ProcHandle, netns: u64) -> ProcResult<Tables> {
    let mut sockets = Vec::new();
    for e in h.tcp()?.into_iter().chain(h.tcp6()?) {
        sockets.push(tcp_socket(&e, netns));
    }
    for e in h.udp()?.into_iter().chain(h.udp6()?) {
        sockets.push(udp_socket(&e, netns));
    }
    let mut interfaces: Vec<Interface> = h
        .dev_status()?
        .into_values()
        .map(|d| Interface {
            netns,
            name: d.name,
            rx_bytes: d.recv_bytes,
            rx_packets: d.recv_packets,
            tx_bytes: d.sent_bytes,
            tx_packets: d.sent_packets,
        })
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((sockets, interfaces))
}

fn peer(addr: SocketAddr) -> Option<SocketAddr> {
    (addr.port() != 0 || !addr.ip().is_unspecified()).then_some(addr)
}

fn tcp_socket(e: &TcpNetEntry, netns: u64) -> Socket {
    let state = match e.state {
        TcpState::Established => SocketState::Established,
        TcpState::SynSent => SocketState::SynSent,
        TcpState::SynRecv | TcpState::NewSynRecv => SocketState::SynRecv,
        TcpState::FinWait1 => SocketState::FinWait1,
        TcpState::FinWait2 => SocketState::FinWait2,
        TcpState::TimeWait => SocketState::TimeWait,
        TcpState::Close => SocketState::Close,
        TcpState::CloseWait => SocketState::CloseWait,
        TcpState::LastAck => SocketState::LastAck,
        TcpState::Listen => SocketState::Listen,
        TcpState::Closing => SocketState::Closing,
    };
    Socket {
        netns,
        protocol: Protocol::Tcp,
        local: e.local_address,
        remote: if state == SocketState::Listen {
            None
        } else {
            peer(e.remote_address)
        },
        state,
        uid: e.uid,
        inode: e.inode,
        owners: Vec::new(),
    }
}

fn udp_socket(e: &UdpNetEntry, netns: u64) -> Socket {
    let remote = peer(e.remote_address);
    let state = match (&e.state, remote) {
        (UdpState::Established, Some(_)) => SocketState::Established,
        _ => SocketState::Unconnected,
    };
    Socket {
        netns,
        protocol: Protocol::Udp,
        local: e.local_address,
        remote: if state == SocketState::Established {
            remote
        } else {
            None
        },
        state,
        uid: e.uid,
        inode: e.inode,
        owners: Vec::new(),
    }
}
