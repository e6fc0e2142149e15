//! `udpchat recv`: print each datagram with its sender, optionally reply (lab steps 1 and 2,
//! server side).

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::RecvArgs;
use crate::net::{self, MAX_DATAGRAM};
use crate::output;
use crate::trace::{Direction, Tracer};

/// Runs `udpchat recv` until `--count` datagrams have arrived (forever with 0).
///
/// # Errors
/// The port cannot be bound, or stdout fails (a broken pipe ends quietly in `main`).
pub fn run(args: &RecvArgs, tracer: Tracer) -> Result<ExitCode> {
    let socket = net::bind(SocketAddr::new(args.bind, args.port))?;
    let local = socket.local_addr()?;
    output::status(&format!(
        "listening on udp {}",
        crate::addr::canonical(local)
    ));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut received: u64 = 0;
    while args.count == 0 || received < args.count {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            // An ICMP error for an earlier reply of ours, or a signal: nothing was received.
            Err(e) if net::is_icmp_report(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("receiving"),
        };
        received += 1;
        let datagram = &buf[..n];
        tracer.datagram(Direction::Received, local, from, datagram);
        output::print_line(&output::datagram_line(datagram, from)).context("writing to stdout")?;
        if let Some(reply) = &args.reply {
            match socket.send_to(reply.as_bytes(), from) {
                Ok(_) => tracer.datagram(Direction::Sent, local, from, reply.as_bytes()),
                // Not fatal: the sender may be gone; the next one still gets its reply.
                Err(e) => output::status(&format!("warning: cannot reply to {from}: {e}")),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
