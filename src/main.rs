//! The `aupwatch` binary: parse arguments, run one command, exit 0 clean / 1 findings / 2 error.

// stdout or stderr may be a closed pipe (`aupwatch scan | head -1`): `println!`/`eprintln!`
// would panic there. Output is written with its errors handled (cli), stderr lines with
// `report::stderr_line`.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code.into(),
        Err(e) => {
            aupwatch::report::stderr_line(&format!(
                "aupwatch: error: {}",
                aupwatch::report::printable_lines(&chain(&e))
            ));
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message
/// before it already shows (library errors often name their source in their own text).
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
    }
    out
}
