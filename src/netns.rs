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
//! owner. Without it each stop reports [`NetnsError::Enter`] and its closure is not run.

use nix::sched::{setns, CloneFlags};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NetnsError {
    #[error("cannot enter network namespace {netns} (setns): {errno}")]
    Enter { netns: u64, errno: nix::Error },
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

/// Starts a helper thread named `name` that runs `f(netns)` in each namespace of `stops`, in
/// order, and returns what each gave (or why it could not be entered). Stops that stay
/// [`Place::Here`] run first, before the thread has moved anywhere. The thread exits when it
/// is done; join the handle for the results.
pub fn spawn_in<T, F>(
    name: &str,
    mut stops: Vec<(u64, Place)>,
    mut f: F,
) -> std::io::Result<JoinHandle<Visits<T>>>
where
    T: Send + 'static,
    F: FnMut(u64) -> T + Send + 'static,
{
    // Stable: the caller's order otherwise.
    stops.sort_by_key(|(_, place)| matches!(place, Place::Enter(_)));
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            stops
                .into_iter()
                .map(|(netns, place)| {
                    let entered = match place {
                        Place::Here => Ok(()),
                        Place::Enter(fd) => setns(&fd, CloneFlags::CLONE_NEWNET)
                            .map_err(|errno| NetnsError::Enter { netns, errno }),
                    };
                    (netns, entered.map(|()| f(netns)))
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
            |netns| (netns, own_ino()),
        )
        .expect("spawn");
        let r = handle.join().expect("join");
        // Here first, in this namespace; the /dev/null stop fails to enter and says so.
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], (7, Ok((7, own_ino()))));
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
