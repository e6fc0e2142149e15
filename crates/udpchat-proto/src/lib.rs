//! The sans-IO core of udpchat.
//!
//! This crate holds everything about udpchat that can be decided without touching the outside
//! world: the wire format, reliable delivery, the secure handshake, the rooms, and the state
//! machines that decide what to send and when. It does **no I/O** (no sockets, no terminal, no
//! files) and **never reads the clock** (every time-dependent call takes `now: Instant`). Drivers
//! (`udpchat-net` for the server, the `udpchat` crate for the clients) own the sockets, timers
//! and keyboard: they feed in what arrived, then drain what the core wants sent.
//!
//! Nor does it draw randomness of its own: ids, tokens, MAC keys, hash-map seeds and the Noise
//! handshakes' ephemeral keys all come from the [`rng::RandomSource`] the driver hands in (the
//! operating system's in a real run, a seeded [`rng::SplitMix64`] in tests), so a simulation's
//! seed replays its run byte for byte.
//!
//! Every state machine has the same four families of methods, called in this order: inputs
//! (`handle_datagram(now, ..)`, `handle_timeout(now)`), commands (`send`, `close`,
//! `shutdown`), outputs drained until `None` (`poll_transmit(now)`, then `poll_timeout()`,
//! then `poll_event()`), and plain getters.
//!
//! # Layers, bottom up
//!
//! | layer | modules | what it decides |
//! |---|---|---|
//! | bytes | [`wire`] ([`packet`](wire::packet), [`message`](wire::message)), [`text`] | datagrams and messages, decoded (never panicking) and encoded; untrusted text made safe to show |
//! | one peer | [`reliable`] ([`Connection`](reliable::Connection)), [`crypto`] | exactly-once, in-order delivery over loss; the Noise NX handshake and sealing |
//! | endpoints | [`client`], [`server`] (with the private `half_open` and `mac`), [`guest_code`] | handshakes, admission, cookies, guests, fan-out, timers |
//! | limits | [`limiter`], [`sender_limit`] | per-source handshake rates; each sender's message and byte rate |
//! | the chat | [`room`] ([`Chat`](room::Chat)) | rooms, nicks, history, topics, private messages: no transport at all |
//! | the lab | [`lab`] | the lab's two-party chat (steps 3 and 4) over plain UTF-8 datagrams |
//! | support | [`rng`] | the injected randomness (seedable, so a simulation replays) |
//!
//! # A datagram's path through the server
//!
//! ```text
//! driver ──► Server::handle_datagram(now, from, bytes)
//!              ├─ framed (0xF5) ─► on_framed ─► Hello/SecureHello: on_hello (Retry or Welcome)
//!              │                           └─► Data/Close (Sealed: on_sealed opens it first)
//!              │                                 ─► on_connection_input ─► Connection::handle_data
//!              │                                 ─► after_connection_input: poll_event, sender rate
//!              └─ plain text ───► on_guest_line (budget, `/ok`, sender rate)
//!                                    both ─► Chat::apply ─► Outbox (recipient, message)
//!                                    ─► deliver ─► Connection::send_message, or a guest's line
//! driver ◄── Server::poll_transmit(now) ◄── Connection::poll_transmit_into, sealed if secure
//! ```
//!
//! The lab's chat is smaller: [`lab::Conversation`] takes lines and datagrams and gives
//! datagrams and events, with no framing.
//!
//! ```text
//!   keyboard lines ──► handle_line()      ┌──────────────┐  poll_transmit() ──► socket.send_to()
//!                                         │ Conversation │
//!   socket.recv_from() ─► handle_datagram │  (lab::)     │  poll_event()    ──► screen
//!                                         └──────────────┘
//! ```
//!
//! `ARCHITECTURE.md`, at the root of the repository, follows the datagram through the drivers
//! too, and says where each invariant is enforced and tested.

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
