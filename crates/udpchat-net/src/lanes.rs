//! Sending threads that share the server's output: sending is most of a relay's work (about
//! 3 µs of kernel time per datagram on loopback, against well under 1 µs of the server's own),
//! and several threads may call `sendmmsg` on one UDP socket at once.
//!
//! Each destination belongs to one *lane* for good, chosen by a hash of its address: lane 0
//! is the server's own thread, lanes 1.. are the threads here. A lane sends in the order it was
//! given, so what one member receives keeps the server's order (and so each sender's order),
//! as with one thread. The server's thread hands a lane its datagrams in batches over a
//! bounded channel (a lane that falls behind makes the server wait: backpressure, not an
//! unbounded queue), and gets the emptied batches back to reuse their allocation.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use udpchat_proto::server::Transmit;

use crate::batch::{BatchIo, SEND_BATCH};

/// Datagrams handed to a lane at a time: a few `sendmmsg` calls' worth, so that the hand-over
/// (a channel message, a wake-up) is paid once per hundreds of datagrams.
const HANDOVER: usize = 4 * SEND_BATCH;

/// Batches a lane may have waiting before the server's thread waits for it.
const LANE_DEPTH: usize = 4;

/// How long a lane may make no progress (its socket buffer never taking a datagram) before it
/// drops the rest of its batch: the bound on how long it can hold the server's thread.
const STUCK: Duration = Duration::from_secs(2);

/// The sending threads, as the server's thread sees them.
pub(crate) struct Lanes {
    lanes: Vec<Lane>,
}

struct Lane {
    /// The batch being filled.
    batch: Vec<Transmit>,
    to_thread: Option<SyncSender<Vec<Transmit>>>,
    /// Emptied batches coming back.
    returned: Receiver<Vec<Transmit>>,
    thread: Option<JoinHandle<()>>,
}

impl Lanes {
    /// Starts `threads` sending threads on clones of `socket` (none: the server's thread sends
    /// everything).
    ///
    /// # Errors
    /// The socket could not be cloned or a thread not started.
    pub(crate) fn start(socket: &std::net::UdpSocket, threads: usize) -> std::io::Result<Self> {
        let mut lanes = Vec::with_capacity(threads);
        for i in 0..threads {
            let socket = socket.try_clone()?;
            let (to_thread, batches) = sync_channel(LANE_DEPTH);
            let (give_back, returned) = channel();
            let thread = std::thread::Builder::new()
                .name(format!("udpchat-send-{}", i + 1))
                .spawn(move || send_lane(&socket, &batches, &give_back))?;
            lanes.push(Lane {
                batch: Vec::new(),
                to_thread: Some(to_thread),
                returned,
                thread: Some(thread),
            });
        }
        Ok(Self { lanes })
    }

    /// The lane of `destination`: 0 for the server's own thread, `i` for the i-th thread.
    pub(crate) fn lane_of(&self, destination: SocketAddr) -> usize {
        if self.lanes.is_empty() {
            return 0;
        }
        let ip = match destination {
            SocketAddr::V4(a) => u64::from(a.ip().to_bits()),
            SocketAddr::V6(a) => {
                let bits = a.ip().to_bits();
                (bits as u64) ^ ((bits >> 64) as u64)
            }
        };
        let key = (ip << 16) ^ u64::from(destination.port());
        // Fibonacci hashing: the high bits of the product mix every bit of the key.
        let mixed = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        (mixed % (self.lanes.len() as u64 + 1)) as usize
    }

    /// Queues `transmit` on lane `lane` (1 or more), handing the batch over once it is big
    /// enough; waits when that lane is [`LANE_DEPTH`] batches behind.
    pub(crate) fn push(&mut self, lane: usize, transmit: Transmit) {
        let lane = &mut self.lanes[lane - 1];
        lane.batch.push(transmit);
        if lane.batch.len() >= HANDOVER {
            lane.hand_over();
        }
    }

    /// Hands every lane what it has been given so far.
    pub(crate) fn flush(&mut self) {
        for lane in &mut self.lanes {
            if !lane.batch.is_empty() {
                lane.hand_over();
            }
        }
    }
}

impl Lane {
    fn hand_over(&mut self) {
        let next = match self.returned.try_recv() {
            Ok(empty) => empty,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(HANDOVER),
        };
        let full = std::mem::replace(&mut self.batch, next);
        if let Some(to_thread) = &self.to_thread {
            // Fails only if the thread is gone (it panicked): its datagrams are dropped, as a
            // network would drop them.
            let _ = to_thread.send(full);
        }
    }
}

impl Drop for Lanes {
    /// Lets every lane send what it was given, then waits for the threads to end.
    fn drop(&mut self) {
        self.flush();
        for lane in &mut self.lanes {
            lane.to_thread = None;
        }
        for lane in &mut self.lanes {
            if let Some(thread) = lane.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// A lane's thread: sends each batch whole, in order, waiting for room in the socket's buffer
/// when it is full; ends when the server's thread lets go of the lane.
fn send_lane(
    socket: &std::net::UdpSocket,
    batches: &Receiver<Vec<Transmit>>,
    give_back: &Sender<Vec<Transmit>>,
) {
    let mut io = BatchIo::for_sending();
    while let Ok(mut batch) = batches.recv() {
        let mut sent = 0;
        let mut progress = Instant::now();
        while sent < batch.len() {
            let went = io.send_batch(
                socket,
                batch[sent..]
                    .iter()
                    .map(|t| (t.destination, &t.payload[..])),
            );
            sent += went;
            if sent == batch.len() {
                break;
            }
            let now = Instant::now();
            if went > 0 {
                progress = now;
            } else if now >= progress + STUCK {
                // Nothing could be sent for seconds: drop the rest, as a network would,
                // rather than hold the server (and its shutdown) behind this lane.
                tracing::debug!(dropped = batch.len() - sent, "sending lane stuck");
                break;
            }
            // The buffer is full; it drains as loopback or the NIC takes datagrams. The
            // timeout only bounds a wait whose wake-up went astray.
            let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
            let _ = poll(&mut fds, PollTimeout::from(10u8));
        }
        batch.clear();
        let _ = give_back.send(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    use bytes::Bytes;

    #[test]
    fn a_destination_keeps_its_lane_and_destinations_spread_over_all_lanes() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let none = Lanes::start(&socket, 0).unwrap();
        let lanes = Lanes::start(&socket, 3).unwrap();
        let mut per_lane = [0usize; 4];
        for port in 10_000..10_400u16 {
            let v4 = SocketAddr::from(([127, 0, 0, 1], port));
            let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            assert_eq!(none.lane_of(v4), 0, "no threads: the server's own");
            let lane = lanes.lane_of(v4);
            assert_eq!(lanes.lane_of(v4), lane, "always the same lane");
            per_lane[lane] += 1;
            per_lane[lanes.lane_of(v6)] += 1;
        }
        assert!(per_lane.iter().all(|&n| n >= 100), "{per_lane:?}");
    }

    #[test]
    fn every_member_receives_everything_in_order_whichever_lane_sends() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut lanes = Lanes::start(&socket, 2).unwrap();
        // Three members on each lane (ports are the system's choice: bind until so).
        let mut members: Vec<UdpSocket> = Vec::new();
        let mut per_lane = [0usize; 3];
        for _ in 0..1000 {
            if per_lane.iter().all(|&n| n == 3) {
                break;
            }
            let member = UdpSocket::bind("127.0.0.1:0").unwrap();
            let lane = lanes.lane_of(member.local_addr().unwrap());
            if per_lane[lane] < 3 {
                per_lane[lane] += 1;
                member
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                members.push(member);
            }
        }
        assert_eq!(per_lane, [3; 3], "ports to fill every lane");
        let addresses: Vec<SocketAddr> = members.iter().map(|m| m.local_addr().unwrap()).collect();
        const MESSAGES: usize = 100;
        let mut own = BatchIo::for_sending();
        for i in 0..MESSAGES {
            for &to in &addresses {
                let payload = Bytes::from(i.to_string());
                match lanes.lane_of(to) {
                    // The server's thread sends its own share itself.
                    0 => {
                        assert_eq!(
                            own.send_batch(&socket, std::iter::once((to, &payload[..]))),
                            1
                        );
                    }
                    lane => {
                        lanes.push(
                            lane,
                            Transmit {
                                destination: to,
                                payload,
                            },
                        );
                    }
                }
            }
        }
        // Let go: the lanes send what they have and their threads end.
        drop(lanes);
        for member in &members {
            let mut buf = [0u8; 16];
            for i in 0..MESSAGES {
                let n = member.recv(&mut buf).expect("every datagram arrives");
                assert_eq!(&buf[..n], i.to_string().as_bytes(), "in order");
            }
        }
    }
}
