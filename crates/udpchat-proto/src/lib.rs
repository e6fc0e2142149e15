//! The sans-IO core of udpchat.
//!
//! This crate holds everything about udpchat that can be decided without touching the outside world:
//! how datagram payloads become text, how text is made safe to show on a terminal, and the state
//! machines that decide what to send and when a conversation ends. It does **no I/O** (no sockets,
//! no terminal, no files) and **never reads the clock**: drivers (the `udpchat` crate) own the
//! sockets and the keyboard and feed this crate with what arrived, then drain what it wants sent.
//!
//! Nor does it draw randomness of its own: ids, tokens, MAC keys, hash-map seeds and the Noise
//! handshakes' ephemeral keys all come from the [`rng::RandomSource`] the driver hands in (the
//! operating system's in a real run, a seeded [`rng::SplitMix64`] in tests), so a simulation's
//! seed replays its run byte for byte.
//!
//! ```text
//!   keyboard lines ──► handle_line()      ┌──────────────┐  poll_transmit() ──► socket.send_to()
//!                                         │ Conversation │
//!   socket.recv_from() ─► handle_datagram │  (lab::)     │  poll_event()    ──► screen
//!                                         └──────────────┘
//! ```
//!
//! Layers:
//! - [`text`]: payload decoding and terminal-escape neutralisation (pure functions).
//! - [`lab`]: the two-party chat of the lab's steps 3 and 4 (turn-based or full duplex), as a state
//!   machine over plain UTF-8 datagrams, the lab's wire format: one message per datagram, no framing.

pub mod client;
pub mod crypto;
pub mod guest_code;
mod half_open;
pub mod lab;
pub mod limiter;
mod mac;
pub mod reliable;
pub mod rng;
pub mod room;
pub mod sender_limit;
pub mod server;
pub mod text;
pub mod wire;

#[cfg(test)]
mod endpoint_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
pub(crate) mod testing;
