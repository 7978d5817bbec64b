//! Agent configuration: `/etc/aupwatch/agent.toml`, strict (unknown keys are errors), every
//! key optional with a documented default, and every problem reported with its key and line.
//! No file at the default path means built-in defaults.

use crate::detect::probe::ProbeMode;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

pub const DEFAULT_PATH: &str = "/etc/aupwatch/agent.toml";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from; `None` for built-in defaults.
    pub path: Option<PathBuf>,
    /// Time between scans. Default 15 s.
    pub interval: Duration,
    /// Replaces the bundled signature packs when set.
    pub signatures_dir: Option<PathBuf>,
    /// Added to the shipped signatures; a local signature with a shipped id replaces it.
    /// Default `/etc/aupwatch/signatures.d` (a missing directory adds nothing).
    pub local_signatures_dir: Option<PathBuf>,
    /// Event log and, later, the report spool. Default `/var/lib/aupwatch`.
    pub state_dir: PathBuf,
    /// Overrides the kernel's host name in reports.
    pub hostname: Option<String>,
    /// Which listeners the open-proxy probe asks: `"all"` (default: suspected proxies and
    /// every public TCP listener no signature explains), `"suspected"` (only listeners of
    /// signatures with `probe = "proxy"`), `"off"`. The old booleans still read: `true` is
    /// the default, `false` is `"off"`.
    pub probes: ProbeMode,
    /// The network-namespace helper's socket (`aupwatch netns-helper`, socket-activated by
    /// `aupwatch-netns.socket`): sockets of namespaces the agent cannot enter itself come
    /// from it, for sock_diag and probes. Used when the file exists. Default
    /// `/run/aupwatch-netns.sock`.
    pub netns_helper: PathBuf,
    pub status: StatusConfig,
    pub syslog: SyslogConfig,
    pub event_log: EventLogConfig,
    pub exceptions: Vec<Exception>,
    /// Where to report (`[collector]`); `None`: no reporting beyond the local sinks.
    pub collector: Option<CollectorConfig>,
}

/// `[collector]`: the central collector the agent reports to.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectorConfig {
    /// `https://collector.example:8740`; plain `http` only to a loopback address unless
    /// `allow_insecure`.
    pub url: String,
    pub allow_insecure: bool,
    pub enroll_secret: EnrollSecret,
    /// PEM file of the CA that signed the collector's certificate; default: the public
    /// web roots.
    pub ca_file: Option<PathBuf>,
    /// Sent at enrollment (`customer = "c-1042"`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Overrides the contents of `/etc/machine-id`.
    pub machine_id: Option<String>,
    /// Spool bounds. Defaults 64 MiB, 10,000 reports, 7 days.
    pub spool: crate::report::spool::Bounds,
    /// The most payload one request carries. Default 1 MiB.
    pub batch_max_bytes: u64,
    /// Connect + answer time allowed to one request. Default 10 s.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EnrollSecret {
    Inline(String),
    /// Read at enrollment; should be readable only by root and the agent.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    /// Default `/run/aupwatch/agent.sock`.
    pub socket: PathBuf,
    /// Group allowed to read status besides root. Default `aupwatch`; a group that does not
    /// exist leaves the socket to root only.
    pub group: String,
}

#[derive(Debug, Clone)]
pub struct SyslogConfig {
    pub enabled: bool,
    /// Default `/dev/log`.
    pub socket: PathBuf,
    /// Default `daemon`.
    pub facility: syslog::Facility,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventLogConfig {
    pub enabled: bool,
    /// Default `<state_dir>/events.jsonl`.
    pub path: PathBuf,
    /// Rotate when the file would grow past this. Default 10 MiB.
    pub max_bytes: u64,
    /// Rotated files kept (`events.jsonl.1` …). Default 3.
    pub keep: u32,
}

/// An operator's permission for some findings on this host. Excepted findings stay visible,
/// marked as excepted, and are never dropped.
#[derive(Debug, Clone)]
pub struct Exception {
    /// Signature ids or globs (`irc.client*`).
    pub signatures: globset::GlobSet,
    pub signature_patterns: Vec<String>,
    /// Only findings of processes run by this user (name or uid).
    pub user: Option<String>,
    /// Only findings of processes whose name matches this glob.
    pub process: Option<globset::GlobMatcher>,
    pub process_pattern: Option<String>,
    /// Only findings with a socket on this port (local or remote).
    pub port: Option<u16>,
    /// At most this many findings at once (the oldest first); more are not excepted.
    pub max_count: Option<u32>,
    pub reason: String,
    pub ticket: Option<String>,
    /// Unix milliseconds after which it no longer applies.
    pub expires_unix_ms: Option<u64>,
    pub expires_text: Option<String>,
    /// `file:line` where it is defined.
    pub source: String,
}

impl Default for Config {
    fn default() -> Self {
        let state_dir = PathBuf::from("/var/lib/aupwatch");
        Config {
            path: None,
            interval: Duration::from_secs(15),
            signatures_dir: None,
            local_signatures_dir: Some(PathBuf::from("/etc/aupwatch/signatures.d")),
            event_log: EventLogConfig {
                enabled: true,
                path: state_dir.join("events.jsonl"),
                max_bytes: 10 * 1024 * 1024,
                keep: 3,
            },
            state_dir,
            hostname: None,
            probes: ProbeMode::default(),
            netns_helper: PathBuf::from(crate::netns_helper::DEFAULT_SOCKET),
            status: StatusConfig {
                socket: PathBuf::from("/run/aupwatch/agent.sock"),
                group: "aupwatch".into(),
            },
            syslog: SyslogConfig {
                enabled: true,
                socket: PathBuf::from("/dev/log"),
                facility: syslog::Facility::LOG_DAEMON,
            },
            exceptions: Vec::new(),
            collector: None,
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    /// The key, dotted (`event_log.max_bytes`, `exception[2].expires`).
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{} error(s) in the configuration:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// `probes`: a mode, or the booleans of earlier versions.
enum RawProbes {
    Bool(bool),
    Mode(ProbeMode),
}

impl<'de> Deserialize<'de> for RawProbes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RawProbes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"all\", \"suspected\", \"off\" (or true / false)")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<RawProbes, E> {
                Ok(RawProbes::Bool(b))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawProbes, E> {
                ProbeMode::parse(s)
                    .map(RawProbes::Mode)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default)]
struct Raw {
    interval: Option<Spanned<String>>,
    signatures_dir: Option<PathBuf>,
    local_signatures_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    hostname: Option<Spanned<String>>,
    probes: Option<RawProbes>,
    netns_helper: Option<PathBuf>,
    status: Option<RawStatus>,
    syslog: Option<RawSyslog>,
    event_log: Option<RawEventLog>,
    collector: Option<Spanned<RawCollector>>,
    /// With their position among the [[exception]] tables.
    exception: Vec<(usize, Spanned<RawException>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    socket: Option<PathBuf>,
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyslog {
    enabled: Option<bool>,
    socket: Option<PathBuf>,
    facility: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventLog {
    enabled: Option<bool>,
    path: Option<PathBuf>,
    max_bytes: Option<Spanned<i64>>,
    keep: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    url: Spanned<String>,
    allow_insecure: Option<bool>,
    enroll_secret: Option<String>,
    enroll_secret_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    machine_id: Option<Spanned<String>>,
    spool_max_bytes: Option<Spanned<i64>>,
    spool_max_reports: Option<Spanned<i64>>,
    spool_max_age: Option<Spanned<String>>,
    batch_max_bytes: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    signatures: Spanned<Vec<Spanned<String>>>,
    user: Option<String>,
    process: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    max_count: Option<Spanned<i64>>,
    reason: Spanned<String>,
    ticket: Option<String>,
    expires: Option<Spanned<toml::value::Datetime>>,
}

/// Reads the configuration: `path` if given (it must exist), else the default path if it
/// exists, else built-in defaults.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    // What the file is (a FIFO, a device) first, then who may write it.
    let read = crate::safefile::read_to_string(&path, crate::safefile::MAX_CONFIG_BYTES);
    if read.is_ok() {
        if let Err(e) = crate::trust::check(&path) {
            return Err(ConfigErrors(vec![ConfigError {
                file: path.display().to_string(),
                line: None,
                key: None,
                message: e.why(),
            }]));
        }
    }
    match read {
        Ok(text) => parse(&path.display().to_string(), &text).map(|mut c| {
            c.path = Some(path);
            c
        }),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) && !required => {
            Ok(Config::default())
        }
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: e.why(),
        }])),
    }
}

/// Parses configuration text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    // Line numbers by binary search in the line breaks' offsets, found once: counting from
    // the start for every exception made 100,000 exceptions take minutes.
    let breaks: Vec<usize> = text.match_indices('\n').map(|(i, _)| i).collect();
    let line_of = |offset: usize| breaks.partition_point(|&b| b < offset) + 1;
    let mut errors = Vec::new();
    let mut err = |offset: usize, key: String, message: String| {
        errors.push(ConfigError {
            file: file.into(),
            line: Some(line_of(offset)),
            key: Some(key),
            message,
        })
    };
    let raw = read_raw(text, &mut err);
    let mut c = Config::default();
    if let Some(i) = &raw.interval {
        match crate::signatures::parse_duration(i.get_ref()) {
            Some(s) if (1..=86400).contains(&s) => c.interval = Duration::from_secs(s),
            Some(_) => err(
                i.span().start,
                "interval".into(),
                "must be between 1s and 24h".into(),
            ),
            None => err(
                i.span().start,
                "interval".into(),
                format!("`{}` is not a duration like \"15s\", \"1m\"", i.get_ref()),
            ),
        }
    }
    c.signatures_dir = raw.signatures_dir;
    if let Some(d) = raw.local_signatures_dir {
        c.local_signatures_dir = (!d.as_os_str().is_empty()).then_some(d);
    }
    if let Some(d) = raw.state_dir {
        c.event_log.path = d.join("events.jsonl");
        c.state_dir = d;
    }
    if let Some(h) = raw.hostname {
        let ok = (1..=255).contains(&h.get_ref().len())
            && h.get_ref().bytes().all(|b| (33..=126).contains(&b));
        if !ok && !h.get_ref().trim().is_empty() {
            err(
                h.span().start,
                "hostname".into(),
                "must be 1-255 printable ASCII characters without spaces (a syslog HOSTNAME)"
                    .into(),
            );
        }
        if h.get_ref().trim().is_empty() {
            err(
                h.span().start,
                "hostname".into(),
                "must not be empty (leave it out to use the kernel's)".into(),
            );
        }
        c.hostname = Some(h.into_inner());
    }
    if let Some(p) = raw.probes {
        c.probes = match p {
            RawProbes::Bool(true) => ProbeMode::default(),
            RawProbes::Bool(false) => ProbeMode::Off,
            RawProbes::Mode(m) => m,
        };
    }
    if let Some(p) = raw.netns_helper {
        c.netns_helper = p;
    }
    if let Some(s) = raw.status {
        if let Some(p) = s.socket {
            c.status.socket = p;
        }
        if let Some(g) = s.group {
            c.status.group = g;
        }
    }
    if let Some(s) = raw.syslog {
        if let Some(e) = s.enabled {
            c.syslog.enabled = e;
        }
        if let Some(p) = s.socket {
            c.syslog.socket = p;
        }
        if let Some(f) = s.facility {
            match f.get_ref().parse::<syslog::Facility>() {
                Ok(fac) => c.syslog.facility = fac,
                Err(_) => err(
                    f.span().start,
                    "syslog.facility".into(),
                    format!(
                        "unknown facility `{}` (daemon, user, local0 … local7, auth, …)",
                        f.get_ref()
                    ),
                ),
            }
        }
    }
    if let Some(l) = raw.event_log {
        if let Some(e) = l.enabled {
            c.event_log.enabled = e;
        }
        if let Some(p) = l.path {
            c.event_log.path = p;
        }
        if let Some(m) = l.max_bytes {
            match u64::try_from(*m.get_ref()) {
                Ok(v) if v >= 4096 => c.event_log.max_bytes = v,
                _ => err(
                    m.span().start,
                    "event_log.max_bytes".into(),
                    "must be at least 4096".into(),
                ),
            }
        }
        if let Some(k) = l.keep {
            match u32::try_from(*k.get_ref()) {
                Ok(v) if v <= 100 => c.event_log.keep = v,
                _ => err(
                    k.span().start,
                    "event_log.keep".into(),
                    "must be between 0 and 100".into(),
                ),
            }
        }
    }
    if let Some(rc) = raw.collector {
        c.collector = collector(rc, &mut err);
    }
    for (n, ex) in raw.exception {
        let at = ex.span().start;
        let ex = ex.into_inner();
        let key = |k: &str| format!("exception[{n}].{k}");
        let mut set = globset::GlobSetBuilder::new();
        let mut patterns = Vec::new();
        if ex.signatures.get_ref().is_empty() {
            err(
                ex.signatures.span().start,
                key("signatures"),
                "needs at least one signature id or glob".into(),
            );
        }
        for p in ex.signatures.get_ref() {
            match globset::Glob::new(p.get_ref()) {
                Ok(g) => {
                    set.add(g);
                    patterns.push(p.get_ref().clone());
                }
                Err(e) => err(
                    p.span().start,
                    key("signatures"),
                    format!("bad glob `{}`: {}", p.get_ref(), e.kind()),
                ),
            }
        }
        let signatures = match set.build() {
            Ok(s) => s,
            Err(e) => {
                err(at, key("signatures"), e.to_string());
                globset::GlobSet::empty()
            }
        };
        let process = match &ex.process {
            Some(p) => match globset::GlobBuilder::new(p.get_ref())
                .case_insensitive(true)
                .build()
            {
                Ok(g) => Some(g.compile_matcher()),
                Err(e) => {
                    err(
                        p.span().start,
                        key("process"),
                        format!("bad glob `{}`: {}", p.get_ref(), e.kind()),
                    );
                    None
                }
            },
            None => None,
        };
        let port = match &ex.port {
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    err(
                        p.span().start,
                        key("port"),
                        format!("{} is not a port (1-65535)", p.get_ref()),
                    );
                    None
                }
            },
            None => None,
        };
        let max_count = match &ex.max_count {
            Some(m) => match u32::try_from(*m.get_ref()) {
                Ok(v) if v >= 1 => Some(v),
                _ => {
                    err(m.span().start, key("max_count"), "must be 1 or more".into());
                    None
                }
            },
            None => None,
        };
        if ex.reason.get_ref().trim().is_empty() {
            err(
                ex.reason.span().start,
                key("reason"),
                "must say why (a reason or ticket is what makes an exception reviewable)".into(),
            );
        }
        let (expires_unix_ms, expires_text) = match &ex.expires {
            Some(d) => match datetime_unix_ms(d.get_ref()) {
                Some(ms) => (Some(ms), Some(d.get_ref().to_string())),
                None => {
                    err(
                        d.span().start,
                        key("expires"),
                        "needs a date (2027-01-31) or a date-time with offset".into(),
                    );
                    (None, None)
                }
            },
            None => (None, None),
        };
        c.exceptions.push(Exception {
            signatures,
            signature_patterns: patterns,
            user: ex.user,
            process_pattern: ex.process.map(|p| p.into_inner()),
            process,
            port,
            max_count,
            reason: ex.reason.into_inner(),
            ticket: ex.ticket,
            expires_unix_ms,
            expires_text,
            source: format!("{file}:{}", line_of(at)),
        });
    }
    if errors.is_empty() {
        Ok(c)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(ConfigErrors(errors))
    }
}

const TOP_KEYS: [&str; 12] = [
    "interval",
    "signatures_dir",
    "local_signatures_dir",
    "state_dir",
    "hostname",
    "probes",
    "netns_helper",
    "status",
    "syslog",
    "event_log",
    "collector",
    "exception",
];

/// Validates `[collector]`; every problem goes to `err`.
fn collector(
    rc: Spanned<RawCollector>,
    err: &mut impl FnMut(usize, String, String),
) -> Option<CollectorConfig> {
    let at = rc.span().start;
    let rc = rc.into_inner();
    let mut ok = true;
    let mut bad = |offset: usize, key: &str, message: String| {
        ok = false;
        err(offset, format!("collector.{key}"), message);
    };
    let allow_insecure = rc.allow_insecure.unwrap_or(false);
    let url = rc.url.get_ref().trim_end_matches('/').to_string();
    match url.parse::<ureq::http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some("https"), Some(_)) => {}
            (Some("http"), Some(host)) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback && !allow_insecure {
                    bad(
                        rc.url.span().start,
                        "url",
                        format!(
                            "plain http to `{host}` would send the node key in the clear: use https, or set allow_insecure = true"
                        ),
                    );
                }
            }
            _ => bad(
                rc.url.span().start,
                "url",
                format!("`{url}` is not an http(s) URL with a host"),
            ),
        },
        Err(e) => bad(
            rc.url.span().start,
            "url",
            format!("`{url}` is not a URL: {e}"),
        ),
    }
    let enroll_secret = match (rc.enroll_secret, rc.enroll_secret_file) {
        (Some(s), None) if !s.is_empty() => Some(EnrollSecret::Inline(s)),
        (None, Some(f)) => Some(EnrollSecret::File(f)),
        (Some(_), Some(_)) => {
            bad(
                at,
                "enroll_secret",
                "set enroll_secret or enroll_secret_file, not both".into(),
            );
            None
        }
        _ => {
            bad(
                at,
                "enroll_secret",
                "one of enroll_secret or enroll_secret_file is required".into(),
            );
            None
        }
    };
    if let Some(m) = &rc.machine_id {
        let id = m.get_ref();
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
            bad(
                m.span().start,
                "machine_id",
                "must be 1 to 128 printable ASCII characters".into(),
            );
        }
    }
    let mut spool = crate::report::spool::Bounds::default();
    let mut positive = |v: &Option<Spanned<i64>>, key: &str, min: u64, target: &mut u64| {
        if let Some(v) = v {
            match u64::try_from(*v.get_ref()) {
                Ok(n) if n >= min => *target = n,
                _ => bad(v.span().start, key, format!("must be at least {min}")),
            }
        }
    };
    let mut batch_max_bytes = 1 << 20;
    positive(
        &rc.spool_max_bytes,
        "spool_max_bytes",
        1 << 16,
        &mut spool.max_bytes,
    );
    positive(
        &rc.spool_max_reports,
        "spool_max_reports",
        2,
        &mut spool.max_reports,
    );
    positive(
        &rc.batch_max_bytes,
        "batch_max_bytes",
        4096,
        &mut batch_max_bytes,
    );
    let mut seconds = |v: &Option<Spanned<String>>, key: &str, default: u64| -> u64 {
        match v {
            None => default,
            Some(v) => match crate::signatures::parse_duration(v.get_ref()) {
                Some(s) if s > 0 => s,
                _ => {
                    bad(
                        v.span().start,
                        key,
                        format!("`{}` is not a duration like \"10s\", \"7d\"", v.get_ref()),
                    );
                    default
                }
            },
        }
    };
    spool.max_age_ms = seconds(&rc.spool_max_age, "spool_max_age", spool.max_age_ms / 1000) * 1000;
    let timeout = Duration::from_secs(seconds(&rc.timeout, "timeout", 10));
    let config = CollectorConfig {
        url,
        allow_insecure,
        enroll_secret: enroll_secret?,
        ca_file: rc.ca_file,
        labels: rc.labels.unwrap_or_default(),
        machine_id: rc.machine_id.map(|m| m.into_inner()),
        spool,
        batch_max_bytes,
        timeout,
    };
    ok.then_some(config)
}

/// Reads the document key by key, so one bad key or section does not hide the problems of
/// the others. Every problem goes to `err(offset, key, message)`.
fn read_raw(text: &str, err: &mut impl FnMut(usize, String, String)) -> Raw {
    let mut raw = Raw::default();
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let at = e.span().map_or(0, |s| s.start);
            err(
                at,
                "(syntax)".into(),
                format!("TOML syntax: {}", e.message().trim()),
            );
        }
        return raw;
    }
    for (key, value) in doc.get_ref().iter() {
        let name = key.get_ref().as_ref();
        let mut field = |v: &Spanned<DeValue>, key: &str, index: usize| -> Result<(), ()> {
            let r = match key {
                "interval" => de(v).map(|x| raw.interval = Some(x)),
                "signatures_dir" => de(v).map(|x| raw.signatures_dir = Some(x)),
                "local_signatures_dir" => de(v).map(|x| raw.local_signatures_dir = Some(x)),
                "state_dir" => de(v).map(|x| raw.state_dir = Some(x)),
                "hostname" => de(v).map(|x| raw.hostname = Some(x)),
                "probes" => de(v).map(|x| raw.probes = Some(x)),
                "netns_helper" => de(v).map(|x| raw.netns_helper = Some(x)),
                "status" => de(v).map(|x| raw.status = Some(x)),
                "syslog" => de(v).map(|x| raw.syslog = Some(x)),
                "event_log" => de(v).map(|x| raw.event_log = Some(x)),
                "collector" => de(v).map(|x| raw.collector = Some(x)),
                _ => de(v).map(|x| raw.exception.push((index, x))),
            };
            r.map_err(|e| {
                err(
                    e.span().map_or(v.span().start, |s| s.start),
                    key.to_string(),
                    e.message().trim().to_string(),
                )
            })
        };
        if !TOP_KEYS.contains(&name) {
            err(
                key.span().start,
                name.to_string(),
                format!(
                    "unknown key, expected one of {}",
                    TOP_KEYS.map(|k| format!("`{k}`")).join(", ")
                ),
            );
            continue;
        }
        if name == "exception" {
            // Each [[exception]] on its own, so one broken table does not hide the others.
            match value.get_ref() {
                DeValue::Array(items) => {
                    for (n, item) in items.iter().enumerate() {
                        let _ = field(item, &format!("exception[{n}]"), n);
                    }
                }
                _ => err(
                    value.span().start,
                    "exception".into(),
                    "must be an array of tables: write [[exception]]".into(),
                ),
            }
            continue;
        }
        let _ = field(value, name, 0);
    }
    raw
}

fn de<T: serde::de::DeserializeOwned>(v: &Spanned<DeValue>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(v.clone()))
}

/// A TOML date (midnight UTC) or offset date-time → Unix milliseconds.
fn datetime_unix_ms(d: &toml::value::Datetime) -> Option<u64> {
    let date = d.date?;
    let days = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let (mut secs, nanos) = match d.time {
        Some(t) => (
            i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second.unwrap_or(0)),
            t.nanosecond.unwrap_or(0),
        ),
        None => (0, 0),
    };
    match (d.time, d.offset) {
        (None, _) => {}
        (Some(_), Some(toml::value::Offset::Z)) => {}
        (Some(_), Some(toml::value::Offset::Custom { minutes })) => secs -= i64::from(minutes) * 60,
        // A local time without offset is ambiguous on a fleet: refuse it.
        (Some(_), None) => return None,
    }
    let total = days * 86400 + secs;
    u64::try_from(total)
        .ok()
        .map(|s| s * 1000 + u64::from(nanos) / 1_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse("agent.toml", text) {
            Ok(_) => vec![],
            Err(ConfigErrors(e)) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = parse("agent.toml", "").expect("valid");
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.status.socket, PathBuf::from("/run/aupwatch/agent.sock"));
        assert_eq!(
            c.event_log.path,
            PathBuf::from("/var/lib/aupwatch/events.jsonl")
        );
        assert!(c.syslog.enabled && c.exceptions.is_empty());
        assert_eq!(c.probes, ProbeMode::All);
    }

    #[test]
    fn probes_modes_and_the_old_booleans() {
        for (text, want) in [
            ("probes = \"all\"", ProbeMode::All),
            ("probes = \"suspected\"", ProbeMode::Suspected),
            ("probes = \"off\"", ProbeMode::Off),
            ("probes = true", ProbeMode::All),
            ("probes = false", ProbeMode::Off),
            ("", ProbeMode::All),
        ] {
            let c = parse("agent.toml", text).expect("valid");
            assert_eq!(c.probes, want, "{text}");
        }
        assert!(parse("agent.toml", "probes = 1").is_err());
    }

    #[test]
    fn a_full_file() {
        let c = parse(
            "agent.toml",
            r#"interval = "30s"
state_dir = "/tmp/aw"
probes = false
[syslog]
facility = "local3"
[event_log]
max_bytes = 65536
keep = 1
[[exception]]
signatures = ["irc.client*"]
user = "alice"
port = 6697
max_count = 1
reason = "one personal IRC connection"
ticket = "ABUSE-1"
expires = 2027-01-31
"#,
        )
        .expect("valid");
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.probes, ProbeMode::Off);
        assert_eq!(c.event_log.path, PathBuf::from("/tmp/aw/events.jsonl"));
        assert_eq!(
            c.syslog.facility as i32,
            syslog::Facility::LOG_LOCAL3 as i32
        );
        let e = &c.exceptions[0];
        assert!(e.signatures.is_match("irc.client-connection"));
        assert!(!e.signatures.is_match("irc.server"));
        assert_eq!((e.port, e.max_count), (Some(6697), Some(1)));
        assert_eq!(e.expires_unix_ms, Some(1_801_353_600_000));
        assert_eq!(e.source, "agent.toml:9");
    }

    #[test]
    fn errors_name_the_key_and_line() {
        assert_eq!(
            errors("intervall = \"5s\"\n"),
            vec!["agent.toml:1: key `intervall`: unknown key, expected one of `interval`, `signatures_dir`, `local_signatures_dir`, `state_dir`, `hostname`, `probes`, `netns_helper`, `status`, `syslog`, `event_log`, `collector`, `exception`"]
        );
        assert_eq!(
            errors("interval = \"5x\"\n"),
            vec!["agent.toml:1: key `interval`: `5x` is not a duration like \"15s\", \"1m\""]
        );
        let many = errors("interval = \"0s\"\n[event_log]\nkeep = -1\n[[exception]]\nsignatures = []\nport = 70000\nreason = \" \"\nexpires = 2027-01-01T10:00:00\n");
        assert_eq!(
            many,
            vec![
                "agent.toml:1: key `interval`: must be between 1s and 24h",
                "agent.toml:3: key `event_log.keep`: must be between 0 and 100",
                "agent.toml:5: key `exception[0].signatures`: needs at least one signature id or glob",
                "agent.toml:6: key `exception[0].port`: 70000 is not a port (1-65535)",
                "agent.toml:7: key `exception[0].reason`: must say why (a reason or ticket is what makes an exception reviewable)",
                "agent.toml:8: key `exception[0].expires`: needs a date (2027-01-31) or a date-time with offset",
            ]
        );
        assert_eq!(errors("[syslog]\nfacility = \"kitchen\"\n").len(), 1);
        assert_eq!(
            errors("interval = \"5s\"\nprobes = \"yes\"\n"),
            vec!["agent.toml:2: key `probes`: invalid value: string \"yes\", expected \"all\", \"suspected\", \"off\" (or true / false)"]
        );
        assert_eq!(
            errors("[[exception]]\nsignatures = [\"x\"]\n"),
            vec!["agent.toml:1: key `exception[0]`: missing field `reason`"]
        );
    }

    #[test]
    fn one_bad_key_does_not_hide_the_others() {
        let errs = errors("intervl = \"5s\"\ninterval = \"5x\"\nhostname = \"a host\"\n[event_log]\nmax_bytez = 1\n[[exception]]\nreason = \"r\"\n[[exception]]\nsignatures = [\"a\"]\nreason = \"r\"\nport = 0\n");
        assert_eq!(
            errs,
            vec![
                "agent.toml:1: key `intervl`: unknown key, expected one of `interval`, `signatures_dir`, `local_signatures_dir`, `state_dir`, `hostname`, `probes`, `netns_helper`, `status`, `syslog`, `event_log`, `collector`, `exception`",
                "agent.toml:2: key `interval`: `5x` is not a duration like \"15s\", \"1m\"",
                "agent.toml:3: key `hostname`: must be 1-255 printable ASCII characters without spaces (a syslog HOSTNAME)",
                "agent.toml:5: key `event_log`: unknown field `max_bytez`, expected one of `enabled`, `path`, `max_bytes`, `keep`",
                "agent.toml:6: key `exception[0]`: missing field `signatures`",
                "agent.toml:11: key `exception[1].port`: 0 is not a port (1-65535)",
            ]
        );
    }

    #[test]
    fn dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        let dt: toml::value::Datetime = "2026-11-29T10:00:00+01:00".parse().expect("datetime");
        assert_eq!(datetime_unix_ms(&dt), Some(1_795_942_800_000));
    }

    #[test]
    fn a_missing_default_file_means_defaults_but_a_named_one_must_exist() {
        let dir = std::env::temp_dir().join(format!("aupwatch-config-test-{}", std::process::id()));
        let missing = dir.join("nope.toml");
        assert!(load(Some(&missing)).is_err());
    }
}
