//! What a client can send the server, from bytes on the socket to what every
//! other user is sent: `LineReader::feed` with a small line limit, then
//! `Room`, which parses each line with `wire::parse_client_line`.
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
//!   connection. Most operations feed the bytes to a connection.
//!
//! Checked along the way: framing hands out the lines the whole stream
//! holds, whatever the chunks; nothing buffers past the limit; the room's
//! count of users is joins minus departures; every queue holds complete
//! lines of valid server messages, `welcome` first and nothing after
//! `bye`. At the end a newcomer checks that `who`, `private` and `nick`
//! agree about who is here.

#![no_main]

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::SocketAddr;

use chat::framing::{Frame, LineReader};
use chat::server::room::{Departure, Flow, Presence, Room};
use chat::wire::{self, LeaveReason, ServerMsg};
use libfuzzer_sys::fuzz_target;

const MAX_CONNS: usize = 16;

/// A frame as the reader reported it, kept to compare with the reference.
#[derive(Debug, PartialEq)]
enum Seen {
    Line(Vec<u8>),
    TooLong,
}

/// One connection, as the event loop sees it and as its peer would.
struct Conn {
    slot: usize,
    id: u64,
    reader: LineReader,
    /// Every byte the reader consumed, for the framing reference.
    fed: Vec<u8>,
    frames: Vec<Seen>,
    /// It sent `quit`: no more reading, close once written.
    closing: bool,
    /// What the peer has read so far, not yet split into lines.
    got: Vec<u8>,
    lines: usize,
    saw_bye: bool,
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
    room: Room,
    conns: Vec<Conn>,
    max_line: usize,
    now_ms: u64,
    shut: bool,
    /// Nicknames given up (renamed from, or held by someone who left),
    /// which must be free again unless someone took them since.
    freed: Vec<String>,
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5000))
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
    /// A new connection, unless there are enough or the server is stopping.
    fn join(&mut self) {
        if self.conns.len() >= MAX_CONNS || self.shut {
            return;
        }
        let here = self.room.here();
        let slot = self.room.join(addr(), self.now_ms);
        assert_eq!(self.room.here(), here + 1);
        let id = self.room.user(slot).expect("joined").id;
        assert!(
            self.conns.iter().all(|c| c.slot != slot && c.id != id),
            "slot {slot} or id {id} handed out twice"
        );
        self.conns.push(Conn {
            slot,
            id,
            reader: LineReader::new(self.max_line),
            fed: Vec::new(),
            frames: Vec::new(),
            closing: false,
            got: Vec::new(),
            lines: 0,
            saw_bye: false,
        });
    }

    /// Bytes arrive from `conns[k]`: the event loop's `handle_input`.
    fn feed(&mut self, k: usize, bytes: &[u8]) {
        let World {
            room,
            conns,
            max_line,
            now_ms,
            ..
        } = self;
        let conn = &mut conns[k];
        if conn.closing || self.shut {
            return;
        }
        let slot = conn.slot;
        let mut flow = Flow::Continue;
        let consumed = conn.reader.feed(bytes, |frame| {
            let before = room.user(slot).expect("fed a live slot").msgs_in;
            match frame {
                Frame::Line(line) => {
                    assert!(line.len() < *max_line, "a line past the limit");
                    assert!(!line.contains(&b'\n'));
                    conn.frames.push(Seen::Line(line.to_vec()));
                    let parsed = wire::parse_client_line(line);
                    if let Err(refusal) = &parsed {
                        assert!(!refusal.message.is_empty(), "{:?}", refusal.code);
                    }
                    let queued = room.user(slot).map_or(0, |u| u.out.len());
                    flow = room.handle_line(slot, line, *now_ms);
                    let user = room.user(slot).expect("still there after a line");
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
                            assert!(user.out.len() > queued, "a refusal queued nothing");
                        }
                    }
                }
                Frame::TooLong => {
                    conn.frames.push(Seen::TooLong);
                    room.line_too_long(slot, *max_line);
                    let user = room.user(slot).expect("still there");
                    assert_eq!(user.msgs_in, before + 1);
                }
            }
            flow == Flow::Continue
        });
        assert!(consumed <= bytes.len());
        assert!(
            conn.reader.pending() < *max_line,
            "{} bytes buffered with a limit of {max_line}",
            conn.reader.pending()
        );
        conn.fed.extend_from_slice(&bytes[..consumed]);
        if flow == Flow::Close {
            assert_eq!(
                room.user(slot).map(|u| u.presence),
                Some(Presence::Gone(Departure::Left(LeaveReason::Quit)))
            );
            conn.closing = true;
            check_framing(conn, *max_line);
        } else {
            assert_eq!(consumed, bytes.len(), "stopped early without a quit");
        }
        if room.has_over() {
            self.drop_slow();
        }
    }

    /// The event loop's `relieve`, for peers that read nothing meanwhile.
    fn drop_slow(&mut self) {
        let dropped = self.room.drop_slow(self.now_ms);
        assert!(!self.room.has_over());
        for slot in dropped {
            let user = self.room.user(slot).expect("dropped a live slot");
            assert_eq!(
                user.presence,
                Presence::Gone(Departure::Left(LeaveReason::Slow))
            );
            assert!(user.out.is_empty(), "a slow reader's queue was kept");
            let k = self
                .conns
                .iter()
                .position(|c| c.slot == slot)
                .expect("dropped someone unknown");
            self.close(k);
        }
    }

    /// The peer reads up to `budget` bytes.
    fn read(&mut self, k: usize, budget: usize) {
        let conn = &mut self.conns[k];
        let user = self.room.user_mut(conn.slot).expect("a live slot");
        let queued = user.out.len();
        let mut socket = Socket {
            left: budget,
            into: Vec::new(),
        };
        let written = user
            .out
            .write_to(&mut socket)
            .expect("blocking is no error");
        assert_eq!(written, socket.into.len());
        assert_eq!(written, queued.min(budget));
        assert_eq!(user.out.len(), queued - written);
        conn.got.extend_from_slice(&socket.into);
        check_lines(conn);
        if conn.closing && self.room.user(conn.slot).is_some_and(|u| u.out.is_empty()) {
            self.close(k);
        }
    }

    /// The socket is gone: the room forgets the connection.
    fn close(&mut self, k: usize) {
        let conn = self.conns.swap_remove(k);
        let was_here = self
            .room
            .user(conn.slot)
            .is_some_and(|u| u.presence == Presence::Here);
        let here = self.room.here();
        let user = self
            .room
            .remove(conn.slot, self.now_ms)
            .expect("a live slot");
        assert_eq!(user.id, conn.id);
        self.freed.push(user.nick.as_str().to_owned());
        assert_eq!(self.room.here(), here - usize::from(was_here));
        assert!(self.room.user(conn.slot).is_none());
        check_framing(&conn, self.max_line);
    }

    /// What holds between any two operations.
    fn check(&mut self) {
        let here = self
            .conns
            .iter()
            .filter(|c| !c.closing && !self.shut)
            .count();
        assert_eq!(self.room.here(), here, "joins minus departures");
        for conn in &self.conns {
            let user = self.room.user(conn.slot).expect("a live slot");
            assert_eq!(user.id, conn.id);
            let present = user.presence == Presence::Here;
            assert_eq!(present, !conn.closing && !self.shut, "{:?}", user.presence);
            assert!(
                wire::check_nick(user.nick.as_str()).is_ok()
                    || user.nick.as_str() == format!("guest{}", user.id)
            );
        }
        for renamed in std::mem::take(&mut self.room.renames) {
            self.freed.push(renamed.old.as_str().to_owned());
        }
        let mut dirty = Vec::new();
        self.room.take_dirty(&mut dirty);
        let unique: HashSet<&usize> = dirty.iter().collect();
        assert_eq!(unique.len(), dirty.len(), "a slot listed twice as dirty");
    }

    /// A newcomer asks who is here and writes to each: the nickname index,
    /// the user list and the count must agree.
    fn census(&mut self) {
        if self.shut || self.conns.len() >= MAX_CONNS {
            return;
        }
        self.join();
        let me = self.conns.len() - 1;
        let slot = self.conns[me].slot;
        let here = self.room.here();
        self.read(me, usize::MAX);
        self.conns[me].got.clear();
        self.room
            .handle_line(slot, br#"{"type":"who"}"#, self.now_ms);
        let Some(ServerMsg::Who { users, .. }) = self.answer(me) else {
            panic!("no answer to who");
        };
        assert_eq!(users.len(), here, "who lists {users:?}");
        let ids: HashSet<u64> = users.iter().map(|u| u.id).collect();
        assert_eq!(ids.len(), users.len(), "an id listed twice");
        let nicks: HashSet<String> = users.iter().map(|u| u.nick.to_ascii_lowercase()).collect();
        assert_eq!(nicks.len(), users.len(), "a nickname held twice");
        for conn in &self.conns {
            let user = self.room.user(conn.slot).expect("live");
            let listed = users.iter().find(|u| u.id == conn.id);
            if user.presence == Presence::Here {
                assert_eq!(listed.map(|u| &*u.nick), Some(user.nick.as_str()));
            } else {
                assert!(listed.is_none(), "{} is gone but listed", conn.id);
            }
        }
        for entry in &users {
            let to = entry.nick.to_ascii_uppercase();
            let line = format!(r#"{{"type":"private","to":"{to}","text":"hi"}}"#);
            self.room.handle_line(slot, line.as_bytes(), self.now_ms);
            if entry.id == self.conns[me].id {
                assert!(matches!(self.answer(me), Some(ServerMsg::Private { .. })));
            } else {
                assert!(self.answer(me).is_none(), "private to {to} refused");
                let k = self
                    .conns
                    .iter()
                    .position(|c| c.id == entry.id)
                    .expect("known");
                self.read(k, usize::MAX);
                let got = &self.conns[k].got;
                assert!(got.is_empty(), "a partial line was left");
                let line = format!(r#"{{"type":"nick","nick":"{}"}}"#, entry.nick);
                self.room.handle_line(slot, line.as_bytes(), self.now_ms);
                let Some(ServerMsg::Error { code, .. }) = self.answer(me) else {
                    panic!("took {}'s nickname", entry.nick);
                };
                let reserved = wire::is_guest_name(&entry.nick);
                let refused = if reserved {
                    wire::ErrorCode::BadNick
                } else {
                    wire::ErrorCode::NickInUse
                };
                assert_eq!(code, refused);
            }
        }
        // Every name given up and not held now can be taken.
        let held: HashSet<String> = users.iter().map(|u| u.nick.to_ascii_lowercase()).collect();
        let mut tried = HashSet::new();
        for name in std::mem::take(&mut self.freed) {
            let key = name.to_ascii_lowercase();
            if held.contains(&key) || wire::is_guest_name(&name) || !tried.insert(key) {
                continue;
            }
            let line = format!(r#"{{"type":"nick","nick":"{name}"}}"#);
            self.room.handle_line(slot, line.as_bytes(), self.now_ms);
            match self.answer(me) {
                Some(ServerMsg::Nick { new, .. }) => assert_eq!(new, name),
                other => panic!("{name} was given up but is not free: {other:?}"),
            }
        }
    }

    /// The one message `conns[k]` was sent since it last read, if any.
    fn answer(&mut self, k: usize) -> Option<ServerMsg<'static>> {
        let conn = &mut self.conns[k];
        let user = self.room.user_mut(conn.slot).expect("live");
        let mut bytes = Vec::new();
        user.out.write_to(&mut bytes).expect("a Vec takes it all");
        let mut lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let first = lines.next().map(|l| ServerMsg::decode(l).expect("valid"));
        assert!(lines.next().is_none(), "more than one answer");
        first
    }
}

/// The lines a peer has read: all valid, `welcome` first, nothing after
/// `bye`.
fn check_lines(conn: &mut Conn) {
    let complete = match conn.got.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => return,
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
        conn.saw_bye = matches!(msg, ServerMsg::Bye { .. });
        conn.lines += 1;
    }
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
    let mut world = World {
        room: Room::new("Welcome!".to_owned(), 64 * (1 + usize::from(*queue))),
        conns: Vec::new(),
        max_line,
        now_ms: 1_764_165_600_000,
        shut: false,
        freed: Vec::new(),
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
            10 => world.read(k, usize::MAX),
            11 => world.read(k, body.first().map_or(1, |&b| usize::from(b) + 1)),
            12 => {
                world.room.shutdown();
                world.shut = true;
            }
            _ => world.feed(k, body),
        }
        world.check();
    }
    if !world.shut {
        world.census();
        world.check();
    }
    // Reading to the end may close a connection that quit, which moves
    // the last one into its place: going backwards visits each once.
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
    assert_eq!(world.room.here(), 0);
});
