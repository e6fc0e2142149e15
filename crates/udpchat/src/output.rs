//! What udpchat prints: message lines on stdout, status on stderr.
//!
//! Every piece of text that came from the network goes through
//! [`udpchat_proto::text::neutralize`] here, so no peer can repaint the user's terminal.
//! Writes go through a locked stdout and report errors instead of panicking (`println!` panics on
//! a closed pipe); `main` turns a broken pipe into a quiet, successful exit.

use std::io::{self, Write};
use std::net::SocketAddr;

use udpchat_proto::text;

use crate::addr::canonical;

/// The line `recv` and `send --wait` print for a received datagram: `<text> from <ip>:<port>`.
pub fn datagram_line(payload: &[u8], from: SocketAddr) -> String {
    let message = text::decode_message(payload);
    format!("{} from {}", text::neutralize(&message), canonical(from))
}

/// Writes one line to stdout and flushes it, so that a reader on a pipe sees it at once.
///
/// # Errors
/// The write error, e.g. `BrokenPipe` when the reader has gone.
pub fn print_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes one status line to stderr. Errors are ignored: status is best effort, and a closed
/// stderr must not stop a chat.
pub fn status(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Replaces the current stderr line with `line`, without ending it (a progress line on a
/// terminal; the next status line, or this with "", takes its place).
pub fn status_in_place(line: &str) {
    let mut err = io::stderr().lock();
    // Carriage return, then erase to the end of the line.
    let _ = write!(err, "\r\x1b[K{line}");
    let _ = err.flush();
}

/// Whether `err` (or anything in its chain) is a broken pipe: the reader of our output has gone,
/// which ends the program quietly, like `cat` or `grep` in a pipeline.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn datagram_line_matches_the_lab_format() {
        assert_eq!(
            datagram_line(b"hello", from("127.0.0.1:5000")),
            "hello from 127.0.0.1:5000"
        );
        assert_eq!(
            datagram_line(b"hi\n", from("10.0.0.2:9")),
            "hi from 10.0.0.2:9"
        );
        assert_eq!(
            datagram_line(b"hello", from("[::1]:5000")),
            "hello from [::1]:5000"
        );
        assert_eq!(
            datagram_line(b"hello", from("[::ffff:192.0.2.1]:7")),
            "hello from 192.0.2.1:7"
        );
    }

    #[test]
    fn datagram_line_neutralises_escapes_and_bad_utf8() {
        assert_eq!(
            datagram_line(b"\x1b[2J\x1b]0;x\x07ok", from("127.0.0.1:1")),
            "^[[2J^[]0;x^Gok from 127.0.0.1:1"
        );
        assert_eq!(
            datagram_line(b"a\nb", from("127.0.0.1:1")),
            "a^Jb from 127.0.0.1:1"
        );
        assert_eq!(
            datagram_line(b"\xff", from("127.0.0.1:1")),
            "\u{fffd} from 127.0.0.1:1"
        );
    }

    #[test]
    fn broken_pipe_is_found_through_context() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing a message");
        assert!(is_broken_pipe(&err));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
