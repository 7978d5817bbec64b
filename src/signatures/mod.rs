//! Signatures: TOML rule files → a compiled, validated [`SignatureSet`].
//!
//! Loading reports every error of every file (file, line, signature id), never just the
//! first, and a set with errors is never returned. This module reads files only in
//! [`load_dir`]; everything else works on text, so each edge case is a one-line test.

mod compile;
mod model;

pub(crate) use compile::parse_duration;
use compile::Check;

pub use model::{
    BindFilter, Category, CmdlineRegex, ConnFilter, GlobList, Match, NameGlobs, PeerCount, PortSet,
    Predicate, ProbeKind, ProtocolFilter, Severity, Signature, SignatureSet, SocketFilter,
    StateFilter, Subject,
};

use std::path::{Path, PathBuf};

/// One problem in one signature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file, as given (a bundled pack is named `<bundled>/NAME.toml`).
    pub file: String,
    /// 1-based line, when the problem has a place.
    pub line: Option<usize>,
    /// The signature the problem is in, when known.
    pub id: Option<String>,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(id) = &self.id {
            write!(f, "signature {id}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found while loading a set.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} error(s) in signatures:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct LoadErrors(pub Vec<LoadError>);

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot read signature directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no *.toml signature files in {0}")]
    Empty(PathBuf),
    #[error(transparent)]
    Invalid(#[from] LoadErrors),
}

/// Every byte of a bundled pack is stored XORed with this (see `build.rs`): the packs list
/// miner indicator strings, which the binary must not contain in the clear.
const BUNDLE_MASK: u8 = 0xA5;

/// The packs compiled into the binary: `(file name, masked contents)`.
const BUNDLED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled packs as `(name, text)` sources, named `<bundled>/FILE.toml` in errors.
pub fn bundled_sources() -> Vec<(String, String)> {
    BUNDLED
        .iter()
        .map(|(name, masked)| {
            let bytes: Vec<u8> = masked.iter().map(|b| b ^ BUNDLE_MASK).collect();
            (
                format!("<bundled>/{name}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect()
}

/// Loads the packs compiled into the binary. Their regexes and glob sets are not compiled
/// here but on first use ([`Check::Bundled`]): the packs cannot change after the build, and
/// [`check_bundled`] (`signatures check`) and a unit test compile every one of them.
pub fn load_bundled() -> Result<SignatureSet, LoadErrors> {
    load_checked(&bundled_sources(), Check::Bundled)
}

/// Loads the bundled packs compiling every regex and glob list, as files read at run time
/// are: what `signatures check` runs without a directory.
pub fn check_bundled() -> Result<SignatureSet, LoadErrors> {
    load_sources(&bundled_sources())
}

/// Loads every `*.toml` file directly in `dir`, in file-name order.
pub fn load_dir(dir: &Path) -> Result<SignatureSet, DirError> {
    let sources = read_dir_sources(dir)?;
    Ok(load_sources(&sources)?)
}

/// The `*.toml` files directly in `dir`, in file-name order, as `(path, text)`.
fn read_dir_sources(dir: &Path) -> Result<Vec<(String, String)>, DirError> {
    let rd = std::fs::read_dir(dir).map_err(|source| DirError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| DirError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        // Every `*.toml` entry, whatever it is: one that is not a regular file (a FIFO, a
        // link to a device or to /proc/kmsg) is refused by name when read, not skipped.
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(DirError::Empty(dir.to_path_buf()));
    }
    paths.sort();
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match crate::safefile::read_to_string(&path, crate::safefile::MAX_SIGNATURE_FILE_BYTES) {
            Ok(text) => sources.push((path.display().to_string(), text)),
            Err(e) => errors.push(LoadError {
                file: path.display().to_string(),
                line: None,
                id: None,
                message: e.why(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(LoadErrors(errors).into())
    }
}

/// Loads a set from `(file name, text)` pairs. Ids must be unique across all of them.
pub fn load_sources(sources: &[(String, String)]) -> Result<SignatureSet, LoadErrors> {
    load_checked(sources, Check::Compile)
}

fn load_checked(sources: &[(String, String)], check: Check) -> Result<SignatureSet, LoadErrors> {
    let signatures = compile_layer(sources, check)?;
    within_budget(&signatures, sources)?;
    Ok(SignatureSet::new(signatures, sources))
}

/// The agent's signatures: the set, and which shipped ids a local file replaced.
#[derive(Debug)]
pub struct Layered {
    pub set: SignatureSet,
    /// Every shipped id a local signature replaced, sorted: said out loud by `config check`,
    /// the agent's start-up log and its status, since a replacement can match nothing.
    pub overridden: Vec<String>,
}

/// The agent's set: the shipped signatures (`shipped_dir`, or the bundled packs) plus the
/// `*.toml` files of `local_dir` when it exists and has any. A local signature whose id is
/// a shipped one replaces it (and is listed in [`Layered::overridden`]). Errors of both
/// layers are reported together. Both directories and their `*.toml` files must be trusted
/// ([`crate::trust`]: not writable by group or others, owned by root or this user), else
/// nothing is loaded and every such path is an error.
pub fn load_layered(
    shipped_dir: Option<&Path>,
    local_dir: Option<&Path>,
) -> Result<Layered, DirError> {
    let local_dir = local_dir.filter(|d| d.is_dir());
    let untrusted: Vec<LoadError> = shipped_dir
        .into_iter()
        .chain(local_dir)
        .flat_map(untrusted_in)
        .collect();
    if !untrusted.is_empty() {
        return Err(LoadErrors(untrusted).into());
    }
    let (shipped, check): (Vec<(String, String)>, Check) = match shipped_dir {
        Some(d) => (read_dir_sources(d)?, Check::Compile),
        None => (bundled_sources(), Check::Bundled),
    };
    let local = match local_dir {
        Some(d) => match read_dir_sources(d) {
            Ok(s) => s,
            Err(DirError::Empty(_)) => Vec::new(),
            Err(e) => return Err(e),
        },
        None => Vec::new(),
    };
    let base = compile_layer(&shipped, check);
    let over = compile_layer(&local, Check::Compile);
    let (mut base, over) = match (base, over) {
        (Ok(b), Ok(o)) => (b, o),
        (b, o) => {
            let mut errors = Vec::new();
            for r in [b, o] {
                if let Err(LoadErrors(e)) = r {
                    errors.extend(e);
                }
            }
            return Err(LoadErrors(errors).into());
        }
    };
    let replaced: std::collections::HashSet<&str> = over.iter().map(|s| s.id.as_str()).collect();
    let mut overridden: Vec<String> = base
        .iter()
        .filter(|s| replaced.contains(s.id.as_str()))
        .map(|s| s.id.clone())
        .collect();
    overridden.sort();
    base.retain(|s| !replaced.contains(s.id.as_str()));
    base.extend(over);
    let all: Vec<(String, String)> = shipped.into_iter().chain(local).collect();
    within_budget(&base, &all)?;
    Ok(Layered {
        set: SignatureSet::new(base, &all),
        overridden,
    })
}

/// `dir` and its `*.toml` files that the agent must not trust, one error each.
fn untrusted_in(dir: &Path) -> Vec<LoadError> {
    let mut paths = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        paths.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml")),
        );
    }
    paths.sort();
    paths
        .iter()
        .filter_map(|p| crate::trust::check(p).err())
        .map(|e| LoadError {
            file: match &e {
                crate::trust::Untrusted::Writable { path, .. }
                | crate::trust::Untrusted::Owner { path, .. } => path.display().to_string(),
            },
            line: None,
            id: None,
            message: e.why(),
        })
        .collect()
}

/// Compiles one layer of sources: every signature, or every error (duplicate ids included).
/// Most signatures in one set. Every process is judged against each signature its cached
/// facts do not rule out, so the per-process cost of a scan grows with the set.
pub const MAX_SIGNATURES: usize = 2_000;
/// Most `cmdline` regexes in one set (one combined `RegexSet` a process's command line runs
/// through; 10,000 made a scan take 40 s).
pub const MAX_CMDLINE_REGEXES: usize = 1_000;
/// Most `name` globs in one set (one combined `GlobSet` for every name of every process).
pub const MAX_NAME_GLOBS: usize = 10_000;

/// Refuses a set over the bounds above, with the numbers, so that `signatures check` and
/// the agent refuse what would make each scan take seconds and gigabytes.
fn within_budget(signatures: &[Signature], sources: &[(String, String)]) -> Result<(), LoadErrors> {
    let mut regexes = 0;
    let mut globs = 0;
    for s in signatures {
        s.matcher.visit(&mut |p| match p {
            Predicate::Cmdline { .. } => regexes += 1,
            Predicate::Name { globs: g, .. } => globs += g.patterns.len(),
            Predicate::Exe(_)
            | Predicate::Sha256(_)
            | Predicate::User(_)
            | Predicate::Listen(_)
            | Predicate::Remote { .. }
            | Predicate::Peers { .. }
            | Predicate::Cpu { .. }
            | Predicate::Policy(_)
            | Predicate::Nice { .. }
            | Predicate::Threads { .. }
            | Predicate::ExeDeleted(_)
            | Predicate::ExeStrings { .. }
            | Predicate::CommMismatch(_)
            | Predicate::Multicast
            | Predicate::Interface(_)
            | Predicate::MulticastGroups { .. }
            | Predicate::Traffic { .. }
            | Predicate::Preload
            | Predicate::HiddenProcesses { .. }
            | Predicate::ProcMounts
            | Predicate::UnlistedTasks { .. }
            | Predicate::HugePages { .. }
            | Predicate::Msr { .. } => {}
        });
    }
    let mut errors = Vec::new();
    let file = match sources {
        [(only, _)] => only.clone(),
        _ => format!("the set ({} files)", sources.len()),
    };
    for (what, n, max) in [
        ("signatures", signatures.len(), MAX_SIGNATURES),
        ("cmdline regexes", regexes, MAX_CMDLINE_REGEXES),
        ("name globs", globs, MAX_NAME_GLOBS),
    ] {
        if n > max {
            errors.push(LoadError {
                file: file.clone(),
                line: None,
                id: None,
                message: format!(
                    "{n} {what}, over the bound of {max} (each scan's cost per process grows with them)"
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LoadErrors(errors))
    }
}

fn compile_layer(sources: &[(String, String)], check: Check) -> Result<Vec<Signature>, LoadErrors> {
    let mut signatures = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in sources {
        compile::file(file, text, check, &mut signatures, &mut errors);
    }
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for sig in &signatures {
        if let Some(first) = seen.insert(&sig.id, &sig.source) {
            let (file, line) = split_source(&sig.source);
            errors.push(LoadError {
                file: file.to_string(),
                line,
                id: Some(sig.id.clone()),
                message: format!("duplicate id, first defined at {first}"),
            });
        }
    }
    if errors.is_empty() {
        Ok(signatures)
    } else {
        Err(LoadErrors(errors))
    }
}

fn split_source(source: &str) -> (&str, Option<usize>) {
    match source.rsplit_once(':') {
        Some((file, line)) => match line.parse() {
            Ok(l) => (file, Some(l)),
            Err(_) => (source, None),
        },
        None => (source, None),
    }
}

#[cfg(test)]
mod tests;
