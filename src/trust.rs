//! Which files the agent trusts to tell it what to do: its config file, its signature
//! directories and the files in them. One that a user other than root (or the agent's own
//! user) can change would let that user blind the agent or widen its exceptions, so it is
//! refused, naming the path and what is wrong with it (like ntpd-rs does with its config).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file or directory the agent will not take orders from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("refusing {path}: mode {mode:04o} lets group or others write it (chmod go-w)")]
    Writable { path: PathBuf, mode: u32 },
    #[error("refusing {path}: owned by uid {uid}, not root (mode {mode:04o}; chown root)")]
    Owner { path: PathBuf, uid: u32, mode: u32 },
}

impl Untrusted {
    /// What is wrong, without the path (for errors that name the file already).
    pub fn why(&self) -> String {
        match self {
            Untrusted::Writable { mode, .. } => {
                format!("refused: mode {mode:04o} lets group or others write it (chmod go-w)")
            }
            Untrusted::Owner { uid, mode, .. } => {
                format!("refused: owned by uid {uid}, not root (mode {mode:04o}; chown root)")
            }
        }
    }
}

/// Whether `uid` and `mode` (of `path`) are trusted by a process running as `own_uid`:
/// owned by root or by `own_uid`, and not writable by group or others. Pure, for tests.
pub fn judge(path: &Path, uid: u32, mode: u32, own_uid: u32) -> Result<(), Untrusted> {
    let mode = mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Untrusted::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    if uid != 0 && uid != own_uid {
        return Err(Untrusted::Owner {
            path: path.to_path_buf(),
            uid,
            mode,
        });
    }
    Ok(())
}

/// Checks `path` (following a symbolic link to what it names) against [`judge`] for this
/// process's effective uid. A path that cannot be read is not judged here: reading it
/// reports that.
pub fn check(path: &Path) -> Result<(), Untrusted> {
    match std::fs::metadata(path) {
        Ok(m) => judge(path, m.uid(), m.mode(), rustix::process::geteuid().as_raw()),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_or_own_and_not_group_or_world_writable() {
        let p = Path::new("/etc/aupwatch/agent.toml");
        assert_eq!(judge(p, 0, 0o100644, 0), Ok(()));
        assert_eq!(judge(p, 0, 0o040755, 999), Ok(()));
        assert_eq!(judge(p, 999, 0o100600, 999), Ok(()), "the agent's own user");
        let e = judge(p, 0, 0o100666, 0).expect_err("world-writable");
        assert_eq!(
            e.to_string(),
            "refusing /etc/aupwatch/agent.toml: mode 0666 lets group or others write it (chmod go-w)"
        );
        assert!(matches!(
            judge(p, 0, 0o100664, 0),
            Err(Untrusted::Writable { mode: 0o664, .. })
        ));
        assert!(matches!(
            judge(p, 0, 0o041777, 0),
            Err(Untrusted::Writable { mode: 0o1777, .. })
        ));
        let e = judge(p, 1000, 0o100644, 0).expect_err("another user's");
        assert_eq!(
            e.to_string(),
            "refusing /etc/aupwatch/agent.toml: owned by uid 1000, not root (mode 0644; chown root)"
        );
    }

    #[test]
    fn a_world_writable_file_on_disk_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("agent.toml");
        std::fs::write(&f, "").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(check(&f), Ok(()));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(matches!(
            check(&f),
            Err(Untrusted::Writable { mode: 0o666, .. })
        ));
        assert_eq!(check(&dir.path().join("missing")), Ok(()));
    }
}
