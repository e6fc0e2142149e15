//! The room server, sans-IO: many framed clients and plain-text guests on one UDP port.
//!
//! ```text
//! datagram ──► handle_datagram(now, from, bytes)
//!                 ├─ starts with 0xF5 ─► Hello: no valid cookie: a Retry, nothing kept;
//!                 │                        else a half-open handshake (a Welcome, never larger)
//!                 │                      Data/Close: the connection for that id, token, address
//!                 │                        (the first one makes a half-open handshake a connection)
//!                 └─ anything else ────► a guest's line (plain text, the lab's format)
//!              commands ──► each sender's rate (held, or dropped for a guest, beyond it)
//!                       ──► Chat (rooms, nicks, history) ──► deliveries per member
//!                 ├─ connection: reliable message (a slow member is evicted, never waited for)
//!                 └─ guest: a `nick: text` line, within the guest's byte budget
//! poll_transmit(now) ◄── round-robin over connections with output, then direct datagrams
//! ```
//!
//! Call order as for [`Connection`]: inputs ([`handle_datagram`](Server::handle_datagram),
//! [`handle_timeout`](Server::handle_timeout)), command [`shutdown`](Server::shutdown), then
//! drain [`poll_transmit`](Server::poll_transmit), read [`poll_timeout`](Server::poll_timeout),
//! drain [`poll_event`](Server::poll_event) (for logs).
//!
//! The hot path allocates per message, not per datagram (`tests/allocations.rs` counts): a
//! received Data or Sealed datagram is read in place ([`PacketRef`]) and opened into a buffer
//! the server reuses, and outgoing datagrams are written into one buffer from which each is
//! split off as a [`Bytes`] whose space is reused once the driver has sent it.
//!
//! Senders: every member and guest has a rate ([`ServerConfig::senders`], see
//! [`sender_limit`](crate::sender_limit)). A member's messages beyond it are held and applied
//! as it refills, its connection paused while many wait, so a flooder is slowed down, losing
//! nothing, and never fills the others' queues; a guest's surplus lines are dropped, and it is
//! told. Everything emitted stays within the codec's byte limits, so every client decodes it.
//!
//! Guests: a guest is anyone sending plain text. Its lines are messages in the default room
//! from a nick derived from its address; `bye` or `peer_timeout` of silence ends it. Until it
//! shows it is really there, by sending back the code the server gave it (`/ok K7F3QX2M`, see
//! [`guest_code`](crate::guest_code)), the server never sends it more than [`AMPLIFICATION`]
//! times the bytes it has received from it, so a forged source address cannot turn the
//! server into an amplifier.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::{SEAL_OVERHEAD, ServerHandshake, StaticKeypair, Transport};
use crate::guest_code::{GuestCodes, Verdict};
use crate::half_open::HalfOpen;
use crate::limiter::{RateLimiter, RateLimits};
use crate::mac::MacKey;
use crate::reliable::{CloseReason, Connection, ConnectionConfig, ConnectionEvent, SendError};
// Maps keyed by what peers send (addresses, ids) hash with foldhash, seeded from the injected
// randomness per map: several times faster than SipHash on these small keys, not predictable
// from outside, and the same for the same seed (their iteration order reaches the wire).
use crate::rng::{HashMap, HashSet, RandomSource, new_map, new_set};
use crate::room::{Chat, ChatLimits, GUEST_PREFIX, MemberId, Outbox};
use crate::sender_limit::{SenderBucket, SenderLimits};
use crate::text;
use crate::wire::is_framed;
use crate::wire::message::{ClientMessage, MessageKind, ServerMessage, truncate_text};
use crate::wire::packet::{CloseCode, ConnectionId, DataRef, MAX_DATAGRAM, Packet, PacketRef};

/// How long one cookie window lasts; a cookie stays valid for one to two windows.
const COOKIE_WINDOW: Duration = Duration::from_secs(30);

/// What a guest not validated yet may be sent: at most this many times the bytes it sent (the
/// factor QUIC allows before address validation, RFC 9000 §8.1), in total and at every point.
pub const AMPLIFICATION: usize = 3;

/// How long a `--no-guests` server remembers having told an address it takes no guests.
const NO_GUESTS_WINDOW: Duration = Duration::from_secs(60);

/// Addresses a `--no-guests` server remembers having told, per window, at most.
const NO_GUESTS_TOLD: usize = 4096;

/// What a `--no-guests` server tells a guest, longest first: the longest that fits in
/// [`AMPLIFICATION`] times the guest's datagram (plus its newline, if it ends its lines so).
const NO_GUESTS_ANSWERS: [&str; 3] = [
    "! this server takes only udpchat join clients, no guests",
    "! no guests: use udpchat join",
    "use udpchat join",
];

/// Refusals reported as events per second at most.
const REFUSALS_LOGGED_PER_SECOND: u32 = 10;

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams refused by a limit or a setting (guests disabled, connection or guest limit).
    pub refused: u64,
    /// Retries sent (Hellos without a valid cookie).
    pub retries_sent: u64,
    /// Datagrams dropped by the per-source rate limits.
    pub rate_limited: u64,
    /// Guest lines not relayed because their sender went over its rate.
    pub throttled: u64,
    /// Wrong guest codes received (`/ok` with a code that is not the address's).
    pub wrong_guest_codes: u64,
}

/// How the server behaves; every bound is here.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Settings of each client connection (`idle_timeout` is the peer timeout).
    pub connection: ConnectionConfig,
    /// How often clients should send a keepalive when idle.
    pub keepalive: Duration,
    /// Established connections at most (half-open handshakes are not counted: see
    /// `max_half_open`); further Hellos are refused.
    pub max_connections: usize,
    /// Half-open handshakes at most (Welcome sent, no authenticated datagram yet), kept apart
    /// from established connections; when full, a new one evicts the oldest of the /24 (/64)
    /// network holding the most. Each costs about 1 KB.
    pub max_half_open: usize,
    /// How long a half-open handshake waits for the client's first authenticated datagram:
    /// enough for Welcomes to be repeated on loss, and longer than the keepalive interval, so
    /// that a client with nothing to say completes with its first keepalive.
    pub half_open_timeout: Duration,
    /// Whether plain-text guests are accepted.
    pub guests: bool,
    /// Guests at most.
    pub max_guests: usize,
    /// Lines queued for a guest that has no byte budget yet; the oldest are dropped beyond.
    pub guest_queue_lines: usize,
    /// Bytes queued for one guest at most (the oldest lines are dropped beyond): with
    /// `max_guests` it bounds what guests can cost, whatever the room says.
    pub guest_queue_bytes: usize,
    /// The room guests talk in, and the usual first room.
    pub default_room: String,
    /// Room limits.
    pub chat: ChatLimits,
    /// Per-source limits on unauthenticated guest lines.
    pub rate_limits: RateLimits,
    /// How fast one member or guest may send messages into the chat (see [`SenderLimits`]).
    pub senders: SenderLimits,
    /// Per-source limits on handshakes: Hellos with a valid cookie (only these are counted;
    /// a Hello without one costs a Retry and nothing else). Each costs the server a Noise
    /// response (~0.2 ms) and a half-open entry, so they are scarcer than guest lines: by
    /// default 20 at once and 10 a second per address, 40 at once and 20 a second per /24
    /// (/64), enough for a NAT full of clients joining (they repeat their Hellos for 20 s),
    /// while 50 networks get at most 2,000 responses out of the server at once and 1,000 a
    /// second after.
    pub handshake_rate_limits: RateLimits,
    /// The server's static key: with it, framed clients must use the secure handshake and
    /// every later datagram is encrypted; without it, version-1 plain framing.
    pub identity: Option<StaticKeypair>,
}

impl ServerConfig {
    /// The defaults, with `peer_timeout` as the idle timeout of connections and guests.
    pub fn with_peer_timeout(peer_timeout: Duration) -> Self {
        let connection = ConnectionConfig {
            keepalive: None,
            idle_timeout: peer_timeout,
            ..ConnectionConfig::default()
        };
        let keepalive = (peer_timeout / 6).max(Duration::from_millis(100));
        Self {
            connection,
            keepalive,
            max_connections: 10_000,
            max_half_open: 1024,
            half_open_timeout: keepalive + Duration::from_secs(5),
            guests: true,
            max_guests: 1_000,
            guest_queue_lines: 64,
            guest_queue_bytes: 16 * 1024,
            default_room: "lobby".into(),
            chat: ChatLimits::default(),
            rate_limits: RateLimits::default(),
            senders: SenderLimits::default(),
            handshake_rate_limits: RateLimits {
                per_address_rate: 10.0,
                per_address_burst: 20.0,
                per_prefix_rate: 20.0,
                per_prefix_burst: 40.0,
                ..RateLimits::default()
            },
            identity: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::with_peer_timeout(Duration::from_secs(30))
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes (shared, not copied, when the same line goes to many guests).
    pub payload: Bytes,
}

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A framed client connected.
    Connected {
        /// Its connection.
        id: ConnectionId,
        /// Its address.
        addr: SocketAddr,
    },
    /// A framed client's connection ended.
    Disconnected {
        /// Its connection.
        id: ConnectionId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// A guest arrived.
    GuestArrived {
        /// Its address.
        addr: SocketAddr,
        /// The nick it was given.
        nick: String,
    },
    /// A guest left.
    GuestLeft {
        /// Its address.
        addr: SocketAddr,
        /// Its nick.
        nick: String,
        /// Why: "quit" or "timeout".
        reason: &'static str,
    },
    /// A secure client's session moved to a new address (on an authenticated datagram).
    Moved {
        /// Its connection.
        id: ConnectionId,
        /// The old address.
        from: SocketAddr,
        /// The new address.
        to: SocketAddr,
    },
    /// A datagram was refused (limits, guests disabled, malformed).
    Refused {
        /// From whom.
        addr: SocketAddr,
        /// Why.
        why: &'static str,
    },
}

/// An authenticated datagram for a connection.
enum Input<'a> {
    /// A Data, read in place.
    Data(DataRef<'a>),
    /// A Close.
    Packet(Packet),
}

/// A framed client.
#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    conn: Connection,
    /// The Hello that created it: the same Hello again (a replay, or a late repeat) is
    /// ignored.
    hello_nonce: u64,
    /// The keys of a secure connection: every datagram either way is sealed with them.
    transport: Option<Transport>,
    /// Still a chat member (false once its end was handled, while it lingers to drain).
    member: bool,
    /// The time of its valid entry in the server's timer queue, if it has one.
    scheduled: Option<Instant>,
    /// It sent a message that does not decode: nothing it sent is applied any more.
    violated: bool,
    /// The highest nonce of its authentic Sealed datagrams: only a newer one may move it.
    newest_nonce: Option<u64>,
    /// Its rate (see [`ServerConfig::senders`]).
    bucket: SenderBucket,
    /// Messages it sent beyond its rate, with their sizes, applied as its buckets refill; its
    /// connection stops delivering more once [`HELD_BEFORE_PAUSE`] wait here.
    held: VecDeque<(ClientMessage, usize)>,
    /// When the first held message may be applied.
    release_at: Option<Instant>,
}

impl Peer {
    /// When it next needs [`Server::handle_timeout`]: its connection's timer or its held
    /// messages' release.
    fn deadline(&self) -> Option<Instant> {
        match (self.conn.poll_timeout(), self.release_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Messages held for a member over its rate before its connection stops taking more (and
/// takes them again once half are applied): a flooding member's window fills and it waits,
/// losing nothing, and the server holds at most this plus one window of its messages.
const HELD_BEFORE_PAUSE: usize = 32;

/// What the server keeps of a half-open handshake until the client's first authenticated
/// datagram makes it a [`Peer`].
#[derive(Debug)]
struct Handshake {
    token: u64,
    /// The Welcome (or SecureWelcome) sent, sent again for a repeated Hello.
    welcome: Vec<u8>,
    /// The keys of a secure connection.
    transport: Option<Transport>,
}

/// A plain-text guest.
#[derive(Debug)]
struct Guest {
    nick: String,
    /// Bytes it may still be sent before it is validated: [`AMPLIFICATION`] times what it
    /// sent, less what it was sent.
    credit: usize,
    /// It sent back its code: no byte budget any more.
    validated: bool,
    /// Lines waiting for credit (validated guests never wait).
    queue: VecDeque<Vec<u8>>,
    /// The queue's first line is the one with the code, not sent yet: a full queue drops the
    /// lines after it, never it (or a guest arriving in a busy room would never learn it).
    code_line_queued: bool,
    /// Lines dropped because the queue was full.
    dropped: u64,
    last_heard: Instant,
    /// It ends its lines with a newline (like `nc`), so we do too.
    newline: bool,
    /// The time of its valid entry in the server's timer queue.
    scheduled: Instant,
    /// Lines for a validated guest that reads lines (`newline`), not sent yet: the lines of
    /// one turn share a datagram (see [`GUEST_DATAGRAM`]). Kept at its size once sent.
    outgoing: Vec<u8>,
    /// It is in the server's `guests_ready`.
    listed: bool,
    /// Its rate (see [`ServerConfig::senders`]).
    bucket: SenderBucket,
    /// Lines not relayed because they came over its rate, since it was last told.
    throttled: u64,
    /// When it was last told to slow down.
    slowdown_told: Option<Instant>,
}

/// A guest's joined lines as a datagram, copied into the server's outgoing buffer: the guest
/// keeps its own buffer, at its size, for the next turn's lines (no allocation per datagram).
fn joined_lines(outgoing: &mut BytesMut, lines: &mut Vec<u8>) -> Bytes {
    outgoing.reserve(lines.len());
    outgoing.extend_from_slice(lines);
    lines.clear();
    outgoing.split().freeze()
}

/// The most bytes of lines sent to a guest in one datagram (the framed protocol's datagram
/// size, safe on any path). A guest that ends its lines with a newline, as `nc` does, reads a
/// stream of lines, so the lines it is sent in one turn of the server (a busy room) go in as
/// few datagrams as fit: fewer datagrams is what makes a relay fast. A guest that does not (a
/// lab client printing each datagram) gets one line per datagram.
pub const GUEST_DATAGRAM: usize = 1200;

/// The room server. See the [module docs](self).
pub struct Server {
    config: ServerConfig,
    /// The configuration of plain and of secure connections, shared by all of them.
    plain_connection: Arc<ConnectionConfig>,
    secure_connection: Arc<ConnectionConfig>,
    rng: Box<dyn RandomSource>,
    /// The key guest nicks are derived with from their addresses (so that a nick does not
    /// tell the address, and is the same for an address throughout the server's life).
    guest_nick_key: MacKey,
    /// Makes and checks the codes guests send back, and counts wrong ones.
    guest_codes: GuestCodes,
    /// Addresses told that this server takes no guests, in the current
    /// [`NO_GUESTS_WINDOW`] (since the time in the pair): each is told once per window, and
    /// at most [`NO_GUESTS_TOLD`] are remembered (beyond, the rest are not told).
    no_guests_told: (Option<Instant>, HashSet<SocketAddr>),
    /// Boxed: a `Peer` is about 1 KB, and a map holds up to twice the slots it uses.
    peers: HashMap<ConnectionId, Box<Peer>>,
    /// Handshakes whose Welcome went out, waiting for the client's first authenticated
    /// datagram; bounded, short-lived, not counted as connections.
    half_open: HalfOpen<Handshake>,
    by_addr: HashMap<SocketAddr, ConnectionId>,
    guests: HashMap<SocketAddr, Guest>,
    chat: Chat,
    /// Connections that may have something to send, round-robin.
    ready: VecDeque<ConnectionId>,
    ready_set: HashSet<ConnectionId>,
    /// When connections need [`handle_timeout`](Self::handle_timeout), earliest
    /// first, so that timers cost O(log n) and not a scan of every member. An entry is valid
    /// while its time is its owner's `scheduled`; a connection is (re)scheduled when its
    /// output has been drained, and only when its deadline moved earlier (a later deadline is
    /// found when the earlier entry fires), so a busy connection pushes about one entry per
    /// retransmission timeout. Superseded entries are dropped when they come up, and the
    /// queue is rebuilt if they ever outnumber the live ones.
    timers: BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    /// The same for guests (apart, so that a connection's entry stays 24 bytes).
    guest_timers: BinaryHeap<Reverse<(Instant, SocketAddr)>>,
    /// Datagrams not tied to a connection (Welcomes, guest lines).
    direct: VecDeque<Transmit>,
    /// Guests with `outgoing` lines, in the order they got their first one.
    guests_ready: VecDeque<SocketAddr>,
    events: VecDeque<ServerEvent>,
    shutting_down: bool,
    /// Per-source token buckets for unvalidated guest lines.
    limiter: RateLimiter,
    /// Per-source token buckets for Hellos that carry a valid cookie: apart from `limiter`,
    /// and never spent by a Hello without one, so that only whoever receives at an address can
    /// spend that address's handshake budget (a forger cannot lock its owner out).
    handshakes: RateLimiter,
    /// The key of the cookie MAC.
    cookie_key: MacKey,
    /// The time the cookie windows count from (the first cookie made).
    epoch: Option<Instant>,
    stats: ServerStats,
    /// Refusal events in the current one-second window: (window start, count).
    refusals_logged: Option<(Instant, u32)>,
    /// Where framed datagrams are written before they go out: each is split off as a
    /// [`Bytes`], and once the driver has sent (and dropped) them the buffer's space is
    /// reused, so sending allocates nothing per datagram.
    outgoing: BytesMut,
    /// A connection's next datagram, before it is sealed into `outgoing` (reused).
    unsealed: Vec<u8>,
    /// A received datagram, opened (reused).
    opened: Vec<u8>,
}

/// The size of [`Server::outgoing`]'s buffer: some fifty full datagrams, enough for what a
/// driver holds at once.
const OUTGOING_BUFFER: usize = 64 * 1024;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connections", &self.peers.len())
            .field("guests", &self.guests.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with no members.
    pub fn new(config: ServerConfig, mut rng: Box<dyn RandomSource>) -> Self {
        let guest_nick_key = MacKey::random(&mut *rng);
        let guest_codes = GuestCodes::new(&mut *rng);
        let cookie_key = MacKey::random(&mut *rng);
        let chat = Chat::new(config.chat.clone(), &mut *rng);
        let limiter = RateLimiter::new(config.rate_limits, &mut *rng);
        let handshakes = RateLimiter::new(config.handshake_rate_limits, &mut *rng);
        let half_open = HalfOpen::new(config.max_half_open, config.half_open_timeout, &mut *rng);
        let no_guests_told = (None, new_set(&mut *rng));
        let peers = new_map(&mut *rng);
        let by_addr = new_map(&mut *rng);
        let guests = new_map(&mut *rng);
        let ready_set = new_set(&mut *rng);
        let plain_connection = Arc::new(config.connection.clone());
        let secure_connection = Arc::new(ConnectionConfig {
            max_datagram: MAX_DATAGRAM - SEAL_OVERHEAD,
            ..config.connection.clone()
        });
        Self {
            config,
            half_open,
            plain_connection,
            secure_connection,
            rng,
            guest_nick_key,
            guest_codes,
            no_guests_told,
            peers,
            by_addr,
            guests,
            chat,
            ready: VecDeque::new(),
            ready_set,
            timers: BinaryHeap::new(),
            guest_timers: BinaryHeap::new(),
            direct: VecDeque::new(),
            guests_ready: VecDeque::new(),
            events: VecDeque::new(),
            shutting_down: false,
            limiter,
            handshakes,
            cookie_key,
            epoch: None,
            stats: ServerStats::default(),
            refusals_logged: None,
            outgoing: BytesMut::with_capacity(OUTGOING_BUFFER),
            unsealed: Vec::new(),
            opened: Vec::new(),
        }
    }

    // ---------------------------------------------------------------- inputs

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if is_framed(datagram) {
            self.on_framed(now, from, datagram);
        } else {
            self.on_guest_line(now, from, datagram);
        }
    }

    /// Timers of every connection and guest that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.half_open.expire(now);
        // Connections touched since their output was last drained are not in the queue yet.
        let touched: Vec<ConnectionId> = self.ready.iter().copied().collect();
        for id in touched {
            self.schedule_connection(id);
        }
        while let Some((due, id)) = pop_due(&mut self.timers, now) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.scheduled != Some(due) {
                continue;
            }
            peer.scheduled = None;
            let connection_due = peer.conn.poll_timeout().is_some_and(|t| t <= now);
            if connection_due || peer.release_at.is_some_and(|t| t <= now) {
                if connection_due {
                    peer.conn.handle_timeout(now);
                }
                self.after_connection_input(now, id);
            } else {
                // Its deadline moved later: scheduled again once drained.
                self.mark_ready(id);
            }
        }
        let idle_timeout = self.config.connection.idle_timeout;
        while let Some((due, addr)) = pop_due(&mut self.guest_timers, now) {
            let Some(guest) = self.guests.get_mut(&addr) else {
                continue;
            };
            if guest.scheduled != due {
                continue;
            }
            let deadline = guest.last_heard + idle_timeout;
            if now >= deadline {
                self.remove_guest(now, addr, "timeout");
            } else {
                guest.scheduled = deadline;
                self.guest_timers.push(Reverse((deadline, addr)));
            }
        }
    }

    /// Puts connection `id`'s next deadline in the timer queue, unless an earlier entry of
    /// it is there already.
    fn schedule_connection(&mut self, id: ConnectionId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(due) = peer.deadline() else {
            return;
        };
        if peer.scheduled.is_some_and(|scheduled| scheduled <= due) {
            return;
        }
        peer.scheduled = Some(due);
        self.timers.push(Reverse((due, id)));
        self.bound_timers();
    }

    /// Rebuilds a timer queue once superseded entries (or those of members gone) outnumber
    /// the live ones: amortised O(1) per entry pushed.
    fn bound_timers(&mut self) {
        if self.timers.len() > 2 * self.peers.len() + 64 {
            let mut timers = Vec::with_capacity(self.peers.len());
            for (id, peer) in &mut self.peers {
                peer.scheduled = peer.deadline();
                if let Some(due) = peer.scheduled {
                    timers.push(Reverse((due, *id)));
                }
            }
            self.timers = BinaryHeap::from(timers);
        }
        if self.guest_timers.len() > 2 * self.guests.len() + 64 {
            self.guest_timers = self
                .guests
                .iter()
                .map(|(addr, guest)| Reverse((guest.scheduled, *addr)))
                .collect();
        }
    }

    /// Tells every client the server is going, and stops accepting new ones. Keep driving until
    /// [`is_idle`](Self::is_idle) (or a deadline) so that the Close datagrams go out.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.half_open.clear();
        let ids: Vec<ConnectionId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.conn.close(now, CloseCode::ServerShutdown);
            }
            self.after_connection_input(now, id);
        }
        let guests: Vec<SocketAddr> = self.guests.keys().copied().collect();
        for addr in guests {
            self.send_guest_line(addr, "* the server is shutting down");
            self.remove_guest(now, addr, "server shutdown");
        }
    }

    // ---------------------------------------------------------------- outputs

    /// The next datagram to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.direct.pop_front() {
            return Some(t);
        }
        while let Some(addr) = self.guests_ready.pop_front() {
            let Some(guest) = self.guests.get_mut(&addr) else {
                continue;
            };
            guest.listed = false;
            if !guest.outgoing.is_empty() {
                return Some(Transmit {
                    destination: addr,
                    payload: joined_lines(&mut self.outgoing, &mut guest.outgoing),
                });
            }
        }
        while let Some(id) = self.ready.pop_front() {
            let Some(peer) = self.peers.get_mut(&id) else {
                self.ready_set.remove(&id);
                continue;
            };
            self.unsealed.clear();
            if peer.conn.poll_transmit_into(now, &mut self.unsealed) {
                // More may follow: back of the line, so every connection gets its turn.
                let destination = peer.addr;
                self.ready.push_back(id);
                // Reserving reclaims the buffer's space once every datagram split off it is
                // dropped (it allocates only while the driver still holds some).
                match peer.transport.as_mut() {
                    None => {
                        self.outgoing.reserve(self.unsealed.len());
                        self.outgoing.extend_from_slice(&self.unsealed);
                    }
                    Some(transport) => {
                        if !transport.seal_datagram_into(id, &self.unsealed, &mut self.outgoing) {
                            // Sealing fails only when 2^64 nonces are used up: drop it.
                            continue;
                        }
                    }
                }
                return Some(Transmit {
                    destination,
                    payload: self.outgoing.split().freeze(),
                });
            }
            self.ready_set.remove(&id);
            if peer.conn.is_drained() {
                let addr = peer.addr;
                self.peers.remove(&id);
                if self.by_addr.get(&addr) == Some(&id) {
                    self.by_addr.remove(&addr);
                }
                self.bound_timers();
            } else {
                self.schedule_connection(id);
            }
        }
        None
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let queued = self.timers.peek().map(|Reverse((due, _))| *due);
        let guests = self.guest_timers.peek().map(|Reverse((due, _))| *due);
        // (Connections with output not drained yet are not in the queue: usually none, as
        // drivers drain output first.)
        let touched = self
            .ready
            .iter()
            .filter_map(|id| self.peers.get(id)?.deadline());
        let half_open = self.half_open.poll_timeout();
        queued
            .into_iter()
            .chain(guests)
            .chain(half_open)
            .chain(touched)
            .min()
    }

    /// The earliest deadline of any connection or guest, by looking at every one: what the
    /// timer queue must never be later than (checked throughout the simulations).
    #[cfg(test)]
    pub(crate) fn earliest_deadline_by_scan(&self) -> Option<Instant> {
        let conns = self.peers.values().filter_map(|p| p.deadline());
        let guests = self
            .guests
            .values()
            .map(|g| g.last_heard + self.config.connection.idle_timeout);
        conns
            .chain(guests)
            .chain(self.half_open.poll_timeout())
            .min()
    }

    /// Entries in the timer queue (live and superseded).
    #[cfg(test)]
    pub(crate) fn timer_queue_len(&self) -> usize {
        self.timers.len() + self.guest_timers.len()
    }

    /// The next event worth logging.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------- getters

    /// Connections, including those lingering after their end (not half-open handshakes).
    pub fn connection_count(&self) -> usize {
        self.peers.len()
    }

    /// Half-open handshakes: Welcome sent, no authenticated datagram from the client yet.
    pub fn half_open_count(&self) -> usize {
        self.half_open.len()
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            rate_limited: self.limiter.refused + self.handshakes.refused,
            wrong_guest_codes: self.guest_codes.wrong,
            ..self.stats
        }
    }

    /// Guests.
    pub fn guest_count(&self) -> usize {
        self.guests.len()
    }

    /// Datagrams ready to go out that nothing received later can join (one line each for
    /// guests that take a line per datagram, Welcomes, refusals): a driver that has many
    /// should send them before it takes more input. What framed members and line-reading
    /// guests are owed is not counted: it shares datagrams, and a bigger turn lets it share
    /// more.
    pub fn unjoinable_datagrams(&self) -> usize {
        self.direct.len()
    }

    /// Nothing left to do: no connection, no guest, nothing to send.
    pub fn is_idle(&self) -> bool {
        self.peers.is_empty()
            && self.half_open.is_empty()
            && self.guests.is_empty()
            && self.direct.is_empty()
            && self.guests_ready.is_empty()
    }

    // ---------------------------------------------------------------- framed clients

    fn on_framed(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        // Read in place: what comes in most (Data, Sealed) is not copied.
        let Ok(packet) = PacketRef::decode(datagram) else {
            // Malformed or unauthenticated: silence, whatever it was.
            return;
        };
        match packet {
            // A secure server speaks only the secure handshake, and the other way round.
            PacketRef::Other(Packet::Hello { nonce, cookie }) if self.config.identity.is_none() => {
                self.on_hello(now, from, nonce, cookie, None, datagram.len());
            }
            PacketRef::Other(Packet::SecureHello {
                nonce,
                cookie,
                noise,
            }) if self.config.identity.is_some() => {
                self.on_hello(now, from, nonce, cookie, Some(&noise), datagram.len());
            }
            PacketRef::Sealed {
                connection,
                nonce,
                ciphertext,
            } => {
                self.on_sealed(now, from, connection, nonce, ciphertext);
            }
            PacketRef::Data(data) => {
                if self.authentic_plain_half_open(from, data.connection, data.token) {
                    self.promote(now, data.connection);
                }
                if self.authentic_plain(from, data.connection, data.token) {
                    self.on_connection_input(now, data.connection, Input::Data(data));
                }
            }
            PacketRef::Other(
                close @ Packet::Close {
                    connection, token, ..
                },
            ) => {
                if self.authentic_plain_half_open(from, connection, token) {
                    self.promote(now, connection);
                }
                if self.authentic_plain(from, connection, token) {
                    self.on_connection_input(now, connection, Input::Packet(close));
                }
            }
            PacketRef::Other(_) => {}
        }
    }

    /// Whether an unencrypted Data or Close may speak for `connection`: the token proves the
    /// sender saw our Welcome, and the address must match too (only a secure connection may
    /// move, on authenticated datagrams). Plain datagrams for a secure connection are refused.
    fn authentic_plain(&self, from: SocketAddr, connection: ConnectionId, token: u64) -> bool {
        self.peers.get(&connection).is_some_and(|peer| {
            peer.conn.token() == token && peer.addr == from && peer.transport.is_none()
        })
    }

    /// [`authentic_plain`](Self::authentic_plain) for a half-open handshake.
    fn authentic_plain_half_open(
        &mut self,
        from: SocketAddr,
        connection: ConnectionId,
        token: u64,
    ) -> bool {
        self.half_open.get_mut(connection).is_some_and(|entry| {
            entry.state.token == token && entry.addr == from && entry.state.transport.is_none()
        })
    }

    /// A half-open handshake's client sent its first authenticated datagram: the handshake
    /// becomes an established connection (unless the connection limit is reached). A session
    /// left at the same address by an earlier run of the client ends now, once the new one
    /// is known to work (never on a Hello alone, which may be replayed). Returns whether it
    /// was promoted.
    fn promote(&mut self, now: Instant, id: ConnectionId) -> bool {
        let Some(entry) = self.half_open.remove(id) else {
            return false;
        };
        let addr = entry.addr;
        if self.peers.len() >= self.config.max_connections {
            self.refuse(now, addr, "connection limit");
            return false;
        }
        if let Some(old) = self.by_addr.remove(&addr) {
            if let Some(peer) = self.peers.get_mut(&old) {
                peer.conn.close(now, CloseCode::Leaving);
            }
            self.after_connection_input(now, old);
        }
        let handshake = entry.state;
        let config = if handshake.transport.is_some() {
            &self.secure_connection
        } else {
            &self.plain_connection
        };
        let conn = Connection::new(id, handshake.token, Arc::clone(config), now, None);
        self.peers.insert(
            id,
            Box::new(Peer {
                addr,
                conn,
                hello_nonce: entry.nonce,
                transport: handshake.transport,
                member: true,
                scheduled: None,
                violated: false,
                newest_nonce: None,
                bucket: SenderBucket::new(),
                held: VecDeque::new(),
                release_at: None,
            }),
        );
        self.by_addr.insert(addr, id);
        self.schedule_connection(id);
        self.events.push_back(ServerEvent::Connected { id, addr });
        true
    }

    /// Hands an authenticated datagram to its connection, then acts on what it produced.
    fn on_connection_input(&mut self, now: Instant, id: ConnectionId, input: Input<'_>) {
        if let Some(peer) = self.peers.get_mut(&id) {
            match input {
                Input::Data(data) => peer.conn.handle_data(now, &data),
                Input::Packet(packet) => peer.conn.handle_packet(now, packet),
            }
        }
        self.after_connection_input(now, id);
    }

    /// An encrypted datagram: only what authenticates under the connection's keys counts, and
    /// such a datagram may come from a new address (NAT rebinding, a network change): the
    /// session follows it.
    fn on_sealed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: ConnectionId,
        nonce: u64,
        ciphertext: &[u8],
    ) {
        let half_open = !self.peers.contains_key(&id);
        let transport = if half_open {
            self.half_open
                .get_mut(id)
                .and_then(|entry| entry.state.transport.as_mut())
        } else {
            self.peers
                .get_mut(&id)
                .and_then(|peer| peer.transport.as_mut())
        };
        let Some(transport) = transport else {
            return;
        };
        // Opened into the server's buffer (taken for the while, so that the server can be
        // used while the datagram is read from it).
        let mut opened = std::mem::take(&mut self.opened);
        // A half-open handshake's first authentic datagram makes it a connection.
        if transport.open_into(nonce, ciphertext, &mut opened).is_ok()
            && (!half_open || self.promote(now, id))
        {
            self.on_opened(now, from, id, nonce, &opened);
        }
        self.opened = opened;
    }

    /// The inside of an authentic Sealed datagram of connection `id`.
    fn on_opened(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: ConnectionId,
        nonce: u64,
        inner: &[u8],
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let input = match PacketRef::decode(inner) {
            Ok(PacketRef::Data(data))
                if data.connection == id && data.token == peer.conn.token() =>
            {
                Input::Data(data)
            }
            Ok(PacketRef::Other(
                close @ Packet::Close {
                    connection, token, ..
                },
            )) if connection == id && token == peer.conn.token() => Input::Packet(close),
            _ => return,
        };
        // The session follows its client only on a datagram newer than any seen from it (RFC
        // 9000 §9.3): a late, reordered one from an old address must not move it back.
        let newest = peer.newest_nonce.is_none_or(|seen| nonce > seen);
        if newest {
            peer.newest_nonce = Some(nonce);
        }
        if peer.addr != from && newest {
            let old = std::mem::replace(&mut peer.addr, from);
            if self.by_addr.get(&old) == Some(&id) {
                self.by_addr.remove(&old);
            }
            self.by_addr.insert(from, id);
            self.events.push_back(ServerEvent::Moved {
                id,
                from: old,
                to: from,
            });
        }
        self.on_connection_input(now, id, input);
    }

    fn on_hello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        nonce: u64,
        cookie: u64,
        noise: Option<&[u8]>,
        hello_len: usize,
    ) {
        // No state before the client proves it receives at its address: a stateless Retry
        // (never larger than the Hello) carries a cookie only that address can send back. It
        // spends no budget: a Hello without a valid cookie may be forged by anyone, and a
        // budget it could spend would be one a forger empties to lock the address's owner
        // out. The Retry costs a MAC and a datagram smaller than the Hello (no amplification).
        if !self.cookie_is_valid(now, from, cookie) {
            if self.shutting_down {
                return;
            }
            let retry = Packet::Retry {
                nonce,
                cookie: self.cookie(now, from, 0),
            }
            .to_bytes();
            self.stats.retries_sent += 1;
            self.push_direct(from, retry, hello_len);
            return;
        }
        // Handshakes cost work and, once admitted, memory: each source that proved its address
        // gets a bounded rate.
        if !self.handshakes.allow(now, from.ip()) {
            return;
        }
        // Our Welcome was lost: the same one again.
        if let Some(entry) = self.half_open.find_hello(from, nonce) {
            let welcome = entry.state.welcome.clone();
            self.push_direct(from, welcome, hello_len);
            return;
        }
        // The Hello of an established session again (a late repeat, or a replay within the
        // cookie's lifetime): its Welcome demonstrably arrived; nothing to do, and certainly
        // not a second session.
        if let Some(id) = self.by_addr.get(&from)
            && let Some(peer) = self.peers.get(id)
            && peer.hello_nonce == nonce
        {
            return;
        }
        if self.shutting_down {
            return;
        }
        if self.peers.len() >= self.config.max_connections {
            self.refuse(now, from, "connection limit");
            return;
        }
        let mut id = ConnectionId(self.rng.next_u64());
        while id.0 == 0 || self.peers.contains_key(&id) || self.half_open.contains(id) {
            id = ConnectionId(self.rng.next_u64());
        }
        let token = self.rng.next_u64();
        let (welcome, transport) = match (noise, &self.config.identity) {
            (Some(noise), Some(identity)) => {
                let mut secrets = Vec::with_capacity(16);
                secrets.extend_from_slice(&token.to_be_bytes());
                secrets.extend_from_slice(&self.ms(self.config.keepalive).to_be_bytes());
                secrets
                    .extend_from_slice(&self.ms(self.config.connection.idle_timeout).to_be_bytes());
                // A malformed first message: silence.
                let Ok((transport, reply)) =
                    ServerHandshake::respond(identity, noise, &secrets, &mut *self.rng)
                else {
                    return;
                };
                (
                    Packet::SecureWelcome {
                        connection: id,
                        nonce,
                        noise: reply,
                    }
                    .to_bytes(),
                    Some(transport),
                )
            }
            _ => (self.welcome(id, token, nonce), None),
        };
        // Half-open until the client's first authenticated datagram: in a bounded table, for
        // a short while, apart from the established sessions (a session at the same address
        // ends only then: see `promote`).
        let handshake = Handshake {
            token,
            welcome: welcome.clone(),
            transport,
        };
        self.half_open.insert(now, id, from, nonce, handshake);
        self.push_direct(from, welcome, hello_len);
    }

    /// Reports a refusal, at most [`REFUSALS_LOGGED_PER_SECOND`] a second (a flood must not
    /// become a flood of log lines); the rest are only counted.
    fn refuse(&mut self, now: Instant, addr: SocketAddr, why: &'static str) {
        self.stats.refused += 1;
        let (since, count) = match self.refusals_logged {
            Some((since, count))
                if now.saturating_duration_since(since) < Duration::from_secs(1) =>
            {
                (since, count)
            }
            _ => (now, 0),
        };
        if count < REFUSALS_LOGGED_PER_SECOND {
            self.events.push_back(ServerEvent::Refused { addr, why });
        }
        self.refusals_logged = Some((since, count + 1));
    }

    /// The cookie for `from` in the current time window, or `windows_back` windows ago.
    fn cookie(&mut self, now: Instant, from: SocketAddr, windows_back: u64) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let window = now.saturating_duration_since(epoch).as_secs() / COOKIE_WINDOW.as_secs();
        let mac = self
            .cookie_key
            .for_address(b"cookie", from, window.wrapping_sub(windows_back));
        // 64 bits of the MAC (0 means "no cookie").
        let mut word = [0u8; 8];
        word.copy_from_slice(&mac[..8]);
        u64::from_le_bytes(word).max(1)
    }

    /// A cookie is good for the window it was made in and the next one (30 to 60 s).
    fn cookie_is_valid(&mut self, now: Instant, from: SocketAddr, cookie: u64) -> bool {
        cookie != 0 && (cookie == self.cookie(now, from, 0) || cookie == self.cookie(now, from, 1))
    }

    fn ms(&self, d: Duration) -> u32 {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
    }

    fn welcome(&self, connection: ConnectionId, token: u64, nonce: u64) -> Vec<u8> {
        let ms = |d: Duration| self.ms(d);
        Packet::Welcome {
            connection,
            nonce,
            token,
            keepalive_ms: ms(self.config.keepalive),
            idle_timeout_ms: ms(self.config.connection.idle_timeout),
        }
        .to_bytes()
    }

    /// Queues a datagram that answers one of `request_len` bytes, never a larger one.
    fn push_direct(&mut self, destination: SocketAddr, payload: Vec<u8>, request_len: usize) {
        if payload.len() <= request_len {
            self.direct.push_back(Transmit {
                destination,
                payload: Bytes::from(payload),
            });
        }
    }

    /// After a connection received something or timed out: act on its events.
    fn after_connection_input(&mut self, now: Instant, id: ConnectionId) {
        let mut outbox = Outbox::new();
        self.release_held(now, id, &mut outbox, false);
        if let Some(peer) = self.peers.get_mut(&id)
            && peer.conn.is_receive_paused()
            && peer.held.len() <= HELD_BEFORE_PAUSE / 2
        {
            // Room again: what its connection kept meanwhile comes in now (as events).
            peer.conn.pause_receiving(false);
        }
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(event) = peer.conn.poll_event() else {
                break;
            };
            match event {
                // Nothing after a protocol violation is applied, not even the messages that
                // came in the same datagram.
                ConnectionEvent::Message(_) if peer.violated => {}
                ConnectionEvent::Message(bytes) => match ClientMessage::decode(&bytes) {
                    Ok(command) if peer.member => {
                        // Within its rate, and nothing held before it: applied now.
                        if peer.held.is_empty()
                            && peer.bucket.try_take(now, &self.config.senders, bytes.len())
                        {
                            outbox.extend(self.chat.apply(MemberId::Connection(id), command));
                        } else {
                            peer.held.push_back((command, bytes.len()));
                            if peer.held.len() >= HELD_BEFORE_PAUSE {
                                peer.conn.pause_receiving(true);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        peer.violated = true;
                        peer.conn.close(now, CloseCode::ProtocolViolation);
                    }
                },
                ConnectionEvent::Unblocked => {}
                ConnectionEvent::Closed(reason) => {
                    let addr = peer.addr;
                    if peer.member && !peer.violated {
                        // What it sent was acknowledged: it is said, in order, before it
                        // leaves (at most the held messages, beyond its rate).
                        self.release_held(now, id, &mut outbox, true);
                    }
                    let Some(peer) = self.peers.get_mut(&id) else {
                        return;
                    };
                    if std::mem::replace(&mut peer.member, false) {
                        let why = match reason {
                            CloseReason::TimedOut => "timeout",
                            CloseReason::LocallyClosed(CloseCode::TooSlow) => "too slow",
                            CloseReason::LocallyClosed(CloseCode::ServerShutdown) => {
                                "server shutdown"
                            }
                            CloseReason::ProtocolViolation
                            | CloseReason::LocallyClosed(CloseCode::ProtocolViolation) => {
                                "protocol violation"
                            }
                            _ => "quit",
                        };
                        outbox.extend(self.chat.remove(MemberId::Connection(id), why));
                    }
                    self.events
                        .push_back(ServerEvent::Disconnected { id, addr, reason });
                }
            }
        }
        self.schedule_release(now, id);
        self.mark_ready(id);
        self.deliver_all(now, outbox);
    }

    /// Applies connection `id`'s held messages that its rate allows now (all of them with
    /// `everything`), in order, into `outbox`.
    fn release_held(
        &mut self,
        now: Instant,
        id: ConnectionId,
        outbox: &mut Outbox,
        everything: bool,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        while let Some(&(_, len)) = peer.held.front() {
            if !everything && !peer.bucket.try_take(now, &self.config.senders, len) {
                break;
            }
            let Some((command, _)) = peer.held.pop_front() else {
                break;
            };
            outbox.extend(self.chat.apply(MemberId::Connection(id), command));
        }
    }

    /// After connection `id`'s input: when its first held message may be applied (its
    /// connection resumes, at its next input or release, once half the held are applied).
    fn schedule_release(&mut self, now: Instant, id: ConnectionId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !peer.member {
            peer.held.clear();
        }
        peer.release_at = peer
            .held
            .front()
            .map(|&(_, len)| peer.bucket.ready_at(now, &self.config.senders, len));
        // (Its entry in the timer queue is made once its output is drained: it is marked
        // ready next, as after any input.)
    }

    fn mark_ready(&mut self, id: ConnectionId) {
        if self.ready_set.insert(id) {
            self.ready.push_back(id);
        }
    }

    /// Sends each message to its member, then evicts the members that could not keep up.
    fn deliver_all(&mut self, now: Instant, outbox: Outbox) {
        let mut evict = Vec::new();
        self.deliver(now, outbox, &mut evict);
        self.evict(now, evict);
    }

    /// Closes the connections of members too slow to take their messages; their departure is
    /// delivered in turn (and may evict others).
    fn evict(&mut self, now: Instant, mut evict: Vec<ConnectionId>) {
        while let Some(slow) = evict.pop() {
            if let Some(peer) = self.peers.get_mut(&slow)
                && !peer.conn.is_closed()
            {
                peer.conn.close(now, CloseCode::TooSlow);
                self.after_connection_input(now, slow);
            }
        }
    }

    /// Sends each message to its member. A room's messages go to every member as one shared
    /// message: it is encoded once per kind of member, not once per member.
    fn deliver(&mut self, now: Instant, outbox: Outbox, evict: &mut Vec<ConnectionId>) {
        let mut encoded: Option<Encoded> = None;
        for (member, message) in outbox {
            let encoding = match &mut encoded {
                Some(e) if Arc::ptr_eq(&e.message, &message) => e,
                _ => encoded.insert(Encoded::new(message)),
            };
            match member {
                MemberId::Connection(id) => {
                    let Some(peer) = self.peers.get_mut(&id) else {
                        continue;
                    };
                    match peer.conn.send_message(encoding.framed().clone()) {
                        Ok(()) => self.mark_ready(id),
                        // A member that cannot keep up is cut off rather than waited for:
                        // one slow member never stalls a room.
                        Err(SendError::QueueFull(_)) => {
                            if !evict.contains(&id) {
                                evict.push(id);
                            }
                        }
                        Err(_) => {}
                    }
                }
                MemberId::Guest(addr) => {
                    if let Some(line) = encoding.guest_line() {
                        self.send_guest_bytes(addr, line, Some(line));
                    }
                }
            }
        }
        let _ = now;
    }

    // ---------------------------------------------------------------- guests

    fn on_guest_line(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if !self.config.guests {
            self.refuse(now, from, "guests are not allowed");
            self.tell_no_guests(now, from, datagram);
            return;
        }
        // Until a guest is validated, its lines are unauthenticated work: rate-limited.
        if !self.guests.get(&from).is_some_and(|g| g.validated)
            && !self.limiter.allow(now, from.ip())
        {
            return;
        }
        let line = text::decode_message(datagram);
        let newline = datagram.ends_with(b"\n");
        if !self.guests.contains_key(&from) {
            if self.shutting_down || line == "bye" {
                return;
            }
            if self.guests.len() >= self.config.max_guests {
                self.refuse(now, from, "guest limit");
                return;
            }
            self.add_guest(now, from, newline);
        }
        let Some(guest) = self.guests.get_mut(&from) else {
            return;
        };
        guest.last_heard = now;
        guest.newline = newline;
        if !guest.validated {
            guest.credit = guest
                .credit
                .saturating_add(AMPLIFICATION.saturating_mul(datagram.len()));
        }
        let trimmed = line.trim();
        if trimmed == "bye" {
            self.remove_guest(now, from, "quit");
            return;
        }
        if let Some(code) = trimmed.strip_prefix("/ok") {
            if !guest.validated {
                match self.guest_codes.check(now, from, code) {
                    Verdict::Accepted => {
                        if let Some(guest) = self.guests.get_mut(&from) {
                            guest.validated = true;
                        }
                        self.send_guest_line(from, "* thanks: you now see everything said here");
                    }
                    // Perhaps an expired code: the current one, to the address (where a
                    // blind guesser does not see it).
                    Verdict::Wrong => {
                        let code = self.guest_codes.code(now, from);
                        self.send_guest_line(from, &format!("/ok {code}"));
                    }
                    Verdict::Ignored => {}
                }
            }
            self.flush_guest(from);
            return;
        }
        // Over its rate (see ServerConfig::senders), a line is not relayed, and the guest is
        // told (at most once a second): a guest has no flow control to slow it down with.
        if !guest
            .bucket
            .try_take(now, &self.config.senders, datagram.len())
        {
            guest.throttled += 1;
            if guest
                .slowdown_told
                .is_none_or(|told| now.saturating_duration_since(told) >= Duration::from_secs(1))
            {
                guest.slowdown_told = Some(now);
                let dropped = std::mem::take(&mut guest.throttled);
                let rate = self.config.senders.messages_per_second;
                self.send_guest_line(
                    from,
                    &format!(
                        "* slow down: {dropped} of your lines not relayed (at most {rate} lines a second)"
                    ),
                );
            }
            self.stats.throttled += 1;
            self.flush_guest(from);
            return;
        }
        let mut outbox = if trimmed == "/who" {
            self.chat.apply(
                MemberId::Guest(from),
                ClientMessage::Who {
                    room: self.config.default_room.clone(),
                },
            )
        } else if !line.is_empty() {
            // At most MAX_TEXT bytes of UTF-8, what every client decodes (invalid bytes became
            // three-byte U+FFFD: a datagram of 22,000 of them is 66,000 bytes of text).
            let mut text = line;
            truncate_text(&mut text);
            self.chat
                .say_in(MemberId::Guest(from), &self.config.default_room, text)
        } else {
            Outbox::new()
        };
        // A guest does not get its own line back.
        outbox.retain(|(to, msg)| {
            !(*to == MemberId::Guest(from) && matches!(**msg, ServerMessage::Message { .. }))
        });
        self.deliver_all(now, outbox);
        self.flush_guest(from);
    }

    /// A new guest; `newline` tells whether its first line ended with one, so that even the
    /// first lines it is sent follow its style.
    fn add_guest(&mut self, now: Instant, addr: SocketAddr, newline: bool) {
        let digest = self.guest_nick_key.for_address(b"guest nick", addr, 0);
        let tag = u16::from_be_bytes([digest[0], digest[1]]);
        let mut nick = format!("{GUEST_PREFIX}{tag:04x}");
        let mut n = 2;
        while !self.chat.is_nick_free(&nick) {
            nick = format!("{GUEST_PREFIX}{tag:04x}-{n}");
            n += 1;
        }
        self.guests.insert(
            addr,
            Guest {
                nick: nick.clone(),
                credit: 0,
                validated: false,
                queue: VecDeque::new(),
                code_line_queued: false,
                dropped: 0,
                last_heard: now,
                newline,
                scheduled: now + self.config.connection.idle_timeout,
                outgoing: Vec::new(),
                listed: false,
                bucket: SenderBucket::new(),
                throttled: 0,
                slowdown_told: None,
            },
        );
        self.guest_timers
            .push(Reverse((now + self.config.connection.idle_timeout, addr)));
        self.bound_timers();
        self.events.push_back(ServerEvent::GuestArrived {
            addr,
            nick: nick.clone(),
        });
        // First what to do, compact enough for the budget of a first line of 5 bytes: the
        // line to send back, as it is. Then, once the guest has sent more, what it means.
        let code = self.guest_codes.code(now, addr);
        self.send_guest_line(addr, &format!("/ok {code}"));
        if let Some(guest) = self.guests.get_mut(&addr) {
            guest.code_line_queued = !guest.queue.is_empty();
        }
        self.send_guest_line(
            addr,
            &format!("* you are {nick}; to see everything said here, send back the line above"),
        );
        let room = self.config.default_room.clone();
        let outbox = self.chat.add_guest(MemberId::Guest(addr), &nick, &room);
        self.deliver_all(now, outbox);
    }

    fn remove_guest(&mut self, now: Instant, addr: SocketAddr, reason: &'static str) {
        let Some(guest) = self.guests.remove(&addr) else {
            return;
        };
        // Its last lines (the shutdown notice, say) still go.
        if !guest.outgoing.is_empty() {
            self.direct.push_back(Transmit {
                destination: addr,
                payload: Bytes::from(guest.outgoing),
            });
        }
        self.events.push_back(ServerEvent::GuestLeft {
            addr,
            nick: guest.nick,
            reason,
        });
        self.bound_timers();
        let outbox = self.chat.remove(MemberId::Guest(addr), reason);
        self.deliver_all(now, outbox);
    }

    /// Tells a guest of a `--no-guests` server, once per address and [`NO_GUESTS_WINDOW`],
    /// that it takes only `udpchat join` clients: the longest answer within
    /// [`AMPLIFICATION`] times the datagram (none if even the shortest does not fit; such a
    /// datagram does not count as told).
    fn tell_no_guests(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let (since, told) = &mut self.no_guests_told;
        if since.is_none_or(|since| now.saturating_duration_since(since) >= NO_GUESTS_WINDOW) {
            *since = Some(now);
            told.clear();
        }
        if told.contains(&from) || told.len() >= NO_GUESTS_TOLD {
            return;
        }
        let newline = usize::from(datagram.ends_with(b"\n"));
        let budget = AMPLIFICATION.saturating_mul(datagram.len());
        let Some(answer) = NO_GUESTS_ANSWERS
            .iter()
            .find(|a| a.len() + newline <= budget)
        else {
            return;
        };
        told.insert(from);
        let mut payload = answer.as_bytes().to_vec();
        if newline == 1 {
            payload.push(b'\n');
        }
        self.direct.push_back(Transmit {
            destination: from,
            payload: Bytes::from(payload),
        });
    }

    /// Queues a line for a guest and sends what its budget allows.
    fn send_guest_line(&mut self, addr: SocketAddr, line: &str) {
        self.send_guest_bytes(addr, line.as_bytes(), None);
    }

    /// [`send_guest_line`](Self::send_guest_line) for a line that may go to many guests:
    /// `shared` holds the same bytes as `line`, and a guest that takes it as it is gets the
    /// shared bytes (no copy per guest).
    fn send_guest_bytes(&mut self, addr: SocketAddr, line: &[u8], shared: Option<&Bytes>) {
        let Some(guest) = self.guests.get_mut(&addr) else {
            return;
        };
        if guest.validated && guest.newline && guest.queue.is_empty() {
            // Joins the lines of this turn (sent when output is polled: no delay added).
            if !guest.outgoing.is_empty() && guest.outgoing.len() + line.len() + 1 > GUEST_DATAGRAM
            {
                // Full: it goes first, in order (direct output is sent before these).
                self.direct.push_back(Transmit {
                    destination: addr,
                    payload: joined_lines(&mut self.outgoing, &mut guest.outgoing),
                });
            }
            if !guest.listed {
                guest.listed = true;
                self.guests_ready.push_back(addr);
            }
            guest.outgoing.extend_from_slice(line);
            guest.outgoing.push(b'\n');
            return;
        }
        if guest.validated && guest.queue.is_empty() {
            // Nothing waits before it and no budget applies: straight out (a guest that reads
            // lines was served above, so this one takes its line without a newline).
            let payload = shared.map_or_else(|| Bytes::copy_from_slice(line), Bytes::clone);
            self.direct.push_back(Transmit {
                destination: addr,
                payload,
            });
            return;
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line);
        if guest.newline {
            bytes.push(b'\n');
        }
        let queued = |q: &VecDeque<Vec<u8>>| q.iter().map(Vec::len).sum::<usize>();
        let kept = usize::from(guest.code_line_queued);
        while guest.queue.len() > kept
            && (guest.queue.len() >= self.config.guest_queue_lines
                || queued(&guest.queue) + bytes.len() > self.config.guest_queue_bytes)
        {
            guest.queue.remove(kept);
            guest.dropped += 1;
        }
        guest.queue.push_back(bytes);
        self.flush_guest(addr);
    }

    fn flush_guest(&mut self, addr: SocketAddr) {
        let Some(guest) = self.guests.get_mut(&addr) else {
            return;
        };
        while let Some(line) = guest.queue.front() {
            if !guest.validated {
                if line.len() > guest.credit {
                    break;
                }
                guest.credit -= line.len();
            }
            guest.code_line_queued = false;
            if let Some(line) = guest.queue.pop_front() {
                self.direct.push_back(Transmit {
                    destination: addr,
                    payload: Bytes::from(line),
                });
            }
        }
    }
}

/// Takes the earliest entry of a timer queue if it is due by `now`.
fn pop_due<K: Ord + Copy>(
    queue: &mut BinaryHeap<Reverse<(Instant, K)>>,
    now: Instant,
) -> Option<(Instant, K)> {
    let &Reverse((due, key)) = queue.peek()?;
    if due > now {
        return None;
    }
    queue.pop();
    Some((due, key))
}

/// A message on its way to members, with its encodings made on first use.
struct Encoded {
    message: Arc<ServerMessage>,
    framed: Option<Bytes>,
    guest_line: Option<Option<Bytes>>,
}

impl Encoded {
    fn new(message: Arc<ServerMessage>) -> Self {
        Self {
            message,
            framed: None,
            guest_line: None,
        }
    }

    /// As a framed member receives it: one buffer that every member's queue shares.
    fn framed(&mut self) -> &Bytes {
        self.framed
            .get_or_insert_with(|| Bytes::from(self.message.to_bytes()))
    }

    /// As a guest sees it (one line, no newline), if a guest is shown it at all.
    fn guest_line(&mut self) -> Option<&Bytes> {
        self.guest_line
            .get_or_insert_with(|| guest_line(&self.message).map(Bytes::from))
            .as_ref()
    }
}

/// How a guest sees a server message, as one plain-text line, neutralised (a guest is a bare
/// terminal: `nc -u` prints what it gets); `None` for what a guest has no use for.
fn guest_line(message: &ServerMessage) -> Option<String> {
    let line = guest_line_raw(message)?;
    Some(match text::neutralize(&line) {
        // Nothing to neutralise (the usual case): the line as it is, not a copy.
        Cow::Borrowed(_) => line,
        Cow::Owned(neutralized) => neutralized,
    })
}

/// The usual line (someone said something) is joined with `concat`, which allocates once at
/// the final size; `format!` guesses and grows (a reallocation for most chat lines).
fn guest_line_raw(message: &ServerMessage) -> Option<String> {
    Some(match message {
        ServerMessage::Message {
            from,
            kind: MessageKind::Say,
            text,
            ..
        } => [from.as_str(), ": ", text.as_str()].concat(),
        ServerMessage::Message {
            from,
            kind: MessageKind::Action,
            text,
            ..
        } => format!("* {from} {text}"),
        ServerMessage::Private { from, text, .. } => format!("[private] {from}: {text}"),
        ServerMessage::Joined { room, nick } => format!("* {nick} joined {room}"),
        ServerMessage::Left { room, nick, reason } => format!("* {nick} left {room} ({reason})"),
        ServerMessage::NickChanged { old, new } => format!("* {old} is now {new}"),
        ServerMessage::Names { room, nicks } => format!("* in {room}: {}", nicks.join(", ")),
        ServerMessage::Topic { room, topic, .. } if !topic.is_empty() => {
            format!("* topic of {room}: {topic}")
        }
        ServerMessage::Error { text, .. } => format!("! {text}"),
        _ => return None,
    })
}
