//! The core: who is connected, under which name, in which rooms, and who
//! hears what.
//!
//! It speaks no protocol and touches no socket. A door's codec hands it a
//! [`Command`] already parsed; it changes its state and emits
//! [`Emit`]s (an event and its receivers) for the edge to encode and
//! queue, once per protocol. Every routing rule of the protocol lives here
//! and is tested here, without a network (see the tests at the bottom).
//!
//! The core owns the connection table. Each record holds the user (this
//! module's business) beside `C`, the door's connection state, which the
//! core stores but never looks into: one table, one key per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use slab::Slab;

use super::event::{Emit, Event, RoomId, To};
use super::name::Name;
use super::nicks::NickIndex;
use super::store::Stored;
use super::table::{Key, Table};
use crate::wire::{self, ByeReason, ErrorCode, LeaveReason, Refusal};

/// The longest topic, in bytes: a line of text, not a document (IRC's
/// `TOPICLEN` is about as long).
pub const MAX_TOPIC: usize = 512;

/// What a connection asks of the core, whatever door it came through.
#[derive(Debug, PartialEq)]
pub enum Command<'a> {
    /// To a room: the default room when `room` is `None`.
    Say {
        room: Option<&'a str>,
        text: &'a str,
        action: bool,
    },
    Private {
        to: &'a str,
        text: &'a str,
        action: bool,
    },
    Nick {
        nick: &'a str,
    },
    Who {
        room: Option<&'a str>,
    },
    Join {
        room: &'a str,
    },
    Part {
        room: &'a str,
        text: Option<&'a str>,
    },
    Topic {
        room: &'a str,
        text: &'a str,
    },
    Rooms,
    /// A page of a room's stored messages: answered off the loop, from the
    /// store (see [`Core::take_asks`]).
    History {
        room: &'a str,
        from: wire::Page,
        limit: usize,
    },
    Quit {
        text: Option<&'a str>,
    },
}

/// A `history` request waiting for the store's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    pub key: Key,
    pub room: Name,
    pub from: wire::Page,
    pub limit: usize,
}

impl<'a> Command<'a> {
    /// The command a JSON-lines message asks for; `None` for `ping`, which
    /// its door answers itself.
    pub fn from_client(msg: &'a wire::ClientMsg<'a>) -> Option<Command<'a>> {
        use wire::ClientMsg as M;
        Some(match msg {
            M::Group { room, text, action } => Command::Say {
                room: room.as_deref(),
                text,
                action: *action,
            },
            M::Private { to, text, action } => Command::Private {
                to,
                text,
                action: *action,
            },
            M::Nick { nick } => Command::Nick { nick },
            M::Who { room } => Command::Who {
                room: room.as_deref(),
            },
            M::Join { room } => Command::Join { room },
            M::Part { room, text } => Command::Part {
                room,
                text: text.as_deref(),
            },
            M::Topic { room, text } => Command::Topic { room, text },
            M::Rooms => Command::Rooms,
            M::History { room, from, limit } => Command::History {
                room,
                from: *from,
                limit: *limit,
            },
            M::Quit { text } => Command::Quit {
                text: text.as_deref(),
            },
            M::Ping { .. } | M::Register { .. } | M::Login { .. } | M::Logout => return None,
        })
    }
}

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// A user: named, listed by `who`, in rooms, receiving messages.
    Here,
    /// Left (quit, disconnected, too slow, or the server is stopping);
    /// the others were told. The record stays until the edge has written
    /// what is queued and closed the socket.
    Gone(Departure),
}

/// Why a connection ended, for the `leave` others get and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    Left(LeaveReason),
    Shutdown,
}

impl Departure {
    pub fn as_str(self) -> &'static str {
        match self {
            Departure::Left(reason) => reason.as_str(),
            Departure::Shutdown => "shutdown",
        }
    }
}

/// Where a connection came from and how: what decides whether a password
/// may cross it (`insecure_transport`) and whose failed logins it counts
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// It came in by a TLS listener.
    pub tls: bool,
}

impl Peer {
    /// A plaintext connection from `addr`.
    pub fn plain(addr: SocketAddr) -> Peer {
        Peer { addr, tls: false }
    }
}

/// What the core keeps of every connection.
#[derive(Debug)]
pub struct User {
    pub id: u64,
    pub nick: Name,
    pub peer: Peer,
    /// Connect time, milliseconds since the epoch (`who`'s `since`).
    pub since_ms: u64,
    /// Lines received, refused ones included.
    pub msgs_in: u64,
    pub presence: Presence,
    /// The rooms it is in, in the order joined.
    rooms: RoomSet,
    /// The last visit number that counted it (see `Core::sharing`).
    visit: u32,
}

impl User {
    pub fn is_here(&self) -> bool {
        self.presence == Presence::Here
    }
}

/// The rooms one user is in. Most users are in one room or a few, and an
/// idle connection should cost little: the first room is kept inline, the
/// others in a list allocated only for them (boxed: 8 bytes in every
/// record rather than 24).
#[derive(Debug, Default)]
struct RoomSet {
    /// `NONE` when the user is in no room.
    first: u32,
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<u32>>>,
}

impl RoomSet {
    const NONE: u32 = u32::MAX;

    fn new() -> RoomSet {
        RoomSet {
            first: RoomSet::NONE,
            rest: None,
        }
    }

    fn rest(&self) -> &[u32] {
        self.rest.as_deref().map_or(&[], Vec::as_slice)
    }

    fn len(&self) -> usize {
        usize::from(self.first != RoomSet::NONE) + self.rest().len()
    }

    fn contains(&self, room: &RoomId) -> bool {
        self.iter().any(|r| r == *room)
    }

    fn iter(&self) -> impl Iterator<Item = RoomId> + '_ {
        std::iter::once(self.first)
            .filter(|&r| r != RoomSet::NONE)
            .chain(self.rest().iter().copied())
            .map(|r| r as RoomId)
    }

    fn to_vec(&self) -> Vec<RoomId> {
        self.iter().collect()
    }

    fn push(&mut self, room: RoomId) {
        // Room ids are slab indices: far below four billion.
        let room = room as u32;
        if self.first == RoomSet::NONE {
            self.first = room;
        } else {
            self.rest.get_or_insert_default().push(room);
        }
    }

    fn remove(&mut self, room: RoomId) {
        let room = room as u32;
        if self.first == room {
            self.first = match self.rest.as_mut() {
                Some(rest) if !rest.is_empty() => rest.remove(0),
                _ => RoomSet::NONE,
            };
        } else if let Some(rest) = self.rest.as_mut() {
            rest.retain(|&r| r != room);
        }
        if self.rest.as_ref().is_some_and(|r| r.is_empty()) {
            self.rest = None;
        }
    }

    fn take(&mut self) -> Vec<RoomId> {
        let rooms = self.to_vec();
        *self = RoomSet::new();
        rooms
    }
}

/// The folded nickname `key` is indexed under in [`NickIndex`].
fn indexed_name<C>(table: &Table<Record<C>>, key: Key) -> Option<Name> {
    table.get(key).map(|r| r.user.nick.key())
}

/// The door's part first: a delivery touches only that (see `Conn`).
#[repr(C)]
struct Record<C> {
    conn: C,
    user: User,
}

struct Room {
    name: Name,
    /// In order of joining.
    members: Vec<Key>,
}

/// What the edge should do with a connection after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The user quit: stop reading, write what is queued, close.
    Close,
}

/// The settings the core needs.
#[derive(Clone)]
pub struct Config {
    pub welcome: String,
    /// Folded, valid: checked by the command line.
    pub default_room: String,
    /// Rooms a user may be in at once, the default room included.
    pub max_rooms: usize,
}

pub struct Core<C> {
    table: Table<Record<C>>,
    /// Folded nickname to its owner, for everyone here: its size is the
    /// number of users present.
    nicks: NickIndex,
    rooms: Slab<Room>,
    /// Folded room name to its place, for rooms with members.
    room_ids: HashMap<Name, RoomId>,
    /// Topics outlive their rooms: a room joined again has its topic back.
    topics: HashMap<Name, Rc<str>>,
    next_id: u64,
    /// The last `seq` given to a group message.
    seq: u64,
    visit: u32,
    welcome: Rc<str>,
    default_room: Name,
    max_rooms: usize,
    emitted: Vec<Emit>,
    asks: Vec<Ask>,
}

impl<C> Core<C> {
    pub fn new(config: Config) -> Core<C> {
        let default_room = Name::new(&config.default_room).unwrap_or(Name::EMPTY);
        Core {
            table: Table::default(),
            nicks: NickIndex::default(),
            rooms: Slab::new(),
            room_ids: HashMap::new(),
            topics: HashMap::new(),
            next_id: 1,
            seq: 0,
            visit: 0,
            welcome: config.welcome.into(),
            default_room: default_room.key(),
            max_rooms: config.max_rooms.max(1),
            emitted: Vec::new(),
            asks: Vec::new(),
        }
    }

    /// What the store remembers from before a restart: `seq` goes on from
    /// the last one stored, and rooms have their topics back.
    pub fn restore(&mut self, last_seq: u64, topics: impl IntoIterator<Item = (String, String)>) {
        self.seq = self.seq.max(last_seq);
        for (room, text) in topics {
            if let (Some(name), false) = (Name::new(&room), text.is_empty()) {
                self.topics.insert(name.key(), text.into());
            }
        }
    }

    /// The `history` requests made since the last call, in order; the
    /// edge answers each with [`Core::answer_history`].
    pub fn take_asks(&mut self, into: &mut Vec<Ask>) {
        into.clear();
        std::mem::swap(into, &mut self.asks);
    }

    pub fn has_asks(&self) -> bool {
        !self.asks.is_empty()
    }

    /// The store's answer to an [`Ask`], queued after everything `key` was
    /// sent before it.
    pub fn answer_history(&mut self, ask: &Ask, messages: Vec<Stored>, more: bool) {
        self.emit(
            Event::History {
                room: ask.room,
                messages,
                more,
            },
            To::One(ask.key),
        );
    }

    /// Users present (the `users` of `welcome`).
    pub fn here(&self) -> usize {
        self.nicks.len()
    }

    /// Connections in the table, present or on their way out.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn user(&self, key: Key) -> Option<&User> {
        self.table.get(key).map(|r| &r.user)
    }

    pub fn conn(&self, key: Key) -> Option<&C> {
        self.table.get(key).map(|r| &r.conn)
    }

    pub fn conn_mut(&mut self, key: Key) -> Option<&mut C> {
        self.table.get_mut(key).map(|r| &mut r.conn)
    }

    pub fn keys(&self) -> Vec<Key> {
        self.table.keys()
    }

    /// The events emitted since the last call, in order.
    pub fn take_emitted(&mut self, into: &mut Vec<Emit>) {
        into.clear();
        std::mem::swap(into, &mut self.emitted);
    }

    /// Calls `f` for each receiver of `to` that is still in the table.
    pub fn for_each_receiver(&mut self, to: &To, mut f: impl FnMut(Key, &mut C)) {
        match to {
            To::One(key) => {
                if let Some(r) = self.table.get_mut(*key) {
                    f(*key, &mut r.conn);
                }
            }
            To::Room { room, except } => {
                let Some(room) = self.rooms.get(*room) else {
                    return;
                };
                for &key in &room.members {
                    if Some(key) != *except
                        && let Some(r) = self.table.get_mut(key)
                    {
                        f(key, &mut r.conn);
                    }
                }
            }
            To::Keys(keys) => {
                // Resolved when emitted: someone on the list may have left
                // since (two slow readers dropped in one pass), and is told
                // nothing more.
                for &key in keys {
                    if let Some(r) = self.table.get_mut(key)
                        && r.user.is_here()
                    {
                        f(key, &mut r.conn);
                    }
                }
            }
        }
    }

    /// How many receive `to` (an upper bound for `To::Room`).
    pub fn reach(&self, to: &To) -> usize {
        match to {
            To::One(_) => 1,
            To::Room { room, .. } => self.rooms.get(*room).map_or(0, |r| r.members.len()),
            To::Keys(keys) => keys.len(),
        }
    }

    /// A new connection: it is welcomed, put in the default room, and the
    /// room's members hear `join`.
    pub fn connect(&mut self, peer: Peer, now_ms: u64, conn: C) -> Key {
        let id = self.next_id;
        self.next_id += 1;
        let nick = Name::new(&format!("guest{id}")).unwrap_or(Name::EMPTY);
        let key = self.table.insert(Record {
            user: User {
                id,
                nick,
                peer,
                since_ms: now_ms,
                msgs_in: 0,
                presence: Presence::Here,
                rooms: RoomSet::new(),
                visit: 0,
            },
            conn,
        });
        let table = &self.table;
        self.nicks
            .insert(nick.key(), key, |k| indexed_name(table, k));
        self.emit(
            Event::Welcome {
                id,
                nick,
                text: Rc::clone(&self.welcome),
                users: self.nicks.len() as u64,
                room: self.default_room,
            },
            To::One(key),
        );
        let room = self.enter(key, self.default_room);
        self.emit(
            Event::Join {
                id,
                nick,
                room: self.default_room,
                ts: now_ms,
            },
            To::Room {
                room,
                except: Some(key),
            },
        );
        key
    }

    /// Acts on one command from `key`.
    pub fn handle(&mut self, key: Key, cmd: Command<'_>, now_ms: u64) -> Flow {
        self.count_in(key);
        if !self.user(key).is_some_and(User::is_here) {
            return Flow::Continue;
        }
        match cmd {
            Command::Say { room, text, action } => self.say(key, room, text, action, now_ms),
            Command::Private { to, text, action } => self.private(key, to, text, action, now_ms),
            Command::Nick { nick } => self.rename(key, nick, now_ms),
            Command::Who { room } => self.who(key, room),
            Command::Join { room } => self.join(key, room, now_ms),
            Command::Part { room, text } => self.part(key, room, text, now_ms),
            Command::Topic { room, text } => self.topic(key, room, text, now_ms),
            Command::Rooms => self.list_rooms(key),
            Command::History { room, from, limit } => match room_name(room) {
                Ok(room) => self.asks.push(Ask {
                    key,
                    room,
                    from,
                    limit,
                }),
                Err(refusal) => self.refuse(key, refusal.code, &refusal.message),
            },
            Command::Quit { text } => {
                self.emit(
                    Event::Bye {
                        reason: ByeReason::Quit,
                    },
                    To::One(key),
                );
                self.depart(key, LeaveReason::Quit, text, now_ms);
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// A line the door could not turn into a command: it counts as a line
    /// received, and its sender hears why.
    pub fn refuse_line(&mut self, key: Key, refusal: &Refusal) {
        self.count_in(key);
        self.refuse(key, refusal.code, &refusal.message);
    }

    /// Counts a line the door answered itself (`ping`).
    pub fn count_in(&mut self, key: Key) {
        if let Some(r) = self.table.get_mut(key) {
            r.user.msgs_in += 1;
        }
    }

    /// The user leaves the server (quit, closed, reset, too slow):
    /// everyone who shared a room hears `leave` once. Does nothing for
    /// someone already gone.
    pub fn depart(&mut self, key: Key, reason: LeaveReason, text: Option<&str>, now_ms: u64) {
        let Some(user) = self.table.get(key).map(|r| &r.user) else {
            return;
        };
        if !user.is_here() {
            return;
        }
        let (id, nick) = (user.id, user.nick);
        let others = self.sharing(key, false);
        let rooms = self
            .table
            .get_mut(key)
            .map(|r| r.user.rooms.take())
            .unwrap_or_default();
        for room in rooms {
            self.leave_room(key, room);
        }
        if let Some(r) = self.table.get_mut(key) {
            r.user.presence = Presence::Gone(Departure::Left(reason));
        }
        self.nicks.remove(&nick.key(), key);
        self.emit(
            Event::Leave {
                id,
                nick,
                reason,
                text: text.map(Into::into),
                room: None,
                ts: now_ms,
            },
            To::Keys(others),
        );
    }

    /// Forgets a closed connection; returns its record for the log.
    pub fn remove(&mut self, key: Key, now_ms: u64) -> Option<(User, C)> {
        self.depart(key, LeaveReason::Disconnect, None, now_ms);
        self.table.remove(key).map(|r| (r.user, r.conn))
    }

    /// The server is stopping: everyone present gets `bye`, nobody is told
    /// of anyone's leaving.
    pub fn shutdown(&mut self) {
        let present: Vec<Key> = self
            .table
            .iter()
            .filter(|(_, r)| r.user.is_here())
            .map(|(key, _)| key)
            .collect();
        for key in present {
            self.emit(
                Event::Bye {
                    reason: ByeReason::Shutdown,
                },
                To::One(key),
            );
            if let Some(r) = self.table.get_mut(key) {
                r.user.presence = Presence::Gone(Departure::Shutdown);
                r.user.rooms = RoomSet::new();
            }
        }
        self.rooms.clear();
        self.room_ids.clear();
        self.nicks.clear();
    }

    fn emit(&mut self, event: Event, to: To) {
        self.emitted.push(Emit {
            event,
            to,
            asker: None,
        });
    }

    fn refuse(&mut self, key: Key, code: ErrorCode, message: &str) {
        self.emit(
            Event::Error {
                code,
                message: message.into(),
            },
            To::One(key),
        );
    }

    fn nick_of(&self, key: Key) -> Option<Name> {
        self.user(key).filter(|u| u.is_here()).map(|u| u.nick)
    }

    /// Everyone who shares at least one room with `key`, each once, and
    /// `key` itself when asked.
    fn sharing(&mut self, key: Key, with_self: bool) -> Vec<Key> {
        self.visit = self.visit.wrapping_add(1);
        let visit = self.visit;
        let mut out = Vec::new();
        let rooms = match self.table.get_mut(key) {
            Some(r) => {
                if with_self {
                    r.user.visit = visit;
                    out.push(key);
                } else {
                    // Marked so that its own rooms do not list it.
                    r.user.visit = visit;
                }
                r.user.rooms.to_vec()
            }
            None => return out,
        };
        for room in rooms {
            let Some(room) = self.rooms.get(room) else {
                continue;
            };
            for &member in &room.members {
                if let Some(r) = self.table.get_mut(member)
                    && r.user.visit != visit
                {
                    r.user.visit = visit;
                    out.push(member);
                }
            }
        }
        out
    }

    /// Puts `key` in the room named `name` (folded), creating the room.
    fn enter(&mut self, key: Key, name: Name) -> RoomId {
        let room = match self.room_ids.get(&name) {
            Some(&room) => room,
            None => {
                let room = self.rooms.insert(Room {
                    name,
                    members: Vec::new(),
                });
                self.room_ids.insert(name, room);
                room
            }
        };
        if let Some(r) = self.rooms.get_mut(room) {
            r.members.push(key);
        }
        if let Some(r) = self.table.get_mut(key) {
            r.user.rooms.push(room);
        }
        room
    }

    /// Takes `key` out of a room's member list (not out of its own list of
    /// rooms); a room left empty is dropped.
    fn leave_room(&mut self, key: Key, room: RoomId) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(at) = r.members.iter().position(|&m| m == key) {
            r.members.remove(at);
        }
        if r.members.is_empty() {
            let name = r.name;
            self.rooms.remove(room);
            self.room_ids.remove(&name);
        }
    }

    /// The room `key` names and is a member of, or the refusal.
    fn member_room(&self, key: Key, room: Option<&str>) -> Result<(RoomId, Name), Refusal> {
        let name = match room {
            None => self.default_room,
            Some(room) => room_name(room)?,
        };
        let id = self.room_ids.get(&name).copied();
        let member = id.filter(|id| self.user(key).is_some_and(|u| u.rooms.contains(id)));
        match member {
            Some(id) => Ok((id, name)),
            None => Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("you are not in {name}; join it first"),
            )),
        }
    }

    fn say(&mut self, key: Key, room: Option<&str>, text: &str, action: bool, now_ms: u64) {
        let Some(from) = self.nick_of(key) else {
            return;
        };
        let (room, name) = match self.member_room(key, room) {
            Ok(found) => found,
            Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
        };
        self.seq += 1;
        self.emit(
            Event::Group {
                room: name,
                seq: self.seq,
                from,
                text: text.into(),
                ts: now_ms,
                action,
            },
            To::Room {
                room,
                except: Some(key),
            },
        );
    }

    fn private(&mut self, key: Key, to: &str, text: &str, action: bool, now_ms: u64) {
        let Some(from) = self.nick_of(key) else {
            return;
        };
        let table = &self.table;
        let target =
            Name::new(to).and_then(|n| self.nicks.get(&n.key(), |k| indexed_name(table, k)));
        let Some((target, to_nick)) = target.and_then(|t| Some((t, self.nick_of(t)?))) else {
            return self.refuse(key, ErrorCode::NoSuchUser, &format!("no user named {to}"));
        };
        self.emit(
            Event::Private {
                from,
                to: to_nick,
                text: text.into(),
                ts: now_ms,
                action,
            },
            To::One(target),
        );
    }

    fn rename(&mut self, key: Key, wanted: &str, now_ms: u64) {
        let Some(old) = self.nick_of(key) else {
            return;
        };
        if let Err(why) = wire::check_nick(wanted) {
            return self.refuse(key, ErrorCode::BadNick, &why);
        }
        let Some(new) = Name::new(wanted) else {
            return;
        };
        let table = &self.table;
        if let Some(owner) = self.nicks.get(&new.key(), |k| indexed_name(table, k))
            && owner != key
        {
            let message = format!("{wanted} is already taken; choose another nickname");
            return self.refuse(key, ErrorCode::NickInUse, &message);
        }
        self.nicks.remove(&old.key(), key);
        let Some(r) = self.table.get_mut(key) else {
            return;
        };
        r.user.nick = new;
        let table = &self.table;
        self.nicks
            .insert(new.key(), key, |k| indexed_name(table, k));
        let Some(r) = self.table.get_mut(key) else {
            return;
        };
        let id = r.user.id;
        let to = self.sharing(key, true);
        self.emitted.push(Emit {
            event: Event::Nick {
                id,
                old,
                new,
                ts: now_ms,
            },
            to: To::Keys(to),
            asker: Some(key),
        });
    }

    fn who(&mut self, key: Key, room: Option<&str>) {
        let (room, mut users): (Option<Name>, Vec<(u64, Name, u64)>) = match room {
            None => (
                None,
                self.table
                    .iter()
                    .filter(|(_, r)| r.user.is_here())
                    .map(|(_, r)| (r.user.id, r.user.nick, r.user.since_ms))
                    .collect(),
            ),
            Some(room) => {
                let name = match room_name(room) {
                    Ok(name) => name,
                    Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
                };
                let members = self
                    .room_ids
                    .get(&name)
                    .and_then(|&id| self.rooms.get(id))
                    .map(|r| r.members.as_slice())
                    .unwrap_or_default();
                let users = members
                    .iter()
                    .filter_map(|&m| self.user(m))
                    .map(|u| (u.id, u.nick, u.since_ms))
                    .collect();
                (Some(name), users)
            }
        };
        users.sort_unstable_by_key(|u| u.0);
        self.emit(Event::Who { room, users }, To::One(key));
    }

    fn join(&mut self, key: Key, room: &str, now_ms: u64) {
        let name = match room_name(room) {
            Ok(name) => name,
            Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
        };
        let Some(user) = self.user(key) else {
            return;
        };
        let (id, nick) = (user.id, user.nick);
        let already = self
            .room_ids
            .get(&name)
            .copied()
            .filter(|id| user.rooms.contains(id));
        let room = match already {
            Some(room) => room,
            None => {
                if user.rooms.len() >= self.max_rooms {
                    let message = format!(
                        "you are in {} rooms, the most this server allows; part one first",
                        self.max_rooms
                    );
                    return self.refuse(key, ErrorCode::TooManyRooms, &message);
                }
                let room = self.enter(key, name);
                self.emit(
                    Event::Join {
                        id,
                        nick,
                        room: name,
                        ts: now_ms,
                    },
                    To::Room {
                        room,
                        except: Some(key),
                    },
                );
                room
            }
        };
        let mut users: Vec<(u64, Name)> = self
            .rooms
            .get(room)
            .map(|r| r.members.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&m| self.user(m))
            .map(|u| (u.id, u.nick))
            .collect();
        users.sort_unstable_by_key(|u| u.0);
        self.emit(
            Event::Joined {
                room: name,
                topic: self.topics.get(&name).cloned(),
                users,
            },
            To::One(key),
        );
    }

    fn part(&mut self, key: Key, room: &str, text: Option<&str>, now_ms: u64) {
        let (room, name) = match self.member_room(key, Some(room)) {
            Ok(found) => found,
            Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
        };
        let Some(r) = self.table.get_mut(key) else {
            return;
        };
        r.user.rooms.remove(room);
        let (id, nick) = (r.user.id, r.user.nick);
        self.emit(Event::Parted { room: name }, To::One(key));
        self.leave_room(key, room);
        // The room may be gone with its last member; then nobody is told.
        if self.rooms.get(room).is_some_and(|r| r.name == name) {
            self.emit(
                Event::Leave {
                    id,
                    nick,
                    reason: LeaveReason::Part,
                    text: text.map(Into::into),
                    room: Some(name),
                    ts: now_ms,
                },
                To::Room { room, except: None },
            );
        }
    }

    fn topic(&mut self, key: Key, room: &str, text: &str, now_ms: u64) {
        let (room, name) = match self.member_room(key, Some(room)) {
            Ok(found) => found,
            Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
        };
        if text.len() > MAX_TOPIC {
            let message = format!("a topic has at most {MAX_TOPIC} bytes");
            return self.refuse(key, ErrorCode::BadMessage, &message);
        }
        let Some(by) = self.nick_of(key) else {
            return;
        };
        let text: Rc<str> = text.into();
        if text.is_empty() {
            self.topics.remove(&name);
        } else {
            self.topics.insert(name, Rc::clone(&text));
        }
        self.emit(
            Event::Topic {
                room: name,
                by,
                text,
                ts: now_ms,
            },
            To::Room { room, except: None },
        );
    }

    fn list_rooms(&mut self, key: Key) {
        let mut rooms: Vec<(Name, u64, Option<Rc<str>>)> = self
            .rooms
            .iter()
            .map(|(_, r)| {
                (
                    r.name,
                    r.members.len() as u64,
                    self.topics.get(&r.name).cloned(),
                )
            })
            .collect();
        rooms.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        self.emit(Event::Rooms { rooms }, To::One(key));
    }
}

/// A room name as the client gave it, checked and folded.
fn room_name(room: &str) -> Result<Name, Refusal> {
    let folded = wire::check_room(room).map_err(|why| Refusal::new(ErrorCode::BadRoom, why))?;
    Name::new(&folded).ok_or_else(|| Refusal::new(ErrorCode::BadRoom, "not a room name"))
}
