//! The database behind the collector: one [`Store`] trait, two backends (SQLite by default,
//! PostgreSQL for several collectors on one database) that pass one test suite.
//!
//! What is stored: enroll secrets and operator tokens (SHA-256 only), hosts (machine id,
//! node key hash, flags, sequence and boot bookkeeping, announced interval, versions), a
//! narrow `last_seen` table written per batch, reports (the report id unique: that is the
//! idempotency), lifecycle events per report, and findings: the current state of each
//! agent-tracked offender verdict, one row per (host, tracked id), never per signature.
//!
//! Must never: acknowledge a write before its commit; store a secret in the clear.

mod pg_batch;
pub mod postgres;
pub mod sqlite;

use aupwatch_proto::api::FindingRow;
use aupwatch_proto::protocol::{Report, Stored};
use aupwatch_proto::Severity;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// What a store's methods return.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("the database writer stopped")]
    WriterGone,
    #[error("the database writer's queue is full")]
    Busy,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("database schema version {found} is newer than this collector's {known}")]
    SchemaTooNew { found: i64, known: i64 },
}

/// An agent's enrollment, validated by the HTTP layer.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub secret_hash: String,
    pub machine_id: String,
    pub hostname: String,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    /// The new host id, used when the machine is not known yet.
    pub new_host_id: String,
    pub node_key_hash: String,
    pub require_approval: bool,
    pub now_unix_ms: u64,
    /// A known machine whose current key reported within this many of its intervals (the
    /// liveness rules' `late_after_intervals`) is not given a new key: see [`key_in_use`].
    pub in_use_intervals: u64,
}

/// What the store knows of a machine's current key when it enrolls again.
#[derive(Debug, Clone, Copy)]
pub struct CurrentKey {
    pub revoked: bool,
    /// The last report said goodbye.
    pub stopped: bool,
    pub last_seen_unix_ms: Option<u64>,
    pub interval_secs: Option<u64>,
}

/// Seconds until a machine's current key may be replaced by a new enrollment, or `None` when
/// it may be now. A key that is in use (its host reported within `intervals` of its announced
/// intervals, and neither said goodbye nor was revoked) is kept: otherwise two agents that
/// share a machine id (a cloned VM image with the same `/etc/machine-id`) would take the key
/// from each other on every 401, and both would look alive. The second one is refused until the
/// first goes quiet; an operator who replaced the machine revokes the old key to let the new
/// one in at once.
pub fn key_in_use(k: &CurrentKey, now_unix_ms: u64, intervals: u64) -> Option<u64> {
    if k.revoked || k.stopped {
        return None;
    }
    let last = k.last_seen_unix_ms?;
    let interval_ms = k
        .interval_secs
        .filter(|i| *i > 0)
        .unwrap_or(crate::liveness::DEFAULT_INTERVAL_SECS)
        .saturating_mul(1000);
    let free_at = last.saturating_add(interval_ms.saturating_mul(intervals));
    (free_at > now_unix_ms).then(|| (free_at - now_unix_ms).div_ceil(1000).max(1))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    Enrolled {
        host_id: String,
        pending_approval: bool,
    },
    /// No active secret has that hash.
    BadSecret,
    /// The machine id is blocked.
    Blocked,
    /// The machine's current key is in use by an agent that reports: see [`key_in_use`].
    InUse {
        host_id: String,
        retry_after_secs: u64,
    },
}

/// The host a node key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAuth {
    pub host_id: String,
    pub machine_id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub approved: bool,
    pub blocked: bool,
}

/// A host as stored; its liveness is derived from this and a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRecord {
    pub host_id: String,
    pub machine_id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub approved: bool,
    pub blocked: bool,
    pub revoked: bool,
    pub archived: bool,
    /// The last report said goodbye.
    pub stopped: bool,
    pub enrolled_unix_ms: u64,
    pub last_seen_unix_ms: Option<u64>,
    pub interval_secs: Option<u64>,
    pub agent_version: Option<String>,
    pub signature_version: Option<String>,
    pub last_sequence: Option<u64>,
    pub boot_id: Option<String>,
    pub sequence_gaps: u64,
    pub sequence_resets: u64,
    pub boot_changes: u64,
    pub last_anomaly: Option<String>,
    pub open_findings: u64,
}

/// An operator's action on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction {
    /// Invalidate its node key: it must enroll again.
    Revoke,
    /// Refuse its reports and any new enrollment of its machine id.
    Block,
    /// Undo a block.
    Unblock,
    /// Accept its reports (when approval is required).
    Approve,
    /// Keep for history, out of the live views.
    Archive,
}

/// Which findings; every field narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingFilter {
    /// A host id or hostname.
    pub host: Option<String>,
    pub customer: Option<String>,
    pub category: Option<String>,
    /// This severity or higher.
    pub min_severity: Option<Severity>,
    pub state: StateFilter,
    /// A signature id among the finding's matches.
    pub signature: Option<String>,
    /// Last seen at or after (ms).
    pub since_unix_ms: Option<u64>,
    /// Last seen before (ms).
    pub until_unix_ms: Option<u64>,
    /// Keyset cursor: findings with an id after this one.
    pub after: Option<(String, String)>,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StateFilter {
    /// `new` or `ongoing`.
    #[default]
    Open,
    New,
    Ongoing,
    Resolved,
    All,
}

impl StateFilter {
    pub fn parse(s: &str) -> Option<StateFilter> {
        Some(match s {
            "open" => StateFilter::Open,
            "new" => StateFilter::New,
            "ongoing" => StateFilter::Ongoing,
            "resolved" => StateFilter::Resolved,
            "all" => StateFilter::All,
            _ => return None,
        })
    }

    pub fn admits(self, state: &str) -> bool {
        match self {
            StateFilter::Open => state == "new" || state == "ongoing",
            StateFilter::New => state == "new",
            StateFilter::Ongoing => state == "ongoing",
            StateFilter::Resolved => state == "resolved",
            StateFilter::All => true,
        }
    }
}

/// Totals for the summary and /metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub reports: u64,
    pub events: u64,
    /// Open findings per (category, severity).
    pub open: BTreeMap<(String, String), u64>,
}

/// An enroll secret (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretRow {
    pub id: i64,
    pub customer: Option<String>,
    pub created_unix_ms: u64,
    pub revoked_unix_ms: Option<u64>,
}

/// An operator's role: viewer reads; analyst and admin read too (the write API is the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Analyst,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "analyst" => Role::Analyst,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// An operator token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_unix_ms: u64,
    pub revoked_unix_ms: Option<u64>,
}

/// A dashboard operator account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Argon2id, PHC string.
    pub password_hash: String,
    pub created_unix_ms: u64,
}

/// A session to store: the SHA-256 of its id, never the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id_hash: String,
    pub user_id: i64,
    pub csrf: String,
    pub now_unix_ms: u64,
    pub expires_unix_ms: u64,
}

/// A live session and its operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// The per-session CSRF token every form carries.
    pub csrf: String,
    pub expires_unix_ms: u64,
}

/// One line of the audit log: who did what to which target, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_unix_ms: u64,
    pub actor: String,
    pub action: String,
    /// `finding:<host_id>:<tracked id>` or `host:<host_id>`.
    pub target: String,
    pub detail: String,
}

/// The overview's activity figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Bucket start (ms) → findings first seen in it.
    pub new: BTreeMap<u64, u64>,
    /// Bucket start (ms) → findings resolved in it.
    pub resolved: BTreeMap<u64, u64>,
    pub reports: u64,
}

/// The schema's steps: `steps[0]` makes version 1, `steps[n]` takes version n to n + 1
/// (each after its marker line, `-- version <n + 1>`).
pub fn schema_steps(schema: &str) -> Vec<&str> {
    let mut steps = Vec::new();
    let mut rest = schema;
    let mut next = 2;
    while let Some((step, after)) = rest.split_once(&format!("\n-- version {next}\n")) {
        steps.push(step);
        rest = after;
        next += 1;
    }
    steps.push(rest);
    steps
}

/// A webhook alert to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// The route's name in the config (its URL and retry rules are looked up at delivery).
    pub route: String,
    /// The CloudEvents id: `(route, alert_id)` is stored once.
    pub alert_id: String,
    /// The CloudEvents type.
    pub kind: String,
    pub host_id: String,
    /// For a report's alert: written only when that report is stored now (not a duplicate).
    pub report_id: Option<String>,
    /// The CloudEvents JSON, sent as is.
    pub body: String,
}

/// An alert's delivery state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Waiting for its (next) attempt.
    Pending,
    Sent,
    /// Gave up after the route's attempts (or the route is gone).
    Failed,
}

impl AlertState {
    pub const ALL: [AlertState; 3] = [AlertState::Pending, AlertState::Sent, AlertState::Failed];
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Sent => "sent",
            AlertState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<AlertState> {
        Some(match s {
            "pending" => AlertState::Pending,
            "sent" => AlertState::Sent,
            "failed" => AlertState::Failed,
            _ => return None,
        })
    }
}

/// An alert of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertRow {
    /// Its row number (insertion order).
    pub seq: i64,
    pub route: String,
    pub alert_id: String,
    pub kind: String,
    pub host_id: String,
    #[serde(skip)]
    pub body: String,
    pub state: AlertState,
    /// Attempts made (a claimed delivery counts, whatever its end).
    pub attempts: u32,
    pub created_unix_ms: u64,
    pub next_attempt_unix_ms: u64,
    /// When it was sent or given up.
    pub done_unix_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertOutcome {
    Sent,
    /// Try again at `next_unix_ms`.
    Retry {
        next_unix_ms: u64,
        error: String,
    },
    /// Give up: the row is kept as `failed`.
    Failed {
        error: String,
    },
}

/// What settling an alert writes to its row, the same on both backends.
pub(crate) struct Settled {
    pub state: AlertState,
    /// The next attempt (a retry), else the row's keeps its value.
    pub next_attempt_unix_ms: Option<i64>,
    /// The attempt's error, else the row's last one stays.
    pub error: Option<String>,
    /// When it ended (sent or failed); `None` while it is still pending.
    pub done_unix_ms: Option<i64>,
}

impl AlertOutcome {
    pub(crate) fn settled(self, now: u64) -> Settled {
        let now = to_i64(now);
        let (state, next_attempt_unix_ms, error, done_unix_ms) = match self {
            AlertOutcome::Sent => (AlertState::Sent, None, None, Some(now)),
            AlertOutcome::Retry {
                next_unix_ms,
                error,
            } => (
                AlertState::Pending,
                Some(to_i64(next_unix_ms)),
                Some(error),
                None,
            ),
            AlertOutcome::Failed { error } => (AlertState::Failed, None, Some(error), Some(now)),
        };
        Settled {
            state,
            next_attempt_unix_ms,
            error,
            done_unix_ms,
        }
    }
}

/// The outbox by state, for /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertCounts {
    pub pending: u64,
    /// Pending rows that have failed at least one attempt.
    pub retrying: u64,
    pub sent: u64,
    pub failed: u64,
    /// Attempts beyond each row's first, over all rows.
    pub retries: u64,
}

/// The database. Every write is committed before its future resolves.
pub trait Store: Send + Sync + 'static {
    fn enroll(&self, e: Enrollment) -> Fut<'_, EnrollOutcome>;
    /// The host whose node key hashes to `node_key_hash`, unless revoked.
    fn authenticate(&self, node_key_hash: String) -> Fut<'_, Option<HostAuth>>;
    /// Stores a host's reports (already checked to be its own) in one transaction: each
    /// `Stored` the first time, `Duplicate` after. No key check: for trusted callers.
    fn ingest(
        &self,
        host_id: String,
        reports: Vec<Report>,
        now_unix_ms: u64,
    ) -> Fut<'_, Vec<Stored>>;
    /// As `ingest`, after checking inside the same transaction that `node_key_hash` is
    /// still the host's key, and the host neither blocked nor waiting for approval: a
    /// revoke or block that commits before the report is never undercut by a check made
    /// earlier (or by a cached one).
    fn ingest_checked(
        &self,
        host_id: String,
        node_key_hash: String,
        reports: Vec<Report>,
        alerts: Vec<NewAlert>,
        now_unix_ms: u64,
    ) -> Fut<'_, IngestOutcome>;
    /// Puts alerts not tied to a report (liveness) in the outbox, each `(route, alert_id)`
    /// once; how many were new.
    fn enqueue_alerts(&self, alerts: Vec<NewAlert>, now_unix_ms: u64) -> Fut<'_, u64>;
    /// Claims up to `limit` pending alerts due at `now` and not leased by anyone, for
    /// `lease_ms` under `owner`, counting an attempt for each. Two claimers never get the
    /// same row while its lease runs (PostgreSQL: `FOR UPDATE SKIP LOCKED`).
    fn claim_alerts(
        &self,
        owner: String,
        now_unix_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> Fut<'_, Vec<AlertRow>>;
    /// Records how a claimed alert's attempt ended; false when `owner` no longer holds it.
    fn settle_alert(
        &self,
        seq: i64,
        owner: String,
        outcome: AlertOutcome,
        now_unix_ms: u64,
    ) -> Fut<'_, bool>;
    /// The outbox, newest first, in one state or all, at most `limit`.
    fn alerts(&self, state: Option<AlertState>, limit: usize) -> Fut<'_, Vec<AlertRow>>;
    fn alert_counts(&self) -> Fut<'_, AlertCounts>;
    fn hosts(&self) -> Fut<'_, Vec<HostRecord>>;
    /// Applies `action` to the host with this id or machine id; false when none.
    fn host_action(&self, host: String, action: HostAction, now_unix_ms: u64) -> Fut<'_, bool>;
    /// Stored findings (no collector-made rows), ordered by (host id, tracked id), at most
    /// `filter.limit`.
    fn findings(&self, filter: FindingFilter) -> Fut<'_, Vec<FindingRow>>;
    fn finding(&self, host_id: String, tracked_id: String) -> Fut<'_, Option<FindingRow>>;
    /// Open findings by category and severity; with `totals`, also the rows of `reports` and
    /// `events` (a full count: for the summary an operator asks for, not for every scrape or
    /// page view, which pass `false` and get 0).
    fn counts(&self, totals: bool) -> Fut<'_, Counts>;
    /// Rows in a table, for tests and the benchmark (`reports`, `events`, `findings`, …).
    fn count_rows(&self, table: &'static str) -> Fut<'_, u64>;
    fn create_secret(
        &self,
        secret_hash: String,
        customer: Option<String>,
        now: u64,
    ) -> Fut<'_, i64>;
    fn secrets(&self) -> Fut<'_, Vec<SecretRow>>;
    fn revoke_secret(&self, id: i64, now: u64) -> Fut<'_, bool>;
    fn create_token(&self, token_hash: String, name: String, role: Role, now: u64) -> Fut<'_, i64>;
    fn tokens(&self) -> Fut<'_, Vec<TokenRow>>;
    fn token_role(&self, token_hash: String) -> Fut<'_, Option<Role>>;
    /// Retention: deletes events (and sent alerts) older than `events_before_unix_ms` and archives hosts
    /// whose last report (or enrollment, when none) is older than `archive_before_unix_ms`.
    /// `None` keeps everything of that kind.
    fn retain(
        &self,
        events_before_unix_ms: Option<u64>,
        archive_before_unix_ms: Option<u64>,
    ) -> Fut<'_, Retained>;
    /// A new operator account for the dashboard; `None` when the name is taken.
    fn create_user(
        &self,
        name: String,
        role: Role,
        password_hash: String,
        now: u64,
    ) -> Fut<'_, Option<i64>>;
    /// The account with this name, with its password hash.
    fn user(&self, name: String) -> Fut<'_, Option<UserRow>>;
    fn users(&self) -> Fut<'_, Vec<UserRow>>;
    /// Stores a session (its id hashed); expired sessions are deleted on the way.
    fn create_session(&self, s: NewSession) -> Fut<'_, ()>;
    /// The live session whose id hashes to `id_hash`, with its user.
    fn session(&self, id_hash: String, now: u64) -> Fut<'_, Option<Session>>;
    /// Ends a session; false when there was none.
    fn delete_session(&self, id_hash: String) -> Fut<'_, bool>;
    /// Appends to the audit log.
    fn audit(&self, entry: AuditEntry) -> Fut<'_, ()>;
    /// The audit log of one target (`finding:<id>`, `host:<id>`), oldest first.
    fn audit_log(&self, target: String) -> Fut<'_, Vec<AuditEntry>>;
    /// A finding's lifecycle events (kind, time), oldest first.
    fn finding_events(&self, host_id: String, tracked_id: String) -> Fut<'_, Vec<(String, u64)>>;
    /// Findings first seen and resolved per `bucket_ms` since `since`, and reports received
    /// since `reports_since`: the overview's activity figures.
    fn activity(&self, since: u64, bucket_ms: u64, reports_since: u64) -> Fut<'_, Activity>;
    /// Open findings of `min_severity` or higher, newest first seen first.
    fn newest_findings(&self, min_severity: Severity, limit: usize) -> Fut<'_, Vec<FindingRow>>;
    /// Requests waiting for the writer (0 where there is no single writer).
    fn queue_depth(&self) -> usize;
    /// How long commits take.
    fn commit_histogram(&self) -> &crate::metrics::Histogram;
}

/// Why the writer refused a report after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key is no longer the host's (revoked, or replaced by a new enrollment).
    UnknownKey,
    Blocked,
    PendingApproval,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Done(Vec<Stored>),
    Refused(Refusal),
}

/// Checks a host row's key and flags for `ingest_checked`.
pub fn refusal(
    stored_hash: Option<&str>,
    given_hash: &str,
    revoked: bool,
    blocked: bool,
    approved: bool,
) -> Option<Refusal> {
    if revoked || stored_hash != Some(given_hash) {
        Some(Refusal::UnknownKey)
    } else if blocked {
        Some(Refusal::Blocked)
    } else if !approved {
        Some(Refusal::PendingApproval)
    } else {
        None
    }
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub events_deleted: u64,
    pub hosts_archived: u64,
    pub alerts_deleted: u64,
}

/// Tables `count_rows` accepts.
pub const TABLES: &[&str] = &[
    "hosts",
    "last_seen",
    "reports",
    "events",
    "findings",
    "enroll_secrets",
    "tokens",
    "users",
    "sessions",
    "audit",
    "alerts",
];

/// A finding's API id from its parts.
pub fn finding_id(host_id: &str, tracked_id: &str) -> String {
    format!("{host_id}:{tracked_id}")
}

/// The parts of a finding's API id.
pub fn split_finding_id(id: &str) -> Option<(String, String)> {
    let (h, t) = id.split_once(':')?;
    (!h.is_empty() && !t.is_empty()).then(|| (h.to_string(), t.to_string()))
}

/// How a report moves a host's sequence and boot bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceCheck {
    pub gap: u64,
    pub reset: bool,
    pub boot_changed: bool,
    pub new_last: Option<u64>,
    pub anomaly: Option<String>,
}

/// A host's sequence columns, as its stored reports move them on.
#[derive(Debug, Clone, Default)]
pub struct SequenceState {
    pub last_sequence: Option<u64>,
    pub boot_id: Option<String>,
    pub gaps: i64,
    pub resets: i64,
    pub boot_changes: i64,
    pub anomaly: Option<String>,
}

impl SequenceState {
    /// Takes a newly stored report's sequence number and boot id into account.
    pub fn advance(&mut self, sequence: u64, boot_id: &str) {
        let seq = check_sequence(
            self.last_sequence,
            self.boot_id.as_deref(),
            sequence,
            boot_id,
        );
        self.gaps += to_i64(seq.gap);
        self.resets += i64::from(seq.reset);
        self.boot_changes += i64::from(seq.boot_changed);
        if seq.anomaly.is_some() {
            self.anomaly = seq.anomaly;
        }
        if let Some(l) = seq.new_last {
            self.last_sequence = Some(l);
        }
        self.boot_id = Some(boot_id.to_string());
    }
}

/// Compares a report's sequence and boot id with the host's last ones.
pub fn check_sequence(
    last_sequence: Option<u64>,
    last_boot: Option<&str>,
    sequence: u64,
    boot_id: &str,
) -> SequenceCheck {
    let mut c = SequenceCheck::default();
    let boot_changed = last_boot.is_some_and(|b| b != boot_id);
    c.boot_changed = boot_changed;
    match last_sequence {
        None => c.new_last = Some(sequence),
        Some(last) if sequence > last => {
            c.new_last = Some(sequence);
            if sequence > last + 1 {
                c.gap = sequence - last - 1;
                c.anomaly = Some(format!(
                    "sequence gap: {} report(s) missing between {last} and {sequence}",
                    c.gap
                ));
            }
        }
        Some(last) if sequence == last => {
            c.anomaly = Some(format!(
                "sequence {sequence} repeated under a new report id"
            ));
        }
        Some(last) => {
            c.reset = true;
            c.new_last = Some(sequence);
            c.anomaly = Some(format!("sequence went back from {last} to {sequence}"));
        }
    }
    if boot_changed {
        let what = if c.reset {
            "boot id changed with a sequence reset"
        } else {
            "boot id changed (reboot)"
        };
        c.anomaly = Some(match c.anomaly.take() {
            Some(a) => format!("{what}; {a}"),
            None => what.to_string(),
        });
    }
    c
}

#[cfg(test)]
mod tests {
    use super::check_sequence;

    #[test]
    fn sequence_gaps_resets_and_reboots_are_noticed() {
        let c = check_sequence(None, None, 5, "b");
        assert_eq!((c.gap, c.reset, c.new_last), (0, false, Some(5)));
        let c = check_sequence(Some(5), Some("b"), 6, "b");
        assert_eq!((c.gap, c.anomaly), (0, None));
        let c = check_sequence(Some(5), Some("b"), 9, "b");
        assert_eq!(c.gap, 3);
        let c = check_sequence(Some(9), Some("b"), 1, "c");
        assert!(c.reset && c.boot_changed);
        assert!(c.anomaly.as_deref().is_some_and(|a| a.contains("boot id")));
    }
}

/// A tracked finding flattened into the `findings` table's columns.
#[derive(Debug, Clone)]
pub struct FindingColumns {
    pub tracked_id: String,
    pub category: String,
    pub severity: String,
    pub severity_rank: i64,
    pub state: String,
    /// `,sig-a,sig-b,` so that `,sig,` finds one exactly.
    pub signatures: String,
    pub excepted: bool,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    pub tracked_json: String,
}

impl FindingColumns {
    pub fn new(
        t: &aupwatch_proto::Tracked,
        state: aupwatch_proto::LifecycleState,
    ) -> Result<FindingColumns, StoreError> {
        let mut signatures = String::from(",");
        for s in t.finding.signatures() {
            signatures.push_str(s);
            signatures.push(',');
        }
        Ok(FindingColumns {
            tracked_id: t.id.clone(),
            category: t.finding.category.as_str().to_string(),
            severity: t.finding.severity.as_str().to_string(),
            severity_rank: severity_rank(t.finding.severity),
            state: state.as_str().to_string(),
            signatures,
            excepted: t.excepted.is_some(),
            first_seen_unix_ms: to_i64(t.first_seen_unix_ms),
            last_seen_unix_ms: to_i64(t.last_seen_unix_ms),
            tracked_json: serde_json::to_string(t)?,
        })
    }
}

pub fn severity_rank(s: Severity) -> i64 {
    Severity::ALL
        .iter()
        .position(|v| *v == s)
        .and_then(|p| i64::try_from(p).ok())
        .unwrap_or(0)
}

/// Database integers are signed; values past i64::MAX are clamped (times and counters
/// never get there).
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The `signatures` column pattern for one signature id.
pub fn signature_pattern(signature: &str) -> String {
    format!(",{signature},")
}

/// Builds a finding row from stored columns.
#[allow(clippy::too_many_arguments)]
pub fn finding_row(
    host_id: String,
    tracked_id: String,
    hostname: String,
    customer: Option<String>,
    category: String,
    severity: &str,
    state: String,
    signatures: &str,
    first_seen: i64,
    last_seen: i64,
    resolved: Option<i64>,
    excepted: bool,
    tracked_json: &str,
) -> Result<FindingRow, StoreError> {
    let tracked: aupwatch_proto::Tracked = serde_json::from_str(tracked_json)?;
    Ok(FindingRow {
        id: finding_id(&host_id, &tracked_id),
        host_id,
        hostname,
        customer,
        category,
        severity: Severity::parse(severity)
            .ok_or_else(|| StoreError::Corrupt(format!("severity {severity:?}")))?,
        state,
        signatures: signatures
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        first_seen_unix_ms: to_u64(first_seen),
        last_seen_unix_ms: to_u64(last_seen),
        resolved_unix_ms: resolved.map(to_u64),
        excepted,
        tracked: Some(tracked),
    })
}
