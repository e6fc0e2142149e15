//! The lab's two-party chat (steps 3 and 4) as a sans-IO state machine.
//!
//! On the wire this is exactly the lab's protocol: each message is one datagram holding its UTF-8
//! text, with no framing, and a message that is exactly `bye` ends the conversation for both sides.
//! So a [`Conversation`] talks to the lab's Python programs and to `nc -u` unchanged.
//!
//! The machine decides *what* to send, *when* it may be sent, and when the conversation is over;
//! the driver moves the bytes. Call order, after creating it with [`Conversation::new`]:
//!
//! 1. Inputs: [`handle_line`](Conversation::handle_line) for each line the user typed,
//!    [`handle_datagram`](Conversation::handle_datagram) for each datagram the socket received,
//!    [`handle_end_of_input`](Conversation::handle_end_of_input) on end of input or Ctrl-C.
//! 2. Outputs, after every input: drain [`poll_transmit`](Conversation::poll_transmit) (send each
//!    to its destination), then [`poll_event`](Conversation::poll_event) (show each to the user).
//! 3. Stop driving once [`is_ended`](Conversation::is_ended) is true and both queues are drained.
//!
//! Two shapes of conversation ([`Mode`]):
//! - [`Mode::FullDuplex`] (step 4): either side sends at any time.
//! - [`Mode::Turns`] (step 3): strict alternation, the connecting side speaks first and the
//!   listener never sends before it has received. Lines typed out of turn wait their turn.
//!
//! A listener does not know its peer until the first datagram arrives; lines typed before that
//! are queued, and datagrams from any other address afterwards are reported and ignored.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::text;

/// The message that ends a conversation, from either side.
pub const BYE: &str = "bye";

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
    /// This side sent `bye` (typed, or on end of input / Ctrl-C).
    ByeSent,
    /// The peer sent `bye`.
    ByeReceived,
    /// Interrupted (Ctrl-C) before any peer was known: there was nobody to say `bye` to.
    Interrupted,
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
    /// The turn changed (only in [`Mode::Turns`]).
    TurnChanged(Turn),
    /// The conversation is over. No further events follow.
    Ended {
        /// Who said `bye`.
        reason: EndReason,
        /// Lines the user typed that were never sent (the peer left first, or Ctrl-C dropped
        /// them). The `bye` said for the user at end of input is not a typed line and is not
        /// counted, nor is a typed `bye` that the end made moot.
        unsent: usize,
    },
}

/// Options that do not change the conversation's logic.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Append `\n` to each sent datagram, so that line-oriented peers such as `nc -u` show one
    /// message per line. Off by default: the lab's Python programs compare the text with `bye`
    /// exactly, so a trailing newline would break them.
    pub append_newline: bool,
}

/// One two-party conversation. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct Conversation {
    mode: Mode,
    config: Config,
    /// The peer's address: known from the start when connecting, learned from the first
    /// datagram when listening.
    peer: Option<SocketAddr>,
    /// Whose turn it is; always `Ours` in full-duplex mode.
    turn: Turn,
    /// Lines typed but not sent yet, because the peer is unknown or it is not our turn.
    pending_lines: VecDeque<String>,
    /// Set at end of input: `bye` follows the pending lines, as soon as it can be sent.
    input_ended: bool,
    /// Set once `bye` was sent or received.
    ended: Option<EndReason>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
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
            peer,
            turn,
            pending_lines: VecDeque::new(),
            input_ended: false,
            ended: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The user typed `line` (without its line ending). It is sent now if it can be, otherwise
    /// queued until the peer is known and it is our turn. Typing `bye` ends the conversation
    /// once it is sent. Ignored after the conversation ended.
    pub fn handle_line(&mut self, line: &str) {
        if self.ended.is_some() || self.input_ended {
            return;
        }
        self.pending_lines.push_back(line.to_owned());
        self.flush_pending();
    }

    /// End of input or Ctrl-C: says `bye` (as soon as it can be sent).
    ///
    /// Lines still queued are sent first, in order, so nothing typed is lost.
    pub fn handle_end_of_input(&mut self) {
        if self.ended.is_some() || self.input_ended {
            return;
        }
        self.input_ended = true;
        self.flush_pending();
    }

    /// Ctrl-C: the user wants out *now*. Says `bye` at once, even out of turn, and drops lines
    /// still queued (counted as unsent in [`Event::Ended`]). With no peer yet there is nobody to
    /// tell, and the conversation ends as [`EndReason::Interrupted`].
    pub fn handle_interrupt(&mut self) {
        if self.ended.is_some() {
            return;
        }
        let Some(destination) = self.peer else {
            self.end(EndReason::Interrupted);
            return;
        };
        let mut payload = BYE.as_bytes().to_vec();
        if self.config.append_newline {
            payload.push(b'\n');
        }
        self.transmits.push_back(Transmit {
            destination,
            payload,
        });
        self.end(EndReason::ByeSent);
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, from: SocketAddr, payload: &[u8]) {
        if self.ended.is_some() {
            return;
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
        self.flush_pending();
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to show, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether `bye` has been sent or received: nothing more will be sent or accepted.
    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// Why the conversation ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ended
    }

    /// The peer's address, once known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Whether a line typed now would be sent at once (peer known, our turn, nothing queued).
    pub fn can_send_now(&self) -> bool {
        self.ended.is_none()
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

    /// Sends queued lines while the peer is known and it is our turn, then the `bye` due at end
    /// of input.
    fn flush_pending(&mut self) {
        let Some(destination) = self.peer else { return };
        while self.ended.is_none() && self.turn == Turn::Ours {
            let line = match self.pending_lines.pop_front() {
                Some(line) => line,
                None if self.input_ended => BYE.to_owned(),
                None => break,
            };
            let is_bye = line == BYE;
            let mut payload = line.into_bytes();
            if self.config.append_newline {
                payload.push(b'\n');
            }
            self.transmits.push_back(Transmit {
                destination,
                payload,
            });
            if is_bye {
                self.end(EndReason::ByeSent);
            } else if self.mode == Mode::Turns {
                self.set_turn(Turn::Theirs);
            }
        }
    }

    fn set_turn(&mut self, turn: Turn) {
        self.turn = turn;
        self.events.push_back(Event::TurnChanged(turn));
    }

    fn end(&mut self, reason: EndReason) {
        self.ended = Some(reason);
        let unsent = self.pending_lines.iter().filter(|l| *l != BYE).count();
        self.pending_lines.clear();
        self.events.push_back(Event::Ended { reason, unsent });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        c.handle_line("one");
        c.handle_line("two");
        assert_eq!(
            sent(&mut c),
            vec![(addr(9), "one".into()), (addr(9), "two".into())]
        );
        c.handle_datagram(addr(9), b"three\n");
        c.handle_datagram(addr(9), b"four");
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
        c.handle_line("early");
        assert_eq!(sent(&mut c), vec![]);
        assert_eq!(c.pending_lines(), 1);
        c.handle_datagram(addr(5), b"hello");
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
        c.handle_datagram(addr(5), b"hi");
        c.handle_datagram(addr(6), b"bye");
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
        c.handle_datagram(addr(8), b"x");
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
        c.handle_line("a");
        c.handle_line("b"); // not our turn: queued
        assert_eq!(sent(&mut c).len(), 1);
        c.handle_datagram(addr(9), b"bye\r\n");
        assert!(c.is_ended());
        assert_eq!(c.end_reason(), Some(EndReason::ByeReceived));
        let evs = events(&mut c);
        assert_eq!(
            evs.last(),
            Some(&Event::Ended {
                reason: EndReason::ByeReceived,
                unsent: 1
            })
        );
        // Nothing is sent or accepted afterwards.
        c.handle_line("late");
        c.handle_datagram(addr(9), b"late");
        assert_eq!(sent(&mut c), vec![]);
        assert_eq!(events(&mut c), vec![]);
    }

    #[test]
    fn bye_typed_is_sent_and_ends() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_line("bye");
        assert_eq!(sent(&mut c), vec![(addr(9), "bye".into())]);
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
        assert_eq!(
            events(&mut c),
            vec![Event::Ended {
                reason: EndReason::ByeSent,
                unsent: 0
            }]
        );
    }

    #[test]
    fn only_exactly_bye_ends() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        for not_bye in ["Bye", "bye ", " bye", "byebye", "bye\n\n"] {
            c.handle_datagram(addr(9), not_bye.as_bytes());
            c.handle_line(not_bye);
        }
        assert!(!c.is_ended());
    }

    #[test]
    fn end_of_input_flushes_queued_lines_then_says_bye() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, Config::default());
        c.handle_line("1");
        c.handle_line("2");
        c.handle_end_of_input();
        c.handle_end_of_input(); // a second Ctrl-C does not queue a second bye
        assert_eq!(c.pending_lines(), 2);
        c.handle_datagram(addr(5), b"hi");
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["1", "2", "bye"]);
        assert_eq!(c.end_reason(), Some(EndReason::ByeSent));
    }

    #[test]
    fn the_automatic_bye_is_not_counted_as_an_unsent_line() {
        // The peer says bye first: q2 was typed and never sent; the bye end of input would
        // have said was not typed.
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line("q1");
        c.handle_line("q2");
        c.handle_end_of_input();
        c.handle_datagram(addr(9), b"bye");
        assert_eq!(
            events(&mut c).last(),
            Some(&Event::Ended {
                reason: EndReason::ByeReceived,
                unsent: 1
            })
        );
        // Ctrl-C out of turn, after the end of input.
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line("q1");
        c.handle_line("q2");
        c.handle_end_of_input();
        c.handle_interrupt();
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["q1", "bye"]);
        assert_eq!(
            events(&mut c).last(),
            Some(&Event::Ended {
                reason: EndReason::ByeSent,
                unsent: 1
            })
        );
        // A listener interrupted before any peer came, after the end of input.
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, Config::default());
        c.handle_line("never sent");
        c.handle_end_of_input();
        c.handle_interrupt();
        assert_eq!(
            events(&mut c),
            vec![Event::Ended {
                reason: EndReason::Interrupted,
                unsent: 1
            }]
        );
    }

    #[test]
    fn interrupt_says_bye_at_once_even_out_of_turn() {
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_line("q");
        c.handle_line("queued");
        c.handle_interrupt();
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["q", "bye"]);
        let evs = events(&mut c);
        assert_eq!(
            evs.last(),
            Some(&Event::Ended {
                reason: EndReason::ByeSent,
                unsent: 1
            })
        );
    }

    #[test]
    fn interrupt_without_a_peer_ends_without_sending() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Listen, Config::default());
        c.handle_line("never sent");
        c.handle_interrupt();
        assert_eq!(sent(&mut c), vec![]);
        assert_eq!(
            events(&mut c),
            vec![Event::Ended {
                reason: EndReason::Interrupted,
                unsent: 1
            }]
        );
    }

    #[test]
    fn turns_client_speaks_first_then_alternates() {
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        assert_eq!(c.turn(), Turn::Ours);
        c.handle_line("q1");
        c.handle_line("q2");
        assert_eq!(sent(&mut c), vec![(addr(9), "q1".into())]);
        assert_eq!(c.turn(), Turn::Theirs);
        assert!(!c.can_send_now());
        c.handle_datagram(addr(9), b"a1");
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
        c.handle_line("too early");
        c.handle_end_of_input();
        assert_eq!(sent(&mut c), vec![]);
        c.handle_datagram(addr(5), b"hello");
        // One line per turn: "too early" goes, the bye waits for the next turn.
        assert_eq!(sent(&mut c), vec![(addr(5), "too early".into())]);
        assert!(!c.is_ended());
        c.handle_datagram(addr(5), b"ok");
        assert_eq!(sent(&mut c), vec![(addr(5), "bye".into())]);
        assert!(c.is_ended());
    }

    #[test]
    fn turns_out_of_turn_message_is_still_delivered() {
        let mut c = Conversation::new(Mode::Turns, Role::Connect(addr(9)), Config::default());
        c.handle_datagram(addr(9), b"impatient");
        assert_eq!(events(&mut c), vec![received(9, "impatient")]);
        assert_eq!(c.turn(), Turn::Ours);
    }

    #[test]
    fn append_newline_option_adds_one_newline() {
        let config = Config {
            append_newline: true,
        };
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), config);
        c.handle_line("hi");
        c.handle_line("bye");
        let out: Vec<String> = sent(&mut c).into_iter().map(|(_, t)| t).collect();
        assert_eq!(out, ["hi\n", "bye\n"]);
    }

    #[test]
    fn invalid_utf8_from_the_peer_is_replaced_not_fatal() {
        let mut c = Conversation::new(Mode::FullDuplex, Role::Connect(addr(9)), Config::default());
        c.handle_datagram(addr(9), b"\xff\xfe");
        assert_eq!(events(&mut c), vec![received(9, "\u{fffd}\u{fffd}")]);
    }
}
