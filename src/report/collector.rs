//! Reporting to the central collector: enrollment, the durable spool and the sender.
//!
//! The agent loop hands each interval's report parts to [`Collector::submit`], which never
//! blocks: a writer thread mints the report (sequence number, random report id), writes it
//! durably to the [`Spool`] and wakes the sender thread. The sender enrolls when it has no
//! node key, sends the oldest reports in gzip batches bounded in bytes, and removes them
//! from the spool only when the collector answered `stored` or `duplicate` (after its
//! commit). Failures: 400 quarantines (never resent; a batch is split first to find the
//! one at fault), 401 re-enrolls (the old key stays until a new one is in hand), 403
//! `wrong_machine` enrolls as this machine (the key came with a copied state directory), other 403s wait,
//! 413 splits, 429/503 honour `Retry-After`, anything else backs off exponentially with
//! jitter up to [`MAX_BACKOFF`].
//!
//! Must never: block the agent loop, delete a report the collector did not acknowledge,
//! log the enroll secret or the node key.

use super::spool::{Pending, Spool, SpoolError, Stats};
use crate::config::{CollectorConfig, EnrollSecret};
use aupwatch_proto::protocol::{
    ApiError, EnrollRequest, EnrollResponse, Heartbeat, Report, ReportAck, Stored, ENROLL_PATH,
    REPORT_PATH,
};
use aupwatch_proto::{Event, Tracked, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest wait between two delivery attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Reports waiting for the writer thread before `submit` starts counting drops.
const QUEUE: usize = 64;
/// The most of a collector answer read.
const MAX_ANSWER: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("collector: {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("collector: {0}")]
    Setup(String),
    #[error("collector: cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// Who this agent is to the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub machine_id: String,
    pub hostname: String,
    pub boot_id: String,
}

impl Identity {
    /// Machine id from the config or `/etc/machine-id`, boot id from the kernel.
    pub fn of_host(cfg: &CollectorConfig, hostname: &str) -> Result<Identity, CollectorError> {
        let machine_id = match &cfg.machine_id {
            Some(id) => id.clone(),
            None => read_trimmed(Path::new("/etc/machine-id"))?,
        };
        if machine_id.is_empty() {
            return Err(CollectorError::Setup(
                "/etc/machine-id is empty: set collector.machine_id".into(),
            ));
        }
        let boot_id = read_trimmed(Path::new("/proc/sys/kernel/random/boot_id"))?;
        Ok(Identity {
            machine_id,
            hostname: hostname.to_string(),
            boot_id,
        })
    }
}

fn read_trimmed(path: &Path) -> Result<String, CollectorError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CollectorError::File {
            path: path.to_path_buf(),
            source,
        })
}

/// What the loop knows for one report; the spool fills in sequence, id and its own figures.
#[derive(Debug, Clone)]
pub struct Parts {
    pub created_unix_ms: u64,
    pub hostname: String,
    pub heartbeat: Heartbeat,
    pub events: Vec<Event>,
    pub open_findings: Vec<Tracked>,
    pub goodbye: bool,
}

/// Delivery state, for `aupwatch status`.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub enrolled: bool,
    pub delivered: u64,
    pub last_delivery_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub spool: Stats,
    /// The last report written had to drop older ones, or could not be written.
    pub spool_full: bool,
    /// Reports the loop handed over while the writer was stuck (counted, lost).
    pub dropped_unspooled: u64,
}

struct Shared {
    delivery: Mutex<Delivery>,
    spool: Mutex<Spool>,
    /// Wakes the sender: a report was spooled, or it is time to stop.
    wake: Condvar,
    woken: Mutex<Wake>,
}

#[derive(Default)]
struct Wake {
    pending: bool,
    stop_by: Option<Instant>,
}

/// The running collector reporter: two threads (spool writer, sender).
pub struct Collector {
    url: String,
    tx: Option<SyncSender<Parts>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Collector {
    /// Opens the spool under `state_dir/spool` and starts the writer and sender threads.
    pub fn start(
        cfg: &CollectorConfig,
        state_dir: &Path,
        identity: Identity,
    ) -> Result<Collector, CollectorError> {
        let spool = Spool::open(&state_dir.join("spool"), cfg.spool)?;
        let client = Client::new(cfg, state_dir, identity.clone())?;
        let enrolled = client.key.is_some();
        let shared = Arc::new(Shared {
            delivery: Mutex::new(Delivery {
                enrolled,
                spool: spool.stats(),
                ..Delivery::default()
            }),
            spool: Mutex::new(spool),
            wake: Condvar::new(),
            woken: Mutex::new(Wake {
                pending: true,
                stop_by: None,
            }),
        });
        let (tx, rx) = sync_channel::<Parts>(QUEUE);
        let writer = {
            let shared = shared.clone();
            let identity = identity.clone();
            std::thread::Builder::new()
                .name("spool-writer".into())
                .spawn(move || write_loop(&rx, &shared, &identity))
                .map_err(CollectorError::Thread)?
        };
        let sender = {
            let shared = shared.clone();
            let batch = cfg.batch_max_bytes;
            std::thread::Builder::new()
                .name("sender".into())
                .spawn(move || send_loop(client, &shared, batch))
                .map_err(CollectorError::Thread)?
        };
        Ok(Collector {
            url: cfg.url.clone(),
            tx: Some(tx),
            shared,
            threads: vec![writer, sender],
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Hands one report to the spool writer; never blocks. A report that cannot be queued
    /// (the writer is stuck on a stalled disk) is counted as dropped.
    pub fn submit(&self, parts: Parts) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(parts) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                lock(&self.shared.delivery).dropped_unspooled += 1;
            }
        }
    }

    pub fn delivery(&self) -> Delivery {
        lock(&self.shared.delivery).clone()
    }

    /// Stops after the queued reports are spooled, giving the sender until `deadline` to
    /// deliver what is spooled (the goodbye, typically). What is not delivered stays in the
    /// spool for the next start.
    pub fn stop(mut self, deadline: Duration) {
        self.tx = None; // the writer drains the queue and exits
        let mut threads = std::mem::take(&mut self.threads);
        if !threads.is_empty() {
            let writer = threads.remove(0);
            let _ = writer.join();
        }
        {
            let mut w = lock(&self.shared.woken);
            w.stop_by = Some(Instant::now() + deadline);
            w.pending = true;
        }
        self.shared.wake.notify_all();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn write_loop(rx: &Receiver<Parts>, shared: &Shared, identity: &Identity) {
    while let Ok(parts) = rx.recv() {
        let now = parts.created_unix_ms;
        let unspooled = std::mem::take(&mut lock(&shared.delivery).dropped_unspooled);
        let result = {
            let mut spool = lock(&shared.spool);
            let before = spool.stats().counters.dropped;
            let r = spool.push(now, |sequence, stats| {
                let mut heartbeat = parts.heartbeat;
                heartbeat.spool_reports = stats.reports;
                heartbeat.spool_bytes = stats.bytes;
                heartbeat.dropped = stats.counters.dropped;
                heartbeat.dropped.transitions += unspooled;
                heartbeat.quarantined = stats.counters.quarantined;
                Report {
                    report_id: random_hex(16),
                    sequence,
                    boot_id: identity.boot_id.clone(),
                    machine_id: identity.machine_id.clone(),
                    hostname: parts.hostname,
                    created_unix_ms: now,
                    heartbeat,
                    events: parts.events,
                    open_findings: parts.open_findings,
                    goodbye: parts.goodbye,
                }
            });
            let after = spool.stats();
            let d = after.counters.dropped;
            let (h, o, t) = (
                d.heartbeats - before.heartbeats,
                d.ongoing - before.ongoing,
                d.transitions - before.transitions,
            );
            let dropped = h + o + t > 0;
            if dropped {
                super::log(
                    super::Level::Warning,
                    &format!(
                        "collector spool full ({} reports, {} bytes kept): dropped the oldest {h} heartbeat, {o} ongoing and {t} transition report(s); dropped so far: {} heartbeat, {} ongoing, {} transition",
                        after.reports, after.bytes, d.heartbeats, d.ongoing, d.transitions
                    ),
                );
            }
            (r, after, dropped)
        };
        let mut d = lock(&shared.delivery);
        d.spool = result.1;
        d.spool_full = result.2 || result.0.is_err();
        match result.0 {
            Ok(_) => {
                drop(d);
                lock(&shared.woken).pending = true;
                shared.wake.notify_all();
            }
            Err(e) => {
                d.dropped_unspooled += 1 + unspooled;
                let msg = format!("spool full or unwritable, report dropped: {e}");
                super::log(super::Level::Error, &msg);
                d.last_error = Some(msg);
            }
        }
    }
}

fn send_loop(mut client: Client, shared: &Shared, batch_max: u64) {
    let mut backoff = Duration::ZERO;
    let mut failures: u32 = 0;
    let mut batch_limit = batch_max;
    loop {
        // Wait for work, a backoff's end, or the stop deadline.
        let stop_by = {
            let mut w = lock(&shared.woken);
            let until = Instant::now() + backoff;
            loop {
                let now = Instant::now();
                let stopping = w.stop_by.is_some();
                if stopping && w.stop_by.is_some_and(|t| now >= t) {
                    return;
                }
                if now >= until && (w.pending || stopping) {
                    w.pending = false;
                    break;
                }
                let mut wait = if now < until {
                    until - now
                } else {
                    Duration::from_secs(3600)
                };
                if let Some(t) = w.stop_by {
                    wait = wait.min(t.saturating_duration_since(now));
                }
                w = shared
                    .wake
                    .wait_timeout(w, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            w.stop_by
        };
        let pending = match lock(&shared.spool).oldest(batch_limit) {
            Ok(p) => p,
            Err(e) => {
                set_error(shared, format!("reading the spool: {e}"));
                backoff = next_backoff(&mut failures);
                continue;
            }
        };
        if pending.is_empty() {
            if stop_by.is_some() {
                return;
            }
            continue;
        }
        // The deadline of a stop bounds each request too.
        if let Some(t) = stop_by {
            client.deadline = Some(t);
        }
        let outcome = client.deliver(&pending);
        let mut more = true;
        match outcome {
            Outcome::Acknowledged(sequences) => {
                let mut spool = lock(&shared.spool);
                let r = spool.acknowledge(&sequences);
                let stats = spool.stats();
                drop(spool);
                let mut d = lock(&shared.delivery);
                d.spool = stats;
                d.enrolled = true;
                d.delivered += sequences.len() as u64;
                d.last_delivery_unix_ms = Some(crate::usage::now_unix_ms());
                if let Err(e) = r {
                    d.last_error = Some(format!("acknowledged, but the spool: {e}"));
                } else {
                    d.last_error = None;
                }
                failures = 0;
                backoff = Duration::ZERO;
                batch_limit = batch_max;
            }
            Outcome::Refused(reason) if pending.len() > 1 => {
                // One report of the batch is at fault: find it one by one.
                set_error(shared, reason);
                batch_limit = 1;
            }
            Outcome::Refused(reason) => {
                let seq = pending[0].sequence;
                let mut spool = lock(&shared.spool);
                let where_to = spool.quarantine(seq);
                let stats = spool.stats();
                drop(spool);
                let msg = match where_to {
                    Ok(p) => format!(
                        "report {seq} refused as malformed and quarantined in {}: {reason}",
                        p.display()
                    ),
                    Err(e) => format!("report {seq} refused ({reason}); quarantine failed: {e}"),
                };
                super::log(super::Level::Error, &msg);
                let mut d = lock(&shared.delivery);
                d.spool = stats;
                d.last_error = Some(msg);
            }
            Outcome::TooLarge if pending.len() > 1 => {
                // Half of what was refused (not half of the limit: a batch far below it
                // would be sent again unchanged).
                let sent: u64 = pending.iter().map(|p| p.payload.len() as u64).sum();
                batch_limit = (sent / 2).max(1);
            }
            Outcome::TooLarge => {
                // A single report the collector will never take: same as malformed.
                let seq = pending[0].sequence;
                let r = lock(&shared.spool).quarantine(seq);
                set_error(
                    shared,
                    format!("report {seq} too large for the collector, quarantined ({r:?})"),
                );
            }
            Outcome::RetryAfter(wait, reason) => {
                set_error(shared, reason);
                backoff = wait.min(MAX_BACKOFF);
                more = false;
            }
            Outcome::Failed(reason) | Outcome::WrongMachine(reason) => {
                set_error(shared, reason);
                backoff = next_backoff(&mut failures);
                more = false;
            }
        }
        lock(&shared.delivery).enrolled = client.key.is_some();
        if more {
            lock(&shared.woken).pending = true;
        }
    }
}

fn set_error(shared: &Shared, reason: String) {
    lock(&shared.delivery).last_error = Some(reason);
}

/// 1 s, 2 s, 4 s … up to [`MAX_BACKOFF`], each with ±25 % jitter so a fleet that lost its
/// collector does not come back in lockstep.
fn next_backoff(failures: &mut u32) -> Duration {
    *failures = failures.saturating_add(1);
    let base = Duration::from_secs(1u64 << (*failures - 1).min(9)).min(MAX_BACKOFF);
    let jitter = u64::from_le_bytes(random_bytes::<8>()) % 500;
    base.mul_f64(0.75 + jitter as f64 / 1000.0)
}

enum Outcome {
    /// Sequences the collector stored or had already.
    Acknowledged(Vec<u64>),
    /// 400: malformed, never to be resent as is.
    Refused(String),
    /// 413.
    TooLarge,
    /// 429/503 (or 403 while pending approval): wait this long.
    RetryAfter(Duration, String),
    /// 403 `wrong_machine`: the key in hand is another machine's (a state directory copied
    /// with an image): enroll for this machine.
    WrongMachine(String),
    /// Anything else: back off.
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    url: String,
    host_id: String,
    node_key: String,
}

struct Client {
    agent: ureq::Agent,
    url: String,
    secret: EnrollSecret,
    labels: std::collections::BTreeMap<String, String>,
    identity: Identity,
    key_path: PathBuf,
    key: Option<StoredKey>,
    timeout: Duration,
    /// Set when stopping: no request runs past it.
    deadline: Option<Instant>,
}

impl Client {
    fn new(
        cfg: &CollectorConfig,
        state_dir: &Path,
        identity: Identity,
    ) -> Result<Client, CollectorError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &cfg.ca_file {
            let pem = crate::safefile::read(ca, crate::safefile::MAX_CA_BYTES)
                .map_err(|e| CollectorError::Setup(e.to_string()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| CollectorError::Setup(format!("{}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(CollectorError::Setup(format!(
                    "{}: no certificate in the file",
                    ca.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(cfg.timeout))
            .user_agent(concat!("aupwatch/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        let key_path = state_dir.join("node_key.json");
        let key = match crate::safefile::read(&key_path, crate::safefile::MAX_KEY_BYTES) {
            Ok(bytes) => serde_json::from_slice::<StoredKey>(&bytes)
                .ok()
                .filter(|k| k.url == cfg.url),
            Err(_) => None,
        };
        Ok(Client {
            agent,
            url: cfg.url.clone(),
            secret: cfg.enroll_secret.clone(),
            labels: cfg.labels.clone(),
            identity,
            key_path,
            key,
            timeout: cfg.timeout,
            deadline: None,
        })
    }

    fn timeout(&self) -> Duration {
        match self.deadline {
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .min(self.timeout),
            None => self.timeout,
        }
    }

    /// Enrolls and stores the new key; the old one (if any) is replaced only when the new
    /// one is in hand.
    fn enroll(&mut self) -> Result<(), String> {
        let secret = match &self.secret {
            EnrollSecret::Inline(s) => s.clone(),
            EnrollSecret::File(p) => {
                crate::safefile::read_to_string(p, crate::safefile::MAX_KEY_BYTES)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| format!("enroll secret: {e}"))?
            }
        };
        let request = EnrollRequest {
            schema_version: SCHEMA_VERSION,
            enroll_secret: secret,
            machine_id: self.identity.machine_id.clone(),
            hostname: self.identity.hostname.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            labels: self.labels.clone(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
        let mut resp = self
            .agent
            .post(format!("{}{ENROLL_PATH}", self.url))
            .config()
            .timeout_global(Some(self.timeout()))
            .build()
            .header("Content-Type", "application/json")
            .send(&body[..])
            .map_err(|e| format!("enroll: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| format!("enroll: reading the answer: {e}"))?;
        if status != 200 {
            return Err(format!("enroll: HTTP {status}: {}", api_error(&text)));
        }
        let answer: EnrollResponse =
            serde_json::from_slice(&text).map_err(|e| format!("enroll: bad answer: {e}"))?;
        let stored = StoredKey {
            url: self.url.clone(),
            host_id: answer.host_id,
            node_key: answer.node_key,
        };
        save_key(&self.key_path, &stored)?;
        self.key = Some(stored);
        Ok(())
    }

    fn deliver(&mut self, pending: &[Pending]) -> Outcome {
        if self.key.is_none() {
            if let Err(e) = self.enroll() {
                return Outcome::Failed(e);
            }
        }
        let mut outcome = self.post(pending);
        if matches!(outcome, Outcome::Failed(ref r) if r.starts_with("HTTP 401")) {
            // The key is unknown or revoked: enroll again, keeping the old key until then.
            outcome = match self.enroll() {
                Ok(()) => self.post(pending),
                Err(e) => Outcome::Failed(format!("re-enrolling after 401: {e}")),
            };
        }
        if let Outcome::WrongMachine(reason) = outcome {
            // The key belongs to another machine id (a copied state directory): this
            // machine enrolls as itself; the other machine's key is replaced only once a
            // new one is in hand. A second refusal right after is backed off, not looped.
            super::log(
                super::Level::Warning,
                &format!(
                    "the collector says the node key is another machine's ({reason}): enrolling as machine {}",
                    self.identity.machine_id
                ),
            );
            outcome = match self.enroll() {
                Ok(()) => match self.post(pending) {
                    Outcome::WrongMachine(r) => Outcome::Failed(r),
                    o => o,
                },
                Err(e) => Outcome::Failed(format!("enrolling after {reason}: {e}")),
            };
        }
        outcome
    }

    fn post(&self, pending: &[Pending]) -> Outcome {
        let Some(key) = &self.key else {
            return Outcome::Failed("not enrolled".into());
        };
        // The batch is assembled from the spooled JSON as is: no re-serialization.
        let mut json = Vec::new();
        json.extend_from_slice(
            format!("{{\"schema_version\":{SCHEMA_VERSION},\"reports\":[").as_bytes(),
        );
        for (i, p) in pending.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            json.extend_from_slice(&p.payload);
        }
        json.extend_from_slice(b"]}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let body = match gz.write_all(&json).and_then(|()| gz.finish()) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(format!("gzip: {e}")),
        };
        let sent = self
            .agent
            .post(format!("{}{REPORT_PATH}", self.url))
            .config()
            .timeout_global(Some(self.timeout()))
            .build()
            .header("Authorization", format!("Bearer {}", key.node_key))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .send(&body[..]);
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("sending: {e}")),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
        {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(format!("reading the answer: {e}")),
        };
        match status {
            200 => match serde_json::from_slice::<ReportAck>(&text) {
                Ok(ack) => acknowledged(pending, &ack),
                Err(e) => Outcome::Failed(format!("bad acknowledgement: {e}")),
            },
            400 => Outcome::Refused(format!("HTTP 400: {}", api_error(&text))),
            413 => Outcome::TooLarge,
            429 | 503 => Outcome::RetryAfter(
                retry_after.unwrap_or(Duration::from_secs(5)),
                format!("HTTP {status}: {}", api_error(&text)),
            ),
            403 if api_code(&text).as_deref() == Some("wrong_machine") => {
                Outcome::WrongMachine(format!("HTTP 403: {}", api_error(&text)))
            }
            403 => Outcome::RetryAfter(
                Duration::from_secs(60),
                format!("HTTP 403: {}", api_error(&text)),
            ),
            _ => Outcome::Failed(format!("HTTP {status}: {}", api_error(&text))),
        }
    }
}

/// The sequences whose report ids the acknowledgement lists as stored or duplicate.
fn acknowledged(pending: &[Pending], ack: &ReportAck) -> Outcome {
    #[derive(Deserialize)]
    struct Id {
        report_id: String,
    }
    let mut sequences = Vec::new();
    for p in pending {
        let Ok(id) = serde_json::from_slice::<Id>(&p.payload).map(|i| i.report_id) else {
            continue;
        };
        if ack
            .results
            .iter()
            .any(|r| r.report_id == id && matches!(r.status, Stored::Stored | Stored::Duplicate))
        {
            sequences.push(p.sequence);
        }
    }
    if sequences.is_empty() {
        Outcome::Failed("the acknowledgement names none of the reports sent".into())
    } else {
        Outcome::Acknowledged(sequences)
    }
}

/// The `code` of an [`ApiError`] answer.
fn api_code(text: &[u8]) -> Option<String> {
    serde_json::from_slice::<ApiError>(text)
        .ok()
        .map(|e| e.code)
}

fn api_error(text: &[u8]) -> String {
    match serde_json::from_slice::<ApiError>(text) {
        Ok(e) => format!("{} ({})", e.error, e.code),
        Err(_) => super::printable(&String::from_utf8_lossy(&text[..text.len().min(200)])),
    }
}

fn save_key(path: &Path, key: &StoredKey) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec(key).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("storing the node key in {}: {e}", path.display()))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut filled = 0;
    // getrandom(2) never fails for small buffers once the pool is initialised (it blocks
    // until then, early in boot only); EINTR is retried.
    while filled < N {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    b
}

fn random_hex(n: usize) -> String {
    let mut out = String::with_capacity(n * 2);
    for x in random_bytes::<32>().iter().take(n) {
        out.push_str(&format!("{x:02x}"));
    }
    out
}
