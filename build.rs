//! Bundles every `signatures/*.toml` pack into the binary, so a bare `aupwatch` works anywhere.
//!
//! The text is stored XOR-masked (`signatures::BUNDLE_MASK`): the packs name the indicator
//! strings that `exe_strings` looks for in executables, and the agent's own binary must not
//! carry them in the clear, or every aupwatch on the host would look like a miner.

use std::fmt::Write as _;
use std::path::Path;

/// Must equal `signatures::BUNDLE_MASK`.
const MASK: u8 = 0xA5;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from("&[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read(path).expect("read signature pack");
        let _ = write!(out, "    ({name:?}, &[");
        for b in text {
            let _ = write!(out, "{},", b ^ MASK);
        }
        let _ = writeln!(out, "]),");
    }
    out.push_str("]\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("bundled.rs");
    std::fs::write(dest, out).expect("write bundled.rs");
}
