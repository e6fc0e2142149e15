//! Step 1 of the UDP chat lab, server side: print the client's "hello".
//!
//! Run the server first, then the client, each in its own terminal:
//!
//! ```text
//! terminal 1$ cargo run --example step1_server             # or: -- PORT
//! terminal 2$ cargo run --example step1_client
//! ```
//!
//! It mirrors the slide's server:
//!
//! ```python
//! #!/usr/bin/python3
//! from socket import *
//!
//! sock = socket(AF_INET, SOCK_DGRAM)
//! sock.bind(('', 12345))
//! msg, client = sock.recvfrom(1024)
//! print(msg.decode(), client)
//! sock.close()
//! ```

use std::env;
use std::io;
use std::net::UdpSocket;

/// Strips one trailing "\n" or "\r\n" (`nc -u` sends the line's newline).
fn trim_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

fn main() -> io::Result<()> {
    // Optional argument PORT, to try other ports (default 12345).
    let port = env::args().nth(1).unwrap_or("12345".into());
    // socket(AF_INET, SOCK_DGRAM) + sock.bind(('', port)) in one call. The
    // ('', port) tuple is written "0.0.0.0:port" ('' = every local IPv4
    // address); `ToSocketAddrs` parses it (and rejects a bad port).
    let sock = UdpSocket::bind(format!("0.0.0.0:{port}"))?;
    // recvfrom(1024) silently cuts datagrams longer than 1024 bytes, and a
    // UDP payload can be up to 65507 bytes over IPv4: 65535 bytes fits any.
    let mut buf = vec![0u8; 65535];
    // msg, client = sock.recvfrom(1024): wait for one datagram; `n` is its
    // length and `client` the sender's (IP, port), a `SocketAddr`.
    let (n, client) = sock.recv_from(&mut buf)?;
    // msg.decode() raises an error on bytes that are not UTF-8. The network
    // can send anything, so never crash on it: from_utf8_lossy replaces bad
    // bytes with U+FFFD instead.
    let text = String::from_utf8_lossy(&buf[..n]);
    // print(msg.decode(), client): a SocketAddr prints as ip:port.
    println!("{} from {client}", trim_newline(&text));
    // sock.close() happens when `sock` goes out of scope.
    Ok(())
}
