//! The real binary over real HTTP on 127.0.0.1 (a free port), and its CLI on the same
//! database: what an agent and an operator do, and every kind of bad input, with the
//! collector still serving after each.

mod common;

use aupwatch_proto::api::Summary;
use aupwatch_proto::protocol::{EnrollResponse, ReportAck, Stored};
use common::{batch, report};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::server::{cli, http, start, start_on, try_http, Answer, BIN};

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("collector.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\n[database]\npath = \"{}\"\n[ingest]\nmax_body_bytes = 65536\nmax_decompressed_bytes = 262144\n",
            dir.join("c.db").display()
        ),
    )
    .expect("config");
    path
}

fn enroll(addr: SocketAddr, secret: &str, machine_id: &str, hostname: &str) -> Answer {
    let body = serde_json::json!({
        "schema_version": 1, "enroll_secret": secret, "machine_id": machine_id,
        "hostname": hostname, "agent_version": "0.1.0"
    });
    http(
        addr,
        "POST",
        "/api/agent/v1/enroll",
        &[],
        body.to_string().as_bytes(),
    )
}

fn post(addr: SocketAddr, key: &str, body: &[u8], gzip: bool) -> Answer {
    let auth = format!("Bearer {key}");
    let mut h = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    if gzip {
        h.push(("Content-Encoding", "gzip"));
    }
    http(addr, "POST", "/api/agent/v1/report", &h, body)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn summary(config: &Path) -> Summary {
    let (_, out, err) = cli(config, &["summary", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"))
}

#[test]
fn agents_and_operators_against_the_real_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    assert_eq!(cli(&cfg, &["config", "check"]).0, 0);
    let (code, out, _) = cli(&cfg, &["secret", "create", "--label", "customer=c-1042"]);
    assert_eq!(code, 0);
    let secret = out.split_whitespace().nth(2).expect("secret").to_string();
    let (code, out, _) = cli(
        &cfg,
        &["token", "create", "--role", "viewer", "--name", "ops"],
    );
    assert_eq!(code, 0);
    let token = out.split_whitespace().nth(3).expect("token").to_string();
    // A clean fleet: exit 0.
    assert_eq!(cli(&cfg, &["findings"]).0, 0);

    let server = start(&cfg);
    let addr = server.addr;
    let alive = || assert_eq!(http(addr, "GET", "/healthz", &[], b"").status, 200);

    let e = enroll(addr, &secret, "m1", "vm-1\u{1b}[2Jevil");
    assert_eq!(e.status, 200);
    let key = e.json::<EnrollResponse>().node_key;
    let key2 = enroll(addr, &secret, "m2", "vm-2")
        .json::<EnrollResponse>()
        .node_key;
    let good = serde_json::to_vec(&batch(vec![report("r1", "m1", 1)])).expect("json");
    let a = post(addr, &key, &gzip(&good), true);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json::<ReportAck>().results[0].status, Stored::Stored);
    // Replayed: answered duplicate, stored once.
    let a = post(addr, &key, &good, false);
    assert_eq!(a.json::<ReportAck>().results[0].status, Stored::Duplicate);
    let s = summary(&cfg);
    assert_eq!((s.reports, s.events, s.open_findings), (1, 1, 1));

    let text = String::from_utf8(good.clone()).expect("utf8");
    let mut huge = batch(vec![report("r9", "m1", 9)]);
    huge.reports[0].hostname = "x".repeat(100 * 1024);
    let huge = serde_json::to_vec(&huge).expect("json");
    let bad: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "oversized body",
            post(addr, &key, &huge, false),
            413,
            "too_large",
        ),
        (
            "gzip bomb",
            post(addr, &key, &gzip(&vec![0u8; 32 * 1024 * 1024]), true),
            413,
            "too_large",
        ),
        (
            "broken JSON",
            post(addr, &key, b"{\"schema_version\":1,", false),
            400,
            "bad_json",
        ),
        (
            "wrong schema version",
            post(
                addr,
                &key,
                text.replacen("\"schema_version\":1", "\"schema_version\":2", 1)
                    .as_bytes(),
                false,
            ),
            400,
            "bad_schema_version",
        ),
        (
            "unknown key",
            post(addr, &"ab".repeat(32), &good, false),
            401,
            "unknown_key",
        ),
        (
            "another machine id",
            post(addr, &key2, &good, false),
            403,
            "wrong_machine",
        ),
    ];
    for (what, a, status, code) in &bad {
        assert_eq!(
            a.status,
            *status,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.code(), *code, "{what}");
        alive();
    }
    // Revoked key (the CLI, with the server running): 401.
    let (code, _, err) = cli(&cfg, &["hosts", "revoke", "m2"]);
    assert_eq!(code, 0, "{err}");
    let r2 = serde_json::to_vec(&batch(vec![report("q1", "m2", 1)])).expect("json");
    let a = post(addr, &key2, &r2, false);
    assert_eq!((a.status, a.code().as_str()), (401, "unknown_key"));
    // Blocked machine: its reports 403, and it cannot enroll again.
    assert_eq!(cli(&cfg, &["hosts", "block", "m1"]).0, 0);
    let r3 = serde_json::to_vec(&batch(vec![report("r3", "m1", 3)])).expect("json");
    let a = post(addr, &key, &r3, false);
    assert_eq!((a.status, a.code().as_str()), (403, "blocked"));
    let a = enroll(addr, &secret, "m1", "vm-1");
    assert_eq!((a.status, a.code().as_str()), (403, "blocked"));
    alive();
    let s = summary(&cfg);
    assert_eq!((s.reports, s.events), (1, 1), "nothing else stored");
    let metrics = String::from_utf8(http(addr, "GET", "/metrics", &[], b"").body).expect("utf8");
    assert!(
        metrics.contains("aupwatch_collector_rejected_requests_total{reason=\"too_large\"} 2"),
        "{metrics}"
    );

    // The query API over HTTP.
    let auth = format!("Bearer {token}");
    let a = http(
        addr,
        "GET",
        "/api/v1/findings?format=csv",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(a.status, 200);
    assert!(a.headers.to_ascii_lowercase().contains("text/csv"));
    // The CLI: findings present → 1; host strings escaped for the terminal.
    let (code, out, _) = cli(&cfg, &["findings"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("mining.xmrig"));
    let (code, out, _) = cli(&cfg, &["hosts"]);
    assert_eq!(code, 0);
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert_eq!(cli(&cfg, &["summary"]).0, 1);
    assert_eq!(cli(&cfg, &["hosts", "approve", "nobody"]).0, 2);
    drop(server);
}

#[test]
fn config_errors_exit_2_with_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:1\"\n[ingest]\nqueue_dpth = 3\n").expect("write");
    let (code, _, err) = cli(&cfg, &["config", "check"]);
    assert_eq!(code, 2);
    assert!(err.contains(":3:") && err.contains("queue_dpth"), "{err}");
    let (code, _, err) = cli(&cfg, &["hosts"]);
    assert_eq!(code, 2, "{err}");
}

/// kill -9 during load, three times, with agents retrying what was not acknowledged: no
/// acknowledged report is lost, none is stored twice, none is stored in part.
#[test]
fn acked_reports_survive_kill_9_and_retries_store_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let (_, out, _) = cli(&cfg, &["secret", "create"]);
    let secret = out.split_whitespace().nth(2).expect("secret").to_string();
    let mut server = start(&cfg);
    let addr = server.addr;
    let agents: Vec<(String, String)> = (0..8)
        .map(|i| {
            let m = format!("m{i}");
            let key = enroll(addr, &secret, &m, &m)
                .json::<EnrollResponse>()
                .node_key;
            (m, key)
        })
        .collect();
    const PER_AGENT: u64 = 250;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let retries = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = agents
        .into_iter()
        .map(|(m, key)| {
            let (acked, retries) = (acked.clone(), retries.clone());
            std::thread::spawn(move || {
                let auth = format!("Bearer {key}");
                for seq in 1..=PER_AGENT {
                    let id = format!("{m}-{seq}");
                    let body =
                        serde_json::to_vec(&batch(vec![report(&id, &m, seq)])).expect("json");
                    let started = std::time::Instant::now();
                    loop {
                        assert!(
                            started.elapsed() < Duration::from_secs(60),
                            "{id} never acknowledged"
                        );
                        let headers = [("Authorization", auth.as_str())];
                        match try_http(addr, "POST", "/api/agent/v1/report", &headers, &body) {
                            Some(a) if a.status == 200 => {
                                acked.lock().expect("lock").push(id);
                                break;
                            }
                            Some(a) if a.status < 500 => {
                                panic!("{id}: {} {}", a.status, String::from_utf8_lossy(&a.body))
                            }
                            _ => {
                                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        drop(server); // SIGKILL, then reaped
        std::thread::sleep(Duration::from_millis(100));
        server = start_on(&cfg, Some(addr));
    }
    for w in workers {
        w.join().expect("agent");
    }
    drop(server);
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len() as u64, 8 * PER_AGENT);
    let retries = retries.load(std::sync::atomic::Ordering::Relaxed);
    assert!(retries > 0, "the kills must fall during the load");
    eprintln!("{retries} requests retried across 3 kills");
    let db = rusqlite::Connection::open(dir.path().join("c.db")).expect("db");
    let stored: std::collections::HashSet<String> = db
        .prepare("SELECT report_id FROM reports")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("ids");
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    let events: i64 = db
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .expect("count");
    assert_eq!(stored.len() as u64, 8 * PER_AGENT);
    assert_eq!(
        events as u64,
        8 * PER_AGENT,
        "each report's event once, never in part"
    );
}

/// Two collector processes on one PostgreSQL database get the same reports at the same
/// moment: each stored once, the other copy answered duplicate.
#[test]
#[ignore = "needs AUPWATCH_TEST_PG_URL (tests/pg.sh start); run with --include-ignored"]
fn two_collectors_on_one_postgres_store_each_report_once() {
    let url = std::env::var("AUPWATCH_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("AUPWATCH_TEST_PG_URL is unset: run tests/pg.sh start");
    let name = format!("aupwatch_two_{}", std::process::id());
    let psql_db = |sql: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client.batch_execute(sql).await.expect("sql");
        });
    };
    psql_db(&format!("CREATE DATABASE {name}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!("listen = \"127.0.0.1:0\"\n[database]\nbackend = \"postgres\"\nurl = \"{url} dbname={name}\"\npool_size = 4\n"),
    )
    .expect("config");
    let (code, out, err) = cli(&cfg, &["secret", "create"]);
    assert_eq!(code, 0, "{err}");
    let secret = out.split_whitespace().nth(2).expect("secret").to_string();
    let a = start(&cfg);
    let b = start(&cfg);
    let key = enroll(a.addr, &secret, "m1", "vm-1")
        .json::<EnrollResponse>()
        .node_key;
    let auth = format!("Bearer {key}");
    for seq in 1..=20u64 {
        let body =
            serde_json::to_vec(&batch(vec![report(&format!("r{seq}"), "m1", seq)])).expect("json");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let send = |addr: SocketAddr| {
            let (barrier, body, auth) = (barrier.clone(), body.clone(), auth.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let a = http(
                    addr,
                    "POST",
                    "/api/agent/v1/report",
                    &[("Authorization", &auth)],
                    &body,
                );
                assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
                a.json::<ReportAck>().results[0].status
            })
        };
        let (x, y) = (send(a.addr), send(b.addr));
        let mut got = vec![x.join().expect("a"), y.join().expect("b")];
        got.sort_by_key(|s| *s == Stored::Stored);
        assert_eq!(got, vec![Stored::Duplicate, Stored::Stored], "report {seq}");
    }
    let s = summary(&cfg);
    assert_eq!((s.reports, s.events), (20, 20));
    drop((a, b));
}

/// TLS: serves HTTPS with a certificate from the config; a client that checks the chain
/// gets an answer. (openssl makes the certificate and is the client.)
#[test]
fn serves_https_with_the_configured_certificate() {
    let have_openssl = Command::new("openssl").arg("version").output().is_ok();
    if !have_openssl {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and no openssl"
        );
        eprintln!("NOT RUN: needs openssl");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = common::self_signed(dir.path(), "cert");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[database]\npath = \"{}\"\n",
            cert.display(),
            key.display(),
            dir.path().join("c.db").display()
        ),
    )
    .expect("config");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = lines.next().expect("a line").expect("utf8");
    let addr = line
        .rsplit("https://")
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-connect",
            &addr,
        ])
        .arg("-CAfile")
        .arg(&cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    client
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("request");
    let out = client.wait_with_output().expect("answer");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
}
