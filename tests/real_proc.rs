//! Real processes that look like AUP abuse — a stand-in program (tests/common/impostor.c)
//! copied under miners' and daemons' names, with their command lines and their sockets — and
//! benign controls, in loopback-only network namespaces. `aupwatch scan --json` must report
//! each offender with the right category and pid, and must not flag any control.
//!
//! The impostor only listens inside its namespace and only connects to 127.0.0.1 there.

mod common;

use common::{poll_until, prerequisites, process_tree, python3, scan, scan_raw, skip, Lab, Spawn};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// The common prerequisites of these tests: root, namespaces, a C compiler for the impostor.
fn ready(test: &str) {
    prerequisites(test, &["cc"]);
}

/// Starts the impostor as `name` with `args`, the given IMPOSTOR_* settings, and waits until
/// it has printed that it is ready (its sockets are then in place).
fn impostor(lab: &mut Lab, name: &str, args: &[&str], env: &[(&str, &str)]) -> u32 {
    let path = lab.impostor(name);
    let mut spawn = Spawn::new(&path).args(args);
    for (k, v) in env {
        spawn = spawn.env(k, v);
    }
    let pid = lab.start(name, spawn);
    lab.wait_log(name, "impostor ready");
    pid
}

const XMRIG_ARGS: [&str; 6] = [
    "--donate-level",
    "1",
    "-o",
    "stratum+tcp://127.0.0.1:3333",
    "-u",
    "x",
];

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn miners_are_reported_as_mining() {
    const T: &str = "miners_are_reported_as_mining";
    ready(T);
    let mut lab = Lab::new(T, "miner");
    // The "pool" the miners connect to, inside the namespace. Not asserted on either way.
    let pool = impostor(&mut lab, "pool", &[], &[("IMPOSTOR_TCP_LISTEN", "3333")]);
    lab.wait_listening("pool", pool, "tcp", 3333);

    // xmrig by name and flags, connected to the pool, burning a core.
    let xmrig = impostor(
        &mut lab,
        "xmrig",
        &XMRIG_ARGS,
        &[("IMPOSTOR_TCP_CONNECT", "3333"), ("IMPOSTOR_BURN", "1")],
    );
    lab.wait_connected("xmrig", xmrig, 3333);

    // A renamed miner: nothing in its name, the miner's flags on its command line.
    let renamed = impostor(
        &mut lab,
        "updater",
        &[
            "--url=stratum+tcp://127.0.0.1:3333",
            "--donate-level=1",
            "--user",
            "x",
            "--threads=1",
        ],
        &[("IMPOSTOR_TCP_CONNECT", "3333")],
    );
    lab.wait_connected("updater", renamed, 3333);

    // A miner whose binary was deleted after it started.
    let deleted_path = lab.impostor("xmrig-6.21");
    let deleted = lab.start("xmrig-6.21", Spawn::new(&deleted_path).args(XMRIG_ARGS));
    lab.wait_log("xmrig-6.21", "impostor ready");
    std::fs::remove_file(&deleted_path).expect("delete the running miner's binary");
    assert!(
        common::exe(deleted).is_some_and(|e| e.ends_with(" (deleted)")),
        "{T}: the kernel does not show the binary as deleted"
    );

    let report = scan(&[]);
    report.expect(&lab, "xmrig", xmrig, "mining");
    report.expect(
        &lab,
        "renamed miner with stratum URL and --donate-level",
        renamed,
        "mining",
    );
    let f = report.expect(&lab, "miner with a deleted binary", deleted, "mining");
    assert_eq!(
        f["process"]["exe_deleted"],
        Value::Bool(true),
        "{T}: a miner whose binary is gone must say exe_deleted: {}",
        common::describe(f)
    );
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn a_miner_and_its_children_make_one_finding() {
    const T: &str = "a_miner_and_its_children_make_one_finding";
    ready(T);
    let mut lab = Lab::new(T, "fork");
    let parent = impostor(&mut lab, "xmrig", &XMRIG_ARGS, &[("IMPOSTOR_FORK", "2")]);
    let mut children = Vec::new();
    let waited = poll_until(Duration::from_secs(10), || {
        children = process_tree(parent)
            .into_iter()
            .filter(|p| *p != parent)
            .collect();
        Ok(children.len() == 2)
    });
    if let Err(e) = waited {
        lab.fail(&format!(
            "xmrig did not fork 2 children: {e} ({children:?})"
        ));
    }

    let report = scan(&[]);
    let f = report.expect(&lab, "xmrig with two children", parent, "mining");
    let related: BTreeSet<u64> = f["related_pids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    for child in &children {
        assert!(
            related.contains(&u64::from(*child)),
            "{T}: child {child} of xmrig {parent} is not in related_pids: {}",
            common::describe(f)
        );
    }
    // The children are folded into the parent's finding, not reported again on their own.
    for child in &children {
        let own: Vec<String> = report
            .in_netns(lab.netns())
            .into_iter()
            .filter(|g| {
                g["category"] == "mining" && g["process"]["pid"].as_u64() == Some(u64::from(*child))
            })
            .map(common::describe)
            .collect();
        assert!(
            own.is_empty(),
            "{T}: child {child} has a mining finding of its own besides its parent's: {own:?}"
        );
    }
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn service_impostors_are_reported_by_category() {
    const T: &str = "service_impostors_are_reported_by_category";
    ready(T);
    let mut lab = Lab::new(T, "svc");
    let tor = impostor(
        &mut lab,
        "tor",
        &["-f", "/etc/tor/torrc", "--RunAsDaemon", "0"],
        &[("IMPOSTOR_TCP_LISTEN", "9001,9030,9050")],
    );
    let ircd = impostor(
        &mut lab,
        "unrealircd",
        &[],
        &[("IMPOSTOR_TCP_LISTEN", "6667,6697")],
    );
    let irc_client = impostor(
        &mut lab,
        "irssi",
        &["-c", "127.0.0.1", "-p", "6667"],
        &[("IMPOSTOR_TCP_CONNECT", "6667")],
    );
    let proxy = impostor(
        &mut lab,
        "3proxy",
        &["/etc/3proxy/3proxy.cfg"],
        &[("IMPOSTOR_TCP_LISTEN", "3128,1080")],
    );
    let vpn = impostor(
        &mut lab,
        "openvpn",
        &["--config", "/etc/openvpn/server.conf"],
        &[("IMPOSTOR_UDP_LISTEN", "1194")],
    );
    for port in [9001, 9030, 9050] {
        lab.wait_listening("tor", tor, "tcp", port);
    }
    lab.wait_listening("unrealircd", ircd, "tcp", 6667);
    lab.wait_connected("irssi", irc_client, 6667);
    lab.wait_listening("3proxy", proxy, "tcp", 1080);
    lab.wait_listening("openvpn", vpn, "udp", 1194);

    let report = scan(&[]);
    report.expect(&lab, "`tor` listening on 9001/9030/9050", tor, "tor");
    report.expect(&lab, "`unrealircd` listening on 6667/6697", ircd, "irc");
    report.expect(&lab, "`irssi` connected to 6667", irc_client, "irc");
    report.expect(&lab, "`3proxy` listening on 3128/1080", proxy, "proxy");
    report.expect(&lab, "`openvpn` bound to udp/1194", vpn, "vpn");
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn benign_controls_are_not_flagged() {
    const T: &str = "benign_controls_are_not_flagged";
    ready(T);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let Some(gzip) = common::which("gzip") else {
        skip(T, "gzip is not installed");
    };
    let Some(sleep) = common::which("sleep") else {
        skip(T, "sleep is not installed");
    };
    let mut lab = Lab::new(T, "ctl");
    // One offender, so that a scan that never looked into this namespace cannot pass.
    let miner = impostor(&mut lab, "xmrig", &XMRIG_ARGS, &[]);

    let http = lab.start(
        "http.server",
        Spawn::new(&python).args(["-m", "http.server", "8080", "--bind", "0.0.0.0"]),
    );
    // CPU-busy compression: a core's worth of work that is not mining.
    let gzip = lab.start(
        "gzip",
        Spawn::new(&gzip)
            .args(["-9", "-c"])
            .stdin_from("/dev/zero")
            .stdout_to("/dev/null"),
    );
    let sleeper = lab.start("sleep", Spawn::new(&sleep).arg("600"));
    lab.wait_listening("http.server", http, "tcp", 8080);

    let report = scan(&[]);
    report.expect(
        &lab,
        "xmrig (the offender among the controls)",
        miner,
        "mining",
    );
    for (what, pid) in [
        ("python3 -m http.server 8080", http),
        ("gzip -9 (CPU-busy)", gzip),
        ("sleep 600", sleeper),
    ] {
        assert!(
            common::alive(pid),
            "{T}: control {what} died before the scan ended"
        );
        report.expect_clean(&lab, what, pid);
    }
    // Nothing else in the namespace was flagged either.
    let others: Vec<String> = report
        .in_netns(lab.netns())
        .into_iter()
        .filter(|f| f["process"]["pid"].as_u64() != Some(u64::from(miner)))
        .map(common::describe)
        .collect();
    assert!(
        others.is_empty(),
        "{T}: findings in the namespace besides the miner: {others:#?}"
    );
}

const TEST_SIGNATURES: &str = r#"# Test-only signatures written by tests/real_proc.rs.

[[signature]]
id = "proxy.aupwtest_listener"
category = "proxy"
severity = "medium"
description = "aupwatch test canary listening publicly on tcp/47001"
aup = "test only"
[signature.match]
all = [
  { name = ["aupw-canary*"] },
  { listen = { port = [47001], protocol = "tcp", bind = "public" } },
]

[[signature]]
id = "irc.aupwtest_client"
category = "irc"
severity = "low"
description = "aupwatch test client connected to tcp/47001"
aup = "test only"
match = { remote = { port = [47001], protocol = "tcp", min = 1 } }
"#;

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn custom_signatures_tell_public_from_loopback_and_see_connections() {
    const T: &str = "custom_signatures_tell_public_from_loopback_and_see_connections";
    ready(T);
    let mut public = Lab::new(T, "sigpub");
    let mut local = Lab::new(T, "siglo");
    let sigdir = public.dir().join("signatures");
    public.write("signatures/aupwtest.toml", TEST_SIGNATURES);

    let canary = impostor(
        &mut public,
        "aupw-canary-pub",
        &[],
        &[("IMPOSTOR_TCP_LISTEN", "47001")],
    );
    let client = impostor(
        &mut public,
        "aupw-client",
        &[],
        &[("IMPOSTOR_TCP_CONNECT", "47001")],
    );
    // Same name and port, but bound to loopback only: not "public".
    let loopback = impostor(
        &mut local,
        "aupw-canary-lo",
        &[],
        &[
            ("IMPOSTOR_TCP_LISTEN", "47001"),
            ("IMPOSTOR_BIND", "127.0.0.1"),
        ],
    );
    // Public, but on another port.
    let other_port = impostor(
        &mut local,
        "aupw-canary-2",
        &[],
        &[("IMPOSTOR_TCP_LISTEN", "47002")],
    );
    public.wait_listening("aupw-canary-pub", canary, "tcp", 47001);
    public.wait_connected("aupw-client", client, 47001);
    local.wait_listening("aupw-canary-lo", loopback, "tcp", 47001);
    local.wait_listening("aupw-canary-2", other_port, "tcp", 47002);

    let report = scan(&["--signatures", &sigdir.to_string_lossy()]);
    assert_eq!(
        report.json["signatures"]["count"].as_u64(),
        Some(2),
        "{T}: --signatures DIR with 2 signatures must load exactly 2"
    );
    for f in report.findings() {
        let id = f["signature"].as_str().unwrap_or("");
        assert!(
            id == "proxy.aupwtest_listener" || id == "irc.aupwtest_client",
            "{T}: with --signatures only the test's signatures may match, got {}",
            common::describe(f)
        );
    }

    let f = report.expect(&public, "aupw-canary-pub on 0.0.0.0:47001", canary, "proxy");
    assert_eq!(
        f["signature"],
        "proxy.aupwtest_listener",
        "{T}: {}",
        common::describe(f)
    );
    let listen =
        f["sockets"].as_array().into_iter().flatten().any(|s| {
            s["protocol"] == "tcp" && s["local"] == "0.0.0.0:47001" && s["remote"].is_null()
        });
    assert!(
        listen,
        "{T}: the finding must list the listening socket 0.0.0.0:47001 (remote null): {}",
        serde_json::to_string(&f["sockets"]).unwrap_or_default()
    );
    let predicates: BTreeSet<&str> = f["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["predicate"].as_str())
        .collect();
    assert!(
        predicates.contains("name") && predicates.contains("listen"),
        "{T}: evidence must name both predicates of the `all`, got {predicates:?}"
    );

    let f = report.expect(
        &public,
        "aupw-client connected to 127.0.0.1:47001",
        client,
        "irc",
    );
    assert_eq!(
        f["signature"],
        "irc.aupwtest_client",
        "{T}: {}",
        common::describe(f)
    );
    let connected = f["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["protocol"] == "tcp" && s["remote"] == "127.0.0.1:47001");
    assert!(
        connected,
        "{T}: the finding must list the connection to 127.0.0.1:47001: {}",
        serde_json::to_string(&f["sockets"]).unwrap_or_default()
    );

    report.expect_clean(&local, "aupw-canary-lo bound to 127.0.0.1:47001", loopback);
    report.expect_clean(&local, "aupw-canary-2 on 0.0.0.0:47002", other_port);
    // The server side of the client's connection is not "connected to 47001" from the
    // listener's point of view (its remote is the client's ephemeral port).
    let listener_as_client = report
        .involving(canary)
        .into_iter()
        .any(|g| g["signature"] == "irc.aupwtest_client");
    assert!(
        !listener_as_client,
        "{T}: the listener was taken for a client of its own port"
    );
}

#[test]
fn an_invalid_signature_set_is_an_error() {
    const T: &str = "an_invalid_signature_set_is_an_error";
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = TEST_SIGNATURES.replace("severity = \"low\"", "severity = \"low\"\nno_such_key = 1");
    std::fs::write(dir.path().join("broken.toml"), bad).expect("write broken.toml");
    let report = scan_raw(&["--signatures", &dir.path().to_string_lossy()]);
    assert_eq!(
        report.code, 2,
        "{T}: a signature set with an unknown key must make scan exit 2; stderr: {}",
        report.stderr
    );
    assert!(
        report.stderr.contains("broken.toml"),
        "{T}: the error must name the file; stderr: {}",
        report.stderr
    );
}
