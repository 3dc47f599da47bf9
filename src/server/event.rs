//! What the core says happened, and to whom: the server's event stream.
//!
//! The core ([`super::core`]) turns commands into [`Emit`]s. Each one is
//! an [`Event`] in no protocol's words and the [`To`] that receives it.
//! Everything downstream reads this one stream: the doors encode each event
//! once per protocol for its receivers ([`super::deliver`]), the connection
//! log records renames from it, and a history store or a cluster backplane
//! can take the room events (`Join`, `Leave`, `Nick`, `Group`, `Topic`)
//! from the same place.

use std::rc::Rc;

use super::name::Name;
use super::store::Stored;
use super::table::Key;
use crate::wire::{ByeReason, ErrorCode, LeaveReason};

/// A room's place in the core's room table; valid while the room has
/// members (a room is dropped when its last member leaves).
pub type RoomId = usize;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The first thing a connection hears.
    Welcome {
        id: u64,
        nick: Name,
        text: Rc<str>,
        users: u64,
        room: Name,
        /// The server lets nobody in without `login`.
        login_required: bool,
    },
    /// Someone joined `room` (on connect: the default room).
    Join {
        id: u64,
        nick: Name,
        room: Name,
        ts: u64,
    },
    /// Someone parted `room` (`Some`, reason `Part`) or left the server.
    Leave {
        id: u64,
        nick: Name,
        reason: LeaveReason,
        text: Option<Box<str>>,
        room: Option<Name>,
        ts: u64,
    },
    Nick {
        id: u64,
        old: Name,
        new: Name,
        ts: u64,
    },
    Group {
        room: Name,
        seq: u64,
        from: Name,
        text: Box<str>,
        ts: u64,
        action: bool,
    },
    Private {
        from: Name,
        to: Name,
        text: Box<str>,
        ts: u64,
        action: bool,
    },
    /// The users online, or the members of `room`: (id, nick, since).
    Who {
        room: Option<Name>,
        users: Vec<(u64, Name, u64)>,
    },
    /// The answer to a join: the room, its topic, its members (id, nick).
    Joined {
        room: Name,
        topic: Option<Rc<str>>,
        users: Vec<(u64, Name)>,
    },
    Parted {
        room: Name,
        /// The parter's reason, echoed to them by the IRC door as to everyone else.
        text: Option<Box<str>>,
    },
    Topic {
        room: Name,
        by: Name,
        text: Rc<str>,
        ts: u64,
    },
    /// Rooms with members: (name, member count, topic).
    Rooms {
        rooms: Vec<(Name, u64, Option<Rc<str>>)>,
    },
    /// The answer to `history`: stored messages, oldest first.
    History {
        room: Name,
        messages: Vec<Stored>,
        more: bool,
    },
    Bye {
        reason: ByeReason,
    },
    /// The answer to `register`: this is now an account.
    Registered {
        account: Name,
    },
    /// The answer to `login`.
    LoggedIn {
        account: Name,
    },
    LoggedOut,
    Error {
        code: ErrorCode,
        message: Box<str>,
    },
}

impl Event {
    /// Comings and goings: what a big room may receive a little late and
    /// in batches (see `deliver`), never out of order.
    pub fn is_presence(&self) -> bool {
        matches!(
            self,
            Event::Join { .. } | Event::Leave { .. } | Event::Nick { .. }
        )
    }

    /// Whether it goes to everyone concerned (encoded apart from answers to
    /// one, so that one user's answers do not break the others' runs).
    pub fn is_broadcast(&self) -> bool {
        matches!(
            self,
            Event::Join { .. }
                | Event::Leave { .. }
                | Event::Nick { .. }
                | Event::Group { .. }
                | Event::Topic { .. }
        )
    }
}

/// Who receives an event.
#[derive(Clone, Debug, PartialEq)]
pub enum To {
    One(Key),
    /// Every member of a room but `except`. Resolved when delivered, which
    /// is right after the command that emitted it: the core emits this
    /// only once the room's membership is final for that command.
    Room {
        room: RoomId,
        except: Option<Key>,
    },
    /// A set resolved when emitted (everyone who shared a room with
    /// someone who is leaving them all, say), each key once.
    Keys(Vec<Key>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Emit {
    pub event: Event,
    pub to: To,
    /// A receiver that hears it at once even when it is batched for the
    /// others: the user whose own rename it is waits for the answer.
    pub asker: Option<Key>,
}
