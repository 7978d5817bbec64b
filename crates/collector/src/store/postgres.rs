//! The PostgreSQL backend: a deadpool connection pool, one transaction per request, for
//! several stateless collectors on one database. Concurrent copies of one report meet at
//! the `reports` primary key (`ON CONFLICT DO NOTHING`: the second waits for the first's
//! commit and is then a duplicate); a host's reports are serialized by locking its row.
//!
//! Must never: acknowledge before COMMIT. Connections are made without TLS: keep the
//! database on loopback or a private network (a TLS connector is future work).

use super::pg_batch::{self, Job, JobData};
use super::{
    finding_row, key_in_use, severity_rank, signature_pattern, to_i64, to_u64, Activity,
    AlertCounts, AlertOutcome, AlertRow, AlertState, AuditEntry, Counts, CurrentKey, EnrollOutcome,
    Enrollment, FindingFilter, Fut, HostAction, HostAuth, HostRecord, IngestOutcome, NewAlert,
    NewSession, Retained, Role, SecretRow, Session, Settled, StateFilter, Store, StoreError,
    TokenRow, UserRow, TABLES,
};
use crate::metrics::Histogram;
use aupwatch_proto::api::FindingRow;
use aupwatch_proto::protocol::{Report, Stored};
use deadpool_postgres::Transaction;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Socket};

const SCHEMA: &str = include_str!("schema_postgres.sql");
const SCHEMA_VERSION: i64 = 3;
/// Serializes migrations of collectors starting together.
const MIGRATION_LOCK: i64 = 0x6175_7077_6174_6368;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(with_sources(&e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        StoreError::Postgres(with_sources(&e))
    }
}

/// An error and its causes, `a: b: c` (a TLS handshake error says which certificate check
/// failed only in its source).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

pub struct PgStore {
    pool: Pool,
    commits: Arc<Histogram>,
    /// To the group-commit writers (`pg_batch`), which end when it is dropped.
    ingest: mpsc::Sender<Job>,
}

/// Group-commit writer tasks: a transaction each at a time, so they take at most this many of
/// the pool's connections (and at most half of it).
const INGEST_WRITERS: usize = 8;
/// Requests waiting for a writer; beyond, `Busy` (503 with Retry-After).
const INGEST_QUEUE: usize = 16_384;

type Param = Box<dyn ToSql + Sync + Send>;

impl PgStore {
    /// Connects a pool of `pool_size` to `url` (a libpq connection string or URL) and
    /// migrates the schema.
    ///
    /// With `tls_ca_file`, every connection uses TLS (`sslmode=require`) and verifies the
    /// server's certificate and name against that CA; without it, the connection is plain
    /// (a connection string asking for `sslmode=require` is refused: there would be nothing to
    /// verify the server with).
    pub async fn connect(
        url: &str,
        tls_ca_file: Option<&Path>,
        pool_size: usize,
        commits: Arc<Histogram>,
    ) -> Result<PgStore, StoreError> {
        let mut pg: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Postgres(e.to_string()))?;
        match tls_ca_file {
            Some(ca) => {
                pg.ssl_mode(SslMode::Require);
                let roots = load_roots(ca)?;
                // ring, as decided for the project (as the HTTPS listener's).
                #[allow(deprecated)]
                let provider = rustls::crypto::ring::default_provider();
                let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| StoreError::Postgres(format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                PgStore::with_config(pg, tls, pool_size, commits).await
            }
            None if pg.get_ssl_mode() == SslMode::Require => Err(StoreError::Postgres(
                "sslmode=require needs database.tls_ca_file (the CA that signed the server's certificate)".into(),
            )),
            None => PgStore::with_config(pg, NoTls, pool_size, commits).await,
        }
    }

    pub async fn with_config<T>(
        pg: tokio_postgres::Config,
        tls: T,
        pool_size: usize,
        commits: Arc<Histogram>,
    ) -> Result<PgStore, StoreError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|e| StoreError::Postgres(e.to_string()))?;
        let (ingest, rx) = mpsc::channel(INGEST_QUEUE);
        let queue = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..INGEST_WRITERS.min(pool_size / 2).max(1) {
            tokio::spawn(pg_batch::writer(
                pool.clone(),
                Arc::clone(&commits),
                Arc::clone(&queue),
            ));
        }
        let store = PgStore {
            pool,
            commits,
            ingest,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let version: Option<i64> = tx
            .query_opt("SELECT max(version) FROM schema_version", &[])
            .await?
            .and_then(|r| r.get(0));
        let version = version.unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        for (made, step) in (1..).zip(super::schema_steps(SCHEMA)) {
            if version < made {
                tx.batch_execute(step).await?;
            }
        }
        if version < SCHEMA_VERSION {
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs `f` in a transaction and commits, timing it.
    fn write<'a, R, F>(&'a self, f: F) -> Fut<'a, R>
    where
        R: Send + 'a,
        F: for<'t> FnOnce(&'t deadpool_postgres::Transaction<'t>) -> Fut<'t, R> + Send + 'a,
    {
        transaction(&self.pool, &self.commits, f)
    }

    /// Queues reports for the group-commit writers and waits for their commit.
    async fn queue_ingest(&self, data: JobData) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ingest
            .try_send(Job { data, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::WriterGone,
            })?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The benchmark's ceiling (bench/ingest): `reports` stored into the fresh database at `url`
/// by the group-commit writer's own batch code, `per_tx` reports per transaction, from one
/// task: no HTTP, no JSON parsing, no queue. Hosts are made first (not timed).
pub async fn raw_insert(
    url: &str,
    reports: &[(String, Report)],
    per_tx: usize,
) -> Result<std::time::Duration, StoreError> {
    let store = PgStore::connect(url, None, 2, Arc::new(Histogram::default())).await?;
    {
        let c = store.pool.get().await?;
        let mut seen = std::collections::HashSet::new();
        for (host_id, r) in reports {
            if seen.insert(host_id.as_str()) {
                c.execute(
                    "INSERT INTO hosts (host_id, machine_id, hostname, labels, approved,
                     enrolled_unix_ms) VALUES ($1, $2, $3, '{}', TRUE, 0)",
                    &[host_id, &r.machine_id, &r.hostname],
                )
                .await?;
            }
        }
    }
    let started = Instant::now();
    for chunk in reports.chunks(per_tx.max(1)) {
        let jobs: Vec<JobData> = chunk
            .iter()
            .map(|(host_id, r)| JobData {
                host_id: host_id.clone(),
                key_hash: None,
                reports: vec![r.clone()],
                alerts: Vec::new(),
                now_unix_ms: 1,
            })
            .collect();
        transaction(&store.pool, &store.commits, move |tx| {
            Box::pin(async move { pg_batch::ingest_batch(tx, &jobs).await })
        })
        .await?;
    }
    Ok(started.elapsed())
}

/// The certificates of a PEM file, as the roots the PostgreSQL server's certificate must
/// chain to.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, StoreError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bad = |m: String| StoreError::Postgres(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

/// Runs `f` in a transaction of a connection from `pool` and commits, timing it.
pub(super) fn transaction<'a, R, F>(pool: &'a Pool, commits: &'a Histogram, f: F) -> Fut<'a, R>
where
    R: Send + 'a,
    F: for<'t> FnOnce(&'t deadpool_postgres::Transaction<'t>) -> Fut<'t, R> + Send + 'a,
{
    Box::pin(async move {
        let mut client = pool.get().await?;
        let started = Instant::now();
        let tx = client.transaction().await?;
        let out = f(&tx).await?;
        tx.commit().await?;
        commits.observe(started.elapsed());
        Ok(out)
    })
}

const ALERT_COLUMNS: &str = "seq, route, alert_id, kind, host_id, body, state, attempts,
    created_unix_ms, next_attempt_unix_ms, done_unix_ms, last_error";

fn alert_row(r: &Row) -> Result<AlertRow, StoreError> {
    let state: &str = r.try_get(6)?;
    Ok(AlertRow {
        seq: r.try_get(0)?,
        route: r.try_get(1)?,
        alert_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        host_id: r.try_get(4)?,
        body: r.try_get(5)?,
        state: AlertState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("alert state {state:?}")))?,
        attempts: u32::try_from(r.try_get::<_, i64>(7)?).unwrap_or(u32::MAX),
        created_unix_ms: to_u64(r.try_get(8)?),
        next_attempt_unix_ms: to_u64(r.try_get(9)?),
        done_unix_ms: r.try_get::<_, Option<i64>>(10)?.map(to_u64),
        last_error: r.try_get(11)?,
    })
}

async fn enroll(c: &Transaction<'_>, e: &Enrollment) -> Result<EnrollOutcome, StoreError> {
    let secret = c
        .query_opt(
            "SELECT customer FROM enroll_secrets WHERE secret_hash = $1 AND revoked_unix_ms IS NULL",
            &[&e.secret_hash],
        )
        .await?;
    let Some(secret) = secret else {
        return Ok(EnrollOutcome::BadSecret);
    };
    let customer: Option<String> = secret.get(0);
    let mut labels = e.labels.clone();
    if let Some(cu) = &customer {
        labels.insert("customer".into(), cu.clone());
    }
    let customer = labels.get("customer").cloned();
    let labels_json = serde_json::to_string(&labels)?;
    let existing = c
        .query_opt(
            "SELECT h.host_id, h.blocked, h.approved, h.revoked, h.stopped, h.interval_secs,
             l.last_seen_unix_ms
             FROM hosts h LEFT JOIN last_seen l ON l.host_id = h.host_id
             WHERE h.machine_id = $1 FOR UPDATE OF h",
            &[&e.machine_id],
        )
        .await?;
    let in_use = existing.as_ref().and_then(|r| {
        let key = CurrentKey {
            revoked: r.get(3),
            stopped: r.get(4),
            interval_secs: r.get::<_, Option<i64>>(5).map(to_u64),
            last_seen_unix_ms: r.get::<_, Option<i64>>(6).map(to_u64),
        };
        key_in_use(&key, e.now_unix_ms, e.in_use_intervals)
    });
    match (existing, in_use) {
        (Some(r), _) if r.get::<_, bool>(1) => Ok(EnrollOutcome::Blocked),
        (Some(r), Some(retry_after_secs)) => Ok(EnrollOutcome::InUse {
            host_id: r.get(0),
            retry_after_secs,
        }),
        (Some(r), None) => {
            let host_id: String = r.get(0);
            let approved: bool = r.get(2);
            c.execute(
                "UPDATE hosts SET node_key_hash = $2, hostname = $3, labels = $4, customer = $5,
                 agent_version = $6, revoked = FALSE, archived = FALSE, stopped = FALSE
                 WHERE host_id = $1",
                &[
                    &host_id,
                    &e.node_key_hash,
                    &e.hostname,
                    &labels_json,
                    &customer,
                    &e.agent_version,
                ],
            )
            .await?;
            Ok(EnrollOutcome::Enrolled {
                host_id,
                pending_approval: !approved,
            })
        }
        (None, _) => {
            // Two collectors enrolling the same new machine at once: the second insert
            // conflicts on machine_id and updates the first's row instead.
            let row = c
                .query_one(
                    "INSERT INTO hosts (host_id, machine_id, hostname, labels, customer,
                     node_key_hash, approved, enrolled_unix_ms, agent_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (machine_id) DO UPDATE SET node_key_hash = excluded.node_key_hash
                     RETURNING host_id, approved",
                    &[
                        &e.new_host_id,
                        &e.machine_id,
                        &e.hostname,
                        &labels_json,
                        &customer,
                        &e.node_key_hash,
                        &!e.require_approval,
                        &to_i64(e.now_unix_ms),
                        &e.agent_version,
                    ],
                )
                .await?;
            Ok(EnrollOutcome::Enrolled {
                host_id: row.get(0),
                pending_approval: !row.get::<_, bool>(1),
            })
        }
    }
}

fn host_record(r: &Row) -> Result<HostRecord, StoreError> {
    let labels: String = r.try_get("labels")?;
    Ok(HostRecord {
        host_id: r.try_get("host_id")?,
        machine_id: r.try_get("machine_id")?,
        hostname: r.try_get("hostname")?,
        labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)?,
        approved: r.try_get("approved")?,
        blocked: r.try_get("blocked")?,
        revoked: r.try_get("revoked")?,
        archived: r.try_get("archived")?,
        stopped: r.try_get("stopped")?,
        enrolled_unix_ms: to_u64(r.try_get("enrolled_unix_ms")?),
        last_seen_unix_ms: r
            .try_get::<_, Option<i64>>("last_seen_unix_ms")?
            .map(to_u64),
        interval_secs: r.try_get::<_, Option<i64>>("interval_secs")?.map(to_u64),
        agent_version: r.try_get("agent_version")?,
        signature_version: r.try_get("signature_version")?,
        last_sequence: r.try_get::<_, Option<i64>>("last_sequence")?.map(to_u64),
        boot_id: r.try_get("boot_id")?,
        sequence_gaps: to_u64(r.try_get("sequence_gaps")?),
        sequence_resets: to_u64(r.try_get("sequence_resets")?),
        boot_changes: to_u64(r.try_get("boot_changes")?),
        last_anomaly: r.try_get("last_anomaly")?,
        open_findings: to_u64(r.try_get("open_findings")?),
    })
}

const FINDING_COLUMNS: &str = "f.host_id, f.tracked_id, h.hostname, h.customer, f.category,
    f.severity, f.state, f.signatures, f.first_seen_unix_ms, f.last_seen_unix_ms,
    f.resolved_unix_ms, f.excepted, f.tracked";

fn user_row(r: &Row) -> Result<UserRow, StoreError> {
    let role: String = r.get(2);
    Ok(UserRow {
        id: r.get(0),
        name: r.get(1),
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        password_hash: r.get(3),
        created_unix_ms: to_u64(r.get(4)),
    })
}

fn finding_from_row(r: &Row) -> Result<FindingRow, StoreError> {
    let severity: String = r.try_get(5)?;
    let signatures: String = r.try_get(7)?;
    let tracked: String = r.try_get(12)?;
    finding_row(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
        &severity,
        r.try_get(6)?,
        &signatures,
        r.try_get(8)?,
        r.try_get(9)?,
        r.try_get(10)?,
        r.try_get(11)?,
        &tracked,
    )
}

fn findings_query(f: &FindingFilter) -> (String, Vec<Param>) {
    let mut sql = format!(
        "SELECT {FINDING_COLUMNS} FROM findings f JOIN hosts h ON h.host_id = f.host_id WHERE TRUE"
    );
    let mut args: Vec<Param> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: Param| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
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
            Box::new(severity_rank(s)),
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
            " AND strpos(f.signatures, ?) > 0",
            Box::new(signature_pattern(s)),
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
        arg(
            &mut sql,
            " AND (f.host_id, f.tracked_id) > (?, ",
            Box::new(h.clone()),
        );
        arg(&mut sql, "?)", Box::new(t.clone()));
    }
    let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
    // COLLATE "C": byte order, as SQLite's, so both backends page alike.
    arg(
        &mut sql,
        " ORDER BY f.host_id COLLATE \"C\", f.tracked_id COLLATE \"C\" LIMIT ?",
        Box::new(limit),
    );
    (sql, args)
}

impl Store for PgStore {
    fn enroll(&self, e: Enrollment) -> Fut<'_, EnrollOutcome> {
        self.write(move |tx| Box::pin(async move { enroll(tx, &e).await }))
    }

    fn authenticate(&self, node_key_hash: String) -> Fut<'_, Option<HostAuth>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let row = c
                .query_opt(
                    "SELECT host_id, machine_id, approved, blocked, hostname, labels FROM hosts
                     WHERE node_key_hash = $1 AND NOT revoked",
                    &[&node_key_hash],
                )
                .await?;
            row.map(|r| {
                Ok(HostAuth {
                    host_id: r.get(0),
                    machine_id: r.get(1),
                    approved: r.get(2),
                    blocked: r.get(3),
                    hostname: r.get(4),
                    labels: serde_json::from_str(r.get::<_, &str>(5))?,
                })
            })
            .transpose()
        })
    }

    fn ingest(&self, host_id: String, reports: Vec<Report>, now: u64) -> Fut<'_, Vec<Stored>> {
        Box::pin(async move {
            let data = JobData {
                host_id,
                key_hash: None,
                reports,
                alerts: Vec::new(),
                now_unix_ms: now,
            };
            match self.queue_ingest(data).await? {
                IngestOutcome::Done(stored) => Ok(stored),
                IngestOutcome::Refused(r) => Err(StoreError::Corrupt(format!(
                    "unchecked ingest refused: {r:?}"
                ))),
            }
        })
    }

    fn ingest_checked(
        &self,
        host_id: String,
        key_hash: String,
        reports: Vec<Report>,
        alerts: Vec<NewAlert>,
        now: u64,
    ) -> Fut<'_, IngestOutcome> {
        Box::pin(async move {
            self.queue_ingest(JobData {
                host_id,
                key_hash: Some(key_hash),
                reports,
                alerts,
                now_unix_ms: now,
            })
            .await
        })
    }

    fn enqueue_alerts(&self, alerts: Vec<NewAlert>, now: u64) -> Fut<'_, u64> {
        self.write(move |tx| {
            Box::pin(async move {
                let mut n = 0;
                let insert = tx
                    .prepare(
                        "INSERT INTO alerts (route, alert_id, kind, host_id, body,
                         created_unix_ms, next_attempt_unix_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)
                         ON CONFLICT (route, alert_id) DO NOTHING",
                    )
                    .await?;
                for a in &alerts {
                    n += tx
                        .execute(
                            &insert,
                            &[
                                &a.route,
                                &a.alert_id,
                                &a.kind,
                                &a.host_id,
                                &a.body,
                                &to_i64(now),
                            ],
                        )
                        .await?;
                }
                Ok(n)
            })
        })
    }

    fn claim_alerts(
        &self,
        owner: String,
        now: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Fut<'_, Vec<AlertRow>> {
        self.write(move |tx| {
            Box::pin(async move {
                let now = to_i64(now);
                let rows = tx
                    .query(
                        &format!(
                            "UPDATE alerts SET attempts = attempts + 1, lease_owner = $1,
                             lease_until_unix_ms = $2 + $3
                             WHERE seq IN (SELECT seq FROM alerts WHERE state = 'pending'
                               AND next_attempt_unix_ms <= $2
                               AND (lease_until_unix_ms IS NULL OR lease_until_unix_ms <= $2)
                               ORDER BY next_attempt_unix_ms, seq LIMIT $4
                               FOR UPDATE SKIP LOCKED)
                             RETURNING {ALERT_COLUMNS}"
                        ),
                        &[
                            &owner,
                            &now,
                            &to_i64(lease_ms),
                            &i64::try_from(limit).unwrap_or(i64::MAX),
                        ],
                    )
                    .await?;
                let mut out = rows.iter().map(alert_row).collect::<Result<Vec<_>, _>>()?;
                out.sort_unstable_by_key(|a| a.seq);
                Ok(out)
            })
        })
    }

    fn settle_alert(
        &self,
        seq: i64,
        owner: String,
        outcome: AlertOutcome,
        now: u64,
    ) -> Fut<'_, bool> {
        self.write(move |tx| {
            Box::pin(async move {
                let Settled {
                    state,
                    next_attempt_unix_ms: next,
                    error,
                    done_unix_ms: done,
                } = outcome.settled(now);
                let n = tx
                    .execute(
                        "UPDATE alerts SET state = $3, next_attempt_unix_ms =
                         coalesce($4, next_attempt_unix_ms), last_error = coalesce($5, last_error),
                         done_unix_ms = $6, lease_owner = NULL, lease_until_unix_ms = NULL
                         WHERE seq = $1 AND lease_owner = $2 AND state = 'pending'",
                        &[&seq, &owner, &state.as_str(), &next, &error, &done],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
    }

    fn alerts(&self, state: Option<AlertState>, limit: usize) -> Fut<'_, Vec<AlertRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {ALERT_COLUMNS} FROM alerts WHERE $1::text IS NULL OR state = $1
                         ORDER BY seq DESC LIMIT $2"
                    ),
                    &[
                        &state.map(AlertState::as_str),
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                    ],
                )
                .await?;
            rows.iter().map(alert_row).collect()
        })
    }

    fn alert_counts(&self) -> Fut<'_, AlertCounts> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT state, count(*), count(*) FILTER (WHERE attempts > 0),
                     coalesce(sum(greatest(attempts - 1, 0)), 0)::bigint
                     FROM alerts GROUP BY state",
                    &[],
                )
                .await?;
            let mut out = AlertCounts::default();
            for r in rows {
                let state: &str = r.get(0);
                let n = to_u64(r.get(1));
                out.retries += to_u64(r.get(3));
                match AlertState::parse(state) {
                    Some(AlertState::Pending) => {
                        out.pending = n;
                        out.retrying = to_u64(r.get(2));
                    }
                    Some(AlertState::Sent) => out.sent = n,
                    Some(AlertState::Failed) => out.failed = n,
                    None => return Err(StoreError::Corrupt(format!("alert state {state:?}"))),
                }
            }
            Ok(out)
        })
    }

    fn hosts(&self) -> Fut<'_, Vec<HostRecord>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT h.*, l.last_seen_unix_ms, coalesce(o.n, 0) AS open_findings FROM hosts h
                     LEFT JOIN last_seen l ON l.host_id = h.host_id
                     LEFT JOIN (SELECT host_id, count(*) AS n FROM findings
                                WHERE state != 'resolved' GROUP BY host_id) o
                       ON o.host_id = h.host_id
                     ORDER BY h.hostname COLLATE \"C\", h.host_id COLLATE \"C\"",
                    &[],
                )
                .await?;
            rows.iter().map(host_record).collect()
        })
    }

    fn host_action(&self, host: String, action: HostAction, _now: u64) -> Fut<'_, bool> {
        let set = match action {
            HostAction::Revoke => "revoked = TRUE, node_key_hash = NULL",
            HostAction::Block => "blocked = TRUE",
            HostAction::Unblock => "blocked = FALSE",
            HostAction::Approve => "approved = TRUE",
            HostAction::Archive => "archived = TRUE",
        };
        self.write(move |tx| {
            Box::pin(async move {
                let n = tx
                    .execute(
                        &format!("UPDATE hosts SET {set} WHERE host_id = $1 OR machine_id = $1"),
                        &[&host],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
    }

    fn findings(&self, filter: FindingFilter) -> Fut<'_, Vec<FindingRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let (sql, args) = findings_query(&filter);
            let params: Vec<&(dyn ToSql + Sync)> = args
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = c.query(&sql, &params).await?;
            rows.iter().map(finding_from_row).collect()
        })
    }

    fn finding(&self, host_id: String, tracked_id: String) -> Fut<'_, Option<FindingRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {FINDING_COLUMNS} FROM findings f JOIN hosts h ON h.host_id = f.host_id
                         WHERE f.host_id = $1 AND f.tracked_id = $2"
                    ),
                    &[&host_id, &tracked_id],
                )
                .await?;
            row.as_ref().map(finding_from_row).transpose()
        })
    }

    fn counts(&self, totals: bool) -> Fut<'_, Counts> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let (reports, events): (i64, i64) = if totals {
                (
                    c.query_one("SELECT count(*) FROM reports", &[])
                        .await?
                        .get(0),
                    c.query_one("SELECT count(*) FROM events", &[])
                        .await?
                        .get(0),
                )
            } else {
                (0, 0)
            };
            let mut open = BTreeMap::new();
            for r in c
                .query(
                    "SELECT category, severity, count(*) FROM findings WHERE state != 'resolved'
                     GROUP BY category, severity",
                    &[],
                )
                .await?
            {
                open.insert((r.get(0), r.get(1)), to_u64(r.get(2)));
            }
            Ok(Counts {
                reports: to_u64(reports),
                events: to_u64(events),
                open,
            })
        })
    }

    fn count_rows(&self, table: &'static str) -> Fut<'_, u64> {
        Box::pin(async move {
            if !TABLES.contains(&table) {
                return Err(StoreError::Corrupt(format!("no table {table}")));
            }
            let c = self.pool.get().await?;
            let n: i64 = c
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .get(0);
            Ok(to_u64(n))
        })
    }

    fn create_secret(&self, hash: String, customer: Option<String>, now: u64) -> Fut<'_, i64> {
        self.write(move |tx| {
            Box::pin(async move {
                Ok(tx
                    .query_one(
                        "INSERT INTO enroll_secrets (secret_hash, customer, created_unix_ms)
                         VALUES ($1, $2, $3) RETURNING id",
                        &[&hash, &customer, &to_i64(now)],
                    )
                    .await?
                    .get(0))
            })
        })
    }

    fn secrets(&self) -> Fut<'_, Vec<SecretRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT id, customer, created_unix_ms, revoked_unix_ms FROM enroll_secrets ORDER BY id",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| SecretRow {
                    id: r.get(0),
                    customer: r.get(1),
                    created_unix_ms: to_u64(r.get(2)),
                    revoked_unix_ms: r.get::<_, Option<i64>>(3).map(to_u64),
                })
                .collect())
        })
    }

    fn revoke_secret(&self, id: i64, now: u64) -> Fut<'_, bool> {
        self.write(move |tx| {
            Box::pin(async move {
                let n = tx
                    .execute(
                        "UPDATE enroll_secrets SET revoked_unix_ms = $2
                         WHERE id = $1 AND revoked_unix_ms IS NULL",
                        &[&id, &to_i64(now)],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
    }

    fn create_token(&self, hash: String, name: String, role: Role, now: u64) -> Fut<'_, i64> {
        self.write(move |tx| {
            Box::pin(async move {
                Ok(tx
                    .query_one(
                        "INSERT INTO tokens (token_hash, name, role, created_unix_ms)
                         VALUES ($1, $2, $3, $4) RETURNING id",
                        &[&hash, &name, &role.as_str(), &to_i64(now)],
                    )
                    .await?
                    .get(0))
            })
        })
    }

    fn tokens(&self) -> Fut<'_, Vec<TokenRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT id, name, role, created_unix_ms, revoked_unix_ms FROM tokens ORDER BY id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let role: String = r.get(2);
                    Ok(TokenRow {
                        id: r.get(0),
                        name: r.get(1),
                        role: Role::parse(&role)
                            .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                        created_unix_ms: to_u64(r.get(3)),
                        revoked_unix_ms: r.get::<_, Option<i64>>(4).map(to_u64),
                    })
                })
                .collect()
        })
    }

    fn token_role(&self, hash: String) -> Fut<'_, Option<Role>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let row = c
                .query_opt(
                    "SELECT role FROM tokens WHERE token_hash = $1 AND revoked_unix_ms IS NULL",
                    &[&hash],
                )
                .await?;
            Ok(row.and_then(|r| Role::parse(r.get::<_, &str>(0))))
        })
    }

    fn retain(&self, events_before: Option<u64>, archive_before: Option<u64>) -> Fut<'_, Retained> {
        self.write(move |tx| {
            Box::pin(async move {
                let mut r = Retained::default();
                if let Some(t) = events_before {
                    r.events_deleted = tx
                        .execute("DELETE FROM events WHERE at_unix_ms < $1", &[&to_i64(t)])
                        .await?;
                    r.alerts_deleted = tx
                        .execute(
                            "DELETE FROM alerts WHERE state = 'sent' AND done_unix_ms < $1",
                            &[&to_i64(t)],
                        )
                        .await?;
                }
                if let Some(t) = archive_before {
                    r.hosts_archived = tx
                        .execute(
                            "UPDATE hosts SET archived = TRUE WHERE NOT archived AND NOT blocked AND
                             coalesce((SELECT last_seen_unix_ms FROM last_seen l
                                       WHERE l.host_id = hosts.host_id), enrolled_unix_ms) < $1",
                            &[&to_i64(t)],
                        )
                        .await?;
                }
                Ok(r)
            })
        })
    }

    fn create_user(
        &self,
        name: String,
        role: Role,
        password_hash: String,
        now: u64,
    ) -> Fut<'_, Option<i64>> {
        self.write(move |tx| {
            Box::pin(async move {
                Ok(tx
                    .query_opt(
                        "INSERT INTO users (name, role, password_hash, created_unix_ms)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING id",
                        &[&name, &role.as_str(), &password_hash, &to_i64(now)],
                    )
                    .await?
                    .map(|r| r.get(0)))
            })
        })
    }

    fn user(&self, name: String) -> Fut<'_, Option<UserRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let row = c
                .query_opt(
                    "SELECT id, name, role, password_hash, created_unix_ms FROM users WHERE name = $1",
                    &[&name],
                )
                .await?;
            row.as_ref().map(user_row).transpose()
        })
    }

    fn users(&self) -> Fut<'_, Vec<UserRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT id, name, role, password_hash, created_unix_ms FROM users ORDER BY name",
                    &[],
                )
                .await?;
            rows.iter().map(user_row).collect()
        })
    }

    fn create_session(&self, s: NewSession) -> Fut<'_, ()> {
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "DELETE FROM sessions WHERE expires_unix_ms <= $1",
                    &[&to_i64(s.now_unix_ms)],
                )
                .await?;
                tx.execute(
                    "INSERT INTO sessions (id_hash, user_id, csrf, created_unix_ms, expires_unix_ms)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &s.id_hash,
                        &s.user_id,
                        &s.csrf,
                        &to_i64(s.now_unix_ms),
                        &to_i64(s.expires_unix_ms),
                    ],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn session(&self, id_hash: String, now: u64) -> Fut<'_, Option<Session>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let row = c
                .query_opt(
                    "SELECT u.name, u.role, s.csrf, s.expires_unix_ms FROM sessions s
                     JOIN users u ON u.id = s.user_id
                     WHERE s.id_hash = $1 AND s.expires_unix_ms > $2",
                    &[&id_hash, &to_i64(now)],
                )
                .await?;
            row.map(|r| {
                let role: String = r.get(1);
                Ok(Session {
                    user: r.get(0),
                    role: Role::parse(&role)
                        .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                    csrf: r.get(2),
                    expires_unix_ms: to_u64(r.get(3)),
                })
            })
            .transpose()
        })
    }

    fn delete_session(&self, id_hash: String) -> Fut<'_, bool> {
        self.write(move |tx| {
            Box::pin(async move {
                Ok(tx
                    .execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
                    .await?
                    > 0)
            })
        })
    }

    fn audit(&self, e: AuditEntry) -> Fut<'_, ()> {
        self.write(move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO audit (at_unix_ms, actor, action, target, detail)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &to_i64(e.at_unix_ms),
                        &e.actor,
                        &e.action,
                        &e.target,
                        &e.detail,
                    ],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn audit_log(&self, target: String) -> Fut<'_, Vec<AuditEntry>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT at_unix_ms, actor, action, target, detail FROM audit WHERE target = $1
                     ORDER BY at_unix_ms, id",
                    &[&target],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| AuditEntry {
                    at_unix_ms: to_u64(r.get(0)),
                    actor: r.get(1),
                    action: r.get(2),
                    target: r.get(3),
                    detail: r.get(4),
                })
                .collect())
        })
    }

    fn finding_events(&self, host_id: String, tracked_id: String) -> Fut<'_, Vec<(String, u64)>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    "SELECT kind, at_unix_ms FROM events WHERE host_id = $1 AND tracked_id = $2
                     ORDER BY at_unix_ms, id",
                    &[&host_id, &tracked_id],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, String>(0), to_u64(r.get(1))))
                .collect())
        })
    }

    fn activity(&self, since: u64, bucket_ms: u64, reports_since: u64) -> Fut<'_, Activity> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let bucket = to_i64(bucket_ms.max(1));
            let mut a = Activity::default();
            for (col, map) in [
                ("first_seen_unix_ms", &mut a.new),
                ("resolved_unix_ms", &mut a.resolved),
            ] {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {col} / $2 * $2, count(*) FROM findings WHERE {col} >= $1 GROUP BY 1"
                        ),
                        &[&to_i64(since), &bucket],
                    )
                    .await?;
                for r in rows {
                    map.insert(to_u64(r.get(0)), to_u64(r.get(1)));
                }
            }
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM reports WHERE received_unix_ms >= $1",
                    &[&to_i64(reports_since)],
                )
                .await?
                .get(0);
            a.reports = to_u64(n);
            Ok(a)
        })
    }

    fn newest_findings(
        &self,
        min: aupwatch_proto::Severity,
        limit: usize,
    ) -> Fut<'_, Vec<FindingRow>> {
        Box::pin(async move {
            let c = self.pool.get().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {FINDING_COLUMNS} FROM findings f JOIN hosts h ON h.host_id = f.host_id
                         WHERE f.state != 'resolved' AND f.severity_rank >= $1
                         ORDER BY f.first_seen_unix_ms DESC, f.host_id, f.tracked_id LIMIT $2"
                    ),
                    &[&severity_rank(min), &i64::try_from(limit).unwrap_or(i64::MAX)],
                )
                .await?;
            rows.iter().map(finding_from_row).collect()
        })
    }

    fn queue_depth(&self) -> usize {
        0
    }

    fn commit_histogram(&self) -> &Histogram {
        &self.commits
    }
}
