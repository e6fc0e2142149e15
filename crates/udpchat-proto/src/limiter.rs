//! Per-source rate limiting: token buckets per address and per network prefix (/24 for IPv4,
//! /64 for IPv6), in a table of bounded size.
//!
//! A flood from one address empties that address's bucket; a flood spread over a whole subnet
//! (or a spoofer cycling addresses within one) empties the prefix's bucket. The table never
//! grows beyond its capacity: when full, entries whose bucket has refilled (idle sources) are
//! forgotten first, else an arbitrary one, which at worst gives a flooder a fresh bucket, never
//! more memory.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::rng::{HashMap, RandomSource, new_map};

/// Rates and sizes of a [`RateLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Tokens per second for one address.
    pub per_address_rate: f64,
    /// Bucket size (burst) for one address.
    pub per_address_burst: f64,
    /// Tokens per second for one /24 (IPv4) or /64 (IPv6).
    pub per_prefix_rate: f64,
    /// Bucket size for one prefix.
    pub per_prefix_burst: f64,
    /// Most sources tracked at once (addresses and prefixes together).
    pub table_size: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_address_rate: 20.0,
            per_address_burst: 40.0,
            per_prefix_rate: 200.0,
            per_prefix_burst: 400.0,
            table_size: 4096,
        }
    }
}

/// Whom a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Address(IpAddr),
    /// The address with its host bits cleared, and the prefix length.
    Prefix(IpAddr, u8),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets per source. See the [module docs](self).
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: HashMap<Source, Bucket>,
    /// Requests refused so far.
    pub refused: u64,
}

/// The /24 or /64 that holds `ip`.
fn prefix(ip: IpAddr) -> Source {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Source::Prefix(IpAddr::from([a, b, c, 0]), 24)
        }
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            Source::Prefix(IpAddr::from(s), 64)
        }
    }
}

impl RateLimiter {
    /// An empty limiter; its table seeded from `rng`.
    pub fn new(limits: RateLimits, rng: &mut dyn RandomSource) -> Self {
        Self {
            limits,
            buckets: new_map(rng),
            refused: 0,
        }
    }

    /// Whether a request from `ip` may go ahead now; if so, it costs one token from both the
    /// address's and the prefix's bucket.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let address = Source::Address(ip);
        let net = prefix(ip);
        let (ar, ab) = (self.limits.per_address_rate, self.limits.per_address_burst);
        let (pr, pb) = (self.limits.per_prefix_rate, self.limits.per_prefix_burst);
        let ok = self.tokens(now, address, ar, ab) >= 1.0 && self.tokens(now, net, pr, pb) >= 1.0;
        if ok {
            for source in [address, net] {
                if let Some(bucket) = self.buckets.get_mut(&source) {
                    bucket.tokens -= 1.0;
                }
            }
        } else {
            self.refused += 1;
        }
        ok
    }

    /// How many sources are tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The bucket's tokens after refilling to `now` (creating it full if new).
    fn tokens(&mut self, now: Instant, source: Source, rate: f64, burst: f64) -> f64 {
        if !self.buckets.contains_key(&source) {
            self.make_room(now);
            self.buckets.insert(
                source,
                Bucket {
                    tokens: burst,
                    updated: now,
                },
            );
        }
        let Some(bucket) = self.buckets.get_mut(&source) else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * rate).min(burst);
        bucket.updated = now;
        bucket.tokens
    }

    /// Keeps the table under its size: forgets idle sources first (a refilled bucket carries no
    /// information), then an arbitrary one.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.limits.table_size {
            return;
        }
        // A source untouched this long has a full bucket again, whatever its rate.
        let idle = Duration::from_secs_f64(
            (self.limits.per_address_burst / self.limits.per_address_rate)
                .max(self.limits.per_prefix_burst / self.limits.per_prefix_rate),
        );
        let stale: Vec<Source> = self
            .buckets
            .iter()
            .filter(|(_, b)| now.saturating_duration_since(b.updated) >= idle)
            .map(|(s, _)| *s)
            .take(self.limits.table_size / 4 + 1)
            .collect();
        if stale.is_empty()
            && let Some(any) = self.buckets.keys().next().copied()
        {
            self.buckets.remove(&any);
        }
        for source in stale {
            self.buckets.remove(&source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_burst_then_its_rate() {
        let mut l = RateLimiter::new(RateLimits::default(), &mut SplitMix64::new(1));
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| l.allow(t0, ip("10.0.0.1"))).count();
        assert_eq!(allowed, 40);
        // One second later: 20 more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.allow(t1, ip("10.0.0.1"))).count(), 20);
        // Another address is not affected.
        assert!(l.allow(t1, ip("10.0.1.1")));
    }

    #[test]
    fn a_subnet_shares_a_prefix_bucket() {
        let mut l = RateLimiter::new(RateLimits::default(), &mut SplitMix64::new(1));
        let t0 = Instant::now();
        let allowed = (0..=255u8)
            .flat_map(|host| std::iter::repeat_n(host, 5))
            .filter(|host| l.allow(t0, IpAddr::from([192, 0, 2, *host])))
            .count();
        assert_eq!(allowed, 400, "the /24's burst");
        // IPv6: the /64 is shared, another /64 is not.
        let t1 = t0 + Duration::from_secs(100);
        let allowed = (0..1000u16)
            .filter(|i| l.allow(t1, IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, *i])))
            .count();
        assert_eq!(allowed, 400);
        assert!(l.allow(t1, ip("2001:db8:0:2::1")));
    }

    #[test]
    fn the_table_stays_bounded_under_a_spoofed_flood() {
        let limits = RateLimits {
            table_size: 100,
            ..RateLimits::default()
        };
        let mut l = RateLimiter::new(limits, &mut SplitMix64::new(1));
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            l.allow(
                t0 + Duration::from_micros(u64::from(i)),
                IpAddr::from(i.to_be_bytes()),
            );
            assert!(l.len() <= 100);
        }
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mut l = RateLimiter::new(RateLimits::default(), &mut SplitMix64::new(1));
        let t0 = Instant::now();
        for _ in 0..40 {
            assert!(l.allow(t0, ip("::ffff:10.0.0.1")));
        }
        assert!(!l.allow(t0, ip("10.0.0.1")));
    }
}
