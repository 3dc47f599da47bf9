//! The room: who is connected, under which nickname, and who receives what.
//!
//! This is the protocol's state machine and nothing else. It never touches a
//! socket: a line goes in, and encoded messages come out in the receivers'
//! [`OutQueue`]s, with the receivers listed in `dirty` for the event loop to
//! write. That keeps every routing rule testable without a network (see the
//! tests at the bottom).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

use slab::Slab;

use super::outq::{Encoded, OutQueue, Outbox};
use crate::wire::{
    self, ByeReason, ClientMsg, ErrorCode, LeaveReason, Refusal, ServerMsg, WhoEntry,
};

/// A nickname stored inline: 32 ASCII bytes at most, so a connection's name
/// costs no heap allocation (idle connections are meant to be cheap).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nick {
    len: u8,
    bytes: [u8; wire::MAX_NICK],
}

impl Nick {
    /// `None` unless `s` fits; callers validate with `wire::check_nick`.
    fn new(s: &str) -> Option<Nick> {
        let len = s.len();
        if len > wire::MAX_NICK || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0; wire::MAX_NICK];
        bytes[..len].copy_from_slice(s.as_bytes());
        Some(Nick {
            len: len as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// The key that makes nicknames unique regardless of case.
    fn key(&self) -> Nick {
        let mut k = *self;
        k.bytes.make_ascii_lowercase();
        k
    }
}

impl std::fmt::Debug for Nick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A slot in the nickname index: u32 keeps each entry small, and the
/// client limit is far below four billion.
type Slot = u32;

/// Where a connection stands with the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// A user: named, listed by `who`, receiving messages.
    Here,
    /// Left (quit, disconnected, or too slow); others were told. The record
    /// stays until the event loop has written what is queued and closed the
    /// socket.
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

/// The record the server keeps of every connection.
#[derive(Debug)]
pub struct User {
    pub id: u64,
    pub nick: Nick,
    pub addr: SocketAddr,
    /// Connect time for `who` (`since`) and the log, milliseconds since the
    /// epoch.
    pub since_ms: u64,
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub presence: Presence,
    pub out: OutQueue,
    /// Listed in `Room::dirty` this turn.
    dirty: bool,
    /// Listed in `Room::over` (queue past the limit, to be judged).
    over: bool,
}

/// A nickname change, kept for the event log.
#[derive(Debug, PartialEq, Eq)]
pub struct Renamed {
    pub id: u64,
    pub old: Nick,
    pub new: Nick,
}

/// What the event loop should do with a connection after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The user quit: stop reading, write what is queued, close.
    Close,
}

pub struct Room {
    users: Slab<User>,
    /// Lower-cased nickname to slot, for everyone `Here`.
    nicks: HashMap<Nick, Slot>,
    here: usize,
    next_id: u64,
    max_queue: usize,
    welcome: String,
    /// Messages for everyone (joins, leaves, renames, group messages) are
    /// encoded apart from messages for one (welcomes, answers, private
    /// messages), so that one user's welcome or pong does not break
    /// everyone else's run of broadcasts into separate slices.
    for_all: Outbox,
    for_one: Outbox,
    /// Slots with output queued since the event loop last looked.
    dirty: Vec<usize>,
    /// Users whose queue grew past `max_queue`. The event loop writes to
    /// them first and then asks `drop_slow`: what the kernel took at once
    /// was never pending in the server.
    over: Vec<usize>,
    /// Nickname changes since the event loop last looked.
    pub renames: Vec<Renamed>,
}

impl Room {
    pub fn new(welcome: String, max_queue: usize) -> Room {
        Room {
            users: Slab::new(),
            nicks: HashMap::new(),
            here: 0,
            next_id: 1,
            max_queue,
            welcome,
            for_all: Outbox::default(),
            for_one: Outbox::default(),
            dirty: Vec::new(),
            over: Vec::new(),
            renames: Vec::new(),
        }
    }

    /// The slot the next `join` will use (the event loop keys its sockets
    /// the same way).
    pub fn next_slot(&self) -> usize {
        self.users.vacant_key()
    }

    /// Users present (the `users` of `welcome`).
    pub fn here(&self) -> usize {
        self.here
    }

    pub fn user(&self, slot: usize) -> Option<&User> {
        self.users.get(slot)
    }

    pub fn user_mut(&mut self, slot: usize) -> Option<&mut User> {
        self.users.get_mut(slot)
    }

    /// A new connection: it gets `welcome`, everyone else `join`.
    pub fn join(&mut self, addr: SocketAddr, now_ms: u64) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let nick = Nick::new(&format!("guest{id}")).unwrap_or(Nick {
            len: 0,
            bytes: [0; wire::MAX_NICK],
        });
        let slot = self.users.insert(User {
            id,
            nick,
            addr,
            since_ms: now_ms,
            msgs_in: 0,
            msgs_out: 0,
            presence: Presence::Here,
            out: OutQueue::default(),
            dirty: false,
            over: false,
        });
        self.nicks.insert(nick.key(), slot as Slot);
        self.here += 1;
        let welcome = self.for_one.encode(&ServerMsg::Welcome {
            id,
            nick: Cow::Borrowed(nick.as_str()),
            text: Cow::Borrowed(&self.welcome),
            users: self.here as u64,
        });
        self.deliver(slot, &welcome);
        let join = self.for_all.encode(&ServerMsg::Join {
            id,
            nick: Cow::Borrowed(nick.as_str()),
            ts: now_ms,
        });
        self.broadcast(&join, Some(slot));
        slot
    }

    /// Acts on one line from the user in `slot`.
    pub fn handle_line(&mut self, slot: usize, line: &[u8], now_ms: u64) -> Flow {
        let msg = match wire::parse_client_line(line) {
            Ok(Some(msg)) => msg,
            Ok(None) => return Flow::Continue,
            Err(refusal) => {
                self.count_in(slot);
                self.refuse(slot, &refusal);
                return Flow::Continue;
            }
        };
        self.count_in(slot);
        match msg {
            ClientMsg::Group { text } => {
                let Some(from) = self.nick_of(slot) else {
                    return Flow::Continue;
                };
                let m = self.for_all.encode(&ServerMsg::Group {
                    from: Cow::Borrowed(from.as_str()),
                    text,
                    ts: now_ms,
                });
                self.broadcast(&m, Some(slot));
            }
            ClientMsg::Private { to, text } => self.private(slot, &to, text, now_ms),
            ClientMsg::Nick { nick } => self.rename(slot, &nick, now_ms),
            ClientMsg::Who => self.who(slot),
            ClientMsg::Ping { token } => {
                let m = self.for_one.encode(&ServerMsg::Pong { token });
                self.deliver(slot, &m);
            }
            ClientMsg::Quit { text } => {
                let bye = self.for_one.encode(&ServerMsg::Bye {
                    reason: ByeReason::Quit,
                });
                self.deliver(slot, &bye);
                self.depart(slot, LeaveReason::Quit, text.as_deref(), now_ms);
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// The user's current line passed the length limit.
    pub fn line_too_long(&mut self, slot: usize, max_line: usize) {
        self.count_in(slot);
        self.refuse(
            slot,
            &Refusal::new(
                ErrorCode::LineTooLong,
                format!("line longer than {max_line} bytes; skipped to its end"),
            ),
        );
    }

    /// The user leaves without a `quit` (closed, reset, too slow): the
    /// others get `leave`. Does nothing for someone already gone.
    pub fn depart(&mut self, slot: usize, reason: LeaveReason, text: Option<&str>, now_ms: u64) {
        let Some(user) = self.users.get_mut(slot) else {
            return;
        };
        if user.presence != Presence::Here {
            return;
        }
        user.presence = Presence::Gone(Departure::Left(reason));
        let (id, nick) = (user.id, user.nick);
        self.nicks.remove(&nick.key());
        self.here -= 1;
        let m = self.for_all.encode(&ServerMsg::Leave {
            id,
            nick: Cow::Borrowed(nick.as_str()),
            reason,
            ts: now_ms,
            text: text.map(Cow::Borrowed),
        });
        self.broadcast(&m, Some(slot));
    }

    /// Server shutdown: everyone present gets `bye` and is gone.
    pub fn shutdown(&mut self) {
        let m = self.for_all.encode(&ServerMsg::Bye {
            reason: ByeReason::Shutdown,
        });
        let present: Vec<usize> = self
            .users
            .iter()
            .filter(|(_, u)| u.presence == Presence::Here)
            .map(|(slot, _)| slot)
            .collect();
        for slot in present {
            self.deliver(slot, &m);
            if let Some(user) = self.users.get_mut(slot) {
                user.presence = Presence::Gone(Departure::Shutdown);
            }
        }
        self.nicks.clear();
        self.here = 0;
    }

    /// Forgets a closed connection; returns its record for the log.
    pub fn remove(&mut self, slot: usize, now_ms: u64) -> Option<User> {
        self.depart(slot, LeaveReason::Disconnect, None, now_ms);
        self.users.try_remove(slot)
    }

    /// Takes the list of slots with new output.
    pub fn take_dirty(&mut self, into: &mut Vec<usize>) {
        into.clear();
        std::mem::swap(into, &mut self.dirty);
        for &slot in into.iter() {
            if let Some(user) = self.users.get_mut(slot) {
                user.dirty = false;
            }
        }
    }

    /// Marks a slot to be written (its socket became writable).
    pub fn mark_dirty(&mut self, slot: usize) {
        if let Some(user) = self.users.get_mut(slot)
            && !user.dirty
            && !user.out.is_empty()
        {
            user.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Whether some queue is past the limit and must be written or judged
    /// before more input is handled.
    pub fn has_over(&self) -> bool {
        !self.over.is_empty()
    }

    /// Slots whose queue went past the limit, to write now.
    pub fn over(&self) -> &[usize] {
        &self.over
    }

    /// Users whose queue is still past the limit after being written to
    /// leave (reason `slow`), and their slots are returned for the event
    /// loop to close. Telling the others can push more of them over, so this
    /// repeats until nobody is.
    pub fn drop_slow(&mut self, now_ms: u64) -> Vec<usize> {
        let mut dropped = Vec::new();
        while !self.over.is_empty() {
            for slot in std::mem::take(&mut self.over) {
                let Some(user) = self.users.get_mut(slot) else {
                    continue;
                };
                user.over = false;
                if user.out.cost() > self.max_queue && user.presence == Presence::Here {
                    user.out.clear();
                    self.depart(slot, LeaveReason::Slow, None, now_ms);
                    dropped.push(slot);
                }
            }
        }
        dropped
    }

    fn count_in(&mut self, slot: usize) {
        if let Some(user) = self.users.get_mut(slot) {
            user.msgs_in += 1;
        }
    }

    fn nick_of(&self, slot: usize) -> Option<Nick> {
        self.users
            .get(slot)
            .filter(|u| u.presence == Presence::Here)
            .map(|u| u.nick)
    }

    fn refuse(&mut self, slot: usize, refusal: &Refusal) {
        let m = self.for_one.encode(&ServerMsg::Error {
            code: refusal.code,
            message: Cow::Borrowed(&refusal.message),
        });
        self.deliver(slot, &m);
    }

    fn private(&mut self, slot: usize, to: &str, text: Cow<'_, str>, now_ms: u64) {
        let Some(from) = self.nick_of(slot) else {
            return;
        };
        let target = Nick::new(to).and_then(|n| self.nicks.get(&n.key()).map(|&s| s as usize));
        let Some((target, to_nick)) = target.and_then(|t| Some((t, self.nick_of(t)?))) else {
            let message = format!("no user named {to}");
            self.refuse(slot, &Refusal::new(ErrorCode::NoSuchUser, message));
            return;
        };
        let m = self.for_one.encode(&ServerMsg::Private {
            from: Cow::Borrowed(from.as_str()),
            to: Cow::Borrowed(to_nick.as_str()),
            text,
            ts: now_ms,
        });
        self.deliver(target, &m);
    }

    fn rename(&mut self, slot: usize, wanted: &str, now_ms: u64) {
        let Some(old) = self.nick_of(slot) else {
            return;
        };
        if let Err(why) = wire::check_nick(wanted) {
            self.refuse(slot, &Refusal::new(ErrorCode::BadNick, why));
            return;
        }
        let Some(new) = Nick::new(wanted) else {
            return;
        };
        match self.nicks.get(&new.key()) {
            Some(&owner) if owner as usize != slot => {
                let message = format!("{wanted} is already taken; choose another nickname");
                self.refuse(slot, &Refusal::new(ErrorCode::NickInUse, message));
                return;
            }
            _ => {}
        }
        self.nicks.remove(&old.key());
        self.nicks.insert(new.key(), slot as Slot);
        let Some(user) = self.users.get_mut(slot) else {
            return;
        };
        user.nick = new;
        let id = user.id;
        self.renames.push(Renamed { id, old, new });
        let m = self.for_all.encode(&ServerMsg::Nick {
            id,
            old: Cow::Borrowed(old.as_str()),
            new: Cow::Borrowed(new.as_str()),
            ts: now_ms,
        });
        self.broadcast(&m, None);
    }

    fn who(&mut self, slot: usize) {
        let mut users: Vec<WhoEntry<'_>> = self
            .users
            .iter()
            .filter(|(_, u)| u.presence == Presence::Here)
            .map(|(_, u)| WhoEntry {
                id: u.id,
                nick: Cow::Borrowed(u.nick.as_str()),
                since: u.since_ms,
            })
            .collect();
        users.sort_unstable_by_key(|u| u.id);
        let m = self.for_one.encode(&ServerMsg::Who { users });
        self.deliver(slot, &m);
    }

    /// Queues `m` for everyone present except `except`. This loop is the
    /// server's hot path: per receiver it is a presence check, a range
    /// extension and a counter.
    fn broadcast(&mut self, m: &Encoded, except: Option<usize>) {
        let Room {
            users,
            dirty,
            over,
            max_queue,
            ..
        } = self;
        for (slot, user) in users.iter_mut() {
            if Some(slot) != except && user.presence == Presence::Here {
                enqueue(user, slot, m, *max_queue, dirty, over);
            }
        }
    }

    /// Queues `m` for one user, present or just leaving (a `bye` still goes
    /// to someone who quit).
    fn deliver(&mut self, slot: usize, m: &Encoded) {
        let Room {
            users,
            dirty,
            over,
            max_queue,
            ..
        } = self;
        if let Some(user) = users.get_mut(slot) {
            enqueue(user, slot, m, *max_queue, dirty, over);
        }
    }
}

fn enqueue(
    user: &mut User,
    slot: usize,
    m: &Encoded,
    max_queue: usize,
    dirty: &mut Vec<usize>,
    over: &mut Vec<usize>,
) {
    user.out.push(m);
    user.msgs_out += 1;
    if !user.dirty {
        user.dirty = true;
        dirty.push(slot);
    }
    if user.out.cost() > max_queue && !user.over {
        user.over = true;
        over.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: u64 = 1_764_165_600_000;

    fn addr() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    /// Seals and drains every queue, returning each slot's messages.
    fn drain(room: &mut Room) -> HashMap<usize, Vec<Value>> {
        let mut out = HashMap::new();
        let slots: Vec<usize> = room.users.iter().map(|(s, _)| s).collect();
        for slot in slots {
            let mut bytes = Vec::new();
            room.users[slot].out.write_to(&mut bytes).unwrap();
            let msgs = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            out.insert(slot, msgs);
        }
        let mut dirty = Vec::new();
        room.take_dirty(&mut dirty);
        out
    }

    fn line(room: &mut Room, slot: usize, v: Value) -> Flow {
        room.handle_line(slot, v.to_string().as_bytes(), NOW)
    }

    fn named(room: &mut Room, nick: &str) -> usize {
        let slot = room.join(addr(), NOW);
        line(room, slot, json!({"type": "nick", "nick": nick}));
        slot
    }

    #[test]
    fn welcome_then_join_for_the_others() {
        let mut room = Room::new("hi".into(), 1 << 20);
        let a = room.join(addr(), NOW);
        let b = room.join(addr(), NOW);
        let out = drain(&mut room);
        assert_eq!(
            out[&a],
            [
                json!({"type":"welcome","id":1,"nick":"guest1","text":"hi","users":1}),
                json!({"type":"join","id":2,"nick":"guest2","ts":NOW})
            ]
        );
        assert_eq!(
            out[&b],
            [json!({"type":"welcome","id":2,"nick":"guest2","text":"hi","users":2})]
        );
    }

    #[test]
    fn group_goes_to_everyone_else_private_to_one() {
        let mut room = Room::new("hi".into(), 1 << 20);
        let a = named(&mut room, "alice");
        let b = named(&mut room, "bob");
        let c = named(&mut room, "carol");
        drain(&mut room);
        line(&mut room, a, json!({"type":"group","text":"hello"}));
        line(
            &mut room,
            a,
            json!({"type":"private","to":"BOB","text":"psst"}),
        );
        line(
            &mut room,
            a,
            json!({"type":"private","to":"Alice","text":"me"}),
        );
        let out = drain(&mut room);
        let group = json!({"type":"group","from":"alice","text":"hello","ts":NOW});
        assert_eq!(
            out[&a],
            [json!({"type":"private","from":"alice","to":"alice","text":"me","ts":NOW})]
        );
        assert_eq!(
            out[&b],
            [
                group.clone(),
                json!({"type":"private","from":"alice","to":"bob","text":"psst","ts":NOW})
            ]
        );
        assert_eq!(out[&c], [group]);
    }

    #[test]
    fn nicknames_are_unique_regardless_of_case() {
        let mut room = Room::new("hi".into(), 1 << 20);
        let a = named(&mut room, "bob");
        let b = room.join(addr(), NOW);
        drain(&mut room);
        line(&mut room, b, json!({"type":"nick","nick":"BOB"}));
        line(&mut room, b, json!({"type":"nick","nick":"guest7"}));
        line(&mut room, a, json!({"type":"nick","nick":"Bob"}));
        let out = drain(&mut room);
        let codes: Vec<Value> = out[&b].iter().map(|m| m["code"].clone()).collect();
        assert_eq!(codes[..2], [json!("nick_in_use"), json!("bad_nick")]);
        let rename = json!({"type":"nick","id":1,"old":"bob","new":"Bob","ts":NOW});
        assert_eq!(out[&a], std::slice::from_ref(&rename));
        assert_eq!(out[&b][2], rename);
        assert_eq!(room.renames.len(), 2);
    }

    #[test]
    fn private_to_nobody_is_refused() {
        let mut room = Room::new("hi".into(), 1 << 20);
        let a = named(&mut room, "alice");
        drain(&mut room);
        line(
            &mut room,
            a,
            json!({"type":"private","to":"zed","text":"hello?"}),
        );
        line(
            &mut room,
            a,
            json!({"type":"private","to":"not a nick at all, far too long to be one","text":"x"}),
        );
        let out = drain(&mut room);
        assert_eq!(
            out[&a][0],
            json!({"type":"error","code":"no_such_user","message":"no user named zed"})
        );
        assert_eq!(out[&a][1]["code"], "no_such_user");
    }

    #[test]
    fn quit_says_bye_and_others_see_leave() {
        let mut room = Room::new("hi".into(), 1 << 20);
        let a = named(&mut room, "alice");
        let b = named(&mut room, "bob");
        drain(&mut room);
        assert_eq!(
            line(&mut room, a, json!({"type":"quit","text":"bye now"})),
            Flow::Close
        );
        line(&mut room, b, json!({"type":"who"}));
        let out = drain(&mut room);
        assert_eq!(out[&a], [json!({"type":"bye","reason":"quit"})]);
        assert_eq!(
            out[&b][0],
            json!({"type":"leave","id":1,"nick":"alice","reason":"quit","ts":NOW,"text":"bye now"})
        );
        assert_eq!(
            out[&b][1]["users"],
            json!([{"id":2,"nick":"bob","since":NOW}])
        );
        assert_eq!(room.here(), 1);
        // Her name is free at once, and closing her socket tells nobody twice.
        room.remove(a, NOW);
        assert!(drain(&mut room)[&b].is_empty());
        let c = named(&mut room, "alice");
        assert_eq!(room.user(c).unwrap().nick.as_str(), "alice");
    }

    #[test]
    fn a_reader_that_falls_behind_is_dropped_alone() {
        let mut room = Room::new("hi".into(), 4096);
        let talker = named(&mut room, "talker");
        let slow = named(&mut room, "slow");
        let fast = named(&mut room, "fast");
        drain(&mut room);
        let text = "x".repeat(100);
        let mut dropped = Vec::new();
        let mut fast_got = Vec::new();
        for _ in 0..30 {
            line(&mut room, talker, json!({"type":"group","text":text}));
            // The fast reader keeps up; the slow one never reads.
            room.users[fast].out.write_to(&mut fast_got).unwrap();
            dropped.extend(room.drop_slow(NOW));
        }
        assert_eq!(dropped, [slow]);
        room.users[fast].out.write_to(&mut fast_got).unwrap();
        let got: Vec<Value> = fast_got
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(got.iter().filter(|m| m["type"] == "group").count(), 30);
        let leave = got.iter().find(|m| m["type"] == "leave").unwrap();
        assert_eq!(
            (&leave["nick"], &leave["reason"]),
            (&json!("slow"), &json!("slow"))
        );
    }

    #[test]
    fn refusals_count_as_messages_and_keep_the_connection() {
        let mut room = Room::new("hi".into(), 1 << 20);
        let a = room.join(addr(), NOW);
        drain(&mut room);
        assert_eq!(room.handle_line(a, b"{oops", NOW), Flow::Continue);
        room.line_too_long(a, 10);
        assert_eq!(room.handle_line(a, b"", NOW), Flow::Continue);
        let out = drain(&mut room);
        assert_eq!(out[&a][0]["code"], "bad_json");
        assert_eq!(out[&a][1]["code"], "line_too_long");
        assert_eq!(room.user(a).unwrap().msgs_in, 2);
    }

    #[test]
    fn shutdown_says_bye_to_everyone() {
        let mut room = Room::new("hi".into(), 1 << 20);
        let a = named(&mut room, "alice");
        let b = room.join(addr(), NOW);
        drain(&mut room);
        room.shutdown();
        let out = drain(&mut room);
        for slot in [a, b] {
            assert_eq!(out[&slot], [json!({"type":"bye","reason":"shutdown"})]);
        }
    }
}
