//! The numbers and links of the user-facing documents are checked against the code, so that a
//! README cannot drift from the binary: the signature and category counts, the status
//! example's signature count, the minimum Rust version, and every relative link.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every capture of `pattern`'s first group in `text`; the pattern must occur.
#[track_caller]
fn numbers(text: &str, pattern: &str) -> Vec<usize> {
    let re = regex::Regex::new(pattern).expect("pattern");
    let found: Vec<usize> = re
        .captures_iter(text)
        .map(|c| c[1].parse().expect("a number"))
        .collect();
    assert!(!found.is_empty(), "README.md no longer says /{pattern}/");
    found
}

#[test]
fn readme_counts_are_the_binarys() {
    let set = aupwatch::signatures::load_bundled().expect("the bundled packs load");
    let categories: BTreeSet<String> = set
        .signatures
        .iter()
        .map(|s| s.category.to_string())
        .collect();
    let readme = read("README.md");
    for n in numbers(&readme, r"\b(\d+) bundled signatures\b") {
        assert_eq!(n, set.signatures.len(), "README.md: {n} bundled signatures");
    }
    for n in numbers(&readme, r"\bsignatures: (\d+) \(version") {
        assert_eq!(n, set.signatures.len(), "README.md's status example");
    }
    for n in numbers(&readme, r"\bsignatures in (\d+) categories\b") {
        assert_eq!(n, categories.len(), "README.md: {n} categories");
    }
}

#[test]
fn readme_states_the_minimum_rust_version() {
    let manifest = read("Cargo.toml");
    let version = regex::Regex::new(r#"(?m)^rust-version = "([0-9.]+)""#)
        .expect("pattern")
        .captures(&manifest)
        .map(|c| c[1].to_string())
        .expect("rust-version in Cargo.toml");
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("Rust ≥ {version}**")),
        "README.md must state Rust ≥ {version}"
    );
}

/// Relative links resolve inside the repository; nothing points outside it.
#[test]
fn document_links_stay_in_the_repository() {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").expect("pattern");
    let root = Path::new(ROOT).canonicalize().expect("repository root");
    for doc in [
        "README.md",
        "ARCHITECTURE.md",
        "systemd/README.md",
        "bench/README.md",
        "signatures/README.md",
        "crates/collector/README.md",
    ] {
        let text = read(doc);
        assert!(
            !text.contains("/work/") && !text.contains("../shared"),
            "{doc} names a path outside the repository"
        );
        let dir = Path::new(ROOT).join(doc);
        let dir = dir.parent().expect("a directory");
        for c in link.captures_iter(&text) {
            let target = &c[1];
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with('#')
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or(target);
            let resolved = dir
                .join(path)
                .canonicalize()
                .unwrap_or_else(|e| panic!("{doc}: link {target}: {e}"));
            assert!(
                resolved.starts_with(&root),
                "{doc}: link {target} leaves the repository"
            );
        }
    }
}
