//! Doing things inside another network namespace without moving the caller.
//!
//! A thread's network namespace is its own: [`spawn_in`] starts a short-lived helper thread
//! that enters the given namespaces in turn with `setns(fd, CLONE_NEWNET)` (the form
//! systemd's `RestrictNamespaces=net` filter allows), runs a closure in each, and exits, so
//! the namespace it ended in dies with it and the calling thread never moves. A socket
//! created in there stays in that namespace wherever it is used later (what the sock_diag
//! reader relies on); a probe run in there connects inside that namespace.
//!
//! Entering needs `CAP_SYS_ADMIN` in the agent's user namespace and in the namespace's
//! owner. Without it, and with a network-namespace helper configured
//! ([`crate::netns_helper`]: a separate process that has that capability), the closure still
//! runs, in the caller's namespace, and gets its sockets from the helper, created inside the
//! namespace ([`Inside::Helper`]); without a helper, or when the helper fails too, the stop
//! reports [`NetnsError`] and its closure is not run. Closures create every socket through
//! [`Inside::socket`], so they work the same either way.

use crate::netns_helper::{self, Connection, HelperError, SocketKind};
use nix::sched::{setns, CloneFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::thread::JoinHandle;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NetnsError {
    #[error("cannot enter network namespace {netns} (setns): {errno}")]
    Enter { netns: u64, errno: nix::Error },
    #[error("cannot enter network namespace {netns} (setns): {errno}, nor use the {helper}")]
    Helper {
        netns: u64,
        errno: nix::Error,
        helper: HelperError,
    },
}

/// How a closure of [`spawn_in`] gets sockets of the namespace it is for.
#[derive(Debug)]
pub enum Inside<'a> {
    /// The thread is in that namespace (entered, or its own): sockets are created directly.
    Native,
    /// The thread could not enter: the helper creates each socket inside `netns`. The
    /// thread is in the caller's namespace (or the last one it entered), so a closure must
    /// not rely on anything but these sockets being in the namespace.
    Helper {
        conn: &'a mut Connection,
        netns: BorrowedFd<'a>,
    },
}

impl Inside<'_> {
    /// A new socket of `kind` in the namespace (close-on-exec).
    pub fn socket(&mut self, kind: SocketKind) -> Result<OwnedFd, String> {
        match self {
            Inside::Native => kind.create().map_err(|e| format!("socket: {e}")),
            Inside::Helper { conn, netns } => conn.socket(*netns, kind).map_err(|e| e.to_string()),
        }
    }

    /// Whether the thread is in the namespace itself.
    pub fn is_native(&self) -> bool {
        matches!(self, Inside::Native)
    }
}

/// Where one closure of [`spawn_in`] runs.
#[derive(Debug)]
pub enum Place {
    /// The caller's own network namespace: no `setns`, so no privilege needed.
    Here,
    /// The namespace of this open `/proc/<pid>/ns/net`.
    Enter(OwnedFd),
}

/// (device, inode) of the calling thread's network namespace.
pub fn own() -> Option<(u64, u64)> {
    // Direct system call, like the inventory's /proc reads (no libc hook in the path).
    rustix::fs::stat("/proc/thread-self/ns/net")
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

/// What [`spawn_in`]'s thread returns: per namespace, the closure's result or why the
/// namespace could not be entered.
pub type Visits<T> = Vec<(u64, Result<T, NetnsError>)>;

/// Starts a helper thread named `name` that runs `f(netns, inside)` in each namespace of
/// `stops`, in order, and returns what each gave (or why it could not be entered). Stops
/// that stay [`Place::Here`] run first, before the thread has moved anywhere. A namespace
/// the thread cannot enter is served through the helper socket `helper` when one is given
/// (one connection for the whole visit, opened at the first need). The thread exits when it
/// is done; join the handle for the results.
pub fn spawn_in<T, F>(
    name: &str,
    mut stops: Vec<(u64, Place)>,
    helper: Option<PathBuf>,
    mut f: F,
) -> std::io::Result<JoinHandle<Visits<T>>>
where
    T: Send + 'static,
    F: FnMut(u64, &mut Inside<'_>) -> T + Send + 'static,
{
    // Stable: the caller's order otherwise.
    stops.sort_by_key(|(_, place)| matches!(place, Place::Enter(_)));
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut conn: Option<Result<Connection, HelperError>> = None;
            stops
                .into_iter()
                .map(|(netns, place)| {
                    let fd = match place {
                        Place::Here => return (netns, Ok(f(netns, &mut Inside::Native))),
                        Place::Enter(fd) => fd,
                    };
                    let errno = match setns(&fd, CloneFlags::CLONE_NEWNET) {
                        Ok(()) => return (netns, Ok(f(netns, &mut Inside::Native))),
                        Err(errno) => errno,
                    };
                    // "If present": a host without the helper's units keeps the plain error.
                    let Some(path) = helper.as_deref().filter(|p| p.exists()) else {
                        return (netns, Err(NetnsError::Enter { netns, errno }));
                    };
                    let c = conn.get_or_insert_with(|| netns_helper::Connection::open(path));
                    match c {
                        Ok(c) => {
                            let mut inside = Inside::Helper {
                                conn: c,
                                netns: fd.as_fd(),
                            };
                            (netns, Ok(f(netns, &mut inside)))
                        }
                        Err(e) => (
                            netns,
                            Err(NetnsError::Helper {
                                netns,
                                errno,
                                helper: e.clone(),
                            }),
                        ),
                    }
                })
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_ino() -> u64 {
        own().map(|(_, ino)| ino).unwrap_or(0)
    }

    #[test]
    fn here_runs_without_moving_and_a_bad_fd_is_reported() {
        let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
        let handle = spawn_in(
            "netns-test",
            vec![(42, Place::Enter(devnull.into())), (7, Place::Here)],
            None,
            |netns, inside| (netns, own_ino(), inside.is_native()),
        )
        .expect("spawn");
        let r = handle.join().expect("join");
        // Here first, in this namespace; the /dev/null stop fails to enter and says so.
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (7, Ok((7, own_ino(), true))));
        assert!(
            matches!(&r[1], (42, Err(NetnsError::Enter { netns: 42, .. }))),
            "{r:?}"
        );
        let text = r[1]
            .1
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.starts_with("cannot enter network namespace 42 (setns): "),
            "{text}"
        );
        // The caller did not move.
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").expect("ns"),
            std::fs::read_link("/proc/self/ns/net").expect("ns")
        );
    }
}
