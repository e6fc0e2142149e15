//! Whatever guests and members send, everything the room server emits decodes at its clients:
//! three real `Client`s (the client core) in a room on a plain-framing server, fed guest
//! datagrams of any bytes and any length up to 65,535 and commands with any text up to
//! `MAX_TEXT` bytes and any names. No client ever closes its connection over what the server
//! sent (a message that does not decode, or one larger than a client reassembles), live or
//! from history, and the server never panics.
//!
//! Input: operations of one byte (`op % 6`) with operands; bytes past the end read as 0.
//!
//! | op | operands                 | what                                                      |
//! |----|--------------------------|-----------------------------------------------------------|
//! | 0  | guest, len16, pattern    | guest `guest % 4` sends `len16` bytes repeating `pattern`  |
//! |    | (len8, bytes)            | (a pattern of 1 to 16 bytes)                              |
//! | 1  | client, kind, name8,     | client `client % 3` sends Say/Action/Private/Topic/Nick/  |
//! |    | len16, pattern           | Join/Who (`kind % 7`) with a text of `len16 * 2` bytes     |
//! |    |                          | repeating the pattern (made valid UTF-8, cut to MAX_TEXT)  |
//! | 2  |                          | a new client joins the room (and gets its history)        |
//! | 3  | client                   | client `client % 3` (re)joins the room                    |
//! | 4  | step                     | the clock advances step * 20 ms                           |
//! | 5  |                          | the clock jumps to the next deadline                      |
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use udpchat_proto::client::{Client, ClientConfig, ClientEvent};
use udpchat_proto::reliable::CloseReason;
use udpchat_proto::rng::SplitMix64;
use udpchat_proto::server::{Server, ServerConfig};
use udpchat_proto::wire::message::{ClientMessage, MAX_NAME, MAX_TEXT};

const MAX_OPS: usize = 60;

#[path = "common/script.rs"]
mod script;
use script::Input;

fuzz_target!(|data: &[u8]| run(data));

/// Valid UTF-8 of at most `max` bytes.
fn text(bytes: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    let end = s.floor_char_boundary(max);
    s.truncate(end);
    s
}

struct Member {
    addr: SocketAddr,
    client: Client,
}

fn run(data: &[u8]) {
    let mut input = Input(data);
    let mut now = Instant::now();
    let config = ServerConfig::with_peer_timeout(Duration::from_secs(5));
    let mut server = Server::new(config, Box::new(SplitMix64::new(1)));
    let mut members: Vec<Member> = Vec::new();
    let mut rng = SplitMix64::new(2);
    let mut join = |members: &mut Vec<Member>, now: Instant| {
        let n = members.len();
        let mut client = Client::new(ClientConfig::default(), &mut rng, now);
        let _ = client.send(&ClientMessage::Nick {
            nick: format!("m{n}"),
        });
        let _ = client.send(&ClientMessage::Join {
            room: "lobby".into(),
        });
        members.push(Member {
            addr: SocketAddr::from(([10, 0, 1, 1], 100 + n as u16)),
            client,
        });
    };
    for _ in 0..3 {
        join(&mut members, now);
    }
    exchange(&mut server, &mut members, now);
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.byte() % 6 {
            0 => {
                let guest = SocketAddr::from(([10, 0, 2, 1], 200 + u16::from(input.byte() % 4)));
                let len = input.u16();
                let datagram = input.repeated(len);
                server.handle_datagram(now, guest, &datagram);
            }
            1 => {
                let member = usize::from(input.byte()) % members.len().min(3);
                let kind = input.byte() % 7;
                let name_len = usize::from(input.byte() % 40);
                let name = text(&input.bytes(name_len), MAX_NAME);
                let len = input.u16() * 2;
                let body = text(&input.repeated(len), MAX_TEXT);
                let room = "lobby".to_string();
                let message = match kind {
                    0 => ClientMessage::Say { room, text: body },
                    1 => ClientMessage::Action { room, text: body },
                    2 => ClientMessage::Private {
                        to: name,
                        text: body,
                    },
                    3 => ClientMessage::Topic {
                        room,
                        topic: Some(body),
                    },
                    4 => ClientMessage::Nick { nick: name },
                    5 => ClientMessage::Join { room: name },
                    _ => ClientMessage::Who { room: name },
                };
                let _ = members[member].client.send(&message);
            }
            2 => join(&mut members, now),
            3 => {
                let member = usize::from(input.byte()) % members.len();
                let _ = members[member].client.send(&ClientMessage::Join {
                    room: "lobby".into(),
                });
            }
            4 => now += Duration::from_millis(20 * u64::from(input.byte())),
            _ => {
                let next = members
                    .iter()
                    .filter_map(|m| m.client.poll_timeout())
                    .chain(server.poll_timeout())
                    .min();
                if let Some(next) = next {
                    now = now.max(next);
                }
            }
        }
        exchange(&mut server, &mut members, now);
    }
    // Let everything queued arrive.
    for _ in 0..50 {
        now += Duration::from_millis(100);
        exchange(&mut server, &mut members, now);
    }
}

/// Moves datagrams both ways (a perfect network) and handles due timers until quiet; checks
/// that no client closed over what the server sent.
fn exchange(server: &mut Server, members: &mut [Member], now: Instant) {
    for _ in 0..10_000 {
        let mut moved = false;
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        while let Some(t) = server.poll_transmit(now) {
            if let Some(m) = members.iter_mut().find(|m| m.addr == t.destination) {
                m.client.handle_datagram(now, &t.payload);
                moved = true;
            }
        }
        for m in members.iter_mut() {
            if m.client.poll_timeout().is_some_and(|t| t <= now) {
                m.client.handle_timeout(now);
            }
            while let Some(d) = m.client.poll_transmit(now) {
                server.handle_datagram(now, m.addr, &d);
                moved = true;
            }
            while let Some(event) = m.client.poll_event() {
                if let ClientEvent::Closed(reason) = event {
                    assert!(
                        !matches!(
                            reason,
                            CloseReason::ProtocolViolation | CloseReason::LocallyClosed(_)
                        ),
                        "client {} closed over what the server sent: {reason:?}",
                        m.addr
                    );
                }
            }
        }
        while server.poll_event().is_some() {}
        if !moved {
            return;
        }
    }
    panic!("the exchange never went quiet");
}
