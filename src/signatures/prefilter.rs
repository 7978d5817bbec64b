//! Which `cmdline` regexes of a set can match a command line, cheaply: each regex's
//! *factors* — strings at least one of which every text it matches contains — are found by
//! one Aho-Corasick pass over the command line, and only the regexes whose factors occur
//! (plus the few that have none) are run, each compiled on first use.
//!
//! Most command lines contain no factor of any bundled regex, so a cold scan runs no regex
//! on them, and a one-shot scan compiles only the regexes some process could match instead
//! of one `RegexSet` of all of them (which also made every distinct command line build
//! lazy-DFA states for every pattern at once).
//!
//! Factors are computed on the parsed regex (`regex-syntax`, the parser `regex` uses, with
//! the same defaults), ASCII-lowercased, and searched in the ASCII-lowercased command line:
//! if a text contains a string, its lowercasing contains the string's lowercasing. A
//! case-insensitive letter counts as its lowercase letter only when its class is exactly
//! that letter's ASCII cases: `(?i)k` is also the Kelvin sign, which lowercasing does not
//! turn into `k`, so such a class ends a factor instead.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Factors shorter than this make a regex run on most command lines: it then counts as
/// having none.
const MIN_FACTOR: usize = 2;
/// More alternatives than this: no factors (the automaton stays small).
const MAX_FACTORS: usize = 64;

/// The factors of `pattern`, lowercased; `None` when it has no usable ones (or does not
/// parse, which loading rules out).
pub(super) fn factors(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let f = of(&hir)?;
    (f.iter().all(|s| s.len() >= MIN_FACTOR)).then_some(f)
}

/// Strings at least one of which any match of `h` contains.
fn of(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Literal(lit) => Some(vec![lit.0.to_ascii_lowercase()]),
        HirKind::Class(_) => one_char(h).map(|c| vec![vec![c]]),
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Repetition(r) if r.min >= 1 => of(&r.sub),
        HirKind::Repetition(_) => None,
        HirKind::Capture(c) => of(&c.sub),
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(of(a)?);
            }
            all.sort();
            all.dedup();
            (all.len() <= MAX_FACTORS).then_some(all)
        }
        HirKind::Concat(items) => {
            // Runs of single characters make literals; any other item may have factors of
            // its own. The best candidate: the longest shortest string, then the fewest.
            let mut candidates: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut run: Vec<u8> = Vec::new();
            for item in items {
                match item.kind() {
                    HirKind::Literal(lit) => run.extend(lit.0.to_ascii_lowercase()),
                    HirKind::Class(_) if one_char(item).is_some() => {
                        run.extend(one_char(item));
                    }
                    _ => {
                        if !run.is_empty() {
                            candidates.push(vec![std::mem::take(&mut run)]);
                        }
                        if let Some(f) = of(item) {
                            candidates.push(f);
                        }
                    }
                }
            }
            if !run.is_empty() {
                candidates.push(vec![run]);
            }
            candidates.into_iter().max_by_key(|c| {
                (
                    c.iter().map(Vec::len).min().unwrap_or(0),
                    std::cmp::Reverse(c.len()),
                )
            })
        }
    }
}

/// The one lowercase ASCII byte a class stands for in a lowercased text: a class of one
/// ASCII character, or of exactly the two ASCII cases of one letter.
fn one_char(h: &Hir) -> Option<u8> {
    let HirKind::Class(class) = h.kind() else {
        return None;
    };
    let mut chars: Vec<u32> = Vec::new();
    match class {
        Class::Unicode(c) => {
            for r in c.ranges() {
                for ch in u32::from(r.start())..=u32::from(r.end()) {
                    chars.push(ch);
                    if chars.len() > 2 {
                        return None;
                    }
                }
            }
        }
        Class::Bytes(c) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    chars.push(u32::from(b));
                    if chars.len() > 2 {
                        return None;
                    }
                }
            }
        }
    }
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| u8::try_from(c).ok().filter(u8::is_ascii))
        .collect::<Option<_>>()?;
    match bytes.as_slice() {
        [b] => Some(b.to_ascii_lowercase()),
        [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(b) => {
            Some(a.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// A set's `cmdline` regexes behind their factors.
#[derive(Debug, Clone)]
pub struct CmdlineFilter {
    /// One pattern per factor; `owner[i]` is the regex (set index) of factor `i`.
    factors: Option<aho_corasick::AhoCorasick>,
    owner: Vec<usize>,
    /// Regexes without factors: run on every command line.
    always: Vec<usize>,
    len: usize,
}

impl CmdlineFilter {
    pub(super) fn new(patterns: &[String]) -> CmdlineFilter {
        let mut lits: Vec<Vec<u8>> = Vec::new();
        let mut owner = Vec::new();
        let mut always = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match factors(p) {
                Some(f) => {
                    for s in f {
                        lits.push(s);
                        owner.push(i);
                    }
                }
                None => always.push(i),
            }
        }
        let factors = if lits.is_empty() {
            None
        } else {
            match aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::Standard)
                .build(&lits)
            {
                Ok(ac) => Some(ac),
                Err(_) => {
                    // Cannot happen for a few hundred short strings; if it did, every regex
                    // runs on every command line.
                    always = (0..patterns.len()).collect();
                    owner.clear();
                    None
                }
            }
        };
        CmdlineFilter {
            factors,
            owner,
            always,
            len: patterns.len(),
        }
    }

    /// How many regexes have no factors (run on every command line).
    pub fn unfiltered(&self) -> usize {
        self.always.len()
    }

    /// Calls `candidate` with the index of every regex that may match `line` (each once,
    /// in no particular order); the others cannot match it.
    pub fn candidates(&self, line: &str, mut candidate: impl FnMut(usize)) {
        for &i in &self.always {
            candidate(i);
        }
        let Some(ac) = &self.factors else { return };
        let lower;
        let text: &[u8] = if line.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = line.to_ascii_lowercase();
            lower.as_bytes()
        } else {
            line.as_bytes()
        };
        let mut seen = vec![false; self.len];
        for m in ac.find_overlapping_iter(text) {
            let i = self.owner[m.pattern().as_usize()];
            if !std::mem::replace(&mut seen[i], true) {
                candidate(i);
            }
        }
    }
}
