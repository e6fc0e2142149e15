//! The room server survives anything peers send: arbitrary datagrams, handshakes, forged but
//! well-formed data on real connections (any command bytes), guests, and time jumps. It never
//! panics, never spins on a timer, and never sends an address that has not shown it is there
//! (no Welcome received, no `/ok` sent) more than 3 times the bytes that address sent it
//! (`AMPLIFICATION`, QUIC's factor before address validation), at any point.
//!
//! Input: a mode byte (odd: a secure server, with real Noise handshakes and sealed data), then
//! operations of one byte (`op % 8`) with operands; bytes past the end read as 0.
//!
//! | op   | operands          | what                                                         |
//! |------|-------------------|--------------------------------------------------------------|
//! | 0, 1 | peer, len, bytes  | arbitrary datagram from peer `peer % 8`                      |
//! | 2    | peer, nonce       | a Hello from that peer, with the cookie of its last Retry    |
//! | 3, 4 | peer, len, bytes  | a Data datagram on the peer's connection (if it has one),    |
//! |      |                   | next sequence number, one segment with the bytes as message  |
//! | 5    | peer, tag, bytes  | a well-formed command (Nick/Join/Say/Private) built from     |
//! |      |                   | the bytes, as a segment on the peer's connection             |
//! | 6    | step              | the clock advances step * 50 ms                              |
//! | 7    |                   | the clock jumps to the server's next deadline                |
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udpchat_proto::crypto::{ClientHandshake, StaticKeypair, Transport};
use udpchat_proto::rng::SplitMix64;
use udpchat_proto::server::{AMPLIFICATION, Server, ServerConfig};
use udpchat_proto::wire::message::ClientMessage;
use udpchat_proto::wire::packet::{Ack, ConnectionId, Packet, Segment};

const MAX_OPS: usize = 300;
const PEERS: u8 = 8;

#[path = "common/script.rs"]
mod script;
use script::Input;

fuzz_target!(|data: &[u8]| run(data));

/// What we know of one peer address.
#[derive(Default)]
struct PeerState {
    /// A secure handshake in progress (secure mode).
    handshake: Option<ClientHandshake>,
    /// The keys of its secure session.
    transport: Option<Transport>,
    /// The connection its Welcome gave it, with the token and our next sequence number.
    connection: Option<(ConnectionId, u64, u32)>,
    received_from: usize,
    sent_to: usize,
    /// It got a Welcome or sent `/ok`: the byte budget no longer applies.
    validated: bool,
    /// The cookie of the last Retry it was sent.
    cookie: u64,
    /// The guest code it was last sent (`/ok CODE`): an `/ok` it sends carries it.
    code: Option<Vec<u8>>,
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i % PEERS], 4000 + u16::from(i % PEERS)))
}

fn run(data: &[u8]) {
    let mut input = Input(data);
    let mut now = Instant::now();
    let secure = input.byte() % 2 == 1;
    let mut config = ServerConfig::with_peer_timeout(Duration::from_secs(5));
    if secure {
        config.identity = StaticKeypair::from_private([3; 32]).ok();
    }
    config.max_connections = 6;
    config.max_guests = 6;
    config.connection.max_queued_bytes = 64 * 1024;
    let mut server = Server::new(config, Box::new(SplitMix64::new(1)));
    let mut peers: HashMap<SocketAddr, PeerState> = HashMap::new();

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.byte() % 8;
        match op {
            0 | 1 => {
                let from = addr(input.byte());
                let len = usize::from(input.byte());
                let datagram = input.bytes(len);
                receive(&mut server, &mut peers, now, from, &datagram);
            }
            2 => {
                let from = addr(input.byte());
                let nonce = u64::from(input.byte());
                let cookie = peers.get(&from).map_or(0, |p| p.cookie);
                let hello = if secure {
                    let Ok((handshake, noise)) = ClientHandshake::new(None, &mut SplitMix64::new(nonce)) else { continue };
                    peers.entry(from).or_default().handshake = Some(handshake);
                    Packet::SecureHello { nonce, cookie, noise }.to_bytes()
                } else {
                    Packet::Hello { nonce, cookie }.to_bytes()
                };
                receive(&mut server, &mut peers, now, from, &hello);
            }
            3 | 4 | 5 => {
                let from = addr(input.byte());
                let payload = if op == 5 {
                    let tag = input.byte();
                    let len = usize::from(input.byte() % 40);
                    let text = String::from_utf8_lossy(&input.bytes(len)).into_owned();
                    let command = match tag % 4 {
                        0 => ClientMessage::Nick { nick: text },
                        1 => ClientMessage::Join { room: text },
                        2 => ClientMessage::Say { room: "lobby".into(), text },
                        _ => ClientMessage::Private { to: text.clone(), text },
                    };
                    command.to_bytes()
                } else {
                    let len = usize::from(input.byte());
                    input.bytes(len)
                };
                let Some(state) = peers.get_mut(&from) else { continue };
                let Some((connection, token, seq)) = state.connection.as_mut() else { continue };
                let mut datagram = Packet::Data {
                    connection: *connection,
                    token: *token,
                    ack_requested: false,
                    ack: Ack::default(),
                    segments: vec![Segment { seq: *seq, first: true, last: true, payload }],
                }
                .to_bytes();
                *seq += 1;
                let connection = *connection;
                if let Some(transport) = state.transport.as_mut() {
                    let Ok((nonce, ciphertext)) = transport.seal(&datagram) else { continue };
                    datagram = Packet::Sealed { connection, nonce, ciphertext }.to_bytes();
                }
                receive(&mut server, &mut peers, now, from, &datagram);
            }
            6 => now += Duration::from_millis(50 * u64::from(input.byte())),
            _ => {
                if let Some(deadline) = server.poll_timeout() {
                    now = now.max(deadline);
                }
            }
        }
        // Timers: handling a deadline must move it, or the driver would spin.
        for round in 0.. {
            match server.poll_timeout() {
                Some(deadline) if deadline <= now => {
                    assert!(round < 64, "the server keeps asking for a timeout it does not handle");
                    server.handle_timeout(now);
                    drain(&mut server, &mut peers, now);
                }
                _ => break,
            }
        }
        drain(&mut server, &mut peers, now);
    }
}

fn receive(
    server: &mut Server,
    peers: &mut HashMap<SocketAddr, PeerState>,
    now: Instant,
    from: SocketAddr,
    datagram: &[u8],
) {
    let state = peers.entry(from).or_default();
    // A guest's `/ok` carries the code it was sent, if any (a fuzzer cannot guess a 40-bit
    // code): the server takes it, and the byte budget no longer applies.
    let with_code;
    let datagram = match &state.code {
        Some(code) if datagram.starts_with(b"/ok") => {
            with_code = [b"/ok ", code.as_slice(), b"\n"].concat();
            state.validated = true;
            &with_code[..]
        }
        _ => datagram,
    };
    state.received_from += datagram.len();
    server.handle_datagram(now, from, datagram);
    drain(server, peers, now);
}

fn drain(server: &mut Server, peers: &mut HashMap<SocketAddr, PeerState>, now: Instant) {
    let mut polls = 0;
    while let Some(transmit) = server.poll_transmit(now) {
        polls += 1;
        assert!(polls < 100_000, "poll_transmit never ends");
        let state = peers.entry(transmit.destination).or_default();
        match Packet::decode(&transmit.payload) {
            Ok(Packet::Welcome { connection, token, .. }) => {
                state.validated = true;
                state.connection = Some((connection, token, 0));
            }
            Ok(Packet::Retry { cookie, .. }) => state.cookie = cookie,
            Ok(Packet::SecureWelcome { connection, noise, .. }) => {
                state.validated = true;
                if let Some(handshake) = state.handshake.take()
                    && let Ok((transport, _key, secrets)) = handshake.finish(&noise)
                    && secrets.len() >= 8
                {
                    let mut token = [0u8; 8];
                    token.copy_from_slice(&secrets[..8]);
                    state.transport = Some(transport);
                    state.connection = Some((connection, u64::from_be_bytes(token), 0));
                }
            }
            _ => {
                if let Some(code) = transmit.payload.strip_prefix(b"/ok ") {
                    state.code = Some(code.trim_ascii_end().to_vec());
                }
            }
        }
        state.sent_to += transmit.payload.len();
        assert!(
            state.validated || state.sent_to <= AMPLIFICATION * state.received_from,
            "amplification toward {}: {} bytes sent for {} received",
            transmit.destination,
            state.sent_to,
            state.received_from
        );
    }
    while server.poll_event().is_some() {}
}
