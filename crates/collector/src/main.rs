//! Thin: runs the CLI, maps errors to exit status 2.

mod cli;

fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            aupwatch_collector::log(&format!("error: {e:#}"));
            std::process::ExitCode::from(2)
        }
    }
}
