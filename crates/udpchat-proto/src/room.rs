//! Rooms, nicks and history: the chat itself, with no notion of transport.
//!
//! [`Chat::apply`] takes a member's command and returns what each member must be told, as
//! `(recipient, message)` pairs, in order. The server decides how each reaches its recipient
//! (a reliable connection, or a plain-text line for a guest). Everything here is bounded by
//! [`ChatLimits`].

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, VecDeque};

use crate::rng::{HashMap, RandomSource, new_map};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::wire::message::{
    ClientMessage, ErrorCode, MAX_NAME, MessageKind, NAMES_PER_MESSAGE, ServerMessage,
};
use crate::wire::packet::ConnectionId;

/// Who a member is: a framed connection or a plain-text guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberId {
    /// A client with a reliable connection.
    Connection(ConnectionId),
    /// A plain-text guest, known by its address.
    Guest(SocketAddr),
}

/// The prefix reserved for guests' nicks; framed clients cannot take it.
pub const GUEST_PREFIX: &str = "guest-";

/// Limits on what the chat holds.
#[derive(Debug, Clone)]
pub struct ChatLimits {
    /// Messages each room keeps for late joiners.
    pub history_len: usize,
    /// Rooms at most.
    pub max_rooms: usize,
    /// Members per room at most.
    pub max_members_per_room: usize,
    /// Rooms one member may be in at most.
    pub max_rooms_per_member: usize,
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            history_len: 100,
            max_rooms: 1000,
            max_members_per_room: 10_000,
            max_rooms_per_member: 32,
        }
    }
}

/// A room.
#[derive(Debug, Default)]
struct Room {
    /// The name as first written.
    name: String,
    members: BTreeSet<MemberId>,
    topic: String,
    topic_by: String,
    /// The last messages said, kept for late joiners: the very messages sent to the room
    /// (shared, not copied).
    history: VecDeque<Arc<ServerMessage>>,
}

/// What each member must be told, in order.
pub type Outbox = Vec<(MemberId, Arc<ServerMessage>)>;

/// All rooms and nicks of a server.
#[derive(Debug)]
pub struct Chat {
    limits: ChatLimits,
    /// Rooms by lowercased name (the key is shared with the members' lists).
    rooms: HashMap<Arc<str>, Room>,
    /// Each of a nick's [`nick_keys`] to its member.
    nick_owners: HashMap<String, MemberId>,
    /// Every member with a nick: its nick and rooms (one map, not two: a server keeps an
    /// entry per member, idle or not).
    members: HashMap<MemberId, Member>,
}

/// A member that has a nick.
#[derive(Debug)]
struct Member {
    /// As written.
    nick: String,
    /// The rooms (lowercased) it is in, in joining order (a few each: a `Vec` costs far less
    /// than a set's node per idle member).
    rooms: Vec<Arc<str>>,
}

/// Whether `name` may be a nick or room name: 1 to 32 bytes of letters, digits and `-_.[]{}|^`,
/// not starting with a digit or `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.[]{}|^".contains(c))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-')
}

/// Whether `nick` may be a nick: a valid name (see [`is_valid_name`]) that is also written in
/// one script (no Cyrillic "а" among Latin letters) with characters Unicode allows in
/// identifiers (UTS #39's general security profile). Nicks that look the same are kept apart
/// by [`nick_keys`].
pub fn is_valid_nick(nick: &str) -> bool {
    use unicode_security::{GeneralSecurityProfile, MixedScript};
    is_valid_name(nick)
        && (nick.is_ascii()
            || (nick.is_single_script()
                && nick.chars().all(|c| c.is_ascii() || c.identifier_allowed())))
}

/// What makes two nicks the same nick: two nicks are one when either of their keys is: the
/// UTS #39 skeleton (in which characters that look alike are one: Cyrillic "а" and Latin "a",
/// "l" and "1") of the lower-cased nick, and the lower-cased skeleton of the nick as written
/// (so that a capital "I" stands for an "l": "paypaI" is "paypal"). A nick with a key that
/// is taken cannot be had.
pub fn nick_keys(nick: &str) -> [String; 2] {
    let skeleton = |s: &str| unicode_security::skeleton(s).collect::<String>();
    [
        skeleton(&nick.to_lowercase()),
        skeleton(nick).to_lowercase(),
    ]
}

fn key(name: &str) -> Cow<'_, str> {
    // The usual name is lower-case ASCII already: no copy.
    if name
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_lowercase())
    }
}

/// Tells `member` who is in `room`: one Names message per [`NAMES_PER_MESSAGE`] nicks (a
/// single one for an empty list), so that every message decodes at the client, however big the
/// room.
fn push_names(out: &mut Outbox, member: MemberId, room: &str, nicks: Vec<String>) {
    if nicks.len() <= NAMES_PER_MESSAGE {
        out.push((
            member,
            Arc::new(ServerMessage::Names {
                room: room.to_owned(),
                nicks,
            }),
        ));
        return;
    }
    for chunk in nicks.chunks(NAMES_PER_MESSAGE) {
        out.push((
            member,
            Arc::new(ServerMessage::Names {
                room: room.to_owned(),
                nicks: chunk.to_vec(),
            }),
        ));
    }
}

fn error(code: ErrorCode, text: impl Into<String>) -> ServerMessage {
    ServerMessage::Error {
        code,
        text: text.into(),
    }
}

impl Chat {
    /// An empty chat with these limits; its maps seeded from `rng`.
    pub fn new(limits: ChatLimits, rng: &mut dyn RandomSource) -> Self {
        Self {
            limits,
            rooms: new_map(rng),
            nick_owners: new_map(rng),
            members: new_map(rng),
        }
    }

    /// The member's nick, if it has one.
    pub fn nick(&self, member: MemberId) -> Option<&str> {
        self.members.get(&member).map(|m| m.nick.as_str())
    }

    /// Who holds `nick`.
    pub fn member_by_nick(&self, nick: &str) -> Option<MemberId> {
        nick_keys(nick)
            .iter()
            .find_map(|k| self.nick_owners.get(k).copied())
    }

    /// How many rooms exist.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Gives a guest its nick (no validation: the server derives it) and puts it in `room`.
    pub fn add_guest(&mut self, member: MemberId, nick: &str, room: &str) -> Outbox {
        for k in nick_keys(nick) {
            self.nick_owners.insert(k, member);
        }
        self.rename(member, nick);
        let mut out = Outbox::new();
        self.join(member, room, &mut out);
        out
    }

    /// Whether `nick` is free.
    pub fn is_nick_free(&self, nick: &str) -> bool {
        !nick_keys(nick)
            .iter()
            .any(|k| self.nick_owners.contains_key(k))
    }

    /// `member` says `text` in `room`: as [`apply`](Self::apply) with [`ClientMessage::Say`],
    /// without a command built (and the room's name copied) for every line of a guest.
    pub fn say_in(&mut self, member: MemberId, room: &str, text: String) -> Outbox {
        if !self.members.contains_key(&member) {
            return self.apply(
                member,
                ClientMessage::Say {
                    room: room.to_owned(),
                    text,
                },
            );
        }
        let mut out = Outbox::new();
        self.say(member, room, MessageKind::Say, text, &mut out);
        out
    }

    /// Carries out one command from `member`.
    pub fn apply(&mut self, member: MemberId, command: ClientMessage) -> Outbox {
        let mut out = Outbox::new();
        match command {
            ClientMessage::Nick { nick } => self.set_nick(member, &nick, &mut out),
            other if !self.members.contains_key(&member) => {
                let _ = other;
                out.push((
                    member,
                    Arc::new(error(ErrorCode::NoNick, "choose a nick first")),
                ));
            }
            ClientMessage::Join { room } => self.join(member, &room, &mut out),
            ClientMessage::Part { room } => self.part(member, &room, "part", &mut out),
            ClientMessage::Say { room, text } => {
                self.say(member, &room, MessageKind::Say, text, &mut out);
            }
            ClientMessage::Action { room, text } => {
                self.say(member, &room, MessageKind::Action, text, &mut out);
            }
            ClientMessage::Private { to, text } => self.private(member, &to, text, &mut out),
            ClientMessage::Who { room } => {
                let names = self.names(&room);
                push_names(&mut out, member, &self.display(&room), names);
            }
            ClientMessage::Topic { room, topic } => self.topic(member, &room, topic, &mut out),
        }
        out
    }

    /// Removes `member` from everything (disconnect, timeout, eviction): its rooms hear
    /// `Left` with `reason`, and its nick is freed.
    pub fn remove(&mut self, member: MemberId, reason: &str) -> Outbox {
        let mut out = Outbox::new();
        let rooms: Vec<Arc<str>> = self
            .members
            .get(&member)
            .map(|m| m.rooms.clone())
            .unwrap_or_default();
        for room in rooms {
            self.part(member, &room, reason, &mut out);
        }
        if let Some(gone) = self.members.remove(&member) {
            for k in nick_keys(&gone.nick) {
                self.nick_owners.remove(&k);
            }
        }
        // The member is gone: nothing addressed to it can be delivered.
        out.retain(|(to, _)| *to != member);
        out
    }

    /// Gives `member` the nick `nick` (a new member gets an entry), returning its old nick.
    fn rename(&mut self, member: MemberId, nick: &str) -> Option<String> {
        match self.members.entry(member) {
            Entry::Occupied(mut known) => Some(std::mem::replace(
                &mut known.get_mut().nick,
                nick.to_owned(),
            )),
            Entry::Vacant(new) => {
                new.insert(Member {
                    nick: nick.to_owned(),
                    rooms: Vec::new(),
                });
                None
            }
        }
    }

    fn set_nick(&mut self, member: MemberId, nick: &str, out: &mut Outbox) {
        if !is_valid_nick(nick)
            || nick_keys(nick)
                .iter()
                .any(|k| k.starts_with(&nick_keys(GUEST_PREFIX)[0]))
        {
            out.push((
                member,
                Arc::new(error(
                    ErrorCode::InvalidName,
                    format!("'{nick}' is not a valid nick"),
                )),
            ));
            return;
        }
        let taken = nick_keys(nick).iter().any(|k| {
            self.nick_owners
                .get(k)
                .is_some_and(|owner| *owner != member)
        });
        if taken {
            out.push((
                member,
                Arc::new(error(ErrorCode::NickTaken, format!("nick {nick} is taken"))),
            ));
            return;
        }
        let old = self.rename(member, nick);
        if let Some(old) = &old {
            for k in nick_keys(old) {
                self.nick_owners.remove(&k);
            }
        }
        for k in nick_keys(nick) {
            self.nick_owners.insert(k, member);
        }
        out.push((
            member,
            Arc::new(ServerMessage::NickSet {
                nick: nick.to_owned(),
            }),
        ));
        if let Some(old) = old
            && old != nick
        {
            let shared = Arc::new(ServerMessage::NickChanged {
                old: old.clone(),
                new: nick.to_owned(),
            });
            for peer in self.peers_of(member) {
                out.push((peer, Arc::clone(&shared)));
            }
        }
    }

    fn join(&mut self, member: MemberId, room: &str, out: &mut Outbox) {
        if !is_valid_name(room) {
            out.push((
                member,
                Arc::new(error(
                    ErrorCode::InvalidName,
                    format!("'{room}' is not a valid room"),
                )),
            ));
            return;
        }
        let k = key(room);
        let Some(nick) = self.members.get(&member).map(|m| m.nick.clone()) else {
            return;
        };
        if !self.rooms.contains_key(&*k) && self.rooms.len() >= self.limits.max_rooms {
            out.push((
                member,
                Arc::new(error(ErrorCode::Full, "too many rooms on this server")),
            ));
            return;
        }
        let Some(Member { rooms: mine, .. }) = self.members.get_mut(&member) else {
            return;
        };
        if mine.iter().any(|r| **r == *k) {
            return;
        }
        if mine.len() >= self.limits.max_rooms_per_member {
            out.push((
                member,
                Arc::new(error(ErrorCode::Full, "you are in too many rooms")),
            ));
            return;
        }
        let shared_key = match self.rooms.get_key_value(&*k) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::from(&*k),
        };
        let r = self
            .rooms
            .entry(Arc::clone(&shared_key))
            .or_insert_with(|| Room {
                name: room.to_owned(),
                ..Room::default()
            });
        if r.members.len() >= self.limits.max_members_per_room {
            out.push((
                member,
                Arc::new(error(ErrorCode::Full, format!("room {} is full", r.name))),
            ));
            return;
        }
        r.members.insert(member);
        mine.push(shared_key);
        let name = r.name.clone();
        let shared = Arc::new(ServerMessage::Joined {
            room: name.clone(),
            nick: nick.clone(),
        });
        for &m in &r.members {
            out.push((m, Arc::clone(&shared)));
        }
        if !r.topic.is_empty() {
            out.push((
                member,
                Arc::new(ServerMessage::Topic {
                    room: name.clone(),
                    topic: r.topic.clone(),
                    set_by: r.topic_by.clone(),
                }),
            ));
        }
        let names = r
            .members
            .iter()
            .filter_map(|m| self.members.get(m).map(|m| m.nick.clone()))
            .collect();
        push_names(out, member, &name, names);
        for said in &r.history {
            if let ServerMessage::Message {
                from, kind, text, ..
            } = &**said
            {
                out.push((
                    member,
                    Arc::new(ServerMessage::Message {
                        room: name.clone(),
                        from: from.clone(),
                        kind: *kind,
                        history: true,
                        text: text.clone(),
                    }),
                ));
            }
        }
    }

    fn part(&mut self, member: MemberId, room: &str, reason: &str, out: &mut Outbox) {
        let k = key(room);
        let Some(r) = self.rooms.get_mut(&*k) else {
            out.push((
                member,
                Arc::new(error(
                    ErrorCode::NotInRoom,
                    format!("you are not in {room}"),
                )),
            ));
            return;
        };
        if !r.members.contains(&member) {
            out.push((
                member,
                Arc::new(error(
                    ErrorCode::NotInRoom,
                    format!("you are not in {room}"),
                )),
            ));
            return;
        }
        let nick = self
            .members
            .get(&member)
            .map(|m| m.nick.clone())
            .unwrap_or_default();
        let shared = Arc::new(ServerMessage::Left {
            room: r.name.clone(),
            nick: nick.clone(),
            reason: reason.to_owned(),
        });
        for &m in &r.members {
            out.push((m, Arc::clone(&shared)));
        }
        r.members.remove(&member);
        // An empty room is forgotten unless it has history for a later joiner.
        if r.members.is_empty() && r.history.is_empty() {
            self.rooms.remove(&*k);
        }
        if let Some(mine) = self.members.get_mut(&member) {
            mine.rooms.retain(|room| **room != *k);
        }
    }

    fn say(
        &mut self,
        member: MemberId,
        room: &str,
        kind: MessageKind,
        text: String,
        out: &mut Outbox,
    ) {
        let k = key(room);
        let nick = self
            .members
            .get(&member)
            .map(|m| m.nick.clone())
            .unwrap_or_default();
        let Some(r) = self
            .rooms
            .get_mut(&*k)
            .filter(|r| r.members.contains(&member))
        else {
            out.push((
                member,
                Arc::new(error(
                    ErrorCode::NotInRoom,
                    format!("you are not in {room}"),
                )),
            ));
            return;
        };
        let shared = Arc::new(ServerMessage::Message {
            room: r.name.clone(),
            from: nick,
            kind,
            history: false,
            text,
        });
        if r.history.len() >= self.limits.history_len {
            r.history.pop_front();
        }
        if self.limits.history_len > 0 {
            r.history.push_back(Arc::clone(&shared));
        }
        // Every member, the sender too (its copy confirms the message was relayed). One
        // `extend` of a known length: a `push` per member, or leaving out the sender here,
        // measured 15-20% slower for the whole relay of a guest's line (criterion guest fan-out).
        out.extend(r.members.iter().map(|&m| (m, Arc::clone(&shared))));
    }

    fn private(&mut self, member: MemberId, to: &str, text: String, out: &mut Outbox) {
        let from = self
            .members
            .get(&member)
            .map(|m| m.nick.clone())
            .unwrap_or_default();
        let Some(target) = self.member_by_nick(to) else {
            out.push((
                member,
                Arc::new(error(ErrorCode::NoSuchNick, format!("no such nick: {to}"))),
            ));
            return;
        };
        let to = self
            .members
            .get(&target)
            .map(|m| m.nick.clone())
            .unwrap_or_else(|| to.to_owned());
        let msg = ServerMessage::Private { from, to, text };
        out.push((target, Arc::new(msg.clone())));
        if target != member {
            out.push((member, Arc::new(msg)));
        }
    }

    fn topic(&mut self, member: MemberId, room: &str, topic: Option<String>, out: &mut Outbox) {
        let k = key(room);
        let nick = self
            .members
            .get(&member)
            .map(|m| m.nick.clone())
            .unwrap_or_default();
        let Some(r) = self.rooms.get_mut(&*k) else {
            out.push((
                member,
                Arc::new(error(ErrorCode::NotInRoom, format!("no room {room}"))),
            ));
            return;
        };
        match topic {
            None => out.push((
                member,
                Arc::new(ServerMessage::Topic {
                    room: r.name.clone(),
                    topic: r.topic.clone(),
                    set_by: r.topic_by.clone(),
                }),
            )),
            Some(_) if !r.members.contains(&member) => {
                out.push((
                    member,
                    Arc::new(error(
                        ErrorCode::NotInRoom,
                        format!("you are not in {room}"),
                    )),
                ));
            }
            Some(topic) => {
                r.topic = topic;
                r.topic_by = nick;
                let shared = Arc::new(ServerMessage::Topic {
                    room: r.name.clone(),
                    topic: r.topic.clone(),
                    set_by: r.topic_by.clone(),
                });
                for &m in &r.members {
                    out.push((m, Arc::clone(&shared)));
                }
            }
        }
    }

    fn names(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(&*key(room))
            .map(|r| {
                r.members
                    .iter()
                    .filter_map(|m| self.members.get(m).map(|m| m.nick.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The room's name as first written, or `room` if it does not exist.
    fn display(&self, room: &str) -> String {
        self.rooms
            .get(&*key(room))
            .map_or_else(|| room.to_owned(), |r| r.name.clone())
    }

    /// Everyone who shares a room with `member`, once each, excluding `member`... and including
    /// it, so that it sees its own nick change.
    fn peers_of(&self, member: MemberId) -> BTreeSet<MemberId> {
        let mut peers = BTreeSet::new();
        peers.insert(member);
        for k in self.members.get(&member).into_iter().flat_map(|m| &m.rooms) {
            if let Some(r) = self.rooms.get(k) {
                peers.extend(r.members.iter().copied());
            }
        }
        peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty chat with the default limits.
    fn chat() -> Chat {
        Chat::new(ChatLimits::default(), &mut crate::rng::SplitMix64::new(1))
    }

    /// The outbox with its messages unshared, to compare and match.
    fn plain(out: Outbox) -> Vec<(MemberId, ServerMessage)> {
        out.into_iter()
            .map(|(to, message)| (to, Arc::unwrap_or_clone(message)))
            .collect()
    }

    fn m(n: u64) -> MemberId {
        MemberId::Connection(ConnectionId(n))
    }

    fn nick(chat: &mut Chat, who: MemberId, name: &str) {
        let out = plain(chat.apply(who, ClientMessage::Nick { nick: name.into() }));
        assert_eq!(
            out,
            vec![(who, ServerMessage::NickSet { nick: name.into() })]
        );
    }

    fn say(room: &str, text: &str) -> ClientMessage {
        ClientMessage::Say {
            room: room.into(),
            text: text.into(),
        }
    }

    #[test]
    fn names_are_validated() {
        for ok in ["ada", "Ada_Lovelace", "x", "a-b", "[bot]", "élan"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "9lives",
            "-x",
            "a b",
            "a\u{1b}b",
            "a:b",
            &"x".repeat(33),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn nicks_are_unique_case_insensitively_and_guest_prefix_is_reserved() {
        let mut chat = chat();
        nick(&mut chat, m(1), "Ada");
        let out = plain(chat.apply(m(2), ClientMessage::Nick { nick: "ada".into() }));
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::NickTaken,
                    ..
                }
            )]
        ));
        let out = plain(chat.apply(
            m(2),
            ClientMessage::Nick {
                nick: "guest-1".into(),
            },
        ));
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::InvalidName,
                    ..
                }
            )]
        ));
        // Nothing but /nick before a nick.
        let out = plain(chat.apply(
            m(2),
            ClientMessage::Join {
                room: "lobby".into(),
            },
        ));
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::NoNick,
                    ..
                }
            )]
        ));
    }

    #[test]
    fn joining_tells_everyone_and_replays_history_to_the_joiner_only() {
        let mut chat = chat();
        nick(&mut chat, m(1), "ada");
        plain(chat.apply(
            m(1),
            ClientMessage::Join {
                room: "lobby".into(),
            },
        ));
        plain(chat.apply(m(1), say("lobby", "first")));
        nick(&mut chat, m(2), "bob");
        let out = plain(chat.apply(
            m(2),
            ClientMessage::Join {
                room: "lobby".into(),
            },
        ));
        assert_eq!(
            out,
            vec![
                (
                    m(1),
                    ServerMessage::Joined {
                        room: "lobby".into(),
                        nick: "bob".into()
                    }
                ),
                (
                    m(2),
                    ServerMessage::Joined {
                        room: "lobby".into(),
                        nick: "bob".into()
                    }
                ),
                (
                    m(2),
                    ServerMessage::Names {
                        room: "lobby".into(),
                        nicks: vec!["ada".into(), "bob".into()]
                    }
                ),
                (
                    m(2),
                    ServerMessage::Message {
                        room: "lobby".into(),
                        from: "ada".into(),
                        kind: MessageKind::Say,
                        history: true,
                        text: "first".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn history_keeps_the_last_n() {
        let mut chat = Chat::new(
            ChatLimits {
                history_len: 3,
                ..ChatLimits::default()
            },
            &mut crate::rng::SplitMix64::new(1),
        );
        nick(&mut chat, m(1), "ada");
        plain(chat.apply(m(1), ClientMessage::Join { room: "r".into() }));
        for i in 0..10 {
            plain(chat.apply(m(1), say("r", &i.to_string())));
        }
        nick(&mut chat, m(2), "bob");
        let out = plain(chat.apply(m(2), ClientMessage::Join { room: "r".into() }));
        let replayed: Vec<String> = out
            .into_iter()
            .filter_map(|(_, msg)| match msg {
                ServerMessage::Message {
                    text,
                    history: true,
                    ..
                } => Some(text),
                _ => None,
            })
            .collect();
        assert_eq!(replayed, ["7", "8", "9"]);
    }

    #[test]
    fn rooms_are_isolated_and_speaking_needs_membership() {
        let mut chat = chat();
        nick(&mut chat, m(1), "ada");
        nick(&mut chat, m(2), "bob");
        plain(chat.apply(m(1), ClientMessage::Join { room: "a".into() }));
        plain(chat.apply(m(2), ClientMessage::Join { room: "b".into() }));
        let out = plain(chat.apply(m(1), say("a", "only a")));
        assert!(out.iter().all(|(to, _)| *to == m(1)));
        let out = plain(chat.apply(m(1), say("b", "not a member")));
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::NotInRoom,
                    ..
                }
            )]
        ));
    }

    #[test]
    fn private_messages_reach_the_target_and_echo_to_the_sender() {
        let mut chat = chat();
        nick(&mut chat, m(1), "ada");
        nick(&mut chat, m(2), "Bob");
        let out = plain(chat.apply(
            m(1),
            ClientMessage::Private {
                to: "bob".into(),
                text: "psst".into(),
            },
        ));
        let msg = ServerMessage::Private {
            from: "ada".into(),
            to: "Bob".into(),
            text: "psst".into(),
        };
        assert_eq!(out, vec![(m(2), msg.clone()), (m(1), msg)]);
        let out = plain(chat.apply(
            m(1),
            ClientMessage::Private {
                to: "carol".into(),
                text: "?".into(),
            },
        ));
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::NoSuchNick,
                    ..
                }
            )]
        ));
    }

    #[test]
    fn removal_tells_the_rooms_and_frees_the_nick() {
        let mut chat = chat();
        nick(&mut chat, m(1), "ada");
        nick(&mut chat, m(2), "bob");
        plain(chat.apply(m(1), ClientMessage::Join { room: "r".into() }));
        plain(chat.apply(m(2), ClientMessage::Join { room: "r".into() }));
        let out = plain(chat.remove(m(1), "timeout"));
        assert_eq!(
            out,
            vec![(
                m(2),
                ServerMessage::Left {
                    room: "r".into(),
                    nick: "ada".into(),
                    reason: "timeout".into()
                }
            )]
        );
        assert!(chat.is_nick_free("ada"));
        nick(&mut chat, m(3), "ada");
    }

    #[test]
    fn nick_changes_are_seen_by_room_peers() {
        let mut chat = chat();
        nick(&mut chat, m(1), "ada");
        nick(&mut chat, m(2), "bob");
        plain(chat.apply(m(1), ClientMessage::Join { room: "r".into() }));
        plain(chat.apply(m(2), ClientMessage::Join { room: "r".into() }));
        let out = plain(chat.apply(
            m(1),
            ClientMessage::Nick {
                nick: "ada2".into(),
            },
        ));
        let changed = ServerMessage::NickChanged {
            old: "ada".into(),
            new: "ada2".into(),
        };
        assert!(out.contains(&(m(2), changed.clone())));
        assert!(out.contains(&(m(1), changed)));
        assert!(chat.is_nick_free("ada"));
    }

    #[test]
    fn topics_are_set_by_members_and_shown_to_joiners() {
        let mut chat = chat();
        nick(&mut chat, m(1), "ada");
        plain(chat.apply(m(1), ClientMessage::Join { room: "r".into() }));
        plain(chat.apply(
            m(1),
            ClientMessage::Topic {
                room: "r".into(),
                topic: Some("rust".into()),
            },
        ));
        nick(&mut chat, m(2), "bob");
        let out = plain(chat.apply(m(2), ClientMessage::Join { room: "r".into() }));
        assert!(out.contains(&(
            m(2),
            ServerMessage::Topic {
                room: "r".into(),
                topic: "rust".into(),
                set_by: "ada".into()
            }
        )));
    }

    #[test]
    fn limits_hold() {
        let limits = ChatLimits {
            max_rooms: 2,
            max_members_per_room: 1,
            max_rooms_per_member: 2,
            history_len: 1,
        };
        let mut chat = Chat::new(limits, &mut crate::rng::SplitMix64::new(1));
        nick(&mut chat, m(1), "ada");
        nick(&mut chat, m(2), "bob");
        plain(chat.apply(m(1), ClientMessage::Join { room: "a".into() }));
        let out = plain(chat.apply(m(2), ClientMessage::Join { room: "a".into() }));
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::Full,
                    ..
                }
            )]
        ));
        plain(chat.apply(m(1), ClientMessage::Join { room: "b".into() }));
        let out = plain(chat.apply(m(2), ClientMessage::Join { room: "c".into() }));
        assert!(matches!(
            &out[..],
            [(
                _,
                ServerMessage::Error {
                    code: ErrorCode::Full,
                    ..
                }
            )]
        ));
        assert_eq!(chat.room_count(), 2);
    }

    #[test]
    fn nicks_that_look_the_same_cannot_both_be_had() {
        let mut chat = chat();
        nick(&mut chat, m(1), "ada");
        nick(&mut chat, m(2), "élan");
        nick(&mut chat, m(3), "Иван");
        // Cyrillic "а" (U+0430) among Latin letters: refused outright (mixed scripts).
        let mixed = plain(chat.apply(
            m(4),
            ClientMessage::Nick {
                nick: "\u{430}da".into(),
            },
        ));
        assert!(
            matches!(
                &mixed[..],
                [(
                    _,
                    ServerMessage::Error {
                        code: ErrorCode::InvalidName,
                        ..
                    }
                )]
            ),
            "{mixed:?}"
        );
        // All Cyrillic, looking like a Latin nick that is taken; a digit for a letter; a
        // capital I for an l: all "taken".
        nick(&mut chat, m(5), "paypal");
        for lookalike in [
            "\u{430}\u{441}\u{435}",
            "pay\u{440}al",
            "paypaI",
            "paypa1",
            "РАУРАL",
        ] {
            nick(&mut chat, m(6), "ace");
            let out = plain(chat.apply(
                m(7),
                ClientMessage::Nick {
                    nick: lookalike.into(),
                },
            ));
            let expected_code = if lookalike.is_ascii() || is_valid_nick(lookalike) {
                ErrorCode::NickTaken
            } else {
                ErrorCode::InvalidName
            };
            assert!(
                matches!(
                    &out[..],
                    [(_, ServerMessage::Error { code, .. })] if *code == expected_code
                ),
                "{lookalike}: {out:?}"
            );
        }
        // Private messages find the owner whatever look-alike spelling is used.
        assert_eq!(chat.member_by_nick("ADA"), Some(m(1)));
        assert!(is_valid_nick("élan") && is_valid_nick("Иван") && !is_valid_nick("\u{430}da"));
    }

    #[test]
    fn a_room_too_big_for_one_names_message_is_listed_in_several_that_all_decode() {
        use crate::reliable::connection::MAX_MESSAGE;
        let mut chat = chat();
        let members = 2100u64;
        for n in 1..=members {
            // 32-byte nicks: 2100 of them are some 69 KB, over what one message may be.
            nick(&mut chat, m(n), &format!("n{n:0>31}"));
            plain(chat.apply(m(n), ClientMessage::Join { room: "big".into() }));
        }
        let out = plain(chat.apply(m(1), ClientMessage::Who { room: "big".into() }));
        let mut listed = 0;
        for (_, message) in &out {
            let bytes = message.to_bytes();
            assert!(bytes.len() <= MAX_MESSAGE, "{} bytes", bytes.len());
            match ServerMessage::decode(&bytes) {
                Ok(ServerMessage::Names { nicks, .. }) => listed += nicks.len(),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(listed as u64, members);
        assert!(out.len() > 1);
    }
}
