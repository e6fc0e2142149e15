//! `udpchat send`: one datagram out, optionally one reply back (lab steps 1 and 2, client side).

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::SendArgs;
use crate::net::{self, MAX_DATAGRAM};
use crate::trace::{Direction, Tracer};
use crate::{addr, output};

/// Runs `udpchat send`.
///
/// The socket is connected to the target, so the kernel drops datagrams from anyone else and
/// reports an ICMP "port unreachable" as an error instead of a silent wait.
///
/// # Errors
/// Bad or unknown target, a message too long for one datagram, no reply within `--wait`.
pub fn run(args: &SendArgs, tracer: Tracer) -> Result<ExitCode> {
    let peer = addr::resolve(&args.target)?;
    let mut payload = args.text.clone().into_bytes();
    if args.newline {
        payload.push(b'\n');
    }
    net::check_fits_one_datagram(payload.len(), peer)?;
    let socket = net::bind_for(peer)?;
    socket
        .connect(peer)
        .with_context(|| format!("cannot send to {peer}"))?;
    let local = socket.local_addr()?;
    socket
        .send(&payload)
        .with_context(|| format!("cannot send to {peer}"))?;
    tracer.datagram(Direction::Sent, local, peer, &payload);
    output::status(&format!("sent {} bytes to {peer}", payload.len()));

    let Some(wait) = args.wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no reply from {peer} within {}", fmt_secs(wait));
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                tracer.datagram(Direction::Received, local, from, &buf[..n]);
                output::print_line(&output::datagram_line(&buf[..n], from))
                    .context("writing the reply")?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) if net::is_icmp_report(&e) => {
                bail!(
                    "no reply: {peer} answered ICMP port unreachable (nothing listens on that port)"
                )
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("waiting for the reply"),
        }
    }
}

/// Whether a read with a timeout gave up (Linux says `WouldBlock`, others `TimedOut`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `2s`, `0.5s`, `1.25s`.
pub fn fmt_secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!(
            "{}s",
            format!("{:.3}", d.as_secs_f64()).trim_end_matches('0')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(fmt_secs(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_secs(Duration::from_millis(500)), "0.5s");
        assert_eq!(fmt_secs(Duration::from_millis(1250)), "1.25s");
    }
}
