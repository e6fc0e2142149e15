//! Randomness without a clock or an operating system: the caller supplies the source.
//!
//! Everything random in this crate comes from a [`RandomSource`] handed in by the driver:
//! connection ids, tokens and nonces, the server's MAC keys, the seeds of its hash maps
//! ([`SeededState`]), and the Noise handshakes' ephemeral keys (see
//! [`crypto`](crate::crypto)). The real driver gives a cryptographic generator seeded by the
//! operating system (`udpchat_net::OsRandom`, through `getrandom`); tests give [`SplitMix64`]
//! with a fixed seed, so every run of a simulation is the same run, byte for byte.

use std::hash::BuildHasher;

/// A source of random 64-bit numbers.
pub trait RandomSource: Send {
    /// The next random number.
    fn next_u64(&mut self) -> u64;
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, statistically good, and **not**
/// cryptographic. For tests and simulations; real endpoints get an unpredictable source.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A number in `0.0..1.0`, for fault injection in simulations.
    pub fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The hasher of the core's hash maps: foldhash, several times faster than SipHash on the
/// small keys used here (addresses, ids), with a per-map seed drawn from the injected
/// [`RandomSource`]. So the maps' iteration order (which reaches the wire: the order of the
/// Close datagrams at shutdown, which entry a full table evicts) is the same for the same
/// seed, and, with the drivers' unpredictable source, not predictable from outside.
///
/// It has no `Default` on purpose: a map must be given its seed ([`SeededState::new`]).
#[derive(Debug, Clone)]
pub struct SeededState(foldhash::fast::FixedState);

/// A hash map seeded from the injected randomness ([`SeededState`]).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, SeededState>;
/// A hash set seeded from the injected randomness ([`SeededState`]).
pub(crate) type HashSet<K> = std::collections::HashSet<K, SeededState>;

impl SeededState {
    /// A hasher seeded with the next number of `rng`.
    pub fn new(rng: &mut dyn RandomSource) -> Self {
        Self(foldhash::fast::FixedState::with_seed(rng.next_u64()))
    }
}

impl BuildHasher for SeededState {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline(always)]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// An empty map seeded from `rng`.
pub(crate) fn new_map<K, V>(rng: &mut dyn RandomSource) -> HashMap<K, V> {
    HashMap::with_hasher(SeededState::new(rng))
}

/// An empty set seeded from `rng`.
pub(crate) fn new_set<K>(rng: &mut dyn RandomSource) -> HashSet<K> {
    HashSet::with_hasher(SeededState::new(rng))
}

/// Fills `dest` from `rng`, eight bytes at a time (little-endian).
pub(crate) fn fill_bytes(rng: &mut dyn RandomSource, dest: &mut [u8]) {
    for chunk in dest.chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let x = SplitMix64::new(1).next_f64();
        assert!((0.0..1.0).contains(&x));
    }

    #[test]
    fn maps_seeded_alike_iterate_alike() {
        let order = |seed| {
            let mut map = new_map(&mut SplitMix64::new(seed));
            map.extend((0..64u32).map(|k| (k, ())));
            map.into_keys().collect::<Vec<_>>()
        };
        assert_eq!(order(5), order(5));
        assert_ne!(order(5), order(6), "the seed reaches the hasher");
    }
}
