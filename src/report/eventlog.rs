//! The JSON-lines event log under the state directory: one `aupwatch_proto::Event` per line
//! (with its `schema_version`; `crates/proto/schema/event.schema.json`), rotated by size
//! (`events.jsonl` → `events.jsonl.1` → …, keeping `keep` old files), so it is bounded.
//! The files are at most mode 0640 (the agent's user, and group `aupwatch` to read) whatever
//! the umask of whoever started the agent: they name processes, users and command lines.

use aupwatch_proto::Event;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The widest mode of an event log file: owner reads and writes, group reads.
const MODE: u32 = 0o640;

#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl EventLog {
    pub fn new(path: &Path, max_bytes: u64, keep: u32) -> EventLog {
        EventLog {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file: None,
            size: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event as a JSON line, rotating first if it would not fit.
    pub fn append(&mut self, event: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => return Err(std::io::Error::other("event log not open")),
        };
        file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(MODE)
            .open(&self.path)?;
        let meta = file.metadata()?;
        // A file created before (by an older agent, or by hand) may be wider than MODE.
        let mode = meta.permissions().mode() & 0o7777;
        if mode & !MODE != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & MODE))?;
        }
        self.size = meta.len();
        self.file = Some(file);
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Tracker;

    fn event() -> Event {
        let mut tracker = Tracker::new("h");
        let finding = crate::detect::Finding {
            signature: "irc.a".into(),
            category: crate::signatures::Category::Irc,
            severity: crate::signatures::Severity::Low,
            description: "d".into(),
            aup: "a".into(),
            process: None,
            interface: Some(crate::detect::InterfaceRef {
                netns: 1,
                name: "wg0".into(),
            }),
            host: false,
            related_pids: vec![],
            sockets: vec![],
            evidence: vec![],
            probe: None,
        };
        let mut events = tracker.update(crate::detect::verdict::roll_up(vec![finding]), &[], 1);
        events.pop().expect("one new event")
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn new_file_is_not_world_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        EventLog::new(&path, 4096, 2)
            .append(&event())
            .expect("append");
        let m = mode(&path);
        assert_eq!(m & !0o640, 0, "events.jsonl is {m:04o}, wider than 0640");
    }

    #[test]
    fn existing_wide_file_is_narrowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        EventLog::new(&path, 4096, 2)
            .append(&event())
            .expect("append");
        assert_eq!(mode(&path), 0o640);
    }

    #[test]
    fn bounded_by_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::new(&path, 4096, 2);
        let mut tracker = Tracker::new("h");
        let finding = crate::detect::Finding {
            signature: "irc.a".into(),
            category: crate::signatures::Category::Irc,
            severity: crate::signatures::Severity::Low,
            description: "d".repeat(300),
            aup: "a".into(),
            process: None,
            interface: Some(crate::detect::InterfaceRef {
                netns: 1,
                name: "wg0".into(),
            }),
            host: false,
            related_pids: vec![],
            sockets: vec![],
            evidence: vec![],
            probe: None,
        };
        for i in 0..200u64 {
            let found = if i % 2 == 0 {
                vec![finding.clone()]
            } else {
                vec![]
            };
            for e in tracker.update(crate::detect::verdict::roll_up(found), &[], i) {
                log.append(&e).expect("append");
            }
        }
        let mut files: Vec<String> = std::fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            vec!["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
        );
        for f in &files {
            let text = std::fs::read_to_string(dir.path().join(f)).expect("read");
            assert!(text.len() <= 4096, "{f} is {} bytes", text.len());
            for line in text.lines() {
                let e: Event = serde_json::from_str(line).expect("each line is an event");
                assert_eq!(e.schema_version, aupwatch_proto::SCHEMA_VERSION);
                assert!(matches!(
                    e.kind,
                    aupwatch_proto::EventKind::New | aupwatch_proto::EventKind::Resolved
                ));
            }
        }
    }
}
