//! The command line's definitions (clap), and nothing else: this file depends only on clap
//! and std, so that `xtask` can include it to generate the man pages and shell completions
//! without the agent's binary carrying that code.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Scan this host once and print the findings.
    #[command(
        long_about = "Takes an inventory of the host, samples CPU use for --sample seconds \
(a second inventory), matches every signature and prints the findings: a table by default, \
one row per offender and category (a verdict, as the agent tracks it) with every signature \
that matched under it; JSON with --json (`verdicts`, and each signature's finding apart as \
`findings`).",
        after_help = "Exit status: 0 nothing found, 1 findings (with --explain: a signature \
matches), 2 error."
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
command decides it from the document; its status socket may still answer).",
        after_help = "Exit status: 0 the agent runs and has no active finding outside an \
exception; 1 it has active findings no exception covers; 2 error (no agent answering, a \
refused or garbled answer) or the agent is stalled."
    )]
    Status(StatusArgs),
    /// Validate the agent's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create sockets inside other network namespaces for the agent (run by systemd).
    #[command(
        long_about = "The agent's privileged helper: it has CAP_SYS_ADMIN, which entering a \
network namespace needs, and the agent does not. On a Unix SOCK_SEQPACKET socket it takes one \
request at a time: one byte (1 a NETLINK_SOCK_DIAG socket, 2 a TCP/IPv4 socket, 3 a TCP/IPv6 \
socket) and an open network namespace file passed as a descriptor; it checks the descriptor \
is a network namespace, creates that socket inside it from a short-lived thread, and passes \
the socket back. Only root and the --allow user are served (not its group). Started by \
aupwatch-netns.socket (the listening socket as standard input) or with --socket; exits after \
--idle-exit seconds without a connection.",
        after_help = "Exit status: 0 idle exit, 2 error."
    )]
    NetnsHelper(NetnsHelperArgs),
}

#[derive(Args)]
pub struct NetnsHelperArgs {
    /// Listen on this socket path (mode 0660) instead of the socket systemd passes as
    /// standard input.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Besides root, serve this user (by name or uid); not its group.
    #[arg(long, value_name = "USER", default_value = "aupwatch")]
    pub allow: String,
    /// Exit after this many seconds without a connection (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub idle_exit: u64,
}

#[derive(Args)]
pub struct AgentArgs {
    /// Configuration file [default: /etc/aupwatch/agent.toml if it exists, else built-in defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read this procfs mount instead of /proc.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The agent's status socket.
    #[arg(long, value_name = "PATH", default_value = "/run/aupwatch/agent.sock")]
    pub socket: PathBuf,
    /// Print the status document as JSON.
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Print metrics in the Prometheus text format (for node_exporter's textfile collector).
    #[arg(long)]
    pub prometheus: bool,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file and the signatures it names, without starting the agent.
    #[command(
        long_about = "Loads the configuration (FILE, else /etc/aupwatch/agent.toml if it \
exists, else built-in defaults) and the signatures it names (shipped plus local override \
directory) and reports every error with file, line and key or signature id. Meant for \
ExecStartPre= and for CI.",
        after_help = "Exit status: 0 valid, 2 invalid."
    )]
    Check {
        /// Configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct SignatureSource {
    /// Use the *.toml signature files of DIR instead of the bundled packs.
    #[arg(long, value_name = "DIR")]
    pub signatures: Option<PathBuf>,
}

#[derive(Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub source: SignatureSource,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds to sample CPU use over (0: use each process's average since start only).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub sample: f64,
    /// Instead of findings, show what each signature saw on this process, and which of its
    /// parts could not be read.
    #[arg(long, value_name = "PID")]
    pub explain: Option<i32>,
    /// With --explain: show only the signatures with at least one matching predicate.
    #[arg(long, requires = "explain")]
    pub matched: bool,
    /// Run N scans in one process, waiting --sample seconds between them, and print each
    /// scan's wall and CPU time to stderr (the first is cold, the rest steady state). The
    /// findings of the last scan are printed.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub iterations: u32,
    /// Which listeners the open-proxy probe asks, from inside their network namespace, to
    /// connect to the probe's own canary listener there (HTTP CONNECT and GET, SOCKS5,
    /// SOCKS4; at most 1 s per question and 3 s in all): `all` (default) — the listeners of
    /// findings whose signature says `probe = "proxy"`, and every other public TCP listener no
    /// finding of another category explains; `suspected` — only the former; `off`. `open`
    /// makes a finding high; an open listener no signature suspected is a finding of its own
    /// (`proxy.verified-open`).
    #[arg(long, value_name = "WHICH", default_value = "all", value_parser = ["all", "suspected", "off"])]
    pub probes: String,
    /// Do not probe: `--probes off`.
    #[arg(long, conflicts_with = "probes")]
    pub no_probe: bool,
    /// Probe only listeners in this network namespace (inode; repeatable). For tests, which
    /// must not probe the host's own listeners.
    #[arg(long, value_name = "INODE", hide = true)]
    pub probe_netns: Vec<u64>,
    /// The network-namespace helper's socket: without CAP_SYS_ADMIN, sockets of other
    /// network namespaces (sock_diag, probes) come from it, when it exists.
    #[arg(
        long,
        value_name = "SOCKET",
        default_value = "/run/aupwatch-netns.sock"
    )]
    pub netns_helper: PathBuf,
    /// Read this procfs mount instead of /proc.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}

#[derive(Subcommand)]
pub enum SignaturesCommand {
    /// Validate signature files; reports every error with file, line and signature id.
    #[command(
        long_about = "Loads the *.toml files of DIR (the bundled packs when DIR is not \
given) and reports every error with file, line and signature id.",
        after_help = "Exit status: 0 valid, 2 invalid."
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
pub struct InventoryArgs {
    /// The network-namespace helper's socket: without CAP_SYS_ADMIN, the sock_diag sockets
    /// of other network namespaces come from it, when it exists.
    #[arg(
        long,
        value_name = "SOCKET",
        default_value = "/run/aupwatch-netns.sock"
    )]
    pub netns_helper: PathBuf,
    /// Read this procfs mount instead of /proc.
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,
}
