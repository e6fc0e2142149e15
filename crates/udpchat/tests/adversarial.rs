//! The room server under attack, on loopback: floods of random bytes, of handshake initiations
//! and of guest lines from thousands of source addresses in 127.0.0.0/8, while two real
//! clients keep chatting. Nothing they say is lost or reordered, the chat does not stall, the
//! server's memory stays bounded (read from /proc), and an address that never answers is never
//! sent more bytes than it sent.

mod support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Proc, TIMEOUT};
use udpchat_proto::rng::{RandomSource, SplitMix64};
use udpchat_proto::wire::packet::Packet;

/// The resident memory of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn next_json(client: &Proc, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "event never came");
        let event: Value = serde_json::from_str(&client.stdout_line()).expect("JSON");
        if pred(&event) {
            return event;
        }
    }
}

/// One burst of hostile traffic from `sources` distinct addresses in 127.0.0.0/8.
fn flood(port: u16, sources: u32, rng: &mut SplitMix64) -> (u64, u64) {
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut datagrams, mut bytes) = (0u64, 0u64);
    for i in 0..sources {
        let [_, a, b, c] = (i + 0x0001_0000).to_be_bytes();
        let ip = Ipv4Addr::new(127, a.max(1), b, c.max(1));
        let Ok(socket) = UdpSocket::bind((ip, 0)) else {
            continue;
        };
        let mut send = |payload: &[u8]| {
            if socket.send_to(payload, server).is_ok() {
                datagrams += 1;
                bytes += payload.len() as u64;
            }
        };
        // A handshake initiation that will never be followed up.
        let noise: Vec<u8> = (0..32).map(|_| rng.next_u64() as u8).collect();
        let (nonce, cookie) = (rng.next_u64(), rng.next_u64() % 3);
        send(
            &Packet::SecureHello {
                nonce,
                cookie,
                noise,
            }
            .to_bytes(),
        );
        // Random bytes: half of them dressed as framed datagrams.
        let len = (rng.next_u64() % 300) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if i % 2 == 0 && !junk.is_empty() {
            junk[0] = 0xF5;
        }
        send(&junk);
        // A guest line.
        send(format!("spam from {ip}").as_bytes());
    }
    (datagrams, bytes)
}

#[test]
fn floods_do_not_disturb_real_clients_nor_grow_memory_nor_amplify() {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    let port = server.listening_port();
    let target = format!("127.0.0.1:{port}");
    let mut ada = Proc::udpchat(&["join", &target, "--nick", "ada", "--json"]);
    // One after the other, so that ada is there to see bob arrive.
    next_json(&ada, |e| e["type"] == "join" && e["nick"] == "ada");
    let bob = Proc::udpchat(&["join", &target, "--nick", "bob", "--json"]);
    next_json(&ada, |e| e["type"] == "join" && e["nick"] == "bob");

    // An address that sends but never answers anything it is sent.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut silent_sent = 0usize;
    for text in [
        &b"hello?"[..],
        &Packet::SecureHello {
            nonce: 1,
            cookie: 0,
            noise: vec![1; 32],
        }
        .to_bytes(),
        &[0xF5, 1, 3],
    ] {
        silent_sent += silent.send_to(text, ("127.0.0.1", port)).unwrap();
    }

    let baseline = rss_kib(server.pid());
    let mut rng = SplitMix64::new(2024);
    let mut flooded = (0, 0);
    let mut worst = Duration::ZERO;
    for round in 0..10 {
        let (d, b) = flood(port, 600, &mut rng);
        flooded = (flooded.0 + d, flooded.1 + b);
        // One more handshake storm from a single address (rate-limited).
        let one = UdpSocket::bind("127.0.0.77:0").unwrap();
        for nonce in 0..500u64 {
            let hello = Packet::SecureHello {
                nonce,
                cookie: 0,
                noise: vec![7; 32],
            };
            let _ = one.send_to(&hello.to_bytes(), ("127.0.0.1", port));
        }
        // Meanwhile the chat goes on: each line must get through, in order.
        for k in 0..5 {
            let text = format!("line {round}.{k}");
            let sent_at = Instant::now();
            ada.send_line(&text);
            let got = next_json(&bob, |e| e["type"] == "message" && e["from"] == "ada");
            assert_eq!(got["text"], text.as_str(), "lost or out of order");
            worst = worst.max(sent_at.elapsed());
        }
    }
    let after = rss_kib(server.pid());
    eprintln!(
        "flood: {} datagrams, {} bytes from 6000 addresses + 5000 Hellos from one; server RSS \
         {baseline} KiB -> {after} KiB; slowest chat line {worst:?}",
        flooded.0, flooded.1
    );
    // Bounded: limiter table, guest limit and per-guest queues cap what a flood can cost.
    assert!(
        after < baseline + 32 * 1024,
        "server memory grew from {baseline} to {after} KiB"
    );
    // No visible stall: generous for a debug build on a loaded 2-core machine.
    assert!(worst < Duration::from_secs(5), "a chat line took {worst:?}");

    // Everything for the silent address was sent long before bob saw the last line.
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 65_536];
    let mut received = 0usize;
    loop {
        match silent.recv_from(&mut buf) {
            Ok((n, _)) => received += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        received <= 3 * silent_sent,
        "{received} bytes sent to an address that sent {silent_sent}"
    );
    assert!(
        received <= silent_sent,
        "udpchat's own bound is 1x: {received} > {silent_sent}"
    );
    ada.close_stdin();
    ada.expect_success();
}
