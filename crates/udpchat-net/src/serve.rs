//! The server driver: one task, one socket, one timer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use udpchat_proto::server::{Server, ServerEvent, Transmit};

/// Datagrams handled per turn of the loop before timers and output get their turn, so that a
/// flood cannot starve them (quinn's `IO_LOOP_BOUND`, smoltcp's poll "DoS warning").
pub const IO_LOOP_BOUND: usize = 160;

/// How long shutdown waits for clients to take their Close before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A datagram the driver moved, for `--trace`.
#[derive(Debug, Clone, Copy)]
pub enum Wire<'a> {
    /// Received from this address.
    Received(SocketAddr, &'a [u8]),
    /// Sent to this address.
    Sent(SocketAddr, &'a [u8]),
}

/// Runs `server` on `socket` until `shutdown` completes, then tells every client the server is
/// going and returns once they are told (or after a short grace period).
///
/// Every [`ServerEvent`] is passed to `log`, and every datagram to `watch`.
///
/// # Errors
/// Only a failure of the socket itself; errors about single datagrams (a peer gone, ICMP) are
/// logged and the loop goes on.
pub async fn serve(
    socket: UdpSocket,
    mut server: Server,
    shutdown: impl Future<Output = ()>,
    mut log: impl FnMut(ServerEvent),
    mut watch: impl FnMut(Wire<'_>),
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; 65_536];
    let mut pending: Option<Transmit> = None;
    let mut stop_by: Option<Instant> = None;
    loop {
        // Output first: everything the last input produced.
        drive_transmit(&socket, &mut server, &mut pending, &mut watch);
        while let Some(event) = server.poll_event() {
            log(event);
        }
        if let Some(stop_by) = stop_by
            && ((server.is_idle() && pending.is_none()) || Instant::now() >= stop_by)
        {
            return Ok(());
        }
        let deadline = server.poll_timeout().map(|d| d.min(stop_by.unwrap_or(d)));
        let sleep_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                match received {
                    Ok((n, from)) => {
                        watch(Wire::Received(from, &buf[..n]));
                        server.handle_datagram(Instant::now(), from, &buf[..n]);
                    }
                    Err(e) => note_recv_error(&e),
                }
                // More may be waiting: take a bounded batch without going back to select.
                for _ in 1..IO_LOOP_BOUND {
                    match socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => {
                            watch(Wire::Received(from, &buf[..n]));
                            server.handle_datagram(Instant::now(), from, &buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => note_recv_error(&e),
                    }
                }
            }
            () = tokio::time::sleep_until(sleep_until.into()) => {}
            writable = socket.writable(), if pending.is_some() => writable?,
            () = &mut shutdown, if stop_by.is_none() => {
                let now = Instant::now();
                server.shutdown(now);
                stop_by = Some(now + SHUTDOWN_GRACE);
            }
        }
        let now = Instant::now();
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
    }
}

/// Sends what the server has to send, until done or the socket's buffer is full; a datagram
/// that would block is kept and retried when the socket is writable (quinn's
/// `buffered_transmit`).
fn drive_transmit(
    socket: &UdpSocket,
    server: &mut Server,
    pending: &mut Option<Transmit>,
    watch: &mut impl FnMut(Wire<'_>),
) {
    loop {
        let Some(transmit) = pending
            .take()
            .or_else(|| server.poll_transmit(Instant::now()))
        else {
            return;
        };
        match socket.try_send_to(&transmit.payload, transmit.destination) {
            Ok(_) => watch(Wire::Sent(transmit.destination, &transmit.payload)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *pending = Some(transmit);
                return;
            }
            // Not fatal (quinn-udp's rule): the destination may be unreachable, the message
            // is dropped as the network would drop it, and reliability repairs it.
            Err(e) => tracing::debug!(to = %transmit.destination, error = %e, "send failed"),
        }
    }
}

fn note_recv_error(e: &io::Error) {
    // An ICMP error for an earlier datagram surfaces on the next receive: not our socket's
    // problem (quinn ignores ConnectionReset the same way).
    if !matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    ) {
        tracing::debug!(error = %e, "receive failed");
    }
}
