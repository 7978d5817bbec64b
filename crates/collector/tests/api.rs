//! The HTTP API through `app()` with `tower::ServiceExt::oneshot`: no socket, a controlled
//! clock. Every refusal is checked for its status, its code, and that nothing was stored.

mod common;

use aupwatch_collector::clock::{Clock, ManualClock};
use aupwatch_collector::config::Config;
use aupwatch_collector::http::{app, AppState};
use aupwatch_collector::metrics::{Histogram, Metrics};
use aupwatch_collector::secret;
use aupwatch_collector::store::sqlite::SqliteStore;
use aupwatch_collector::store::{HostAction, Role, Store};
use aupwatch_proto::api::{FindingPage, FindingRow, HostRow, Liveness, Summary};
use aupwatch_proto::protocol::{ApiError, EnrollResponse, ReportAck, ReportBatch, Stored};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{batch, report};
use std::io::Write;
use std::sync::Arc;
use tower::ServiceExt;

const T0: u64 = 1_796_659_300_000;
const TOKEN: &str = "operator-token";
const SECRET: &str = "enroll-secret";

struct Fixture {
    state: AppState,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn fixture(edit: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.ingest.max_body_bytes = 64 * 1024;
    config.ingest.max_decompressed_bytes = 256 * 1024;
    edit(&mut config);
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &dir.path().join("c.db"),
            64,
            16,
            Arc::new(Histogram::default()),
        )
        .expect("open"),
    );
    store
        .create_secret(secret::hash(SECRET), Some("c-1042".into()), T0)
        .await
        .expect("secret");
    store
        .create_token(secret::hash(TOKEN), "ops".into(), Role::Viewer, T0)
        .await
        .expect("token");
    let clock = Arc::new(ManualClock::new(T0));
    let state = AppState {
        store: store.clone(),
        clock: clock.clone() as Arc<dyn Clock>,
        config: Arc::new(config),
        metrics: Arc::new(Metrics::default()),
        alerts: Arc::new(aupwatch_collector::alerts::Alerter::disabled()),
        auth_cache: Default::default(),
        logins: Default::default(),
    };
    Fixture {
        state,
        clock,
        store,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> ApiError {
        self.json()
    }
}

impl Fixture {
    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = app(self.state.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ascii").to_string());
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("ascii").to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        Answer {
            status,
            retry_after,
            content_type,
            body,
        }
    }

    async fn enroll(&self, machine_id: &str) -> Answer {
        let body = serde_json::json!({
            "schema_version": 1,
            "enroll_secret": SECRET,
            "machine_id": machine_id,
            "hostname": format!("vm-{machine_id}"),
            "agent_version": "0.1.0",
            "labels": {"rack": "r1"}
        });
        self.send(
            Request::post("/api/agent/v1/enroll")
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    async fn key(&self, machine_id: &str) -> String {
        let a = self.enroll(machine_id).await;
        assert_eq!(a.status, StatusCode::OK);
        a.json::<EnrollResponse>().node_key
    }

    async fn post_report(&self, key: &str, body: Vec<u8>, gzip: bool) -> Answer {
        let mut req = Request::post("/api/agent/v1/report")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json");
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        self.send(req.body(Body::from(body)).expect("request"))
            .await
    }

    async fn report(&self, key: &str, b: &ReportBatch) -> Answer {
        self.post_report(key, serde_json::to_vec(b).expect("json"), false)
            .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(
            Request::get(path)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    async fn stored(&self) -> (u64, u64, u64) {
        (
            self.store.count_rows("reports").await.expect("count"),
            self.store.count_rows("events").await.expect("count"),
            self.store.count_rows("findings").await.expect("count"),
        )
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

#[tokio::test]
async fn enroll_report_and_duplicate_are_stored_once() {
    let f = fixture(|_| {}).await;
    let key = f.key("m1").await;
    let b = batch(vec![report("r1", "m1", 1)]);
    let a = f
        .post_report(&key, gzip(&serde_json::to_vec(&b).expect("json")), true)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let ack: ReportAck = a.json();
    assert_eq!(ack.results[0].status, Stored::Stored);
    assert_eq!(ack.results[0].report_id, "r1");
    // A lost answer: the agent sends the same report again.
    let a = f.report(&key, &b).await;
    assert_eq!(a.json::<ReportAck>().results[0].status, Stored::Duplicate);
    assert_eq!(f.stored().await, (1, 1, 1));
    let hosts: Vec<HostRow> = f.get("/api/v1/hosts").await.json();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].liveness, Liveness::Online);
    assert_eq!(
        hosts[0].labels.get("customer").map(String::as_str),
        Some("c-1042")
    );
    let metrics = String::from_utf8(f.get("/metrics").await.body).expect("utf8");
    assert!(metrics.contains("aupwatch_collector_reports_total{outcome=\"stored\"} 1"));
    assert!(metrics.contains("aupwatch_collector_reports_total{outcome=\"duplicate\"} 1"));
    assert!(metrics
        .contains("aupwatch_collector_open_findings{category=\"mining\",severity=\"high\"} 1"));
    assert!(metrics.contains("aupwatch_collector_hosts{liveness=\"online\"} 1"));
}

/// Every malformed or unauthorized report: its status and code, nothing stored, and the
/// collector still answers a good report afterwards.
#[tokio::test]
async fn bad_reports_are_refused_precisely_and_nothing_is_stored() {
    let f = fixture(|_| {}).await;
    let key = f.key("m1").await;
    let other_key = f.key("m2").await;
    let good = serde_json::to_vec(&batch(vec![report("r1", "m1", 1)])).expect("json");
    let text = String::from_utf8(good.clone()).expect("utf8");

    let mut cases: Vec<(&str, Answer, StatusCode, &str)> = Vec::new();
    cases.push((
        "broken JSON",
        f.post_report(
            &key,
            b"{\"schema_version\": 1, \"reports\": [".to_vec(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_json",
    ));
    cases.push((
        "wrong schema version",
        f.post_report(
            &key,
            text.replacen("\"schema_version\":1", "\"schema_version\":99", 1)
                .into_bytes(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_schema_version",
    ));
    cases.push((
        "unknown field",
        f.post_report(
            &key,
            text.replacen("\"goodbye\"", "\"surprise\":1,\"goodbye\"", 1)
                .into_bytes(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    ));
    cases.push((
        "wrong type",
        f.post_report(
            &key,
            text.replacen("\"sequence\":1", "\"sequence\":\"one\"", 1)
                .into_bytes(),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_document",
    ));
    let mut huge = batch(vec![report("r1", "m1", 1)]);
    huge.reports[0].hostname = "x".repeat(100 * 1024);
    cases.push((
        "oversized body",
        f.report(&key, &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    ));
    cases.push((
        "gzip bomb",
        f.post_report(&key, gzip(&vec![b' '; 20 * 1024 * 1024]), true)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    ));
    cases.push((
        "not gzip",
        f.post_report(&key, good.clone(), true).await,
        StatusCode::BAD_REQUEST,
        "bad_gzip",
    ));
    cases.push((
        "unknown key",
        f.post_report(&"0".repeat(64), good.clone(), false).await,
        StatusCode::UNAUTHORIZED,
        "unknown_key",
    ));
    cases.push((
        "no key",
        f.send(
            Request::post("/api/agent/v1/report")
                .body(Body::from(good.clone()))
                .expect("req"),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    ));
    cases.push((
        "a valid key reporting another machine id",
        f.post_report(&other_key, good.clone(), false).await,
        StatusCode::FORBIDDEN,
        "wrong_machine",
    ));
    let mut bad_id = batch(vec![report("r1", "m1", 1)]);
    bad_id.reports[0].open_findings[0].id = "../../etc\u{1b}[2J".into();
    cases.push((
        "hostile finding id",
        f.report(&key, &bad_id).await,
        StatusCode::BAD_REQUEST,
        "bad_document",
    ));
    let mut empty_matches = batch(vec![report("r1", "m1", 1)]);
    empty_matches.reports[0].open_findings[0]
        .finding
        .matches
        .clear();
    cases.push((
        "finding without match",
        f.report(&key, &empty_matches).await,
        StatusCode::BAD_REQUEST,
        "bad_document",
    ));
    for (what, a, status, code) in &cases {
        assert_eq!(
            a.status,
            *status,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.error().code, *code, "{what}");
        assert!(a.content_type.starts_with("application/json"), "{what}");
    }
    assert_eq!(f.stored().await, (0, 0, 0), "nothing stored");
    let metrics = String::from_utf8(f.get("/metrics").await.body).expect("utf8");
    assert!(metrics.contains("aupwatch_collector_rejected_requests_total{reason=\"too_large\"} 2"));
    assert!(metrics.contains("aupwatch_collector_rejected_requests_total{reason=\"forbidden\"} 1"));
    // Still serving.
    let a = f.post_report(&key, good, false).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(f.stored().await, (1, 1, 1));
}

#[tokio::test]
async fn revoked_blocked_and_pending_hosts_are_refused() {
    let f = fixture(|c| c.ingest.require_approval = true).await;
    let a = f.enroll("m1").await;
    let e: EnrollResponse = a.json();
    assert!(e.pending_approval);
    let good = batch(vec![report("r1", "m1", 1)]);
    let a = f.report(&e.node_key, &good).await;
    assert_eq!(
        (a.status, a.error().code.as_str()),
        (StatusCode::FORBIDDEN, "pending_approval")
    );
    assert!(f
        .store
        .host_action("m1".into(), HostAction::Approve, T0)
        .await
        .expect("approve"));
    assert_eq!(f.report(&e.node_key, &good).await.status, StatusCode::OK);
    // Revoked: 401, and a fresh enrollment gives a working key again.
    assert!(f
        .store
        .host_action(e.host_id.clone(), HostAction::Revoke, T0)
        .await
        .expect("revoke"));
    let replay = batch(vec![report("r2", "m1", 2)]);
    let a = f.report(&e.node_key, &replay).await;
    assert_eq!(
        (a.status, a.error().code.as_str()),
        (StatusCode::UNAUTHORIZED, "unknown_key")
    );
    let key2 = f.key("m1").await;
    assert_eq!(f.report(&key2, &replay).await.status, StatusCode::OK);
    // Blocked: reports 403, and the machine cannot enroll again.
    assert!(f
        .store
        .host_action("m1".into(), HostAction::Block, T0)
        .await
        .expect("block"));
    let a = f.report(&key2, &batch(vec![report("r3", "m1", 3)])).await;
    assert_eq!(
        (a.status, a.error().code.as_str()),
        (StatusCode::FORBIDDEN, "blocked")
    );
    let a = f.enroll("m1").await;
    assert_eq!(
        (a.status, a.error().code.as_str()),
        (StatusCode::FORBIDDEN, "blocked")
    );
    assert_eq!(f.stored().await.0, 2);
    // A bad enroll secret.
    let a = f
        .send(
            Request::post("/api/agent/v1/enroll")
                .body(Body::from(
                    r#"{"schema_version":1,"enroll_secret":"wrong","machine_id":"m9","hostname":"h","agent_version":"0"}"#,
                ))
                .expect("req"),
        )
        .await;
    assert_eq!(
        (a.status, a.error().code.as_str()),
        (StatusCode::UNAUTHORIZED, "bad_enroll_secret")
    );
}

#[tokio::test]
async fn silent_hosts_are_found_with_a_controlled_clock() {
    let f = fixture(|_| {}).await;
    let key = f.key("m1").await;
    let quiet = f.key("m2").await;
    // The example announces a 15 s interval.
    assert_eq!(
        f.report(&key, &batch(vec![report("r1", "m1", 1)]))
            .await
            .status,
        StatusCode::OK
    );
    let mut bye = report("q1", "m2", 1);
    bye.goodbye = true;
    bye.open_findings.clear();
    bye.events.clear();
    assert_eq!(
        f.report(&quiet, &batch(vec![bye])).await.status,
        StatusCode::OK
    );
    let f3 = f.key("m3").await;
    let _ = f3;
    let liveness = |hosts: Vec<HostRow>| {
        hosts
            .into_iter()
            .map(|h| (h.machine_id, h.liveness))
            .collect::<Vec<_>>()
    };
    let l = liveness(f.get("/api/v1/hosts").await.json());
    assert!(l.contains(&("m1".into(), Liveness::Online)), "{l:?}");
    assert!(l.contains(&("m2".into(), Liveness::Stopped)), "{l:?}");
    assert!(l.contains(&("m3".into(), Liveness::NeverReported)), "{l:?}");
    f.clock.advance_secs(31);
    let l = liveness(f.get("/api/v1/hosts").await.json());
    assert!(l.contains(&("m1".into(), Liveness::Late)), "{l:?}");
    f.clock.advance_secs(45);
    let l = liveness(f.get("/api/v1/hosts").await.json());
    assert!(l.contains(&("m1".into(), Liveness::Silent)), "{l:?}");
    assert!(l.contains(&("m2".into(), Liveness::Stopped)), "{l:?}");
    let silent: Vec<HostRow> = f.get("/api/v1/hosts?liveness=silent").await.json();
    assert_eq!(silent.len(), 1);
    // The silence is a finding-like row with its last seen.
    let page: FindingPage = f.get("/api/v1/findings?category=agent").await.json();
    assert_eq!(page.findings.len(), 1);
    let row = &page.findings[0];
    assert_eq!(row.signatures, vec!["agent.silent"]);
    assert_eq!(row.last_seen_unix_ms, T0);
    let one: FindingRow = f.get(&format!("/api/v1/findings/{}", row.id)).await.json();
    assert_eq!(one.id, row.id);
    let s: Summary = f.get("/api/v1/summary").await.json();
    assert_eq!(s.hosts_by_liveness.get("silent"), Some(&1));
    assert_eq!(s.open_by_category.get("agent"), Some(&1));
    assert_eq!(s.open_findings, 2);
    // It reports again: online, and the row is gone.
    assert_eq!(
        f.report(&key, &batch(vec![report("r2", "m1", 2)]))
            .await
            .status,
        StatusCode::OK
    );
    let page: FindingPage = f.get("/api/v1/findings?category=agent").await.json();
    assert!(page.findings.is_empty());
}

#[tokio::test]
async fn the_query_api_needs_a_token_filters_pages_and_speaks_csv() {
    let f = fixture(|_| {}).await;
    for m in ["m1", "m2", "m3"] {
        let key = f.key(m).await;
        let mut r = report(&format!("r-{m}"), m, 1);
        r.hostname = format!("vm-{m}\u{1b}[31m");
        assert_eq!(f.report(&key, &batch(vec![r])).await.status, StatusCode::OK);
    }
    let a = f
        .send(
            Request::get("/api/v1/findings")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = f
        .send(
            Request::get("/api/v1/summary")
                .header("authorization", "Bearer wrong")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/api/v1/findings?limit=2".to_string(),
            Some(a) => format!("/api/v1/findings?limit=2&after={a}"),
        };
        let page: FindingPage = f.get(&path).await.json();
        ids.extend(page.findings.into_iter().map(|r| r.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(ids.len(), 3);
    let a = f
        .get("/api/v1/findings?format=csv&severity=high&category=mining")
        .await;
    assert!(a.content_type.starts_with("text/csv"));
    let csv = String::from_utf8(a.body).expect("utf8");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.contains("mining.xmrig;mining.pool-port"));
    let a = f.get("/api/v1/findings?severity=extreme").await;
    assert_eq!(
        (a.status, a.error().code.as_str()),
        (StatusCode::BAD_REQUEST, "bad_query")
    );
    let a = f.get("/api/v1/findings?colour=red").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = f.get("/api/v1/findings/nope:nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = f.get("/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
}

/// A store whose writer queue is always full.
struct BusyStore(Arc<dyn Store>);

mod busy {
    use super::BusyStore;
    use aupwatch_collector::metrics::Histogram;
    use aupwatch_collector::store::*;
    use aupwatch_proto::api::FindingRow;
    use aupwatch_proto::protocol::{Report, Stored};

    impl Store for BusyStore {
        fn enroll(&self, e: Enrollment) -> Fut<'_, EnrollOutcome> {
            self.0.enroll(e)
        }
        fn authenticate(&self, h: String) -> Fut<'_, Option<HostAuth>> {
            self.0.authenticate(h)
        }
        fn ingest(&self, _: String, _: Vec<Report>, _: u64) -> Fut<'_, Vec<Stored>> {
            Box::pin(async { Err(StoreError::Busy) })
        }
        fn ingest_checked(
            &self,
            _: String,
            _: String,
            _: Vec<Report>,
            _: Vec<NewAlert>,
            _: u64,
        ) -> Fut<'_, IngestOutcome> {
            Box::pin(async { Err(StoreError::Busy) })
        }
        fn enqueue_alerts(&self, a: Vec<NewAlert>, n: u64) -> Fut<'_, u64> {
            self.0.enqueue_alerts(a, n)
        }
        fn claim_alerts(&self, o: String, n: u64, l: u64, k: usize) -> Fut<'_, Vec<AlertRow>> {
            self.0.claim_alerts(o, n, l, k)
        }
        fn settle_alert(&self, s: i64, o: String, r: AlertOutcome, n: u64) -> Fut<'_, bool> {
            self.0.settle_alert(s, o, r, n)
        }
        fn alerts(&self, s: Option<AlertState>, l: usize) -> Fut<'_, Vec<AlertRow>> {
            self.0.alerts(s, l)
        }
        fn alert_counts(&self) -> Fut<'_, AlertCounts> {
            self.0.alert_counts()
        }
        fn hosts(&self) -> Fut<'_, Vec<HostRecord>> {
            self.0.hosts()
        }
        fn host_action(&self, h: String, a: HostAction, n: u64) -> Fut<'_, bool> {
            self.0.host_action(h, a, n)
        }
        fn findings(&self, f: FindingFilter) -> Fut<'_, Vec<FindingRow>> {
            self.0.findings(f)
        }
        fn finding(&self, h: String, t: String) -> Fut<'_, Option<FindingRow>> {
            self.0.finding(h, t)
        }
        fn counts(&self, totals: bool) -> Fut<'_, Counts> {
            self.0.counts(totals)
        }
        fn count_rows(&self, t: &'static str) -> Fut<'_, u64> {
            self.0.count_rows(t)
        }
        fn create_secret(&self, h: String, c: Option<String>, n: u64) -> Fut<'_, i64> {
            self.0.create_secret(h, c, n)
        }
        fn secrets(&self) -> Fut<'_, Vec<SecretRow>> {
            self.0.secrets()
        }
        fn revoke_secret(&self, id: i64, n: u64) -> Fut<'_, bool> {
            self.0.revoke_secret(id, n)
        }
        fn create_token(&self, h: String, name: String, r: Role, n: u64) -> Fut<'_, i64> {
            self.0.create_token(h, name, r, n)
        }
        fn tokens(&self) -> Fut<'_, Vec<TokenRow>> {
            self.0.tokens()
        }
        fn token_role(&self, h: String) -> Fut<'_, Option<Role>> {
            self.0.token_role(h)
        }
        fn retain(&self, e: Option<u64>, a: Option<u64>) -> Fut<'_, Retained> {
            self.0.retain(e, a)
        }
        fn create_user(&self, n: String, r: Role, h: String, t: u64) -> Fut<'_, Option<i64>> {
            self.0.create_user(n, r, h, t)
        }
        fn user(&self, n: String) -> Fut<'_, Option<UserRow>> {
            self.0.user(n)
        }
        fn users(&self) -> Fut<'_, Vec<UserRow>> {
            self.0.users()
        }
        fn create_session(&self, s: NewSession) -> Fut<'_, ()> {
            self.0.create_session(s)
        }
        fn session(&self, h: String, n: u64) -> Fut<'_, Option<Session>> {
            self.0.session(h, n)
        }
        fn delete_session(&self, h: String) -> Fut<'_, bool> {
            self.0.delete_session(h)
        }
        fn audit(&self, e: AuditEntry) -> Fut<'_, ()> {
            self.0.audit(e)
        }
        fn audit_log(&self, t: String) -> Fut<'_, Vec<AuditEntry>> {
            self.0.audit_log(t)
        }
        fn finding_events(&self, h: String, t: String) -> Fut<'_, Vec<(String, u64)>> {
            self.0.finding_events(h, t)
        }
        fn activity(&self, s: u64, b: u64, r: u64) -> Fut<'_, Activity> {
            self.0.activity(s, b, r)
        }
        fn newest_findings(
            &self,
            s: aupwatch_proto::Severity,
            l: usize,
        ) -> Fut<'_, Vec<FindingRow>> {
            self.0.newest_findings(s, l)
        }
        fn queue_depth(&self) -> usize {
            0
        }
        fn commit_histogram(&self) -> &Histogram {
            self.0.commit_histogram()
        }
    }
}

#[tokio::test]
async fn a_full_writer_queue_answers_503_with_retry_after() {
    let mut f = fixture(|c| c.ingest.retry_after_secs = 7).await;
    let key = f.key("m1").await;
    f.state.store = Arc::new(BusyStore(f.store.clone()));
    let a = f.report(&key, &batch(vec![report("r1", "m1", 1)])).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.error().code, "busy");
    assert_eq!(a.retry_after.as_deref(), Some("7"));
    assert_eq!(f.stored().await, (0, 0, 0));
}
