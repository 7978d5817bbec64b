//! Webhook alerts end to end: a receiver on 127.0.0.1 that fails its first delivery, routes
//! that admit and refuse, a stable CloudEvents id across the retry, and no alert for a
//! duplicate report.

mod common;

use aupwatch_collector::alerts::Alerter;
use aupwatch_collector::clock::{Clock, ManualClock, SystemClock};
use aupwatch_collector::config::{Config, WebhookRoute};
use aupwatch_collector::http::{app, AppState};
use aupwatch_collector::metrics::{Histogram, Metrics};
use aupwatch_collector::secret;
use aupwatch_collector::store::sqlite::SqliteStore;
use aupwatch_collector::store::Store;
use aupwatch_proto::protocol::EnrollResponse;
use aupwatch_proto::{Category, Severity};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{batch, report};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

#[derive(Default)]
struct Received {
    attempts: Vec<serde_json::Value>,
    content_types: Vec<String>,
}

/// A receiver on 127.0.0.1 answering 500 to its first request, 200 after.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let got: Arc<Mutex<Received>> = Arc::default();
    let state = got.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let mut g = state.lock().expect("lock");
                    g.attempts
                        .push(serde_json::from_slice(&body).expect("JSON alert"));
                    g.content_types.push(
                        headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string(),
                    );
                    if g.attempts.len() == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/hook"), got)
}

fn route(name: &str, url: &str) -> WebhookRoute {
    WebhookRoute {
        name: name.into(),
        url: url.into(),
        categories: vec![],
        min_severity: Severity::Info,
        labels: BTreeMap::new(),
        kinds: vec![],
        silent_hosts: false,
        max_attempts: 5,
        retry_initial_ms: 20,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_routed_retried_and_stable() {
    let (url, got) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
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
        .create_secret(secret::hash("s"), Some("c-1042".into()), 0)
        .await
        .expect("secret");
    let mut wanted = route("desk", &url);
    wanted.categories = vec![Category::Mining];
    wanted.min_severity = Severity::High;
    wanted.labels = BTreeMap::from([("customer".to_string(), "c-1042".to_string())]);
    let mut tor = route("tor-only", &url);
    tor.categories = vec![Category::Tor];
    let mut other = route("other-customer", &url);
    other.labels = BTreeMap::from([("customer".to_string(), "c-9".to_string())]);
    let mut critical = route("critical-only", &url);
    critical.min_severity = Severity::Critical;
    let alerts = Arc::new(Alerter::start(
        vec![wanted, tor, other, critical],
        store.clone(),
        Arc::new(SystemClock),
    ));
    let state = AppState {
        store: store.clone(),
        clock: Arc::new(ManualClock::new(1_796_659_300_000)) as Arc<dyn Clock>,
        config: Arc::new(Config::default()),
        metrics: Arc::new(Metrics::default()),
        alerts: alerts.clone(),
        auth_cache: Default::default(),
        logins: Default::default(),
    };
    let send = |req: Request<Body>| {
        let state = state.clone();
        async move {
            let resp = app(state).oneshot(req).await.expect("infallible");
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body");
            (status, body)
        }
    };
    let (status, body) = send(
        Request::post("/api/agent/v1/enroll")
            .body(Body::from(
                r#"{"schema_version":1,"enroll_secret":"s","machine_id":"m1","hostname":"vm-1","agent_version":"0"}"#,
            ))
            .expect("req"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let e: EnrollResponse = serde_json::from_slice(&body).expect("enroll");
    let report_body = serde_json::to_vec(&batch(vec![report("r1", "m1", 1)])).expect("json");
    let post = || {
        Request::post("/api/agent/v1/report")
            .header("authorization", format!("Bearer {}", e.node_key))
            .body(Body::from(report_body.clone()))
            .expect("req")
    };
    assert_eq!(send(post()).await.0, StatusCode::OK);
    // The first delivery fails (500), the retry succeeds.
    for _ in 0..250 {
        if got.lock().expect("lock").attempts.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A duplicate report alerts nobody.
    assert_eq!(send(post()).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let g = got.lock().expect("lock");
    assert_eq!(
        g.attempts.len(),
        2,
        "one alert, one retry: {:?}",
        g.attempts
    );
    let (first, second) = (&g.attempts[0], &g.attempts[1]);
    assert_eq!(first, second, "a retry is the same CloudEvent");
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(first["id"], "r1/0");
    assert_eq!(first["type"], "net.aupwatch.finding.new");
    assert_eq!(first["subject"], format!("{}:9a3c5e7f11223344", e.host_id));
    assert_eq!(first["time"], "2026-12-07T16:00:00Z");
    assert_eq!(first["data"]["labels"]["customer"], "c-1042");
    assert_eq!(
        first["data"]["event"]["tracked"]["finding"]["category"],
        "mining"
    );
    assert!(g
        .content_types
        .iter()
        .all(|c| c == "application/cloudevents+json"));
    let c = &alerts.counters;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (
            c.sent.load(Relaxed),
            c.retries.load(Relaxed),
            c.failed.load(Relaxed)
        ),
        (1, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_hosts_are_alerted_once_and_their_return_too() {
    let (url, got) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
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
        .create_secret(secret::hash("s"), None, 0)
        .await
        .expect("secret");
    let mut r = route("silence", &url);
    r.silent_hosts = true;
    let not_wanted = route("findings-only", &url);
    let clock = Arc::new(ManualClock::new(1_796_659_300_000));
    let state = AppState {
        store: store.clone(),
        clock: clock.clone() as Arc<dyn Clock>,
        config: Arc::new(Config::default()),
        metrics: Arc::new(Metrics::default()),
        alerts: Arc::new(Alerter::start(
            vec![r, not_wanted],
            store.clone(),
            Arc::new(SystemClock),
        )),
        auth_cache: Default::default(),
        logins: Default::default(),
    };
    let e = match store
        .enroll(aupwatch_collector::store::Enrollment {
            secret_hash: secret::hash("s"),
            machine_id: "m1".into(),
            hostname: "vm-1".into(),
            agent_version: "0".into(),
            labels: BTreeMap::new(),
            new_host_id: "h1".into(),
            node_key_hash: secret::hash("k1"),
            require_approval: false,
            now_unix_ms: 0,
            in_use_intervals: 2,
        })
        .await
        .expect("enroll")
    {
        aupwatch_collector::store::EnrollOutcome::Enrolled { host_id, .. } => host_id,
        other => panic!("{other:?}"),
    };
    let mut rep = report("r1", "m1", 1);
    rep.events.clear();
    store
        .ingest(e.clone(), vec![rep], clock.now_unix_ms())
        .await
        .expect("ingest");
    let mut silent = std::collections::HashSet::new();
    aupwatch_collector::server::silence_pass(&state, &mut silent)
        .await
        .expect("pass");
    clock.advance_secs(76); // > 5 × 15 s
    aupwatch_collector::server::silence_pass(&state, &mut silent)
        .await
        .expect("pass");
    aupwatch_collector::server::silence_pass(&state, &mut silent)
        .await
        .expect("pass");
    let mut rep = report("r2", "m1", 2);
    rep.events.clear();
    store
        .ingest(e.clone(), vec![rep], clock.now_unix_ms())
        .await
        .expect("ingest");
    aupwatch_collector::server::silence_pass(&state, &mut silent)
        .await
        .expect("pass");
    // The receiver fails its first request: 3 attempts for 2 alerts.
    for _ in 0..250 {
        if got.lock().expect("lock").attempts.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let g = got.lock().expect("lock");
    // Deliveries run in parallel: either alert may be the one the receiver fails first, so
    // there are three attempts of two distinct alerts (one silent, one recovered).
    assert_eq!(g.attempts.len(), 3, "{:?}", g.attempts);
    let mut distinct: Vec<(&str, &str)> = g
        .attempts
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap_or(""),
                a["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "{:?}", g.attempts);
    assert_eq!(distinct[0].0, "net.aupwatch.host.recovered");
    assert_eq!(
        distinct[1],
        ("net.aupwatch.host.silent", "h1/silent/1796659300000")
    );
    for a in g.attempts.iter() {
        if a["type"] == "net.aupwatch.host.silent" {
            assert_eq!(a["id"], "h1/silent/1796659300000");
            assert_eq!(a["data"]["liveness"], "silent");
        } else {
            assert_eq!(a["data"]["liveness"], "online");
        }
    }
}
