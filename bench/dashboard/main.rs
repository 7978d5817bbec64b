//! The dashboard's server time on a large fleet: SQLite with 10,000 hosts (5 % silent) and
//! 100,000 open findings (10 per host, four categories, four severities), the pages rendered
//! through `app()` with `tower::ServiceExt::oneshot` (no socket, so the figures are the
//! server's own time: store queries, liveness, rendering). Not a test: it prints figures.
//!
//! ```sh
//! cargo run --release -p aupwatch-collector --example dashboard-bench [-- HOSTS FINDINGS_PER_HOST RUNS]
//! ```

use aupwatch_collector::clock::{Clock, SystemClock};
use aupwatch_collector::config::Config;
use aupwatch_collector::http::{app, AppState};
use aupwatch_collector::metrics::{Histogram, Metrics};
use aupwatch_collector::secret;
use aupwatch_collector::store::sqlite::{raw_insert, SqliteStore};
use aupwatch_collector::store::{NewSession, Role, Store};
use aupwatch_proto::protocol::{Report, ReportBatch};
use aupwatch_proto::{Category, Severity};
use axum::body::Body;
use axum::http::Request;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

fn example_report() -> Report {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/schema/examples/report-batch.json"
    );
    let text = std::fs::read_to_string(path).expect("example report batch");
    let mut b: ReportBatch = serde_json::from_str(&text).expect("example parses");
    b.reports.remove(0)
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let hosts = arg(1, 10_000);
    let per_host = arg(2, 10);
    let runs = arg(3, 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let base = example_report();
    let cats = [
        Category::Mining,
        Category::Proxy,
        Category::Tor,
        Category::Irc,
    ];
    let sevs = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    let now = SystemClock.now_unix_ms();
    let rows: Vec<(String, Report)> = (0..hosts)
        .map(|h| {
            let mut r = base.clone();
            r.report_id = format!("r-{h}");
            r.machine_id = format!("m-{h}");
            r.hostname = format!("vm-{h}.example.net");
            r.events.clear();
            let t0 = r.open_findings[0].clone();
            r.open_findings = (0..per_host)
                .map(|i| {
                    let mut t = t0.clone();
                    t.id = format!("t{i:03}");
                    t.finding.category = cats[(h + i) % cats.len()];
                    t.finding.severity = sevs[(h * 7 + i) % sevs.len()];
                    t.first_seen_unix_ms = now - ((h * per_host + i) as u64 % 168) * 3_600_000;
                    t.last_seen_unix_ms = now;
                    t
                })
                .collect();
            (format!("h-{h:05}"), r)
        })
        .collect();
    let started = Instant::now();
    raw_insert(&path, &rows, 1000).expect("insert");
    {
        // 95 % of the hosts reported just now; the rest stay silent (last seen at 1 ms).
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute(
            "UPDATE last_seen SET last_seen_unix_ms = ?1 WHERE abs(random()) % 100 >= 5",
            [now as i64],
        )
        .expect("last seen");
        conn.execute(
            "UPDATE hosts SET interval_secs = 15, customer = 'c-' || (rowid % 50)",
            [],
        )
        .expect("hosts");
    }
    eprintln!(
        "seeded {hosts} hosts, {} findings in {:.1} s",
        hosts * per_host,
        started.elapsed().as_secs_f64()
    );
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&path, 64, 16, Arc::new(Histogram::default())).expect("open"));
    let uid = store
        .create_user("bench".into(), Role::Viewer, "unused".into(), now)
        .await
        .expect("user")
        .expect("new");
    store
        .create_session(NewSession {
            id_hash: secret::hash("00"),
            user_id: uid,
            csrf: "x".into(),
            now_unix_ms: now,
            expires_unix_ms: now + 3_600_000,
        })
        .await
        .expect("session");
    let state = AppState {
        store: store.clone(),
        clock: Arc::new(SystemClock) as Arc<dyn Clock>,
        config: Arc::new(Config::default()),
        metrics: Arc::new(Metrics::default()),
        alerts: Arc::new(aupwatch_collector::alerts::Alerter::disabled()),
        auth_cache: Default::default(),
        logins: Default::default(),
    };
    println!("| page | min ms | median ms | max ms | bytes |");
    println!("|---|---|---|---|---|");
    for url in [
        "/",
        "/findings",
        "/findings?category=mining&severity=high",
        "/findings?after=h-05000%3At005",
        "/findings?customer=c-7&state=all&limit=1000",
        "/findings.csv?limit=1000",
        "/findings/h-04242%3At003",
        "/hosts/h-04242",
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..runs {
            let req = Request::get(url)
                .header("cookie", "aupwatch_session=00")
                .body(Body::empty())
                .expect("request");
            let t = Instant::now();
            let resp = app(state.clone()).oneshot(req).await.expect("infallible");
            assert_eq!(resp.status(), 200, "{url}");
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body");
            times.push(t.elapsed());
            bytes = body.len();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| `{url}` | {:.1} | {:.1} | {:.1} | {bytes} |",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}
