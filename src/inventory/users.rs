//! uid → user name, from the passwd file, re-read only when it changes.

use std::collections::HashMap;
use std::path::Path;

/// uid → name from the passwd file, re-read only when the file changes.
#[derive(Debug, Default)]
pub(super) struct Users {
    pub(super) key: Option<(u64, u64, i64, i64, u64)>,
    pub(super) map: HashMap<u32, String>,
    /// Bumped on every reload; starts at 1 so that 0 means "never looked up".
    pub(super) generation: u64,
}

impl Users {
    pub(super) fn refresh(&mut self, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        let key = std::fs::metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()));
        if self.generation > 0 && key.is_some() && key == self.key {
            return;
        }
        match read_passwd(path) {
            Some(map) => {
                self.key = key;
                self.map = map;
            }
            // Unreadable for a moment (being replaced, say): keep the names we had and
            // try again next scan.
            None if self.generation > 0 => return,
            None => self.map.clear(),
        }
        self.generation += 1;
    }
}

/// uid → name from a passwd file; an unreadable file gives an empty map (uids stay numeric).
pub(super) fn read_passwd(path: &Path) -> Option<HashMap<u32, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut users = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) {
            if let Ok(uid) = uid.parse::<u32>() {
                users.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }
    Some(users)
}
