//! The server driver: one task, one socket, one timer; datagrams move in batches
//! ([`BatchIo`]: `recvmmsg`/`sendmmsg`).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use udpchat_proto::server::{Server, ServerEvent, Transmit};

use crate::batch::{BATCH, BatchIo, SEND_BATCH};

/// Datagrams handled per turn of the loop before timers and output get their turn, so that a
/// flood cannot starve them (quinn's `IO_LOOP_BOUND`, smoltcp's poll "DoS warning"): a few
/// milliseconds of work at most.
///
/// Not smaller: what one turn produces for a member goes out in one datagram, so a backlog is
/// worked off in big turns. In a room of 1000 most of what arrives is acknowledgements; with
/// 160 a turn held about one chat message, nothing was joined, and framed members got 220k
/// deliveries/s; with 1024, 760k–960k (`udpchat bench --members 1000`).
pub const IO_LOOP_BOUND: usize = 1024;

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
    let mut io = BatchIo::new();
    // Datagrams the socket's buffer could not take yet, oldest first.
    let mut pending: VecDeque<Transmit> = VecDeque::new();
    let mut stop_by: Option<Instant> = None;
    loop {
        // Output first: everything the last input produced.
        drive_transmit(&socket, &mut io, &mut server, &mut pending, &mut watch);
        while let Some(event) = server.poll_event() {
            log(event);
        }
        if let Some(stop_by) = stop_by
            && ((server.is_idle() && pending.is_empty()) || Instant::now() >= stop_by)
        {
            return Ok(());
        }
        let deadline = server.poll_timeout().map(|d| d.min(stop_by.unwrap_or(d)));
        let sleep_until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            readable = socket.readable() => {
                readable?;
                // What is waiting, in batches, bounded so that timers and output get their
                // turn during a flood.
                let mut taken = 0;
                while taken < IO_LOOP_BOUND {
                    let now = Instant::now();
                    match io.recv_batch(&socket, |from, datagram| {
                        watch(Wire::Received(from, datagram));
                        server.handle_datagram(now, from, datagram);
                    }) {
                        Ok(0) => break,
                        // A short batch emptied the queue: asking again now would most
                        // likely cost a system call to hear "nothing waiting" (the next turn
                        // asks, after the output, when more may have come).
                        Ok(n) if n < BATCH => break,
                        Ok(n) => taken += n,
                        Err(e) => {
                            note_recv_error(&e);
                            break;
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(sleep_until.into()) => {}
            writable = socket.writable(), if !pending.is_empty() => writable?,
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

/// Sends what the server has to send, a batch per system call, until done or the socket's
/// buffer is full; what does not fit is kept, in order, and retried when the socket is
/// writable (quinn's `buffered_transmit`).
fn drive_transmit(
    socket: &UdpSocket,
    io: &mut BatchIo,
    server: &mut Server,
    pending: &mut VecDeque<Transmit>,
    watch: &mut impl FnMut(Wire<'_>),
) {
    // One reading of the clock for the whole pass (a reading per datagram was a measurable
    // share of the server's user time).
    let now = Instant::now();
    loop {
        while pending.len() < SEND_BATCH {
            match server.poll_transmit(now) {
                Some(transmit) => pending.push_back(transmit),
                None => break,
            }
        }
        if pending.is_empty() {
            return;
        }
        let batch: Vec<(SocketAddr, &[u8])> = pending
            .iter()
            .map(|t| (t.destination, &t.payload[..]))
            .collect();
        let wanted = batch.len();
        let sent = match io.send_batch(socket, &batch) {
            Ok(sent) => sent,
            Err(e) => {
                tracing::debug!(error = %e, "send failed");
                0
            }
        };
        for transmit in pending.drain(..sent) {
            watch(Wire::Sent(transmit.destination, &transmit.payload));
        }
        if sent < wanted {
            return;
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
