//! The agent: scans every interval with the same engine as `scan`, tracks findings, and
//! reports them (syslog, event log, status socket, sd_notify). Reloads config and
//! signatures on SIGHUP and on file changes, keeping the last good set when a new one is
//! broken; stops cleanly on SIGTERM/SIGINT.
//!
//! Threads: this loop; one for signals; one for the file watcher (notify's); one serving the
//! status socket. They talk to the loop through one channel; the loop owns all state.

use crate::config::{self, Config};
use crate::inventory;
use crate::report::collector::{Collector, Identity, Parts};
use crate::report::eventlog::EventLog;
use crate::report::notify::{monotonic_usec, Notifier};
use crate::report::sinks::Sinks;
use crate::report::status::{Shared, StatusError, StatusServer};
use crate::report::syslog::Syslog;
use crate::report::{log, Level};
use crate::scanner::{self, Scan, Scanner};
use crate::signatures::{self, SignatureSet};
use crate::tracker::Tracker;
use crate::usage::{ms, now_unix_ms, Cost, Usage};
use aupwatch_proto::protocol::Heartbeat;
use aupwatch_proto::status::{self as doc, Health, Status};
use aupwatch_proto::{Event, SCHEMA_VERSION};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] config::ConfigErrors),
    #[error(transparent)]
    Signatures(#[from] signatures::DirError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("cannot set up {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the first inventory failed: {0}")]
    Inventory(#[from] inventory::InventoryError),
}

/// How the agent was started.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `--config`; `None` means the default path if it exists, else built-in defaults.
    pub config_path: Option<PathBuf>,
    /// The procfs mount to read.
    pub proc_root: PathBuf,
}

enum Msg {
    Stop(&'static str),
    Reload(&'static str),
}

/// What [`load_all`] loads: the config, the signature set, and the shipped ids a local
/// signature replaced.
pub struct Loaded {
    pub cfg: Config,
    pub set: SignatureSet,
    pub overridden: Vec<String>,
}

/// Loads config and signatures together: both good, or an error and nothing. A config file
/// or signature directory (or file in one) that another user can write is an error.
pub fn load_all(config_path: Option<&Path>) -> Result<Loaded, DaemonError> {
    let cfg = config::load(config_path)?;
    let layered = signatures::load_layered(
        cfg.signatures_dir.as_deref(),
        cfg.local_signatures_dir.as_deref(),
    )?;
    Ok(Loaded {
        cfg,
        set: layered.set,
        overridden: layered.overridden,
    })
}

/// One log line per shipped signature a local one replaced (at start and on reload).
fn log_overridden(set: &SignatureSet, overridden: &[String]) {
    for id in overridden {
        let by = set
            .signatures
            .iter()
            .find(|s| &s.id == id)
            .map_or(String::new(), |s| format!(" by {}", s.source));
        log(
            Level::Warning,
            &format!("shipped signature {id} is overridden{by}"),
        );
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(mut launch: Launch) -> Result<(), DaemonError> {
    // Absolute, so the file watcher compares like with like whatever the working directory.
    launch.config_path = launch
        .config_path
        .map(|p| std::path::absolute(&p).unwrap_or(p));
    let Loaded {
        cfg,
        set,
        overridden,
    } = load_all(launch.config_path.as_deref())?;
    let notifier = Notifier::from_env().map_err(|source| DaemonError::Setup {
        what: "sd_notify",
        source,
    })?;
    let (tx, rx) = channel();
    spawn_signals(tx.clone()).map_err(|source| DaemonError::Setup {
        what: "signal handling",
        source,
    })?;
    let mut agent = Agent::new(launch, cfg, set, overridden, notifier, tx.clone())?;
    agent.rearm_watcher();
    agent.notify("READY=1");
    log(
        Level::Info,
        &format!(
            "agent started: {} signatures (version {}), interval {}s, status socket {}",
            agent.scanner.set().signatures.len(),
            agent.scanner.set().version(),
            agent.cfg.interval.as_secs(),
            agent.cfg.status.socket.display()
        ),
    );
    log_overridden(agent.scanner.set(), &agent.overridden);
    drop(tx);
    agent.run_loop(&rx);
    agent.notify("STOPPING=1");
    agent.goodbye();
    // What the sinks still hold is written, unless they are stuck.
    let Agent { sinks, .. } = agent;
    sinks.stop(Duration::from_secs(2));
    log(Level::Info, "agent stopped");
    Ok(())
}

fn spawn_signals(tx: Sender<Msg>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let msg = match sig {
                    SIGHUP => Msg::Reload("SIGHUP"),
                    SIGINT => Msg::Stop("SIGINT"),
                    _ => Msg::Stop("SIGTERM"),
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

struct Agent {
    launch: Launch,
    cfg: Config,
    /// Inventory, history, detection cache and prober: the same engine as `scan`.
    scanner: Scanner,
    /// Shipped signature ids a local file replaced.
    overridden: Vec<String>,
    tracker: Option<Tracker>,
    notifier: Notifier,
    /// Where the file watcher sends its reloads.
    tx: Sender<Msg>,
    /// The file watcher and the directories it watches (re-armed when a reload names others).
    watcher: Option<(notify::RecommendedWatcher, Vec<PathBuf>)>,
    /// Syslog and the event log, on their own thread: where they point now.
    sinks: Sinks,
    syslog_target: Option<PathBuf>,
    eventlog_target: Option<PathBuf>,
    /// The collector reporter (spool writer and sender threads), when `[collector]` is set.
    reporter: Option<Collector>,
    /// Why the reporter could not start (shown in status; retried on reload).
    reporter_error: Option<String>,
    status: Shared,
    server: Option<StatusServer>,
    started: Instant,
    started_unix_ms: u64,
    scans: u64,
    last_scan: Option<doc::Scan>,
    last_reload: Option<doc::Reload>,
}

impl Agent {
    fn new(
        launch: Launch,
        cfg: Config,
        set: SignatureSet,
        overridden: Vec<String>,
        notifier: Notifier,
        tx: Sender<Msg>,
    ) -> Result<Agent, DaemonError> {
        let status: Shared = Arc::new(Mutex::new(Arc::from("{}")));
        let server = StatusServer::start(&cfg.status.socket, &cfg.status.group, status.clone())?;
        let scanner = Scanner::new(set, scanner_options(&launch, &cfg));
        let mut agent = Agent {
            scanner,
            launch,
            cfg,
            overridden,
            tracker: None,
            notifier,
            tx,
            watcher: None,
            sinks: Sinks::start().map_err(|source| DaemonError::Setup {
                what: "the sink thread",
                source,
            })?,
            syslog_target: None,
            eventlog_target: None,
            reporter: None,
            reporter_error: None,
            status,
            server: Some(server),
            started: Instant::now(),
            started_unix_ms: now_unix_ms(),
            scans: 0,
            last_scan: None,
            last_reload: None,
        };
        agent.configure_reporters();
        agent.configure_collector();
        agent.publish();
        Ok(agent)
    }

    fn notify(&self, state: &str) {
        if let Err(e) = self.notifier.send(state) {
            log(Level::Warning, &format!("sd_notify failed: {e}"));
        }
    }

    /// The directories to watch: the config file's and the signature directories.
    fn watch_targets(&self) -> Vec<PathBuf> {
        let mut targets: Vec<PathBuf> = Vec::new();
        if let Some(dir) = self.config_file().parent() {
            targets.push(dir.to_path_buf());
        }
        targets.extend(self.cfg.signatures_dir.clone());
        targets.extend(self.cfg.local_signatures_dir.clone());
        targets.retain(|d| d.is_dir());
        targets.sort();
        targets.dedup();
        targets
    }

    fn config_file(&self) -> PathBuf {
        self.launch
            .config_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
    }

    /// (Re)arms the file watcher on the directories the running config names (at start,
    /// and after a reload that names other directories or made a named one appear).
    fn rearm_watcher(&mut self) {
        let targets = self.watch_targets();
        if self.watcher.as_ref().is_some_and(|(_, t)| *t == targets) {
            return;
        }
        // The old watcher first: its thread ends when it drops.
        self.watcher = None;
        self.watcher = watch(self.config_file(), &targets, self.tx.clone()).map(|w| (w, targets));
    }

    fn run_loop(&mut self, rx: &Receiver<Msg>) {
        let mut next_scan = Instant::now();
        let ping_every = self.notifier.watchdog_interval().map(|w| w / 2);
        let mut last_ping = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_scan {
                self.scan();
                next_scan = (next_scan + self.cfg.interval).max(Instant::now());
            }
            if let Some(every) = ping_every {
                if last_ping.elapsed() >= every {
                    self.notify("WATCHDOG=1");
                    last_ping = Instant::now();
                }
            }
            let mut wait = next_scan.saturating_duration_since(Instant::now());
            if let Some(every) = ping_every {
                wait = wait.min(every.saturating_sub(last_ping.elapsed()));
            }
            match rx.recv_timeout(wait) {
                Ok(Msg::Stop(why)) => {
                    log(Level::Info, &format!("{why}: stopping"));
                    return;
                }
                Ok(Msg::Reload(why)) => {
                    // Editors write files in several steps: let them finish, fold the burst.
                    std::thread::sleep(Duration::from_millis(250));
                    let mut stop = None;
                    while let Ok(m) = rx.try_recv() {
                        if let Msg::Stop(s) = m {
                            stop = Some(s);
                        }
                    }
                    if let Some(s) = stop {
                        log(Level::Info, &format!("{s}: stopping"));
                        return;
                    }
                    self.reload(why);
                    next_scan = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn reload(&mut self, trigger: &'static str) {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        let result = load_all(self.launch.config_path.as_deref());
        let info = match result {
            Ok(Loaded {
                cfg,
                set,
                overridden,
            }) => {
                let socket_changed = cfg.status.socket != self.cfg.status.socket
                    || cfg.status.group != self.cfg.status.group;
                log(
                    Level::Info,
                    &format!(
                        "reloaded ({trigger}): {} signatures (version {})",
                        set.signatures.len(),
                        set.version()
                    ),
                );
                if overridden != self.overridden {
                    log_overridden(&set, &overridden);
                }
                self.overridden = overridden;
                // CPU history, the inventory's cache and the probe cache outlive a reload.
                self.scanner
                    .reconfigure(set, scanner_options(&self.launch, &cfg));
                let collector_changed = cfg.collector != self.cfg.collector;
                self.cfg = cfg;
                self.configure_reporters();
                if collector_changed {
                    self.configure_collector();
                }
                self.rearm_watcher();
                if socket_changed {
                    // Stops the old server's thread and removes its socket before the new one.
                    self.server = None;
                    match StatusServer::start(
                        &self.cfg.status.socket,
                        &self.cfg.status.group,
                        self.status.clone(),
                    ) {
                        Ok(s) => self.server = Some(s),
                        Err(e) => log(Level::Error, &format!("status socket: {e}")),
                    }
                }
                doc::Reload {
                    at_unix_ms: now_unix_ms(),
                    trigger: trigger.to_string(),
                    ok: true,
                    error: None,
                }
            }
            Err(e) => {
                // One log line per error, so the journal shows each with its file and line.
                let text = e.to_string();
                let mut lines = text.lines();
                let head = lines.next().unwrap_or("");
                log(
                    Level::Error,
                    &format!("reload ({trigger}) rejected, the previous configuration and signatures keep running: {head}"),
                );
                for line in lines {
                    log(Level::Error, line.trim());
                }
                doc::Reload {
                    at_unix_ms: now_unix_ms(),
                    trigger: trigger.to_string(),
                    ok: false,
                    error: Some(e.to_string()),
                }
            }
        };
        self.last_reload = Some(info);
        self.publish();
        self.notify("READY=1");
    }

    /// (Re)builds the sinks from the config. Their counters stay; a sink pointed at another
    /// target forgets the old target's last error.
    fn configure_reporters(&mut self) {
        let host = self.host_name();
        let syslog = self
            .cfg
            .syslog
            .enabled
            .then(|| Syslog::new(&self.cfg.syslog.socket, self.cfg.syslog.facility, &host));
        let target = syslog.as_ref().map(|s| s.socket().to_path_buf());
        let retarget = target != self.syslog_target;
        self.syslog_target = target;
        // Rebuilt every time: the host name in its header may have changed.
        self.sinks.set_syslog(syslog, retarget);
        let target = self
            .cfg
            .event_log
            .enabled
            .then(|| self.cfg.event_log.path.clone());
        if target != self.eventlog_target {
            self.sinks.set_eventlog(
                target.as_ref().map(|path| {
                    EventLog::new(path, self.cfg.event_log.max_bytes, self.cfg.event_log.keep)
                }),
                true,
            );
            self.eventlog_target = target;
        }
    }

    /// Starts (or restarts, after a reload changed `[collector]`) the collector reporter. A
    /// reporter that cannot start (no machine id, an unreadable CA file, an unwritable spool)
    /// is an error in the log and in status; the agent scans on.
    fn configure_collector(&mut self) {
        if let Some(old) = self.reporter.take() {
            old.stop(Duration::from_secs(1));
        }
        self.reporter_error = None;
        let Some(cc) = self.cfg.collector.clone() else {
            return;
        };
        let hostname = self.cfg.hostname.clone().unwrap_or_else(kernel_hostname);
        let started = Identity::of_host(&cc, &hostname)
            .and_then(|id| Collector::start(&cc, &self.cfg.state_dir, id));
        match started {
            Ok(c) => {
                log(
                    Level::Info,
                    &format!(
                        "reporting to {} (spool in {})",
                        cc.url,
                        self.cfg.state_dir.join("spool").display()
                    ),
                );
                self.reporter = Some(c);
            }
            Err(e) => {
                log(
                    Level::Error,
                    &format!("{e}: not reporting to the collector"),
                );
                self.reporter_error = Some(e.to_string());
            }
        }
    }

    /// What the collector report of this interval says besides events and findings.
    fn heartbeat(&self) -> Heartbeat {
        let own = Usage::own();
        let set = self.scanner.set();
        Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            signature_version: set.version().to_string(),
            signature_count: set.signatures.len() as u64,
            interval_secs: self.cfg.interval.as_secs(),
            started_at_unix_ms: self.started_unix_ms,
            scans: self.scans,
            cpu_ms: ms(own.cpu()),
            max_rss_kib: own.max_rss_kib,
            // The spool writer fills these in.
            spool_reports: 0,
            spool_bytes: 0,
            dropped: Default::default(),
            quarantined: 0,
        }
    }

    /// Hands the collector reporter this interval's report (never blocks).
    fn report(&self, events: Vec<Event>, goodbye: bool) {
        let Some(reporter) = &self.reporter else {
            return;
        };
        let open_findings = self
            .tracker
            .as_ref()
            .map(|t| t.active().into_iter().cloned().collect())
            .unwrap_or_default();
        reporter.submit(Parts {
            created_unix_ms: now_unix_ms(),
            hostname: self.host_name(),
            heartbeat: self.heartbeat(),
            events,
            open_findings,
            goodbye,
        });
    }

    /// A clean stop: the goodbye report (the collector shows the host `stopped`, not
    /// `silent`), delivered if the collector answers within a few seconds; else it waits in
    /// the spool for the next start.
    fn goodbye(&mut self) {
        self.report(Vec::new(), true);
        if let Some(r) = self.reporter.take() {
            r.stop(Duration::from_secs(3));
        }
    }

    fn host_name(&self) -> String {
        self.cfg
            .hostname
            .clone()
            .or_else(|| self.tracker.as_ref().map(|t| t.host().to_string()))
            .unwrap_or_default()
    }

    fn scan(&mut self) {
        let cost = Cost::start();
        let Scan {
            snapshot: snap,
            findings,
            stats,
        } = match self.scanner.scan(None) {
            Ok(s) => s,
            Err(e) => {
                log(
                    Level::Error,
                    &format!("inventory failed, will retry next interval: {e}"),
                );
                return;
            }
        };
        let host = self
            .cfg
            .hostname
            .clone()
            .unwrap_or_else(|| snap.hostname.clone());
        // Resolutions of a host rename go out with this scan's events, in one report.
        let mut events = Vec::new();
        match self.tracker.as_mut() {
            None => {
                self.tracker = Some(Tracker::new(&host));
                self.configure_reporters();
            }
            Some(t) if t.host() != host => {
                // The identities name the host: the old host's findings are resolved (and
                // said so, under the old name), then found again under the new one.
                let old = t.host().to_string();
                let resolved = t.rehost(&host, snap.taken_at_unix_ms);
                log(
                    Level::Info,
                    &format!(
                        "host name changed from {old:?} to {host:?}: {} finding(s) resolved under the old name",
                        resolved.len()
                    ),
                );
                self.sinks.emit(resolved.clone());
                self.configure_reporters();
                events = resolved;
            }
            Some(_) => {}
        }
        // One verdict per offender and category: what the tracker, status and sinks carry.
        let verdicts = crate::detect::verdict::roll_up(findings);
        let count = verdicts.len();
        let found = match self.tracker.as_mut() {
            Some(t) => t.update(verdicts, &self.cfg.exceptions, snap.taken_at_unix_ms),
            None => Vec::new(),
        };
        self.sinks.emit(found.clone());
        events.extend(found);
        let spent = cost.stop();
        self.scans += 1;
        // Every interval, with or without events: the heartbeat is the liveness signal.
        self.report(events, false);
        let (duration_ms, cpu_ms) = (ms(spent.wall), ms(spent.cpu()));
        self.last_scan = Some(doc::Scan {
            at_unix_ms: snap.taken_at_unix_ms,
            duration_ms,
            cpu_ms,
            processes: snap.processes.len() as u64,
            sockets: snap.sockets.len() as u64,
            namespaces: stats.namespaces as u64,
            gaps: snap.gaps.len() as u64,
            findings: count as u64,
            probe_candidates: stats.probe_candidates as u64,
        });
        self.scanner.recycle(snap);
        self.publish();
        let active = self.tracker.as_ref().map_or(0, |t| t.active().len());
        self.notify(&format!(
            "STATUS={active} active finding(s), last scan {duration_ms:.0} ms"
        ));
    }

    /// Rebuilds the status document the socket serves.
    fn publish(&self) {
        let mut doc = self.status_doc();
        crate::report::status::bound(&mut doc);
        let text = crate::report::to_json_vec(&doc)
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_else(|| "{\"error\":\"status: not serializable\"}".to_string());
        let text: Arc<str> = Arc::from(text);
        match self.status.lock() {
            Ok(mut s) => *s = text,
            Err(poisoned) => *poisoned.into_inner() = text,
        }
    }

    fn status_doc(&self) -> Status {
        let own = Usage::own();
        let active = self
            .tracker
            .as_ref()
            .map(|t| t.active().into_iter().cloned().collect())
            .unwrap_or_default();
        let resolved = self
            .tracker
            .as_ref()
            .map(|t| t.recently_resolved().take(20).cloned().collect())
            .unwrap_or_default();
        let tally = self.sinks.tally();
        let degraded = (self.syslog_target.is_some() && tally.syslog.last_error.is_some())
            || (self.eventlog_target.is_some() && tally.eventlog.last_error.is_some())
            || self.last_reload.as_ref().is_some_and(|r| !r.ok)
            || self.reporter_error.is_some();
        let (subjects, entries) = self.scanner.history().size();
        let set = self.scanner.set();
        Status {
            schema_version: SCHEMA_VERSION,
            agent: doc::Agent {
                version: env!("CARGO_PKG_VERSION").to_string(),
                pid: std::process::id(),
                host: self.host_name(),
                health: if self.scans == 0 {
                    Health::Starting
                } else if degraded {
                    Health::Degraded
                } else {
                    Health::Ok
                },
                started_at_unix_ms: self.started_unix_ms,
                uptime_secs: self.started.elapsed().as_secs(),
                config: self.cfg.path.as_ref().map(|p| p.display().to_string()),
                interval_secs: self.cfg.interval.as_secs(),
                cpu_ms: ms(own.cpu()),
                max_rss_kib: own.max_rss_kib,
                history: doc::HistorySize {
                    subjects: subjects as u64,
                    entries: entries as u64,
                },
            },
            last_scan: self.last_scan.clone(),
            scans: self.scans,
            last_reload: self.last_reload.clone(),
            signatures: doc::SignatureSet {
                count: set.signatures.len() as u64,
                version: set.version().to_string(),
                shipped: self
                    .cfg
                    .signatures_dir
                    .as_ref()
                    .map_or("bundled".to_string(), |d| d.display().to_string()),
                local: self
                    .cfg
                    .local_signatures_dir
                    .as_ref()
                    .map(|d| d.display().to_string()),
                overridden: self.overridden.clone(),
            },
            findings: active,
            recently_resolved: resolved,
            findings_omitted: 0,
            reporting: doc::Reporting {
                syslog: self
                    .syslog_target
                    .as_ref()
                    .map(|p| tally.syslog.sink(p.display().to_string())),
                event_log: self
                    .eventlog_target
                    .as_ref()
                    .map(|p| tally.eventlog.sink(p.display().to_string())),
                collector: self.collector_status(),
            },
        }
    }
}

impl Agent {
    fn collector_status(&self) -> Option<doc::Collector> {
        let url = self.cfg.collector.as_ref()?.url.clone();
        let Some(r) = &self.reporter else {
            return Some(doc::Collector {
                url,
                enrolled: false,
                spool_reports: 0,
                spool_bytes: 0,
                spool_full: false,
                delivered: 0,
                last_delivery_unix_ms: None,
                last_error: self.reporter_error.clone(),
                dropped: Default::default(),
                quarantined: 0,
            });
        };
        let d = r.delivery();
        let mut dropped = d.spool.counters.dropped;
        dropped.transitions += d.dropped_unspooled;
        Some(doc::Collector {
            url,
            enrolled: d.enrolled,
            spool_reports: d.spool.reports,
            spool_bytes: d.spool.bytes,
            spool_full: d.spool_full,
            delivered: d.delivered,
            last_delivery_unix_ms: d.last_delivery_unix_ms,
            last_error: d.last_error,
            dropped,
            quarantined: d.spool.counters.quarantined,
        })
    }
}

/// The host name the kernel reports, for enrollment when the config names none.
fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The agent scans every interval, probing when the config says so.
fn scanner_options(launch: &Launch, cfg: &Config) -> scanner::Options {
    scanner::Options {
        proc_root: launch.proc_root.clone(),
        probes: cfg.probes,
        probe_only_netns: Vec::new(),
        interval: cfg.interval,
        netns_helper: Some(cfg.netns_helper.clone()),
    }
}

/// A file watcher on `targets` that asks the loop to reload when the config file or a
/// `*.toml` in them changes; `None` (logged) when it cannot be set up.
fn watch(
    cfg_file: PathBuf,
    targets: &[PathBuf],
    tx: Sender<Msg>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let relevant = move |p: &Path| p == cfg_file || p.extension().is_some_and(|e| e == "toml");
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let writes = !matches!(ev.kind, notify::EventKind::Access(_));
            if writes && ev.paths.iter().any(|p| relevant(p)) {
                let _ = tx.send(Msg::Reload("file change"));
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            log(
                Level::Warning,
                &format!("cannot watch files for changes (SIGHUP still reloads): {e}"),
            );
            return None;
        }
    };
    for dir in targets {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            log(
                Level::Warning,
                &format!("cannot watch {} (SIGHUP still reloads): {e}", dir.display()),
            );
        }
    }
    Some(watcher)
}
