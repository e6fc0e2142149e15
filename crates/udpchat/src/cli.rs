//! The command line: one `udpchat` binary with a subcommand per mode.
//!
//! Names here are part of the user interface (scripts and the acceptance checks drive them), so
//! they change only with care.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use udpchat_proto::crypto::normalize_fingerprint;
use udpchat_proto::room::{GUEST_PREFIX, is_valid_name, is_valid_nick};

use crate::addr::{AddrError, Target};

/// The UDP port the lab uses throughout.
pub const LAB_PORT: u16 = 12345;

/// Chat over UDP: the "Computer Networks II" lab's four steps, done right.
///
/// On the wire every message is one plain UTF-8 datagram, exactly as in the lab, so udpchat talks
/// to the lab's Python programs and to `nc -u`.
#[derive(Debug, Parser)]
#[command(
    name = "udpchat",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Print every datagram sent or received to stderr: time, direction, addresses, length and a
    /// hex + text dump, so you see exactly what crosses the wire.
    #[arg(long, global = true)]
    pub trace: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The modes of udpchat.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive datagrams and print them (lab steps 1 and 2, server side).
    ///
    /// Each datagram is printed as `<text> from <ip>:<port>`. With `--reply` the text is sent back
    /// to each sender (step 2). Messages up to the UDP maximum (65507 bytes) are received whole.
    Recv(RecvArgs),
    /// Send one datagram, and optionally wait for the reply (lab steps 1 and 2, client side).
    Send(SendArgs),
    /// Two-party chat: full duplex (lab step 4), or strict turns with --turns (step 3).
    ///
    /// `udpchat chat HOST:PORT` connects and speaks first; `udpchat chat --listen [PORT]` waits for
    /// a peer and talks with whoever sends the first datagram. Each line you type is one datagram.
    /// A message that is exactly `bye`, from either side, ends the chat; end of input (Ctrl-D) and
    /// Ctrl-C say `bye` too. Exits 1 when nobody listens at HOST:PORT (ICMP port unreachable),
    /// or when, with --turns, the peer does not reply within --linger after the end of input.
    Chat(ChatArgs),
    /// Tell whether anything is bound to a UDP port, and which process (the slide's question
    /// "how can you verify that the server is listening?").
    ///
    /// Reads the kernel's UDP socket tables, /proc/net/udp and /proc/net/udp6, as `ss -ulpn`
    /// does: `ss` lists sockets; `-u` UDP only; `-l` listening (for UDP: bound, unconnected)
    /// sockets; `-p` the owning process; `-n` numeric addresses and ports. Try
    /// `ss -ulpn 'sport = :12345'` for the same answer. Exits 0 if the port is bound, 1 if not.
    Check(CheckArgs),
    /// Find out whether a UDP port is open, the way `nmap -sU` does.
    ///
    /// Sends one datagram on a connected socket. If the host answers with ICMP "port
    /// unreachable" the port is `closed` (exit 1); if a reply comes it is `open`; if nothing
    /// comes back it is `open|filtered` (exit 0): UDP has no handshake, so a silent service and a
    /// firewall that drops the datagram look the same.
    Probe(ProbeArgs),
    /// Run a room server: many people, rooms, history, reliable delivery over UDP.
    ///
    /// Framed clients (`udpchat join`) and plain-text guests (`nc -u`, the lab's Python client)
    /// share one port. Logs go to stderr; Ctrl-C tells every client the server is going and
    /// exits 0.
    Serve(ServeArgs),
    /// Join a room server: each line of input is a message or a /command.
    ///
    /// Commands: `/join ROOM`, `/part [ROOM]`, `/nick NAME`, `/msg NICK TEXT`, `/me TEXT`,
    /// `/who [ROOM]`, `/topic [TEXT]`, `/quit`; `//text` sends a line that starts with a slash.
    /// End of input leaves after everything sent has been acknowledged.
    Join(JoinArgs),
    /// Measure the room server on loopback against a minimal batched relay and a lab-style
    /// Python relay: deliveries per second, loss, latency, CPU per delivery, memory per member.
    ///
    /// Each run starts a fresh target process and N members in one room; with `--out DIR` the
    /// table and an SVG plot are written there (`docs/` in the repository).
    Bench(udpchat_bench::BenchArgs),
    /// The minimal batched relay `bench` compares with (run by `bench` itself).
    #[command(hide = true)]
    BenchRelay(udpchat_bench::BenchRelayArgs),
}

/// Arguments of `udpchat serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// UDP port to serve on (0 picks a free one, printed on stderr).
    #[arg(short, long, default_value_t = LAB_PORT)]
    pub port: u16,
    /// Local address to bind (see `recv --bind`).
    #[arg(short, long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// Seconds of silence after which a client or guest is dropped (the others see it leave).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub peer_timeout: Duration,
    /// Refuse plain-text guests: only `udpchat join` clients.
    #[arg(long)]
    pub no_guests: bool,
    /// The server's private key, created (mode 0600) on first start. Default: `server.key` in
    /// the data directory ($XDG_DATA_HOME/udpchat or ~/.local/share/udpchat).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
    /// Threads that share the sending with the server's own, each sending to its share of
    /// the members (every member still receives in order). 0: one thread does everything.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub sending_threads: u16,
    /// Messages per second one member or guest may send into the chat, with bursts of four
    /// seconds' worth (0: no limit). A member sending faster is slowed down (nothing lost); a
    /// guest's surplus lines are not relayed, and it is told.
    #[arg(long, value_name = "N", default_value_t = udpchat_proto::sender_limit::DEFAULT_MESSAGES_PER_SECOND)]
    pub max_message_rate: u32,
    /// Bytes of messages per second one member or guest may send, with bursts of two seconds'
    /// worth and at least one message of the largest size (0: no limit).
    #[arg(long, value_name = "BYTES", default_value_t = udpchat_proto::sender_limit::DEFAULT_BYTES_PER_SECOND)]
    pub max_byte_rate: u32,
}

/// Arguments of `udpchat join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The server: HOST:PORT.
    #[arg(value_name = "HOST:PORT", value_parser = parse_target)]
    pub server: String,
    /// Your nick (unique on the server).
    // Hyphen values are taken, so that `--nick -dash` is refused as a nick, in words, not
    // as an unknown flag `-d`.
    #[arg(short, long, allow_hyphen_values = true, value_parser = parse_nick)]
    pub nick: String,
    /// The room to join first.
    #[arg(short, long, default_value = "lobby", allow_hyphen_values = true, value_parser = parse_room)]
    pub room: String,
    /// Print one JSON object per line per event instead of text.
    #[arg(long)]
    pub json: bool,
    /// One line per event even on a terminal, instead of the full-screen UI.
    #[arg(long)]
    pub plain: bool,
    /// At the end of input, how long to wait without any acknowledgement from the server
    /// before leaving with lines unacknowledged (the wait starts again at each one).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub linger: Duration,
    /// How long to wait for the server's first answer before giving up.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_seconds)]
    pub connect_timeout: Duration,
    /// The server's key fingerprint, as `udpchat serve` prints it: refuse any other key. By
    /// default the first key seen is pinned in `known_servers` (trust on first use) and a
    /// changed key is refused.
    #[arg(long, value_name = "FINGERPRINT", value_parser = parse_fingerprint)]
    pub server_key: Option<String>,
}

/// Arguments of `udpchat recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// UDP port to listen on (0 picks a free one, printed on stderr).
    #[arg(short, long, default_value_t = LAB_PORT)]
    pub port: u16,
    /// Local address to bind: 0.0.0.0 is every IPv4 address, `::` every IPv6 (and IPv4) address,
    /// 127.0.0.1 or ::1 this machine only.
    #[arg(short, long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// Send TEXT back to each sender (lab step 2).
    #[arg(short, long, value_name = "TEXT")]
    pub reply: Option<String>,
    /// Exit after N datagrams; 0 means never.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1)]
    pub count: u64,
}

/// Arguments of `udpchat send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Where to send: HOST:PORT, e.g. 127.0.0.1:12345, localhost:12345, `[::1]:12345`.
    #[arg(value_name = "HOST:PORT", value_parser = parse_target)]
    pub target: String,
    /// The message.
    #[arg(default_value = "hello")]
    pub text: String,
    /// Wait up to SECONDS for a reply and print it (lab step 2); exit 1 if none comes.
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub wait: Option<Duration>,
    /// Append a newline to the datagram (nicer for `nc -u`, which prints bytes as they come).
    #[arg(long)]
    pub newline: bool,
}

/// Arguments of `udpchat chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The peer to talk to: HOST:PORT. Omit it with --listen.
    #[arg(value_name = "HOST:PORT", required_unless_present = "listen", value_parser = parse_target)]
    pub target: Option<String>,
    /// Wait for a peer on PORT (default 12345; 0 picks a free one, printed on stderr).
    #[arg(
        short,
        long,
        value_name = "PORT",
        num_args = 0..=1,
        default_missing_value = "12345",
        conflicts_with = "target"
    )]
    pub listen: Option<u16>,
    /// Local address to bind when listening (see `recv --bind`).
    #[arg(short, long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED), requires = "listen")]
    pub bind: IpAddr,
    /// Take turns (lab step 3): the connecting side speaks first, then each side waits for the
    /// other's message before sending its next line.
    #[arg(short, long)]
    pub turns: bool,
    /// Append a newline to each datagram (for `nc -u` peers; breaks the lab's Python programs,
    /// which compare the text with "bye" exactly).
    #[arg(long)]
    pub newline: bool,
    /// On a terminal, a line editor in the normal screen instead of the full-screen UI.
    #[arg(long)]
    pub plain: bool,
    /// With --turns, at the end of input: how long to wait for the peer's reply before saying
    /// bye out of turn and leaving with an error (the wait starts again at each line sent).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub linger: Duration,
}

/// Arguments of `udpchat check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The UDP port to look for.
    #[arg(default_value_t = LAB_PORT)]
    pub port: u16,
}

/// Arguments of `udpchat probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The port to probe: HOST:PORT.
    #[arg(value_name = "HOST:PORT", value_parser = parse_target)]
    pub target: String,
    /// What to send.
    #[arg(long, default_value = "hello")]
    pub text: String,
    /// How long to wait for an answer.
    #[arg(short, long, value_name = "SECONDS", default_value = "2", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// Checks the syntax of a `HOST:PORT` target while the command line is parsed, so that a
/// malformed one is a usage error (exit 2) like any other; the text is kept and resolved when
/// the mode runs (an unknown host is a runtime failure: exit 1).
///
/// # Errors
/// What [`Target::parse`] refuses.
pub fn parse_target(text: &str) -> Result<String, AddrError> {
    Target::parse(text).map(|_| text.to_owned())
}

/// A nick the server could accept (the rules of [`is_valid_name`]), written in one script, and not a
/// guest's.
///
/// # Errors
/// The reason, in words, without the value (clap prints it before).
pub fn parse_nick(text: &str) -> Result<String, String> {
    let nick = parse_name("nick", text)?;
    if !is_valid_nick(&nick) {
        return Err(
            "not a valid nick: letters of one script only (no Cyrillic or Greek letters among Latin ones)"
                .into(),
        );
    }
    if nick.to_lowercase().starts_with(GUEST_PREFIX) {
        return Err(format!(
            "nicks starting with '{GUEST_PREFIX}' are reserved for plain-text guests"
        ));
    }
    Ok(nick)
}

/// A room name the server could accept (the rules of [`is_valid_name`]).
///
/// # Errors
/// The reason, in words.
pub fn parse_room(text: &str) -> Result<String, String> {
    parse_name("room", text)
}

/// A name (`what`: nick or room) as the server's rules allow it ([`is_valid_name`]): checked
/// here, so that nothing the server would refuse is said to it, and the user hears why at once.
fn parse_name(what: &str, text: &str) -> Result<String, String> {
    const RULE: &str = "1 to 32 letters, digits or -_.[]{}|^, not starting with a digit or -";
    if text.starts_with('-') {
        return Err(format!("a {what} cannot start with '-' ({RULE})"));
    }
    if !is_valid_name(text) {
        return Err(format!("not a valid {what}: {RULE}"));
    }
    Ok(text.to_owned())
}

/// A server key's fingerprint, as `serve` prints it (case, spaces, O for 0 and I/L for 1 do
/// not matter); returned in the one form fingerprints are compared in.
///
/// # Errors
/// Not 8 groups of 4 characters of the fingerprint alphabet.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    normalize_fingerprint(text).ok_or_else(|| {
        "not a fingerprint (8 groups of 4 characters, as serve prints it)".to_owned()
    })
}

/// Parses a positive number of seconds, fractions allowed (`0.5`, `2`, `30`).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 365.0 {
        return Err(format!(
            "'{text}' seconds is out of range (give more than 0)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(parse_seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["", "x", "-1", "0", "nan", "inf", "1e300"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_defaults_to_the_lab_port() {
        let cli = Cli::try_parse_from(["udpchat", "chat", "--listen"]).unwrap();
        let Command::Chat(chat) = cli.command else {
            panic!()
        };
        assert_eq!(chat.listen, Some(LAB_PORT));
        let cli = Cli::try_parse_from(["udpchat", "chat", "--listen", "0", "--turns"]).unwrap();
        let Command::Chat(chat) = cli.command else {
            panic!()
        };
        assert_eq!((chat.listen, chat.turns), (Some(0), true));
    }

    #[test]
    fn chat_needs_a_target_or_listen_but_not_both() {
        assert!(Cli::try_parse_from(["udpchat", "chat"]).is_err());
        assert!(Cli::try_parse_from(["udpchat", "chat", "h:1", "--listen", "5"]).is_err());
    }

    #[test]
    fn bad_ports_are_refused() {
        for bad in ["65536", "-1", "http"] {
            assert!(
                Cli::try_parse_from(["udpchat", "recv", "--port", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn trace_is_accepted_on_every_mode() {
        for args in [
            &["recv", "--trace"][..],
            &["send", "h:1", "--trace"],
            &["chat", "--listen", "--trace"],
            &["check", "--trace"],
            &["probe", "h:1", "--trace"],
            &["serve", "--trace"],
            &["join", "h:1", "--nick", "n", "--trace"],
        ] {
            let cli = Cli::try_parse_from(std::iter::once("udpchat").chain(args.iter().copied()));
            assert!(cli.unwrap().trace, "{args:?}");
        }
    }
}
