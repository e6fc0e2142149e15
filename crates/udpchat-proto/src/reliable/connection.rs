//! One reliable connection, sans-IO.
//!
//! # How to drive a [`Connection`]
//!
//! Inputs (each takes the current time; the connection never reads a clock):
//! - [`handle_packet`](Connection::handle_packet): a Data or Close datagram for this connection,
//!   already decoded and checked (connection id, token, peer address) by the endpoint, or
//!   [`handle_data`](Connection::handle_data): a Data read in place
//!   ([`PacketRef`](crate::wire::packet::PacketRef), what a server uses: no copy of the
//!   segments);
//! - [`handle_timeout`](Connection::handle_timeout): the deadline from
//!   [`poll_timeout`](Connection::poll_timeout) has passed (a spurious call does nothing).
//!
//! Commands: [`send_message`](Connection::send_message), [`close`](Connection::close).
//!
//! Outputs, after any input or command, in this order: drain
//! [`poll_transmit`](Connection::poll_transmit) (or
//! [`poll_transmit_into`](Connection::poll_transmit_into), into a buffer the caller reuses)
//! and send each datagram; then ask
//! [`poll_timeout`](Connection::poll_timeout) for the next deadline; then drain
//! [`poll_event`](Connection::poll_event). Free the connection once
//! [`is_drained`](Connection::is_drained).
//!
//! # Reliability
//!
//! Each message is cut into segments of at most [`MAX_SEGMENT_PAYLOAD`](crate::wire::packet::MAX_SEGMENT_PAYLOAD) bytes (fewer on a
//! secure connection), numbered in one
//! sequence per direction. A receiver acknowledges with the next sequence number it expects
//! (everything below has arrived) plus a 64-bit map of what arrived beyond it. The sender keeps
//! every unacknowledged segment, retransmits on timeout (RFC 6298, exponential back-off) and,
//! sooner, when three later segments were acknowledged while it was not. At most
//! `max_in_flight` segments (never more than the 65 the ack can describe) are outstanding, so the
//! receiver can always hold them; it drops duplicates, reorders, reassembles and delivers each
//! message exactly once, in order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rtt::{RtoBounds, RttEstimator};
use crate::wire::message::{MAX_TEXT, TooLong};
use crate::wire::packet::{
    Ack, CloseCode, ConnectionId, DATA_FIXED_LEN, DataRef, DataWriter, HEADER_LEN, MAX_DATAGRAM,
    Packet, SEGMENT_HEADER_LEN, Segment, SegmentRef,
};

/// The widest receive window an [`Ack`] can describe: the expected segment plus 64 bits.
pub const MAX_WINDOW: u32 = 65;

/// The largest reassembled message accepted: the longest text plus room for the other fields.
pub const MAX_MESSAGE: usize = MAX_TEXT + 1024;

/// How a connection behaves; every bound is here.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Most segments sent and not yet acknowledged (at most [`MAX_WINDOW`]).
    pub max_in_flight: u32,
    /// Most bytes of messages accepted by `send_message` and not yet acknowledged. Beyond it
    /// `send_message` refuses, handing the message back; an `Unblocked` event says when there
    /// is room again.
    pub max_queued_bytes: usize,
    /// Retransmission timeout bounds.
    pub rto: RtoBounds,
    /// How long a receiver may wait before acknowledging in-order data (out-of-order data and
    /// ack requests are acknowledged at once).
    pub max_ack_delay: Duration,
    /// Send a keepalive probe after this long without sending anything; `None` never does
    /// (servers leave keepalives to clients and answer their probes).
    pub keepalive: Option<Duration>,
    /// The connection dies after this long without hearing from the peer.
    pub idle_timeout: Duration,
    /// The largest datagram this connection produces. A secure connection leaves room for the
    /// sealing (see `SEAL_OVERHEAD` in `crypto`), so that what goes on the wire is never larger
    /// than [`MAX_DATAGRAM`].
    pub max_datagram: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            max_queued_bytes: 1 << 20,
            rto: RtoBounds {
                initial: Duration::from_millis(300),
                min: Duration::from_millis(100),
                // Far below RFC 6298's 60 s: with the 30 s idle timeout, backing off no further
                // than 2 s leaves 15+ attempts before a live peer on a very lossy path would be
                // declared dead (each attempt fails half the time at 30% loss each way).
                max: Duration::from_secs(2),
            },
            max_ack_delay: Duration::from_millis(25),
            keepalive: Some(Duration::from_secs(10)),
            idle_timeout: Duration::from_secs(30),
            max_datagram: MAX_DATAGRAM,
        }
    }
}

/// Why `send_message` refused. The message is handed back in both cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send queue is full (see `max_queued_bytes`); wait for `Unblocked`.
    #[error("send queue full")]
    QueueFull(Vec<u8>),
    /// The connection is closing or closed.
    #[error("connection closed")]
    Closed(Vec<u8>),
    /// The message is larger than [`MAX_MESSAGE`]: a caller bug, never sendable.
    #[error("message too large")]
    TooLarge(Vec<u8>),
    /// A field of the message is longer than the server accepts (the client checks before
    /// sending, see [`ClientMessage::check_lengths`](crate::wire::message::ClientMessage::check_lengths)):
    /// never sent.
    #[error("{0}")]
    TooLong(TooLong),
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Nothing was heard from the peer for `idle_timeout`.
    TimedOut,
    /// The peer closed it.
    ClosedByPeer(CloseCode),
    /// We closed it.
    LocallyClosed(CloseCode),
    /// The peer broke the protocol (e.g. a message over the size limit).
    ProtocolViolation,
}

/// What the connection tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A whole message arrived (each exactly once, in the peer's order).
    Message(Vec<u8>),
    /// The send queue has room again after a refused `send_message`.
    Unblocked,
    /// The connection is over; the last event.
    Closed(CloseReason),
}

/// The connection's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Exchanging data.
    Open,
    /// We closed: the Close datagram is sent, we linger a few RTOs to repeat it if the peer
    /// keeps talking, then drain.
    Closing {
        code: CloseCode,
        until: Instant,
        close_pending: bool,
    },
    /// Over; the owner may free it.
    Drained,
}

/// One segment we sent or will send.
#[derive(Debug)]
struct OutSegment {
    seq: u32,
    first: bool,
    last: bool,
    /// Shared with the message it belongs to (and, for a room's message, with the same
    /// segment in every other member's queue): queuing it copies nothing.
    payload: Bytes,
    /// When it was last sent, and how many times; `None` before the first send.
    sent: Option<(Instant, u32)>,
    acked: bool,
    /// Declared lost: send again at the next opportunity.
    lost: bool,
}

/// Counters, for tests and status displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams received and accepted.
    pub datagrams_received: u64,
    /// Segments sent, first sends and retransmissions.
    pub segments_sent: u64,
    /// Segments sent again.
    pub retransmits: u64,
    /// Segments received that had arrived before.
    pub duplicates: u64,
    /// Whole messages delivered.
    pub messages_delivered: u64,
    /// Segments that arrived while receiving was paused (kept, delivered on resuming).
    pub held_while_paused: u64,
}

/// In-order data is acknowledged at once, not after `max_ack_delay`, when this many segments
/// arrived since the last acknowledgement: a quarter of the window (which counts segments, and
/// a datagram to a busy member carries a dozen one-segment messages), so that a sender sending
/// as fast as it can is never left waiting on the delay with a full window.
pub const ACK_EVERY_SEGMENTS: u32 = 16;

/// Queues longer than this are freed when they empty.
const IDLE_CAPACITY: usize = 8;

/// A reliable connection to one peer. See the [module docs](self).
#[derive(Debug)]
pub struct Connection {
    id: ConnectionId,
    token: u64,
    /// Shared by all of an endpoint's connections (a server has one per member).
    config: Arc<ConnectionConfig>,
    phase: Phase,
    rtt: RttEstimator,

    // ---- sending ----
    /// Unacknowledged and unsent segments, oldest first; `out[0].seq == send_base`.
    out: VecDeque<OutSegment>,
    /// The sequence number of `out[0]` (or of the next new segment when `out` is empty).
    send_base: u32,
    /// Bytes of payload in `out`.
    queued_bytes: usize,
    /// `send_message` refused since the last `Unblocked`.
    blocked: bool,
    /// When we last sent anything (keepalive timer).
    last_sent: Instant,
    /// A keepalive probe is due.
    probe_due: bool,
    /// When the unanswered keepalive probe was sent: on a lossy path it is repeated (see
    /// `probe_interval`) until the peer answers, so that a few lost probes never kill a live
    /// connection.
    probe_sent_at: Option<Instant>,

    // ---- receiving ----
    /// Every segment below this has been received.
    next_expected: u32,
    /// Segments received beyond `next_expected`, waiting for the gap to fill.
    reorder: BTreeMap<u32, Segment>,
    /// The message being reassembled from in-order segments.
    partial: Vec<u8>,
    /// Whether `partial` holds a started message.
    in_message: bool,
    /// When we last heard from the peer (idle timer).
    last_received: Instant,
    /// An acknowledgement must be sent by this time.
    ack_deadline: Option<Instant>,
    /// Segments received since our last acknowledgement.
    unacknowledged_segments: u32,
    /// The owner takes no more messages for now (see
    /// [`pause_receiving`](Connection::pause_receiving)): new segments are refused, unacknowledged.
    receive_paused: bool,

    events: VecDeque<ConnectionEvent>,
    stats: ConnectionStats,
    /// Messages whose every segment the peer has acknowledged, in sending order.
    messages_acknowledged: u64,
}

impl Connection {
    /// A connection that is open now, after the handshake gave it `id` and `token`.
    /// `handshake_rtt` seeds the estimator when the handshake measured one.
    pub fn new(
        id: ConnectionId,
        token: u64,
        config: impl Into<Arc<ConnectionConfig>>,
        now: Instant,
        handshake_rtt: Option<Duration>,
    ) -> Self {
        let mut config = config.into();
        let max_in_flight = config.max_in_flight.clamp(1, MAX_WINDOW);
        // Room for at least one byte of payload per segment, and never above the wire limit.
        let max_datagram = config.max_datagram.clamp(
            HEADER_LEN + DATA_FIXED_LEN + SEGMENT_HEADER_LEN + 1,
            MAX_DATAGRAM,
        );
        // (A configuration already within bounds stays shared with every other connection.)
        if (max_in_flight, max_datagram) != (config.max_in_flight, config.max_datagram) {
            let own = Arc::make_mut(&mut config);
            own.max_in_flight = max_in_flight;
            own.max_datagram = max_datagram;
        }
        let mut rtt = RttEstimator::new();
        if let Some(sample) = handshake_rtt {
            rtt.on_sample(sample);
        }
        Self {
            id,
            token,
            config,
            phase: Phase::Open,
            rtt,
            out: VecDeque::new(),
            send_base: 0,
            queued_bytes: 0,
            blocked: false,
            last_sent: now,
            probe_due: false,
            probe_sent_at: None,
            next_expected: 0,
            reorder: BTreeMap::new(),
            partial: Vec::new(),
            in_message: false,
            last_received: now,
            ack_deadline: None,
            unacknowledged_segments: 0,
            receive_paused: false,
            events: VecDeque::new(),
            stats: ConnectionStats::default(),
            messages_acknowledged: 0,
        }
    }

    // ---------------------------------------------------------------- inputs

    /// A datagram for this connection arrived (the endpoint checked id, token and address).
    /// Packets other than Data and Close are ignored.
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) {
        if !self.arrive(now, matches!(packet, Packet::Close { .. })) {
            return;
        }
        match packet {
            Packet::Data {
                ack_requested,
                ack,
                segments,
                ..
            } => self.on_data(
                now,
                ack_requested,
                ack,
                segments.iter().map(Segment::as_segment_ref),
            ),
            Packet::Close { reason, .. } => self.drain(CloseReason::ClosedByPeer(reason)),
            // Handshake packets are the endpoint's business.
            _ => {}
        }
    }

    /// A Data datagram for this connection, read in place ([`PacketRef`]): as
    /// [`handle_packet`](Self::handle_packet), without a copy of its segments (a payload is
    /// copied only into the message it belongs to).
    ///
    /// [`PacketRef`]: crate::wire::packet::PacketRef
    pub fn handle_data(&mut self, now: Instant, data: &DataRef<'_>) {
        if self.arrive(now, false) {
            self.on_data(now, data.ack_requested, data.ack, data.segments());
        }
    }

    /// What any datagram does on arrival; whether it is to be read (the connection is open).
    fn arrive(&mut self, now: Instant, is_close: bool) -> bool {
        match self.phase {
            Phase::Drained => false,
            Phase::Closing { code, until, .. } => {
                // We are leaving: answer anything but a Close with our Close again (at most
                // one per datagram received, so never an amplifier).
                self.phase = if is_close {
                    Phase::Drained
                } else {
                    Phase::Closing {
                        code,
                        until,
                        close_pending: true,
                    }
                };
                false
            }
            Phase::Open => {
                self.last_received = now;
                self.probe_sent_at = None;
                self.stats.datagrams_received += 1;
                true
            }
        }
    }

    /// A Data datagram's acknowledgement and segments.
    fn on_data<'a>(
        &mut self,
        now: Instant,
        ack_requested: bool,
        ack: Ack,
        segments: impl Iterator<Item = SegmentRef<'a>>,
    ) {
        self.on_ack(now, ack);
        let mut out_of_order = false;
        for segment in segments {
            self.unacknowledged_segments = self.unacknowledged_segments.saturating_add(1);
            out_of_order |= self.on_segment(segment);
            if self.phase == Phase::Drained {
                return;
            }
        }
        // A sender with data to send waits for acks once its window is full: ack at once
        // every quarter window rather than after the delay (QUIC acks every second packet;
        // less often here, acks being datagrams a server pays for).
        if ack_requested || out_of_order || self.unacknowledged_segments >= ACK_EVERY_SEGMENTS {
            self.ack_deadline = Some(now);
        }
    }

    /// Timers: retransmission, delayed ack, keepalive, idle timeout, closing linger.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Drained => return,
            Phase::Closing { until, .. } => {
                if now >= until {
                    self.phase = Phase::Drained;
                }
                return;
            }
            Phase::Open => {}
        }
        if now >= self.last_received + self.config.idle_timeout {
            self.drain(CloseReason::TimedOut);
            return;
        }
        if self.rto_deadline().is_some_and(|deadline| now >= deadline) {
            {
                // RFC 6298 5.4-5.6: retransmit the oldest unacknowledged segment, back off,
                // restart the timer (on that send). Its acknowledgement carries the receiver's
                // whole state, and time-threshold detection in `on_ack` then resends everything
                // really lost at once, while a mere lost ack costs a single segment.
                // The timer is that of the segment sent longest ago (not always the lowest
                // sequence number: older segments may have been retransmitted since).
                if let Some(seg) = self
                    .out
                    .iter_mut()
                    .filter(|s| !s.acked && !s.lost)
                    .filter_map(|s| s.sent.map(|(at, _)| (at, s)))
                    .min_by_key(|(at, _)| *at)
                    .map(|(_, s)| s)
                {
                    seg.lost = true;
                }
                self.rtt.on_timeout(&self.config.rto);
            }
        }
        if let Some(keepalive) = self.config.keepalive {
            let probe_again = self
                .probe_sent_at
                .is_some_and(|at| now >= at + self.probe_interval());
            if probe_again || now >= self.last_sent + keepalive {
                self.probe_due = true;
            }
        }
    }

    // ---------------------------------------------------------------- commands

    /// Queues one message for reliable, in-order delivery. A [`Bytes`] is queued as it is,
    /// without a copy (a message of several segments as slices of it): the server hands every
    /// member of a room the same encoded message.
    ///
    /// # Errors
    /// [`SendError`], with the message handed back.
    pub fn send_message(&mut self, message: impl Into<Bytes>) -> Result<(), SendError> {
        let message: Bytes = message.into();
        if self.phase != Phase::Open {
            return Err(SendError::Closed(message.into()));
        }
        if message.len() > MAX_MESSAGE {
            return Err(SendError::TooLarge(message.into()));
        }
        if self.queued_bytes > 0 && self.queued_bytes + message.len() > self.config.max_queued_bytes
        {
            self.blocked = true;
            return Err(SendError::QueueFull(message.into()));
        }
        self.queued_bytes += message.len();
        let segment_payload = self.segment_payload();
        if message.len() <= segment_payload {
            // One segment (the usual chat line): the message itself (a slice would make a
            // unique buffer shared, an allocation).
            self.push_segment(true, true, message);
            return Ok(());
        }
        let count = message.len().div_ceil(segment_payload);
        for i in 0..count {
            let end = ((i + 1) * segment_payload).min(message.len());
            self.push_segment(
                i == 0,
                i + 1 == count,
                message.slice(i * segment_payload..end),
            );
        }
        Ok(())
    }

    /// Queues one segment of a message.
    fn push_segment(&mut self, first: bool, last: bool, payload: Bytes) {
        let seq = self.send_base.wrapping_add(self.out.len() as u32);
        self.out.push_back(OutSegment {
            seq,
            first,
            last,
            payload,
            sent: None,
            acked: false,
            lost: false,
        });
    }

    /// Stops (`true`) or resumes (`false`) delivering new messages from the peer. While
    /// paused, arriving segments are kept in the receive window (at most [`MAX_WINDOW`]) but
    /// the next expected one is not acknowledged, so the window fills and the peer can send
    /// no more: a receiver that cannot take more (a server holding a flooding member to its
    /// rate) slows the sender down without losing anything and without more memory. On
    /// resuming, what was kept is delivered (as [`ConnectionEvent::Message`]s, to drain next)
    /// and acknowledged at once. Messages already delivered are not affected.
    pub fn pause_receiving(&mut self, paused: bool) {
        let resumed = self.receive_paused && !paused;
        self.receive_paused = paused;
        if resumed && self.phase == Phase::Open {
            let mut delivered = false;
            while let Some(next) = self.reorder.remove(&self.next_expected) {
                self.deliver(next.as_segment_ref());
                delivered = true;
                if self.phase == Phase::Drained {
                    return;
                }
            }
            if delivered {
                // The peer waits on this acknowledgement to send more: at the next transmit.
                self.ack_deadline = Some(self.last_received);
            }
        }
    }

    /// Whether receiving is paused (see [`pause_receiving`](Self::pause_receiving)).
    pub fn is_receive_paused(&self) -> bool {
        self.receive_paused
    }

    /// Closes the connection: a Close datagram goes out, then the connection lingers a few RTOs
    /// (answering stray datagrams with Close) and drains. Unsent messages are dropped: to leave
    /// only after everything was delivered, wait for [`is_send_idle`](Self::is_send_idle) first.
    pub fn close(&mut self, now: Instant, code: CloseCode) {
        if self.phase != Phase::Open {
            return;
        }
        let until = now + self.rtt.rto(&self.config.rto) * 3;
        self.phase = Phase::Closing {
            code,
            until,
            close_pending: true,
        };
        self.events
            .push_back(ConnectionEvent::Closed(CloseReason::LocallyClosed(code)));
    }

    // ---------------------------------------------------------------- outputs

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.poll_transmit_into(now, &mut out).then_some(out)
    }

    /// [`poll_transmit`](Self::poll_transmit) appended to `out`, a buffer the caller reuses
    /// (a server writes every member's datagrams through one: no allocation per datagram);
    /// returns whether a datagram was written.
    pub fn poll_transmit_into(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        match self.phase {
            Phase::Drained => false,
            Phase::Closing {
                code,
                until,
                close_pending,
            } => {
                if !close_pending {
                    return false;
                }
                self.phase = Phase::Closing {
                    code,
                    until,
                    close_pending: false,
                };
                self.stats.datagrams_sent += 1;
                let close = Packet::Close {
                    connection: self.id,
                    token: self.token,
                    reason: code,
                };
                out.reserve(close.encoded_len());
                close.encode(out);
                true
            }
            Phase::Open => self.poll_data(now, out),
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Drained => None,
            Phase::Closing { until, .. } => Some(until),
            Phase::Open => {
                let mut deadline = self.last_received + self.config.idle_timeout;
                for candidate in [
                    self.rto_deadline(),
                    self.ack_deadline,
                    self.config.keepalive.map(|k| self.last_sent + k),
                    self.probe_sent_at.map(|at| at + self.probe_interval()),
                ]
                .into_iter()
                .flatten()
                {
                    deadline = deadline.min(candidate);
                }
                Some(deadline)
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > IDLE_CAPACITY {
            self.events = VecDeque::new();
        }
        event
    }

    // ---------------------------------------------------------------- getters

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The connection's token.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Over: the owner may free it.
    pub fn is_drained(&self) -> bool {
        self.phase == Phase::Drained
    }

    /// Closing or drained: nothing more can be sent.
    pub fn is_closed(&self) -> bool {
        self.phase != Phase::Open
    }

    /// Everything sent has been acknowledged.
    pub fn is_send_idle(&self) -> bool {
        self.out.is_empty()
    }

    /// Bytes accepted by `send_message` and not yet acknowledged.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// How many messages the peer has acknowledged whole: the first `n` messages given to
    /// [`send_message`](Self::send_message) have arrived (acknowledgement is in order, so a
    /// message acknowledged selectively counts once everything before it is).
    pub fn messages_acknowledged(&self) -> u64 {
        self.messages_acknowledged
    }

    /// The smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.smoothed()
    }

    /// Counters.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    // ---------------------------------------------------------------- internals

    /// The payload of a full segment in a datagram of `max_datagram` bytes.
    fn segment_payload(&self) -> usize {
        self.config.max_datagram - HEADER_LEN - DATA_FIXED_LEN - SEGMENT_HEADER_LEN
    }

    /// How soon an unanswered keepalive probe is repeated: one RTO, but at least twenty times
    /// per idle timeout, so that on a lossy path a live peer is almost never declared dead
    /// (with 30% loss each way a probe round trip fails half the time; a dozen in a row fail
    /// once in 3000).
    fn probe_interval(&self) -> Duration {
        self.rtt
            .rto(&self.config.rto)
            .min(self.config.idle_timeout / 20)
    }

    /// When the oldest unacknowledged segment times out.
    fn rto_deadline(&self) -> Option<Instant> {
        let rto = self.rtt.rto(&self.config.rto);
        self.in_flight_span()
            .filter(|s| !s.acked && !s.lost)
            .filter_map(|s| s.sent.map(|(at, _)| at + rto))
            .min()
    }

    /// The segments that may have been sent: a segment goes out only inside the window, which
    /// starts at the oldest unacknowledged one and spans at most [`MAX_WINDOW`] (everything
    /// queued behind it was never sent).
    fn in_flight_span(&self) -> impl Iterator<Item = &OutSegment> {
        self.out.iter().take(MAX_WINDOW as usize)
    }

    /// Writes a Data datagram to `out`: retransmissions first, then new segments within the
    /// window, then, if nothing else, an acknowledgement or a keepalive probe. Returns whether
    /// it wrote one.
    fn poll_data(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let mut budget = self.config.max_datagram - HEADER_LEN - DATA_FIXED_LEN;
        let (id, token, max_datagram) = (self.id, self.token, self.config.max_datagram);
        let ack = self.current_ack();
        // Written as segments are taken, straight from the queue (no copy of a payload);
        // begun with the first one, so that a call with nothing to send writes nothing.
        let mut datagram: Option<DataWriter> = None;
        let window_end = self.send_base.wrapping_add(self.config.max_in_flight);
        for seg in self.out.iter_mut() {
            if seg.seq.wrapping_sub(self.send_base) >= window_end.wrapping_sub(self.send_base) {
                break;
            }
            let wanted = !seg.acked && (seg.lost || seg.sent.is_none());
            if !wanted {
                continue;
            }
            let size = SEGMENT_HEADER_LEN + seg.payload.len();
            if size > budget {
                break;
            }
            budget -= size;
            let count = match seg.sent {
                Some((_, n)) => {
                    self.stats.retransmits += 1;
                    n + 1
                }
                None => 1,
            };
            seg.sent = Some((now, count));
            self.stats.segments_sent += 1;
            seg.lost = false;
            datagram
                .get_or_insert_with(|| {
                    out.reserve(max_datagram);
                    DataWriter::begin(out, id, token, ack)
                })
                .push_segment(out, seg.seq, seg.first, seg.last, &seg.payload);
        }
        let has_segments = datagram.is_some();
        let ack_due = self.ack_deadline.is_some_and(|d| now >= d);
        if !has_segments && !ack_due && !self.probe_due {
            return false;
        }
        let ack_requested = self.probe_due && !has_segments;
        if self.probe_due {
            self.probe_sent_at = Some(now);
        }
        self.probe_due = false;
        self.ack_deadline = None;
        self.unacknowledged_segments = 0;
        self.last_sent = now;
        self.stats.datagrams_sent += 1;
        let datagram = datagram.unwrap_or_else(|| {
            out.reserve(HEADER_LEN + DATA_FIXED_LEN);
            DataWriter::begin(out, id, token, ack)
        });
        datagram.finish(out, ack_requested);
        true
    }

    /// What we have received, as an [`Ack`].
    fn current_ack(&self) -> Ack {
        let mut sack = 0u64;
        for &seq in self.reorder.keys() {
            let bit = seq.wrapping_sub(self.next_expected).wrapping_sub(1);
            if bit < 64 {
                sack |= 1 << bit;
            }
        }
        Ack {
            next_expected: self.next_expected,
            sack,
        }
    }

    /// The peer's acknowledgement: free what it has, sample the RTT, detect losses.
    fn on_ack(&mut self, now: Instant, ack: Ack) {
        // Ignore acks for data we never sent (a confused or hostile peer).
        let acked_prefix = ack.next_expected.wrapping_sub(self.send_base) as usize;
        if acked_prefix > self.out.len() {
            return;
        }
        let mut newest_sample: Option<(u32, Instant)> = None;
        let mut latest_acked_sent: Option<Instant> = None;
        // Only what was sent can be acknowledged: the in-flight span, not the whole queue.
        for (i, seg) in self.out.iter_mut().take(MAX_WINDOW as usize).enumerate() {
            let offset = seg.seq.wrapping_sub(ack.next_expected);
            let sacked = (1..=64).contains(&offset) && ack.sack & (1 << (offset - 1)) != 0;
            if seg.acked || !(i < acked_prefix || sacked) {
                continue;
            }
            // Only a segment that was sent can be acknowledged.
            let Some((sent_at, count)) = seg.sent else {
                continue;
            };
            seg.acked = true;
            seg.lost = false;
            latest_acked_sent = latest_acked_sent.max(Some(sent_at));
            // Karn: only segments sent once give a sample; take the newest.
            if count == 1 && newest_sample.is_none_or(|(seq, _)| seg.seq > seq) {
                newest_sample = Some((seg.seq, sent_at));
            }
        }
        if let Some((_, sent_at)) = newest_sample {
            self.rtt.on_sample(now.saturating_duration_since(sent_at));
        }
        // Fast retransmit: a segment is lost when three segments after it in the sequence, and
        // transmitted no earlier (so that a fresh retransmission is not judged by old news),
        // have been acknowledged. (Within the span that may have been sent: at most
        // MAX_WINDOW segments, so this is bounded and allocates nothing.)
        let span = self.out.len().min(MAX_WINDOW as usize);
        if self.in_flight_span().filter(|s| s.acked).count() >= 3 {
            for i in 0..span {
                let seg = &self.out[i];
                if seg.acked || seg.lost {
                    continue;
                }
                let Some((sent_at, _)) = seg.sent else {
                    continue;
                };
                let seq = seg.seq;
                let later = self
                    .in_flight_span()
                    .filter(|s| s.acked)
                    .filter_map(|s| s.sent.map(|(at, _)| (s.seq, at)))
                    .filter(|(q, at)| q.wrapping_sub(seq) < MAX_WINDOW && *at >= sent_at)
                    .count();
                if later >= 3 {
                    self.out[i].lost = true;
                }
            }
        }
        // Time threshold (as QUIC, RFC 9002 6.1.2): a segment sent more than 9/8 RTT before one
        // that was just acknowledged has had its chance.
        if let Some(latest) = latest_acked_sent {
            let rtt = self.rtt.smoothed().unwrap_or(self.config.rto.initial);
            let rtt = rtt.max(self.rtt.latest().unwrap_or(rtt));
            let loss_delay = (rtt * 9 / 8).max(Duration::from_millis(1));
            for seg in self
                .out
                .iter_mut()
                .take(MAX_WINDOW as usize)
                .filter(|s| !s.acked && !s.lost)
            {
                if seg.sent.is_some_and(|(at, _)| at + loss_delay < latest) {
                    seg.lost = true;
                }
            }
        }
        // Free the acknowledged prefix.
        while self.out.front().is_some_and(|s| s.acked) {
            if let Some(seg) = self.out.pop_front() {
                self.queued_bytes -= seg.payload.len();
                self.send_base = self.send_base.wrapping_add(1);
                if seg.last {
                    self.messages_acknowledged += 1;
                }
            }
        }
        // An idle connection gives back what a burst made its queue grow to: thousands of
        // idle members should cost little memory each.
        if self.out.is_empty() && self.out.capacity() > IDLE_CAPACITY {
            self.out = VecDeque::new();
        }
        if self.blocked && self.queued_bytes <= self.config.max_queued_bytes / 2 {
            self.blocked = false;
            self.events.push_back(ConnectionEvent::Unblocked);
        }
    }

    /// One received segment. Returns whether it arrived out of order (ack at once).
    fn on_segment(&mut self, segment: SegmentRef<'_>) -> bool {
        let offset = segment.seq.wrapping_sub(self.next_expected);
        if self.receive_paused && offset < MAX_WINDOW {
            // Kept, not delivered: the next expected one stays unacknowledged (the peer sends
            // it again), the later ones are acknowledged as out of order, and the window
            // (at most MAX_WINDOW segments kept) stops the peer sending more.
            self.stats.held_while_paused += 1;
            self.keep(segment);
            return true;
        }
        if offset >= MAX_WINDOW {
            // Behind the window (a duplicate of delivered data) or beyond it (the sender
            // overran the window): either way, acknowledge at once so the sender catches up.
            self.stats.duplicates += 1;
            return true;
        }
        if offset > 0 {
            // Kept until the gap before it is filled.
            self.keep(segment);
            return true;
        }
        self.deliver(segment);
        if self.phase == Phase::Drained {
            // That segment broke the protocol: nothing after it may be delivered.
            return false;
        }
        while let Some(next) = self.reorder.remove(&self.next_expected) {
            self.deliver(next.as_segment_ref());
            if self.phase == Phase::Drained {
                return false;
            }
        }
        if self.ack_deadline.is_none() {
            self.ack_deadline = Some(self.last_received + self.config.max_ack_delay);
        }
        false
    }

    /// Keeps a copy of a segment in the receive window until it can be delivered (a second
    /// copy of one kept is a duplicate).
    fn keep(&mut self, segment: SegmentRef<'_>) {
        if self
            .reorder
            .insert(segment.seq, segment.to_segment())
            .is_some()
        {
            self.stats.duplicates += 1;
        }
    }

    /// Appends an in-order segment to the message being reassembled.
    fn deliver(&mut self, segment: SegmentRef<'_>) {
        self.next_expected = self.next_expected.wrapping_add(1);
        if segment.first == self.in_message
            || self.partial.len() + segment.payload.len() > MAX_MESSAGE
        {
            // A FIRST inside a message, a continuation outside one, or an oversized message.
            self.drain(CloseReason::ProtocolViolation);
            return;
        }
        self.in_message = true;
        self.partial.extend_from_slice(segment.payload);
        if segment.last {
            self.in_message = false;
            self.stats.messages_delivered += 1;
            self.events
                .push_back(ConnectionEvent::Message(std::mem::take(&mut self.partial)));
        }
    }

    fn drain(&mut self, reason: CloseReason) {
        if self.phase == Phase::Drained {
            return;
        }
        self.phase = Phase::Drained;
        self.events.push_back(ConnectionEvent::Closed(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{RandomSource, SplitMix64};
    use crate::testing::{Faults, Network, addr};

    const A: u16 = 1;
    const B: u16 = 2;

    fn config() -> ConnectionConfig {
        ConnectionConfig {
            keepalive: Some(Duration::from_secs(10)),
            ..ConnectionConfig::default()
        }
    }

    /// Two connections joined by a simulated network, and a virtual clock.
    struct Pair {
        now: Instant,
        a: Connection,
        b: Connection,
        net: Network,
        got_a: Vec<Vec<u8>>,
        got_b: Vec<Vec<u8>>,
        closed_a: Option<CloseReason>,
        closed_b: Option<CloseReason>,
    }

    impl Pair {
        fn new(faults: Faults, seed: u64) -> Self {
            let now = Instant::now();
            let mut server_side = config();
            server_side.keepalive = None;
            Self {
                now,
                a: Connection::new(ConnectionId(7), 99, config(), now, None),
                b: Connection::new(ConnectionId(7), 99, server_side, now, None),
                net: Network::new(faults, seed),
                got_a: Vec::new(),
                got_b: Vec::new(),
                closed_a: None,
                closed_b: None,
            }
        }

        fn conn(&mut self, n: u16) -> &mut Connection {
            if n == A { &mut self.a } else { &mut self.b }
        }

        /// Sends, timers and deliveries until `deadline` or until both sides are idle.
        fn drive(&mut self, deadline: Duration) {
            let end = self.now + deadline;
            // Every turn of the loop advances the clock or delivers a datagram; a connection
            // that keeps asking for a timeout it does not handle would spin here instead.
            let mut turns = 0u32;
            loop {
                turns += 1;
                assert!(
                    turns < 1_000_000,
                    "simulation stuck at {:?}: a {:?} b {:?}",
                    self.now,
                    self.a.poll_timeout(),
                    self.b.poll_timeout()
                );
                self.flush();
                let next = [
                    self.net.next_arrival(),
                    self.a.poll_timeout(),
                    self.b.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min();
                let Some(next) = next else { break };
                if next > end {
                    self.now = end;
                    break;
                }
                self.now = self.now.max(next);
                while let Some(d) = self.net.pop_due(self.now) {
                    let packet = Packet::decode(&d.payload).expect("own datagrams decode");
                    let to = d.to.port();
                    let now = self.now;
                    self.conn(to).handle_packet(now, packet);
                }
                let now = self.now;
                self.a.handle_timeout(now);
                self.b.handle_timeout(now);
                if self.a.is_drained() && self.b.is_drained() && self.net.is_idle() {
                    break;
                }
            }
            self.flush();
        }

        fn flush(&mut self) {
            let now = self.now;
            for (from, to) in [(A, B), (B, A)] {
                while let Some(d) = self.conn(from).poll_transmit(now) {
                    self.net.send(now, addr(from), addr(to), d);
                }
            }
            while let Some(e) = self.a.poll_event() {
                match e {
                    ConnectionEvent::Message(m) => self.got_a.push(m),
                    ConnectionEvent::Closed(r) => self.closed_a = Some(r),
                    ConnectionEvent::Unblocked => {}
                }
            }
            while let Some(e) = self.b.poll_event() {
                match e {
                    ConnectionEvent::Message(m) => self.got_b.push(m),
                    ConnectionEvent::Closed(r) => self.closed_b = Some(r),
                    ConnectionEvent::Unblocked => {}
                }
            }
        }
    }

    fn messages(seed: u64, count: usize) -> Vec<Vec<u8>> {
        let mut rng = SplitMix64::new(seed);
        (0..count)
            .map(|i| {
                // Mostly short lines, sometimes several segments, once in a while 64 KiB.
                let len = match rng.next_u64() % 20 {
                    0 => MAX_TEXT,
                    1..=3 => (rng.next_u64() % 5000) as usize,
                    _ => (rng.next_u64() % 100) as usize,
                };
                let mut m = format!("{i}:").into_bytes();
                m.resize(m.len() + len, b'a' + (i % 26) as u8);
                m
            })
            .collect()
    }

    /// Sends `msgs` from `from`, retrying refused messages as the queue drains.
    fn send_all(pair: &mut Pair, from: u16, msgs: &[Vec<u8>]) {
        let mut pending: VecDeque<Vec<u8>> = msgs.iter().cloned().collect();
        let deadline = pair.now + Duration::from_secs(600);
        while let Some(m) = pending.pop_front() {
            match pair.conn(from).send_message(m) {
                Ok(()) => {}
                Err(SendError::QueueFull(m)) => {
                    pending.push_front(m);
                    pair.drive(Duration::from_millis(50));
                    assert!(pair.now < deadline, "stuck");
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn perfect_network_delivers_everything_in_order() {
        let mut pair = Pair::new(Faults::none(), 1);
        let msgs = messages(1, 50);
        send_all(&mut pair, A, &msgs);
        pair.drive(Duration::from_secs(10));
        assert_eq!(pair.got_b, msgs);
        assert!(pair.a.is_send_idle());
        assert_eq!(pair.a.stats().retransmits, 0);
    }

    #[test]
    fn a_paused_receiver_takes_nothing_new_and_the_sender_catches_up_when_it_resumes() {
        let mut pair = Pair::new(Faults::none(), 1);
        let first = messages(2, 5);
        send_all(&mut pair, A, &first);
        pair.drive(Duration::from_secs(1));
        assert_eq!(pair.got_b, first);
        pair.b.pause_receiving(true);
        let more = messages(3, 30);
        send_all(&mut pair, A, &more);
        pair.drive(Duration::from_secs(5));
        assert_eq!(pair.got_b, first, "nothing new while paused");
        assert!(pair.b.stats().held_while_paused > 0);
        assert_eq!(pair.closed_a, None, "the sender hears acks: it stays");
        pair.b.pause_receiving(false);
        pair.drive(Duration::from_secs(10));
        let all: Vec<Vec<u8>> = first.iter().chain(&more).cloned().collect();
        assert_eq!(pair.got_b, all, "everything, once, in order");
        assert!(pair.a.is_send_idle());
    }

    #[test]
    fn an_idle_connection_gives_back_its_queues_after_a_burst() {
        let mut pair = Pair::new(Faults::none(), 1);
        let msgs = messages(1, 200);
        send_all(&mut pair, A, &msgs);
        pair.drive(Duration::from_secs(10));
        assert_eq!(pair.got_b, msgs);
        assert!(
            pair.a.out.capacity() <= IDLE_CAPACITY,
            "{}",
            pair.a.out.capacity()
        );
        assert!(pair.b.events.capacity() <= IDLE_CAPACITY);
        // And it still works.
        send_all(&mut pair, A, &msgs[..3]);
        pair.drive(Duration::from_secs(10));
        assert_eq!(pair.got_b.len(), 203);
    }

    #[test]
    fn lossy_network_delivers_exactly_once_in_order_both_ways_for_many_seeds() {
        for seed in 0..40 {
            let mut pair = Pair::new(Faults::lossy(0.3), seed);
            let to_b = messages(seed, 30);
            let to_a = messages(seed + 1000, 30);
            send_all(&mut pair, A, &to_b);
            send_all(&mut pair, B, &to_a);
            pair.drive(Duration::from_secs(120));
            assert_eq!(pair.got_b.len(), to_b.len(), "seed {seed}");
            assert!(
                pair.got_b == to_b,
                "seed {seed}: a->b out of order or corrupted"
            );
            assert!(
                pair.got_a == to_a,
                "seed {seed}: b->a out of order or corrupted"
            );
            assert!(
                pair.a.is_send_idle() && pair.b.is_send_idle(),
                "seed {seed}"
            );
            assert!(pair.net.dropped > 0 && pair.net.duplicated > 0);
            assert_eq!(pair.closed_a, None, "seed {seed}");
            // No retransmission storm: at 30% loss each way, with deep reordering, about half
            // of all segment sends are repeats (measured mean 0.54); a storm would be far more.
            for stats in [pair.a.stats(), pair.b.stats()] {
                assert!(
                    stats.retransmits * 4 < stats.segments_sent * 3,
                    "seed {seed}: {stats:?}"
                );
            }
        }
    }

    #[test]
    fn a_lost_segment_is_retransmitted_after_one_rto() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        pair.a.send_message(b"hello".to_vec()).unwrap();
        let lost = pair.a.poll_transmit(t0).unwrap(); // dropped on the floor
        assert!(
            matches!(Packet::decode(&lost), Ok(Packet::Data { segments, .. }) if segments.len() == 1)
        );
        assert_eq!(pair.a.poll_transmit(t0), None);
        // Nothing before the initial RTO (300 ms).
        let rto_at = pair.a.poll_timeout().unwrap();
        assert_eq!(rto_at, t0 + Duration::from_millis(300));
        pair.a.handle_timeout(rto_at - Duration::from_millis(1));
        assert_eq!(
            pair.a.poll_transmit(rto_at - Duration::from_millis(1)),
            None
        );
        pair.a.handle_timeout(rto_at);
        let again = pair.a.poll_transmit(rto_at).unwrap();
        assert_eq!(again, lost);
        // Backed off: the next timeout is twice as far.
        assert_eq!(
            pair.a.poll_timeout(),
            Some(rto_at + Duration::from_millis(600))
        );
        assert_eq!(pair.a.stats().retransmits, 1);
    }

    #[test]
    fn a_stream_of_data_is_acknowledged_every_quarter_window_without_waiting_for_the_delay() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        // One segment per datagram (each message fills one).
        let big = vec![b'x'; pair.a.segment_payload()];
        let mut datagrams = Vec::new();
        for _ in 0..(2 * ACK_EVERY_SEGMENTS) {
            pair.a.send_message(big.clone()).unwrap();
        }
        while let Some(d) = pair.a.poll_transmit(t0) {
            datagrams.push(d);
        }
        assert!(datagrams.len() >= 2 * ACK_EVERY_SEGMENTS as usize);
        let receive = |b: &mut Connection, d: &[u8]| {
            b.handle_packet(t0, Packet::decode(d).unwrap());
        };
        for d in &datagrams[..ACK_EVERY_SEGMENTS as usize - 1] {
            receive(&mut pair.b, d);
        }
        // Fewer than ACK_EVERY_SEGMENTS segments: the ack waits (for more data, or the delay).
        assert_eq!(pair.b.poll_transmit(t0), None);
        receive(&mut pair.b, &datagrams[ACK_EVERY_SEGMENTS as usize - 1]);
        let ack = pair
            .b
            .poll_transmit(t0)
            .expect("an ack at once, at no later time");
        let Ok(Packet::Data { ack, segments, .. }) = Packet::decode(&ack) else {
            panic!("not a data packet")
        };
        assert!(segments.is_empty());
        assert_eq!(ack.next_expected, ACK_EVERY_SEGMENTS);
        // And again for the next ones.
        for d in &datagrams[ACK_EVERY_SEGMENTS as usize..2 * ACK_EVERY_SEGMENTS as usize] {
            receive(&mut pair.b, d);
        }
        assert!(pair.b.poll_transmit(t0).is_some());
    }

    #[test]
    fn small_messages_coalesced_into_one_datagram_count_as_segments_for_the_ack() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        for i in 0..ACK_EVERY_SEGMENTS {
            pair.a.send_message(vec![i as u8; 20]).unwrap();
        }
        let d = pair.a.poll_transmit(t0).unwrap();
        assert_eq!(pair.a.poll_transmit(t0), None, "all in one datagram");
        pair.b.handle_packet(t0, Packet::decode(&d).unwrap());
        assert!(
            pair.b.poll_transmit(t0).is_some(),
            "a quarter window of segments is acknowledged at once"
        );
    }

    #[test]
    fn three_later_acks_trigger_fast_retransmit() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        for i in 0..4u8 {
            pair.a.send_message(vec![i]).unwrap();
        }
        let d = pair.a.poll_transmit(t0).unwrap();
        let Ok(Packet::Data { segments, .. }) = Packet::decode(&d) else {
            panic!()
        };
        assert_eq!(segments.len(), 4);
        // The peer got 1, 2, 3 but not 0.
        let ack = Ack {
            next_expected: 0,
            sack: 0b111,
        };
        let t1 = t0 + Duration::from_millis(20);
        pair.a.handle_packet(
            t1,
            Packet::Data {
                connection: ConnectionId(7),
                token: 99,
                ack_requested: false,
                ack,
                segments: vec![],
            },
        );
        let d = pair
            .a
            .poll_transmit(t1)
            .expect("fast retransmit before any timer");
        let Ok(Packet::Data { segments, .. }) = Packet::decode(&d) else {
            panic!()
        };
        assert_eq!(segments.iter().map(|s| s.seq).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn duplicates_are_delivered_once_and_acked_at_once() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        pair.a.send_message(b"once".to_vec()).unwrap();
        let d = pair.a.poll_transmit(t0).unwrap();
        let packet = Packet::decode(&d).unwrap();
        pair.b.handle_packet(t0, packet.clone());
        pair.b.handle_packet(t0, packet.clone());
        pair.b.handle_packet(t0, packet);
        assert_eq!(
            pair.b.poll_event(),
            Some(ConnectionEvent::Message(b"once".to_vec()))
        );
        assert_eq!(pair.b.poll_event(), None);
        assert_eq!(pair.b.stats().duplicates, 2);
        // The duplicate asks for an immediate ack (the first ack was probably lost).
        assert!(pair.b.poll_transmit(t0).is_some());
    }

    #[test]
    fn in_flight_segments_never_exceed_the_window() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        for i in 0..200u32 {
            pair.a.send_message(i.to_be_bytes().to_vec()).unwrap();
        }
        let mut seqs = Vec::new();
        while let Some(d) = pair.a.poll_transmit(t0) {
            let Ok(Packet::Data { segments, .. }) = Packet::decode(&d) else {
                panic!()
            };
            seqs.extend(segments.iter().map(|s| s.seq));
        }
        assert_eq!(seqs, (0..64).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_refuses_hands_back_and_unblocks() {
        let mut pair = Pair::new(Faults::none(), 1);
        Arc::make_mut(&mut pair.a.config).max_queued_bytes = 10_000;
        let big = vec![b'x'; 6000];
        pair.a.send_message(big.clone()).unwrap();
        assert_eq!(
            pair.a.send_message(big.clone()),
            Err(SendError::QueueFull(big.clone()))
        );
        pair.drive(Duration::from_secs(1));
        assert_eq!(pair.got_b, vec![big.clone()]);
        // The Unblocked event was drained by the harness; now there is room.
        assert!(pair.a.send_message(big).is_ok());
    }

    #[test]
    fn oversized_messages_are_refused_and_a_peer_sending_them_is_cut_off() {
        let mut pair = Pair::new(Faults::none(), 1);
        let too_big = vec![0; MAX_MESSAGE + 1];
        assert_eq!(
            pair.a.send_message(too_big.clone()),
            Err(SendError::TooLarge(too_big))
        );
        // A hostile peer streams continuation segments forever.
        let t0 = pair.now;
        let mut segments = vec![Segment {
            seq: 0,
            first: true,
            last: false,
            payload: vec![0; 1000],
        }];
        for seq in 1..64 {
            segments.push(Segment {
                seq,
                first: false,
                last: false,
                payload: vec![0; 1100],
            });
        }
        pair.b.handle_packet(
            t0,
            Packet::Data {
                connection: ConnectionId(7),
                token: 99,
                ack_requested: false,
                ack: Ack::default(),
                segments,
            },
        );
        assert!(pair.b.is_drained());
        assert_eq!(
            pair.b.poll_event(),
            Some(ConnectionEvent::Closed(CloseReason::ProtocolViolation))
        );
    }

    #[test]
    fn nothing_is_delivered_after_a_protocol_violation() {
        // Found by the `connection` fuzz target: a buffered segment used to be delivered after
        // the segment that closed the connection.
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        let data = |seq, first, last, payload: &[u8]| Packet::Data {
            connection: ConnectionId(7),
            token: 99,
            ack_requested: false,
            ack: Ack::default(),
            segments: vec![Segment {
                seq,
                first,
                last,
                payload: payload.to_vec(),
            }],
        };
        pair.b.handle_packet(t0, data(1, true, true, b"after"));
        pair.b.handle_packet(t0, data(0, false, false, b""));
        assert_eq!(
            pair.b.poll_event(),
            Some(ConnectionEvent::Closed(CloseReason::ProtocolViolation))
        );
        assert_eq!(pair.b.poll_event(), None);
        assert_eq!(pair.b.stats().messages_delivered, 0);
    }

    #[test]
    fn silence_times_out_and_keepalives_prevent_it() {
        // Keepalives from A keep both sides alive on a perfect network.
        let mut pair = Pair::new(Faults::none(), 1);
        pair.drive(Duration::from_secs(120));
        assert_eq!((pair.closed_a, pair.closed_b), (None, None));
        // Cut the wire: both sides time out after 30 s of silence.
        let mut pair = Pair::new(
            Faults {
                loss: 1.0,
                ..Faults::none()
            },
            1,
        );
        let t0 = pair.now;
        pair.drive(Duration::from_secs(120));
        assert_eq!(pair.closed_a, Some(CloseReason::TimedOut));
        assert_eq!(pair.closed_b, Some(CloseReason::TimedOut));
        assert!(pair.now <= t0 + Duration::from_secs(31));
    }

    #[test]
    fn close_tells_the_peer_and_drains_after_lingering() {
        let mut pair = Pair::new(Faults::none(), 1);
        pair.a.send_message(b"last words".to_vec()).unwrap();
        pair.drive(Duration::from_secs(1));
        let now = pair.now;
        pair.a.close(now, CloseCode::Leaving);
        assert!(pair.a.send_message(b"too late".to_vec()).is_err());
        pair.drive(Duration::from_secs(10));
        assert_eq!(pair.got_b, vec![b"last words".to_vec()]);
        assert_eq!(
            pair.closed_a,
            Some(CloseReason::LocallyClosed(CloseCode::Leaving))
        );
        assert_eq!(
            pair.closed_b,
            Some(CloseReason::ClosedByPeer(CloseCode::Leaving))
        );
        assert!(pair.a.is_drained() && pair.b.is_drained());
    }

    #[test]
    fn spurious_timeouts_do_nothing() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        pair.a.send_message(b"x".to_vec()).unwrap();
        let _ = pair.a.poll_transmit(t0);
        for ms in [0, 1, 50, 299] {
            pair.a.handle_timeout(t0 + Duration::from_millis(ms));
            assert_eq!(
                pair.a.poll_transmit(t0 + Duration::from_millis(ms)),
                None,
                "{ms}"
            );
        }
    }

    #[test]
    fn acks_for_unsent_data_are_ignored() {
        let mut pair = Pair::new(Faults::none(), 1);
        let t0 = pair.now;
        pair.a.send_message(b"x".to_vec()).unwrap();
        let bogus = Ack {
            next_expected: 1000,
            sack: u64::MAX,
        };
        pair.a.handle_packet(
            t0,
            Packet::Data {
                connection: ConnectionId(7),
                token: 99,
                ack_requested: false,
                ack: bogus,
                segments: vec![],
            },
        );
        assert!(!pair.a.is_send_idle());
    }
}
