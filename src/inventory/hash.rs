//! Facts about executables, read through `/proc/<pid>/exe` (which works for deleted and
//! memfd files too): the SHA-256, and which indicator strings the file contains. Both come
//! from one bounded read, cached by the file's identity: device, inode, size and
//! modification time of the file the link points to. Two processes of one binary read it
//! once; a binary replaced at the same path (new inode) or rewritten in place (new
//! mtime/size) is read again.

use super::model::Gap;
use super::procdir::{file_key, is_vanished, open_at, read_fd, FileKey};
use aho_corasick::AhoCorasick;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::os::fd::BorrowedFd;

/// Executables larger than this are not hashed (recorded as a gap instead).
pub(super) const MAX_HASH_BYTES: i64 = 256 * 1024 * 1024;
/// Only this much of an executable is searched for indicator strings: a miner's strings
/// live in its read-only data, inside the first 16 MiB (a static XMRig build is ~8 MB).
pub(super) const MAX_STRINGS_BYTES: i64 = 16 * 1024 * 1024;

/// What is read from executables, from the inventory's options.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    pub hash: bool,
    /// Lowercased indicator strings, matched ignoring ASCII case.
    pub strings: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl Wanted {
    pub(super) fn new(hash: bool, strings: &[String]) -> Wanted {
        let strings: Vec<String> = strings.iter().map(|s| s.to_ascii_lowercase()).collect();
        // Case is ignored by lowercasing the bytes read, then searching case-sensitively: an
        // automaton built case-insensitive loses its SIMD prefilter and ran ~15x slower
        // (35 ms against 2.4 ms for 16 MiB). Leftmost-first, non-overlapping: every
        // occurrence of a string that does not sit inside another match is found.
        let matcher = (!strings.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(&strings)
                    .ok()
            })
            .flatten();
        Wanted {
            hash,
            strings,
            matcher,
        }
    }

    pub(super) fn any(&self) -> bool {
        self.hash || self.matcher.is_some()
    }
}

/// What was learnt about one executable file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ExeFacts {
    pub sha256: Option<String>,
    /// The indicator strings found, in the order of [`Wanted::strings`].
    pub strings: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct Hashes {
    by_file: HashMap<FileKey, ExeFacts>,
    buf: Vec<u8>,
    /// Bytes read so far, for a watcher telling a slow read from a hung one.
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// What reading one process's executable gave.
pub(super) enum Hashed {
    /// With a gap when a hash was wanted and the file was too large for it.
    Facts(FileKey, ExeFacts, Option<Gap>),
    /// No executable (exited, zombie): nothing to say.
    Nothing,
    Gap(Gap),
}

impl Hashes {
    /// The facts `wanted` about the executable of the process whose `/proc/<pid>` is `dir`.
    pub(super) fn hash(&mut self, dir: BorrowedFd<'_>, pid: i32, wanted: &Wanted) -> Hashed {
        let too_large = || Gap {
            what: format!("/proc/{pid}/exe"),
            error: "executable too large to hash".into(),
        };
        let gap = |error: String| {
            Hashed::Gap(Gap {
                what: format!("/proc/{pid}/exe"),
                error,
            })
        };
        let key = match file_key(dir, c"exe") {
            Ok(k) => k,
            Err(e) if is_vanished(e) => return Hashed::Nothing,
            Err(e) => return gap(e.to_string()),
        };
        if let Some(f) = self.by_file.get(&key) {
            let g = (wanted.hash && f.sha256.is_none()).then(too_large);
            return Hashed::Facts(key, f.clone(), g);
        }
        let hash = wanted.hash && key.size <= MAX_HASH_BYTES;
        let limit = if hash {
            MAX_HASH_BYTES
        } else {
            MAX_STRINGS_BYTES
        };
        let fd = match open_at(dir, c"exe", rustix::fs::OFlags::empty()) {
            Ok(fd) => fd,
            Err(e) if is_vanished(e) => return Hashed::Nothing,
            Err(e) => return gap(e.to_string()),
        };
        const CHUNK: usize = 64 * 1024;
        // The longest string may straddle two reads: keep its length minus one of the last
        // read in front of the next.
        let overlap = wanted.strings.iter().map(String::len).max().unwrap_or(1) - 1;
        if self.buf.len() != CHUNK + overlap {
            self.buf = vec![0; CHUNK + overlap];
        }
        if !hash {
            if let Some(m) = &wanted.matcher {
                if let Some(ranges) = elf_data_ranges(&fd, key.size) {
                    return match self.search_ranges(&fd, &ranges, m, wanted.strings.len(), overlap)
                    {
                        Ok(found) => {
                            let facts = ExeFacts {
                                sha256: None,
                                strings: found_strings(wanted, &found),
                            };
                            self.by_file.insert(key, facts.clone());
                            Hashed::Facts(key, facts, None)
                        }
                        Err(e) => gap(e.to_string()),
                    };
                }
            }
        }
        let mut hasher = hash.then(Sha256::new);
        let mut found = vec![false; wanted.strings.len()];
        let mut total: i64 = 0;
        let mut kept = 0;
        loop {
            match read_fd(&fd, &mut self.buf[kept..kept + CHUNK]) {
                Ok(0) => break,
                Ok(n) => {
                    self.progress
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    if let Some(h) = hasher.as_mut() {
                        h.update(&self.buf[kept..kept + n]);
                    }
                    if let Some(m) = &wanted.matcher {
                        if total < MAX_STRINGS_BYTES {
                            // After hashing: lowercasing changes the bytes.
                            self.buf[kept..kept + n].make_ascii_lowercase();
                            for hit in m.find_iter(&self.buf[..kept + n]) {
                                found[hit.pattern().as_usize()] = true;
                            }
                        }
                    }
                    total += n as i64;
                    if total > limit {
                        break;
                    }
                    if hasher.is_none() && found.iter().all(|&f| f) {
                        break;
                    }
                    let end = kept + n;
                    kept = overlap.min(end);
                    self.buf.copy_within(end - kept..end, 0);
                }
                Err(e) => return gap(e.to_string()),
            }
        }
        let facts = ExeFacts {
            sha256: hasher.map(|h| h.finalize().iter().map(|b| format!("{b:02x}")).collect()),
            strings: found_strings(wanted, &found),
        };
        self.by_file.insert(key, facts.clone());
        let g = (wanted.hash && facts.sha256.is_none()).then(too_large);
        Hashed::Facts(key, facts, g)
    }

    /// Forgets the executables no live process runs.
    pub(super) fn retain(&mut self, live: &HashSet<FileKey>) {
        self.by_file.retain(|k, _| live.contains(k));
    }

    /// Searches `ranges` of `fd` (sorted, apart) for the strings, at most
    /// [`MAX_STRINGS_BYTES`] in all, lowercased as [`Hashes::hash`] does; which were found.
    fn search_ranges(
        &mut self,
        fd: &std::os::fd::OwnedFd,
        ranges: &[(u64, u64)],
        m: &AhoCorasick,
        strings: usize,
        overlap: usize,
    ) -> Result<Vec<bool>, rustix::io::Errno> {
        const CHUNK: usize = 64 * 1024;
        if self.buf.len() != CHUNK + overlap {
            self.buf = vec![0; CHUNK + overlap];
        }
        let mut found = vec![false; strings];
        let mut budget = MAX_STRINGS_BYTES as u64;
        for &(start, len) in ranges {
            let mut at = start;
            let end = start + len.min(budget);
            // A string straddling two reads: the tail of the last read goes in front of the
            // next, within one range (adjacent sections are one range).
            let mut kept = 0;
            while at < end {
                let want = CHUNK.min((end - at) as usize);
                let n = loop {
                    match rustix::io::pread(fd, &mut self.buf[kept..kept + want], at) {
                        Err(rustix::io::Errno::INTR) => continue,
                        r => break r?,
                    }
                };
                if n == 0 {
                    break;
                }
                self.progress
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                self.buf[kept..kept + n].make_ascii_lowercase();
                for hit in m.find_iter(&self.buf[..kept + n]) {
                    found[hit.pattern().as_usize()] = true;
                }
                if found.iter().all(|&f| f) {
                    return Ok(found);
                }
                at += n as u64;
                let stop = kept + n;
                kept = overlap.min(stop);
                self.buf.copy_within(stop - kept..stop, 0);
            }
            budget -= (at - start).min(budget);
            if budget == 0 {
                break;
            }
        }
        Ok(found)
    }
}

/// The indicator strings `found` says were found, in the order of [`Wanted::strings`].
fn found_strings(wanted: &Wanted, found: &[bool]) -> Vec<String> {
    wanted
        .strings
        .iter()
        .zip(found)
        .filter(|(_, &f)| f)
        .map(|(s, _)| s.clone())
        .collect()
}

/// Where an executable's strings can be: for a 64-bit little-endian ELF file with section
/// headers, the whole file but its code — the sections with `SHF_EXECINSTR` (`.text`,
/// `.plt`, `.init`, …) — in file order. Code is most of a large binary (24 of cargo's 42 MB;
/// the first 16 MiB searched used to be nothing but code there, so its read-only data was
/// never reached) and holds no strings; a miner's pool URLs, algorithm names and options are
/// constants in its read-only data, and whatever sits outside any section (appended data)
/// is still searched. `None` — search the file from its start, as before — for anything
/// else: no section headers (a packed binary: UPX drops them), another ELF class or byte
/// order, a script, headers out of bounds, or no code section. Section headers are not
/// used by the loader, so a binary built to hide strings could mislabel its data as code;
/// one built to hide strings can as well encrypt them: `exe_strings` is for stock builds.
pub(super) fn elf_data_ranges(fd: &std::os::fd::OwnedFd, size: i64) -> Option<Vec<(u64, u64)>> {
    const SHF_EXECINSTR: u64 = 0x4;
    const SHT_NOBITS: u32 = 8;
    const MAX_SECTIONS: usize = 4096;
    let size = u64::try_from(size).ok()?;
    let mut head = [0u8; 64];
    if rustix::io::pread(fd, &mut head, 0).ok()? != head.len() {
        return None;
    }
    // 64-bit (class 2), little-endian (data 1)
    if head[..4] != *b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let shoff = u64_at(&head, 0x28)?;
    let entsize = usize::from(u16_at(&head, 0x3A)?);
    let count = usize::from(u16_at(&head, 0x3C)?);
    if shoff == 0 || count == 0 || count > MAX_SECTIONS || entsize != 64 {
        return None;
    }
    let table_len = (count * entsize) as u64;
    if shoff.checked_add(table_len)? > size {
        return None;
    }
    let mut table = vec![0u8; count * entsize];
    let mut got = 0;
    while got < table.len() {
        match rustix::io::pread(fd, &mut table[got..], shoff + got as u64) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    let mut code: Vec<(u64, u64)> = Vec::new();
    for e in table.chunks_exact(entsize) {
        let kind = u32_at(e, 4)?;
        let flags = u64_at(e, 8)?;
        let offset = u64_at(e, 0x18)?;
        let len = u64_at(e, 0x20)?;
        if flags & SHF_EXECINSTR == 0 || kind == SHT_NOBITS || len == 0 {
            continue;
        }
        let end = offset.checked_add(len)?;
        if end > size {
            return None;
        }
        code.push((offset, end));
    }
    if code.is_empty() {
        return None;
    }
    code.sort_unstable();
    // The complement of the code, in file order.
    let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(code.len() + 1);
    let mut at = 0;
    for (start, end) in code {
        if start > at {
            ranges.push((at, start - at));
        }
        at = at.max(end);
    }
    if at < size {
        ranges.push((at, size - at));
    }
    Some(ranges)
}

/// How long reading one executable may go without progress (no byte read) before it is
/// abandoned. Reading and hashing a static miner (~8 MB) takes ~30 ms in all; only a hung
/// file system makes no progress for seconds.
pub(super) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Readers left blocked in a read at once before executables are no longer read at all
/// (each holds a thread the kernel will not wake until the file system answers).
pub(super) const MAX_STUCK: usize = 4;
/// Executable paths remembered as having timed out (not tried again).
const MAX_TIMED_OUT: usize = 1024;

enum Job {
    Hash(std::os::fd::OwnedFd, i32),
    Retain(HashSet<FileKey>),
}

struct Worker {
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    jobs: std::sync::mpsc::Sender<Job>,
    replies: std::sync::mpsc::Receiver<Hashed>,
    /// Set by the thread when it ends: an abandoned reader that finished is not stuck.
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Worker {
    fn start(wanted: std::sync::Arc<Wanted>) -> std::io::Result<Worker> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
        let (reply_tx, replies) = std::sync::mpsc::channel();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = done.clone();
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut hashes = Hashes {
            progress: progress.clone(),
            ..Hashes::default()
        };
        std::thread::Builder::new()
            .name("exe-reader".into())
            .spawn(move || {
                while let Ok(job) = job_rx.recv() {
                    match job {
                        Job::Hash(dir, pid) => {
                            let r = hashes.hash(dir.as_fd(), pid, &wanted);
                            if reply_tx.send(r).is_err() {
                                break;
                            }
                        }
                        Job::Retain(live) => hashes.retain(&live),
                    }
                }
                finished.store(true, std::sync::atomic::Ordering::Release);
            })?;
        Ok(Worker {
            progress,
            jobs,
            replies,
            done,
        })
    }
}

use std::os::fd::AsFd;

/// Reads executables on a thread of its own with a deadline, so that a file on a hung
/// file system (a dead NFS server, a FUSE daemon that never answers) costs the scan a gap
/// for that process, never the agent its loop: `stat` and `read` of such a file block in
/// the kernel and cannot be interrupted. A reader that misses the deadline is abandoned
/// (its thread stays blocked until the file system answers) and a new one takes over; the
/// executable's path is not tried again; with [`MAX_STUCK`] readers blocked, executables
/// are no longer read and every process says so in a gap.
pub(super) struct ExeReader {
    wanted: std::sync::Arc<Wanted>,
    /// What the reader found, by file: a process of a known executable is answered here,
    /// from a `statx` that does not reach the file's file system, with no round trip to
    /// the reader thread.
    known: HashMap<FileKey, ExeFacts>,
    worker: Option<Worker>,
    abandoned: Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    timed_out: HashSet<String>,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for ExeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExeReader")
            .field("abandoned", &self.abandoned.len())
            .field("timed_out", &self.timed_out.len())
            .finish_non_exhaustive()
    }
}

impl ExeReader {
    pub(super) fn new(wanted: Wanted, timeout: std::time::Duration) -> ExeReader {
        ExeReader {
            wanted: std::sync::Arc::new(wanted),
            known: HashMap::new(),
            worker: None,
            abandoned: Vec::new(),
            timed_out: HashSet::new(),
            timeout,
        }
    }

    pub(super) fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    /// Readers still blocked in a read.
    pub(super) fn stuck(&mut self) -> usize {
        self.abandoned
            .retain(|d| !d.load(std::sync::atomic::Ordering::Acquire));
        self.abandoned.len()
    }

    /// [`Hashes::hash`] on the reader thread, waiting at most the timeout. `exe` is the
    /// path the process's `exe` link names (the key of paths that timed out).
    pub(super) fn hash(&mut self, dir: BorrowedFd<'_>, pid: i32, exe: &str) -> Hashed {
        let gap = |error: String| {
            Hashed::Gap(Gap {
                what: format!("/proc/{pid}/exe"),
                error,
            })
        };
        if self.timed_out.contains(exe) {
            return gap(
                "not read: reading this executable timed out before (hung file system?)".into(),
            );
        }
        match file_key(dir, c"exe") {
            Ok(key) => {
                if let Some(f) = self.known.get(&key) {
                    let g = (self.wanted.hash && f.sha256.is_none()).then(|| Gap {
                        what: format!("/proc/{pid}/exe"),
                        error: "executable too large to hash".into(),
                    });
                    return Hashed::Facts(key, f.clone(), g);
                }
            }
            Err(e) if is_vanished(e) => return Hashed::Nothing,
            // Anything else: the reader thread tries, and says what went wrong.
            Err(_) => {}
        }
        let stuck = self.stuck();
        if stuck >= MAX_STUCK {
            return gap(format!(
                "not read: {stuck} executable readers are blocked on files that do not answer"
            ));
        }
        let dup = match rustix::io::fcntl_dupfd_cloexec(dir, 0) {
            Ok(fd) => fd,
            Err(e) => return gap(format!("dup: {e}")),
        };
        if self.worker.is_none() {
            match Worker::start(self.wanted.clone()) {
                Ok(w) => self.worker = Some(w),
                Err(e) => return gap(format!("cannot start the executable reader: {e}")),
            }
        }
        let Some(w) = &self.worker else {
            return gap("no executable reader".into());
        };
        if w.jobs.send(Job::Hash(dup, pid)).is_err() {
            self.worker = None;
            return gap("the executable reader ended".into());
        }
        // A read that goes on making progress (a large file, a slow disk, a loaded
        // machine) is waited for; one that makes none for the timeout is abandoned.
        let mut seen = w.progress.load(std::sync::atomic::Ordering::Relaxed);
        let reply = loop {
            match w.replies.recv_timeout(self.timeout) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let now = w.progress.load(std::sync::atomic::Ordering::Relaxed);
                    if now == seen {
                        break Err(std::sync::mpsc::RecvTimeoutError::Timeout);
                    }
                    seen = now;
                }
                other => break other,
            }
        };
        match reply {
            Ok(r) => {
                if let Hashed::Facts(key, facts, _) = &r {
                    self.known.insert(*key, facts.clone());
                }
                r
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(w) = self.worker.take() {
                    self.abandoned.push(w.done);
                }
                if self.timed_out.len() < MAX_TIMED_OUT {
                    self.timed_out.insert(exe.to_string());
                }
                gap(format!(
                    "reading the executable made no progress for {} ms and was abandoned (hung file system?)",
                    self.timeout.as_millis()
                ))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                self.worker = None;
                gap("the executable reader ended".into())
            }
        }
    }

    /// Forgets the executables no live process runs.
    pub(super) fn retain(&mut self, live: HashSet<FileKey>) {
        self.known.retain(|k, _| live.contains(k));
        if let Some(w) = &self.worker {
            let _ = w.jobs.send(Job::Retain(live));
        }
    }
}
