//! What one run prepares, once, for every evaluation: the inputs, each process's sockets,
//! and per process its names and command line prepared for matching and the set's name globs
//! and command-line regexes matched in one pass each; and, with a [`Cache`], those matches
//! and the signatures a process's unchanging facts rule out, moved in from the cache and
//! back.

use super::cache::{self, Bits, Cache};
use super::history::{self, History};
use crate::inventory::{Process, Snapshot, Socket};
use crate::signatures::{SignatureSet, Subject};
use std::cell::OnceCell;
use std::collections::HashMap;

/// The inputs shared by every evaluation in one run.
pub(super) struct Ctx<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) history: &'a History,
    pub(super) set: &'a SignatureSet,
    /// Socket indices per owning pid.
    sockets_of: HashMap<i32, Vec<usize>>,
    /// Per process (same index as `snap.processes`), computed when first needed.
    pub(super) per: Vec<PerProc<'a>>,
}

/// What one run prepares for one process, once, when first needed.
#[derive(Default)]
pub(super) struct PerProc<'a> {
    /// The command line joined by spaces.
    cmdline: OnceCell<String>,
    /// comm, exe basename and argv[0] basename, prepared for glob matching.
    names: OnceCell<[(&'static str, Option<globset::Candidate<'a>>); 3]>,
    /// The executable path, prepared likewise.
    exe: OnceCell<Option<globset::Candidate<'a>>>,
    /// The name predicates that match and which name matched first (0 comm, 1 exe
    /// basename, 2 argv[0] basename), from one pass of the set's name globs.
    name_hits: OnceCell<Vec<(usize, u8)>>,
    /// Which `cmdline` regexes of the set match, from one pass of the whole set.
    cmdline_hits: OnceCell<Bits>,
    /// Signatures the process may match (from the cache); `None`: all.
    pub(super) possible: Option<Bits>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(snap: &'a Snapshot, history: &'a History, set: &'a SignatureSet) -> Ctx<'a> {
        let mut sockets_of: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, s) in snap.sockets.iter().enumerate() {
            for &pid in &s.owners {
                sockets_of.entry(pid).or_default().push(i);
            }
        }
        Ctx {
            snap,
            history,
            set,
            sockets_of,
            per: (0..snap.processes.len())
                .map(|_| PerProc::default())
                .collect(),
        }
    }

    pub(super) fn cmdline(&self, pi: usize) -> &str {
        self.per[pi]
            .cmdline
            .get_or_init(|| self.snap.processes[pi].cmdline_joined())
    }

    pub(super) fn names(&self, pi: usize) -> &[(&'static str, Option<globset::Candidate<'a>>); 3] {
        self.per[pi].names.get_or_init(|| {
            let p: &'a Process = &self.snap.processes[pi];
            [
                ("comm", Some(globset::Candidate::new(p.comm.as_str()))),
                (
                    "exe basename",
                    p.exe_basename().map(globset::Candidate::new),
                ),
                (
                    "argv[0] basename",
                    p.argv0_basename().map(globset::Candidate::new),
                ),
            ]
        })
    }

    pub(super) fn exe(&self, pi: usize) -> Option<&globset::Candidate<'a>> {
        self.per[pi]
            .exe
            .get_or_init(|| {
                let p: &'a Process = &self.snap.processes[pi];
                p.exe.as_deref().map(globset::Candidate::new)
            })
            .as_ref()
    }

    /// The set's name predicates matching process `pi`, from one pass of all its globs
    /// (`None`: the set has no combined glob set; try each list on its own).
    pub(super) fn name_hits(&self, pi: usize) -> Option<&[(usize, u8)]> {
        if let Some(hits) = self.per[pi].name_hits.get() {
            return Some(hits);
        }
        let globs = self.set.names()?;
        let p = &self.snap.processes[pi];
        let mut found = Vec::new();
        let mut hits: Vec<(usize, u8)> = Vec::new();
        for (slot, name) in [Some(p.comm.as_str()), p.exe_basename(), p.argv0_basename()]
            .into_iter()
            .enumerate()
        {
            let Some(name) = name else { continue };
            found.clear();
            globs.matches_into(name, &mut found)?;
            for &g in &found {
                let pred = globs.owner[g];
                if !hits.iter().any(|(p, _)| *p == pred) {
                    hits.push((pred, slot as u8));
                }
            }
        }
        Some(self.per[pi].name_hits.get_or_init(|| hits))
    }

    /// Whether the set's `index`th command-line regex matches process `pi`, from one pass
    /// of the whole set (`None`: the set has no combined regex set).
    pub(super) fn cmdline_hit(&self, pi: usize, index: usize) -> Option<bool> {
        let rs = self.set.cmdlines()?;
        let bits = self.per[pi].cmdline_hits.get_or_init(|| {
            let mut bits = Bits::new(rs.len());
            for i in rs.matches(self.cmdline(pi)).iter() {
                bits.set(i);
            }
            bits
        });
        Some(bits.get(index))
    }

    pub(super) fn sockets(&self, pid: i32) -> impl Iterator<Item = (usize, &'a Socket)> + '_ {
        let snap = self.snap;
        self.sockets_of
            .get(&pid)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(move |&i| (i, &snap.sockets[i]))
    }

    /// Fills each process's text matches and possible signatures from `cache` where the
    /// process did not change, and computes them where it did. The entries move into this
    /// run (no copies); [`Ctx::return_to`] moves them back, so that `cache` then holds
    /// exactly the processes of this snapshot. Returns (key, fingerprint, process index) of
    /// each.
    pub(super) fn use_cache(
        &mut self,
        cache: &mut Cache,
    ) -> Vec<(history::ProcessKey, u64, usize)> {
        cache.for_set(&self.set.digest);
        let mut old = std::mem::take(&mut cache.entries);
        let mut taken = Vec::with_capacity(self.snap.processes.len());
        // What this run learnt, by fingerprint: a process with the same facts as one already
        // judged (workers of one server, forked children) gets the same answers — they are a
        // function of exactly what the fingerprint covers, as the cache's entries are. On a
        // cold scan this is most processes.
        let mut learnt: HashMap<u64, usize> = HashMap::new();
        for (pi, p) in self.snap.processes.iter().enumerate() {
            if p.kernel_thread {
                continue;
            }
            let k = history::key(p);
            let fingerprint = cache.fingerprint(p);
            let possible = match old.remove(&k) {
                Some(e) if e.fingerprint == fingerprint => {
                    let per = &mut self.per[pi];
                    let _ = per.name_hits.set(e.name_hits);
                    let _ = per.cmdline_hits.set(e.cmdline_hits);
                    e.possible
                }
                _ => match learnt.get(&fingerprint).copied() {
                    Some(twin) => self.copy_learnt(twin, pi),
                    None => {
                        learnt.insert(fingerprint, pi);
                        self.learn(pi)
                    }
                },
            };
            self.per[pi].possible = Some(possible);
            taken.push((k, fingerprint, pi));
        }
        taken
    }

    /// What process `twin` (judged in this run, with the same fingerprint) learnt, for
    /// process `pi`: its text matches and possible signatures.
    fn copy_learnt(&mut self, twin: usize, pi: usize) -> Bits {
        let (name_hits, cmdline_hits, possible) = {
            let t = &self.per[twin];
            (
                t.name_hits.get().cloned(),
                t.cmdline_hits.get().cloned(),
                t.possible.clone(),
            )
        };
        let per = &mut self.per[pi];
        if let Some(h) = name_hits {
            let _ = per.name_hits.set(h);
        }
        if let Some(b) = cmdline_hits {
            let _ = per.cmdline_hits.set(b);
        }
        match possible {
            Some(p) => p,
            None => self.learn(pi),
        }
    }

    /// Moves what [`Ctx::use_cache`] took back into `cache`.
    pub(super) fn return_to(
        mut self,
        cache: &mut Cache,
        taken: Vec<(history::ProcessKey, u64, usize)>,
    ) {
        cache.entries = taken
            .into_iter()
            .map(|(k, fingerprint, pi)| {
                let per = &mut self.per[pi];
                let entry = cache::Entry {
                    fingerprint,
                    name_hits: per.name_hits.take().unwrap_or_default(),
                    cmdline_hits: per.cmdline_hits.take().unwrap_or_default(),
                    possible: per.possible.take().unwrap_or_default(),
                };
                (k, entry)
            })
            .collect();
    }

    /// What the unchanging facts of process `pi` say, for the cache: the signatures they do
    /// not rule out ([`Ctx::static_match`], `process.rs`). Also fills the process's text
    /// matches, which the cache keeps too.
    pub(super) fn learn(&self, pi: usize) -> Bits {
        let _ = self.name_hits(pi);
        let _ = self.cmdline_hit(pi, 0);
        let mut possible = Bits::new(self.set.signatures.len());
        for (si, sig) in self.set.signatures.iter().enumerate() {
            if sig.subject != Subject::Process {
                continue;
            }
            let verdict = cache::decided(&sig.matcher, &mut |pred| self.static_match(pi, pred));
            if verdict != Some(false) {
                possible.set(si);
            }
        }
        possible
    }
}
