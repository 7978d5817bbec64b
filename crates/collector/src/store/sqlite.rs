//! The SQLite backend: WAL mode, one writer thread doing group commit (many requests per
//! transaction, each answered through its oneshot only after the COMMIT), reads on a small
//! pool of read connections in blocking tasks, WAL checkpoints on a thread of their own.
//! Reports are serialized (JSON columns, finding columns: [`Prepared`]) on the caller's
//! thread; the writer only binds and steps.
//!
//! Must never: write outside the writer thread (the CLI in another process is a second
//! writer; SQLite serializes the two with its lock and `busy_timeout`).

use super::{
    finding_row, key_in_use, refusal, severity_rank, to_i64, to_u64, Activity, AlertCounts,
    AlertOutcome, AlertRow, AlertState, AuditEntry, Counts, CurrentKey, EnrollOutcome, Enrollment,
    FindingColumns, FindingFilter, Fut, HostAction, HostAuth, HostRecord, IngestOutcome, NewAlert,
    NewSession, Retained, Role, SecretRow, SequenceState, Session, Settled, StateFilter, Store,
    StoreError, TokenRow, UserRow, TABLES,
};
use crate::metrics::Histogram;
use aupwatch_proto::api::FindingRow;
use aupwatch_proto::protocol::{Report, Stored};
use aupwatch_proto::LifecycleState;
use rusqlite::{params, Connection, OptionalExtension, ToSql};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

const SCHEMA: &str = include_str!("schema_sqlite.sql");
const SCHEMA_VERSION: i64 = 3;

/// One write, run inside the writer's transaction under its own savepoint.
trait Job: Send {
    /// Runs the write; false when it failed (its savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

struct FnJob<R, F> {
    f: Option<F>,
    out: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Job for FnJob<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let out = f(conn);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let out = match (commit, self.out) {
            (Ok(()), Some(out)) => out,
            (Ok(()), None) => Err(StoreError::WriterGone),
            (Err(e), Some(Err(job_error))) => {
                Err(StoreError::Corrupt(format!("{job_error}; commit: {e}")))
            }
            (Err(e), _) => Err(StoreError::Corrupt(format!("commit failed: {e}"))),
        };
        // The caller may have gone (client disconnected): nothing to answer then.
        let _ = self.reply.send(out);
    }
}

pub struct SqliteStore {
    path: PathBuf,
    /// Dropped with the store: the checkpoint thread ends.
    _checkpointer: SyncSender<()>,
    jobs: SyncSender<Box<dyn Job>>,
    depth: Arc<AtomicUsize>,
    readers: Arc<Mutex<Vec<Connection>>>,
    commits: Arc<Histogram>,
}

/// Opens a connection with the collector's pragmas.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    for (made, step) in (1..).zip(super::schema_steps(SCHEMA)) {
        if version < made {
            tx.execute_batch(step)?;
        }
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path` and starts its writer.
    /// `queue_depth` bounds waiting requests; `max_jobs` bounds one transaction.
    pub fn open(
        path: &Path,
        queue_depth: usize,
        max_jobs: usize,
        commits: Arc<Histogram>,
    ) -> Result<SqliteStore, StoreError> {
        let mut conn = connect(path)?;
        migrate(&mut conn)?;
        // The WAL is checkpointed by a thread of its own (copying pages into the database
        // file and its fsync off the writer); the writer checkpoints only when that one falls
        // this far behind.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
        let checkpoints = connect(path)?;
        let (stop, stopped) = sync_channel::<()>(0);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(checkpoints, stopped))?;
        let (tx, rx) = sync_channel::<Box<dyn Job>>(queue_depth);
        let depth = Arc::new(AtomicUsize::new(0));
        let writer_depth = depth.clone();
        let writer_commits = commits.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx, writer_depth, max_jobs.max(1), writer_commits))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            _checkpointer: stop,
            jobs: tx,
            depth,
            readers: Arc::new(Mutex::new(Vec::new())),
            commits,
        })
    }

    fn write<R, F>(&self, f: F) -> Fut<'_, R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(FnJob {
            f: Some(f),
            out: None,
            reply,
        });
        self.depth.fetch_add(1, Ordering::SeqCst);
        let sent = self.jobs.try_send(job);
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.depth.fetch_sub(1, Ordering::SeqCst);
                    return Err(StoreError::Busy);
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.depth.fetch_sub(1, Ordering::SeqCst);
                    return Err(StoreError::WriterGone);
                }
            }
            rx.await.map_err(|_| StoreError::WriterGone)?
        })
    }

    fn read<R, F>(&self, f: F) -> Fut<'_, R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let pooled = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let conn = match pooled {
                    Some(c) => c,
                    None => connect(&path)?,
                };
                let out = f(&conn);
                let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < 8 {
                    pool.push(conn);
                }
                out
            })
            .await
            .map_err(|_| StoreError::WriterGone)?
        })
    }
}

/// The writer's own WAL auto-checkpoint, in pages: a fallback for when the checkpoint
/// thread falls behind (the WAL then stays below ~8 MB with 4 KiB pages).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 2_000;
/// How often the checkpoint thread copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Passive checkpoints every [`CHECKPOINT_EVERY`] on a connection of its own, until the
/// store is dropped: they run beside the writer (a passive checkpoint takes no write lock)
/// on the other core, instead of inside the writer's commits every 1,000 pages.
fn checkpointer(conn: Connection, stop: Receiver<()>) {
    let mut last_error = None;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = done {
            let e = e.to_string();
            if last_error.as_ref() != Some(&e) {
                crate::log(&format!("sqlite checkpoint: {e}"));
            }
            last_error = Some(e);
        } else {
            last_error = None;
        }
    }
}

fn writer(
    conn: Connection,
    rx: Receiver<Box<dyn Job>>,
    depth: Arc<AtomicUsize>,
    max_jobs: usize,
    commits: Arc<Histogram>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_jobs {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        depth.fetch_sub(batch.len(), Ordering::SeqCst);
        let started = Instant::now();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = e.to_string();
            for job in batch {
                job.finish(Err(e.clone()));
            }
            continue;
        }
        for job in &mut batch {
            let ok = conn.execute_batch("SAVEPOINT job").is_ok() && job.run(&conn);
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            // A failed release leaves the transaction to COMMIT's verdict below.
            let _ = conn.execute_batch(end);
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        commits.observe(started.elapsed());
        for job in batch {
            job.finish(commit.clone());
        }
    }
}

fn enroll(conn: &Connection, e: &Enrollment) -> Result<EnrollOutcome, StoreError> {
    let secret: Option<Option<String>> = conn
        .query_row(
            "SELECT customer FROM enroll_secrets WHERE secret_hash = ?1 AND revoked_unix_ms IS NULL",
            [&e.secret_hash],
            |r| r.get(0),
        )
        .optional()?;
    let Some(customer) = secret else {
        return Ok(EnrollOutcome::BadSecret);
    };
    let mut labels = e.labels.clone();
    if let Some(c) = &customer {
        labels.insert("customer".into(), c.clone());
    }
    let customer = labels.get("customer").cloned();
    let labels_json = serde_json::to_string(&labels)?;
    let existing: Option<(String, bool, bool, CurrentKey)> = conn
        .query_row(
            "SELECT h.host_id, h.blocked, h.approved, h.revoked, h.stopped, h.interval_secs,
             l.last_seen_unix_ms
             FROM hosts h LEFT JOIN last_seen l ON l.host_id = h.host_id WHERE h.machine_id = ?1",
            [&e.machine_id],
            |r| {
                let key = CurrentKey {
                    revoked: r.get(3)?,
                    stopped: r.get(4)?,
                    interval_secs: r.get::<_, Option<i64>>(5)?.map(to_u64),
                    last_seen_unix_ms: r.get::<_, Option<i64>>(6)?.map(to_u64),
                };
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, key))
            },
        )
        .optional()?;
    let in_use = existing
        .as_ref()
        .and_then(|(_, _, _, key)| key_in_use(key, e.now_unix_ms, e.in_use_intervals));
    match (existing, in_use) {
        (Some((_, true, _, _)), _) => Ok(EnrollOutcome::Blocked),
        (Some((host_id, false, _, _)), Some(retry_after_secs)) => Ok(EnrollOutcome::InUse {
            host_id,
            retry_after_secs,
        }),
        (Some((host_id, false, approved, _)), None) => {
            conn.execute(
                "UPDATE hosts SET node_key_hash = ?2, hostname = ?3, labels = ?4, customer = ?5,
                 agent_version = ?6, revoked = 0, archived = 0, stopped = 0 WHERE host_id = ?1",
                params![
                    host_id,
                    e.node_key_hash,
                    e.hostname,
                    labels_json,
                    customer,
                    e.agent_version
                ],
            )?;
            Ok(EnrollOutcome::Enrolled {
                host_id,
                pending_approval: !approved,
            })
        }
        (None, _) => {
            conn.execute(
                "INSERT INTO hosts (host_id, machine_id, hostname, labels, customer, node_key_hash,
                 approved, enrolled_unix_ms, agent_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    e.new_host_id,
                    e.machine_id,
                    e.hostname,
                    labels_json,
                    customer,
                    e.node_key_hash,
                    !e.require_approval,
                    to_i64(e.now_unix_ms),
                    e.agent_version
                ],
            )?;
            Ok(EnrollOutcome::Enrolled {
                host_id: e.new_host_id.clone(),
                pending_approval: e.require_approval,
            })
        }
    }
}

struct HostState {
    seq: SequenceState,
    findings_as_of: i64,
}

/// A report with what the writer binds already made (JSON texts, finding columns), so that
/// serializing runs on the caller's thread and the writer thread only binds and steps.
pub struct Prepared<'a> {
    report: std::borrow::Cow<'a, Report>,
    heartbeat_json: String,
    /// Per event: its tracked finding's JSON.
    event_json: Vec<String>,
    /// Per open finding: its columns (a `resolved` one stored as ongoing).
    open: Vec<FindingColumns>,
}

impl<'a> Prepared<'a> {
    pub fn new(report: std::borrow::Cow<'a, Report>) -> Result<Prepared<'a>, StoreError> {
        let heartbeat_json = serde_json::to_string(&report.heartbeat)?;
        let event_json = report
            .events
            .iter()
            .map(|e| serde_json::to_string(&e.tracked))
            .collect::<Result<_, _>>()?;
        let open = report
            .open_findings
            .iter()
            .map(|t| {
                let state = match t.state {
                    LifecycleState::Resolved => LifecycleState::Ongoing,
                    s => s,
                };
                FindingColumns::new(t, state)
            })
            .collect::<Result<_, _>>()?;
        Ok(Prepared {
            report,
            heartbeat_json,
            event_json,
            open,
        })
    }

    pub fn all(reports: Vec<Report>) -> Result<Vec<Prepared<'static>>, StoreError> {
        reports
            .into_iter()
            .map(|r| Prepared::new(std::borrow::Cow::Owned(r)))
            .collect()
    }
}

fn upsert_finding(
    conn: &Connection,
    host_id: &str,
    c: &FindingColumns,
    resolved: Option<i64>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO findings (host_id, tracked_id, category, severity, severity_rank, state,
         signatures, excepted, first_seen_unix_ms, last_seen_unix_ms, resolved_unix_ms, tracked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (host_id, tracked_id) DO UPDATE SET category = excluded.category,
         severity = excluded.severity, severity_rank = excluded.severity_rank,
         state = excluded.state, signatures = excluded.signatures, excepted = excluded.excepted,
         first_seen_unix_ms = min(findings.first_seen_unix_ms, excluded.first_seen_unix_ms),
         last_seen_unix_ms = excluded.last_seen_unix_ms,
         resolved_unix_ms = excluded.resolved_unix_ms, tracked = excluded.tracked",
    )?
    .execute(params![
        host_id,
        c.tracked_id,
        c.category,
        c.severity,
        c.severity_rank,
        c.state,
        c.signatures,
        c.excepted,
        c.first_seen_unix_ms,
        c.last_seen_unix_ms,
        resolved,
        c.tracked_json
    ])?;
    Ok(())
}

fn ingest(
    conn: &Connection,
    host_id: &str,
    reports: &[Prepared<'_>],
    alerts: &[NewAlert],
    now: u64,
) -> Result<Vec<Stored>, StoreError> {
    let results = ingest_reports(conn, host_id, reports, now)?;
    if !alerts.is_empty() {
        let stored: HashSet<&str> = reports
            .iter()
            .zip(&results)
            .filter(|(_, s)| **s == Stored::Stored)
            .map(|(r, _)| r.report.report_id.as_str())
            .collect();
        let now_alerts = alerts
            .iter()
            .filter(|a| a.report_id.as_deref().is_none_or(|r| stored.contains(r)));
        insert_alerts(conn, now_alerts, now)?;
    }
    Ok(results)
}

/// Puts alerts in the outbox, each (route, alert id) once; how many were new.
fn insert_alerts<'a>(
    conn: &Connection,
    alerts: impl Iterator<Item = &'a NewAlert>,
    now: u64,
) -> Result<u64, StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO alerts (route, alert_id, kind, host_id, body, created_unix_ms,
         next_attempt_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (route, alert_id) DO NOTHING",
    )?;
    let mut n = 0;
    for a in alerts {
        n += insert.execute(params![
            a.route,
            a.alert_id,
            a.kind,
            a.host_id,
            a.body,
            to_i64(now)
        ])? as u64;
    }
    Ok(n)
}

const ALERT_COLUMNS: &str = "seq, route, alert_id, kind, host_id, body, state, attempts,
    created_unix_ms, next_attempt_unix_ms, done_unix_ms, last_error";

fn alert_row(r: &rusqlite::Row<'_>) -> Result<AlertRow, StoreError> {
    let state: String = r.get(6)?;
    Ok(AlertRow {
        seq: r.get(0)?,
        route: r.get(1)?,
        alert_id: r.get(2)?,
        kind: r.get(3)?,
        host_id: r.get(4)?,
        body: r.get(5)?,
        state: AlertState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("alert state {state:?}")))?,
        attempts: u32::try_from(r.get::<_, i64>(7)?).unwrap_or(u32::MAX),
        created_unix_ms: to_u64(r.get(8)?),
        next_attempt_unix_ms: to_u64(r.get(9)?),
        done_unix_ms: r.get::<_, Option<i64>>(10)?.map(to_u64),
        last_error: r.get(11)?,
    })
}

fn ingest_reports(
    conn: &Connection,
    host_id: &str,
    reports: &[Prepared<'_>],
    now: u64,
) -> Result<Vec<Stored>, StoreError> {
    let now = to_i64(now);
    let mut h = conn.query_row(
        "SELECT last_sequence, boot_id, findings_as_of_unix_ms, sequence_gaps, sequence_resets,
         boot_changes, last_anomaly FROM hosts WHERE host_id = ?1",
        [host_id],
        |r| {
            Ok(HostState {
                seq: SequenceState {
                    last_sequence: r.get::<_, Option<i64>>(0)?.map(to_u64),
                    boot_id: r.get(1)?,
                    gaps: r.get(3)?,
                    resets: r.get(4)?,
                    boot_changes: r.get(5)?,
                    anomaly: r.get(6)?,
                },
                findings_as_of: r.get(2)?,
            })
        },
    )?;
    let mut results = Vec::with_capacity(reports.len());
    let mut latest: Option<&Report> = None;
    for prepared in reports {
        let report: &Report = &prepared.report;
        let inserted = conn
            .prepare_cached(
                "INSERT INTO reports (report_id, host_id, sequence, boot_id, created_unix_ms,
                 received_unix_ms, goodbye, heartbeat) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (report_id) DO NOTHING",
            )?
            .execute(params![
                report.report_id,
                host_id,
                to_i64(report.sequence),
                report.boot_id,
                to_i64(report.created_unix_ms),
                now,
                report.goodbye,
                prepared.heartbeat_json
            ])?;
        if inserted == 0 {
            results.push(Stored::Duplicate);
            continue;
        }
        results.push(Stored::Stored);
        h.seq.advance(report.sequence, &report.boot_id);
        {
            let mut insert = conn.prepare_cached(
                "INSERT INTO events (report_id, host_id, kind, at_unix_ms, tracked_id, tracked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (ev, tracked) in report.events.iter().zip(&prepared.event_json) {
                insert.execute(params![
                    report.report_id,
                    host_id,
                    ev.kind.as_str(),
                    to_i64(ev.at_unix_ms),
                    ev.tracked.id,
                    tracked
                ])?;
            }
        }
        let created = to_i64(report.created_unix_ms);
        if created >= h.findings_as_of {
            h.findings_as_of = created;
            latest = Some(report);
            reconcile(conn, host_id, prepared, created)?;
        }
    }
    if let Some(r) = latest {
        let hb = &r.heartbeat;
        conn.prepare_cached(
            "UPDATE hosts SET hostname = ?2, stopped = ?3, interval_secs = ?4, agent_version = ?5,
             signature_version = ?6 WHERE host_id = ?1",
        )?
        .execute(params![
            host_id,
            r.hostname,
            r.goodbye,
            to_i64(hb.interval_secs),
            hb.agent_version,
            hb.signature_version
        ])?;
    }
    if results.contains(&Stored::Stored) {
        conn.prepare_cached(
            "UPDATE hosts SET last_sequence = ?2, boot_id = ?3, findings_as_of_unix_ms = ?4,
             sequence_gaps = ?5, sequence_resets = ?6, boot_changes = ?7, last_anomaly = ?8
             WHERE host_id = ?1",
        )?
        .execute(params![
            host_id,
            h.seq.last_sequence.map(to_i64),
            h.seq.boot_id,
            h.findings_as_of,
            h.seq.gaps,
            h.seq.resets,
            h.seq.boot_changes,
            h.seq.anomaly
        ])?;
    }
    conn.prepare_cached(
        "INSERT INTO last_seen (host_id, last_seen_unix_ms) VALUES (?1, ?2)
         ON CONFLICT (host_id) DO UPDATE SET last_seen_unix_ms = excluded.last_seen_unix_ms",
    )?
    .execute(params![host_id, now])?;
    Ok(results)
}

/// Makes the host's stored findings the report's open set: each open finding upserted,
/// every other open one resolved; findings only seen resolved in events stored as such.
fn reconcile(
    conn: &Connection,
    host_id: &str,
    prepared: &Prepared<'_>,
    created: i64,
) -> Result<(), StoreError> {
    let report: &Report = &prepared.report;
    let mut open: HashSet<&str> = HashSet::with_capacity(report.open_findings.len());
    for (t, columns) in report.open_findings.iter().zip(&prepared.open) {
        upsert_finding(conn, host_id, columns, None)?;
        open.insert(t.id.as_str());
    }
    let stored_open: Vec<String> = conn
        .prepare_cached(
            "SELECT tracked_id FROM findings WHERE host_id = ?1 AND state != 'resolved'",
        )?
        .query_map([host_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut resolve = conn.prepare_cached(
        "UPDATE findings SET state = 'resolved', resolved_unix_ms = ?3
         WHERE host_id = ?1 AND tracked_id = ?2",
    )?;
    for id in stored_open.iter().filter(|id| !open.contains(id.as_str())) {
        resolve.execute(params![host_id, id, created])?;
    }
    for ev in &report.events {
        if ev.tracked.state == LifecycleState::Resolved && !open.contains(ev.tracked.id.as_str()) {
            let known: bool = conn
                .prepare_cached("SELECT 1 FROM findings WHERE host_id = ?1 AND tracked_id = ?2")?
                .exists(params![host_id, ev.tracked.id])?;
            if !known {
                let c = FindingColumns::new(&ev.tracked, LifecycleState::Resolved)?;
                upsert_finding(conn, host_id, &c, Some(to_i64(ev.at_unix_ms)))?;
            }
        }
    }
    Ok(())
}

fn host_record(r: &rusqlite::Row<'_>) -> Result<HostRecord, StoreError> {
    let labels: String = r.get("labels")?;
    Ok(HostRecord {
        host_id: r.get("host_id")?,
        machine_id: r.get("machine_id")?,
        hostname: r.get("hostname")?,
        labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)?,
        approved: r.get("approved")?,
        blocked: r.get("blocked")?,
        revoked: r.get("revoked")?,
        archived: r.get("archived")?,
        stopped: r.get("stopped")?,
        enrolled_unix_ms: to_u64(r.get("enrolled_unix_ms")?),
        last_seen_unix_ms: r.get::<_, Option<i64>>("last_seen_unix_ms")?.map(to_u64),
        interval_secs: r.get::<_, Option<i64>>("interval_secs")?.map(to_u64),
        agent_version: r.get("agent_version")?,
        signature_version: r.get("signature_version")?,
        last_sequence: r.get::<_, Option<i64>>("last_sequence")?.map(to_u64),
        boot_id: r.get("boot_id")?,
        sequence_gaps: to_u64(r.get("sequence_gaps")?),
        sequence_resets: to_u64(r.get("sequence_resets")?),
        boot_changes: to_u64(r.get("boot_changes")?),
        last_anomaly: r.get("last_anomaly")?,
        open_findings: to_u64(r.get("open_findings")?),
    })
}

const FINDING_COLUMNS: &str = "f.host_id, f.tracked_id, h.hostname, h.customer, f.category,
    f.severity, f.state, f.signatures, f.first_seen_unix_ms, f.last_seen_unix_ms,
    f.resolved_unix_ms, f.excepted, f.tracked";

fn user_row(r: &rusqlite::Row<'_>) -> Result<UserRow, StoreError> {
    let role: String = r.get(2)?;
    Ok(UserRow {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        password_hash: r.get(3)?,
        created_unix_ms: to_u64(r.get(4)?),
    })
}

fn finding_from_row(r: &rusqlite::Row<'_>) -> Result<FindingRow, StoreError> {
    let severity: String = r.get(5)?;
    let signatures: String = r.get(7)?;
    let tracked: String = r.get(12)?;
    finding_row(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        &severity,
        r.get(6)?,
        &signatures,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        &tracked,
    )
}

fn list_findings(conn: &Connection, f: &FindingFilter) -> Result<Vec<FindingRow>, StoreError> {
    let mut sql = format!(
        "SELECT {FINDING_COLUMNS} FROM findings f JOIN hosts h ON h.host_id = f.host_id WHERE 1 = 1"
    );
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql>| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(h) = &f.host {
        arg(&mut sql, " AND (f.host_id = ? ", Box::new(h.clone()));
        arg(&mut sql, "OR h.hostname = ?)", Box::new(h.clone()));
    }
    if let Some(c) = &f.customer {
        arg(&mut sql, " AND h.customer = ?", Box::new(c.clone()));
    }
    if let Some(c) = &f.category {
        arg(&mut sql, " AND f.category = ?", Box::new(c.clone()));
    }
    if let Some(s) = f.min_severity {
        arg(
            &mut sql,
            " AND f.severity_rank >= ?",
            Box::new(super::severity_rank(s)),
        );
    }
    match f.state {
        StateFilter::All => {}
        StateFilter::Open => sql.push_str(" AND f.state != 'resolved'"),
        StateFilter::New => sql.push_str(" AND f.state = 'new'"),
        StateFilter::Ongoing => sql.push_str(" AND f.state = 'ongoing'"),
        StateFilter::Resolved => sql.push_str(" AND f.state = 'resolved'"),
    }
    if let Some(s) = &f.signature {
        arg(
            &mut sql,
            " AND instr(f.signatures, ?) > 0",
            Box::new(super::signature_pattern(s)),
        );
    }
    if let Some(s) = f.since_unix_ms {
        arg(
            &mut sql,
            " AND f.last_seen_unix_ms >= ?",
            Box::new(to_i64(s)),
        );
    }
    if let Some(u) = f.until_unix_ms {
        arg(
            &mut sql,
            " AND f.last_seen_unix_ms < ?",
            Box::new(to_i64(u)),
        );
    }
    if let Some((h, t)) = &f.after {
        arg(&mut sql, " AND (f.host_id > ? ", Box::new(h.clone()));
        arg(&mut sql, "OR (f.host_id = ? ", Box::new(h.clone()));
        arg(&mut sql, "AND f.tracked_id > ?))", Box::new(t.clone()));
    }
    let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
    arg(
        &mut sql,
        " ORDER BY f.host_id, f.tracked_id LIMIT ?",
        Box::new(limit),
    );
    let mut stmt = conn.prepare(&sql)?;
    let params: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
    let mut rows = stmt.query(params.as_slice())?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(finding_from_row(r)?);
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn enroll(&self, e: Enrollment) -> Fut<'_, EnrollOutcome> {
        self.write(move |conn| enroll(conn, &e))
    }

    fn authenticate(&self, node_key_hash: String) -> Fut<'_, Option<HostAuth>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT host_id, machine_id, approved, blocked, hostname, labels FROM hosts
                     WHERE node_key_hash = ?1 AND revoked = 0",
            )?
            .query_row([node_key_hash], |r| {
                Ok((
                    HostAuth {
                        host_id: r.get(0)?,
                        machine_id: r.get(1)?,
                        approved: r.get(2)?,
                        blocked: r.get(3)?,
                        hostname: r.get(4)?,
                        labels: BTreeMap::new(),
                    },
                    r.get::<_, String>(5)?,
                ))
            })
            .optional()?
            .map(|(mut auth, labels)| {
                auth.labels = serde_json::from_str(&labels)?;
                Ok::<_, StoreError>(auth)
            })
            .transpose()
        })
    }

    fn ingest(&self, host_id: String, reports: Vec<Report>, now: u64) -> Fut<'_, Vec<Stored>> {
        // Serialized here, on the caller's thread: the writer only binds.
        let reports = match Prepared::all(reports) {
            Ok(r) => r,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.write(move |conn| ingest(conn, &host_id, &reports, &[], now))
    }

    fn ingest_checked(
        &self,
        host_id: String,
        key_hash: String,
        reports: Vec<Report>,
        alerts: Vec<NewAlert>,
        now: u64,
    ) -> Fut<'_, IngestOutcome> {
        // Serialized here, on the caller's thread: the writer only binds.
        let reports = match Prepared::all(reports) {
            Ok(r) => r,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        self.write(move |conn| {
            let (stored, revoked, blocked, approved): (Option<String>, bool, bool, bool) = conn
                .prepare_cached(
                    "SELECT node_key_hash, revoked, blocked, approved FROM hosts WHERE host_id = ?1",
                )?
                .query_row([&host_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            if let Some(why) = refusal(stored.as_deref(), &key_hash, revoked, blocked, approved) {
                return Ok(IngestOutcome::Refused(why));
            }
            Ok(IngestOutcome::Done(ingest(
                conn, &host_id, &reports, &alerts, now,
            )?))
        })
    }

    fn enqueue_alerts(&self, alerts: Vec<NewAlert>, now: u64) -> Fut<'_, u64> {
        self.write(move |conn| insert_alerts(conn, alerts.iter(), now))
    }

    fn claim_alerts(
        &self,
        owner: String,
        now: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Fut<'_, Vec<AlertRow>> {
        self.write(move |conn| {
            let now = to_i64(now);
            let mut stmt = conn.prepare_cached(&format!(
                "UPDATE alerts SET attempts = attempts + 1, lease_owner = ?1,
                 lease_until_unix_ms = ?2 + ?3
                 WHERE seq IN (SELECT seq FROM alerts WHERE state = 'pending'
                   AND next_attempt_unix_ms <= ?2
                   AND (lease_until_unix_ms IS NULL OR lease_until_unix_ms <= ?2)
                   ORDER BY next_attempt_unix_ms, seq LIMIT ?4)
                 RETURNING {ALERT_COLUMNS}"
            ))?;
            let mut rows = stmt.query(params![
                owner,
                now,
                to_i64(lease_ms),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(alert_row(r)?);
            }
            out.sort_unstable_by_key(|a| a.seq);
            Ok(out)
        })
    }

    fn settle_alert(
        &self,
        seq: i64,
        owner: String,
        outcome: AlertOutcome,
        now: u64,
    ) -> Fut<'_, bool> {
        self.write(move |conn| {
            let Settled {
                state,
                next_attempt_unix_ms: next,
                error,
                done_unix_ms: done,
            } = outcome.settled(now);
            let n = conn
                .prepare_cached(
                    "UPDATE alerts SET state = ?3, next_attempt_unix_ms =
                     coalesce(?4, next_attempt_unix_ms), last_error = coalesce(?5, last_error),
                     done_unix_ms = ?6, lease_owner = NULL, lease_until_unix_ms = NULL
                     WHERE seq = ?1 AND lease_owner = ?2 AND state = 'pending'",
                )?
                .execute(params![seq, owner, state.as_str(), next, error, done])?;
            Ok(n == 1)
        })
    }

    fn alerts(&self, state: Option<AlertState>, limit: usize) -> Fut<'_, Vec<AlertRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE ?1 IS NULL OR state = ?1
                 ORDER BY seq DESC LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![
                state.map(AlertState::as_str),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(alert_row(r)?);
            }
            Ok(out)
        })
    }

    fn alert_counts(&self) -> Fut<'_, AlertCounts> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT state, count(*), sum(attempts > 0),
                 sum(max(attempts - 1, 0)) FROM alerts GROUP BY state",
            )?;
            let mut rows = stmt.query([])?;
            let mut c = AlertCounts::default();
            while let Some(r) = rows.next()? {
                let state: String = r.get(0)?;
                let n = to_u64(r.get(1)?);
                let retrying = to_u64(r.get::<_, Option<i64>>(2)?.unwrap_or(0));
                c.retries += to_u64(r.get::<_, Option<i64>>(3)?.unwrap_or(0));
                match AlertState::parse(&state) {
                    Some(AlertState::Pending) => {
                        c.pending = n;
                        c.retrying = retrying;
                    }
                    Some(AlertState::Sent) => c.sent = n,
                    Some(AlertState::Failed) => c.failed = n,
                    None => return Err(StoreError::Corrupt(format!("alert state {state:?}"))),
                }
            }
            Ok(c)
        })
    }

    fn hosts(&self) -> Fut<'_, Vec<HostRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT h.*, l.last_seen_unix_ms, coalesce(o.n, 0) AS open_findings FROM hosts h
                 LEFT JOIN last_seen l ON l.host_id = h.host_id
                 LEFT JOIN (SELECT host_id, count(*) AS n FROM findings WHERE state != 'resolved'
                            GROUP BY host_id) o ON o.host_id = h.host_id
                 ORDER BY h.hostname, h.host_id",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(host_record(r)?);
            }
            Ok(out)
        })
    }

    fn host_action(&self, host: String, action: HostAction, _now: u64) -> Fut<'_, bool> {
        self.write(move |conn| {
            let set = match action {
                HostAction::Revoke => "revoked = 1, node_key_hash = NULL",
                HostAction::Block => "blocked = 1",
                HostAction::Unblock => "blocked = 0",
                HostAction::Approve => "approved = 1",
                HostAction::Archive => "archived = 1",
            };
            let n = conn.execute(
                &format!("UPDATE hosts SET {set} WHERE host_id = ?1 OR machine_id = ?1"),
                [host],
            )?;
            Ok(n > 0)
        })
    }

    fn findings(&self, filter: FindingFilter) -> Fut<'_, Vec<FindingRow>> {
        self.read(move |conn| list_findings(conn, &filter))
    }

    fn finding(&self, host_id: String, tracked_id: String) -> Fut<'_, Option<FindingRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {FINDING_COLUMNS} FROM findings f JOIN hosts h ON h.host_id = f.host_id
                 WHERE f.host_id = ?1 AND f.tracked_id = ?2"
            ))?;
            let mut rows = stmt.query([host_id, tracked_id])?;
            match rows.next()? {
                Some(r) => Ok(Some(finding_from_row(r)?)),
                None => Ok(None),
            }
        })
    }

    fn counts(&self, totals: bool) -> Fut<'_, Counts> {
        self.read(move |conn| {
            let (reports, events): (i64, i64) = if totals {
                (
                    conn.query_row("SELECT count(*) FROM reports", [], |r| r.get(0))?,
                    conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?,
                )
            } else {
                (0, 0)
            };
            let mut open = BTreeMap::new();
            let mut stmt = conn.prepare(
                "SELECT category, severity, count(*) FROM findings WHERE state != 'resolved'
                 GROUP BY category, severity",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (c, s, n): (String, String, i64) = row?;
                open.insert((c, s), to_u64(n));
            }
            Ok(Counts {
                reports: to_u64(reports),
                events: to_u64(events),
                open,
            })
        })
    }

    fn count_rows(&self, table: &'static str) -> Fut<'_, u64> {
        self.read(move |conn| {
            if !TABLES.contains(&table) {
                return Err(StoreError::Corrupt(format!("no table {table}")));
            }
            let n: i64 =
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(to_u64(n))
        })
    }

    fn create_secret(&self, hash: String, customer: Option<String>, now: u64) -> Fut<'_, i64> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO enroll_secrets (secret_hash, customer, created_unix_ms) VALUES (?1, ?2, ?3)",
                params![hash, customer, to_i64(now)],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn secrets(&self) -> Fut<'_, Vec<SecretRow>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, customer, created_unix_ms, revoked_unix_ms FROM enroll_secrets ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SecretRow {
                    id: r.get(0)?,
                    customer: r.get(1)?,
                    created_unix_ms: to_u64(r.get(2)?),
                    revoked_unix_ms: r.get::<_, Option<i64>>(3)?.map(to_u64),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn revoke_secret(&self, id: i64, now: u64) -> Fut<'_, bool> {
        self.write(move |conn| {
            let n = conn.execute(
                "UPDATE enroll_secrets SET revoked_unix_ms = ?2 WHERE id = ?1 AND revoked_unix_ms IS NULL",
                params![id, to_i64(now)],
            )?;
            Ok(n > 0)
        })
    }

    fn create_token(&self, hash: String, name: String, role: Role, now: u64) -> Fut<'_, i64> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO tokens (token_hash, name, role, created_unix_ms) VALUES (?1, ?2, ?3, ?4)",
                params![hash, name, role.as_str(), to_i64(now)],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn tokens(&self) -> Fut<'_, Vec<TokenRow>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, name, role, created_unix_ms, revoked_unix_ms FROM tokens ORDER BY id",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let role: String = r.get(2)?;
                out.push(TokenRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    role: Role::parse(&role)
                        .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                    created_unix_ms: to_u64(r.get(3)?),
                    revoked_unix_ms: r.get::<_, Option<i64>>(4)?.map(to_u64),
                });
            }
            Ok(out)
        })
    }

    fn token_role(&self, hash: String) -> Fut<'_, Option<Role>> {
        self.read(move |conn| {
            let role: Option<String> = conn
                .prepare_cached(
                    "SELECT role FROM tokens WHERE token_hash = ?1 AND revoked_unix_ms IS NULL",
                )?
                .query_row([hash], |r| r.get(0))
                .optional()?;
            Ok(role.as_deref().and_then(Role::parse))
        })
    }

    fn retain(&self, events_before: Option<u64>, archive_before: Option<u64>) -> Fut<'_, Retained> {
        self.write(move |conn| {
            let mut r = Retained::default();
            if let Some(t) = events_before {
                r.events_deleted = conn.execute("DELETE FROM events WHERE at_unix_ms < ?1", [to_i64(t)])? as u64;
                r.alerts_deleted = conn.execute(
                    "DELETE FROM alerts WHERE state = 'sent' AND done_unix_ms < ?1",
                    [to_i64(t)],
                )? as u64;
            }
            if let Some(t) = archive_before {
                r.hosts_archived = conn.execute(
                    "UPDATE hosts SET archived = 1 WHERE archived = 0 AND blocked = 0 AND
                     coalesce((SELECT last_seen_unix_ms FROM last_seen l WHERE l.host_id = hosts.host_id),
                              enrolled_unix_ms) < ?1",
                    [to_i64(t)],
                )? as u64;
            }
            Ok(r)
        })
    }

    fn create_user(
        &self,
        name: String,
        role: Role,
        password_hash: String,
        now: u64,
    ) -> Fut<'_, Option<i64>> {
        self.write(move |conn| {
            let n = conn.execute(
                "INSERT INTO users (name, role, password_hash, created_unix_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![name, role.as_str(), password_hash, to_i64(now)],
            )?;
            Ok((n > 0).then(|| conn.last_insert_rowid()))
        })
    }

    fn user(&self, name: String) -> Fut<'_, Option<UserRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, role, password_hash, created_unix_ms FROM users WHERE name = ?1",
            )?;
            let mut rows = stmt.query([name])?;
            match rows.next()? {
                Some(r) => Ok(Some(user_row(r)?)),
                None => Ok(None),
            }
        })
    }

    fn users(&self) -> Fut<'_, Vec<UserRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, name, role, password_hash, created_unix_ms FROM users ORDER BY name",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(user_row(r)?);
            }
            Ok(out)
        })
    }

    fn create_session(&self, s: NewSession) -> Fut<'_, ()> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM sessions WHERE expires_unix_ms <= ?1",
                [to_i64(s.now_unix_ms)],
            )?;
            conn.execute(
                "INSERT INTO sessions (id_hash, user_id, csrf, created_unix_ms, expires_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    s.id_hash,
                    s.user_id,
                    s.csrf,
                    to_i64(s.now_unix_ms),
                    to_i64(s.expires_unix_ms)
                ],
            )?;
            Ok(())
        })
    }

    fn session(&self, id_hash: String, now: u64) -> Fut<'_, Option<Session>> {
        self.read(move |conn| {
            let row: Option<(String, String, String, i64)> = conn
                .prepare_cached(
                    "SELECT u.name, u.role, s.csrf, s.expires_unix_ms FROM sessions s
                     JOIN users u ON u.id = s.user_id
                     WHERE s.id_hash = ?1 AND s.expires_unix_ms > ?2",
                )?
                .query_row(params![id_hash, to_i64(now)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            row.map(|(user, role, csrf, expires)| {
                Ok(Session {
                    user,
                    role: Role::parse(&role)
                        .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                    csrf,
                    expires_unix_ms: to_u64(expires),
                })
            })
            .transpose()
        })
    }

    fn delete_session(&self, id_hash: String) -> Fut<'_, bool> {
        self.write(move |conn| {
            Ok(conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])? > 0)
        })
    }

    fn audit(&self, e: AuditEntry) -> Fut<'_, ()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO audit (at_unix_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![to_i64(e.at_unix_ms), e.actor, e.action, e.target, e.detail],
            )?;
            Ok(())
        })
    }

    fn audit_log(&self, target: String) -> Fut<'_, Vec<AuditEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT at_unix_ms, actor, action, target, detail FROM audit WHERE target = ?1
                 ORDER BY at_unix_ms, id",
            )?;
            let rows = stmt.query_map([target], |r| {
                Ok(AuditEntry {
                    at_unix_ms: to_u64(r.get(0)?),
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn finding_events(&self, host_id: String, tracked_id: String) -> Fut<'_, Vec<(String, u64)>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, at_unix_ms FROM events WHERE host_id = ?1 AND tracked_id = ?2
                 ORDER BY at_unix_ms, id",
            )?;
            let rows = stmt.query_map([host_id, tracked_id], |r| {
                Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?)))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn activity(&self, since: u64, bucket_ms: u64, reports_since: u64) -> Fut<'_, Activity> {
        self.read(move |conn| {
            let bucket = to_i64(bucket_ms.max(1));
            let mut a = Activity::default();
            for (col, map) in [
                ("first_seen_unix_ms", &mut a.new),
                ("resolved_unix_ms", &mut a.resolved),
            ] {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {col} / ?2 * ?2, count(*) FROM findings WHERE {col} >= ?1 GROUP BY 1"
                ))?;
                let rows = stmt.query_map(params![to_i64(since), bucket], |r| {
                    Ok((to_u64(r.get(0)?), to_u64(r.get(1)?)))
                })?;
                for row in rows {
                    let (b, n) = row?;
                    map.insert(b, n);
                }
            }
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM reports WHERE received_unix_ms >= ?1")?
                .query_row([to_i64(reports_since)], |r| r.get(0))?;
            a.reports = to_u64(n);
            Ok(a)
        })
    }

    fn newest_findings(
        &self,
        min: aupwatch_proto::Severity,
        limit: usize,
    ) -> Fut<'_, Vec<FindingRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {FINDING_COLUMNS} FROM findings f JOIN hosts h ON h.host_id = f.host_id
                 WHERE f.state != 'resolved' AND f.severity_rank >= ?1
                 ORDER BY f.first_seen_unix_ms DESC, f.host_id, f.tracked_id LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![
                severity_rank(min),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(finding_from_row(r)?);
            }
            Ok(out)
        })
    }

    fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    fn commit_histogram(&self) -> &Histogram {
        &self.commits
    }
}

/// The benchmark's raw insert rate: the writer's own ingest of `reports` (host id, report)
/// into a fresh database at `path`, from one thread in transactions of `per_tx` reports,
/// without HTTP, parsing, queue or oneshot. Hosts are created first (not timed). Returns
/// the time spent inserting.
pub fn raw_insert(
    path: &Path,
    reports: &[(String, Report)],
    per_tx: usize,
) -> Result<std::time::Duration, StoreError> {
    let mut conn = connect(path)?;
    migrate(&mut conn)?;
    {
        let tx = conn.transaction()?;
        let mut seen = HashSet::new();
        for (host_id, r) in reports {
            if seen.insert(host_id.as_str()) {
                tx.execute(
                    "INSERT INTO hosts (host_id, machine_id, hostname, labels, approved,
                     enrolled_unix_ms) VALUES (?1, ?2, ?3, '{}', 1, 0)",
                    params![host_id, r.machine_id, r.hostname],
                )?;
            }
        }
        tx.commit()?;
    }
    let started = Instant::now();
    for chunk in reports.chunks(per_tx.max(1)) {
        let tx = conn.transaction()?;
        for (host_id, r) in chunk {
            let prepared = [Prepared::new(std::borrow::Cow::Borrowed(r))?];
            ingest(&tx, host_id, &prepared, &[], to_u64(1))?;
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}
