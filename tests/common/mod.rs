//! Shared harness of aupwatch's integration tests (`tests/real_proc.rs`, `tests/daemons.rs`).
//!
//! * [`Lab`]: a network namespace that has only loopback (`aupw-<short>-<pid>`), a temporary
//!   directory, and every process the test started inside that namespace with `nsenter`. Its
//!   `Drop` kills them all (process groups, then whatever is left in the namespace), reaps them
//!   and deletes the namespace, also when the test panics.
//! * Ground truth from /proc: which sockets a process holds ([`sockets_of`]), its namespace,
//!   user, comm and command line, to wait for readiness and to check what the scanner reports.
//! * [`scan`]: runs `aupwatch scan --json --sample 1`, checks the document's shape and the exit
//!   code, and [`Report`] finds, explains and checks findings of one namespace and one pid.
//! * [`prerequisites`] / [`skip`]: the tests that need root, network namespaces or the
//!   packages `.ci/run` installs are `#[ignore]`d (a plain `cargo test` counts them as
//!   ignored); run with `--include-ignored` (CI does), a missing prerequisite fails them.
//!
//! Network rule: nothing a test starts may listen or connect outside its own loopback-only
//! namespace, and clients connect only to 127.0.0.1 there.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a daemon may take to start listening, or a client to connect.
pub const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// How long one `aupwatch scan` may take before the test gives up on it.
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(50);

const IMPOSTOR_C: &str = include_str!("impostor.c");

// ---------------------------------------------------------------------------------------------
// Prerequisites

/// True when running under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// A test that cannot run here: a failure, with the reason. The tests that need root,
/// network namespaces or the packages `.ci/run` installs are `#[ignore]`d, so a plain
/// `cargo test` lists them as ignored; one that runs was asked for (`--include-ignored`, as CI
/// does), and a missing prerequisite then fails it instead of letting it pass by doing nothing.
pub fn skip(test: &str, why: &str) -> ! {
    let hint = if in_ci() {
        "CI=true: .ci/run installs every prerequisite, so a missing one is a failure"
    } else {
        "ignored by default; run it with --include-ignored where root, network namespaces and the packages .ci/run installs are available"
    };
    panic!("{test}: cannot run: {why} ({hint})");
}

/// Checks that this test can run: root, `ip`, `nsenter`, `kill`, and every program named
/// (looked up in PATH and the sbin directories). Returns their paths in the same order;
/// fails the test ([`skip`]) when something is missing.
pub fn prerequisites(test: &str, programs: &[&str]) -> Vec<PathBuf> {
    if euid(std::process::id()) != Some(0) {
        skip(test, "not running as root: network namespaces need root");
    }
    for tool in ["ip", "nsenter", "kill"] {
        if which(tool).is_none() {
            skip(test, &format!("`{tool}` is not installed"));
        }
    }
    programs
        .iter()
        .map(|program| {
            which(program).unwrap_or_else(|| skip(test, &format!("`{program}` is not installed")))
        })
        .collect()
}

/// Copies the executable `src` to `dest` (mode 0755) in a child process (`install`).
///
/// Copying it here instead would race with the other test threads: one that forks while the
/// copy is open for writing leaves a child holding that file until it execs, and exec of the
/// copy fails with ETXTBSY ("Text file busy"). The file written by another process is never
/// open in this one.
pub fn install_executable(src: &Path, dest: &Path) {
    let out = Command::new("install")
        .arg("-m")
        .arg("0755")
        .arg(src)
        .arg(dest)
        .stdin(Stdio::null())
        .output()
        .expect("run install (coreutils)");
    assert!(
        out.status.success(),
        "install {} {}: {}",
        src.display(),
        dest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Finds an executable by name in PATH, /usr/sbin and /sbin (daemons live there); a name with a
/// slash is taken as a path.
pub fn which(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// The Python interpreter to use for helper clients: Debian's if present, else PATH's.
pub fn python3() -> Option<PathBuf> {
    which("/usr/bin/python3").or_else(|| which("python3"))
}

// ---------------------------------------------------------------------------------------------
// Facts from /proc

/// The inode of the network namespace `pid` is in.
pub fn netns_of(pid: u32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let text = link.to_string_lossy().into_owned();
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn status_field(pid: u32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// Effective uid of `pid`.
pub fn euid(pid: u32) -> Option<u32> {
    status_field(pid, "Uid:")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Parent pid of `pid`.
pub fn ppid(pid: u32) -> Option<u32> {
    status_field(pid, "PPid:")?.parse().ok()
}

/// `comm` of `pid`.
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// The arguments of `pid`. Empty arguments are arguments too (microsocks blanks its
/// password, leaving empty ones behind); only the final NUL terminator ends no argument.
pub fn cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let raw = raw.strip_suffix(&[0]).unwrap_or(&raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The executable of `pid` as the kernel shows it (may end in " (deleted)").
pub fn exe(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// A process that exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

fn all_pids() -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Every live process whose network namespace is `ino`.
pub fn pids_in_netns(ino: u64) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| netns_of(p) == Some(ino) && alive(p))
        .collect()
}

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// Inodes of the sockets `pid` holds open.
pub fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return BTreeSet::new();
    };
    fds.filter_map(|fd| {
        let target = fs::read_link(fd.ok()?.path()).ok()?;
        let t = target.to_string_lossy().into_owned();
        t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// One row of /proc/PID/net/{tcp,tcp6,udp,udp6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sock {
    pub protocol: &'static str,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Kernel state number: TCP 0x0A is LISTEN, 0x01 ESTABLISHED; an unconnected UDP socket is 0x07.
    pub state: u8,
    pub inode: u64,
}

impl Sock {
    /// A TCP socket in LISTEN, or a bound UDP socket with no peer.
    pub fn listening(&self) -> bool {
        match self.protocol {
            "tcp" => self.state == 0x0A,
            _ => self.state == 0x07 && self.remote.port() == 0,
        }
    }

    /// A TCP socket in ESTABLISHED.
    pub fn established(&self) -> bool {
        self.protocol == "tcp" && self.state == 0x01
    }
}

fn parse_addr(hex: &str) -> Option<SocketAddr> {
    let (ip, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every TCP and UDP socket of the network namespace `pid` is in.
pub fn net_table(pid: u32) -> Vec<Sock> {
    let mut out = Vec::new();
    for (file, protocol) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let (Some(local), Some(remote), Ok(state), Ok(inode)) = (
                parse_addr(f[1]),
                parse_addr(f[2]),
                u8::from_str_radix(f[3], 16),
                f[9].parse(),
            ) else {
                continue;
            };
            out.push(Sock {
                protocol,
                local,
                remote,
                state,
                inode,
            });
        }
    }
    out
}

/// The TCP and UDP sockets `pid` itself holds.
pub fn sockets_of(pid: u32) -> Vec<Sock> {
    let mine = socket_inodes(pid);
    net_table(pid)
        .into_iter()
        .filter(|s| s.inode != 0 && mine.contains(&s.inode))
        .collect()
}

/// Polls `ready` until it says yes; `Err` from it gives up at once. Returns the last error or
/// a timeout message.
pub fn poll_until(
    timeout: Duration,
    mut ready: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?}"));
        }
        std::thread::sleep(POLL);
    }
}

fn kill_quietly(args: &[String]) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn run_ok(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Lab: a loopback-only network namespace and the processes started in it

/// What to start inside a [`Lab`].
#[derive(Debug, Clone)]
pub struct Spawn {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<PathBuf>,
    stdout: Option<PathBuf>,
}

impl Spawn {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Spawn {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            stdout: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Standard input read from this file (e.g. /dev/zero) instead of /dev/null.
    pub fn stdin_from(mut self, path: impl AsRef<Path>) -> Self {
        self.stdin = Some(path.as_ref().to_owned());
        self
    }

    /// Standard output written to this file (e.g. /dev/null) instead of the label's log.
    pub fn stdout_to(mut self, path: impl AsRef<Path>) -> Self {
        self.stdout = Some(path.as_ref().to_owned());
        self
    }
}

struct Started {
    label: String,
    pid: u32,
    log: PathBuf,
    child: Child,
}

/// A daemon configuration template with `@DIR@` replaced by `dir`.
pub fn fill(template: &str, dir: &Path) -> String {
    template.replace("@DIR@", &dir.to_string_lossy())
}

/// Runs a setup command to completion (config checks, PKI) in the lab directory; fails the
/// test with its output.
pub fn setup(lab: &Lab, what: &str, program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(lab.dir())
        .output()
        .unwrap_or_else(|e| lab.fail(&format!("{what}: cannot run {}: {e}", program.display())));
    if !out.status.success() {
        lab.fail(&format!(
            "{what}: `{} {}` failed ({}):\n{}\n{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

/// Starts Dante (`danted`) in `lab` with configuration `conf` (`@DIR@` already filled; see
/// `tests/common/daemons/danted.conf`), its pid file in `dir`, and waits for it to listen on
/// 1080. Returns its pid.
pub fn start_danted(lab: &mut Lab, danted: &Path, dir: &Path, conf: &str) -> u32 {
    let conf = lab.write("danted/danted.conf", conf);
    let pidfile = dir.join("danted.pid");
    let conf = conf.to_string_lossy();
    setup(lab, "danted -V", danted, &["-V", "-f", &conf]);
    let pid = lab.start(
        "danted",
        Spawn::new(danted).args(["-f", &*conf, "-p"]).arg(&pidfile),
    );
    lab.wait_listening("danted", pid, "tcp", 1080);
    pid
}

/// The namespaces (inodes) of the labs alive in this test binary: the only ones [`scan`]
/// probes.
static LABS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// A loopback-only network namespace, a temporary directory and the processes started in the
/// namespace. Dropping it kills the processes, reaps them and deletes the namespace.
pub struct Lab {
    test: String,
    name: String,
    ino: u64,
    dir: tempfile::TempDir,
    started: Vec<Started>,
    impostor: Option<PathBuf>,
}

impl Lab {
    /// Creates namespace `aupw-<short>-<pid>` with only `lo`, up. `short` must be unique among
    /// the tests of one test binary (they run in parallel in one process).
    pub fn new(test: &str, short: &str) -> Lab {
        let name = format!("aupw-{short}-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("aupw-{short}-"))
            .tempdir()
            .expect("create a temporary directory");
        // Daemons that drop root (squid, ngircd, danted) must reach their files in here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the temporary directory");
        let ns_path = format!("/run/netns/{name}");
        if Path::new(&ns_path).exists() {
            // Left over from a crashed run with the same pid: it is ours, take it down.
            let stale = fs::metadata(&ns_path).map(|m| m.ino()).unwrap_or(0);
            for pid in pids_in_netns(stale) {
                kill_quietly(&[pid.to_string()]);
            }
            let _ = run_ok("ip", &["netns", "del", &name]);
        }
        if let Err(e) = run_ok("ip", &["netns", "add", &name]) {
            panic!("{test}: {e}");
        }
        let mut lab = Lab {
            test: test.to_string(),
            name,
            ino: 0,
            dir,
            started: Vec::new(),
            impostor: None,
        };
        lab.ino = fs::metadata(&ns_path)
            .map(|m| m.ino())
            .expect("stat the new network namespace");
        if let Ok(mut labs) = LABS.lock() {
            labs.push(lab.ino);
        }
        if let Err(e) = run_ok("ip", &["-n", &lab.name, "link", "set", "lo", "up"]) {
            panic!("{test}: {e}");
        }
        let links = lab.links();
        assert_eq!(
            links,
            vec!["lo".to_string()],
            "{test}: namespace {} must have only loopback",
            lab.name
        );
        lab
    }

    /// The namespace's name (`/run/netns/<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode: what aupwatch reports as `netns`.
    pub fn netns(&self) -> u64 {
        self.ino
    }

    /// The lab's temporary directory (mode 0755).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A sub-directory of the lab directory that anyone may write (for daemons that drop root).
    pub fn writable_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        fs::create_dir_all(&d).expect("create a directory in the lab");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).expect("chmod 0777");
        d
    }

    /// Gives the namespace's own `lo` the local address `addr` (`/32` or `/128`), so the
    /// namespace has a non-loopback address that is still delivered locally: nothing leaves
    /// the namespace, which has no other interface. Only documentation-range addresses
    /// (192.0.2.0/24, 2001:db8::/32) are accepted.
    pub fn add_local_address(&self, addr: std::net::IpAddr) {
        let (ok, prefix) = match addr {
            std::net::IpAddr::V4(v4) => (v4.octets()[..3] == [192, 0, 2], 32),
            std::net::IpAddr::V6(v6) => (v6.segments()[..2] == [0x2001, 0xdb8], 128),
        };
        assert!(ok, "{}: {addr} is not a documentation address", self.test);
        let cidr = format!("{addr}/{prefix}");
        if let Err(e) = run_ok("ip", &["-n", &self.name, "addr", "add", &cidr, "dev", "lo"]) {
            self.fail(&format!("cannot add {cidr} to lo: {e}"));
        }
        assert_eq!(self.links(), vec!["lo".to_string()], "{}", self.test);
    }

    /// Names of the namespace's network interfaces.
    pub fn links(&self) -> Vec<String> {
        let out = run_ok("ip", &["-n", &self.name, "-o", "link", "show"])
            .unwrap_or_else(|e| panic!("{}: {e}", self.test));
        out.lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }

    /// Writes a file into the lab directory, replacing `@DIR@` with `dir` (a template
    /// placeholder), and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create the file's directory");
        }
        fs::write(&path, text).expect("write a file into the lab");
        path
    }

    /// Starts `spawn` inside the namespace (`nsenter --net=/run/netns/NAME -- program args`) in
    /// a process group of its own, output to `<label>.log`, and waits until it runs there.
    /// Returns its pid (nsenter execs, so this is the program's pid).
    pub fn start(&mut self, label: &str, spawn: Spawn) -> u32 {
        let log = self.dir.path().join(format!("{label}.log"));
        let out = File::create(&log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        let out = match &spawn.stdout {
            Some(p) => fs::OpenOptions::new()
                .write(true)
                .open(p)
                .expect("open stdout file"),
            None => out,
        };
        let stdin = match &spawn.stdin {
            Some(p) => Stdio::from(File::open(p).expect("open stdin file")),
            None => Stdio::null(),
        };
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(&spawn.program)
            .args(&spawn.args)
            .envs(spawn.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(stdin)
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start {label}: {e}", self.test));
        let pid = child.id();
        self.started.push(Started {
            label: label.to_string(),
            pid,
            log,
            child,
        });
        let ino = self.ino;
        let result = poll_until(READY_TIMEOUT, || {
            if !alive(pid) {
                return Err(format!("{label} (pid {pid}) exited"));
            }
            let execed = exe(pid).is_some_and(|e| !e.ends_with("/nsenter"));
            Ok(execed && netns_of(pid) == Some(ino))
        });
        if let Err(e) = result {
            self.fail(&format!("{label} did not start in {}: {e}", self.name));
        }
        pid
    }

    /// Waits until `pid` or one of its descendants listens on `protocol` (`"tcp"`/`"udp"`)
    /// port `port`, inside this lab's namespace.
    pub fn wait_listening(&self, label: &str, pid: u32, protocol: &str, port: u16) {
        self.wait_for_socket(label, pid, &format!("listen on {protocol}/{port}"), |s| {
            s.protocol == protocol && s.listening() && s.local.port() == port
        });
    }

    /// Waits until `pid` holds an established TCP connection to port `port`.
    pub fn wait_connected(&self, label: &str, pid: u32, port: u16) {
        self.wait_for_socket(label, pid, &format!("connect to tcp/{port}"), |s| {
            s.established() && s.remote.port() == port && s.remote.ip().is_loopback()
        });
    }

    fn wait_for_socket(&self, label: &str, pid: u32, what: &str, want: impl Fn(&Sock) -> bool) {
        let ino = self.ino;
        let result = poll_until(READY_TIMEOUT, || {
            if !alive(pid) {
                return Err(format!("{label} (pid {pid}) exited"));
            }
            if netns_of(pid) != Some(ino) {
                return Err(format!("{label} (pid {pid}) is not in the lab namespace"));
            }
            Ok(process_tree(pid)
                .into_iter()
                .any(|p| netns_of(p) == Some(ino) && sockets_of(p).iter().any(&want)))
        });
        if let Err(e) = result {
            self.fail(&format!("{label} (pid {pid}) did not {what}: {e}"));
        }
    }

    /// Waits until the log of `label` contains `needle`.
    pub fn wait_log(&self, label: &str, needle: &str) {
        let Some(s) = self.started.iter().find(|s| s.label == label) else {
            panic!("{}: no process labelled {label}", self.test);
        };
        let (pid, log) = (s.pid, s.log.clone());
        let result = poll_until(READY_TIMEOUT, || {
            if fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(needle)
            {
                return Ok(true);
            }
            if !alive(pid) {
                return Err(format!("{label} (pid {pid}) exited"));
            }
            Ok(false)
        });
        if let Err(e) = result {
            self.fail(&format!("{label} never printed {needle:?}: {e}"));
        }
    }

    /// Every process this lab started that is still in its namespace (with its children).
    pub fn pids(&self) -> Vec<u32> {
        pids_in_netns(self.ino)
    }

    /// The outputs of the lab's processes and its other *.log files, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut seen = BTreeSet::new();
        for s in &self.started {
            let text = fs::read_to_string(&s.log).unwrap_or_default();
            let _ = write!(
                out,
                "\n--- {} (pid {}, {}) ---\n{}",
                s.label,
                s.pid,
                if alive(s.pid) { "running" } else { "exited" },
                tail(&text, 30)
            );
            seen.insert(s.log.clone());
        }
        let mut extra: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|rd| rd.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        extra.sort();
        for p in extra {
            if p.extension() == Some(OsStr::new("log")) && !seen.contains(&p) {
                let text = fs::read_to_string(&p).unwrap_or_default();
                let _ = write!(out, "\n--- {} ---\n{}", p.display(), tail(&text, 30));
            }
        }
        out
    }

    /// Panics with `msg` and the lab's logs.
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{}: {msg}\nlogs:{}", self.test, self.logs());
    }

    /// Compiles C source `text` with the system compiler into `<lab>/build/<name>`:
    /// `cc FLAGS -o OUT SRC LIBS`. Fails the test with the compiler's output.
    pub fn compile_c(&self, name: &str, text: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
        let src = self.write(&format!("build/{name}.c"), text);
        let out_path = self.dir.path().join("build").join(name);
        let cc = which("cc")
            .or_else(|| which("gcc"))
            .unwrap_or_else(|| self.fail(&format!("no C compiler (cc/gcc) for {name}.c")));
        let out = Command::new(cc)
            .args(flags)
            .arg("-o")
            .arg(&out_path)
            .arg(&src)
            .args(libs)
            .output()
            .unwrap_or_else(|e| self.fail(&format!("cannot run the C compiler: {e}")));
        if !out.status.success() {
            self.fail(&format!(
                "compiling {name}.c failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        out_path
    }

    /// The impostor program (tests/common/impostor.c) compiled once per lab and copied as
    /// `<lab>/bin/<name>`: a process that has exactly that name for comm, exe and argv[0].
    pub fn impostor(&mut self, name: &str) -> PathBuf {
        let built = match &self.impostor {
            Some(p) => p.clone(),
            None => {
                let bin = self.compile_c("impostor", IMPOSTOR_C, &["-O2", "-Wall"], &[]);
                self.impostor = Some(bin.clone());
                bin
            }
        };
        let dest = self.dir.path().join("bin").join(name);
        fs::create_dir_all(self.dir.path().join("bin")).expect("create bin/");
        install_executable(&built, &dest);
        dest
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(mut labs) = LABS.lock() {
            labs.retain(|&i| i != self.ino);
        }
        // 1. The process groups of everything started (daemons' helpers stay in the group).
        let groups: Vec<String> = self.started.iter().map(|s| format!("-{}", s.pid)).collect();
        if !groups.is_empty() {
            kill_quietly(&groups);
        }
        // 2. Anything else still inside the namespace (a process that left the group).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<String> = pids_in_netns(self.ino)
                .into_iter()
                .map(|p| p.to_string())
                .collect();
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "{}: processes still in {} after SIGKILL: {left:?}",
                    self.test, self.name
                );
                break;
            }
            kill_quietly(&left);
            std::thread::sleep(POLL);
        }
        // 3. Reap what we started.
        for s in &mut self.started {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match s.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!("{}: {} (pid {}) would not exit", self.test, s.label, s.pid);
                        break;
                    }
                    Ok(None) => {
                        let _ = s.child.kill();
                        std::thread::sleep(POLL);
                    }
                }
            }
        }
        // 4. The namespace.
        if let Err(e) = run_ok("ip", &["netns", "del", &self.name]) {
            eprintln!("{}: {e}", self.test);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the scanner

/// The result of one `aupwatch scan --json`.
pub struct Report {
    pub json: Value,
    pub code: i32,
    pub stderr: String,
}

/// Runs `aupwatch scan --json --sample 1 EXTRA...` from the host's own namespace, checks that
/// it exits 0 or 1, that stdout is one JSON document of the documented shape, and that the
/// exit code agrees with the findings (1 when there are any, 0 when none).
pub fn scan(extra: &[&str]) -> Report {
    let report = scan_raw(extra);
    if report.code == 2 {
        panic!(
            "aupwatch scan exited 2 (error)\nstderr:\n{}",
            tail(&report.stderr, 40)
        );
    }
    report
}

/// Like [`scan`] but returns whatever exit code it had (2 included); the JSON is `Null` when
/// stdout is not JSON and the code is 2.
pub fn scan_raw(extra: &[&str]) -> Report {
    let mut cmd = Command::new(aupwatch_bin());
    cmd.args(["scan", "--json", "--sample", "1"]).args(extra);
    scan_command(cmd, &format!("aupwatch scan {extra:?}"))
}

/// The aupwatch binary under test.
pub fn aupwatch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_aupwatch")
}

/// Runs `cmd`, an `aupwatch scan --json …` (possibly wrapped: `unshare … aupwatch scan`, an
/// environment set), with the checks of [`scan_raw`]. `what` names it in failure messages.
/// The scan probes only listeners inside the labs of this test binary, never the host's own
/// (`--probe-netns`, appended; 0, no namespace, when there is no lab).
pub fn scan_command(mut cmd: Command, what: &str) -> Report {
    // Probes only inside the labs of this test binary: never the host's own listeners
    // (0, no namespace, when there is no lab).
    let labs = LABS.lock().map(|l| l.clone()).unwrap_or_default();
    for ino in if labs.is_empty() { vec![0] } else { labs } {
        cmd.arg("--probe-netns").arg(ino.to_string());
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(SCAN_TIMEOUT) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("waiting for aupwatch scan: {e}"),
        Err(_) => {
            kill_quietly(&[pid.to_string()]);
            panic!("{what} did not finish within {SCAN_TIMEOUT:?}");
        }
    };
    let code = output.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if code == 2 {
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        return Report { json, code, stderr };
    }
    assert!(
        code == 0 || code == 1,
        "aupwatch scan exited with {:?}, expected 0 or 1\nstderr:\n{}",
        output.status,
        tail(&stderr, 40)
    );
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "aupwatch scan --json printed no valid JSON ({e})\nstdout starts:\n{}\nstderr:\n{}",
            stdout.chars().take(2000).collect::<String>(),
            tail(&stderr, 40)
        )
    });
    let problems = shape_problems(&json);
    assert!(
        problems.is_empty(),
        "aupwatch scan --json does not have the documented shape:\n  {}",
        problems.join("\n  ")
    );
    let findings = json["findings"].as_array().map_or(0, |f| f.len());
    let want = if findings == 0 { 0 } else { 1 };
    assert_eq!(
        code, want,
        "aupwatch scan must exit 1 when there are findings and 0 when none; it found {findings} and exited {code}"
    );
    Report { json, code, stderr }
}

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

fn is_str(v: &Value) -> bool {
    v.is_string()
}

/// Everything about a report that departs from the documented JSON shape.
pub fn shape_problems(json: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let mut need = |ok: bool, what: String| {
        if !ok {
            p.push(what);
        }
    };
    need(
        json["aupwatch_version"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "aupwatch_version: non-empty string".into(),
    );
    need(json["host"].is_string(), "host: string".into());
    need(
        json["taken_at_unix_ms"].is_u64(),
        "taken_at_unix_ms: integer".into(),
    );
    need(
        json["processes_scanned"].is_u64(),
        "processes_scanned: integer".into(),
    );
    need(
        json["sockets_scanned"].is_u64(),
        "sockets_scanned: integer".into(),
    );
    need(
        json["signatures"]["count"].is_u64(),
        "signatures.count: integer".into(),
    );
    need(json["gaps"].is_array(), "gaps: array".into());
    for (i, g) in json["gaps"].as_array().into_iter().flatten().enumerate() {
        need(
            is_str(&g["what"]) && is_str(&g["error"]),
            format!("gaps[{i}]: {{what, error}} strings"),
        );
    }
    let Some(findings) = json["findings"].as_array() else {
        p.push("findings: array".into());
        return p;
    };
    for (i, f) in findings.iter().enumerate() {
        let at = |k: &str| format!("findings[{i}].{k}");
        for k in ["signature", "category", "description", "aup"] {
            need(
                f[k].as_str().is_some_and(|s| !s.is_empty()),
                at(k) + ": non-empty string",
            );
        }
        need(
            f["severity"]
                .as_str()
                .is_some_and(|s| SEVERITIES.contains(&s)),
            at("severity") + ": info|low|medium|high|critical",
        );
        let proc_ = &f["process"];
        let iface = &f["interface"];
        let host = f["host"].as_bool();
        need(host.is_some(), at("host") + ": bool");
        need(
            if host == Some(true) {
                proc_.is_null() && iface.is_null()
            } else {
                proc_.is_object() || iface.is_object()
            },
            format!("findings[{i}]: a process or an interface, or neither with host: true"),
        );
        need(
            proc_.is_null() || proc_.is_object(),
            at("process") + ": object or null",
        );
        if proc_.is_object() {
            for k in ["pid", "ppid", "uid", "netns"] {
                need(proc_[k].is_u64(), at("process.") + k + ": integer");
            }
            need(proc_["comm"].is_string(), at("process.comm") + ": string");
            // A uid without a passwd entry has no name.
            need(
                proc_["user"].is_string() || proc_["user"].is_null(),
                at("process.user") + ": string or null",
            );
            need(
                proc_["exe"].is_string() || proc_["exe"].is_null(),
                at("process.exe") + ": string or null",
            );
            need(
                proc_["exe_deleted"].is_boolean(),
                at("process.exe_deleted") + ": bool",
            );
            need(
                proc_["cmdline"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string)),
                at("process.cmdline") + ": array of strings",
            );
            need(
                proc_.get("container").is_some(),
                at("process.container") + ": present (null or value)",
            );
        }
        need(
            iface.is_null() || iface.is_object(),
            at("interface") + ": object or null",
        );
        if iface.is_object() {
            need(iface["netns"].is_u64(), at("interface.netns") + ": integer");
            need(iface["name"].is_string(), at("interface.name") + ": string");
        }
        need(
            f["related_pids"]
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_u64)),
            at("related_pids") + ": array of integers",
        );
        match f["sockets"].as_array() {
            Some(socks) => {
                for (j, s) in socks.iter().enumerate() {
                    let sat = format!("findings[{i}].sockets[{j}]");
                    need(
                        matches!(s["protocol"].as_str(), Some("tcp" | "udp")),
                        format!("{sat}.protocol: tcp|udp"),
                    );
                    need(
                        s["local"]
                            .as_str()
                            .is_some_and(|a| a.parse::<SocketAddr>().is_ok()),
                        format!("{sat}.local: socket address"),
                    );
                    need(
                        s["remote"].is_null()
                            || s["remote"]
                                .as_str()
                                .is_some_and(|a| a.parse::<SocketAddr>().is_ok()),
                        format!("{sat}.remote: socket address or null"),
                    );
                    need(s["state"].is_string(), format!("{sat}.state: string"));
                    need(s["netns"].is_u64(), format!("{sat}.netns: integer"));
                    need(s["inode"].is_u64(), format!("{sat}.inode: integer"));
                }
            }
            None => need(false, at("sockets") + ": array"),
        }
        match f["evidence"].as_array() {
            Some(ev) => {
                for (j, e) in ev.iter().enumerate() {
                    need(
                        is_str(&e["predicate"]) && is_str(&e["value"]),
                        format!("findings[{i}].evidence[{j}]: {{predicate, value}} strings"),
                    );
                }
            }
            None => need(false, at("evidence") + ": array"),
        }
    }
    p
}

fn s_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// One line about a finding, for failure messages.
pub fn describe(f: &Value) -> String {
    let p = &f["process"];
    let who = if f["host"] == Value::Bool(true) {
        "host".to_string()
    } else if p.is_object() {
        format!(
            "pid {} comm {} netns {} cmdline {}",
            p["pid"], p["comm"], p["netns"], p["cmdline"]
        )
    } else {
        format!(
            "interface {} netns {}",
            f["interface"]["name"], f["interface"]["netns"]
        )
    };
    let evidence: Vec<String> = f["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{}={}", e["predicate"], e["value"]))
        .collect();
    format!(
        "[{} {} {}] {who} related {} evidence {}",
        f["category"],
        f["signature"],
        f["severity"],
        f["related_pids"],
        evidence.join(", ")
    )
}

impl Report {
    pub fn findings(&self) -> Vec<&Value> {
        self.json["findings"]
            .as_array()
            .map_or(Vec::new(), |a| a.iter().collect())
    }

    /// The host finding (`subject = "host"`) of signature `id`, if any.
    pub fn host_finding(&self, id: &str) -> Option<&Value> {
        self.findings()
            .into_iter()
            .find(|f| f["host"] == Value::Bool(true) && f["signature"] == id)
    }

    /// The values of a finding's evidence, joined by " | " (for assertions and messages).
    pub fn evidence_text(f: &Value) -> String {
        f["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{}: {}", s_of(&e["predicate"]), s_of(&e["value"])))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Findings of processes or interfaces in network namespace `ino`.
    pub fn in_netns(&self, ino: u64) -> Vec<&Value> {
        self.findings()
            .into_iter()
            .filter(|f| {
                f["process"]["netns"].as_u64() == Some(ino)
                    || f["interface"]["netns"].as_u64() == Some(ino)
            })
            .collect()
    }

    /// Findings whose process is `pid` or that list `pid` among their related pids.
    pub fn involving(&self, pid: u32) -> Vec<&Value> {
        self.findings()
            .into_iter()
            .filter(|f| {
                f["process"]["pid"].as_u64() == Some(u64::from(pid))
                    || f["related_pids"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|x| x.as_u64() == Some(u64::from(pid))))
            })
            .collect()
    }

    /// What the scan found in the lab's namespace and its gaps, for failure messages.
    pub fn explain(&self, lab: &Lab) -> String {
        let mut out = format!(
            "scan: {} findings in all, processes_scanned {}, sockets_scanned {}, signatures {}\nfindings in {} (netns {}):",
            self.findings().len(),
            self.json["processes_scanned"],
            self.json["sockets_scanned"],
            self.json["signatures"]["count"],
            lab.name(),
            lab.netns()
        );
        let mine = self.in_netns(lab.netns());
        if mine.is_empty() {
            out.push_str(" none");
        }
        for f in mine {
            let _ = write!(out, "\n  {}", describe(f));
        }
        let _ = write!(out, "\nprocesses in the namespace:");
        for pid in lab.pids() {
            let _ = write!(
                out,
                "\n  pid {pid} comm {:?} cmdline {:?} sockets {:?}",
                comm(pid).unwrap_or_default(),
                cmdline(pid),
                sockets_of(pid)
                    .iter()
                    .map(|s| format!(
                        "{} {} -> {} st {:02X}",
                        s.protocol, s.local, s.remote, s.state
                    ))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(gaps) = self.json["gaps"].as_array() {
            for g in gaps.iter().take(10) {
                let _ = write!(out, "\ngap: {} — {}", g["what"], g["error"]);
            }
        }
        out
    }

    /// The finding of category `category` in the lab's namespace whose process is `pid`;
    /// fails the test (with everything the scan said about the namespace) when there is none.
    /// Then checks that the finding tells the truth about the process: netns, comm, ppid, uid,
    /// cmdline, exe, its sockets belong to it, and the evidence is non-empty.
    pub fn expect(&self, lab: &Lab, what: &str, pid: u32, category: &str) -> &Value {
        let found = self.in_netns(lab.netns()).into_iter().find(|f| {
            f["category"] == category && f["process"]["pid"].as_u64() == Some(u64::from(pid))
        });
        let Some(f) = found else {
            lab.fail(&format!(
                "{what} (pid {pid}, comm {:?}, cmdline {:?}) was not reported as `{category}`\n{}",
                comm(pid).unwrap_or_default(),
                cmdline(pid),
                self.explain(lab)
            ));
        };
        // Shown with `cargo test -- --nocapture`: every finding of this process.
        for g in self.involving(pid) {
            println!("{what}: {}", describe(g));
        }
        let problems = self.truth_problems(lab, f, pid);
        if !problems.is_empty() {
            lab.fail(&format!(
                "the `{category}` finding for {what} (pid {pid}) misreports it:\n  {}\nfinding: {}",
                problems.join("\n  "),
                serde_json::to_string_pretty(f).unwrap_or_default()
            ));
        }
        f
    }

    fn truth_problems(&self, lab: &Lab, f: &Value, pid: u32) -> Vec<String> {
        let mut p = Vec::new();
        let proc_ = &f["process"];
        if proc_["netns"].as_u64() != Some(lab.netns()) {
            p.push(format!(
                "process.netns {} != {}",
                proc_["netns"],
                lab.netns()
            ));
        }
        if let Some(c) = comm(pid) {
            if proc_["comm"].as_str() != Some(c.as_str()) {
                p.push(format!("process.comm {} != {c:?}", proc_["comm"]));
            }
        }
        if let Some(pp) = ppid(pid) {
            if proc_["ppid"].as_u64() != Some(u64::from(pp)) {
                p.push(format!("process.ppid {} != {pp}", proc_["ppid"]));
            }
        }
        if let Some(uid) = euid(pid) {
            if proc_["uid"].as_u64() != Some(u64::from(uid)) {
                p.push(format!(
                    "process.uid {} != effective uid {uid}",
                    proc_["uid"]
                ));
            }
        }
        let args = cmdline(pid);
        let reported: Vec<&str> = proc_["cmdline"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !args.is_empty() && reported != args {
            p.push(format!("process.cmdline {reported:?} != {args:?}"));
        }
        if let Some(e) = exe(pid) {
            let deleted = e.ends_with(" (deleted)");
            let path = e.trim_end_matches(" (deleted)");
            if proc_["exe"].as_str() != Some(path) {
                p.push(format!("process.exe {} != {path:?}", proc_["exe"]));
            }
            if proc_["exe_deleted"].as_bool() != Some(deleted) {
                p.push(format!(
                    "process.exe_deleted {} != {deleted}",
                    proc_["exe_deleted"]
                ));
            }
        }
        let evidence = f["evidence"].as_array().map_or(0, |e| {
            e.iter()
                .filter(|x| {
                    x["predicate"].as_str().is_some_and(|s| !s.is_empty())
                        && x["value"].as_str().is_some_and(|s| !s.is_empty())
                })
                .count()
        });
        if evidence == 0 {
            p.push("no evidence".into());
        }
        // Sockets listed must be in this namespace and held by the process or a related one.
        let mut held: BTreeSet<u64> = socket_inodes(pid);
        for r in f["related_pids"].as_array().into_iter().flatten() {
            if let Some(r) = r.as_u64().and_then(|r| u32::try_from(r).ok()) {
                held.extend(socket_inodes(r));
                if netns_of(r) != Some(lab.netns()) {
                    p.push(format!("related pid {r} is not in the namespace"));
                }
                if r == pid {
                    p.push(format!("related_pids lists the process itself ({pid})"));
                }
            }
        }
        for s in f["sockets"].as_array().into_iter().flatten() {
            if s["netns"].as_u64() != Some(lab.netns()) {
                p.push(format!(
                    "socket {} in netns {}, not {}",
                    s["local"],
                    s["netns"],
                    lab.netns()
                ));
            }
            if !s["inode"].as_u64().is_some_and(|i| held.contains(&i)) {
                p.push(format!(
                    "socket {} (inode {}) is not held by pid {pid} or its related pids",
                    s["local"], s["inode"]
                ));
            }
        }
        p
    }

    /// The finding of category `category` about interface `name` of the lab's namespace.
    pub fn expect_interface(&self, lab: &Lab, name: &str, category: &str) -> &Value {
        let found = self.in_netns(lab.netns()).into_iter().find(|f| {
            f["category"] == category
                && f["interface"]["name"] == name
                && f["interface"]["netns"].as_u64() == Some(lab.netns())
        });
        let Some(f) = found else {
            lab.fail(&format!(
                "interface {name} (links now: {:?}) was not reported as `{category}`\n{}",
                lab.links(),
                self.explain(lab)
            ));
        };
        println!("interface {name}: {}", describe(f));
        assert!(
            f["process"].is_null(),
            "an interface finding has no process: {}",
            describe(f)
        );
        let evidence = f["evidence"].as_array().map_or(0, Vec::len);
        assert!(
            evidence > 0,
            "interface finding without evidence: {}",
            describe(f)
        );
        f
    }

    /// Fails when any finding's process (or related pid) is `pid`: for benign controls.
    pub fn expect_clean(&self, lab: &Lab, what: &str, pid: u32) {
        let hits = self.involving(pid);
        if !hits.is_empty() {
            lab.fail(&format!(
                "the benign control {what} (pid {pid}, cmdline {:?}) was flagged:\n  {}",
                cmdline(pid),
                hits.iter()
                    .map(|f| describe(f))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
}
