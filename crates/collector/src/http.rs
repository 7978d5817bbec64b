//! The HTTP API: `app(state) -> Router`, testable with `tower::ServiceExt::oneshot`.
//!
//! Agent side (`/api/agent/v1/…`): enrollment and reports. Body limits are applied before
//! decompression (`ingest.max_body_bytes`, default 4 MiB on the wire) and after it
//! (`ingest.max_decompressed_bytes`, default 16 MiB), so a gzip bomb costs at most the
//! second. Every refusal is a precise 4xx with an [`ApiError`], and nothing is stored.
//! Operator side (`/api/v1/…`): bearer tokens with a role. `/healthz`, `/metrics`.
//!
//! Must never: answer a report before its commit; echo internals in an error.

use crate::clock::Clock;
use crate::config::Config;
use crate::liveness::{self, SILENT_SIGNATURE};
use crate::metrics::{label, Metrics};
use crate::secret;
use crate::store::{
    split_finding_id, EnrollOutcome, Enrollment, FindingFilter, IngestOutcome, Refusal, Role,
    StateFilter, Store, StoreError,
};
use aupwatch_proto::api::{FindingPage, FindingRow, HostRow, Liveness, Summary};
use aupwatch_proto::protocol::{
    ApiError, EnrollRequest, EnrollResponse, ReportAck, ReportBatch, ReportResult, Stored,
    ENROLL_PATH, REPORT_PATH,
};
use aupwatch_proto::{Category, Severity, OLDEST_ACCEPTED_VERSION, SCHEMA_VERSION};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest enrollment request and query body.
const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// Default and largest page of findings.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<crate::alerts::Alerter>,
    pub auth_cache: Arc<AuthCache>,
    /// Failed dashboard logins per account name (backoff).
    pub logins: Arc<crate::web::auth::LoginThrottle>,
}

/// Recently seen node keys of approved, unblocked hosts, so a report costs no database
/// read before its body is accepted. Only a shortcut: the writer checks the key again in the
/// report's own transaction (`Store::ingest_checked`), and a refusal there evicts it.
#[derive(Default)]
pub struct AuthCache {
    map: std::sync::Mutex<HashMap<String, (crate::store::HostAuth, std::time::Instant)>>,
}

/// How long a cached key is trusted before it is read again.
const AUTH_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Entries before the cache is emptied and starts over.
const AUTH_MAX: usize = 200_000;

impl AuthCache {
    fn get(&self, key_hash: &str) -> Option<crate::store::HostAuth> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key_hash)
            .filter(|(_, at)| at.elapsed() < AUTH_TTL)
            .map(|(a, _)| a.clone())
    }

    fn put(&self, key_hash: String, auth: crate::store::HostAuth) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= AUTH_MAX {
            map.clear();
        }
        map.insert(key_hash, (auth, std::time::Instant::now()));
    }

    fn evict(&self, key_hash: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key_hash);
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    let agent = Router::new()
        .route(ENROLL_PATH, post(enroll))
        .layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT))
        .route(REPORT_PATH, post(report).layer(DefaultBodyLimit::disable()));
    Router::new()
        .merge(agent)
        .route("/api/v1/hosts", get(hosts))
        .route("/api/v1/findings", get(findings))
        .route("/api/v1/findings/{id}", get(finding))
        .route("/api/v1/summary", get(summary))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::web::router())
        .fallback(not_found)
        .with_state(state)
}

/// An error answer: status, machine code, message for a person.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn internal(e: &dyn std::fmt::Display) -> Failure {
        crate::log(&format!("internal error: {e}"));
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    fn store(e: StoreError, retry_after: u64) -> Failure {
        match e {
            StoreError::Busy => Failure {
                retry_after: Some(retry_after),
                ..Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the collector is busy: retry later",
                )
            },
            e => {
                crate::log(&format!("internal error: {e}"));
                Failure {
                    retry_after: Some(retry_after),
                    ..Failure::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error",
                    )
                }
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ApiError {
                code: self.code.to_string(),
                error: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

async fn not_found() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// `schema_version` alone: read when the strict parse fails, so a document of another
/// version is told so rather than about its fields.
#[derive(serde::Deserialize)]
struct VersionOnly {
    schema_version: Option<serde_json::Value>,
}

/// A top-level protocol document.
pub trait Document: serde::de::DeserializeOwned {
    fn schema_version(&self) -> u32;
}

impl Document for EnrollRequest {
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

impl Document for ReportBatch {
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

fn version_error(found: Option<&serde_json::Value>) -> Failure {
    let message = match found {
        Some(v) => format!(
            "schema_version {v} is not accepted (accepted: {OLDEST_ACCEPTED_VERSION}..={SCHEMA_VERSION})"
        ),
        None => "schema_version missing".to_string(),
    };
    Failure::new(StatusCode::BAD_REQUEST, "bad_schema_version", message)
}

fn accepted(v: u64) -> bool {
    (u64::from(OLDEST_ACCEPTED_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&v)
}

/// Parses a strict protocol document with precise errors, in one pass when it is good.
pub fn parse_document<T: Document>(body: &[u8]) -> Result<T, Failure> {
    match serde_json::from_slice::<T>(body) {
        Ok(doc) if accepted(u64::from(doc.schema_version())) => Ok(doc),
        Ok(doc) => Err(version_error(Some(&doc.schema_version().into()))),
        Err(e) => {
            if let Ok(v) = serde_json::from_slice::<VersionOnly>(body) {
                match v.schema_version.as_ref() {
                    Some(n) if n.as_u64().is_some_and(accepted) => {}
                    other => return Err(version_error(other)),
                }
            }
            let text = e.to_string();
            let code = if e.is_syntax() || e.is_eof() {
                "bad_json"
            } else if text.contains("unknown field") {
                "unknown_field"
            } else {
                "bad_document"
            };
            Err(Failure::new(StatusCode::BAD_REQUEST, code, text))
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An identifier from the agent: 1–128 characters of `[A-Za-z0-9._-]`.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn bad(code: &'static str, message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, code, message)
}

async fn enroll(State(st): State<AppState>, body: Bytes) -> Result<Json<EnrollResponse>, Failure> {
    let req: EnrollRequest = parse_document(&body)?;
    if !valid_id(&req.machine_id) {
        return Err(bad("bad_document", "machine_id: 1-128 of [A-Za-z0-9._-]"));
    }
    if req.hostname.is_empty() || req.hostname.len() > 255 || req.agent_version.len() > 128 {
        return Err(bad(
            "bad_document",
            "hostname or agent_version out of bounds",
        ));
    }
    if req.labels.len() > 64
        || req
            .labels
            .iter()
            .any(|(k, v)| k.len() > 128 || v.len() > 256)
    {
        return Err(bad(
            "bad_document",
            "labels: at most 64, keys 128, values 256 bytes",
        ));
    }
    let retry = st.config.ingest.retry_after_secs;
    let node_key = secret::new_secret().map_err(|e| Failure::internal(&e))?;
    let new_host_id = secret::random_hex(8).map_err(|e| Failure::internal(&e))?;
    let outcome = st
        .store
        .enroll(Enrollment {
            secret_hash: secret::hash(&req.enroll_secret),
            machine_id: req.machine_id,
            hostname: req.hostname,
            agent_version: req.agent_version,
            labels: req.labels,
            new_host_id,
            node_key_hash: secret::hash(&node_key),
            require_approval: st.config.ingest.require_approval,
            now_unix_ms: st.clock.now_unix_ms(),
            in_use_intervals: st.config.liveness.late_after_intervals,
        })
        .await
        .map_err(|e| Failure::store(e, retry))?;
    match outcome {
        EnrollOutcome::Enrolled {
            host_id,
            pending_approval,
        } => {
            st.metrics.enrollments.fetch_add(1, Ordering::Relaxed);
            Ok(Json(EnrollResponse {
                schema_version: SCHEMA_VERSION,
                host_id,
                node_key,
                pending_approval,
            }))
        }
        EnrollOutcome::BadSecret => Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "bad_enroll_secret",
            "unknown or revoked enroll secret",
        )),
        EnrollOutcome::Blocked => Err(Failure::new(
            StatusCode::FORBIDDEN,
            "blocked",
            "this machine is blocked",
        )),
        EnrollOutcome::InUse {
            host_id,
            retry_after_secs,
        } => {
            st.metrics
                .enrollments_in_use
                .fetch_add(1, Ordering::Relaxed);
            Err(Failure {
                retry_after: Some(retry_after_secs),
                ..Failure::new(
                    StatusCode::CONFLICT,
                    "machine_in_use",
                    format!(
                        "machine id in use: host {host_id} reports with its current key; \
                         another machine with the same machine id (a cloned image?) needs its \
                         own machine_id, or an operator revokes the old key if this machine \
                         replaced it"
                    ),
                )
            })
        }
    }
}

/// Reads a body up to `limit` bytes on the wire.
async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Failure> {
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body over {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// Decompresses a gzip body up to `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let mut dec = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| bad("bad_gzip", format!("gzip: {e}")))?;
    if out.len() > limit {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("decompressed body over {limit} bytes"),
        ));
    }
    Ok(out)
}

async fn report(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match ingest(&st, &headers, body).await {
        Ok(ack) => Json(ack).into_response(),
        Err(f) => {
            st.metrics.reject(match f.code {
                "bad_json" | "unknown_field" => "bad_json",
                "bad_schema_version" => "bad_schema_version",
                "too_large" => "too_large",
                "unauthorized" | "unknown_key" => "unauthorized",
                "blocked" | "pending_approval" | "wrong_machine" => "forbidden",
                "busy" => "busy",
                "internal" => "internal",
                _ => "bad_request",
            });
            f.into_response()
        }
    }
}

async fn ingest(st: &AppState, headers: &HeaderMap, body: Body) -> Result<ReportAck, Failure> {
    let cfg = &st.config.ingest;
    let Some(key) = bearer(headers) else {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization: Bearer <node key> required",
        ));
    };
    let key_hash = secret::hash(key);
    let auth = match st.auth_cache.get(&key_hash) {
        Some(a) => a,
        None => {
            let a = st
                .store
                .authenticate(key_hash.clone())
                .await
                .map_err(|e| Failure::store(e, cfg.retry_after_secs))?
                .ok_or_else(|| {
                    Failure::new(
                        StatusCode::UNAUTHORIZED,
                        "unknown_key",
                        "unknown or revoked node key: enroll again",
                    )
                })?;
            if a.approved && !a.blocked {
                st.auth_cache.put(key_hash.clone(), a.clone());
            }
            a
        }
    };
    if auth.blocked {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "blocked",
            "this host is blocked",
        ));
    }
    if !auth.approved {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "pending_approval",
            "this host waits for an operator's approval",
        ));
    }
    let wire = read_limited(headers, body, cfg.max_body_bytes).await?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let plain: std::borrow::Cow<'_, [u8]> = match encoding.as_deref() {
        None | Some("identity") => wire.as_ref().into(),
        Some("gzip") => gunzip(&wire, cfg.max_decompressed_bytes)?.into(),
        Some(other) => {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_encoding",
                format!("Content-Encoding {other:?}: only gzip"),
            ))
        }
    };
    if plain.len() > cfg.max_decompressed_bytes {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "body too large",
        ));
    }
    let batch: ReportBatch = parse_document(&plain)?;
    if batch.reports.is_empty() {
        return Err(bad("bad_document", "reports: empty"));
    }
    if batch.reports.len() > cfg.max_reports_per_batch {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "more than {} reports in one batch",
                cfg.max_reports_per_batch
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, r) in batch.reports.iter().enumerate() {
        if !valid_id(&r.report_id) {
            return Err(bad(
                "bad_document",
                format!("reports[{i}].report_id: 1-128 of [A-Za-z0-9._-]"),
            ));
        }
        if !seen.insert(r.report_id.as_str()) {
            return Err(bad(
                "bad_document",
                format!("reports[{i}].report_id repeated in the batch"),
            ));
        }
        if r.machine_id != auth.machine_id {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "wrong_machine",
                format!("reports[{i}]: this node key belongs to another machine id"),
            ));
        }
        if r.sequence > i64::MAX as u64 || r.boot_id.len() > 128 || r.hostname.len() > 255 {
            return Err(bad(
                "bad_document",
                format!("reports[{i}]: sequence, boot_id or hostname out of bounds"),
            ));
        }
        for (j, t) in r
            .open_findings
            .iter()
            .chain(r.events.iter().map(|e| &e.tracked))
            .enumerate()
        {
            if !valid_id(&t.id) {
                return Err(bad(
                    "bad_document",
                    format!("reports[{i}]: finding {j}: id 1-128 of [A-Za-z0-9._-]"),
                ));
            }
            if t.finding.matches.is_empty() {
                return Err(bad(
                    "bad_document",
                    format!("reports[{i}]: finding {} has no match", t.id),
                ));
            }
        }
    }
    let ids: Vec<String> = batch.reports.iter().map(|r| r.report_id.clone()).collect();
    let alerts = if st.alerts.enabled() {
        let host = crate::alerts::HostInfo {
            host_id: auth.host_id.clone(),
            hostname: auth.hostname.clone(),
            labels: auth.labels.clone(),
        };
        st.alerts.for_reports(&host, &batch.reports)
    } else {
        Vec::new()
    };
    let any_alert = !alerts.is_empty();
    let outcome = st
        .store
        .ingest_checked(
            auth.host_id,
            key_hash.clone(),
            batch.reports,
            alerts,
            st.clock.now_unix_ms(),
        )
        .await
        .map_err(|e| Failure::store(e, cfg.retry_after_secs))?;
    let results = match outcome {
        IngestOutcome::Done(r) => r,
        IngestOutcome::Refused(why) => {
            st.auth_cache.evict(&key_hash);
            return Err(match why {
                Refusal::UnknownKey => Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "unknown_key",
                    "unknown or revoked node key: enroll again",
                ),
                Refusal::Blocked => {
                    Failure::new(StatusCode::FORBIDDEN, "blocked", "this host is blocked")
                }
                Refusal::PendingApproval => Failure::new(
                    StatusCode::FORBIDDEN,
                    "pending_approval",
                    "this host waits for an operator's approval",
                ),
            });
        }
    };
    if any_alert && results.contains(&Stored::Stored) {
        st.alerts.wake();
    }
    for s in &results {
        let c = match s {
            Stored::Stored => &st.metrics.reports_stored,
            Stored::Duplicate => &st.metrics.reports_duplicate,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ReportAck {
        schema_version: SCHEMA_VERSION,
        results: ids
            .into_iter()
            .zip(results)
            .map(|(report_id, status)| ReportResult { report_id, status })
            .collect(),
    })
}

/// The operator's role from the bearer token.
async fn operator(st: &AppState, headers: &HeaderMap) -> Result<Role, Failure> {
    let unauthorized = || {
        Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization: Bearer <operator token> required",
        )
    };
    let token = bearer(headers).ok_or_else(unauthorized)?;
    st.store
        .token_role(secret::hash(token))
        .await
        .map_err(|e| Failure::store(e, st.config.ingest.retry_after_secs))?
        .ok_or_else(unauthorized)
}

/// Every host with its liveness at the clock's now.
pub async fn host_rows(
    store: &dyn Store,
    now: u64,
    cfg: &Config,
) -> Result<Vec<HostRow>, StoreError> {
    Ok(store
        .hosts()
        .await?
        .into_iter()
        .map(|h| liveness::host_row(h, now, &cfg.liveness))
        .collect())
}

async fn hosts(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<HostRow>>, Failure> {
    operator(&st, &headers).await?;
    let want = match q.get("liveness") {
        None => None,
        Some(l) => {
            Some(Liveness::parse(l).ok_or_else(|| bad("bad_query", format!("liveness {l:?}")))?)
        }
    };
    if let Some(k) = q.keys().find(|k| k.as_str() != "liveness") {
        return Err(bad("bad_query", format!("unknown parameter {k:?}")));
    }
    let rows = host_rows(st.store.as_ref(), st.clock.now_unix_ms(), &st.config)
        .await
        .map_err(|e| Failure::store(e, st.config.ingest.retry_after_secs))?;
    Ok(Json(
        rows.into_iter()
            .filter(|h| want.is_none_or(|w| h.liveness == w))
            .collect(),
    ))
}

/// Parses the findings query (the API's and the CLI's filters).
pub fn parse_filter(q: &HashMap<String, String>) -> Result<(FindingFilter, bool), String> {
    let mut f = FindingFilter {
        limit: DEFAULT_PAGE,
        ..FindingFilter::default()
    };
    let mut csv = false;
    let ms = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{k}: unix milliseconds"))
    };
    for (k, v) in q {
        match k.as_str() {
            "host" => f.host = Some(v.clone()),
            "customer" => f.customer = Some(v.clone()),
            "category" => {
                if Category::parse(v).is_none() && v != "agent" {
                    return Err(format!("category {v:?}"));
                }
                f.category = Some(v.clone());
            }
            "severity" => {
                f.min_severity = Some(Severity::parse(v).ok_or_else(|| format!("severity {v:?}"))?)
            }
            "state" => f.state = StateFilter::parse(v).ok_or_else(|| format!("state {v:?}"))?,
            "signature" => f.signature = Some(v.clone()),
            "since" => f.since_unix_ms = Some(ms(k, v)?),
            "until" => f.until_unix_ms = Some(ms(k, v)?),
            "after" => f.after = Some(split_finding_id(v).ok_or_else(|| format!("after {v:?}"))?),
            "limit" => {
                f.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("limit: 1..={MAX_PAGE}"))?
            }
            "format" => {
                csv = match v.as_str() {
                    "csv" => true,
                    "json" => false,
                    _ => return Err(format!("format {v:?}: json or csv")),
                }
            }
            _ => return Err(format!("unknown parameter {k:?}")),
        }
    }
    Ok((f, csv))
}

/// Would the filter admit a collector-made silent row?
fn admits_silent(f: &FindingFilter, row: &FindingRow) -> bool {
    f.host
        .as_ref()
        .is_none_or(|h| *h == row.host_id || *h == row.hostname)
        && f.customer
            .as_ref()
            .is_none_or(|c| row.customer.as_ref() == Some(c))
        && f.category.as_ref().is_none_or(|c| c == "agent")
        && f.min_severity.is_none_or(|s| row.severity >= s)
        && f.state.admits(&row.state)
        && f.signature.as_ref().is_none_or(|s| s == SILENT_SIGNATURE)
        && f.since_unix_ms.is_none_or(|s| row.last_seen_unix_ms >= s)
        && f.until_unix_ms.is_none_or(|u| row.last_seen_unix_ms < u)
        && f.after.as_ref().is_none_or(|(h, t)| {
            (row.host_id.as_str(), SILENT_SIGNATURE) > (h.as_str(), t.as_str())
        })
}

/// One page of findings, the silent hosts' rows merged in by id.
pub async fn finding_page(
    store: &dyn Store,
    now: u64,
    cfg: &Config,
    filter: FindingFilter,
) -> Result<FindingPage, StoreError> {
    let limit = filter.limit;
    let mut rows = store
        .findings(FindingFilter {
            limit: limit + 1,
            ..filter.clone()
        })
        .await?;
    let hosts = host_rows(store, now, cfg).await?;
    rows.extend(
        hosts
            .iter()
            .filter_map(liveness::silent_row)
            .filter(|r| admits_silent(&filter, r)),
    );
    rows.sort_by(|a, b| {
        (a.host_id.as_str(), finding_tail(a)).cmp(&(b.host_id.as_str(), finding_tail(b)))
    });
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(FindingPage {
        findings: rows,
        next,
    })
}

fn finding_tail(r: &FindingRow) -> &str {
    r.id.split_once(':').map_or("", |(_, t)| t)
}

async fn findings(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Failure> {
    operator(&st, &headers).await?;
    let (filter, csv) = parse_filter(&q).map_err(|e| bad("bad_query", e))?;
    let page = finding_page(
        st.store.as_ref(),
        st.clock.now_unix_ms(),
        &st.config,
        filter,
    )
    .await
    .map_err(|e| Failure::store(e, st.config.ingest.retry_after_secs))?;
    if csv {
        let mut resp = findings_csv(&page.findings).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Some(next) = page
            .next
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            resp.headers_mut().insert("x-next-after", next);
        }
        Ok(resp)
    } else {
        Ok(Json(page).into_response())
    }
}

/// A CSV cell: quoted when needed; a leading `= + - @` (spreadsheet formula) defused with `'`.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn findings_csv(rows: &[FindingRow]) -> String {
    let mut out = String::from(
        "id,host_id,hostname,customer,category,severity,state,signatures,first_seen_unix_ms,last_seen_unix_ms,resolved_unix_ms,excepted\n",
    );
    for r in rows {
        let cells = [
            csv_cell(&r.id),
            csv_cell(&r.host_id),
            csv_cell(&r.hostname),
            csv_cell(r.customer.as_deref().unwrap_or("")),
            csv_cell(&r.category),
            r.severity.as_str().to_string(),
            csv_cell(&r.state),
            csv_cell(&r.signatures.join(";")),
            r.first_seen_unix_ms.to_string(),
            r.last_seen_unix_ms.to_string(),
            r.resolved_unix_ms
                .map(|v| v.to_string())
                .unwrap_or_default(),
            r.excepted.to_string(),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

async fn finding(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<FindingRow>, Failure> {
    operator(&st, &headers).await?;
    let (host_id, tracked_id) =
        split_finding_id(&id).ok_or_else(|| bad("bad_query", "id: <host_id>:<finding id>"))?;
    let retry = st.config.ingest.retry_after_secs;
    if tracked_id == SILENT_SIGNATURE {
        let hosts = host_rows(st.store.as_ref(), st.clock.now_unix_ms(), &st.config)
            .await
            .map_err(|e| Failure::store(e, retry))?;
        if let Some(row) = hosts
            .iter()
            .filter(|h| h.host_id == host_id)
            .find_map(liveness::silent_row)
        {
            return Ok(Json(row));
        }
    }
    st.store
        .finding(host_id, tracked_id)
        .await
        .map_err(|e| Failure::store(e, retry))?
        .map(Json)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "not_found", "no such finding"))
}

/// The fleet summary.
pub async fn build_summary(
    store: &dyn Store,
    now: u64,
    cfg: &Config,
) -> Result<Summary, StoreError> {
    let hosts = host_rows(store, now, cfg).await?;
    let counts = store.counts(true).await?;
    Ok(build_summary_parts(&hosts, counts))
}

/// The summary of these hosts and counts.
pub fn build_summary_parts(hosts: &[HostRow], counts: crate::store::Counts) -> Summary {
    let mut s = Summary {
        hosts: hosts.len() as u64,
        reports: counts.reports,
        events: counts.events,
        ..Summary::default()
    };
    for l in Liveness::ALL {
        s.hosts_by_liveness.insert(l.as_str().to_string(), 0);
    }
    for h in hosts {
        *s.hosts_by_liveness
            .entry(h.liveness.as_str().to_string())
            .or_default() += 1;
        if h.liveness == Liveness::Silent {
            *s.open_by_category.entry("agent".into()).or_default() += 1;
            *s.open_by_severity.entry("high".into()).or_default() += 1;
            s.open_findings += 1;
        }
    }
    for ((c, sev), n) in counts.open {
        *s.open_by_category.entry(c).or_default() += n;
        *s.open_by_severity.entry(sev).or_default() += n;
        s.open_findings += n;
    }
    s
}

async fn summary(State(st): State<AppState>, headers: HeaderMap) -> Result<Json<Summary>, Failure> {
    operator(&st, &headers).await?;
    build_summary(st.store.as_ref(), st.clock.now_unix_ms(), &st.config)
        .await
        .map(Json)
        .map_err(|e| Failure::store(e, st.config.ingest.retry_after_secs))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(st): State<AppState>) -> Result<Response, Failure> {
    let mut out = String::new();
    st.metrics.render(&mut out);
    let retry = st.config.ingest.retry_after_secs;
    st.alerts
        .render(st.store.as_ref(), &mut out)
        .await
        .map_err(|e| Failure::store(e, retry))?;
    st.store.commit_histogram().render(
        &mut out,
        "aupwatch_collector_commit_seconds",
        "Time from BEGIN to COMMIT of one writer transaction.",
    );
    out.push_str(&format!(
        "# HELP aupwatch_collector_writer_queue_depth Write requests waiting for the writer.\n\
         # TYPE aupwatch_collector_writer_queue_depth gauge\n\
         aupwatch_collector_writer_queue_depth {}\n",
        st.store.queue_depth()
    ));
    let hosts = host_rows(st.store.as_ref(), st.clock.now_unix_ms(), &st.config)
        .await
        .map_err(|e| Failure::store(e, retry))?;
    let counts = st
        .store
        .counts(false)
        .await
        .map_err(|e| Failure::store(e, retry))?;
    let mut open: BTreeMap<(String, String), u64> = counts.open.clone();
    let summary = build_summary_parts(&hosts, counts);
    out.push_str(
        "# HELP aupwatch_collector_hosts Hosts by liveness.\n# TYPE aupwatch_collector_hosts gauge\n",
    );
    for (l, n) in &summary.hosts_by_liveness {
        out.push_str(&format!(
            "aupwatch_collector_hosts{{liveness=\"{}\"}} {n}\n",
            label(l)
        ));
    }
    if let Some(n) = summary.hosts_by_liveness.get("silent").filter(|n| **n > 0) {
        open.insert(("agent".into(), "high".into()), *n);
    }
    out.push_str(
        "# HELP aupwatch_collector_open_findings Open findings by category and severity.\n\
         # TYPE aupwatch_collector_open_findings gauge\n",
    );
    for ((c, s), n) in &open {
        out.push_str(&format!(
            "aupwatch_collector_open_findings{{category=\"{}\",severity=\"{}\"}} {n}\n",
            label(c),
            label(s)
        ));
    }
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(resp)
}
