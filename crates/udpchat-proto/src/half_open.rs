//! Half-open handshakes: the server has sent its Welcome, and the client has not yet sent an
//! authenticated datagram.
//!
//! Anyone who receives at an address can answer a Retry, so a Hello with a valid cookie proves
//! only that, not that a real client follows. Such handshakes wait here, apart from the
//! established sessions, in a table of bounded size ([`ServerConfig::max_half_open`]) for a
//! short while ([`ServerConfig::half_open_timeout`]); the first authenticated datagram moves
//! its handshake out (the server makes it a session), and expiry or eviction drops it.
//!
//! When the table is full, a new handshake evicts the oldest entry of the network (/24 for
//! IPv4, /64 for IPv6) that holds the most entries: an attacker flooding from a few networks
//! evicts its own handshakes, not those of a client on another network, however many it
//! sends. (It would take more networks than the table has entries, each with a handshake in
//! it, to crowd a lone client out.)
//!
//! [`ServerConfig::max_half_open`]: crate::server::ServerConfig::max_half_open
//! [`ServerConfig::half_open_timeout`]: crate::server::ServerConfig::half_open_timeout

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rng::{HashMap, RandomSource, new_map};
use crate::wire::packet::ConnectionId;

/// One half-open handshake.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// Where the Hello came from (and the Welcome went).
    pub(crate) addr: SocketAddr,
    /// The Hello's nonce: a repeated Hello (our Welcome was lost) gets the same Welcome.
    pub(crate) nonce: u64,
    /// When the Welcome was first sent.
    pub(crate) created: Instant,
    /// What the server keeps of the handshake (keys, token, the Welcome).
    pub(crate) state: T,
}

/// The table of half-open handshakes. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct HalfOpen<T> {
    capacity: usize,
    lifetime: Duration,
    entries: HashMap<ConnectionId, Entry<T>>,
    /// (address, nonce) of each entry's Hello.
    by_hello: HashMap<(SocketAddr, u64), ConnectionId>,
    /// Entries in the order they were made, with their creation time; entries gone since
    /// (promoted, evicted) stay until they reach the front or the deque is compacted. The
    /// front is always a live entry.
    order: VecDeque<(Instant, ConnectionId)>,
    /// Entries per network.
    per_network: HashMap<IpAddr, usize>,
    /// Handshakes dropped to make room, and expired.
    pub(crate) evicted: u64,
    pub(crate) expired: u64,
}

/// The /24 (IPv4) or /64 (IPv6) that holds `ip`.
fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::from(s)
        }
    }
}

impl<T> HalfOpen<T> {
    /// An empty table of `capacity` entries at most (at least 1), each kept `lifetime`; its
    /// maps seeded from `rng`.
    pub(crate) fn new(capacity: usize, lifetime: Duration, rng: &mut dyn RandomSource) -> Self {
        Self {
            capacity: capacity.max(1),
            lifetime,
            entries: new_map(rng),
            by_hello: new_map(rng),
            order: VecDeque::new(),
            per_network: new_map(rng),
            evicted: 0,
            expired: 0,
        }
    }

    /// Handshakes in the table.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `id` is a half-open handshake.
    pub(crate) fn contains(&self, id: ConnectionId) -> bool {
        self.entries.contains_key(&id)
    }

    /// The handshake that `addr`'s Hello with `nonce` started, if it is still half-open.
    pub(crate) fn find_hello(&self, addr: SocketAddr, nonce: u64) -> Option<&Entry<T>> {
        let id = self.by_hello.get(&(addr, nonce))?;
        self.entries.get(id)
    }

    /// The handshake `id`.
    pub(crate) fn get_mut(&mut self, id: ConnectionId) -> Option<&mut Entry<T>> {
        self.entries.get_mut(&id)
    }

    /// Adds a handshake (`id` must be new); when the table is full, first drops the oldest
    /// handshake of the network with the most, and returns it.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        id: ConnectionId,
        addr: SocketAddr,
        nonce: u64,
        state: T,
    ) -> Option<Entry<T>> {
        let evicted = if self.entries.len() >= self.capacity {
            self.evict()
        } else {
            None
        };
        *self.per_network.entry(network(addr.ip())).or_default() += 1;
        self.by_hello.insert((addr, nonce), id);
        self.order.push_back((now, id));
        self.entries.insert(
            id,
            Entry {
                addr,
                nonce,
                created: now,
                state,
            },
        );
        evicted
    }

    /// Takes handshake `id` out (it became a session, or failed).
    pub(crate) fn remove(&mut self, id: ConnectionId) -> Option<Entry<T>> {
        let entry = self.entries.remove(&id)?;
        if self.by_hello.get(&(entry.addr, entry.nonce)) == Some(&id) {
            self.by_hello.remove(&(entry.addr, entry.nonce));
        }
        let net = network(entry.addr.ip());
        if let Some(count) = self.per_network.get_mut(&net) {
            *count -= 1;
            if *count == 0 {
                self.per_network.remove(&net);
            }
        }
        self.tidy();
        Some(entry)
    }

    /// Drops the handshakes older than the lifetime.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(created, id)) = self.order.front() {
            if now < created + self.lifetime {
                break;
            }
            // (The front is live: tidy keeps it so.)
            if self.remove(id).is_some() {
                self.expired += 1;
            } else {
                self.order.pop_front();
            }
        }
    }

    /// When the oldest handshake expires.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.order
            .front()
            .map(|&(created, _)| created + self.lifetime)
    }

    /// Drops every handshake.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.by_hello.clear();
        self.order.clear();
        self.per_network.clear();
    }

    /// The oldest handshake of the network with the most, taken out.
    fn evict(&mut self) -> Option<Entry<T>> {
        let (&crowded, _) = self.per_network.iter().max_by_key(|(_, count)| **count)?;
        let &(_, id) = self.order.iter().find(|&&(created, id)| {
            self.entries
                .get(&id)
                .is_some_and(|e| e.created == created && network(e.addr.ip()) == crowded)
        })?;
        self.evicted += 1;
        self.remove(id)
    }

    /// Keeps `order`'s front live, and `order` no more than about twice the live entries.
    fn tidy(&mut self) {
        let live = |entries: &HashMap<ConnectionId, Entry<T>>,
                    (created, id): (Instant, ConnectionId)| {
            entries.get(&id).is_some_and(|e| e.created == created)
        };
        while let Some(&front) = self.order.front() {
            if live(&self.entries, front) {
                break;
            }
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order.retain(|&e| live(entries, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn addr(a: u8, b: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, a, b], 4000))
    }

    #[test]
    fn entries_expire_after_their_lifetime_oldest_first() {
        let mut t = HalfOpen::new(10, Duration::from_secs(5), &mut SplitMix64::new(1));
        let t0 = Instant::now();
        t.insert(t0, ConnectionId(1), addr(0, 1), 1, ());
        t.insert(
            t0 + Duration::from_secs(2),
            ConnectionId(2),
            addr(0, 2),
            2,
            (),
        );
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        t.expire(t0 + Duration::from_secs(5));
        assert!(!t.contains(ConnectionId(1)) && t.contains(ConnectionId(2)));
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(7)));
        // Promoted: gone, and its deadline with it.
        assert!(t.remove(ConnectionId(2)).is_some());
        assert_eq!(t.poll_timeout(), None);
        assert!(t.is_empty());
        assert_eq!(t.expired, 1);
    }

    #[test]
    fn a_repeated_hello_finds_its_handshake() {
        let mut t = HalfOpen::new(10, Duration::from_secs(5), &mut SplitMix64::new(1));
        let t0 = Instant::now();
        t.insert(t0, ConnectionId(1), addr(0, 1), 77, "welcome");
        assert_eq!(
            t.find_hello(addr(0, 1), 77).map(|e| e.state),
            Some("welcome")
        );
        assert!(t.find_hello(addr(0, 2), 77).is_none());
        assert!(t.find_hello(addr(0, 1), 78).is_none());
    }

    #[test]
    fn a_full_table_evicts_from_the_most_crowded_network_oldest_first() {
        let mut t = HalfOpen::new(8, Duration::from_secs(5), &mut SplitMix64::new(1));
        let t0 = Instant::now();
        // A lone client on network 1, then a flood from network 2.
        t.insert(t0, ConnectionId(1), addr(1, 1), 1, ());
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i);
            t.insert(now, ConnectionId(100 + i), addr(2, i as u8), i, ());
            assert!(t.len() <= 8);
        }
        assert!(t.contains(ConnectionId(1)), "the lone client stays");
        // The flood's newest remain.
        assert!(t.contains(ConnectionId(1099)) && !t.contains(ConnectionId(100)));
        assert_eq!(t.evicted, 1000 + 1 - 8);
        // The bookkeeping stays bounded too.
        assert!(t.order.len() <= 2 * 8 + 64 + 1);
    }

    #[test]
    fn the_flood_of_many_networks_evicts_its_own() {
        let mut t = HalfOpen::new(64, Duration::from_secs(5), &mut SplitMix64::new(1));
        let t0 = Instant::now();
        t.insert(t0, ConnectionId(1), addr(200, 1), 1, ());
        // 50 networks, 10,000 handshakes, in turn.
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(i);
            let net = (i % 50) as u8;
            t.insert(now, ConnectionId(100 + i), addr(net, (i / 50) as u8), i, ());
        }
        assert!(t.contains(ConnectionId(1)));
        assert_eq!(t.len(), 64);
    }
}
