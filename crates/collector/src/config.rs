//! The collector's `collector.toml`: strict (`deny_unknown_fields`), every key optional with
//! a documented default (see the README), every error with its key and line.
//!
//! Must never: do I/O beyond reading the one file.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default listen address: loopback, plain HTTP.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8740";
/// Compressed (wire) body limit of a report request.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Body limit after gzip decompression.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 16 * 1024 * 1024;
/// The system-wide database directory used when it exists (a package creates it).
pub const SYSTEM_DB_DIR: &str = "/var/lib/aupwatch-collector";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub allow_insecure_http: bool,
    pub tls: Option<Tls>,
    pub database: Database,
    pub ingest: Ingest,
    pub liveness: LivenessRules,
    pub retention: Retention,
    pub alerts: Alerts,
}

/// Where alerts go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// `[[alerts.webhook]]` routes; an event goes to every route that admits it.
    pub webhook: Vec<WebhookRoute>,
}

/// One webhook route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRoute {
    /// For logs.
    pub name: String,
    /// `http://host:port/path` (https receivers: not yet; put a TLS proxy in front).
    pub url: String,
    /// Only these categories (empty: all).
    #[serde(default)]
    pub categories: Vec<aupwatch_proto::Category>,
    /// Only this severity or higher.
    #[serde(default = "lowest_severity")]
    pub min_severity: aupwatch_proto::Severity,
    /// Only hosts with all of these labels (`customer = "c-1042"`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Only these event kinds (empty: `new` and `changed`).
    #[serde(default)]
    pub kinds: Vec<aupwatch_proto::EventKind>,
    /// Also alert when a host goes silent (and when it reports again): type
    /// `net.aupwatch.host.silent` / `net.aupwatch.host.recovered`; `labels` applies,
    /// `categories` and `kinds` do not; severity counts as high.
    #[serde(default)]
    pub silent_hosts: bool,
    /// Attempts before giving up (backoff doubles from `retry_initial_ms`, at most 300 s).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_retry_ms")]
    pub retry_initial_ms: u64,
}

fn lowest_severity() -> aupwatch_proto::Severity {
    aupwatch_proto::Severity::Info
}
fn default_attempts() -> u32 {
    8
}
fn default_retry_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Delete lifecycle events older than this many days (0: keep forever). Findings and
    /// reports (the idempotency record) are kept.
    pub events_days: u64,
    /// Archive hosts not seen for this many days (0: never).
    pub archive_after_days: u64,
    /// How often `serve` runs a retention pass, in seconds.
    pub interval_secs: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            events_days: 180,
            archive_after_days: 30,
            interval_secs: 3600,
        }
    }
}

impl Retention {
    /// The cut-offs at `now`: (events before, archive before).
    pub fn cutoffs(&self, now_unix_ms: u64) -> (Option<u64>, Option<u64>) {
        let days =
            |d: u64| (d > 0).then(|| now_unix_ms.saturating_sub(d.saturating_mul(86_400_000)));
        (days(self.events_days), days(self.archive_after_days))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite` or `postgres`.
    pub backend: Backend,
    /// SQLite file; default `/var/lib/aupwatch-collector/collector.db` when that directory
    /// exists, else `./aupwatch-collector.db`.
    pub path: Option<PathBuf>,
    /// PostgreSQL connection string (`host=127.0.0.1 port=5432 user=… dbname=…` or a URL).
    pub url: Option<String>,
    /// PostgreSQL connections.
    pub pool_size: usize,
    /// PEM file of the CA that signed the PostgreSQL server's certificate: when set, every
    /// connection uses TLS (`sslmode=require`) and the server's certificate and name are
    /// verified against it.
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Largest request body on the wire (bytes).
    pub max_body_bytes: usize,
    /// Largest request body after gzip decompression (bytes).
    pub max_decompressed_bytes: usize,
    /// Largest number of reports in one request.
    pub max_reports_per_batch: usize,
    /// Requests waiting for the writer before new ones get 503 + Retry-After.
    pub queue_depth: usize,
    /// Most write jobs (requests) committed in one transaction.
    pub max_jobs_per_commit: usize,
    /// Refuse reports of newly enrolled hosts until `hosts approve`.
    pub require_approval: bool,
    /// Seconds a refused (busy) agent is told to wait.
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessRules {
    /// Late after this many announced intervals without a report.
    pub late_after_intervals: u64,
    /// Silent after this many.
    pub silent_after_intervals: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8740)),
            allow_insecure_http: false,
            tls: None,
            database: Database::default(),
            ingest: Ingest::default(),
            liveness: LivenessRules::default(),
            retention: Retention::default(),
            alerts: Alerts::default(),
        }
    }
}

impl Default for Database {
    fn default() -> Database {
        Database {
            backend: Backend::Sqlite,
            path: None,
            url: None,
            pool_size: 16,
            tls_ca_file: None,
        }
    }
}

impl Default for Ingest {
    fn default() -> Ingest {
        Ingest {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_reports_per_batch: 1000,
            queue_depth: 4096,
            max_jobs_per_commit: 512,
            require_approval: false,
            retry_after_secs: 5,
        }
    }
}

impl Default for LivenessRules {
    fn default() -> LivenessRules {
        LivenessRules {
            late_after_intervals: 2,
            silent_after_intervals: 5,
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}: {message}", line.map_or_else(|| "-".to_string(), |l| l.to_string()))]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: file.clone(),
                line: None,
                message: e.to_string(),
            }]
        })?;
        Config::parse(&file, &text)
    }

    /// Parses and checks a config text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, Vec<ConfigError>> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(s.start));
            let message = e.message().trim().to_string();
            let message = match line.and_then(|l| key_at(text, l)) {
                Some(key)
                    if !message
                        .contains(&format!("`{}`", key.rsplit('.').next().unwrap_or(&key))) =>
                {
                    format!("`{key}`: {message}")
                }
                _ => message,
            };
            vec![ConfigError {
                file: file.to_string(),
                line,
                message,
            }]
        })?;
        let errors = config.check(file, text);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// The semantic checks, each naming its key (and its line when the key is in `text`).
    fn check(&self, file: &str, text: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let line_of_key = |key: &str| {
            text.lines()
                .position(|l| {
                    let l = l.trim_start();
                    l.strip_prefix(key)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                })
                .map(|i| i + 1)
        };
        let mut err = |key: &str, message: String| {
            errors.push(ConfigError {
                file: file.to_string(),
                line: line_of_key(key),
                message: format!("`{key}`: {message}"),
            })
        };
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_insecure_http {
            err(
                "listen",
                format!(
                    "{} is not a loopback address: configure [tls] or set allow_insecure_http = true",
                    self.listen
                ),
            );
        }
        if self.database.backend == Backend::Postgres && self.database.url.is_none() {
            err("backend", "postgres needs database.url".into());
        }
        if self.database.pool_size == 0 {
            err("pool_size", "must be 1 or more".into());
        }
        if let Some(url) = &self.database.url {
            match url.parse::<tokio_postgres::Config>() {
                Err(e) => err("url", format!("not a PostgreSQL connection string: {e}")),
                Ok(pg)
                    if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require
                        && self.database.tls_ca_file.is_none() =>
                {
                    err(
                        "url",
                        "sslmode=require needs database.tls_ca_file (the CA that signed the server's certificate)".into(),
                    )
                }
                Ok(_) => {}
            }
        }
        if let Some(ca) = &self.database.tls_ca_file {
            if let Err(e) = crate::store::postgres::load_roots(ca) {
                err("tls_ca_file", e.to_string());
            }
        }
        let i = &self.ingest;
        if i.max_body_bytes < 1024 {
            err("max_body_bytes", "must be at least 1024".into());
        }
        if i.max_decompressed_bytes < i.max_body_bytes {
            err(
                "max_decompressed_bytes",
                "must be at least max_body_bytes".into(),
            );
        }
        for (key, v) in [
            ("max_reports_per_batch", i.max_reports_per_batch),
            ("queue_depth", i.queue_depth),
            ("max_jobs_per_commit", i.max_jobs_per_commit),
        ] {
            if v == 0 {
                err(key, "must be 1 or more".into());
            }
        }
        if self.retention.interval_secs == 0 {
            err("interval_secs", "must be 1 or more".into());
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.alerts.webhook {
            if !names.insert(w.name.as_str()) {
                err(
                    "name",
                    format!(
                        "webhook {:?}: two routes have this name (the outbox names its route)",
                        w.name
                    ),
                );
            }
            if !w.url.starts_with("http://") {
                err(
                    "url",
                    format!(
                        "webhook {:?}: only http:// URLs (https: put a TLS proxy in front)",
                        w.name
                    ),
                );
            } else if w.url.parse::<axum::http::Uri>().is_err() {
                err("url", format!("webhook {:?}: not a URL", w.name));
            }
        }
        let l = &self.liveness;
        if l.late_after_intervals == 0 || l.silent_after_intervals <= l.late_after_intervals {
            err(
                "silent_after_intervals",
                "needs 0 < late_after_intervals < silent_after_intervals".into(),
            );
        }
        errors
    }

    /// The SQLite file to use.
    pub fn sqlite_path(&self) -> PathBuf {
        if let Some(p) = &self.database.path {
            return p.clone();
        }
        let system = Path::new(SYSTEM_DB_DIR);
        if system.is_dir() {
            system.join("collector.db")
        } else {
            PathBuf::from("aupwatch-collector.db")
        }
    }
}

/// The dotted key defined on `line` (1-based), with the table it is in: `ingest.queue_depth`.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?.trim();
    let (key, _) = here.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = lines[..line - 1].iter().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
            .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
            .map(str::trim)
    });
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_defaults() {
        let c = Config::parse("c.toml", "").expect("empty config");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.ingest.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.database.backend, Backend::Sqlite);
    }

    #[test]
    fn unknown_keys_fail_with_key_and_line() {
        let errs = Config::parse(
            "c.toml",
            "listen = \"127.0.0.1:1\"\n[ingest]\nqueue_dpth = 3\n",
        )
        .expect_err("unknown key");
        assert_eq!(errs[0].line, Some(3));
        assert!(
            errs[0].message.contains("queue_dpth"),
            "{}",
            errs[0].message
        );
        let errs = Config::parse("c.toml", "\n[ingest]\nqueue_depth = \"x\"\n").expect_err("type");
        assert_eq!(errs[0].line, Some(3));
        assert!(
            errs[0].message.starts_with("`ingest.queue_depth`: "),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn public_plain_http_needs_the_flag() {
        let errs = Config::parse("c.toml", "listen = \"0.0.0.0:8740\"\n").expect_err("public");
        assert_eq!(errs[0].line, Some(1));
        assert!(errs[0].message.contains("listen"));
        Config::parse(
            "c.toml",
            "listen = \"0.0.0.0:8740\"\nallow_insecure_http = true\n",
        )
        .expect("allowed");
    }

    #[test]
    fn webhook_routes_parse_strictly() {
        let c = Config::parse(
            "c.toml",
            "[[alerts.webhook]]\nname = \"desk\"\nurl = \"http://127.0.0.1:9/h\"\ncategories = [\"mining\", \"proxy\"]\nmin_severity = \"high\"\nlabels = { customer = \"c-1\" }\n",
        )
        .expect("route");
        assert_eq!(c.alerts.webhook[0].categories.len(), 2);
        let errs = Config::parse(
            "c.toml",
            "[[alerts.webhook]]\nname = \"desk\"\nurl = \"https://x/h\"\n",
        )
        .expect_err("https");
        assert_eq!(errs[0].line, Some(3));
        let errs = Config::parse(
            "c.toml",
            "[[alerts.webhook]]\nname = \"d\"\nurl = \"http://x/\"\ncategories = [\"bitcoin\"]\n",
        )
        .expect_err("category");
        assert_eq!(errs[0].line, Some(4));
        // The outbox names its route: two routes of one name are refused.
        let errs = Config::parse(
            "c.toml",
            "[[alerts.webhook]]\nname = \"d\"\nurl = \"http://x/\"\n[[alerts.webhook]]\nname = \"d\"\nurl = \"http://y/\"\n",
        )
        .expect_err("same name");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].to_string().contains("two routes"), "{}", errs[0]);
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let errs = Config::parse(
            "c.toml",
            "[ingest]\nqueue_depth = 0\nmax_jobs_per_commit = 0\n[liveness]\nlate_after_intervals = 5\n",
        )
        .expect_err("bad values");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0].line, Some(2));
    }

    #[test]
    fn postgres_tls_needs_a_ca_that_loads() {
        let errs = Config::parse(
            "c.toml",
            "[database]\nbackend = \"postgres\"\nurl = \"host=db.example.net sslmode=require\"\n",
        )
        .expect_err("require without a CA");
        assert!(errs[0].to_string().contains("tls_ca_file"), "{errs:?}");
        assert_eq!(errs[0].line, Some(3));
        let errs = Config::parse(
            "c.toml",
            "[database]\nbackend = \"postgres\"\nurl = \"host=db\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
        )
        .expect_err("a CA file that does not load");
        assert!(
            errs[0].to_string().contains("/nonexistent/ca.pem"),
            "{errs:?}"
        );
        assert_eq!(errs[0].line, Some(4));
    }
}
