//! The server's endpoint under attack, on loopback: half-open handshakes by the thousand from
//! many /24 networks in 127.0.0.0/8 while a real client joins, and guests as `nc -u` users
//! see them: a first short line answered with the code to send back, within 3x its bytes.

mod support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::{Proc, TIMEOUT, local_socket, next_json, recv_text};
use udpchat_proto::rng::{RandomSource, SplitMix64};
use udpchat_proto::wire::packet::Packet;

/// A SecureHello with a fresh nonce and random ephemeral key: the server does the whole
/// Noise response for it (any 32 bytes are an X25519 public key).
fn secure_hello(rng: &mut SplitMix64, cookie: u64) -> Vec<u8> {
    Packet::SecureHello {
        nonce: rng.next_u64(),
        cookie,
        noise: (0..32).map(|_| rng.next_u64() as u8).collect(),
    }
    .to_bytes()
}

/// Networks the attacker holds, addresses it uses in each, and source ports per address: as
/// effective as the per-source limits allow. A session is per address *and port*, and a new
/// Hello from the same address and port replaces its session, so each handshake needs a socket
/// of its own; `RateLimits::default()` (40 per address, 400 per /24, at once) admit 20 sockets
/// per address (a cookieless Hello and a Hello with the cookie each) and 200 per /24 at
/// once: 10,000 in all, which before half-open handshakes had a table of their own were
/// 10,000 sessions, the connection limit, and a client was refused.
const NETWORKS: u8 = 50;
const ADDRESSES_PER_NETWORK: u8 = 10;
const PORTS_PER_ADDRESS: usize = 20;

/// Hole 5 at its target: 10,000 half-open handshakes from 50 /24 networks, and a real
/// `udpchat join` still joins within 2 s, while handshakes keep coming.
#[test]
fn ten_thousand_half_open_handshakes_from_fifty_networks_and_a_client_still_joins_in_2_s() {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    let port = server.listening_port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut rng = SplitMix64::new(15);

    // One /24 at a time: every socket gets its cookie (the attacker receives at its own
    // addresses), then sends its Hello with the cookie, and never completes.
    let mut buf = [0u8; 2048];
    let mut attackers: Vec<(UdpSocket, u64)> = Vec::new();
    for net in 0..NETWORKS {
        let batch: Vec<UdpSocket> = (1..=ADDRESSES_PER_NETWORK)
            .flat_map(|host| (0..PORTS_PER_ADDRESS).map(move |_| host))
            .map(|host| {
                let socket = UdpSocket::bind((Ipv4Addr::new(127, 100 + net, 7, host), 0))
                    .expect("bind a loopback address");
                socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                socket
            })
            .collect();
        for socket in &batch {
            socket.send_to(&secure_hello(&mut rng, 0), target).unwrap();
        }
        for socket in batch {
            let (n, _) = socket.recv_from(&mut buf).expect("a Retry");
            let Ok(Packet::Retry { cookie, .. }) = Packet::decode(&buf[..n]) else {
                panic!("not a Retry");
            };
            socket
                .send_to(&secure_hello(&mut rng, cookie), target)
                .unwrap();
            attackers.push((socket, cookie));
        }
    }
    let attempts = attackers.len();
    assert_eq!(attempts, 10_000);

    // More handshakes from the same sockets while the client joins: 10,000 a second, what
    // the per-/24 limits of `limiter.rs` would admit (each replaces its socket's previous
    // one: the attacker's half-open count stays, its pressure goes on).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut more = 0usize;
            let mut next = Instant::now();
            'flood: loop {
                for chunk in attackers.chunks(100) {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break 'flood;
                    }
                    for (socket, cookie) in chunk {
                        let _ = socket.send_to(&secure_hello(&mut rng, *cookie), target);
                        more += 1;
                    }
                    // Pacing the attack (not synchronisation): 100 every 10 ms.
                    next += Duration::from_millis(10);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            }
            (more, attackers)
        })
    };
    let started = Instant::now();
    let client = Proc::udpchat(&["join", &target.to_string(), "--nick", "ada", "--json"]);
    next_json(&client, |e| e["type"] == "join" && e["nick"] == "ada");
    let latency = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (more, attackers) = flood.join().expect("the flood");

    // What the attack got: Welcomes (the server did the Noise work of each), no session.
    let mut welcomes = 0;
    for (socket, _) in &attackers {
        socket.set_nonblocking(true).unwrap();
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    welcomes += usize::from(matches!(
                        Packet::decode(&buf[..n]),
                        Ok(Packet::SecureWelcome { .. })
                    ));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    eprintln!(
        "{attempts} half-open handshakes from {NETWORKS} /24s, then {more} more while the \
         client joined; {welcomes} Welcomes; the client joined in {latency:?}"
    );
    assert!(
        latency < Duration::from_secs(2),
        "joining took {latency:?} under the flood"
    );
}

/// The guest's first minute, as `nc -u` sees it: `hello` and a newline get the line to send
/// back, within 3x the bytes; sent back, the room's traffic follows.
#[test]
fn a_guest_typing_hello_gets_its_code_sends_it_back_and_sees_the_room() {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    let port = server.listening_port();
    let target = format!("127.0.0.1:{port}");
    let mut ada = Proc::udpchat(&["join", &target, "--nick", "ada", "--json"]);
    next_json(&ada, |e| e["type"] == "join" && e["nick"] == "ada");

    let guest = local_socket();
    guest.send_to(b"hello\n", ("127.0.0.1", port)).unwrap();
    let (code_line, _) = recv_text(&guest);
    assert!(code_line.len() <= 3 * 6, "{} bytes for 6", code_line.len());
    let code = code_line
        .strip_prefix("/ok ")
        .and_then(|c| c.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not the code line: {code_line:?}"));
    assert_eq!(code.len(), 8, "{code}");
    assert!(code.parse::<u64>().is_err(), "not a number: {code}");
    // The user sends the line back as it came.
    guest
        .send_to(code_line.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    let mut line = recv_text(&guest).0;
    while !line.contains("thanks") {
        line = recv_text(&guest).0;
    }
    ada.send_line("welcome, guest");
    while !line.contains("ada: welcome, guest") {
        line = recv_text(&guest).0;
    }
    ada.close_stdin();
    ada.expect_success();
}

/// A `--no-guests` server answers a guest once, within 3x its bytes, then stays silent.
#[test]
fn a_server_without_guests_answers_a_guest_once_then_is_silent() {
    let server = Proc::udpchat(&["serve", "--port", "0", "--no-guests"]);
    let port = server.listening_port();
    let guest = local_socket();
    guest.send_to(b"hello\n", ("127.0.0.1", port)).unwrap();
    let (answer, _) = recv_text(&guest);
    assert!(answer.len() <= 3 * 6, "{answer:?}");
    assert!(answer.contains("udpchat join"), "{answer:?}");
    for _ in 0..3 {
        guest
            .send_to(b"hello? is anybody there?\n", ("127.0.0.1", port))
            .unwrap();
    }
    // The server has handled all four once it has logged the last refusal.
    for _ in 0..3 {
        server.stderr_line_containing("refused 127.0.0.1:");
    }
    // Then nothing more comes (a bounded wait for what must not happen).
    guest
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    match guest.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok((n, _)) => panic!("a second answer: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => panic!("{e}"),
    }
}
