//! A framed client, sans-IO: the handshake, then a reliable [`Connection`] carrying
//! [`ClientMessage`]s out and [`ServerMessage`]s in.
//!
//! States, rustls-style: `ExpectWelcome` (Hello sent, repeated with back-off until the Welcome
//! or `connect_timeout`), `Connected`, `Ended`. Call order as for [`Connection`]: inputs
//! ([`handle_datagram`](Client::handle_datagram), [`handle_timeout`](Client::handle_timeout)),
//! commands ([`send`](Client::send), [`close`](Client::close)), then drain
//! [`poll_transmit`](Client::poll_transmit), read [`poll_timeout`](Client::poll_timeout), and
//! drain [`poll_event`](Client::poll_event).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::crypto::{ClientHandshake, CryptoError, KEY_LEN, SEAL_OVERHEAD, Transport};
use crate::reliable::{
    CloseReason, Connection, ConnectionConfig, ConnectionEvent, ConnectionStats, SendError,
};
use crate::rng::RandomSource;
use crate::wire::message::{ClientMessage, ServerMessage};
use crate::wire::packet::{CloseCode, ConnectionId, MAX_DATAGRAM, Packet, PacketRef};

/// How a client behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The connection's settings (keepalive and idle timeout are replaced by the server's).
    pub connection: ConnectionConfig,
    /// Give up when no Welcome came in this long.
    pub connect_timeout: Duration,
    /// Use the secure handshake (Noise NX) and encrypt everything; with `Some(key)` inside,
    /// only a server with that static key is accepted.
    pub secure: Option<Option<[u8; KEY_LEN]>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(20),
            secure: None,
        }
    }
}

/// What the client tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted us.
    Connected,
    /// A message from the server.
    Message(ServerMessage),
    /// The send queue has room again.
    Unblocked,
    /// The server has acknowledged every message numbered below this (the numbers
    /// [`Client::send`] returned): they reached it, whole. Emitted when the count grows, before
    /// the messages that came in the same datagram.
    Acknowledged(u64),
    /// The server proved this static key (secure handshake): pin it if it was not pinned.
    ServerKey([u8; KEY_LEN]),
    /// The server offered a key other than the pinned one; the connection is refused.
    KeyMismatch {
        /// The pinned key's fingerprint.
        pinned: String,
        /// The offered key's fingerprint.
        offered: String,
    },
    /// The connection is over (or never came to be); the last event.
    Closed(CloseReason),
}

#[derive(Debug)]
enum State {
    /// Hello sent; waiting for the Welcome.
    ExpectWelcome {
        nonce: u64,
        /// The server's cookie once a Retry gave one (0 before).
        cookie: u64,
        started: Instant,
        /// When the latest Hello went out, and how many went out.
        sent: Option<(Instant, u32)>,
        /// Messages sent before the connection existed, in order.
        queued: VecDeque<Vec<u8>>,
        queued_bytes: usize,
    },
    Connected(Box<Connection>),
    Ended,
}

/// A framed udpchat client. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    events: VecDeque<ClientEvent>,
    /// The secure handshake in progress, and its first message (repeated with each Hello).
    handshake: Option<(ClientHandshake, Vec<u8>)>,
    /// The keys of a secure connection.
    transport: Option<Transport>,
    /// Messages accepted by `send` so far (the next one's number).
    messages_sent: u64,
    /// Messages the server acknowledged, as last reported in an event.
    messages_acknowledged: u64,
    /// A received datagram, opened (reused: receiving allocates nothing per datagram).
    opened: Vec<u8>,
}

impl Client {
    /// A client that will say Hello at its first `poll_transmit`.
    pub fn new(config: ClientConfig, rng: &mut dyn RandomSource, now: Instant) -> Self {
        let state = State::ExpectWelcome {
            nonce: rng.next_u64(),
            cookie: 0,
            started: now,
            sent: None,
            queued: VecDeque::new(),
            queued_bytes: 0,
        };
        let mut client = Self {
            config,
            state,
            events: VecDeque::new(),
            handshake: None,
            transport: None,
            messages_sent: 0,
            messages_acknowledged: 0,
            opened: Vec::new(),
        };
        if let Some(pinned) = client.config.secure {
            match ClientHandshake::new(pinned) {
                Ok(handshake) => client.handshake = Some(handshake),
                Err(_) => client.end(CloseReason::ProtocolViolation),
            }
        }
        client
    }

    /// A datagram from the server (the driver drops datagrams from anyone else).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        // Anything malformed or unexpected is ignored: it may be forged, or stale. Read in
        // place: Data and Sealed datagrams are not copied.
        let Ok(packet) = PacketRef::decode(datagram) else {
            return;
        };
        // A secure client listens only to sealed datagrams once connected, and only to a
        // SecureWelcome before (a plain Welcome would be a downgrade).
        let Some(transport) = self.transport.as_mut() else {
            self.on_packet(now, packet);
            return;
        };
        let PacketRef::Sealed {
            connection,
            nonce,
            ciphertext,
        } = packet
        else {
            return;
        };
        let State::Connected(conn) = &self.state else {
            return;
        };
        if connection != conn.id() {
            return;
        }
        let mut opened = std::mem::take(&mut self.opened);
        if transport.open_into(nonce, ciphertext, &mut opened).is_ok()
            && let Ok(inner) = PacketRef::decode(&opened)
        {
            self.on_packet(now, inner);
        }
        self.opened = opened;
    }

    /// A datagram that decoded (and, in a secure session, opened).
    fn on_packet(&mut self, now: Instant, packet: PacketRef<'_>) {
        let packet = match packet {
            PacketRef::Data(data) => {
                if let State::Connected(conn) = &mut self.state
                    && data.connection == conn.id()
                    && data.token == conn.token()
                {
                    conn.handle_data(now, &data);
                    self.on_connection_events(now);
                }
                return;
            }
            // Never expected here (nor inside another).
            PacketRef::Sealed { .. } => return,
            PacketRef::Other(packet) => packet,
        };
        if let Packet::SecureWelcome {
            connection,
            nonce: echoed,
            noise,
        } = &packet
        {
            self.on_secure_welcome(now, *connection, *echoed, noise);
            return;
        }
        match &mut self.state {
            State::ExpectWelcome {
                nonce,
                cookie,
                sent,
                ..
            } => {
                if let Packet::Retry {
                    nonce: echoed,
                    cookie: offered,
                } = packet
                {
                    // The server wants proof of our address: say Hello again, with its cookie,
                    // right away.
                    if echoed == *nonce && offered != 0 && *cookie != offered {
                        *cookie = offered;
                        *sent = None;
                    }
                    return;
                }
                let Packet::Welcome {
                    connection,
                    nonce: echoed,
                    token,
                    keepalive_ms,
                    idle_timeout_ms,
                } = packet
                else {
                    return;
                };
                if echoed != *nonce || self.handshake.is_some() {
                    return;
                }
                self.connect(now, connection, token, keepalive_ms, idle_timeout_ms);
            }
            State::Connected(conn) => {
                match &packet {
                    Packet::Close {
                        connection, token, ..
                    } if *connection == conn.id() && *token == conn.token() => {}
                    _ => return,
                }
                conn.handle_packet(now, packet);
                self.on_connection_events(now);
            }
            State::Ended => {}
        }
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::ExpectWelcome { started, .. } => {
                if now >= *started + self.config.connect_timeout {
                    self.end(CloseReason::TimedOut);
                }
            }
            State::Connected(conn) => {
                conn.handle_timeout(now);
                self.on_connection_events(now);
            }
            State::Ended => {}
        }
    }

    /// Sends one message to the server, reliably and in order (queued until connected), and
    /// returns its number: 0 for the first message, then 1, 2… ([`ClientEvent::Acknowledged`]
    /// reports progress in these numbers).
    ///
    /// # Errors
    /// [`SendError::QueueFull`] with the message's bytes when the queue is full (wait for
    /// `Unblocked`); [`SendError::Closed`] after the end.
    pub fn send(&mut self, message: &ClientMessage) -> Result<u64, SendError> {
        let bytes = message.to_bytes();
        let accepted = match &mut self.state {
            State::ExpectWelcome {
                queued,
                queued_bytes,
                ..
            } => {
                if *queued_bytes > 0
                    && *queued_bytes + bytes.len() > self.config.connection.max_queued_bytes
                {
                    return Err(SendError::QueueFull(bytes));
                }
                *queued_bytes += bytes.len();
                queued.push_back(bytes);
                Ok(())
            }
            State::Connected(conn) => conn.send_message(bytes),
            State::Ended => Err(SendError::Closed(bytes)),
        };
        accepted.map(|()| {
            self.messages_sent += 1;
            self.messages_sent - 1
        })
    }

    /// Leaves: tells the server, lingers briefly, ends.
    pub fn close(&mut self, now: Instant) {
        match &mut self.state {
            State::Connected(conn) => {
                conn.close(now, CloseCode::Leaving);
                self.on_connection_events(now);
            }
            State::ExpectWelcome { .. } => self.end(CloseReason::LocallyClosed(CloseCode::Leaving)),
            State::Ended => {}
        }
    }

    /// The next datagram to send to the server.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        match &mut self.state {
            State::ExpectWelcome {
                nonce,
                cookie,
                sent,
                ..
            } => {
                let due = match sent {
                    None => true,
                    Some((at, count)) => now >= *at + hello_interval(&self.config, *count),
                };
                if !due {
                    return None;
                }
                let count = sent.map_or(1, |(_, n)| n + 1);
                *sent = Some((now, count));
                let (nonce, cookie) = (*nonce, *cookie);
                Some(match &self.handshake {
                    Some((_, first)) => Packet::SecureHello {
                        nonce,
                        cookie,
                        noise: first.clone(),
                    }
                    .to_bytes(),
                    None => Packet::Hello { nonce, cookie }.to_bytes(),
                })
            }
            State::Connected(conn) => {
                let datagram = conn.poll_transmit(now)?;
                match self.transport.as_mut() {
                    None => Some(datagram),
                    Some(transport) => transport.seal_datagram(conn.id(), &datagram),
                }
            }
            State::Ended => None,
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::ExpectWelcome { started, sent, .. } => {
                let give_up = *started + self.config.connect_timeout;
                Some(match sent {
                    Some((at, count)) => give_up.min(*at + hello_interval(&self.config, *count)),
                    None => *started,
                })
            }
            State::Connected(conn) => conn.poll_timeout(),
            State::Ended => None,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Connected and not closed.
    pub fn is_connected(&self) -> bool {
        matches!(&self.state, State::Connected(c) if !c.is_closed())
    }

    /// Everything sent has been acknowledged by the server.
    pub fn is_send_idle(&self) -> bool {
        match &self.state {
            State::ExpectWelcome { queued, .. } => queued.is_empty(),
            State::Connected(conn) => conn.is_send_idle(),
            State::Ended => true,
        }
    }

    /// Over: nothing more will happen.
    pub fn is_drained(&self) -> bool {
        match &self.state {
            State::Connected(conn) => conn.is_drained(),
            State::Ended => true,
            State::ExpectWelcome { .. } => false,
        }
    }

    /// The connection's counters (datagrams, retransmissions), once connected.
    pub fn stats(&self) -> Option<ConnectionStats> {
        match &self.state {
            State::Connected(conn) => Some(conn.stats()),
            _ => None,
        }
    }

    /// The smoothed round-trip time, once known.
    pub fn rtt(&self) -> Option<Duration> {
        match &self.state {
            State::Connected(conn) => conn.rtt(),
            _ => None,
        }
    }

    /// The secure handshake's answer: check the server's key, take the keys and the session.
    fn on_secure_welcome(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        echoed: u64,
        noise: &[u8],
    ) {
        let State::ExpectWelcome { nonce, .. } = &self.state else {
            return;
        };
        if echoed != *nonce {
            return;
        }
        let Some((handshake, _first_message)) = self.handshake.take() else {
            return;
        };
        match handshake.finish(noise) {
            Ok((transport, key, secrets)) if secrets.len() == 16 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(&secrets[..8]);
                let token = u64::from_be_bytes(word);
                let keepalive =
                    u32::from_be_bytes([secrets[8], secrets[9], secrets[10], secrets[11]]);
                let idle = u32::from_be_bytes([secrets[12], secrets[13], secrets[14], secrets[15]]);
                self.transport = Some(transport);
                self.events.push_back(ClientEvent::ServerKey(key));
                self.connect(now, connection, token, keepalive, idle);
            }
            Err(CryptoError::KeyMismatch { pinned, offered }) => {
                self.events
                    .push_back(ClientEvent::KeyMismatch { pinned, offered });
                self.end(CloseReason::ProtocolViolation);
            }
            // Damaged or forged (it carried our nonce, so it came from the path): the handshake
            // state is spent, and the attempt fails; a new `join` starts afresh.
            _ => {
                self.end(CloseReason::ProtocolViolation);
            }
        }
    }

    /// The handshake is done: the connection starts, with what queued meanwhile.
    fn connect(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        token: u64,
        keepalive_ms: u32,
        idle_timeout_ms: u32,
    ) {
        let State::ExpectWelcome { sent, queued, .. } = &mut self.state else {
            return;
        };
        // Karn: the handshake gives an RTT sample only if the Hello went out once.
        let sample = match sent {
            Some((at, 1)) => Some(now.saturating_duration_since(*at)),
            _ => None,
        };
        let mut config = self.config.connection.clone();
        if self.transport.is_some() {
            config.max_datagram = MAX_DATAGRAM - SEAL_OVERHEAD;
        }
        config.keepalive = Some(Duration::from_millis(u64::from(keepalive_ms.max(100))));
        config.idle_timeout = Duration::from_millis(u64::from(idle_timeout_ms.max(1000)));
        let mut conn = Connection::new(connection, token, config, now, sample);
        for message in queued.drain(..) {
            // The queue was bounded by the same limit, so this cannot be refused.
            let _ = conn.send_message(message);
        }
        self.state = State::Connected(Box::new(conn));
        self.events.push_back(ClientEvent::Connected);
    }

    fn on_connection_events(&mut self, now: Instant) {
        let State::Connected(conn) = &mut self.state else {
            return;
        };
        // Every message went through this connection, in order, so its count is ours.
        if conn.messages_acknowledged() > self.messages_acknowledged {
            self.messages_acknowledged = conn.messages_acknowledged();
            self.events
                .push_back(ClientEvent::Acknowledged(self.messages_acknowledged));
        }
        while let Some(event) = conn.poll_event() {
            match event {
                ConnectionEvent::Message(bytes) => match ServerMessage::decode(&bytes) {
                    Ok(message) => self.events.push_back(ClientEvent::Message(message)),
                    // The server broke the protocol: nothing it says can be trusted now.
                    Err(_) => conn.close(now, CloseCode::ProtocolViolation),
                },
                ConnectionEvent::Unblocked => self.events.push_back(ClientEvent::Unblocked),
                ConnectionEvent::Closed(reason) => {
                    self.events.push_back(ClientEvent::Closed(reason))
                }
            }
        }
    }

    fn end(&mut self, reason: CloseReason) {
        self.state = State::Ended;
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

/// Hello back-off: the initial RTO, doubled per attempt, at most [`MAX_HELLO_INTERVAL`].
fn hello_interval(config: &ClientConfig, count: u32) -> Duration {
    let initial = config.connection.rto.initial;
    initial
        .saturating_mul(1 << count.saturating_sub(1).min(8))
        .min(MAX_HELLO_INTERVAL)
}

/// Hellos are small and answered by a Welcome no larger, so repeating them every second costs
/// little; it gives ~20 attempts within the default connect timeout, enough to connect even
/// when 30% of datagrams are lost each way (each attempt succeeds half the time).
const MAX_HELLO_INTERVAL: Duration = Duration::from_secs(1);
