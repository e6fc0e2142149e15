//! `--trace`: show every datagram that crosses the wire, on stderr.
//!
//! One header line per datagram (local time of day, see [`clock`], direction, local and remote
//! address, length) followed by a hex + text dump in the style of `hexdump -C`, 16 bytes a row:
//!
//! ```text
//! 19:22:01.123456 sent 0.0.0.0:40112 -> 127.0.0.1:12345 5 bytes
//!   0000  68 65 6c 6c 6f                                    |hello|
//! ```

use chrono::NaiveTime;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;

use crate::addr::canonical;
use crate::clock;

/// Dumps longer than this are cut, with a note saying how much was left out: the first 4 KiB
/// show any header or text a student looks for, while a 64 KiB datagram would be 4096 rows.
const MAX_DUMP_BYTES: usize = 4096;

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We sent it.
    Sent,
    /// We received it.
    Received,
}

/// Prints datagrams to stderr when enabled; does nothing (and costs nothing) otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Tracer {
    enabled: bool,
}

impl Tracer {
    /// A tracer that prints when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    /// Reports one datagram. `local` is our socket's address, `remote` the peer's.
    pub fn datagram(&self, dir: Direction, local: SocketAddr, remote: SocketAddr, payload: &[u8]) {
        if !self.enabled {
            return;
        }
        let text = render(clock::now(), dir, local, remote, payload);
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// The trace text of one datagram, ending in a newline.
pub fn render(
    at: NaiveTime,
    dir: Direction,
    local: SocketAddr,
    remote: SocketAddr,
    payload: &[u8],
) -> String {
    let (local, remote) = (canonical(local), canonical(remote));
    let (verb, from, to) = match dir {
        Direction::Sent => ("sent", local, remote),
        Direction::Received => ("recv", remote, local),
    };
    let mut out = String::new();
    let bytes = if payload.len() == 1 { "byte" } else { "bytes" };
    let _ = writeln!(
        out,
        "{} {verb} {from} -> {to} {} {bytes}",
        clock::micros(at),
        payload.len()
    );
    out.push_str(&hex_dump(payload));
    out
}

/// `hexdump -C`-style rows: offset, 16 hex bytes (a gap after 8), printable ASCII between bars.
pub fn hex_dump(payload: &[u8]) -> String {
    let shown = &payload[..payload.len().min(MAX_DUMP_BYTES)];
    let mut out = String::new();
    for (row, chunk) in shown.chunks(16).enumerate() {
        let _ = write!(out, "  {:04x} ", row * 16);
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b == b' ' || b.is_ascii_graphic() {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    if payload.len() > shown.len() {
        let _ = writeln!(
            out,
            "  ... {} more bytes not shown",
            payload.len() - shown.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_header_and_dump() {
        let at = NaiveTime::from_hms_micro_opt(1, 2, 3, 42).unwrap();
        let local = "0.0.0.0:40000".parse().unwrap();
        let remote = "127.0.0.1:12345".parse().unwrap();
        assert_eq!(
            render(at, Direction::Sent, local, remote, b"hello"),
            "01:02:03.000042 sent 0.0.0.0:40000 -> 127.0.0.1:12345 5 bytes\n\
             \x20 0000  68 65 6c 6c 6f                                    |hello|\n"
        );
        let head = render(at, Direction::Received, local, remote, b"x");
        assert!(head.starts_with("01:02:03.000042 recv 127.0.0.1:12345 -> 0.0.0.0:40000 1 byte\n"));
    }

    #[test]
    fn dump_shows_rows_of_sixteen_and_dots_for_unprintables() {
        let payload: Vec<u8> = (0u8..20).chain(*b"AB\x1b").collect();
        assert_eq!(
            hex_dump(&payload),
            "  0000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|\n\
             \x20 0010  10 11 12 13 41 42 1b                              |....AB.|\n"
        );
        assert_eq!(hex_dump(b""), "");
    }

    #[test]
    fn long_dumps_are_cut_with_a_note() {
        let dump = hex_dump(&[b'a'; MAX_DUMP_BYTES + 10]);
        assert_eq!(dump.lines().count(), MAX_DUMP_BYTES / 16 + 1);
        assert!(dump.ends_with("  ... 10 more bytes not shown\n"));
    }
}
