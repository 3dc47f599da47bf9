//! The JSON-lines door: a line in becomes a core command (or the door's own
//! answer), an event out becomes one JSON line.
//!
//! Everything here is the protocol of `../shared/spec/protocol.md` and
//! nothing else; what the messages do is the core's business.

use std::borrow::Cow;

use super::core::Command;
use super::event::Event;
use crate::wire::{self, ClientMsg, HistoryEntry, Member, RoomEntry, ServerMsg, WhoEntry};

/// The protocol version this server speaks (`welcome`'s `protocol`).
pub const PROTOCOL: u64 = 2;

/// What one line asks for.
pub enum Line<'a> {
    /// A blank line: nothing.
    Blank,
    /// A command for the core.
    Command(Command<'a>),
    /// A `ping`: the door answers it with this `pong`, in its place in the
    /// connection's output.
    Pong(ServerMsg<'a>),
    /// Not a message: the `error` to answer with.
    Refused(wire::Refusal),
}

/// Parses a line, then hands `f` what it asks for (the command borrows the
/// parsed message, so it is lent rather than returned).
pub fn with_line<R>(line: &[u8], f: impl FnOnce(Line<'_>) -> R) -> R {
    match wire::parse_client_line(line) {
        Ok(None) => f(Line::Blank),
        Err(refusal) => f(Line::Refused(refusal)),
        Ok(Some(ClientMsg::Ping { token })) => f(Line::Pong(ServerMsg::Pong { token })),
        Ok(Some(msg)) => match Command::from_client(&msg) {
            Some(cmd) => f(Line::Command(cmd)),
            None => f(Line::Blank),
        },
    }
}

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

/// Appends `event` as one protocol line.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::Welcome {
            id,
            nick,
            text,
            users,
            room,
            login_required,
        } => ServerMsg::Welcome {
            id: *id,
            nick: b(nick.as_str()),
            text: b(text),
            users: *users,
            protocol: PROTOCOL,
            room: Some(b(room.as_str())),
            login: login_required.then(|| b("required")),
        }
        .encode(out),
        Event::Join { id, nick, room, ts } => ServerMsg::Join {
            id: *id,
            nick: b(nick.as_str()),
            ts: *ts,
            room: Some(b(room.as_str())),
        }
        .encode(out),
        Event::Leave {
            id,
            nick,
            reason,
            text,
            room,
            ts,
        } => ServerMsg::Leave {
            id: *id,
            nick: b(nick.as_str()),
            reason: *reason,
            ts: *ts,
            text: text.as_deref().map(b),
            room: room.as_ref().map(|r| b(r.as_str())),
        }
        .encode(out),
        Event::Nick { id, old, new, ts } => ServerMsg::Nick {
            id: *id,
            old: b(old.as_str()),
            new: b(new.as_str()),
            ts: *ts,
        }
        .encode(out),
        Event::Group {
            room,
            seq,
            from,
            text,
            ts,
            action,
        } => ServerMsg::Group {
            from: b(from.as_str()),
            text: b(text),
            ts: *ts,
            room: Some(b(room.as_str())),
            seq: *seq,
            action: *action,
        }
        .encode(out),
        Event::Private {
            from,
            to,
            text,
            ts,
            action,
        } => ServerMsg::Private {
            from: b(from.as_str()),
            to: b(to.as_str()),
            text: b(text),
            ts: *ts,
            action: *action,
        }
        .encode(out),
        Event::Who { room, users } => ServerMsg::Who {
            users: users
                .iter()
                .map(|(id, nick, since)| WhoEntry {
                    id: *id,
                    nick: b(nick.as_str()),
                    since: *since,
                })
                .collect(),
            room: room.as_ref().map(|r| b(r.as_str())),
        }
        .encode(out),
        Event::Joined { room, topic, users } => ServerMsg::Joined {
            room: b(room.as_str()),
            topic: topic.as_deref().map(b),
            users: users
                .iter()
                .map(|(id, nick)| Member {
                    id: *id,
                    nick: b(nick.as_str()),
                })
                .collect(),
        }
        .encode(out),
        Event::Parted { room, .. } => ServerMsg::Parted {
            room: b(room.as_str()),
        }
        .encode(out),
        Event::Topic { room, by, text, ts } => ServerMsg::Topic {
            room: b(room.as_str()),
            by: b(by.as_str()),
            text: b(text),
            ts: *ts,
        }
        .encode(out),
        Event::Rooms { rooms } => ServerMsg::Rooms {
            rooms: rooms
                .iter()
                .map(|(name, users, topic)| RoomEntry {
                    name: b(name.as_str()),
                    users: *users,
                    topic: topic.as_deref().map(b),
                })
                .collect(),
        }
        .encode(out),
        Event::History {
            room,
            messages,
            more,
        } => ServerMsg::History {
            room: b(room.as_str()),
            messages: messages
                .iter()
                .map(|m| HistoryEntry {
                    seq: m.seq,
                    from: b(&m.from),
                    text: b(&m.text),
                    ts: m.ts,
                    action: m.action,
                })
                .collect(),
            more: *more,
        }
        .encode(out),
        Event::Bye { reason } => ServerMsg::Bye { reason: *reason }.encode(out),
        Event::Registered { account } => ServerMsg::Registered {
            account: b(account.as_str()),
        }
        .encode(out),
        Event::LoggedIn { account } => ServerMsg::LoggedIn {
            account: b(account.as_str()),
        }
        .encode(out),
        Event::LoggedOut => ServerMsg::LoggedOut.encode(out),
        Event::Error { code, message } => ServerMsg::Error {
            code: *code,
            message: b(message),
        }
        .encode(out),
    }
}
