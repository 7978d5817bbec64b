//! Issue #16, "Hardening": what a hostile user of the host can do to the agent — command
//! lines megabytes long, files that block or never end, a full disk under the event log,
//! idle clients on the status socket, control characters in signatures — each tried with
//! real processes, real files, FIFOs, a small tmpfs and real socket clients.
//!
//! The agent tests run their agent in a loopback-only network namespace (common `Lab`),
//! interval 1 s, every file in the lab's directory.

#[path = "common/agent.rs"]
mod agent_util;
mod common;

use agent_util::{brief, finding, Agent, Opts, Setup, TIMEOUT};
use common::{prerequisites, which, Lab};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The agent's bounds (`aupwatch_proto::bounds`), as the issue states them.
const MAX_CMDLINE_BYTES: u64 = 4096;
const MAX_EVENT_LINE: usize = 16 * 1024;

/// Peak resident memory of `pid` (VmHWM), in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A copy of `dash` named `name`, run as `name -c 'read x' ARGS…` with its stdin a pipe
/// nobody writes: it waits forever with the command line given. Killed on drop.
struct LongCmdline {
    child: Child,
    pid: u32,
}

impl LongCmdline {
    fn start(exe: &Path, args: &[String]) -> LongCmdline {
        let setpriv = which("setpriv").expect("setpriv (util-linux)");
        // setpriv execs: the pid is the shell's. --pdeathsig: it dies with the test.
        let child = Command::new(setpriv)
            .args(["--pdeathsig", "KILL", "--"])
            .arg(exe)
            .args(["-c", "read x"])
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
        let pid = child.id();
        let deadline = Instant::now() + TIMEOUT;
        while fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() != Some(exe) {
            assert!(
                Instant::now() < deadline,
                "{} did not start within {TIMEOUT:?}",
                exe.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        LongCmdline { child, pid }
    }
}

impl Drop for LongCmdline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Memory from command lines

/// Forty processes named `xmrig-bN`, each with a ~1.9 MB command line of ESC bytes (any
/// user can start them): the agent stays under 64 MB, every event line under 16 KB, and
/// each finding's command line says it was cut, with the whole one's length and SHA-256.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn forty_huge_escape_command_lines_keep_the_agent_small() {
    const T: &str = "forty_huge_escape_command_lines_keep_the_agent_small";
    prerequisites(T, &["dash", "setpriv"]);
    let dash = which("dash").expect("dash");
    let lab = Lab::new(T, "ahcl");
    let mut s = Setup::new(lab.dir(), "hc");
    s.replace_shipped();
    let sig = s.sig_id("longcmd");
    let bin_dir = s.dir.join("bin");
    fs::create_dir_all(&bin_dir).expect("bin/");
    fs::set_permissions(&bin_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    // The executables' names are the issue's; their directory is this test's own.
    s.local_signatures(
        "long.toml",
        &format!(
            "[[signature]]\nid = \"{sig}\"\ncategory = \"mining\"\nseverity = \"high\"\n\
             description = \"long command line\"\naup = \"test\"\n\
             match = {{ all = [{{ name = [\"xmrig-b*\"] }}, {{ exe = [\"{}/*\"] }}] }}\n",
            bin_dir.display()
        ),
    );
    s.write_config(&Opts::default());

    // 14 arguments of 128 KiB - 1 (the kernel's limit per argument) and one of 64 KiB.
    let mut args = vec!["\u{1b}".repeat(128 * 1024 - 1); 14];
    args.push("\u{1b}".repeat(64 * 1024));
    let mut procs = Vec::new();
    for n in 0..40 {
        let exe = bin_dir.join(format!("xmrig-b{n}"));
        common::install_executable(&dash, &exe);
        procs.push(LongCmdline::start(&exe, &args));
    }
    let cmdline = fs::read(format!("/proc/{}/cmdline", procs[0].pid)).expect("cmdline");
    assert!(cmdline.len() > 1_900_000, "{} bytes", cmdline.len());

    let mut agent = Agent::start(T, &lab, &s);
    let doc = agent.wait_status("all forty are found", |d| {
        procs.iter().all(|p| finding(d, &sig, p.pid).is_some())
    });
    // A few more scans with all of them (and every event written).
    let scans = doc["scans"].as_u64().unwrap_or(0);
    let doc = agent.wait_status("three more scans", |d| {
        d["scans"].as_u64() >= Some(scans + 3)
    });
    let hwm = vm_hwm_kib(agent.pid());
    assert!(
        hwm < 64 * 1024,
        "agent peak RSS {hwm} KiB with 40 command lines of 1.9 MB; {}",
        brief(&doc)
    );

    for p in &procs {
        let t = finding(&doc, &sig, p.pid).expect("found");
        let subject = &t["finding"]["subject"];
        let whole = fs::read(format!("/proc/{}/cmdline", p.pid)).expect("cmdline");
        let cut = &subject["cmdline_truncated"];
        assert_eq!(
            cut["bytes"].as_u64(),
            Some(whole.len() as u64),
            "the whole length is kept: {subject:#}"
        );
        assert_eq!(cut["sha256"].as_str(), Some(sha256_hex(&whole).as_str()));
        let kept: u64 = subject["cmdline"]
            .as_array()
            .expect("cmdline array")
            .iter()
            .map(|a| a.as_str().map_or(0, str::len) as u64 + 1)
            .sum();
        assert!(kept <= MAX_CMDLINE_BYTES + 64, "{kept} bytes kept");
    }

    let events = fs::read_to_string(s.events_path()).expect("events.jsonl");
    let mut new = 0;
    for (i, line) in events.lines().enumerate() {
        assert!(
            line.len() < MAX_EVENT_LINE,
            "event line {} is {} bytes",
            i + 1,
            line.len()
        );
        assert!(
            !line.bytes().any(|b| b < 0x20 || b == 0x7f),
            "line {} carries raw control bytes",
            i + 1
        );
        let e: Value = serde_json::from_str(line).expect("each line is JSON");
        if e["kind"] == "new" {
            new += 1;
            assert!(
                e["tracked"]["finding"]["subject"]["cmdline_truncated"]["bytes"].as_u64()
                    > Some(1_900_000),
                "the cut shows in the event: {}",
                &line[..line.len().min(2000)]
            );
        }
    }
    assert!(new >= 40, "{new} new events");

    // `status --json` is bounded too (40 findings of at most 12 KiB each).
    let out = agent.cli(&["status", "--json"]);
    assert!(
        out.stdout.len() < 40 * 16 * 1024,
        "{} bytes",
        out.stdout.len()
    );
    drop(procs);
}
