//! The open-proxy probe against real proxies: microsocks, Dante and Squid from Debian's
//! packages, each in a loopback-only network namespace of its own, found by
//! `aupwatch scan --json` run from the host's namespace (so the probe enters the lab's
//! namespace with setns), and by the agent running inside the lab's namespace (so the probe
//! runs without setns). Asserts the verdict, the protocol that answered, the address probed
//! and the finding's severity: `open` is high, `authenticated` / `restricted` low, and a plain
//! HTTP server is never called open.
//!
//! Network rule: every daemon listens inside its lab's namespace, which has only loopback; the
//! probe connects only to the listener's loopback address there and names only 127.0.0.1.

#[path = "common/agent.rs"]
mod agent_util;
mod common;

use agent_util::{brief, finding, has_signature, match_of, pid_of, Agent, Opts, Setup};
use common::{fill, prerequisites, python3, scan, setup, skip, start_danted, Lab, Report, Spawn};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const SQUID_CONF: &str = include_str!("common/daemons/squid.conf");
const DANTED_CONF: &str = include_str!("common/daemons/danted.conf");

/// The finding of signature `sig` for `pid` in the lab, checked against /proc like every
/// daemon test's, with its probe result: verdict, protocol, the address probed (127.0.0.1
/// for a listener on 0.0.0.0 in a namespace with only loopback, the namespace's own
/// non-loopback address when it has one) and the severity that follows.
fn expect_probe<'a>(
    report: &'a Report,
    lab: &Lab,
    what: &str,
    pid: u32,
    sig: &str,
    want: (&str, &str, &str, &str),
) -> &'a Value {
    let (verdict, protocol, address, severity) = want;
    let category = sig.split('.').next().unwrap_or_default();
    let f = report.expect(lab, what, pid, category);
    let f = report
        .in_netns(lab.netns())
        .into_iter()
        .find(|g| g["signature"] == sig && g["process"]["pid"].as_u64() == Some(u64::from(pid)))
        .unwrap_or_else(|| {
            lab.fail(&format!(
                "{what}: no `{sig}` finding (found {})\n{}",
                common::describe(f),
                report.explain(lab)
            ))
        });
    let p = &f["probe"];
    let got = (
        p["verdict"].as_str(),
        p["protocol"].as_str(),
        p["address"].as_str(),
        f["severity"].as_str(),
    );
    let expected = (Some(verdict), Some(protocol), Some(address), Some(severity));
    if got != expected {
        lab.fail(&format!(
            "{what}: probe (verdict, protocol, address, severity) {got:?}, expected {expected:?}\nfinding: {}",
            serde_json::to_string_pretty(f).unwrap_or_default()
        ));
    }
    assert_eq!(p["netns"].as_u64(), Some(lab.netns()), "{p:#}");
    let listeners: Vec<u64> = f["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["state"] == "listen")
        .filter_map(|s| s["inode"].as_u64())
        .collect();
    assert!(
        p["inode"].as_u64().is_some_and(|i| listeners.contains(&i)),
        "{what}: the probed socket is one of the finding's listeners: {p:#} vs {listeners:?}"
    );
    assert!(
        p["evidence"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: probe evidence: {p:#}"
    );
    println!("{what}: {}", p["evidence"]);
    f
}

fn microsocks(test: &str, short: &str, port: u16, auth: bool) -> (Lab, u32) {
    let bins = prerequisites(test, &["microsocks"]);
    let mut lab = Lab::new(test, short);
    let mut spawn = Spawn::new(&bins[0]).args(["-i", "0.0.0.0", "-p", &port.to_string()]);
    if auth {
        spawn = spawn.args(["-u", "aupwuser", "-P", "aupwpass"]);
    }
    let pid = lab.start("microsocks", spawn);
    lab.wait_listening("microsocks", pid, "tcp", port);
    (lab, pid)
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn microsocks_without_auth_is_open() {
    const T: &str = "microsocks_without_auth_is_open";
    let (lab, pid) = microsocks(T, "pmso", 1080, false);
    let report = scan(&[]);
    expect_probe(
        &report,
        &lab,
        "microsocks without auth",
        pid,
        "proxy.software-public",
        ("open", "socks5", "127.0.0.1:1080", "high"),
    );
    // Without probes the same finding keeps its signature's severity and has no probe.
    let report = scan(&["--no-probe"]);
    let f = report.expect(&lab, "microsocks (--no-probe)", pid, "proxy");
    assert!(f["probe"].is_null(), "--no-probe: {f:#}");
    assert_eq!(f["severity"], "medium", "{f:#}");
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn microsocks_with_password_is_authenticated() {
    const T: &str = "microsocks_with_password_is_authenticated";
    let (lab, pid) = microsocks(T, "pmsa", 1080, true);
    let report = scan(&[]);
    expect_probe(
        &report,
        &lab,
        "microsocks -u/-P",
        pid,
        "proxy.software-public",
        ("authenticated", "socks5", "127.0.0.1:1080", "low"),
    );
}

fn danted(test: &str, short: &str, method: &str) -> (Lab, u32) {
    let bins = prerequisites(test, &["danted"]);
    let danted = &bins[0];
    let mut lab = Lab::new(test, short);
    let dir = lab.writable_dir("danted");
    let conf =
        fill(DANTED_CONF, &dir).replace("socksmethod: none", &format!("socksmethod: {method}"));
    let pid = start_danted(&mut lab, danted, &dir, &conf);
    (lab, pid)
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn danted_without_auth_is_open() {
    const T: &str = "danted_without_auth_is_open";
    let (lab, pid) = danted(T, "pdno", "none");
    let report = scan(&[]);
    expect_probe(
        &report,
        &lab,
        "danted, socksmethod none",
        pid,
        "proxy.software-public",
        ("open", "socks5", "127.0.0.1:1080", "high"),
    );
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn danted_with_username_is_authenticated() {
    const T: &str = "danted_with_username_is_authenticated";
    let (lab, pid) = danted(T, "pdau", "username");
    let report = scan(&[]);
    expect_probe(
        &report,
        &lab,
        "danted, socksmethod username",
        pid,
        "proxy.software-public",
        ("authenticated", "socks5", "127.0.0.1:1080", "low"),
    );
}

/// Squid with `squid.conf` edited by `edit`, in its own lab; returns the lab and squid's pid.
fn squid(test: &str, short: &str, edit: impl Fn(String, &Path) -> String) -> (Lab, u32) {
    let bins = prerequisites(test, &["squid"]);
    let squid = &bins[0];
    let mut lab = Lab::new(test, short);
    let dir = lab.writable_dir("squid");
    let conf = edit(fill(SQUID_CONF, &dir), &dir);
    let conf = lab.write("squid/squid.conf", &conf);
    let conf = conf.to_string_lossy();
    setup(&lab, "squid -k parse", squid, &["-k", "parse", "-f", &conf]);
    let pid = lab.start("squid", Spawn::new(squid).args(["-N", "-f", &*conf]));
    lab.wait_listening("squid", pid, "tcp", 3128);
    (lab, pid)
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn squid_allow_all_is_open() {
    const T: &str = "squid_allow_all_is_open";
    let (lab, pid) = squid(T, "psqo", |c, _| c);
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "squid, http_access allow all",
        pid,
        "proxy.software-public",
        ("open", "http", "127.0.0.1:3128", "high"),
    );
    // The proof: the canary saw it connect, and bytes went through the tunnel both ways.
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("200 Connection established")
            && evidence.contains("the canary saw 1 connection(s)")
            && evidence.contains("the canary's answer came back"),
        "{evidence}"
    );
    assert!(
        evidence.starts_with("probed from 127.0.0.1: the namespace has no non-loopback address"),
        "{evidence}"
    );
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn squid_deny_all_is_restricted() {
    const T: &str = "squid_deny_all_is_restricted";
    let (lab, pid) = squid(T, "psqr", |c, _| {
        c.replace("http_access allow all", "http_access deny all")
    });
    let report = scan(&[]);
    expect_probe(
        &report,
        &lab,
        "squid, http_access deny all",
        pid,
        "proxy.software-public",
        ("restricted", "http", "127.0.0.1:3128", "low"),
    );
}

#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn squid_with_basic_auth_is_authenticated() {
    const T: &str = "squid_with_basic_auth_is_authenticated";
    let helper = Path::new("/usr/lib/squid/basic_ncsa_auth");
    if !helper.exists() {
        skip(T, "/usr/lib/squid/basic_ncsa_auth is not installed");
    }
    let (lab, pid) = squid(T, "psqa", |c, dir| {
        // One user whose password nobody sends: the probe never offers credentials.
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "aupwuser:$apr1$aupw$0000000000000000000000\n")
            .expect("write the password file");
        c.replace(
            "http_access allow all",
            &format!(
                "auth_param basic program {} {}\nauth_param basic children 1 startup=0 idle=1\nacl users proxy_auth REQUIRED\nhttp_access allow users\nhttp_access deny all",
                helper.display(),
                passwd.display()
            ),
        )
    });
    let report = scan(&[]);
    expect_probe(
        &report,
        &lab,
        "squid, basic auth required",
        pid,
        "proxy.software-public",
        ("authenticated", "http", "127.0.0.1:3128", "low"),
    );
}

/// `python3 -m http.server` on Tinyproxy's port 8888: the port signature asks the probe,
/// which must find an HTTP server, not a proxy; the finding stays low.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn http_server_on_a_proxy_port_is_not_a_proxy() {
    const T: &str = "http_server_on_a_proxy_port_is_not_a_proxy";
    prerequisites(T, &[]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let mut lab = Lab::new(T, "phttp");
    let pid = lab.start(
        "http.server",
        Spawn::new(&python).args(["-m", "http.server", "--bind", "0.0.0.0", "8888"]),
    );
    lab.wait_listening("http.server", pid, "tcp", 8888);
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "python3 -m http.server 8888",
        pid,
        "proxy.proxy-port-public",
        ("not_proxy", "http", "127.0.0.1:8888", "low"),
    );
    // Whatever other findings the process has: no probe calls it open, no proxy finding is
    // high.
    for g in report.involving(pid) {
        assert_ne!(g["probe"]["verdict"], "open", "{g:#}");
        if g["category"] == "proxy" {
            assert_ne!(g["severity"], "high", "{g:#}");
        }
    }
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(evidence.contains(" 501 "), "{evidence}");
}

/// microsocks copied under another name onto Privoxy's port 8118: no name signature knows
/// it, the port signature (low) asks the probe, and `open` makes it high.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn renamed_open_proxy_on_a_proxy_port_is_open() {
    const T: &str = "renamed_open_proxy_on_a_proxy_port_is_open";
    let bins = prerequisites(T, &["microsocks"]);
    let mut lab = Lab::new(T, "pren");
    let bin = lab.dir().join("relayd");
    common::install_executable(&bins[0], &bin);
    let pid = lab.start(
        "relayd",
        Spawn::new(&bin).args(["-i", "0.0.0.0", "-p", "8118"]),
    );
    lab.wait_listening("relayd", pid, "tcp", 8118);
    let report = scan(&[]);
    expect_probe(
        &report,
        &lab,
        "microsocks renamed relayd on 8118",
        pid,
        "proxy.proxy-port-public",
        ("open", "socks5", "127.0.0.1:8118", "high"),
    );
}

/// The agent, inside a lab namespace, probes the microsocks next to it without setns and the
/// one in another lab with it; the status socket and the event log carry the results.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn agent_probes_its_own_and_other_namespaces() {
    const T: &str = "agent_probes_its_own_and_other_namespaces";
    let (lab, open_pid) = microsocks(T, "pago", 1080, false);
    let (other, auth_pid) = microsocks(T, "pagx", 1080, true);
    let s = Setup::new(lab.dir(), "pp");
    s.write_config(&Opts::default());
    let mut agent = Agent::start(T, &lab, &s);
    let sig = "proxy.software-public";
    let doc = agent.wait_status("both microsocks probed", |d| {
        let verdict = |pid| {
            finding(d, sig, pid)
                .and_then(|t| match_of(&t["finding"], sig))
                .map(|m| m["probe"]["verdict"].clone())
        };
        verdict(open_pid) == Some("open".into())
            && verdict(auth_pid) == Some("authenticated".into())
    });
    // The signature's match carries the probe and the severity it moved; the verdict is at
    // least as severe as its match.
    let open_f = &finding(&doc, sig, open_pid).expect("found")["finding"];
    let open = match_of(open_f, sig).expect("the signature's match");
    assert_eq!(open["severity"], "high", "{open_f:#}");
    assert_eq!(open_f["severity"], "high", "{open_f:#}");
    assert_eq!(open["probe"]["netns"].as_u64(), Some(lab.netns()));
    let auth_f = &finding(&doc, sig, auth_pid).expect("found")["finding"];
    let auth = match_of(auth_f, sig).expect("the signature's match");
    assert_eq!(auth["severity"], "low", "{auth_f:#}");
    assert_eq!(auth["probe"]["netns"].as_u64(), Some(other.netns()));
    assert!(
        doc["last_scan"]["probe_candidates"].as_u64() >= Some(2),
        "{}",
        brief(&doc)
    );
    // The `new` events in the event log already carry the probe result.
    let events = s.events();
    for (pid, verdict) in [(open_pid, "open"), (auth_pid, "authenticated")] {
        let new = events.iter().find(|e| {
            e["kind"] == "new"
                && has_signature(&e["tracked"]["finding"], sig)
                && pid_of(&e["tracked"]["finding"]) == Some(pid)
        });
        let Some(new) = new else {
            agent.fail(&format!("no `new` event for pid {pid} in {events:#?}"));
        };
        assert_eq!(
            match_of(&new["tracked"]["finding"], sig).map(|m| &m["probe"]["verdict"]),
            Some(&Value::from(verdict)),
            "{new:#}"
        );
    }
}

/// Without CAP_SYS_ADMIN (the systemd unit's default) the probe cannot enter the lab's
/// namespace: the scan still succeeds, the finding says why it was not probed and keeps its
/// signature's severity.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn without_cap_sys_admin_a_foreign_namespace_is_reported_not_probed() {
    const T: &str = "without_cap_sys_admin_a_foreign_namespace_is_reported_not_probed";
    let setpriv = prerequisites(T, &["setpriv"])[0].clone();
    let (lab, pid) = microsocks(T, "pcap", 1080, false);
    let out = Command::new(&setpriv)
        .args([
            "--bounding-set",
            "-sys_admin",
            "--inh-caps",
            "-sys_admin",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_aupwatch"))
        .args(["scan", "--json", "--sample", "0", "--probe-netns"])
        .arg(lab.netns().to_string())
        .output()
        .unwrap_or_else(|e| lab.fail(&format!("cannot run setpriv: {e}")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings, not an error: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text
    );
    let json: Value = serde_json::from_str(&text).expect("scan --json prints JSON");
    let f = json["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| {
            f["signature"] == "proxy.software-public"
                && f["process"]["pid"].as_u64() == Some(u64::from(pid))
        })
        .unwrap_or_else(|| lab.fail(&format!("microsocks not found: {text}")));
    let p = &f["probe"];
    assert_eq!(p["verdict"], "not_probed", "{f:#}");
    let evidence = p["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.starts_with(&format!(
            "cannot enter network namespace {} (setns): EPERM",
            lab.netns()
        )),
        "{evidence}"
    );
    assert_eq!(f["severity"], "medium", "{f:#}");
}

/// The documentation address the source-address tests give their namespace's own `lo`.
const OUTSIDE: &str = "192.0.2.10";

const TINYPROXY_CONF: &str = include_str!("common/daemons/tinyproxy.conf");
const UNABLE_TO_CONNECT: &str = include_str!("common/daemons/unable_to_connect.py");

/// Tinyproxy with `extra` appended to its configuration, in its own lab; with `outside`
/// the lab's `lo` also gets [`OUTSIDE`]. Returns the lab and tinyproxy's pid.
fn tinyproxy(test: &str, short: &str, extra: &str, outside: bool) -> (Lab, u32) {
    let bins = prerequisites(test, &["tinyproxy"]);
    let mut lab = Lab::new(test, short);
    if outside {
        lab.add_local_address(OUTSIDE.parse().expect("ip"));
    }
    let dir = lab.writable_dir("tinyproxy");
    let conf = format!("{}{extra}\n", fill(TINYPROXY_CONF, &dir));
    let conf = lab.write("tinyproxy/tinyproxy.conf", &conf);
    let pid = lab.start(
        "tinyproxy",
        Spawn::new(&bins[0]).args(["-d", "-c"]).arg(&conf),
    );
    lab.wait_listening("tinyproxy", pid, "tcp", 8888);
    (lab, pid)
}

/// Tinyproxy with no `Allow` line serves everyone. Its error page for a failed connection
/// ("500 Unable to connect") once made the probe call it an HTTP server; the canary proves
/// it open, both from loopback and from the namespace's non-loopback address.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn tinyproxy_open_to_all_is_open() {
    const T: &str = "tinyproxy_open_to_all_is_open";
    for (short, outside, address) in [
        ("ptpo", false, "127.0.0.1:8888".to_string()),
        ("ptpx", true, format!("{OUTSIDE}:8888")),
    ] {
        let (lab, pid) = tinyproxy(T, short, "", outside);
        let report = scan(&[]);
        let f = expect_probe(
            &report,
            &lab,
            "tinyproxy without Allow",
            pid,
            "proxy.software-public",
            ("open", "http", &address, "high"),
        );
        let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
        let from = address.split(':').next().unwrap_or_default();
        assert!(
            evidence.starts_with(&format!("probed from {from}"))
                && evidence.contains("the canary's answer came back"),
            "{evidence}"
        );
    }
}

/// Tinyproxy admitting only 10.0.0.0/8, probed from the namespace's own non-loopback
/// address: refused, so restricted (which the AUP allows) and low.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn tinyproxy_allowing_a_network_is_restricted() {
    const T: &str = "tinyproxy_allowing_a_network_is_restricted";
    let (lab, pid) = tinyproxy(T, "ptpr", "Allow 10.0.0.0/8", true);
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "tinyproxy, Allow 10.0.0.0/8",
        pid,
        "proxy.software-public",
        ("restricted", "http", &format!("{OUTSIDE}:8888"), "low"),
    );
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.starts_with(&format!("probed from {OUTSIDE}"))
            && evidence.contains("the canary saw no connection"),
        "{evidence}"
    );
}

/// The `acl` and `http_access` lines of the installed Debian `/etc/squid/squid.conf`, in
/// order (its `include` of conf.d left out): `http_access allow localhost`, `deny all`.
fn debian_squid_access() -> String {
    let text = std::fs::read_to_string("/etc/squid/squid.conf")
        .unwrap_or_else(|e| panic!("read Debian's /etc/squid/squid.conf: {e}"));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("acl ") || l.starts_with("http_access "))
        .collect();
    assert!(
        lines.contains(&"http_access allow localhost")
            && lines.last() == Some(&"http_access deny all"),
        "not Debian's default access rules: {lines:#?}"
    );
    lines.join("\n")
}

/// Squid with Debian's default access rules admits only localhost. From 127.0.0.1 (no other
/// address in the namespace) the probe is localhost and gets served: open, and the evidence
/// says why. From the namespace's own non-loopback address it is a stranger: restricted.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn squid_debian_default_is_restricted_from_outside() {
    const T: &str = "squid_debian_default_is_restricted_from_outside";
    prerequisites(T, &["squid"]);
    let access = debian_squid_access();
    let (lab, pid) = squid(T, "psqd", |c, _| {
        c.replace("http_access allow all", &access)
    });
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "squid, Debian default, probed from loopback",
        pid,
        "proxy.software-public",
        ("open", "http", "127.0.0.1:3128", "high"),
    );
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("no non-loopback address") && evidence.contains("GET http://127.0.0.1:"),
        "{evidence}"
    );
    lab.add_local_address(OUTSIDE.parse().expect("ip"));
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "squid, Debian default, probed from 192.0.2.10",
        pid,
        "proxy.software-public",
        ("restricted", "http", &format!("{OUTSIDE}:3128"), "low"),
    );
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.starts_with(&format!("probed from {OUTSIDE}")) && evidence.contains(" 403 "),
        "{evidence}"
    );
}

/// An HTTP server on Tinyproxy's port whose every answer is Tinyproxy's "500 Unable to
/// connect" page: it never connects anywhere, the canary sees nothing, not a proxy.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn http_server_saying_unable_to_connect_is_not_a_proxy() {
    const T: &str = "http_server_saying_unable_to_connect_is_not_a_proxy";
    prerequisites(T, &[]);
    let Some(python) = python3() else {
        skip(T, "python3 is not installed");
    };
    let mut lab = Lab::new(T, "putc");
    let script = lab.write("unable_to_connect.py", UNABLE_TO_CONNECT);
    let pid = lab.start(
        "unable_to_connect",
        Spawn::new(&python).arg(&script).arg("8888"),
    );
    lab.wait_listening("unable_to_connect", pid, "tcp", 8888);
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "HTTP server answering 500 Unable to connect",
        pid,
        "proxy.proxy-port-public",
        ("not_proxy", "http", "127.0.0.1:8888", "low"),
    );
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("500 Unable to connect")
            && evidence.contains("the canary saw no connection"),
        "{evidence}"
    );
}

/// microsocks copied as `node-exporter` onto port 31337: no signature suspects it (not a
/// proxy name, not a proxy port), but `--probes all` (the default) asks every public TCP
/// listener, and `open` alone is a `proxy.verified-open` finding, high. With
/// `--probes suspected` nothing finds it.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn renamed_open_proxy_on_an_odd_port_is_verified_open() {
    const T: &str = "renamed_open_proxy_on_an_odd_port_is_verified_open";
    let bins = prerequisites(T, &["microsocks"]);
    let mut lab = Lab::new(T, "pvo");
    let bin = lab.dir().join("node-exporter");
    common::install_executable(&bins[0], &bin);
    let pid = lab.start(
        "node-exporter",
        Spawn::new(&bin).args(["-i", "0.0.0.0", "-p", "31337"]),
    );
    lab.wait_listening("node-exporter", pid, "tcp", 31337);
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "microsocks renamed node-exporter on 31337",
        pid,
        "proxy.verified-open",
        ("open", "socks5", "127.0.0.1:31337", "high"),
    );
    assert_eq!(
        f["evidence"][0]["value"], "open: socks5 on 0.0.0.0:31337",
        "{f:#}"
    );
    // The verdicts of `scan --json` carry it too: one proxy verdict, its match inside.
    let verdict = report.json["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["subject"]["pid"].as_u64() == Some(u64::from(pid)))
        .unwrap_or_else(|| lab.fail(&format!("no verdict for {pid}: {}", report.json)));
    assert_eq!(
        (&verdict["category"], &verdict["severity"]),
        (&Value::from("proxy"), &Value::from("high")),
        "{verdict:#}"
    );
    assert_eq!(
        verdict["matches"][0]["probe"]["verdict"], "open",
        "{verdict:#}"
    );
    let report = scan(&["--probes", "suspected"]);
    report.expect_clean(&lab, "node-exporter with --probes suspected", pid);
}

const POSTFIX_MAIN: &str = include_str!("common/daemons/postfix-main.cf");
const POSTFIX_MASTER: &str = include_str!("common/daemons/postfix-master.cf");

/// A Postfix instance of its own (its master, run in the foreground with `-d`) in a lab whose
/// `lo` also has [`OUTSIDE`], with `mynetworks` as given; returns the lab and master's pid.
fn postfix(test: &str, short: &str, mynetworks: &str) -> (Lab, u32) {
    let bins = prerequisites(test, &["postfix", "chown"]);
    let master = Path::new("/usr/lib/postfix/sbin/master");
    if !master.exists() {
        skip(test, "/usr/lib/postfix/sbin/master is not installed");
    }
    let mut lab = Lab::new(test, short);
    lab.add_local_address(OUTSIDE.parse().expect("ip"));
    let dir = lab.dir().join("postfix");
    for sub in ["etc", "spool", "data"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir postfix");
    }
    setup(
        &lab,
        "chown postfix data",
        &bins[1],
        &["postfix", &dir.join("data").to_string_lossy()],
    );
    let main = fill(POSTFIX_MAIN, &dir).replace("@MYNETWORKS@", mynetworks);
    let etc = lab.write("postfix/etc/main.cf", &main);
    lab.write("postfix/etc/master.cf", POSTFIX_MASTER);
    let etc = etc.parent().expect("etc").to_string_lossy().into_owned();
    // Creates the queue directories with their owners and modes.
    setup(&lab, "postfix check", &bins[0], &["-c", &etc, "check"]);
    let pid = lab.start("postfix", Spawn::new(master).args(["-d", "-c", &etc]));
    lab.wait_listening("postfix", pid, "tcp", 25);
    (lab, pid)
}

/// Postfix with Debian's default `mynetworks` (loopback only) and its default relay rules
/// (`permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination`), probed from
/// 192.0.2.10: "454 4.7.1 Relay access denied" to RCPT TO a foreign domain, restricted.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn postfix_default_is_not_an_open_relay() {
    const T: &str = "postfix_default_is_not_an_open_relay";
    let (lab, pid) = postfix(T, "ppfd", "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128");
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "postfix, Debian's mynetworks",
        pid,
        "mail.mta-public",
        ("restricted", "smtp", &format!("{OUTSIDE}:25"), "info"),
    );
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.starts_with(&format!("probed from {OUTSIDE}"))
            && evidence.contains("Relay access denied"),
        "{evidence}"
    );
}

/// Postfix with `mynetworks = 0.0.0.0/0`: every client is "trusted", so it relays for
/// anyone: RCPT TO a foreign domain is accepted (the probe stops there), open, high.
#[test]
#[ignore = "needs root, network namespaces and the packages .ci/run installs; run with --include-ignored (CI does)"]
fn postfix_trusting_every_network_is_an_open_relay() {
    const T: &str = "postfix_trusting_every_network_is_an_open_relay";
    let (lab, pid) = postfix(T, "ppfo", "0.0.0.0/0");
    let report = scan(&[]);
    let f = expect_probe(
        &report,
        &lab,
        "postfix, mynetworks = 0.0.0.0/0",
        pid,
        "mail.mta-public",
        ("open", "smtp", &format!("{OUTSIDE}:25"), "high"),
    );
    let evidence = f["probe"]["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("RCPT TO → 250") && evidence.contains("no DATA was sent"),
        "{evidence}"
    );
}
