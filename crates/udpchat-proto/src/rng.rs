//! Randomness without a clock or an operating system: the caller supplies the source.
//!
//! Connection ids, tokens and nonces come from a [`RandomSource`] handed in by the driver. The
//! real driver gives a cryptographic generator seeded by the operating system; tests give
//! [`SplitMix64`] with a fixed seed, so every run of a simulation is the same run.

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
}
