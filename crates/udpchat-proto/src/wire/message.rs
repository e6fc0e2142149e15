//! The messages a connection's reliable stream carries, one encoded message per reliable message
//! (reassembled from segments before decoding, so a UTF-8 character is never split).
//!
//! ```text
//! tag u8, then fields in order; str8 = u8 length + UTF-8, text = u32 length + UTF-8
//! client -> server                          server -> client
//! 0x01 Nick    nick:str8                    0x81 NickSet     nick:str8
//! 0x02 Join    room:str8                    0x82 NickChanged old:str8 new:str8
//! 0x03 Part    room:str8                    0x83 Joined      room:str8 nick:str8
//! 0x04 Say     room:str8 text               0x84 Left        room:str8 nick:str8 reason:str8
//! 0x05 Action  room:str8 text               0x85 Message     room:str8 from:str8 kind:u8 history:u8 text
//! 0x06 Private to:str8 text                 0x86 Private     from:str8 to:str8 text
//! 0x07 Who     room:str8                    0x87 Names       room:str8 count:u16 nick:str8...
//! 0x08 Topic   room:str8 set:u8 [topic:text]0x88 Topic       room:str8 topic:text set_by:str8
//!                                           0x89 Error       code:u8 text
//! ```

use super::{DecodeError, Reader, Writer};

/// The longest nick or room name, in bytes.
pub const MAX_NAME: usize = 32;
/// The longest message text, in bytes of UTF-8 (the encoded form, not characters): 64 KiB.
/// The one limit on text: the server cuts a guest's text to it and refuses longer text from a
/// framed client, and a client refuses to send longer text.
pub const MAX_TEXT: usize = 64 * 1024;
/// The longest reason or similar short string, in bytes.
const MAX_SHORT: usize = 255;
/// The most nicks one Names message lists.
pub const MAX_NAMES: usize = 4096;
/// The most nicks a server puts in one Names message: a room with more members is listed in
/// several. Each nick takes at most 33 bytes, so a Names message stays far below
/// `MAX_MESSAGE` (the largest message a connection reassembles), whatever the nicks.
pub const NAMES_PER_MESSAGE: usize = 1024;

/// `text` cut to at most [`MAX_TEXT`] bytes, on a character boundary (a guest's line, whose
/// bytes may have grown when invalid UTF-8 became U+FFFD, three bytes each).
pub fn truncate_text(text: &mut String) {
    if text.len() > MAX_TEXT {
        let end = text.floor_char_boundary(MAX_TEXT);
        text.truncate(end);
    }
}

/// What a client asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Take (or change to) this nick.
    Nick {
        /// The nick wanted.
        nick: String,
    },
    /// Join a room (created if it does not exist).
    Join {
        /// The room.
        room: String,
    },
    /// Leave a room.
    Part {
        /// The room.
        room: String,
    },
    /// Say something in a room.
    Say {
        /// The room.
        room: String,
        /// The message.
        text: String,
    },
    /// An action (`/me waves`) in a room.
    Action {
        /// The room.
        room: String,
        /// What the user does.
        text: String,
    },
    /// A private message to one nick.
    Private {
        /// The recipient.
        to: String,
        /// The message.
        text: String,
    },
    /// Who is in a room?
    Who {
        /// The room.
        room: String,
    },
    /// Ask for (topic `None`) or set a room's topic.
    Topic {
        /// The room.
        room: String,
        /// The new topic, or `None` to ask.
        topic: Option<String>,
    },
}

wire_enum! {
    /// How a room message was said.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MessageKind ("message kind") {
        /// Plain speech.
        Say = 0,
        /// An action (`/me`).
        Action = 1,
    }
}

wire_enum! {
    /// Why a request was refused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ErrorCode ("error code") {
        /// The nick is taken by someone else.
        NickTaken = 1,
        /// The nick or room name is not allowed (length, characters, reserved prefix).
        InvalidName = 2,
        /// No user has that nick.
        NoSuchNick = 3,
        /// The request needs membership of a room this client is not in.
        NotInRoom = 4,
        /// The client must choose a nick first.
        NoNick = 5,
        /// The text is too long.
        TooLong = 6,
        /// A server limit was reached (rooms, members).
        Full = 7,
        /// The request was malformed.
        BadRequest = 8,
    }
}

/// What the server tells a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// Your nick is now this.
    NickSet {
        /// The nick.
        nick: String,
    },
    /// Someone in one of your rooms changed nick.
    NickChanged {
        /// The old nick.
        old: String,
        /// The new nick.
        new: String,
    },
    /// Someone (maybe you) joined a room you are in.
    Joined {
        /// The room.
        room: String,
        /// Who.
        nick: String,
    },
    /// Someone (maybe you) left a room you are in.
    Left {
        /// The room.
        room: String,
        /// Who.
        nick: String,
        /// Why: "part", "quit", "timeout", "too slow", "server shutdown".
        reason: String,
    },
    /// A message in a room.
    Message {
        /// The room.
        room: String,
        /// The sender's nick.
        from: String,
        /// Speech or action.
        kind: MessageKind,
        /// Sent before you joined, replayed from the room's history.
        history: bool,
        /// The text.
        text: String,
    },
    /// A private message (to you, or your own, echoed).
    Private {
        /// The sender's nick.
        from: String,
        /// The recipient's nick.
        to: String,
        /// The text.
        text: String,
    },
    /// The members of a room.
    Names {
        /// The room.
        room: String,
        /// The members' nicks.
        nicks: Vec<String>,
    },
    /// A room's topic (on join, on change, or when asked).
    Topic {
        /// The room.
        room: String,
        /// The topic, empty if none.
        topic: String,
        /// Who set it, empty if nobody.
        set_by: String,
    },
    /// A request was refused.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// Words for the user.
        text: String,
    },
}

impl ClientMessage {
    /// Decodes one reassembled message.
    ///
    /// # Errors
    /// A [`DecodeError`] for anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8("client message tag")? {
            0x01 => Self::Nick {
                nick: r.str8(MAX_NAME, "nick")?,
            },
            0x02 => Self::Join {
                room: r.str8(MAX_NAME, "room")?,
            },
            0x03 => Self::Part {
                room: r.str8(MAX_NAME, "room")?,
            },
            0x04 => Self::Say {
                room: r.str8(MAX_NAME, "room")?,
                text: r.str32(MAX_TEXT, "text")?,
            },
            0x05 => Self::Action {
                room: r.str8(MAX_NAME, "room")?,
                text: r.str32(MAX_TEXT, "text")?,
            },
            0x06 => Self::Private {
                to: r.str8(MAX_NAME, "nick")?,
                text: r.str32(MAX_TEXT, "text")?,
            },
            0x07 => Self::Who {
                room: r.str8(MAX_NAME, "room")?,
            },
            0x08 => {
                let room = r.str8(MAX_NAME, "room")?;
                let topic = match r.u8("topic present")? {
                    0 => None,
                    1 => Some(r.str32(MAX_TEXT, "topic")?),
                    _ => return Err(DecodeError::OutOfRange("topic present")),
                };
                Self::Topic { room, topic }
            }
            value => {
                return Err(DecodeError::UnknownKind {
                    what: "client message",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Nick { nick } => {
                out.put_u8(0x01);
                out.put_str8(nick);
            }
            Self::Join { room } => {
                out.put_u8(0x02);
                out.put_str8(room);
            }
            Self::Part { room } => {
                out.put_u8(0x03);
                out.put_str8(room);
            }
            Self::Say { room, text } => {
                out.put_u8(0x04);
                out.put_str8(room);
                out.put_str32(text);
            }
            Self::Action { room, text } => {
                out.put_u8(0x05);
                out.put_str8(room);
                out.put_str32(text);
            }
            Self::Private { to, text } => {
                out.put_u8(0x06);
                out.put_str8(to);
                out.put_str32(text);
            }
            Self::Who { room } => {
                out.put_u8(0x07);
                out.put_str8(room);
            }
            Self::Topic { room, topic } => {
                out.put_u8(0x08);
                out.put_str8(room);
                match topic {
                    None => out.put_u8(0),
                    Some(topic) => {
                        out.put_u8(1);
                        out.put_str32(topic);
                    }
                }
            }
        }
    }

    /// The encoded message as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl ServerMessage {
    /// Decodes one reassembled message.
    ///
    /// # Errors
    /// A [`DecodeError`] for anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8("server message tag")? {
            0x81 => Self::NickSet {
                nick: r.str8(MAX_NAME, "nick")?,
            },
            0x82 => Self::NickChanged {
                old: r.str8(MAX_NAME, "nick")?,
                new: r.str8(MAX_NAME, "nick")?,
            },
            0x83 => Self::Joined {
                room: r.str8(MAX_NAME, "room")?,
                nick: r.str8(MAX_NAME, "nick")?,
            },
            0x84 => Self::Left {
                room: r.str8(MAX_NAME, "room")?,
                nick: r.str8(MAX_NAME, "nick")?,
                reason: r.str8(MAX_SHORT, "reason")?,
            },
            0x85 => {
                let room = r.str8(MAX_NAME, "room")?;
                let from = r.str8(MAX_NAME, "nick")?;
                let kind = MessageKind::try_from(r.u8("message kind")?)?;
                let history = match r.u8("history")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::OutOfRange("history")),
                };
                Self::Message {
                    room,
                    from,
                    kind,
                    history,
                    text: r.str32(MAX_TEXT, "text")?,
                }
            }
            0x86 => Self::Private {
                from: r.str8(MAX_NAME, "nick")?,
                to: r.str8(MAX_NAME, "nick")?,
                text: r.str32(MAX_TEXT, "text")?,
            },
            0x87 => {
                let room = r.str8(MAX_NAME, "room")?;
                let count = usize::from(r.u16("names count")?);
                if count > MAX_NAMES {
                    return Err(DecodeError::OutOfRange("names count"));
                }
                let nicks = (0..count)
                    .map(|_| r.str8(MAX_NAME, "nick"))
                    .collect::<Result<_, _>>()?;
                Self::Names { room, nicks }
            }
            0x88 => Self::Topic {
                room: r.str8(MAX_NAME, "room")?,
                topic: r.str32(MAX_TEXT, "topic")?,
                set_by: r.str8(MAX_NAME, "nick")?,
            },
            0x89 => {
                let code = ErrorCode::try_from(r.u8("error code")?)?;
                Self::Error {
                    code,
                    text: r.str32(MAX_TEXT, "error text")?,
                }
            }
            value => {
                return Err(DecodeError::UnknownKind {
                    what: "server message",
                    value,
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::NickSet { nick } => {
                out.put_u8(0x81);
                out.put_str8(nick);
            }
            Self::NickChanged { old, new } => {
                out.put_u8(0x82);
                out.put_str8(old);
                out.put_str8(new);
            }
            Self::Joined { room, nick } => {
                out.put_u8(0x83);
                out.put_str8(room);
                out.put_str8(nick);
            }
            Self::Left { room, nick, reason } => {
                out.put_u8(0x84);
                out.put_str8(room);
                out.put_str8(nick);
                out.put_str8(reason);
            }
            Self::Message {
                room,
                from,
                kind,
                history,
                text,
            } => {
                out.put_u8(0x85);
                out.put_str8(room);
                out.put_str8(from);
                out.put_u8(*kind as u8);
                out.put_u8(u8::from(*history));
                out.put_str32(text);
            }
            Self::Private { from, to, text } => {
                out.put_u8(0x86);
                out.put_str8(from);
                out.put_str8(to);
                out.put_str32(text);
            }
            Self::Names { room, nicks } => {
                out.put_u8(0x87);
                out.put_str8(room);
                let count = nicks.len().min(MAX_NAMES);
                out.put_u16(count as u16);
                for nick in &nicks[..count] {
                    out.put_str8(nick);
                }
            }
            Self::Topic {
                room,
                topic,
                set_by,
            } => {
                out.put_u8(0x88);
                out.put_str8(room);
                out.put_str32(topic);
                out.put_str8(set_by);
            }
            Self::Error { code, text } => {
                out.put_u8(0x89);
                out.put_u8(*code as u8);
                out.put_str32(text);
            }
        }
    }

    /// The encoded message as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// A field of a [`ClientMessage`] longer than the server accepts (see
/// [`ClientMessage::check_lengths`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {field} is {len} bytes, longer than the {max} bytes allowed")]
pub struct TooLong {
    /// Which field: "text", "topic", "nick" or "room".
    pub field: &'static str,
    /// Its length in bytes of UTF-8.
    pub len: usize,
    /// The limit the server enforces: [`MAX_TEXT`] or [`MAX_NAME`].
    pub max: usize,
}

impl ClientMessage {
    /// Checks every field against the limit [`ClientMessage::decode`] enforces at the server
    /// (which closes the connection of a client that breaks one): text and topics at most
    /// [`MAX_TEXT`] bytes, names at most [`MAX_NAME`]. The client core calls it before sending.
    ///
    /// # Errors
    /// [`TooLong`] for the first field over its limit.
    pub fn check_lengths(&self) -> Result<(), TooLong> {
        let (name, text) = match self {
            Self::Nick { nick } => (("nick", nick), None),
            Self::Join { room } | Self::Part { room } | Self::Who { room } => {
                (("room", room), None)
            }
            Self::Say { room, text } | Self::Action { room, text } => {
                (("room", room), Some(("text", text)))
            }
            Self::Private { to, text } => (("nick", to), Some(("text", text))),
            Self::Topic { room, topic } => (("room", room), topic.as_ref().map(|t| ("topic", t))),
        };
        let fields = std::iter::once((name.0, name.1, MAX_NAME))
            .chain(text.map(|(field, text)| (field, text, MAX_TEXT)));
        for (field, value, max) in fields {
            if value.len() > max {
                return Err(TooLong {
                    field,
                    len: value.len(),
                    max,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_samples() -> Vec<ClientMessage> {
        use ClientMessage::*;
        vec![
            Nick { nick: "ada".into() },
            Join {
                room: "lobby".into(),
            },
            Part {
                room: "lobby".into(),
            },
            Say {
                room: "lobby".into(),
                text: "héllo 👋".into(),
            },
            Action {
                room: "lobby".into(),
                text: "waves".into(),
            },
            Private {
                to: "bob".into(),
                text: "psst".into(),
            },
            Who {
                room: "lobby".into(),
            },
            Topic {
                room: "lobby".into(),
                topic: None,
            },
            Topic {
                room: "lobby".into(),
                topic: Some("rust".into()),
            },
            Say {
                room: "big".into(),
                text: "x".repeat(MAX_TEXT),
            },
        ]
    }

    fn server_samples() -> Vec<ServerMessage> {
        use ServerMessage::*;
        vec![
            NickSet { nick: "ada".into() },
            NickChanged {
                old: "ada".into(),
                new: "ada_".into(),
            },
            Joined {
                room: "lobby".into(),
                nick: "bob".into(),
            },
            Left {
                room: "lobby".into(),
                nick: "bob".into(),
                reason: "timeout".into(),
            },
            Message {
                room: "lobby".into(),
                from: "bob".into(),
                kind: MessageKind::Action,
                history: true,
                text: "waves".into(),
            },
            Private {
                from: "a".into(),
                to: "b".into(),
                text: "hi".into(),
            },
            Names {
                room: "lobby".into(),
                nicks: vec!["a".into(), "b".into()],
            },
            Topic {
                room: "lobby".into(),
                topic: "t".into(),
                set_by: "a".into(),
            },
            Error {
                code: ErrorCode::NickTaken,
                text: "nick bob is taken".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_truncation_fails() {
        for msg in client_samples() {
            let bytes = msg.to_bytes();
            assert_eq!(ClientMessage::decode(&bytes), Ok(msg.clone()));
            for len in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                assert!(
                    ClientMessage::decode(&bytes[..len]).is_err(),
                    "{msg:?} at {len}"
                );
            }
        }
        for msg in server_samples() {
            let bytes = msg.to_bytes();
            assert_eq!(ServerMessage::decode(&bytes), Ok(msg.clone()));
            for len in 0..bytes.len() {
                assert!(
                    ServerMessage::decode(&bytes[..len]).is_err(),
                    "{msg:?} at {len}"
                );
            }
        }
    }

    #[test]
    fn golden_bytes() {
        let say = ClientMessage::Say {
            room: "r".into(),
            text: "hi".into(),
        };
        assert_eq!(say.to_bytes(), [0x04, 1, b'r', 0, 0, 0, 2, b'h', b'i']);
        let msg = ServerMessage::Message {
            room: "r".into(),
            from: "a".into(),
            kind: MessageKind::Say,
            history: false,
            text: "hi".into(),
        };
        assert_eq!(
            msg.to_bytes(),
            [0x85, 1, b'r', 1, b'a', 0, 0, 0, 0, 0, 2, b'h', b'i']
        );
        let names = ServerMessage::Names {
            room: "r".into(),
            nicks: vec!["a".into()],
        };
        assert_eq!(names.to_bytes(), [0x87, 1, b'r', 0, 1, 1, b'a']);
    }

    #[test]
    fn limits_are_enforced_on_decode() {
        let mut long_nick = vec![0x01, 33];
        long_nick.extend_from_slice(&[b'a'; 33]);
        assert_eq!(
            ClientMessage::decode(&long_nick),
            Err(DecodeError::OutOfRange("nick"))
        );
        let too_long = ClientMessage::Say {
            room: "r".into(),
            text: "x".repeat(MAX_TEXT + 1),
        };
        assert_eq!(
            ClientMessage::decode(&too_long.to_bytes()),
            Err(DecodeError::OutOfRange("text"))
        );
        assert!(matches!(
            ClientMessage::decode(&[0x77]),
            Err(DecodeError::UnknownKind { .. })
        ));
        let mut trailing = ClientMessage::Join { room: "r".into() }.to_bytes();
        trailing.push(0);
        assert_eq!(
            ClientMessage::decode(&trailing),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
