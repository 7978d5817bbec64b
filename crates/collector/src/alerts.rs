//! Webhook alerts: lifecycle events of newly stored reports, filtered by route (categories,
//! minimum severity, labels, event kinds), POSTed as CloudEvents (structured JSON) with a
//! stable id (`<report id>/<event index>`: a retry carries the same id, receivers dedupe),
//! retried with exponential backoff.
//!
//! Dispatched only after the report's commit and only for reports stored now (never for
//! duplicates). The queue is in memory: alerts waiting at a restart are lost (counted in
//! neither sent nor failed); the findings themselves are in the database.
//!
//! Must never: block ingest (a full queue drops the alert and counts it).

use crate::config::WebhookRoute;
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
use tokio::sync::{mpsc, Semaphore};

/// Alerts waiting for delivery before new ones are dropped.
pub const QUEUE: usize = 10_000;
/// Deliveries in flight at once.
const PARALLEL: usize = 16;

/// The host a report came from, as the routes see it.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub host_id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
}

struct Delivery {
    route: usize,
    id: String,
    body: Bytes,
}

#[derive(Debug, Default)]
pub struct AlertCounters {
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Alerter {
    routes: Arc<Vec<WebhookRoute>>,
    tx: Option<mpsc::Sender<Delivery>>,
    pub counters: Arc<AlertCounters>,
}

impl Alerter {
    /// No routes: dispatch does nothing.
    pub fn disabled() -> Alerter {
        Alerter {
            routes: Arc::new(Vec::new()),
            tx: None,
            counters: Arc::default(),
        }
    }

    /// Starts the delivery task (needs a tokio runtime).
    pub fn start(routes: Vec<WebhookRoute>) -> Alerter {
        if routes.is_empty() {
            return Alerter::disabled();
        }
        let routes = Arc::new(routes);
        let counters: Arc<AlertCounters> = Arc::default();
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(routes.clone(), rx, counters.clone()));
        Alerter {
            routes,
            tx: Some(tx),
            counters,
        }
    }

    /// True when some route is configured.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues the alerts of one stored report.
    pub fn dispatch(&self, host: &HostInfo, report: &Report) {
        let Some(tx) = &self.tx else {
            return;
        };
        for (i, event) in report.events.iter().enumerate() {
            for (r, route) in self.routes.iter().enumerate() {
                if !admits(route, host, event) {
                    continue;
                }
                let id = format!("{}/{i}", report.report_id);
                let body = match cloud_event(&id, host, event) {
                    Ok(b) => b,
                    Err(e) => {
                        crate::log(&format!("alert {id}: {e}"));
                        continue;
                    }
                };
                if tx.try_send(Delivery { route: r, id, body }).is_err() {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Queues a host's liveness alert (`silent` or `recovered`) for routes that want them.
    /// The id is stable for one silence (host and last report time).
    pub fn dispatch_liveness(&self, host: &HostRow, silent: bool) {
        let Some(tx) = &self.tx else {
            return;
        };
        let info = HostInfo {
            host_id: host.host_id.clone(),
            hostname: host.hostname.clone(),
            labels: host.labels.clone(),
        };
        let what = if silent { "silent" } else { "recovered" };
        let last = host.last_seen_unix_ms.unwrap_or(host.enrolled_unix_ms);
        let id = format!("{}/{what}/{last}", host.host_id);
        for (r, route) in self.routes.iter().enumerate() {
            let wanted = route.silent_hosts
                && route.min_severity <= aupwatch_proto::Severity::High
                && route
                    .labels
                    .iter()
                    .all(|(k, v)| info.labels.get(k) == Some(v));
            if !wanted {
                continue;
            }
            let v = serde_json::json!({
                "specversion": "1.0",
                "id": id,
                "source": "aupwatch-collector",
                "type": format!("net.aupwatch.host.{what}"),
                "subject": crate::store::finding_id(&host.host_id, crate::liveness::SILENT_SIGNATURE),
                "time": rfc3339(last),
                "datacontenttype": "application/json",
                "data": {
                    "host_id": info.host_id,
                    "hostname": info.hostname,
                    "labels": info.labels,
                    "liveness": host.liveness,
                    "last_seen_unix_ms": host.last_seen_unix_ms,
                    "interval_secs": host.interval_secs,
                },
            });
            let body = match serde_json::to_vec(&v) {
                Ok(b) => Bytes::from(b),
                Err(_) => continue,
            };
            if tx
                .try_send(Delivery {
                    route: r,
                    id: id.clone(),
                    body,
                })
                .is_err()
            {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Prometheus lines.
    pub fn render(&self, out: &mut String) {
        let c = &self.counters;
        let _ = writeln!(
            out,
            "# HELP aupwatch_collector_alerts_total Webhook alerts, by outcome.\n\
             # TYPE aupwatch_collector_alerts_total counter\n\
             aupwatch_collector_alerts_total{{outcome=\"sent\"}} {}\n\
             aupwatch_collector_alerts_total{{outcome=\"retried\"}} {}\n\
             aupwatch_collector_alerts_total{{outcome=\"failed\"}} {}\n\
             aupwatch_collector_alerts_total{{outcome=\"dropped\"}} {}",
            c.sent.load(Ordering::Relaxed),
            c.retries.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed)
        );
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
pub fn cloud_event(id: &str, host: &HostInfo, event: &Event) -> Result<Bytes, serde_json::Error> {
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
    Ok(Bytes::from(serde_json::to_vec(&v)?))
}

async fn deliver(
    routes: Arc<Vec<WebhookRoute>>,
    mut rx: mpsc::Receiver<Delivery>,
    counters: Arc<AlertCounters>,
) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let slots = Arc::new(Semaphore::new(PARALLEL));
    while let Some(d) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, routes, counters) = (client.clone(), routes.clone(), counters.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Some(route) = routes.get(d.route) else {
                return;
            };
            let mut backoff = Duration::from_millis(route.retry_initial_ms.max(1));
            for attempt in 1..=route.max_attempts.max(1) {
                if attempt > 1 {
                    counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
                match post(&client, &route.url, d.body.clone()).await {
                    Ok(()) => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(e) if attempt == route.max_attempts.max(1) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        crate::log(&format!(
                            "alert {} to {}: giving up after {attempt} attempts: {e}",
                            d.id, route.name
                        ));
                    }
                    Err(_) => {}
                }
            }
        });
    }
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
    fn times_print_as_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_659_200_000), "2026-12-07T16:00:00Z");
    }
}
