//! Step 3 of the UDP chat lab, server side: turn-based chat from the keyboard.
//!
//! The server waits for the client's line, prints it, then answers with a
//! line typed here; "bye" from either side (or Ctrl-D) ends the chat:
//!
//! ```text
//! terminal 1$ cargo run --example step3_server             # or: -- PORT
//! terminal 2$ cargo run --example step3_client
//! ```
//!
//! The slides give only hints (`input()`, `break`); in Python this reads:
//!
//! ```python
//! sock.bind(('', 12345))
//! while True:
//!     msg, client = sock.recvfrom(1024)
//!     print(msg.decode(), 'from', client)
//!     if msg.decode() == 'bye': break
//!     line = input()
//!     sock.sendto(line.encode(), client)
//!     if line == 'bye': break
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
    // 65535 bytes, not the slides' 1024, which silently cuts longer
    // datagrams (a UDP payload can be up to 65507 bytes over IPv4).
    let mut buf = vec![0u8; 65535];
    let mut line = String::new();
    loop {
        // msg, client = sock.recvfrom(1024); we answer whoever spoke last.
        let (n, client) = sock.recv_from(&mut buf)?;
        // msg.decode() that never crashes: the network can send anything.
        let text = String::from_utf8_lossy(&buf[..n]);
        let text = trim_newline(&text);
        println!("{text} from {client}");
        if text == "bye" {
            break;
        }
        // line = input(): read_line appends the line, "\n" included, and
        // returns 0 at end of input (Ctrl-D), which counts as typing "bye".
        line.clear();
        let eof = io::stdin().read_line(&mut line)? == 0;
        let mine = if eof { "bye" } else { trim_newline(&line) };
        // sock.sendto(line.encode(), client)
        sock.send_to(mine.as_bytes(), client)?;
        if mine == "bye" {
            break;
        }
    }
    Ok(())
}
