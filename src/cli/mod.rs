//! Command line: flags → one command → an exit status. The only place that uses `anyhow`.

mod output;
mod status;

use anyhow::{bail, Context, Result};
use aupwatch::detect;
use aupwatch::detect::probe::ProbeMode;
use aupwatch::inventory;
use aupwatch::report::{printable, printable_lines, stderr_line};
use aupwatch::scanner::{self, Scan, Scanner};
use aupwatch::signatures::{self, SignatureSet};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "aupwatch",
    version,
    about = "Find acceptable-use-policy abuse on this host: miners, IRC, Tor, VPN services, open proxies …",
    long_about = "aupwatch inventories this host from /proc (processes, their CPU use, the TCP and UDP \
sockets of every network namespace, interface counters) and matches the inventory against \
signatures: TOML rules for cryptocurrency mining, volunteer computing, IRC servers and bots, \
Tor, commercial VPN services, proxies and more. The signature packs are compiled into the \
binary.\n\nRun it as root to see every process and socket; as another user it sees only what \
/proc shows that user, and says so.\n\nExit status: 0 no findings, 1 findings, 2 error.",
    after_help = "Examples:\n  aupwatch scan                     scan this host, readable table\n  aupwatch scan --json | jq .       the same for machines\n  aupwatch scan --explain 4242      what every signature saw on pid 4242\n  aupwatch signatures check ./sigs  validate a signature directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan this host once and print the findings.
    #[command(
        long_about = "Takes an inventory of the host, samples CPU use for --sample seconds \
(a second inventory), matches every signature and prints the findings: a table by default, \
JSON with --json. Exits 0 when nothing was found, 1 when something was, 2 on error."
    )]
    Scan(ScanArgs),
    /// Validate or list signatures.
    #[command(subcommand)]
    Signatures(SignaturesCommand),
    /// Print the raw inventory of this host as JSON (what the signatures are matched against).
    Inventory(InventoryArgs),
    /// Run the agent: scan every interval, track findings, report them (run by systemd).
    #[command(
        long_about = "Runs in the foreground until SIGTERM or SIGINT. Every `interval` \
(default 15 s) it scans the host with the same engine as `scan`, tracks each finding's \
lifecycle (new, ongoing, resolved) under a stable identity, applies the configured \
exceptions, and reports: RFC 5424 syslog with structured data, a JSON-lines event log in the \
state directory, and a status socket that `aupwatch status` reads. SIGHUP, or a change to the \
config file or a signature directory, reloads configuration and signatures; a broken new set \
is rejected and the running one kept. Speaks sd_notify (READY, WATCHDOG, RELOADING, \
STOPPING) when started by systemd with Type=notify."
    )]
    Agent(AgentArgs),
    /// Show the running agent's status: health, last scan, signatures, findings.
    #[command(
        long_about = "Asks the running agent, over its status socket, for its status \
document and prints it: a table by default, the document with --json, metrics with \
--prometheus. The agent's health is ok, starting, degraded (a sink failing, a reload \
rejected, the collector reporter down) or stalled: its last scan is older than two scan \
intervals, plus that scan's duration (the agent cannot notice its own stuck loop, so this \
command decides it from the document; its status socket may still answer).\n\n\
Exit status: 0 the agent runs and has no active finding outside an exception; 1 it has \
active findings no exception covers; 2 error (no agent answering, a refused or garbled \
answer) or the agent is stalled."
    )]
    Status(StatusArgs),
    /// Validate the agent's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Args)]
struct AgentArgs {
    /// Configuration file [default: /etc/aupwatch/agent.toml if it exists, else built-in defaults].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Read this procfs mount instead of /proc.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    proc_root: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    /// The agent's status socket.
    #[arg(long, value_name = "PATH", default_value = "/run/aupwatch/agent.sock")]
    socket: PathBuf,
    /// Print the status document as JSON.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print metrics in the Prometheus text format (for node_exporter's textfile collector).
    #[arg(long)]
    prometheus: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the configuration file and the signatures it names, without starting the agent.
    #[command(
        long_about = "Loads the configuration (FILE, else /etc/aupwatch/agent.toml if it \
exists, else built-in defaults) and the signatures it names (shipped plus local override \
directory) and reports every error with file, line and key or signature id. Exits 0 when \
valid, 2 otherwise. Meant for ExecStartPre= and for CI."
    )]
    Check {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
struct SignatureSource {
    /// Use the *.toml signature files of DIR instead of the bundled packs.
    #[arg(long, value_name = "DIR")]
    signatures: Option<PathBuf>,
}

#[derive(Args)]
struct ScanArgs {
    #[command(flatten)]
    source: SignatureSource,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Seconds to sample CPU use over (0: use each process's average since start only).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    sample: f64,
    /// Instead of findings, show what each signature saw on this process.
    #[arg(long, value_name = "PID")]
    explain: Option<i32>,
    /// Run N scans in one process, waiting --sample seconds between them, and print each
    /// scan's wall and CPU time to stderr (the first is cold, the rest steady state). The
    /// findings of the last scan are printed.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    iterations: u32,
    /// Which listeners the open-proxy probe asks, from inside their network namespace, to
    /// connect to the probe's own canary listener there (HTTP CONNECT and GET, SOCKS5,
    /// SOCKS4; at most 1 s per question and 3 s in all): `all` (default) — the listeners of
    /// findings whose signature says `probe = "proxy"`, and every other public TCP listener no
    /// finding of another category explains; `suspected` — only the former; `off`. `open`
    /// makes a finding high; an open listener no signature suspected is a finding of its own
    /// (`proxy.verified-open`).
    #[arg(long, value_name = "WHICH", default_value = "all", value_parser = ["all", "suspected", "off"])]
    probes: String,
    /// Do not probe: `--probes off`.
    #[arg(long, conflicts_with = "probes")]
    no_probe: bool,
    /// Probe only listeners in this network namespace (inode; repeatable). For tests, which
    /// must not probe the host's own listeners.
    #[arg(long, value_name = "INODE", hide = true)]
    probe_netns: Vec<u64>,
    /// Read this procfs mount instead of /proc.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    proc_root: PathBuf,
}

#[derive(Subcommand)]
enum SignaturesCommand {
    /// Validate signature files; reports every error with file, line and signature id.
    #[command(
        long_about = "Loads the *.toml files of DIR (the bundled packs when DIR is not \
given) and reports every error with file, line and signature id. Exits 0 when the set is \
valid, 2 otherwise."
    )]
    Check {
        /// Directory of *.toml signature files.
        dir: Option<PathBuf>,
    },
    /// List the loaded signatures.
    List {
        #[command(flatten)]
        source: SignatureSource,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct InventoryArgs {
    /// Read this procfs mount instead of /proc.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    proc_root: PathBuf,
}

pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan(args) => scan(args),
        Command::Signatures(SignaturesCommand::Check { dir }) => check(dir),
        Command::Signatures(SignaturesCommand::List { source, json }) => {
            let set = load(&source)?;
            printed(output::list(&set, json))?;
            Ok(EXIT_CLEAN)
        }
        Command::Agent(args) => {
            aupwatch::daemon::run(aupwatch::daemon::Launch {
                config_path: args.config,
                proc_root: args.proc_root,
            })?;
            Ok(EXIT_CLEAN)
        }
        Command::Status(args) => {
            let mut doc = aupwatch::report::status::query(&args.socket)?;
            let now = aupwatch::usage::now_unix_ms();
            if let Some(age) = status::judge_stall(&mut doc, now) {
                stderr_line(&format!(
                    "aupwatch status: the agent is stalled: its last scan is {}s old, its interval {}s",
                    age / 1000,
                    doc.agent.interval_secs
                ));
            }
            printed(if args.json {
                output::json(&doc)
            } else if args.prometheus {
                let mut out = std::io::stdout().lock();
                status::prometheus(&doc, &mut out).map_err(anyhow::Error::from)
            } else {
                status::table(&doc)
            })?;
            Ok(status::exit_code(&doc))
        }
        Command::Config(ConfigCommand::Check { config }) => {
            match aupwatch::daemon::load_all(config.as_deref()) {
                Ok(aupwatch::daemon::Loaded {
                    cfg,
                    set,
                    overridden,
                }) => {
                    let from = cfg
                        .path
                        .as_ref()
                        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
                    printed(
                        writeln!(
                            std::io::stdout(),
                            "{}: OK — interval {}s, {} signatures (version {}{}), {} exception(s)",
                            printable(&from),
                            cfg.interval.as_secs(),
                            set.signatures.len(),
                            set.version(),
                            if overridden.is_empty() {
                                String::new()
                            } else {
                                format!("; {} shipped overridden locally", overridden.len())
                            },
                            cfg.exceptions.len()
                        )
                        .map_err(anyhow::Error::from),
                    )?;
                    for id in &overridden {
                        let by = set
                            .signatures
                            .iter()
                            .find(|s| &s.id == id)
                            .map_or(String::new(), |s| format!(" by {}", s.source));
                        stderr_line(&format!(
                            "note: shipped signature {} is overridden{}",
                            printable(id),
                            printable(&by)
                        ));
                    }
                    let reporting = match &cfg.collector {
                        Some(c) => format!(
                            "collector: {} (spool at most {} bytes, {} reports, {}s)",
                            c.url,
                            c.spool.max_bytes,
                            c.spool.max_reports,
                            c.spool.max_age_ms / 1000
                        ),
                        None => "collector: not configured".to_string(),
                    };
                    printed(
                        writeln!(std::io::stdout(), "{}", printable(&reporting))
                            .map_err(anyhow::Error::from),
                    )?;
                    let now = aupwatch::usage::now_unix_ms();
                    for ex in &cfg.exceptions {
                        if ex.expires_unix_ms.is_some_and(|e| e <= now) {
                            stderr_line(&format!(
                                "warning: {}: exception has expired ({}) and no longer applies",
                                printable(&ex.source),
                                printable(ex.expires_text.as_deref().unwrap_or("?"))
                            ));
                        }
                        let known = set.signatures.iter().any(|s| ex.signatures.is_match(&s.id));
                        if !known {
                            stderr_line(&format!(
                                "warning: {}: exception matches no loaded signature ({})",
                                printable(&ex.source),
                                printable(&ex.signature_patterns.join(", "))
                            ));
                        }
                    }
                    Ok(EXIT_CLEAN)
                }
                Err(e) => {
                    stderr_line(&printable_lines(&e.to_string()));
                    Ok(EXIT_ERROR)
                }
            }
        }
        Command::Inventory(args) => {
            let snap = inventory::take(&inventory::Options {
                proc_root: args.proc_root,
                ..inventory::Options::default()
            })?;
            printed(output::json(&snap))?;
            Ok(EXIT_CLEAN)
        }
    }
}

fn load(source: &SignatureSource) -> Result<SignatureSet> {
    Ok(match &source.signatures {
        Some(dir) => signatures::load_dir(dir)?,
        None => signatures::load_bundled().context("the bundled signatures are broken")?,
    })
}

fn check(dir: Option<PathBuf>) -> Result<u8> {
    let result = match &dir {
        Some(d) => signatures::load_dir(d).map_err(anyhow::Error::from),
        None => signatures::load_bundled().map_err(anyhow::Error::from),
    };
    let where_ = dir
        .as_ref()
        .map_or("bundled packs".to_string(), |d| d.display().to_string());
    match result {
        Ok(set) => {
            printed(
                writeln!(
                    std::io::stdout(),
                    "{}: {} signatures OK (version {})",
                    printable(&where_),
                    set.signatures.len(),
                    set.version()
                )
                .map_err(anyhow::Error::from),
            )?;
            Ok(EXIT_CLEAN)
        }
        Err(e) => {
            stderr_line(&printable_lines(&format!("{where_}: {e}")));
            Ok(EXIT_ERROR)
        }
    }
}

fn scan(args: ScanArgs) -> Result<u8> {
    if !(args.sample >= 0.0 && args.sample <= 3600.0) {
        bail!(
            "--sample must be between 0 and 3600 seconds, not {}",
            args.sample
        );
    }
    let set = load(&args.source)?;
    let pause = Duration::from_secs_f64(args.sample);
    let mut scanner = Scanner::new(
        set,
        scanner::Options {
            proc_root: args.proc_root.clone(),
            probes: if args.no_probe {
                ProbeMode::Off
            } else {
                ProbeMode::parse(&args.probes).unwrap_or_default()
            },
            probe_only_netns: args.probe_netns.clone(),
            interval: pause,
        },
    );
    if args.sample > 0.0 {
        // A first inventory to sample CPU use against.
        scanner.prime()?;
        std::thread::sleep(pause);
    }
    let mut last = None;
    for i in 1..=args.iterations {
        // With --explain only this process's findings: their probes are part of the
        // explanation.
        let scan = scanner.scan(args.explain)?;
        if args.iterations > 1 {
            stderr_line(&format!(
                "iteration {i}/{}: {} processes={} sockets={} detect_cpu_ms={:.3}",
                args.iterations,
                spent_line(&scan.stats.spent),
                scan.snapshot.processes.len(),
                scan.snapshot.sockets.len(),
                aupwatch::usage::ms(scan.stats.detect.cpu())
            ));
            if i < args.iterations && args.sample > 0.0 {
                std::thread::sleep(pause);
            }
        }
        if let Some(done) = last.replace(scan) {
            scanner.recycle(done.snapshot);
        }
    }
    let Some(Scan {
        snapshot: snap,
        findings,
        ..
    }) = last
    else {
        bail!("no scan ran")
    };
    let (history, set) = (scanner.history(), scanner.set());
    if let Some(pid) = args.explain {
        let Some(explanations) = detect::explain(&snap, history, set, pid) else {
            bail!("no process {pid} in the inventory (it exited, or this user cannot see it)");
        };
        printed(output::explain(&snap, pid, &explanations, &findings))?;
        let any = explanations.iter().any(|e| e.matched);
        return Ok(if any { EXIT_FINDINGS } else { EXIT_CLEAN });
    }
    let report = output::ScanReport::new(&snap, set, &findings, args.sample);
    printed(if args.json {
        output::json(&report)
    } else {
        output::table(&report)
    })?;
    Ok(if findings.is_empty() {
        EXIT_CLEAN
    } else {
        EXIT_FINDINGS
    })
}

/// Output that ended because its reader went away ended quietly: a broken pipe on stdout
/// (`aupwatch scan | head -1`) is the end of the output, not an error, and the command exits
/// with the status it would have had (ripgrep's rule).
fn printed(result: Result<()>) -> Result<()> {
    match result {
        Err(e) if broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// One scan's cost as `scan --iterations` prints it (bench/run parses this line).
fn spent_line(s: &aupwatch::usage::Spent) -> String {
    use aupwatch::usage::ms;
    format!(
        "wall_ms={:.3} cpu_ms={:.3} user_ms={:.3} sys_ms={:.3}",
        ms(s.wall),
        ms(s.cpu()),
        ms(s.user),
        ms(s.sys)
    )
}
