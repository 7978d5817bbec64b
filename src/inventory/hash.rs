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
        let mut hasher = hash.then(Sha256::new);
        let mut found = vec![false; wanted.strings.len()];
        let mut total: i64 = 0;
        let mut kept = 0;
        loop {
            match read_fd(&fd, &mut self.buf[kept..kept + CHUNK]) {
                Ok(0) => break,
                Ok(n) => {
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
            strings: wanted
                .strings
                .iter()
                .zip(&found)
                .filter(|(_, &f)| f)
                .map(|(s, _)| s.clone())
                .collect(),
        };
        self.by_file.insert(key, facts.clone());
        let g = (wanted.hash && facts.sha256.is_none()).then(too_large);
        Hashed::Facts(key, facts, g)
    }

    /// Forgets the executables no live process runs.
    pub(super) fn retain(&mut self, live: &HashSet<FileKey>) {
        self.by_file.retain(|k, _| live.contains(k));
    }
}
