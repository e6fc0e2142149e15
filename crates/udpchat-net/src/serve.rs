//! The server driver: one thread, one socket; datagrams move in batches ([`BatchIo`]:
//! `recvmmsg`/`sendmmsg`) and the thread sleeps in `poll(2)` only when nothing is waiting.
//! Optionally, sending threads take a share of the output ([`ServeOptions`], the `lanes`
//! module).
//!
//! Why a thread and `poll(2)` rather than a tokio task on epoll: a socket registered with epoll
//! keeps a waiter on its wait queue for its whole life, and the kernel then wakes that waiter
//! (two spinlocks with interrupts off, the epoll callback) every time a datagram the socket
//! sent is released — for every delivery. `poll(2)` is a waiter only while it sleeps, which is
//! never while the server sends. Measured in a room of 10 at 200k deliveries/s (`perf record`
//! on `udpchat bench`): the wake-ups were 3% of the server's CPU and `epoll_wait` 1.6%, the
//! whole of the kernel-side difference to the minimal relay (which blocks in `recvmmsg`).
//! The async side only waits for the shutdown signal and for the thread to finish.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use udpchat_proto::server::{Server, ServerEvent, Transmit};

use crate::batch::{BATCH, BatchIo, SEND_BATCH};
use crate::lanes::Lanes;

/// Datagrams handled per turn of the loop before timers and output get their turn, so that a
/// flood cannot starve them (quinn's `IO_LOOP_BOUND`, smoltcp's poll "DoS warning"): a few
/// milliseconds of work at most.
///
/// Not smaller: what one turn produces for a member goes out in one datagram, so a backlog is
/// worked off in big turns. In a room of 1000 most of what arrives is acknowledgements; with
/// 160 a turn held about one chat message, nothing was joined, and framed members got 220k
/// deliveries/s; with 1024, 760k–960k (`udpchat bench --members 1000`).
pub const IO_LOOP_BOUND: usize = 1024;

/// A turn also ends once this many datagrams wait that no later input can join
/// ([`Server::unjoinable_datagrams`]: a line each for guests like the lab's client). Taking more
/// input first only delays them and grows the queue beyond the caches: in a room of 100 such
/// guests, 1,024 messages a turn queued 100k datagrams, and the server's latency went past
/// 100 ms at 92% CPU where the minimal relay, which sends each batch as it comes, went on to
/// 98%.
pub const OUTPUT_BOUND: usize = SEND_BATCH * BATCH;

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

/// How [`serve_with`] runs the server.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Threads that share the sending with the server's own (see the `lanes` module): each
    /// destination is sent to by one thread for good, so every member still receives in the
    /// server's order. 0: the server's thread sends everything.
    pub sending_threads: usize,
}

/// [`serve_with`] with the default options: one thread.
///
/// # Errors
/// As [`serve_with`].
pub async fn serve(
    socket: UdpSocket,
    server: Server,
    shutdown: impl Future<Output = ()>,
    log: impl FnMut(ServerEvent) + Send + 'static,
    watch: impl FnMut(Wire<'_>) + Send + 'static,
) -> io::Result<()> {
    serve_with(
        socket,
        server,
        &ServeOptions::default(),
        shutdown,
        log,
        watch,
    )
    .await
}

/// Runs `server` on `socket` (on a thread of its own) until `shutdown` completes, then tells
/// every client the server is going and returns once they are told (or after a short grace
/// period).
///
/// Every [`ServerEvent`] is passed to `log`, and every datagram to `watch`, on the server's
/// thread (a datagram for a sending thread when it is handed over).
///
/// # Errors
/// Only a failure of the socket itself (or of a thread); errors about single datagrams (a
/// peer gone, ICMP) are logged and the loop goes on.
pub async fn serve_with(
    socket: UdpSocket,
    server: Server,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
    log: impl FnMut(ServerEvent) + Send + 'static,
    watch: impl FnMut(Wire<'_>) + Send + 'static,
) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let lanes = Lanes::start(&socket, options.sending_threads)?;
    // Shutdown is a flag the thread reads every turn, and a datagram on this pair that wakes
    // it when it sleeps.
    let asked = Arc::new(AtomicBool::new(false));
    let (wake, woken) = UnixDatagram::pair()?;
    woken.set_nonblocking(true)?;
    let stop = Stop {
        asked: Arc::clone(&asked),
        woken,
    };
    let (done_sender, mut done) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("udpchat-server".into())
        .spawn(move || {
            let result = run(&socket, server, lanes, &stop, log, watch);
            let _ = done_sender.send(result);
        })?;
    tokio::pin!(shutdown);
    let result = tokio::select! {
        result = &mut done => result,
        () = &mut shutdown => {
            asked.store(true, Ordering::Release);
            wake.send(&[1])?;
            done.await
        }
    };
    let _ = thread.join();
    result.unwrap_or_else(|_| Err(io::Error::other("the server thread panicked")))
}

/// How the server's thread learns that it is asked to stop.
struct Stop {
    asked: Arc<AtomicBool>,
    /// Where a datagram comes to wake the thread from `poll(2)`.
    woken: UnixDatagram,
}

/// The server's loop: output, events, timers, input; sleeps only when there is no input.
/// Returning lets the sending threads finish what they were given.
fn run(
    socket: &UdpSocket,
    mut server: Server,
    mut lanes: Lanes,
    stop: &Stop,
    mut log: impl FnMut(ServerEvent),
    mut watch: impl FnMut(Wire<'_>),
) -> io::Result<()> {
    let mut io = BatchIo::new();
    // Datagrams the socket's buffer could not take yet, oldest first.
    let mut pending: VecDeque<Transmit> = VecDeque::new();
    let mut stop_by: Option<Instant> = None;
    // Whether the last receive left nothing waiting: then wait in poll(2) before the next.
    let mut drained = true;
    loop {
        // Output first: everything the last input produced.
        drive_transmit(
            socket,
            &mut io,
            &mut server,
            &mut lanes,
            &mut pending,
            &mut watch,
        );
        while let Some(event) = server.poll_event() {
            log(event);
        }
        let now = Instant::now();
        if stop_by.is_none() && stop.asked.load(Ordering::Acquire) {
            server.shutdown(now);
            stop_by = Some(now + SHUTDOWN_GRACE);
            continue;
        }
        if let Some(stop_by) = stop_by
            && ((server.is_idle() && pending.is_empty()) || now >= stop_by)
        {
            return Ok(());
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
            continue;
        }
        if drained {
            let deadline = match (server.poll_timeout(), stop_by) {
                (Some(timer), Some(stop_by)) => Some(timer.min(stop_by)),
                (timer, stop_by) => timer.or(stop_by),
            };
            let mut socket_events = PollFlags::POLLIN;
            if !pending.is_empty() {
                socket_events |= PollFlags::POLLOUT;
            }
            let mut fds = [
                PollFd::new(socket.as_fd(), socket_events),
                PollFd::new(stop.woken.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout_until(deadline, now)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                // Taken once, so that poll(2) sleeps again during the grace period.
                let _ = stop.woken.recv(&mut [0u8; 1]);
            }
            let input = fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR));
            if !input {
                // A timer, room in the socket's buffer, or shutdown: the next turn sees to it.
                continue;
            }
        }
        // What is waiting, in batches, bounded so that timers and output get their turn
        // during a flood.
        drained = false;
        let mut taken = 0;
        while taken < IO_LOOP_BOUND {
            let now = Instant::now();
            match io.recv_batch(socket, |from, datagram| {
                watch(Wire::Received(from, datagram));
                server.handle_datagram(now, from, datagram);
            }) {
                // A short batch emptied the queue: asking again at once would most likely
                // cost a system call to hear "nothing waiting"; poll(2) first, after the
                // output, when more may have come.
                Ok(n) if n < BATCH => {
                    drained = true;
                    break;
                }
                Ok(n) => {
                    taken += n;
                    if server.unjoinable_datagrams() >= OUTPUT_BOUND {
                        break;
                    }
                }
                // The error is consumed: the next turn receives again.
                Err(e) => {
                    note_recv_error(&e);
                    break;
                }
            }
        }
    }
}

/// The `poll(2)` timeout for `deadline` (none: no timeout), in whole milliseconds rounded up
/// so that the thread never wakes before its timer is due.
fn timeout_until(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    let Some(deadline) = deadline else {
        return PollTimeout::NONE;
    };
    let wait = deadline.saturating_duration_since(now);
    let millis = wait.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

/// Sends what the server has to send, a batch per system call, until done or the socket's
/// buffer is full; what does not fit is kept, in order, and retried when the socket is
/// writable (quinn's `buffered_transmit`). Datagrams for the sending threads' destinations
/// are handed to them.
fn drive_transmit(
    socket: &UdpSocket,
    io: &mut BatchIo,
    server: &mut Server,
    lanes: &mut Lanes,
    pending: &mut VecDeque<Transmit>,
    watch: &mut impl FnMut(Wire<'_>),
) {
    // One reading of the clock for the whole pass (a reading per datagram was a measurable
    // share of the server's user time).
    let now = Instant::now();
    loop {
        while pending.len() < SEND_BATCH {
            match server.poll_transmit(now) {
                Some(transmit) => match lanes.lane_of(transmit.destination) {
                    0 => pending.push_back(transmit),
                    lane => {
                        watch(Wire::Sent(transmit.destination, &transmit.payload));
                        lanes.push(lane, transmit);
                    }
                },
                None => break,
            }
        }
        if pending.is_empty() {
            lanes.flush();
            return;
        }
        let wanted = pending.len();
        let sent = io.send_batch(
            socket,
            pending.iter().map(|t| (t.destination, &t.payload[..])),
        );
        for transmit in pending.drain(..sent) {
            watch(Wire::Sent(transmit.destination, &transmit.payload));
        }
        if sent < wanted {
            lanes.flush();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsRandom;
    use std::sync::mpsc;
    use udpchat_proto::server::ServerConfig;

    const BOUND: Duration = Duration::from_secs(10);

    /// A running [`serve`] (on a runtime of its own, so that the test may block): the sender
    /// asks it to stop, the receiver gets its result.
    struct Running {
        stop: tokio::sync::oneshot::Sender<()>,
        done: mpsc::Receiver<io::Result<()>>,
        address: SocketAddr,
    }

    fn start(
        peer_timeout: Duration,
        log: impl FnMut(ServerEvent) + Send + 'static,
        watch: impl FnMut(Wire<'_>) + Send + 'static,
    ) -> Running {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let config = ServerConfig::with_peer_timeout(peer_timeout);
        let server = Server::new(config, Box::new(OsRandom::new().unwrap()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, done) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let shutdown = async {
                let _ = stopped.await;
            };
            let _ = finished.send(runtime.block_on(serve(socket, server, shutdown, log, watch)));
        });
        Running {
            stop,
            done,
            address,
        }
    }

    #[test]
    fn a_timer_fires_while_the_thread_sleeps() {
        let (events, seen) = mpsc::channel();
        let running = start(
            Duration::from_millis(300),
            move |event| {
                let _ = events.send(event);
            },
            |_| {},
        );
        let guest = UdpSocket::bind("127.0.0.1:0").unwrap();
        guest.send_to(b"hello\n", running.address).unwrap();
        let arrived = seen.recv_timeout(BOUND).unwrap();
        assert!(
            matches!(arrived, ServerEvent::GuestArrived { .. }),
            "{arrived:?}"
        );
        // Nothing more is sent: only the guest's idle timer can wake the server now.
        let left = seen.recv_timeout(BOUND).unwrap();
        assert!(
            matches!(&left, ServerEvent::GuestLeft { reason, .. } if *reason == "timeout"),
            "{left:?}"
        );
        running.stop.send(()).unwrap();
        running
            .done
            .recv_timeout(BOUND)
            .expect("stops when asked")
            .unwrap();
    }

    #[test]
    fn shutdown_stops_the_server_in_the_middle_of_a_flood() {
        let (received, heard) = mpsc::channel();
        let mut told = false;
        let running = start(
            Duration::from_secs(60),
            |_| {},
            move |wire| {
                if matches!(wire, Wire::Received(..)) && !told {
                    told = true;
                    let _ = received.send(());
                }
            },
        );
        let flooding = Arc::new(AtomicBool::new(true));
        let flooder = {
            let flooding = Arc::clone(&flooding);
            let address = running.address;
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                let started = Instant::now();
                while flooding.load(Ordering::Relaxed) && started.elapsed() < 2 * BOUND {
                    let _ = socket.send_to(b"flood\n", address);
                }
            })
        };
        heard.recv_timeout(BOUND).expect("the flood arrives");
        running.stop.send(()).unwrap();
        let result = running.done.recv_timeout(BOUND);
        flooding.store(false, Ordering::Relaxed);
        flooder.join().unwrap();
        result
            .expect("stops within the bound despite the flood")
            .unwrap();
    }
}
