//! Step 1 of the UDP chat lab, client side: send "hello" to the server.
//!
//! Run the server first, then the client, each in its own terminal:
//!
//! ```text
//! terminal 1$ cargo run --example step1_server
//! terminal 2$ cargo run --example step1_client             # or: -- HOST:PORT
//! ```
//!
//! The slide shows its client as a picture; its notes (IPv4 `AF_INET`, UDP
//! `SOCK_DGRAM`, the destination as an `(address, port)` tuple) describe:
//!
//! ```python
//! #!/usr/bin/python3
//! from socket import *
//!
//! sock = socket(AF_INET, SOCK_DGRAM)
//! sock.sendto('hello'.encode(), ('127.0.0.1', 12345))
//! sock.close()
//! ```

use std::env;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

fn main() -> io::Result<()> {
    // Optional argument HOST:PORT, to try other ports; the default is the
    // slide's ('127.0.0.1', 12345).
    let target = env::args().nth(1).unwrap_or("127.0.0.1:12345".into());
    // `ToSocketAddrs` turns "host:port" into addresses (looking up names such
    // as "localhost", as Python's sendto() does). AF_INET means IPv4, so we
    // keep the first IPv4 address.
    let server = target.to_socket_addrs()?.find(SocketAddr::is_ipv4);
    let server = server.ok_or(io::ErrorKind::AddrNotAvailable)?;
    // socket(AF_INET, SOCK_DGRAM). A Rust UdpSocket is created bound; Python
    // binds silently on the first sendto(). Port 0 = "any free port".
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    // sock.sendto('hello'.encode(), addr): b"hello" is already bytes, so no
    // .encode() is needed. One send_to() sends one datagram.
    sock.send_to(b"hello", server)?;
    // sock.close(): the socket closes by itself when `sock` goes out of
    // scope, at the end of main.
    Ok(())
}
