//! The full-screen room client, in the tradition of irssi and WeeChat: ratatui draws, crossterm
//! reads the keyboard and the mouse.
//!
//! - [`app`]: the screen's state (windows, lines, members, message states), no terminal in it;
//! - [`editor`]: the input line;
//! - [`render`]: drawing it;
//! - this module: the terminal (raw mode, alternate screen, mouse, bracketed paste, always
//!   restored: on exit, on Ctrl-C, on SIGTERM/SIGHUP and on a panic) and the loops that join
//!   the keyboard, the socket and the timers around a room [`Client`] (`udpchat join`) or the
//!   lab's two-party [`Conversation`] (`udpchat chat`).

pub mod app;
pub mod editor;
pub mod render;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::{self, Stdout};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use udpchat_proto::client::{Client, ClientEvent};
use udpchat_proto::lab::{Conversation, Event as LabEvent, Turn};
use udpchat_proto::wire::message::ClientMessage;

use crate::cli::JoinArgs;
use crate::clock;
use crate::join::{FirstNick, KeyCheck, KeyVerdict, describe_close, transmit};
use crate::net::{self, MAX_DATAGRAM};
use crate::trace::{Direction, Tracer};
use app::{App, Link};

/// The screen is redrawn at most this often when messages pour in.
const FRAME: Duration = Duration::from_millis(16);

/// Loss is measured over this many one-second samples.
const LOSS_WINDOW: usize = 10;

/// The terminal in full-screen mode; dropping it puts the terminal back as it was.
pub struct TerminalGuard {
    /// The ratatui terminal.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Raw mode, the alternate screen, mouse reports and bracketed paste; a panic restores the
    /// terminal before its message is printed.
    ///
    /// # Errors
    /// stdout is not a terminal that can do this.
    pub fn enter() -> Result<Self> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        enable_raw_mode().context("cannot put the terminal in raw mode")?;
        FULL_SCREEN.store(true, Ordering::SeqCst);
        let set_up = Terminal::new(CrosstermBackend::new(io::stdout()))
            .context("cannot use the terminal")
            .and_then(|terminal| {
                execute!(
                    io::stdout(),
                    EnterAlternateScreen,
                    EnableMouseCapture,
                    EnableBracketedPaste
                )
                .context("cannot set up the terminal")?;
                Ok(terminal)
            });
        let guard = match set_up {
            Ok(terminal) => Self { terminal },
            Err(e) => {
                restore_terminal();
                return Err(e);
            }
        };
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The terminal is in full-screen mode (so restoring it twice, from the panic hook and then
/// from the guard's drop while unwinding, does it once: a second "leave the alternate screen"
/// would move the cursor back over the panic message).
static FULL_SCREEN: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back: cooked mode, the normal screen, no mouse reports, a cursor.
/// Does nothing when it is already back.
pub fn restore_terminal() {
    if !FULL_SCREEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

/// Draws when something changed, at most once per [`FRAME`].
struct Painter {
    dirty: bool,
    last_draw: Option<Instant>,
}

impl Painter {
    fn new() -> Self {
        Self {
            dirty: true,
            last_draw: None,
        }
    }

    /// Draws if due; returns when the next draw is due, if one is waiting.
    fn paint(&mut self, guard: &mut TerminalGuard, app: &mut App) -> Result<Option<Instant>> {
        if app.redraw {
            app.redraw = false;
            guard.terminal.clear()?;
            self.dirty = true;
        }
        let now = Instant::now();
        let draw_at = self.last_draw.map_or(now, |at| at + FRAME);
        if self.dirty && now >= draw_at {
            guard.terminal.draw(|frame| render::draw(frame, app))?;
            self.last_draw = Some(now);
            self.dirty = false;
        }
        Ok(self.dirty.then_some(draw_at))
    }

    /// A terminal event for the app; false when the terminal is gone.
    fn on_event(&mut self, app: &mut App, event: Option<io::Result<Event>>) -> bool {
        self.dirty = true;
        match event {
            Some(Ok(Event::Key(key))) => app.on_key(key),
            Some(Ok(Event::Paste(text))) => app.on_paste(&text),
            Some(Ok(Event::Mouse(mouse))) => app.on_mouse(mouse),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return false,
        }
        true
    }
}

/// Recent loss from the connection's counters: retransmitted / sent segments over the last
/// [`LOSS_WINDOW`] samples.
#[derive(Default)]
struct LossMeter {
    samples: VecDeque<(u64, u64)>,
}

impl LossMeter {
    fn sample(&mut self, client: &Client) -> Option<f64> {
        let stats = client.stats()?;
        self.samples
            .push_back((stats.retransmits, stats.segments_sent));
        if self.samples.len() > LOSS_WINDOW {
            self.samples.pop_front();
        }
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let sent = last.1 - first.1;
        if sent == 0 {
            return Some(0.0);
        }
        Some((last.0 - first.0) as f64 / sent as f64)
    }
}

/// Runs `udpchat join` full-screen; the terminal is restored before this returns, and fatal
/// errors are printed after that, so they stay visible.
///
/// # Errors
/// The terminal or the socket failed.
pub async fn run_join(
    args: &JoinArgs,
    tracer: Tracer,
    socket: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    client: Client,
    keys: KeyCheck,
) -> Result<ExitCode> {
    let mut guard = TerminalGuard::enter()?;
    let mut farewell = Vec::new();
    let result = join_loop(
        args,
        tracer,
        &mut guard,
        Endpoint {
            socket,
            local,
            server,
        },
        client,
        keys,
        &mut farewell,
    )
    .await;
    drop(guard);
    for line in farewell {
        crate::output::status(&line);
    }
    result
}

/// The socket and its two addresses.
struct Endpoint {
    socket: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
}

async fn join_loop(
    args: &JoinArgs,
    tracer: Tracer,
    guard: &mut TerminalGuard,
    link: Endpoint,
    mut client: Client,
    mut keys: KeyCheck,
    farewell: &mut Vec<String>,
) -> Result<ExitCode> {
    let Endpoint {
        socket,
        local,
        server,
    } = link;
    let mut app = App::new(&keys.server_name, &args.nick, &args.room);
    app.clock = clock::minutes(clock::now());
    app.palette = render::Palette::detect();
    app.status_notice(&format!(
        "connecting to {} ({server}) as {}; /help for help",
        keys.server_name, args.nick
    ));
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut keyboard = EventStream::new();
    let mut keyboard_open = true;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut exit = ExitCode::SUCCESS;
    let mut refused = false;
    let mut first_nick = FirstNick::default();
    let mut loss = LossMeter::default();
    let mut next_tick = Instant::now();
    let mut leave_by: Option<Instant> = None;
    let mut painter = Painter::new();
    let mut unreachable_reported = false;
    loop {
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + Duration::from_secs(1);
            app.clock = clock::minutes(clock::now());
            app.status.rtt = client.rtt();
            if let Some(l) = loss.sample(&client) {
                app.status.loss = Some(l);
            }
            painter.dirty = true;
        }
        app.flush_outgoing(|m| client.send(m));
        transmit(&socket, &mut client, tracer, local, server).await;
        while let Some(event) = client.poll_event() {
            painter.dirty = true;
            match event {
                ClientEvent::Connected if refused => {}
                ClientEvent::Connected => {
                    // For the test that shows a panic gives the terminal back (debug builds).
                    if cfg!(debug_assertions) && std::env::var_os("UDPCHAT_DEBUG_PANIC").is_some() {
                        panic!("UDPCHAT_DEBUG_PANIC is set: panicking on purpose");
                    }
                    app.status.link = Link::Connected;
                    app.status.rtt = client.rtt();
                    app.status_notice(&format!("connected to {server}"));
                }
                // Ending (a refused nick or key): the server's answers to what was queued
                // after the nick ("choose a nick first") are not news.
                ClientEvent::Message(_) if refused => {}
                ClientEvent::Message(message) => {
                    if let Some(text) = first_nick.refusal(&message) {
                        farewell.push(format!("udpchat: error: {text}"));
                        exit = ExitCode::FAILURE;
                        refused = true;
                        client.close(Instant::now());
                    }
                    app.on_server_message(message);
                }
                ClientEvent::Acknowledged(count) => {
                    app.on_acknowledged(count);
                    // Progress: the wait to leave starts again (`--linger` bounds the time
                    // without any acknowledgement).
                    if let Some(deadline) = leave_by.as_mut() {
                        *deadline = Instant::now() + args.linger;
                    }
                }
                ClientEvent::Unblocked => {}
                ClientEvent::ServerKey(key) => match keys.decide(&mut client, key)? {
                    KeyVerdict::Refused(text) => {
                        farewell.push(format!("udpchat: error: {text}"));
                        exit = ExitCode::FAILURE;
                        refused = true;
                    }
                    KeyVerdict::Accepted {
                        fingerprint,
                        pinned_now,
                    } => {
                        app.status.fingerprint = Some(fingerprint);
                        if let Some(text) = pinned_now {
                            app.status_notice(&text);
                        }
                    }
                },
                ClientEvent::KeyMismatch { pinned, offered } => {
                    farewell.push(format!(
                        "udpchat: error: {}",
                        keys.refusal(&pinned, &offered)
                    ));
                    exit = ExitCode::FAILURE;
                    refused = true;
                }
                ClientEvent::NotARoomServer => {
                    farewell.push(format!(
                        "udpchat: error: {}",
                        crate::join::not_a_room_server(&keys.server_name)
                    ));
                    exit = ExitCode::FAILURE;
                    refused = true;
                    client.close(Instant::now());
                }
                ClientEvent::Closed(_) if refused => {}
                // Never connected: the same error as in line mode.
                ClientEvent::Closed(udpchat_proto::reliable::CloseReason::TimedOut)
                    if matches!(app.status.link, Link::Connecting) =>
                {
                    farewell.push(format!(
                        "udpchat: error: {}",
                        crate::join::no_answer(&keys.server_name, args.connect_timeout)
                    ));
                    exit = ExitCode::FAILURE;
                    app.status.link = Link::Closed("no answer".into());
                }
                ClientEvent::Closed(reason) => {
                    let (text, ok) = describe_close(reason);
                    app.status.link = Link::Closed(text.clone());
                    app.status_notice(&text);
                    if !ok {
                        exit = ExitCode::FAILURE;
                        farewell.push(format!("udpchat: error: {text}"));
                    }
                }
            }
        }
        transmit(&socket, &mut client, tracer, local, server).await;
        if client.is_drained() {
            return Ok(exit);
        }
        // Leaving: once everything typed is acknowledged, or at the deadline.
        if app.quit && leave_by.is_none() {
            leave_by = Some(Instant::now() + args.linger);
            app.quit = false;
            if app.outgoing_len() > 0 || !client.is_send_idle() {
                app.status_notice(
                    "leaving once the server has everything sent (Ctrl-C again to leave now)",
                );
            }
            painter.dirty = true;
        } else if app.quit {
            // A second request: leave now. The Close goes out once, and the close handshake's
            // linger (three retransmission timeouts: seconds, when the server is slow or gone)
            // is not waited for; the server times the connection out if the Close is lost.
            app.quit = false;
            client.close(Instant::now());
            transmit(&socket, &mut client, tracer, local, server).await;
            if let Some(error) = undelivered_error(&app, &client) {
                farewell.push(error);
                exit = ExitCode::FAILURE;
            }
            return Ok(exit);
        }
        if let Some(deadline) = leave_by
            && client.is_connected()
        {
            if app.outgoing_len() == 0 && client.is_send_idle() {
                client.close(Instant::now());
                continue;
            }
            if Instant::now() >= deadline {
                // `--linger` passed without an acknowledgement: as in line mode, an error.
                if let Some(error) = undelivered_error(&app, &client) {
                    farewell.push(error);
                }
                exit = ExitCode::FAILURE;
                client.close(Instant::now());
                continue;
            }
        }
        if !client.is_connected() && leave_by.is_some() && !client.is_drained() {
            // Never connected and asked to leave: nothing to wait for.
            if matches!(app.status.link, Link::Connecting) {
                client.close(Instant::now());
                continue;
            }
        }
        let draw_at = painter.paint(guard, &mut app)?;
        let now = Instant::now();
        let deadline = [client.poll_timeout(), leave_by, Some(next_tick), draw_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| now + Duration::from_secs(1));
        tokio::select! {
            received = socket.recv(&mut buf) => match received {
                Ok(n) => {
                    tracer.datagram(Direction::Received, local, server, &buf[..n]);
                    client.handle_datagram(Instant::now(), &buf[..n]);
                }
                Err(e) if net::is_icmp_report(&e) => {
                    // Each Hello repeated brings another report: say it once.
                    if !client.is_connected() && !refused && !unreachable_reported {
                        unreachable_reported = true;
                        app.status_notice(&format!("nobody is listening at {server} (ICMP port unreachable); still trying"));
                        painter.dirty = true;
                    }
                }
                Err(e) => return Err(e).context("receiving"),
            },
            event = keyboard.next(), if keyboard_open => {
                if !painter.on_event(&mut app, event) {
                    // The terminal is gone: leave.
                    keyboard_open = false;
                    client.close(Instant::now());
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {}
            _ = sigint.recv() => app.quit = true,
            _ = sigterm.recv() => client.close(Instant::now()),
            _ = sighup.recv() => client.close(Instant::now()),
        }
        let now = Instant::now();
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now);
        }
    }
}

/// The error line for leaving with something the server has not acknowledged, if anything:
/// how many typed lines (marked ⋯) are lost.
fn undelivered_error(app: &App, client: &Client) -> Option<String> {
    let lines = app.undelivered();
    let what = if lines > 0 {
        format!("{lines} line(s) not delivered")
    } else if app.outgoing_len() > 0 || !client.is_send_idle() {
        "leaving anyway".to_owned()
    } else {
        return None;
    };
    Some(format!(
        "udpchat: error: the server did not acknowledge everything in time; {what}"
    ))
}

/// How many different strangers' datagrams the lab chat reports (as the line modes do).
const STRANGERS_REPORTED: usize = 8;

/// How the peer's messages are signed in the lab chat's rows: `:PORT`. The whole address does
/// not fit the nick column (8 or 12 columns) and was cut just where the port, the part that
/// tells two peers on one host apart, begins; the top bar and the window's tab show it whole.
fn peer_label(peer: SocketAddr) -> String {
    format!(":{}", peer.port())
}

/// Runs the lab's two-party chat (`udpchat chat`) full-screen: the [`Conversation`] decides,
/// this loop moves datagrams, keys and lines. The end of the chat ("you said bye; chat over")
/// is printed on the normal screen once the terminal is restored.
///
/// # Errors
/// The terminal or the socket failed.
pub async fn run_chat(
    tracer: Tracer,
    socket: UdpSocket,
    mut conversation: Conversation,
    args: &crate::cli::ChatArgs,
    greeting: &str,
) -> Result<ExitCode> {
    let turns = args.turns;
    let local = crate::addr::canonical(socket.local_addr()?);
    let peer = conversation
        .peer()
        .map_or_else(|| "(waiting for a peer)".to_owned(), |p| p.to_string());
    let mut guard = TerminalGuard::enter()?;
    let mut app = App::new_peer(&format!("udp {local}"), &peer);
    app.clock = clock::minutes(clock::now());
    app.palette = render::Palette::detect();
    app.status.link = Link::Note(
        match (conversation.peer(), turns, conversation.turn()) {
            (None, ..) => "waiting for a peer",
            (Some(_), false, _) => "chatting",
            (Some(_), true, Turn::Ours) => "your turn",
            (Some(_), true, Turn::Theirs) => "their turn",
        }
        .into(),
    );
    app.status_notice(&format!("{greeting}; /help for help"));
    let mut farewell = Vec::new();
    let result = chat_loop(
        tracer,
        &mut guard,
        &socket,
        args,
        &mut conversation,
        &mut app,
        &mut farewell,
    )
    .await;
    drop(guard);
    for line in farewell {
        let _ = crate::output::print_line(&line);
    }
    result
}

async fn chat_loop(
    tracer: Tracer,
    guard: &mut TerminalGuard,
    socket: &UdpSocket,
    args: &crate::cli::ChatArgs,
    conversation: &mut Conversation,
    app: &mut App,
    farewell: &mut Vec<String>,
) -> Result<ExitCode> {
    let turns = args.turns;
    let mut exit = ExitCode::SUCCESS;
    let local = crate::addr::canonical(socket.local_addr()?);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut keyboard = EventStream::new();
    let mut keyboard_open = true;
    let mut painter = Painter::new();
    let mut strangers = std::collections::HashSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut next_tick = Instant::now();
    loop {
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + Duration::from_secs(1);
            app.clock = clock::minutes(clock::now());
        }
        app.flush_outgoing(|message| {
            if let ClientMessage::Private { text, .. } = message {
                conversation.handle_line(Instant::now(), text);
            }
            Ok(0)
        });
        if app.quit {
            app.quit = false;
            conversation.handle_interrupt(Instant::now());
        }
        while let Some(transmit) = conversation.poll_transmit() {
            if let Err(text) =
                crate::chat::send(socket, conversation, &transmit, local, tracer).await
            {
                app.status_notice(&text);
            }
        }
        while let Some(event) = conversation.poll_event() {
            painter.dirty = true;
            match event {
                LabEvent::PeerLearned(peer) => {
                    app.rename_peer(&peer.to_string());
                    if !turns {
                        app.status.link = Link::Note("chatting".into());
                    }
                    app.status_notice(&format!("talking with {peer}"));
                }
                LabEvent::MessageReceived { from, text } => {
                    app.on_peer_message(&peer_label(from), &text);
                }
                LabEvent::PeerUnreachable { peer, undelivered } => {
                    app.status_notice(&crate::screen::unreachable_notice(peer, undelivered));
                }
                LabEvent::StrangerIgnored { from, len } => {
                    if strangers.len() < STRANGERS_REPORTED && strangers.insert(from) {
                        app.status_notice(&format!(
                            "ignored {len} bytes from {from}: not the peer of this chat"
                        ));
                    }
                }
                LabEvent::TurnChanged(Turn::Ours) => {
                    app.status.link = Link::Note("your turn".into())
                }
                LabEvent::TurnChanged(Turn::Theirs) => {
                    app.status.link = Link::Note("their turn".into());
                }
                LabEvent::Ended {
                    reason,
                    unsent,
                    unconfirmed,
                    answered,
                } => {
                    let peer = conversation.peer();
                    if let Some(text) =
                        crate::chat::failure(reason, unsent, unconfirmed, peer, args.linger)
                    {
                        farewell.push(format!("udpchat: error: {text}"));
                        exit = ExitCode::FAILURE;
                    } else {
                        let lines = crate::screen::farewell(reason, unsent, unconfirmed, answered);
                        farewell.extend(lines.into_iter().map(|line| format!("-- {line}")));
                    }
                }
            }
        }
        if conversation.is_ended() {
            return Ok(exit);
        }
        let draw_at = painter.paint(guard, app)?;
        let deadline = [Some(next_tick), draw_at, conversation.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    tracer.datagram(Direction::Received, local, from, &buf[..n]);
                    conversation.handle_datagram(
                        Instant::now(),
                        crate::addr::canonical(from),
                        &buf[..n],
                    );
                }
                Err(e) if net::is_icmp_report(&e) => conversation.handle_unreachable(Instant::now()),
                Err(e) => return Err(e).context("receiving"),
            },
            event = keyboard.next(), if keyboard_open => {
                if !painter.on_event(app, event) {
                    keyboard_open = false;
                    conversation.handle_end_of_input(Instant::now());
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                conversation.handle_timeout(Instant::now());
            }
            _ = sigint.recv() => conversation.handle_interrupt(Instant::now()),
            _ = sigterm.recv() => conversation.handle_interrupt(Instant::now()),
            _ = sighup.recv() => conversation.handle_interrupt(Instant::now()),
        }
    }
}
