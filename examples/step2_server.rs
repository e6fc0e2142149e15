//! Step 2 of the UDP chat lab, server side: print the message, reply "hi".
//!
//! Run the server first, then the client, each in its own terminal:
//!
//! ```text
//! terminal 1$ cargo run --example step2_server             # or: -- PORT
//! terminal 2$ cargo run --example step2_client
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
//! print(msg.decode(), 'from', client)
//! sock.sendto('hi'.encode(), client)
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
    // Optional argument PORT (default 12345).
    let port = env::args().nth(1).unwrap_or("12345".into());
    // socket(AF_INET, SOCK_DGRAM) + sock.bind(('', port)); '' is 0.0.0.0.
    let sock = UdpSocket::bind(format!("0.0.0.0:{port}"))?;
    // 65535 bytes, not 1024: recvfrom(1024) silently cuts longer datagrams
    // (a UDP payload can be up to 65507 bytes over IPv4).
    let mut buf = vec![0u8; 65535];
    // msg, client = sock.recvfrom(1024): `client` is the sender's address.
    let (n, client) = sock.recv_from(&mut buf)?;
    // msg.decode() that never crashes: the network can send anything.
    let text = String::from_utf8_lossy(&buf[..n]);
    // print(msg.decode(), 'from', client)
    println!("{} from {client}", trim_newline(&text));
    // sock.sendto('hi'.encode(), client): the reply goes back to the exact
    // address and port the datagram came from; that is all the
    // "connection" UDP has.
    sock.send_to(b"hi", client)?;
    // sock.close() happens when `sock` goes out of scope.
    Ok(())
}
