//! `aupwatch status`: the agent's typed status document (`aupwatch_proto::status::Status`)
//! as a table for people or Prometheus text for node_exporter. Every field is read typed;
//! host-supplied text is escaped before it reaches a terminal.

use super::output::{age, clean, columns, Style};
use anyhow::Result;
use aupwatch_proto::status::{Health, Sink, Status};
use aupwatch_proto::{Severity, Subject, Tracked};
use std::collections::BTreeMap;
use std::io::Write;

/// Active findings no exception covers (they decide the exit status).
pub fn unexcepted(doc: &Status) -> usize {
    doc.findings.iter().filter(|t| t.excepted.is_none()).count()
}

/// Whether the agent's loop is stuck, decided at `now_unix_ms` from the document alone (the
/// agent cannot notice its own stuck loop, while its status thread still answers): its last
/// scan, or its start when it has not finished one, is older than two scan intervals (plus
/// the last scan's own duration, so a host whose scans take most of an interval is not
/// called stalled). Returns how old, in ms, when stalled.
pub fn stalled(doc: &Status, now_unix_ms: u64) -> Option<u64> {
    let (since, took) = match &doc.last_scan {
        Some(s) => (s.at_unix_ms, s.duration_ms.max(0.0) as u64),
        None => (doc.agent.started_at_unix_ms, 0),
    };
    let allowed = doc
        .agent
        .interval_secs
        .saturating_mul(2_000)
        .saturating_add(took);
    let age = now_unix_ms.saturating_sub(since);
    (age > allowed).then_some(age)
}

/// Marks the document's health `stalled` when [`stalled`] says so; returns the age.
pub fn judge_stall(doc: &mut Status, now_unix_ms: u64) -> Option<u64> {
    let age = stalled(doc, now_unix_ms)?;
    doc.agent.health = Health::Stalled;
    Some(age)
}

/// `aupwatch status`'s exit status: 2 when the agent is stalled (an error: what it shows is
/// stale), else 1 with active findings no exception covers, else 0.
pub fn exit_code(doc: &Status) -> u8 {
    if doc.agent.health == Health::Stalled {
        super::EXIT_ERROR
    } else if unexcepted(doc) > 0 {
        super::EXIT_FINDINGS
    } else {
        super::EXIT_CLEAN
    }
}

/// The agent's status, readable at a glance.
pub fn table(doc: &Status) -> Result<()> {
    let style = Style::stdout();
    let mut out = std::io::stdout().lock();
    let now = aupwatch::usage::now_unix_ms();
    let a = &doc.agent;
    let health = a.health.as_str();
    let health_shown = if style.color {
        let code = match a.health {
            Health::Ok => "32",
            Health::Starting => "33",
            Health::Degraded | Health::Stalled => "31",
        };
        format!("\x1b[{code}m{health}\x1b[0m")
    } else {
        health.to_string()
    };
    let kv = |k: &str, v: String| format!("{:<13}{v}", format!("{k}:"));
    writeln!(
        out,
        "{}",
        kv(
            "agent",
            format!(
                "{} (aupwatch {}, pid {}, host {})",
                health_shown,
                clean(&a.version),
                a.pid,
                clean(&a.host)
            )
        )
    )?;
    let up = a.uptime_secs;
    writeln!(
        out,
        "{}",
        kv(
            "uptime",
            format!(
                "{}h{:02}m, {} scans every {}s, config {}",
                up / 3600,
                (up % 3600) / 60,
                doc.scans,
                a.interval_secs,
                clean(a.config.as_deref().unwrap_or("-"))
            )
        )
    )?;
    writeln!(
        out,
        "{}",
        kv(
            "own cost",
            format!(
                "{:.1} s CPU, peak RSS {:.1} MiB",
                a.cpu_ms / 1000.0,
                a.max_rss_kib as f64 / 1024.0
            )
        )
    )?;
    match &doc.last_scan {
        None => writeln!(out, "{}", kv("last scan", "none yet".into()))?,
        Some(ls) => writeln!(
            out,
            "{}",
            kv(
                "last scan",
                format!(
                    "{}, {:.0} ms ({:.0} ms CPU), {} processes, {} sockets, {} namespaces, {} gaps",
                    age(ls.at_unix_ms, now),
                    ls.duration_ms,
                    ls.cpu_ms,
                    ls.processes,
                    ls.sockets,
                    ls.namespaces,
                    ls.gaps
                )
            )
        )?,
    }
    let sig = &doc.signatures;
    let local = sig
        .local
        .as_deref()
        .map_or(String::new(), |l| format!(" + {}", clean(l)));
    writeln!(
        out,
        "{}",
        kv(
            "signatures",
            format!(
                "{} (version {}) from {}{local}",
                sig.count,
                clean(&sig.version),
                clean(&sig.shipped)
            )
        )
    )?;
    if !sig.overridden.is_empty() {
        let ids: Vec<String> = sig.overridden.iter().map(|i| clean(i)).collect();
        writeln!(
            out,
            "{}",
            kv(
                "overridden",
                format!("{} (shipped, replaced by local files)", ids.join(", "))
            )
        )?;
    }
    if let Some(r) = &doc.last_reload {
        let what = if r.ok {
            "ok".to_string()
        } else {
            format!(
                "REJECTED: {}",
                clean(r.error.as_deref().unwrap_or("-")).replace("\\n", " ")
            )
        };
        writeln!(
            out,
            "{}",
            kv(
                "last reload",
                format!("{} ({}): {what}", age(r.at_unix_ms, now), clean(&r.trigger))
            )
        )?;
    }
    let rep = &doc.reporting;
    let sink = |v: &Option<Sink>| match v {
        None => "off".to_string(),
        Some(s) => {
            let err = s
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!(", last error: {}", clean(e)));
            format!("{} ({} errors{err})", clean(&s.target), s.errors)
        }
    };
    writeln!(out, "{}", kv("syslog", sink(&rep.syslog)))?;
    writeln!(out, "{}", kv("event log", sink(&rep.event_log)))?;
    match &rep.collector {
        None => writeln!(out, "{}", kv("collector", "not configured".to_string()))?,
        Some(c) => {
            writeln!(
                out,
                "{}",
                kv(
                    "collector",
                    format!(
                        "{} ({})",
                        clean(&c.url),
                        if c.enrolled {
                            "enrolled"
                        } else {
                            "not enrolled"
                        }
                    )
                )
            )?;
            writeln!(
                out,
                "{}",
                kv(
                    "  spool",
                    format!(
                        "{} reports, {} bytes{}",
                        c.spool_reports,
                        c.spool_bytes,
                        if c.spool_full {
                            " (FULL: dropping the oldest)"
                        } else {
                            ""
                        }
                    )
                )
            )?;
            let last = c
                .last_delivery_unix_ms
                .map_or("never".to_string(), |t| age(t, now));
            writeln!(
                out,
                "{}",
                kv(
                    "  delivered",
                    format!("{} reports, last {last}", c.delivered)
                )
            )?;
            let d = &c.dropped;
            writeln!(
                out,
                "{}",
                kv(
                    "  dropped",
                    format!(
                        "{} heartbeats, {} ongoing, {} transitions; {} quarantined",
                        d.heartbeats, d.ongoing, d.transitions, c.quarantined
                    )
                )
            )?;
            if let Some(e) = &c.last_error {
                writeln!(out, "{}", kv("  error", clean(e)))?;
            }
        }
    }
    let mut findings: Vec<&Tracked> = doc.findings.iter().collect();
    findings.sort_by_key(|t| {
        let f = &t.finding;
        (
            std::cmp::Reverse(f.severity),
            f.category,
            f.signatures().next().map(str::to_string),
            f.process().map_or(0, |p| p.pid),
        )
    });
    writeln!(out)?;
    if findings.is_empty() {
        writeln!(out, "no active findings")?;
    } else {
        let rows: Vec<[String; 7]> = findings
            .iter()
            .map(|t| {
                let f = &t.finding;
                let (pid, what) = match &f.subject {
                    Subject::Host => ("-".to_string(), "host".to_string()),
                    Subject::Interface(i) => {
                        ("-".to_string(), format!("interface {}", clean(&i.name)))
                    }
                    Subject::Process(p) => {
                        let exe = p.exe.as_deref().map(|e| e.rsplit('/').next().unwrap_or(e));
                        (p.pid.to_string(), clean(exe.unwrap_or(&p.comm)))
                    }
                };
                let state = if t.excepted.is_none() {
                    t.state.as_str().to_string()
                } else {
                    "excepted".to_string()
                };
                [
                    f.severity.to_string(),
                    f.category.to_string(),
                    clean(&f.signatures().collect::<Vec<_>>().join(",")),
                    state,
                    age(t.first_seen_unix_ms, now),
                    pid,
                    what,
                ]
            })
            .collect();
        let headers = [
            "SEVERITY",
            "CATEGORY",
            "SIGNATURES",
            "STATE",
            "SINCE",
            "PID",
            "PROCESS",
        ];
        let (head, lines, _) = columns(&headers, &rows);
        writeln!(out, "{}", style.dim(&head))?;
        for (t, line) in findings.iter().zip(&lines) {
            writeln!(out, "{line}")?;
            if let Some(x) = &t.excepted {
                let ticket = x
                    .ticket
                    .as_deref()
                    .map_or(String::new(), |t| format!(" [{}]", clean(t)));
                writeln!(
                    out,
                    "    {} {}{ticket}",
                    style.dim("excepted:"),
                    clean(&x.reason)
                )?;
            }
        }
    }
    if doc.findings_omitted > 0 {
        writeln!(
            out,
            "{} more active finding(s) not listed: the status document is bounded (4 MiB)",
            doc.findings_omitted
        )?;
    }
    let resolved = doc.recently_resolved.len();
    if resolved > 0 {
        writeln!(out, "\n{resolved} recently resolved (see --json)")?;
    }
    Ok(())
}

/// One metric without labels: HELP, TYPE and the sample.
fn one(
    out: &mut impl Write,
    name: &str,
    help: &str,
    kind: &str,
    value: String,
) -> std::io::Result<()> {
    writeln!(
        out,
        "# HELP aupwatch_{name} {help}\n# TYPE aupwatch_{name} {kind}\naupwatch_{name} {value}"
    )
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Metrics in the Prometheus text exposition format, for node_exporter's textfile collector.
/// Every value is a number read from a typed field, so the text never holds `null` (which
/// makes node_exporter drop the whole file); what the agent does not know yet (no scan
/// yet, a sink that is off) is left out, not printed empty.
pub fn prometheus(doc: &Status, out: &mut impl Write) -> std::io::Result<()> {
    let a = &doc.agent;
    let mut metric = |name: &str, help: &str, kind: &str, value: String| {
        writeln!(
            out,
            "# HELP aupwatch_{name} {help}\n# TYPE aupwatch_{name} {kind}\naupwatch_{name} {value}"
        )
    };
    metric(
        "up",
        "1 when the agent answered and its last scan, reload and reporting are healthy.",
        "gauge",
        u8::from(a.health == Health::Ok).to_string(),
    )?;
    metric(
        "uptime_seconds",
        "Seconds since the agent started.",
        "gauge",
        a.uptime_secs.to_string(),
    )?;
    metric(
        "scans_total",
        "Scans since the agent started.",
        "counter",
        doc.scans.to_string(),
    )?;
    metric(
        "cpu_seconds_total",
        "CPU time the agent has used.",
        "counter",
        format!("{:.3}", a.cpu_ms / 1000.0),
    )?;
    metric(
        "max_rss_bytes",
        "Peak resident memory of the agent.",
        "gauge",
        (a.max_rss_kib.saturating_mul(1024)).to_string(),
    )?;
    metric(
        "signatures_loaded",
        "Signatures in the running set.",
        "gauge",
        doc.signatures.count.to_string(),
    )?;
    if let Some(ls) = &doc.last_scan {
        metric(
            "last_scan_timestamp_seconds",
            "When the last scan started.",
            "gauge",
            format!("{:.3}", ls.at_unix_ms as f64 / 1000.0),
        )?;
        metric(
            "last_scan_duration_seconds",
            "Wall time of the last scan.",
            "gauge",
            format!("{:.6}", ls.duration_ms / 1000.0),
        )?;
        metric(
            "last_scan_processes",
            "Processes seen by the last scan.",
            "gauge",
            ls.processes.to_string(),
        )?;
        metric(
            "last_scan_sockets",
            "Sockets seen by the last scan.",
            "gauge",
            ls.sockets.to_string(),
        )?;
    }
    let mut verdicts: BTreeMap<(String, Severity, bool), u64> = BTreeMap::new();
    let mut matches: BTreeMap<(String, String, bool), u64> = BTreeMap::new();
    for t in &doc.findings {
        let f = &t.finding;
        let excepted = t.excepted.is_some();
        *verdicts
            .entry((f.category.to_string(), f.severity, excepted))
            .or_default() += 1;
        for sig in f.signatures() {
            *matches
                .entry((f.category.to_string(), label(sig), excepted))
                .or_default() += 1;
        }
    }
    writeln!(out, "# HELP aupwatch_findings Active findings (one per offender and category) by category and severity.\n# TYPE aupwatch_findings gauge")?;
    for ((cat, sev, excepted), n) in verdicts {
        writeln!(
            out,
            "aupwatch_findings{{category=\"{cat}\",severity=\"{sev}\",excepted=\"{excepted}\"}} {n}"
        )?;
    }
    writeln!(out, "# HELP aupwatch_finding_signatures Active findings each signature matches.\n# TYPE aupwatch_finding_signatures gauge")?;
    for ((cat, sig, excepted), n) in matches {
        writeln!(
            out,
            "aupwatch_finding_signatures{{category=\"{cat}\",signature=\"{sig}\",excepted=\"{excepted}\"}} {n}"
        )?;
    }
    let sinks = [
        ("syslog", &doc.reporting.syslog),
        ("event_log", &doc.reporting.event_log),
    ];
    writeln!(out, "# HELP aupwatch_report_errors_total Failed deliveries per sink.\n# TYPE aupwatch_report_errors_total counter")?;
    for (name, sink) in sinks {
        if let Some(s) = sink {
            writeln!(
                out,
                "aupwatch_report_errors_total{{sink=\"{name}\"}} {}",
                s.errors
            )?;
        }
    }
    writeln!(out, "# HELP aupwatch_report_sent_total Events delivered per sink.\n# TYPE aupwatch_report_sent_total counter")?;
    for (name, sink) in sinks {
        if let Some(s) = sink {
            writeln!(
                out,
                "aupwatch_report_sent_total{{sink=\"{name}\"}} {}",
                s.sent
            )?;
        }
    }
    if let Some(c) = &doc.reporting.collector {
        one(
            out,
            "collector_enrolled",
            "1 when the agent holds a node key for the collector.",
            "gauge",
            u8::from(c.enrolled).to_string(),
        )?;
        one(
            out,
            "collector_spool_reports",
            "Reports in the spool, not yet acknowledged by the collector.",
            "gauge",
            c.spool_reports.to_string(),
        )?;
        one(
            out,
            "collector_spool_bytes",
            "Bytes of the reports in the spool.",
            "gauge",
            c.spool_bytes.to_string(),
        )?;
        one(
            out,
            "collector_spool_full",
            "1 when the spool is at a bound or its file system is full and older reports are dropped.",
            "gauge",
            u8::from(c.spool_full).to_string(),
        )?;
        one(
            out,
            "collector_delivered_total",
            "Reports the collector acknowledged since the agent started.",
            "counter",
            c.delivered.to_string(),
        )?;
        if let Some(t) = c.last_delivery_unix_ms {
            one(
                out,
                "collector_last_delivery_timestamp_seconds",
                "When the collector last acknowledged a report.",
                "gauge",
                format!("{:.3}", t as f64 / 1000.0),
            )?;
        }
        one(
            out,
            "collector_error",
            "1 when the last delivery attempt failed.",
            "gauge",
            u8::from(c.last_error.is_some()).to_string(),
        )?;
        one(
            out,
            "collector_quarantined_total",
            "Reports the collector refused as malformed, kept aside and never resent.",
            "counter",
            c.quarantined.to_string(),
        )?;
        writeln!(out, "# HELP aupwatch_collector_dropped_total Reports dropped from the spool (bounds, full disk) by kind.\n# TYPE aupwatch_collector_dropped_total counter")?;
        let d = &c.dropped;
        for (kind, n) in [
            ("heartbeat", d.heartbeats),
            ("ongoing", d.ongoing),
            ("transitions", d.transitions),
        ] {
            writeln!(
                out,
                "aupwatch_collector_dropped_total{{kind=\"{kind}\"}} {n}"
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aupwatch_proto::status::{Agent, HistorySize, Reporting, Scan, SignatureSet};
    use aupwatch_proto::{Category, Finding, LifecycleState, Match, Process};

    fn status() -> Status {
        Status {
            schema_version: aupwatch_proto::SCHEMA_VERSION,
            agent: Agent {
                version: "0.1.0".into(),
                pid: 1,
                host: "h".into(),
                health: Health::Starting,
                started_at_unix_ms: 0,
                uptime_secs: 0,
                config: None,
                interval_secs: 15,
                cpu_ms: 0.0,
                max_rss_kib: 0,
                history: HistorySize {
                    subjects: 0,
                    entries: 0,
                },
            },
            last_scan: None,
            scans: 0,
            last_reload: None,
            signatures: SignatureSet {
                count: 0,
                version: String::new(),
                shipped: "bundled".into(),
                local: None,
                overridden: vec![],
            },
            findings: vec![],
            recently_resolved: vec![],
            findings_omitted: 0,
            reporting: Reporting {
                syslog: None,
                event_log: None,
                collector: None,
            },
        }
    }

    /// Thousands of findings of 4 KiB each: the agent's document keeps the oldest that fit
    /// within 4 MiB and counts the rest.
    #[test]
    fn a_bounded_document_counts_the_findings_it_leaves_out() {
        let mut doc = status();
        let mut t = tracked(&["proxy.a"], false);
        t.finding.matches[0].description = "d".repeat(4096);
        doc.findings = vec![t; 2000];
        doc.recently_resolved = doc.findings[..10].to_vec();
        aupwatch::report::status::bound(&mut doc);
        let len = aupwatch::report::json_len(&doc);
        assert!(len <= aupwatch_proto::bounds::MAX_STATUS_BYTES, "{len}");
        assert!(doc.recently_resolved.is_empty(), "resolved ones go first");
        assert_eq!(doc.findings.len() as u64 + doc.findings_omitted, 2000);
        assert!(doc.findings.len() > 500, "{}", doc.findings.len());
        // What the client reads back is the same document.
        let text = aupwatch::report::to_json_vec(&doc).expect("JSON");
        let back: Status = serde_json::from_slice(&text).expect("a status document");
        assert_eq!(back.findings_omitted, doc.findings_omitted);
    }

    fn tracked(sigs: &[&str], excepted: bool) -> Tracked {
        Tracked {
            id: "0011".into(),
            state: LifecycleState::New,
            first_seen_unix_ms: 0,
            last_seen_unix_ms: 0,
            scans: 1,
            excepted: excepted.then(|| aupwatch_proto::Exception {
                reason: "r".into(),
                ticket: None,
                expires: None,
                source: "agent.toml:1".into(),
            }),
            finding: Finding {
                category: Category::Proxy,
                severity: Severity::High,
                subject: Subject::Process(Process {
                    pid: 7,
                    ppid: 1,
                    start_ticks: 3,
                    uid: 0,
                    user: None,
                    comm: "x".into(),
                    exe: None,
                    exe_deleted: false,
                    cmdline: vec![],
                    netns: 1,
                    container: None,
                    cmdline_truncated: None,
                }),
                matches: sigs
                    .iter()
                    .map(|s| Match {
                        signature: (*s).into(),
                        severity: Severity::High,
                        description: "d".into(),
                        aup: "a".into(),
                        related_pids: vec![],
                        sockets: vec![],
                        evidence: vec![],
                        probe: None,
                    })
                    .collect(),
                raised: None,
            },
        }
    }

    fn render(doc: &Status) -> String {
        let mut out = Vec::new();
        prometheus(doc, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    /// Every sample line is `name{labels} number`: node_exporter drops a file with a
    /// `null` (or any other non-number) in it.
    fn assert_all_numbers(text: &str) {
        assert!(!text.contains("null"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(
                value.parse::<f64>().is_ok_and(f64::is_finite),
                "not a number in {line:?}\n{text}"
            );
        }
    }

    #[test]
    fn prometheus_never_prints_null_before_the_first_scan_or_without_sinks() {
        let text = render(&status());
        assert_all_numbers(&text);
        assert!(text.contains("aupwatch_up 0\n"), "{text}");
        assert!(!text.contains("last_scan"), "no scan yet: {text}");
    }

    #[test]
    fn prometheus_counts_verdicts_and_signatures() {
        let mut doc = status();
        doc.agent.health = Health::Ok;
        doc.scans = 3;
        doc.last_scan = Some(Scan {
            at_unix_ms: 1_700_000_000_000,
            duration_ms: 12.5,
            cpu_ms: 3.0,
            processes: 100,
            sockets: 20,
            namespaces: 1,
            gaps: 0,
            findings: 2,
            probe_candidates: 0,
        });
        doc.reporting.syslog = Some(Sink {
            target: "/dev/log".into(),
            sent: 4,
            errors: 1,
            dropped: 1,
            last_error: Some("down".into()),
        });
        doc.findings = vec![
            tracked(&["proxy.a", "proxy.b\"x"], false),
            tracked(&["proxy.a"], true),
        ];
        let text = render(&doc);
        assert_all_numbers(&text);
        for want in [
            "aupwatch_up 1",
            "aupwatch_scans_total 3",
            "aupwatch_last_scan_processes 100",
            "aupwatch_findings{category=\"proxy\",severity=\"high\",excepted=\"false\"} 1",
            "aupwatch_findings{category=\"proxy\",severity=\"high\",excepted=\"true\"} 1",
            "aupwatch_finding_signatures{category=\"proxy\",signature=\"proxy.a\",excepted=\"false\"} 1",
            "aupwatch_finding_signatures{category=\"proxy\",signature=\"proxy.b\\\"x\",excepted=\"false\"} 1",
            "aupwatch_report_errors_total{sink=\"syslog\"} 1",
            "aupwatch_report_sent_total{sink=\"syslog\"} 4",
        ] {
            assert!(text.lines().any(|l| l == want), "no {want:?} in\n{text}");
        }
        assert!(!text.contains("event_log"), "{text}");
        assert_eq!(unexcepted(&doc), 1);
    }

    #[test]
    fn stalled_when_the_last_scan_is_older_than_two_intervals() {
        let mut doc = status();
        doc.agent.started_at_unix_ms = 100_000;
        doc.agent.interval_secs = 15;
        // no scan yet: measured from the start
        assert_eq!(stalled(&doc, 100_000 + 30_000), None);
        assert_eq!(stalled(&doc, 100_000 + 30_001), Some(30_001));
        doc.last_scan = Some(Scan {
            at_unix_ms: 200_000,
            duration_ms: 500.0,
            cpu_ms: 0.0,
            processes: 0,
            sockets: 0,
            namespaces: 0,
            gaps: 0,
            findings: 0,
            probe_candidates: 0,
        });
        doc.agent.health = Health::Ok;
        assert_eq!(
            stalled(&doc, 200_000 + 30_500),
            None,
            "two intervals + the scan"
        );
        assert_eq!(
            stalled(&doc, 150_000),
            None,
            "a clock that went back is not stalled"
        );
        assert_eq!(exit_code(&doc), 0);
        doc.findings = vec![tracked(&["proxy.a"], false)];
        assert_eq!(exit_code(&doc), 1);
        assert_eq!(judge_stall(&mut doc, 200_000 + 30_000), None);
        assert_eq!(doc.agent.health, Health::Ok);
        assert_eq!(judge_stall(&mut doc, 200_000 + 45_000), Some(45_000));
        assert_eq!(doc.agent.health, Health::Stalled);
        assert_eq!(exit_code(&doc), 2, "stalled wins over findings");
    }
}
