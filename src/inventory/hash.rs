//! SHA-256 of executables, read through `/proc/<pid>/exe` (which works for deleted files
//! too), cached by the file's identity: device, inode, size and modification time of the
//! file the link points to. Two processes of one binary hash it once; a binary replaced at
//! the same path (new inode) or rewritten in place (new mtime/size) is hashed again.

use super::model::Gap;
use super::procdir::{file_key, is_vanished, open_at, read_fd, FileKey};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::os::fd::BorrowedFd;

/// Executables larger than this are not hashed (recorded as a gap instead).
pub(super) const MAX_HASH_BYTES: i64 = 256 * 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct Hashes {
    by_file: HashMap<FileKey, String>,
    buf: Vec<u8>,
}

/// What hashing one process's executable gave.
pub(super) enum Hashed {
    Hash(FileKey, String),
    /// No executable (exited, zombie): nothing to say.
    Nothing,
    Gap(Gap),
}

impl Hashes {
    /// The hash of the executable of the process whose `/proc/<pid>` is `dir`.
    pub(super) fn hash(&mut self, dir: BorrowedFd<'_>, pid: i32) -> Hashed {
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
        if let Some(h) = self.by_file.get(&key) {
            return Hashed::Hash(key, h.clone());
        }
        if key.size > MAX_HASH_BYTES {
            return gap("executable too large to hash".into());
        }
        let fd = match open_at(dir, c"exe", rustix::fs::OFlags::empty()) {
            Ok(fd) => fd,
            Err(e) if is_vanished(e) => return Hashed::Nothing,
            Err(e) => return gap(e.to_string()),
        };
        if self.buf.len() != 64 * 1024 {
            self.buf = vec![0; 64 * 1024];
        }
        let mut hasher = Sha256::new();
        let mut total: i64 = 0;
        loop {
            match read_fd(&fd, &mut self.buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&self.buf[..n]);
                    total += n as i64;
                    if total > MAX_HASH_BYTES {
                        return gap("executable too large to hash".into());
                    }
                }
                Err(e) => return gap(e.to_string()),
            }
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.by_file.insert(key, hex.clone());
        Hashed::Hash(key, hex)
    }

    /// Forgets the executables no live process runs.
    pub(super) fn retain(&mut self, live: &HashSet<FileKey>) {
        self.by_file.retain(|k, _| live.contains(k));
    }
}
