//! Simulation tools for tests: an in-memory network with a virtual clock and seeded faults.
//!
//! Nothing here sleeps or touches a socket: a simulated minute of lossy chat runs in
//! milliseconds, and the same seed always gives the same run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rng::SplitMix64;

/// What the network does to each datagram.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// One-way latency.
    pub latency: Duration,
    /// Extra random latency, uniform in `0..jitter`; reorders datagrams when larger than the
    /// gap between them.
    pub jitter: Duration,
}

impl Faults {
    /// A perfect network with 1 ms latency.
    pub fn none() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
        }
    }

    /// Loss, duplication and reordering all at once.
    pub fn lossy(loss: f64) -> Self {
        Self {
            loss,
            duplicate: 0.1,
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(20),
        }
    }
}

/// A datagram in flight.
#[derive(Debug, Clone)]
#[allow(dead_code)] // `from` is for harnesses that need it
pub struct InFlight {
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// Payload.
    pub payload: Vec<u8>,
}

/// An in-memory network: datagrams go in with [`Network::send`] and come out, at their arrival
/// time, from [`Network::pop_due`].
#[derive(Debug)]
pub struct Network {
    faults: Faults,
    rng: SplitMix64,
    /// Arrival time (and a tie-breaking counter) to datagram.
    queue: BTreeMap<(Instant, u64), InFlight>,
    counter: u64,
    /// Datagrams dropped so far.
    pub dropped: u64,
    /// Datagrams duplicated so far.
    pub duplicated: u64,
    /// Every datagram ever sent (before faults), for inspection.
    captured: Vec<InFlight>,
}

impl Network {
    /// A network with these faults, seeded.
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self {
            faults,
            rng: SplitMix64::new(seed),
            queue: BTreeMap::new(),
            counter: 0,
            dropped: 0,
            duplicated: 0,
            captured: Vec::new(),
        }
    }

    /// Puts a datagram on the wire at `now`.
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, payload: Vec<u8>) {
        self.captured.push(InFlight {
            from,
            to,
            payload: payload.clone(),
        });
        if self.rng.next_f64() < self.faults.loss {
            self.dropped += 1;
            return;
        }
        let copies = if self.rng.next_f64() < self.faults.duplicate {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.faults.jitter.mul_f64(self.rng.next_f64());
            let at = now + self.faults.latency + jitter;
            self.counter += 1;
            self.queue.insert(
                (at, self.counter),
                InFlight {
                    from,
                    to,
                    payload: payload.clone(),
                },
            );
        }
    }

    /// When the next datagram arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// The next datagram that has arrived by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        let key = *self.queue.keys().next()?;
        if key.0 > now {
            return None;
        }
        self.queue.remove(&key)
    }

    /// Every datagram ever sent (before faults), in the order sent.
    pub fn captured(&self) -> &[InFlight] {
        &self.captured
    }

    /// The first captured datagram that contains `needle`, if any.
    pub fn captured_contains(&self, needle: &[u8]) -> Option<&InFlight> {
        self.captured
            .iter()
            .find(|d| d.payload.windows(needle.len()).any(|w| w == needle))
    }

    /// The largest datagram ever sent.
    pub fn captured_max_len(&self) -> usize {
        self.captured
            .iter()
            .map(|d| d.payload.len())
            .max()
            .unwrap_or(0)
    }

    /// Every datagram `from` sent, in order.
    pub fn captured_from(&self, from: SocketAddr) -> Vec<Vec<u8>> {
        self.captured
            .iter()
            .filter(|d| d.from == from)
            .map(|d| d.payload.clone())
            .collect()
    }

    /// How many datagrams were ever sent to `to`.
    pub fn captured_to_count(&self, to: SocketAddr) -> usize {
        self.captured.iter().filter(|d| d.to == to).count()
    }

    /// Whether nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }
}

/// An address for simulated node `n`.
pub fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], n))
}
