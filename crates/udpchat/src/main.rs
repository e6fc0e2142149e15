//! The `udpchat` binary: parse the command line, run the mode, map the outcome to an exit code.
//!
//! Every failure ends as one line on stderr, `udpchat: error: ...`, and a non-zero exit code:
//! 2 for a command line that could not be understood, 1 for everything else. A closed output
//! pipe (`udpchat recv | head -1`) ends quietly with 0.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use udpchat::cli::Cli;
use udpchat::output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging();
    match udpchat::run(cli) {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            output::status(&format!("udpchat: error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap renders them; a real usage error becomes one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    output::status(&format!(
        "udpchat: {} (try --help)",
        one_line(&e.render().to_string())
    ));
    ExitCode::from(2)
}

/// Clap's message without usage and hints, on one line:
/// `error: the following required arguments were not provided: <HOST:PORT>`.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Diagnostics for developers, off unless `RUST_LOG` asks (e.g. `RUST_LOG=udpchat=debug`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
