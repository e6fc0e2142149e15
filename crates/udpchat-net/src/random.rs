//! Randomness from the operating system, for ids and tokens an attacker must not guess.

use std::fs::File;
use std::io::{self, Read};

use udpchat_proto::rng::RandomSource;

/// Reads `/dev/urandom` (the kernel's CSPRNG) a block at a time.
#[derive(Debug)]
pub struct OsRandom {
    file: File,
    buf: [u8; 512],
    pos: usize,
}

impl OsRandom {
    /// Opens the kernel's random source.
    ///
    /// # Errors
    /// `/dev/urandom` cannot be opened.
    pub fn new() -> io::Result<Self> {
        let mut rng = Self {
            file: File::open("/dev/urandom")?,
            buf: [0; 512],
            pos: 512,
        };
        rng.refill()?;
        Ok(rng)
    }

    fn refill(&mut self) -> io::Result<()> {
        self.file.read_exact(&mut self.buf)?;
        self.pos = 0;
        Ok(())
    }
}

impl RandomSource for OsRandom {
    fn next_u64(&mut self) -> u64 {
        if self.pos + 8 > self.buf.len() {
            // /dev/urandom does not fail once open; should it, stale bytes are still random.
            let _ = self.refill();
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
    fn numbers_differ() {
        let mut rng = OsRandom::new().unwrap();
        let a: Vec<u64> = (0..200).map(|_| rng.next_u64()).collect();
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len());
    }
}
