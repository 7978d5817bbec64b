//! The command line: `serve`, `config check`, secrets, tokens, hosts, findings, alerts,
//! summary.
//! Everything but `serve` talks to the database directly (same config), so it works with
//! no server running. Exit status: 0 clean, 1 findings present (findings, summary) or a
//! failed alert listed (alerts), 2 error.
//! Every host-supplied string goes through `escape::printable` before the terminal.

mod args;

use anyhow::{anyhow, bail, Result};
use args::{Cli, Command, ConfigCmd, HostCmd, SecretCmd, TokenCmd, UserCmd};
use aupwatch_collector::alerts::rfc3339 as time;
use aupwatch_collector::clock::{Clock, SystemClock};
use aupwatch_collector::config::Config;
use aupwatch_collector::escape::printable;
use aupwatch_collector::http::{build_summary, finding_page, host_rows, parse_filter};
use aupwatch_collector::store::{AlertState, HostAction, Role, Store};
use aupwatch_collector::{secret, server};
use clap::Parser;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Used when `--config` is not given and the file exists.
const SYSTEM_CONFIG: &str = "/etc/aupwatch-collector/collector.toml";

/// A new account's password: prompted twice on a terminal, else the first line of stdin.
fn read_password() -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("password: ")?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        Ok(a)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// The config file in effect: `--config`, else the system one when it exists. One that is
/// present but not reachable (a directory this user may not enter) is an error, never a
/// reason to run on the defaults in silence.
fn config_path(given: Option<&PathBuf>) -> Result<Option<PathBuf>> {
    if let Some(p) = given {
        return Ok(Some(p.clone()));
    }
    let p = PathBuf::from(SYSTEM_CONFIG);
    match p.try_exists() {
        Ok(true) => Ok(Some(p)),
        Ok(false) => Ok(None),
        Err(e) => bail!("{SYSTEM_CONFIG}: {e} (is its directory searchable by this user?)"),
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match config_path(path)? {
        None => Ok(Config::default()),
        Some(p) => Config::load(&p).map_err(|errs| {
            anyhow!(errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"))
        }),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Config {
        command: ConfigCmd::Check,
    } = &cli.command
    {
        return match config_path(cli.config.as_ref())? {
            None => {
                println!("no config file ({SYSTEM_CONFIG} does not exist): the defaults apply");
                Ok(ExitCode::SUCCESS)
            }
            Some(p) => match Config::load(&p) {
                Ok(_) => {
                    println!("{}: ok", p.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errs) => {
                    for e in errs {
                        eprintln!("{e}");
                    }
                    Ok(ExitCode::from(2))
                }
            },
        };
    }
    let mut config = load_config(cli.config.as_ref())?;
    let rt = runtime()?;
    if let Command::Serve { listen } = cli.command {
        if let Some(l) = listen {
            config.listen = l;
        }
        rt.block_on(server::serve(config))?;
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(async move {
        let store = server::open_store(&config).await?;
        command(cli.command, store, &config).await
    })
}

fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

async fn command(cmd: Command, store: Arc<dyn Store>, config: &Config) -> Result<ExitCode> {
    let now = SystemClock.now_unix_ms();
    match cmd {
        Command::Serve { .. } | Command::Config { .. } => bail!("unreachable"),
        Command::Secret { command } => match command {
            SecretCmd::Create { label } => {
                let customer = match label.as_deref() {
                    None => None,
                    Some(l) => match l.split_once('=') {
                        Some(("customer", v)) if !v.is_empty() => Some(v.to_string()),
                        _ => bail!("--label: customer=<name>"),
                    },
                };
                let s = secret::new_secret()?;
                let id = store.create_secret(secret::hash(&s), customer, now).await?;
                out(&format!(
                    "secret {id}: {s}\n(shown once; the collector keeps only its hash)\n"
                ))?;
            }
            SecretCmd::List { json } => {
                let rows = store.secrets().await?;
                if json {
                    out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
                } else {
                    let mut t = String::from("ID\tCUSTOMER\tCREATED\tREVOKED\n");
                    for r in rows {
                        t.push_str(&format!(
                            "{}\t{}\t{}\t{}\n",
                            r.id,
                            printable(r.customer.as_deref().unwrap_or("-")),
                            time(r.created_unix_ms),
                            r.revoked_unix_ms.map_or("-".into(), time)
                        ));
                    }
                    out(&t)?;
                }
            }
            SecretCmd::Revoke { id } => {
                if !store.revoke_secret(id, now).await? {
                    bail!("no active secret {id}");
                }
                out(&format!("secret {id} revoked\n"))?;
            }
        },
        Command::User { command } => match command {
            UserCmd::Create { name, role } => {
                let role = Role::parse(&role)
                    .ok_or_else(|| anyhow!("--role: viewer, analyst or admin"))?;
                if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    bail!("--name: no spaces or control characters");
                }
                let password = read_password()?;
                let hash = tokio::task::spawn_blocking(move || {
                    aupwatch_collector::web::auth::hash_password(&password)
                })
                .await??;
                match store.create_user(name.clone(), role, hash, now).await? {
                    Some(id) => out(&format!(
                        "user {id} {} ({})\n",
                        printable(&name),
                        role.as_str()
                    ))?,
                    None => bail!("a user named {} exists", printable(&name)),
                }
            }
            UserCmd::List => {
                let mut text = String::new();
                for u in store.users().await? {
                    text.push_str(&format!(
                        "{}\t{}\t{}\t{}\n",
                        u.id,
                        printable(&u.name),
                        u.role.as_str(),
                        time(u.created_unix_ms)
                    ));
                }
                out(&text)?;
            }
        },
        Command::Token { command } => match command {
            TokenCmd::Create { role, name } => {
                let role = Role::parse(&role)
                    .ok_or_else(|| anyhow!("--role: viewer, analyst or admin"))?;
                let t = secret::new_secret()?;
                let id = store
                    .create_token(secret::hash(&t), name, role, now)
                    .await?;
                out(&format!(
                    "token {id} ({}): {t}\n(shown once; the collector keeps only its hash)\n",
                    role.as_str()
                ))?;
            }
            TokenCmd::List { json } => {
                let rows = store.tokens().await?;
                if json {
                    out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
                } else {
                    let mut t = String::from("ID\tNAME\tROLE\tCREATED\tREVOKED\n");
                    for r in rows {
                        t.push_str(&format!(
                            "{}\t{}\t{}\t{}\t{}\n",
                            r.id,
                            printable(&r.name),
                            r.role.as_str(),
                            time(r.created_unix_ms),
                            r.revoked_unix_ms.map_or("-".into(), time)
                        ));
                    }
                    out(&t)?;
                }
            }
        },
        Command::Hosts {
            command: Some(action),
            ..
        } => {
            let (host, action, word) = match action {
                HostCmd::Revoke { host } => (host, HostAction::Revoke, "revoked"),
                HostCmd::Block { host } => (host, HostAction::Block, "blocked"),
                HostCmd::Unblock { host } => (host, HostAction::Unblock, "unblocked"),
                HostCmd::Approve { host } => (host, HostAction::Approve, "approved"),
                HostCmd::Archive { host } => (host, HostAction::Archive, "archived"),
            };
            if !store.host_action(host.clone(), action, now).await? {
                bail!("no host with id or machine id {}", printable(&host));
            }
            out(&format!("host {} {word}\n", printable(&host)))?;
        }
        Command::Hosts {
            command: None,
            liveness,
            json,
        } => {
            let want = match liveness.as_deref() {
                None => None,
                Some(l) => Some(
                    aupwatch_proto::api::Liveness::parse(l)
                        .ok_or_else(|| anyhow!("--liveness {}: unknown", printable(l)))?,
                ),
            };
            let rows: Vec<_> = host_rows(store.as_ref(), now, config)
                .await?
                .into_iter()
                .filter(|h| want.is_none_or(|w| h.liveness == w))
                .collect();
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
            } else {
                let mut t = String::from(
                    "HOST_ID\tHOSTNAME\tLIVENESS\tLAST_SEEN\tOPEN\tCUSTOMER\tANOMALY\n",
                );
                for h in rows {
                    t.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                        h.host_id,
                        printable(&h.hostname),
                        h.liveness.as_str(),
                        h.last_seen_unix_ms.map_or("-".into(), time),
                        h.open_findings,
                        printable(h.labels.get("customer").map_or("-", String::as_str)),
                        printable(h.last_anomaly.as_deref().unwrap_or("-")),
                    ));
                }
                out(&t)?;
            }
        }
        Command::Findings {
            host,
            customer,
            category,
            severity,
            state,
            signature,
            since,
            until,
            limit,
            json,
            csv,
        } => {
            let mut q = HashMap::new();
            let pairs = [
                ("host", host),
                ("customer", customer),
                ("category", category),
                ("severity", severity),
                ("state", state),
                ("signature", signature),
                ("since", since.map(|v| v.to_string())),
                ("until", until.map(|v| v.to_string())),
                ("limit", Some(limit.to_string())),
            ];
            for (k, v) in pairs {
                if let Some(v) = v {
                    q.insert(k.to_string(), v);
                }
            }
            let (filter, _) = parse_filter(&q).map_err(|e| anyhow!("{}", printable(&e)))?;
            let page = finding_page(store.as_ref(), now, config, filter).await?;
            let any = !page.findings.is_empty();
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&page)?))?;
            } else if csv {
                out(&aupwatch_collector::http::findings_csv(&page.findings))?;
            } else {
                let mut t = String::from(
                    "ID\tHOSTNAME\tCATEGORY\tSEVERITY\tSTATE\tLAST_SEEN\tSIGNATURES\tSUBJECT\n",
                );
                for f in &page.findings {
                    let subject = f
                        .tracked
                        .as_ref()
                        .and_then(|t| t.finding.process())
                        .map_or_else(|| "-".to_string(), |p| format!("pid {} {}", p.pid, p.comm));
                    t.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                        printable(&f.id),
                        printable(&f.hostname),
                        f.category,
                        f.severity.as_str(),
                        f.state,
                        time(f.last_seen_unix_ms),
                        printable(&f.signatures.join(",")),
                        printable(&subject),
                    ));
                }
                if page.next.is_some() {
                    t.push_str(&format!(
                        "(more than {limit}: narrow the filters or raise --limit)\n"
                    ));
                }
                out(&t)?;
            }
            return Ok(if any {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Alerts { state, limit, json } => {
            let state =
                match state.as_deref() {
                    None => None,
                    Some(s) => Some(AlertState::parse(s).ok_or_else(|| {
                        anyhow!("--state {}: pending, sent or failed", printable(s))
                    })?),
                };
            let rows = store.alerts(state, limit).await?;
            let any_failed = rows.iter().any(|a| a.state == AlertState::Failed);
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
            } else {
                let mut t = String::from(
                    "SEQ\tSTATE\tATTEMPTS\tROUTE\tTYPE\tID\tHOST_ID\tCREATED\tNEXT_OR_DONE\tLAST_ERROR\n",
                );
                for a in &rows {
                    t.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                        a.seq,
                        a.state.as_str(),
                        a.attempts,
                        printable(&a.route),
                        printable(&a.kind),
                        printable(&a.alert_id),
                        printable(&a.host_id),
                        time(a.created_unix_ms),
                        match (a.state, a.done_unix_ms) {
                            (AlertState::Pending, _) | (_, None) => time(a.next_attempt_unix_ms),
                            (_, Some(d)) => time(d),
                        },
                        printable(a.last_error.as_deref().unwrap_or("-")),
                    ));
                }
                out(&t)?;
            }
            return Ok(if any_failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Prune => {
            let (events, archive) = config.retention.cutoffs(now);
            let r = store.retain(events, archive).await?;
            out(&format!(
                "{} event(s) deleted, {} sent alert(s) deleted, {} host(s) archived\n",
                r.events_deleted, r.alerts_deleted, r.hosts_archived
            ))?;
        }
        Command::Summary { json } => {
            let s = build_summary(store.as_ref(), now, config).await?;
            if json {
                out(&format!("{}\n", serde_json::to_string_pretty(&s)?))?;
            } else {
                let mut t = format!("hosts: {}\n", s.hosts);
                for (l, n) in s.hosts_by_liveness.iter().filter(|(_, n)| **n > 0) {
                    t.push_str(&format!("  {l}: {n}\n"));
                }
                t.push_str(&format!("open findings: {}\n", s.open_findings));
                for (c, n) in &s.open_by_category {
                    t.push_str(&format!("  {c}: {n}\n"));
                }
                t.push_str("by severity:\n");
                for (c, n) in &s.open_by_severity {
                    t.push_str(&format!("  {c}: {n}\n"));
                }
                t.push_str(&format!("reports: {}\nevents: {}\n", s.reports, s.events));
                out(&t)?;
            }
            return Ok(if s.open_findings > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
