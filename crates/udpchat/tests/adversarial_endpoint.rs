//! The server's endpoint under attack, on loopback: half-open handshakes by the thousand from
//! many /24 networks in 127.0.0.0/8 while a real client joins, and guests as `nc -u` users
//! see them: a first short line answered with the code to send back, within 3x its bytes.

mod support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Proc, TIMEOUT, local_socket, recv_text};
use udpchat_proto::rng::{RandomSource, SplitMix64};
use udpchat_proto::wire::packet::Packet;

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

/// Networks the attacker holds, and addresses it uses in each: two, whose handshake rates
/// (`ServerConfig::handshake_rate_limits`: 20 at once and 10 a second per address) make a
/// /24's (40 at once, 20 a second). The attack is as strong as the limits allow: a burst of
/// 2,000 handshakes, then 1,000 a second, 10,000 in all.
const NETWORKS: u8 = 50;
const ADDRESSES_PER_NETWORK: u8 = 2;
const BURST_PER_ADDRESS: usize = 20;
const ATTEMPTS: usize = 10_000;
/// Each address sends one more handshake per period, after the burst (10 a second).
const PERIOD: Duration = Duration::from_millis(100);

/// One attacking address: it can receive (it gets its Retry and answers with the cookie),
/// but never completes a handshake.
struct Attacker {
    socket: UdpSocket,
    cookie: u64,
}

/// Hole 5 at its target: 10,000 half-open handshakes from 50 /24 networks, and a real
/// `udpchat join` still joins within 2 s, while the flood goes on.
#[test]
fn ten_thousand_half_open_handshakes_from_fifty_networks_and_a_client_still_joins_in_2_s() {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    let port = server.listening_port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut rng = SplitMix64::new(15);

    // Each attacking address gets its cookie first (a Retry answers its cookieless Hello).
    let mut attackers = Vec::new();
    for net in 0..NETWORKS {
        for host in 1..=ADDRESSES_PER_NETWORK {
            let ip = Ipv4Addr::new(127, 100 + net, 7, host);
            let socket = UdpSocket::bind((ip, 0)).expect("bind a loopback address");
            socket.set_read_timeout(Some(TIMEOUT)).unwrap();
            socket.send_to(&secure_hello(&mut rng, 0), target).unwrap();
            attackers.push(Attacker { socket, cookie: 0 });
        }
    }
    let mut buf = [0u8; 2048];
    for a in &mut attackers {
        let (n, _) = a.socket.recv_from(&mut buf).expect("a Retry");
        let Ok(Packet::Retry { cookie, .. }) = Packet::decode(&buf[..n]) else {
            panic!("not a Retry");
        };
        a.cookie = cookie;
    }

    // The burst, then the client starts while the flood goes on at the limits' rate.
    let send_round = move |attackers: &[Attacker], rng: &mut SplitMix64| {
        for a in attackers {
            let _ = a.socket.send_to(&secure_hello(rng, a.cookie), target);
        }
    };
    for _ in 0..BURST_PER_ADDRESS {
        send_round(&attackers, &mut rng);
    }
    let flood = std::thread::spawn(move || {
        let mut sent = BURST_PER_ADDRESS * attackers.len();
        let mut next = Instant::now();
        while sent < ATTEMPTS {
            next += PERIOD;
            // Pacing the attack at the rate the limits allow (not synchronisation).
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            send_round(&attackers, &mut rng);
            sent += attackers.len();
        }
        (sent, attackers)
    });
    let started = Instant::now();
    let client = Proc::udpchat(&["join", &target.to_string(), "--nick", "ada", "--json"]);
    next_json(&client, |e| e["type"] == "join" && e["nick"] == "ada");
    let latency = started.elapsed();
    let (sent, attackers) = flood.join().expect("the flood");

    // The attack did what it could: its handshakes were answered (the server did the work
    // of each), but none became a session.
    let mut welcomes = 0;
    for a in &attackers {
        a.socket.set_nonblocking(true).unwrap();
        loop {
            match a.socket.recv_from(&mut buf) {
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
        "{sent} half-open handshake attempts from {NETWORKS} /24s, {welcomes} answered with a \
         Welcome; the client joined in {latency:?}"
    );
    assert_eq!(sent, ATTEMPTS);
    assert!(
        welcomes > 2_000,
        "the attack was weaker than the limits allow"
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
