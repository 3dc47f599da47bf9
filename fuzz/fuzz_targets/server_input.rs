//! What a client can send the server, from bytes on the socket to what every
//! other user is sent: `LineReader::feed` with a small line limit, then
//! `Hub` (the JSON-lines door, the core and delivery, without sockets).
//!
//! The input is a header and a script of operations on up to 16
//! connections, so one input can interleave several users:
//!
//! - byte 0: the line limit, 1 to 256 bytes (small, so that over-long lines
//!   are common);
//! - byte 1: the queue limit, 64 bytes to 16 KiB (small, so that readers
//!   are dropped as slow);
//! - then segments separated by `0xff`, each an operation byte and its
//!   bytes. The low four bits choose the operation, the high four the
//!   connection: 8 connects, 9 closes, 10 reads all that is queued, 11
//!   reads up to the body's first byte plus one, 12 shuts the server down,
//!   13 hangs up (end of input), 14 sends an account message chosen by the
//!   body's first byte (a nick to one of two names, register, login to
//!   either with one of two passwords, logout); the others feed the bytes
//!   to the connection.
//!
//! Checked along the way: framing hands out the lines the whole stream
//! holds, whatever the chunks; nothing buffers past the limit; the count of
//! users is joins minus departures; every queue holds complete lines of
//! valid server messages, `welcome` first and nothing after `bye`.
//!
//! Rooms are checked from both ends. Each peer keeps the view a client
//! would build from what it reads (its rooms and their members, from
//! `welcome`, `joined`, `parted`, `join`, `leave`, `who`), and every line it
//! reads must fit that view: a `group` or `topic` only for a room it is in,
//! a `join` only of someone not already there, a `leave` only of someone
//! who was, nothing about anyone after their `leave` from the server, `seq`
//! increasing. Each broadcast the server journals is matched against who
//! got it (the count of messages queued per connection): a connection got
//! it exactly when its view, at that point of its stream, says it should.
//! `seq` goes up by one per group message server-wide. At the end a
//! newcomer checks that `who`, `private`, `nick`, `rooms` and `who ROOM`
//! agree with the views about who is here and in which rooms.

#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;

use chat::framing::{Frame, LineReader};
use chat::names;
use chat::server::accounts::{Book, Cost};
use chat::server::core::{AccountRules, Config, Departure, Flow, Peer, Presence};
use chat::server::hashing::Worker;
use chat::server::deliver::{Door, Outlet};
use chat::server::event::Event;
use chat::server::hub::Hub;
use chat::server::table::Key;
use chat::wire::{self, LeaveReason, ServerMsg};
use libfuzzer_sys::fuzz_target;

const MAX_CONNS: usize = 16;
const LOBBY: &str = "lobby";
/// Few, so that `too_many_rooms` is common.
const MAX_ROOMS: usize = 3;

/// A frame as the reader reported it, kept to compare with the reference.
#[derive(Debug, PartialEq)]
enum Seen {
    Line(Vec<u8>),
    TooLong,
}

/// What a peer's view must say once it has read `at` lines.
#[derive(Debug)]
enum Check {
    /// It is (or is not) a member of the room.
    InRoom(String, bool),
    /// It shares (or does not share) a room with this user id.
    Shares(u64, bool),
}

/// What a client knows from what it read: its rooms and their members
/// (`None` until a `who` or `joined` lists them).
#[derive(Default)]
struct View {
    nick: String,
    rooms: BTreeMap<String, Option<BTreeSet<u64>>>,
    /// Users it was told left the server; ids are never reused.
    gone: HashSet<u64>,
    last_seq: u64,
}

impl View {
    fn shares(&self, id: u64) -> Option<bool> {
        let mut shared = false;
        for members in self.rooms.values() {
            shared |= members.as_ref()?.contains(&id);
        }
        Some(shared)
    }
}

/// One connection, as the event loop sees it and as its peer would.
struct Conn {
    key: Key,
    id: u64,
    reader: LineReader,
    /// Every byte the reader consumed, for the framing reference.
    fed: Vec<u8>,
    frames: Vec<Seen>,
    /// It sent `quit` or closed its side: no more reading, close once
    /// written.
    closing: bool,
    /// What the peer has read so far, not yet split into lines.
    got: Vec<u8>,
    lines: usize,
    saw_bye: bool,
    view: View,
    /// Checks of the view at a line count, in order.
    checks: VecDeque<(usize, Check)>,
}

/// A socket buffer with room for `left` more bytes.
struct Socket {
    left: usize,
    into: Vec<u8>,
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.left);
        self.into.extend_from_slice(&buf[..n]);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct World {
    hub: Hub<Outlet>,
    conns: Vec<Conn>,
    max_line: usize,
    now_ms: u64,
    shut: bool,
    /// Nicknames given up (renamed from, or held by someone who left),
    /// which must be free again unless someone took them since.
    freed: Vec<String>,
    /// The last `seq` the server gave a group message.
    seq: u64,
}

fn addr() -> Peer {
    Peer::plain(SocketAddr::from(([127, 0, 0, 1], 5000)))
}

/// What framing must produce for a whole stream, chunks aside: each line
/// within the limit, one refusal per longer line, and a refusal for an
/// unfinished tail already past it.
fn reference(stream: &[u8], max_line: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let tail = parts.pop().unwrap_or(&[]);
    for part in parts {
        out.push(if part.len() < max_line {
            Seen::Line(part.to_vec())
        } else {
            Seen::TooLong
        });
    }
    if tail.len() >= max_line {
        out.push(Seen::TooLong);
    }
    out
}

impl World {
    fn msgs_out(&self, key: Key) -> Option<u64> {
        self.hub.core.conn(key).map(|o| o.msgs_out)
    }

    /// Runs one step of the hub and matches what it journaled against who
    /// was sent something: `actor` is whoever sent the line, if anyone.
    fn observe<R>(&mut self, actor: Option<Key>, step: impl FnOnce(&mut Hub<Outlet>) -> R) -> R {
        let before: Vec<Option<(u64, bool)>> = self
            .conns
            .iter()
            .map(|c| {
                let here = self.hub.core.user(c.key).is_some_and(|u| u.is_here());
                self.msgs_out(c.key).map(|n| (n, here))
            })
            .collect();
        let result = step(&mut self.hub);
        let events: Vec<Event> = self.hub.journal.drain(..).collect();
        for event in &events {
            match event {
                Event::Group { seq, .. } => {
                    assert_eq!(*seq, self.seq + 1, "seq skipped or repeated");
                    self.seq = *seq;
                }
                Event::Nick { old, .. } => self.freed.push(old.as_str().to_owned()),
                Event::Leave {
                    nick, room: None, ..
                } => self.freed.push(nick.as_str().to_owned()),
                _ => {}
            }
        }
        // Who was sent something, besides the actor. Nothing goes to
        // someone already gone.
        let mut got = Vec::new();
        for (k, conn) in self.conns.iter().enumerate() {
            let (Some((was, here)), Some(now)) = (before[k], self.msgs_out(conn.key)) else {
                continue;
            };
            if Some(conn.key) == actor {
                continue;
            }
            if here {
                got.push((k, was as usize, now - was));
            } else {
                assert_eq!(now, was, "{} is gone but was sent something", conn.id);
            }
        }
        match &events[..] {
            [] if actor.is_some() => {
                // A private message reaches one other; nothing else does.
                let reached: u64 = got.iter().map(|g| g.2).sum();
                assert!(reached <= 1, "{reached} messages to others for one line");
            }
            [event] => match event {
                Event::Join { id, room, .. }
                | Event::Leave {
                    id,
                    room: Some(room),
                    ..
                } => {
                    let room = room.as_str();
                    self.expect(&got, *id, |r| Check::InRoom(room.to_owned(), r));
                }
                Event::Leave { id, room: None, .. } | Event::Nick { id, .. } => {
                    let id = *id;
                    self.expect(&got, id, |r| Check::Shares(id, r));
                }
                Event::Group { room, .. } | Event::Topic { room, .. } => {
                    let room = room.as_str();
                    // The sender is a member (a topic's setter hears it too).
                    if let Some(k) = self.conns.iter().position(|c| Some(c.key) == actor) {
                        let at = before[k].map_or(0, |b| b.0) as usize;
                        let sender = &mut self.conns[k];
                        sender
                            .checks
                            .push_back((at, Check::InRoom(room.to_owned(), true)));
                        settle(sender);
                    }
                    self.expect(&got, 0, |r| Check::InRoom(room.to_owned(), r));
                }
                other => panic!("journaled {other:?}"),
            },
            // Several at once (slow readers dropped in a cascade): each
            // receiver's view still checks what it reads.
            _ => {}
        }
        result
    }

    /// Notes for every connection in `got` but the one with id `subject`
    /// what its view must say once it has read up to this event, depending
    /// on whether it was sent it.
    fn expect(&mut self, got: &[(usize, usize, u64)], subject: u64, check: impl Fn(bool) -> Check) {
        for &(k, at, sent) in got {
            let conn = &mut self.conns[k];
            if conn.id == subject {
                continue;
            }
            assert!(sent <= 1, "{} got {sent} messages for one event", conn.id);
            conn.checks.push_back((at, check(sent == 1)));
            settle(conn);
        }
    }

    /// A new connection, unless there are enough or the server is stopping.
    /// It asks who is in its room at once, as a client does, so that its
    /// view is whole from its second line on.
    fn join(&mut self) {
        if self.conns.len() >= MAX_CONNS || self.shut {
            return;
        }
        let here = self.hub.core.here();
        let now = self.now_ms;
        let key = self.observe(None, |hub| {
            hub.connect(addr(), now, Outlet::new(Door::JsonLines))
        });
        assert_eq!(self.hub.core.here(), here + 1);
        let id = self.hub.core.user(key).expect("joined").id;
        assert!(
            self.conns.iter().all(|c| c.key != key && c.id != id),
            "key {key:?} or id {id} handed out twice"
        );
        self.conns.push(Conn {
            key,
            id,
            reader: LineReader::new(self.max_line),
            fed: Vec::new(),
            frames: Vec::new(),
            closing: false,
            got: Vec::new(),
            lines: 0,
            saw_bye: false,
            view: View::default(),
            checks: VecDeque::new(),
        });
        let line = format!(r#"{{"type":"who","room":"{LOBBY}"}}"#);
        self.line(key, line.as_bytes());
    }

    /// One line from `key` into the hub, observed.
    fn line(&mut self, key: Key, line: &[u8]) -> Flow {
        let now = self.now_ms;
        self.observe(Some(key), |hub| hub.line(key, line, now))
    }

    /// Bytes arrive from `conns[k]`: the event loop's `handle_input`.
    fn feed(&mut self, k: usize, bytes: &[u8]) {
        if self.conns[k].closing || self.shut {
            return;
        }
        let key = self.conns[k].key;
        let max_line = self.max_line;
        let mut reader = std::mem::replace(&mut self.conns[k].reader, LineReader::new(1));
        let mut frames = Vec::new();
        let mut flow = Flow::Continue;
        let consumed = reader.feed(bytes, |frame| {
            let before = self.hub.core.user(key).expect("fed a live key").msgs_in;
            match frame {
                Frame::Line(line) => {
                    assert!(line.len() < max_line, "a line past the limit");
                    assert!(!line.contains(&b'\n'));
                    frames.push(Seen::Line(line.to_vec()));
                    let parsed = wire::parse_client_line(line);
                    if let Err(refusal) = &parsed {
                        assert!(!refusal.message.is_empty(), "{:?}", refusal.code);
                    }
                    let queued = self.hub.core.conn(key).map_or(0, |o| o.out.len());
                    flow = self.line(key, line);
                    let user = self.hub.core.user(key).expect("still there after a line");
                    let counted = user.msgs_in - before;
                    match parsed {
                        Ok(None) => assert_eq!(counted, 0, "a blank line counted"),
                        Ok(Some(msg)) => {
                            assert_eq!(counted, 1);
                            let quit = matches!(msg, wire::ClientMsg::Quit { .. });
                            assert_eq!(flow == Flow::Close, quit, "{msg:?} gave {flow:?}");
                        }
                        Err(_) => {
                            assert_eq!(counted, 1);
                            assert_eq!(flow, Flow::Continue);
                            let out = self.hub.core.conn(key).map_or(0, |o| o.out.len());
                            assert!(out > queued, "a refusal queued nothing");
                        }
                    }
                }
                Frame::TooLong => {
                    frames.push(Seen::TooLong);
                    self.observe(Some(key), |hub| hub.line_too_long(key, max_line));
                    let user = self.hub.core.user(key).expect("still there");
                    assert_eq!(user.msgs_in, before + 1);
                }
            }
            flow == Flow::Continue
        });
        let conn = &mut self.conns[k];
        conn.reader = reader;
        conn.frames.extend(frames);
        assert!(consumed <= bytes.len());
        assert!(
            conn.reader.pending() < max_line,
            "{} bytes buffered with a limit of {max_line}",
            conn.reader.pending()
        );
        conn.fed.extend_from_slice(&bytes[..consumed]);
        if flow == Flow::Close {
            assert_eq!(
                self.hub.core.user(key).map(|u| u.presence),
                Some(Presence::Gone(Departure::Left(LeaveReason::Quit)))
            );
            conn.closing = true;
            check_framing(conn, max_line);
        } else {
            assert_eq!(consumed, bytes.len(), "stopped early without a quit");
        }
        if self.hub.delivery.has_over() {
            self.drop_slow();
        }
    }

    /// The peer closed its side: the event loop's end of input.
    fn hang_up(&mut self, k: usize) {
        if self.conns[k].closing || self.shut {
            return;
        }
        let (key, now) = (self.conns[k].key, self.now_ms);
        self.observe(None, |hub| hub.depart(key, LeaveReason::Disconnect, now));
        assert_eq!(
            self.hub.core.user(key).map(|u| u.presence),
            Some(Presence::Gone(Departure::Left(LeaveReason::Disconnect)))
        );
        self.conns[k].closing = true;
        if self.hub.delivery.has_over() {
            self.drop_slow();
        }
    }

    /// The event loop's `relieve`, for peers that read nothing meanwhile.
    fn drop_slow(&mut self) {
        let now = self.now_ms;
        let dropped = self.observe(None, |hub| hub.drop_slow(now));
        assert!(!self.hub.delivery.has_over());
        for key in dropped {
            let user = self.hub.core.user(key).expect("dropped a live key");
            assert_eq!(
                user.presence,
                Presence::Gone(Departure::Left(LeaveReason::Slow))
            );
            let outlet = self.hub.core.conn(key).expect("dropped a live key");
            assert!(outlet.out.is_empty(), "a slow reader's queue was kept");
            let k = self
                .conns
                .iter()
                .position(|c| c.key == key)
                .expect("dropped someone unknown");
            self.close(k);
        }
    }

    /// The peer reads up to `budget` bytes; returns the messages it read.
    fn read(&mut self, k: usize, budget: usize) -> Vec<ServerMsg<'static>> {
        let conn = &mut self.conns[k];
        let outlet = self.hub.core.conn_mut(conn.key).expect("a live key");
        let queued = outlet.out.len();
        let mut socket = Socket {
            left: budget,
            into: Vec::new(),
        };
        let written = outlet
            .out
            .write_to(&mut socket)
            .expect("blocking is no error");
        assert_eq!(written, socket.into.len());
        assert_eq!(written, queued.min(budget));
        assert_eq!(outlet.out.len(), queued - written);
        let empty = outlet.out.is_empty();
        conn.got.extend_from_slice(&socket.into);
        let msgs = check_lines(conn);
        if conn.closing && empty {
            self.close(k);
        }
        msgs
    }

    /// The socket is gone: the hub forgets the connection.
    fn close(&mut self, k: usize) {
        let conn = self.conns.swap_remove(k);
        let was_here = self.hub.core.user(conn.key).is_some_and(|u| u.is_here());
        let here = self.hub.core.here();
        let now = self.now_ms;
        let (user, _) = self
            .observe(None, |hub| hub.remove(conn.key, now))
            .expect("a live key");
        assert_eq!(user.id, conn.id);
        self.freed.push(user.nick.as_str().to_owned());
        assert_eq!(self.hub.core.here(), here - usize::from(was_here));
        assert!(self.hub.core.user(conn.key).is_none());
        check_framing(&conn, self.max_line);
    }

    /// What holds between any two operations.
    fn check(&mut self) {
        let here = self
            .conns
            .iter()
            .filter(|c| !c.closing && !self.shut)
            .count();
        assert_eq!(self.hub.core.here(), here, "joins minus departures");
        assert_eq!(self.hub.core.len(), self.conns.len());
        for conn in &self.conns {
            let user = self.hub.core.user(conn.key).expect("a live key");
            assert_eq!(user.id, conn.id);
            assert_eq!(
                user.is_here(),
                !conn.closing && !self.shut,
                "{:?}",
                user.presence
            );
            assert!(
                wire::check_nick(user.nick.as_str()).is_ok()
                    || user.nick.as_str() == format!("guest{}", user.id)
            );
        }
        let mut dirty = Vec::new();
        self.hub.delivery.take_dirty(&mut self.hub.core, &mut dirty);
        let unique: HashSet<&Key> = dirty.iter().collect();
        assert_eq!(unique.len(), dirty.len(), "a key listed twice as dirty");
    }

    /// A newcomer asks who is here and writes to each: the nickname index,
    /// the user list and the count must agree. Then everyone reads all, and
    /// the rooms their views hold must be the server's rooms.
    fn census(&mut self) {
        if self.shut || self.conns.len() >= MAX_CONNS {
            return;
        }
        self.join();
        let me = self.conns.len() - 1;
        let key = self.conns[me].key;
        let here = self.hub.core.here();
        self.read(me, usize::MAX);
        self.line(key, br#"{"type":"who"}"#);
        let Some(ServerMsg::Who { users, .. }) = self.answer(me) else {
            panic!("no answer to who");
        };
        assert_eq!(users.len(), here, "who lists {users:?}");
        let ids: HashSet<u64> = users.iter().map(|u| u.id).collect();
        assert_eq!(ids.len(), users.len(), "an id listed twice");
        // By the key names compare by: no name, nor a look-alike, twice.
        let nicks: HashSet<String> = users.iter().map(|u| names::fold(&u.nick)).collect();
        assert_eq!(nicks.len(), users.len(), "a nickname held twice");
        for conn in &self.conns {
            let user = self.hub.core.user(conn.key).expect("live");
            let listed = users.iter().find(|u| u.id == conn.id);
            if user.is_here() {
                assert_eq!(listed.map(|u| &*u.nick), Some(user.nick.as_str()));
            } else {
                assert!(listed.is_none(), "{} is gone but listed", conn.id);
            }
        }
        for entry in &users {
            // Another spelling of the name (ASCII case keeps the key).
            let to = entry.nick.to_ascii_uppercase();
            let line = format!(r#"{{"type":"private","to":"{to}","text":"hi"}}"#);
            self.line(key, line.as_bytes());
            if entry.id == self.conns[me].id {
                assert!(matches!(self.answer(me), Some(ServerMsg::Private { .. })));
            } else {
                assert!(self.answer(me).is_none(), "private to {to} refused");
                let k = self
                    .conns
                    .iter()
                    .position(|c| c.id == entry.id)
                    .expect("known");
                let got = self.read(k, usize::MAX);
                assert!(self.conns[k].got.is_empty(), "a partial line was left");
                assert!(matches!(got.last(), Some(ServerMsg::Private { .. })));
                let line = format!(r#"{{"type":"nick","nick":"{}"}}"#, entry.nick);
                self.line(key, line.as_bytes());
                let Some(ServerMsg::Error { code, .. }) = self.answer(me) else {
                    panic!("took {}'s nickname", entry.nick);
                };
                let reserved = wire::is_guest_name(&entry.nick);
                if reserved {
                    assert_eq!(code, wire::ErrorCode::BadNick);
                } else {
                    // An account's name needs its login before all else.
                    assert!(
                        matches!(
                            code,
                            wire::ErrorCode::NickInUse | wire::ErrorCode::NickRegistered
                        ),
                        "{code:?}"
                    );
                }
            }
        }
        // Every name given up and not held now can be taken.
        let held: HashSet<String> = users.iter().map(|u| names::fold(&u.nick)).collect();
        let mut tried = HashSet::new();
        for name in std::mem::take(&mut self.freed) {
            let folded = names::fold(&name);
            if held.contains(&folded) || wire::check_nick(&name).is_err() || !tried.insert(folded) {
                continue;
            }
            let line = format!(r#"{{"type":"nick","nick":"{name}"}}"#);
            self.line(key, line.as_bytes());
            match self.answer(me) {
                Some(ServerMsg::Nick { new, .. }) => assert_eq!(new, name),
                Some(ServerMsg::Error {
                    code: wire::ErrorCode::NickRegistered,
                    ..
                }) => {}
                other => panic!("{name} was given up but is not free: {other:?}"),
            }
        }
        self.rooms_census();
    }

    /// Everyone reads all; then each room a present user's view holds has
    /// as members exactly the users whose views hold it, and the server's
    /// `rooms` and `who ROOM` say the same.
    fn rooms_census(&mut self) {
        // Reading may close a connection that quit, which moves the last
        // one into its place: going backwards visits each once.
        for k in (0..self.conns.len()).rev() {
            self.read(k, usize::MAX);
        }
        let mut truth: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for conn in self.conns.iter().filter(|c| !c.closing) {
            assert!(conn.got.is_empty(), "a partial line was left");
            for room in conn.view.rooms.keys() {
                truth.entry(room.clone()).or_default().insert(conn.id);
            }
        }
        for conn in self.conns.iter().filter(|c| !c.closing) {
            for (room, members) in &conn.view.rooms {
                assert_eq!(
                    members.as_ref(),
                    truth.get(room),
                    "{}'s view of {room}",
                    conn.id
                );
            }
        }
        let Some(me) = self.conns.iter().position(|c| !c.closing) else {
            return;
        };
        let key = self.conns[me].key;
        self.line(key, br#"{"type":"rooms"}"#);
        let Some(ServerMsg::Rooms { rooms }) = self.answer(me) else {
            panic!("no answer to rooms");
        };
        let listed: BTreeMap<String, u64> = rooms
            .iter()
            .map(|r| (r.name.to_string(), r.users))
            .collect();
        assert_eq!(listed.len(), rooms.len(), "a room listed twice");
        let counted: BTreeMap<String, u64> = truth
            .iter()
            .map(|(r, m)| (r.clone(), m.len() as u64))
            .collect();
        assert_eq!(listed, counted, "rooms");
        for (room, members) in &truth {
            let line = format!(r#"{{"type":"who","room":"{room}"}}"#);
            self.line(key, line.as_bytes());
            let Some(ServerMsg::Who {
                users,
                room: Some(named),
            }) = self.answer(me)
            else {
                panic!("no answer to who {room}");
            };
            assert_eq!(&*named, room);
            let ids: BTreeSet<u64> = users.iter().map(|u| u.id).collect();
            assert_eq!(&ids, members, "who {room}");
        }
    }

    /// The one message `conns[k]` was sent since it last read, if any.
    fn answer(&mut self, k: usize) -> Option<ServerMsg<'static>> {
        let mut msgs = self.read(k, usize::MAX).into_iter();
        let first = msgs.next();
        assert!(msgs.next().is_none(), "more than one answer");
        first
    }
}

/// Runs the checks due at the line count the peer has reached.
fn settle(conn: &mut Conn) {
    while let Some(at) = conn.checks.front().map(|(at, _)| *at) {
        assert!(at >= conn.lines, "a check at line {at} was missed");
        if at > conn.lines {
            return;
        }
        let Some((_, check)) = conn.checks.pop_front() else {
            return;
        };
        let view = &conn.view;
        match check {
            Check::InRoom(room, want) => assert_eq!(
                view.rooms.contains_key(&room),
                want,
                "{} {} {room} at line {at}",
                conn.id,
                if want {
                    "was sent a message of"
                } else {
                    "was left out of"
                }
            ),
            Check::Shares(id, want) => {
                if let Some(shares) = view.shares(id) {
                    assert_eq!(shares, want, "{} shares a room with {id}", conn.id);
                }
            }
        }
    }
}

/// Applies one line a peer read to its view, checking that it fits.
fn apply(conn: &mut Conn, msg: &ServerMsg<'_>) {
    let me = conn.id;
    let view = &mut conn.view;
    let not_gone = |view: &View, id: u64| {
        assert!(
            !view.gone.contains(&id),
            "{me} heard of {id} after its leave"
        );
    };
    match msg {
        ServerMsg::Welcome { nick, room, .. } => {
            view.nick = nick.to_string();
            let room = room.as_deref().expect("a v2 welcome names the room");
            view.rooms.insert(room.to_owned(), None);
        }
        ServerMsg::Who { users, room } => {
            let ids: BTreeSet<u64> = users.iter().map(|u| u.id).collect();
            assert_eq!(ids.len(), users.len(), "an id listed twice");
            for &id in &ids {
                not_gone(view, id);
            }
            match room {
                Some(room) => {
                    let member = view.rooms.get_mut(&**room);
                    assert_eq!(member.is_some(), ids.contains(&me), "who {room}: {ids:?}");
                    if let Some(members) = member {
                        if let Some(known) = members {
                            assert_eq!(known, &ids, "who {room}");
                        }
                        *members = Some(ids);
                    }
                }
                None => {
                    assert!(ids.contains(&me));
                    for members in view.rooms.values().flatten() {
                        assert!(members.is_subset(&ids), "{members:?} not all online");
                    }
                }
            }
        }
        ServerMsg::Joined { room, users, .. } => {
            let ids: BTreeSet<u64> = users.iter().map(|u| u.id).collect();
            assert_eq!(ids.len(), users.len(), "an id listed twice");
            assert!(ids.contains(&me), "joined {room} without me");
            for &id in &ids {
                not_gone(view, id);
            }
            if let Some(Some(known)) = view.rooms.get(&**room) {
                assert_eq!(known, &ids, "joined {room} again");
            }
            assert!(view.rooms.len() < MAX_ROOMS || view.rooms.contains_key(&**room));
            view.rooms.insert(room.to_string(), Some(ids));
        }
        ServerMsg::Parted { room } => {
            assert!(
                view.rooms.remove(&**room).is_some(),
                "parted {room} unjoined"
            );
        }
        ServerMsg::Join { id, room, .. } => {
            assert_ne!(*id, me);
            not_gone(view, *id);
            let room = room.as_deref().expect("a v2 join names the room");
            let members = view
                .rooms
                .get_mut(room)
                .expect("a join of a room I am not in");
            if let Some(members) = members {
                assert!(members.insert(*id), "{id} joined {room} twice");
            }
        }
        ServerMsg::Leave {
            id,
            room: Some(room),
            reason,
            ..
        } => {
            assert_ne!(*id, me);
            assert_eq!(*reason, LeaveReason::Part);
            not_gone(view, *id);
            let members = view
                .rooms
                .get_mut(&**room)
                .expect("a part of a room I am not in");
            if let Some(members) = members {
                assert!(members.remove(id), "{id} parted {room} without being in it");
            }
        }
        ServerMsg::Leave { id, reason, .. } => {
            assert_ne!(*id, me);
            assert_ne!(*reason, LeaveReason::Part);
            not_gone(view, *id);
            assert_ne!(
                view.shares(*id),
                Some(false),
                "a leave of {id}, who shared nothing"
            );
            for members in view.rooms.values_mut().flatten() {
                members.remove(id);
            }
            view.gone.insert(*id);
        }
        ServerMsg::Nick { id, old, new, .. } => {
            if *id == me {
                assert_eq!(*old, view.nick);
                view.nick = new.to_string();
            } else {
                not_gone(view, *id);
                assert_ne!(
                    view.shares(*id),
                    Some(false),
                    "a rename of {id}, who shares nothing"
                );
            }
        }
        ServerMsg::Group {
            from, room, seq, ..
        } => {
            let room = room.as_deref().expect("a v2 group names the room");
            assert!(view.rooms.contains_key(room), "a group in {room}, not mine");
            assert!(*seq > view.last_seq, "seq {seq} after {}", view.last_seq);
            view.last_seq = *seq;
            assert_ne!(*from, view.nick, "my own group came back");
        }
        ServerMsg::Topic { room, .. } => {
            assert!(
                view.rooms.contains_key(&**room),
                "a topic of {room}, not mine"
            );
        }
        ServerMsg::Rooms { rooms } => {
            for (room, members) in &view.rooms {
                let entry = rooms.iter().find(|r| r.name == *room);
                let entry = entry.unwrap_or_else(|| panic!("rooms without my {room}"));
                if let Some(members) = members {
                    assert_eq!(entry.users, members.len() as u64, "{room}'s count");
                }
            }
        }
        ServerMsg::Private { to, .. } => assert_eq!(*to, view.nick),
        ServerMsg::History { messages, .. } => {
            assert!(
                messages.windows(2).all(|w| w[0].seq < w[1].seq),
                "history not oldest first"
            );
        }
        ServerMsg::Bye { .. } => view.rooms.clear(),
        // An account is always the name its owner holds when the answer
        // comes: registered under it, or renamed to it by the login.
        ServerMsg::Registered { account } | ServerMsg::LoggedIn { account } => {
            assert_eq!(**account, view.nick, "{me}'s account");
        }
        ServerMsg::LoggedOut => {}
        ServerMsg::Error { .. } | ServerMsg::Pong { .. } => {}
        ServerMsg::Unknown => panic!("a message of no known type"),
    }
}

/// The lines a peer has read: all valid, `welcome` first, nothing after
/// `bye`, each one fitting the peer's view.
fn check_lines(conn: &mut Conn) -> Vec<ServerMsg<'static>> {
    let mut msgs = Vec::new();
    let complete = match conn.got.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => return msgs,
    };
    let bytes: Vec<u8> = conn.got.drain(..complete).collect();
    for line in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
        assert!(!conn.saw_bye, "a line after bye");
        let msg = match ServerMsg::decode(line) {
            Ok(msg) => msg,
            Err(e) => panic!("{e}: {:?}", String::from_utf8_lossy(line)),
        };
        let _: serde_json::Value = serde_json::from_slice(line).expect("strict JSON");
        if conn.lines == 0 {
            let ServerMsg::Welcome { id, users, .. } = msg else {
                panic!("first line {msg:?}");
            };
            assert_eq!(id, conn.id);
            assert!(users >= 1 && users as usize <= MAX_CONNS);
        } else {
            assert!(
                !matches!(msg, ServerMsg::Welcome { .. }),
                "a second welcome"
            );
        }
        settle(conn);
        apply(conn, &msg);
        conn.saw_bye = matches!(msg, ServerMsg::Bye { .. });
        conn.lines += 1;
        msgs.push(msg);
    }
    settle(conn);
    msgs
}

fn check_framing(conn: &Conn, max_line: usize) {
    // Input after a `quit` line is never consumed, so `fed` ends there.
    let expected = reference(&conn.fed, max_line);
    assert_eq!(
        conn.frames,
        expected,
        "framing of {:?}",
        String::from_utf8_lossy(&conn.fed)
    );
}

fuzz_target!(|data: &[u8]| {
    let [limit, queue, script @ ..] = data else {
        return;
    };
    let max_line = 1 + usize::from(*limit);
    let config = Config {
        welcome: "Welcome!".to_owned(),
        default_room: LOBBY.to_owned(),
        max_rooms: MAX_ROOMS,
    };
    let mut hub = Hub::new(config, 64 * (1 + usize::from(*queue)));
    // No per-address limit: every connection comes from one address here.
    let rules = AccountRules {
        per_minute: 0,
        ..AccountRules::default()
    };
    hub.core.set_accounts(rules, &[]);
    hub.hash_inline(Worker::new(&Book::memory(), Cost::CHEAP));
    let mut world = World {
        hub,
        conns: Vec::new(),
        max_line,
        now_ms: 1_764_165_600_000,
        shut: false,
        freed: Vec::new(),
        seq: 0,
    };
    world.join();
    for segment in script.split(|&b| b == 0xff) {
        let Some((&op, body)) = segment.split_first() else {
            continue;
        };
        world.now_ms += 1;
        let k = usize::from(op >> 4);
        let k = if world.conns.is_empty() {
            0
        } else {
            k % world.conns.len()
        };
        match op & 0x0f {
            8 => world.join(),
            _ if world.conns.is_empty() => {}
            9 => world.close(k),
            10 => {
                world.read(k, usize::MAX);
            }
            11 => {
                world.read(k, body.first().map_or(1, |&b| usize::from(b) + 1));
            }
            12 => {
                world.observe(None, |hub| hub.shutdown());
                world.shut = true;
            }
            13 => world.hang_up(k),
            14 => {
                let pick = body.first().copied().unwrap_or(0);
                let name = ["ann", "Bob"][usize::from(pick >> 4) % 2];
                let password = ["password one", "password two"][usize::from(pick >> 5) % 2];
                let line = match pick % 4 {
                    0 => format!(r#"{{"type":"nick","nick":"{name}"}}"#),
                    1 => format!(r#"{{"type":"register","password":"{password}"}}"#),
                    2 => format!(
                        r#"{{"type":"login","account":"{name}","password":"{password}"}}"#
                    ),
                    _ => r#"{"type":"logout"}"#.to_owned(),
                };
                world.feed(k, format!("{line}\n").as_bytes());
            }
            _ => world.feed(k, body),
        }
        world.check();
    }
    if !world.shut {
        world.census();
        world.check();
    }
    for k in (0..world.conns.len()).rev() {
        world.read(k, usize::MAX);
    }
    while let Some(conn) = world.conns.last() {
        if world.shut {
            assert!(conn.saw_bye, "shutdown without bye for {}", conn.id);
        }
        check_framing(conn, world.max_line);
        let k = world.conns.len() - 1;
        world.close(k);
    }
    assert_eq!(world.hub.core.here(), 0);
});
