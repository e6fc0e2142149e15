//! The lab's two-party chat (steps 3 and 4) as a sans-IO state machine.
//!
//! On the wire this is exactly the lab's protocol: each message is one datagram holding its UTF-8
//! text, with no framing, and a message that is exactly `bye` ends the conversation for both sides.
//! So a [`Conversation`] talks to the lab's Python programs and to `nc -u` unchanged.
//!
//! The machine decides *what* to send, *when* it may be sent, and when the conversation is over;
//! the driver moves the bytes and owns the clock. Call order, after creating it with
//! [`Conversation::new`]:
//!
//! 1. Inputs, each with the current time: [`handle_line`](Conversation::handle_line) for each
//!    line the user typed, [`handle_datagram`](Conversation::handle_datagram) for each datagram
//!    the socket received, [`handle_unreachable`](Conversation::handle_unreachable) when the
//!    kernel reports "port unreachable" for the peer, [`handle_end_of_input`](Conversation::handle_end_of_input)
//!    on end of input, [`handle_interrupt`](Conversation::handle_interrupt) on Ctrl-C, and
//!    [`handle_timeout`](Conversation::handle_timeout) once [`poll_timeout`](Conversation::poll_timeout)
//!    has passed.
//! 2. Outputs, after every input: drain [`poll_transmit`](Conversation::poll_transmit) (send each
//!    to its destination), then [`poll_event`](Conversation::poll_event) (show each to the user),
//!    then read [`poll_timeout`](Conversation::poll_timeout) again.
//! 3. Stop driving once [`is_ended`](Conversation::is_ended) is true and both queues are drained.
//!
//! Two shapes of conversation ([`Mode`]):
//! - [`Mode::FullDuplex`] (step 4): either side sends at any time.
//! - [`Mode::Turns`] (step 3): strict alternation, the connecting side speaks first and the
//!   listener never sends before it has received. Lines typed out of turn wait their turn.
//!
//! A listener does not know its peer until the first datagram arrives; lines typed before that
//! are queued, and datagrams from any other address afterwards are reported and ignored.
//!
//! How a conversation ends ([`EndReason`]), in three phases:
//!
//! ```text
//!   Open ──bye received──────────────────────────────────────────► Ended(ByeReceived)
//!    │ ──bye sent, every message answered (or none sent)─────────► Ended(ByeSent)
//!    │ ──bye sent, a port-unreachable report since the peer spoke► Ended(NobodyListening)
//!    │ ──Turns, input ended, no reply within reply_wait: bye─────► Ended(NoReply)
//!    └─bye sent, messages unanswered──► Closing ──report────────► Ended(NobodyListening)
//!                                          └──refusal_wait, or a datagram from the peer──► Ended(ByeSent)
//! ```
//!
//! UDP cannot tell a silent peer from an absent one, except when the peer's host answers with
//! ICMP "port unreachable": then nobody listens there, and the messages sent since the peer last
//! spoke were not delivered. `Closing` waits briefly for that report after our `bye`, so that
//! `seq 5 | udpchat chat HOST:CLOSED` can say so instead of ending as if all went well.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::text;

/// The message that ends a conversation, from either side.
pub const BYE: &str = "bye";

/// How long, by default, a side whose input has ended waits for the peer's turn
/// ([`Mode::Turns`]) before saying `bye` out of turn: the ten seconds `udpchat join --linger`
/// waits for an acknowledgement. A program answers at once; a person typing a short reply
/// usually within that.
pub const DEFAULT_REPLY_WAIT: Duration = Duration::from_secs(10);

/// How long, by default, to wait after our `bye` for a "port unreachable" report about messages
/// the peer never answered. The report comes back within one round trip: well under a
/// millisecond on loopback and a LAN, a few hundred milliseconds across the Internet. One second
/// covers nearly every path and is short enough to pass unnoticed at the end of a chat.
pub const DEFAULT_REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// How the two sides take turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Either side may send at any time (lab step 4).
    FullDuplex,
    /// Strict alternation, connecting side first (lab step 3).
    Turns,
}

/// Which side of the conversation this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that knows its peer's address and speaks first (the lab's client).
    Connect(SocketAddr),
    /// The side that waits; its peer is whoever sends the first datagram (the lab's server).
    Listen,
}

/// Whose turn it is to send in [`Mode::Turns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// This side may send its next line.
    Ours,
    /// This side waits for the peer's next message.
    Theirs,
}

/// Why a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// This side sent `bye` (typed, or on end of input / Ctrl-C), and had no news that nobody
    /// was listening.
    ByeSent,
    /// The peer sent `bye`.
    ByeReceived,
    /// Interrupted (Ctrl-C) before any peer was known: there was nobody to say `bye` to.
    Interrupted,
    /// This side said `bye`, and the kernel had reported ("port unreachable") that nothing
    /// listens at the peer's address since the peer last spoke: the messages sent since then
    /// (all of them, if it never spoke) were not delivered.
    NobodyListening,
    /// [`Mode::Turns`]: the input had ended and the peer did not take its turn within
    /// [`Config::reply_wait`]; `bye` was sent out of turn.
    NoReply,
}

impl EndReason {
    /// Whether the chat failed (the driver exits non-zero): nobody listened, or nobody replied.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::NobodyListening | Self::NoReply)
    }
}

/// A datagram the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram's payload: the message's UTF-8 bytes (plus `\n` if configured).
    pub payload: Vec<u8>,
}

/// Something the user should be told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A listener learned who it is talking to (from the first datagram).
    PeerLearned(SocketAddr),
    /// The peer said something. `text` is decoded but *not* neutralised: the driver must pass
    /// it through [`text::neutralize`] before it reaches a terminal.
    MessageReceived {
        /// The peer's address.
        from: SocketAddr,
        /// The message text (invalid UTF-8 replaced, one trailing line ending removed).
        text: String,
    },
    /// A datagram came from an address that is not the peer; it was dropped.
    StrangerIgnored {
        /// Who sent it.
        from: SocketAddr,
        /// How many bytes it carried.
        len: usize,
    },
    /// The kernel reported that nothing listens at the peer's address (ICMP port unreachable)
    /// while the chat goes on: the other side may not be started yet. In [`Mode::Turns`] the
    /// turn comes back to this side, since the peer cannot answer what it never received.
    PeerUnreachable {
        /// The peer's address.
        peer: SocketAddr,
        /// Messages sent since the peer last spoke (all so far, if it never did): lost.
        undelivered: usize,
    },
    /// The turn changed (only in [`Mode::Turns`]).
    TurnChanged(Turn),
    /// The conversation is over. No further events follow.
    Ended {
        /// Why it ended.
        reason: EndReason,
        /// Lines the user typed that were never sent (the peer left first, or Ctrl-C dropped
        /// them). The `bye` said for the user at end of input is not a typed line and is not
        /// counted, nor is a typed `bye` that the end made moot.
        unsent: usize,
        /// Messages sent since the peer last spoke (`bye` not counted): not delivered with
        /// [`EndReason::NobodyListening`], not known to have arrived otherwise.
        unconfirmed: usize,
        /// Whether the peer sent anything during the conversation.
        answered: bool,
    },
}

/// Options of a conversation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Append `\n` to each sent datagram, so that line-oriented peers such as `nc -u` show one
    /// message per line. Off by default: the lab's Python programs compare the text with `bye`
    /// exactly, so a trailing newline would break them.
    pub append_newline: bool,
    /// [`Mode::Turns`], once the input has ended: how long to wait for the peer's turn before
    /// saying `bye` out of turn and ending with [`EndReason::NoReply`]. The wait starts again
    /// at each message sent. Default [`DEFAULT_REPLY_WAIT`].
    pub reply_wait: Duration,
    /// After our `bye`, while messages sent since the peer last spoke are unanswered: how long
    /// to wait for a "port unreachable" report ([`handle_unreachable`](Conversation::handle_unreachable)).
    /// `None` when the driver cannot see such reports (an unconnected socket, as a listener's):
    /// the conversation then ends as soon as `bye` is sent. Default [`DEFAULT_REFUSAL_WAIT`].
    pub refusal_wait: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            append_newline: false,
            reply_wait: DEFAULT_REPLY_WAIT,
            refusal_wait: Some(DEFAULT_REFUSAL_WAIT),
        }
    }
}

/// One two-party conversation. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct Conversation {
    mode: Mode,
    config: Config,
    /// Talking, waiting for a refusal report after our `bye`, or over.
    phase: Phase,
    /// The peer's address: known from the start when connecting, learned from the first
    /// datagram when listening.
    peer: Option<SocketAddr>,
    /// Whose turn it is; always `Ours` in full-duplex mode.
    turn: Turn,
    /// Lines typed but not sent yet, because the peer is unknown or it is not our turn.
    pending_lines: VecDeque<String>,
    /// Set at end of input: `bye` follows the pending lines, as soon as it can be sent.
    input_ended: bool,
    /// Typed lines dropped when `bye` was sent before them (Ctrl-C); reported at the end.
    dropped_lines: usize,
    /// Whether the peer has sent anything (it was there at some point).
    answered: bool,
    /// Messages sent since the peer last spoke (`bye` not counted).
    unconfirmed: usize,
    /// A "port unreachable" report came since the peer last spoke.
    refused: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// Where the conversation stands; each waiting phase carries its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Talking. `reply_by` is set while the input has ended and we wait for the peer's turn
    /// ([`Mode::Turns`]): when it passes, `bye` goes out of turn and the chat ends
    /// ([`EndReason::NoReply`]).
    Open { reply_by: Option<Instant> },
    /// Our `bye` is sent, with messages the peer has not answered: until `until`, a "port
    /// unreachable" report means nobody was listening ([`EndReason::NobodyListening`]);
    /// after it, or on a datagram from the peer, the chat ended well ([`EndReason::ByeSent`]).
    /// Nothing is sent or shown any more.
    Closing { until: Instant },
    /// Over; [`Event::Ended`] has been queued.
    Ended(EndReason),
}

impl Conversation {
    /// Starts a conversation in `mode` as `role`.
    pub fn new(mode: Mode, role: Role, config: Config) -> Self {
        let (peer, turn) = match (mode, role) {
            (_, Role::Connect(addr)) => (Some(addr), Turn::Ours),
            (Mode::FullDuplex, Role::Listen) => (None, Turn::Ours),
            (Mode::Turns, Role::Listen) => (None, Turn::Theirs),
        };
        Self {
            mode,
            config,
            phase: Phase::Open { reply_by: None },
            peer,
            turn,
            pending_lines: VecDeque::new(),
            input_ended: false,
            dropped_lines: 0,
            answered: false,
            unconfirmed: 0,
            refused: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The user typed `line` (without its line ending). It is sent now if it can be, otherwise
    /// queued until the peer is known and it is our turn. Typing `bye` ends the conversation
    /// once it is sent. Ignored once `bye` has been sent or received.
    pub fn handle_line(&mut self, now: Instant, line: &str) {
        if !self.is_open() || self.input_ended {
            return;
        }
        self.pending_lines.push_back(line.to_owned());
        self.flush_pending(now);
    }

    /// End of input: says `bye` as soon as it can be sent.
    ///
    /// Lines still queued are sent first, in order, so nothing typed is lost. In
    /// [`Mode::Turns`], the wait for the peer's turn is bounded from now on by
    /// [`Config::reply_wait`].
    pub fn handle_end_of_input(&mut self, now: Instant) {
        if !self.is_open() || self.input_ended {
            return;
        }
        self.input_ended = true;
        self.flush_pending(now);
    }

    /// Ctrl-C: the user wants out *now*. Says `bye` at once, even out of turn, and drops lines
    /// still queued (counted as unsent in [`Event::Ended`]). With no peer yet there is nobody to
    /// tell, and the conversation ends as [`EndReason::Interrupted`]. A second Ctrl-C, while
    /// waiting for a refusal report after `bye`, ends it at once.
    pub fn handle_interrupt(&mut self, now: Instant) {
        match self.phase {
            Phase::Ended(_) => {}
            Phase::Closing { .. } => self.end(EndReason::ByeSent),
            Phase::Open { .. } => match self.peer {
                None => self.end(EndReason::Interrupted),
                Some(destination) => {
                    self.transmit(destination, BYE.to_owned());
                    self.on_bye_sent(now);
                }
            },
        }
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, payload: &[u8]) {
        match self.phase {
            Phase::Ended(_) => return,
            Phase::Closing { .. } => {
                // Too late for words, but it settles what the wait asked: the peer is there.
                if self.peer == Some(from) {
                    self.on_peer_spoke();
                    self.end(EndReason::ByeSent);
                }
                return;
            }
            Phase::Open { .. } => {}
        }
        match self.peer {
            None => {
                self.peer = Some(from);
                self.events.push_back(Event::PeerLearned(from));
            }
            Some(peer) if peer != from => {
                self.events.push_back(Event::StrangerIgnored {
                    from,
                    len: payload.len(),
                });
                return;
            }
            Some(_) => {}
        }
        self.on_peer_spoke();
        let text = text::decode_message(payload);
        let is_bye = text == BYE;
        self.events.push_back(Event::MessageReceived { from, text });
        if is_bye {
            self.end(EndReason::ByeReceived);
            return;
        }
        if self.mode == Mode::Turns && self.turn == Turn::Theirs {
            self.set_turn(Turn::Ours);
        }
        self.flush_pending(now);
    }

    /// The kernel reported that nothing listens at the peer's address (ICMP "port
    /// unreachable", seen on a connected socket as a failed receive or send).
    ///
    /// While talking, the user is told ([`Event::PeerUnreachable`]) and the chat goes on: the
    /// other side may start later. In [`Mode::Turns`] the turn comes back to this side. After
    /// our `bye`, or once `bye` is sent with no word from the peer since, the chat ends as
    /// [`EndReason::NobodyListening`].
    pub fn handle_unreachable(&mut self, now: Instant) {
        match self.phase {
            Phase::Ended(_) => {}
            Phase::Closing { .. } => {
                self.refused = true;
                self.end(EndReason::NobodyListening);
            }
            Phase::Open { .. } => {
                let Some(peer) = self.peer else { return };
                self.refused = true;
                if self.unconfirmed == 0 {
                    return;
                }
                self.events.push_back(Event::PeerUnreachable {
                    peer,
                    undelivered: self.unconfirmed,
                });
                if self.mode == Mode::Turns && self.turn == Turn::Theirs {
                    self.set_turn(Turn::Ours);
                    self.flush_pending(now);
                }
            }
        }
    }

    /// Time has passed: ends a wait whose deadline ([`poll_timeout`](Self::poll_timeout)) is
    /// reached. A call before any deadline does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Open { reply_by: Some(at) } if at <= now => {
                if let Some(destination) = self.peer {
                    self.transmit(destination, BYE.to_owned());
                }
                self.end(EndReason::NoReply);
            }
            Phase::Closing { until } if until <= now => self.end(EndReason::ByeSent),
            _ => {}
        }
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to show, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if a wait is running:
    /// for the peer's turn after the end of input, or for a refusal report after `bye`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open { reply_by } => reply_by,
            Phase::Closing { until } => Some(until),
            Phase::Ended(_) => None,
        }
    }

    /// Whether the conversation is over: nothing more will be sent, accepted or reported.
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    /// Why the conversation ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self.phase {
            Phase::Ended(reason) => Some(reason),
            _ => None,
        }
    }

    /// The peer's address, once known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Whether a line typed now would be sent at once (peer known, our turn, nothing queued).
    pub fn can_send_now(&self) -> bool {
        self.is_open()
            && self.peer.is_some()
            && self.turn == Turn::Ours
            && self.pending_lines.is_empty()
    }

    /// Whose turn it is (always [`Turn::Ours`] in full duplex).
    pub fn turn(&self) -> Turn {
        self.turn
    }

    /// How many typed lines wait to be sent (the `bye` due at end of input not counted).
    pub fn pending_lines(&self) -> usize {
        self.pending_lines.len()
    }

    fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    /// Sends queued lines while the peer is known and it is our turn, then the `bye` due at end
    /// of input; then bounds the wait for the peer's turn if nothing more will be typed.
    fn flush_pending(&mut self, now: Instant) {
        let Some(destination) = self.peer else { return };
        while self.is_open() && self.turn == Turn::Ours {
            let line = match self.pending_lines.pop_front() {
                Some(line) => line,
                None if self.input_ended => BYE.to_owned(),
                None => break,
            };
            let is_bye = line == BYE;
            self.transmit(destination, line);
            if is_bye {
                self.on_bye_sent(now);
                return;
            }
            self.unconfirmed += 1;
            if self.mode == Mode::Turns {
                self.set_turn(Turn::Theirs);
            }
        }
        let waiting = self.input_ended && self.turn == Turn::Theirs;
        if let Phase::Open { reply_by } = &mut self.phase {
            *reply_by = match *reply_by {
                _ if !waiting => None,
                Some(at) => Some(at),
                None => Some(now + self.config.reply_wait),
            };
        }
    }

    /// Queues one datagram for the peer.
    fn transmit(&mut self, destination: SocketAddr, text: String) {
        let mut payload = text.into_bytes();
        if self.config.append_newline {
            payload.push(b'\n');
        }
        self.transmits.push_back(Transmit {
            destination,
            payload,
        });
    }

    /// The peer spoke: it is there, everything sent before is settled, and any wait for its
    /// turn is over.
    fn on_peer_spoke(&mut self) {
        self.answered = true;
        self.unconfirmed = 0;
        self.refused = false;
        if let Phase::Open { reply_by } = &mut self.phase {
            *reply_by = None;
        }
    }

    /// `bye` is queued: the conversation ends now, or waits briefly for a refusal report if
    /// messages are unanswered and the driver can see such reports.
    fn on_bye_sent(&mut self, now: Instant) {
        self.dropped_lines += self.pending_lines.iter().filter(|l| *l != BYE).count();
        self.pending_lines.clear();
        match self.config.refusal_wait {
            _ if self.unconfirmed == 0 => self.end(EndReason::ByeSent),
            _ if self.refused => self.end(EndReason::NobodyListening),
            Some(wait) => {
                self.phase = Phase::Closing { until: now + wait };
            }
            None => self.end(EndReason::ByeSent),
        }
    }

    fn set_turn(&mut self, turn: Turn) {
        self.turn = turn;
        self.events.push_back(Event::TurnChanged(turn));
    }

    fn end(&mut self, reason: EndReason) {
        let unsent = self.dropped_lines + self.pending_lines.iter().filter(|l| *l != BYE).count();
        self.pending_lines.clear();
        self.phase = Phase::Ended(reason);
        self.events.push_back(Event::Ended {
            reason,
            unsent,
            unconfirmed: self.unconfirmed,
            answered: self.answered,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of every scripted test's time line.
    fn t0() -> Instant {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    /// `ms` milliseconds after [`t0`].
    fn at(ms: u64) -> Instant {
        t0() + Duration::from_millis(ms)
    }

    fn ended(reason: EndReason, unsent: usize, unconfirmed: usize, answered: bool) -> Event {
        Event::Ended {
            reason,
            unsent,
            unconfirmed,
            answered,
        }
    }

    /// A listener's socket is not connected: it hears no refusal reports, and does not wait
    /// for any.
    fn listener_config() -> Config {
        Config {
            refusal_wait: None,
            ..Config::default()
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn sent(c: &mut Conversation) -> Vec<(SocketAddr, String)> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|t| (t.destination, String::from_utf8(t.payload).unwrap()))
            .collect()
    }

    fn events(c: &mut Conversation) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn received(from: u16, text: &str) -> Event {
        Event::MessageReceived {
            from: addr(from),
            text: text.into(),
        }
    }

    #[test]
    fn full_duplex_connect_sends_at_once_and_receives_any_time() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        assert!(c.can_send_now());
        c.handle_line(t0(), "one");
        c.handle_line(t0(), "two");
        assert_eq!(
            sent(&mut c),
            vec![(addr(9), "one".into()), (addr(9), "two".into())]
        );
        c.handle_datagram(t0(), addr(9), b"three\n");
        c.handle_datagram(t0(), addr(9), b"four");
        assert_eq!(
            events(&mut c),
            vec![received(9, "three"), received(9, "four")]
        );
        assert!(!c.is_ended());
    }

    #[test]
    fn listener_queues_lines_until_it_learns_its_peer() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, Config::default());
        assert!(!c.can_send_now());
        c.handle_line(t0(), "early");
        assert_eq!(sent(&mut c), vec![]);
        assert_eq!(c.pending_lines(), 1);
        c.handle_datagram(t0(), addr(5), b"hello");
        assert_eq!(
            events(&mut c),
            vec![Event::PeerLearned(addr(5)), received(5, "hello")]
        );
        assert_eq!(sent(&mut c), vec![(addr(5), "early".into())]);
        assert_eq!(c.peer(), Some(addr(5)));
    }

    #[test]
    fn strangers_are_ignored_once_the_peer_is_known() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, Config::default());
        c.handle_datagram(t0(), addr(5), b"hi");
        c.handle_datagram(t0(), addr(6), b"bye");
        let evs = events(&mut c);
        assert_eq!(
            evs.last(),
            Some(&Event::StrangerIgnored {
                from: addr(6),
                len: 3
            })
        );
        assert!(
            !c.is_ended(),
            "a stranger's bye must not end the conversation"
        );
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_datagram(t0(), addr(8), b"x");
        assert_eq!(
            events(&mut c),
            vec![Event::StrangerIgnored {
                from: addr(8),
                len: 1
            }]
        );
    }

    #[test]
    fn bye_received_ends_and_reports_unsent_lines() {
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "a");
        c.handle_line(t0(), "b"); // not our turn: queued
        assert_eq!(sent(&mut c).len(), 1);
        c.handle_datagram(t0(), addr(9), b"bye\r\n");
        assert!(c.is_ended());
        assert_eq!(c.end_reason(), Some(EndReason::ByeReceived));
        let evs = events(&mut c);
        assert_eq!(evs.last(), Some(&ended(EndReason::ByeReceived, 1, 0, true)));
        // Nothing is sent or accepted afterwards.
        c.handle_line(t0(), "late");
        c.handle_datagram(t0(), addr(9), b"late");
        assert_eq!(sent(&mut c), vec![]);
        assert_eq!(events(&mut c), vec![]);
    }

    #[test]
    fn bye_typed_is_sent_and_ends() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "bye");
        assert_eq!(sent(&mut c), vec![(addr(9), "bye".into())]);
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
        assert_eq!(events(&mut c), vec![ended(EndReason::ByeSent, 0, 0, false)]);
    }

    #[test]
    fn only_exactly_bye_ends() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        for not_bye in ["Bye", "bye ", " bye", "byebye", "bye\n\n"] {
            c.handle_datagram(t0(), addr(9), not_bye.as_bytes());
            c.handle_line(t0(), not_bye);
        }
        assert!(!c.is_ended());
    }

    #[test]
    fn end_of_input_flushes_queued_lines_then_says_bye() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, listener_config());
        c.handle_line(t0(), "1");
        c.handle_line(t0(), "2");
        c.handle_end_of_input(t0());
        c.handle_end_of_input(t0()); // a second Ctrl-C does not queue a second bye
        assert_eq!(c.pending_lines(), 2);
        c.handle_datagram(t0(), addr(5), b"hi");
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["1", "2", "bye"]);
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
    }

    #[test]
    fn the_automatic_bye_is_not_counted_as_an_unsent_line() {
        // The peer says bye first: q2 was typed and never sent; the bye end of input would
        // have said was not typed.
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "q1");
        c.handle_line(t0(), "q2");
        c.handle_end_of_input(t0());
        c.handle_datagram(t0(), addr(9), b"bye");
        assert_eq!(
            events(&mut c).last(),
            Some(&ended(EndReason::ByeReceived, 1, 0, true))
        );
        // Ctrl-C out of turn, after the end of input.
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "q1");
        c.handle_line(t0(), "q2");
        c.handle_end_of_input(t0());
        c.handle_interrupt(t0());
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["q1", "bye"]);
        c.handle_timeout(at(1000)); // no refusal report came
        assert_eq!(
            events(&mut c).last(),
            Some(&ended(EndReason::ByeSent, 1, 1, false))
        );
        // A listener interrupted before any peer came, after the end of input.
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, Config::default());
        c.handle_line(t0(), "never sent");
        c.handle_end_of_input(t0());
        c.handle_interrupt(t0());
        assert_eq!(
            events(&mut c),
            vec![ended(EndReason::Interrupted, 1, 0, false)]
        );
    }

    #[test]
    fn interrupt_says_bye_at_once_even_out_of_turn() {
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "q");
        c.handle_line(t0(), "queued");
        c.handle_interrupt(t0());
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["q", "bye"]);
        c.handle_timeout(at(1000)); // no refusal report came
        let evs = events(&mut c);
        assert_eq!(evs.last(), Some(&ended(EndReason::ByeSent, 1, 1, false)));
    }

    #[test]
    fn interrupt_without_a_peer_ends_without_sending() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, Config::default());
        c.handle_line(t0(), "never sent");
        c.handle_interrupt(t0());
        assert_eq!(sent(&mut c), vec![]);
        assert_eq!(
            events(&mut c),
            vec![ended(EndReason::Interrupted, 1, 0, false)]
        );
    }

    #[test]
    fn turns_client_speaks_first_then_alternates() {
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        assert_eq!(c.turn(), Turn::Ours);
        c.handle_line(t0(), "q1");
        c.handle_line(t0(), "q2");
        assert_eq!(sent(&mut c), vec![(addr(9), "q1".into())]);
        assert_eq!(c.turn(), Turn::Theirs);
        assert!(!c.can_send_now());
        c.handle_datagram(t0(), addr(9), b"a1");
        // Receiving gives us the turn, and the queued q2 goes out, handing the turn back.
        assert_eq!(sent(&mut c), vec![(addr(9), "q2".into())]);
        assert_eq!(
            events(&mut c),
            vec![
                Event::TurnChanged(Turn::Theirs),
                received(9, "a1"),
                Event::TurnChanged(Turn::Ours),
                Event::TurnChanged(Turn::Theirs),
            ]
        );
    }

    #[test]
    fn turns_listener_never_sends_before_it_has_received() {
        let mut c = Conversation::new(Mode::Turns, Role::Listen, Config::default());
        assert_eq!(c.turn(), Turn::Theirs);
        c.handle_line(t0(), "too early");
        c.handle_end_of_input(t0());
        assert_eq!(sent(&mut c), vec![]);
        c.handle_datagram(t0(), addr(5), b"hello");
        // One line per turn: "too early" goes, the bye waits for the next turn.
        assert_eq!(sent(&mut c), vec![(addr(5), "too early".into())]);
        assert!(!c.is_ended());
        c.handle_datagram(t0(), addr(5), b"ok");
        assert_eq!(sent(&mut c), vec![(addr(5), "bye".into())]);
        assert!(c.is_ended());
    }

    #[test]
    fn turns_out_of_turn_message_is_still_delivered() {
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_datagram(t0(), addr(9), b"impatient");
        assert_eq!(events(&mut c), vec![received(9, "impatient")]);
        assert_eq!(c.turn(), Turn::Ours);
    }

    #[test]
    fn append_newline_option_adds_one_newline() {
        let config = Config {
            append_newline: true,
            ..Config::default()
        };
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), config);
        c.handle_line(t0(), "hi");
        c.handle_line(t0(), "bye");
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["hi\n", "bye\n"]);
    }

    #[test]
    fn invalid_utf8_from_the_peer_is_replaced_not_fatal() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_datagram(t0(), addr(9), b"\xff\xfe");
        assert_eq!(events(&mut c), vec![received(9, "\u{fffd}\u{fffd}")]);
    }

    // ---- how a chat ends when the peer is gone or silent ----

    fn texts(c: &mut Conversation) -> Vec<String> {
        sent(c).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn nobody_listening_is_told_after_bye_with_every_message_counted() {
        // `seq 5 | udpchat chat 127.0.0.1:CLOSED`: the report comes after the bye.
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        for line in ["1", "2", "3", "4", "5"] {
            c.handle_line(t0(), line);
        }
        c.handle_end_of_input(at(1));
        assert_eq!(texts(&mut c), ["1", "2", "3", "4", "5", "bye"]);
        assert!(!c.is_ended(), "waits for a refusal report");
        assert_eq!(c.poll_timeout(), Some(at(1) + DEFAULT_REFUSAL_WAIT));
        c.handle_line(at(2), "typed after bye");
        c.handle_unreachable(at(2));
        assert_eq!(c.end_reason(), Some(EndReason::NobodyListening));
        assert_eq!(
            events(&mut c),
            vec![ended(EndReason::NobodyListening, 0, 5, false)]
        );
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(sent(&mut c), vec![]);
    }

    #[test]
    fn a_report_before_bye_is_shown_and_ends_the_chat_at_bye() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "anyone?");
        c.handle_unreachable(at(1));
        assert_eq!(
            events(&mut c),
            vec![Event::PeerUnreachable {
                peer: addr(9),
                undelivered: 1
            }]
        );
        assert!(!c.is_ended(), "the other side may start later");
        c.handle_line(at(2), "still nobody?");
        c.handle_end_of_input(at(3));
        assert_eq!(texts(&mut c), ["anyone?", "still nobody?", "bye"]);
        // Nothing was heard since the report: no need to wait for another.
        assert_eq!(
            events(&mut c),
            vec![ended(EndReason::NobodyListening, 0, 2, false)]
        );
    }

    #[test]
    fn the_peer_speaking_after_a_report_clears_it() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "too early");
        c.handle_unreachable(at(1));
        c.handle_datagram(at(2), addr(9), b"here now");
        c.handle_line(at(3), "bye");
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
        assert_eq!(
            events(&mut c).last(),
            Some(&ended(EndReason::ByeSent, 0, 0, true))
        );
    }

    #[test]
    fn a_peer_that_answered_then_left_is_told_too() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_datagram(t0(), addr(9), b"hi");
        c.handle_line(at(1), "one");
        c.handle_line(at(1), "two");
        c.handle_end_of_input(at(1));
        assert_eq!(texts(&mut c), ["one", "two", "bye"]);
        c.handle_unreachable(at(2));
        assert_eq!(
            events(&mut c).last(),
            Some(&ended(EndReason::NobodyListening, 0, 2, true))
        );
    }

    #[test]
    fn a_silent_peer_ends_well_once_the_refusal_wait_is_over() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "into the void");
        c.handle_end_of_input(t0());
        c.handle_timeout(at(999)); // early: nothing happens
        assert!(!c.is_ended());
        assert_eq!(events(&mut c), vec![]);
        c.handle_timeout(at(1000));
        assert_eq!(events(&mut c), vec![ended(EndReason::ByeSent, 0, 1, false)]);
        c.handle_timeout(at(5000)); // spurious: nothing happens
        c.handle_unreachable(at(5000)); // too late: nothing happens
        assert_eq!(events(&mut c), vec![]);
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
    }

    #[test]
    fn bye_ends_at_once_when_every_message_was_answered() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "ping");
        c.handle_datagram(t0(), addr(9), b"pong");
        c.handle_end_of_input(t0());
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
        // Nothing sent but bye: nothing to wait for either.
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_end_of_input(t0());
        assert_eq!(texts(&mut c), ["bye"]);
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
    }

    #[test]
    fn while_closing_a_datagram_from_the_peer_or_a_second_interrupt_ends_at_once() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "x");
        c.handle_interrupt(t0());
        c.handle_datagram(at(1), addr(8), b"a stranger proves nothing");
        assert!(!c.is_ended());
        c.handle_datagram(at(2), addr(9), b"too late, but there");
        assert_eq!(events(&mut c), vec![ended(EndReason::ByeSent, 0, 0, true)]);
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "x");
        c.handle_interrupt(t0());
        c.handle_interrupt(at(1));
        assert_eq!(events(&mut c), vec![ended(EndReason::ByeSent, 0, 1, false)]);
    }

    #[test]
    fn without_refusal_reports_bye_ends_at_once() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, listener_config());
        c.handle_datagram(t0(), addr(5), b"hi");
        c.handle_line(t0(), "unanswered");
        c.handle_end_of_input(t0());
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn turns_after_end_of_input_the_reply_is_awaited_at_most_reply_wait() {
        // `echo hello | udpchat chat --turns SILENT_PEER`.
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "hello");
        assert_eq!(c.poll_timeout(), None, "the user may still type");
        c.handle_end_of_input(at(5));
        assert_eq!(c.poll_timeout(), Some(at(5) + DEFAULT_REPLY_WAIT));
        c.handle_timeout(at(5) + DEFAULT_REPLY_WAIT - Duration::from_millis(1));
        assert_eq!(texts(&mut c), ["hello"]);
        c.handle_timeout(at(5) + DEFAULT_REPLY_WAIT);
        assert_eq!(texts(&mut c), ["bye"], "bye out of turn");
        assert_eq!(
            events(&mut c).last(),
            Some(&ended(EndReason::NoReply, 0, 1, false))
        );
        assert!(EndReason::NoReply.is_failure());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn turns_reply_wait_starts_again_at_each_message_and_counts_lines_left() {
        let config = Config {
            reply_wait: Duration::from_secs(2),
            ..Config::default()
        };
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), config);
        c.handle_line(t0(), "q1");
        c.handle_line(t0(), "q2");
        c.handle_line(t0(), "q3");
        c.handle_end_of_input(t0());
        assert_eq!(c.poll_timeout(), Some(at(2000)));
        c.handle_datagram(at(1500), addr(9), b"a1");
        assert_eq!(texts(&mut c), ["q1", "q2"]);
        assert_eq!(c.poll_timeout(), Some(at(3500)));
        c.handle_timeout(at(3500));
        assert_eq!(texts(&mut c), ["bye"]);
        assert_eq!(
            events(&mut c).last(),
            Some(&ended(EndReason::NoReply, 1, 1, true))
        );
    }

    #[test]
    fn turns_a_refusal_gives_the_turn_back() {
        // Typed before the other side was started: the peer cannot answer what it never got.
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "hello?");
        c.handle_line(t0(), "hello again");
        assert_eq!(texts(&mut c), ["hello?"]);
        c.handle_unreachable(at(1));
        assert_eq!(texts(&mut c), ["hello again"]);
        assert_eq!(
            events(&mut c),
            vec![
                Event::TurnChanged(Turn::Theirs),
                Event::PeerUnreachable {
                    peer: addr(9),
                    undelivered: 1
                },
                Event::TurnChanged(Turn::Ours),
                Event::TurnChanged(Turn::Theirs),
            ]
        );
        // `echo hello | udpchat chat --turns CLOSED`: the refusal ends it at once.
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line(t0(), "hello");
        c.handle_end_of_input(t0());
        c.handle_unreachable(at(1));
        assert_eq!(texts(&mut c), ["hello", "bye"]);
        assert_eq!(
            events(&mut c).last(),
            Some(&ended(EndReason::NobodyListening, 0, 1, false))
        );
    }

    #[test]
    fn turns_listener_without_a_peer_waits_without_a_deadline() {
        let mut c = Conversation::new(Mode::Turns, Role::Listen, listener_config());
        c.handle_line(t0(), "early");
        c.handle_end_of_input(t0());
        assert_eq!(c.poll_timeout(), None);
        c.handle_datagram(at(60_000), addr(5), b"hello");
        assert_eq!(texts(&mut c), ["early"]);
        assert_eq!(c.poll_timeout(), Some(at(60_000) + DEFAULT_REPLY_WAIT));
    }
}
