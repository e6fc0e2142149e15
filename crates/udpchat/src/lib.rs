//! udpchat: chat over UDP, from the "Computer Networks II" lab's four steps to what comes next.
//!
//! This crate is the command line and its drivers: it parses arguments, opens sockets, reads the
//! keyboard and prints. Decisions about the conversation itself live in the sans-IO core,
//! [`udpchat_proto`].
//!
//! | mode | module | lab step |
//! |---|---|---|
//! | `udpchat recv` | [`recv`] | 1 and 2, server |
//! | `udpchat send` | [`send`] | 1 and 2, client |
//! | `udpchat chat` | [`chat`] (+ [`screen`]) | 3 (`--turns`) and 4 |
//! | `udpchat check` | [`check`] | "is the server listening?" |
//! | `udpchat probe` | [`probe`] | the same question, from the outside |
//! | `udpchat serve` | [`serve`] | beyond the lab: a room server |
//! | `udpchat join` | [`join`] (+ [`tui`]) | beyond the lab: a room client |
//! | `udpchat bench` | [`udpchat_bench`] (a crate of its own) | beyond the lab: how fast, against what |

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

pub mod addr;
pub mod chat;
pub mod check;
pub mod cli;
pub mod clock;
pub mod join;
pub mod keys;
pub mod net;
pub mod output;
pub mod probe;
pub mod recv;
pub mod screen;
pub mod send;
pub mod serve;
pub mod trace;
pub mod tui;

use cli::{Cli, Command};
use trace::Tracer;

/// Runs the mode chosen on the command line and returns the exit code.
///
/// # Errors
/// Whatever stopped the mode; `main` prints it on one line and exits non-zero.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let tracer = Tracer::new(cli.trace);
    match &cli.command {
        Command::Recv(args) => recv::run(args, tracer),
        Command::Send(args) => send::run(args, tracer),
        Command::Chat(args) => chat::run(args, tracer),
        Command::Probe(args) => probe::run(args, tracer),
        Command::Check(args) => run_check(args.port),
        Command::Serve(args) => serve::run(args, tracer),
        Command::Join(args) => join::run(args, tracer),
        Command::Bench(args) => udpchat_bench::run(args),
        Command::BenchRelay(args) => {
            udpchat_bench::relay::run(args.port).map(|()| ExitCode::SUCCESS)
        }
    }
}

/// The single-threaded tokio runtime the async modes (`chat`, `serve`, `join`) run on: one
/// socket and one loop each, so one thread is all they need.
///
/// # Errors
/// The runtime could not be created.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `udpchat check PORT`: one line per socket bound to the port; exit 0 if any, 1 if none.
fn run_check(port: u16) -> Result<ExitCode> {
    let proc_root = Path::new("/proc");
    let sockets = check::sockets_on_port(proc_root, port)?;
    let inodes: Vec<u64> = sockets.iter().map(|s| s.inode).collect();
    let owners = check::owners(proc_root, &inodes);
    for line in check::report(port, &sockets, &owners) {
        output::print_line(&line)?;
    }
    Ok(if sockets.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
