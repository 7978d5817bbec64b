//! Group commit on PostgreSQL: the reports of many requests in one transaction, written with
//! one set-based statement per table (arrays and `unnest`) instead of ~10 statements per
//! report.
//!
//! Requests queue up while a transaction runs; each of a few writer tasks takes everything
//! waiting (up to [`MAX_JOBS`]) and answers each request when its transaction has committed.
//! Host rows are locked first, in host id order (`ORDER BY host_id FOR UPDATE`), so writers
//! and collectors sharing the database order their work per host and never deadlock; the key
//! of a checked request is checked under that lock, so a revoke or block that committed first
//! always wins. The outcome is that of [`super::postgres`]'s one-request transaction: reports
//! stored once (the report id is the key), the open set reconciled with the newest report, the
//! sequence and boot id checked, the alerts of the reports stored now put in the outbox
//! (each (route, alert id) once). Should a batch transaction fail, each of its requests is run
//! again in a transaction of its own, so one request's error is only its own.
//!
//! Must never: answer a request before its transaction committed, or lock host rows out of
//! host id order.

use super::postgres::transaction;
use super::{
    refusal, to_i64, to_u64, FindingColumns, IngestOutcome, NewAlert, Refusal, SequenceState,
    StoreError,
};
use crate::metrics::Histogram;
use aupwatch_proto::protocol::{Report, Stored};
use aupwatch_proto::LifecycleState;
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The most requests one transaction takes.
pub const MAX_JOBS: usize = 256;

/// One request's reports, waiting for a batch transaction.
pub struct Job {
    pub data: JobData,
    pub reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

pub struct JobData {
    pub host_id: String,
    /// `Some`: check the key and the host's flags under the row lock (`ingest_checked`).
    pub key_hash: Option<String>,
    pub reports: Vec<Report>,
    /// The reports' alerts: those of the reports stored now go in the outbox, in the same
    /// transaction.
    pub alerts: Vec<NewAlert>,
    pub now_unix_ms: u64,
}

/// The writer tasks' shared queue.
pub type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

/// One writer task: takes what waits, runs it in one transaction, answers. Ends when the
/// store (the queue's sender) is dropped.
pub async fn writer(pool: Pool, commits: Arc<Histogram>, queue: Queue) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            jobs.push(first);
            while jobs.len() < MAX_JOBS {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
        }
        let (data, replies): (Vec<JobData>, Vec<_>) =
            jobs.into_iter().map(|j| (j.data, j.reply)).unzip();
        run(&pool, &commits, data, replies).await;
    }
}

async fn run(
    pool: &Pool,
    commits: &Histogram,
    data: Vec<JobData>,
    replies: Vec<oneshot::Sender<Result<IngestOutcome, StoreError>>>,
) {
    let data = Arc::new(data);
    let batch = Arc::clone(&data);
    let result = transaction(pool, commits, move |tx| {
        Box::pin(async move { ingest_batch(tx, &batch).await })
    })
    .await;
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) if replies.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(_) => {
            // One request's trouble must not be the others': each again on its own.
            let data = Arc::try_unwrap(data).unwrap_or_else(|shared| {
                shared
                    .iter()
                    .map(|d| JobData {
                        host_id: d.host_id.clone(),
                        key_hash: d.key_hash.clone(),
                        reports: d.reports.clone(),
                        alerts: d.alerts.clone(),
                        now_unix_ms: d.now_unix_ms,
                    })
                    .collect()
            });
            for (d, reply) in data.into_iter().zip(replies) {
                Box::pin(run(pool, commits, vec![d], vec![reply])).await;
            }
        }
    }
}

/// What the batch knows of a host, read under its row lock and written back at the end.
struct HostState {
    node_key_hash: Option<String>,
    revoked: bool,
    blocked: bool,
    approved: bool,
    seq: SequenceState,
    findings_as_of: i64,
    /// A report of this batch was stored: the sequence columns are written back.
    stored: bool,
    /// The newest report that advanced `findings_as_of`: its open set and heartbeat win.
    latest: Option<(usize, usize)>,
    last_seen: i64,
}

/// Rows of one table, column by column, for `unnest`.
#[derive(Default)]
struct FindingRows {
    host: Vec<String>,
    id: Vec<String>,
    category: Vec<String>,
    severity: Vec<String>,
    rank: Vec<i64>,
    state: Vec<String>,
    signatures: Vec<String>,
    excepted: Vec<bool>,
    first: Vec<i64>,
    last: Vec<i64>,
    resolved: Vec<Option<i64>>,
    tracked: Vec<String>,
}

impl FindingRows {
    fn push(&mut self, host: &str, f: FindingColumns, resolved: Option<i64>) {
        self.host.push(host.to_string());
        self.id.push(f.tracked_id);
        self.category.push(f.category);
        self.severity.push(f.severity);
        self.rank.push(f.severity_rank);
        self.state.push(f.state);
        self.signatures.push(f.signatures);
        self.excepted.push(f.excepted);
        self.first.push(f.first_seen_unix_ms);
        self.last.push(f.last_seen_unix_ms);
        self.resolved.push(resolved);
        self.tracked.push(f.tracked_json);
    }

    fn is_empty(&self) -> bool {
        self.host.is_empty()
    }
}

const FINDING_ROWS: &str = "SELECT * FROM unnest($1::text[], $2::text[], $3::text[],
    $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bool[], $9::bigint[], $10::bigint[],
    $11::bigint[], $12::text[])";

async fn insert_findings(
    c: &Transaction<'_>,
    rows: &FindingRows,
    on_conflict: &str,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO findings (host_id, tracked_id, category, severity, severity_rank, state,
         signatures, excepted, first_seen_unix_ms, last_seen_unix_ms, resolved_unix_ms, tracked)
         {FINDING_ROWS} {on_conflict}"
    );
    c.execute(
        &sql,
        &[
            &rows.host,
            &rows.id,
            &rows.category,
            &rows.severity,
            &rows.rank,
            &rows.state,
            &rows.signatures,
            &rows.excepted,
            &rows.first,
            &rows.last,
            &rows.resolved,
            &rows.tracked,
        ],
    )
    .await?;
    Ok(())
}

/// Runs one set-based statement over `rows` rows, or nothing when there are none.
async fn execute_rows(
    c: &Transaction<'_>,
    rows: usize,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    if rows == 0 {
        return Ok(0);
    }
    c.execute(sql, params).await
}

/// The outcome of every job, in order; an `Err` aborts the whole transaction.
pub async fn ingest_batch(
    c: &Transaction<'_>,
    jobs: &[JobData],
) -> Result<Vec<Result<IngestOutcome, StoreError>>, StoreError> {
    // 1. Lock the hosts, in host id order.
    let mut ids: Vec<&str> = jobs.iter().map(|j| j.host_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = c
        .query(
            "SELECT host_id, node_key_hash, revoked, blocked, approved, last_sequence, boot_id,
             findings_as_of_unix_ms, sequence_gaps, sequence_resets, boot_changes, last_anomaly
             FROM hosts WHERE host_id = ANY($1) ORDER BY host_id FOR UPDATE",
            &[&ids],
        )
        .await?;
    let mut hosts: HashMap<String, HostState> = HashMap::with_capacity(rows.len());
    for r in rows {
        hosts.insert(
            r.get(0),
            HostState {
                node_key_hash: r.get(1),
                revoked: r.get(2),
                blocked: r.get(3),
                approved: r.get(4),
                seq: SequenceState {
                    last_sequence: r.get::<_, Option<i64>>(5).map(to_u64),
                    boot_id: r.get(6),
                    gaps: r.get(8),
                    resets: r.get(9),
                    boot_changes: r.get(10),
                    anomaly: r.get(11),
                },
                findings_as_of: r.get(7),
                stored: false,
                latest: None,
                last_seen: i64::MIN,
            },
        );
    }

    // 2. Which jobs go in; each report id once (a later copy in the batch is a duplicate).
    let mut outcomes: Vec<Option<Result<IngestOutcome, StoreError>>> =
        jobs.iter().map(|_| None).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut candidate: Vec<Vec<bool>> = Vec::with_capacity(jobs.len());
    let (mut r_id, mut r_host, mut r_seq, mut r_boot) = (vec![], vec![], vec![], vec![]);
    let (mut r_created, mut r_received, mut r_bye, mut r_hb) = (vec![], vec![], vec![], vec![]);
    for (i, job) in jobs.iter().enumerate() {
        let Some(h) = hosts.get_mut(&job.host_id) else {
            outcomes[i] = Some(match job.key_hash {
                Some(_) => Ok(IngestOutcome::Refused(Refusal::UnknownKey)),
                None => Err(StoreError::Corrupt(format!("no host {}", job.host_id))),
            });
            candidate.push(Vec::new());
            continue;
        };
        if let Some(key) = &job.key_hash {
            if let Some(why) = refusal(
                h.node_key_hash.as_deref(),
                key,
                h.revoked,
                h.blocked,
                h.approved,
            ) {
                outcomes[i] = Some(Ok(IngestOutcome::Refused(why)));
                candidate.push(Vec::new());
                continue;
            }
        }
        h.last_seen = h.last_seen.max(to_i64(job.now_unix_ms));
        let mut flags = Vec::with_capacity(job.reports.len());
        for report in &job.reports {
            let first = seen.insert(report.report_id.as_str());
            flags.push(first);
            if first {
                r_id.push(report.report_id.as_str());
                r_host.push(job.host_id.as_str());
                r_seq.push(to_i64(report.sequence));
                r_boot.push(report.boot_id.as_str());
                r_created.push(to_i64(report.created_unix_ms));
                r_received.push(to_i64(job.now_unix_ms));
                r_bye.push(report.goodbye);
                r_hb.push(serde_json::to_string(&report.heartbeat)?);
            }
        }
        candidate.push(flags);
    }

    // 3. The reports: the ones inserted now are stored, the others were there already.
    let inserted: HashSet<String> = if r_id.is_empty() {
        HashSet::new()
    } else {
        c.query(
            "INSERT INTO reports (report_id, host_id, sequence, boot_id, created_unix_ms,
             received_unix_ms, goodbye, heartbeat)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[],
             $6::bigint[], $7::bool[], $8::text[])
             ON CONFLICT (report_id) DO NOTHING RETURNING report_id",
            &[
                &r_id,
                &r_host,
                &r_seq,
                &r_boot,
                &r_created,
                &r_received,
                &r_bye,
                &r_hb,
            ],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };

    // 4. In request order: sequence checks, events, the newest report per host.
    let (mut e_report, mut e_host, mut e_kind) = (vec![], vec![], vec![]);
    let (mut e_at, mut e_id, mut e_tracked) = (vec![], vec![], vec![]);
    let (mut a_route, mut a_id, mut a_kind) = (vec![], vec![], vec![]);
    let (mut a_host, mut a_body, mut a_at) = (vec![], vec![], vec![]);
    for (i, job) in jobs.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        let Some(h) = hosts.get_mut(&job.host_id) else {
            continue;
        };
        let mut results = Vec::with_capacity(job.reports.len());
        for (k, report) in job.reports.iter().enumerate() {
            if !(candidate[i][k] && inserted.contains(&report.report_id)) {
                results.push(Stored::Duplicate);
                continue;
            }
            results.push(Stored::Stored);
            h.stored = true;
            h.seq.advance(report.sequence, &report.boot_id);
            for ev in &report.events {
                e_report.push(report.report_id.as_str());
                e_host.push(job.host_id.as_str());
                e_kind.push(ev.kind.as_str());
                e_at.push(to_i64(ev.at_unix_ms));
                e_id.push(ev.tracked.id.as_str());
                e_tracked.push(serde_json::to_string(&ev.tracked)?);
            }
            let created = to_i64(report.created_unix_ms);
            if created >= h.findings_as_of {
                h.findings_as_of = created;
                h.latest = Some((i, k));
            }
        }
        for a in &job.alerts {
            let stored_now = match &a.report_id {
                None => true,
                Some(id) => job
                    .reports
                    .iter()
                    .zip(&results)
                    .any(|(r, s)| *s == Stored::Stored && r.report_id == *id),
            };
            if stored_now {
                a_route.push(a.route.as_str());
                a_id.push(a.alert_id.as_str());
                a_kind.push(a.kind.as_str());
                a_host.push(a.host_id.as_str());
                a_body.push(a.body.as_str());
                a_at.push(to_i64(job.now_unix_ms));
            }
        }
        outcomes[i] = Some(Ok(IngestOutcome::Done(results)));
    }

    // 5. The open set of each host's newest report: upserted (one row per finding), the
    //    host's other open findings resolved, resolved transitions of unknown findings kept.
    let mut newest: Vec<(&str, &Report)> = hosts
        .iter()
        .filter_map(|(id, h)| h.latest.map(|(i, k)| (id.as_str(), &jobs[i].reports[k])))
        .collect();
    newest.sort_unstable_by_key(|(id, _)| *id);
    let mut upserts = FindingRows::default();
    let (mut o_host, mut o_id) = (vec![], vec![]);
    let (mut n_host, mut n_created) = (vec![], vec![]);
    let mut gone = FindingRows::default();
    for (host, report) in &newest {
        let mut open: HashSet<&str> = HashSet::with_capacity(report.open_findings.len());
        // One row per finding: the last copy in the report wins, as one upsert after another.
        let mut by_id: BTreeMap<&str, FindingColumns> = BTreeMap::new();
        for t in &report.open_findings {
            let state = match t.state {
                LifecycleState::Resolved => LifecycleState::Ongoing,
                s => s,
            };
            let cols = FindingColumns::new(t, state)?;
            if let Some(prev) = by_id.get(t.id.as_str()) {
                let first = prev.first_seen_unix_ms.min(cols.first_seen_unix_ms);
                by_id.insert(
                    t.id.as_str(),
                    FindingColumns {
                        first_seen_unix_ms: first,
                        ..cols
                    },
                );
            } else {
                by_id.insert(t.id.as_str(), cols);
            }
            open.insert(t.id.as_str());
        }
        for (id, cols) in by_id {
            upserts.push(host, cols, None);
            o_host.push(*host);
            o_id.push(id);
        }
        n_host.push(*host);
        n_created.push(to_i64(report.created_unix_ms));
        let mut resolved_seen: HashSet<&str> = HashSet::new();
        for ev in &report.events {
            if ev.tracked.state == LifecycleState::Resolved
                && !open.contains(ev.tracked.id.as_str())
                && resolved_seen.insert(ev.tracked.id.as_str())
            {
                let cols = FindingColumns::new(&ev.tracked, LifecycleState::Resolved)?;
                gone.push(host, cols, Some(to_i64(ev.at_unix_ms)));
            }
        }
    }
    // 6. The hosts: heartbeat of the newest report, sequence state, last seen.
    let (mut hb_host, mut hb_name, mut hb_bye) = (vec![], vec![], vec![]);
    let (mut hb_interval, mut hb_agent, mut hb_sigs) = (vec![], vec![], vec![]);
    for (host, r) in &newest {
        hb_host.push(*host);
        hb_name.push(r.hostname.as_str());
        hb_bye.push(r.goodbye);
        hb_interval.push(to_i64(r.heartbeat.interval_secs));
        hb_agent.push(r.heartbeat.agent_version.as_str());
        hb_sigs.push(r.heartbeat.signature_version.as_str());
    }
    let mut accepted: Vec<(&str, &HostState)> = hosts
        .iter()
        .filter(|(_, h)| h.last_seen != i64::MIN)
        .map(|(id, h)| (id.as_str(), h))
        .collect();
    accepted.sort_unstable_by_key(|(id, _)| *id);
    let (mut s_host, mut s_last, mut s_boot, mut s_asof) = (vec![], vec![], vec![], vec![]);
    let (mut s_gaps, mut s_resets, mut s_boots, mut s_anomaly) = (vec![], vec![], vec![], vec![]);
    let (mut l_host, mut l_at) = (vec![], vec![]);
    for (id, h) in &accepted {
        l_host.push(*id);
        l_at.push(h.last_seen);
        if h.stored {
            s_host.push(*id);
            s_last.push(h.seq.last_sequence.map(to_i64));
            s_boot.push(h.seq.boot_id.as_deref());
            s_asof.push(h.findings_as_of);
            s_gaps.push(h.seq.gaps);
            s_resets.push(h.seq.resets);
            s_boots.push(h.seq.boot_changes);
            s_anomaly.push(h.seq.anomaly.as_deref());
        }
    }
    // 7. One pipelined round trip: events, the open sets' upserts, resolving the rest, the
    //    hosts, last seen. The server runs them in the order sent, as if one after another;
    //    none needs another's answer.
    let events = async {
        execute_rows(
            c,
            e_report.len(),
            "INSERT INTO events (report_id, host_id, kind, at_unix_ms, tracked_id, tracked)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
             $6::text[])",
            &[&e_report, &e_host, &e_kind, &e_at, &e_id, &e_tracked],
        )
        .await
    };
    let open_sets = insert_findings(
        c,
        &upserts,
        "ON CONFLICT (host_id, tracked_id) DO UPDATE SET category = excluded.category,
         severity = excluded.severity, severity_rank = excluded.severity_rank,
         state = excluded.state, signatures = excluded.signatures, excepted = excluded.excepted,
         first_seen_unix_ms = LEAST(findings.first_seen_unix_ms, excluded.first_seen_unix_ms),
         last_seen_unix_ms = excluded.last_seen_unix_ms,
         resolved_unix_ms = excluded.resolved_unix_ms, tracked = excluded.tracked",
    );
    let heartbeats = async {
        execute_rows(
            c,
            hb_host.len(),
            "UPDATE hosts h SET hostname = u.hostname, stopped = u.goodbye,
             interval_secs = u.interval_secs, agent_version = u.agent_version,
             signature_version = u.signature_version
             FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[], $5::text[], $6::text[])
               AS u(host_id, hostname, goodbye, interval_secs, agent_version, signature_version)
             WHERE h.host_id = u.host_id",
            &[
                &hb_host,
                &hb_name,
                &hb_bye,
                &hb_interval,
                &hb_agent,
                &hb_sigs,
            ],
        )
        .await
    };
    let sequences = async {
        execute_rows(
            c,
            s_host.len(),
            "UPDATE hosts h SET last_sequence = u.last_sequence, boot_id = u.boot_id,
             findings_as_of_unix_ms = u.as_of, sequence_gaps = u.gaps,
             sequence_resets = u.resets, boot_changes = u.boot_changes,
             last_anomaly = u.anomaly
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                         $6::bigint[], $7::bigint[], $8::text[])
               AS u(host_id, last_sequence, boot_id, as_of, gaps, resets, boot_changes, anomaly)
             WHERE h.host_id = u.host_id",
            &[
                &s_host, &s_last, &s_boot, &s_asof, &s_gaps, &s_resets, &s_boots, &s_anomaly,
            ],
        )
        .await
    };
    let seen = async {
        execute_rows(
            c,
            l_host.len(),
            "INSERT INTO last_seen (host_id, last_seen_unix_ms)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (host_id) DO UPDATE SET last_seen_unix_ms = excluded.last_seen_unix_ms",
            &[&l_host, &l_at],
        )
        .await
    };
    // The host's other open findings: disjoint from the upserted ones (not in the open set).
    let resolve = async {
        execute_rows(
            c,
            n_host.len(),
            "UPDATE findings f SET state = 'resolved', resolved_unix_ms = n.created
             FROM unnest($1::text[], $2::bigint[]) AS n(host_id, created)
             WHERE f.host_id = n.host_id AND f.state != 'resolved'
             AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS o(host_id, tracked_id)
                             WHERE o.host_id = f.host_id AND o.tracked_id = f.tracked_id)",
            &[&n_host, &n_created, &o_host, &o_id],
        )
        .await
    };
    let alerts = async {
        execute_rows(
            c,
            a_route.len(),
            "INSERT INTO alerts (route, alert_id, kind, host_id, body, created_unix_ms,
             next_attempt_unix_ms)
             SELECT r, i, k, h, b, t, t FROM unnest($1::text[], $2::text[], $3::text[],
             $4::text[], $5::text[], $6::bigint[]) AS u(r, i, k, h, b, t)
             ON CONFLICT (route, alert_id) DO NOTHING",
            &[&a_route, &a_id, &a_kind, &a_host, &a_body, &a_at],
        )
        .await
    };
    // A finding the collector never saw open, reported resolved: kept as resolved (not in
    // the open set either, so no other statement here touches it).
    let gone = insert_findings(c, &gone, "ON CONFLICT (host_id, tracked_id) DO NOTHING");
    let (events, open_sets, resolve, gone, heartbeats, sequences, seen, alerts) =
        tokio::join!(events, open_sets, resolve, gone, heartbeats, sequences, seen, alerts);
    events?;
    alerts?;
    open_sets?;
    resolve?;
    gone?;
    heartbeats?;
    sequences?;
    seen?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Err(StoreError::WriterGone)))
        .collect())
}
