//! Build tasks that need no place in the shipped binaries.
//!
//! - `cargo xtask docs [DIR]`: man pages (one per command and subcommand, gzipped) and bash,
//!   zsh and fish completions for `aupwatch` and `aupwatch-collector`, generated from their
//!   clap definitions, into DIR/BINARY/{man,completions} (DIR: `dist`, git-ignored), where
//!   the `.deb`s' `assets` expect them.
//! - `cargo xtask deb [OPTIONS]`: `docs`, then `cargo deb OPTIONS` for both packages
//!   (target/debian/*.deb). CI passes `--profile dev --strip` (see .ci/run).
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
const ASSETS: &str = "dist";

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
        ["deb", extra @ ..] => {
            docs(&root.join(ASSETS))?;
            for package in ["aupwatch", "aupwatch-collector"] {
                cargo_deb(&root, package, extra)?;
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask docs [DIR] | cargo xtask deb [CARGO-DEB OPTIONS]"),
    }
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// Man pages and completions of both binaries into `dir`/BINARY/{man,completions}.
fn docs(dir: &Path) -> Result<()> {
    let mut pages = 0;
    for cmd in [agent::Cli::command(), collector::Cli::command()] {
        let name = cmd.get_name().to_string();
        let man = dir.join(&name).join("man");
        let completions = dir.join(&name).join("completions");
        for d in [&man, &completions] {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        pages += man_pages(cmd.clone(), &name, &name, &man)?;
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
        "xtask: {pages} man pages and 3 completions for each of 2 binaries in {}",
        dir.display()
    );
    Ok(())
}

/// One page for `cmd` (named `name`, e.g. `aupwatch-signatures-check`, and invoked as
/// `bin_name`, e.g. `aupwatch signatures check`) and one for each of its subcommands,
/// recursively; returns how many were written.
fn man_pages(cmd: clap::Command, name: &str, bin_name: &str, dir: &Path) -> Result<usize> {
    // clap takes `&'static str` names (without its `string` feature, which would then be
    // unified into the binaries' clap in a workspace build); a build tool may leak them.
    let mut cmd = cmd
        .name(name.to_string().leak() as &'static str)
        .bin_name(bin_name.to_string().leak() as &'static str)
        .disable_help_subcommand(true);
    cmd.build();
    if cmd.get_about().is_none() {
        // The NAME line of the page (whatis, apropos) would be empty: lintian bad-whatis-entry.
        bail!("{name} has no about text (a doc comment on its clap definition)");
    }
    let page = render(&cmd).with_context(|| format!("render the man page of {name}"))?;
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
        written += man_pages(
            sub.clone(),
            &format!("{name}-{}", sub.get_name()),
            &format!("{bin_name} {}", sub.get_name()),
            dir,
        )?;
    }
    Ok(written)
}

/// clap_mangen's page, except that the text after the options (clap's `after_help`) gets the
/// section a reader looks for, "EXIT STATUS" or "EXAMPLES", instead of "EXTRA".
fn render(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("aupwatch {}", env!("CARGO_PKG_VERSION")))
        .manual("aupwatch manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        let text = after.to_string();
        let (title, body) = if let Some(rest) = text.strip_prefix("Exit status: ") {
            ("EXIT STATUS", rest.to_string())
        } else if let Some(rest) = text.strip_prefix("Examples:\n") {
            ("EXAMPLES", rest.to_string())
        } else {
            ("EXTRA", text.clone())
        };
        writeln!(page, ".SH \"{title}\"")?;
        if title == "EXAMPLES" {
            // One example per line, as written: no filling.
            writeln!(page, ".nf")?;
            for line in body.lines() {
                writeln!(page, "{}", roff_text(line.trim_start()))?;
            }
            writeln!(page, ".fi")?;
        } else {
            writeln!(page, "{}", roff_text(&body))?;
        }
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    Ok(page)
}

/// Text as a roff line: backslashes escaped, hyphens as minus signs (options copy and paste),
/// and a leading `.` or `'` (a request) defused.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn cargo_deb(root: &Path, package: &str, extra: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["deb", "--locked", "-p", package])
        .args(extra)
        .status()
        .context("run `cargo deb` (install it with `cargo install cargo-deb --locked`)")?;
    if !status.success() {
        bail!("cargo deb -p {package} failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn page(dir: &Path, binary: &str, name: &str) -> String {
        let path = dir.join(binary).join("man").join(format!("{name}.1.gz"));
        let gz = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("a gzip man page");
        text
    }

    /// Every command and subcommand gets a page whose NAME line has a description and whose
    /// SYNOPSIS shows how it is typed; the three completions exist.
    #[test]
    fn docs_cover_every_subcommand() {
        let dir = std::env::temp_dir().join(format!("aupwatch-xtask-{}", std::process::id()));
        docs(&dir).expect("docs");
        let mut expected = 0;
        fn count(cmd: &clap::Command) -> usize {
            1 + cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .map(count)
                .sum::<usize>()
        }
        for (binary, cmd) in [
            ("aupwatch", agent::Cli::command()),
            ("aupwatch-collector", collector::Cli::command()),
        ] {
            expected += count(&cmd);
            let found = std::fs::read_dir(dir.join(binary).join("man"))
                .expect("man dir")
                .count();
            assert_eq!(found, count(&cmd), "{binary}: pages");
            for file in [
                binary.to_string(),
                format!("_{binary}"),
                format!("{binary}.fish"),
            ] {
                assert!(
                    dir.join(binary).join("completions").join(&file).is_file(),
                    "{file}"
                );
            }
        }
        assert!(expected > 30, "{expected} commands");
        let list = page(&dir, "aupwatch-collector", "aupwatch-collector-secret-list");
        assert!(
            list.contains("aupwatch\\-collector\\-secret\\-list \\- List the enroll secrets"),
            "{list}"
        );
        assert!(
            list.contains("\\fBaupwatch\\-collector secret list\\fR"),
            "{list}"
        );
        let status = page(&dir, "aupwatch", "aupwatch-status");
        assert!(status.contains(".SH \"EXIT STATUS\""), "{status}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
