//! The JSON-lines event log under the state directory: one `aupwatch_proto::Event` per line
//! (with its `schema_version`; `crates/proto/schema/event.schema.json`), rotated by size
//! (`events.jsonl` → `events.jsonl.1` → …, keeping `keep` old files), so it is bounded.
//! The files are at most mode 0640 (the agent's user, and group `aupwatch` to read) whatever
//! the umask of whoever started the agent: they name processes, users and command lines.

use aupwatch_proto::bounds::MAX_EVENT_LINE_BYTES;
use aupwatch_proto::Event;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
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

    /// Appends one event as one JSON line, rotating first if it would not fit. The line is
    /// prepared whole (terminal-safe JSON: control and format characters as `\u` escapes,
    /// at most [`MAX_EVENT_LINE_BYTES`]) and written with one `write`; a short or failed
    /// write is cut back off the file, so the log never holds part of a line (a full disk
    /// leaves it as it was, and the event is the caller's to count as dropped).
    pub fn append(&mut self, event: &Event) -> std::io::Result<()> {
        let line = line(event)?;
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
        let written = loop {
            match file.write(&line) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match written {
            Ok(n) if n == line.len() => {
                self.size += n as u64;
                Ok(())
            }
            other => {
                // Cut back what part of the line reached the file; if even that fails, the
                // file is reopened (and its broken tail cut) before the next line.
                if file.set_len(self.size).is_err() {
                    self.file = None;
                }
                Err(match other {
                    Ok(n) => std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("short write ({n} of {} bytes), cut back", line.len()),
                    ),
                    Err(e) => e,
                })
            }
        }
    }

    /// Opens (creating) the log for appending. A last line without its line break (a
    /// crash mid-write, an older agent on a full disk) is cut off first, so the next line
    /// starts a line of its own.
    fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(MODE)
            .open(&self.path)?;
        let meta = file.metadata()?;
        // A file created before (by an older agent, or by hand) may be wider than MODE.
        let mode = meta.permissions().mode() & 0o7777;
        if mode & !MODE != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & MODE))?;
        }
        let len = meta.len();
        let whole = whole_lines(&file, len)?;
        if whole < len {
            file.set_len(whole)?;
        }
        self.size = whole;
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

/// `event` as one line of terminal-safe JSON with its line break, within
/// [`MAX_EVENT_LINE_BYTES`]. The finding is bounded where it is made; what else an event
/// holds (the host name, an exception's words from the config) is cut here if need be.
pub fn line(event: &Event) -> std::io::Result<Vec<u8>> {
    let mut line = super::to_json_vec(event).map_err(std::io::Error::other)?;
    if line.len() >= MAX_EVENT_LINE_BYTES {
        let mut e = event.clone();
        crate::detect::bound::cut(&mut e.host, 256);
        if let Some(x) = &mut e.tracked.excepted {
            for s in [&mut x.reason, &mut x.source] {
                crate::detect::bound::cut(s, 256);
            }
            for s in [&mut x.ticket, &mut x.expires].into_iter().flatten() {
                crate::detect::bound::cut(s, 256);
            }
        }
        line = super::to_json_vec(&e).map_err(std::io::Error::other)?;
        if line.len() >= MAX_EVENT_LINE_BYTES {
            return Err(std::io::Error::other(format!(
                "event of {} bytes is over the line bound of {MAX_EVENT_LINE_BYTES}",
                line.len()
            )));
        }
    }
    line.push(b'\n');
    Ok(line)
}

/// The length of `file`'s leading whole lines: `len` if it is empty or ends in a line
/// break, else up to its last line break (0 if there is none).
fn whole_lines(file: &File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if end == len && chunk.last() == Some(&b'\n') {
            return Ok(len);
        }
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Tracker;

    fn event() -> Event {
        event_described("d")
    }

    /// The `new` event of one interface finding whose description is `description`.
    fn event_described(description: &str) -> Event {
        let mut tracker = Tracker::new("h");
        let finding = crate::detect::Finding {
            signature: "irc.a".into(),
            category: crate::signatures::Category::Irc,
            severity: crate::signatures::Severity::Low,
            description: description.into(),
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

    /// A log whose last line lost its end (a crash, an older agent on a full disk) is cut
    /// back to its last whole line before the next one is written.
    #[test]
    fn a_broken_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let event = event_described("d\u{7f}\u{9b}\u{202e}");
        std::fs::write(&path, b"{\"whole\":1}\n{\"part").expect("write");
        let mut log = EventLog::new(&path, 1 << 20, 1);
        log.append(&event).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "{\"whole\":1}");
        let back: Event = serde_json::from_str(lines[1]).expect("an event");
        assert_eq!(back, event);
        // DEL, C1 and format characters are \u escapes: nothing raw reaches a terminal.
        assert!(lines[1].contains("d\\u007f\\u009b\\u202e"), "{}", lines[1]);
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
