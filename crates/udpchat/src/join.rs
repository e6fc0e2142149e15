//! `udpchat join`: the room client, a thin driver around [`udpchat_proto::client::Client`].
//!
//! On a terminal it is the full-screen UI of [`crate::tui`]. In a pipe (or with `--plain` or
//! `--json`) it is a line client: each input line is a message to the current room or a /command. Output is one line per
//! event, `[room] nick: text`, or with `--json` one JSON object per line. At the end of input
//! the client waits until the server has acknowledged everything sent (giving up after
//! `--linger` without any acknowledgement), then leaves: `seq 1 2000 | udpchat join ...`
//! delivers all 2,000 lines, in order, at the pace the server allows.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use udpchat_net::OsRandom;
use udpchat_proto::client::{Client, ClientConfig, ClientEvent};
use udpchat_proto::reliable::{CloseReason, SendError};
use udpchat_proto::text::{is_unsafe_for_terminal, neutralize};
use udpchat_proto::wire::message::{ClientMessage, ErrorCode, MessageKind, ServerMessage, TooLong};
use udpchat_proto::wire::packet::CloseCode;

use crate::addr;
use crate::cli::JoinArgs;
use crate::keys;
use crate::net::{self, MAX_DATAGRAM};
use crate::output;
use crate::screen::{Input, spawn_stdin_lines};
use crate::trace::{Direction, Tracer};
use udpchat_proto::crypto::{KEY_LEN, fingerprint};

/// Runs `udpchat join`.
///
/// # Errors
/// Bad server address, the nick refused, the server unreachable.
pub fn run(args: &JoinArgs, tracer: Tracer) -> Result<ExitCode> {
    let runtime = crate::runtime()?;
    runtime.block_on(drive(args, tracer))
}

/// What a typed line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum LineCommand {
    /// Send this to the server.
    Send(ClientMessage),
    /// Change the room lines go to (after joining it).
    Switch(String),
    /// Leave.
    Quit,
    /// Show this help or error locally.
    Local(String),
    /// Nothing (an empty line).
    Nothing,
}

/// Help for the /commands.
pub const HELP: &str = "commands: /join ROOM, /part [ROOM], /nick NAME, /msg NICK TEXT, /me TEXT, \
/who [ROOM], /topic [TEXT], /quit; //text sends a line starting with /";

/// Turns one typed line into what it asks for; `room` is the current room.
pub fn parse_line(line: &str, room: &str) -> LineCommand {
    let room = room.to_owned();
    let Some(rest) = line.strip_prefix('/') else {
        if line.is_empty() {
            return LineCommand::Nothing;
        }
        return LineCommand::Send(ClientMessage::Say {
            room,
            text: line.to_owned(),
        });
    };
    if rest.starts_with('/') {
        return LineCommand::Send(ClientMessage::Say {
            room,
            text: rest.to_owned(),
        });
    }
    let (cmd, arg) = rest
        .split_once(' ')
        .map_or((rest, ""), |(c, a)| (c, a.trim()));
    let arg = arg.to_owned();
    match (cmd, arg.is_empty()) {
        ("join" | "j", false) => LineCommand::Switch(arg),
        ("part" | "leave", true) => LineCommand::Send(ClientMessage::Part { room }),
        ("part" | "leave", false) => LineCommand::Send(ClientMessage::Part { room: arg }),
        ("nick", false) => LineCommand::Send(ClientMessage::Nick { nick: arg }),
        ("msg" | "query", false) => match arg.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => {
                LineCommand::Send(ClientMessage::Private {
                    to: to.to_owned(),
                    text: text.to_owned(),
                })
            }
            _ => LineCommand::Local("usage: /msg NICK TEXT".into()),
        },
        ("me", false) => LineCommand::Send(ClientMessage::Action { room, text: arg }),
        ("who" | "names", true) => LineCommand::Send(ClientMessage::Who { room }),
        ("who" | "names", false) => LineCommand::Send(ClientMessage::Who { room: arg }),
        ("topic", true) => LineCommand::Send(ClientMessage::Topic { room, topic: None }),
        ("topic", false) => LineCommand::Send(ClientMessage::Topic {
            room,
            topic: Some(arg),
        }),
        ("quit" | "exit" | "bye", _) => LineCommand::Quit,
        ("help", _) => LineCommand::Local(HELP.into()),
        _ => LineCommand::Local(format!("unknown or incomplete command /{cmd}; {HELP}")),
    }
}

/// Everything `join` sets up before talking: the socket, the client, and what to accept as
/// the server's key. Shared by the line mode and the full-screen UI.
pub struct Prepared {
    /// The socket, connected to the server.
    pub socket: UdpSocket,
    /// Our address.
    pub local: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// The client, with the nick and the first room already asked for.
    pub client: Client,
    /// Decides about the server's key.
    pub keys: KeyCheck,
}

/// Which server key to accept: the one given with `--server-key`, else the pinned one, else the
/// first one seen (then pinned). The client core checks the first two itself and holds every
/// message until a first-seen key is accepted here ([`Client::accept_key`]).
pub struct KeyCheck {
    /// The server as the user named it (the key in `known_servers`).
    pub server_name: String,
    wanted: Option<String>,
    pinned: Option<[u8; KEY_LEN]>,
    known: keys::KnownServers,
}

/// What to make of the key a server proved.
#[derive(Debug)]
pub enum KeyVerdict {
    /// Accepted; with a line to show when it was pinned just now.
    Accepted {
        /// The key's fingerprint.
        fingerprint: String,
        /// "pinned the key of …" when it was pinned now.
        pinned_now: Option<String>,
    },
    /// Refused: the error to show (and exit 1).
    Refused(String),
}

impl KeyCheck {
    /// The server proved `key`.
    ///
    /// # Errors
    /// `known_servers` could not be written.
    pub fn on_server_key(&mut self, key: [u8; KEY_LEN]) -> Result<KeyVerdict> {
        let offered = fingerprint(&key);
        if let Some(wanted) = &self.wanted
            && *wanted != offered
        {
            return Ok(KeyVerdict::Refused(format!(
                "the server's key is {offered}, not {wanted}; refusing to talk to it"
            )));
        }
        let mut pinned_now = None;
        if self.pinned.is_none() && self.known.pinned(&self.server_name) != Some(key) {
            // A key the user named replaces an earlier pin; a first-use pin does not, and
            // loses to another `join` that pinned another key for this server meanwhile.
            let before = if self.wanted.is_some() {
                self.known.replace(&self.server_name, key)?
            } else {
                self.known.pin(&self.server_name, key)?
            };
            match before {
                keys::Pin::Changed { pinned } if self.wanted.is_none() => {
                    return Ok(KeyVerdict::Refused(Self::mismatch(
                        &fingerprint(&pinned),
                        &offered,
                    )));
                }
                keys::Pin::Matches => {}
                _ => {
                    pinned_now = Some(format!("pinned the key of {}: {offered}", self.server_name));
                }
            }
        }
        Ok(KeyVerdict::Accepted {
            fingerprint: offered,
            pinned_now,
        })
    }

    /// The words for a key that differs from the pinned one.
    pub fn mismatch(pinned: &str, offered: &str) -> String {
        format!(
            "the server's key changed: pinned {pinned}, offered {offered}; refusing to talk to it (if the server really has a new key, delete its line in known_servers)"
        )
    }

    /// The words for [`ClientEvent::KeyMismatch`]: `expected` is the `--server-key` given, or
    /// the pinned key.
    pub fn refusal(&self, expected: &str, offered: &str) -> String {
        if self.wanted.is_some() {
            format!("the server's key is {offered}, not {expected}; refusing to talk to it")
        } else {
            Self::mismatch(expected, offered)
        }
    }

    /// Gives the client its verdict on a key it reported: accepted (pinned now if it was
    /// new) or refused (nothing but a Close is sent).
    ///
    /// # Errors
    /// `known_servers` could not be written (the key is refused then).
    pub fn decide(&mut self, client: &mut Client, key: [u8; KEY_LEN]) -> Result<KeyVerdict> {
        let verdict = self.on_server_key(key);
        match &verdict {
            Ok(KeyVerdict::Accepted { .. }) => client.accept_key(Instant::now()),
            Ok(KeyVerdict::Refused(_)) | Err(_) => client.reject_key(Instant::now()),
        }
        verdict
    }
}

/// Checks the arguments, opens the socket and starts the client (nick and room asked for).
///
/// # Errors
/// An invalid nick or room, an unknown host, a socket error, an unreadable `known_servers`.
pub fn prepare(args: &JoinArgs) -> Result<Prepared> {
    // The nick, the room and the key's fingerprint were checked with the command line
    // (`cli::parse_nick` and its siblings): nothing the server would refuse is said to it.
    let server = addr::resolve(&args.server)?;
    let std_socket = net::bind_for(server)?;
    std_socket
        .connect(server)
        .with_context(|| format!("cannot reach {server}"))?;
    std_socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(std_socket)?;
    let local = socket.local_addr()?;

    // Already in normal form (`cli::parse_fingerprint`).
    let wanted = args.server_key.clone();
    let known_path = keys::data_dir().map(|dir| dir.join("known_servers"));
    let known = match &known_path {
        Some(path) => keys::KnownServers::load(path)?,
        None => keys::KnownServers::default(),
    };
    let server_name = addr::Target::parse(&args.server)?.to_string();
    // An explicit --server-key takes precedence over (and replaces) an earlier pin. Either
    // is checked by the client core; with neither, the core holds everything until the key
    // it reports is accepted (and pinned).
    let pinned = if wanted.is_some() {
        None
    } else {
        known.pinned(&server_name)
    };

    let mut rng = OsRandom::new().context("no randomness")?;
    let config = ClientConfig {
        connect_timeout: args.connect_timeout,
        secure: Some(pinned),
        expected_fingerprint: wanted.clone(),
        ..ClientConfig::default()
    };
    let mut client = Client::new(config, &mut rng, Instant::now());
    for message in [
        ClientMessage::Nick {
            nick: args.nick.clone(),
        },
        ClientMessage::Join {
            room: args.room.clone(),
        },
    ] {
        // The queue is empty: these two always fit.
        let _ = client.send(&message);
    }
    Ok(Prepared {
        socket,
        local,
        server,
        client,
        keys: KeyCheck {
            server_name,
            wanted,
            pinned,
            known,
        },
    })
}

async fn drive(args: &JoinArgs, tracer: Tracer) -> Result<ExitCode> {
    let Prepared {
        socket,
        local,
        server,
        mut client,
        mut keys,
    } = prepare(args)?;
    if !args.json
        && !args.plain
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
    {
        return crate::tui::run_join(args, tracer, socket, local, server, client, keys).await;
    }
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let printer = Printer { json: args.json };
    let mut session = Session {
        room: args.room.clone(),
        first_nick: FirstNick::default(),
        pending: VecDeque::new(),
        lines: 0,
        refused_lines: false,
    };

    let mut inputs = spawn_stdin_lines();
    let mut input_open = true;
    let mut leave_by: Option<Instant> = None;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut exit = ExitCode::SUCCESS;
    // The server's key or the nick was refused: say so once, and nothing about the connection
    // after it.
    let mut refused = false;
    let mut progress = Progress::new(
        !args.json && std::io::stderr().is_terminal(),
        &keys.server_name,
    );
    loop {
        session.retry_pending(&mut client);
        transmit(&socket, &mut client, tracer, local, server).await;
        while let Some(event) = client.poll_event() {
            progress.clear();
            match event {
                ClientEvent::Connected if refused => {}
                ClientEvent::Connected => {
                    printer.status(&format!("connected to {server}"), "connected")
                }
                ClientEvent::NotARoomServer => {
                    output::status(&format!(
                        "udpchat: error: {}",
                        not_a_room_server(&keys.server_name)
                    ));
                    exit = ExitCode::FAILURE;
                    refused = true;
                    client.close(Instant::now());
                }
                // The program is ending (a refused nick or key): what the server still says
                // (its "choose a nick first" to the lines sent after the nick) is not news.
                ClientEvent::Message(_) if refused => {}
                ClientEvent::Message(message) => {
                    if let Some(fatal) = session.first_nick.refusal(&message) {
                        // One line says it; JSON readers get the event as well.
                        if args.json {
                            printer.show(&message)?;
                        }
                        output::status(&format!("udpchat: error: {fatal}"));
                        client.close(Instant::now());
                        exit = ExitCode::FAILURE;
                        refused = true;
                        continue;
                    }
                    printer.show(&message)?;
                }
                // While the server keeps acknowledging (a server holding a long pipe to its
                // rate does so steadily), the wait to leave starts again: `--linger` bounds
                // the time without progress, not the whole delivery.
                ClientEvent::Acknowledged(_) => {
                    if let Some(deadline) = leave_by.as_mut() {
                        *deadline = Instant::now() + args.linger;
                    }
                }
                ClientEvent::Unblocked => {}
                ClientEvent::ServerKey(key) => match keys.decide(&mut client, key)? {
                    KeyVerdict::Refused(text) => {
                        output::status(&format!("udpchat: error: {text}"));
                        exit = ExitCode::FAILURE;
                        refused = true;
                    }
                    KeyVerdict::Accepted {
                        pinned_now: Some(text),
                        ..
                    } => printer.status(&text, "pinned"),
                    KeyVerdict::Accepted { .. } => {}
                },
                ClientEvent::KeyMismatch { pinned, offered } => {
                    output::status(&format!(
                        "udpchat: error: {}",
                        keys.refusal(&pinned, &offered)
                    ));
                    exit = ExitCode::FAILURE;
                    refused = true;
                }
                ClientEvent::Closed(_) if refused => {}
                ClientEvent::Closed(CloseReason::TimedOut) if !progress.connected => {
                    output::status(&format!(
                        "udpchat: error: {}",
                        no_answer(&keys.server_name, args.connect_timeout)
                    ));
                    exit = ExitCode::FAILURE;
                }
                ClientEvent::Closed(reason) => {
                    let (text, ok) = describe_close(reason);
                    if ok {
                        printer.status(&text, "closed");
                    } else {
                        // A failure (exit 1): in the project's one error form (and in JSON
                        // for scripts).
                        output::status(&format!("udpchat: error: {text}"));
                        if args.json {
                            printer.status(&text, "closed");
                        }
                        exit = ExitCode::FAILURE;
                    }
                }
            }
        }
        // Events may have closed the client (a refused nick): its Close goes out now.
        transmit(&socket, &mut client, tracer, local, server).await;
        if client.is_drained() {
            if session.refused_lines {
                exit = ExitCode::FAILURE;
            }
            return Ok(exit);
        }
        // End of input: leave once everything sent is acknowledged, or at the deadline.
        if let Some(deadline) = leave_by {
            if client.is_connected() && session.pending.is_empty() && client.is_send_idle() {
                client.close(Instant::now());
                continue;
            }
            if Instant::now() >= deadline && client.is_connected() {
                output::status(
                    "udpchat: error: the server did not acknowledge everything in time; leaving anyway",
                );
                exit = ExitCode::FAILURE;
                client.close(Instant::now());
                continue;
            }
        }
        if client.is_connected() {
            progress.connected = true;
        }
        progress.show(Instant::now());
        let deadline = [client.poll_timeout(), leave_by, progress.next]
            .into_iter()
            .flatten()
            .min();
        let sleep = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let accepting = input_open && session.pending.is_empty();
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(n) => {
                    tracer.datagram(Direction::Received, local, server, &buf[..n]);
                    client.handle_datagram(Instant::now(), &buf[..n]);
                }
                Err(e) if net::is_icmp_report(&e) => {
                    if !client.is_connected() {
                        progress.clear();
                        bail!("nobody is listening at {server} (ICMP port unreachable)");
                    }
                }
                Err(e) => return Err(e).context("receiving"),
            },
            input = inputs.recv(), if accepting => match input {
                Some(Input::Line(line)) => {
                    session.lines += 1;
                    match parse_line(&line, &session.room) {
                        LineCommand::Send(message) => session.submit(&mut client, message),
                        LineCommand::Switch(room) => {
                            let join = ClientMessage::Join { room: room.clone() };
                            // A room name the client refuses (too long: submit says so) is
                            // not where the next lines go.
                            if join.check_lengths().is_ok() {
                                session.room = room;
                            }
                            session.submit(&mut client, join);
                        }
                        LineCommand::Quit => {
                            input_open = false;
                            leave_by = Some(Instant::now() + args.linger);
                        }
                        LineCommand::Local(text) => printer.status(&text, "help"),
                        LineCommand::Nothing => {}
                    }
                }
                Some(Input::EndOfInput | Input::Interrupt) | None => {
                    input_open = false;
                    leave_by = Some(Instant::now() + args.linger);
                }
            },
            () = tokio::time::sleep_until(sleep.into()) => {}
            _ = sigint.recv() => client.close(Instant::now()),
            _ = sigterm.recv() => client.close(Instant::now()),
        }
        let now = Instant::now();
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
    }
}

/// The error for a server that answered the Hello with something that is not udpchat's.
pub(crate) fn not_a_room_server(server: &str) -> String {
    format!(
        "{server} answered, but it is not a udpchat room server (is `udpchat serve` running there?)"
    )
}

/// The error for a server that never answered the Hello within `timeout`.
pub(crate) fn no_answer(server: &str, timeout: Duration) -> String {
    format!(
        "no answer from {server} within {} (is `udpchat serve` running there?)",
        crate::send::fmt_secs(timeout)
    )
}

/// While the handshake waits, on a terminal: one stderr line, rewritten each second, so that
/// a silent server is not a silent program (`waiting for 127.0.0.1:12345… 3 s`).
struct Progress {
    /// What is waited for, as the user named it.
    server: String,
    /// When the wait began.
    started: Instant,
    /// When the line is next rewritten; `None` once it is gone for good (or never shown).
    next: Option<Instant>,
    /// The line is on the screen now.
    shown: bool,
    /// The client was connected (a later timeout is not the connect timeout).
    connected: bool,
}

impl Progress {
    fn new(on_terminal: bool, server: &str) -> Self {
        let now = Instant::now();
        Self {
            server: server.to_owned(),
            started: now,
            next: on_terminal.then_some(now),
            shown: false,
            connected: false,
        }
    }

    /// Rewrites the line when its second has come.
    fn show(&mut self, now: Instant) {
        let Some(next) = self.next else { return };
        if now < next {
            return;
        }
        let waited = now.saturating_duration_since(self.started).as_secs();
        output::status_in_place(&format!("waiting for {}… {waited} s", self.server));
        self.shown = true;
        self.next = Some(next + Duration::from_secs(1));
    }

    /// Erases the line for good: something happened, and is said on its own line.
    fn clear(&mut self) {
        if self.shown {
            output::status_in_place("");
        }
        self.shown = false;
        self.next = None;
    }
}

/// Sends everything the client has to send.
pub(crate) async fn transmit(
    socket: &UdpSocket,
    client: &mut Client,
    tracer: Tracer,
    local: std::net::SocketAddr,
    server: std::net::SocketAddr,
) {
    while let Some(datagram) = client.poll_transmit(Instant::now()) {
        match socket.send(&datagram).await {
            Ok(_) => tracer.datagram(Direction::Sent, local, server, &datagram),
            Err(e) if net::is_icmp_report(&e) => {}
            Err(e) => tracing::debug!(error = %e, "send failed"),
        }
    }
}

/// The client's side of the conversation: current room, nick state, messages waiting for
/// room in the send queue (backpressure: input is not read while any wait).
struct Session {
    room: String,
    first_nick: FirstNick,
    /// Messages waiting for room, with the number of the input line they came from.
    pending: VecDeque<(u64, ClientMessage)>,
    /// Input lines read so far (the current line's number).
    lines: u64,
    /// A line was refused (too long for the protocol): the exit status will say so.
    refused_lines: bool,
}

/// Watches the answer to the first nick: a refusal before the server confirmed any nick ends
/// the program (the user must pick another), a later one is just an error line.
#[derive(Debug, Default)]
pub(crate) struct FirstNick {
    confirmed: bool,
}

impl FirstNick {
    /// The refusal to report (made safe for the terminal) when `message` refuses the first nick.
    pub(crate) fn refusal(&mut self, message: &ServerMessage) -> Option<String> {
        match message {
            ServerMessage::NickSet { .. } => self.confirmed = true,
            ServerMessage::Error {
                code: ErrorCode::NickTaken | ErrorCode::InvalidName,
                text,
            } if !self.confirmed => return Some(neutralize(text).into_owned()),
            _ => {}
        }
        None
    }
}

impl Session {
    fn submit(&mut self, client: &mut Client, message: ClientMessage) {
        self.pending.push_back((self.lines, message));
        self.retry_pending(client);
    }

    /// Hands waiting messages to the client, in order, until its queue is full. A message the
    /// client refuses as too long is reported (one error line) and skipped.
    fn retry_pending(&mut self, client: &mut Client) {
        while let Some((line, message)) = self.pending.front() {
            match client.send(message) {
                Err(SendError::QueueFull(_)) => return,
                Err(SendError::TooLong(too_long)) => {
                    output::status(&format!(
                        "udpchat: error: {}",
                        too_long_line(*line, too_long)
                    ));
                    self.refused_lines = true;
                }
                _ => {}
            }
            self.pending.pop_front();
        }
    }
}

/// The error for input line `line`, refused because a field is over the protocol's limit.
pub(crate) fn too_long_line(line: u64, too_long: TooLong) -> String {
    let TooLong { field, len, max } = too_long;
    if field == "text" {
        format!(
            "line {line} is {len} bytes, longer than the {max} bytes a message may carry; not sent"
        )
    } else {
        format!(
            "line {line}: the {field} is {len} bytes, longer than the {max} bytes allowed; not sent"
        )
    }
}

/// Words for how the connection ended, and whether that is a normal end.
pub(crate) fn describe_close(reason: CloseReason) -> (String, bool) {
    match reason {
        CloseReason::LocallyClosed(CloseCode::Leaving) => ("left".into(), true),
        CloseReason::LocallyClosed(code) => (format!("left ({code:?})"), true),
        CloseReason::ClosedByPeer(CloseCode::ServerShutdown) => {
            ("the server shut down".into(), false)
        }
        CloseReason::ClosedByPeer(CloseCode::ProtocolViolation) => (
            "the server closed the connection: it says this client broke the protocol".into(),
            false,
        ),
        CloseReason::ClosedByPeer(code) => (
            format!("the server closed the connection ({code:?})"),
            false,
        ),
        CloseReason::TimedOut => ("no answer from the server: timed out".into(), false),
        CloseReason::ProtocolViolation => (
            "the server broke the protocol (it sent something this client cannot decode); disconnected"
                .into(),
            false,
        ),
    }
}

/// Prints events as text lines or JSON objects.
struct Printer {
    json: bool,
}

impl Printer {
    fn show(&self, message: &ServerMessage) -> Result<()> {
        let line = if self.json {
            json_line(message)
        } else {
            text_line(message)
        };
        if let Some(line) = line {
            output::print_line(&line).context("writing an event")?;
        }
        Ok(())
    }

    /// A local status: stderr in text mode, a JSON event in JSON mode.
    fn status(&self, text: &str, kind: &str) {
        if self.json {
            let _ = output::print_line(&terminal_safe_json(&json!({ "type": kind, "text": text })));
        } else {
            output::status(&format!("* {text}"));
        }
    }
}

/// An event as a text line; network text is neutralised.
pub fn text_line(message: &ServerMessage) -> Option<String> {
    let n = |s: &str| neutralize(s).into_owned();
    Some(match message {
        ServerMessage::Message {
            room,
            from,
            kind,
            history,
            text,
        } => {
            let mark = if *history { "(history) " } else { "" };
            match kind {
                MessageKind::Say => format!("[{}] {mark}{}: {}", n(room), n(from), n(text)),
                MessageKind::Action => format!("[{}] {mark}* {} {}", n(room), n(from), n(text)),
            }
        }
        ServerMessage::Private { from, to, text } => {
            format!("[private] {} -> {}: {}", n(from), n(to), n(text))
        }
        ServerMessage::Joined { room, nick } => format!("[{}] * {} joined", n(room), n(nick)),
        ServerMessage::Left { room, nick, reason } => {
            format!("[{}] * {} left ({})", n(room), n(nick), n(reason))
        }
        ServerMessage::NickSet { nick } => format!("* you are {}", n(nick)),
        ServerMessage::NickChanged { old, new } => format!("* {} is now {}", n(old), n(new)),
        ServerMessage::Names { room, nicks } => {
            let nicks: Vec<String> = nicks.iter().map(|x| n(x)).collect();
            format!("[{}] * members: {}", n(room), nicks.join(", "))
        }
        ServerMessage::Topic {
            room,
            topic,
            set_by,
        } if topic.is_empty() && set_by.is_empty() => {
            format!("[{}] * no topic", n(room))
        }
        ServerMessage::Topic {
            room,
            topic,
            set_by,
        } => format!("[{}] * topic: {} (set by {})", n(room), n(topic), n(set_by)),
        ServerMessage::Error { text, .. } => format!("! {}", n(text)),
    })
}

/// `value` as one line of JSON that is safe to print on a terminal: serde escapes the C0
/// controls; every other character a terminal could act on (DEL, the C1 controls such as
/// U+009B, which some terminals take for CSI, and the bidi overrides and isolates; see
/// [`is_unsafe_for_terminal`]) is escaped here as `\uXXXX`. They can only occur inside strings,
/// so the JSON stays valid and decodes to the same text.
pub fn terminal_safe_json(value: &serde_json::Value) -> String {
    let raw = value.to_string();
    if !raw.chars().any(is_unsafe_for_terminal) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if is_unsafe_for_terminal(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// An event as one JSON object, terminal-safe (see [`terminal_safe_json`]).
pub fn json_line(message: &ServerMessage) -> Option<String> {
    let value = match message {
        ServerMessage::Message {
            room,
            from,
            kind,
            history,
            text,
        } => json!({
            "type": "message", "room": room, "from": from, "text": text, "history": history,
            "action": *kind == MessageKind::Action,
        }),
        ServerMessage::Private { from, to, text } => json!({
            "type": "message", "room": null, "from": from, "to": to, "text": text, "history": false,
            "action": false,
        }),
        ServerMessage::Joined { room, nick } => {
            json!({ "type": "join", "room": room, "nick": nick })
        }
        ServerMessage::Left { room, nick, reason } => {
            json!({ "type": "leave", "room": room, "nick": nick, "reason": reason })
        }
        ServerMessage::NickSet { nick } => {
            json!({ "type": "nick", "old": null, "new": nick, "you": true })
        }
        ServerMessage::NickChanged { old, new } => {
            json!({ "type": "nick", "old": old, "new": new, "you": false })
        }
        ServerMessage::Names { room, nicks } => {
            json!({ "type": "names", "room": room, "nicks": nicks })
        }
        ServerMessage::Topic {
            room,
            topic,
            set_by,
        } => {
            json!({ "type": "topic", "room": room, "topic": topic, "set_by": set_by })
        }
        ServerMessage::Error { code, text } => {
            json!({ "type": "error", "code": format!("{code:?}"), "text": text })
        }
    };
    Some(terminal_safe_json(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn say(room: &str, text: &str) -> LineCommand {
        LineCommand::Send(ClientMessage::Say {
            room: room.into(),
            text: text.into(),
        })
    }

    #[test]
    fn lines_become_commands() {
        assert_eq!(parse_line("hello", "lobby"), say("lobby", "hello"));
        assert_eq!(
            parse_line("//etc/passwd", "lobby"),
            say("lobby", "/etc/passwd")
        );
        assert_eq!(parse_line("", "lobby"), LineCommand::Nothing);
        assert_eq!(
            parse_line("/join rust", "lobby"),
            LineCommand::Switch("rust".into())
        );
        assert_eq!(
            parse_line("/msg bob  hi there", "lobby"),
            LineCommand::Send(ClientMessage::Private {
                to: "bob".into(),
                text: " hi there".into()
            })
        );
        assert!(matches!(
            parse_line("/msg bob", "lobby"),
            LineCommand::Local(_)
        ));
        assert_eq!(
            parse_line("/me waves", "r"),
            LineCommand::Send(ClientMessage::Action {
                room: "r".into(),
                text: "waves".into()
            })
        );
        assert_eq!(
            parse_line("/part", "r"),
            LineCommand::Send(ClientMessage::Part { room: "r".into() })
        );
        assert_eq!(
            parse_line("/who", "r"),
            LineCommand::Send(ClientMessage::Who { room: "r".into() })
        );
        assert_eq!(
            parse_line("/topic new topic", "r"),
            LineCommand::Send(ClientMessage::Topic {
                room: "r".into(),
                topic: Some("new topic".into())
            })
        );
        assert_eq!(parse_line("/quit", "r"), LineCommand::Quit);
        assert!(matches!(
            parse_line("/frobnicate", "r"),
            LineCommand::Local(_)
        ));
    }

    #[test]
    fn only_a_refusal_of_the_first_nick_is_fatal_and_it_is_neutralised() {
        let refusal = |text: &str| ServerMessage::Error {
            code: ErrorCode::NickTaken,
            text: text.into(),
        };
        let mut first = FirstNick::default();
        assert_eq!(
            first
                .refusal(&refusal("nick \x1b[2Jada is taken"))
                .as_deref(),
            Some("nick ^[[2Jada is taken")
        );
        let mut first = FirstNick::default();
        assert_eq!(
            first.refusal(&ServerMessage::NickSet { nick: "ada".into() }),
            None
        );
        assert_eq!(first.refusal(&refusal("nick bob is taken")), None);
    }

    #[test]
    fn text_lines_are_neutralised() {
        let m = ServerMessage::Message {
            room: "lobby".into(),
            from: "ev\x1bil".into(),
            kind: MessageKind::Say,
            history: true,
            text: "\x1b[2Jhi".into(),
        };
        assert_eq!(text_line(&m).unwrap(), "[lobby] (history) ev^[il: ^[[2Jhi");
    }

    #[test]
    fn json_lines_escape_c1_bidi_and_del_and_still_round_trip() {
        let hostile = "a\u{9b}2Jb\u{85}c\u{202e}d\u{2066}e\u{2069}f\u{7f}g\u{1b}[0m\u{e9}\u{1f600}";
        let m = ServerMessage::Message {
            room: "lobby".into(),
            from: "ev\u{202d}e".into(),
            kind: MessageKind::Say,
            history: false,
            text: hostile.into(),
        };
        let line = json_line(&m).unwrap();
        assert!(
            !line.chars().any(is_unsafe_for_terminal),
            "raw control in {line:?}"
        );
        for escaped in [
            "\\u009b", "\\u0085", "\\u202e", "\\u2066", "\\u2069", "\\u007f", "\\u202d",
        ] {
            assert!(line.contains(escaped), "{escaped} missing from {line}");
        }
        assert!(
            line.contains('\u{e9}') && line.contains('\u{1f600}'),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["text"], hostile);
        assert_eq!(v["from"], "ev\u{202d}e");
    }

    #[test]
    fn json_lines_have_the_documented_shape() {
        let m = ServerMessage::Private {
            from: "a".into(),
            to: "b".into(),
            text: "x\u{7}".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(&m).unwrap()).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["to"], "b");
        assert_eq!(v["text"], "x\u{7}");
        assert!(
            !json_line(&m).unwrap().contains('\u{7}'),
            "control characters are escaped"
        );
    }
}
