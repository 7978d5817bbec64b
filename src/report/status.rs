//! The local status socket: a Unix stream socket (mode 0660, group `aupwatch`) that answers
//! each connection with the agent's status as one JSON document, then closes. Only root,
//! the agent's own user and members of the group are answered; others get an error.
//! Each connection is answered on a worker thread of its own within a deadline
//! ([`CLIENT_DEADLINE`] for the whole answer): at most [`WORKERS`] at once, and
//! [`PRIVILEGED_WORKERS`] more kept for root and the agent's own user, so clients that
//! connect and never read cannot pile up threads nor starve root's `aupwatch status`; a
//! client that finds every worker taken is told the agent is busy, at once.

use aupwatch_proto::status::Status;
use aupwatch_proto::SCHEMA_VERSION;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients answered at once.
pub const WORKERS: usize = 4;
/// Workers beyond [`WORKERS`] that only root and the agent's own user get.
pub const PRIVILEGED_WORKERS: usize = 2;
/// The time a client has to take the whole answer; a client that reads slower (or not at
/// all) is dropped.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot create the status socket {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another agent is already answering on {0}")]
    InUse(PathBuf),
    #[error("cannot connect to the agent at {path}: {source} (is `aupwatch agent` running? is this user root or in its group?)")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading from the agent at {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent at {path} answered something that is not JSON: {message}")]
    Garbled { path: PathBuf, message: String },
    #[error("the agent refused: {0}")]
    Refused(String),
    #[error("the agent at {path} speaks status schema version {found}; this aupwatch reads up to {known} (upgrade the client)")]
    NewerSchema {
        path: PathBuf,
        found: u64,
        known: u32,
    },
}

/// The latest status document, shared between the agent loop and the socket thread (each
/// answer holds the document it started with, not a copy).
pub type Shared = Arc<Mutex<Arc<str>>>;

/// A running status server: dropping it stops its thread (waits for it to end) and removes
/// its socket file.
pub struct StatusServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatusServer {
    /// Binds `path`, sets its mode and group, and serves `shared` from a thread.
    pub fn start(path: &Path, group: &str, shared: Shared) -> Result<StatusServer, StatusError> {
        let bind_err = |source| StatusError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(bind_err)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(StatusError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw());
        // No chown when the socket already has the group (the agent's own primary group, as
        // under the unit): the unit forbids @chown (SystemCallFilter=~@privileged).
        let has = |gid: u32| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).is_ok_and(|m| m.gid() == gid)
        };
        if let Some(gid) = gid.filter(|&g| !has(g)) {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(bind_err)?;
        }
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
        let group = group.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("status".into())
            .spawn(move || serve(listener, &group, gid, &shared, &stopped))
            .map_err(bind_err)?;
        Ok(StatusServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The thread waits in accept(): one connection wakes it to see the flag. If the
        // socket file is gone (someone removed it) the thread cannot be woken, and is left
        // rather than waited for forever.
        let woken = UnixStream::connect(&self.path).is_ok();
        let _ = std::fs::remove_file(&self.path);
        if let Some(t) = self.thread.take() {
            if woken {
                let _ = t.join();
            }
        }
    }
}

fn serve(
    listener: UnixListener,
    group: &str,
    gid: Option<u32>,
    shared: &Shared,
    stop: &AtomicBool,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    let own_uid = nix::unistd::geteuid().as_raw();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        // Who it is, cheaply (one getsockopt): root and the agent's own user may use the
        // reserved workers. The full check (groups) runs on the worker.
        let privileged = peer_uid(&conn).is_some_and(|uid| uid == 0 || uid == own_uid);
        let limit = WORKERS + if privileged { PRIVILEGED_WORKERS } else { 0 };
        if busy.fetch_add(1, Ordering::SeqCst) >= limit {
            busy.fetch_sub(1, Ordering::SeqCst);
            // A short answer fits the socket's buffer: this write does not wait.
            let _ = conn.set_nonblocking(true);
            let _ = (&conn).write(
                br#"{"error":"busy: every status worker is taken by other clients, try again"}"#,
            );
            continue;
        }
        let job = Job {
            conn,
            group: group.to_string(),
            gid,
            shared: shared.clone(),
            busy: busy.clone(),
        };
        if let Err(e) = std::thread::Builder::new()
            .name("status-client".into())
            .spawn(move || job.run())
        {
            // The job (and its count) went with the failed spawn's closure.
            super::log(
                super::Level::Warning,
                &format!("status socket: cannot start a worker: {e}"),
            );
        }
    }
}

/// One client's answer, on a worker thread.
struct Job {
    conn: UnixStream,
    group: String,
    gid: Option<u32>,
    shared: Shared,
    busy: Arc<AtomicUsize>,
}

impl Job {
    fn run(self) {
        let answer: Arc<str> = match permitted(&self.conn, &self.group, self.gid) {
            Ok(()) => match self.shared.lock() {
                Ok(doc) => doc.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            },
            Err(why) => Arc::from(serde_json::json!({ "error": why }).to_string()),
        };
        // A client that went away, or reads too slowly, is its own problem.
        let _ = write_within(&self.conn, answer.as_bytes(), CLIENT_DEADLINE);
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes `data` to `conn` unless that takes longer than `deadline` in all.
fn write_within(conn: &UnixStream, data: &[u8], deadline: Duration) -> std::io::Result<()> {
    let until = Instant::now() + deadline;
    let mut off = 0;
    while off < data.len() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        conn.set_write_timeout(Some(left))?;
        match (&*conn).write(&data[off..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn peer_uid(conn: &UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(conn, PeerCredentials).ok().map(|c| c.uid())
}

/// Root, the agent's own user, and members of `group` may read the status.
fn permitted(conn: &UnixStream, group: &str, gid: Option<u32>) -> Result<(), String> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(conn, PeerCredentials)
        .map_err(|e| format!("cannot identify the client: {e}"))?;
    let (uid, peer_gid) = (cred.uid(), cred.gid());
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() || Some(peer_gid) == gid {
        return Ok(());
    }
    // Supplementary groups of the connected process (a service with SupplementaryGroups=,
    // a login whose groups come from sssd or LDAP): its /proc status says which it holds.
    if let Some(gid) = gid {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", cred.pid())).unwrap_or_default();
        if supplementary_groups(&status).contains(&gid) {
            return Ok(());
        }
    }
    if let (Some(gid), Ok(Some(user))) = (
        gid,
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
    ) {
        if let Ok(Some(g)) = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
            if g.mem.contains(&user.name) {
                return Ok(());
            }
        }
    }
    Err(format!(
        "permission denied: uid {uid} is not root and not in group {group}"
    ))
}

/// The `Groups:` line of a `/proc/<pid>/status`.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps the status document within [`aupwatch_proto::bounds::MAX_STATUS_BYTES`]: recently resolved findings go
/// first (oldest first), then the newest open ones, counted in `findings_omitted`. Each
/// finding is bounded already (`detect::bound`), so this only bites with very many.
pub fn bound(doc: &mut Status) {
    use aupwatch_proto::bounds::MAX_STATUS_BYTES;
    let total = super::json_len(doc);
    let mut over = total.saturating_sub(MAX_STATUS_BYTES);
    while over > 0 {
        let Some(t) = doc.recently_resolved.pop() else {
            break;
        };
        over = over.saturating_sub(super::json_len(&t) + 1);
    }
    while over > 0 {
        let Some(t) = doc.findings.pop() else {
            break;
        };
        doc.findings_omitted += 1;
        over = over.saturating_sub(super::json_len(&t) + 1);
    }
}

/// Asks the agent at `path` for its status document.
pub fn query(path: &Path) -> Result<Status, StatusError> {
    let value = fetch(path)?;
    let found = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if found > u64::from(SCHEMA_VERSION) {
        return Err(StatusError::NewerSchema {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| StatusError::Garbled {
        path: path.to_path_buf(),
        message: format!("not a status document: {e}"),
    })
}

/// The agent's answer as JSON, or its refusal as an error.
fn fetch(path: &Path) -> Result<serde_json::Value, StatusError> {
    let mut conn = UnixStream::connect(path).map_err(|source| StatusError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf)
        .map_err(|source| StatusError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let value: serde_json::Value =
        serde_json::from_slice(&buf).map_err(|e| StatusError::Garbled {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
        return Err(StatusError::Refused(err.to_string()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_line() {
        assert_eq!(
            supplementary_groups("Name:\tx\nGroups:\t4 27 1000 \nNgid:\t0\n"),
            vec![4, 27, 1000]
        );
        assert_eq!(supplementary_groups("Groups:\n"), Vec::<u32>::new());
    }

    #[test]
    fn serves_the_shared_document_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/agent.sock");
        let shared: Shared = Arc::new(Mutex::new(Arc::from(r#"{"agent":{"health":"ok"}}"#)));
        let server =
            StatusServer::start(&path, "no-such-group-aupwatch", shared.clone()).expect("start");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "without the group only the owner may connect");
        assert_eq!(fetch(&path).expect("fetch")["agent"]["health"], "ok");
        assert!(
            matches!(query(&path), Err(StatusError::Garbled { .. })),
            "not a whole status document"
        );
        *shared.lock().expect("lock") = Arc::from(r#"{"agent":{"health":"degraded"}}"#);
        assert_eq!(fetch(&path).expect("fetch")["agent"]["health"], "degraded");
        *shared.lock().expect("lock") = Arc::from(r#"{"schema_version":999}"#);
        assert!(matches!(
            query(&path),
            Err(StatusError::NewerSchema { found: 999, .. })
        ));
        assert!(matches!(
            StatusServer::start(&path, "x", shared.clone()),
            Err(StatusError::InUse(_))
        ));
        drop(server);
        assert!(!path.exists());
        assert!(matches!(query(&path), Err(StatusError::Connect { .. })));
    }

    #[test]
    fn dropping_the_server_ends_its_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.sock");
        let shared: Shared = Arc::new(Mutex::new(Arc::from("{}")));
        let mut server =
            StatusServer::start(&path, "no-such-group-aupwatch", shared.clone()).expect("start");
        let thread = server.thread.take().expect("a thread");
        // Put it back so Drop stops it; keep a way to see it end.
        let finished = Arc::new(AtomicBool::new(false));
        let seen = finished.clone();
        let watcher = std::thread::spawn(move || {
            let _ = thread.join();
            seen.store(true, Ordering::SeqCst);
        });
        drop(server);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !finished.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            finished.load(Ordering::SeqCst),
            "the status thread still runs"
        );
        let _ = watcher.join();
        assert!(!path.exists());
    }
}
