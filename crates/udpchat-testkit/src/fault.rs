//! The seeded fault model, without sockets: what happens to each datagram of one direction.
//!
//! A [`FaultLane`] is fed datagrams with [`FaultLane::handle_datagram`] and drained with
//! [`FaultLane::poll_transmit`]; [`FaultLane::poll_timeout`] tells the driver when to come back.
//! Every time-dependent method takes `now`, so the model is testable without sleeping, and all
//! randomness comes from a [`SplitMix64`] seeded by the caller.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Longest extra latency (base delay plus jitter) that a lane applies; longer settings are cut to it.
///
/// A minute is far beyond any test's patience, and the cap keeps `Instant + Duration` from
/// overflowing (which would panic) whatever a test puts in [`FaultConfig`].
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Which faults to inject into one direction of traffic.
///
/// Probabilities are in `0.0..=1.0`; values below 0 (and NaN) act as 0, values above 1 as 1.
/// The default injects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram that was not dropped is delivered twice (back to back).
    pub duplicate: f64,
    /// Probability that a datagram is held back and released right after the next datagram of
    /// the same direction, or after the proxy's maximum hold time if no datagram follows.
    pub reorder: f64,
    /// Base latency added to every datagram.
    pub delay: Duration,
    /// Extra latency drawn uniformly from `0..=jitter` for each datagram (on top of `delay`).
    /// Jitter can reorder datagrams by itself; such reorderings are not counted as "reordered".
    pub jitter: Duration,
}

impl FaultConfig {
    /// No faults at all: every datagram passes at once, in order, exactly once.
    pub const NONE: Self = Self {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
    };
}

use udpchat_proto::rng::RandomSource;
/// The seedable generator of the protocol core's simulations, shared so that both use one.
pub use udpchat_proto::rng::SplitMix64;

/// `true` with probability `p` (NaN and `p <= 0` never, `p >= 1` always).
fn chance(rng: &mut SplitMix64, p: f64) -> bool {
    rng.next_f64() < p
}

/// A uniform integer in `0..=max` (Lemire's multiply-shift; the bias is below 2^-64 per unit).
fn up_to(rng: &mut SplitMix64, max: u64) -> u64 {
    let span = u128::from(max) + 1;
    ((u128::from(rng.next_u64()) * span) >> 64) as u64
}

/// What [`FaultLane::handle_datagram`] did with one datagram, for the proxy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The datagram was dropped (by the loss roll, or because the lane was full).
    pub dropped: bool,
    /// The datagram will be delivered twice.
    pub duplicated: bool,
    /// This datagram released one that was held back, which now goes out after it.
    pub reordered: bool,
}

/// One direction of fault injection: a seeded RNG, an optional held-back datagram, and a queue
/// of datagrams waiting for their delivery time.
///
/// Call order for a driver: [`handle_datagram`](Self::handle_datagram) for each datagram that
/// arrives, then [`poll_transmit`](Self::poll_transmit) until it returns `None`, then wait
/// until [`poll_timeout`](Self::poll_timeout) (or the next arrival) and poll again.
///
/// Each datagram consumes exactly four draws from the RNG (loss, duplicate, reorder, jitter)
/// whatever its fate, so the fate of the n-th datagram depends only on the seed and n.
#[derive(Debug)]
pub struct FaultLane {
    /// The faults to inject, as configured (probabilities are interpreted by `chance`).
    config: FaultConfig,
    /// Source of every random decision of this lane.
    rng: SplitMix64,
    /// How long a held-back datagram may wait for a successor before it is released anyway.
    max_hold: Duration,
    /// Most datagrams (copies included) that may be held or queued at once; more are dropped.
    capacity: usize,
    /// The datagram held back for reordering, if any.
    held: Option<Held>,
    /// Datagrams waiting for their delivery time, earliest first (ties in arrival order).
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// Tie-breaker for `queue`, so equal delivery times keep arrival order.
    next_seq: u64,
}

/// A datagram held back by a reorder roll.
#[derive(Debug)]
struct Held {
    payload: Vec<u8>,
    /// 2 if it was also duplicated.
    copies: u8,
    /// When it would have been delivered had it not been held.
    at: Instant,
    /// When it is released even if no datagram follows.
    release_by: Instant,
}

/// A datagram copy waiting in the queue.
#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    payload: Vec<u8>,
}

impl FaultLane {
    /// A lane injecting `config`'s faults with an RNG seeded by `seed`.
    ///
    /// `max_hold` bounds how long a reordered datagram waits for a successor (and is itself cut
    /// to [`MAX_DELAY`]); `capacity` bounds the datagrams waiting in the lane (0 drops everything).
    pub fn new(config: FaultConfig, seed: u64, max_hold: Duration, capacity: usize) -> Self {
        Self {
            config,
            rng: SplitMix64::new(seed),
            max_hold: max_hold.min(MAX_DELAY),
            capacity,
            held: None,
            queue: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    /// Takes one datagram that arrived at `now` and decides its fate.
    pub fn handle_datagram(&mut self, now: Instant, payload: &[u8]) -> Outcome {
        // Draw everything up front, always in the same order, for determinism (see the type doc).
        let lost = chance(&mut self.rng, self.config.loss);
        let duplicated = chance(&mut self.rng, self.config.duplicate);
        let hold = chance(&mut self.rng, self.config.reorder);
        let delay = self.draw_delay();

        let copies: u8 = if duplicated { 2 } else { 1 };
        if lost || self.len() + usize::from(copies) > self.capacity {
            return Outcome {
                dropped: true,
                ..Outcome::default()
            };
        }
        let at = later(now, delay);
        let mut outcome = Outcome {
            duplicated,
            ..Outcome::default()
        };
        if let Some(held) = self.held.take() {
            // The held datagram goes out after this one: same time or later, and a larger seq.
            self.schedule(at, payload, copies);
            self.schedule(held.at.max(at), &held.payload, held.copies);
            outcome.reordered = true;
        } else if hold {
            self.held = Some(Held {
                payload: payload.to_vec(),
                copies,
                at,
                release_by: later(now, self.max_hold),
            });
        } else {
            self.schedule(at, payload, copies);
        }
        outcome
    }

    /// The next datagram due at `now`, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(held) = self.held.take_if(|h| h.release_by <= now) {
            self.schedule(held.at.max(now), &held.payload, held.copies);
        }
        if self.queue.peek().is_some_and(|Reverse(s)| s.at <= now) {
            return self.queue.pop().map(|Reverse(s)| s.payload);
        }
        None
    }

    /// When the lane next has something to do (a delivery or a held datagram's release), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let queued = self.queue.peek().map(|Reverse(s)| s.at);
        let held = self.held.as_ref().map(|h| h.release_by);
        match (queued, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many datagram copies are held or queued.
    pub fn len(&self) -> usize {
        self.queue.len() + self.held.as_ref().map_or(0, |h| usize::from(h.copies))
    }

    /// Whether nothing is held or queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn draw_delay(&mut self) -> Duration {
        let jitter = self.config.jitter.min(MAX_DELAY);
        // MAX_DELAY in nanoseconds fits a u64 by far, so the conversion cannot fail.
        let jitter_nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = Duration::from_nanos(up_to(&mut self.rng, jitter_nanos));
        self.config.delay.saturating_add(extra).min(MAX_DELAY)
    }

    fn schedule(&mut self, at: Instant, payload: &[u8], copies: u8) {
        for _ in 0..copies {
            self.queue.push(Reverse(Scheduled {
                at,
                seq: self.next_seq,
                payload: payload.to_vec(),
            }));
            self.next_seq += 1;
        }
    }
}

/// `now + d`, or `now` in the (practically impossible) case that the sum overflows.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(50);

    fn lane(config: FaultConfig, seed: u64) -> FaultLane {
        FaultLane::new(config, seed, HOLD, 1024)
    }

    fn drain(lane: &mut FaultLane, now: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| lane.poll_transmit(now)).collect()
    }

    #[test]
    fn splitmix64_matches_reference_output() {
        // First outputs of the reference splitmix64.c for seed 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn no_faults_passes_everything_at_once_in_order() {
        let now = Instant::now();
        let mut lane = lane(FaultConfig::NONE, 1);
        for i in 0..10u8 {
            assert_eq!(lane.handle_datagram(now, &[i]), Outcome::default());
        }
        let out = drain(&mut lane, now);
        assert_eq!(out, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
        assert!(lane.is_empty());
        assert_eq!(lane.poll_timeout(), None);
    }

    #[test]
    fn certain_loss_drops_everything_and_nan_means_never() {
        let now = Instant::now();
        let mut all = lane(
            FaultConfig {
                loss: 1.0,
                ..FaultConfig::NONE
            },
            1,
        );
        assert!(all.handle_datagram(now, b"x").dropped);
        assert!(drain(&mut all, now).is_empty());

        let nan = FaultConfig {
            loss: f64::NAN,
            duplicate: f64::NAN,
            reorder: -3.0,
            ..FaultConfig::NONE
        };
        let mut none = lane(nan, 1);
        for _ in 0..100 {
            assert_eq!(none.handle_datagram(now, b"x"), Outcome::default());
        }
        assert_eq!(drain(&mut none, now).len(), 100);
    }

    #[test]
    fn certain_duplication_sends_two_copies_back_to_back() {
        let now = Instant::now();
        let mut lane = lane(
            FaultConfig {
                duplicate: 2.0,
                ..FaultConfig::NONE
            },
            1,
        );
        assert!(lane.handle_datagram(now, b"a").duplicated);
        assert!(lane.handle_datagram(now, b"b").duplicated);
        let out = drain(&mut lane, now);
        assert_eq!(out, [b"a", b"a", b"b", b"b"].map(|s| s.to_vec()));
    }

    #[test]
    fn delay_holds_until_due() {
        let now = Instant::now();
        let delay = Duration::from_millis(30);
        let mut lane = lane(
            FaultConfig {
                delay,
                ..FaultConfig::NONE
            },
            1,
        );
        lane.handle_datagram(now, b"a");
        assert_eq!(lane.poll_transmit(now), None);
        assert_eq!(lane.poll_timeout(), Some(now + delay));
        assert_eq!(lane.poll_transmit(now + delay), Some(b"a".to_vec()));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let now = Instant::now();
        let (delay, jitter) = (Duration::from_millis(10), Duration::from_millis(5));
        let mut lane = lane(
            FaultConfig {
                delay,
                jitter,
                ..FaultConfig::NONE
            },
            9,
        );
        for _ in 0..200 {
            lane.handle_datagram(now, b"x");
            let at = lane.poll_timeout().expect("one datagram is queued");
            assert!(at >= now + delay && at <= now + delay + jitter);
            assert!(lane.poll_transmit(at).is_some());
        }
    }

    #[test]
    fn huge_delays_are_capped_and_do_not_panic() {
        let now = Instant::now();
        let mut lane = FaultLane::new(
            FaultConfig {
                delay: Duration::MAX,
                jitter: Duration::MAX,
                reorder: 1.0,
                ..FaultConfig::NONE
            },
            3,
            Duration::MAX,
            8,
        );
        lane.handle_datagram(now, b"a");
        lane.handle_datagram(now, b"b");
        assert_eq!(lane.poll_transmit(now), None);
        let out = drain(&mut lane, now + 2 * MAX_DELAY);
        assert_eq!(out, [b"b".to_vec(), b"a".to_vec()]);
    }

    #[test]
    fn reorder_releases_after_the_next_datagram_or_at_max_hold() {
        let now = Instant::now();
        let mut lane = lane(
            FaultConfig {
                reorder: 1.0,
                ..FaultConfig::NONE
            },
            1,
        );
        assert_eq!(lane.handle_datagram(now, b"1"), Outcome::default());
        assert_eq!(lane.poll_transmit(now), None);
        assert!(lane.handle_datagram(now, b"2").reordered);
        assert_eq!(drain(&mut lane, now), [b"2".to_vec(), b"1".to_vec()]);

        // Held again, and nothing follows: released at the max hold time.
        lane.handle_datagram(now, b"3");
        assert_eq!(lane.poll_timeout(), Some(now + HOLD));
        assert_eq!(lane.poll_transmit(now + HOLD / 2), None);
        assert_eq!(lane.poll_transmit(now + HOLD), Some(b"3".to_vec()));
        assert!(lane.is_empty());
    }

    #[test]
    fn a_full_lane_drops() {
        let now = Instant::now();
        let mut lane = FaultLane::new(
            FaultConfig {
                delay: Duration::from_millis(1),
                ..FaultConfig::NONE
            },
            1,
            HOLD,
            2,
        );
        assert!(!lane.handle_datagram(now, b"a").dropped);
        assert!(!lane.handle_datagram(now, b"b").dropped);
        assert!(lane.handle_datagram(now, b"c").dropped);
        assert_eq!(lane.len(), 2);
    }

    #[test]
    fn same_seed_same_fates() {
        let config = FaultConfig {
            loss: 0.3,
            duplicate: 0.2,
            reorder: 0.2,
            ..FaultConfig::NONE
        };
        let now = Instant::now();
        let run = |seed| {
            let mut lane = lane(config, seed);
            let mut out = Vec::new();
            for i in 0..500u16 {
                lane.handle_datagram(now, &i.to_be_bytes());
                out.extend(drain(&mut lane, now));
            }
            out.extend(drain(&mut lane, now + HOLD));
            out
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
