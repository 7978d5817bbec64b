//! Webhook alerts through a durable outbox: lifecycle events of newly stored reports,
//! filtered by route (categories, minimum severity, labels, event kinds), and hosts going
//! silent or coming back, POSTed as CloudEvents (structured JSON) with a stable id
//! (`<report id>/<event index>`, `<host id>/silent/<last seen>`: a retry carries the same id,
//! receivers dedupe).
//!
//! The ingest path turns a batch's events into [`NewAlert`] rows before the write
//! ([`Alerter::for_reports`]); the store inserts those of the reports it stores now (never a
//! duplicate's) **in the report's own transaction**, so an acknowledged report's alerts are
//! on disk and survive a crash or restart. Liveness alerts are inserted by the silence pass,
//! each `(route, id)` once. The deliverer ([`Alerter::start`]) claims due rows under a lease
//! (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so collectors sharing a database never send one
//! alert at the same time), POSTs, and marks each sent, due again after a backoff that
//! doubles from the route's `retry_initial_ms` (at most 300 s), or failed after the route's
//! `max_attempts` (kept for `aupwatch-collector alerts --state failed`). A collector that dies
//! mid-delivery leaves the lease to run out; the row is then claimed again (at least once).
//!
//! Must never: block ingest on a receiver; send an alert of a report that was not stored.

use crate::clock::Clock;
use crate::config::WebhookRoute;
use crate::store::{AlertOutcome, AlertRow, NewAlert, Store};
use aupwatch_proto::api::{HostRow, Liveness};
use aupwatch_proto::protocol::Report;
use aupwatch_proto::{Event, EventKind};
use axum::body::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Deliveries in flight at once (rows claimed per round).
const PARALLEL: usize = 16;
/// How long a claimed row is ours: longer than an attempt (10 s timeout) and its settling.
pub const LEASE_MS: u64 = 60_000;
/// How often the outbox is looked at when nothing wakes the deliverer (rows of another
/// collector, rows whose lease ran out).
const POLL: Duration = Duration::from_secs(1);
/// The longest backoff.
const MAX_BACKOFF_MS: u64 = 300_000;

/// The host a report came from, as the routes see it.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub host_id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
}

/// This process's delivery attempts (the outbox's state is in `/metrics` from the table).
#[derive(Debug, Default)]
pub struct AlertCounters {
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Alerter {
    routes: Arc<Vec<WebhookRoute>>,
    wake: Arc<Notify>,
    pub counters: Arc<AlertCounters>,
}

impl Alerter {
    /// No routes: nothing is queued or sent.
    pub fn disabled() -> Alerter {
        Alerter {
            routes: Arc::new(Vec::new()),
            wake: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Starts the deliverer (needs a tokio runtime) on `store`'s outbox; `clock` times
    /// attempts and backoffs.
    pub fn start(
        routes: Vec<WebhookRoute>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Alerter {
        if routes.is_empty() {
            return Alerter::disabled();
        }
        let a = Alerter {
            routes: Arc::new(routes),
            wake: Arc::default(),
            counters: Arc::default(),
        };
        let owner = format!(
            "{}-{}",
            std::process::id(),
            crate::secret::random_hex(8).unwrap_or_default()
        );
        tokio::spawn(deliver(
            Deliverer {
                routes: a.routes.clone(),
                store,
                clock,
                counters: a.counters.clone(),
                owner,
            },
            a.wake.clone(),
        ));
        a
    }

    /// True when some route is configured.
    pub fn enabled(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Tells the deliverer new rows were committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The outbox rows of a batch's events, for every route that admits them; the store
    /// keeps those of the reports it stores now.
    pub fn for_reports(&self, host: &HostInfo, reports: &[Report]) -> Vec<NewAlert> {
        let mut out = Vec::new();
        for report in reports {
            for (i, event) in report.events.iter().enumerate() {
                for route in self.routes.iter() {
                    if !admits(route, host, event) {
                        continue;
                    }
                    let id = format!("{}/{i}", report.report_id);
                    match cloud_event(&id, host, event) {
                        Ok(body) => out.push(NewAlert {
                            route: route.name.clone(),
                            alert_id: id,
                            kind: format!("net.aupwatch.finding.{}", event.kind.as_str()),
                            host_id: host.host_id.clone(),
                            report_id: Some(report.report_id.clone()),
                            body,
                        }),
                        Err(e) => crate::log(&format!("alert {id}: {e}")),
                    }
                }
            }
        }
        out
    }

    /// The outbox rows of a host's liveness change (`silent` or `recovered`) for routes that
    /// want them. The id is stable for one silence (host and last report time).
    pub fn for_liveness(&self, host: &HostRow, silent: bool) -> Vec<NewAlert> {
        let what = if silent { "silent" } else { "recovered" };
        let last = host.last_seen_unix_ms.unwrap_or(host.enrolled_unix_ms);
        let id = format!("{}/{what}/{last}", host.host_id);
        let mut out = Vec::new();
        for route in self.routes.iter() {
            let wanted = route.silent_hosts
                && route.min_severity <= aupwatch_proto::Severity::High
                && route
                    .labels
                    .iter()
                    .all(|(k, v)| host.labels.get(k) == Some(v));
            if !wanted {
                continue;
            }
            let kind = format!("net.aupwatch.host.{what}");
            let v = serde_json::json!({
                "specversion": "1.0",
                "id": id,
                "source": "aupwatch-collector",
                "type": kind,
                "subject": crate::store::finding_id(&host.host_id, crate::liveness::SILENT_SIGNATURE),
                "time": rfc3339(last),
                "datacontenttype": "application/json",
                "data": {
                    "host_id": host.host_id,
                    "hostname": host.hostname,
                    "labels": host.labels,
                    "liveness": host.liveness,
                    "last_seen_unix_ms": host.last_seen_unix_ms,
                    "interval_secs": host.interval_secs,
                },
            });
            let Ok(body) = serde_json::to_string(&v) else {
                continue;
            };
            out.push(NewAlert {
                route: route.name.clone(),
                alert_id: id.clone(),
                kind,
                host_id: host.host_id.clone(),
                report_id: None,
                body,
            });
        }
        out
    }

    /// Prometheus lines: the outbox by state (from the table) and this process's attempts.
    pub async fn render(
        &self,
        store: &dyn Store,
        out: &mut String,
    ) -> Result<(), crate::store::StoreError> {
        let t = store.alert_counts().await?;
        let c = &self.counters;
        let _ = writeln!(
            out,
            "# HELP aupwatch_collector_alerts Webhook alerts in the outbox, by state (retrying: pending after a failed attempt).\n\
             # TYPE aupwatch_collector_alerts gauge\n\
             aupwatch_collector_alerts{{state=\"pending\"}} {}\n\
             aupwatch_collector_alerts{{state=\"retrying\"}} {}\n\
             aupwatch_collector_alerts{{state=\"sent\"}} {}\n\
             aupwatch_collector_alerts{{state=\"failed\"}} {}\n\
             # HELP aupwatch_collector_alert_retries Attempts beyond the first, over the outbox's rows.\n\
             # TYPE aupwatch_collector_alert_retries gauge\n\
             aupwatch_collector_alert_retries {}\n\
             # HELP aupwatch_collector_alerts_total This process's webhook attempts, by outcome.\n\
             # TYPE aupwatch_collector_alerts_total counter\n\
             aupwatch_collector_alerts_total{{outcome=\"sent\"}} {}\n\
             aupwatch_collector_alerts_total{{outcome=\"retried\"}} {}\n\
             aupwatch_collector_alerts_total{{outcome=\"failed\"}} {}",
            t.pending,
            t.retrying,
            t.sent,
            t.failed,
            t.retries,
            c.sent.load(Ordering::Relaxed),
            c.retries.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed)
        );
        Ok(())
    }
}

/// Does `route` want this event of this host?
pub fn admits(route: &WebhookRoute, host: &HostInfo, event: &Event) -> bool {
    let f = &event.tracked.finding;
    let kinds_ok = if route.kinds.is_empty() {
        matches!(event.kind, EventKind::New | EventKind::Changed)
    } else {
        route.kinds.contains(&event.kind)
    };
    kinds_ok
        && (route.categories.is_empty() || route.categories.contains(&f.category))
        && f.severity >= route.min_severity
        && route
            .labels
            .iter()
            .all(|(k, v)| host.labels.get(k) == Some(v))
}

/// The CloudEvents 1.0 structured-mode JSON of one lifecycle event.
pub fn cloud_event(id: &str, host: &HostInfo, event: &Event) -> Result<String, serde_json::Error> {
    let v = serde_json::json!({
        "specversion": "1.0",
        "id": id,
        "source": "aupwatch-collector",
        "type": format!("net.aupwatch.finding.{}", event.kind.as_str()),
        "subject": crate::store::finding_id(&host.host_id, &event.tracked.id),
        "time": rfc3339(event.at_unix_ms),
        "datacontenttype": "application/json",
        "data": {
            "host_id": host.host_id,
            "hostname": host.hostname,
            "labels": host.labels,
            "event": event,
        },
    });
    serde_json::to_string(&v)
}

struct Deliverer {
    routes: Arc<Vec<WebhookRoute>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    counters: Arc<AlertCounters>,
    /// This process's lease name.
    owner: String,
}

/// The delivery loop: claim what is due, send it all at once, settle each; wait for a wake,
/// the soonest retry or the poll interval when nothing was due.
async fn deliver(d: Deliverer, wake: Arc<Notify>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let d = Arc::new(d);
    let mut soonest: Option<u64> = None;
    loop {
        let now = d.clock.now_unix_ms();
        let claimed = match d
            .store
            .claim_alerts(d.owner.clone(), now, LEASE_MS, PARALLEL)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                crate::log(&format!("alerts: claiming: {e}"));
                Vec::new()
            }
        };
        if !claimed.is_empty() {
            let mut attempts = tokio::task::JoinSet::new();
            for row in claimed {
                let (d, client) = (d.clone(), client.clone());
                attempts.spawn(async move { d.attempt(&client, row).await });
            }
            while let Some(next) = attempts.join_next().await {
                if let Ok(Some(at)) = next {
                    soonest = Some(soonest.map_or(at, |s| s.min(at)));
                }
            }
            continue;
        }
        let now = d.clock.now_unix_ms();
        let wait = match soonest {
            Some(at) if at > now => POLL.min(Duration::from_millis(at - now)),
            Some(_) => Duration::ZERO,
            None => POLL,
        };
        soonest = None;
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Deliverer {
    /// One attempt of a claimed row; when it is due again, if it is to be retried.
    async fn attempt(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        row: AlertRow,
    ) -> Option<u64> {
        let route = self.routes.iter().find(|r| r.name == row.route);
        let result = match route {
            Some(r) => post(client, &r.url, Bytes::from(row.body.clone())).await,
            None => Err("no route of that name in the config any more".to_string()),
        };
        if row.attempts > 1 {
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        let now = self.clock.now_unix_ms();
        let max = route.map_or(1, |r| r.max_attempts.max(1));
        let (outcome, next) = match result {
            Ok(()) => (AlertOutcome::Sent, None),
            Err(error) if row.attempts >= max => {
                crate::log(&format!(
                    "alert {} to {}: giving up after {} attempts: {}",
                    crate::escape::printable(&row.alert_id),
                    crate::escape::printable(&row.route),
                    row.attempts,
                    crate::escape::printable(&error)
                ));
                (AlertOutcome::Failed { error }, None)
            }
            Err(error) => {
                let next = now.saturating_add(backoff_ms(
                    route.map_or(1, |r| r.retry_initial_ms),
                    row.attempts,
                ));
                (
                    AlertOutcome::Retry {
                        next_unix_ms: next,
                        error,
                    },
                    Some(next),
                )
            }
        };
        let counter = match outcome {
            AlertOutcome::Sent => Some(&self.counters.sent),
            AlertOutcome::Failed { .. } => Some(&self.counters.failed),
            AlertOutcome::Retry { .. } => None,
        };
        match self
            .store
            .settle_alert(row.seq, self.owner.clone(), outcome, now)
            .await
        {
            Ok(true) => {
                if let Some(c) = counter {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(false) => crate::log(&format!(
                "alert {}: the lease ran out before the attempt ended (another collector may send it again)",
                crate::escape::printable(&row.alert_id)
            )),
            Err(e) => crate::log(&format!(
                "alert {}: recording the attempt: {e}",
                crate::escape::printable(&row.alert_id)
            )),
        }
        next
    }
}

/// The wait after the `attempts`-th failed attempt: `initial_ms` doubled per attempt after
/// the first, at most [`MAX_BACKOFF_MS`].
pub fn backoff_ms(initial_ms: u64, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    initial_ms
        .max(1)
        .saturating_mul(1u64 << doublings)
        .min(MAX_BACKOFF_MS)
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: Bytes,
) -> Result<(), String> {
    let req = axum::http::Request::post(url)
        .header("content-type", "application/cloudevents+json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", resp.status()))
    }
}

/// Which hosts went silent and which came back since `silent` (updated to the new set).
/// Only a host that reports again (`online` or `late`) has recovered; one that is now
/// stopped, archived, blocked or revoked just leaves the set.
pub fn silence_changes<'a>(
    silent: &mut std::collections::HashSet<String>,
    hosts: &'a [HostRow],
) -> (Vec<&'a HostRow>, Vec<&'a HostRow>) {
    let mut went = Vec::new();
    let mut back = Vec::new();
    let mut now = std::collections::HashSet::new();
    for h in hosts {
        if h.liveness == Liveness::Silent {
            now.insert(h.host_id.clone());
            if !silent.contains(&h.host_id) {
                went.push(h);
            }
        } else if silent.contains(&h.host_id)
            && matches!(h.liveness, Liveness::Online | Liveness::Late)
        {
            back.push(h);
        }
    }
    *silent = now;
    (went, back)
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(super::backoff_ms(20, 1), 20);
        assert_eq!(super::backoff_ms(20, 2), 40);
        assert_eq!(super::backoff_ms(20, 4), 160);
        assert_eq!(super::backoff_ms(1000, 40), 300_000);
        assert_eq!(super::backoff_ms(0, 1), 1);
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_659_200_000), "2026-12-07T16:00:00Z");
    }
}
