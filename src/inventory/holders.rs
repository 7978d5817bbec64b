//! The socket-holder search: which processes' `fd/` to walk, in which order, for sockets that
//! appeared without a known holder (see the module documentation of `inventory` for why).
//! The steps, each only for the sockets still unowned after the one before:
//!
//! 1. accepted connections: the holders of a TCP listener on the same local port;
//! 2. the processes of the socket's namespace running as the socket's uid;
//! 3. for sockets already unowned in the last scan: the root processes of the namespace
//!    (every process of it if the socket is root's);
//! 4. every process, unless a process whose `fd/` cannot be read may hold the socket
//!    ([`Unreadable::explains`]): such a socket is *explained* and left alone. A socket still
//!    unowned after step 4 is an *orphan*. Neither is searched for again while it exists
//!    (and, for an explained one, while the set of unreadable processes stays the same).
//!
//! Choosing is pure; the walking is the caller's (`walk`), so the choice is tested here on
//! its own.

use super::model::{Protocol, Socket, SocketState};
use super::{Entry, IdBuild, IdMap, IdSet, Part};
use std::collections::{HashMap, HashSet};

/// A process whose `fd/` could not be read (wholly or in part): it may hold sockets that no
/// search can attribute to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unreadable {
    pub(super) pid: i32,
    pub(super) start_ticks: u64,
    pub(super) uid: u32,
    /// 0 when its namespace could not be read either.
    pub(super) netns: u64,
}

impl Unreadable {
    /// The unreadable processes among `procs`, in `pids` order (ascending).
    pub(super) fn of(pids: &[i32], procs: &IdMap<i32, Box<Entry>>) -> Vec<Unreadable> {
        pids.iter()
            .filter_map(|pid| procs.get(pid))
            .filter(|e| !e.p.kernel_thread && e.gaps.iter().any(|(part, _)| *part == Part::Fds))
            .map(|e| Unreadable {
                pid: e.p.pid,
                start_ticks: e.p.start_ticks,
                uid: e.p.uid,
                netns: e.p.netns,
            })
            .collect()
    }

    /// Whether it may hold `s`: in the socket's namespace (or one it cannot be told apart
    /// from), and a candidate by uid as the search's own steps choose them: the socket's
    /// owner, or any process for a socket root created (a daemon that dropped privileges).
    pub(super) fn explains(&self, s: &Socket) -> bool {
        (self.netns == 0 || self.netns == s.netns) && (self.uid == s.uid || s.uid == 0)
    }
}

/// One process as the search chooses candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Proc {
    pub(super) pid: i32,
    pub(super) netns: u64,
    pub(super) uid: u32,
}

/// What the search remembers between scans (the inventory keeps it).
pub(super) struct Memory<'a> {
    /// Sockets without a known holder in the last inventory: only these widen to steps 3
    /// and 4.
    pub(super) pending: &'a IdSet<u64>,
    /// Sockets no process holds after a search of every process.
    pub(super) orphans: &'a mut IdSet<u64>,
    /// Sockets a process whose `fd/` cannot be read may hold.
    pub(super) explained: &'a mut IdSet<u64>,
    /// The processes whose `fd/` could not be read in this scan.
    pub(super) unreadable: &'a [Unreadable],
}

impl Memory<'_> {
    fn settled(&self, inode: u64) -> bool {
        settled(self.orphans, self.explained, inode)
    }
}

/// Not searched for: an orphan (no process holds it after a search of every process) or
/// explained (one whose descriptors cannot be read may).
pub(super) fn settled(orphans: &IdSet<u64>, explained: &IdSet<u64>, inode: u64) -> bool {
    orphans.contains(&inode) || explained.contains(&inode)
}

/// Finds the holders of the unowned sockets of `sockets` (those not settled), in the steps of
/// the module documentation, among `procs`. `walk(pids, owned)` re-reads the `fd/` of
/// `pids` (ascending, each at most once per search) and sets `owned[k]` for every socket
/// `k` of `sockets` they hold.
pub(super) fn search(
    sockets: &[Socket],
    procs: &[Proc],
    mem: Memory<'_>,
    walk: &mut impl FnMut(&[i32], &mut [bool]),
) {
    let mut owned: Vec<bool> = sockets.iter().map(|s| !s.owners.is_empty()).collect();
    let mut unknown: Vec<usize> = (0..sockets.len())
        .filter(|&k| !owned[k] && sockets[k].inode != 0 && !mem.settled(sockets[k].inode))
        .collect();
    if unknown.is_empty() {
        return;
    }
    let mut walked: IdSet<i32> = IdSet::default();
    let mut step = |candidates: IdSet<i32>, owned: &mut [bool]| {
        let mut pids: Vec<i32> = candidates
            .into_iter()
            .filter(|pid| walked.insert(*pid))
            .collect();
        pids.sort_unstable();
        walk(&pids, owned);
    };

    // 1. Accepted connections: the holders of a listener on the same local port.
    let mut listeners: HashMap<(u64, u16), Vec<usize>, IdBuild> = HashMap::default();
    for (i, s) in sockets.iter().enumerate() {
        if s.protocol == Protocol::Tcp && s.state == SocketState::Listen && s.inode != 0 {
            listeners
                .entry((s.netns, s.local.port()))
                .or_default()
                .push(i);
        }
    }
    let mut candidates: IdSet<i32> = IdSet::default();
    for &k in &unknown {
        let s = &sockets[k];
        if s.protocol != Protocol::Tcp || s.state == SocketState::Listen {
            continue;
        }
        for l in listeners
            .get(&(s.netns, s.local.port()))
            .into_iter()
            .flatten()
        {
            candidates.extend(&sockets[*l].owners);
        }
    }
    step(candidates, &mut owned);
    unknown.retain(|&k| !owned[k]);

    // 2. The processes of the socket's namespace running as the socket's uid.
    if !unknown.is_empty() {
        let keys: HashSet<(u64, u32), IdBuild> = unknown
            .iter()
            .map(|&k| (sockets[k].netns, sockets[k].uid))
            .collect();
        let candidates = procs
            .iter()
            .filter(|p| keys.contains(&(p.netns, p.uid)))
            .map(|p| p.pid)
            .collect();
        step(candidates, &mut owned);
        unknown.retain(|&k| !owned[k]);
    }

    // Sockets already unowned in the last scan: 3. the root processes of the namespace
    // (every process of it if the socket is root's), 4. every process.
    unknown.retain(|&k| mem.pending.contains(&sockets[k].inode));
    if !unknown.is_empty() {
        let any: IdSet<u64> = unknown
            .iter()
            .filter(|&&k| sockets[k].uid == 0)
            .map(|&k| sockets[k].netns)
            .collect();
        let root: IdSet<u64> = unknown.iter().map(|&k| sockets[k].netns).collect();
        let candidates = procs
            .iter()
            .filter(|p| any.contains(&p.netns) || (p.uid == 0 && root.contains(&p.netns)))
            .map(|p| p.pid)
            .collect();
        step(candidates, &mut owned);
        unknown.retain(|&k| !owned[k]);
    }
    // A socket that a process whose `fd/` cannot be read may hold (pid 1 in some
    // sandboxes) would send every scan to step 4, to find nothing: it is left alone.
    let unreadable = mem.unreadable;
    let explained: Vec<u64> = unknown
        .iter()
        .map(|&k| &sockets[k])
        .filter(|s| unreadable.iter().any(|u| u.explains(s)))
        .map(|s| s.inode)
        .collect();
    mem.explained.extend(explained);
    unknown.retain(|&k| !mem.explained.contains(&sockets[k].inode));
    if !unknown.is_empty() {
        let candidates = procs.iter().map(|p| p.pid).collect();
        step(candidates, &mut owned);
        unknown.retain(|&k| !owned[k]);
        mem.orphans
            .extend(unknown.iter().map(|&k| sockets[k].inode));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 7;

    fn sock(inode: u64, local: &str, state: SocketState, uid: u32, owners: &[i32]) -> Socket {
        Socket {
            netns: NS,
            protocol: Protocol::Tcp,
            local: local.parse().expect("addr"),
            remote: None,
            state,
            uid,
            inode,
            owners: owners.to_vec(),
        }
    }

    fn proc(pid: i32, uid: u32) -> Proc {
        Proc {
            pid,
            netns: NS,
            uid,
        }
    }

    /// What a search did: the pids walked at each step, with `fds` as every process's
    /// descriptors (pid → socket inodes).
    struct Run {
        steps: Vec<Vec<i32>>,
        orphans: IdSet<u64>,
        explained: IdSet<u64>,
    }

    fn run(
        sockets: &[Socket],
        procs: &[Proc],
        pending: &[u64],
        unreadable: &[Unreadable],
        fds: &[(i32, u64)],
    ) -> Run {
        let pending: IdSet<u64> = pending.iter().copied().collect();
        let mut orphans = IdSet::default();
        let mut explained = IdSet::default();
        let mut steps = Vec::new();
        search(
            sockets,
            procs,
            Memory {
                pending: &pending,
                orphans: &mut orphans,
                explained: &mut explained,
                unreadable,
            },
            &mut |pids: &[i32], owned: &mut [bool]| {
                steps.push(pids.to_vec());
                for (pid, inode) in fds {
                    if pids.contains(pid) {
                        if let Some(k) = sockets.iter().position(|s| s.inode == *inode) {
                            owned[k] = true;
                        }
                    }
                }
            },
        );
        Run {
            steps,
            orphans,
            explained,
        }
    }

    #[test]
    fn nothing_unowned_walks_nothing() {
        let sockets = [sock(1, "0.0.0.0:80", SocketState::Listen, 0, &[10])];
        let r = run(&sockets, &[proc(10, 0)], &[], &[], &[]);
        assert!(r.steps.is_empty());
    }

    #[test]
    fn an_accepted_connection_is_found_at_its_listeners_holders() {
        let sockets = [
            sock(1, "0.0.0.0:80", SocketState::Listen, 33, &[10]),
            sock(2, "10.0.0.1:80", SocketState::Established, 33, &[]),
        ];
        let procs = [proc(10, 33), proc(11, 33), proc(12, 0)];
        let r = run(&sockets, &procs, &[], &[], &[(10, 2)]);
        assert_eq!(r.steps, [vec![10]]);
        assert!(r.orphans.is_empty());
    }

    #[test]
    fn then_the_namespace_by_uid_each_process_walked_once() {
        let sockets = [
            sock(1, "0.0.0.0:80", SocketState::Listen, 33, &[10]),
            sock(2, "10.0.0.1:80", SocketState::Established, 33, &[]),
        ];
        let procs = [proc(10, 33), proc(11, 33), proc(12, 0)];
        let r = run(&sockets, &procs, &[], &[], &[(11, 2)]);
        // Step 2 chooses 10 and 11; 10 was walked in step 1.
        assert_eq!(r.steps, [vec![10], vec![11]]);
    }

    #[test]
    fn a_new_socket_does_not_widen_beyond_its_uid() {
        let sockets = [sock(3, "0.0.0.0:9000", SocketState::Listen, 1000, &[])];
        let procs = [proc(10, 1000), proc(12, 0)];
        let r = run(&sockets, &procs, &[], &[], &[]);
        assert_eq!(r.steps, [vec![], vec![10]]);
        assert!(r.orphans.is_empty() && r.explained.is_empty());
    }

    #[test]
    fn a_pending_socket_widens_to_root_then_everyone_then_is_an_orphan() {
        let sockets = [sock(3, "0.0.0.0:9000", SocketState::Listen, 1000, &[])];
        let procs = [proc(10, 1000), proc(12, 0), proc(13, 2000)];
        let r = run(&sockets, &procs, &[3], &[], &[]);
        assert_eq!(r.steps, [vec![], vec![10], vec![12], vec![13]]);
        assert!(r.orphans.contains(&3));
        // Found at a root process: no step 4.
        let r = run(&sockets, &procs, &[3], &[], &[(12, 3)]);
        assert_eq!(r.steps, [vec![], vec![10], vec![12]]);
        assert!(r.orphans.is_empty());
        // Root's socket: every process of the namespace in step 3.
        let sockets = [sock(3, "0.0.0.0:9000", SocketState::Listen, 0, &[])];
        let r = run(&sockets, &procs, &[3], &[], &[]);
        assert_eq!(r.steps, [vec![], vec![12], vec![10, 13], vec![]]);
    }

    #[test]
    fn a_socket_an_unreadable_process_may_hold_is_explained_not_searched_everywhere() {
        let sockets = [sock(3, "0.0.0.0:9000", SocketState::Listen, 1000, &[])];
        let procs = [proc(10, 1000), proc(12, 0), proc(13, 2000)];
        let unreadable = [Unreadable {
            pid: 10,
            start_ticks: 1,
            uid: 1000,
            netns: NS,
        }];
        let r = run(&sockets, &procs, &[3], &unreadable, &[]);
        assert_eq!(r.steps, [vec![], vec![10], vec![12]]);
        assert!(r.explained.contains(&3) && r.orphans.is_empty());
    }

    #[test]
    fn settled_sockets_are_not_searched_for() {
        let sockets = [sock(3, "0.0.0.0:9000", SocketState::Listen, 1000, &[])];
        let pending: IdSet<u64> = [3].into_iter().collect();
        let mut orphans: IdSet<u64> = [3].into_iter().collect();
        let mut explained = IdSet::default();
        let mut walks = 0;
        search(
            &sockets,
            &[proc(10, 1000)],
            Memory {
                pending: &pending,
                orphans: &mut orphans,
                explained: &mut explained,
                unreadable: &[],
            },
            &mut |_: &[i32], _: &mut [bool]| walks += 1,
        );
        assert_eq!(walks, 0);
    }

    #[test]
    fn which_sockets_an_unreadable_process_explains() {
        let u = Unreadable {
            pid: 1,
            start_ticks: 1,
            uid: 1000,
            netns: 7,
        };
        let sock = |netns, uid| Socket {
            netns,
            protocol: Protocol::Tcp,
            local: "127.0.0.1:80".parse().expect("addr"),
            remote: None,
            state: SocketState::Listen,
            uid,
            inode: 9,
            owners: Vec::new(),
        };
        assert!(u.explains(&sock(7, 1000)));
        assert!(u.explains(&sock(7, 0)), "root's socket, privileges dropped");
        assert!(!u.explains(&sock(7, 1001)), "another user's");
        assert!(!u.explains(&sock(8, 1000)), "another namespace");
        let nowhere = Unreadable { netns: 0, ..u };
        assert!(nowhere.explains(&sock(8, 1000)), "namespace unknown");
        assert!(!nowhere.explains(&sock(8, 1001)));
    }
}
