//! The socket buffers a server asks the kernel for: shared by `udpchat serve` and the
//! benchmark's baseline relay, so that both are measured with the same room for bursts.

use std::io;
use std::net::UdpSocket;

/// Socket buffers a server asks for: a burst of datagrams waits in the kernel instead of
/// being dropped while the server is busy.
pub const SERVER_SOCKET_BUFFER: usize = 8 << 20;

/// Asks for [`SERVER_SOCKET_BUFFER`] bytes of receive and send buffer; returns a note for the
/// user when the kernel grants less (it caps them at `net.core.rmem_max` / `wmem_max`).
pub fn grow_buffers(socket: &UdpSocket) -> Option<String> {
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(SERVER_SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SERVER_SOCKET_BUFFER);
    // Linux reports twice what was asked (half of it is bookkeeping).
    let granted = |size: io::Result<usize>| size.unwrap_or(0) / 2;
    let (recv, send) = (
        granted(sock.recv_buffer_size()),
        granted(sock.send_buffer_size()),
    );
    (recv < SERVER_SOCKET_BUFFER || send < SERVER_SOCKET_BUFFER).then(|| {
        format!(
            "note: the kernel capped the socket buffers at {} KiB receive and {} KiB send (asked {} KiB each), so a busy server may drop bursts; to allow more: sudo sysctl -w net.core.rmem_max={} net.core.wmem_max={}",
            recv / 1024,
            send / 1024,
            SERVER_SOCKET_BUFFER / 1024,
            SERVER_SOCKET_BUFFER,
            SERVER_SOCKET_BUFFER
        )
    })
}
