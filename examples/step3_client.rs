//! Step 3 of the UDP chat lab, client side: turn-based chat from the keyboard.
//!
//! The client speaks first, then each side waits for the other's line;
//! "bye" from either side (or Ctrl-D, end of input) ends the chat:
//!
//! ```text
//! terminal 1$ cargo run --example step3_server
//! terminal 2$ cargo run --example step3_client             # or: -- HOST:PORT
//! ```
//!
//! The slides give only hints (`input()`, `break`); in Python this reads:
//!
//! ```python
//! while True:
//!     line = input()
//!     sock.sendto(line.encode(), ('127.0.0.1', 12345))
//!     if line == 'bye': break
//!     msg, server = sock.recvfrom(1024)
//!     print(msg.decode(), 'from', server)
//!     if msg.decode() == 'bye': break
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
    // Optional argument HOST:PORT (default 127.0.0.1:12345), resolved by
    // `ToSocketAddrs`; AF_INET: keep the first IPv4 address.
    let target = env::args().nth(1).unwrap_or("127.0.0.1:12345".into());
    let server = target.to_socket_addrs()?.find(SocketAddr::is_ipv4);
    let server = server.ok_or(io::ErrorKind::AddrNotAvailable)?;
    // socket(AF_INET, SOCK_DGRAM) on any free port (Python binds on sendto).
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    // 65535 bytes, not the slides' 1024, which silently cuts longer
    // datagrams (a UDP payload can be up to 65507 bytes over IPv4).
    let mut buf = vec![0u8; 65535];
    let mut line = String::new();
    loop {
        // line = input(): read_line appends the line, "\n" included, and
        // returns 0 at end of input (Ctrl-D), which counts as typing "bye".
        line.clear();
        let eof = io::stdin().read_line(&mut line)? == 0;
        let mine = if eof { "bye" } else { trim_newline(&line) };
        // sock.sendto(line.encode(), server)
        sock.send_to(mine.as_bytes(), server)?;
        if mine == "bye" {
            break;
        }
        // msg, server = sock.recvfrom(1024): now it is the server's turn.
        let (n, from) = sock.recv_from(&mut buf)?;
        // msg.decode() that never crashes: the network can send anything.
        let text = String::from_utf8_lossy(&buf[..n]);
        let text = trim_newline(&text);
        println!("{text} from {from}");
        if text == "bye" {
            break;
        }
    }
    Ok(())
}
