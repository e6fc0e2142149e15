//! The server's keyed MAC, for what it hands out statelessly and checks when it comes back:
//! handshake cookies and guest codes.
//!
//! BLAKE2s (RFC 7693) in its keyed mode, from the `blake2` crate that snow already brings in.
//! The key is drawn once from the server's [`RandomSource`], so a seed replays a run; each use
//! names its own `purpose`, so that a cookie can never be taken for a guest code or the other
//! way round.

use std::net::{IpAddr, SocketAddr};

use blake2::Blake2sMac;
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};

use crate::rng::RandomSource;

/// A secret MAC key (256 bits).
#[derive(Clone)]
pub(crate) struct MacKey([u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    /// A fresh key from `rng`.
    pub(crate) fn random(rng: &mut dyn RandomSource) -> Self {
        let mut key = [0u8; 32];
        crate::rng::fill_bytes(rng, &mut key);
        Self(key)
    }

    /// The MAC of (`purpose`, `addr`, `window`): what the server gives `addr` in time window
    /// `window`, checked by computing it again. The address is taken in its canonical form
    /// (an IPv4-mapped IPv6 address is its IPv4 address), with its port.
    pub(crate) fn for_address(&self, purpose: &[u8], addr: SocketAddr, window: u64) -> [u8; 32] {
        // BLAKE2s takes keys of up to 32 bytes: this one is its full size, no error possible.
        let mut mac = <Blake2sMac<U32> as KeyInit>::new(&self.0.into());
        // Length-prefixed, so that no two inputs run together.
        mac.update(&[purpose.len() as u8]);
        mac.update(purpose);
        let ip = match addr.ip().to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        mac.update(&ip.octets());
        mac.update(&addr.port().to_be_bytes());
        mac.update(&window.to_be_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn the_mac_depends_on_key_purpose_address_and_window() {
        let key = MacKey::random(&mut SplitMix64::new(1));
        let other = MacKey::random(&mut SplitMix64::new(2));
        let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:4000".parse().unwrap();
        let base = key.for_address(b"cookie", a, 7);
        assert_eq!(base, key.for_address(b"cookie", mapped, 7), "canonical");
        assert_ne!(base, other.for_address(b"cookie", a, 7));
        assert_ne!(base, key.for_address(b"guest", a, 7));
        assert_ne!(
            base,
            key.for_address(b"cookie", "192.0.2.1:4001".parse().unwrap(), 7)
        );
        assert_ne!(
            base,
            key.for_address(b"cookie", "192.0.2.2:4000".parse().unwrap(), 7)
        );
        assert_ne!(base, key.for_address(b"cookie", a, 8));
    }
}
