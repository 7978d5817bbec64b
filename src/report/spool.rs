//! The durable report spool: every report for the collector is written and fsynced here
//! before it is sent, and removed only when the collector acknowledged it. It survives
//! restarts and crashes; a report torn by a crash mid-write is recognised by its checksum and
//! never sent. Bounded in bytes, count and age: when over a bound, heartbeat-only reports go
//! first, then reports of `ongoing` repeats, and lifecycle transitions only when nothing
//! else is left; the newest report (the latest open-findings set) is always kept. Every drop
//! is counted, and the counts are persisted and ride in the next heartbeat.
//!
//! Layout under the spool directory (mode 0700):
//! - `<sequence>-<kind>.rpt`: one report; `AUPWSPOOL1\n`, the SHA-256 of the payload in hex
//!   and `\n`, then the payload (the report's JSON). Written to `tmp/` first, fsynced,
//!   renamed into place, and the directory fsynced.
//! - `state.json`: the next sequence number and the drop counters, replaced atomically.
//! - `quarantine/`: reports the collector refused as malformed (400), kept and never resent.
//!
//! Must never: send anything, decide what a report holds, lose a report silently.

use aupwatch_proto::protocol::{Dropped, Report};
use aupwatch_proto::EventKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"AUPWSPOOL1\n";
const HASH_LINE: usize = 65;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("report of {bytes} bytes exceeds the spool's max_bytes ({max})")]
    TooLarge { bytes: u64, max: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How much the spool may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Default 64 MiB.
    pub max_bytes: u64,
    /// Default 10,000 reports (about 41 hours of 15 s intervals).
    pub max_reports: u64,
    /// Reports older than this are dropped (the newest is always kept). Default 7 days.
    pub max_age_ms: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_bytes: 64 << 20,
            max_reports: 10_000,
            max_age_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// What a report holds, for the drop order: the file name carries it, so choosing what to
/// drop reads no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// No events: a heartbeat (and the open set, repeated by every later report).
    Heartbeat,
    /// Only `ongoing` events.
    Ongoing,
    /// At least one lifecycle transition (`new`, `resolved`, …).
    Transitions,
}

impl Kind {
    pub fn of(report: &Report) -> Kind {
        if report.events.is_empty() {
            Kind::Heartbeat
        } else if report.events.iter().all(|e| e.kind == EventKind::Ongoing) {
            Kind::Ongoing
        } else {
            Kind::Transitions
        }
    }

    fn letter(self) -> char {
        match self {
            Kind::Heartbeat => 'h',
            Kind::Ongoing => 'o',
            Kind::Transitions => 't',
        }
    }

    fn from_letter(c: &str) -> Option<Kind> {
        match c {
            "h" => Some(Kind::Heartbeat),
            "o" => Some(Kind::Ongoing),
            "t" => Some(Kind::Transitions),
            _ => None,
        }
    }
}

/// Persisted counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    /// The sequence number the next report gets (from 1).
    pub next_sequence: u64,
    pub dropped: Dropped,
    pub quarantined: u64,
    /// Reports found torn (a crash mid-write) and discarded unsent.
    pub torn: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    bytes: u64,
    created_unix_ms: u64,
}

/// A report read back for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub sequence: u64,
    /// The report's JSON, exactly as spooled.
    pub payload: Vec<u8>,
}

/// Depth and counters, for status and the heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub reports: u64,
    pub bytes: u64,
    pub counters: Counters,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    bounds: Bounds,
    counters: Counters,
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`: reads the counters, indexes the reports, and
    /// removes leftovers of interrupted writes in `tmp/`.
    pub fn open(dir: &Path, bounds: Bounds) -> Result<Spool, SpoolError> {
        for d in [dir.to_path_buf(), dir.join("tmp"), dir.join("quarantine")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(io(&d))?;
        }
        let tmp = dir.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io(&tmp))? {
            let entry = entry.map_err(io(&tmp))?;
            let path = entry.path();
            fs::remove_file(&path).map_err(io(&path))?;
        }
        let state_path = dir.join("state.json");
        let mut counters = match fs::read(&state_path) {
            Ok(bytes) => {
                serde_json::from_slice::<Counters>(&bytes).map_err(|e| SpoolError::State {
                    path: state_path.clone(),
                    message: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Counters::default(),
            Err(e) => return Err(io(&state_path)(e)),
        };
        let mut entries = BTreeMap::new();
        let mut bytes = 0;
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some((sequence, kind)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let meta = entry.metadata().map_err(io(&entry.path()))?;
            let created_unix_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            bytes += meta.len();
            entries.insert(
                sequence,
                Entry {
                    kind,
                    bytes: meta.len(),
                    created_unix_ms,
                },
            );
        }
        // A state file older than the reports (a crash between a report's rename and the
        // state's) must not hand out a sequence number twice.
        let after_last = entries.keys().next_back().map_or(1, |s| s + 1);
        counters.next_sequence = counters.next_sequence.max(after_last).max(1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            bounds,
            counters,
            entries,
            bytes,
        })
    }

    pub fn stats(&self) -> Stats {
        Stats {
            reports: self.entries.len() as u64,
            bytes: self.bytes,
            counters: self.counters,
        }
    }

    /// Mints the next report and writes it durably: `build` gets the sequence number and
    /// the spool's stats (this report counted in) and returns the report. Then the bounds
    /// are enforced. Returns the sequence number.
    pub fn push(
        &mut self,
        now_unix_ms: u64,
        build: impl FnOnce(u64, Stats) -> Report,
    ) -> Result<u64, SpoolError> {
        // The report's file is written before the counter moves on: a crash in between
        // leaves the file, and `open` continues after the highest file. No number is ever
        // used twice, and none is skipped.
        let sequence = self.counters.next_sequence;
        let mut stats = self.stats();
        stats.reports += 1;
        let report = build(sequence, stats);
        let kind = Kind::of(&report);
        let payload = serde_json::to_vec(&report).map_err(|e| SpoolError::State {
            path: self.dir.clone(),
            message: format!("report does not serialize: {e}"),
        })?;
        let mut file = Vec::with_capacity(MAGIC.len() + HASH_LINE + payload.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(hex(&Sha256::digest(&payload)).as_bytes());
        file.push(b'\n');
        file.extend_from_slice(&payload);
        let size = file.len() as u64;
        if size > self.bounds.max_bytes {
            return Err(SpoolError::TooLarge {
                bytes: size,
                max: self.bounds.max_bytes,
            });
        }
        let name = file_name(sequence, kind);
        // A full disk makes room the way the bounds do (older reports by the drop order)
        // and tries again; this report, the newest, is the one to keep.
        loop {
            match self.write_report(&name, &file) {
                Ok(()) => break,
                Err(e) if is_full(&e) => {
                    let _ = fs::remove_file(self.dir.join("tmp").join(&name));
                    match self.victim(None) {
                        Some(s) => self.drop_entry(s)?,
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.entries.insert(
            sequence,
            Entry {
                kind,
                bytes: size,
                created_unix_ms: now_unix_ms,
            },
        );
        self.bytes += size;
        self.counters.next_sequence = sequence + 1;
        // The report is in place: a full disk now costs older reports, not this one (and
        // `open` finds the sequence from the files should the state stay behind).
        self.write_state_making_room(Some(sequence))?;
        self.enforce(now_unix_ms)?;
        Ok(sequence)
    }

    /// Drops what exceeds the bounds, in the documented order; the newest is always kept.
    fn enforce(&mut self, now_unix_ms: u64) -> Result<(), SpoolError> {
        let newest = self.entries.keys().next_back().copied();
        let expired: Vec<u64> = self
            .entries
            .iter()
            .filter(|(s, e)| {
                Some(**s) != newest
                    && now_unix_ms.saturating_sub(e.created_unix_ms) > self.bounds.max_age_ms
            })
            .map(|(s, _)| *s)
            .collect();
        let mut changed = false;
        for s in expired {
            self.drop_entry(s)?;
            changed = true;
        }
        while self.bytes > self.bounds.max_bytes
            || self.entries.len() as u64 > self.bounds.max_reports
        {
            let Some(s) = self.victim(newest) else { break };
            self.drop_entry(s)?;
            changed = true;
        }
        if changed {
            self.write_state()?;
        }
        Ok(())
    }

    /// The next report to drop: the oldest heartbeat, else the oldest `ongoing` repeat,
    /// else the oldest transition; never `keep`.
    fn victim(&self, keep: Option<u64>) -> Option<u64> {
        [Kind::Heartbeat, Kind::Ongoing, Kind::Transitions]
            .into_iter()
            .find_map(|kind| {
                self.entries
                    .iter()
                    .find(|(s, e)| e.kind == kind && Some(**s) != keep)
                    .map(|(s, _)| *s)
            })
    }

    fn write_report(&self, name: &str, file: &[u8]) -> Result<(), SpoolError> {
        let tmp = self.dir.join("tmp").join(name);
        write_synced(&tmp, file)?;
        let path = self.dir.join(name);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)
    }

    fn drop_entry(&mut self, sequence: u64) -> Result<(), SpoolError> {
        if let Some(e) = self.entries.remove(&sequence) {
            let path = self.dir.join(file_name(sequence, e.kind));
            remove(&path)?;
            self.bytes = self.bytes.saturating_sub(e.bytes);
            let d = &mut self.counters.dropped;
            match e.kind {
                Kind::Heartbeat => d.heartbeats += 1,
                Kind::Ongoing => d.ongoing += 1,
                Kind::Transitions => d.transitions += 1,
            }
        }
        Ok(())
    }

    /// The oldest reports, in order, up to `max_bytes` of payload (at least one). Torn
    /// reports met on the way are removed and counted, never returned.
    pub fn oldest(&mut self, max_bytes: u64) -> Result<Vec<Pending>, SpoolError> {
        let mut out: Vec<Pending> = Vec::new();
        let mut total = 0u64;
        let mut torn = Vec::new();
        for (&sequence, e) in &self.entries {
            if !out.is_empty() && total + e.bytes > max_bytes {
                break;
            }
            let path = self.dir.join(file_name(sequence, e.kind));
            let mut bytes = Vec::with_capacity(e.bytes as usize);
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io(&path))?;
            match verify(&bytes) {
                Some(payload) => {
                    total += e.bytes;
                    out.push(Pending {
                        sequence,
                        payload: payload.to_vec(),
                    });
                }
                None => torn.push(sequence),
            }
        }
        if !torn.is_empty() {
            for s in torn {
                if let Some(e) = self.entries.remove(&s) {
                    remove(&self.dir.join(file_name(s, e.kind)))?;
                    self.bytes = self.bytes.saturating_sub(e.bytes);
                    self.counters.torn += 1;
                }
            }
            self.write_state()?;
        }
        Ok(out)
    }

    /// The collector stored these (or had them already): forget them.
    pub fn acknowledge(&mut self, sequences: &[u64]) -> Result<(), SpoolError> {
        for s in sequences {
            if let Some(e) = self.entries.remove(s) {
                remove(&self.dir.join(file_name(*s, e.kind)))?;
                self.bytes = self.bytes.saturating_sub(e.bytes);
            }
        }
        sync_dir(&self.dir)
    }

    /// The collector refused this report as malformed: keep it aside, never resend it.
    pub fn quarantine(&mut self, sequence: u64) -> Result<PathBuf, SpoolError> {
        let Some(e) = self.entries.remove(&sequence) else {
            return Ok(self.dir.join("quarantine"));
        };
        let name = file_name(sequence, e.kind);
        let to = self.dir.join("quarantine").join(&name);
        fs::rename(self.dir.join(&name), &to).map_err(io(&to))?;
        self.bytes = self.bytes.saturating_sub(e.bytes);
        self.counters.quarantined += 1;
        self.write_state()?;
        Ok(to)
    }

    /// [`Spool::write_state`], dropping older reports (by the drop order, never `keep`) while
    /// the file system is full.
    fn write_state_making_room(&mut self, keep: Option<u64>) -> Result<(), SpoolError> {
        loop {
            match self.write_state() {
                Ok(()) => return Ok(()),
                Err(e) if is_full(&e) => {
                    let _ = fs::remove_file(self.dir.join("tmp").join("state.json"));
                    match self.victim(keep) {
                        Some(s) => self.drop_entry(s)?,
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write_state(&self) -> Result<(), SpoolError> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("tmp").join("state.json");
        let text = serde_json::to_vec(&self.counters).map_err(|e| SpoolError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_synced(&tmp, &text)?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)
    }
}

/// A full file system or quota: room can be made by dropping older reports.
fn is_full(e: &SpoolError) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e, SpoolError::Io { source, .. }
        if matches!(source.raw_os_error(), Some(ENOSPC) | Some(EDQUOT)))
}

fn file_name(sequence: u64, kind: Kind) -> String {
    format!("{sequence:020}-{}.rpt", kind.letter())
}

fn parse_name(name: &str) -> Option<(u64, Kind)> {
    let stem = name.strip_suffix(".rpt")?;
    let (seq, kind) = stem.split_once('-')?;
    Some((seq.parse().ok()?, Kind::from_letter(kind)?))
}

/// What reading a spool directory does with hostile bytes (a file's name, a report file,
/// `state.json`): for the fuzz targets and their regression tests.
#[doc(hidden)]
pub fn read_untrusted(data: &[u8]) {
    let _ = std::str::from_utf8(data).ok().and_then(parse_name);
    if let Some(payload) = verify(data) {
        let _ = serde_json::from_slice::<Report>(payload);
    }
    let _ = serde_json::from_slice::<Counters>(data);
}

/// The payload of a whole spool file, or `None` for a torn or foreign one.
fn verify(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    if rest.len() < HASH_LINE || rest[HASH_LINE - 1] != b'\n' {
        return None;
    }
    let (hash, payload) = rest.split_at(HASH_LINE);
    (hex(&Sha256::digest(payload)).as_bytes() == &hash[..HASH_LINE - 1]).then_some(payload)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn remove(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aupwatch_proto::protocol::Heartbeat;
    use aupwatch_proto::{
        Event, Finding, LifecycleState, Match, Severity, Subject, Tracked, SCHEMA_VERSION,
    };

    fn tracked() -> Tracked {
        Tracked {
            id: "00aa".into(),
            state: LifecycleState::New,
            first_seen_unix_ms: 1,
            last_seen_unix_ms: 1,
            scans: 1,
            excepted: None,
            finding: Finding {
                category: aupwatch_proto::Category::Irc,
                severity: Severity::Medium,
                subject: Subject::Host,
                matches: vec![Match {
                    signature: "irc.server".into(),
                    severity: Severity::Medium,
                    description: String::new(),
                    aup: String::new(),
                    related_pids: vec![],
                    sockets: vec![],
                    evidence: vec![],
                    probe: None,
                }],
                raised: None,
            },
        }
    }

    fn report(sequence: u64, stats: Stats, events: &[EventKind]) -> Report {
        Report {
            report_id: format!("r{sequence}"),
            sequence,
            boot_id: "b".into(),
            machine_id: "m".into(),
            hostname: "h".into(),
            created_unix_ms: 0,
            heartbeat: Heartbeat {
                agent_version: "0".into(),
                signature_version: "s".into(),
                signature_count: 0,
                interval_secs: 15,
                started_at_unix_ms: 0,
                scans: 0,
                cpu_ms: 0.0,
                max_rss_kib: 0,
                spool_reports: stats.reports,
                spool_bytes: stats.bytes,
                dropped: stats.counters.dropped,
                quarantined: stats.counters.quarantined,
            },
            events: events
                .iter()
                .map(|k| Event {
                    schema_version: SCHEMA_VERSION,
                    kind: *k,
                    at_unix_ms: 0,
                    host: "h".into(),
                    tracked: tracked(),
                })
                .collect(),
            open_findings: vec![tracked()],
            goodbye: false,
        }
    }

    fn push(s: &mut Spool, now: u64, events: &[EventKind]) -> u64 {
        s.push(now, |seq, st| report(seq, st, events))
            .expect("push")
    }

    #[test]
    fn reports_survive_reopening_in_order_and_sequences_are_never_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), Bounds::default()).expect("open");
        assert_eq!(push(&mut s, 0, &[EventKind::New]), 1);
        assert_eq!(push(&mut s, 0, &[]), 2);
        drop(s);
        let mut s = Spool::open(dir.path(), Bounds::default()).expect("reopen");
        let pending = s.oldest(u64::MAX).expect("oldest");
        assert_eq!(
            pending.iter().map(|p| p.sequence).collect::<Vec<_>>(),
            [1, 2]
        );
        let r: Report = serde_json::from_slice(&pending[0].payload).expect("json");
        assert_eq!(r.events[0].kind, EventKind::New);
        s.acknowledge(&[1, 2]).expect("ack");
        drop(s);
        let mut s = Spool::open(dir.path(), Bounds::default()).expect("reopen");
        assert!(s.oldest(u64::MAX).expect("oldest").is_empty());
        assert_eq!(
            push(&mut s, 0, &[]),
            3,
            "acknowledged sequences are not reused"
        );
    }

    #[test]
    fn a_torn_report_is_counted_and_never_returned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), Bounds::default()).expect("open");
        push(&mut s, 0, &[EventKind::New]);
        push(&mut s, 0, &[EventKind::Resolved]);
        drop(s);
        // A crash mid-write: the file holds only a prefix of what it should.
        let path = dir.path().join(file_name(1, Kind::Transitions));
        let bytes = fs::read(&path).expect("read");
        fs::write(&path, &bytes[..bytes.len() - 7]).expect("truncate");
        fs::write(dir.path().join("tmp").join("x.rpt"), b"half").expect("leftover");
        let mut s = Spool::open(dir.path(), Bounds::default()).expect("reopen");
        let pending = s.oldest(u64::MAX).expect("oldest");
        assert_eq!(pending.iter().map(|p| p.sequence).collect::<Vec<_>>(), [2]);
        assert_eq!(s.stats().counters.torn, 1);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .next()
            .is_none());
    }

    #[test]
    fn when_full_heartbeats_go_first_then_ongoing_then_transitions_and_the_newest_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bounds = Bounds {
            max_reports: 3,
            ..Bounds::default()
        };
        let mut s = Spool::open(dir.path(), bounds).expect("open");
        push(&mut s, 0, &[EventKind::New]); // 1 t
        push(&mut s, 0, &[]); // 2 h
        push(&mut s, 0, &[EventKind::Ongoing]); // 3 o
        push(&mut s, 0, &[]); // 4 h: drops 2
        let seqs = |s: &mut Spool| {
            s.oldest(u64::MAX)
                .expect("oldest")
                .iter()
                .map(|p| p.sequence)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs(&mut s), [1, 3, 4]);
        push(&mut s, 0, &[EventKind::Resolved]); // 5 t: drops 4 (heartbeat)
        assert_eq!(seqs(&mut s), [1, 3, 5]);
        push(&mut s, 0, &[EventKind::New]); // 6 t: drops 3 (ongoing)
        assert_eq!(seqs(&mut s), [1, 5, 6]);
        push(&mut s, 0, &[EventKind::New]); // 7 t: drops 1 (oldest transition)
        assert_eq!(seqs(&mut s), [5, 6, 7]);
        let d = s.stats().counters.dropped;
        assert_eq!((d.heartbeats, d.ongoing, d.transitions), (2, 1, 1));
        drop(s);
        let s = Spool::open(dir.path(), bounds).expect("reopen");
        assert_eq!(s.stats().counters.dropped, d, "drop counts persist");
    }

    #[test]
    fn old_reports_expire_but_the_newest_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bounds = Bounds {
            max_age_ms: 1000,
            ..Bounds::default()
        };
        let mut s = Spool::open(dir.path(), bounds).expect("open");
        push(&mut s, 0, &[EventKind::New]);
        push(&mut s, 10_000, &[]);
        assert_eq!(s.stats().reports, 1);
        assert_eq!(s.stats().counters.dropped.transitions, 1);
    }

    #[test]
    fn quarantined_reports_are_kept_aside_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), Bounds::default()).expect("open");
        push(&mut s, 0, &[EventKind::New]);
        let to = s.quarantine(1).expect("quarantine");
        assert!(to.exists());
        assert_eq!(s.stats().reports, 0);
        assert_eq!(s.stats().counters.quarantined, 1);
    }

    #[test]
    fn batches_are_bounded_in_bytes_but_hold_at_least_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Spool::open(dir.path(), Bounds::default()).expect("open");
        for _ in 0..5 {
            push(&mut s, 0, &[EventKind::New]);
        }
        assert_eq!(s.oldest(1).expect("oldest").len(), 1);
        let one = s.stats().bytes / 5;
        assert_eq!(s.oldest(one * 2).expect("oldest").len(), 2);
    }
}
