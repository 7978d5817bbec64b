//! Reading the files that configure the agent (config, signatures, keys, certificates)
//! without letting them hang it or fill its memory. Such a file may be anything a local
//! admin, a package or an attacker with a foothold leaves at its path: a FIFO (an `open`
//! that waits for a writer forever), a device (`/dev/zero`: endless), a symbolic link to
//! `/proc/kmsg` (a read that waits for the kernel's next message), a huge file.
//!
//! [`read`] opens with `O_NONBLOCK` (a FIFO's `open` and a blocking read return at once),
//! refuses anything `fstat` does not call a regular file, refuses a file over its size
//! limit before and while reading it, and refuses a read that would block.
//!
//! Must never: block on a file, read more than the limit plus one byte.

use rustix::fs::{FileType, Mode, OFlags};
use std::path::{Path, PathBuf};

/// The agent's config file (`agent.toml`).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// One signature file (`*.toml`).
pub const MAX_SIGNATURE_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// A key or secret file (the collector node key, the enrollment secret).
pub const MAX_KEY_BYTES: u64 = 64 * 1024;
/// A CA certificate bundle.
pub const MAX_CA_BYTES: u64 = 1024 * 1024;

/// Why a file was not read. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing {path}: {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("refusing {path}: {size} bytes, over the limit of {max} bytes")]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("refusing {path}: reading it would block")]
    WouldBlock { path: PathBuf },
    #[error("refusing {path}: a file of the kernel's {fs} file system, not a configuration file")]
    Kernel { path: PathBuf, fs: &'static str },
}

impl FileError {
    /// The underlying I/O error kind, when there is one (`NotFound`: an optional file).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            FileError::Io { source, .. } => Some(source.kind()),
            FileError::NotRegular { .. }
            | FileError::TooLarge { .. }
            | FileError::WouldBlock { .. }
            | FileError::Kernel { .. } => None,
        }
    }

    /// What is wrong, without the path (for errors that name the file already).
    pub fn why(&self) -> String {
        match self {
            FileError::Io { source, .. } => format!("cannot read: {source}"),
            FileError::NotRegular { kind, .. } => {
                format!("refused: {kind}, not a regular file")
            }
            FileError::TooLarge { size, max, .. } => {
                format!("refused: {size} bytes, over the limit of {max} bytes")
            }
            FileError::WouldBlock { .. } => "refused: reading it would block".into(),
            FileError::Kernel { fs, .. } => {
                format!(
                    "refused: a file of the kernel's {fs} file system, not a configuration file"
                )
            }
        }
    }
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

/// The kernel's pseudo file systems, by `statfs` magic number.
fn kernel_fs(magic: i64) -> Option<&'static str> {
    match magic {
        0x9fa0 => Some("proc"),
        0x6265_6572 => Some("sysfs"),
        0x6462_6720 => Some("debugfs"),
        0x7472_6163 => Some("tracefs"),
        0x7363_6673 => Some("securityfs"),
        0x6265_6570 => Some("configfs"),
        0x6367_7270 => Some("cgroup2"),
        0x0027_e0eb => Some("cgroup"),
        _ => None,
    }
}

/// Reads the regular file at `path` (symbolic links followed) whole, if it holds at most
/// `max` bytes.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let io = |source: std::io::Error| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_name(kind),
        });
    }
    // procfs, sysfs and their kin: files that wait (`/proc/kmsg`), that take what they hand
    // out (reading `/proc/kmsg` takes the kernel's messages from the system log), or that
    // never end. No configuration lives there.
    let fs = rustix::fs::fstatfs(&fd).map_err(|e| io(e.into()))?;
    if let Some(name) = kernel_fs(fs.f_type as i64) {
        return Err(FileError::Kernel {
            path: path.to_path_buf(),
            fs: name,
        });
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > max {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size,
            max,
        });
    }
    // The size said is only a hint (procfs files say 0, a file may grow): read at most
    // one byte more than allowed.
    let cap = usize::try_from(max.saturating_add(1)).unwrap_or(usize::MAX);
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(cap));
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let want = chunk.len().min(cap - data.len());
        match rustix::io::read(&fd, &mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => {
                data.extend_from_slice(&chunk[..n]);
                if data.len() as u64 > max {
                    return Err(FileError::TooLarge {
                        path: path.to_path_buf(),
                        size: data.len() as u64,
                        max,
                    });
                }
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                return Err(FileError::WouldBlock {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io(e.into())),
        }
    }
    Ok(data)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, max: u64) -> Result<String, FileError> {
    let data = read(path, max)?;
    String::from_utf8(data).map_err(|_| FileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.toml");
        std::fs::write(&p, b"x = 1\n").expect("write");
        assert_eq!(read(&p, 6).expect("read"), b"x = 1\n");
        let e = read(&p, 5).expect_err("over");
        assert_eq!(
            e.to_string(),
            format!(
                "refusing {}: 6 bytes, over the limit of 5 bytes",
                p.display()
            )
        );
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
            (dir.path(), "a directory"),
        ] {
            let e = read(path, MAX_CONFIG_BYTES).expect_err("refused");
            assert!(
                matches!(&e, FileError::NotRegular { kind: k, .. } if *k == kind),
                "{path:?}: {e}"
            );
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        // A link to /proc/kmsg (reading it would wait, or take the kernel's messages).
        let kmsg = dir.path().join("kmsg.toml");
        std::os::unix::fs::symlink("/proc/kmsg", &kmsg).expect("symlink");
        let e = read(&kmsg, MAX_CONFIG_BYTES).expect_err("refused");
        assert!(
            matches!(&e, FileError::Kernel { fs: "proc", .. }) || e.io_kind().is_some(),
            "{e}"
        );
        let e = read(Path::new("/proc/self/status"), MAX_CONFIG_BYTES).expect_err("procfs");
        assert!(matches!(&e, FileError::Kernel { fs: "proc", .. }), "{e}");
        let missing = read(&dir.path().join("none"), 10).expect_err("missing");
        assert_eq!(missing.io_kind(), Some(std::io::ErrorKind::NotFound));
    }
}
