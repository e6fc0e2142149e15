//! The room client's screen state, with no terminal and no socket: windows (a status window,
//! one per room, one per private conversation), their lines, members, unread counts and
//! scrollback, the input line, and the status bar's numbers.
//!
//! Keys, pastes, mouse wheels and the server's messages go in; messages to send come out through
//! [`App::flush_outgoing`]. [`super::render`] draws it. Everything shown that came from the
//! network went through [`clean`] first, so no peer can put a terminal escape on the screen.
//!
//! Each message you send gets a line at once, marked with its [`Delivery`] state: pending
//! (queued or in flight), acknowledged (the server has it: [`ClientEvent::Acknowledged`] covers
//! its number), delivered (the server relayed it to the room: your own copy came back), or
//! failed (the server refused it).
//!
//! [`ClientEvent::Acknowledged`]: udpchat_proto::client::ClientEvent::Acknowledged

use std::collections::VecDeque;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use udpchat_proto::reliable::SendError;
use udpchat_proto::text::neutralize;
use udpchat_proto::wire::message::{ClientMessage, ErrorCode, MessageKind, ServerMessage, TooLong};

use super::editor::LineEditor;
use super::render::{Palette, wrapped_rows};
use crate::join::{HELP, LineCommand, parse_line};

/// Lines each window keeps; older ones scroll away for good.
pub const SCROLLBACK: usize = 5000;

/// Messages typed but not yet taken by the connection (its queue full) at most.
pub const MAX_OUTGOING: usize = 10_000;

/// Rows the mouse wheel scrolls per notch.
const WHEEL_ROWS: usize = 3;

/// What kind of conversation a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Connection notices, help, errors not tied to a room.
    Status,
    /// A room.
    Room,
    /// Private messages with one nick.
    Private,
}

/// Where one of your messages is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Typed; not yet acknowledged by the server.
    Pending,
    /// The server has it.
    Acknowledged,
    /// The server relayed it (its copy to you came back).
    Delivered,
    /// The server refused it.
    Failed,
}

/// What a line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Someone's message (or action, or private message).
    Message {
        /// The sender.
        from: String,
        /// The text.
        text: String,
        /// A `/me` action.
        action: bool,
        /// Replayed from the room's history.
        history: bool,
        /// Your own message, and where it is.
        own: Option<Delivery>,
        /// The text mentions your nick.
        mention: bool,
    },
    /// Something that happened (joins, parts, topics, help).
    Notice(String),
    /// Something went wrong.
    Error(String),
}

/// One line of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Unique among all lines, to find it again.
    pub id: u64,
    /// When it arrived, as the driver formatted it ("14:05").
    pub time: String,
    /// What it says.
    pub body: Body,
}

/// A window: one tab.
#[derive(Debug, Clone)]
pub struct Window {
    /// What it holds.
    pub kind: WindowKind,
    /// The room's or nick's name as the server spells it.
    pub name: String,
    /// Its lines, oldest first.
    pub lines: VecDeque<Line>,
    /// The room's members, sorted case-insensitively.
    pub members: Vec<String>,
    /// The room's topic.
    pub topic: String,
    /// Messages that arrived while another window was shown.
    pub unread: usize,
    /// One of them was private or mentioned your nick.
    pub mentioned: bool,
    /// Rows scrolled up from the bottom (0: following new lines).
    pub scroll: usize,
    /// Lines that arrived below the view while scrolled up.
    pub new_below: usize,
    /// You are in this room (a room window waits for the server's answer to `/join`).
    pub joined: bool,
}

impl Window {
    fn new(kind: WindowKind, name: &str) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            lines: VecDeque::new(),
            members: Vec::new(),
            topic: String::new(),
            unread: 0,
            mentioned: false,
            scroll: 0,
            new_below: 0,
            joined: kind != WindowKind::Room,
        }
    }

    fn is(&self, kind: WindowKind, name: &str) -> bool {
        self.kind == kind && same_name(&self.name, name)
    }
}

/// The state of the connection, for the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Handshaking.
    Connecting,
    /// Talking to the server.
    Connected,
    /// Over, and why.
    Closed(String),
    /// Anything else worth a word (whose turn it is in the lab's chat).
    Note(String),
}

/// What the status bar shows.
#[derive(Debug, Clone)]
pub struct Status {
    /// The server as the user named it.
    pub server: String,
    /// The server key's fingerprint, once the secure handshake proved it.
    pub fingerprint: Option<String>,
    /// The smoothed round-trip time.
    pub rtt: Option<Duration>,
    /// Recent loss, as a fraction of the segments sent (retransmitted / sent).
    pub loss: Option<f64>,
    /// The connection.
    pub link: Link,
}

/// A message waiting to be handed to the connection, and the line that shows it.
#[derive(Debug)]
struct Outgoing {
    message: ClientMessage,
    line: Option<LineRef>,
}

/// Where a line is: its window (by kind and name) and id.
#[derive(Debug, Clone)]
struct LineRef {
    kind: WindowKind,
    window: String,
    id: u64,
}

/// The whole screen's state. See the [module docs](self).
#[derive(Debug)]
pub struct App {
    /// Every window; the first is the status window.
    pub windows: Vec<Window>,
    /// The window shown.
    pub active: usize,
    /// The input line.
    pub editor: LineEditor,
    /// The status bar.
    pub status: Status,
    /// Your nick (as the server confirmed it, or as asked for until then).
    pub nick: String,
    /// The user asked to leave.
    pub quit: bool,
    /// The user asked for a full redraw (Ctrl-L).
    pub redraw: bool,
    /// The lab's two-party chat (`udpchat chat`): one window for the peer, every line is text
    /// for it, nothing is acknowledged (plain UDP).
    pub peer_mode: bool,
    /// The message pane's size (columns, rows), as last drawn; scrolling is measured in it.
    pub pane: (u16, u16),
    /// The wall-clock time new lines are stamped with ("14:05"); the driver keeps it current.
    pub clock: String,
    /// The colours nicks are drawn in (the driver asks the terminal).
    pub palette: Palette,
    outgoing: VecDeque<Outgoing>,
    /// Sent messages by number, waiting for the server's acknowledgement.
    awaiting_ack: VecDeque<(u64, LineRef)>,
    /// Sent messages waiting for their copy to come back, oldest first.
    awaiting_echo: VecDeque<LineRef>,
    next_line_id: u64,
}

impl App {
    /// A screen for `nick` talking to `server`, with `room` about to be joined.
    pub fn new(server: &str, nick: &str, room: &str) -> Self {
        let mut app = Self {
            windows: vec![Window::new(WindowKind::Status, "status")],
            active: 0,
            editor: LineEditor::default(),
            status: Status {
                server: server.to_owned(),
                fingerprint: None,
                rtt: None,
                loss: None,
                link: Link::Connecting,
            },
            nick: nick.to_owned(),
            quit: false,
            redraw: false,
            peer_mode: false,
            pane: (80, 20),
            clock: String::new(),
            palette: Palette::default(),
            outgoing: VecDeque::new(),
            awaiting_ack: VecDeque::new(),
            awaiting_echo: VecDeque::new(),
            next_line_id: 0,
        };
        let index = app.open(WindowKind::Room, room);
        app.active = index;
        app
    }

    /// A screen for the lab's two-party chat with `peer` (an address, or a placeholder until a
    /// listener learns it).
    pub fn new_peer(local: &str, peer: &str) -> Self {
        let mut app = Self::new(local, "you", "peer");
        app.windows.truncate(1);
        app.windows.push(Window::new(WindowKind::Private, peer));
        app.active = 1;
        app.peer_mode = true;
        app
    }

    /// The peer's address is known now (a listener learns it from the first datagram).
    pub fn rename_peer(&mut self, peer: &str) {
        if let Some(window) = self.windows.get_mut(1) {
            window.name = peer.to_owned();
        }
    }

    /// The peer said something (lab chat).
    pub fn on_peer_message(&mut self, from: &str, text: &str) {
        let clock = self.clock.clone();
        self.push_message(1, &clock, clean(from), clean(text), false, false);
    }

    /// The window shown.
    pub fn current(&self) -> &Window {
        &self.windows[self.active]
    }

    // ------------------------------------------------------------------ the network side

    /// Hands queued messages to `send` (the connection) in order, until it refuses one for a
    /// full queue; records the numbers it gives to follow acknowledgements.
    pub fn flush_outgoing(
        &mut self,
        mut send: impl FnMut(&ClientMessage) -> Result<u64, SendError>,
    ) {
        while let Some(out) = self.outgoing.pop_front() {
            match send(&out.message) {
                Ok(number) => {
                    if let Some(line) = out.line.filter(|_| !self.peer_mode) {
                        self.awaiting_ack.push_back((number, line));
                    }
                }
                Err(SendError::QueueFull(_)) => {
                    self.outgoing.push_front(out);
                    return;
                }
                Err(SendError::TooLarge(_)) => {
                    if let Some(line) = &out.line {
                        self.set_delivery(line, Delivery::Failed);
                    }
                    self.error_here("too long to send (64 KiB at most)");
                }
                // The client core refused it before sending (the server would close on it).
                Err(SendError::TooLong(TooLong { field, len, max })) => {
                    if let Some(line) = &out.line {
                        self.set_delivery(line, Delivery::Failed);
                    }
                    let what = if field == "text" {
                        "this line".to_owned()
                    } else {
                        format!("the {field}")
                    };
                    self.error_here(&format!(
                        "{what} is {len} bytes, longer than the {max} bytes a message may carry; not sent"
                    ));
                }
                Err(SendError::Closed(_)) => {
                    if let Some(line) = &out.line {
                        self.set_delivery(line, Delivery::Failed);
                    }
                }
            }
        }
    }

    /// Messages typed and not yet handed to the connection.
    pub fn outgoing_len(&self) -> usize {
        self.outgoing.len()
    }

    /// Your messages not yet acknowledged by the server (marked pending), in every window.
    pub fn undelivered(&self) -> usize {
        self.windows
            .iter()
            .flat_map(|w| &w.lines)
            .filter(|l| {
                matches!(
                    l.body,
                    Body::Message {
                        own: Some(Delivery::Pending),
                        ..
                    }
                )
            })
            .count()
    }

    /// The server has acknowledged every message numbered below `count`.
    pub fn on_acknowledged(&mut self, count: u64) {
        while let Some((number, _)) = self.awaiting_ack.front() {
            if *number >= count {
                break;
            }
            if let Some((_, line)) = self.awaiting_ack.pop_front()
                && self.delivery(&line) == Some(Delivery::Pending)
            {
                self.set_delivery(&line, Delivery::Acknowledged);
            }
        }
    }

    /// A message from the server.
    pub fn on_server_message(&mut self, message: ServerMessage) {
        let clock = self.clock.clone();
        let time = clock.as_str();
        match message {
            ServerMessage::NickSet { nick } => {
                self.nick = clean(&nick);
                let text = format!("you are now known as {}", self.nick);
                self.notice(0, time, &text);
            }
            ServerMessage::NickChanged { old, new } => {
                let (old, new) = (clean(&old), clean(&new));
                for i in 0..self.windows.len() {
                    let window = &mut self.windows[i];
                    let here = match window.kind {
                        WindowKind::Room => window.members.iter().any(|m| same_name(m, &old)),
                        WindowKind::Private => same_name(&window.name, &old),
                        WindowKind::Status => false,
                    };
                    if !here {
                        continue;
                    }
                    if window.kind == WindowKind::Private {
                        window.name.clone_from(&new);
                    }
                    window.members.retain(|m| !same_name(m, &old));
                    insert_member(&mut window.members, &new);
                    self.notice(i, time, &format!("{old} is now known as {new}"));
                }
            }
            ServerMessage::Joined { room, nick } => {
                let (room, nick) = (clean(&room), clean(&nick));
                let i = self.open(WindowKind::Room, &room);
                let window = &mut self.windows[i];
                window.name.clone_from(&room);
                insert_member(&mut window.members, &nick);
                if same_name(&nick, &self.nick) {
                    window.joined = true;
                    self.notice(i, time, &format!("you joined {room}"));
                } else {
                    self.notice(i, time, &format!("{nick} joined"));
                }
            }
            ServerMessage::Left { room, nick, reason } => {
                let (room, nick, reason) = (clean(&room), clean(&nick), clean(&reason));
                let Some(i) = self.find(WindowKind::Room, &room) else {
                    return;
                };
                if same_name(&nick, &self.nick) {
                    self.close_window(i);
                    self.notice(0, time, &format!("you left {room}"));
                } else {
                    self.windows[i].members.retain(|m| !same_name(m, &nick));
                    self.notice(i, time, &format!("{nick} left ({reason})"));
                }
            }
            ServerMessage::Message {
                room,
                from,
                kind,
                history,
                text,
            } => {
                let (room, from, text) = (clean(&room), clean(&from), clean(&text));
                let action = kind == MessageKind::Action;
                let i = self.open(WindowKind::Room, &room);
                if !history && same_name(&from, &self.nick) && self.delivered(i, &text, action) {
                    return;
                }
                self.push_message(i, time, from, text, action, history);
            }
            ServerMessage::Private { from, to, text } => {
                let (from, to, text) = (clean(&from), clean(&to), clean(&text));
                let mine = same_name(&from, &self.nick);
                let peer = if mine { &to } else { &from };
                let i = self.open(WindowKind::Private, peer);
                if mine && self.delivered(i, &text, false) {
                    return;
                }
                self.push_message(i, time, from, text, false, false);
            }
            ServerMessage::Names { room, nicks } => {
                let room = clean(&room);
                let mut nicks: Vec<String> = nicks.iter().map(|n| clean(n)).collect();
                nicks.sort_by_key(|n| n.to_lowercase());
                let text = format!("members of {room}: {}", nicks.join(", "));
                match self.find(WindowKind::Room, &room) {
                    Some(i) if self.windows[i].joined => {
                        self.windows[i].members = nicks;
                        self.notice(i, time, &text);
                    }
                    _ => self.notice(self.active, time, &text),
                }
            }
            ServerMessage::Topic {
                room,
                topic,
                set_by,
            } => {
                let (room, topic, set_by) = (clean(&room), clean(&topic), clean(&set_by));
                let text = if topic.is_empty() {
                    format!("{room} has no topic")
                } else if set_by.is_empty() {
                    format!("topic of {room}: {topic}")
                } else {
                    format!("topic of {room}: {topic} (set by {set_by})")
                };
                let i = self.find(WindowKind::Room, &room).unwrap_or(self.active);
                if self.windows[i].kind == WindowKind::Room {
                    self.windows[i].topic = topic;
                }
                self.notice(i, time, &text);
            }
            ServerMessage::Error { code, text } => {
                let text = clean(&text);
                self.refused(code);
                self.add_line(self.active, time, Body::Error(text));
            }
        }
    }

    /// A local notice in the status window (connection state, key pinned…), repeated in the
    /// window shown.
    pub fn status_notice(&mut self, text: &str) {
        let clock = self.clock.clone();
        self.notice(0, &clock, text);
        if self.active != 0 {
            self.notice(self.active, &clock, text);
        }
    }

    // ------------------------------------------------------------------ the user's side

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        match key.code {
            KeyCode::Char('c') if ctrl => self.quit = true,
            KeyCode::Char('d') if ctrl && self.editor.text().is_empty() => self.quit = true,
            KeyCode::Char('l') if ctrl => self.redraw = true,
            KeyCode::Char('n') if ctrl => self.cycle(1),
            KeyCode::Char('p') if ctrl => self.cycle(-1),
            KeyCode::Right if alt => self.cycle(1),
            KeyCode::Left if alt => self.cycle(-1),
            KeyCode::Char(c @ '0'..='9') if alt => {
                let n = c.to_digit(10).map_or(0, |d| if d == 0 { 9 } else { d - 1 });
                self.focus(n as usize);
            }
            KeyCode::Char('a') if ctrl => self.editor.home(),
            KeyCode::Char('e') if ctrl => self.editor.end(),
            KeyCode::Char('b') if ctrl => self.editor.left(),
            KeyCode::Char('f') if ctrl => self.editor.right(),
            KeyCode::Char('b') if alt => self.editor.word_left(),
            KeyCode::Char('f') if alt => self.editor.word_right(),
            KeyCode::Char('w') if ctrl => self.editor.delete_word(),
            KeyCode::Char('u') if ctrl => self.editor.kill_to_start(),
            KeyCode::Char('k') if ctrl => self.editor.kill_to_end(),
            KeyCode::Char('h') if ctrl => self.editor.backspace(),
            KeyCode::Char(_) if ctrl || alt => {}
            KeyCode::Char(c) => self.editor.insert(c.encode_utf8(&mut [0; 4])),
            KeyCode::Left if ctrl => self.editor.word_left(),
            KeyCode::Right if ctrl => self.editor.word_right(),
            KeyCode::Left => self.editor.left(),
            KeyCode::Right => self.editor.right(),
            KeyCode::Home => self.editor.home(),
            KeyCode::End if ctrl => self.scroll_to_bottom(),
            KeyCode::End => self.editor.end(),
            KeyCode::Backspace => self.editor.backspace(),
            KeyCode::Delete => self.editor.delete(),
            KeyCode::Up if shift => self.scroll_by(1),
            KeyCode::Down if shift => self.scroll_by(-1),
            KeyCode::Up => self.editor.history_up(),
            KeyCode::Down => self.editor.history_down(),
            KeyCode::PageUp => self.scroll_by(self.page()),
            KeyCode::PageDown => self.scroll_by(-self.page()),
            KeyCode::Tab => {
                let mut candidates = self.current().members.clone();
                candidates.retain(|m| !same_name(m, &self.nick));
                self.editor.complete(&candidates);
            }
            KeyCode::Enter => {
                for line in self.editor.submit() {
                    self.on_line(&line);
                }
            }
            _ => {}
        }
    }

    /// Pasted text (bracketed paste): inserted as typed, line breaks kept.
    pub fn on_paste(&mut self, text: &str) {
        self.editor.insert(text);
    }

    /// A mouse event: the wheel scrolls the message pane.
    pub fn on_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_by(WHEEL_ROWS as isize),
            MouseEventKind::ScrollDown => self.scroll_by(-(WHEEL_ROWS as isize)),
            _ => {}
        }
    }

    /// The terminal's new size.
    pub fn set_pane(&mut self, columns: u16, rows: u16) {
        self.pane = (columns, rows);
        for i in 0..self.windows.len() {
            let max = self.max_scroll(i);
            self.windows[i].scroll = self.windows[i].scroll.min(max);
        }
    }

    /// One typed line: a message to the window's room or nick, or a /command.
    pub fn on_line(&mut self, line: &str) {
        if self.peer_mode {
            return self.on_peer_line(line);
        }
        let window_kind = self.current().kind;
        let window_name = self.current().name.clone();
        let (verb, arg) = match line.strip_prefix('/') {
            Some(rest) if !rest.starts_with('/') => rest
                .split_once(' ')
                .map_or((rest, ""), |(v, a)| (v, a.trim())),
            _ => ("", ""),
        };
        match verb {
            "help" => return self.help(),
            "clear" => {
                let i = self.active;
                self.windows[i].lines.clear();
                self.windows[i].scroll = 0;
                return;
            }
            "close" | "part" | "leave" if window_kind != WindowKind::Room && arg.is_empty() => {
                if self.active == 0 {
                    return self.error_here("the status window stays");
                }
                return self.close_window(self.active);
            }
            "query" if !arg.is_empty() && !arg.contains(' ') => {
                let i = self.open(WindowKind::Private, arg);
                return self.focus(i);
            }
            "window" | "win" => {
                return match arg.parse::<usize>() {
                    Ok(n) if n >= 1 => self.focus(n - 1),
                    _ => self.error_here("usage: /window N"),
                };
            }
            _ => {}
        }
        let room = if window_kind == WindowKind::Room {
            window_name.as_str()
        } else {
            ""
        };
        match parse_line(line, room) {
            LineCommand::Nothing => {}
            LineCommand::Quit => self.quit = true,
            LineCommand::Local(text) => self.error_here(&text),
            LineCommand::Switch(room) => {
                let i = self.open(WindowKind::Room, &room);
                let joined = self.windows[i].joined;
                self.focus(i);
                if !joined {
                    self.queue(ClientMessage::Join { room }, None);
                }
            }
            LineCommand::Send(ClientMessage::Say { text, .. })
                if window_kind == WindowKind::Private =>
            {
                self.send_private(&window_name, text);
            }
            LineCommand::Send(ClientMessage::Say { room, text }) if !room.is_empty() => {
                let line = self.own_line(self.active, text.clone(), false);
                self.queue(ClientMessage::Say { room, text }, Some(line));
            }
            LineCommand::Send(ClientMessage::Action { room, text }) if !room.is_empty() => {
                let line = self.own_line(self.active, text.clone(), true);
                self.queue(ClientMessage::Action { room, text }, Some(line));
            }
            LineCommand::Send(ClientMessage::Say { .. } | ClientMessage::Action { .. }) => {
                self.error_here("this window is not a room: /join ROOM, or /query NICK");
            }
            LineCommand::Send(ClientMessage::Private { to, text }) => self.send_private(&to, text),
            LineCommand::Send(
                ClientMessage::Part { room }
                | ClientMessage::Who { room }
                | ClientMessage::Topic { room, .. },
            ) if room.is_empty() => self.error_here("name a room, or use this in a room's window"),
            LineCommand::Send(message) => self.queue(message, None),
        }
    }

    // ------------------------------------------------------------------ internals

    /// A typed line in the lab's chat: text for the peer, but for /help, /clear and /quit.
    fn on_peer_line(&mut self, line: &str) {
        match line.trim_end() {
            "/help" => {
                for text in [
                    "every line you type is sent to the peer as one datagram, as the lab's programs do",
                    "`bye` (from either side), /quit, Ctrl-C or Ctrl-D (on an empty line) ends the chat",
                    "PgUp / PgDn and the mouse wheel scroll; Up / Down recall earlier lines",
                    "plain UDP has no acknowledgements: a line shown is a line sent, not one received",
                ] {
                    self.notice(self.active, "", text);
                }
            }
            "/clear" => self.windows[self.active].lines.clear(),
            "/quit" => self.quit = true,
            _ => {
                let peer = self.windows[1].name.clone();
                self.active = 1;
                let line_ref = self.own_line(1, line.to_owned(), false);
                self.queue(
                    ClientMessage::Private {
                        to: peer,
                        text: line.to_owned(),
                    },
                    Some(line_ref),
                );
            }
        }
    }

    fn send_private(&mut self, to: &str, text: String) {
        let i = self.open(WindowKind::Private, to);
        let line = self.own_line(i, text.clone(), false);
        if i != self.active {
            let note = format!("→ {to}: {text}");
            let clock = self.clock.clone();
            self.notice(self.active, &clock, &note);
        }
        self.queue(
            ClientMessage::Private {
                to: to.to_owned(),
                text,
            },
            Some(line),
        );
    }

    fn queue(&mut self, message: ClientMessage, line: Option<LineRef>) {
        if self.outgoing.len() >= MAX_OUTGOING {
            if let Some(line) = &line {
                self.set_delivery(line, Delivery::Failed);
            }
            return self.error_here("too much is waiting to be sent; this line was dropped");
        }
        self.outgoing.push_back(Outgoing { message, line });
    }

    /// Your own new message, shown at once as pending.
    fn own_line(&mut self, window: usize, text: String, action: bool) -> LineRef {
        let from = self.nick.clone();
        let clock = self.clock.clone();
        let own = (!self.peer_mode).then_some(Delivery::Pending);
        let id = self.add_line(
            window,
            &clock,
            Body::Message {
                from,
                text,
                action,
                history: false,
                own,
                mention: false,
            },
        );
        let line = LineRef {
            kind: self.windows[window].kind,
            window: self.windows[window].name.clone(),
            id,
        };
        if !self.peer_mode {
            self.awaiting_echo.push_back(line.clone());
        }
        self.scroll_to_bottom();
        line
    }

    /// Your own message came back: mark the oldest matching line delivered.
    fn delivered(&mut self, window: usize, text: &str, action: bool) -> bool {
        let kind = self.windows[window].kind;
        let name = self.windows[window].name.clone();
        let found = self.awaiting_echo.iter().position(|r| {
            r.kind == kind
                && same_name(&r.window, &name)
                && self.line(r).is_some_and(|l| {
                    matches!(&l.body, Body::Message { text: t, action: a, .. } if t == text && *a == action)
                })
        });
        let Some(index) = found else {
            return false;
        };
        if let Some(line) = self.awaiting_echo.remove(index) {
            self.set_delivery(&line, Delivery::Delivered);
        }
        true
    }

    /// The server refused something: if it is a message of ours, mark it.
    fn refused(&mut self, code: ErrorCode) {
        let private = match code {
            ErrorCode::NoSuchNick => true,
            ErrorCode::NotInRoom | ErrorCode::TooLong | ErrorCode::NoNick => false,
            _ => return,
        };
        let found = self.awaiting_echo.iter().position(|r| {
            (r.kind == WindowKind::Private) == private
                && self.delivery(r) == Some(Delivery::Acknowledged)
        });
        if let Some(line) = found.and_then(|i| self.awaiting_echo.remove(i)) {
            self.set_delivery(&line, Delivery::Failed);
        }
    }

    fn line(&self, line: &LineRef) -> Option<&Line> {
        let i = self.find(line.kind, &line.window)?;
        self.windows[i].lines.iter().rev().find(|l| l.id == line.id)
    }

    fn delivery(&self, line: &LineRef) -> Option<Delivery> {
        match &self.line(line)?.body {
            Body::Message { own, .. } => *own,
            _ => None,
        }
    }

    fn set_delivery(&mut self, line: &LineRef, delivery: Delivery) {
        let Some(i) = self.find(line.kind, &line.window) else {
            return;
        };
        if let Some(Line {
            body: Body::Message { own, .. },
            ..
        }) = self.windows[i]
            .lines
            .iter_mut()
            .rev()
            .find(|l| l.id == line.id)
        {
            *own = Some(delivery);
        }
    }

    fn push_message(
        &mut self,
        window: usize,
        time: &str,
        from: String,
        text: String,
        action: bool,
        history: bool,
    ) {
        let mine = same_name(&from, &self.nick);
        let mention = !mine && !history && mentions(&text, &self.nick);
        let private = self.windows[window].kind == WindowKind::Private;
        self.add_line(
            window,
            time,
            Body::Message {
                from,
                text,
                action,
                history,
                own: None,
                mention,
            },
        );
        if window != self.active && !history {
            let w = &mut self.windows[window];
            w.unread += 1;
            w.mentioned |= mention || (private && !mine);
        }
    }

    fn notice(&mut self, window: usize, time: &str, text: &str) {
        self.add_line(window, time, Body::Notice(text.to_owned()));
    }

    fn error_here(&mut self, text: &str) {
        let clock = self.clock.clone();
        self.add_line(self.active, &clock, Body::Error(text.to_owned()));
    }

    fn help(&mut self) {
        let lines = [
            HELP,
            "in a private window (/query NICK) lines go to that nick; /close closes it",
            "/window N or Alt-N shows window N; Ctrl-N / Ctrl-P (or Alt-→ / Alt-←) the next / previous",
            "PgUp / PgDn and the mouse wheel scroll; Ctrl-End follows new lines again",
            "Up / Down recall earlier lines; Tab completes nicks; Ctrl-W / Ctrl-U / Ctrl-K delete",
            "your messages: ⋯ pending, ✓ the server has it, ✓✓ relayed to the room, ✗ refused",
            "Ctrl-L redraws; /clear empties this window; /quit or Ctrl-C leaves",
        ];
        for line in lines {
            self.notice(self.active, "", line);
        }
    }

    /// Adds a line to a window; returns its id. A line in a scrolled-up window keeps the view
    /// where it is.
    fn add_line(&mut self, window: usize, time: &str, body: Body) -> u64 {
        let id = self.next_line_id;
        self.next_line_id += 1;
        let width = self.pane.0;
        let w = &mut self.windows[window];
        if w.lines.len() == SCROLLBACK {
            w.lines.pop_front();
        }
        let line = Line {
            id,
            time: time.to_owned(),
            body,
        };
        if w.scroll > 0 {
            w.scroll += wrapped_rows(&line, width).len();
            w.new_below += 1;
        }
        w.lines.push_back(line);
        id
    }

    fn find(&self, kind: WindowKind, name: &str) -> Option<usize> {
        self.windows.iter().position(|w| w.is(kind, name))
    }

    /// The window for a room or nick, opened if needed.
    fn open(&mut self, kind: WindowKind, name: &str) -> usize {
        if let Some(i) = self.find(kind, name) {
            return i;
        }
        self.windows.push(Window::new(kind, name));
        self.windows.len() - 1
    }

    fn close_window(&mut self, index: usize) {
        if index == 0 || index >= self.windows.len() {
            return;
        }
        self.windows.remove(index);
        if self.active >= index {
            self.active = self.active.saturating_sub(1);
        }
    }

    fn focus(&mut self, index: usize) {
        if index < self.windows.len() {
            self.active = index;
            let w = &mut self.windows[index];
            w.unread = 0;
            w.mentioned = false;
        }
    }

    fn cycle(&mut self, step: isize) {
        let n = self.windows.len() as isize;
        let next = (self.active as isize + step).rem_euclid(n);
        self.focus(next as usize);
    }

    fn page(&self) -> isize {
        (self.pane.1 as isize - 2).max(1)
    }

    fn scroll_by(&mut self, rows: isize) {
        let max = self.max_scroll(self.active);
        let w = &mut self.windows[self.active];
        w.scroll = w.scroll.saturating_add_signed(rows).min(max);
        if w.scroll == 0 {
            w.new_below = 0;
        }
    }

    fn scroll_to_bottom(&mut self) {
        let w = &mut self.windows[self.active];
        w.scroll = 0;
        w.new_below = 0;
    }

    /// How far a window can scroll up: all its rows but one screenful.
    fn max_scroll(&self, index: usize) -> usize {
        let width = self.pane.0;
        let rows: usize = self.windows[index]
            .lines
            .iter()
            .map(|l| wrapped_rows(l, width).len())
            .sum();
        rows.saturating_sub(self.pane.1 as usize)
    }
}

/// Network text made safe for the screen: controls and escapes shown visibly (`^[`), bidi
/// overrides spelled out, tabs as spaces.
pub fn clean(text: &str) -> String {
    neutralize(text).replace('\t', "    ")
}

/// Nicks and rooms compare without case, as the server compares them.
fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

fn insert_member(members: &mut Vec<String>, nick: &str) {
    if members.iter().any(|m| same_name(m, nick)) {
        return;
    }
    let key = nick.to_lowercase();
    let at = members.partition_point(|m| m.to_lowercase() < key);
    members.insert(at, nick.to_owned());
}

/// Whether `text` mentions `nick` as a word.
fn mentions(text: &str, nick: &str) -> bool {
    let nick = nick.to_lowercase();
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || "-_[]{}|^".contains(c)))
        .any(|word| word == nick)
}
