//! Readers of one `/proc/<pid>` directory. Every file is opened relative to a directory file
//! descriptor (no path walk from `/`), read into a buffer that is reused across processes,
//! and parsed from bytes; text becomes a `String` only where the model keeps it.
//!
//! The directory descriptor also pins the process: once `/proc/<pid>` is open, every read
//! through it is of that process, or fails with `ESRCH`/`ENOENT` if it has exited, even if
//! the pid is reused meanwhile.
//!
//! Every system call here is made by rustix's `linux_raw` backend, directly, never through
//! the C library: a library in `LD_PRELOAD` or `/etc/ld.so.preload` that hooks `readdir`,
//! `open`, `openat`, `read` or `fopen` to hide processes (libprocesshider and its kin) does
//! not see these calls (ARCHITECTURE.md, Decisions; `tests/evasion.rs`). Errors are carried
//! as nix's `Errno` (a plain number), the type the rest of the inventory matches on.

use nix::errno::Errno;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::{CStr, OsString};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

/// rustix's error as the inventory's `Errno` (the same number).
pub(super) fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// Opens `name` relative to `dir` read-only, by a direct `openat` system call.
pub(super) fn open_at<P: rustix::path::Arg>(
    dir: BorrowedFd<'_>,
    name: P,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | flags,
        Mode::empty(),
    )
    .map_err(errno)
}

/// Opens an absolute path read-only, by a direct `open` system call.
pub(super) fn open_path<P: rustix::path::Arg>(path: P, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | flags,
        Mode::empty(),
    )
    .map_err(errno)
}

/// `read(2)`, direct, retried on `EINTR`.
pub(super) fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(errno),
        }
    }
}

/// `PF_KTHREAD` in the `flags` field of `stat`.
pub(super) const PF_KTHREAD: u32 = 0x0020_0000;

/// The process is gone (or going): not an error, it is counted as vanished.
pub(super) fn is_vanished(e: Errno) -> bool {
    matches!(e, Errno::ENOENT | Errno::ESRCH)
}

/// A read buffer reused for every file: grows to the largest file read, never shrinks.
#[derive(Debug, Default)]
pub(super) struct Buf {
    data: Vec<u8>,
    len: usize,
}

impl Buf {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Makes at least `min` bytes of room after the filled part.
    fn room(&mut self, min: usize) {
        if self.data.len() - self.len < min {
            let want = (self.len + min).max(self.data.len() * 2);
            self.data.resize(want, 0);
        }
    }

    /// Reads `name` (relative to `dir`) whole. `single_record` files (the kernel's
    /// `single_open` seq files: `stat`, `status`, `cgroup`) return their whole content in
    /// the first read when the buffer is larger than it, so a short read is the end and the
    /// extra `read` that would return 0 is skipped.
    pub(super) fn read_at<P: rustix::path::Arg>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: P,
        single_record: bool,
    ) -> Result<&[u8], Errno> {
        let fd = open_at(dir, name, OFlags::empty())?;
        self.read_fd(&fd, single_record)
    }

    /// Reads `name` (relative to `dir`) keeping its first `max` bytes; the rest is read in
    /// chunks of the same buffer, only counted and hashed, so memory stays at `max` plus one
    /// chunk whatever the file's size. A cut file comes back with its whole length and
    /// SHA-256 (`/proc/<pid>/cmdline`: any user can make theirs megabytes long).
    pub(super) fn read_at_most<P: rustix::path::Arg>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: P,
        max: usize,
    ) -> Result<(&[u8], Option<aupwatch_proto::Truncated>), Errno> {
        use sha2::{Digest, Sha256};
        const CHUNK: usize = 64 * 1024;
        let fd = open_at(dir, name, OFlags::empty())?;
        self.len = 0;
        // Up to `max` bytes, and one more to learn whether there is more.
        loop {
            self.room(4096);
            let end = self.data.len().min(max + 1);
            if self.len >= end {
                break;
            }
            let n = read_fd(&fd, &mut self.data[self.len..end])?;
            if n == 0 {
                return Ok((self.bytes(), None));
            }
            self.len += n;
        }
        // Past the cut: hash what was read, then the rest, chunk by chunk.
        let mut hasher = Sha256::new();
        hasher.update(&self.data[..self.len]);
        let mut total = self.len as u64;
        self.len = max;
        self.room(CHUNK);
        loop {
            let n = read_fd(&fd, &mut self.data[max..max + CHUNK])?;
            if n == 0 {
                break;
            }
            hasher.update(&self.data[max..max + n]);
            total += n as u64;
        }
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((
            self.bytes(),
            Some(aupwatch_proto::Truncated {
                bytes: total,
                sha256,
            }),
        ))
    }

    /// Reads an absolute path whole (a small host file: `/proc/loadavg`, `/etc/ld.so.preload`).
    pub(super) fn read_path<P: rustix::path::Arg>(&mut self, path: P) -> Result<&[u8], Errno> {
        let fd = open_path(path, OFlags::empty())?;
        self.read_fd(&fd, false)
    }

    fn read_fd(&mut self, fd: &OwnedFd, single_record: bool) -> Result<&[u8], Errno> {
        self.len = 0;
        loop {
            self.room(4096);
            let space = self.data.len() - self.len;
            let n = read_fd(fd, &mut self.data[self.len..])?;
            self.len += n;
            if n == 0 || (single_record && n < space) {
                break;
            }
        }
        Ok(self.bytes())
    }

    /// Reads `fd` in chunks, handing every complete line to `line` (without its `\n`); a
    /// last line without `\n` is handed over too. Memory stays at one chunk plus one line.
    pub(super) fn for_each_line(
        &mut self,
        fd: &OwnedFd,
        mut line: impl FnMut(&[u8]),
    ) -> Result<(), Errno> {
        const CHUNK: usize = 128 * 1024;
        self.len = 0;
        loop {
            self.room(CHUNK);
            let n = read_fd(fd, &mut self.data[self.len..])?;
            if n == 0 {
                if self.len > 0 {
                    line(&self.data[..self.len]);
                }
                return Ok(());
            }
            let start_scan = self.len;
            self.len += n;
            // Hand over every complete line; keep the incomplete tail.
            let mut begin = 0;
            let mut from = start_scan;
            while let Some(off) = memchr(b'\n', &self.data[from..self.len]) {
                let end = from + off;
                line(&self.data[begin..end]);
                begin = end + 1;
                from = begin;
            }
            self.data.copy_within(begin..self.len, 0);
            self.len -= begin;
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Opens `/proc/<pid>` relative to the procfs root descriptor.
pub(super) fn open_pid_dir(proc_dir: BorrowedFd<'_>, pid: i32) -> Result<OwnedFd, Errno> {
    let mut name = itoa_buf();
    let name = format_pid(&mut name, pid);
    open_at(proc_dir, name, OFlags::DIRECTORY)
}

fn itoa_buf() -> [u8; 12] {
    [0; 12]
}

fn format_pid(buf: &mut [u8; 12], pid: i32) -> &[u8] {
    let mut v = pid.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Owner uid of the opened `/proc/<pid>` directory: the process's effective uid, except for
/// non-dumpable processes (setuid programs, `prctl(PR_SET_DUMPABLE, 0)`), whose directory
/// the kernel shows as owned by root.
pub(super) fn dir_owner(dir: BorrowedFd<'_>) -> Result<u32, Errno> {
    rustix::fs::fstat(dir).map(|st| st.st_uid).map_err(errno)
}

/// Target of a symbolic link in the directory (`exe`, `ns/net`).
pub(super) fn readlink(dir: BorrowedFd<'_>, name: &CStr) -> Result<OsString, Errno> {
    rustix::fs::readlinkat(dir, name, Vec::new())
        .map(|t| OsString::from_vec(t.into_bytes()))
        .map_err(errno)
}

/// Identity of a file, the key of the executable hash cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

/// `statx` of the file a link points to (`/proc/<pid>/exe` follows to the executable, even a
/// deleted one), with `AT_STATX_DONT_SYNC`: the attributes the kernel holds, without asking
/// the file's file system (FUSE and NFS answer from their cache), so a hung file system
/// cannot block it. Following the magic link looks nothing up on that file system either.
pub(super) fn file_key(dir: BorrowedFd<'_>, name: &CStr) -> Result<FileKey, Errno> {
    use rustix::fs::StatxFlags;
    let st = rustix::fs::statx(
        dir,
        name,
        AtFlags::STATX_DONT_SYNC,
        StatxFlags::INO | StatxFlags::SIZE | StatxFlags::MTIME,
    )
    .map_err(errno)?;
    Ok(FileKey {
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        size: i64::try_from(st.stx_size).unwrap_or(i64::MAX),
        mtime: st.stx_mtime.tv_sec,
        mtime_nsec: i64::from(st.stx_mtime.tv_nsec),
    })
}

/// Why the file descriptors of a process could not all be read.
#[derive(Debug)]
pub(super) enum FdError {
    /// The process exited.
    Vanished,
    /// The `fd` directory could not be listed (permission), or a link could not be read.
    Unreadable(Errno),
}

/// Inodes of the sockets among the open file descriptors of the process whose directory is
/// `dir`, appended to `out` (sorted, deduplicated). `dents` is the reused `getdents` buffer.
///
/// One `getdents` pass over `fd/`, and for each entry one `readlinkat` into a stack buffer
/// (nothing allocated per descriptor): a socket reads `socket:[<inode>]`. The link is read,
/// never followed: a `stat` through it could block on a hung NFS or a hostile FUSE file.
/// A descriptor closed meanwhile is skipped. The first other error is returned after the
/// walk (what could be read is kept).
pub(super) fn socket_inodes(
    dir: BorrowedFd<'_>,
    dents: &mut Vec<u8>,
    out: &mut Vec<u64>,
) -> Result<(), FdError> {
    use rustix::fs::{openat as ropenat, readlinkat_raw, Mode as RMode, RawDir};
    let vanished =
        |e: rustix::io::Errno| e == rustix::io::Errno::NOENT || e == rustix::io::Errno::SRCH;
    let fd_dir = match ropenat(
        dir,
        c"fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        RMode::empty(),
    ) {
        Ok(d) => d,
        Err(e) if vanished(e) => return Err(FdError::Vanished),
        Err(e) => return Err(FdError::Unreadable(errno(e))),
    };
    if dents.capacity() < DENTS_BUF {
        *dents = Vec::with_capacity(DENTS_BUF);
    }
    let mut first_err = None;
    let mut entries = RawDir::new(&fd_dir, dents.spare_capacity_mut());
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                first_err.get_or_insert(e);
                break;
            }
        };
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') {
            continue;
        }
        let mut link = [MaybeUninit::<u8>::uninit(); 64];
        match readlinkat_raw(&fd_dir, name, &mut link) {
            // A full buffer is a truncated path, not a socket (at most 29 bytes).
            Ok((target, rest)) if !rest.is_empty() => {
                if let Some(inode) = parse_socket_link(target) {
                    out.push(inode);
                }
            }
            Ok(_) => {}
            Err(e) if vanished(e) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    match first_err {
        None => Ok(()),
        Some(e) if vanished(e) => Err(FdError::Vanished),
        Some(e) => Err(FdError::Unreadable(errno(e))),
    }
}

/// Size of the `getdents` buffer (as the C floor: one call lists ~2 700 descriptors).
pub(super) const DENTS_BUF: usize = 64 * 1024;

/// `socket:[12345]` → 12345.
pub(super) fn parse_socket_link(target: &[u8]) -> Option<u64> {
    parse_u64(target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
}

/// `net:[4026531840]` → 4026531840.
pub(super) fn parse_ns_link(target: &[u8]) -> Option<u64> {
    let start = target.windows(2).position(|w| w == b":[")? + 2;
    parse_u64(target[start..].strip_suffix(b"]")?)
}

/// A decimal number, all of `s`, no sign, no overflow.
pub(super) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn parse_i64(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(rest) => i64::try_from(parse_u64(rest)?).ok().map(|v| -v),
        None => i64::try_from(parse_u64(s)?).ok(),
    }
}

/// The fields of `/proc/<pid>/stat` the inventory uses. `comm` borrows from the buffer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stat<'a> {
    pub pid: i32,
    pub comm: &'a [u8],
    pub ppid: i32,
    pub flags: u32,
    pub utime: u64,
    pub stime: u64,
    pub nice: i64,
    pub threads: i64,
    pub start_ticks: u64,
    pub rss_pages: u64,
    /// Scheduling policy (`SCHED_*`, field 41); 0 (normal) on kernels too old to show it.
    pub policy: u32,
    /// Addresses that a new program image (`execve`) changes and nothing else does in
    /// practice: start/end of code, start of stack, start of argv, end of environment.
    /// All 0 when the reader may not see them (another user's process, without root).
    pub image: [u64; 5],
}

impl Stat<'_> {
    pub(super) fn kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Parses `/proc/<pid>/stat`. `comm` is whatever lies between the first `(` and the
/// **last** `)`: a process may name itself `a) b)) c`, so the fields after `comm` start
/// after the last parenthesis, which no later field contains.
pub(super) fn parse_stat(buf: &[u8]) -> Option<Stat<'_>> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = parse_i64(buf[..open].strip_suffix(b" ")?)?;
    let comm = &buf[open + 1..close];
    let rest = buf.get(close + 1..)?;
    let rest = rest.strip_prefix(b" ")?;
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    // Field numbers of proc(5), 3 = state.
    let mut f = [&b""[..]; 52];
    let mut n = 3;
    for field in rest.split(|&b| b == b' ') {
        if n < f.len() {
            f[n] = field;
        }
        n += 1;
    }
    // Everything up to rss (24) is required; the image fields came in later kernels.
    if n <= 24 {
        return None;
    }
    let num = |i: usize| parse_u64(f[i]);
    let opt = |i: usize| parse_u64(f[i]).unwrap_or(0);
    Some(Stat {
        pid: i32::try_from(pid).ok()?,
        comm,
        ppid: i32::try_from(parse_i64(f[4])?).ok()?,
        flags: u32::try_from(num(9)?).ok()?,
        utime: num(14)?,
        stime: num(15)?,
        nice: parse_i64(f[19])?,
        threads: parse_i64(f[20])?,
        start_ticks: num(22)?,
        rss_pages: parse_i64(f[24])?.max(0) as u64,
        policy: u32::try_from(opt(41)).unwrap_or(0),
        image: [opt(26), opt(27), opt(28), opt(48), opt(51)],
    })
}

/// Splits a NUL-separated `cmdline` into arguments, replacing non-UTF-8 bytes.
pub(crate) fn split_cmdline(buf: &[u8]) -> Vec<String> {
    let buf = buf.strip_suffix(b"\0").unwrap_or(buf);
    if buf.is_empty() {
        return Vec::new();
    }
    buf.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The cgroup v2 path (`0::/path`), else the first v1 hierarchy's path.
pub(crate) fn cgroup_path(text: &str) -> Option<String> {
    let mut first = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, _, path) = (parts.next()?, parts.next()?, parts.next()?);
        if id == "0" {
            return Some(path.to_string());
        }
        if first.is_none() {
            first = Some(path.to_string());
        }
    }
    first
}

/// A 64-hex container id in a cgroup path: `/docker/<id>`, `docker-<id>.scope`,
/// `cri-containerd-<id>.scope`, `libpod-<id>.scope`, `/kubepods/…/<id>`.
pub(crate) fn container_id(cgroup: &str) -> Option<String> {
    for segment in cgroup.rsplit('/') {
        let trimmed = segment.strip_suffix(".scope").unwrap_or(segment);
        let candidate = trimmed.rsplit(['-', ':']).next().unwrap_or(trimmed);
        if candidate.len() == 64 && candidate.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(candidate.to_string());
        }
    }
    None
}

/// `readlink` of `/proc/<pid>/exe`: the path without ` (deleted)`, and whether the file is
/// gone (deleted, or a memfd).
pub(super) fn exe_path(target: &[u8]) -> (String, bool) {
    let s = String::from_utf8_lossy(target);
    match s.strip_suffix(" (deleted)") {
        Some(stripped) => (stripped.to_string(), true),
        None => {
            let deleted = s.starts_with("/memfd:");
            (s.into_owned(), deleted)
        }
    }
}

#[cfg(test)]
mod tests {
    /// A file longer than the bound keeps its first `max` bytes, and its whole length and
    /// SHA-256 are those of the file; a file within the bound comes back whole, uncut.
    #[test]
    fn read_at_most_keeps_the_head_and_hashes_the_whole() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().expect("tempdir");
        let fd = open_path(dir.path(), OFlags::DIRECTORY).expect("open dir");
        let mut buf = Buf::default();
        for len in [0usize, 1, 4095, 4096, 4097, 200_000, 1_900_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(dir.path().join("f"), &data).expect("write");
            let (head, cut) = buf
                .read_at_most(std::os::fd::AsFd::as_fd(&fd), c"f", 4096)
                .expect("read");
            assert_eq!(head, &data[..len.min(4096)], "{len}");
            match cut {
                None => assert!(len <= 4096, "{len} is cut"),
                Some(t) => {
                    assert!(len > 4096);
                    assert_eq!(t.bytes, len as u64);
                    let want: String = Sha256::digest(&data)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    assert_eq!(t.sha256, want);
                }
            }
            assert!(
                buf.data.len() <= 4097 + 64 * 1024 + 4096,
                "{}",
                buf.data.len()
            );
        }
    }

    use super::*;

    fn stat_line(comm: &str) -> String {
        // A real line of a kernel 6.x with the comm replaced.
        format!(
            "1234 ({comm}) S 1 1234 1234 0 -1 4194560 2143 46589 12 3 17 9 60 25 20 0 3 0 \
             4242 22118400 1412 18446744073709551615 94743812587520 94743813429421 \
             140725731383536 0 0 0 0 4096 17475 1 0 0 17 1 0 0 0 0 0 94743813676304 \
             94743813722916 94743840227328 140725731390923 140725731390943 \
             140725731390943 140725731393512 0\n"
        )
    }

    #[test]
    fn stat_fields() {
        let line = stat_line("nginx");
        let s = parse_stat(line.as_bytes()).expect("parses");
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, b"nginx");
        assert_eq!(s.ppid, 1);
        assert_eq!(s.flags, 4194560);
        assert!(!s.kernel_thread());
        assert_eq!((s.utime, s.stime), (17, 9));
        assert_eq!(s.nice, 0);
        assert_eq!(s.threads, 3);
        assert_eq!(s.start_ticks, 4242);
        assert_eq!(s.rss_pages, 1412);
        assert_eq!(
            s.image,
            [
                94743812587520,
                94743813429421,
                140725731383536,
                140725731390923,
                140725731393512
            ]
        );
    }

    #[test]
    fn stat_with_hostile_comm() {
        // comm is attacker-chosen: parentheses, spaces, a fake field list.
        for comm in ["a) b)) c", ") S 0 0 0", "x (y) z", "(", ")", " ", "a\nb"] {
            let line = stat_line(comm);
            let s = parse_stat(line.as_bytes()).unwrap_or_else(|| panic!("{comm:?}"));
            assert_eq!(s.comm, comm.as_bytes(), "{comm:?}");
            assert_eq!((s.pid, s.ppid, s.start_ticks), (1234, 1, 4242), "{comm:?}");
        }
        let s = parse_stat(b"1 (a) b)) c) S 0 1 1 0 -1 2097152 0 0 0 0 5 6 0 0 20 -5 1 0 77 0 0\n");
        let s = s.expect("the brief's example parses");
        assert_eq!(s.comm, b"a) b)) c");
        assert_eq!(s.ppid, 0);
        assert!(s.kernel_thread());
        assert_eq!((s.utime, s.stime, s.nice, s.start_ticks), (5, 6, -5, 77));
        assert_eq!(s.image, [0; 5]);
    }

    #[test]
    fn stat_rejects_garbage() {
        for bad in [
            &b""[..],
            b"1234",
            b"1234 (x",
            b"1234 x) S 1",
            b") 1234 (x S 1",
            b"1234 (x) S 1 2 3",
            b"abc (x) S 1 1234 1234 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0",
            b"1234 (x) S 1 1234 1234 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 99999999999999999999999 0 0",
        ] {
            assert_eq!(parse_stat(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn links() {
        assert_eq!(parse_socket_link(b"socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"pipe:[4242]"), None);
        assert_eq!(parse_socket_link(b"/tmp/socket:[1]"), None);
        assert_eq!(parse_socket_link(b"socket:[99999999999999999999999]"), None);
        assert_eq!(parse_ns_link(b"net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link(b"net:4026531840"), None);
        assert_eq!(parse_ns_link(b"net:[40265x]"), None);
    }

    #[test]
    fn exe_links() {
        assert_eq!(exe_path(b"/usr/bin/x"), ("/usr/bin/x".into(), false));
        assert_eq!(exe_path(b"/tmp/x (deleted)"), ("/tmp/x".into(), true));
        assert_eq!(exe_path(b"/memfd:x (deleted)"), ("/memfd:x".into(), true));
        assert_eq!(exe_path(b"/memfd:x"), ("/memfd:x".into(), true));
        assert_eq!(exe_path(b"/tmp/\xff"), ("/tmp/\u{fffd}".into(), false));
    }

    #[test]
    fn pid_names() {
        let mut b = itoa_buf();
        assert_eq!(format_pid(&mut b, 0), b"0");
        assert_eq!(format_pid(&mut b, 4194304), b"4194304");
        assert_eq!(format_pid(&mut b, i32::MAX), b"2147483647");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"+1"), None);
        assert_eq!(parse_i64(b"-20"), Some(-20));
        assert_eq!(parse_i64(b"--1"), None);
    }

    #[test]
    fn cmdline_split_keeps_empty_args_and_replaces_bad_utf8() {
        assert_eq!(split_cmdline(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert_eq!(split_cmdline(b""), Vec::<String>::new());
        assert_eq!(split_cmdline(b"x\xffy\0"), vec!["x\u{fffd}y"]);
        // Processes may overwrite their argv without NULs (setproctitle).
        assert_eq!(split_cmdline(b"nginx: worker"), vec!["nginx: worker"]);
    }

    #[test]
    fn cgroups_and_containers() {
        let v2 = "0::/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope\n";
        let path = cgroup_path(v2);
        assert_eq!(
            path.as_deref().and_then(container_id).as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        let v1 = "12:pids:/docker/abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd\n11:cpu:/x\n";
        assert_eq!(
            cgroup_path(v1).as_deref().and_then(container_id).as_deref(),
            Some("abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd")
        );
        assert_eq!(
            container_id("/user.slice/user-1000.slice/session-2.scope"),
            None
        );
    }

    #[test]
    fn lines_across_chunks() {
        // for_each_line over a real file: lines split over read boundaries come out whole.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!("line {i} {}\n", "x".repeat(i % 7)));
        }
        text.push_str("tail without newline");
        std::fs::write(dir.path().join("f"), &text).expect("write");
        let fd = open_path(dir.path().join("f"), OFlags::empty()).expect("open");
        let mut buf = Buf::default();
        let mut got = Vec::new();
        buf.for_each_line(&fd, |l| got.push(String::from_utf8_lossy(l).into_owned()))
            .expect("read");
        let want: Vec<&str> = text.split('\n').collect();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(want).all(|(a, b)| a == b));
    }
}
