//! The command line's definitions (clap), and nothing else: this file depends only on clap
//! and std, so that `xtask` can include it to generate the man pages and shell completions.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "aupwatch-collector",
    version,
    about = "aupwatch's central collector"
)]
pub struct Cli {
    /// Config file (default: /etc/aupwatch-collector/collector.toml when it exists, else
    /// built-in defaults).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the agent and query APIs.
    Serve {
        /// Override `listen` (port 0 picks a free port; the address is logged).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check the config file.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Enroll secrets.
    Secret {
        #[command(subcommand)]
        command: SecretCmd,
    },
    /// Operator API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Dashboard operator accounts (log in with a password at the collector's address).
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// List hosts, or act on one.
    #[command(args_conflicts_with_subcommands = true)]
    Hosts {
        #[command(subcommand)]
        command: Option<HostCmd>,
        /// Only hosts with this liveness (online, late, silent, …).
        #[arg(long)]
        liveness: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List findings (open ones by default); exit 1 when any.
    Findings {
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// This severity or higher.
        #[arg(long)]
        severity: Option<String>,
        /// open (default), new, ongoing, resolved, all.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        signature: Option<String>,
        /// Last seen at or after (unix ms).
        #[arg(long)]
        since: Option<u64>,
        /// Last seen before (unix ms).
        #[arg(long)]
        until: Option<u64>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// The webhook alert outbox, newest first; exit 1 when any alert listed has failed.
    Alerts {
        /// pending, sent or failed (default: all).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One retention pass now (`[retention]`: old events deleted, unseen hosts archived).
    Prune,
    /// The fleet at a glance; exit 1 when findings are open.
    Summary {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Report every error of the config file; exit 2 if any.
    Check,
}

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Create an enroll secret (printed once).
    Create {
        /// `customer=X`: hosts enrolling with it get that customer label.
        #[arg(long)]
        label: Option<String>,
    },
    /// List the enroll secrets (their ids and labels; a secret is shown only when created).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an enroll secret: no host can enroll with it any more.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create an operator token (printed once).
    Create {
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
    },
    /// List the operator API tokens (a token is shown only when created).
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create an account; its password is read from stdin (one line), or prompted for
    /// without echo on a terminal. At least 12 characters.
    Create {
        #[arg(long)]
        name: String,
        /// viewer (reads), analyst (acts on findings), admin (also acts on hosts).
        #[arg(long)]
        role: String,
    },
    /// List the dashboard accounts.
    List,
}

#[derive(Subcommand)]
pub enum HostCmd {
    /// Invalidate the host's node key: it must enroll again.
    Revoke { host: String },
    /// Refuse its reports and any enrollment of its machine id.
    Block { host: String },
    /// Accept its reports and enrollments again.
    Unblock { host: String },
    /// Accept its reports (with `ingest.require_approval`).
    Approve { host: String },
    /// Keep for history, out of the live views.
    Archive { host: String },
}
