//! Harness of `tests/agent.rs`: the agent daemon under test, the processes it must find, and
//! the sockets it reports to. Builds on [`crate::common`] (the `Lab` network namespace, /proc
//! facts, skip rules).
//!
//! * [`Setup`]: one agent's files in the lab directory: `etc/agent.toml`, the local (and
//!   optionally replacing "shipped") signature directories, `state/`, `run/` for sockets; and
//!   the names that make this test's offenders and signatures unique on a shared machine
//!   (`aupwt<test pid><tag>…`, `mining.aupwt-<test pid>-<tag>-…`).
//! * [`Agent`]: `aupwatch agent` started inside the lab's loopback-only network namespace (it
//!   binds and sends only on Unix sockets in the lab directory, but nothing it could open may
//!   reach beyond loopback), its stdout/stderr in files, the status socket queried directly.
//!   `Drop` kills and reaps it, also when the test panics; `setpriv --pdeathsig` kills it when
//!   the test thread goes away without unwinding (the test binary killed).
//! * [`Offender`]: a copy of `sleep` under a unique name, in the host's namespace (it neither
//!   listens nor connects). `Drop` kills and reaps it; `setpriv --pdeathsig` as for the agent.
//! * [`Sink`]: a Unix datagram socket the test binds (syslog, `NOTIFY_SOCKET`), collecting what
//!   arrives, with the time it arrived.
//! * [`parse_rfc5424`]: a strict RFC 5424 parser (structured data escapes included).
//! * [`run`] / [`run_as`]: a command with a deadline, optionally as another uid/gid (setpriv).

#![allow(dead_code)]

use crate::common::{comm, which, Lab};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long anything the agent should do may take on a loaded machine (a scan of 10k
/// processes can take seconds). Happy paths return as soon as the condition holds.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// How often the status socket is polled.
pub const POLL: Duration = Duration::from_millis(50);
/// `aupwatch status` and other short commands.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aupwatch")
}

/// `CLOCK_MONOTONIC` in microseconds: what `MONOTONIC_USEC=` is measured in.
pub fn monotonic_usec() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1000
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes `text` to `path` atomically (a temporary name that no watcher cares about, then a
/// rename), so the agent never reads half a file. Mode 0644 whatever the umask: the agent
/// refuses config and signature files that group or others can write.
pub fn write_atomic(path: &Path, text: &str) {
    let dir = path.parent().expect("a file in a directory");
    let name = path
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.partial"));
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod 0644 {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Files and names of one agent

/// Options of [`Setup::config`].
#[derive(Debug, Clone)]
pub struct Opts {
    /// `[status] group`; the default names no existing group (socket 0600).
    pub group: String,
    /// `[syslog] enabled` (to `run/syslog.sock`, never the host's /dev/log).
    pub syslog: bool,
    /// Extra top-level keys (`hostname = "…"`).
    pub top: String,
    /// Extra tables at the end (`[[exception]]` …).
    pub tail: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            group: "aupwt-no-such-group".into(),
            syslog: false,
            top: String::new(),
            tail: String::new(),
        }
    }
}

/// One agent's files in the lab directory and the unique names of this test.
pub struct Setup {
    pub dir: PathBuf,
    pub etc: PathBuf,
    pub config: PathBuf,
    /// `local_signatures_dir`.
    pub local: PathBuf,
    /// `signatures_dir` (replaces the bundled packs) when [`Setup::replace_shipped`] was called.
    pub shipped: Option<PathBuf>,
    pub state: PathBuf,
    pub run: PathBuf,
    pub socket: PathBuf,
    pub syslog: PathBuf,
    pub notify: PathBuf,
    /// `aupwt<pid><tag>`: the prefix of every offender name of this test.
    pub base: String,
    tag: String,
}

impl Setup {
    /// `tag`: two lower-case letters, unique among the tests of the binary.
    pub fn new(dir: &Path, tag: &str) -> Setup {
        assert!(
            tag.len() == 2 && tag.chars().all(|c| c.is_ascii_lowercase()),
            "tags are two letters so names cannot run into each other"
        );
        let etc = dir.join("etc");
        let local = etc.join("signatures.d");
        let state = dir.join("state");
        let run = dir.join("run");
        for d in [&etc, &local, &state, &run] {
            fs::create_dir_all(d).expect("create the agent's directories");
            // Another user (the status permission tests) must be able to reach run/.
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        }
        Setup {
            dir: dir.to_path_buf(),
            config: etc.join("agent.toml"),
            etc,
            local,
            shipped: None,
            state,
            socket: run.join("agent.sock"),
            syslog: run.join("syslog.sock"),
            notify: run.join("notify.sock"),
            run,
            base: format!("aupwt{}{tag}", std::process::id()),
            tag: tag.to_string(),
        }
    }

    /// A signature id unique to this test: `mining.aupwt-<pid>-<tag>-<name>`.
    pub fn sig_id(&self, name: &str) -> String {
        format!("mining.aupwt-{}-{}-{name}", std::process::id(), self.tag)
    }

    /// The offender name `<base><suffix>` (at most 15 bytes, so comm holds all of it).
    pub fn name(&self, suffix: &str) -> String {
        let n = format!("{}{suffix}", self.base);
        assert!(n.len() <= 15, "{n} does not fit in comm");
        n
    }

    /// Replaces the bundled packs by one signature no process has a name for: the agent then
    /// finds nothing but this test's offenders, whatever else runs on the machine.
    pub fn replace_shipped(&mut self) {
        let d = self.etc.join("shipped");
        fs::create_dir_all(&d).expect("create the shipped directory");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        let text = signature(
            &self.sig_id("never"),
            "low",
            &format!("{}-never-runs-*", self.base),
        );
        write_atomic(&d.join("shipped.toml"), &text);
        self.shipped = Some(d);
    }

    /// Writes `file` in the local signature directory (atomically).
    pub fn local_signatures(&self, file: &str, text: &str) -> PathBuf {
        let p = self.local.join(file);
        write_atomic(&p, text);
        p
    }

    /// The configuration text: interval 1 s, everything in the lab directory.
    /// The agent's configuration. Probes are `suspected`: `all` would ask every public
    /// listener of the host itself (the agent sees every namespace), which a test must not.
    pub fn config(&self, o: &Opts) -> String {
        let shipped = match &self.shipped {
            Some(d) => format!("signatures_dir = '{}'\n", d.display()),
            None => String::new(),
        };
        format!(
            "interval = \"1s\"\nprobes = \"suspected\"\nstate_dir = '{state}'\nlocal_signatures_dir = '{local}'\n{shipped}{top}\n\
             [status]\nsocket = '{socket}'\ngroup = '{group}'\n\n\
             [syslog]\nenabled = {syslog}\nsocket = '{syslog_socket}'\n\n{tail}\n",
            state = self.state.display(),
            local = self.local.display(),
            top = o.top,
            socket = self.socket.display(),
            group = o.group,
            syslog = o.syslog,
            syslog_socket = self.syslog.display(),
            tail = o.tail,
        )
    }

    /// Writes the configuration file (atomically).
    pub fn write_config(&self, o: &Opts) {
        write_atomic(&self.config, &self.config(o));
    }

    pub fn events_path(&self) -> PathBuf {
        self.state.join("events.jsonl")
    }

    /// Every line of `state/events.jsonl`, each parsed (fails on a line that is not JSON).
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(self.events_path()).unwrap_or_default();
        text.lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("events.jsonl line {} is not JSON ({e}): {l}", i + 1)
                })
            })
            .collect()
    }
}

/// One `[[signature]]` of category mining matching process names `glob`.
pub fn signature(id: &str, severity: &str, glob: &str) -> String {
    format!(
        "[[signature]]\nid = \"{id}\"\ncategory = \"mining\"\nseverity = \"{severity}\"\n\
         description = \"aupwatch agent test offender\"\naup = \"test rule\"\n\
         match = {{ name = [\"{glob}\"] }}\n\n"
    )
}

// ---------------------------------------------------------------------------------------------
// The agent

/// A running `aupwatch agent`, killed on drop.
pub struct Agent {
    child: Option<Child>,
    pid: u32,
    test: String,
    pub socket: PathBuf,
    pub stderr: PathBuf,
    pub stdout: PathBuf,
}

/// How to start an agent beyond the defaults.
#[derive(Default)]
pub struct Launch<'a> {
    /// Extra environment (NOTIFY_SOCKET, WATCHDOG_USEC).
    pub env: Vec<(&'a str, String)>,
    /// Working directory (default: the lab directory).
    pub cwd: Option<PathBuf>,
    /// `--config` as given (default: the absolute path of the setup's config).
    pub config_arg: Option<PathBuf>,
    /// Do not wait for the status socket (the caller waits for READY=1 or the exit itself).
    pub no_wait: bool,
    /// Names the output files `agent-<label>.std{out,err}.log` (for a second agent).
    pub label: Option<&'a str>,
    /// Runs the agent in a UTS namespace of its own (`unshare --uts`), so a test can change
    /// its kernel host name ([`Agent::set_kernel_hostname`]) without touching the machine's.
    pub own_uts: bool,
    /// A command the agent runs under, inside the lab's network namespace (it must exec its
    /// arguments: the agent keeps the pid): `unshare --mount …`.
    pub wrap: Vec<String>,
}

impl Agent {
    /// Starts the agent with the setup's config and waits until its status socket answers.
    pub fn start(test: &str, lab: &Lab, setup: &Setup) -> Agent {
        Agent::launch(test, lab, setup, Launch::default())
    }

    pub fn launch(test: &str, lab: &Lab, setup: &Setup, l: Launch) -> Agent {
        let name = l
            .label
            .map_or("agent".to_string(), |x| format!("agent-{x}"));
        let stderr = setup.dir.join(format!("{name}.stderr.log"));
        let stdout = setup.dir.join(format!("{name}.stdout.log"));
        let err = fs::File::create(&stderr).expect("create the agent's stderr file");
        let out = fs::File::create(&stdout).expect("create the agent's stdout file");
        let config = l.config_arg.clone().unwrap_or_else(|| setup.config.clone());
        // setpriv --pdeathsig: the agent dies with the test thread that started it, even when
        // the test binary is killed outright and no Drop runs.
        // unshare without --fork execs: the agent keeps the pid the test knows.
        let mut cmd = match (which("setpriv"), l.own_uts) {
            (Some(setpriv), uts) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]);
                if uts {
                    c.args(["unshare", "--uts", "--"]);
                }
                c.arg("nsenter");
                c
            }
            (None, true) => {
                let mut c = Command::new("unshare");
                c.args(["--uts", "--", "nsenter"]);
                c
            }
            (None, false) => Command::new("nsenter"),
        };
        cmd.arg(format!("--net=/run/netns/{}", lab.name()))
            .arg("--")
            .args(&l.wrap)
            .arg(bin())
            .arg("agent")
            .arg("--config")
            .arg(&config)
            // The test may itself run under systemd: the agent must talk to the test only.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .current_dir(l.cwd.as_deref().unwrap_or(&setup.dir))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{test}: cannot start the agent: {e}"));
        let mut agent = Agent {
            pid: child.id(),
            child: Some(child),
            test: test.to_string(),
            socket: setup.socket.clone(),
            stderr,
            stdout,
        };
        if !l.no_wait {
            agent.wait_answering();
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sets the kernel host name in the agent's UTS namespace (started with
    /// [`Launch::own_uts`]; otherwise this would rename the machine, so it refuses).
    pub fn set_kernel_hostname(&self, name: &str) {
        let own = fs::read_link(format!("/proc/{}/ns/uts", self.pid)).ok();
        let mine = fs::read_link("/proc/self/ns/uts").ok();
        assert!(
            own.is_some() && own != mine,
            "{}: the agent shares the machine's UTS namespace (Launch::own_uts)",
            self.test
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg("--uts")
            .arg(format!("--target={}", self.pid))
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg("printf '%s' \"$1\" > /proc/sys/kernel/hostname")
            .arg("sh")
            .arg(name);
        let out = run(cmd);
        assert!(
            out.status.success(),
            "{}: setting the host name in the agent's UTS namespace: {out:?}",
            self.test
        );
    }

    /// Waits until the status socket answers with a document.
    pub fn wait_answering(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self.status().is_ok() {
                return;
            }
            if let Some(st) = self.exited() {
                self.fail(&format!(
                    "the agent exited ({st}) before its status socket answered"
                ));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "the status socket {} did not answer within {TIMEOUT:?}: {:?}",
                    self.socket.display(),
                    self.status().err()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The agent's exit status if it has exited (reaps it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Reads the status socket directly (connect, read to EOF, parse).
    pub fn status(&self) -> Result<Value, String> {
        query(&self.socket)
    }

    /// Polls the status socket until `pred` holds, and returns that document. Fails the test
    /// (with the last document and the agent's stderr) on timeout or when the agent exits.
    pub fn wait_status(&mut self, what: &str, pred: impl FnMut(&Value) -> bool) -> Value {
        self.wait_status_within(TIMEOUT, what, pred)
    }

    /// [`Agent::wait_status`] with another timeout.
    pub fn wait_status_within(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status() {
                Ok(doc) => {
                    if pred(&doc) {
                        return doc;
                    }
                    Ok(doc)
                }
                Err(e) => Err(e),
            };
            if let Some(st) = self.exited() {
                self.fail(&format!(
                    "the agent exited ({st}) while waiting for: {what}"
                ));
            }
            if Instant::now() >= deadline {
                let shown = match &last {
                    Ok(doc) => brief(doc),
                    Err(e) => e.clone(),
                };
                self.fail(&format!(
                    "timed out after {timeout:?} waiting for: {what}\nlast status: {shown}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// `aupwatch status --socket SOCKET ARGS…` as this user.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.arg("status")
            .arg("--socket")
            .arg(&self.socket)
            .args(args);
        run(cmd)
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg("-s")
            .arg(sig)
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -s {sig} {} failed", self.pid);
    }

    /// Waits for the agent to exit, up to `timeout`; `None` if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with `msg` and the tail of the agent's stderr.
    pub fn fail(&self, msg: &str) -> ! {
        panic!(
            "{}: {msg}\n--- agent stderr (pid {}) ---\n{}",
            self.test,
            self.pid,
            tail(&self.stderr_text(), 40)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // (Whatever else is left in the lab's namespace, the Lab kills when it drops.)
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Asks the status socket at `path` for its document.
pub fn query(path: &Path) -> Result<Value, String> {
    let mut conn = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("timeout: {e}"))?;
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    let doc: Value = serde_json::from_slice(&buf).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&buf)
                .chars()
                .take(300)
                .collect::<String>()
        )
    })?;
    if doc.get("error").is_some() {
        return Err(format!("the agent answered an error: {doc}"));
    }
    Ok(doc)
}

/// The status document without the bulky parts, for failure messages.
pub fn brief(doc: &Value) -> String {
    let findings: Vec<String> = doc["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{} {} {} pid {} comm {} excepted {}",
                t["id"],
                t["state"],
                signatures(&t["finding"]).join(","),
                t["finding"]["subject"]["pid"],
                t["finding"]["subject"]["comm"],
                t["excepted"]
            )
        })
        .collect();
    let resolved: Vec<String> = doc["recently_resolved"]
        .as_array()
        .into_iter()
        .flatten()
        .take(10)
        .map(|t| format!("{} {}", t["id"], signatures(&t["finding"]).join(",")))
        .collect();
    format!(
        "agent {} scans {} last_reload {} signatures {}\nfindings:\n  {}\nrecently_resolved (first 10):\n  {}",
        doc["agent"],
        doc["scans"],
        doc["last_reload"],
        doc["signatures"],
        findings.join("\n  "),
        resolved.join("\n  ")
    )
}

/// The active finding of signature `sig` whose process is `pid`.
pub fn finding<'a>(doc: &'a Value, sig: &str, pid: u32) -> Option<&'a Value> {
    tracked_in(&doc["findings"], sig, pid)
}

/// The recently resolved finding of signature `sig` whose process was `pid`.
pub fn resolved<'a>(doc: &'a Value, sig: &str, pid: u32) -> Option<&'a Value> {
    tracked_in(&doc["recently_resolved"], sig, pid)
}

fn tracked_in<'a>(list: &'a Value, sig: &str, pid: u32) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|t| has_signature(&t["finding"], sig) && pid_of(&t["finding"]) == Some(pid))
}

/// The signature ids a finding (one verdict) lists in its matches.
pub fn signatures(finding: &Value) -> Vec<&str> {
    finding["matches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["signature"].as_str())
        .collect()
}

/// Whether signature `sig` is among a finding's matches.
pub fn has_signature(finding: &Value, sig: &str) -> bool {
    signatures(finding).contains(&sig)
}

/// The pid of a finding's process, when its subject is a process.
pub fn pid_of(finding: &Value) -> Option<u32> {
    let s = &finding["subject"];
    if s["kind"] != "process" {
        return None;
    }
    s["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

/// The match of signature `sig` in a finding.
pub fn match_of<'a>(finding: &'a Value, sig: &str) -> Option<&'a Value> {
    finding["matches"]
        .as_array()?
        .iter()
        .find(|m| m["signature"] == sig)
}

/// Whether any tracked finding in `list` has id `id`.
pub fn has_id(list: &Value, id: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|t| t["id"] == id))
}

// ---------------------------------------------------------------------------------------------
// The offender

/// A copy of `sleep` named `name` (comm, exe and argv[0]), sleeping; killed on drop.
pub struct Offender {
    child: Option<Child>,
    pub pid: u32,
    pub path: PathBuf,
}

impl Offender {
    /// Copies `sleep` to `<dir>/bin/<name>` and runs it; returns once the process has exec'd.
    pub fn start(dir: &Path, name: &str) -> Offender {
        Offender::start_as(dir, name, None)
    }

    /// [`Offender::start`] with `argv0` as its `argv[0]` (the command line a hostile process
    /// chooses); then without `setpriv`, which would put the path there.
    pub fn start_as(dir: &Path, name: &str, argv0: Option<&str>) -> Offender {
        let sleep = which("sleep").expect("`sleep` is installed (coreutils)");
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).expect("create bin/");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod bin/");
        let path = bin.join(name);
        if !path.exists() {
            crate::common::install_executable(&sleep, &path);
        }
        // What /proc/PID/exe will say.
        let path = fs::canonicalize(&path).expect("canonicalize the offender's path");
        // The copy was written by another process, so no child forked here holds it open;
        // ETXTBSY is still retried briefly in case another test copies the same name.
        // setpriv --pdeathsig: it dies with the test thread
        // even when the test binary is killed outright and no Drop runs.
        let setpriv = which("setpriv");
        let retry_until = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cmd = match (&setpriv, argv0) {
                (_, Some(a)) => {
                    let mut c = Command::new(&path);
                    std::os::unix::process::CommandExt::arg0(&mut c, a);
                    c
                }
                (Some(sp), None) => {
                    let mut c = Command::new(sp);
                    c.args(["--pdeathsig", "KILL", "--"]).arg(&path);
                    c
                }
                (None, None) => Command::new(&path),
            };
            cmd.arg("600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) if e.raw_os_error() == Some(26) && Instant::now() < retry_until => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => panic!("cannot start the offender {}: {e}", path.display()),
            };
            let pid = child.id();
            let deadline = Instant::now() + TIMEOUT;
            let execed = loop {
                let exe = fs::read_link(format!("/proc/{pid}/exe"));
                if exe.is_ok_and(|e| e == path) && comm(pid).is_some() {
                    break true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the offender {name:?} (pid {pid}) did not start within {TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if execed {
                return Offender {
                    child: Some(child),
                    pid,
                    path,
                };
            }
            assert!(
                Instant::now() < retry_until,
                "the offender {name:?} kept exiting before it ran"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub fn start_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("read stat");
        let after = &stat[stat.rfind(')').expect("comm in stat") + 1..];
        after
            .split_whitespace()
            .nth(19)
            .and_then(|s| s.parse().ok())
            .expect("starttime in stat")
    }
}

impl Drop for Offender {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Datagram sinks (syslog, sd_notify)

/// One datagram as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// CLOCK_MONOTONIC when it was read, in µs.
    pub mono_usec: u64,
    pub raw: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// A bound Unix datagram socket and a thread collecting what arrives.
pub struct Sink {
    path: PathBuf,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    pub fn bind(path: &Path) -> Sink {
        let _ = fs::remove_file(path);
        let sock =
            UnixDatagram::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set_read_timeout");
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let r = Received {
                        at: Instant::now(),
                        mono_usec: monotonic_usec(),
                        raw: buf[..n].to_vec(),
                    };
                    match g.lock() {
                        Ok(mut v) => v.push(r),
                        Err(p) => p.into_inner().push(r),
                    }
                }
            }
        });
        Sink {
            path: path.to_path_buf(),
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        match self.got.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Waits until `pred` holds on everything received so far; returns it. Fails with what
    /// was received on timeout.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        agent: &Agent,
        mut pred: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if pred(&got) {
                return got;
            }
            if Instant::now() >= deadline {
                let shown: Vec<String> = got.iter().rev().take(30).map(|r| r.text()).collect();
                agent.fail(&format!(
                    "{}: timed out after {timeout:?} waiting for: {what}\nreceived {} datagram(s), the last ones (newest first):\n  {}",
                    self.path.display(),
                    got.len(),
                    shown.join("\n  ")
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 5424

/// One parsed RFC 5424 message.
#[derive(Debug, Clone)]
pub struct Rfc5424 {
    pub pri: u8,
    pub timestamp: String,
    pub host: String,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    /// `(SD-ID, [(name, unescaped value)])`.
    pub sd: Vec<(String, Vec<(String, String)>)>,
    pub msg: String,
}

impl Rfc5424 {
    /// The value of `param` in element `sd_id`.
    pub fn param(&self, sd_id: &str, param: &str) -> Option<&str> {
        self.sd
            .iter()
            .find(|(id, _)| id == sd_id)?
            .1
            .iter()
            .find(|(k, _)| k == param)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `line` strictly: header fields, SD-IDs and PARAM-NAMEs of printable US-ASCII without
/// `=`, space, `]`, `"`, and PARAM-VALUEs in which `"`, `\` and `]` are escaped (RFC 5424
/// §6.3.3: they MUST be) and nothing else is.
pub fn parse_rfc5424(line: &str) -> Result<Rfc5424, String> {
    let rest = line.strip_prefix('<').ok_or("no `<PRI>`")?;
    let (pri, rest) = rest.split_once('>').ok_or("no `>` after PRI")?;
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("PRI `{pri}` is not 1-3 digits"));
    }
    let pri: u8 = pri.parse().map_err(|_| format!("PRI {pri} > 255"))?;
    if pri > 191 {
        return Err(format!("PRI {pri} > 191"));
    }
    let rest = rest.strip_prefix("1 ").ok_or("VERSION is not `1 `")?;
    let mut fields = Vec::new();
    let mut rest = rest;
    for (name, max) in [
        ("TIMESTAMP", 64),
        ("HOSTNAME", 255),
        ("APP-NAME", 48),
        ("PROCID", 128),
        ("MSGID", 32),
    ] {
        let (f, r) = rest
            .split_once(' ')
            .ok_or(format!("no space after {name}"))?;
        if f.is_empty() || f.len() > max || !f.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(format!("{name} `{f}` is not 1-{max} printable US-ASCII"));
        }
        fields.push(f.to_string());
        rest = r;
    }
    let ts = &fields[0];
    let ts_re =
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
            .expect("regex");
    if ts != "-" && !ts_re.is_match(ts) {
        return Err(format!(
            "TIMESTAMP `{ts}` is not RFC 3339 as RFC 5424 wants it"
        ));
    }
    let mut sd = Vec::new();
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    let name_char =
        |c: char| c.is_ascii() && (33..=126).contains(&(c as u8)) && !"= ]\"".contains(c);
    if chars.first() == Some(&'-') {
        i = 1;
    } else {
        while chars.get(i) == Some(&'[') {
            i += 1;
            let start = i;
            while chars.get(i).is_some_and(|c| name_char(*c)) {
                i += 1;
            }
            let id: String = chars[start..i].iter().collect();
            if id.is_empty() || id.len() > 32 {
                return Err(format!("SD-ID `{id}` is not 1-32 characters"));
            }
            let mut params = Vec::new();
            loop {
                match chars.get(i) {
                    Some(']') => {
                        i += 1;
                        break;
                    }
                    Some(' ') => i += 1,
                    other => {
                        return Err(format!("in [{id}: expected space or `]`, found {other:?}"))
                    }
                }
                let start = i;
                while chars.get(i).is_some_and(|c| name_char(*c)) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name.is_empty() || name.len() > 32 {
                    return Err(format!(
                        "in [{id}: PARAM-NAME `{name}` is not 1-32 characters"
                    ));
                }
                if chars.get(i) != Some(&'=') || chars.get(i + 1) != Some(&'"') {
                    return Err(format!("in [{id}: {name} is not followed by `=\"`"));
                }
                i += 2;
                let mut value = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(format!("in [{id}: value of {name} never ends")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(']') => {
                            return Err(format!(
                                "in [{id}: value of {name} has an unescaped `]` (after `{value}`)"
                            ))
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(c @ ('"' | '\\' | ']')) => {
                                value.push(*c);
                                i += 2;
                            }
                            other => {
                                return Err(format!(
                                    "in [{id}: value of {name} has a lone backslash before {other:?} (after `{value}`): a `\\` in the data must be written `\\\\`"
                                ))
                            }
                        },
                        Some(c) => {
                            value.push(*c);
                            i += 1;
                        }
                    }
                }
                params.push((name, value));
            }
            sd.push((id, params));
        }
        if sd.is_empty() {
            return Err("STRUCTURED-DATA is neither `-` nor `[…]`".into());
        }
    }
    let msg: String = match chars.get(i) {
        None => String::new(),
        Some(' ') => chars[i + 1..].iter().collect(),
        Some(c) => return Err(format!("expected a space before MSG, found {c:?}")),
    };
    Ok(Rfc5424 {
        pri,
        timestamp: fields[0].clone(),
        host: fields[1].clone(),
        app: fields[2].clone(),
        procid: fields[3].clone(),
        msgid: fields[4].clone(),
        sd,
        msg,
    })
}

// ---------------------------------------------------------------------------------------------
// Commands

/// Runs `cmd` to completion with [`COMMAND_TIMEOUT`], output captured; kills it on timeout.
pub fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("waiting for {shown}: {e}"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{shown} did not finish within {COMMAND_TIMEOUT:?}");
        }
    }
}

/// Who [`run_as`] runs a command as.
#[derive(Debug, Clone)]
pub struct As {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (none: `--clear-groups`).
    pub groups: Vec<u32>,
}

/// Runs `program args…` as `who` through `setpriv` (no capabilities survive the uid change).
pub fn run_as(setpriv: &Path, who: &As, program: impl AsRef<OsStr>, args: &[&OsStr]) -> Output {
    let mut cmd = Command::new(setpriv);
    cmd.arg(format!("--reuid={}", who.uid))
        .arg(format!("--regid={}", who.gid));
    if who.groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = who.groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg("--").arg(program).args(args).current_dir("/");
    run(cmd)
}

/// Shows an output for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        tail(&String::from_utf8_lossy(&out.stdout), 20),
        tail(&String::from_utf8_lossy(&out.stderr), 20)
    )
}

/// The gid of group `name`, if it exists.
pub fn group_gid(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}
