//! Helpers for udpchat's end-to-end tests: a **lossy UDP proxy** on loopback.
//!
//! The kernel here has no `tc netem`, so tests that want a bad network put a [`LossyProxy`]
//! between the real udpchat clients and server. It drops, duplicates, reorders and delays
//! datagrams, each direction with its own [`FaultConfig`], and every decision comes from an RNG
//! seeded by [`ProxyConfig::seed`], so a failing run can be replayed. [`LossyProxy::stats`]
//! counts what it did, so a test can assert that the faults really happened.
//!
//! ```text
//!  client A ──┐                      ┌─ upstream socket A ──┐
//!  client B ──┼──► listening socket ─┼─ upstream socket B ──┼──► server
//!  client C ──┘   (proxy.addr())     └─ upstream socket C ──┘
//!                  up lanes: faults for client → server; down lanes: server → client
//! ```
//!
//! Each client gets its own upstream socket, so the server sees one distinct peer per client,
//! and the server's replies on that socket go back to that client from the listening socket.
//!
//! What it is not: a network emulator with bandwidth limits or queues of realistic size, nor
//! something for production. It binds only loopback addresses, uses plain threads and blocking
//! sockets with read timeouts (one listener thread plus one thread per client), and stops all of
//! them when the [`LossyProxy`] is dropped. No datagram (0 to 65,535 bytes) can make it panic.
//!
//! Layers:
//! - [`fault`]: the sans-IO fault model ([`FaultLane`]), driven by explicit `now` values and
//!   usable on its own in in-memory test networks.
//! - [`proxy`]: the sockets and threads that run two lanes per client.

#![warn(missing_docs)]

pub mod fault;
pub mod proxy;

pub use fault::{FaultConfig, FaultLane, SplitMix64};
pub use proxy::{LossyProxy, ProxyConfig, ProxyStats};
