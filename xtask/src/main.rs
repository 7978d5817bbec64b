//! Build tasks that need no place in the shipped binaries.
//!
//! - `cargo xtask docs [DIR]`: man pages (one per command and subcommand, gzipped) and bash,
//!   zsh and fish completions for `aupwatch` and `aupwatch-collector`, generated from their
//!   clap definitions, into DIR (default `target/assets`), where the `.deb`s' `assets` expect
//!   them.
//! - `cargo xtask deb`: `docs`, then `cargo deb` for both packages (target/debian/*.deb).
//!
//! The clap definitions are included by path: they depend only on clap and std, so the
//! generators (clap_mangen, clap_complete) never become dependencies of the binaries.

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use flate2::{Compression, GzBuilder};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(dead_code)] // the fields are read by the binary, not here
#[path = "../../src/cli/args.rs"]
mod agent;

#[allow(dead_code)]
#[path = "../../crates/collector/src/cli/args.rs"]
mod collector;

/// Where `docs` writes by default, relative to the workspace root; the `assets` of both
/// `[package.metadata.deb]` tables name files under it.
const ASSETS: &str = "target/assets";

fn main() -> Result<()> {
    let root = workspace_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["docs"] => docs(&root.join(ASSETS)),
        ["docs", dir] => docs(Path::new(dir)),
        ["deb"] => {
            docs(&root.join(ASSETS))?;
            for package in ["aupwatch", "aupwatch-collector"] {
                cargo_deb(&root, package)?;
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask docs [DIR] | cargo xtask deb"),
    }
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Man pages and completions of both binaries into `dir`/{man,completions}.
fn docs(dir: &Path) -> Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let mut pages = 0;
    for cmd in [agent::Cli::command(), collector::Cli::command()] {
        let name = cmd.get_name().to_string();
        pages += man_pages(cmd.clone(), &name, &man)?;
        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let path = completions.join(file);
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
            std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
        }
    }
    eprintln!(
        "xtask: {pages} man pages in {}, completions in {}",
        man.display(),
        completions.display()
    );
    Ok(())
}

/// One page for `cmd` (named `name`, e.g. `aupwatch-signatures-check`) and one for each of its
/// subcommands, recursively; returns how many were written.
fn man_pages(cmd: clap::Command, name: &str, dir: &Path) -> Result<usize> {
    // clap takes `&'static str` names (without its `string` feature, which would then be
    // unified into the binaries' clap in a workspace build); a build tool may leak them.
    let mut cmd = cmd
        .name(name.to_string().leak() as &'static str)
        .bin_name(name.replace('-', " ").leak() as &'static str)
        .disable_help_subcommand(true);
    cmd.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(format!("aupwatch {}", env!("CARGO_PKG_VERSION")))
        .manual("aupwatch manual")
        .render(&mut page)
        .with_context(|| format!("render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1.gz"));
    // gzip -9n: the best compression, no name and no time stamp (reproducible; lintian).
    let mut gz = GzBuilder::new().write(Vec::new(), Compression::best());
    gz.write_all(&page)?;
    std::fs::write(&path, gz.finish()?).with_context(|| format!("write {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" || sub.is_hide_set() {
            continue;
        }
        written += man_pages(sub.clone(), &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(written)
}

fn cargo_deb(root: &Path, package: &str) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["deb", "--locked", "-p", package])
        .status()
        .context("run `cargo deb` (install it with `cargo install cargo-deb --locked`)")?;
    if !status.success() {
        bail!("cargo deb -p {package} failed: {status}");
    }
    Ok(())
}
