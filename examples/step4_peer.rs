//! Step 4 of the UDP chat lab: full-duplex chat, either side sends any time.
//!
//! Both sides run this program; the listener learns its peer's address from
//! the first datagram. "bye" (or Ctrl-D) from either side ends the chat:
//!
//! ```text
//! terminal 1$ cargo run --example step4_peer -- listen            # [PORT]
//! terminal 2$ cargo run --example step4_peer -- connect 127.0.0.1:12345
//! ```
//!
//! It follows the slide's hint: a thread receives while the main thread
//! reads the keyboard and sends.
//!
//! ```python
//! import _thread
//!
//! def receive(<args>):
//!     # reciving task
//! ...
//! _thread.start_new_thread(receive, (<tuple args>))
//! ```

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::mpsc::{self, Sender};
use std::{env, io, process, thread};

/// Strips one trailing "\n" or "\r\n" (`nc -u` sends the line's newline).
fn trim_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// The receiving task, Python's `def receive(sock)`. If `first_peer` is
/// given, the first sender's address is reported on it.
fn receive(sock: &UdpSocket, mut first_peer: Option<Sender<SocketAddr>>) {
    // 65535 bytes, not the slides' 1024, which silently cuts longer
    // datagrams (a UDP payload can be up to 65507 bytes over IPv4).
    let mut buf = vec![0u8; 65535];
    loop {
        // msg, addr = sock.recvfrom(1024); a socket error ends the program.
        let (n, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| {
            eprintln!("receive error: {e}");
            process::exit(1)
        });
        // Tell the main thread who the peer is, once (take() leaves None).
        if let Some(tx) = first_peer.take() {
            let _ = tx.send(from); // fails only if main is gone: nothing to do
        }
        // msg.decode() that never crashes: the network can send anything.
        let text = String::from_utf8_lossy(&buf[..n]);
        let text = trim_newline(&text);
        println!("{text} from {from}");
        if text == "bye" {
            // Returning would end only this thread; main is stuck in
            // read_line(), which no thread can interrupt. exit() ends the
            // whole process (Python: os._exit(0); sys.exit() would end only
            // this thread). Nothing is lost: the OS closes the socket.
            process::exit(0);
        }
    }
}

fn main() -> io::Result<()> {
    let mode = env::args().nth(1).unwrap_or_default();
    let arg = env::args().nth(2);
    // `listen [PORT]` binds a known port (like the step 3 server), peer not
    // known yet; `connect [HOST:PORT]` knows its peer (like the client).
    let (sock, mut peer) = match mode.as_str() {
        "listen" => {
            let port = arg.unwrap_or("12345".into());
            // socket(AF_INET, SOCK_DGRAM) + sock.bind(('', port))
            (UdpSocket::bind(format!("0.0.0.0:{port}"))?, None)
        }
        "connect" => {
            // `ToSocketAddrs` resolves "host:port"; AF_INET: first IPv4.
            let target = arg.unwrap_or("127.0.0.1:12345".into());
            let addr = target.to_socket_addrs()?.find(SocketAddr::is_ipv4);
            let addr = addr.ok_or(io::ErrorKind::AddrNotAvailable)?;
            (UdpSocket::bind("0.0.0.0:0")?, Some(addr))
        }
        _ => {
            eprintln!("usage: step4_peer listen [PORT] | step4_peer connect [HOST:PORT]");
            process::exit(2);
        }
    };
    // A channel on which the receiving thread reports the first sender.
    let (peer_tx, peer_rx) = mpsc::channel();
    let first_peer = if peer.is_none() { Some(peer_tx) } else { None };
    // Python's two threads share one socket object; a Rust thread must own
    // what it uses, so try_clone() makes a second handle to the same socket.
    let rx_sock = sock.try_clone()?;
    // _thread.start_new_thread(receive, (sock,)); `move` hands rx_sock and
    // first_peer over to the closure that the new thread runs.
    thread::spawn(move || receive(&rx_sock, first_peer));
    let mut line = String::new();
    loop {
        // line = input(); end of input (read_line returns 0) counts as "bye".
        line.clear();
        let eof = io::stdin().read_line(&mut line)? == 0;
        let mine = if eof { "bye" } else { trim_newline(&line) };
        // The listener learns where to send from the first datagram: a line
        // typed before that waits here for the receiving thread's report.
        let to = match peer {
            Some(addr) => addr,
            None => *peer.insert(peer_rx.recv().map_err(io::Error::other)?),
        };
        // sock.sendto(line.encode(), peer)
        sock.send_to(mine.as_bytes(), to)?;
        if mine == "bye" {
            // Returning from main ends the program, receiving thread included.
            return Ok(());
        }
    }
}
