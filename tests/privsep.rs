//! Privilege separation for other network namespaces: the real `aupwatch netns-helper`
//! binary, started with CAP_SYS_ADMIN as its only capability (`setpriv --bounding-set`), on
//! a socket in a temporary directory, and the agent's side — `aupwatch scan` and
//! `aupwatch inventory` run as an unprivileged user with only CAP_SYS_PTRACE and
//! CAP_DAC_READ_SEARCH (`setpriv --reuid … --ambient-caps …`), so it cannot `setns` itself —
//! reading and probing a loopback-only namespace through it; and the helper refusing what it
//! must not serve (not a namespace, another kind of namespace, an unknown kind, a malformed
//! request, a peer that is not allowed).
//!
//! Network rule: the only listener (microsocks) runs inside the lab's loopback-only
//! namespace; the probe connects to 127.0.0.1 there; the sockets the helper hands the test
//! are created in the lab's namespace and bound to 127.0.0.1 only.

#[path = "common/agent.rs"]
mod agent_util;
mod common;

use aupwatch::netns_helper::{Connection, HelperError, SocketKind, Status};
use common::{install_executable, net_table, prerequisites, python3, scan_command, Lab, Spawn};
use serde_json::Value;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The helper process; killed and reaped on drop.
struct Helper {
    child: Child,
    socket: PathBuf,
}

impl Helper {
    /// Starts `aupwatch netns-helper --socket DIR/netns.sock --allow ALLOW` with
    /// CAP_SYS_ADMIN as its only capability, and waits for its socket.
    fn start(setpriv: &Path, dir: &Path, allow: &str, idle_exit: u64) -> Helper {
        let socket = dir.join("netns.sock");
        let log = std::fs::File::create(dir.join("helper.log")).expect("helper log");
        let child = Command::new(setpriv)
            .args([
                "--bounding-set=-all,+sys_admin",
                "--inh-caps=-all,+sys_admin",
                "--",
            ])
            .arg(common::aupwatch_bin())
            .args(["netns-helper", "--allow", allow, "--idle-exit"])
            .arg(idle_exit.to_string())
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start aupwatch netns-helper");
        let helper = Helper { child, socket };
        let started = Instant::now();
        while !helper.socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the helper did not create {} ({})",
                helper.socket.display(),
                helper.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        helper
    }

    fn log(&self) -> String {
        let dir = self.socket.parent().unwrap_or(Path::new("/"));
        std::fs::read_to_string(dir.join("helper.log")).unwrap_or_default()
    }

    /// The helper's effective capabilities (`CapEff` of /proc/<pid>/status).
    fn cap_eff(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(u64::MAX)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CAP_SYS_ADMIN: u64 = 1 << 21;

/// `setpriv` arguments that run a program as `uid`:`uid` with no groups and exactly
/// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (ambient): the agent unit's privileges.
fn as_agent(uid: u32) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--inh-caps=-all,+sys_ptrace,+dac_read_search".into(),
        "--ambient-caps=-all,+sys_ptrace,+dac_read_search".into(),
        "--".into(),
    ]
}

/// The aupwatch binary as `uid` can run it: the build's, or a copy in `dir`.
fn binary_for(setpriv: &Path, uid: u32, dir: &Path) -> PathBuf {
    let built = PathBuf::from(common::aupwatch_bin());
    let ok = Command::new(setpriv)
        .args(as_agent(uid))
        .arg(&built)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return built;
    }
    let copy = dir.join("aupwatch");
    install_executable(&built, &copy);
    copy
}

/// `aupwatch inventory` as the agent user (through `wrap`, when given), with this helper
/// socket: the document.
fn inventory_as(setpriv: &Path, uid: u32, wrap: Option<&Path>, bin: &Path, helper: &Path) -> Value {
    let out = Command::new(setpriv)
        .args(as_agent(uid))
        .args(wrap)
        .arg(bin)
        .arg("inventory")
        .arg("--netns-helper")
        .arg(helper)
        .stdin(Stdio::null())
        .output()
        .expect("run aupwatch inventory");
    assert!(
        out.status.success(),
        "aupwatch inventory as uid {uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inventory JSON")
}

/// How the inventory `doc` read namespace `netns`'s sockets (`socket_sources` entry).
fn source_of(doc: &Value, netns: u64) -> Value {
    doc["socket_sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["netns"].as_u64() == Some(netns))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Whether the inventory `doc` has a listener on 0.0.0.0:`port` in namespace `netns`.
fn listens(doc: &Value, netns: u64, port: u16) -> bool {
    doc["sockets"].as_array().into_iter().flatten().any(|s| {
        s["netns"].as_u64() == Some(netns)
            && s["state"] == "listen"
            && s["local"].as_str() == Some(&format!("0.0.0.0:{port}"))
    })
}

/// The probe result of the microsocks finding in a scan as the agent user.
fn probe_as(setpriv: &Path, uid: u32, bin: &Path, helper: &Path, lab: &Lab, pid: u32) -> Value {
    let mut cmd = Command::new(setpriv);
    cmd.args(as_agent(uid))
        .arg(bin)
        .args(["scan", "--json", "--sample", "1", "--netns-helper"])
        .arg(helper);
    let report = scan_command(cmd, &format!("aupwatch scan as uid {uid}"));
    let f = report.expect(lab, "microsocks", pid, "proxy");
    f.clone()
}

#[test]
#[ignore = "needs root, network namespaces, setpriv and microsocks; run with --include-ignored (CI does)"]
fn an_agent_without_cap_sys_admin_reads_and_probes_a_namespace_through_the_helper() {
    const T: &str =
        "an_agent_without_cap_sys_admin_reads_and_probes_a_namespace_through_the_helper";
    let bins = prerequisites(T, &["setpriv", "microsocks"]);
    let (setpriv, microsocks) = (&bins[0], &bins[1]);
    let uid = 64_201;
    let mut lab = Lab::new(T, "psag");
    let pid = lab.start(
        "microsocks",
        Spawn::new(microsocks).args(["-i", "0.0.0.0", "-p", "1080"]),
    );
    lab.wait_listening("microsocks", pid, "tcp", 1080);
    let bin = binary_for(setpriv, uid, lab.dir());

    // Without a helper the agent's privileges do not reach into the lab: no setns.
    let absent = lab.dir().join("absent.sock");
    let source = source_of(
        &inventory_as(setpriv, uid, None, &bin, &absent),
        lab.netns(),
    );
    assert_eq!(source["source"], "proc_net", "without the helper: {source}");
    assert!(
        source["fallback_reason"]
            .as_str()
            .is_some_and(|r| r.contains("setns") && r.contains("EPERM")),
        "without the helper the agent cannot enter: {source}"
    );
    let f = probe_as(setpriv, uid, &bin, &absent, &lab, pid);
    let p = &f["probe"];
    assert_eq!(p["verdict"], "not_probed", "without the helper: {f:#}");
    assert!(
        p["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("(setns): EPERM")),
        "{p:#}"
    );
    assert_eq!(f["severity"], "medium", "{f:#}");

    // The helper: CAP_SYS_ADMIN and nothing else; its socket root:<agent group> 0660.
    let helper = Helper::start(setpriv, lab.dir(), &uid.to_string(), 0);
    assert_eq!(
        helper.cap_eff(),
        CAP_SYS_ADMIN,
        "the helper's only capability"
    );
    std::os::unix::fs::chown(&helper.socket, Some(0), Some(uid)).expect("chown the socket");
    let mode = std::fs::metadata(&helper.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "the helper's socket mode");

    let doc = inventory_as(setpriv, uid, None, &bin, &helper.socket);
    let source = source_of(&doc, lab.netns());
    assert_eq!(
        source["source"], "sock_diag",
        "through the helper: {source}"
    );
    assert!(
        listens(&doc, lab.netns(), 1080),
        "the lab's listener on 0.0.0.0:1080 is read through sock_diag"
    );

    let f = probe_as(setpriv, uid, &bin, &helper.socket, &lab, pid);
    let p = &f["probe"];
    let got = (
        p["verdict"].as_str(),
        p["protocol"].as_str(),
        p["address"].as_str(),
        f["severity"].as_str(),
    );
    assert_eq!(
        got,
        (
            Some("open"),
            Some("socks5"),
            Some("127.0.0.1:1080"),
            Some("high")
        ),
        "through the helper: {f:#}\nhelper log: {}",
        helper.log()
    );
    assert_eq!(p["netns"].as_u64(), Some(lab.netns()), "{p:#}");
    println!("probe through the helper: {}", p["evidence"]);
}

/// What the stranger script prints: the reply's bytes in hex and how many descriptors came
/// with it.
const CLIENT_PY: &str = r#"
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
fd = os.open("/proc/self/ns/net", os.O_RDONLY)
s.sendmsg([b"\x02"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
data, anc, flags, addr = s.recvmsg(16, socket.CMSG_SPACE(4 * 4))
fds = sum(len(d) // 4 for (l, t, d) in anc if l == socket.SOL_SOCKET and t == socket.SCM_RIGHTS)
print(data.hex(), fds)
"#;

fn refused(r: Result<std::os::fd::OwnedFd, HelperError>) -> (Status, i32) {
    match r {
        Err(HelperError::Refused { status, errno, .. }) => (status, errno),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
#[ignore = "needs root, network namespaces, setpriv and python3; run with --include-ignored (CI does)"]
fn the_helper_refuses_what_it_must_not_serve() {
    const T: &str = "the_helper_refuses_what_it_must_not_serve";
    let bins = prerequisites(T, &["setpriv", "sleep"]);
    let (setpriv, sleep) = (&bins[0], &bins[1]);
    let python = python3().unwrap_or_else(|| common::skip(T, "python3 is not installed"));
    let (allowed, stranger) = (64_202, 64_203);
    let mut lab = Lab::new(T, "psrf");
    let sleeper = lab.start("sleep", Spawn::new(sleep).arg("300"));
    let helper = Helper::start(setpriv, lab.dir(), &allowed.to_string(), 0);
    // Anyone may connect to the file here: the helper's own peer check must refuse.
    std::fs::set_permissions(&helper.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod the socket");

    let mut conn = Connection::open(&helper.socket).expect("connect as root");
    let lab_ns = std::fs::File::open(format!("/run/netns/{}", lab.name())).expect("lab ns");
    let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
    let uts = std::fs::File::open("/proc/self/ns/uts").expect("uts ns");

    let (status, _) = refused(conn.socket(devnull.as_fd(), SocketKind::Tcp4));
    assert_eq!(status, Status::NotNetns, "/dev/null");
    let (status, errno) = refused(conn.socket(uts.as_fd(), SocketKind::Tcp4));
    assert_eq!(
        (status, errno),
        (Status::NotNetns, 22),
        "a UTS namespace: setns EINVAL"
    );
    let (status, _) = refused(conn.raw_request(&[9], Some(lab_ns.as_fd())));
    assert_eq!(status, Status::UnknownKind, "kind 9");
    let (status, _) = refused(conn.raw_request(&[2, 0], Some(lab_ns.as_fd())));
    assert_eq!(status, Status::Malformed, "two bytes");
    let (status, _) = refused(conn.raw_request(&[2], None));
    assert_eq!(status, Status::Malformed, "no descriptor");
    let again = devnull.try_clone().expect("dup /dev/null");
    let (status, _) = refused(conn.raw_request(&[2], Some(again.as_fd())));
    assert_eq!(
        status,
        Status::NotNetns,
        "still answering on the same connection"
    );

    // A good request on the same connection: a TCP socket that lives in the lab.
    let sock = conn
        .socket(lab_ns.as_fd(), SocketKind::Tcp4)
        .expect("a TCP socket in the lab");
    let listener = bind_loopback(sock);
    let port = listener.local_addr().expect("addr").port();
    let in_lab = net_table(sleeper)
        .iter()
        .any(|s| s.listening() && s.local.port() == port);
    let here = net_table(std::process::id())
        .iter()
        .any(|s| s.listening() && s.local.port() == port);
    assert!(
        in_lab && !here,
        "the socket listens in the lab (in lab: {in_lab}, here: {here})"
    );
    let diag = conn
        .socket(lab_ns.as_fd(), SocketKind::SockDiag)
        .expect("a sock_diag socket in the lab");
    assert_eq!(
        rustix::net::sockopt::socket_domain(&diag).expect("SO_DOMAIN"),
        rustix::net::AddressFamily::NETLINK
    );

    // Peers: the allowed uid gets a socket, a stranger is refused with no descriptor.
    let run_client = |uid: u32, gid: u32| {
        let out = Command::new(setpriv)
            .args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
                "--".into(),
            ])
            .arg(&python)
            .args([OsStr::new("-c"), OsStr::new(CLIENT_PY)])
            .arg(&helper.socket)
            .stdin(Stdio::null())
            .output()
            .expect("run the python client");
        assert!(
            out.status.success(),
            "python client as {uid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        run_client(allowed, allowed),
        "0000000000 1",
        "the allowed user"
    );
    assert_eq!(run_client(stranger, stranger), "0100000000 0", "a stranger");
    assert_eq!(
        run_client(stranger, allowed),
        "0100000000 0",
        "the allowed user's group is not enough"
    );

    // At most MAX_CONNECTIONS clients at once (`conn` is one): the next is told busy.
    let mut held = Vec::new();
    let busy_at = (1..=aupwatch::netns_helper::MAX_CONNECTIONS + 4).find(|_| {
        let mut c = Connection::open(&helper.socket).expect("connect");
        match c.socket(lab_ns.as_fd(), SocketKind::Tcp4) {
            Ok(_) => {
                held.push(c);
                false
            }
            Err(e) => {
                assert_eq!(refused(Err(e)).0, Status::Busy);
                true
            }
        }
    });
    assert_eq!(
        busy_at,
        Some(aupwatch::netns_helper::MAX_CONNECTIONS),
        "the connection after {} open ones is refused busy",
        aupwatch::netns_helper::MAX_CONNECTIONS
    );
    drop(held);
    assert!(helper.log().is_empty(), "helper log: {}", helper.log());
}

/// Binds a TCP socket to 127.0.0.1 (a free port) and listens.
fn bind_loopback(fd: std::os::fd::OwnedFd) -> std::net::TcpListener {
    let addr = rustix::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0);
    rustix::net::bind(&fd, &addr).expect("bind 127.0.0.1:0 in the lab");
    rustix::net::listen(&fd, 4).expect("listen");
    std::net::TcpListener::from(fd)
}

#[test]
#[ignore = "needs root and setpriv; run with --include-ignored (CI does)"]
fn the_helper_exits_when_idle() {
    const T: &str = "the_helper_exits_when_idle";
    let bins = prerequisites(T, &["setpriv"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut helper = Helper::start(&bins[0], dir.path(), "0", 1);
    // One connection keeps it up while open; after it, one idle second ends it.
    let conn = Connection::open(&helper.socket).expect("connect");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        helper.child.try_wait().expect("try_wait").is_none(),
        "the helper exited while a client was connected"
    );
    drop(conn);
    let started = Instant::now();
    let status = loop {
        if let Some(st) = helper.child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the helper did not exit after --idle-exit 1"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "idle exit: {}", helper.log());
}

#[test]
#[ignore = "needs root, network namespaces, setpriv and a C compiler; run with --include-ignored (CI does)"]
fn an_agent_that_may_not_create_netlink_sockets_gets_its_own_from_the_helper() {
    const T: &str = "an_agent_that_may_not_create_netlink_sockets_gets_its_own_from_the_helper";
    let bins = prerequisites(T, &["setpriv"]);
    let setpriv = &bins[0];
    let uid = 64_204;
    let lab = Lab::new(T, "psnl");
    // The agent unit's RestrictAddressFamilies= without AF_NETLINK, as a seccomp filter.
    let wrap = unit_seccomp(&lab);
    let bin = binary_for(setpriv, uid, lab.dir());
    let own = common::netns_of(std::process::id()).expect("own netns");

    let absent = lab.dir().join("absent.sock");
    let source = source_of(&inventory_as(setpriv, uid, Some(&wrap), &bin, &absent), own);
    assert_eq!(
        source["source"], "proc_net",
        "no netlink, no helper: {source}"
    );
    assert!(
        source["fallback_reason"]
            .as_str()
            .is_some_and(|r| r.contains("EAFNOSUPPORT") || r.contains("not supported")),
        "the filter refused the netlink socket: {source}"
    );

    let helper = Helper::start(setpriv, lab.dir(), &uid.to_string(), 0);
    std::os::unix::fs::chown(&helper.socket, Some(0), Some(uid)).expect("chown the socket");
    let doc = inventory_as(setpriv, uid, Some(&wrap), &bin, &helper.socket);
    let source = source_of(&doc, own);
    assert_eq!(
        source["source"],
        "sock_diag",
        "its own namespace's sock_diag socket from the helper: {source}\nhelper log: {}",
        helper.log()
    );
    assert!(
        doc["sockets"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["netns"].as_u64() == Some(own))),
        "sockets of its own namespace were read"
    );
}

/// The agent unit's seccomp rules that matter here (no AF_NETLINK sockets, no chown), as a
/// wrapper program (tests/common/unit_seccomp.c) compiled into the lab.
fn unit_seccomp(lab: &Lab) -> PathBuf {
    let wrap = lab.compile_c(
        "unit_seccomp",
        include_str!("common/unit_seccomp.c"),
        &["-O2", "-Wall"],
        &[],
    );
    std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    wrap
}

/// The unit's `SystemCallFilter=~@privileged` forbids chown: the agent whose status socket
/// already has the `[status] group` (its own primary group, as under the unit) must not need
/// it. Here: root (primary group 0) with `group = "root"`, under the filter.
#[test]
#[ignore = "needs root, network namespaces and a C compiler; run with --include-ignored (CI does)"]
fn the_agent_starts_without_chown_when_the_socket_has_its_group() {
    use agent_util::{Agent, Launch, Opts, Setup};
    const T: &str = "the_agent_starts_without_chown_when_the_socket_has_its_group";
    prerequisites(T, &[]);
    let lab = Lab::new(T, "psch");
    let wrap = unit_seccomp(&lab);
    let s = Setup::new(lab.dir(), "ch");
    s.write_config(&Opts {
        group: "root".into(),
        ..Opts::default()
    });
    let mut agent = Agent::launch(
        T,
        &lab,
        &s,
        Launch {
            wrap: vec![wrap.to_string_lossy().into_owned()],
            ..Launch::default()
        },
    );
    let doc = agent.wait_status("a first scan under the filter", |d| {
        d["last_scan"]["at_unix_ms"].as_u64().is_some()
    });
    assert!(doc["agent"]["pid"].is_u64(), "{doc:#}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&s.socket).expect("the status socket");
    assert_eq!(
        (meta.mode() & 0o777, meta.gid()),
        (0o660, 0),
        "socket mode and group"
    );
}

/// The units in `systemd/` with `/usr/bin/aupwatch` replaced by the binary under test and
/// the man pages left out of `Documentation=` (neither is installed here), in `dir`.
fn units_for_verify(dir: &Path) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    [
        "aupwatch-agent.service",
        "aupwatch-netns.service",
        "aupwatch-netns.socket",
    ]
    .iter()
    .map(|name| {
        let text = std::fs::read_to_string(src.join(name)).expect("read the unit");
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("Documentation=") {
                Some(docs) => {
                    let kept: Vec<&str> = docs
                        .split_whitespace()
                        .filter(|d| !d.starts_with("man:"))
                        .collect();
                    format!("Documentation={}\n", kept.join(" "))
                }
                None => format!(
                    "{}\n",
                    l.replace("/usr/bin/aupwatch", common::aupwatch_bin())
                ),
            })
            .collect();
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write the unit");
        path
    })
    .collect()
}

/// The exposure `systemd-analyze security --offline=true` gives `unit`, as printed.
fn exposure(analyze: &Path, unit: &Path) -> String {
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no exposure line in:\n{text}"))
        .to_string()
}

/// The units parse (`systemd-analyze verify`, offline: no running systemd needed) and score
/// what systemd/README.md says: the agent at most 2.0, the helper 1.3.
#[test]
#[ignore = "needs systemd-analyze (Debian package systemd); run with --include-ignored (CI does)"]
fn the_units_verify_and_score_as_documented() {
    const T: &str = "the_units_verify_and_score_as_documented";
    let analyze = common::which("systemd-analyze")
        .unwrap_or_else(|| common::skip(T, "systemd-analyze is not installed"));
    let dir = tempfile::tempdir().expect("tempdir");
    let units = units_for_verify(dir.path());
    let out = Command::new(&analyze)
        .arg("verify")
        .args(&units)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{said}",
        out.status
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/README.md"))
            .expect("systemd/README.md");
    for (unit, want) in [(&units[0], "2.0"), (&units[1], "1.3")] {
        let got = exposure(&analyze, unit);
        assert_eq!(got, want, "{}", unit.display());
        let name = unit
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let line = format!("Overall exposure level for {name}: {got}");
        assert!(
            readme.contains(&line),
            "systemd/README.md must say `{line}`"
        );
    }
}
