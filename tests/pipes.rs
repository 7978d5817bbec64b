//! A closed pipe is the end of the output, not an error: the real binary, its stdout read for
//! one line and then closed (`aupwatch scan | head -1`), ends quietly with the exit status the
//! command would have had; a closed stderr never makes it panic (exit 101, "failed printing
//! to stderr"). No root needed: the outputs are made large with a generated signature set
//! that matches the scanner itself (and the test process), so that they overflow the pipe's
//! buffer and the writes after the reader is gone really fail.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_aupwatch");

/// Signatures enough for any of the outputs to pass 64 KiB (a pipe's default buffer).
const SIGNATURES: usize = 1500;

/// A directory of `SIGNATURES` signatures, each matching a process named `aupwatch` (the
/// scanner itself) or `pipes-*` (this test).
fn many_signatures(dir: &Path) {
    let mut text = String::new();
    for i in 0..SIGNATURES {
        text.push_str(&format!(
            "[[signature]]\nid = \"irc.pipe-test-{i}\"\ncategory = \"irc\"\nseverity = \"low\"\n\
             description = \"a signature of tests/pipes.rs, number {i}, that matches the scanner itself\"\n\
             aup = \"test only\"\nmatch = {{ name = [\"aupwatch\", \"pipes-*\"] }}\n\n"
        ));
    }
    std::fs::write(dir.join("many.toml"), text).expect("write many.toml");
}

struct Ended {
    code: Option<i32>,
    first_line: String,
    stderr: String,
}

/// Runs `aupwatch ARGS`, reads one line of its stdout and closes the pipe (like `head -1`);
/// with `close_stderr` its stderr pipe is closed at once too, otherwise it is read to the end.
fn through_head(args: &[&str], close_stderr: bool) -> Ended {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start aupwatch");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let stderr_pipe = if close_stderr {
        drop(stderr_pipe);
        None
    } else {
        // Read on the side, so that a full stderr pipe never blocks the child.
        Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        }))
    };
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first_line = String::new();
    reader.read_line(&mut first_line).expect("read one line");
    drop(reader);
    let status = child.wait().expect("wait for aupwatch");
    let stderr = stderr_pipe
        .map(|t| t.join().expect("stderr reader"))
        .unwrap_or_default();
    Ended {
        code: status.code(),
        first_line,
        stderr,
    }
}

fn assert_quiet(what: &str, ended: &Ended, code: i32) {
    assert_eq!(
        ended.code,
        Some(code),
        "{what}: exit status after the pipe closed; stderr: {}",
        ended.stderr
    );
    // The list of unreadable parts of the host comes before any output, pipe or not (on some
    // machines even root cannot read pid 1): not a message about the pipe.
    let mut gaps = false;
    let rest: Vec<&str> = ended
        .stderr
        .lines()
        .filter(|l| {
            if l.ends_with("part(s) of the host could not be read:") {
                gaps = true;
                return false;
            }
            !(gaps && l.starts_with("  "))
        })
        .collect();
    assert!(
        rest.is_empty(),
        "{what}: nothing on stderr after the pipe closed: {}",
        ended.stderr
    );
    assert!(!ended.first_line.is_empty(), "{what}: printed a first line");
}

#[test]
fn signatures_list_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    many_signatures(dir.path());
    let sigs = dir.path().to_string_lossy().into_owned();
    let table = through_head(&["signatures", "list", "--signatures", &sigs], false);
    assert!(table.first_line.starts_with("ID "), "{}", table.first_line);
    assert_quiet("signatures list", &table, 0);
    let json = through_head(
        &["signatures", "list", "--json", "--signatures", &sigs],
        false,
    );
    assert_quiet("signatures list --json", &json, 0);
}

#[test]
fn scan_into_a_closed_pipe_ends_quietly_with_its_exit_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    many_signatures(dir.path());
    let sigs = dir.path().to_string_lossy().into_owned();
    let scan = ["scan", "--sample", "0", "--no-probe", "--signatures", &sigs];
    // The scanner matches its own signatures: exit 1 (findings), even though most of the
    // table never reached a reader.
    let table = through_head(&scan, false);
    assert!(
        table.first_line.starts_with("SEVERITY "),
        "{}",
        table.first_line
    );
    assert_quiet("scan", &table, 1);
    let json = through_head(&[&scan[..], &["--json"]].concat(), false);
    assert_eq!(json.first_line, "{\n");
    assert_quiet("scan --json", &json, 1);
    let pid = std::process::id().to_string();
    let explain = through_head(&[&scan[..], &["--explain", &pid]].concat(), false);
    assert!(
        explain.first_line.starts_with(&format!("pid {pid} ")),
        "{}",
        explain.first_line
    );
    assert_quiet("scan --explain", &explain, 1);
}

#[test]
fn inventory_into_a_closed_pipe_ends_quietly() {
    let ended = through_head(&["inventory"], false);
    assert_quiet("inventory", &ended, 0);
}

/// `aupwatch scan 2>&1 | head -1`: stdout and stderr both go away; the per-iteration lines on
/// stderr and the table on stdout fail to be written, and neither is a panic or an error.
#[test]
fn a_closed_stderr_is_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    many_signatures(dir.path());
    let sigs = dir.path().to_string_lossy().into_owned();
    let ended = through_head(
        &[
            "scan",
            "--sample",
            "0",
            "--no-probe",
            "--iterations",
            "2",
            "--signatures",
            &sigs,
        ],
        true,
    );
    assert_eq!(ended.code, Some(1), "findings: exit 1, not a panic (101)");

    // An error, with nobody reading stderr: exit 2, not a panic.
    let mut child = Command::new(BIN)
        .args(["scan", "--signatures", "/nonexistent/aupwatch-signatures"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start aupwatch");
    drop(child.stderr.take());
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(2),
        "an error: exit 2, not a panic (101)"
    );
}
