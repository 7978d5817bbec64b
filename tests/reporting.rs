//! The agent reports to the collector: the real `aupwatch agent` and the real
//! `aupwatch-collector` (SQLite), both inside one loopback-only network namespace, a real
//! offender process on the host. A finding travels from /proc to the collector's CLI and
//! resolves there; through collector outages and agent kills every report arrives, each
//! stored once, in order.
//!
//! The collector binary is the workspace's (`cargo test --workspace` builds it; alone:
//! `cargo build -p aupwatch-collector`). What it stored is read with its own CLI and, for
//! row counts, straight from its SQLite file (python3's sqlite3 module).

#[path = "common/agent.rs"]
mod agent_util;
mod common;

use agent_util::{signature, Agent, Offender, Opts, Setup, TIMEOUT};
use common::{prerequisites, Lab};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Inside the lab's namespace nothing else listens: a fixed port is free.
const PORT: u16 = 8740;

fn collector_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_aupwatch")).with_file_name("aupwatch-collector");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p aupwatch-collector` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A collector on 127.0.0.1:PORT in the lab's namespace; killed on drop.
struct Collector {
    config: PathBuf,
    db: PathBuf,
    lab: String,
    child: Option<Child>,
}

impl Collector {
    fn new(lab: &Lab) -> Collector {
        let dir = lab.dir().join("collector");
        std::fs::create_dir_all(&dir).expect("collector dir");
        let db = dir.join("collector.db");
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{PORT}\"\n[database]\npath = \"{}\"\n",
                db.display()
            ),
        )
        .expect("collector config");
        Collector {
            config,
            db,
            lab: lab.name().to_string(),
            child: None,
        }
    }

    fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(collector_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run aupwatch-collector");
        assert!(
            out.status.code() != Some(2),
            "aupwatch-collector {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn secret(&self) -> String {
        let (_, out) = self.cli(&["secret", "create", "--label", "customer=c-test"]);
        // "secret 1: <secret>"
        out.lines()
            .next()
            .and_then(|l| l.split(": ").nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no secret in {out:?}"))
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.lab))
            .arg("--")
            .arg(collector_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the collector");
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        while !std::fs::read_to_string(self.config.with_extension("log"))
            .unwrap_or_default()
            .contains("http://")
        {
            assert!(Instant::now() < deadline, "the collector did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn findings(&self, state: &str) -> Vec<Value> {
        let (_, out) = self.cli(&["findings", "--state", state, "--json"]);
        let page: Value = serde_json::from_str(&out).expect("findings --json");
        page["findings"].as_array().cloned().unwrap_or_default()
    }

    /// `SELECT …` on the collector's database: one line per row, columns tab-separated.
    fn sql(&self, query: &str) -> Vec<String> {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nfor r in c.execute(sys.argv[2]):\n print('\\t'.join(str(x) for x in r))",
            ])
            .arg(&self.db)
            .arg(query)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{query}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The collector's row of `sig` on pid `pid` in `state`.
fn row_of(rows: &[Value], sig: &str, pid: u32) -> Option<Value> {
    rows.iter()
        .find(|r| {
            r["signatures"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == sig))
                && r["tracked"]["finding"]["subject"]["pid"] == pid
        })
        .cloned()
}

fn agent_config(setup: &Setup, secret: &str, machine: &str) -> Opts {
    let _ = setup;
    Opts {
        tail: format!(
            "[collector]\nurl = \"http://127.0.0.1:{PORT}\"\nenroll_secret = \"{secret}\"\nmachine_id = \"{machine}\"\n"
        ),
        ..Opts::default()
    }
}

#[test]
#[ignore = "needs root, network namespaces, python3 and the collector binary; CI runs it with --include-ignored"]
fn a_finding_travels_from_proc_to_the_collector_and_resolves() {
    let test = "a_finding_travels_from_proc_to_the_collector_and_resolves";
    prerequisites(test, &["python3"]);
    let lab = Lab::new(test, "rp");
    let mut collector = Collector::new(&lab);
    let secret = collector.secret();
    collector.start();

    let setup = Setup::new(lab.dir(), "rp");
    let sig = setup.sig_id("travel");
    setup.local_signatures("travel.toml", &signature(&sig, "high", &setup.name("tr")));
    let machine = format!("test-machine-{}", std::process::id());
    setup.write_config(&agent_config(&setup, &secret, &machine));
    let mut offender = Offender::start(lab.dir(), &setup.name("tr"));
    let mut agent = Agent::start(test, &lab, &setup);

    let row = wait_for("the finding at the collector", || {
        row_of(&collector.findings("open"), &sig, offender.pid)
    });
    assert_eq!(row["category"], "mining");
    assert_eq!(row["severity"], "high");
    assert_eq!(row["customer"], "c-test", "the secret's label: {row}");
    let subject = &row["tracked"]["finding"]["subject"];
    assert_eq!(subject["kind"], "process");
    assert_eq!(
        subject["exe"].as_str(),
        Some(offender.path.to_str().expect("utf-8 path")),
        "the evidence travels with the finding: {row}"
    );
    // The CLI table shows it too.
    let (code, table) = collector.cli(&["findings"]);
    assert_eq!(code, 1, "findings present: exit 1");
    assert!(table.contains(&sig), "{table}");

    // The agent says where it reports, and that it delivered (its status is rebuilt after
    // each scan, so it may lag the collector by an interval).
    let doc = agent.wait_status("the delivery in status", |d| {
        let c = &d["reporting"]["collector"];
        c["enrolled"] == true && c["delivered"].as_u64().unwrap_or(0) >= 1
    });
    let c = &doc["reporting"]["collector"];
    assert_eq!(c["url"], format!("http://127.0.0.1:{PORT}"));
    assert!(c["last_error"].is_null(), "{c}");

    // Heartbeats keep the host online.
    let (_, hosts) = collector.cli(&["hosts", "--json"]);
    let hosts: Value = serde_json::from_str(&hosts).expect("hosts --json");
    let host = hosts
        .as_array()
        .and_then(|h| h.iter().find(|h| h["machine_id"] == machine.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("host {machine} in {hosts}"));
    assert_eq!(host["liveness"], "online", "{host}");

    offender.kill();
    wait_for("the finding resolved at the collector", || {
        row_of(&collector.findings("resolved"), &sig, offender.pid)
    });
    // One offender is one finding, however many reports told of it.
    let rows = collector.sql(&format!(
        "SELECT count(*) FROM findings WHERE signatures LIKE '%{sig}%'"
    ));
    assert_eq!(rows, ["1"]);
}

#[test]
#[ignore = "needs root, network namespaces, python3 and the collector binary; CI runs it with --include-ignored"]
fn through_outages_and_kills_every_report_arrives_once_and_in_order() {
    let test = "through_outages_and_kills_every_report_arrives_once_and_in_order";
    prerequisites(test, &["python3"]);
    let lab = Lab::new(test, "ro");
    let mut collector = Collector::new(&lab);
    let secret = collector.secret();
    collector.start();

    let setup = Setup::new(lab.dir(), "ro");
    let sig = setup.sig_id("outage");
    setup.local_signatures(
        "outage.toml",
        &signature(&sig, "high", &format!("{}*", setup.name("o"))),
    );
    let machine = format!("test-machine-o-{}", std::process::id());
    setup.write_config(&agent_config(&setup, &secret, &machine));
    let mut first = Offender::start(lab.dir(), &setup.name("o1"));
    let mut agent = Agent::start(test, &lab, &setup);
    wait_for("the first finding at the collector", || {
        row_of(&collector.findings("open"), &sig, first.pid)
    });

    // The collector goes away; findings change; the agent is killed and restarted.
    collector.stop();
    first.kill();
    let second = Offender::start(lab.dir(), &setup.name("o2"));
    agent.wait_status("a few scans while the collector is down", |d| {
        d["reporting"]["collector"]["spool_reports"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    agent.signal("KILL");
    let _ = agent.wait_exit(TIMEOUT);
    let mut agent = Agent::start(test, &lab, &setup);
    agent.wait_status("scans after the restart", |d| {
        d["scans"].as_u64().unwrap_or(0) >= 2
    });
    agent.signal("TERM");
    let _ = agent.wait_exit(TIMEOUT);
    let agent = Agent::start(test, &lab, &setup);
    std::thread::sleep(Duration::from_secs(2));

    // The collector returns: the spool drains.
    collector.start();
    let doc = {
        let mut a = agent;
        a.wait_status("the spool drained", |d| {
            let c = &d["reporting"]["collector"];
            c["spool_reports"] == 0 && c["last_error"].is_null()
        })
    };
    wait_for("the second finding at the collector", || {
        row_of(&collector.findings("open"), &sig, second.pid)
    });
    wait_for("the first finding resolved", || {
        row_of(&collector.findings("resolved"), &sig, first.pid)
    });

    // Every report the agent's state directory numbered is stored once: sequences 1..=N,
    // no gap, no duplicate, stored in order.
    let seqs: Vec<u64> = collector
        .sql(&format!(
            "SELECT r.sequence FROM reports r JOIN hosts h ON h.host_id = r.host_id \
             WHERE h.machine_id = '{machine}' ORDER BY r.rowid"
        ))
        .iter()
        .map(|s| s.parse().expect("a sequence number"))
        .collect();
    let n = seqs.len() as u64;
    assert!(n >= 6, "reports stored: {seqs:?}");
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "every report once, in order"
    );
    let dropped = &doc["reporting"]["collector"]["dropped"];
    assert_eq!(
        (
            dropped["heartbeats"].as_u64(),
            dropped["transitions"].as_u64()
        ),
        (Some(0), Some(0)),
        "nothing dropped: {dropped}"
    );
    // The clean stop said goodbye before the restart.
    let goodbyes = collector.sql(&format!(
        "SELECT count(*) FROM reports r JOIN hosts h ON h.host_id = r.host_id \
         WHERE h.machine_id = '{machine}' AND r.goodbye = 1"
    ));
    assert_eq!(goodbyes, ["1"], "one goodbye, from the SIGTERM");
}
