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
use support::{Proc, TIMEOUT, next_json};
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
    // QUIC's bound, udpchat's too (server::AMPLIFICATION): 3x before validation.
    assert!(
        received <= udpchat_proto::server::AMPLIFICATION * silent_sent,
        "{received} bytes sent to an address that sent {silent_sent}"
    );
    ada.close_stdin();
    ada.expect_success();
}

/// The word after `/ok ` in a line, if any (the code a guest must send back).
fn code_in(line: &str) -> Option<String> {
    let rest = line.split("/ok ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// A guest socket that has been let in (it sent its code back).
fn validated_guest(port: u16) -> UdpSocket {
    let guest = UdpSocket::bind("127.0.0.1:0").unwrap();
    guest.set_read_timeout(Some(TIMEOUT)).unwrap();
    guest.connect(("127.0.0.1", port)).unwrap();
    // A long first line earns the budget for the line with the code.
    guest
        .send(format!("hello from a guest who will flood {}\n", "-".repeat(200)).as_bytes())
        .unwrap();
    let mut buf = [0u8; 65_536];
    let deadline = Instant::now() + TIMEOUT;
    let code = loop {
        assert!(Instant::now() < deadline, "no code for the guest");
        let n = guest.recv(&mut buf).expect("the guest hears the server");
        if let Some(code) = String::from_utf8_lossy(&buf[..n]).lines().find_map(code_in) {
            break code;
        }
    };
    guest.send(format!("/ok {code}\n").as_bytes()).unwrap();
    loop {
        assert!(Instant::now() < deadline, "the guest was never let in");
        let n = guest.recv(&mut buf).expect("the guest hears the server");
        if String::from_utf8_lossy(&buf[..n]).contains("thanks") {
            break guest;
        }
    }
}

/// Issue 15, hole 3: one member piping 20,000 lines and one validated guest sending 20,000
/// lines as fast as they can; the others stay connected and hear each other within 2 s.
#[test]
fn flooders_are_slowed_and_everyone_else_keeps_talking() {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    let port = server.listening_port();
    let target = format!("127.0.0.1:{port}");
    let ada = Proc::udpchat(&["join", &target, "--nick", "ada", "--json"]);
    next_json(&ada, |e| e["type"] == "join" && e["nick"] == "ada");
    let bob = Proc::udpchat(&["join", &target, "--nick", "bob", "--json"]);
    next_json(&ada, |e| e["type"] == "join" && e["nick"] == "bob");
    let (mut ada, mut bob) = (ada, bob);

    // A member flooding through a pipe: `seq 20000 | udpchat join`.
    let flood_start = Instant::now();
    let input: String = (0..20_000).map(|i| format!("member flood {i}\n")).collect();
    let mut flooder = support::join_piped(port, "flood", &[], input);
    next_json(&ada, |e| e["type"] == "join" && e["nick"] == "flood");

    // A validated guest flooding as fast as it can.
    let guest = validated_guest(port);
    let blaster = std::thread::spawn(move || {
        for i in 0..20_000 {
            let _ = guest.send(format!("guest flood {i}\n").as_bytes());
        }
    });

    // Not cut off: a leave of ada or bob, or a closed connection, fails the test.
    let about_us = |e: &Value| {
        e["type"] == "closed"
            || (e["type"] == "leave" && (e["nick"] == "ada" || e["nick"] == "bob"))
    };
    // The chat goes on during the flood: both flooders are heard first, then ada and bob
    // talk for a few seconds.
    for flooder in ["flood", "guest-"] {
        next_json(&ada, |e| {
            e["type"] == "message" && e["from"].as_str().is_some_and(|f| f.starts_with(flooder))
        });
    }
    let talk_until = Instant::now() + Duration::from_secs(4);
    let mut worst = Duration::ZERO;
    let flood_heard = std::cell::Cell::new(0u32);
    let mut round = 0;
    while round < 10 || Instant::now() < talk_until {
        round += 1;
        for ping in [true, false] {
            let (nick, text) = if ping {
                ("ada", format!("ping {round}"))
            } else {
                ("bob", format!("pong {round}"))
            };
            let sent_at = Instant::now();
            if ping {
                ada.send_line(&text);
            } else {
                bob.send_line(&text);
            }
            let to = if ping { &bob } else { &ada };
            let got = next_json(to, |e| {
                assert!(!about_us(e), "cut off: {e}");
                if !ping && e["type"] == "message" && e["from"] != "bob" && e["from"] != "ada" {
                    flood_heard.set(flood_heard.get() + 1);
                }
                e["type"] == "message" && e["from"] == nick
            });
            assert_eq!(got["text"], text.as_str());
            worst = worst.max(sent_at.elapsed());
        }
    }
    // Held to their rate: a burst of 200 each, then 50 a second (what ada heard of them,
    // from when they were first heard).
    let elapsed = flood_start.elapsed().as_secs_f64();
    let heard = flood_heard.get();
    eprintln!(
        "flood of 20,000 lines from a member and a guest: ada heard {heard} of them in \
         {elapsed:.1} s; slowest chat line {worst:?}"
    );
    assert!(
        f64::from(heard) <= 2.0 * (200.0 + 50.0 * elapsed) + 20.0,
        "the flooders were not slowed: {heard} lines in {elapsed:.1} s"
    );
    assert!(
        worst < Duration::from_secs(2),
        "a line took {worst:?} during the flood"
    );
    let _ = flooder.kill();
    let _ = flooder.wait();
    blaster.join().unwrap();
    drop(server);
}

/// A pipe longer than the server's burst is slowed to the rate, not cut: `--linger` bounds
/// the time without acknowledgement, so every line arrives, in order, and join exits 0.
#[test]
fn a_pipe_held_to_the_rate_limit_still_delivers_every_line() {
    let (server, port) = support::serve_rooms(&["--max-message-rate", "100"]);
    let ada = support::join_json(port, "ada", &[]);
    next_json(&ada, |e| e["type"] == "join" && e["nick"] == "ada");
    // A burst of 400, then 100 a second: some 6 s for 1,000 lines, with a linger of 1 s.
    let input: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    let seq = support::join_piped(port, "seq", &["--linger", "1"], input);
    let mut got = Vec::new();
    while got.len() < 1000 {
        let e = next_json(&ada, |e| e["type"] == "message" && e["from"] == "seq");
        got.push(e["text"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    let output = seq.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    drop(server);
}
