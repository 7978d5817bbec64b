//! bench/ingest — simulated agents against the real `aupwatch-collector` binary on
//! 127.0.0.1 (see bench/ingest/README.md).
//!
//! Enrolls `--hosts` agents (each its own node key), then for each concurrency in
//! `--concurrency` runs `--seconds` of load: one keep-alive connection per worker, one
//! request in flight each, `--batch` reports per request, each report the published example
//! re-identified (unique report id, the host's next sequence). Measures acked reports/s,
//! p50/p99 ack latency, the collector's CPU (utime+stime) and RSS (VmHWM, and sampled
//! VmRSS), then checks stored = acked by counting rows, and measures the raw insert rate of
//! the same rows (the writer's ingest in one thread, no HTTP) in the same run.

use aupwatch_collector::store::sqlite::raw_insert;
use aupwatch_proto::protocol::{EnrollResponse, Report, ReportAck, ReportBatch, Stored};
use axum::body::Bytes;
use axum::http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

struct Args {
    bin: PathBuf,
    hosts: usize,
    concurrency: Vec<usize>,
    seconds: u64,
    batch: usize,
    /// PostgreSQL instead of SQLite: a fresh database is created in this cluster.
    pg_url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        bin: PathBuf::from("target/release/aupwatch-collector"),
        hosts: 10_000,
        concurrency: vec![8, 32, 64],
        seconds: 20,
        batch: 1,
        pg_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--bin" => a.bin = PathBuf::from(v),
            "--hosts" => a.hosts = v.parse().expect("--hosts N"),
            "--concurrency" => {
                a.concurrency = v
                    .split(',')
                    .map(|c| c.parse().expect("--concurrency N,M"))
                    .collect()
            }
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            "--batch" => a.batch = v.parse().expect("--batch N"),
            "--pg-url" => a.pg_url = Some(v),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

fn cli(bin: &Path, config: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run the collector CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn example() -> Report {
    let text = include_str!("../../crates/proto/schema/examples/report-batch.json");
    let mut b: ReportBatch = serde_json::from_str(text).expect("example");
    b.reports.remove(0)
}

/// The example report as a template with three holes.
struct Template(String);

impl Template {
    fn new() -> Template {
        let mut r = example();
        r.report_id = "RID_HOLE".into();
        r.machine_id = "MID_HOLE".into();
        r.sequence = 4_242_424_242;
        Template(serde_json::to_string(&r).expect("json"))
    }
    fn fill(&self, rid: &str, mid: &str, seq: u64) -> String {
        self.0
            .replace("RID_HOLE", rid)
            .replace("MID_HOLE", mid)
            .replace("4242424242", &seq.to_string())
    }
}

fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / clk_tck()
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, config: &Path) -> Server {
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the collector");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = lines.next().expect("a line").expect("utf8");
    let addr = line
        .rsplit("http://")
        .next()
        .expect("address")
        .trim()
        .to_string();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            eprintln!("[collector] {l}");
        }
    });
    Server { child, addr }
}

async fn post(client: &HttpClient, url: &str, key: Option<&str>, body: String) -> (u16, Bytes) {
    let mut req = Request::post(url).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, body)
        }
        Err(e) => panic!("request failed: {e}"),
    }
}

struct Host {
    machine_id: String,
    key: String,
    seq: AtomicU64,
}

struct Phase {
    concurrency: usize,
    seconds: f64,
    acked: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu_secs: f64,
    client_cpu_secs: f64,
    rss_max_kib: u64,
}

/// A client of the `--pg-url` cluster.
async fn pg_admin(url: &str) -> tokio_postgres::Client {
    let admin: tokio_postgres::Config = url.parse().expect("--pg-url");
    let (client, conn) = admin.connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("collector.toml");
    let database = match &a.pg_url {
        None => format!("path = \"{}\"", dir.path().join("c.db").display()),
        Some(url) => {
            let name = format!("aupwatch_bench_{}", std::process::id());
            pg_admin(url)
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            format!("backend = \"postgres\"\nurl = \"{url} dbname={name}\"\npool_size = 16")
        }
    };
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[database]\n{database}\n[ingest]\nqueue_depth = 16384\nmax_jobs_per_commit = 1024\n"
        ),
    )
    .expect("config");
    let secret = cli(&a.bin, &config, &["secret", "create"])
        .split_whitespace()
        .nth(2)
        .expect("secret")
        .to_string();
    let token = cli(
        &a.bin,
        &config,
        &["token", "create", "--role", "viewer", "--name", "bench"],
    )
    .split_whitespace()
    .nth(3)
    .expect("token")
    .to_string();
    let server = start(&a.bin, &config);
    let pid = server.child.id();
    let base = format!("http://{}", server.addr);
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);

    // Enrollment (not counted in the load phases).
    let started = Instant::now();
    let hosts: Vec<Arc<Host>> = {
        let next = Arc::new(AtomicU64::new(0));
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (client, next, out, secret, url) = (
                client.clone(),
                next.clone(),
                out.clone(),
                secret.clone(),
                format!("{base}/api/agent/v1/enroll"),
            );
            let total = a.hosts as u64;
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let mid = format!("bench{i:08}");
                    let body = serde_json::json!({"schema_version":1,"enroll_secret":secret,
                        "machine_id":mid,"hostname":format!("vm-{i}"),"agent_version":"bench"});
                    let (status, bytes) = post(&client, &url, None, body.to_string()).await;
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
                    let e: EnrollResponse = serde_json::from_slice(&bytes).expect("enroll");
                    out.lock().expect("lock").push((i, mid, e.node_key));
                }
            }));
        }
        for t in tasks {
            t.await.expect("enroll task");
        }
        let mut v = std::mem::take(&mut *out.lock().expect("lock"));
        v.sort();
        v.into_iter()
            .map(|(_, machine_id, key)| {
                Arc::new(Host {
                    machine_id,
                    key,
                    seq: AtomicU64::new(0),
                })
            })
            .collect()
    };
    let enroll_secs = started.elapsed().as_secs_f64();
    let idle_rss = proc_status_kib(pid, "VmRSS:");

    let template = Arc::new(Template::new());
    let url = format!("{base}/api/agent/v1/report");
    let run_id = std::process::id();
    let mut phases = Vec::new();
    let mut total_acked = 0u64;
    for &c in &a.concurrency {
        let stop = Arc::new(AtomicBool::new(false));
        let cpu0 = proc_cpu_secs(pid);
        let me = std::process::id();
        let client0 = proc_cpu_secs(me);
        let rss_max = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, rss_max) = (stop.clone(), rss_max.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    rss_max.fetch_max(proc_status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..c {
            let (client, hosts, template, url, stop) = (
                client.clone(),
                hosts.clone(),
                template.clone(),
                url.clone(),
                stop.clone(),
            );
            let batch = a.batch;
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let (mut acked, mut errors) = (0u64, 0u64);
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let h = &hosts[i % hosts.len()];
                    i += c;
                    let mut body = String::from("{\"schema_version\":1,\"reports\":[");
                    for k in 0..batch {
                        let seq = h.seq.fetch_add(1, Ordering::Relaxed) + 1;
                        if k > 0 {
                            body.push(',');
                        }
                        let rid = format!("{run_id:x}-{}-{seq}", h.machine_id);
                        body.push_str(&template.fill(&rid, &h.machine_id, seq));
                    }
                    body.push_str("]}");
                    let sent = Instant::now();
                    let (status, bytes) = post(&client, &url, Some(&h.key), body).await;
                    lat.push(sent.elapsed().as_secs_f64() * 1000.0);
                    if status == 200 {
                        let ack: ReportAck = serde_json::from_slice(&bytes).expect("ack");
                        acked += ack
                            .results
                            .iter()
                            .filter(|r| r.status == Stored::Stored)
                            .count() as u64;
                    } else {
                        errors += 1;
                    }
                }
                (lat, acked, errors)
            }));
        }
        tokio::time::sleep(Duration::from_secs(a.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut lat = Vec::new();
        let (mut acked, mut errors) = (0, 0);
        for t in tasks {
            let (l, ac, er) = t.await.expect("worker");
            lat.extend(l);
            acked += ac;
            errors += er;
        }
        let secs = t0.elapsed().as_secs_f64();
        let _ = sampler.await;
        let cpu = proc_cpu_secs(pid) - cpu0;
        let client_cpu = proc_cpu_secs(me) - client0;
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        total_acked += acked;
        phases.push(Phase {
            concurrency: c,
            seconds: secs,
            acked,
            errors,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: lat.last().copied().unwrap_or(0.0),
            cpu_secs: cpu,
            client_cpu_secs: client_cpu,
            rss_max_kib: rss_max.load(Ordering::Relaxed),
        });
    }
    // The operator's views at this size, each timed once.
    let mut views = Vec::new();
    for path in [
        "/api/v1/hosts",
        "/api/v1/summary",
        "/api/v1/findings?limit=1000",
        "/metrics",
    ] {
        let req = Request::get(format!("{base}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let t = Instant::now();
        let resp = client.request(req).await.expect("view");
        let status = resp.status().as_u16();
        let n = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len())
            .unwrap_or(0);
        views.push((path, status, t.elapsed().as_secs_f64() * 1000.0, n));
    }
    let hwm = proc_status_kib(pid, "VmHWM:");
    drop(server);
    let summary = cli(&a.bin, &config, &["summary", "--json"]);
    let s: aupwatch_proto::api::Summary = serde_json::from_str(&summary).expect("summary");

    // Raw insert of the same number of rows, same shape, same code, in this run.
    let n = (total_acked as usize).clamp(1, 200_000);
    let ex = Template::new();
    let rows: Vec<(String, Report)> = (0..n)
        .map(|i| {
            let h = i % a.hosts;
            let mid = format!("raw{h:08}");
            let r: Report =
                serde_json::from_str(&ex.fill(&format!("raw-{i}"), &mid, (i / a.hosts + 1) as u64))
                    .expect("report");
            (format!("h{h:08}"), r)
        })
        .collect();
    // And the same rows in small transactions: what group commit has to work with when
    // only `c` requests are in flight.
    let mut raws = Vec::new();
    for (i, per_tx) in [1024usize, 64, 8].into_iter().enumerate() {
        let take = if per_tx == 1024 { n } else { n.min(50_000) };
        let raw_cpu0 = proc_cpu_secs(std::process::id());
        let raw = match &a.pg_url {
            None => {
                let raw_path = dir.path().join(format!("raw-{i}.db"));
                raw_insert(&raw_path, &rows[..take], per_tx).expect("raw insert")
            }
            // Into a fresh database of the same cluster, by the writer's own batch code.
            Some(url) => {
                let name = format!("aupwatch_bench_{}_raw{i}", std::process::id());
                pg_admin(url)
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create database");
                aupwatch_collector::store::postgres::raw_insert(
                    &format!("{url} dbname={name}"),
                    &rows[..take],
                    per_tx,
                )
                .await
                .expect("raw insert")
            }
        };
        // (On PostgreSQL the server's own CPU is not in this figure.)
        let raw_cpu = proc_cpu_secs(std::process::id()) - raw_cpu0;
        raws.push((
            per_tx,
            take,
            take as f64 / raw.as_secs_f64(),
            raw_cpu * 1000.0 / take as f64,
        ));
    }
    let raw_rate = raws[0].2;

    println!(
        "# bench/ingest ({})\n",
        if a.pg_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "{} hosts enrolled in {:.1} s ({:.0}/s); batch {} report(s)/request; report body {} B; idle RSS after enrollment {} MiB\n",
        a.hosts,
        enroll_secs,
        a.hosts as f64 / enroll_secs,
        a.batch,
        template.0.len(),
        idle_rss / 1024
    );
    println!("| concurrency | s | acked reports/s | errors | p50 ms | p99 ms | max ms | collector CPU cores | CPU ms/report | load generator CPU cores | RSS max MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for p in &phases {
        println!(
            "| {} | {:.1} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.3} | {:.2} | {:.1} |",
            p.concurrency,
            p.seconds,
            p.acked as f64 / p.seconds,
            p.errors,
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
            p.cpu_secs / p.seconds,
            p.cpu_secs * 1000.0 / p.acked.max(1) as f64,
            p.client_cpu_secs / p.seconds,
            p.rss_max_kib as f64 / 1024.0
        );
    }
    println!("\nVmHWM {:.1} MiB\n", hwm as f64 / 1024.0);
    println!("| view (after the load) | status | ms | bytes |\n|---|---|---|---|");
    for (path, status, ms, n) in &views {
        println!("| `{path}` | {status} | {ms:.1} | {n} |");
    }
    println!();
    println!(
        "stored = acked: {} (reports in the database {}, acked stored {})",
        s.reports == total_acked,
        s.reports,
        total_acked
    );
    let best = phases
        .iter()
        .map(|p| p.acked as f64 / p.seconds)
        .fold(0.0, f64::max);
    for (per_tx, take, rate, cpu) in &raws {
        println!(
            "raw insert of {take} reports into {} (one thread, {per_tx} per transaction, no HTTP): {rate:.0} reports/s, {cpu:.3} CPU-ms/report (this process)",
            if a.pg_url.is_some() { "PostgreSQL" } else { "SQLite" }
        );
    }
    println!(
        "best ingest / raw (1024 per transaction) = {:.0} %",
        100.0 * best / raw_rate
    );
    if s.reports != total_acked {
        std::process::exit(1);
    }
}
