//! The proxy itself: sockets and threads that move datagrams through two [`FaultLane`]s per client.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use udpchat_proto::rng::RandomSource;

use crate::fault::{FaultConfig, FaultLane, Outcome, SplitMix64};

/// Default for [`ProxyConfig::max_clients`].
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

/// Default for [`ProxyConfig::max_hold`]: long enough that a steady sender's next datagram
/// usually arrives first, short enough that a test waiting for the last one hardly notices.
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_millis(50);

/// Default for [`ProxyConfig::lane_capacity`]: far more than a paced test keeps in flight, while
/// bounding a lane's memory to 64 MiB even with maximum-size datagrams.
pub const DEFAULT_LANE_CAPACITY: usize = 1024;

/// How often an idle proxy thread wakes to look at the shutdown flag. This bounds how long
/// dropping a [`LossyProxy`] takes (about twice this: the listener, then the client threads).
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Shortest read timeout the threads set: a zero timeout is an error for `set_read_timeout`.
const MIN_WAIT: Duration = Duration::from_micros(100);

/// Receive buffer size: the largest UDP payload is 65,507 bytes over IPv4 and 65,527 over IPv6;
/// 64 KiB holds either, so nothing is ever truncated.
const RECV_BUFFER_LEN: usize = 65_536;

/// How to run a [`LossyProxy`]. Build it with [`ProxyConfig::new`] and change the public fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// The real server; every client's datagrams are forwarded there.
    pub upstream: SocketAddr,
    /// Seed of every random decision. Each client gets two lanes (up and down) whose seeds are
    /// derived from this seed and the order in which the clients were first seen.
    pub seed: u64,
    /// Most distinct clients the proxy serves; datagrams from further clients are dropped (and
    /// counted in `dropped_up`). Entries are never evicted: a proxy lives as long as one test.
    pub max_clients: usize,
    /// Faults applied to client → server datagrams.
    pub up: FaultConfig,
    /// Faults applied to server → client datagrams.
    pub down: FaultConfig,
    /// Longest time a datagram held back for reordering waits for a successor.
    pub max_hold: Duration,
    /// Most datagrams waiting (delayed or held) in one lane; more are dropped and counted.
    pub lane_capacity: usize,
}

/// A snapshot of the proxy's counters. "Up" is client → server, "down" is server → client.
///
/// For each direction, once the proxy is idle:
/// `forwarded + dropped == received by the proxy + duplicated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Datagram copies sent to the server (duplicates included).
    pub forwarded_up: u64,
    /// Datagram copies sent back to clients (duplicates included).
    pub forwarded_down: u64,
    /// Client datagrams not forwarded: lost by the loss roll, a full lane, the client limit, or
    /// a failed send.
    pub dropped_up: u64,
    /// Server datagrams not forwarded, for the same reasons (except the client limit).
    pub dropped_down: u64,
    /// Client datagrams that were sent twice.
    pub duplicated_up: u64,
    /// Server datagrams that were sent twice.
    pub duplicated_down: u64,
    /// Client datagrams held back and then sent after a later datagram.
    pub reordered_up: u64,
    /// Server datagrams held back and then sent after a later datagram.
    pub reordered_down: u64,
}

/// A running lossy UDP proxy on `127.0.0.1`. Dropping it stops every thread it started and
/// closes every socket it opened, before `drop` returns.
///
/// ```no_run
/// use std::net::UdpSocket;
/// use udpchat_testkit::{FaultConfig, LossyProxy, ProxyConfig};
///
/// let server = UdpSocket::bind("127.0.0.1:0")?;
/// let mut config = ProxyConfig::new(server.local_addr()?);
/// config.seed = 7;
/// config.up = FaultConfig { loss: 0.2, ..FaultConfig::NONE };
/// let proxy = LossyProxy::start(config)?;
///
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"hello", proxy.addr())?; // reaches `server` with probability 0.8
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct LossyProxy {
    /// Where clients send to.
    addr: SocketAddr,
    /// Counters and the shutdown flag, shared with every proxy thread.
    shared: Arc<Shared>,
    /// The listener thread; it joins the per-client threads before it ends. `None` once joined.
    listener: Option<JoinHandle<()>>,
}

/// State shared by the handle and all threads.
#[derive(Debug, Default)]
struct Shared {
    /// Set by `LossyProxy::drop`; every thread checks it at least every `POLL_INTERVAL`.
    shutdown: AtomicBool,
    /// Client → server counters.
    up: DirectionCounters,
    /// Server → client counters.
    down: DirectionCounters,
    /// Number of client entries.
    clients: AtomicUsize,
    /// Bumped by `rebind_clients`: clients opened in an older generation get a new upstream
    /// socket at their next datagram.
    generation: AtomicU64,
}

/// The counters of one direction.
#[derive(Debug, Default)]
struct DirectionCounters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

/// The listener thread's state: the listening socket and the client table.
struct Listener {
    socket: UdpSocket,
    config: ProxyConfig,
    shared: Arc<Shared>,
    clients: HashMap<SocketAddr, Client>,
    /// Order of the next new client, used to derive its lanes' seeds.
    next_index: u64,
    /// Readers of upstream sockets replaced by a rebinding, joined at shutdown.
    retired: Vec<JoinHandle<()>>,
}

/// One client's entry, owned by the listener thread.
struct Client {
    /// Connected to the server; the server sees this socket's address as the client's.
    upstream: UdpSocket,
    /// Client → server faults.
    lane: FaultLane,
    /// The thread reading the server's replies for this client.
    reader: JoinHandle<()>,
    /// The rebinding generation it was opened in.
    generation: u64,
}

/// A per-client thread's state: replies from the server go through `lane` back to `client`.
struct Reader {
    upstream: UdpSocket,
    listening: UdpSocket,
    client: SocketAddr,
    lane: FaultLane,
    shared: Arc<Shared>,
}

impl ProxyConfig {
    /// A configuration that forwards to `upstream` without faults, with seed 0 and the defaults.
    pub fn new(upstream: SocketAddr) -> Self {
        Self {
            upstream,
            seed: 0,
            max_clients: DEFAULT_MAX_CLIENTS,
            up: FaultConfig::NONE,
            down: FaultConfig::NONE,
            max_hold: DEFAULT_MAX_HOLD,
            lane_capacity: DEFAULT_LANE_CAPACITY,
        }
    }
}

impl LossyProxy {
    /// Binds the listening socket on `127.0.0.1:0` and starts forwarding to `config.upstream`.
    ///
    /// # Errors
    /// If the listening socket cannot be bound or the listener thread cannot be spawned.
    pub fn start(config: ProxyConfig) -> io::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = socket.local_addr()?;
        let shared = Arc::new(Shared::default());
        let listener = Listener {
            socket,
            config,
            shared: Arc::clone(&shared),
            clients: HashMap::new(),
            next_index: 0,
            retired: Vec::new(),
        };
        let handle = thread::Builder::new()
            .name("lossy-proxy".into())
            .spawn(move || listener.run())?;
        Ok(Self {
            addr,
            shared,
            listener: Some(handle),
        })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current counters.
    pub fn stats(&self) -> ProxyStats {
        let (up, down) = (&self.shared.up, &self.shared.down);
        let read = |c: &AtomicU64| c.load(Ordering::Acquire);
        ProxyStats {
            forwarded_up: read(&up.forwarded),
            forwarded_down: read(&down.forwarded),
            dropped_up: read(&up.dropped),
            dropped_down: read(&down.dropped),
            duplicated_up: read(&up.duplicated),
            duplicated_down: read(&down.duplicated),
            reordered_up: read(&up.reordered),
            reordered_down: read(&down.reordered),
        }
    }

    /// From each client's next datagram on, the server sees it from a new address (a new
    /// upstream socket), like a NAT rebinding or a move to another network.
    pub fn rebind_clients(&self) {
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// How many distinct clients the proxy has seen (and serves); a rebinding does not count.
    pub fn client_count(&self) -> usize {
        self.shared.clients.load(Ordering::Acquire)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        if let Some(listener) = self.listener.take() {
            // A panicked proxy thread has nothing left to clean up; don't panic in drop too.
            let _ = listener.join();
        }
    }
}

impl DirectionCounters {
    fn record(&self, outcome: Outcome) {
        for (happened, counter) in [
            (outcome.dropped, &self.dropped),
            (outcome.duplicated, &self.duplicated),
            (outcome.reordered, &self.reordered),
        ] {
            if happened {
                counter.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl Listener {
    fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        while !self.shared.shutdown.load(Ordering::Acquire) {
            let now = Instant::now();
            let mut next = None;
            for client in self.clients.values_mut() {
                let due = flush(&mut client.lane, now, &self.shared.up, |d| {
                    client.upstream.send(d)
                });
                next = earliest(next, due);
            }
            // On failure the previous timeout stays, which is still a bounded wait.
            let _ = self.socket.set_read_timeout(Some(wait_until(now, next)));
            // Errors are timeouts, interrupts or ICMP-caused resets: all harmless, just loop.
            if let Ok((len, from)) = self.socket.recv_from(&mut buf) {
                self.on_datagram(from, &buf[..len]);
            }
        }
        // Shutting down: the readers see the same flag; wait for them so none outlives the proxy.
        for (_, client) in self.clients.drain() {
            let _ = client.reader.join();
        }
        for reader in self.retired.drain(..) {
            let _ = reader.join();
        }
    }

    fn on_datagram(&mut self, from: SocketAddr, payload: &[u8]) {
        let now = Instant::now();
        // A rebinding since this client's socket was opened: it moves to a new one, as behind
        // a NAT that changed its mapping; the old reader keeps forwarding late replies.
        let generation = self.shared.generation.load(Ordering::Acquire);
        if self
            .clients
            .get(&from)
            .is_some_and(|c| c.generation < generation)
            && let Ok(fresh) = open_client(
                &self.socket,
                &self.config,
                &self.shared,
                from,
                self.next_index,
            )
        {
            self.next_index += 1;
            if let Some(old) = self.clients.insert(from, fresh) {
                self.retired.push(old.reader);
            }
        }
        let full = self.clients.len() >= self.config.max_clients;
        let client = match self.clients.entry(from) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let opened = if full {
                    None
                } else {
                    open_client(
                        &self.socket,
                        &self.config,
                        &self.shared,
                        from,
                        self.next_index,
                    )
                    .ok()
                };
                let Some(client) = opened else {
                    self.shared.up.dropped.fetch_add(1, Ordering::AcqRel);
                    return;
                };
                self.next_index += 1;
                self.shared.clients.fetch_add(1, Ordering::AcqRel);
                entry.insert(client)
            }
        };
        let outcome = client.lane.handle_datagram(now, payload);
        self.shared.up.record(outcome);
        flush(&mut client.lane, now, &self.shared.up, |d| {
            client.upstream.send(d)
        });
    }
}

/// Opens the upstream socket of a new client and starts the thread that reads its replies.
fn open_client(
    listening: &UdpSocket,
    config: &ProxyConfig,
    shared: &Arc<Shared>,
    client: SocketAddr,
    index: u64,
) -> io::Result<Client> {
    let local: SocketAddr = if config.upstream.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let upstream = UdpSocket::bind(local)?;
    // Connected: the kernel then passes only the server's datagrams to this socket.
    upstream.connect(config.upstream)?;
    let lane = |faults, direction| {
        let seed = lane_seed(config.seed, index, direction);
        FaultLane::new(faults, seed, config.max_hold, config.lane_capacity)
    };
    let reader = Reader {
        upstream: upstream.try_clone()?,
        listening: listening.try_clone()?,
        client,
        lane: lane(config.down, 1),
        shared: Arc::clone(shared),
    };
    let handle = thread::Builder::new()
        .name(format!("lossy-proxy {client}"))
        .spawn(move || reader.run())?;
    Ok(Client {
        upstream,
        lane: lane(config.up, 0),
        reader: handle,
        generation: shared.generation.load(Ordering::Acquire),
    })
}

impl Reader {
    fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        while !self.shared.shutdown.load(Ordering::Acquire) {
            let now = Instant::now();
            let next = flush(&mut self.lane, now, &self.shared.down, |d| {
                self.listening.send_to(d, self.client)
            });
            let _ = self.upstream.set_read_timeout(Some(wait_until(now, next)));
            if let Ok(len) = self.upstream.recv(&mut buf) {
                let now = Instant::now();
                let outcome = self.lane.handle_datagram(now, &buf[..len]);
                self.shared.down.record(outcome);
            }
        }
    }
}

/// Sends everything `lane` has due at `now`, counting each copy, and returns the lane's next
/// deadline. Send errors are counted as drops and otherwise ignored, like a lossy network would.
fn flush(
    lane: &mut FaultLane,
    now: Instant,
    counters: &DirectionCounters,
    mut send: impl FnMut(&[u8]) -> io::Result<usize>,
) -> Option<Instant> {
    while let Some(datagram) = lane.poll_transmit(now) {
        // Counted before sending, so a test that sees the datagram also sees it counted.
        counters.forwarded.fetch_add(1, Ordering::AcqRel);
        if send(&datagram).is_err() {
            counters.forwarded.fetch_sub(1, Ordering::AcqRel);
            counters.dropped.fetch_add(1, Ordering::AcqRel);
        }
    }
    lane.poll_timeout()
}

/// The read timeout that wakes a thread at `next` (or to check the shutdown flag).
fn wait_until(now: Instant, next: Option<Instant>) -> Duration {
    next.map_or(POLL_INTERVAL, |at| at.saturating_duration_since(now))
        .clamp(MIN_WAIT, POLL_INTERVAL)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The seed of one lane: direction 0 is up, 1 is down. Mixed through splitmix64 so that
/// neighbouring seeds and clients give unrelated streams.
fn lane_seed(seed: u64, client_index: u64, direction: u64) -> u64 {
    let lane = client_index.wrapping_mul(2).wrapping_add(direction);
    let mut mix = SplitMix64::new(seed ^ SplitMix64::new(lane).next_u64());
    mix.next_u64()
}
