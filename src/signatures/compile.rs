//! TOML text → compiled signatures, collecting every error with its line.

mod raw;
mod values;

use super::model::{
    Category, ConnFilter, Match, PeerCount, PortSet, Predicate, ProbeKind, Severity, Signature,
    SocketFilter, Subject,
};
use super::LoadError;
use raw::{RawEmpty, RawMatch, RawSignature};
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;
pub(crate) use values::parse_duration;

/// Limits that make a value impossible rather than merely unusual.
const MAX_CPU_PERCENT: f64 = 6400.0;
const MAX_CPU_WINDOW_SECS: u64 = 24 * 3600;
const MAX_EXE_STRING: usize = 128;
const POLICIES: [&str; 6] = ["other", "batch", "idle", "fifo", "rr", "deadline"];
/// What the kernel shows in `/sys/module/msr/parameters/allow_writes`.
const MSR_ALLOW_WRITES: [&str; 3] = ["on", "off", "default"];

/// How much of a value is checked at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Every regex and glob list compiled once, so that every error a compile can give
    /// (syntax, a regex over its size limit) is reported with its file, line and id: files
    /// read at run time, and `signatures check`.
    Compile,
    /// Globs parsed, regexes and glob sets not compiled (they compile on first use): the
    /// packs built into the binary, which `signatures check` and a unit test compile in
    /// full (`bundled_packs_compile_in_full`), so that loading them does not pay for it at
    /// every start.
    Bundled,
}

/// Compiles one file, appending its signatures and its errors.
pub(super) fn file(
    name: &str,
    text: &str,
    check: Check,
    out: &mut Vec<Signature>,
    errors: &mut Vec<LoadError>,
) {
    let lines = LineIndex::new(text);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            errors.push(LoadError {
                file: name.to_string(),
                line: e.span().map(|s| lines.line(s.start)),
                id: None,
                message: format!("TOML syntax: {}", e.message().trim()),
            });
        }
        return;
    }
    let doc = doc.into_inner();
    for (key, value) in doc.iter() {
        if key.get_ref() != "signature" {
            errors.push(LoadError {
                file: name.to_string(),
                line: Some(lines.line(key.span().start)),
                id: None,
                message: format!(
                    "unknown top-level key `{}`: a signature file holds only [[signature]] tables",
                    key.get_ref()
                ),
            });
            continue;
        }
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            _ => {
                errors.push(LoadError {
                    file: name.to_string(),
                    line: Some(lines.line(value.span().start)),
                    id: None,
                    message: "`signature` must be an array of tables: write [[signature]]".into(),
                });
                continue;
            }
        };
        for item in items.iter() {
            let mut ctx = Ctx {
                file: name,
                check,
                lines: &lines,
                id: item
                    .get_ref()
                    .get("id")
                    .and_then(|v| v.get_ref().as_str())
                    .map(str::to_string),
                errors,
            };
            let start = item.span().start;
            if let Some(keys) = crowded_match(item.get_ref()) {
                let at = item
                    .get_ref()
                    .get("match")
                    .map_or(start, |m| m.span().start);
                ctx.error(
                    at,
                    format!(
                        "the match has keys {keys}, but a match expression has exactly one; keys written after a [signature.match] header belong to the match table, so put `id`, `subject` and the like above it"
                    ),
                );
                continue;
            }
            match RawSignature::deserialize(ValueDeserializer::from(item.clone())) {
                Ok(raw) => {
                    if let Some(sig) = ctx.signature(raw, start) {
                        out.push(sig);
                    }
                }
                Err(e) => {
                    let at = e.span().map(|s| s.start).unwrap_or(start);
                    ctx.error(at, explain_serde(e.message()));
                }
            }
        }
    }
}

/// The keys of a top-level match table that has more than one, as "`a`, `b`".
fn crowded_match(sig: &DeValue) -> Option<String> {
    let m = sig.get("match")?;
    let table = m.get_ref().as_table()?;
    if table.len() <= 1 {
        return None;
    }
    let keys: Vec<String> = table.keys().map(|k| format!("`{}`", k.get_ref())).collect();
    Some(keys.join(", "))
}

/// Rewords serde's messages where they would puzzle a signature author.
fn explain_serde(message: &str) -> String {
    let message = message.trim();
    if message.contains("wanted exactly 1 element") {
        return "a match expression is a table with exactly one key (a predicate, or all / any / not); combine several with `all = [ … ]`".into();
    }
    message.to_string()
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

struct Ctx<'a> {
    file: &'a str,
    check: Check,
    lines: &'a LineIndex,
    id: Option<String>,
    errors: &'a mut Vec<LoadError>,
}

impl Ctx<'_> {
    fn error(&mut self, offset: usize, message: String) {
        self.errors.push(LoadError {
            file: self.file.to_string(),
            line: Some(self.lines.line(offset)),
            id: self.id.clone(),
            message,
        });
    }

    fn signature(&mut self, raw: RawSignature, start: usize) -> Option<Signature> {
        let before = self.errors.len();
        let id = raw.id.get_ref().clone();
        let category = Category::parse(raw.category.get_ref());
        if category.is_none() {
            let known: Vec<_> = Category::ALL.iter().map(|c| c.as_str()).collect();
            self.error(
                raw.category.span().start,
                format!(
                    "unknown category `{}` (one of: {})",
                    raw.category.get_ref(),
                    known.join(", ")
                ),
            );
        }
        match id.split_once('.') {
            Some((prefix, rest)) if valid_name(rest) => {
                if category.is_some_and(|c| c.as_str() != prefix) {
                    self.error(
                        raw.id.span().start,
                        format!(
                            "id must start with its category: `{}.{rest}`",
                            raw.category.get_ref()
                        ),
                    );
                }
            }
            _ => self.error(
                raw.id.span().start,
                format!("id `{id}` must be `<category>.<name>`, name of a-z, 0-9, `_` and `-`"),
            ),
        }
        let severity = Severity::parse(raw.severity.get_ref());
        if severity.is_none() {
            self.error(
                raw.severity.span().start,
                format!(
                    "unknown severity `{}` (one of: info, low, medium, high, critical)",
                    raw.severity.get_ref()
                ),
            );
        }
        for (field, value) in [("description", &raw.description), ("aup", &raw.aup)] {
            if value.get_ref().trim().is_empty() {
                self.error(value.span().start, format!("`{field}` must not be empty"));
            }
        }
        let subject = match raw
            .subject
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("process", _)) => Subject::Process,
            Some(("interface", _)) => Subject::Interface,
            Some(("host", _)) => Subject::Host,
            Some((other, span)) => {
                self.error(
                    span.start,
                    format!("unknown subject `{other}` (process, interface or host)"),
                );
                Subject::Process
            }
        };
        let probe = match raw.probe.as_ref() {
            None => None,
            Some(p) => match ProbeKind::parse(p.get_ref()) {
                Some(_) if subject != Subject::Process => {
                    self.error(
                        p.span().start,
                        "`probe` checks a process's listening sockets: it needs `subject = \"process\"`".into(),
                    );
                    None
                }
                Some(kind) => Some(kind),
                None => {
                    let known: Vec<_> = ProbeKind::ALL.iter().map(|k| k.as_str()).collect();
                    self.error(
                        p.span().start,
                        format!(
                            "unknown probe `{}` (one of: {})",
                            p.get_ref(),
                            known.join(", ")
                        ),
                    );
                    None
                }
            },
        };
        let matcher = self.matcher(&raw.matcher, subject);
        if let Some(m) = &matcher {
            if !positive(m) {
                self.error(
                    raw.matcher.span().start,
                    "the match must contain a predicate that has to hold: one made only of `not` matches nearly everything".into(),
                );
            }
        }
        if self.errors.len() > before {
            return None;
        }
        Some(Signature {
            id,
            category: category?,
            severity: severity?,
            description: raw.description.into_inner(),
            aup: raw.aup.into_inner(),
            references: raw.references,
            subject,
            matcher: matcher?,
            probe,
            source: format!("{}:{}", self.file, self.lines.line(start)),
        })
    }

    fn matcher(&mut self, raw: &Spanned<RawMatch>, subject: Subject) -> Option<Match> {
        let at = raw.span().start;
        let pred = match raw.get_ref() {
            RawMatch::All(items) | RawMatch::Any(items) => {
                if items.is_empty() {
                    self.error(at, "`all` / `any` needs at least one expression".into());
                    return None;
                }
                let compiled: Vec<Option<Match>> =
                    items.iter().map(|m| self.matcher(m, subject)).collect();
                let compiled: Option<Vec<Match>> = compiled.into_iter().collect();
                return Some(match raw.get_ref() {
                    RawMatch::All(_) => Match::All(compiled?),
                    _ => Match::Any(compiled?),
                });
            }
            RawMatch::Not(inner) => {
                return Some(Match::Not(Box::new(self.matcher(inner, subject)?)))
            }
            RawMatch::Name(pats) => Predicate::Name {
                // Matched through the set's one combined glob set; this list's own set is
                // built only should that fail (SignatureSet::new).
                globs: self.globs(pats, true, false, false, at)?,
                index: 0,
            },
            RawMatch::Exe(pats) => Predicate::Exe(self.globs(pats, false, true, true, at)?),
            RawMatch::Interface(pats) => {
                Predicate::Interface(self.globs(pats, true, false, true, at)?)
            }
            RawMatch::Traffic(t) => {
                let pps = *t.min_pps.get_ref();
                if !(pps > 0.0 && pps.is_finite()) {
                    self.error(
                        t.min_pps.span().start,
                        format!("traffic.min_pps {pps} is impossible: must be above 0"),
                    );
                    return None;
                }
                let size = *t.max_avg_packet_bytes.get_ref();
                if !(size > 0.0 && size <= 65536.0) {
                    self.error(
                        t.max_avg_packet_bytes.span().start,
                        format!("traffic.max_avg_packet_bytes {size} is impossible: must be above 0 and at most 65536"),
                    );
                    return None;
                }
                let for_secs = self.window("traffic.for", t.duration.as_ref())?;
                Predicate::Traffic {
                    min_pps: pps,
                    max_avg_packet_bytes: size,
                    for_secs,
                }
            }
            RawMatch::Preload(RawEmpty {}) => Predicate::Preload,
            RawMatch::ProcMounts(RawEmpty {}) => Predicate::ProcMounts,
            RawMatch::HiddenProcesses(m) => Predicate::HiddenProcesses {
                min: self.count(&m.min)?,
            },
            RawMatch::UnlistedTasks(m) => Predicate::UnlistedTasks {
                min: self.count(&m.min)?,
            },
            RawMatch::Hugepages(h) => match u64::try_from(*h.min_mib.get_ref()) {
                Ok(min_mib) if min_mib >= 1 => Predicate::HugePages { min_mib },
                _ => {
                    self.error(
                        h.min_mib.span().start,
                        format!(
                            "hugepages.min_mib {} is impossible: must be 1 or more",
                            h.min_mib.get_ref()
                        ),
                    );
                    return None;
                }
            },
            RawMatch::Msr(m) => {
                let mut ok = true;
                for v in &m.allow_writes {
                    if !MSR_ALLOW_WRITES.contains(&v.get_ref().as_str()) {
                        self.error(
                            v.span().start,
                            format!(
                                "unknown msr.allow_writes `{}` (the module parameter's values: on, off, default)",
                                v.get_ref()
                            ),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                Predicate::Msr {
                    allow_writes: m.allow_writes.iter().map(|v| v.get_ref().clone()).collect(),
                }
            }
            RawMatch::Cmdline(re) => Predicate::Cmdline {
                re: self.regex(re)?,
                index: 0,
            },
            RawMatch::Sha256(hashes) => Predicate::Sha256(self.hashes(hashes, at)?),
            RawMatch::User(users) => Predicate::User(self.strings(users, "user", at)?),
            RawMatch::Listen(l) => Predicate::Listen(SocketFilter {
                ports: self.ports(&l.port)?,
                protocol: self.protocol(l.protocol.as_ref())?,
                bind: self.bind(l.bind.as_ref())?,
            }),
            RawMatch::Remote(r) if r.duration.is_some() && r.min_age.is_some() => {
                self.error(
                    at,
                    "`remote` takes `for` (connections seen over a window) or `min_age` (connections open that long now), not both".into(),
                );
                return None;
            }
            RawMatch::Remote(r) => Predicate::Remote {
                conn: {
                    // Checked in this order: the first error stops the predicate.
                    let remote_ports = self.ports(&r.port)?;
                    let protocol = self.protocol(r.protocol.as_ref())?;
                    ConnFilter {
                        protocol,
                        local_ports: PortSet::default(),
                        remote_ports,
                        states: self.states(&r.state)?,
                    }
                },
                min: match &r.min {
                    Some(m) => self.count(m)?,
                    None => 1,
                },
                for_secs: self.window("remote.for", r.duration.as_ref())?,
                min_age_secs: self.window("remote.min_age", r.min_age.as_ref())?,
            },
            RawMatch::Peers(p) => Predicate::Peers {
                min: self.count(&p.min)?,
                count: match p.count.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
                    None | Some(("addresses", _)) => PeerCount::Addresses,
                    Some(("ports", _)) => PeerCount::Ports,
                    Some((other, span)) => {
                        self.error(
                            span.start,
                            format!("unknown peers.count `{other}` (addresses or ports)"),
                        );
                        return None;
                    }
                },
                conn: {
                    let local_ports = self.ports(&p.local_port)?;
                    let remote_ports = self.ports(&p.remote_port)?;
                    ConnFilter {
                        protocol: self.protocol(p.protocol.as_ref())?,
                        local_ports,
                        remote_ports,
                        states: self.states(&p.state)?,
                    }
                },
                for_secs: self.window("peers.for", p.duration.as_ref())?,
            },
            RawMatch::Policy(names) => {
                self.non_empty(names, "policy", at)?;
                let mut ok = true;
                for n in names {
                    if !POLICIES.contains(&n.get_ref().as_str()) {
                        self.error(
                            n.span().start,
                            format!(
                                "unknown scheduling policy `{}` ({})",
                                n.get_ref(),
                                POLICIES.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                Predicate::Policy(names.iter().map(|n| n.get_ref().clone()).collect())
            }
            RawMatch::Nice(n) => {
                let v = *n.min.get_ref();
                if !(-20..=19).contains(&v) {
                    self.error(
                        n.min.span().start,
                        format!("nice.min {v} is impossible: nice values are -20 to 19"),
                    );
                    return None;
                }
                Predicate::Nice { min: v }
            }
            RawMatch::Threads(t) => Predicate::Threads {
                min: self.count(&t.min)?,
            },
            RawMatch::ExeDeleted(b) => Predicate::ExeDeleted(*b),
            RawMatch::CommMismatch(b) => Predicate::CommMismatch(*b),
            RawMatch::Multicast(RawEmpty {}) => Predicate::Multicast,
            RawMatch::MulticastGroups(m) => Predicate::MulticastGroups {
                min: self.count(&m.min)?,
            },
            RawMatch::ExeStrings(e) => {
                let strings = self.strings(&e.strings, "exe_strings.strings", at)?;
                let mut ok = true;
                for s in &e.strings {
                    let len = s.get_ref().len();
                    if !(4..=MAX_EXE_STRING).contains(&len) {
                        self.error(
                            s.span().start,
                            format!("exe_strings string `{}` must be 4 to {MAX_EXE_STRING} bytes long (shorter ones are in every binary)", s.get_ref()),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                let min = match &e.min {
                    Some(m) => self.count(m)?,
                    None => 1,
                };
                if min as usize > strings.len() {
                    self.error(
                        e.min.as_ref().map_or(at, |m| m.span().start),
                        format!(
                            "exe_strings.min {min} is more than the {} strings listed",
                            strings.len()
                        ),
                    );
                    return None;
                }
                Predicate::ExeStrings {
                    strings: strings.iter().map(|s| s.to_ascii_lowercase()).collect(),
                    min,
                }
            }
            RawMatch::Cpu(c) => {
                let pct = *c.min_percent.get_ref();
                if !(pct > 0.0 && pct <= MAX_CPU_PERCENT) {
                    self.error(
                        c.min_percent.span().start,
                        format!("cpu.min_percent {pct} is impossible: must be above 0 and at most {MAX_CPU_PERCENT} (percent of one core)"),
                    );
                    return None;
                }
                let secs = match parse_duration(c.duration.get_ref()) {
                    Some(s) if s > 0 && s <= MAX_CPU_WINDOW_SECS => s,
                    Some(_) => {
                        self.error(
                            c.duration.span().start,
                            "cpu.for must be above 0 and at most 24h".into(),
                        );
                        return None;
                    }
                    None => {
                        self.error(
                            c.duration.span().start,
                            format!("cpu.for `{}` is not a duration like \"30s\", \"10m\", \"2h\" or \"1h30m\"", c.duration.get_ref()),
                        );
                        return None;
                    }
                };
                let max_variation = match &c.max_variation {
                    None => None,
                    Some(v) => {
                        let x = *v.get_ref();
                        if !(x > 0.0 && x <= 10.0) {
                            self.error(
                                v.span().start,
                                format!("cpu.max_variation {x} is impossible: must be above 0 and at most 10 (standard deviation over mean)"),
                            );
                            return None;
                        }
                        Some(x)
                    }
                };
                Predicate::Cpu {
                    min_percent: pct,
                    for_secs: secs,
                    max_variation,
                }
            }
        };
        if pred.subject() != subject {
            let allowed = match (subject, pred.subject()) {
                (_, Subject::Host) => "it is a host predicate (set subject = \"host\")",
                (Subject::Process, _) => {
                    "a process signature cannot use `interface`, `traffic` or `multicast_groups` (set subject = \"interface\")"
                }
                (Subject::Interface, _) => {
                    "an interface signature can use only `interface`, `traffic` and `multicast_groups`"
                }
                (Subject::Host, _) => "a host signature can use only `preload`, `hidden_processes`, `proc_mounts`, `unlisted_tasks`, `hugepages` and `msr`",
            };
            self.error(at, format!("`{}` does not fit: {allowed}", pred.key()));
            return None;
        }
        Some(Match::Pred(pred))
    }
}

fn valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Whether the expression contains something that must hold (not only negations).
fn positive(m: &Match) -> bool {
    match m {
        Match::Pred(_) => true,
        Match::All(v) => v.iter().any(positive),
        Match::Any(v) => v.iter().all(positive),
        Match::Not(_) => false,
    }
}
