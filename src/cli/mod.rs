//! Command line: flags → one command → an exit status. The only place that uses `anyhow`.

pub mod args;
mod output;
mod status;

use anyhow::{bail, Context, Result};
use args::{
    Cli, Command, ConfigCommand, NetnsHelperArgs, ScanArgs, SignatureSource, SignaturesCommand,
};
use aupwatch::detect;
use aupwatch::detect::probe::ProbeMode;
use aupwatch::inventory;
use aupwatch::report::{printable, printable_lines, stderr_line};
use aupwatch::scanner::{self, Scan, Scanner};
use aupwatch::signatures::{self, SignatureSet};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    match cli.command {
        Command::Scan(args) => scan(args),
        Command::NetnsHelper(args) => netns_helper(args),
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
                netns_helper: Some(args.netns_helper),
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
        None => signatures::check_bundled().map_err(anyhow::Error::from),
    };
    match result {
        Ok(set) => {
            let where_ = dir
                .as_ref()
                .map_or("bundled packs".to_string(), |d| d.display().to_string());
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
        // A directory's errors name it (or each file, with its line) already.
        Err(e) if dir.is_some() => {
            stderr_line(&printable_lines(&e.to_string()));
            Ok(EXIT_ERROR)
        }
        Err(e) => {
            stderr_line(&printable_lines(&format!("bundled packs: {e}")));
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
            netns_helper: Some(args.netns_helper.clone()),
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
        printed(output::explain(
            &output::Explained {
                snap: &snap,
                proc_root: &args.proc_root,
                pid,
                only_matched: args.matched,
            },
            &explanations,
            &findings,
        ))?;
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

/// `aupwatch netns-helper`: serves until idle.
fn netns_helper(args: NetnsHelperArgs) -> Result<u8> {
    use aupwatch::netns_helper::{self as helper, Allowed, ServeOptions};
    let uid = args.allow.parse::<u32>().ok();
    let user = match uid {
        Some(uid) => nix::unistd::User::from_uid(uid.into()),
        None => nix::unistd::User::from_name(&args.allow),
    }
    .with_context(|| format!("--allow {}: cannot read the user database", args.allow))?;
    // A user name that does not exist is no error (root is still served): a host may start
    // the helper before the package created the user. A uid without an entry is that uid.
    // Only the user, not its group (see `Allowed`).
    let allowed = Allowed {
        uid: user.as_ref().map(|u| u.uid.as_raw()).or(uid),
    };
    let listener = match &args.socket {
        Some(path) => helper::bind(path)?,
        None => helper::stdin_listener().context(
            "no --socket and standard input is not a listening socket (StandardInput=socket)",
        )?,
    };
    helper::serve(ServeOptions {
        listener,
        allowed,
        idle_exit: (args.idle_exit > 0).then(|| Duration::from_secs(args.idle_exit)),
    })?;
    Ok(EXIT_CLEAN)
}
