//! Randomness from the operating system, for ids, tokens and keys an attacker must not guess.

use std::io;

use udpchat_proto::rng::RandomSource;

/// The operating system's CSPRNG (`getrandom(2)` on Linux, through the `getrandom` crate),
/// read a block at a time.
///
/// Everything random in the core comes from the source its driver gives it, so this is what
/// makes connection ids, tokens, MAC keys, hash seeds and the Noise handshakes' ephemeral keys
/// unpredictable in a real run.
#[derive(Debug)]
pub struct OsRandom {
    buf: [u8; 512],
    pos: usize,
}

impl OsRandom {
    /// A source whose first block is already read: a system without randomness is found out
    /// here, at startup, not later.
    ///
    /// # Errors
    /// The operating system gives no random bytes.
    pub fn new() -> io::Result<Self> {
        let mut rng = Self {
            buf: [0; 512],
            pos: 0,
        };
        getrandom::fill(&mut rng.buf)?;
        Ok(rng)
    }
}

impl RandomSource for OsRandom {
    /// # Panics
    /// If the operating system stops giving random bytes after [`OsRandom::new`] got some (it
    /// does not on Linux once its pool is initialised): carrying on with stale bytes would repeat
    /// ids and keys.
    fn next_u64(&mut self) -> u64 {
        if self.pos + 8 > self.buf.len() {
            if let Err(e) = getrandom::fill(&mut self.buf) {
                panic!("the operating system's random source failed: {e}");
            }
            self.pos = 0;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        u64::from_ne_bytes(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_differ_across_refills() {
        let mut rng = OsRandom::new().unwrap();
        // 200 numbers: three blocks of 64.
        let a: Vec<u64> = (0..200).map(|_| rng.next_u64()).collect();
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
        let mut other = OsRandom::new().unwrap();
        assert_ne!(other.next_u64(), a[0], "two sources, two streams");
    }
}
