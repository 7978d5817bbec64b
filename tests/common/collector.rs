//! The real `aupwatch-collector` beside the real agent: a collector on 127.0.0.1:PORT inside
//! a test's lab namespace (SQLite in the lab directory), its CLI, and the waits the tests
//! share. Used by `tests/reporting.rs` and `tests/browser.rs` (`#[path]`, like `agent.rs`).

#![allow(dead_code)]

use crate::agent_util::TIMEOUT;
use crate::common::Lab;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Inside the lab's namespace nothing else listens: a fixed port is free.
pub const PORT: u16 = 8740;

pub fn collector_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_aupwatch")).with_file_name("aupwatch-collector");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p aupwatch-collector` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A collector on 127.0.0.1:PORT in the lab's namespace; killed on drop.
pub struct Collector {
    pub config: PathBuf,
    pub db: PathBuf,
    lab: String,
    child: Option<Child>,
}

impl Collector {
    pub fn new(lab: &Lab) -> Collector {
        Collector::on(lab, PORT, "")
    }

    /// A collector on `port`, with `extra` appended to its configuration (`[tls] …`).
    pub fn on(lab: &Lab, port: u16, extra: &str) -> Collector {
        let dir = lab.dir().join("collector");
        std::fs::create_dir_all(&dir).expect("collector dir");
        let db = dir.join("collector.db");
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n[database]\npath = \"{}\"\n{extra}",
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

    /// `aupwatch-collector ARGS` with nothing on its standard input.
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        self.cli_stdin(args, "")
    }

    /// `aupwatch-collector ARGS` with `stdin` written to its standard input (passwords).
    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let mut child = Command::new(collector_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run aupwatch-collector");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("aupwatch-collector");
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

    pub fn secret(&self) -> String {
        let (_, out) = self.cli(&["secret", "create", "--label", "customer=c-test"]);
        // "secret 1: <secret>"
        out.lines()
            .next()
            .and_then(|l| l.split(": ").nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no secret in {out:?}"))
    }

    pub fn start(&mut self) {
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
            .contains("://")
        {
            assert!(Instant::now() < deadline, "the collector did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn findings(&self, state: &str) -> Vec<Value> {
        let (_, out) = self.cli(&["findings", "--state", state, "--json"]);
        let page: Value = serde_json::from_str(&out).expect("findings --json");
        page["findings"].as_array().cloned().unwrap_or_default()
    }

    /// `SELECT …` on the collector's database: one line per row, columns tab-separated.
    pub fn sql(&self, query: &str) -> Vec<String> {
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

pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
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
pub fn row_of(rows: &[Value], sig: &str, pid: u32) -> Option<Value> {
    rows.iter()
        .find(|r| {
            r["signatures"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == sig))
                && r["tracked"]["finding"]["subject"]["pid"] == pid
        })
        .cloned()
}
