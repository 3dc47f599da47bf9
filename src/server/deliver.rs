//! From events to bytes in queues: each event encoded once per protocol,
//! its receivers' queues given a slice of the same bytes, and a note of
//! whom to write to.
//!
//! Back-pressure lives here too. A queue past `--max-queue` is listed as
//! over; the event loop writes to it at once (what the kernel takes was
//! never pending here) and then asks [`Delivery::drop_slow`] to make
//! whoever is still over leave as `slow`.
//!
//! Presence in big rooms is batched. A `join`, `leave` or `nick` for a room
//! of [`BATCH_REACH`] or more is queued at once, in its place among the
//! receiver's other messages, but the receiver is not written to for it
//! alone until the next presence tick ([`PRESENCE_DELAY`]): anything else
//! it gets meanwhile carries the waiting presence with it in the same
//! write. An arrival in a room of 10,000 is then 10,000 cheap queue
//! extensions instead of 10,000 system calls, while every member still sees
//! every arrival, in order.
//!
//! With a history store, a group message is stored before anyone receives
//! it. It waits in a FIFO ([`Delivery::hold_until_stored`]) with
//! everything emitted after it, for anyone, each entry encoded and its
//! receivers resolved when emitted (a room's members at that moment), so
//! that releasing it later changes neither order nor audience. The store's
//! "committed through seq S" ([`Delivery::release`]) releases from the
//! front every entry that needs no later commit. Each receiver's order,
//! and "a `pong` proves all earlier lines were processed", are those of
//! the FIFO, so they hold.

use std::collections::VecDeque;
use std::time::Duration;

use super::core::{Core, User};
use super::event::{Emit, Event};
use super::irc;
use super::json;
use super::name::Name;
use super::outq::{Encoded, OutQueue, Outbox};
use super::table::Key;
use crate::wire::LeaveReason;

/// Receivers from which presence is batched.
pub const BATCH_REACH: usize = 64;

/// The longest a batched presence event waits for its receiver's write.
pub const PRESENCE_DELAY: Duration = Duration::from_millis(250);

/// Entries the per-turn lists keep room for after a burst.
pub const KEEP_LISTED: usize = 1024;

/// The protocol a connection speaks: how events are encoded for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    JsonLines,
    Irc,
    /// The JSON messages, one per WebSocket text frame (`--listen-http`).
    WebSocket,
}

/// The IRCv3 tags an IRC connection asked for (`server-time`,
/// `message-tags`): each set is its own encoding of an event, so a
/// broadcast is still encoded at most once per set, never per receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tags {
    /// `time=` (server-time).
    pub time: bool,
    /// `msgid=` (message-tags).
    pub msgid: bool,
    /// `account=` on messages from logged-in users (account-tag).
    pub account: bool,
}

/// JSON lines, IRC with each of the eight sets of [`Tags`], WebSocket.
const DOORS: usize = 10;

impl Door {
    /// Writes one protocol JSON line as this door carries it: the line
    /// itself, or for a WebSocket a text frame holding it.
    pub fn json(self, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let start = out.len();
        write(out);
        if self == Door::WebSocket {
            super::ws::frame_line(out, start);
        }
    }

    fn index(self, tags: Tags) -> usize {
        match self {
            Door::JsonLines => 0,
            Door::WebSocket => 9,
            Door::Irc => {
                1 + usize::from(tags.time)
                    + 2 * usize::from(tags.msgid)
                    + 4 * usize::from(tags.account)
            }
        }
    }

    /// `receiver` is the first receiver's user: the bytes are shared by
    /// all receivers on this door, so a door reads it only for events to
    /// one (an answer; IRC's numerics name their receiver).
    /// `account` is the sender's, for a message from a logged-in user.
    fn encode(
        self,
        event: &Event,
        receiver: &User,
        tags: Tags,
        account: Option<&Name>,
        out: &mut Vec<u8>,
    ) {
        match self {
            Door::JsonLines | Door::WebSocket => self.json(out, |out| json::encode(event, out)),
            Door::Irc => {
                let account = account.map(Name::as_str);
                irc::encode(event, receiver.nick.as_str(), tags, account, out)
            }
        }
    }
}

/// A connection's output: its queue and where it stands in the lists.
#[derive(Debug)]
#[repr(C)]
pub struct Outlet {
    /// First: what every delivery writes.
    pub out: OutQueue,
    pub door: Door,
    /// IRC only: the tags its events carry.
    pub tags: Tags,
    /// Messages queued for it over its life.
    pub msgs_out: u64,
    /// Listed in `dirty`.
    dirty: bool,
    /// Listed in `over`.
    over: bool,
    /// Listed in `batched`.
    batched: bool,
    /// Entries of the hold FIFO it receives: a connection that is done
    /// closes only once they are released and written.
    held: u32,
}

impl Outlet {
    pub fn new(door: Door) -> Outlet {
        Outlet {
            door,
            tags: Tags::default(),
            out: OutQueue::default(),
            msgs_out: 0,
            dirty: false,
            over: false,
            batched: false,
            held: 0,
        }
    }

    /// Whether something emitted for it waits for a commit.
    pub fn awaits_store(&self) -> bool {
        self.held > 0
    }
}

impl AsMut<Outlet> for Outlet {
    fn as_mut(&mut self) -> &mut Outlet {
        self
    }
}

/// The lists a queued message may put its receiver on.
struct Lists<'a> {
    dirty: &'a mut Vec<Key>,
    over: &'a mut Vec<Key>,
    batched: &'a mut Vec<Key>,
}

/// The hot path: per receiver, a range extension and a few flags.
fn enqueue(
    outlet: &mut Outlet,
    key: Key,
    bytes: &Encoded,
    batch: bool,
    max_queue: usize,
    lists: Lists<'_>,
) {
    outlet.out.push(bytes);
    outlet.msgs_out += 1;
    if batch {
        if !outlet.dirty && !outlet.batched {
            outlet.batched = true;
            lists.batched.push(key);
        }
    } else if !outlet.dirty {
        outlet.dirty = true;
        lists.dirty.push(key);
    }
    if outlet.out.cost() > max_queue && !outlet.over {
        outlet.over = true;
        lists.over.push(key);
    }
}

/// An emitted message waiting for the store (see the module comment).
struct Held {
    encoded: [Option<Encoded>; DOORS],
    receivers: Vec<Key>,
    batch: bool,
    asker: Option<Key>,
    /// Released once the store committed through this `seq`.
    needs_seq: u64,
}

pub struct Delivery {
    max_queue: usize,
    /// Group messages wait for their commit (a store is kept).
    holding: bool,
    held: VecDeque<Held>,
    /// Events for many are encoded apart from answers to one, so that one
    /// user's answers do not break everyone else's run of broadcasts into
    /// separate slices; and each door's encoding apart from the others',
    /// for the same reason: in a room of JSON-lines and WebSocket users,
    /// one outbox would interleave the two encodings of every event, and
    /// each receiver would hold a slice per event instead of one run (an
    /// arrival storm of N then held N² slices).
    for_all: [Outbox; DOORS],
    for_one: Outbox,
    /// Connections with output to write this turn.
    dirty: Vec<Key>,
    /// Connections whose queue went past `max_queue`.
    over: Vec<Key>,
    /// Connections holding only batched presence, to write at the tick.
    batched: Vec<Key>,
    emits: Vec<Emit>,
}

impl Delivery {
    pub fn new(max_queue: usize) -> Delivery {
        Delivery {
            max_queue,
            holding: false,
            held: VecDeque::new(),
            for_all: Default::default(),
            for_one: Outbox::default(),
            dirty: Vec::new(),
            over: Vec::new(),
            batched: Vec::new(),
            emits: Vec::new(),
        }
    }

    /// From now on group messages wait for [`Delivery::release`].
    pub fn hold_until_stored(&mut self) {
        self.holding = true;
    }

    /// Whether anything waits for the store.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// The store committed every group message up to `seq`: what waited
    /// only for those is queued, in the order it was emitted.
    pub fn release<C: AsMut<Outlet>>(&mut self, core: &mut Core<C>, seq: u64) {
        while self.held.front().is_some_and(|h| h.needs_seq <= seq) {
            let Some(held) = self.held.pop_front() else {
                break;
            };
            for &key in &held.receivers {
                let Some(conn) = core.conn_mut(key) else {
                    continue;
                };
                let outlet = conn.as_mut();
                outlet.held -= 1;
                let Some(bytes) = &held.encoded[outlet.door.index(outlet.tags)] else {
                    continue;
                };
                let lists = Lists {
                    dirty: &mut self.dirty,
                    over: &mut self.over,
                    batched: &mut self.batched,
                };
                let batch = held.batch && Some(key) != held.asker;
                enqueue(outlet, key, bytes, batch, self.max_queue, lists);
            }
        }
    }

    /// Queues everything the core emitted, in order. The events that
    /// concern more than their receivers (see [`Event::is_broadcast`]) then
    /// go on to `journal`, for the connection log (and a store) to read.
    pub fn deliver<C: AsMut<Outlet>>(&mut self, core: &mut Core<C>, journal: &mut Vec<Event>) {
        core.take_emitted(&mut self.emits);
        if self.emits.is_empty() {
            return;
        }
        let mut emits = std::mem::take(&mut self.emits);
        for emit in emits.drain(..) {
            self.queue(core, &emit);
            if emit.event.is_broadcast() {
                journal.push(emit.event);
            }
        }
        self.emits = emits;
    }

    fn queue<C: AsMut<Outlet>>(&mut self, core: &mut Core<C>, emit: &Emit) {
        let mut encoded: [Option<Encoded>; DOORS] = Default::default();
        // Looked up once per message, for IRC's account-tag.
        let account = match &emit.event {
            Event::Group { from, .. } | Event::Private { from, .. } => core
                .find_nick(from.as_str())
                .and_then(|k| core.user(k)?.account.as_deref().cloned()),
            _ => None,
        };
        let account = account.as_ref();
        let batch = emit.event.is_presence() && core.reach(&emit.to) >= BATCH_REACH;
        let broadcast = emit.event.is_broadcast();
        let Delivery {
            max_queue,
            holding,
            held,
            for_all,
            for_one,
            dirty,
            over,
            batched,
            ..
        } = self;
        let needs_seq = match (&emit.event, held.back()) {
            (Event::Group { seq, .. }, _) if *holding => Some(*seq),
            (_, Some(last)) => Some(last.needs_seq),
            _ => None,
        };
        if let Some(needs_seq) = needs_seq {
            let mut receivers = Vec::with_capacity(core.reach(&emit.to));
            core.for_each_receiver(&emit.to, |key, user, conn| {
                let outlet = conn.as_mut();
                let (door, tags) = (outlet.door, outlet.tags);
                let i = door.index(tags);
                encoded[i].get_or_insert_with(|| {
                    let outbox = if broadcast {
                        &mut for_all[i]
                    } else {
                        &mut *for_one
                    };
                    outbox.encode_with(|out| door.encode(&emit.event, user, tags, account, out))
                });
                outlet.held += 1;
                receivers.push(key);
            });
            held.push_back(Held {
                encoded,
                receivers,
                batch,
                asker: emit.asker,
                needs_seq,
            });
            return;
        }
        core.for_each_receiver(&emit.to, |key, user, conn| {
            let outlet = conn.as_mut();
            let (door, tags) = (outlet.door, outlet.tags);
            let i = door.index(tags);
            let bytes = encoded[i].get_or_insert_with(|| {
                let outbox = if broadcast {
                    &mut for_all[i]
                } else {
                    &mut *for_one
                };
                outbox.encode_with(|out| door.encode(&emit.event, user, tags, account, out))
            });
            let lists = Lists {
                dirty,
                over,
                batched,
            };
            let batch = batch && Some(key) != emit.asker;
            enqueue(outlet, key, bytes, batch, *max_queue, lists);
        });
    }

    /// Queues a door's own answer for one connection (a `pong`), after
    /// everything queued for it so far.
    pub fn answer<C: AsMut<Outlet>>(
        &mut self,
        core: &mut Core<C>,
        key: Key,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let Some(conn) = core.conn_mut(key) else {
            return;
        };
        let bytes = self.for_one.encode_with(write);
        if let Some(last) = self.held.back() {
            let outlet = conn.as_mut();
            let mut encoded: [Option<Encoded>; DOORS] = Default::default();
            encoded[outlet.door.index(outlet.tags)] = Some(bytes);
            outlet.held += 1;
            let needs_seq = last.needs_seq;
            self.held.push_back(Held {
                encoded,
                receivers: vec![key],
                batch: false,
                asker: None,
                needs_seq,
            });
            return;
        }
        let lists = Lists {
            dirty: &mut self.dirty,
            over: &mut self.over,
            batched: &mut self.batched,
        };
        enqueue(conn.as_mut(), key, &bytes, false, self.max_queue, lists);
    }

    /// Takes the connections with output to write.
    pub fn take_dirty<C: AsMut<Outlet>>(&mut self, core: &mut Core<C>, into: &mut Vec<Key>) {
        into.clear();
        std::mem::swap(into, &mut self.dirty);
        for &key in into.iter() {
            if let Some(conn) = core.conn_mut(key) {
                conn.as_mut().dirty = false;
            }
        }
    }

    /// Lists a connection to be written (its socket became writable, or it
    /// is closing with output left).
    pub fn mark_dirty<C: AsMut<Outlet>>(&mut self, core: &mut Core<C>, key: Key) {
        if let Some(conn) = core.conn_mut(key) {
            let outlet = conn.as_mut();
            if !outlet.dirty && !outlet.out.is_empty() {
                outlet.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Lets go of the room the lists grew to in a burst (a join storm
    /// lists every member of a big room for each arrival), keeping what
    /// an ordinary turn needs. Called with the heap trim, after a tick.
    pub fn shrink<C: AsMut<Outlet>>(&mut self, core: &mut Core<C>) {
        for list in [&mut self.dirty, &mut self.over, &mut self.batched] {
            list.shrink_to(KEEP_LISTED);
        }
        self.emits.shrink_to(KEEP_LISTED);
        // `take_emitted` swaps the core's list with ours: shrink that one
        // too. Both are empty between turns.
        if self.emits.is_empty() {
            core.take_emitted(&mut self.emits);
            self.emits.shrink_to(KEEP_LISTED);
        }
    }

    /// Whether batched presence waits for the tick.
    pub fn has_batched(&self) -> bool {
        !self.batched.is_empty()
    }

    /// The presence tick: everyone holding batched presence is written.
    /// Returns how many were waiting.
    pub fn release_batched<C: AsMut<Outlet>>(&mut self, core: &mut Core<C>) -> usize {
        let batched = std::mem::take(&mut self.batched);
        for &key in &batched {
            if let Some(conn) = core.conn_mut(key) {
                conn.as_mut().batched = false;
            }
            self.mark_dirty(core, key);
        }
        batched.len()
    }

    /// Whether some queue is past the limit and must be written or judged
    /// before more input is handled.
    pub fn has_over(&self) -> bool {
        !self.over.is_empty()
    }

    /// Connections whose queue went past the limit, to write now.
    pub fn over(&self) -> &[Key] {
        &self.over
    }

    /// Users whose queue is still past the limit after being written to
    /// leave (reason `slow`); their keys are returned for the event loop
    /// to close. Telling the others can push more of them over, so this
    /// repeats until nobody is.
    pub fn drop_slow<C: AsMut<Outlet>>(
        &mut self,
        core: &mut Core<C>,
        now_ms: u64,
        journal: &mut Vec<Event>,
    ) -> Vec<Key> {
        let mut dropped = Vec::new();
        while !self.over.is_empty() {
            for key in std::mem::take(&mut self.over) {
                let here = core.user(key).is_some_and(|u| u.is_here());
                let Some(conn) = core.conn_mut(key) else {
                    continue;
                };
                let outlet = conn.as_mut();
                outlet.over = false;
                if outlet.out.cost() > self.max_queue && here {
                    outlet.out.clear();
                    core.depart(key, LeaveReason::Slow, None, now_ms);
                    dropped.push(key);
                }
            }
            self.deliver(core, journal);
        }
        dropped
    }
}
