//! What detection keeps between runs for processes that did not change: which name globs
//! and command-line regexes of the set they match, and which signatures their unchanging
//! facts already rule out. A steady-state scan then re-judges only what can change (sockets,
//! CPU, scheduling) and only for signatures still possible.
//!
//! Still pure: the cache is an input and an output of [`super::run_cached`], and the findings
//! are exactly those of [`super::run`] (a test holds both to that).

use super::history::ProcessKey;
use crate::inventory::Process;
use crate::signatures::{Match, Predicate};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// A small fixed-size bit set, indexed from 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Bits(Vec<u64>);

impl Bits {
    pub(super) fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }

    pub(super) fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub(super) fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Per process: what a run learnt from the facts that cannot change without the process
/// changing (names, executable, command line, user, executable facts).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub fingerprint: u64,
    pub name_hits: Vec<(usize, u8)>,
    pub cmdline_hits: Bits,
    /// Signatures (by index in the set) the process may still match.
    pub possible: Bits,
}

/// Detection's memory between runs; give [`super::run_cached`] the same one every scan.
#[derive(Debug, Default)]
pub struct Cache {
    /// Digest of the set the entries were computed for.
    digest: String,
    /// Keyed randomly per cache: the fingerprints hash attacker-chosen text.
    state: RandomState,
    pub(super) entries: HashMap<ProcessKey, Entry>,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Number of processes remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything when the set changed.
    pub(super) fn for_set(&mut self, digest: &str) {
        if self.digest != digest {
            self.entries.clear();
            self.digest = digest.to_string();
        }
    }

    /// A hash of every fact of `p` the cached results depend on.
    pub(super) fn fingerprint(&self, p: &Process) -> u64 {
        let mut h = self.state.build_hasher();
        p.comm.hash(&mut h);
        p.exe.hash(&mut h);
        p.exe_deleted.hash(&mut h);
        p.cmdline.hash(&mut h);
        p.uid.hash(&mut h);
        p.user.hash(&mut h);
        p.exe_sha256.hash(&mut h);
        p.exe_strings.hash(&mut h);
        h.finish()
    }
}

/// Three-valued evaluation: `Some(result)` when the static predicates
/// ([`Predicate::is_static`]: those decided by what [`Cache::fingerprint`] covers) decide
/// `m` whatever the others say, `None` when it depends on them.
pub(super) fn decided(
    m: &Match,
    static_result: &mut impl FnMut(&Predicate) -> bool,
) -> Option<bool> {
    match m {
        Match::All(items) => {
            let mut all = Some(true);
            for item in items {
                match decided(item, static_result) {
                    Some(false) => return Some(false),
                    Some(true) => {}
                    None => all = None,
                }
            }
            all
        }
        Match::Any(items) => {
            let mut any = Some(false);
            for item in items {
                match decided(item, static_result) {
                    Some(true) => return Some(true),
                    Some(false) => {}
                    None => any = None,
                }
            }
            any
        }
        Match::Not(inner) => decided(inner, static_result).map(|b| !b),
        Match::Pred(p) if p.is_static() => Some(static_result(p)),
        Match::Pred(_) => None,
    }
}
