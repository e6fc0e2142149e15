//! Step 2 of the UDP chat lab, client side: send "hello", print the reply.
//!
//! Run the server first, then the client, each in its own terminal:
//!
//! ```text
//! terminal 1$ cargo run --example step2_server
//! terminal 2$ cargo run --example step2_client             # or: -- HOST:PORT
//! ```
//!
//! The slide's solution shows only the server; the client is step 1's
//! client plus the lines that wait for the reply:
//!
//! ```python
//! sock.sendto('hello'.encode(), ('127.0.0.1', 12345))
//! msg, server = sock.recvfrom(1024)
//! print(msg.decode(), 'from', server)
//! ```

use std::env;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

/// Strips one trailing "\n" or "\r\n" (`nc -u` sends the line's newline).
fn trim_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

fn main() -> io::Result<()> {
    // Optional argument HOST:PORT (default: the slide's 127.0.0.1:12345).
    let target = env::args().nth(1).unwrap_or("127.0.0.1:12345".into());
    // `ToSocketAddrs` resolves "host:port"; AF_INET: keep the first IPv4.
    let server = target.to_socket_addrs()?.find(SocketAddr::is_ipv4);
    let server = server.ok_or(io::ErrorKind::AddrNotAvailable)?;
    // socket(AF_INET, SOCK_DGRAM) on any free port (0), which Python picks
    // silently on the first sendto(). The server replies to this port.
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    // sock.sendto('hello'.encode(), (host, port))
    sock.send_to(b"hello", server)?;
    // 65535 bytes, not the slides' 1024: recvfrom(1024) silently cuts longer
    // datagrams (a UDP payload can be up to 65507 bytes over IPv4).
    let mut buf = vec![0u8; 65535];
    // msg, server = sock.recvfrom(1024). UDP has no connection: if no server
    // is listening, "hello" is simply lost and this waits forever (Ctrl-C).
    let (n, from) = sock.recv_from(&mut buf)?;
    // msg.decode(), but never crash on bytes that are not UTF-8: the network
    // can send anything; bad bytes become U+FFFD.
    let text = String::from_utf8_lossy(&buf[..n]);
    // print(msg.decode(), 'from', server)
    println!("{} from {from}", trim_newline(&text));
    Ok(())
}
