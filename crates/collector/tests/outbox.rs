//! The alert outbox against the real binary: a webhook receiver on 127.0.0.1 that is down
//! when the report arrives, the collector killed with SIGKILL before the receiver comes up,
//! the alert delivered by the restarted collector, once; a route whose receiver never comes
//! up ends `failed` in the CLI; two collectors on one PostgreSQL database deliver each alert
//! exactly once.

mod common;

use aupwatch_proto::protocol::{EnrollResponse, ReportAck, Stored};
use common::server::{cli, http, start, Server};
use common::{batch, report};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1, closed again (connections to it are refused until a receiver
/// binds it).
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A webhook receiver on `addr`: records each request's JSON body, answers 200.
fn receiver(addr: SocketAddr) -> Arc<Mutex<Vec<serde_json::Value>>> {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = TcpListener::bind(addr).expect("bind the receiver");
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let g = g.clone();
            std::thread::spawn(move || serve_one(conn, &g));
        }
    });
    got
}

/// Reads requests on one connection (keep-alive) until it closes.
fn serve_one(conn: TcpStream, got: &Mutex<Vec<serde_json::Value>>) {
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("content-length");
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).expect("body");
        got.lock()
            .expect("lock")
            .push(serde_json::from_slice(&body).expect("a JSON alert"));
        if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn enroll(addr: SocketAddr, secret: &str, machine_id: &str) -> EnrollResponse {
    let body = serde_json::json!({
        "schema_version": 1, "enroll_secret": secret, "machine_id": machine_id,
        "hostname": machine_id, "agent_version": "0.1.0"
    });
    let a = http(
        addr,
        "POST",
        "/api/agent/v1/enroll",
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    serde_json::from_slice(&a.body).expect("enroll answer")
}

/// Posts one report; its stored/duplicate status.
fn post_report(addr: SocketAddr, key: &str, id: &str, machine_id: &str, seq: u64) -> Stored {
    let body = serde_json::to_vec(&batch(vec![report(id, machine_id, seq)])).expect("json");
    let auth = format!("Bearer {key}");
    let a = http(
        addr,
        "POST",
        "/api/agent/v1/report",
        &[("Authorization", &auth)],
        &body,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    serde_json::from_slice::<ReportAck>(&a.body)
        .expect("ack")
        .results[0]
        .status
}

/// The outbox as the CLI shows it (`alerts --json`).
fn outbox(config: &Path, state: Option<&str>) -> (i32, Vec<serde_json::Value>) {
    let mut args = vec!["alerts", "--json"];
    if let Some(s) = state {
        args.extend(["--state", s]);
    }
    let (code, out, err) = cli(config, &args);
    assert!(code == 0 || code == 1, "alerts: {code} {err}");
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")),
    )
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids(got: &Mutex<Vec<serde_json::Value>>) -> Vec<String> {
    got.lock()
        .expect("lock")
        .iter()
        .map(|a| a["id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn an_alert_outlives_a_kill_9_and_a_receiver_that_was_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = free_port();
    let never = free_port();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\n[database]\npath = \"{}\"\n\
             [[alerts.webhook]]\nname = \"desk\"\nurl = \"http://{hook}/hook\"\nmax_attempts = 100\nretry_initial_ms = 100\n\
             [[alerts.webhook]]\nname = \"gone\"\nurl = \"http://{never}/hook\"\nmax_attempts = 2\nretry_initial_ms = 50\n",
            dir.path().join("c.db").display()
        ),
    )
    .expect("config");
    let (code, out, err) = cli(&cfg, &["secret", "create"]);
    assert_eq!(code, 0, "{err}");
    let secret = out.split_whitespace().nth(2).expect("secret").to_string();
    let server = start(&cfg);
    let e = enroll(server.addr, &secret, "m1");
    assert_eq!(
        post_report(server.addr, &e.node_key, "r1", "m1", 1),
        Stored::Stored
    );
    // Both receivers are down: the desk's alert is tried and stays pending; the other route
    // gives up after its 2 attempts.
    wait_for(
        "failed attempts while the receiver is down",
        Duration::from_secs(30),
        || {
            let (_, rows) = outbox(&cfg, None);
            rows.iter()
                .any(|r| r["route"] == "desk" && r["attempts"].as_u64() >= Some(1))
                && rows
                    .iter()
                    .any(|r| r["route"] == "gone" && r["state"] == "failed")
        },
    );
    let (code, failed) = outbox(&cfg, Some("failed"));
    assert_eq!(code, 1, "a failed alert listed: exit 1");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["alert_id"], "r1/0");
    assert_eq!(failed[0]["attempts"], 2);
    assert!(failed[0]["last_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    let (_, table, _) = cli(&cfg, &["alerts", "--state", "failed"]);
    assert!(table.starts_with("SEQ\tSTATE\tATTEMPTS\tROUTE"), "{table}");
    assert!(
        table.contains("\tfailed\t2\tgone\tnet.aupwatch.finding.new\tr1/0\t"),
        "{table}"
    );
    // SIGKILL: no shutdown of any kind; the alert exists only in the database.
    drop(server);
    let (_, pending) = outbox(&cfg, Some("pending"));
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        (
            pending[0]["route"].as_str(),
            pending[0]["alert_id"].as_str()
        ),
        (Some("desk"), Some("r1/0"))
    );
    let got = receiver(hook);
    let server = start(&cfg);
    wait_for("the alert at the receiver", Duration::from_secs(30), || {
        !ids(&got).is_empty()
    });
    // The duplicate of the report alerts nobody, and nothing is sent twice.
    assert_eq!(
        post_report(server.addr, &e.node_key, "r1", "m1", 1),
        Stored::Duplicate
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ids(&got), ["r1/0"]);
    {
        let g = got.lock().expect("lock");
        assert_eq!(g[0]["type"], "net.aupwatch.finding.new");
        assert_eq!(g[0]["subject"], format!("{}:9a3c5e7f11223344", e.host_id));
    }
    let (code, sent) = outbox(&cfg, Some("sent"));
    assert_eq!(code, 0);
    assert_eq!(sent.len(), 1);
    assert!(sent[0]["attempts"].as_u64() >= Some(2), "{sent:?}");
    let a = http(server.addr, "GET", "/metrics", &[], b"");
    assert_eq!(a.status, 200);
    let metrics = String::from_utf8_lossy(&a.body);
    for line in [
        "aupwatch_collector_alerts{state=\"pending\"} 0",
        "aupwatch_collector_alerts{state=\"sent\"} 1",
        "aupwatch_collector_alerts{state=\"failed\"} 1",
        // This process sent it, at least the second attempt overall.
        "aupwatch_collector_alerts_total{outcome=\"sent\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    drop(server);
}

/// Two collectors on one PostgreSQL database, both with the route; the receiver is down
/// while 30 reports (15 to each) are stored, so both deliverers hold due retries when it
/// comes up: each alert arrives exactly once.
#[test]
#[ignore = "needs AUPWATCH_TEST_PG_URL (tests/pg.sh start); run with --include-ignored"]
fn two_collectors_on_one_postgres_deliver_each_alert_once() {
    let url = std::env::var("AUPWATCH_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("AUPWATCH_TEST_PG_URL is unset: run tests/pg.sh start");
    let name = format!("aupwatch_outbox_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
    });
    let hook = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\n[database]\nbackend = \"postgres\"\nurl = \"{url} dbname={name}\"\npool_size = 4\n\
             [[alerts.webhook]]\nname = \"desk\"\nurl = \"http://{hook}/hook\"\nmax_attempts = 100\nretry_initial_ms = 200\n"
        ),
    )
    .expect("config");
    let (code, out, err) = cli(&cfg, &["secret", "create"]);
    assert_eq!(code, 0, "{err}");
    let secret = out.split_whitespace().nth(2).expect("secret").to_string();
    let collectors: [Server; 2] = [start(&cfg), start(&cfg)];
    let e = enroll(collectors[0].addr, &secret, "m1");
    for seq in 1..=30u64 {
        let to = &collectors[(seq % 2) as usize];
        assert_eq!(
            post_report(to.addr, &e.node_key, &format!("r{seq}"), "m1", seq),
            Stored::Stored
        );
    }
    wait_for("every alert tried once", Duration::from_secs(60), || {
        let (_, rows) = outbox(&cfg, Some("pending"));
        rows.len() == 30 && rows.iter().all(|r| r["attempts"].as_u64() >= Some(1))
    });
    let got = receiver(hook);
    wait_for("30 alerts at the receiver", Duration::from_secs(60), || {
        ids(&got).len() >= 30
    });
    // Both keep polling: give a second copy every chance to arrive.
    std::thread::sleep(Duration::from_millis(3000));
    let mut received = ids(&got);
    let n = received.len();
    received.sort();
    received.dedup();
    assert_eq!(
        (n, received.len()),
        (30, 30),
        "each alert once: {:?}",
        ids(&got)
    );
    let (_, sent) = outbox(&cfg, Some("sent"));
    assert_eq!(sent.len(), 30);
    drop(collectors);
}
