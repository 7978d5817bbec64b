//! The fuzz targets' inputs kept in the repository, run through the same entry points
//! (`aupwatch::fuzzing`) in the normal test suite: `fuzz/seeds/<target>/` (the corpora the
//! runs start from) and `fuzz/regressions/<target>/` (every input a run found crashing, kept
//! once fixed). A panic fails the test; each target must have inputs, so a renamed
//! directory cannot make this pass by running nothing.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_stored_fuzz_input_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in aupwatch::fuzzing::TARGETS {
        let mut all = inputs(&root.join("seeds").join(name));
        assert!(!all.is_empty(), "fuzz/seeds/{name}/ has no input");
        all.extend(inputs(&root.join("regressions").join(name)));
        for (path, bytes) in &all {
            let r = std::panic::catch_unwind(|| target(bytes));
            assert!(r.is_ok(), "{name}: {path} panics");
        }
    }
}

/// The seeds are what they say: a real signature file loads, the shipped example config
/// parses. (The targets ignore results; this checks the seeds reach past the first check.)
#[test]
fn the_seeds_are_valid_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let text = std::fs::read_to_string(root.join("signatures/irc.toml")).expect("seed");
    aupwatch::signatures::load_sources(&[("irc.toml".into(), text)]).expect("loads");
    let text = std::fs::read_to_string(root.join("config/agent.toml.example")).expect("seed");
    aupwatch::config::parse("agent.toml", &text).expect("parses");
}
