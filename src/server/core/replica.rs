//! The core as one replica of a cluster's shared state (`--cluster`).
//!
//! The users of other servers are records without a connection: they are
//! in rooms and hold names, and deliveries skip them. Changes made here
//! are noted as [`Op`]s for the stream, as they are emitted; changes that
//! come back from the stream are applied here in stream order, those of
//! other servers to their users, and group messages (which wait for the
//! stream, for their `seq`) for everyone.

use std::collections::HashMap;
use std::rc::Rc;

use super::{Core, Presence, Record, RoomSet, User};
use crate::server::attempts::ConnTries;
use crate::server::cluster::{Op, Private, op};
use crate::server::event::{Event, RoomId, To};
use crate::server::name::Name;
use crate::server::table::Key;
use crate::wire::{ErrorCode, LeaveReason};

/// What a server of a cluster keeps besides the core's own state.
#[derive(Debug, Default)]
pub struct Replica {
    /// This process's instance id.
    instance: Rc<str>,
    /// The stream sequence of this instance's `Hello`: a `Hello` after it
    /// is a server that started since.
    hello: u64,
    /// Every user's key by its cluster-wide id, here or remote.
    by_id: HashMap<u64, Key>,
    /// The users of other servers, and their server's instance.
    remote: HashMap<u64, Rc<str>>,
    /// NATS is away: what needs the cluster is refused.
    pub down: bool,
    /// Applying the stream: what is emitted now is not ours to publish.
    applying: bool,
    /// Changes made here, for the stream, in order.
    ops: Vec<Op>,
    /// Private messages for users of other servers, with their server.
    privates: Vec<(Rc<str>, Private)>,
    /// Names to claim cluster-wide before a user here takes them.
    claims: Vec<Claim>,
    /// Names users here held and no longer do (as KV keys).
    releases: Vec<Release>,
    /// Group messages of users here on their way through the stream.
    in_flight: HashMap<u64, u32>,
    /// Users here who left with messages in flight: they stay in their
    /// rooms until their leave comes back from the stream, after those.
    leaving: HashMap<u64, ()>,
}

/// A user here wants a name: it is theirs once the cluster's name table
/// (a NATS key-value bucket, created only if absent) says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub key: Key,
    pub id: u64,
    pub nick: String,
    /// The name's key in the bucket: its comparison key, hex.
    pub name: String,
    /// A name to arrive with (IRC's registration, or a required login)
    /// rather than a rename: the answer goes to whoever waits to arrive.
    pub arrival: bool,
}

/// A name user `id` here held and no longer does: the name table's entry
/// goes if it still says `id`'s (and nobody else's since).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The name's key in the bucket (its comparison key, hex).
    pub name: String,
    pub id: u64,
}

/// A name's key in the cluster's name table: its comparison key in hex,
/// which NATS takes as a key whatever the script.
pub fn claim_key(nick: &str) -> String {
    Name::key_of(nick)
        .as_str()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Guest names are unique by their id: never claimed.
fn is_guest(nick: &str) -> bool {
    nick.strip_prefix("guest")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What applying an op asks of the edge.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The others declared this instance gone: its users are unknown to
    /// them, and must reconnect.
    DroppedMe,
}

pub const UNAVAILABLE: &str = "the server lost contact with the rest of the cluster; \
                               try again in a moment";

impl<C> Core<C> {
    /// Makes this core a replica of a cluster: its users are numbered from
    /// `id_base`, a block no other server uses.
    pub fn join_cluster(&mut self, instance: &str, id_base: u64) {
        self.next_id = self.next_id.max(id_base);
        self.replica = Some(Box::new(Replica {
            instance: instance.into(),
            hello: id_base.saturating_sub(1) >> super::super::cluster::op::ID_BITS,
            ..Replica::default()
        }));
    }

    pub fn is_clustered(&self) -> bool {
        self.replica.is_some()
    }

    /// The changes made here since the last call, in order.
    pub fn take_ops(&mut self, into: &mut Vec<Op>) {
        if let Some(r) = &mut self.replica {
            into.append(&mut r.ops);
        }
    }

    /// Private messages for other servers since the last call.
    pub fn take_privates(&mut self) -> Vec<(Rc<str>, Private)> {
        self.replica
            .as_mut()
            .map(|r| std::mem::take(&mut r.privates))
            .unwrap_or_default()
    }

    /// Whether a rename waits to be handed to the name table.
    pub fn has_claims(&self) -> bool {
        self.replica.as_ref().is_some_and(|r| !r.claims.is_empty())
    }

    /// Names to claim since the last call.
    pub fn take_claims(&mut self) -> Vec<Claim> {
        self.replica
            .as_mut()
            .map(|r| std::mem::take(&mut r.claims))
            .unwrap_or_default()
    }

    /// Names to release since the last call.
    pub fn take_releases(&mut self) -> Vec<Release> {
        self.replica
            .as_mut()
            .map(|r| std::mem::take(&mut r.releases))
            .unwrap_or_default()
    }

    /// A rename checked here waits for the cluster's name table.
    pub(super) fn claim(&mut self, key: Key, id: u64, nick: &Name) {
        if let Some(r) = &mut self.replica {
            r.claims.push(Claim {
                key,
                id,
                nick: nick.as_str().into(),
                name: claim_key(nick.as_str()),
                arrival: false,
            });
        }
    }

    /// A user here is about to arrive as `nick` (already checked here):
    /// in a cluster the name table must say it is theirs first, as for a
    /// rename, or two servers could admit one name. Returns whether a
    /// claim was queued (the arrival then waits for its answer).
    pub fn claim_arrival(&mut self, key: Key, nick: &str) -> bool {
        if !self.noting() || is_guest(nick) {
            return false;
        }
        let Some(id) = self.user(key).map(|u| u.id) else {
            return false;
        };
        if let Some(r) = &mut self.replica {
            r.claims.push(Claim {
                key,
                id,
                nick: nick.into(),
                name: claim_key(nick),
                arrival: true,
            });
        }
        true
    }

    /// The name table's answer to a [`Claim`]: the rename is made, or
    /// refused as `nick_in_use`.
    pub fn claimed(&mut self, claim: Claim, ok: bool, now_ms: u64) {
        if claim.arrival
            && let Some(r) = self.table.get(claim.key)
            && r.user.id == claim.id
            && r.user.is_here()
            && !r.user.admitted
            && r.conn.is_some()
        {
            return self.login_claimed(claim, ok, now_ms);
        }
        let here = self
            .table
            .get(claim.key)
            .filter(|r| r.user.id == claim.id && r.user.is_here() && r.conn.is_some())
            .map(|r| r.user.nick.clone());
        let Some(old) = here else {
            // Gone meanwhile: the name is nobody's.
            if ok && let Some(r) = &mut self.replica {
                r.releases.push(Release {
                    name: claim.name,
                    id: claim.id,
                });
            }
            return;
        };
        let new = Name::new(&claim.nick);
        let taken_here = self.holder(&new.key()).is_some_and(|k| k != claim.key);
        if !ok || taken_here {
            let message = format!("{} is already taken; choose another nickname", claim.nick);
            return self.refuse(claim.key, ErrorCode::NickInUse, &message);
        }
        self.set_nick(claim.key, old, new, now_ms);
    }

    /// Whether NATS is away.
    pub fn cluster_down(&self) -> bool {
        self.replica.as_ref().is_some_and(|r| r.down)
    }

    /// NATS was lost or is back: every user here is told.
    pub fn set_cluster_down(&mut self, down: bool) {
        let Some(r) = &mut self.replica else {
            return;
        };
        if r.down == down {
            return;
        }
        r.down = down;
        let (code, message) = if down {
            (
                ErrorCode::ClusterDegraded,
                "the server lost contact with the rest of the cluster: you stay connected, \
                 and what you see here is this server's view; joins, names, topics and \
                 group messages are refused until it is back",
            )
        } else {
            (
                ErrorCode::ClusterRestored,
                "the server is in contact with the rest of the cluster again",
            )
        };
        for key in self.locals() {
            self.emit(
                Event::Error {
                    code,
                    message: message.into(),
                },
                To::One(key),
            );
        }
    }

    /// The users connected here.
    pub fn locals(&self) -> Vec<Key> {
        self.table
            .iter()
            .filter(|(_, r)| r.conn.is_some() && r.user.is_here())
            .map(|(key, _)| key)
            .collect()
    }

    /// How many users of other servers are here without a connection.
    pub(super) fn remote_count(&self) -> usize {
        self.replica.as_ref().map_or(0, |r| r.remote.len())
    }

    /// Notes a user numbered `id` (here or remote) under `key`.
    pub(super) fn note_id(&mut self, id: u64, key: Key) {
        if let Some(r) = &mut self.replica {
            r.by_id.insert(id, key);
        }
    }

    pub(super) fn forget_id(&mut self, id: u64) {
        if let Some(r) = &mut self.replica {
            r.by_id.remove(&id);
            r.remote.remove(&id);
        }
    }

    /// The users of other servers are forgotten (the server stops).
    pub(super) fn forget_remote(&mut self) {
        let Some(r) = &mut self.replica else {
            return;
        };
        let ids: Vec<u64> = r.remote.keys().copied().collect();
        for id in ids {
            if let Some(key) = self.replica.as_mut().and_then(|r| r.by_id.remove(&id)) {
                self.table.remove(key);
            }
        }
        if let Some(r) = &mut self.replica {
            r.remote.clear();
        }
    }

    /// An event emitted by a change made here: noted for the stream.
    pub(super) fn note_emitted(&mut self, event: &Event) {
        let op = match event {
            Event::Join { id, nick, room, ts } => Op::Join {
                id: *id,
                nick: nick.as_str().into(),
                room: room.as_str().into(),
                ts: *ts,
            },
            Event::Leave {
                id,
                nick,
                reason,
                text,
                room,
                ts,
            } => match room {
                Some(room) => Op::Part {
                    id: *id,
                    room: room.as_str().into(),
                    text: text.as_deref().map(Into::into),
                    ts: *ts,
                },
                None => {
                    self.release(*id, nick, &Name::EMPTY);
                    Op::Leave {
                        id: *id,
                        reason: *reason,
                        text: text.as_deref().map(Into::into),
                        ts: *ts,
                    }
                }
            },
            Event::Nick { id, old, new, ts } => {
                self.release(*id, old, new);
                Op::Nick {
                    id: *id,
                    new: new.as_str().into(),
                    ts: *ts,
                }
            }
            Event::Topic { room, by, text, ts } => {
                let Some(id) = self
                    .find_nick(by.as_str())
                    .and_then(|k| self.user(k))
                    .map(|u| u.id)
                else {
                    return;
                };
                Op::Topic {
                    id,
                    room: room.as_str().into(),
                    text: text.as_ref().into(),
                    ts: *ts,
                }
            }
            _ => return,
        };
        if let Some(r) = &mut self.replica
            && !r.applying
        {
            r.ops.push(op);
        }
    }

    /// A user here no longer holds `old` (now `new`, or nothing): its
    /// claim is released, unless it is a guest name or the same name.
    fn release(&mut self, id: u64, old: &Name, new: &Name) {
        if let Some(r) = &mut self.replica
            && !r.applying
            && !is_guest(old.as_str())
            && old.key() != new.key()
        {
            r.releases.push(Release {
                name: claim_key(old.as_str()),
                id,
            });
        }
    }

    /// Whether changes made here are noted (a cluster, not while applying).
    pub(super) fn noting(&self) -> bool {
        self.replica.as_ref().is_some_and(|r| !r.applying)
    }

    /// A group message goes to the stream first; it is delivered when it
    /// comes back (see [`Core::apply`]).
    pub(super) fn say_to_cluster(&mut self, op: Op) {
        if let Some(r) = &mut self.replica {
            if let Op::Say { id, .. } = &op {
                *r.in_flight.entry(*id).or_default() += 1;
            }
            r.ops.push(op);
        }
    }

    /// A user here leaves with group messages in flight: its leave goes
    /// to the stream, and is applied here when it comes back, after them,
    /// so that its room hears its last words before its leave. Returns
    /// whether the leave waits.
    pub(super) fn defer_leave(
        &mut self,
        key: Key,
        reason: LeaveReason,
        text: Option<&str>,
        now_ms: u64,
    ) -> bool {
        let Some(user) = self.table.get(key).map(|r| &r.user) else {
            return false;
        };
        let (id, nick, admitted) = (user.id, user.nick.clone(), user.admitted);
        let Some(r) = &mut self.replica else {
            return false;
        };
        if r.applying || !admitted || r.in_flight.get(&id).is_none_or(|n| *n == 0) {
            return false;
        }
        r.leaving.insert(id, ());
        r.ops.push(Op::Leave {
            id,
            reason,
            text: text.map(Into::into),
            ts: now_ms,
        });
        self.release(id, &nick, &Name::EMPTY);
        true
    }

    /// A connection closes whose user's leave waits for the stream: the
    /// record stays, without its connection, until then; the edge gets
    /// the connection and a copy of the user for its log.
    pub(super) fn keep_leaving(&mut self, key: Key) -> Option<(User, C)> {
        let instance = self.replica.as_ref()?.instance.clone();
        let r = self.table.get_mut(key)?;
        let id = r.user.id;
        if !self.replica.as_ref()?.leaving.contains_key(&id) {
            return None;
        }
        let conn = r.conn.take()?;
        let u = &r.user;
        let copy = User {
            id: u.id,
            nick: u.nick.clone(),
            peer: u.peer,
            since_ms: u.since_ms,
            msgs_in: u.msgs_in,
            presence: u.presence,
            account: u.account.clone(),
            admitted: u.admitted,
            hashing: u.hashing,
            tries: ConnTries::default(),
            rooms: RoomSet::new(),
            visit: 0,
        };
        // Counted as a user without a connection from now on.
        if let Some(r) = &mut self.replica {
            r.remote.insert(id, instance);
        }
        Some((copy, conn))
    }

    /// A private message to `target`, if it is a user of another server.
    /// Returns whether it was sent there.
    pub(super) fn private_to_cluster(
        &mut self,
        target: Key,
        private: impl FnOnce(u64) -> Private,
    ) -> bool {
        let Some(user) = self
            .table
            .get(target)
            .filter(|r| r.conn.is_none())
            .map(|r| r.user.id)
        else {
            return false;
        };
        let Some(r) = &mut self.replica else {
            return false;
        };
        let Some(instance) = r.remote.get(&user).cloned() else {
            return false;
        };
        r.privates.push((instance, private(user)));
        true
    }

    /// A private message from another server, for a user here.
    pub fn private_from_cluster(&mut self, private: Private) {
        let Some(key) = self
            .replica
            .as_ref()
            .and_then(|r| r.by_id.get(&private.to).copied())
        else {
            return;
        };
        let Some(to) = self.nick_of(key) else {
            return;
        };
        if self.conn(key).is_none() {
            return;
        }
        self.emit(
            Event::Private {
                from: Name::new(&private.from),
                to,
                text: private.text.into(),
                ts: private.ts,
                action: private.action,
            },
            To::One(key),
        );
    }

    /// One change from the stream, in stream order: `seq` is its place.
    pub fn apply(&mut self, from: &str, mine: bool, seq: u64, op: Op, now_ms: u64) -> Applied {
        let Some(r) = &mut self.replica else {
            return Applied::Done;
        };
        if let Op::Gone { instance } = &op {
            if *instance == *r.instance {
                return Applied::DroppedMe;
            }
            r.applying = true;
            let ids: Vec<u64> = r
                .remote
                .iter()
                .filter(|(_, i)| ***i == **instance)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.remove_remote(id, LeaveReason::Disconnect, None, now_ms);
            }
            self.end_applying();
            return Applied::Done;
        }
        if mine
            && let Op::Leave {
                id,
                reason,
                text,
                ts,
            } = &op
            && r.leaving.remove(id).is_some()
        {
            // Its messages came back before it: it leaves now.
            r.applying = true;
            r.in_flight.remove(id);
            if let Some(key) = r.by_id.get(id).copied() {
                if let Some(rec) = self.table.get_mut(key) {
                    rec.user.presence = Presence::Here;
                }
                self.withdraw(key, *reason, text.as_deref(), *ts);
                let closed = match self.table.get_mut(key) {
                    Some(rec) => {
                        rec.user.presence = Presence::Gone(super::Departure::Left(*reason));
                        rec.conn.is_none()
                    }
                    None => false,
                };
                if closed {
                    self.table.remove(key);
                    self.forget_id(*id);
                }
            }
            self.end_applying();
            return Applied::Done;
        }
        if mine && !matches!(op, Op::Say { .. }) {
            // Applied here when it was made.
            return Applied::Done;
        }
        r.applying = true;
        let key_of = |core: &Core<C>, id: u64| core.replica.as_ref()?.by_id.get(&id).copied();
        match op {
            Op::Hello => {
                if seq > self.replica.as_ref().map_or(u64::MAX, |r| r.hello) {
                    self.announce(now_ms);
                }
            }
            Op::Gone { .. } => {}
            Op::Present {
                room,
                users,
                topic,
                ts,
            } => {
                for user in users {
                    let key = self.remote_user(from, user.id, &user.nick, ts);
                    self.join(key, &room, ts);
                }
                let key = Name::key_of(&room);
                if let Some(text) = topic
                    && self.room_ids.contains_key(&key)
                    && !self.topics.contains_key(&key)
                    && !text.is_empty()
                    && text.len() <= super::MAX_TOPIC
                {
                    self.topics.insert(key, text.into());
                }
            }
            Op::Join { id, nick, room, ts } => {
                let key = self.remote_user(from, id, &nick, ts);
                self.join(key, &room, ts);
            }
            Op::Part { id, room, text, ts } => {
                if let Some(key) = key_of(self, id) {
                    self.part(key, &room, text.as_deref(), ts);
                }
            }
            Op::Nick { id, new, ts } => {
                if let Some(key) = key_of(self, id)
                    && let Some(old) = self.nick_of(key)
                {
                    self.set_nick(key, old, Name::new(&new), ts);
                }
            }
            Op::Topic { id, room, text, ts } => {
                if let Some(key) = key_of(self, id) {
                    self.topic(key, &room, &text, ts);
                }
            }
            Op::Leave {
                id,
                reason,
                text,
                ts,
            } => self.remove_remote(id, reason, text.as_deref(), ts),
            Op::Say {
                id,
                nick,
                room,
                text,
                action,
                echo,
                ts,
            } => {
                // Stored already (a restart replays the stream).
                if mine
                    && let Some(n) = self.replica.as_mut().and_then(|r| r.in_flight.get_mut(&id))
                {
                    *n = n.saturating_sub(1);
                }
                if seq > self.seq {
                    self.seq = seq;
                    // The sender may have left since (a quit right after
                    // its last message): the message is still everyone's.
                    let key = key_of(self, id);
                    let from = key
                        .and_then(|k| self.user(k))
                        .map_or_else(|| Name::new(&nick), |u| u.nick.clone());
                    let room_key = Name::key_of(&room);
                    let found = self.room_ids.get(&room_key).copied();
                    let name = found
                        .and_then(|r| self.rooms.get(r))
                        .map_or_else(|| Name::new(&room), |r| r.name.clone());
                    let to = match found {
                        Some(room) => To::Room {
                            room,
                            except: key.filter(|_| !(echo && mine)),
                        },
                        // Nobody here to tell, but it is stored.
                        None => To::Keys(Vec::new()),
                    };
                    self.emit(
                        Event::Group {
                            room: name,
                            seq,
                            from,
                            text: text.into(),
                            ts,
                            action,
                        },
                        to,
                    );
                }
            }
        }
        self.end_applying();
        Applied::Done
    }

    /// A server started after this one. It knows of this server's users
    /// only what the stream still holds (`--cluster-keep`): someone idle
    /// in a room for longer is unknown to it. So every user here is
    /// announced again, in each of their rooms, and so is the topic of
    /// each of those rooms; a server that knows them already changes
    /// nothing (a join of a member is no news, a known topic stays).
    fn announce(&mut self, now_ms: u64) {
        let Some(r) = &self.replica else {
            return;
        };
        let mut present: std::collections::BTreeMap<RoomId, Vec<op::Member>> =
            std::collections::BTreeMap::new();
        for (_, rec) in self.table.iter() {
            let user = &rec.user;
            // A user here, not one whose leave is already on its way (not
            // here any more: a join after it would bring back a ghost).
            if r.remote.contains_key(&user.id) || !user.is_here() || !user.admitted {
                continue;
            }
            for room in user.rooms.iter() {
                present.entry(room).or_default().push(op::Member {
                    id: user.id,
                    nick: user.nick.as_str().into(),
                });
            }
        }
        let mut ops = Vec::new();
        for (room, users) in present {
            let Some(found) = self.rooms.get(room) else {
                continue;
            };
            let mut topic = self
                .topics
                .get(&found.name.key())
                .map(|t| t.as_ref().into());
            for batch in users.chunks(op::PRESENT_BATCH) {
                ops.push(Op::Present {
                    room: found.name.as_str().into(),
                    users: batch.to_vec(),
                    topic: topic.take(),
                    ts: now_ms,
                });
            }
        }
        if let Some(r) = &mut self.replica {
            r.ops.append(&mut ops);
        }
    }

    fn end_applying(&mut self) {
        if let Some(r) = &mut self.replica {
            r.applying = false;
        }
    }

    /// The record of a user of the server `instance`, made on its first
    /// op.
    fn remote_user(&mut self, instance: &str, id: u64, nick: &str, now_ms: u64) -> Key {
        if let Some(key) = self
            .replica
            .as_ref()
            .and_then(|r| r.by_id.get(&id).copied())
        {
            return key;
        }
        let nick = Name::new(nick);
        let key = self.table.insert(Record {
            user: User {
                id,
                nick: nick.clone(),
                peer: super::Peer::plain(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                since_ms: now_ms,
                msgs_in: 0,
                presence: Presence::Here,
                account: None,
                admitted: true,
                hashing: false,
                tries: ConnTries::default(),
                rooms: RoomSet::new(),
                visit: 0,
            },
            conn: None,
        });
        self.nicks.insert(nick.key().as_str(), key);
        if let Some(r) = &mut self.replica {
            r.by_id.insert(id, key);
            r.remote.insert(id, instance.into());
        }
        key
    }

    fn remove_remote(&mut self, id: u64, reason: LeaveReason, text: Option<&str>, now_ms: u64) {
        let Some(key) = self
            .replica
            .as_ref()
            .and_then(|r| r.by_id.get(&id).copied())
        else {
            return;
        };
        if self.table.get(key).is_some_and(|r| r.conn.is_some()) {
            return;
        }
        self.depart(key, reason, text, now_ms);
        self.table.remove(key);
        self.forget_id(id);
    }
}

#[cfg(test)]
mod tests {
    //! The replica's rules without sockets or NATS: changes made here
    //! are noted, changes from the stream are applied to users without a
    //! connection, and a gone server's users leave.

    use super::*;
    use crate::server::core::{Config, Peer};
    use crate::server::deliver::{Door, Outlet};
    use crate::server::event::Emit;

    fn core() -> Core<Outlet> {
        let mut core = Core::new(Config {
            welcome: "hi".into(),
            default_room: "lobby".into(),
            max_rooms: 10,
        });
        core.join_cluster("me", op::id_base(1));
        core
    }

    fn emitted(core: &mut Core<Outlet>) -> Vec<Emit> {
        let mut out = Vec::new();
        core.take_emitted(&mut out);
        out
    }

    fn ops(core: &mut Core<Outlet>) -> Vec<Op> {
        let mut out = Vec::new();
        core.take_ops(&mut out);
        out
    }

    use crate::server::cluster::op;

    #[test]
    fn remote_users_arrive_speak_and_leave_with_their_server() {
        let mut core = core();
        let peer = Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)));
        let ann = core.connect(peer, 0, Outlet::new(Door::JsonLines));
        let ann_id = core.user(ann).map(|u| u.id).unwrap_or_default();
        assert_eq!(ann_id, op::id_base(1), "ids come from this server's block");
        // Ann's arrival is noted for the stream.
        assert!(matches!(&ops(&mut core)[..], [Op::Join { id, .. }] if *id == ann_id));
        emitted(&mut core);

        let bob = 99;
        core.apply(
            "other",
            false,
            5,
            Op::Join {
                id: bob,
                nick: "bob".into(),
                room: "lobby".into(),
                ts: 1,
            },
            1,
        );
        assert!(core.find_nick("bob").is_some(), "bob holds his name here");
        assert_eq!(core.len(), 1, "bob is no connection here");
        let joins = emitted(&mut core);
        assert!(
            joins
                .iter()
                .any(|e| matches!(&e.event, Event::Join { id, .. } if *id == bob))
        );
        assert!(
            ops(&mut core).is_empty(),
            "what comes from the stream is not noted again"
        );

        core.apply(
            "other",
            false,
            6,
            Op::Say {
                id: bob,
                nick: "bob".into(),
                room: "lobby".into(),
                text: "hello".into(),
                action: false,
                echo: false,
                ts: 2,
            },
            2,
        );
        let said = emitted(&mut core);
        assert!(
            said.iter().any(
                |e| matches!(&e.event, Event::Group { seq: 6, from, .. } if from.as_str() == "bob")
            ),
            "{said:?}"
        );
        // Read again after a restart: stored already, not delivered twice.
        core.apply(
            "other",
            false,
            6,
            Op::Say {
                id: bob,
                nick: "bob".into(),
                room: "lobby".into(),
                text: "hello".into(),
                action: false,
                echo: false,
                ts: 2,
            },
            2,
        );
        assert!(emitted(&mut core).is_empty());

        core.apply(
            "third",
            false,
            7,
            Op::Gone {
                instance: "other".into(),
            },
            3,
        );
        assert!(
            core.find_nick("bob").is_none(),
            "a gone server's names are free"
        );
        let left = emitted(&mut core);
        assert!(left.iter().any(|e| matches!(
            &e.event,
            Event::Leave { id, reason: LeaveReason::Disconnect, .. } if *id == bob
        )));
        assert_eq!(
            core.apply(
                "third",
                false,
                8,
                Op::Gone {
                    instance: "me".into()
                },
                4
            ),
            Applied::DroppedMe
        );
    }

    #[test]
    fn a_group_message_waits_for_the_stream_and_a_rename_for_its_claim() {
        let mut core = core();
        let peer = Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)));
        let ann = core.connect(peer, 0, Outlet::new(Door::JsonLines));
        ops(&mut core);
        emitted(&mut core);
        let text = crate::server::core::Command::Say {
            room: None,
            text: "hi",
            action: false,
            echo: false,
        };
        core.handle(ann, text, 1);
        assert!(
            emitted(&mut core).is_empty(),
            "nothing is delivered before the stream"
        );
        assert!(matches!(&ops(&mut core)[..], [Op::Say { .. }]));
        core.handle(ann, crate::server::core::Command::Nick { nick: "ann" }, 2);
        assert!(
            emitted(&mut core).is_empty(),
            "the rename waits for its claim"
        );
        let claims = core.take_claims();
        assert_eq!(claims.len(), 1);
        assert_eq!(
            claims[0].name,
            claim_key("ANN"),
            "look-alikes are one claim"
        );
        core.claimed(claims[0].clone(), false, 3);
        assert!(emitted(&mut core).iter().any(|e| matches!(
            &e.event,
            Event::Error {
                code: ErrorCode::NickInUse,
                ..
            }
        )));
        // Degraded: what needs the cluster is refused.
        core.set_cluster_down(true);
        emitted(&mut core);
        core.handle(ann, crate::server::core::Command::Join { room: "dev" }, 4);
        assert!(emitted(&mut core).iter().any(|e| matches!(
            &e.event,
            Event::Error {
                code: ErrorCode::ClusterUnavailable,
                ..
            }
        )));
    }

    #[test]
    fn a_server_started_later_hears_of_the_users_and_topics_here() {
        use crate::server::core::Command;
        let mut core = core();
        let peer = Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)));
        let ann = core.connect(peer, 0, Outlet::new(Door::JsonLines));
        let ann_id = core.user(ann).map(|u| u.id).unwrap_or_default();
        core.handle(ann, Command::Join { room: "dev" }, 1);
        let topic = Command::Topic {
            room: "dev",
            text: "all about dev",
        };
        core.handle(ann, topic, 2);
        // A remote user is not this server's to announce.
        core.apply(
            "other",
            false,
            3,
            Op::Join {
                id: 99,
                nick: "bob".into(),
                room: "dev".into(),
                ts: 3,
            },
            3,
        );
        ops(&mut core);
        // The hellos up to this server's own are of servers that knew.
        core.apply("old", false, 1, Op::Hello, 4);
        assert!(ops(&mut core).is_empty(), "an earlier server knows ann");
        core.apply("new", false, 7, Op::Hello, 5);
        let said = ops(&mut core);
        let present: Vec<(&str, Vec<u64>, Option<&str>)> = said
            .iter()
            .filter_map(|op| match op {
                Op::Present {
                    room, users, topic, ..
                } => Some((
                    room.as_str(),
                    users.iter().map(|u| u.id).collect(),
                    topic.as_deref(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            present,
            [
                ("lobby", vec![ann_id], None),
                ("dev", vec![ann_id], Some("all about dev"))
            ],
            "{said:?}"
        );
        assert_eq!(said.len(), 2, "one message per room: {said:?}");

        // The newcomer's side: the user arrives, the topic is taken where
        // none is known, and a known one stays.
        let mut new: Core<Outlet> = Core::new(Config {
            welcome: "hi".into(),
            default_room: "lobby".into(),
            max_rooms: 10,
        });
        new.join_cluster("new", op::id_base(7));
        for (seq, op) in (8..).zip(said) {
            new.apply("me", false, seq, op, 6);
        }
        let known = new
            .replica
            .as_ref()
            .and_then(|r| r.by_id.get(&ann_id).copied());
        let rooms = known.map(|k| new.rooms_of(k)).unwrap_or_default();
        let rooms: Vec<&str> = rooms.iter().map(Name::as_str).collect();
        assert_eq!(
            rooms,
            ["lobby", "dev"],
            "ann is known to the newcomer, in her rooms"
        );
        assert_eq!(
            new.topics.get(&Name::key_of("dev")).map(|t| t.as_ref()),
            Some("all about dev")
        );
        let other = Op::Present {
            room: "dev".into(),
            users: Vec::new(),
            topic: Some("stale".into()),
            ts: 7,
        };
        new.apply("third", false, 20, other, 7);
        assert_eq!(
            new.topics.get(&Name::key_of("dev")).map(|t| t.as_ref()),
            Some("all about dev")
        );
    }

    #[test]
    fn many_users_are_announced_in_batches() {
        let mut core = core();
        let n = op::PRESENT_BATCH + 1;
        for port in 0..n {
            let peer = Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], port as u16)));
            core.connect(peer, 0, Outlet::new(Door::JsonLines));
        }
        ops(&mut core);
        core.apply("new", false, 9, Op::Hello, 1);
        let sizes: Vec<usize> = ops(&mut core)
            .iter()
            .map(|op| match op {
                Op::Present { users, .. } => users.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, [op::PRESENT_BATCH, 1]);
    }

    #[test]
    fn a_user_whose_leave_is_on_its_way_is_not_announced() {
        use crate::server::core::Command;
        let mut core = core();
        let peer = Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)));
        let ann = core.connect(peer, 0, Outlet::new(Door::JsonLines));
        let say = Command::Say {
            room: None,
            text: "last words",
            action: false,
            echo: false,
        };
        core.handle(ann, say, 1);
        // Her message is still on its way: she stays until her leave
        // comes back after it.
        core.depart(ann, LeaveReason::Quit, None, 2);
        ops(&mut core);
        core.apply("new", false, 9, Op::Hello, 3);
        assert!(
            ops(&mut core).is_empty(),
            "a join after her leave would bring her back on the others"
        );
    }
}
