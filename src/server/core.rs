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

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use slab::Slab;

use zeroize::Zeroizing;

use super::attempts::{AddrTries, ConnTries};
use super::cluster;
use super::event::{Emit, Event, RoomId, To};
use super::hashing::{Answer, Job, Outcome};
use super::name::Name;
use super::nicks::NickIndex;
use super::store::Stored;
use super::table::{Key, Table};
use crate::names;
use crate::wire::{self, ByeReason, ErrorCode, LeaveReason, Refusal};

mod replica;
pub use replica::{Applied, Claim, Release, Replica, UNAVAILABLE};

/// The longest topic, in bytes: a line of text, not a document (IRC's
/// `TOPICLEN` is about as long).
pub const MAX_TOPIC: usize = 512;

const INSECURE: &str = "passwords cross only TLS or loopback connections here; \
                        connect with TLS";
const TOO_MANY: &str = "too many failed logins; wait a minute before trying again";
/// One answer for a wrong account and a wrong password.
const LOGIN_FAILED: &str = "wrong account or password";

/// What a connection asks of the core, whatever door it came through.
#[derive(Debug, PartialEq)]
pub enum Command<'a> {
    /// To a room: the default room when `room` is `None`.
    Say {
        room: Option<&'a str>,
        text: &'a str,
        action: bool,
        /// The sender receives it too (IRCv3 `echo-message`), as stored,
        /// with its `seq`.
        echo: bool,
    },
    Private {
        to: &'a str,
        text: &'a str,
        action: bool,
        echo: bool,
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
    /// Register the current nickname; checked off the loop (see
    /// [`Core::take_jobs`]).
    Register {
        password: &'a wire::Password<'a>,
    },
    Login {
        account: &'a str,
        password: &'a wire::Password<'a>,
    },
    Logout,
}

/// A `history` request waiting for the store's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    pub key: Key,
    /// As the room is sent and stored (see `names::room_form`); plain text,
    /// since the ask crosses to the store's thread.
    pub room: Box<str>,
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
                echo: false,
            },
            M::Private { to, text, action } => Command::Private {
                to,
                text,
                action: *action,
                echo: false,
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
            M::Register { password } => Command::Register { password },
            M::Login { account, password } => Command::Login { account, password },
            M::Logout => Command::Logout,
            M::Ping { .. } => return None,
        })
    }
}

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Connected, but not yet a user: its door is still introducing it
    /// (an IRC client before `NICK` and `USER`). It has no name and no
    /// rooms, and nothing is sent to it but its door's own answers.
    Waiting,
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
///
/// Kept in 20 bytes rather than a `SocketAddr`'s 32: every idle connection
/// holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// An IPv4 address as its IPv4-mapped IPv6 form.
    ip: [u8; 16],
    port: u16,
    v4: bool,
    /// It came in by a TLS listener.
    pub tls: bool,
}

impl Peer {
    pub fn new(addr: SocketAddr, tls: bool) -> Peer {
        let (ip, v4) = match addr.ip() {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), true),
            IpAddr::V6(v6) => (v6.octets(), false),
        };
        Peer {
            ip,
            port: addr.port(),
            v4,
            tls,
        }
    }

    /// A plaintext connection from `addr`.
    pub fn plain(addr: SocketAddr) -> Peer {
        Peer::new(addr, false)
    }

    pub fn addr(&self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) if self.v4 => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        };
        SocketAddr::new(ip, self.port)
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
    pub msgs_in: u32,
    pub presence: Presence,
    /// The account it is logged in to, as its owner spells it (boxed: most
    /// connections have none, and each costs its record's size).
    pub account: Option<Box<Name>>,
    /// Seen by others: always, unless the server requires login and it
    /// has not logged in yet (then it is in no room and in no list).
    pub admitted: bool,
    /// Its `register` or `login` is with the hashing threads.
    pub hashing: bool,
    tries: ConnTries,
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

/// The door's part first: a delivery touches only that (see `Conn`).
#[repr(C)]
struct Record<C> {
    /// `None` for a user of another server of the cluster (see
    /// [`super::cluster`]): in the rooms and the names, with nothing to
    /// deliver to.
    conn: Option<C>,
    user: User,
}

struct Room {
    /// As sent: the folded form it was created with.
    name: Name,
    /// In order of joining.
    members: Vec<Key>,
}

/// A room as [`Core::room`] shows it.
pub struct RoomView<'a> {
    /// As it is sent.
    pub name: Name,
    pub topic: Option<Rc<str>>,
    /// In order of joining.
    pub members: Vec<&'a User>,
}

/// What the edge should do with a connection after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The user quit: stop reading, write what is queued, close.
    Close,
}

/// What the server allows of accounts (`--registration`,
/// `--require-login`, `--allow-plaintext-login`, `--login-limit`).
#[derive(Clone, Copy, Debug)]
pub struct AccountRules {
    pub registration_open: bool,
    pub require_login: bool,
    pub allow_plaintext: bool,
    /// Failed logins allowed per client address per minute; 0: no limit.
    pub per_minute: u32,
}

impl Default for AccountRules {
    fn default() -> Self {
        AccountRules {
            registration_open: true,
            require_login: false,
            allow_plaintext: false,
            per_minute: 20,
        }
    }
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
    /// A nickname's key (`Name::key`: look-alikes are one name) to its
    /// owner, for everyone here: its size is the number of users present.
    nicks: NickIndex,
    rooms: Slab<Room>,
    /// A room name's key to its place, for rooms with members.
    room_ids: HashMap<Name, RoomId>,
    /// Topics outlive their rooms: a room joined again has its topic back.
    /// By the room name's key.
    topics: HashMap<Name, Rc<str>>,
    next_id: u64,
    /// The last `seq` given to a group message.
    seq: u64,
    visit: u32,
    welcome: Rc<str>,
    /// As sent, and its key.
    default_room: Name,
    default_key: Name,
    max_rooms: usize,
    emitted: Vec<Emit>,
    asks: Vec<Ask>,
    rules: AccountRules,
    /// Every account's key: `nick` to one of these needs its login.
    registered: HashSet<Name>,
    addr_tries: AddrTries,
    jobs: Vec<Job>,
    /// `--cluster`: the state shared with the other servers (see
    /// `replica`); `None` on a server alone, which then pays nothing.
    replica: Option<Box<Replica>>,
}

impl<C> Core<C> {
    pub fn new(config: Config) -> Core<C> {
        let default_room = Name::new(&config.default_room);
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
            default_key: default_room.key(),
            default_room,
            max_rooms: config.max_rooms.max(1),
            emitted: Vec::new(),
            asks: Vec::new(),
            rules: AccountRules::default(),
            registered: HashSet::new(),
            addr_tries: AddrTries::new(AccountRules::default().per_minute),
            jobs: Vec::new(),
            replica: None,
        }
    }

    /// The account rules, and the keys of the accounts that exist.
    pub fn set_accounts(&mut self, rules: AccountRules, keys: &[String]) {
        self.rules = rules;
        self.addr_tries = AddrTries::new(rules.per_minute);
        self.registered = keys.iter().map(|k| Name::key_of(k)).collect();
    }

    /// The accounts changed (`chat account` while the server runs):
    /// `keys` are every account now, `deleted` those gone since the last
    /// change.
    pub fn set_registered(&mut self, keys: &[String], deleted: &[String], now_ms: u64) {
        self.registered = keys.iter().map(|k| Name::key_of(k)).collect();
        for key in deleted {
            self.log_out_of(key, now_ms);
        }
    }

    /// An account was registered elsewhere (another server of the
    /// cluster): its name is refused to guests from now on.
    pub fn add_registered(&mut self, key: &str) {
        self.registered.insert(Name::key_of(key));
    }

    /// An account was deleted (from a cluster's bucket): guests may take
    /// its name again.
    pub fn remove_registered(&mut self, key: &str, now_ms: u64) {
        self.registered.remove(&Name::key_of(key));
        self.log_out_of(key, now_ms);
    }

    /// Whoever here is logged in to a deleted account is logged out, as by
    /// `logout`: an admin deletes an account to end its use, and its name
    /// is anyone's now.
    fn log_out_of(&mut self, key: &str, now_ms: u64) {
        let gone = Name::key_of(key);
        let holders: Vec<Key> = self
            .table
            .iter()
            .filter(|(_, r)| r.conn.is_some())
            .filter(|(_, r)| r.user.account.as_deref().is_some_and(|a| a.key() == gone))
            .map(|(key, _)| key)
            .collect();
        for key in holders {
            self.logout(key, now_ms);
        }
    }

    /// The `register` and `login` jobs made since the last call, in order;
    /// the edge hands each to the hashing threads and brings the
    /// [`Answer`] back to [`Core::answer_job`].
    pub fn take_jobs(&mut self, into: &mut Vec<Job>) {
        into.clear();
        std::mem::swap(into, &mut self.jobs);
    }

    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// What the store remembers from before a restart: `seq` goes on from
    /// the last one stored, and rooms have their topics back.
    pub fn restore(&mut self, last_seq: u64, topics: impl IntoIterator<Item = (String, String)>) {
        self.seq = self.seq.max(last_seq);
        for (room, text) in topics {
            if !text.is_empty() {
                self.topics.insert(Name::key_of(&room), text.into());
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
                room: Name::new(&ask.room),
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

    /// Connections in the table, present or on their way out (the users
    /// of other servers of a cluster are not connections here).
    pub fn len(&self) -> usize {
        self.table.len() - self.remote_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn user(&self, key: Key) -> Option<&User> {
        self.table.get(key).map(|r| &r.user)
    }

    pub fn conn(&self, key: Key) -> Option<&C> {
        self.table.get(key).and_then(|r| r.conn.as_ref())
    }

    pub fn conn_mut(&mut self, key: Key) -> Option<&mut C> {
        self.table.get_mut(key).and_then(|r| r.conn.as_mut())
    }

    pub fn keys(&self) -> Vec<Key> {
        self.table.keys()
    }

    /// Rooms with someone in them (for `/metrics`).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The events emitted since the last call, in order.
    pub fn take_emitted(&mut self, into: &mut Vec<Emit>) {
        into.clear();
        std::mem::swap(into, &mut self.emitted);
    }

    /// Calls `f` for each receiver of `to` that is still in the table.
    /// The receiver's user is lent too: a door may address an answer to
    /// its receiver by name (IRC's numerics do).
    pub fn for_each_receiver(&mut self, to: &To, mut f: impl FnMut(Key, &User, &mut C)) {
        match to {
            To::One(key) => {
                if let Some(r) = self.table.get_mut(*key)
                    && let Some(conn) = &mut r.conn
                {
                    f(*key, &r.user, conn);
                }
            }
            To::Room { room, except } => {
                let Some(room) = self.rooms.get(*room) else {
                    return;
                };
                for &key in &room.members {
                    if Some(key) != *except
                        && let Some(r) = self.table.get_mut(key)
                        && let Some(conn) = &mut r.conn
                    {
                        f(key, &r.user, conn);
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
                        && let Some(conn) = &mut r.conn
                    {
                        f(key, &r.user, conn);
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
        let key = self.admit(peer, now_ms, conn);
        let Some(id) = self.user(key).map(|u| u.id) else {
            return key;
        };
        // The key of a guest name is nobody else's: `names::check_nick`
        // refuses every name that folds like one.
        self.welcome(key, Name::new(&format!("guest{id}")), now_ms);
        key
    }

    /// A new connection that is not yet a user ([`Presence::Waiting`]):
    /// its door introduces it later with [`Core::arrive`].
    pub fn admit(&mut self, peer: Peer, now_ms: u64, conn: C) -> Key {
        let id = self.next_id;
        self.next_id += 1;
        let key = self.table.insert(Record {
            user: User {
                id,
                nick: Name::EMPTY,
                peer,
                since_ms: now_ms,
                msgs_in: 0,
                presence: Presence::Waiting,
                account: None,
                admitted: false,
                hashing: false,
                tries: ConnTries::default(),
                rooms: RoomSet::new(),
                visit: 0,
            },
            conn: Some(conn),
        });
        self.note_id(id, key);
        key
    }

    /// A waiting connection becomes a user named `nick`, if that name is
    /// good and free: it is welcomed and put in the default room, as
    /// [`Core::connect`] does with a guest name. The refusal is
    /// `bad_nick` or `nick_in_use`, and nothing is emitted then.
    pub fn arrive(&mut self, key: Key, nick: &str, now_ms: u64) -> Result<(), Refusal> {
        if self.user(key).map(|u| u.presence) != Some(Presence::Waiting) {
            return Ok(());
        }
        let nick = Name::new(
            &names::check_nick(nick).map_err(|why| Refusal::new(ErrorCode::BadNick, why))?,
        );
        if self.registered.contains(&nick.key()) && !self.logged_in_as(key, &nick) {
            return Err(Refusal::new(
                ErrorCode::NickRegistered,
                format!("{nick} is a registered account; log in to use it"),
            ));
        }
        if self.holder(&nick.key()).is_some() {
            return Err(Refusal::new(
                ErrorCode::NickInUse,
                format!("{nick} is already taken; choose another nickname"),
            ));
        }
        self.welcome(key, nick, now_ms);
        Ok(())
    }

    /// Welcomes `key` as `nick`. Where login is required it is welcomed
    /// but not admitted: in no room, its name not in use, until it logs in.
    fn welcome(&mut self, key: Key, nick: Name, now_ms: u64) {
        let Some(r) = self.table.get_mut(key) else {
            return;
        };
        // Logged in while its door introduced it (IRC's SASL).
        let admitted = !self.rules.require_login || r.user.account.is_some();
        r.user.nick = nick.clone();
        r.user.presence = Presence::Here;
        r.user.admitted = admitted;
        let id = r.user.id;
        if admitted {
            self.nicks.insert(nick.key().as_str(), key);
        }
        self.emit(
            Event::Welcome {
                id,
                nick: nick.clone(),
                text: Rc::clone(&self.welcome),
                users: self.nicks.len() as u64,
                room: self.default_room.clone(),
                login_required: !admitted,
            },
            To::One(key),
        );
        if admitted {
            self.enter_default(key, now_ms);
        }
    }

    /// Puts a newcomer in the default room; its members hear `join`.
    /// Returns the room, for a `joined` answer where one is owed.
    fn enter_default(&mut self, key: Key, now_ms: u64) -> Option<(RoomId, Name)> {
        let user = self.table.get_mut(key).map(|r| &mut r.user)?;
        user.admitted = true;
        let (id, nick) = (user.id, user.nick.clone());
        let (room, room_name) =
            self.enter(key, self.default_room.clone(), self.default_key.clone());
        self.emit(
            Event::Join {
                id,
                nick,
                room: room_name.clone(),
                ts: now_ms,
            },
            To::Room {
                room,
                except: Some(key),
            },
        );
        Some((room, room_name))
    }

    /// A login before its door introduced `key` (IRC's SASL, during
    /// registration): checked as `login` is, answered with `LoggedIn` or a
    /// refusal; [`Core::arrive`] then lets it take its account's name.
    pub fn login_waiting(
        &mut self,
        key: Key,
        account: &str,
        password: &wire::Password<'_>,
        now_ms: u64,
    ) {
        if self.user(key).map(|u| u.presence) == Some(Presence::Waiting) {
            self.login(key, account, password, now_ms);
        }
    }

    /// Acts on one command from `key`.
    pub fn handle(&mut self, key: Key, cmd: Command<'_>, now_ms: u64) -> Flow {
        self.count_in(key);
        let Some(user) = self.user(key).filter(|u| u.is_here()) else {
            return Flow::Continue;
        };
        let allowed = matches!(
            cmd,
            Command::Login { .. } | Command::Register { .. } | Command::Quit { .. }
        );
        if !user.admitted && !allowed {
            self.refuse(
                key,
                ErrorCode::LoginRequired,
                "this server requires login first: send login with your account",
            );
            return Flow::Continue;
        }
        if self.cluster_down()
            && matches!(
                cmd,
                Command::Say { .. }
                    | Command::Nick { .. }
                    | Command::Join { .. }
                    | Command::Part { .. }
                    | Command::Topic { .. }
                    | Command::Register { .. }
            )
        {
            self.refuse(key, ErrorCode::ClusterUnavailable, replica::UNAVAILABLE);
            return Flow::Continue;
        }
        // A login takes its account's name, from whoever holds it: without
        // the cluster that would be a rename no other server hears of, so
        // only a user already holding the name may log in meanwhile.
        if let Command::Login { account, .. } = &cmd
            && self.cluster_down()
            && self.find_nick(account) != Some(key)
        {
            self.refuse(key, ErrorCode::ClusterUnavailable, replica::UNAVAILABLE);
            return Flow::Continue;
        }
        match cmd {
            Command::Register { password } => self.register(key, password),
            Command::Login { account, password } => self.login(key, account, password, now_ms),
            Command::Logout => self.logout(key, now_ms),
            Command::Say {
                room,
                text,
                action,
                echo,
            } => self.say(key, room, text, action, echo, now_ms),
            Command::Private {
                to,
                text,
                action,
                echo,
            } => self.private(key, to, text, action, echo, now_ms),
            Command::Nick { nick } => self.rename(key, nick, now_ms),
            Command::Who { room } => self.who(key, room),
            Command::Join { room } => self.join(key, room, now_ms),
            Command::Part { room, text } => self.part(key, room, text, now_ms),
            Command::Topic { room, text } => self.topic(key, room, text, now_ms),
            Command::Rooms => self.list_rooms(key),
            Command::History { room, from, limit } => match room_name(room) {
                Ok((room, room_key)) => self.asks.push(Ask {
                    key,
                    // The spelling its messages are stored under while it
                    // has members, whichever look-alike asks.
                    room: self
                        .existing_name(&room_key)
                        .unwrap_or(room)
                        .as_str()
                        .into(),
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
            r.user.msgs_in = r.user.msgs_in.saturating_add(1);
        }
    }

    /// The user leaves the server (quit, closed, reset, too slow):
    /// everyone who shared a room hears `leave` once. Does nothing for
    /// someone already gone.
    pub fn depart(&mut self, key: Key, reason: LeaveReason, text: Option<&str>, now_ms: u64) {
        let Some(user) = self.table.get_mut(key).map(|r| &mut r.user) else {
            return;
        };
        if user.presence == Presence::Waiting {
            user.presence = Presence::Gone(Departure::Left(reason));
            return;
        }
        if !user.is_here() {
            return;
        }
        if !self.defer_leave(key, reason, text, now_ms) {
            self.withdraw(key, reason, text, now_ms);
        }
        if let Some(r) = self.table.get_mut(key) {
            r.user.presence = Presence::Gone(Departure::Left(reason));
        }
    }

    /// Takes `key` out of every room and out of the names in use; whoever
    /// shared a room with it hears `leave` once.
    fn withdraw(&mut self, key: Key, reason: LeaveReason, text: Option<&str>, now_ms: u64) {
        let Some(user) = self.table.get(key).map(|r| &r.user) else {
            return;
        };
        if !user.is_here() {
            return;
        }
        let (id, nick, admitted) = (user.id, user.nick.clone(), user.admitted);
        let others = self.sharing(key, false);
        let rooms = self
            .table
            .get_mut(key)
            .map(|r| r.user.rooms.take())
            .unwrap_or_default();
        for room in rooms {
            self.leave_room(key, room);
        }
        if !admitted {
            // Never announced, so nobody is told; its name was never in use.
            return;
        }
        self.nicks.remove(nick.key().as_str(), key);
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
        if let Some(kept) = self.keep_leaving(key) {
            return Some(kept);
        }
        let r = self.table.remove(key)?;
        self.forget_id(r.user.id);
        Some((r.user, r.conn?))
    }

    /// The server is stopping: everyone present gets `bye` (a connection
    /// still waiting to be a user too, so that it closes now rather than
    /// at the end of the grace period), nobody is told of anyone's leaving.
    pub fn shutdown(&mut self) {
        let present: Vec<Key> = self
            .table
            .iter()
            .filter(|(_, r)| matches!(r.user.presence, Presence::Here | Presence::Waiting))
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
        self.forget_remote();
    }

    /// Who holds the name whose comparison key is `key`.
    fn holder(&self, key: &Name) -> Option<Key> {
        let table = &self.table;
        self.nicks
            .get(key.as_str(), |k| table.get(k).map(|r| r.user.nick.key()))
    }

    /// Whether `nick` (or a look-alike of it) is an account's name.
    pub fn is_registered(&self, nick: &str) -> bool {
        names::could_be_a_name(nick) && self.registered.contains(&Name::key_of(nick))
    }

    /// Who holds `nick` (or a look-alike of it), if anyone is here.
    pub fn find_nick(&self, nick: &str) -> Option<Key> {
        if !names::could_be_a_name(nick) {
            return None;
        }
        self.holder(&Name::key_of(nick))
    }

    /// The rooms `key` is in, in the order joined, by the names they are
    /// sent under.
    pub fn rooms_of(&self, key: Key) -> Vec<Name> {
        let Some(user) = self.user(key) else {
            return Vec::new();
        };
        user.rooms
            .iter()
            .filter_map(|id| self.rooms.get(id).map(|r| r.name.clone()))
            .collect()
    }

    /// A room with members, any spelling of its name: the name it is
    /// sent under, its topic and its members in order of joining.
    pub fn room(&self, room: &str) -> Option<RoomView<'_>> {
        let (_, room_key) = room_name(room).ok()?;
        let r = self.rooms.get(*self.room_ids.get(&room_key)?)?;
        Some(RoomView {
            name: r.name.clone(),
            topic: self.topics.get(&room_key).cloned(),
            members: r.members.iter().filter_map(|&m| self.user(m)).collect(),
        })
    }

    /// Rooms with members: (name, member count, topic), by name.
    pub fn room_list(&self) -> Vec<(Name, u64, Option<Rc<str>>)> {
        let mut rooms: Vec<(Name, u64, Option<Rc<str>>)> = self
            .rooms
            .iter()
            .map(|(_, r)| {
                (
                    r.name.clone(),
                    r.members.len() as u64,
                    self.topics.get(&r.name.key()).cloned(),
                )
            })
            .collect();
        rooms.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        rooms
    }

    /// The room everyone is put in on arrival, as it is sent.
    pub fn default_room(&self) -> &Name {
        &self.default_room
    }

    fn emit(&mut self, event: Event, to: To) {
        if self.replica.is_some() && event.is_broadcast() {
            self.note_emitted(&event);
        }
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
        self.user(key)
            .filter(|u| u.is_here())
            .map(|u| u.nick.clone())
    }

    /// The name a room with members is sent under, given its key.
    fn existing_name(&self, key: &Name) -> Option<Name> {
        let id = self.room_ids.get(key)?;
        self.rooms.get(*id).map(|r| r.name.clone())
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

    /// Puts `key` in the room whose key is `room_key`, creating it under
    /// `name` (folded) if it has no members; returns it and the name it is
    /// sent under, the first spelling's while it lasts. The default room
    /// is always created under its own name, so that nobody can rename it
    /// for everyone by joining a look-alike of it while it is empty.
    fn enter(&mut self, key: Key, name: Name, room_key: Name) -> (RoomId, Name) {
        let room = match self.room_ids.get(&room_key) {
            Some(&room) => room,
            None => {
                let name = if room_key == self.default_key {
                    self.default_room.clone()
                } else {
                    name
                };
                let room = self.rooms.insert(Room {
                    name,
                    members: Vec::new(),
                });
                self.room_ids.insert(room_key, room);
                room
            }
        };
        let mut name = Name::EMPTY;
        if let Some(r) = self.rooms.get_mut(room) {
            r.members.push(key);
            name = r.name.clone();
        }
        if let Some(r) = self.table.get_mut(key) {
            r.user.rooms.push(room);
        }
        (room, name)
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
            let room_key = r.name.key();
            self.rooms.remove(room);
            self.room_ids.remove(&room_key);
        }
    }

    /// The room `key` names and is a member of, with the name it is sent
    /// under, or the refusal.
    fn member_room(&self, key: Key, room: Option<&str>) -> Result<(RoomId, Name), Refusal> {
        let (name, room_key) = match room {
            None => (self.default_room.clone(), self.default_key.clone()),
            Some(room) => room_name(room)?,
        };
        let id = self.room_ids.get(&room_key).copied();
        let member = id.filter(|id| self.user(key).is_some_and(|u| u.rooms.contains(id)));
        match member.and_then(|id| Some((id, self.rooms.get(id)?.name.clone()))) {
            Some(found) => Ok(found),
            None => Err(Refusal::new(
                ErrorCode::NotInRoom,
                format!("you are not in {name}; join it first"),
            )),
        }
    }

    fn say(
        &mut self,
        key: Key,
        room: Option<&str>,
        text: &str,
        action: bool,
        echo: bool,
        now_ms: u64,
    ) {
        let Some(from) = self.nick_of(key) else {
            return;
        };
        let (room, name) = match self.member_room(key, room) {
            Ok(found) => found,
            Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
        };
        if self.noting() {
            // Its `seq` is its place in the cluster's stream: delivered
            // when it comes back from there.
            let id = self.user(key).map_or(0, |u| u.id);
            return self.say_to_cluster(cluster::Op::Say {
                id,
                nick: from.as_str().into(),
                room: name.as_str().into(),
                text: text.into(),
                action,
                echo,
                ts: now_ms,
            });
        }
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
                except: (!echo).then_some(key),
            },
        );
    }

    fn private(&mut self, key: Key, to: &str, text: &str, action: bool, echo: bool, now_ms: u64) {
        let Some(from) = self.nick_of(key) else {
            return;
        };
        let target = names::could_be_a_name(to)
            .then(|| self.holder(&Name::key_of(to)))
            .flatten();
        let Some((target, to_nick)) = target.and_then(|t| Some((t, self.nick_of(t)?))) else {
            return self.refuse(key, ErrorCode::NoSuchUser, &format!("no user named {to}"));
        };
        // A receiver on another server gets it over NATS; the sender's
        // echo is emitted here either way.
        let remote = self.is_clustered()
            && self.private_to_cluster(target, |id| cluster::Private {
                v: cluster::op::VERSION,
                to: id,
                from: from.as_str().into(),
                text: text.into(),
                action,
                ts: now_ms,
            });
        let to = match (remote, echo) {
            (true, false) => return,
            (true, true) => To::One(key),
            (false, true) if target != key => To::Keys(vec![target, key]),
            (false, _) => To::One(target),
        };
        self.emit(
            Event::Private {
                from,
                to: to_nick,
                text: text.into(),
                ts: now_ms,
                action,
            },
            to,
        );
    }

    fn rename(&mut self, key: Key, wanted: &str, now_ms: u64) {
        let Some(old) = self.nick_of(key) else {
            return;
        };
        let new = match names::check_nick(wanted) {
            Ok(nfc) => Name::new(&nfc),
            Err(why) => return self.refuse(key, ErrorCode::BadNick, &why),
        };
        // Before nick_in_use: whoever holds it, the name needs its login.
        let new_key = new.key();
        if self.registered.contains(&new_key) && !self.logged_in_as(key, &new) {
            let message = format!("{wanted} is a registered account; log in to use it");
            return self.refuse(key, ErrorCode::NickRegistered, &message);
        }
        // A look-alike of someone else's name is theirs; of one's own
        // (`Bob` for `bob`), a new spelling of it.
        if let Some(owner) = self.holder(&new_key)
            && owner != key
        {
            let holder = self.nick_of(owner).unwrap_or(Name::EMPTY);
            let message = if holder.as_str() == new.as_str() {
                format!("{new} is already taken; choose another nickname")
            } else {
                format!(
                    "{new} is already taken: it is the same name as {holder}'s; choose another nickname"
                )
            };
            return self.refuse(key, ErrorCode::NickInUse, &message);
        }
        if self.noting() && old.key() != new_key {
            // Unique across the cluster: claimed there first.
            let id = self.user(key).map_or(0, |u| u.id);
            return self.claim(key, id, &new);
        }
        self.set_nick(key, old, new, now_ms);
    }

    /// Whether `key` is logged in to the account named `name`.
    fn logged_in_as(&self, key: Key, name: &Name) -> bool {
        self.user(key)
            .and_then(|u| u.account.as_deref())
            .is_some_and(|a| a.key() == name.key())
    }

    /// Renames without asking: everyone who shares a room with `key`,
    /// and `key` itself, hears `nick`.
    fn set_nick(&mut self, key: Key, old: Name, new: Name, now_ms: u64) {
        self.nicks.remove(old.key().as_str(), key);
        self.nicks.insert(new.key().as_str(), key);
        let Some(r) = self.table.get_mut(key) else {
            return;
        };
        r.user.nick = new.clone();
        let id = r.user.id;
        let to = self.sharing(key, true);
        let event = Event::Nick {
            id,
            old,
            new,
            ts: now_ms,
        };
        if self.replica.is_some() {
            self.note_emitted(&event);
        }
        self.emitted.push(Emit {
            event,
            to: To::Keys(to),
            asker: Some(key),
        });
    }

    /// Whether a password may cross this connection: TLS, or a loopback
    /// address (nothing on the wire to sniff), or the server says so.
    fn transport_ok(&self, peer: Peer) -> bool {
        peer.tls || peer.addr().ip().to_canonical().is_loopback() || self.rules.allow_plaintext
    }

    fn register(&mut self, key: Key, password: &wire::Password<'_>) {
        let Some(user) = self.user(key) else {
            return;
        };
        let nick = user.nick.clone();
        if !self.transport_ok(user.peer) {
            return self.refuse(key, ErrorCode::InsecureTransport, INSECURE);
        }
        if !self.rules.registration_open {
            let message = "this server takes no registrations; ask its administrator";
            return self.refuse(key, ErrorCode::RegistrationClosed, message);
        }
        if wire::check_nick(nick.as_str()).is_err() {
            let message = if self.rules.require_login {
                // It cannot choose another before logging in.
                format!("{nick} is a guest name; accounts here are made by the administrator")
            } else {
                format!("{nick} is a guest name: choose a nickname with nick, then register it")
            };
            return self.refuse(key, ErrorCode::BadNick, &message);
        }
        if let Some(why) = super::accounts::check_password(password.expose()) {
            return self.refuse(key, ErrorCode::BadPassword, &why);
        }
        if self.registered.contains(&nick.key()) {
            let message = format!("{nick} is a registered account already");
            return self.refuse(key, ErrorCode::NickRegistered, &message);
        }
        self.jobs.push(Job::Register {
            conn: key,
            name: nick.as_str().to_owned(),
            key: nick.key().as_str().to_owned(),
            password: Zeroizing::new(password.expose().to_owned()),
        });
        if let Some(r) = self.table.get_mut(key) {
            r.user.hashing = true;
        }
    }

    fn login(&mut self, key: Key, account: &str, password: &wire::Password<'_>, now_ms: u64) {
        let Some(peer) = self.user(key).map(|u| u.peer) else {
            return;
        };
        if !self.transport_ok(peer) {
            return self.refuse(key, ErrorCode::InsecureTransport, INSECURE);
        }
        // The connection's count first: a connection that is paused must
        // not spend its address's budget too.
        let allowed = self
            .table
            .get_mut(key)
            .is_some_and(|r| r.user.tries.charge(now_ms))
            && self.addr_tries.charge(peer.addr().ip(), now_ms);
        if !allowed {
            return self.refuse(key, ErrorCode::TooManyAttempts, TOO_MANY);
        }
        // A name that is no nickname is no account: it goes through the
        // same hash as an unknown one, so it answers in the same time.
        let account_key = super::accounts::account_key(account)
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default();
        self.jobs.push(Job::Login {
            conn: key,
            key: account_key,
            password: Zeroizing::new(password.expose().to_owned()),
        });
        if let Some(r) = self.table.get_mut(key) {
            r.user.hashing = true;
        }
    }

    fn logout(&mut self, key: Key, now_ms: u64) {
        let Some(r) = self.table.get_mut(key) else {
            return;
        };
        r.user.account = None;
        self.emit(Event::LoggedOut, To::One(key));
        if self.rules.require_login {
            // Not logged in, not seen: out of every room, as on leaving.
            self.withdraw(key, LeaveReason::Quit, Some("logged out"), now_ms);
            if let Some(r) = self.table.get_mut(key) {
                r.user.admitted = false;
            }
        }
    }

    /// The hashing threads could not take a job: the queue is full.
    pub fn job_refused(&mut self, job: &Job, now_ms: u64) {
        let key = job.conn();
        let Some(user) = self.table.get_mut(key).map(|r| &mut r.user) else {
            return;
        };
        user.hashing = false;
        if job.is_login() {
            // Not the client's failure: the address's attempt is given
            // back. The connection's stays spent, or a guesser could wipe
            // its count by timing its tries to a busy server.
            let ip = user.peer.addr().ip();
            self.addr_tries.refund(ip, now_ms);
        }
        self.refuse(
            key,
            ErrorCode::TooManyAttempts,
            "the server is busy checking passwords; try again in a few seconds",
        );
    }

    /// The hashing threads' answer to a job from `answer.conn`, which may
    /// have gone meanwhile.
    pub fn answer_job(&mut self, answer: Answer, now_ms: u64) {
        let key = answer.conn;
        let Some(user) = self.table.get_mut(key).map(|r| &mut r.user) else {
            return;
        };
        user.hashing = false;
        if user.presence == Presence::Waiting && answer.login {
            return self.logged_in_waiting(key, answer.outcome, now_ms);
        }
        if !user.is_here() {
            return;
        }
        match answer.outcome {
            Outcome::Registered(name) => {
                let account = Name::new(&name);
                user.account = Some(Box::new(account.clone()));
                self.registered.insert(account.key());
                self.emit(Event::Registered { account }, To::One(key));
            }
            Outcome::Taken => {
                let nick = user.nick.clone();
                self.registered.insert(nick.key());
                let message = format!("{nick} is a registered account already");
                self.refuse(key, ErrorCode::NickRegistered, &message);
            }
            Outcome::LoggedIn(name) => self.logged_in(key, Name::new(&name), now_ms),
            Outcome::Failed => self.refuse(key, ErrorCode::LoginFailed, LOGIN_FAILED),
            Outcome::Broken(_) if answer.login => self.refuse(
                key,
                ErrorCode::LoginFailed,
                "the server cannot check accounts just now; try again later",
            ),
            Outcome::Broken(_) => self.refuse(
                key,
                ErrorCode::RegistrationClosed,
                "the server cannot store accounts just now; try again later",
            ),
        }
    }

    /// A login's outcome for a connection not yet introduced: it holds
    /// the account, and takes its name on arriving.
    fn logged_in_waiting(&mut self, key: Key, outcome: Outcome, now_ms: u64) {
        match outcome {
            Outcome::LoggedIn(name) => {
                let account = Name::new(&name);
                let Some(user) = self.table.get_mut(key).map(|r| &mut r.user) else {
                    return;
                };
                user.tries.reset();
                user.account = Some(Box::new(account.clone()));
                let ip = user.peer.addr().ip();
                self.addr_tries.refund(ip, now_ms);
                self.emit(Event::LoggedIn { account }, To::One(key));
            }
            Outcome::Failed => self.refuse(key, ErrorCode::LoginFailed, LOGIN_FAILED),
            _ => self.refuse(
                key,
                ErrorCode::LoginFailed,
                "the server cannot check accounts just now; try again later",
            ),
        }
    }

    /// A right password: `key` owns `account` and takes its name, from
    /// whoever held it without owning it.
    fn logged_in(&mut self, key: Key, account: Name, now_ms: u64) {
        let Some(user) = self.table.get_mut(key).map(|r| &mut r.user) else {
            return;
        };
        user.tries.reset();
        user.account = Some(Box::new(account.clone()));
        let (old, admitted, ip) = (user.nick.clone(), user.admitted, user.peer.addr().ip());
        self.addr_tries.refund(ip, now_ms);
        if let Some(holder) = self.holder(&account.key())
            && holder != key
            && let Some(h) = self.user(holder)
        {
            // The squatter (or an older session of the same account) goes
            // back to its guest name.
            let (held, guest) = (h.nick.clone(), Name::new(&format!("guest{}", h.id)));
            self.set_nick(holder, held, guest, now_ms);
        }
        if admitted {
            if old != account && self.noting() && old.key() != account.key() {
                // In a cluster the account's name is claimed first, as a
                // rename's is: another server may hold it.
                let id = self.user(key).map_or(0, |u| u.id);
                self.claim(key, id, &account);
            } else if old != account {
                self.set_nick(key, old, account.clone(), now_ms);
            }
            self.emit(Event::LoggedIn { account }, To::One(key));
            return;
        }
        // Required login: it arrives now, under its account's name, once
        // the cluster's name table (if any) says the name is its own.
        if self.claim_arrival(key, account.as_str()) {
            return;
        }
        self.admit_logged_in(key, old, account, now_ms);
    }

    /// The cluster's name table answered the claim of a required login's
    /// account name: it arrives, or stays out, logged out, and is told why.
    pub(super) fn login_claimed(&mut self, claim: Claim, ok: bool, now_ms: u64) {
        let key = claim.key;
        let Some(old) = self.nick_of(key) else {
            return;
        };
        let account = Name::new(&claim.nick);
        let taken_here = self.holder(&account.key()).is_some_and(|k| k != key);
        if ok && !taken_here {
            return self.admit_logged_in(key, old, account, now_ms);
        }
        if let Some(r) = self.table.get_mut(key) {
            r.user.account = None;
        }
        let message = if self.cluster_down() {
            replica::UNAVAILABLE.to_owned()
        } else {
            format!(
                "{account} is in use on another server of the cluster (another session of \
                 the account?); end it, or log in again in a moment"
            )
        };
        self.refuse(key, ErrorCode::NickInUse, &message);
    }

    /// A required login's arrival under its account's name.
    fn admit_logged_in(&mut self, key: Key, old: Name, account: Name, now_ms: u64) {
        if let Some(r) = self.table.get_mut(key) {
            r.user.nick = account.clone();
            let id = r.user.id;
            self.emitted.push(Emit {
                event: Event::Nick {
                    id,
                    old,
                    new: account.clone(),
                    ts: now_ms,
                },
                to: To::Keys(vec![key]),
                asker: Some(key),
            });
        }
        self.nicks.insert(account.key().as_str(), key);
        self.emit(Event::LoggedIn { account }, To::One(key));
        if let Some((room, name)) = self.enter_default(key, now_ms) {
            self.joined(key, room, name);
        }
    }

    fn who(&mut self, key: Key, room: Option<&str>) {
        let (room, mut users): (Option<Name>, Vec<(u64, Name, u64)>) = match room {
            None => (
                None,
                self.table
                    .iter()
                    .filter(|(_, r)| r.user.is_here() && r.user.admitted)
                    .map(|(_, r)| (r.user.id, r.user.nick.clone(), r.user.since_ms))
                    .collect(),
            ),
            Some(room) => {
                let (name, room_key) = match room_name(room) {
                    Ok(found) => found,
                    Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
                };
                let name = self.existing_name(&room_key).unwrap_or(name);
                let members = self
                    .room_ids
                    .get(&room_key)
                    .and_then(|&id| self.rooms.get(id))
                    .map(|r| r.members.as_slice())
                    .unwrap_or_default();
                let users = members
                    .iter()
                    .filter_map(|&m| self.user(m))
                    .map(|u| (u.id, u.nick.clone(), u.since_ms))
                    .collect();
                (Some(name), users)
            }
        };
        users.sort_unstable_by_key(|u| u.0);
        self.emit(Event::Who { room, users }, To::One(key));
    }

    fn join(&mut self, key: Key, room: &str, now_ms: u64) {
        let (name, room_key) = match room_name(room) {
            Ok(found) => found,
            Err(refusal) => return self.refuse(key, refusal.code, &refusal.message),
        };
        let Some(user) = self.user(key) else {
            return;
        };
        let (id, nick) = (user.id, user.nick.clone());
        let already = self
            .room_ids
            .get(&room_key)
            .copied()
            .filter(|id| user.rooms.contains(id));
        let (room, name) = match already {
            Some(room) => (room, self.existing_name(&room_key).unwrap_or(name)),
            None => {
                if user.rooms.len() >= self.max_rooms {
                    let message = format!(
                        "you are in {} rooms, the most this server allows; part one first",
                        self.max_rooms
                    );
                    return self.refuse(key, ErrorCode::TooManyRooms, &message);
                }
                let (room, name) = self.enter(key, name, room_key.clone());
                self.emit(
                    Event::Join {
                        id,
                        nick,
                        room: name.clone(),
                        ts: now_ms,
                    },
                    To::Room {
                        room,
                        except: Some(key),
                    },
                );
                (room, name)
            }
        };
        self.joined(key, room, name);
    }

    /// Tells `key` it is in the room `name`: its topic and members.
    fn joined(&mut self, key: Key, room: RoomId, name: Name) {
        let room_key = name.key();
        let mut users: Vec<(u64, Name)> = self
            .rooms
            .get(room)
            .map(|r| r.members.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&m| self.user(m))
            .map(|u| (u.id, u.nick.clone()))
            .collect();
        users.sort_unstable_by_key(|u| u.0);
        self.emit(
            Event::Joined {
                room: name,
                topic: self.topics.get(&room_key).cloned(),
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
        let (id, nick) = (r.user.id, r.user.nick.clone());
        self.emit(
            Event::Parted {
                room: name.clone(),
                text: text.map(Into::into),
            },
            To::One(key),
        );
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
            self.topics.remove(&name.key());
        } else {
            self.topics.insert(name.key(), Rc::clone(&text));
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
        let rooms = self.room_list();
        self.emit(Event::Rooms { rooms }, To::One(key));
    }
}

/// A room name as the client gave it, checked: its folded form (as a new
/// room is sent) and its key (which room it is).
fn room_name(room: &str) -> Result<(Name, Name), Refusal> {
    let folded = names::check_room(room).map_err(|why| Refusal::new(ErrorCode::BadRoom, why))?;
    let name = Name::new(&folded);
    let key = name.key();
    Ok((name, key))
}
