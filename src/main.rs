//! The `aupwatch` binary: parse arguments, run one command, exit 0 clean / 1 findings / 2 error.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("aupwatch: error: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
