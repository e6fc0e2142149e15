//! `udpchat probe`: is a UDP port open? Answered the way `nmap -sU` answers it.
//!
//! UDP has no handshake, so the only evidence is what comes back after one datagram: a reply
//! (`open`), an ICMP "port unreachable" (`closed`: the host is there and nothing listens), or
//! nothing at all (`open|filtered`: a service that ignores our datagram and a firewall that
//! drops it look the same). ICMP errors reach the program only on a *connected* UDP socket.

use std::io;
use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::ProbeArgs;
use crate::net::{self, MAX_DATAGRAM};
use crate::send::{fmt_secs, is_timeout};
use crate::trace::{Direction, Tracer};
use crate::{addr, output};

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    /// A reply came; the line describing it.
    Open(String),
    /// ICMP port unreachable came back.
    Closed,
    /// Nothing came back in time.
    OpenFiltered,
}

/// Runs `udpchat probe`: exit 1 for `closed`, 0 otherwise.
///
/// # Errors
/// Bad or unknown target, or a local socket error.
pub fn run(args: &ProbeArgs, tracer: Tracer) -> Result<ExitCode> {
    let peer = addr::resolve(&args.target)?;
    net::check_fits_one_datagram(args.text.len(), peer)?;
    let socket = net::bind_for(peer)?;
    socket
        .connect(peer)
        .with_context(|| format!("cannot probe {peer}"))?;
    let local = socket.local_addr()?;
    let payload = args.text.as_bytes();
    let state = match socket.send(payload) {
        // A loopback ICMP error can already be reported by the send itself.
        Err(e) if net::is_icmp_report(&e) => PortState::Closed,
        Err(e) => return Err(e).with_context(|| format!("cannot probe {peer}")),
        Ok(_) => {
            tracer.datagram(Direction::Sent, local, peer, payload);
            await_answer(&socket, args, tracer)?
        }
    };
    let line = match &state {
        PortState::Open(reply) => format!("open: udp {peer} answered: {reply}"),
        PortState::Closed => {
            format!(
                "closed: udp {peer} answered ICMP port unreachable (nothing listens on that port)"
            )
        }
        PortState::OpenFiltered => format!(
            "open|filtered: no answer from udp {peer} within {} (a service may ignore the datagram, \
             or a firewall may drop it)",
            fmt_secs(args.timeout)
        ),
    };
    output::print_line(&line)?;
    Ok(if state == PortState::Closed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits up to `--timeout` for a reply or an ICMP error on the connected `socket`.
fn await_answer(socket: &UdpSocket, args: &ProbeArgs, tracer: Tracer) -> Result<PortState> {
    let local = socket.local_addr()?;
    let deadline = Instant::now() + args.timeout;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(PortState::OpenFiltered);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                tracer.datagram(Direction::Received, local, from, &buf[..n]);
                return Ok(PortState::Open(output::datagram_line(&buf[..n], from)));
            }
            Err(e) if net::is_icmp_report(&e) => return Ok(PortState::Closed),
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("waiting for an answer"),
        }
    }
}
