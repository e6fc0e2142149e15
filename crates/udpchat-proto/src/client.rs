//! A framed client, sans-IO: the handshake, then a reliable [`Connection`] carrying
//! [`ClientMessage`]s out and [`ServerMessage`]s in.
//!
//! States, rustls-style: `ExpectWelcome` (Hello sent, repeated with back-off until the Welcome
//! or `connect_timeout`), `ExpectKeyVerdict` (a secure handshake proved a key nobody vouched
//! for: everything sent waits for [`accept_key`](Client::accept_key)), `Connected`, `Ended`.
//!
//! The key rule: nothing that identifies the user or carries their words (every
//! [`ClientMessage`]) leaves under a server key that has not been accepted. A key is accepted
//! when it is the expected one ([`ClientConfig::secure`] with a key, or
//! [`ClientConfig::expected_fingerprint`]), decided here; otherwise the client reports it
//! ([`ClientEvent::ServerKey`]) and holds every message until the driver gives its verdict. A
//! wrong expected key ends the attempt before anything but the handshake's first message left.
//!
//! A server that breaks the protocol (a message that does not decode) is closed on at once;
//! nothing it sent after the violation, even in the same datagram, is applied, and the end is
//! reported as [`CloseReason::ProtocolViolation`].
//!
//! Call order as for [`Connection`]: inputs
//! ([`handle_datagram`](Client::handle_datagram), [`handle_timeout`](Client::handle_timeout)),
//! commands ([`send`](Client::send), [`close`](Client::close)), then drain
//! [`poll_transmit`](Client::poll_transmit), read [`poll_timeout`](Client::poll_timeout), and
//! drain [`poll_event`](Client::poll_event).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::crypto::{ClientHandshake, CryptoError, KEY_LEN, SEAL_OVERHEAD, Transport, fingerprint};
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
    /// only a server with that static key is accepted (a pin). With `None` inside and no
    /// [`expected_fingerprint`](Self::expected_fingerprint), any key completes the handshake,
    /// but nothing is sent under it until the driver calls [`Client::accept_key`].
    pub secure: Option<Option<[u8; KEY_LEN]>>,
    /// With the secure handshake, accept only a server whose key has this fingerprint (as
    /// [`fingerprint`] writes it; the user gave it): checked like a pin.
    pub expected_fingerprint: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(20),
            secure: None,
            expected_fingerprint: None,
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
    /// The server proved this static key (secure handshake). When the configuration expected
    /// it, the connection goes on (pin it if it was not pinned); otherwise the client holds
    /// every message until the driver calls [`Client::accept_key`] or [`Client::reject_key`].
    ServerKey([u8; KEY_LEN]),
    /// The server offered a key other than the pinned or expected one; the connection is
    /// refused (and nothing was sent under that key).
    KeyMismatch {
        /// The pinned (or expected) key's fingerprint.
        pinned: String,
        /// The offered key's fingerprint.
        offered: String,
    },
    /// While the client waited for the server's Welcome, a datagram came from the server's
    /// address that is not udpchat's framed protocol at all (plain text, say, from `udpchat chat
    /// --listen` or an echo service): whatever answers there is not a udpchat room server.
    /// Reported once. The handshake itself goes on (the datagram may be forged), so giving up
    /// is the driver's choice. A framed datagram that is not the expected answer (a stale one
    /// from an earlier connection, a wrong nonce) is not reported: it may well come from a
    /// room server.
    NotARoomServer,
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
    /// A secure handshake proved a key that must be accepted by the driver first; nothing is
    /// sent meanwhile.
    ExpectKeyVerdict {
        welcome: Welcome,
        started: Instant,
        /// Messages sent before the verdict, in order.
        queued: VecDeque<Vec<u8>>,
        queued_bytes: usize,
    },
    Connected(Box<Connection>),
    Ended,
}

/// What the handshake gave: enough to open the connection.
#[derive(Debug, Clone, Copy)]
struct Welcome {
    connection: ConnectionId,
    token: u64,
    keepalive_ms: u32,
    idle_timeout_ms: u32,
    /// The handshake's RTT sample (Karn: only if the Hello went out once).
    rtt_sample: Option<Duration>,
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
    /// The server sent a message that does not decode: nothing it says is applied any more.
    violated: bool,
    /// [`ClientEvent::NotARoomServer`] was reported (once is enough).
    foreign_answer: bool,
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
            violated: false,
            foreign_answer: false,
        };
        if let Some(pinned) = client.config.secure {
            match ClientHandshake::new(pinned, rng) {
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
            self.on_foreign_datagram();
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
                let welcome = Welcome {
                    connection,
                    token,
                    keepalive_ms,
                    idle_timeout_ms,
                    rtt_sample: rtt_sample(*sent, now),
                };
                self.connect(now, welcome);
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
            State::ExpectKeyVerdict { .. } | State::Ended => {}
        }
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::ExpectWelcome { started, .. } | State::ExpectKeyVerdict { started, .. } => {
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
    /// [`SendError::TooLong`] when a field is longer than the server accepts (nothing is sent:
    /// the server would close the connection); [`SendError::QueueFull`] with the message's
    /// bytes when the queue is full (wait for `Unblocked`); [`SendError::Closed`] after the end.
    pub fn send(&mut self, message: &ClientMessage) -> Result<u64, SendError> {
        message.check_lengths().map_err(SendError::TooLong)?;
        let bytes = message.to_bytes();
        let accepted = match &mut self.state {
            State::ExpectWelcome {
                queued,
                queued_bytes,
                ..
            }
            | State::ExpectKeyVerdict {
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
            State::ExpectKeyVerdict { .. } => self.reject_key(now),
            State::Ended => {}
        }
    }

    /// The driver accepts the key reported by [`ClientEvent::ServerKey`] (it was pinned on
    /// first use, or the user agreed): the connection opens and what was held goes out. Does
    /// nothing in any other state (a key the configuration expected is accepted already).
    pub fn accept_key(&mut self, now: Instant) {
        let State::ExpectKeyVerdict { welcome, .. } = &self.state else {
            return;
        };
        let welcome = *welcome;
        self.connect(now, welcome);
    }

    /// The driver refuses the key reported by [`ClientEvent::ServerKey`]: everything held is
    /// dropped unsent, and only a Close goes out (so the server frees the session at once).
    /// Does nothing in any other state.
    pub fn reject_key(&mut self, now: Instant) {
        let State::ExpectKeyVerdict { welcome, .. } = &self.state else {
            return;
        };
        let mut conn = self.open(now, *welcome);
        conn.close(now, CloseCode::Leaving);
        self.state = State::Connected(Box::new(conn));
        self.on_connection_events(now);
    }

    /// Waiting for [`accept_key`](Self::accept_key) or [`reject_key`](Self::reject_key).
    pub fn is_awaiting_key_verdict(&self) -> bool {
        matches!(self.state, State::ExpectKeyVerdict { .. })
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
            State::ExpectKeyVerdict { .. } | State::Ended => None,
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
            State::ExpectKeyVerdict { started, .. } => Some(*started + self.config.connect_timeout),
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
            State::ExpectWelcome { queued, .. } | State::ExpectKeyVerdict { queued, .. } => {
                queued.is_empty()
            }
            State::Connected(conn) => conn.is_send_idle(),
            State::Ended => true,
        }
    }

    /// Over: nothing more will happen.
    pub fn is_drained(&self) -> bool {
        match &self.state {
            State::Connected(conn) => conn.is_drained(),
            State::Ended => true,
            State::ExpectWelcome { .. } | State::ExpectKeyVerdict { .. } => false,
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
        let State::ExpectWelcome { nonce, sent, .. } = &self.state else {
            return;
        };
        if echoed != *nonce {
            return;
        }
        let sample = rtt_sample(*sent, now);
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
                let offered = fingerprint(&key);
                if let Some(expected) = &self.config.expected_fingerprint
                    && *expected != offered
                {
                    // Refused before a single message went out under this key.
                    self.events.push_back(ClientEvent::KeyMismatch {
                        pinned: expected.clone(),
                        offered,
                    });
                    self.end(CloseReason::ProtocolViolation);
                    return;
                }
                self.transport = Some(transport);
                self.events.push_back(ClientEvent::ServerKey(key));
                let welcome = Welcome {
                    connection,
                    token,
                    keepalive_ms: keepalive,
                    idle_timeout_ms: idle,
                    rtt_sample: sample,
                };
                let expected = matches!(self.config.secure, Some(Some(_)))
                    || self.config.expected_fingerprint.is_some();
                if expected {
                    self.connect(now, welcome);
                } else if let State::ExpectWelcome {
                    started,
                    queued,
                    queued_bytes,
                    ..
                } = &mut self.state
                {
                    // Nobody vouched for this key: hold everything until the driver decides.
                    self.state = State::ExpectKeyVerdict {
                        welcome,
                        started: *started,
                        queued: std::mem::take(queued),
                        queued_bytes: *queued_bytes,
                    };
                }
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

    /// The handshake is done and its key accepted: the connection starts, with what queued
    /// meanwhile.
    fn connect(&mut self, now: Instant, welcome: Welcome) {
        let mut conn = self.open(now, welcome);
        let (State::ExpectWelcome { queued, .. } | State::ExpectKeyVerdict { queued, .. }) =
            &mut self.state
        else {
            return;
        };
        for message in queued.drain(..) {
            // The queue was bounded by the same limit, so this cannot be refused.
            let _ = conn.send_message(message);
        }
        self.state = State::Connected(Box::new(conn));
        self.events.push_back(ClientEvent::Connected);
    }

    /// A connection for what the handshake gave.
    fn open(&self, now: Instant, welcome: Welcome) -> Connection {
        let mut config = self.config.connection.clone();
        if self.transport.is_some() {
            config.max_datagram = MAX_DATAGRAM - SEAL_OVERHEAD;
        }
        config.keepalive = Some(Duration::from_millis(u64::from(
            welcome.keepalive_ms.max(100),
        )));
        config.idle_timeout = Duration::from_millis(u64::from(welcome.idle_timeout_ms.max(1000)));
        Connection::new(
            welcome.connection,
            welcome.token,
            config,
            now,
            welcome.rtt_sample,
        )
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
                // After a violation nothing more is applied, not even the rest of its datagram.
                ConnectionEvent::Message(_) if self.violated => {}
                ConnectionEvent::Message(bytes) => match ServerMessage::decode(&bytes) {
                    Ok(message) => self.events.push_back(ClientEvent::Message(message)),
                    // The server broke the protocol: nothing it says can be trusted now.
                    Err(_) => {
                        self.violated = true;
                        conn.close(now, CloseCode::ProtocolViolation);
                    }
                },
                ConnectionEvent::Unblocked => self.events.push_back(ClientEvent::Unblocked),
                // Our own close for the server's violation: report it as what it is.
                ConnectionEvent::Closed(CloseReason::LocallyClosed(
                    CloseCode::ProtocolViolation,
                )) if self.violated => self
                    .events
                    .push_back(ClientEvent::Closed(CloseReason::ProtocolViolation)),
                ConnectionEvent::Closed(reason) => {
                    self.events.push_back(ClientEvent::Closed(reason))
                }
            }
        }
    }

    /// A datagram that is not udpchat's framed protocol: before any Welcome, the first one
    /// tells that the server is something else ([`ClientEvent::NotARoomServer`]).
    fn on_foreign_datagram(&mut self) {
        if let State::ExpectWelcome { .. } = self.state
            && !self.foreign_answer
        {
            self.foreign_answer = true;
            self.events.push_back(ClientEvent::NotARoomServer);
        }
    }

    fn end(&mut self, reason: CloseReason) {
        self.state = State::Ended;
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

/// Karn: the handshake gives an RTT sample only if the Hello went out once.
fn rtt_sample(sent: Option<(Instant, u32)>, now: Instant) -> Option<Duration> {
    match sent {
        Some((at, 1)) => Some(now.saturating_duration_since(at)),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::StaticKeypair;
    use crate::rng::SplitMix64;
    use crate::server::{Server, ServerConfig};
    use crate::testing::addr;
    use crate::wire::message::{MAX_NAME, MAX_TEXT, TooLong};

    /// A plain client connected to a hand-made server connection (no server logic: the test
    /// writes exactly what the server sends).
    fn connected_to_a_scripted_server(now: Instant) -> (Client, Connection) {
        let mut client = Client::new(ClientConfig::default(), &mut SplitMix64::new(1), now);
        let hello = client.poll_transmit(now).expect("a Hello");
        let Ok(PacketRef::Other(Packet::Hello { nonce, .. })) = PacketRef::decode(&hello) else {
            panic!("not a Hello: {hello:?}");
        };
        let (id, token) = (ConnectionId(7), 99);
        let welcome = Packet::Welcome {
            connection: id,
            nonce,
            token,
            keepalive_ms: 5_000,
            idle_timeout_ms: 30_000,
        };
        client.handle_datagram(now, &welcome.to_bytes());
        assert_eq!(client.poll_event(), Some(ClientEvent::Connected));
        let server = Connection::new(id, token, ConnectionConfig::default(), now, None);
        (client, server)
    }

    #[test]
    fn an_undecodable_message_ends_the_connection_as_a_violation_and_nothing_after_it_applies() {
        let mut now = Instant::now();
        let (mut client, mut server) = connected_to_a_scripted_server(now);
        let nick_set = |nick: &str| ServerMessage::NickSet { nick: nick.into() }.to_bytes();
        // One datagram: a good message, one that does not decode (an unknown tag), a good one.
        server.send_message(nick_set("before")).unwrap();
        server.send_message(vec![0x7f, 1, 2, 3]).unwrap();
        server.send_message(nick_set("after")).unwrap();
        let datagram = server.poll_transmit(now).expect("a Data datagram");
        assert_eq!(server.poll_transmit(now), None, "all three in one datagram");
        client.handle_datagram(now, &datagram);
        let mut events = Vec::new();
        for _ in 0..1000 {
            while let Some(event) = client.poll_event() {
                events.push(event);
            }
            let _ = client.poll_transmit(now);
            let Some(at) = client.poll_timeout() else {
                break;
            };
            now = now.max(at);
            client.handle_timeout(now);
        }
        let messages: Vec<&ClientEvent> = events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Message(_)))
            .collect();
        assert_eq!(
            messages,
            [&ClientEvent::Message(ServerMessage::NickSet {
                nick: "before".into()
            })],
            "only what came before the violation is applied"
        );
        assert_eq!(
            events.last(),
            Some(&ClientEvent::Closed(CloseReason::ProtocolViolation)),
            "{events:?}"
        );
        assert!(client.is_drained());
    }

    #[test]
    fn a_plain_text_answer_to_the_hello_is_reported_once_and_a_stale_framed_one_not_at_all() {
        let now = Instant::now();
        let mut client = Client::new(ClientConfig::default(), &mut SplitMix64::new(1), now);
        let _hello = client.poll_transmit(now).expect("a Hello");
        // A framed answer for another nonce: stale or forged, maybe from a room server.
        let mut stale = Vec::new();
        Packet::Retry {
            nonce: 12345,
            cookie: 1,
        }
        .encode(&mut stale);
        client.handle_datagram(now, &stale);
        assert_eq!(client.poll_event(), None);
        client.handle_datagram(now, b"who are you?\n");
        client.handle_datagram(now, b"still me");
        assert_eq!(client.poll_event(), Some(ClientEvent::NotARoomServer));
        assert_eq!(client.poll_event(), None, "reported once");
        assert!(
            !client.is_drained(),
            "the handshake goes on: the driver decides"
        );
    }

    #[test]
    fn a_field_longer_than_the_server_accepts_is_refused_before_it_is_queued() {
        let now = Instant::now();
        let (mut client, _server) = connected_to_a_scripted_server(now);
        let say = |len: usize| ClientMessage::Say {
            room: "lobby".into(),
            text: "x".repeat(len),
        };
        // 70,000 bytes is over the reliable layer's own limit too; 66,000 is not, and the
        // server would close the connection for it.
        for len in [MAX_TEXT + 1, 66_000, 70_000] {
            assert_eq!(
                client.send(&say(len)),
                Err(SendError::TooLong(TooLong {
                    field: "text",
                    len,
                    max: MAX_TEXT
                }))
            );
        }
        let long_room = ClientMessage::Join {
            room: "r".repeat(MAX_NAME + 1),
        };
        assert!(matches!(
            client.send(&long_room),
            Err(SendError::TooLong(TooLong { field: "room", .. }))
        ));
        assert!(client.is_send_idle(), "nothing was queued");
        assert_eq!(
            client.send(&say(MAX_TEXT)),
            Ok(0),
            "the limit itself is fine"
        );
    }

    /// A secure server and its clients, every datagram delivered at once.
    struct SecureNet {
        now: Instant,
        server: Server,
        keys: StaticKeypair,
        clients: Vec<Peer>,
    }

    struct Peer {
        client: Client,
        events: Vec<ClientEvent>,
        /// Every datagram the client sent.
        sent: Vec<Vec<u8>>,
    }

    impl SecureNet {
        fn new() -> Self {
            let keys = StaticKeypair::from_private([5; KEY_LEN]).unwrap();
            let config = ServerConfig {
                identity: Some(keys.clone()),
                ..ServerConfig::default()
            };
            Self {
                now: Instant::now(),
                server: Server::new(config, Box::new(SplitMix64::new(3))),
                keys,
                clients: Vec::new(),
            }
        }

        /// A client that asks for `nick` in the lobby and says `said` there at once.
        fn add(&mut self, nick: &str, config: ClientConfig, said: &str) -> usize {
            let n = self.clients.len();
            let mut client = Client::new(config, &mut SplitMix64::new(n as u64 + 10), self.now);
            for message in [
                ClientMessage::Nick { nick: nick.into() },
                ClientMessage::Join {
                    room: "lobby".into(),
                },
                ClientMessage::Say {
                    room: "lobby".into(),
                    text: said.into(),
                },
            ] {
                client.send(&message).unwrap();
            }
            self.clients.push(Peer {
                client,
                events: Vec::new(),
                sent: Vec::new(),
            });
            n
        }

        /// Moves datagrams until nobody has anything to send.
        fn pump(&mut self) {
            let now = self.now;
            loop {
                let mut moved = false;
                for (i, peer) in self.clients.iter_mut().enumerate() {
                    while let Some(datagram) = peer.client.poll_transmit(now) {
                        self.server
                            .handle_datagram(now, addr(100 + i as u16), &datagram);
                        peer.sent.push(datagram);
                        moved = true;
                    }
                }
                while let Some(transmit) = self.server.poll_transmit(now) {
                    let i = usize::from(transmit.destination.port() - 100);
                    self.clients[i]
                        .client
                        .handle_datagram(now, &transmit.payload);
                    moved = true;
                }
                while self.server.poll_event().is_some() {}
                for peer in &mut self.clients {
                    while let Some(event) = peer.client.poll_event() {
                        peer.events.push(event);
                    }
                }
                if !moved {
                    return;
                }
            }
        }

        /// Lets timers (delayed acknowledgements, closing) run for a while.
        fn run(&mut self, duration: Duration) {
            let end = self.now + duration;
            while self.now < end {
                self.now += Duration::from_millis(10);
                let now = self.now;
                if self.server.poll_timeout().is_some_and(|t| t <= now) {
                    self.server.handle_timeout(now);
                }
                for peer in &mut self.clients {
                    if peer.client.poll_timeout().is_some_and(|t| t <= now) {
                        peer.client.handle_timeout(now);
                    }
                }
                self.pump();
            }
        }

        /// Everything room-related the client saw: joins and messages, as text.
        fn seen(&self, i: usize) -> Vec<String> {
            self.clients[i]
                .events
                .iter()
                .filter_map(|e| match e {
                    ClientEvent::Message(ServerMessage::Joined { nick, .. }) => {
                        Some(format!("{nick} joined"))
                    }
                    ClientEvent::Message(ServerMessage::Message { from, text, .. }) => {
                        Some(format!("{from}: {text}"))
                    }
                    _ => None,
                })
                .collect()
        }

        /// The datagrams client `i` sent that were not its handshake's first message.
        fn sent_after_hello(&self, i: usize) -> Vec<&Vec<u8>> {
            self.clients[i]
                .sent
                .iter()
                .filter(|d| {
                    !matches!(
                        PacketRef::decode(d),
                        Ok(PacketRef::Other(Packet::SecureHello { .. }))
                    )
                })
                .collect()
        }
    }

    fn pinned(key: [u8; KEY_LEN]) -> ClientConfig {
        ClientConfig {
            secure: Some(Some(key)),
            ..ClientConfig::default()
        }
    }

    fn unvouched() -> ClientConfig {
        ClientConfig {
            secure: Some(None),
            ..ClientConfig::default()
        }
    }

    #[test]
    fn nothing_but_a_close_leaves_under_a_key_nobody_accepted() {
        let mut net = SecureNet::new();
        let public = net.keys.public;
        let watcher = net.add("watcher", pinned(public), "hi");
        net.pump();
        assert_eq!(net.seen(watcher), ["watcher joined", "watcher: hi"]);

        // An unvouched key: reported, and every message held.
        let ada = net.add("ada", unvouched(), "SECRET-ada");
        net.run(Duration::from_secs(2));
        assert!(
            net.clients[ada]
                .events
                .contains(&ClientEvent::ServerKey(public))
        );
        assert!(net.clients[ada].client.is_awaiting_key_verdict());
        assert!(
            net.sent_after_hello(ada).is_empty(),
            "ada sent {} datagrams after the handshake before any verdict",
            net.sent_after_hello(ada).len()
        );
        // Refused: one Close (sent again while closing), nothing the server takes for a member.
        net.clients[ada].client.reject_key(net.now);
        net.run(Duration::from_secs(5));
        assert!(net.clients[ada].client.is_drained());
        assert!(!net.sent_after_hello(ada).is_empty(), "a Close went out");
        assert_eq!(net.seen(watcher), ["watcher joined", "watcher: hi"]);
        assert_eq!(net.server.connection_count(), 1, "ada's session is gone");

        // A wrong expected fingerprint: refused by the core itself, before anything is sent.
        let wrong = ClientConfig {
            expected_fingerprint: Some(fingerprint(&[1; KEY_LEN])),
            ..unvouched()
        };
        let bob = net.add("bob", wrong, "SECRET-bob");
        net.run(Duration::from_secs(2));
        assert!(matches!(
            net.clients[bob].events.first(),
            Some(ClientEvent::KeyMismatch { .. })
        ));
        assert_eq!(
            net.clients[bob].events.last(),
            Some(&ClientEvent::Closed(CloseReason::ProtocolViolation))
        );
        assert!(net.sent_after_hello(bob).is_empty());

        // Accepted: what was held goes out, in order.
        let cyd = net.add("cyd", unvouched(), "cyd's first words");
        net.pump();
        assert!(net.sent_after_hello(cyd).is_empty());
        net.clients[cyd].client.accept_key(net.now);
        net.run(Duration::from_secs(1));
        assert_eq!(
            net.seen(watcher),
            [
                "watcher joined",
                "watcher: hi",
                "cyd joined",
                "cyd: cyd's first words"
            ]
        );
        // The right expected fingerprint needs no verdict.
        let right = ClientConfig {
            expected_fingerprint: Some(fingerprint(&public)),
            ..unvouched()
        };
        let dee = net.add("dee", right, "dee here");
        net.run(Duration::from_secs(1));
        assert!(net.clients[dee].events.contains(&ClientEvent::Connected));
        assert!(net.seen(watcher).contains(&"dee: dee here".to_owned()));
    }
}
