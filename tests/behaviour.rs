//! Behaviour detection on real processes, each test in a network namespace of its own that has
//! only loopback, found by `aupwatch scan --json` run from the host's namespace:
//!
//! * a miner under an innocent name, its executable deleted after start, speaking Stratum to a
//!   small local pool, is found as mining by what its executable contains and does; a busy
//!   compression job and a build loop are not flagged;
//! * a real transmission-daemon (DHT, peer exchange, local discovery, uTP and port
//!   forwarding off) is found as torrent;
//! * a real nmap scan of 127.0.0.1 ports, and a renamed connect-scan that leaves half-open
//!   connections against a local tarpit, are found as scanner;
//! * one process holding many SMTP sessions to a local sink is found as bulk mail;
//! * a multicast receiver/sender is found, and so is its group on `lo`;
//! * the agent tracks the hidden miner as one critical mining finding (its kinds of evidence
//!   agree) and a real ngircd beside it as one IRC finding.
//!
//! The helpers are in tests/common/behaviour/. Every client connects only to 127.0.0.1.

#[path = "common/agent.rs"]
mod agent_util;
mod common;

use agent_util::{brief, finding, Agent, Opts, Setup};
use common::{fill, prerequisites, python3, scan, skip, Lab, Spawn};
use std::process::Command;
use std::time::{Duration, Instant};

const STRATUM_POOL: &str = include_str!("common/behaviour/stratum_pool.py");
/// Read at run time, not `include_str!`: the miner's source names the Stratum strings, and
/// this test binary (the miner's ancestor) must not carry them.
const MINER_C: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/common/behaviour/miner.c"
);
const HALF_OPEN: &str = include_str!("common/behaviour/half_open.py");
const SMTP: &str = include_str!("common/behaviour/smtp.py");
const MULTICAST: &str = include_str!("common/behaviour/multicast.py");

/// Evidence predicates of a finding, as `predicate: value` lines.
fn evidence(f: &serde_json::Value) -> Vec<String> {
    f["evidence"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["predicate"].as_str().unwrap_or(""),
                        e["value"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Starts the Stratum pool on 3333 and the miner under an innocent name, dropped in a hidden
/// directory and deleted once running and authorized; returns its pid and when it started.
fn start_hidden_miner(lab: &mut Lab, python: &std::path::Path) -> (u32, Instant) {
    let pool_py = lab.write("pool/stratum_pool.py", STRATUM_POOL);
    let pool = lab.start("pool", Spawn::new(python).arg(&pool_py).arg("3333"));
    lab.wait_listening("pool", pool, "tcp", 3333);
    let source = std::fs::read_to_string(MINER_C).expect("read miner.c");
    let built = lab.compile_c("miner", &source, &["-O2", "-Wall"], &[]);
    let hidden = lab.dir().join(".cache");
    std::fs::create_dir_all(&hidden).expect("mkdir .cache");
    let exe = hidden.join("dbus-session-helper");
    common::install_executable(&built, &exe);
    let started = Instant::now();
    let miner = lab.start("miner", Spawn::new(&exe).arg("3333"));
    lab.wait_connected("miner", miner, 3333);
    lab.wait_log("pool", "authorized worker1");
    std::fs::remove_file(&exe).expect("delete the running miner's executable");
    (miner, started)
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn a_hidden_miner_is_found_by_behaviour_and_busy_benign_jobs_are_not() {
    const T: &str = "a_hidden_miner_is_found_by_behaviour_and_busy_benign_jobs_are_not";
    let bins = prerequisites(T, &["cc", "gzip", "sh"]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let (cc, gzip, sh) = (&bins[0], &bins[1], &bins[2]);
    let mut lab = Lab::new(T, "miner");
    let (miner, started) = start_hidden_miner(&mut lab, &python);

    // Benign, CPU-heavy: compression and a build loop.
    let gzip_pid = lab.start(
        "gzip",
        Spawn::new(gzip)
            .args(["-9", "-c"])
            .stdin_from("/dev/zero")
            .stdout_to("/dev/null"),
    );
    let big = lab.write(
        "build/big.c",
        &(0..400)
            .map(|i| {
                format!(
                    "double f{i}(double x) {{ return x * {i}.5 + f{}(x / 2); }}\n",
                    i.max(1) - 1
                )
            })
            .fold("double f0(double x);\n".to_string(), |a, l| a + &l)
            .replace(
                "f0(double x) { return x * 0.5 + f0(x / 2); }",
                "f0(double x) { return x; }",
            ),
    );
    let build = lab.start(
        "build",
        Spawn::new(sh).args([
            "-c",
            &format!(
                "while :; do {} -O2 -c {} -o /dev/null || exit 1; done",
                cc.display(),
                big.display()
            ),
        ]),
    );

    // The rules that need CPU evidence in a one-shot scan want the process busy for 10 s.
    let age = started.elapsed();
    if age < Duration::from_secs(13) {
        std::thread::sleep(Duration::from_secs(13) - age);
    }
    let report = scan(&[]);
    let f = report.expect(
        &lab,
        "miner (renamed, deleted, speaking stratum)",
        miner,
        "mining",
    );
    let own = |f: &&&serde_json::Value| f["process"]["pid"].as_u64() == Some(u64::from(miner));
    let mining: Vec<String> = report
        .involving(miner)
        .iter()
        .filter(&own)
        .filter(|f| f["category"] == "mining")
        .flat_map(|f| evidence(f))
        .collect();
    assert!(
        mining
            .iter()
            .any(|e| e.starts_with("exe_strings: executable contains")
                && e.contains("mining.subscribe")),
        "the miner's executable strings should be evidence: {mining:#?}\n{f}"
    );
    let all: Vec<String> = report
        .involving(miner)
        .iter()
        .filter(&own)
        .flat_map(|f| evidence(f))
        .collect();
    assert!(
        all.iter().any(|e| e.contains("was deleted")),
        "the deleted executable should be evidence: {all:#?}"
    );
    for (what, pid) in [("gzip -9", gzip_pid), ("build loop", build)] {
        report.expect_clean(&lab, what, pid);
    }
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn transmission_daemon_is_found_as_torrent() {
    const T: &str = "transmission_daemon_is_found_as_torrent";
    let bins = prerequisites(T, &["transmission-daemon"]);
    let mut lab = Lab::new(T, "bt");
    let config = lab.dir().join("transmission");
    let downloads = lab.writable_dir("downloads");
    // Nothing that reaches out: no DHT, PEX, LPD, uTP, UPnP/NAT-PMP, blocklist or port test;
    // RPC on loopback only. No torrent is added, so no tracker is contacted.
    lab.write(
        "transmission/settings.json",
        &serde_json::json!({
            "dht-enabled": false,
            "pex-enabled": false,
            "lpd-enabled": false,
            "utp-enabled": false,
            "port-forwarding-enabled": false,
            "blocklist-enabled": false,
            "peer-port": 51413,
            "peer-port-random-on-start": false,
            "bind-address-ipv4": "0.0.0.0",
            "rpc-enabled": true,
            "rpc-bind-address": "127.0.0.1",
            "rpc-port": 9091,
            "rpc-whitelist-enabled": true,
            "rpc-whitelist": "127.0.0.1",
            "rpc-authentication-required": false,
            "download-dir": downloads,
            "incomplete-dir-enabled": false,
            "watch-dir-enabled": false,
            "message-level": 2,
        })
        .to_string(),
    );
    let pid = lab.start(
        "transmission-daemon",
        Spawn::new(&bins[0])
            .args(["--foreground", "--config-dir"])
            .arg(&config),
    );
    lab.wait_listening("transmission-daemon", pid, "tcp", 51413);
    let report = scan(&[]);
    let f = report.expect(&lab, "transmission-daemon", pid, "torrent");
    assert!(
        evidence(f).iter().any(|e| e.contains("transmission")),
        "{f}"
    );
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn an_nmap_scan_and_a_renamed_half_open_sweep_are_found_as_scanner() {
    const T: &str = "an_nmap_scan_and_a_renamed_half_open_sweep_are_found_as_scanner";
    let bins = prerequisites(T, &["nmap"]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let mut lab = Lab::new(T, "scan");
    // A slow connect scan of 127.0.0.1, so that it is still running when we look.
    let nmap = lab.start(
        "nmap",
        Spawn::new(&bins[0]).args([
            "-sT",
            "-Pn",
            "-n",
            "--scan-delay",
            "300ms",
            "-p",
            "1-400",
            "127.0.0.1",
        ]),
    );
    let helper = lab.write("half_open.py", HALF_OPEN);
    let tarpit = lab.start(
        "tarpit",
        Spawn::new(&python).arg(&helper).args(["tarpit", "30"]),
    );
    lab.wait_log("tarpit", "ready");
    // The sweep under an innocent name: argv[0] and comm say "healthcheck".
    let sweep_exe = lab.dir().join("healthcheck");
    std::os::unix::fs::symlink(&python, &sweep_exe).expect("symlink");
    let sweep = lab.start(
        "sweep",
        Spawn::new(&sweep_exe).arg(&helper).args(["sweep", "30"]),
    );
    lab.wait_log("sweep", "ready");
    let report = scan(&[]);
    report.expect(&lab, "nmap", nmap, "scanner");
    let f = report.expect(&lab, "half-open sweep", sweep, "scanner");
    assert!(
        evidence(f)
            .iter()
            .any(|e| e.starts_with("peers: 30 distinct remote port(s)")),
        "{f}"
    );
    report.expect_clean(&lab, "tarpit (listener)", tarpit);
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn one_process_holding_many_smtp_sessions_is_bulk_mail() {
    const T: &str = "one_process_holding_many_smtp_sessions_is_bulk_mail";
    prerequisites(T, &[]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let mut lab = Lab::new(T, "mail");
    let helper = lab.write("smtp.py", SMTP);
    let sink = lab.start(
        "sink",
        Spawn::new(&python).arg(&helper).args(["sink", "25"]),
    );
    lab.wait_listening("sink", sink, "tcp", 25);
    let mailer = lab.start(
        "mailer",
        Spawn::new(&python)
            .arg(&helper)
            .args(["mailer", "25", "25"]),
    );
    lab.wait_log("mailer", "sending");
    // all 25 sessions connected
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::sockets_of(mailer)
        .iter()
        .filter(|s| s.established() && s.remote.port() == 25)
        .count()
        < 25
    {
        if Instant::now() > deadline {
            lab.fail("the mailer did not open its 25 sessions");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = scan(&[]);
    let f = report.expect(&lab, "bulk mailer", mailer, "mail");
    assert!(
        evidence(f)
            .iter()
            .any(|e| e.starts_with("remote: 25 distinct connection(s)")),
        "{f}"
    );
    report.expect_clean(&lab, "SMTP sink (a server)", sink);
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn multicast_sockets_and_group_memberships_are_found() {
    const T: &str = "multicast_sockets_and_group_memberships_are_found";
    prerequisites(T, &[]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let mut lab = Lab::new(T, "mcast");
    let ok = Command::new("ip")
        .args(["-n", lab.name(), "link", "set", "lo", "multicast", "on"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        lab.fail("cannot set the MULTICAST flag on the namespace's lo");
    }
    let helper = lab.write("multicast.py", MULTICAST);
    let pid = lab.start("multicast", Spawn::new(&python).arg(&helper));
    lab.wait_log("multicast", "joined");
    let report = scan(&[]);
    report.expect(&lab, "multicast receiver/sender", pid, "multicast");
    let f = report.expect_interface(&lab, "lo", "multicast");
    assert!(evidence(f).iter().any(|e| e.contains("239.1.2.3")), "{f}");
}

const NGIRCD_CONF: &str = include_str!("common/daemons/ngircd.conf");

/// The agent, inside a lab with the hidden miner and a real ngircd, tracks one finding per
/// offender: the miner's mining signatures (its executable's strings, deleted and busy and
/// connected, a pool port while busy) are one finding, raised to critical because
/// executable contents, network and CPU agree, with every signature's evidence in it; ngircd's
/// IRC signatures are one finding, not raised (a name and a listener).
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn the_agent_tracks_one_verdict_per_offender_raised_when_evidence_agrees() {
    const T: &str = "the_agent_tracks_one_verdict_per_offender_raised_when_evidence_agrees";
    let bins = prerequisites(T, &["cc", "ngircd", "renice"]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let mut lab = Lab::new(T, "verd");
    let (miner, _) = start_hidden_miner(&mut lab, &python);
    // A miner keeps a core busy; on a CI machine shared with other builds it gets that core
    // only with a higher priority than theirs (what its CPU signatures need to see).
    let out = Command::new(&bins[2])
        .args(["-n", "-10", "-p", &miner.to_string()])
        .output()
        .unwrap_or_else(|e| lab.fail(&format!("cannot run renice: {e}")));
    assert!(out.status.success(), "renice: {out:?}");
    let dir = lab.writable_dir("ngircd");
    let conf = lab.write("ngircd/ngircd.conf", &fill(NGIRCD_CONF, &dir));
    let ircd = lab.start(
        "ngircd",
        Spawn::new(&bins[1]).arg("-n").arg("-f").arg(&conf),
    );
    lab.wait_listening("ngircd", ircd, "tcp", 6667);

    let s = Setup::new(lab.dir(), "vd");
    s.write_config(&Opts::default());
    let mut agent = Agent::start(T, &lab, &s);
    let of = |doc: &serde_json::Value, pid: u32, category: &str| -> Vec<serde_json::Value> {
        doc["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["finding"]["category"] == category
                    && t["finding"]["subject"]["pid"].as_u64() == Some(u64::from(pid))
            })
            .cloned()
            .collect()
    };
    let want = [
        "mining.exe-strings",
        "mining.hidden-busy-exe",
        "mining.pool-port-busy",
    ];
    let doc = agent.wait_status_within(
        Duration::from_secs(180),
        "the miner's signatures together, and ngircd found",
        |d| {
            let m = of(d, miner, "mining");
            m.len() == 1
                && want.iter().all(|sig| finding(d, sig, miner).is_some())
                && !of(d, ircd, "irc").is_empty()
        },
    );
    let mining = of(&doc, miner, "mining");
    assert_eq!(mining.len(), 1, "one mining finding: {}", brief(&doc));
    let f = &mining[0]["finding"];
    assert_eq!(f["severity"], "critical", "{f:#}");
    let raised = f["raised"].as_str().unwrap_or_default();
    assert!(
        raised.starts_with("raised from high: ")
            && raised.contains("executable contents (")
            && raised.contains("network behaviour (")
            && raised.contains("CPU behaviour ("),
        "{f:#}"
    );
    for m in f["matches"].as_array().into_iter().flatten() {
        assert!(
            m["evidence"].as_array().is_some_and(|e| !e.is_empty()),
            "every match keeps its evidence: {m:#}"
        );
    }
    let predicates: Vec<&str> = f["matches"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["evidence"].as_array().into_iter().flatten())
        .filter_map(|e| e["predicate"].as_str())
        .collect();
    for p in ["exe_strings", "exe_deleted", "remote", "cpu"] {
        assert!(predicates.contains(&p), "{p} in {predicates:?}");
    }
    let irc = of(&doc, ircd, "irc");
    assert_eq!(irc.len(), 1, "one IRC finding: {}", brief(&doc));
    let f = &irc[0]["finding"];
    assert!(
        f["matches"].as_array().is_some_and(|m| m.len() >= 2),
        "ngircd's IRC signatures in one finding: {f:#}"
    );
    assert!(f["raised"].is_null(), "{f:#}");
}
