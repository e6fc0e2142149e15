//! Reliable, ordered delivery of messages over one connection: the part of udpchat that makes a
//! lossy, duplicating, reordering network look like a perfect pipe.
//!
//! - [`rtt`]: RTT estimation and the retransmission timeout (RFC 6298).
//! - [`connection`]: the [`Connection`] state machine: sequence numbers,
//!   cumulative and selective acks, retransmission, duplicate suppression, in-order delivery,
//!   fragmentation and reassembly, bounded windows, keepalives, idle timeout and closing.

pub mod connection;
pub mod rtt;

pub use connection::{
    CloseReason, Connection, ConnectionConfig, ConnectionEvent, ConnectionStats, SendError,
};
