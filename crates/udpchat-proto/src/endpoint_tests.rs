//! The server's endpoint under attack, sans-IO: forged and half-open handshakes. Each test
//! drives a [`Server`] and real [`Client`]s by hand at explicit times, with no network between
//! them, so that "at once" means "in the round trips the handshake needs, with no timer".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client::{Client, ClientConfig, ClientEvent};
use crate::crypto::StaticKeypair;
use crate::rng::{RandomSource, SplitMix64};
use crate::server::{Server, ServerConfig};
use crate::wire::message::ClientMessage;
use crate::wire::packet::Packet;

fn secure_server(seed: u64) -> (Server, StaticKeypair) {
    let keys = StaticKeypair::from_private([7; 32]).expect("a valid key");
    let config = ServerConfig {
        identity: Some(keys.clone()),
        ..ServerConfig::default()
    };
    (Server::new(config, Box::new(SplitMix64::new(seed))), keys)
}

fn secure_client(keys: &StaticKeypair, seed: u64, now: Instant) -> Client {
    let config = ClientConfig {
        secure: Some(Some(keys.public)),
        ..ClientConfig::default()
    };
    let mut client = Client::new(config, &mut SplitMix64::new(seed), now);
    let _ = client.send(&ClientMessage::Nick { nick: "ada".into() });
    client
}

/// Sends everything the server has queued; returns what went to `to`.
fn drain_server(server: &mut Server, now: Instant, to: SocketAddr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(t) = server.poll_transmit(now) {
        if t.destination == to {
            out.push(t.payload.to_vec());
        }
    }
    while server.poll_event().is_some() {}
    out
}

/// Exchanges datagrams between `client` (at `at`) and `server` without letting time pass,
/// for at most `round_trips`; true once the client is connected and the server has its
/// first authenticated datagram.
fn handshake(
    server: &mut Server,
    client: &mut Client,
    at: SocketAddr,
    now: Instant,
    round_trips: usize,
) -> bool {
    for _ in 0..round_trips {
        let connected = client.is_connected();
        while let Some(datagram) = client.poll_transmit(now) {
            server.handle_datagram(now, at, &datagram);
        }
        if connected {
            // Its first datagrams since the Welcome went out.
            return true;
        }
        for datagram in drain_server(server, now, at) {
            client.handle_datagram(now, &datagram);
        }
        while let Some(event) = client.poll_event() {
            assert!(!matches!(event, ClientEvent::Closed(_)), "{event:?}");
        }
    }
    false
}

fn secure_hello(rng: &mut SplitMix64, cookie: u64) -> Vec<u8> {
    Packet::SecureHello {
        nonce: rng.next_u64(),
        cookie,
        noise: (0..32).map(|_| rng.next_u64() as u8).collect(),
    }
    .to_bytes()
}

fn count_welcomes(datagrams: Vec<Vec<u8>>) -> usize {
    datagrams
        .iter()
        .filter(|d| matches!(Packet::decode(d), Ok(Packet::SecureWelcome { .. })))
        .count()
}

/// Hole 4: Hellos without a cookie, forged with the victim's own address and port, used to
/// empty the per-address bucket the victim's cookie-bearing Hello needed.
#[test]
fn forged_cookieless_hellos_from_the_victims_address_do_not_lock_it_out() {
    let (mut server, keys) = secure_server(1);
    let victim: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let now = Instant::now();
    let mut rng = SplitMix64::new(99);
    let mut forged_bytes = 0;
    let mut answered_bytes = 0;
    for _ in 0..10_000 {
        let hello = secure_hello(&mut rng, 0);
        forged_bytes += hello.len();
        server.handle_datagram(now, victim, &hello);
        answered_bytes += drain_server(&mut server, now, victim)
            .iter()
            .map(Vec::len)
            .sum::<usize>();
    }
    // Forged Hellos cost nothing but a Retry each, smaller than the Hello.
    assert_eq!(server.connection_count(), 0);
    assert!(
        answered_bytes <= forged_bytes,
        "{answered_bytes} > {forged_bytes}"
    );
    // The victim's real handshake succeeds at once (two round trips, no timer), also while
    // the forger goes on.
    let mut client = secure_client(&keys, 5, now);
    for _ in 0..100 {
        server.handle_datagram(now, victim, &secure_hello(&mut rng, 0));
    }
    assert!(
        handshake(&mut server, &mut client, victim, now, 3),
        "the victim could not join"
    );
    assert_eq!(server.connection_count(), 1);
}

/// Hellos with a valid cookie are what admission's bucket bounds: from one address, a burst
/// and then a rate of handshakes; Hellos without one are each answered by a smaller Retry.
#[test]
fn a_handshake_flood_with_a_cookie_is_rate_limited() {
    let (mut server, _keys) = secure_server(2);
    let flooder: SocketAddr = "192.0.2.77:5000".parse().unwrap();
    let now = Instant::now();
    let mut rng = SplitMix64::new(3);
    server.handle_datagram(now, flooder, &secure_hello(&mut rng, 0));
    let retry = drain_server(&mut server, now, flooder);
    let Ok(Packet::Retry { cookie, .. }) = Packet::decode(&retry[0]) else {
        panic!("no Retry: {retry:?}");
    };
    let mut welcomes = 0;
    for _ in 0..1000 {
        server.handle_datagram(now, flooder, &secure_hello(&mut rng, cookie));
        welcomes += count_welcomes(drain_server(&mut server, now, flooder));
    }
    let burst = ServerConfig::default()
        .handshake_rate_limits
        .per_address_burst as usize;
    assert!(welcomes <= burst, "{welcomes} handshakes admitted at once");
    assert!(server.stats().rate_limited >= 1000 - burst as u64);
    // A second later, the rate's worth more.
    let later = now + Duration::from_secs(1);
    for _ in 0..1000 {
        server.handle_datagram(later, flooder, &secure_hello(&mut rng, cookie));
        welcomes += count_welcomes(drain_server(&mut server, later, flooder));
    }
    let rate = ServerConfig::default()
        .handshake_rate_limits
        .per_address_rate as usize;
    assert!(welcomes <= burst + rate, "{welcomes}");
}

// ---------------------------------------------------------------- guests

/// Everything the server sends `to`, as text.
fn lines_to(server: &mut Server, now: Instant, to: SocketAddr) -> Vec<String> {
    drain_server(server, now, to)
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect()
}

/// The item "the guest's first minute": a first line of 6 bytes (`hello` and a newline, as
/// `nc -u` sends it) is answered at once with the line to send back, within 3x its bytes.
#[test]
fn a_guests_first_short_line_gets_the_code_line_within_three_times_its_bytes() {
    let mut server = Server::new(ServerConfig::default(), Box::new(SplitMix64::new(1)));
    let guest: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let now = Instant::now();
    server.handle_datagram(now, guest, b"hello\n");
    let got = lines_to(&mut server, now, guest);
    let sent: usize = got.iter().map(String::len).sum();
    assert!(sent <= 3 * 6, "{sent} bytes for 6: {got:?}");
    let code_line = got.first().expect("an answer to the first line");
    let code = code_line
        .strip_prefix("/ok ")
        .and_then(|c| c.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{code_line:?}"));
    // Not a 4-digit number: 8 characters of a 32-letter alphabet.
    assert_eq!(code.len(), crate::guest_code::CODE_LEN, "{code}");
    assert!(code.parse::<u64>().is_err(), "{code}");
    // Sent back as it came, it validates the guest.
    server.handle_datagram(now, guest, code_line.as_bytes());
    let got = lines_to(&mut server, now, guest);
    assert!(got.iter().any(|l| l.contains("thanks")), "{got:?}");
}

/// Hole 7: the code is unguessable and expiring, and wrong guesses are counted, then
/// ignored for a while.
#[test]
fn guest_codes_differ_per_address_and_window_expire_and_wrong_guesses_are_throttled() {
    let mut server = Server::new(ServerConfig::default(), Box::new(SplitMix64::new(2)));
    let now = Instant::now();
    let code_of = |server: &mut Server, at: Instant, guest: SocketAddr| -> String {
        server.handle_datagram(at, guest, b"hello, is anyone there?\n");
        let got = lines_to(server, at, guest);
        let line = got
            .iter()
            .find(|l| l.starts_with("/ok "))
            .unwrap_or_else(|| panic!("no code line: {got:?}"));
        line.trim_end().trim_start_matches("/ok ").to_owned()
    };
    let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:4000".parse().unwrap();
    let code_a = code_of(&mut server, now, a);
    assert_ne!(code_a, code_of(&mut server, now, b), "per address");
    assert!(code_a.parse::<u64>().is_err());
    // The guest leaves; much later (two windows on) it comes back: another code, and the
    // old one no longer validates.
    server.handle_datagram(now, a, b"bye\n");
    let later = now + 2 * crate::guest_code::WINDOW + Duration::from_secs(1);
    let code_later = code_of(&mut server, later, a);
    assert_ne!(code_a, code_later, "per window");
    server.handle_datagram(later, a, format!("/ok {code_a}\n").as_bytes());
    let got = lines_to(&mut server, later, a);
    assert!(
        !got.iter().any(|l| l.contains("thanks")),
        "expired: {got:?}"
    );
    assert_eq!(server.stats().wrong_guest_codes, 1);
    // A blind guesser (a spoofer using c's address) is counted, then ignored: even the right
    // code is not looked at for a while.
    let c: SocketAddr = "192.0.2.3:4000".parse().unwrap();
    let code_c = code_of(&mut server, later, c);
    for guess in 0..10 {
        server.handle_datagram(later, c, format!("/ok {guess:04}\n").as_bytes());
    }
    let wrong = crate::guest_code::WRONG_GUESSES;
    assert_eq!(server.stats().wrong_guest_codes, 1 + u64::from(wrong));
    let _ = lines_to(&mut server, later, c);
    server.handle_datagram(later, c, format!("/ok {code_c}\n").as_bytes());
    let got = lines_to(&mut server, later, c);
    assert!(
        !got.iter().any(|l| l.contains("thanks")),
        "throttled: {got:?}"
    );
    // After the lockout, the right code works.
    let after = later + crate::guest_code::LOCKOUT;
    server.handle_datagram(after, c, format!("/ok {code_c}\n").as_bytes());
    let got = lines_to(&mut server, after, c);
    assert!(got.iter().any(|l| l.contains("thanks")), "{got:?}");
}

/// A `--no-guests` server answers a guest once, within 3x its datagram, then is silent.
#[test]
fn a_server_without_guests_tells_a_guest_once_within_three_times_its_bytes() {
    let config = ServerConfig {
        guests: false,
        ..ServerConfig::default()
    };
    let mut server = Server::new(config, Box::new(SplitMix64::new(3)));
    let guest: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let now = Instant::now();
    // Too short for any answer within 3x: none, and the next one may still be answered.
    server.handle_datagram(now, guest, b"hi\n");
    assert!(lines_to(&mut server, now, guest).is_empty());
    server.handle_datagram(now, guest, b"hello\n");
    let got = lines_to(&mut server, now, guest);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].len() <= 18 && got[0].contains("udpchat join"),
        "{got:?}"
    );
    for _ in 0..20 {
        server.handle_datagram(now, guest, b"hello? anyone? let me in please\n");
    }
    assert!(lines_to(&mut server, now, guest).is_empty(), "once");
    assert_eq!(server.guest_count(), 0);
}

mod amplification {
    use proptest::prelude::*;

    use super::*;

    /// What a test guest does.
    #[derive(Debug, Clone)]
    enum Step {
        /// Sends a datagram of arbitrary bytes (never framed: those are not guest lines).
        Bytes(u8, Vec<u8>),
        /// Sends a line of text, with or without a newline.
        Line(u8, String, bool),
        /// Sends `/ok` with the code it was sent, if it got one.
        Ok(u8),
        /// Sends `/ok` with a wrong code.
        WrongOk(u8),
        /// A validated guest (address 9) says something to the room.
        Chatter(String),
        /// Time passes.
        Wait(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..4, proptest::collection::vec(any::<u8>(), 0..80))
                .prop_map(|(g, b)| Step::Bytes(g, b)),
            (0u8..4, "[a-z /]{0,12}", any::<bool>()).prop_map(|(g, t, nl)| Step::Line(g, t, nl)),
            (0u8..4).prop_map(Step::Ok),
            (0u8..4).prop_map(Step::WrongOk),
            "[a-z ]{1,200}".prop_map(Step::Chatter),
            (0u16..5000).prop_map(Step::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Before it is validated, an address is never sent more than 3 times what it sent,
        /// at any point, whatever guests send and whatever the room says.
        #[test]
        fn an_unvalidated_address_never_gets_more_than_three_times_what_it_sent(
            steps in proptest::collection::vec(step(), 1..60),
            guests in any::<bool>(),
        ) {
            let config = ServerConfig { guests, ..ServerConfig::default() };
            let mut server = Server::new(config, Box::new(SplitMix64::new(7)));
            let mut now = Instant::now();
            let addr = |g: u8| SocketAddr::from(([192, 0, 2, g + 1], 4000));
            let chatter = addr(9);
            // (received from, sent to, validated, last code seen) per guest
            let mut seen: HashMap<SocketAddr, (usize, usize, bool, Option<String>)> =
                HashMap::new();
            if guests {
                // A validated guest that talks to the room.
                server.handle_datagram(now, chatter, &[b'.'; 100]);
                let code = lines_to(&mut server, now, chatter)
                    .iter()
                    .find_map(|l| l.strip_prefix("/ok ").map(|c| c.trim().to_owned()))
                    .expect("code");
                server.handle_datagram(now, chatter, format!("/ok {code}").as_bytes());
            }
            for step in steps {
                let (from, datagram) = match step {
                    Step::Bytes(g, mut b) => {
                        if b.first() == Some(&0xF5) {
                            b[0] = b'x';
                        }
                        (addr(g), b)
                    }
                    Step::Line(g, t, nl) => {
                        (addr(g), format!("{t}{}", if nl { "\n" } else { "" }).into_bytes())
                    }
                    Step::Ok(g) => {
                        let code = seen.get(&addr(g)).and_then(|s| s.3.clone());
                        (addr(g), format!("/ok {}", code.unwrap_or_default()).into_bytes())
                    }
                    Step::WrongOk(g) => (addr(g), b"/ok WRONGCOD".to_vec()),
                    Step::Chatter(t) => (chatter, t.into_bytes()),
                    Step::Wait(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        server.handle_timeout(now);
                        (chatter, Vec::new())
                    }
                };
                if !datagram.is_empty() || from != chatter {
                    server.handle_datagram(now, from, &datagram);
                }
                if from != chatter {
                    seen.entry(from).or_default().0 += datagram.len();
                }
                let mut out = Vec::new();
                while let Some(t) = server.poll_transmit(now) {
                    if t.destination != chatter {
                        out.push(t);
                    }
                }
                // Validated by this datagram: what follows its `/ok` is no longer bounded
                // (the lines held back for want of budget go out before the thanks).
                for t in &out {
                    if String::from_utf8_lossy(&t.payload).contains("thanks") {
                        seen.entry(t.destination).or_default().2 = true;
                    }
                }
                for t in out {
                    let state = seen.entry(t.destination).or_default();
                    state.1 += t.payload.len();
                    let text = String::from_utf8_lossy(&t.payload);
                    if let Some(code) = text.strip_prefix("/ok ") {
                        state.3 = Some(code.trim().to_owned());
                    }
                    prop_assert!(
                        state.2 || state.1 <= 3 * state.0,
                        "{} bytes sent to {} for {} received",
                        state.1, t.destination, state.0
                    );
                }
                while server.poll_event().is_some() {}
            }
        }
    }
}

// ---------------------------------------------------------------- half-open handshakes

/// The cookie a Retry gives `from`.
fn cookie_for(server: &mut Server, now: Instant, from: SocketAddr, hello: &[u8]) -> u64 {
    server.handle_datagram(now, from, hello);
    drain_server(server, now, from)
        .iter()
        .find_map(|d| match Packet::decode(d) {
            Ok(Packet::Retry { cookie, .. }) => Some(cookie),
            _ => None,
        })
        .expect("a Retry")
}

/// Hole 5: handshakes that get their cookie and Welcome but never send an authenticated
/// datagram, 10,000 of them from 50 /24 networks, each sending as many as the handshake rate
/// limits admit (a burst, then the rate), took a session slot each until the connection limit
/// refused real clients. (The limit is 1,000 here so that the flood would reach it.) A real
/// client starts in the middle of the flood, and its first datagram after the Welcome comes
/// 2 s late, while the flood goes on pushing handshakes out of the full table.
#[test]
fn ten_thousand_half_open_handshakes_from_fifty_networks_do_not_lock_a_client_out() {
    let config = ServerConfig {
        max_connections: 1000,
        ..ServerConfig::default()
    };
    let limits = config.handshake_rate_limits;
    let mut server = Server::new(config, Box::new(SplitMix64::new(4)));
    let t0 = Instant::now();
    // Two addresses per /24: their rates make the /24's.
    let attackers: Vec<SocketAddr> = (0..50u8)
        .flat_map(|net| (1..=2u8).map(move |host| SocketAddr::from(([10, net, 0, host], 6000))))
        .collect();
    let cookies: Vec<u64> = attackers
        .iter()
        .map(|&from| {
            let hello = Packet::Hello {
                nonce: 0,
                cookie: 0,
            }
            .to_bytes();
            cookie_for(&mut server, t0, from, &hello)
        })
        .collect();
    let mut attempts = 0;
    let mut nonce = 1;
    let mut flood = |server: &mut Server, now: Instant, per_address: usize| {
        for (&from, &cookie) in attackers.iter().zip(&cookies) {
            for _ in 0..per_address {
                if attempts == 10_000 {
                    return;
                }
                nonce += 1;
                server.handle_datagram(now, from, &Packet::Hello { nonce, cookie }.to_bytes());
                attempts += 1;
            }
            drain_server(server, now, from);
        }
    };
    let ada = SocketAddr::from(([192, 0, 2, 1], 7000));
    let mut client = Client::new(ClientConfig::default(), &mut SplitMix64::new(5), t0);
    let _ = client.send(&ClientMessage::Nick { nick: "ada".into() });
    let mut most_half_open = 0;
    flood(&mut server, t0, limits.per_address_burst as usize);
    let step = Duration::from_millis(100);
    for i in 1..=100u32 {
        let now = t0 + step * i;
        flood(&mut server, now, 1);
        server.handle_timeout(now);
        most_half_open = most_half_open.max(server.half_open_count());
        if i == 50 {
            // The client's Hello, Retry, Hello with the cookie, Welcome.
            for _ in 0..2 {
                while let Some(d) = client.poll_transmit(now) {
                    server.handle_datagram(now, ada, &d);
                }
                for d in drain_server(&mut server, now, ada) {
                    client.handle_datagram(now, &d);
                }
            }
            assert!(client.is_connected());
        }
        if i == 70 {
            // Its first datagram since the Welcome, 2 s late.
            while let Some(d) = client.poll_transmit(now) {
                server.handle_datagram(now, ada, &d);
            }
            assert_eq!(server.connection_count(), 1, "the client's session");
        }
    }
    assert_eq!(attempts, 10_000);
    let limit = ServerConfig::default().max_half_open;
    assert_eq!(most_half_open, limit, "the flood filled the table");
    assert_eq!(
        server.connection_count(),
        1,
        "none of the flood's is a session"
    );
    // The flood's handshakes expire.
    let later = t0 + step * 100 + ServerConfig::default().half_open_timeout;
    server.handle_timeout(later);
    assert_eq!(server.half_open_count(), 0);
    assert_eq!(server.connection_count(), 1);
}

/// Hole 5: a replayed cookie-bearing Hello (the same bytes, from the same address, while the
/// cookie is still good) never makes a second session nor ends the one there; an old Hello
/// of an earlier session at the address does not end the new one either.
#[test]
fn a_replayed_hello_neither_makes_a_second_session_nor_ends_the_live_one() {
    let (mut server, keys) = secure_server(6);
    let at: SocketAddr = "192.0.2.20:5000".parse().unwrap();
    let mut now = Instant::now();
    // A first run of the client, whose cookie-bearing Hello an attacker records.
    let mut recorded = Vec::new();
    let mut first = secure_client(&keys, 7, now);
    for _ in 0..2 {
        while let Some(d) = first.poll_transmit(now) {
            recorded.push(d.clone());
            server.handle_datagram(now, at, &d);
        }
        for d in drain_server(&mut server, now, at) {
            first.handle_datagram(now, &d);
        }
    }
    assert!(first.is_connected());
    while let Some(d) = first.poll_transmit(now) {
        server.handle_datagram(now, at, &d);
    }
    assert_eq!(server.connection_count(), 1);
    for d in drain_server(&mut server, now, at) {
        first.handle_datagram(now, &d);
    }
    let old_hello = recorded.pop().expect("the Hello with the cookie");
    // Replayed now: no new Welcome, no new session, the session goes on.
    server.handle_datagram(now, at, &old_hello);
    assert!(drain_server(&mut server, now, at).is_empty());
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.half_open_count(), 0);
    // The client restarts at the same address: its new session replaces the old one.
    now += Duration::from_secs(5);
    let mut second = secure_client(&keys, 8, now);
    assert!(handshake(&mut server, &mut second, at, now, 3));
    drain_server(&mut server, now, at);
    // The first run's Hello, replayed (its cookie still good): the live session stays.
    server.handle_datagram(now, at, &old_hello);
    for d in drain_server(&mut server, now, at) {
        second.handle_datagram(now, &d);
    }
    let _ = second.send(&ClientMessage::Nick { nick: "bob".into() });
    while let Some(d) = second.poll_transmit(now) {
        server.handle_datagram(now, at, &d);
    }
    for d in drain_server(&mut server, now, at) {
        second.handle_datagram(now, &d);
    }
    while let Some(event) = second.poll_event() {
        assert!(!matches!(event, ClientEvent::Closed(_)), "{event:?}");
    }
    assert!(second.is_connected());
    // (The old session lingers while it drains; only one session is a member.)
    server.handle_timeout(now + Duration::from_secs(3));
    drain_server(&mut server, now + Duration::from_secs(3), at);
    assert_eq!(server.connection_count(), 1);
}
