//! The code a guest sends back (`/ok K7F3QX2M`) to show it receives at its address.
//!
//! Stateless: the code is a MAC, keyed by a server secret, over the guest's address and the
//! current time window, shown in [`CODE_LEN`] characters of an unambiguous alphabet (no 0/O,
//! no 1/I): 40 bits, short to type, not to be guessed. A code is good for the window it was
//! made in and the next one ([`WINDOW`] to twice that), then it expires; a guest that comes
//! back later is given the new one.
//!
//! Wrong codes are counted. After [`WRONG_GUESSES`] wrong codes from an address within
//! [`LOCKOUT`], further `/ok` from it are ignored until that long after the last wrong one.
//! Who guesses blindly (a spoofer, who never sees the code sent to the address) thus tries a
//! handful of the 2^40 codes per address and lockout, not thousands. The failure table is
//! bounded ([`FAILURE_TABLE`]): when full, expired records go first, then any one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::mac::MacKey;
use crate::rng::{HashMap, RandomSource, new_map};

/// Characters in a code.
pub const CODE_LEN: usize = 8;

/// The code's alphabet: 32 characters (5 bits each), none that reads like another (no 0, O,
/// 1, I). Codes are accepted in either case.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// How long one window lasts: a code stays valid 5 to 10 minutes, time enough to type it.
pub const WINDOW: Duration = Duration::from_secs(300);

/// Wrong codes from one address before its `/ok` are ignored.
pub const WRONG_GUESSES: u32 = 5;

/// How long after its last wrong code an address stays ignored (and its wrong codes counted).
pub const LOCKOUT: Duration = Duration::from_secs(60);

/// Addresses whose wrong codes are remembered at once.
pub const FAILURE_TABLE: usize = 4096;

/// What became of a `/ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The right code, current or of the previous window.
    Accepted,
    /// A wrong (or expired) code: counted.
    Wrong,
    /// Too many wrong codes lately: not even looked at.
    Ignored,
}

/// Wrong codes from one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Makes and checks guest codes. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct GuestCodes {
    key: MacKey,
    /// The time windows count from (the first code made or checked).
    epoch: Option<Instant>,
    failures: HashMap<SocketAddr, Failures>,
    /// Wrong codes so far (a server stat).
    pub(crate) wrong: u64,
}

impl GuestCodes {
    /// Codes under a fresh secret from `rng`.
    pub(crate) fn new(rng: &mut dyn RandomSource) -> Self {
        Self {
            key: MacKey::random(rng),
            epoch: None,
            failures: new_map(rng),
            wrong: 0,
        }
    }

    /// The code for `addr` now.
    pub(crate) fn code(&mut self, now: Instant, addr: SocketAddr) -> String {
        let window = self.window(now);
        self.code_in(addr, window)
    }

    /// Checks the code `typed` by `addr` (what followed `/ok`, spaces and case ignored).
    pub(crate) fn check(&mut self, now: Instant, addr: SocketAddr, typed: &str) -> Verdict {
        if let Some(f) = self.failures.get(&addr) {
            if now.saturating_duration_since(f.last) >= LOCKOUT {
                self.failures.remove(&addr);
            } else if f.count >= WRONG_GUESSES {
                return Verdict::Ignored;
            }
        }
        let typed: String = typed
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let window = self.window(now);
        // Both compared whole (a string compare may stop early, but the attacker learns
        // nothing from timing across a network it cannot see the answer on).
        let current = self.code_in(addr, window) == typed;
        let previous = window > 0 && self.code_in(addr, window - 1) == typed;
        if current || previous {
            self.failures.remove(&addr);
            return Verdict::Accepted;
        }
        self.wrong += 1;
        if !self.failures.contains_key(&addr) {
            self.make_room(now);
        }
        let f = self.failures.entry(addr).or_insert(Failures {
            count: 0,
            last: now,
        });
        f.count += 1;
        f.last = now;
        Verdict::Wrong
    }

    fn window(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_secs() / WINDOW.as_secs()
    }

    fn code_in(&self, addr: SocketAddr, window: u64) -> String {
        let mac = self.key.for_address(b"guest code", addr, window);
        let mut bits = u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], 0, 0, 0]);
        (0..CODE_LEN)
            .map(|_| {
                let c = ALPHABET[(bits & 31) as usize];
                bits >>= 5;
                char::from(c)
            })
            .collect()
    }

    /// Keeps the failure table under its bound: expired records first, else any one.
    fn make_room(&mut self, now: Instant) {
        if self.failures.len() < FAILURE_TABLE {
            return;
        }
        self.failures
            .retain(|_, f| now.saturating_duration_since(f.last) < LOCKOUT);
        if self.failures.len() >= FAILURE_TABLE
            && let Some(any) = self.failures.keys().next().copied()
        {
            self.failures.remove(&any);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 4000))
    }

    #[test]
    fn a_code_is_eight_unambiguous_characters_per_address_and_window() {
        let mut codes = GuestCodes::new(&mut SplitMix64::new(1));
        let t0 = Instant::now();
        let code = codes.code(t0, addr(1));
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
        assert!(code.parse::<u32>().is_err(), "not a number: {code}");
        assert_ne!(code, codes.code(t0, addr(2)), "per address");
        assert_ne!(
            code,
            codes.code(t0, "192.0.2.1:4001".parse().unwrap()),
            "per port"
        );
        assert_ne!(code, codes.code(t0 + WINDOW, addr(1)), "per window");
        let other = GuestCodes::new(&mut SplitMix64::new(2)).code(t0, addr(1));
        assert_ne!(code, other, "per server secret");
        // Many addresses: all different (40 bits).
        let all: std::collections::HashSet<String> =
            (0..=255).map(|n| codes.code(t0, addr(n))).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn a_code_is_good_in_its_window_and_the_next_then_expires() {
        let mut codes = GuestCodes::new(&mut SplitMix64::new(3));
        let t0 = Instant::now();
        let code = codes.code(t0, addr(1));
        assert_eq!(codes.check(t0, addr(1), &code), Verdict::Accepted);
        let lower = format!(" {} ", code.to_ascii_lowercase());
        assert_eq!(
            codes.check(t0, addr(1), &lower),
            Verdict::Accepted,
            "any case"
        );
        assert_eq!(codes.check(t0, addr(2), &code), Verdict::Wrong, "another's");
        let next = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(codes.check(next, addr(1), &code), Verdict::Accepted);
        let expired = t0 + 2 * WINDOW + Duration::from_secs(1);
        assert_eq!(codes.check(expired, addr(1), &code), Verdict::Wrong);
        let fresh = codes.code(expired, addr(1));
        assert_eq!(codes.check(expired, addr(1), &fresh), Verdict::Accepted);
    }

    #[test]
    fn wrong_guesses_are_counted_and_then_ignored_for_a_while() {
        let mut codes = GuestCodes::new(&mut SplitMix64::new(4));
        let t0 = Instant::now();
        let code = codes.code(t0, addr(1));
        for guess in 0..WRONG_GUESSES {
            assert_eq!(
                codes.check(t0, addr(1), &format!("{guess:04}")),
                Verdict::Wrong
            );
        }
        assert_eq!(codes.wrong, u64::from(WRONG_GUESSES));
        // Now even the right code is not looked at, and nothing more is counted.
        assert_eq!(codes.check(t0, addr(1), &code), Verdict::Ignored);
        assert_eq!(codes.wrong, u64::from(WRONG_GUESSES));
        // Another address is not affected.
        let theirs = codes.code(t0, addr(2));
        assert_eq!(codes.check(t0, addr(2), &theirs), Verdict::Accepted);
        // After the lockout, the address may try again.
        let later = t0 + LOCKOUT;
        assert_eq!(codes.check(later, addr(1), &code), Verdict::Accepted);
    }

    #[test]
    fn the_failure_table_stays_bounded() {
        let mut codes = GuestCodes::new(&mut SplitMix64::new(5));
        let t0 = Instant::now();
        for i in 0..(2 * FAILURE_TABLE as u32) {
            let from = SocketAddr::from((i.to_be_bytes(), 1));
            codes.check(t0, from, "WRONG");
            assert!(codes.failures.len() <= FAILURE_TABLE);
        }
    }
}
