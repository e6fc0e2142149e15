//! A reliable connection survives whatever the network and a hostile peer do to it: arbitrary
//! datagrams, forged acknowledgements and segments, loss, duplication, reordering and clock
//! jumps. It never panics and never spins on a timer, and what it does deliver is right.
//!
//! Two connections, A (client: keepalives) and B (server: none), joined by two queues under a
//! virtual clock. Anything arbitrary is handed only to A, so B hears nothing but A's genuine
//! datagrams and must deliver exactly A's messages, in order, once each (a prefix of them: the
//! rest may still be in flight, lost to a forged acknowledgement, or cut off by a close).
//!
//! Input: one config byte for A, then operations of one byte (`op % 16`) followed by their
//! operands; bytes past the end read as 0. `fuzz/seeds/make_seeds.py` writes this encoding.
//!
//! | op     | operands                  | what                                                   |
//! |--------|---------------------------|--------------------------------------------------------|
//! | 0, 1   | len, bytes                | arbitrary datagram to A (handled if it decodes)        |
//! | 2      | see [`forged_packet`]     | a well-formed Data or Close for A with arbitrary fields|
//! | 3, 4   | len, reps, bytes          | A sends a message (see [`send`])                       |
//! | 5      | len, reps, bytes          | B sends a message                                      |
//! | 6, 7   | step                      | the clock advances (< 128: ms; else (step-128)*250 ms) |
//! | 8..=11 | how                       | one datagram: bit 0 direction (0: A to B); bits 1-2:   |
//! |        |                           | deliver oldest, drop oldest, deliver newest, duplicate |
//! | 12     | loss                      | exchange everything in flight, a few rounds; datagram  |
//! |        |                           | i is dropped when bit i%8 of `loss` is set             |
//! | 13     |                           | the clock jumps to the earlier connection deadline     |
//! | 14     | how                       | bit 0 picks the side, the rest the code: it closes     |
//! | 15     |                           | nothing                                                |
//!
//! After every operation each side handles its due timers, and its datagrams and events are
//! drained and checked.
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udpchat_proto::reliable::{
    CloseReason, Connection, ConnectionConfig, ConnectionEvent, SendError,
};
use udpchat_proto::wire::packet::{
    Ack, CloseCode, ConnectionId, MAX_DATAGRAM, Packet, PacketRef, Segment,
};

const ID: ConnectionId = ConnectionId(1);
const TOKEN: u64 = 7;
/// Operations per input.
const MAX_OPS: usize = 256;
/// Message bytes both sides may send per input.
const MAX_SENT_BYTES: usize = 256 * 1024;
/// Datagrams waiting per direction; beyond it the oldest is lost.
const MAX_IN_FLIGHT: usize = 256;
/// Datagrams one drain of `poll_transmit` may yield (1 MiB of queue is ~900 datagrams).
const MAX_POLLS: usize = 4096;
/// Rounds of "a timer is due: handle it, transmit" before the connection is judged to spin.
const MAX_TIMER_ROUNDS: usize = 256;
/// Rounds of op 12.
const EXCHANGE_ROUNDS: usize = 8;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut input = Input(data);
    let mut now = Instant::now();

    let c = input.u8();
    let mut a_config = ConnectionConfig::default();
    if c & 1 != 0 {
        a_config.keepalive = None;
    }
    if c & 2 != 0 {
        // Out-of-range values (0, 65) included: `new` clamps them.
        a_config.max_in_flight = u32::from(c >> 2) % 66;
    }
    if c & 0x80 != 0 {
        // A small queue: `QueueFull` and `Unblocked`.
        a_config.max_queued_bytes = 4096;
    }
    let b_config = ConnectionConfig {
        keepalive: None,
        ..ConnectionConfig::default()
    };
    let mut a = Side::new(Connection::new(ID, TOKEN, a_config, now, None));
    let mut b = Side::new(Connection::new(ID, TOKEN, b_config, now, None));
    // A was handed something B did not send: its deliveries have no oracle any more.
    let mut a_forged = false;
    let mut sent_bytes = 0usize;

    for _ in 0..MAX_OPS {
        if input.is_empty() || (a.conn.is_drained() && b.conn.is_drained()) {
            break;
        }
        match input.u8() % 16 {
            0 | 1 => {
                let len = input.u8();
                let bytes = input.bytes(len.into());
                // Read in place, as the server and client do.
                match PacketRef::decode(bytes) {
                    Ok(PacketRef::Data(data)) => {
                        a_forged = true;
                        a.conn.handle_data(now, &data);
                    }
                    Ok(_) => {
                        a_forged = true;
                        if let Ok(packet) = Packet::decode(bytes) {
                            a.conn.handle_packet(now, packet);
                        }
                    }
                    Err(_) => {}
                }
            }
            2 => {
                a_forged = true;
                let packet = forged_packet(&mut input);
                a.conn.handle_packet(now, packet);
            }
            3 | 4 => send(&mut a, &mut input, &mut sent_bytes),
            5 => send(&mut b, &mut input, &mut sent_bytes),
            6 | 7 => now += step(input.u8()),
            8..=11 => {
                let how = input.u8();
                if how & 1 == 0 {
                    deliver_one(&mut a, &mut b, how >> 1, now);
                } else {
                    deliver_one(&mut b, &mut a, how >> 1, now);
                }
            }
            12 => {
                let loss = input.u8();
                for _ in 0..EXCHANGE_ROUNDS {
                    if a.outbox.is_empty() && b.outbox.is_empty() {
                        break;
                    }
                    deliver_all(&mut a, &mut b, loss, now);
                    deliver_all(&mut b, &mut a, loss, now);
                    a.step(now, (!a_forged).then_some(&b.sent));
                    b.step(now, Some(&a.sent));
                }
            }
            13 => {
                let next = [a.conn.poll_timeout(), b.conn.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(deadline) = next {
                    now = now.max(deadline);
                }
            }
            14 => {
                let how = input.u8();
                let side = if how & 1 == 0 { &mut a } else { &mut b };
                side.conn.close(now, close_code(how >> 1));
            }
            _ => {}
        }
        a.step(now, (!a_forged).then_some(&b.sent));
        b.step(now, Some(&a.sent));
    }
}

/// One connection, what it sent and received, and its datagrams on their way to the other.
struct Side {
    conn: Connection,
    /// Messages `send_message` accepted, in order.
    sent: Vec<Vec<u8>>,
    /// Messages delivered so far.
    received: usize,
    /// `send_message` refused with `QueueFull` since the last `Unblocked`.
    blocked: bool,
    /// The `Closed` event came.
    closed: bool,
    /// Datagrams sent and not yet delivered or lost.
    outbox: VecDeque<Vec<u8>>,
}

impl Side {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            sent: Vec::new(),
            received: 0,
            blocked: false,
            closed: false,
            outbox: VecDeque::new(),
        }
    }

    /// Handles due timers, then drains datagrams and events. `peer_sent`: what the peer sent,
    /// when everything this side heard came from the peer.
    fn step(&mut self, now: Instant, peer_sent: Option<&Vec<Vec<u8>>>) {
        let mut rounds = 0;
        loop {
            if self.conn.poll_timeout().is_some_and(|t| t <= now) {
                self.conn.handle_timeout(now);
            }
            self.drain_transmit(now);
            if self.conn.poll_timeout().is_none_or(|t| t > now) {
                break;
            }
            rounds += 1;
            assert!(
                rounds < MAX_TIMER_ROUNDS,
                "the connection keeps asking for a timeout it does not handle: {:?}",
                self.conn
            );
        }
        while let Some(event) = self.conn.poll_event() {
            if self.closed {
                let what = match &event {
                    ConnectionEvent::Message(m) => format!("Message ({} bytes)", m.len()),
                    other => format!("{other:?}"),
                };
                panic!("event {what} after Closed");
            }
            match event {
                ConnectionEvent::Message(message) => {
                    if let Some(peer_sent) = peer_sent {
                        let expected = peer_sent.get(self.received);
                        assert!(
                            expected == Some(&message),
                            "delivered message #{} ({} bytes) is not the one sent ({:?} bytes)",
                            self.received,
                            message.len(),
                            expected.map(Vec::len),
                        );
                    }
                    self.received += 1;
                }
                ConnectionEvent::Unblocked => {
                    assert!(self.blocked, "Unblocked without a refused send_message");
                    self.blocked = false;
                }
                ConnectionEvent::Closed(reason) => {
                    self.closed = true;
                    if peer_sent.is_some() {
                        // Genuine datagrams never break the protocol.
                        assert_ne!(reason, CloseReason::ProtocolViolation);
                    }
                }
            }
        }
        if self.conn.is_drained() {
            assert!(
                self.conn.poll_timeout().is_none(),
                "a drained connection wants a timer"
            );
            assert!(
                self.conn.poll_transmit(now).is_none(),
                "a drained connection sends"
            );
        }
    }

    fn drain_transmit(&mut self, now: Instant) {
        for _ in 0..MAX_POLLS {
            let Some(datagram) = self.conn.poll_transmit(now) else {
                return;
            };
            assert!(
                datagram.len() <= MAX_DATAGRAM,
                "{}-byte datagram",
                datagram.len()
            );
            match Packet::decode(&datagram) {
                Ok(Packet::Data {
                    connection, token, ..
                })
                | Ok(Packet::Close {
                    connection, token, ..
                }) => assert_eq!((connection, token), (ID, TOKEN)),
                other => panic!("the connection sent {other:?}"),
            }
            if self.outbox.len() >= MAX_IN_FLIGHT {
                self.outbox.pop_front();
            }
            self.outbox.push_back(datagram);
        }
        panic!("poll_transmit yielded more than {MAX_POLLS} datagrams in a row");
    }
}

/// `len`, `reps`, then `len` bytes: a message of a counter and the bytes `1 + reps % 64` times
/// (so up to 16 KiB, many segments), or the empty message when `len` is 0.
fn send(side: &mut Side, input: &mut Input, sent_bytes: &mut usize) {
    let len = input.u8();
    let reps = 1 + usize::from(input.u8() % 64);
    let chunk = input.bytes(len.into());
    let message = if len == 0 {
        Vec::new()
    } else {
        let mut m = u32::try_from(side.sent.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes()
            .to_vec();
        m.extend(chunk.repeat(reps));
        m
    };
    if *sent_bytes + message.len() > MAX_SENT_BYTES {
        return;
    }
    let was_closed = side.conn.is_closed();
    match side.conn.send_message(message.clone()) {
        Ok(()) => {
            assert!(!was_closed, "a closed connection accepted a message");
            *sent_bytes += message.len();
            side.sent.push(message);
        }
        Err(SendError::QueueFull(back)) => {
            assert_eq!(back, message);
            side.blocked = true;
        }
        Err(SendError::Closed(back)) => {
            assert!(was_closed, "an open connection refused a message as closed");
            assert_eq!(back, message);
        }
        Err(SendError::TooLarge(_)) => panic!("{} bytes is not too large", message.len()),
        // Only the client core checks a message's fields; a connection never does.
        Err(SendError::TooLong(too_long)) => panic!("a connection refused {too_long}"),
    }
}

/// A Data or Close for A, as if the peer sent it. Operands: `flags`; then for Data the ack (
/// `next_expected`: 4 bytes if flags bit 0, else 1; `sack`: 8 bytes if bit 1, else 1) and
/// `(flags >> 2) & 7` segments of `seq` (4 bytes if bit 5, else 1), `seg_flags` (bit 0 FIRST,
/// bit 1 LAST, bit 2 big: `len * 64` bytes of `len`), `len`, bytes. Bit 6: ack requested.
/// Bit 7: a Close instead, its reason from the low bits.
fn forged_packet(input: &mut Input) -> Packet {
    let flags = input.u8();
    if flags & 0x80 != 0 {
        return Packet::Close {
            connection: ID,
            token: TOKEN,
            reason: close_code(flags),
        };
    }
    let next_expected = if flags & 1 != 0 {
        input.u32()
    } else {
        input.u8().into()
    };
    let sack = if flags & 2 != 0 {
        input.u64()
    } else {
        input.u8().into()
    };
    let mut segments = Vec::new();
    for _ in 0..(flags >> 2) & 7 {
        let seq = if flags & 0x20 != 0 {
            input.u32()
        } else {
            input.u8().into()
        };
        let seg_flags = input.u8();
        let len = input.u8();
        let payload = if seg_flags & 4 != 0 {
            vec![len; usize::from(len) * 64]
        } else {
            input.bytes(len.into()).to_vec()
        };
        segments.push(Segment {
            seq,
            first: seg_flags & 1 != 0,
            last: seg_flags & 2 != 0,
            payload,
        });
    }
    Packet::Data {
        connection: ID,
        token: TOKEN,
        ack_requested: flags & 0x40 != 0,
        ack: Ack {
            next_expected,
            sack,
        },
        segments,
    }
}

fn close_code(n: u8) -> CloseCode {
    match n % 5 {
        0 => CloseCode::Leaving,
        1 => CloseCode::ServerShutdown,
        2 => CloseCode::ProtocolViolation,
        3 => CloseCode::TooSlow,
        _ => CloseCode::TimedOut,
    }
}

/// Small steps in milliseconds, big ones (up to ~32 s, past the idle timeout) in quarter seconds.
fn step(n: u8) -> Duration {
    if n < 128 {
        Duration::from_millis(n.into())
    } else {
        Duration::from_millis(u64::from(n - 128) * 250)
    }
}

/// One datagram from `from` to `to`: `how & 3` is 0 deliver the oldest, 1 drop it, 2 deliver
/// the newest (reordering), 3 deliver a copy of the oldest (duplication).
fn deliver_one(from: &mut Side, to: &mut Side, how: u8, now: Instant) {
    let datagram = match how & 3 {
        0 => from.outbox.pop_front(),
        1 => {
            from.outbox.pop_front();
            None
        }
        2 => from.outbox.pop_back(),
        _ => from.outbox.front().cloned(),
    };
    if let Some(datagram) = datagram {
        receive(to, &datagram, now);
    }
}

/// Everything `from` has in flight, but datagram `i` is lost when bit `i % 8` of `loss` is set.
fn deliver_all(from: &mut Side, to: &mut Side, loss: u8, now: Instant) {
    for (i, datagram) in std::mem::take(&mut from.outbox).into_iter().enumerate() {
        if loss & (1 << (i % 8)) == 0 {
            receive(to, &datagram, now);
        }
    }
}

fn receive(to: &mut Side, datagram: &[u8], now: Instant) {
    // The endpoint's checks (id, token, address) pass: it is the peer's own datagram.
    match PacketRef::decode(datagram).expect("checked when sent") {
        PacketRef::Data(data) => to.conn.handle_data(now, &data),
        PacketRef::Other(packet) => to.conn.handle_packet(now, packet),
        PacketRef::Sealed { .. } => unreachable!("the connection seals nothing"),
    }
}

/// The fuzzer's bytes, read front to back; past the end every read is 0.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn u32(&mut self) -> u32 {
        let mut b = [0; 4];
        for (dst, src) in b.iter_mut().zip(self.bytes(4)) {
            *dst = *src;
        }
        u32::from_be_bytes(b)
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        for (dst, src) in b.iter_mut().zip(self.bytes(8)) {
            *dst = *src;
        }
        u64::from_be_bytes(b)
    }
}
