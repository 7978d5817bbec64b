//! Printing: tables for people, JSON for machines. Every host-supplied string is escaped
//! before it reaches a terminal (names and command lines are attacker-chosen).

use anyhow::Result;
use aupwatch::detect::{Explanation, Finding};
use aupwatch::inventory::{Gap, Snapshot};
use aupwatch::probe::ProbeReport;
use aupwatch::signatures::{Severity, SignatureSet};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::Path;

#[derive(Serialize)]
pub struct ScanReport<'a> {
    aupwatch_version: &'static str,
    host: &'a str,
    taken_at_unix_ms: u64,
    sample_secs: f64,
    processes_scanned: usize,
    sockets_scanned: usize,
    namespaces_scanned: usize,
    signatures: SetInfo,
    findings: &'a [Finding],
    /// The same findings as the agent tracks them: one verdict per offender and category,
    /// each with every signature's match (`detect::verdict::roll_up`).
    verdicts: Vec<aupwatch_proto::Finding>,
    gaps: &'a [Gap],
}

#[derive(Serialize)]
struct SetInfo {
    count: usize,
    version: String,
}

impl<'a> ScanReport<'a> {
    pub fn new(
        snap: &'a Snapshot,
        set: &SignatureSet,
        findings: &'a [Finding],
        sample_secs: f64,
    ) -> ScanReport<'a> {
        let namespaces: BTreeSet<u64> = snap
            .processes
            .iter()
            .map(|p| p.netns)
            .filter(|&n| n != 0)
            .collect();
        ScanReport {
            aupwatch_version: env!("CARGO_PKG_VERSION"),
            host: &snap.hostname,
            taken_at_unix_ms: snap.taken_at_unix_ms,
            sample_secs,
            processes_scanned: snap.processes.len(),
            sockets_scanned: snap.sockets.len(),
            namespaces_scanned: namespaces.len(),
            signatures: SetInfo {
                count: set.signatures.len(),
                version: set.version().to_string(),
            },
            findings,
            verdicts: aupwatch::detect::verdict::roll_up(findings.to_vec()),
            gaps: &snap.gaps,
        }
    }
}

pub fn json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // Format and control characters as \u escapes too. An I/O error stays one (a broken pipe
    // is the end of the output, not an error).
    aupwatch::report::write_json_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// Host-supplied text, made safe for a terminal.
pub fn clean(s: &str) -> String {
    aupwatch::report::printable(s)
}

/// Lays out rows under headers, each column padded to its widest cell (the last one
/// unpadded), two spaces apart. Returns the header line, the row lines and the widths.
pub(super) fn columns<const N: usize>(
    headers: &[&str; N],
    rows: &[[String; N]],
) -> (String, Vec<String>, [usize; N]) {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; N]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out
    };
    (
        line(&headers.map(String::from)),
        rows.iter().map(line).collect(),
        widths,
    )
}

pub(super) struct Style {
    pub(super) color: bool,
}

impl Style {
    pub(super) fn stdout() -> Style {
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn severity(&self, s: Severity, width: usize) -> String {
        let text = format!("{:<width$}", s.as_str());
        if !self.color {
            return text;
        }
        let code = match s {
            Severity::Critical => "1;31",
            Severity::High => "31",
            Severity::Medium => "33",
            Severity::Low => "36",
            Severity::Info => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    pub(super) fn dim(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[2m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub fn table(r: &ScanReport) -> Result<()> {
    use aupwatch_proto::Subject;
    let style = Style::stdout();
    let mut out = std::io::stdout().lock();
    // One row per verdict (offender and category), as the agent tracks and reports it; under
    // it every signature that matched, with its own severity and what it saw.
    if !r.verdicts.is_empty() {
        let rows: Vec<[String; 6]> = r
            .verdicts
            .iter()
            .map(|v| {
                let (pid, user, what) = match &v.subject {
                    Subject::Process(p) => (
                        p.pid.to_string(),
                        clean(p.user.as_deref().unwrap_or(&p.uid.to_string())),
                        clean(
                            p.exe
                                .as_deref()
                                .map(|e| e.rsplit('/').next().unwrap_or(e))
                                .unwrap_or(&p.comm),
                        ),
                    ),
                    Subject::Interface(i) => (
                        "-".into(),
                        "-".into(),
                        format!("interface {}", clean(&i.name)),
                    ),
                    Subject::Host => ("-".into(), "-".into(), "host".into()),
                };
                let sigs: Vec<String> = v.signatures().map(clean).collect();
                [
                    v.severity.as_str().to_string(),
                    v.category.to_string(),
                    pid,
                    user,
                    what,
                    sigs.join(", "),
                ]
            })
            .collect();
        let headers = [
            "SEVERITY",
            "CATEGORY",
            "PID",
            "USER",
            "PROCESS",
            "SIGNATURES",
        ];
        let (head, lines, widths) = columns(&headers, &rows);
        writeln!(out, "{head}")?;
        for (v, line) in r.verdicts.iter().zip(&lines) {
            // The severity cell, coloured on a terminal, then the rest of the line as laid out.
            writeln!(
                out,
                "{}{}",
                style.severity(v.severity, widths[0]),
                &line[widths[0]..]
            )?;
            if let Some(why) = &v.raised {
                writeln!(out, "    {} {}", style.dim("raised:"), clean(why))?;
            }
            let several = v.matches.len() > 1;
            for m in &v.matches {
                let indent = if several {
                    writeln!(
                        out,
                        "    {} {}",
                        style.severity(m.severity, 8),
                        clean(&m.signature)
                    )?;
                    "        "
                } else {
                    "    "
                };
                for e in &m.evidence {
                    writeln!(
                        out,
                        "{indent}{} {}",
                        style.dim(&format!("{}:", e.predicate)),
                        clean(&e.value)
                    )?;
                }
                if let Some(p) = &m.probe {
                    writeln!(out, "{indent}{} {}", style.dim("probe:"), probe_line(p))?;
                }
            }
            if let Subject::Process(p) = &v.subject {
                let mut ctx = Vec::new();
                if p.exe_deleted {
                    ctx.push("executable deleted".to_string());
                }
                if let Some(c) = &p.container {
                    ctx.push(format!("container {}", &c[..12.min(c.len())]));
                }
                ctx.push(format!("netns {}", p.netns));
                let mut related: Vec<i32> = v
                    .matches
                    .iter()
                    .flat_map(|m| m.related_pids.iter().copied())
                    .collect();
                related.sort_unstable();
                related.dedup();
                if !related.is_empty() {
                    let pids: Vec<String> = related.iter().map(|p| p.to_string()).collect();
                    ctx.push(format!("also pids {}", pids.join(",")));
                }
                writeln!(out, "    {} {}", style.dim("where:"), ctx.join("; "))?;
            }
        }
        writeln!(out)?;
    }
    let mut counts = Vec::new();
    for sev in Severity::ALL.iter().rev() {
        let n = r.verdicts.iter().filter(|v| v.severity == *sev).count();
        if n > 0 {
            counts.push(format!("{n} {sev}"));
        }
    }
    let summary = if r.verdicts.is_empty() {
        "no findings".to_string()
    } else {
        format!(
            "{} finding(s) ({} signature match(es)): {}",
            r.verdicts.len(),
            r.findings.len(),
            counts.join(", ")
        )
    };
    writeln!(
        out,
        "{summary} — {} processes, {} sockets, {} network namespaces on {}; {} signatures (version {})",
        r.processes_scanned,
        r.sockets_scanned,
        r.namespaces_scanned,
        clean(r.host),
        r.signatures.count,
        r.signatures.version
    )?;
    drop(out);
    if !r.gaps.is_empty() {
        use aupwatch::report::stderr_line;
        stderr_line(&format!(
            "aupwatch: {} part(s) of the host could not be read:",
            r.gaps.len()
        ));
        for g in r.gaps.iter().take(10) {
            stderr_line(&format!("  {}: {}", clean(&g.what), clean(&g.error)));
        }
        if r.gaps.len() > 10 {
            stderr_line(&format!("  … and {} more (see --json)", r.gaps.len() - 10));
        }
    }
    Ok(())
}

/// One probe result for a terminal: verdict, protocol and address, evidence (escaped).
fn probe_line(p: &ProbeReport) -> String {
    let protocol = p.protocol.map_or(String::new(), |x| format!(" {x}"));
    format!(
        "{}{protocol} at {} — {}",
        p.verdict,
        p.address,
        clean(&p.evidence)
    )
}

/// What `scan --explain PID` shows, and of which scan.
pub struct Explained<'a> {
    pub snap: &'a Snapshot,
    /// The procfs root the scan read (its gaps are named by paths under it).
    pub proc_root: &'a Path,
    pub pid: i32,
    /// `--matched`: only the signatures with at least one matching predicate.
    pub only_matched: bool,
}

impl Explained<'_> {
    /// The gaps of this process: the parts of `/proc/PID` the scan could not read.
    fn gaps(&self) -> Vec<&Gap> {
        let dir = self.proc_root.join(self.pid.to_string());
        self.snap
            .gaps
            .iter()
            .filter(|g| Path::new(&g.what).starts_with(&dir))
            .collect()
    }
}

pub fn explain(e: &Explained, explanations: &[Explanation], findings: &[Finding]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let gaps = e.gaps();
    let unreadable = |part: &str| gaps.iter().any(|g| g.what.ends_with(part));
    if let Some(p) = e.snap.processes.iter().find(|p| p.pid == e.pid) {
        let exe = match &p.exe {
            Some(exe) => format!(
                "{}{}",
                clean(exe),
                if p.exe_deleted { " (deleted)" } else { "" }
            ),
            None if unreadable("/exe") => "unreadable".to_string(),
            None => "-".to_string(),
        };
        let netns = if p.netns == 0 && unreadable("/ns/net") {
            "unreadable".to_string()
        } else {
            p.netns.to_string()
        };
        writeln!(
            out,
            "pid {} ({}), user {}, exe {exe}, netns {netns}",
            e.pid,
            clean(&p.comm),
            clean(p.user.as_deref().unwrap_or(&p.uid.to_string())),
        )?;
        writeln!(out, "cmdline: {}", clean(&p.cmdline_joined()))?;
        if p.kernel_thread {
            writeln!(
                out,
                "a kernel thread: signatures never match kernel threads"
            )?;
        }
    }
    if !gaps.is_empty() {
        writeln!(
            out,
            "{} part(s) of this process could not be read (predicates on them see nothing):",
            gaps.len()
        )?;
        for g in &gaps {
            writeln!(out, "  gap: {}: {}", clean(&g.what), clean(&g.error))?;
        }
    }
    let matched = explanations.iter().filter(|x| x.matched).count();
    let shown: Vec<&Explanation> = explanations
        .iter()
        .filter(|x| !e.only_matched || x.trials.iter().any(|t| t.matched))
        .collect();
    if e.only_matched {
        writeln!(
            out,
            "{matched} of {} process signatures match; {} with at least one matching predicate shown\n",
            explanations.len(),
            shown.len()
        )?;
    } else {
        writeln!(
            out,
            "{matched} of {} process signatures match\n",
            explanations.len()
        )?;
    }
    let mut sorted = shown;
    sorted.sort_by_key(|x| (!x.matched, x.signature.clone()));
    for x in sorted {
        writeln!(
            out,
            "{} {} [{} {}]",
            if x.matched { "MATCH" } else { "  -  " },
            clean(&x.signature),
            x.category,
            x.severity
        )?;
        for t in &x.trials {
            writeln!(
                out,
                "        {} {}: {}",
                if t.matched { "yes" } else { "no " },
                t.predicate,
                clean(&t.seen)
            )?;
        }
        let probed = findings
            .iter()
            .filter(|f| f.signature == x.signature)
            .filter_map(|f| Some((f, f.probe.as_ref()?)));
        for (f, p) in probed {
            writeln!(
                out,
                "        probe: {} (severity {} → {})",
                probe_line(p),
                x.severity,
                f.severity
            )?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ListedSignature<'a> {
    id: &'a str,
    category: String,
    severity: Severity,
    description: &'a str,
    aup: &'a str,
    source: &'a str,
    references: &'a [String],
    /// The active probe the signature asks for (`"proxy"`), or null.
    probe: Option<aupwatch::signatures::ProbeKind>,
}

pub fn list(set: &SignatureSet, as_json: bool) -> Result<()> {
    if as_json {
        let items: Vec<ListedSignature> = set
            .signatures
            .iter()
            .map(|s| ListedSignature {
                id: &s.id,
                category: s.category.to_string(),
                severity: s.severity,
                description: &s.description,
                aup: &s.aup,
                source: &s.source,
                references: &s.references,
                probe: s.probe,
            })
            .collect();
        return json(&serde_json::json!({ "version": set.version(), "signatures": items }));
    }
    let mut out = std::io::stdout().lock();
    let w_id = set
        .signatures
        .iter()
        .map(|s| clean(&s.id).chars().count())
        .max()
        .unwrap_or(2)
        .max(2);
    let w_cat = set
        .signatures
        .iter()
        .map(|s| s.category.as_str().len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(
        out,
        "{:<w_id$}  {:<w_cat$}  {:<8}  DESCRIPTION",
        "ID", "CATEGORY", "SEVERITY"
    )?;
    for s in &set.signatures {
        writeln!(
            out,
            "{:<w_id$}  {:<w_cat$}  {:<8}  {}",
            clean(&s.id),
            s.category.as_str(),
            s.severity.as_str(),
            clean(&s.description)
        )?;
    }
    writeln!(
        out,
        "\n{} signatures, version {}",
        set.signatures.len(),
        set.version()
    )?;
    Ok(())
}

pub(super) fn age(ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(ms) / 1000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}
