//! End-to-end tests of the lossy proxy on loopback, with a plain `UdpSocket` as the server.
//!
//! Senders pace themselves in windows and wait for each window to settle (every datagram either
//! arrived or was counted as dropped), so the kernel's socket buffers never overflow and the
//! counts are exact. Waiting is always a blocking `recv` with a read timeout, never a sleep.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use udpchat_testkit::{FaultConfig, LossyProxy, ProxyConfig, ProxyStats};

/// Upper bound for any single wait in these tests; a healthy run waits milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// Datagrams sent before waiting for them to settle: well within default socket buffers.
const WINDOW: u32 = 50;

fn socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket");
    socket
        .set_read_timeout(Some(PATIENCE))
        .expect("set a read timeout");
    socket
}

fn addr(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().expect("a bound socket has an address")
}

fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (len, from) = socket
        .recv_from(&mut buf)
        .expect("a datagram within the test's patience");
    buf.truncate(len);
    (buf, from)
}

/// Receives into `received` until `done(received.len())`, waking every few ms to re-check.
fn settle(socket: &UdpSocket, received: &mut Vec<Vec<u8>>, done: impl Fn(usize) -> bool) {
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("set a read timeout");
    let deadline = Instant::now() + PATIENCE;
    let mut buf = vec![0u8; 65_536];
    while !done(received.len()) {
        assert!(Instant::now() < deadline, "traffic did not settle in time");
        if let Ok(len) = socket.recv(&mut buf) {
            received.push(buf[..len].to_vec());
        }
    }
    socket
        .set_read_timeout(Some(PATIENCE))
        .expect("set a read timeout");
}

/// Whether the up direction is idle: all `sent` datagrams were forwarded or dropped, and the
/// server holds everything that was forwarded.
fn up_settled(stats: ProxyStats, sent: u64, received: usize) -> bool {
    stats.forwarded_up + stats.dropped_up == sent + stats.duplicated_up
        && stats.forwarded_up == received as u64
}

fn seq(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().expect("4-byte sequence number"))
}

/// One client sends `count` numbered datagrams through a proxy with `up` faults; returns the
/// numbers in the order the server got them, and the final stats.
fn one_way(seed: u64, up: FaultConfig, count: u32) -> (Vec<u32>, ProxyStats) {
    let server = socket();
    let mut config = ProxyConfig::new(addr(&server));
    config.seed = seed;
    config.up = up;
    let proxy = LossyProxy::start(config).expect("start the proxy");
    let client = socket();

    let mut received = Vec::new();
    for start in (0..count).step_by(WINDOW as usize) {
        let end = (start + WINDOW).min(count);
        for i in start..end {
            client
                .send_to(&i.to_be_bytes(), proxy.addr())
                .expect("send to the proxy");
        }
        settle(&server, &mut received, |n| {
            up_settled(proxy.stats(), u64::from(end), n)
        });
    }
    (received.iter().map(|d| seq(d)).collect(), proxy.stats())
}

#[test]
fn no_faults_delivers_everything_in_order_with_one_peer_per_client() {
    const PER_CLIENT: u32 = 1000;
    let server = socket();
    let proxy = LossyProxy::start(ProxyConfig::new(addr(&server))).expect("start the proxy");
    let clients: Vec<UdpSocket> = (0..3).map(|_| socket()).collect();

    // Server side: source address -> client id, and the next sequence number expected per client.
    let mut peers: HashMap<SocketAddr, u8> = HashMap::new();
    let mut next_up = [0u32; 3];
    let mut next_down = [0u32; 3];
    let per_window = WINDOW / 3;
    for start in (0..PER_CLIENT).step_by(per_window as usize) {
        let end = (start + per_window).min(PER_CLIENT);
        for i in start..end {
            for (id, client) in clients.iter().enumerate() {
                let mut payload = vec![id as u8];
                payload.extend_from_slice(&i.to_be_bytes());
                client.send_to(&payload, proxy.addr()).expect("send");
            }
        }
        // The server gets every datagram, per client in order, and echoes it to its source.
        for _ in 0..(end - start) * 3 {
            let (payload, from) = recv(&server);
            let id = payload[0];
            assert_eq!(
                *peers.entry(from).or_insert(id),
                id,
                "one source per client"
            );
            assert_eq!(seq(&payload[1..]), next_up[usize::from(id)]);
            next_up[usize::from(id)] += 1;
            server.send_to(&payload, from).expect("echo");
        }
        // Each client gets exactly its own replies, in order, from the proxy's address.
        for (id, client) in clients.iter().enumerate() {
            for _ in start..end {
                let (payload, from) = recv(client);
                assert_eq!(from, proxy.addr());
                assert_eq!(
                    usize::from(payload[0]),
                    id,
                    "reply went to the wrong client"
                );
                assert_eq!(seq(&payload[1..]), next_down[id]);
                next_down[id] += 1;
            }
        }
    }
    assert_eq!(peers.len(), 3, "the server saw three distinct peers");
    assert!(!peers.contains_key(&proxy.addr()));
    assert_eq!(proxy.client_count(), 3);
    let total = u64::from(PER_CLIENT) * 3;
    assert_eq!(
        proxy.stats(),
        ProxyStats {
            forwarded_up: total,
            forwarded_down: total,
            ..ProxyStats::default()
        }
    );
}

#[test]
fn loss_drops_a_plausible_share_and_stats_match_arrivals() {
    const COUNT: u32 = 1000;
    let up = FaultConfig {
        loss: 0.3,
        ..FaultConfig::NONE
    };
    let (received, stats) = one_way(2024, up, COUNT);
    let dropped = u64::from(COUNT) - received.len() as u64;
    // Binomial(1000, 0.3): mean 300, standard deviation about 14.5; this is +-5 sigma.
    assert!((228..=372).contains(&dropped), "dropped {dropped}");
    assert_eq!(stats.dropped_up, dropped);
    assert_eq!(stats.forwarded_up, received.len() as u64);
    assert_eq!(stats.duplicated_up + stats.reordered_up, 0);
    // Loss alone never reorders or duplicates.
    assert!(received.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn loss_on_the_way_back_is_counted_down() {
    const COUNT: u32 = 500;
    let server = socket();
    let mut config = ProxyConfig::new(addr(&server));
    config.seed = 5;
    config.down = FaultConfig {
        loss: 0.3,
        ..FaultConfig::NONE
    };
    let proxy = LossyProxy::start(config).expect("start the proxy");
    let client = socket();

    let mut replies = Vec::new();
    for start in (0..COUNT).step_by(WINDOW as usize) {
        let end = (start + WINDOW).min(COUNT);
        for i in start..end {
            client
                .send_to(&i.to_be_bytes(), proxy.addr())
                .expect("send");
        }
        for _ in start..end {
            let (payload, from) = recv(&server);
            server.send_to(&payload, from).expect("echo");
        }
        settle(&client, &mut replies, |n| {
            let s = proxy.stats();
            s.forwarded_down + s.dropped_down == u64::from(end) && s.forwarded_down == n as u64
        });
    }
    let stats = proxy.stats();
    assert_eq!(stats.forwarded_up, u64::from(COUNT));
    assert!((75..=225).contains(&stats.dropped_down), "{stats:?}");
    assert!(replies.windows(2).all(|w| seq(&w[0]) < seq(&w[1])));
}

#[test]
fn duplication_produces_duplicates() {
    const COUNT: u32 = 400;
    let up = FaultConfig {
        duplicate: 0.25,
        ..FaultConfig::NONE
    };
    let (received, stats) = one_way(11, up, COUNT);
    let mut seen = HashSet::new();
    let twice = received.iter().filter(|&&s| !seen.insert(s)).count() as u64;
    assert_eq!(seen.len() as u32, COUNT, "nothing lost");
    assert!(twice > 0);
    assert_eq!(stats.duplicated_up, twice);
    assert_eq!(received.len() as u64, u64::from(COUNT) + twice);
    // Binomial(400, 0.25): mean 100, standard deviation about 8.7.
    assert!((50..=150).contains(&twice), "duplicated {twice}");
}

#[test]
fn reordering_reorders_but_delivers_everything() {
    const COUNT: u32 = 500;
    let up = FaultConfig {
        reorder: 0.2,
        ..FaultConfig::NONE
    };
    let (received, stats) = one_way(3, up, COUNT);
    assert!(
        received.windows(2).any(|w| w[0] > w[1]),
        "at least one out-of-order arrival"
    );
    assert!(stats.reordered_up > 0);
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..COUNT).collect::<Vec<_>>(),
        "every datagram once"
    );
}

#[test]
fn the_same_seed_gives_the_same_pattern() {
    let up = FaultConfig {
        loss: 0.3,
        duplicate: 0.1,
        ..FaultConfig::NONE
    };
    let (first, _) = one_way(99, up, 300);
    let (again, _) = one_way(99, up, 300);
    let (other, _) = one_way(100, up, 300);
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[test]
fn delay_and_jitter_add_latency() {
    let server = socket();
    let mut config = ProxyConfig::new(addr(&server));
    let delay = Duration::from_millis(20);
    config.up = FaultConfig {
        delay,
        jitter: Duration::from_millis(10),
        ..FaultConfig::NONE
    };
    let proxy = LossyProxy::start(config).expect("start the proxy");
    let client = socket();
    for i in 0..5u32 {
        let sent = Instant::now();
        client
            .send_to(&i.to_be_bytes(), proxy.addr())
            .expect("send");
        let (payload, _) = recv(&server);
        assert!(sent.elapsed() >= delay);
        assert_eq!(seq(&payload), i);
    }
}

#[test]
fn empty_and_maximum_size_datagrams_pass_both_ways() {
    let server = socket();
    let proxy = LossyProxy::start(ProxyConfig::new(addr(&server))).expect("start the proxy");
    let client = socket();
    // 65,507 bytes: the largest UDP payload over IPv4.
    let big: Vec<u8> = (0..65_507u32).map(|i| i as u8).collect();
    for payload in [Vec::new(), big] {
        client.send_to(&payload, proxy.addr()).expect("send");
        let (got, from) = recv(&server);
        assert_eq!(got, payload);
        server.send_to(&got, from).expect("echo");
        let (back, _) = recv(&client);
        assert_eq!(back, payload);
    }
}

#[test]
fn clients_beyond_the_limit_are_dropped() {
    let server = socket();
    let mut config = ProxyConfig::new(addr(&server));
    config.max_clients = 2;
    let proxy = LossyProxy::start(config).expect("start the proxy");
    let clients: Vec<UdpSocket> = (0..3).map(|_| socket()).collect();
    for client in &clients {
        client.send_to(b"hi\0\0", proxy.addr()).expect("send");
    }
    let mut received = Vec::new();
    settle(&server, &mut received, |n| {
        let s = proxy.stats();
        s.dropped_up == 1 && s.forwarded_up == 2 && n == 2
    });
    assert_eq!(proxy.client_count(), 2);
}

#[test]
fn dropping_the_proxy_stops_it_and_frees_its_port() {
    let server = socket();
    let mut config = ProxyConfig::new(addr(&server));
    config.up.delay = Duration::from_secs(30); // something still queued at drop time
    let proxy = LossyProxy::start(config).expect("start the proxy");
    let proxy_addr = proxy.addr();
    let client = socket();
    client.send_to(b"late", proxy_addr).expect("send");
    let mut received = Vec::new();
    settle(&server, &mut received, |_| proxy.client_count() == 1);

    let started = Instant::now();
    drop(proxy);
    assert!(started.elapsed() < Duration::from_secs(2), "drop is prompt");
    // Every thread held a clone of the listening socket: the port is free only once all ended.
    UdpSocket::bind(proxy_addr).expect("the proxy's port is free again");
}
