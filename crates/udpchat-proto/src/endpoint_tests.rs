//! The server's endpoint under attack, sans-IO: forged and half-open handshakes. Each test
//! drives a [`Server`] and real [`Client`]s by hand at explicit times, with no network between
//! them, so that "at once" means "in the round trips the handshake needs, with no timer".

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
        while let Some(datagram) = client.poll_transmit(now) {
            server.handle_datagram(now, at, &datagram);
        }
        for datagram in drain_server(server, now, at) {
            client.handle_datagram(now, &datagram);
        }
        while let Some(event) = client.poll_event() {
            assert!(!matches!(event, ClientEvent::Closed(_)), "{event:?}");
        }
        if client.is_connected() && client.poll_transmit(now).is_none() {
            return true;
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
    let burst = ServerConfig::default().rate_limits.per_address_burst as usize;
    assert!(welcomes <= burst, "{welcomes} handshakes admitted at once");
    assert!(server.stats().rate_limited >= 1000 - burst as u64);
    // A second later, the rate's worth more.
    let later = now + Duration::from_secs(1);
    for _ in 0..1000 {
        server.handle_datagram(later, flooder, &secure_hello(&mut rng, cookie));
        welcomes += count_welcomes(drain_server(&mut server, later, flooder));
    }
    let rate = ServerConfig::default().rate_limits.per_address_rate as usize;
    assert!(welcomes <= burst + rate, "{welcomes}");
}
