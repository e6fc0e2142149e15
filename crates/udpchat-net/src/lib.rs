//! Drivers for the udpchat sans-IO core: they own the socket, the timer and the shutdown
//! signal, and do nothing but move bytes and time between them and the state machines in
//! [`udpchat_proto`].
//!
//! - [`serve`]: runs a [`Server`](udpchat_proto::server::Server) on a UDP socket, on a thread
//!   of its own that waits in `poll(2)` (not epoll: see the module's note on what that costs);
//!   [`serve_with`] adds sending threads that share the output, each member's datagrams sent
//!   by one of them, in order.
//! - [`OsRandom`]: the operating system's randomness (`getrandom`), the source the core draws
//!   its connection ids, tokens, keys and hash seeds from.
//! - [`BatchIo`]: `recvmmsg`/`sendmmsg`, many datagrams per system call.
//! - [`grow_buffers`]: the socket buffers a server asks for, and a note when the kernel caps them.

mod batch;
mod buffers;
mod lanes;
mod random;
mod serve;

pub use batch::{BATCH, BatchIo, SEND_BATCH};
pub use buffers::{SERVER_SOCKET_BUFFER, grow_buffers};
pub use random::OsRandom;
pub use serve::{IO_LOOP_BOUND, OUTPUT_BOUND, ServeOptions, Wire, serve, serve_with};
