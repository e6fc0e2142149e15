//! Micro-benchmarks of the sans-IO core: the codec, one reliable session, and a room's fan-out
//! (server and members in memory, no sockets). `cargo bench -p udpchat-proto`; no timing is
//! asserted anywhere, these numbers are for reading and comparing.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use udpchat_proto::crypto::{ClientHandshake, ServerHandshake, StaticKeypair};
use udpchat_proto::reliable::{Connection, ConnectionConfig};
use udpchat_proto::rng::SplitMix64;
use udpchat_proto::sender_limit::SenderLimits;
use udpchat_proto::server::{Server, ServerConfig};
use udpchat_proto::wire::message::{MessageKind, ServerMessage};
use udpchat_proto::wire::packet::{ConnectionId, Packet, PacketRef};

#[path = "../tests/support/room.rs"]
mod support;
use support::Room;

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let message = ServerMessage::Message {
        room: "lobby".into(),
        from: "ada".into(),
        kind: MessageKind::Say,
        history: false,
        text: "hello everyone, this is a typical chat line of some length".into(),
    };
    let bytes = message.to_bytes();
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode server message", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            black_box(&message).encode(&mut out);
            black_box(out.len())
        });
    });
    group.bench_function("decode server message", |b| {
        b.iter(|| ServerMessage::decode(black_box(&bytes)).unwrap());
    });
    let datagram = Packet::Hello {
        nonce: 42,
        cookie: 7,
    }
    .to_bytes();
    group.bench_function("decode packet", |b| {
        b.iter(|| Packet::decode(black_box(&datagram)).unwrap());
    });
    group.finish();
}

/// One reliable connection pair in memory: a message out, its segment decoded and taken in
/// by the peer, the peer's acknowledgement back (forced at once, not after the delay).
fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    let now = Instant::now();
    let config = ConnectionConfig::default();
    // Just past the delayed ack.
    let ack_due = config.max_ack_delay + std::time::Duration::from_millis(1);
    let mut a = Connection::new(ConnectionId(1), 7, config.clone(), now, None);
    let mut b = Connection::new(ConnectionId(1), 7, config, now, None);
    let message = vec![b'x'; 100];
    let mut t = now;
    // As a server moves them: written into a reused buffer, read in place.
    let mut datagram = Vec::new();
    let deliver = |to: &mut Connection, t: Instant, datagram: &[u8]| {
        let Ok(PacketRef::Data(data)) = PacketRef::decode(datagram) else {
            panic!("a Data datagram");
        };
        to.handle_data(t, &data);
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("100-byte message and its ack", |bench| {
        bench.iter(|| {
            a.send_message(message.clone()).unwrap();
            datagram.clear();
            while a.poll_transmit_into(t, &mut datagram) {
                deliver(&mut b, t, &datagram);
                datagram.clear();
            }
            while let Some(event) = b.poll_event() {
                black_box(event);
            }
            // The delayed ack falls due.
            t += ack_due;
            b.handle_timeout(t);
            while b.poll_transmit_into(t, &mut datagram) {
                deliver(&mut a, t, &datagram);
                datagram.clear();
            }
            assert!(a.is_send_idle());
        });
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan-out");
    for secure in [false, true] {
        for members in [2usize, 10, 100] {
            let mut room = Room::new(members, secure);
            group.throughput(Throughput::Elements(members as u64));
            let name = if secure { "secure" } else { "plain" };
            group.bench_with_input(BenchmarkId::new(name, members), &members, |b, _| {
                b.iter(|| {
                    let before = room.delivered;
                    room.say("a message for everyone in the room");
                    assert!(room.delivered > before, "the room delivered nothing");
                });
            });
        }
    }
    group.finish();
}

/// The server alone relaying one guest's line to N validated guests (the plain-text path):
/// what `udpchat bench`'s udpchat-plain target costs in user space, without the kernel.
fn guest_fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("guest fan-out");
    for members in [10usize, 100, 1000] {
        let now = Instant::now();
        let config = ServerConfig {
            max_guests: members,
            // One guest says line after line at the same instant: measured without the
            // per-sender rate, as `udpchat bench` runs the server.
            senders: SenderLimits::unlimited(),
            ..ServerConfig::default()
        };
        let mut server = Server::new(config, Box::new(SplitMix64::new(1)));
        let guests: Vec<SocketAddr> = (0..members)
            .map(|i| SocketAddr::from((Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 1), 4000)))
            .collect();
        for &guest in &guests {
            server.handle_datagram(now, guest, &[b'.'; 100]);
            let mut code = None;
            while let Some(transmit) = server.poll_transmit(now) {
                let line = String::from_utf8_lossy(&transmit.payload).into_owned();
                if transmit.destination == guest
                    && let Some(digits) = line.split("/ok ").nth(1)
                {
                    code = Some(digits.trim().to_owned());
                }
            }
            let code = code.expect("the guest's code");
            server.handle_datagram(now, guest, format!("/ok {code}").as_bytes());
            while server.poll_transmit(now).is_some() {}
            while server.poll_event().is_some() {}
        }
        group.throughput(Throughput::Elements(members as u64 - 1));
        group.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| {
                server.handle_datagram(now, guests[0], b"a message for everyone in the room");
                let mut sent = 0;
                while let Some(transmit) = server.poll_transmit(now) {
                    sent += black_box(transmit.payload.len());
                }
                assert!(sent > 0);
            });
        });
    }
    group.finish();
}

/// One datagram sealed and opened (Noise transport, ChaCha20-Poly1305): what encryption adds
/// per datagram on each side.
fn crypto(c: &mut Criterion) {
    let mut group = c.benchmark_group("crypto");
    let keys = StaticKeypair::from_private([7; 32]).unwrap();
    let (client, hello) = ClientHandshake::new(None, &mut SplitMix64::new(1)).unwrap();
    let (mut server, welcome) =
        ServerHandshake::respond(&keys, &hello, b"", &mut SplitMix64::new(2)).unwrap();
    let (mut client, _, _) = client.finish(&welcome).unwrap();
    for size in [100usize, 1200] {
        let plaintext = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &size, |b, _| {
            b.iter(|| black_box(server.seal(black_box(&plaintext)).unwrap()));
        });
        group.bench_with_input(BenchmarkId::new("seal and open", size), &size, |b, _| {
            b.iter(|| {
                let (nonce, sealed) = server.seal(black_box(&plaintext)).unwrap();
                black_box(client.open(nonce, &sealed).unwrap())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, codec, session, crypto, fan_out, guest_fan_out);
criterion_main!(benches);
