//! The IRC door's side of each connection: registration, the commands
//! IRC clients send, and the answers the door gives itself.
//!
//! A command that changes something (JOIN, PART, PRIVMSG, NOTICE, TOPIC,
//! NICK, QUIT) becomes a core [`Command`]; what it causes comes back as
//! events, encoded by [`mod@super::encode`]. Questions (NAMES, WHO, WHOIS,
//! LIST, ISON, USERHOST, MODE, LUSERS) are answered here from the core's
//! state, and so are the checks IRC wants a numeric for that names the channel
//! or nick at fault (403, 442, 432, 433, 401): the core's own refusals
//! carry no such name.
//!
//! IRCv3 capabilities ([`CAPS`]) are held per connection: the tags they
//! ask for are the outlet's [`Tags`], so delivery encodes each event once
//! per set of tags; `echo-message` is the core's `echo` flag on what the
//! sender says, so the echo is the delivered (stored) message with its
//! `seq`; SASL is the core's login, even before registration.
//!
//! An IRC connection is a core user only once registered (`NICK` and
//! `USER` given, and `CAP END` if it began with `CAP`). It is then put in
//! the default room like every user, and sees that as a `JOIN` of its
//! channel.

use std::collections::HashMap;

use crate::names;
use crate::server::core::{Command, Core, Flow, RoomView};
use crate::server::deliver::{Delivery, Outlet, Tags};
use crate::server::event::Event;
use crate::server::table::Key;
use crate::wire::{self, Password};

use super::answer;
use super::encode::{self, HOST, SERVER, channel, numeric};
use super::message::{Message, write, write_text};
use super::sasl::{self, Sasl, Step};

/// How long a connection may take to register.
pub const REGISTER_WITHIN_MS: u64 = 60_000;
/// Silence after which the server sends PING.
pub const PING_AFTER_MS: u64 = 120_000;
/// How long a PING may go unanswered (any line counts) before the
/// connection is closed.
pub const PING_TIMEOUT_MS: u64 = 60_000;
/// An IRC line's length without its tags, CRLF included.
pub const LINE: usize = 512;
/// The tags a client may send before the line proper (IRCv3).
pub const TAGS: usize = 8191;
/// The tags a client itself may send, with their `@` and space (IRCv3
/// message-tags); the rest of [`TAGS`] is the server's to add.
pub const CLIENT_TAGS: usize = 4096;
/// What the framing accepts: tags and a line.
pub const MAX_INPUT: usize = TAGS + LINE;

/// The only line a connection gets when the server is full.
pub const SERVER_FULL: &[u8] = b"ERROR :Closing link: the server is full; try again later\r\n";

/// The most characters of a realname kept (`USER`'s last parameter), as
/// many servers do: WHO masks are matched against every user's.
pub const REALLEN: usize = 50;

/// What the door knows of one IRC connection.
#[derive(Debug, Default)]
pub struct Client {
    /// Registered: a core user.
    registered: bool,
    /// Before registration: the nick and `USER` given so far.
    nick: Option<String>,
    user: bool,
    /// `CAP LS` began a negotiation that `CAP END` ends.
    negotiating: bool,
    /// The IRCv3 capabilities it asked for.
    caps: Caps,
    /// Its SASL exchange.
    sasl: Sasl,
    /// `AWAY` text; kept here, the other doors have no such thing.
    away: Option<Box<str>>,
    /// The realname `USER` gave, for WHO and WHOIS; likewise the door's.
    realname: Option<Box<str>>,
    since_ms: u64,
    /// The last line received.
    seen_ms: u64,
    /// A PING is unanswered.
    pinged: bool,
    /// In a cluster: the name its registration waits for the cluster's
    /// name table to give, and then the name it gave.
    claiming: Option<String>,
    claimed: Option<String>,
}

/// The IRCv3 capabilities this door offers, as `CAP LS` lists them.
/// Sixteen at most: they are bits of a `u16`.
pub const CAPS: &[&str] = &[
    "account-tag",
    "batch",
    "cap-notify",
    "draft/chathistory",
    "echo-message",
    "message-tags",
    "multi-prefix",
    "sasl",
    "server-time",
];

/// The capabilities a connection holds, one bit each in [`CAPS`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps(u16);

impl Caps {
    fn bit(name: &str) -> Option<u16> {
        let i = CAPS.iter().position(|c| c.eq_ignore_ascii_case(name))?;
        Some(1 << i)
    }

    pub fn has(self, name: &str) -> bool {
        Caps::bit(name).is_some_and(|b| self.0 & b != 0)
    }

    /// The names held, space-separated.
    fn list(self) -> String {
        let held: Vec<&str> = CAPS.iter().copied().filter(|c| self.has(c)).collect();
        held.join(" ")
    }

    /// The tags its events carry.
    fn tags(self) -> Tags {
        Tags {
            time: self.has("server-time"),
            msgid: self.has("message-tags"),
            account: self.has("account-tag"),
        }
    }

    /// `CAP REQ`'s list applied all or nothing: `None` if any name is
    /// unknown.
    fn request(self, list: &str) -> Option<Caps> {
        let mut caps = self;
        for item in list.split(' ').filter(|i| !i.is_empty()) {
            match item.strip_prefix('-') {
                Some(name) => {
                    let bit = Caps::bit(name)?;
                    caps.0 &= !bit;
                }
                None => caps.0 |= Caps::bit(item)?,
            }
        }
        Some(caps)
    }
}

/// What a timer should do next for a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Look again in this many milliseconds.
    Again(u64),
    /// Close it: it never registered, or stopped answering.
    Close,
}

/// The server's settings an IRC client is told.
pub struct Settings {
    pub welcome: String,
    pub max_rooms: usize,
}

/// The IRC door: its connections' state, beside the connection table so
/// that a JSON-lines connection pays nothing for it.
pub struct Door {
    clients: HashMap<Key, Client>,
    settings: Settings,
}

/// The hub's parts a line reaches.
pub struct Parts<'a, C> {
    pub core: &'a mut Core<C>,
    pub delivery: &'a mut Delivery,
    pub journal: &'a mut Vec<Event>,
}

impl<C: AsMut<Outlet>> Parts<'_, C> {
    /// Queues the door's own lines for `key`, after what the core emitted
    /// so far.
    fn answer(&mut self, key: Key, write: impl FnOnce(&mut Vec<u8>)) {
        self.delivery.deliver(self.core, self.journal);
        self.delivery.answer(self.core, key, write);
    }

    fn handle(&mut self, key: Key, cmd: Command<'_>, now_ms: u64) -> Flow {
        let flow = self.core.handle(key, cmd, now_ms);
        self.delivery.deliver(self.core, self.journal);
        flow
    }

    fn me(&self, key: Key) -> String {
        self.core
            .user(key)
            .map(|u| u.nick.as_str().to_owned())
            .unwrap_or_default()
    }
}

impl Door {
    pub fn new(settings: Settings) -> Door {
        Door {
            clients: HashMap::new(),
            settings,
        }
    }

    /// A new IRC connection, not yet registered.
    pub fn admit(&mut self, key: Key, now_ms: u64) {
        self.clients.insert(
            key,
            Client {
                since_ms: now_ms,
                seen_ms: now_ms,
                ..Client::default()
            },
        );
    }

    pub fn remove(&mut self, key: Key) {
        self.clients.remove(&key);
        if self.clients.capacity() > 64 && self.clients.len() * 4 < self.clients.capacity() {
            self.clients.shrink_to_fit();
        }
    }

    /// The connection's timer: registration deadline, then PING and its
    /// timeout.
    pub fn tick<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        now_ms: u64,
    ) -> Tick {
        let Some(client) = self.clients.get_mut(&key) else {
            return Tick::Close;
        };
        if !client.registered {
            let due = client.since_ms + REGISTER_WITHIN_MS;
            if now_ms < due {
                return Tick::Again(due - now_ms);
            }
            parts.answer(key, |out| {
                write_text(
                    out,
                    None,
                    "ERROR",
                    &["Closing link: registration timed out"],
                )
            });
            return Tick::Close;
        }
        let idle = now_ms.saturating_sub(client.seen_ms);
        if client.pinged {
            if idle >= PING_AFTER_MS + PING_TIMEOUT_MS {
                parts.answer(key, |out| {
                    write_text(out, None, "ERROR", &["Closing link: ping timeout"])
                });
                return Tick::Close;
            }
            return Tick::Again(PING_AFTER_MS + PING_TIMEOUT_MS - idle);
        }
        if idle >= PING_AFTER_MS {
            client.pinged = true;
            parts.answer(key, |out| write_text(out, None, "PING", &[SERVER]));
            return Tick::Again(PING_TIMEOUT_MS);
        }
        Tick::Again(PING_AFTER_MS - idle)
    }

    /// The framing met a line longer than [`MAX_INPUT`].
    pub fn too_long<C: AsMut<Outlet>>(&mut self, parts: &mut Parts<'_, C>, key: Key) {
        parts.core.count_in(key);
        let me = parts.me(key);
        parts.answer(key, |out| {
            numeric(out, &me, "417", &["Input line was too long"])
        });
    }

    /// One line from `key`, without its `\n`.
    pub fn line<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        line: &[u8],
        now_ms: u64,
    ) -> Flow {
        let Some(client) = self.clients.get_mut(&key) else {
            return Flow::Continue;
        };
        client.seen_ms = now_ms;
        client.pinged = false;
        let me = parts.me(key);
        let Ok(text) = std::str::from_utf8(line) else {
            parts.core.count_in(key);
            // IRCv3 utf8-only: the line is dropped with a FAIL naming its
            // command, which a client can show beside what it tried.
            let lossy = String::from_utf8_lossy(line);
            let command = Message::parse(&lossy)
                .map(|m| m.command.to_ascii_uppercase())
                .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or_else(|| "*".to_owned());
            parts.answer(key, |out| {
                write_text(
                    out,
                    Some(SERVER),
                    "FAIL",
                    &[
                        &command,
                        "INVALID_UTF8",
                        "This server speaks UTF-8 only; the line was not UTF-8",
                    ],
                )
            });
            return Flow::Continue;
        };
        let Some(msg) = Message::parse(text) else {
            return Flow::Continue;
        };
        // The line proper, without its tags, has IRC's limit; a client's
        // tags have IRCv3's (4094 bytes, 4096 with the `@` and the space).
        let bare = text.trim_end_matches('\r');
        let (tags, proper) = match bare.strip_prefix('@') {
            Some(tagged) => tagged
                .split_once(' ')
                .map_or((bare.len(), 0), |(t, rest)| (t.len() + 2, rest.len())),
            None => (0, bare.len()),
        };
        if proper + 2 > LINE || tags > CLIENT_TAGS {
            parts.core.count_in(key);
            parts.answer(key, |out| {
                numeric(out, &me, "417", &["Input line was too long"])
            });
            return Flow::Continue;
        }
        let command = msg.command.to_ascii_uppercase();
        let registered = client.registered;
        let params = &msg.params;
        if !registered {
            parts.core.count_in(key);
            return self.register(parts, key, &command, params, now_ms);
        }
        let need = match command.as_str() {
            "JOIN" | "PART" | "NICK" | "TOPIC" | "WHOIS" | "MODE" | "ISON" | "USERHOST"
            | "PING" | "WHOWAS" => 1,
            "OPER" | "KICK" => 2,
            "PRIVMSG" | "NOTICE" => 0,
            _ => 0,
        };
        if params.len() < need {
            parts.core.count_in(key);
            parts.answer(key, |out| {
                numeric(out, &me, "461", &[&command, "Not enough parameters"])
            });
            return Flow::Continue;
        }
        match command.as_str() {
            "PRIVMSG" | "NOTICE" => return self.message(parts, key, &me, &command, params, now_ms),
            "JOIN" => return self.join(parts, key, &me, params[0], now_ms),
            "PART" => {
                for chan in params[0].split(',').filter(|c| !c.is_empty()) {
                    self.part(parts, key, &me, chan, params.get(1).copied(), now_ms);
                }
                return Flow::Continue;
            }
            "QUIT" => {
                let text = params.first().copied().filter(|t| !t.is_empty());
                return parts.handle(key, Command::Quit { text }, now_ms);
            }
            "NICK" => {
                let wanted = params[0];
                // The nick it has, spelled the same: nothing changes, so
                // nobody is told (a change of case is a change).
                if wanted == me {
                    parts.core.count_in(key);
                    return Flow::Continue;
                }
                if let Some(refusal) = nick_refusal(parts.core, key, &me, wanted) {
                    parts.core.count_in(key);
                    parts.answer(key, |out| out.extend_from_slice(&refusal));
                    return Flow::Continue;
                }
                return parts.handle(key, Command::Nick { nick: wanted }, now_ms);
            }
            "TOPIC" => return self.topic(parts, key, &me, params, now_ms),
            "AUTHENTICATE" => {
                self.authenticate(parts, key, &me, params, now_ms);
                return Flow::Continue;
            }
            "CHATHISTORY" => {
                self.chathistory(parts, key, params, now_ms);
                return Flow::Continue;
            }
            _ => {}
        }
        parts.core.count_in(key);
        let mut out = Vec::new();
        match command.as_str() {
            "PING" => write_text(&mut out, Some(SERVER), "PONG", &[SERVER, params[0]]),
            "PONG" => {}
            // Client-only tags (typing notifications) are not relayed.
            "TAGMSG" => {}
            "CAP" => self.cap(parts, key, &mut out, &me, params),
            "PASS" | "USER" => numeric(&mut out, &me, "462", &["You may not reregister"]),
            "NAMES" => match params.first() {
                None => numeric(&mut out, &me, "366", &["*", "End of /NAMES list"]),
                Some(chans) => {
                    for chan in chans.split(',').filter(|c| !c.is_empty()) {
                        answer::names_of(parts.core, &mut out, &me, chan);
                    }
                }
            },
            "WHO" => answer::who(parts.core, &mut out, &me, params.first().copied(), self),
            "WHOIS" => answer::whois(parts.core, &mut out, &me, params[params.len() - 1], self),
            "LIST" => {
                // `LIST #a,#b` lists those channels alone; other filters
                // (ELIST's `>3`, masks) are not offered, so list all.
                let asked: Vec<&str> = params
                    .first()
                    .map(|p| p.split(',').filter_map(|c| c.strip_prefix('#')).collect())
                    .unwrap_or_default();
                numeric(&mut out, &me, "321", &["Channel", "Users  Name"]);
                for (name, users, topic) in parts.core.room_list() {
                    if !asked.is_empty() && !asked.iter().any(|a| names::same(a, name.as_str())) {
                        continue;
                    }
                    let topic = topic.as_deref().map(encode::clean).unwrap_or_default();
                    numeric(
                        &mut out,
                        &me,
                        "322",
                        &[&channel(name.as_str()), &users.to_string(), &topic],
                    );
                }
                numeric(&mut out, &me, "323", &["End of /LIST"]);
            }
            "MODE" => answer::mode(parts.core, key, &mut out, &me, params),
            "LUSERS" => answer::lusers(&mut out, &me, self.counts(parts.core, 0)),
            "TIME" => {
                let now = encode::iso_time(now_ms);
                numeric(&mut out, &me, "391", &[SERVER, &now]);
            }
            "INFO" => {
                let version = format!("chat {}", env!("CARGO_PKG_VERSION"));
                numeric(&mut out, &me, "371", &[&version]);
                numeric(
                    &mut out,
                    &me,
                    "371",
                    &["One server for the terminal, IRC and the web, in the same rooms"],
                );
                numeric(&mut out, &me, "374", &["End of INFO list"]);
            }
            // Nobody is an operator here: there is no OPER to succeed,
            // no history of nicks for WHOWAS, and KICK needs an operator.
            "OPER" => numeric(&mut out, &me, "491", &["No O-lines for your host"]),
            "WHOWAS" => {
                let nick = params[0];
                numeric(&mut out, &me, "406", &[nick, "There was no such nickname"]);
                numeric(&mut out, &me, "369", &[nick, "End of WHOWAS"]);
            }
            "KICK" => {
                let chan = params[0];
                match membership(parts.core, &me, chan) {
                    Some((code, why)) => numeric(&mut out, &me, code, &[chan, why]),
                    None => {
                        let chan = parts
                            .core
                            .room(&chan[1..])
                            .map_or_else(|| chan.to_owned(), |r| channel(r.name.as_str()));
                        numeric(
                            &mut out,
                            &me,
                            "482",
                            &[&chan, "You're not channel operator"],
                        )
                    }
                }
            }
            "AWAY" => {
                let text = params.first().copied().filter(|t| !t.is_empty());
                if let Some(client) = self.clients.get_mut(&key) {
                    client.away = text.map(Into::into);
                }
                match text {
                    Some(_) => numeric(
                        &mut out,
                        &me,
                        "306",
                        &["You have been marked as being away"],
                    ),
                    None => numeric(
                        &mut out,
                        &me,
                        "305",
                        &["You are no longer marked as being away"],
                    ),
                }
            }
            "ISON" => {
                let on: Vec<String> = params
                    .iter()
                    .flat_map(|p| p.split(' '))
                    .filter_map(|n| Some(answer::nick_of(parts.core, parts.core.find_nick(n)?)))
                    .collect();
                numeric(&mut out, &me, "303", &[&on.join(" ")]);
            }
            "USERHOST" => {
                let found: Vec<String> = params
                    .iter()
                    .take(5)
                    .filter_map(|n| {
                        let key = parts.core.find_nick(n)?;
                        let nick = answer::nick_of(parts.core, key);
                        let away = if self.is_away(key) { '-' } else { '+' };
                        Some(format!("{nick}={away}{nick}@{HOST}"))
                    })
                    .collect();
                numeric(&mut out, &me, "302", &[&found.join(" ")]);
            }
            _ => numeric(&mut out, &me, "421", &[&command, "Unknown command"]),
        }
        if !out.is_empty() {
            parts.answer(key, |o| o.extend_from_slice(&out));
        }
        Flow::Continue
    }

    /// LUSERS' numbers, with `arriving` users about to be here.
    fn counts<C>(&self, core: &Core<C>, arriving: usize) -> answer::Counts {
        answer::Counts {
            users: core.here() + arriving,
            rooms: core.room_list().len(),
            unknown: self.clients.values().filter(|c| !c.registered).count(),
        }
    }

    fn is_away(&self, key: Key) -> bool {
        self.clients.get(&key).is_some_and(|c| c.away.is_some())
    }

    /// Before registration: CAP, PASS, NICK, USER, PING, QUIT; anything
    /// else gets 451.
    fn register<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        command: &str,
        params: &[&str],
        now_ms: u64,
    ) -> Flow {
        let mut out = Vec::new();
        if command == "CAP" {
            let sub = params.first().map(|s| s.to_ascii_uppercase());
            if let Some(client) = self.clients.get_mut(&key) {
                // LS and REQ both hold registration until END.
                match sub.as_deref() {
                    Some("LS" | "REQ") => client.negotiating = true,
                    Some("END") => client.negotiating = false,
                    _ => {}
                }
            }
            self.cap(parts, key, &mut out, "", params);
            if !out.is_empty() {
                parts.answer(key, |o| o.extend_from_slice(&out));
            }
            self.try_register(parts, key, now_ms);
            return Flow::Continue;
        }
        let Some(client) = self.clients.get_mut(&key) else {
            return Flow::Continue;
        };
        match command {
            "AUTHENTICATE" => {
                self.authenticate(parts, key, "", params, now_ms);
                return Flow::Continue;
            }
            "PASS" => {}
            "NICK" => match params.first() {
                None => numeric(&mut out, "", "431", &["No nickname given"]),
                // While SASL may come (negotiating), an account's name
                // waits for it: the check is made again on registering.
                Some(wanted)
                    if (client.negotiating || client.caps.has("sasl"))
                        && parts.core.is_registered(wanted)
                        && names::check_nick(wanted).is_ok() =>
                {
                    client.nick = Some((*wanted).to_owned())
                }
                Some(wanted) => match nick_refusal(parts.core, key, "", wanted) {
                    Some(refusal) => out = refusal,
                    None => client.nick = Some((*wanted).to_owned()),
                },
            },
            "USER" => {
                // An empty username or realname is a missing one (RFC 2812, 3.1.3).
                if params.len() < 4 || params[0].is_empty() || params[3].is_empty() {
                    numeric(&mut out, "", "461", &["USER", "Not enough parameters"]);
                } else {
                    client.user = true;
                    // Cut to REALLEN: it is matched by every WHO mask.
                    let real: String = encode::clean(params[3]).chars().take(REALLEN).collect();
                    client.realname = Some(real.into());
                }
            }
            "PING" => match params.first() {
                Some(token) => write_text(&mut out, Some(SERVER), "PONG", &[SERVER, token]),
                None => numeric(&mut out, "", "461", &["PING", "Not enough parameters"]),
            },
            "PONG" => {}
            "QUIT" => {
                write_text(&mut out, None, "ERROR", &["Closing link: quit"]);
                parts.answer(key, |o| o.extend_from_slice(&out));
                return Flow::Close;
            }
            _ => numeric(&mut out, "", "451", &["You have not registered"]),
        }
        if !out.is_empty() {
            parts.answer(key, |o| o.extend_from_slice(&out));
        }
        self.try_register(parts, key, now_ms);
        Flow::Continue
    }

    /// Registers once NICK and USER are in and CAP negotiation is over:
    /// the welcome burst, then the core welcomes it and puts it in the
    /// default room, which it sees joined.
    fn try_register<C: AsMut<Outlet>>(&mut self, parts: &mut Parts<'_, C>, key: Key, now_ms: u64) {
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        let Some(mut nick) = client.nick.clone() else {
            return;
        };
        if !client.user || client.negotiating {
            return;
        }
        // Logged in with SASL: it arrives under its account's name, unless
        // another session of the account holds it (then under its NICK).
        if let Some(account) = parts.core.user(key).and_then(|u| u.account.as_deref())
            && parts
                .core
                .find_nick(account.as_str())
                .is_none_or(|holder| holder == key)
        {
            nick = account.as_str().to_owned();
        }
        // Someone may have taken it since NICK.
        if let Some(refusal) = nick_refusal(parts.core, key, "", &nick) {
            client.nick = None;
            parts.answer(key, |o| o.extend_from_slice(&refusal));
            return;
        }
        let Ok(nick) = names::check_nick(&nick) else {
            return;
        };
        // In a cluster the name is claimed first, as a rename is, so two
        // servers cannot both register one name.
        if client.claimed.as_deref() != Some(nick.as_str()) {
            if client.claiming.is_some() {
                return;
            }
            if parts.core.claim_arrival(key, &nick) {
                client.claiming = Some(nick);
                return;
            }
        }
        client.registered = true;
        let counts = self.counts(parts.core, 1);
        let settings = &self.settings;
        parts.answer(key, |out| answer::burst(out, &nick, settings, counts));
        if let Err(refusal) = parts.core.arrive(key, &nick, now_ms) {
            // Checked just above: only a bug gets here.
            let text = refusal.message;
            parts.answer(key, |out| numeric(out, &nick, "433", &[&nick, &text]));
            return;
        }
        let room = parts.core.default_room().as_str().to_owned();
        // Already in it: the core answers `joined` alone, which an IRC
        // client sees as its JOIN, the topic and the names.
        parts.handle(key, Command::Join { room: &room }, now_ms);
    }

    /// The cluster's name table answered the claim of the name `nick`
    /// that `key`'s registration waits for: it registers, or gets 433 and
    /// may send another NICK.
    pub fn claimed<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        nick: &str,
        ok: bool,
        now_ms: u64,
    ) {
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        client.claiming = None;
        if ok {
            client.claimed = Some(nick.to_owned());
            return self.try_register(parts, key, now_ms);
        }
        client.nick = None;
        let text = if parts.core.cluster_down() {
            crate::server::core::UNAVAILABLE
        } else {
            "Nickname is already in use on another server of the cluster"
        };
        parts.answer(key, |out| numeric(out, "", "433", &[nick, text]));
    }

    /// CAP LS, LIST, REQ (all or nothing) and END. `cap-notify` is held
    /// from `CAP LS 302` on, as version 302 implies it.
    fn cap<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        out: &mut Vec<u8>,
        me: &str,
        params: &[&str],
    ) {
        let me = if me.is_empty() { "*" } else { me };
        let sub = params
            .first()
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_default();
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        match sub.as_str() {
            "LS" => {
                let version = params.get(1).and_then(|v| v.parse::<u32>().ok());
                if version.is_some_and(|v| v >= 302) {
                    client.caps.0 |= Caps::bit("cap-notify").unwrap_or(0);
                }
                let listed: Vec<&str> = CAPS
                    .iter()
                    .map(|&c| match c {
                        "sasl" if version.is_some_and(|v| v >= 302) => "sasl=PLAIN",
                        c => c,
                    })
                    .collect();
                write_text(out, Some(SERVER), "CAP", &[me, "LS", &listed.join(" ")]);
            }
            "LIST" => write_text(out, Some(SERVER), "CAP", &[me, "LIST", &client.caps.list()]),
            "REQ" => {
                let list = params.get(1).copied().unwrap_or("");
                match client.caps.request(list) {
                    Some(caps) if !list.trim().is_empty() => {
                        client.caps = caps;
                        if let Some(conn) = parts.core.conn_mut(key) {
                            conn.as_mut().tags = caps.tags();
                        }
                        write_text(out, Some(SERVER), "CAP", &[me, "ACK", list]);
                    }
                    _ => write_text(out, Some(SERVER), "CAP", &[me, "NAK", list]),
                }
            }
            "END" => {}
            _ => numeric(out, me, "410", &[&sub, "Invalid CAP command"]),
        }
    }

    /// `CHATHISTORY LATEST|BEFORE|AFTER #chan <*|msgid=N> <limit>`: a
    /// `history` ask, answered by the store off the loop and encoded as a
    /// `chathistory` batch. Only group messages are stored, and they are
    /// found by `seq`: references by time, and `LATEST` from a reference,
    /// are refused.
    fn chathistory<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        params: &[&str],
        now_ms: u64,
    ) {
        let caps = self.clients.get(&key).map(|c| c.caps).unwrap_or_default();
        let fail = |parts: &mut Parts<'_, C>, code: &str, context: &[&str], why: &str| {
            parts.core.count_in(key);
            let mut all = vec!["CHATHISTORY", code];
            all.extend_from_slice(context);
            all.push(why);
            parts.answer(key, |out| write_text(out, Some(SERVER), "FAIL", &all));
        };
        if !(caps.has("draft/chathistory") && caps.has("batch")) {
            return fail(
                parts,
                "INVALID_PARAMS",
                &[],
                "request the draft/chathistory and batch capabilities first",
            );
        }
        let [sub, target, reference, limit, ..] = params else {
            return fail(parts, "NEED_MORE_PARAMS", &[], "Insufficient parameters");
        };
        let sub = sub.to_ascii_uppercase();
        let seq = reference
            .strip_prefix("msgid=")
            .and_then(|n| n.parse::<u64>().ok());
        let from = match (sub.as_str(), *reference, seq) {
            ("LATEST", "*", _) => wire::Page::Latest,
            ("BEFORE", _, Some(seq)) => wire::Page::Before(seq),
            ("AFTER", _, Some(seq)) => wire::Page::After(seq),
            ("LATEST" | "BEFORE" | "AFTER", _, _) => {
                return fail(
                    parts,
                    "INVALID_PARAMS",
                    &[&sub, reference],
                    "references are msgid=N (LATEST takes only *)",
                );
            }
            _ => return fail(parts, "UNKNOWN_COMMAND", &[&sub], "Unknown subcommand"),
        };
        let Some(room) = target.strip_prefix('#') else {
            return fail(
                parts,
                "INVALID_TARGET",
                &[&sub, target],
                "only channels' messages are kept",
            );
        };
        let Some(limit) = limit.parse::<usize>().ok().filter(|&l| l > 0) else {
            return fail(
                parts,
                "INVALID_PARAMS",
                &[&sub, limit],
                "the limit is a number",
            );
        };
        let limit = limit.min(wire::HISTORY_MAX);
        parts.handle(key, Command::History { room, from, limit }, now_ms);
    }

    /// SASL PLAIN: `AUTHENTICATE PLAIN`, `+`, the payload, then the
    /// core's login (before registration, [`Core::login_waiting`]),
    /// answered as 900 and 903 or 904 by the encoder.
    fn authenticate<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        me: &str,
        params: &[&str],
        now_ms: u64,
    ) {
        parts.core.count_in(key);
        let Some(client) = self.clients.get_mut(&key) else {
            return;
        };
        let mut out = Vec::new();
        let arg = params.first().copied().unwrap_or("");
        let logged_in = parts.core.user(key).is_some_and(|u| u.account.is_some());
        if !client.caps.has("sasl") {
            numeric(
                &mut out,
                me,
                "904",
                &["SASL authentication failed: request the sasl capability first"],
            );
        } else if arg == "*" {
            client.sasl = Sasl::Idle;
            numeric(&mut out, me, "906", &["SASL authentication aborted"]);
        } else if logged_in {
            numeric(
                &mut out,
                me,
                "907",
                &["You have already authenticated using SASL"],
            );
        } else {
            match std::mem::take(&mut client.sasl) {
                Sasl::Idle if arg.eq_ignore_ascii_case("PLAIN") => {
                    client.sasl = Sasl::Plain(Default::default());
                    write(&mut out, &[], None, "AUTHENTICATE", &["+"]);
                }
                Sasl::Idle => {
                    numeric(
                        &mut out,
                        me,
                        "908",
                        &["PLAIN", "are available SASL mechanisms"],
                    );
                    numeric(
                        &mut out,
                        me,
                        "904",
                        &["SASL authentication failed: PLAIN only"],
                    );
                }
                Sasl::Plain(mut buf) => match sasl::step(&mut buf, arg) {
                    Step::More => client.sasl = Sasl::Plain(buf),
                    Step::TooLong => numeric(&mut out, me, "905", &["SASL message too long"]),
                    Step::Overflow => numeric(
                        &mut out,
                        me,
                        "904",
                        &["SASL authentication failed: payload too long"],
                    ),
                    Step::Malformed => numeric(
                        &mut out,
                        me,
                        "904",
                        &["SASL authentication failed: not a PLAIN payload for one account"],
                    ),
                    Step::Done(account, password) => {
                        let password = Password(password.as_str().into());
                        if client.registered {
                            let cmd = Command::Login {
                                account: &account,
                                password: &password,
                            };
                            parts.handle(key, cmd, now_ms);
                        } else {
                            parts.core.login_waiting(key, &account, &password, now_ms);
                            parts.delivery.deliver(parts.core, parts.journal);
                        }
                    }
                },
            }
        }
        if !out.is_empty() {
            parts.answer(key, |o| o.extend_from_slice(&out));
        }
    }

    fn message<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        me: &str,
        command: &str,
        params: &[&str],
        now_ms: u64,
    ) -> Flow {
        // NOTICE is never answered with an error, so that two robots
        // cannot loop.
        let quiet = command == "NOTICE";
        let fail = |parts: &mut Parts<'_, C>, code: &str, params: &[&str]| {
            parts.core.count_in(key);
            if !quiet {
                parts.answer(key, |out| numeric(out, me, code, params));
            }
        };
        let Some(targets) = params.first() else {
            fail(parts, "411", &["No recipient given (PRIVMSG)"]);
            return Flow::Continue;
        };
        let Some(text) = params.get(1).filter(|t| !t.is_empty()) else {
            fail(parts, "412", &["No text to send"]);
            return Flow::Continue;
        };
        let echo = self
            .clients
            .get(&key)
            .is_some_and(|c| c.caps.has("echo-message"));
        let (text, action) = match text
            .strip_prefix("\u{1}ACTION ")
            .or_else(|| text.strip_prefix("\u{1}ACTION"))
        {
            Some(rest) => (rest.strip_suffix('\u{1}').unwrap_or(rest), true),
            None => (*text, false),
        };
        for target in targets.split(',').filter(|t| !t.is_empty()) {
            if let Some(room) = target.strip_prefix('#') {
                match parts.core.room(room) {
                    None => fail(parts, "403", &[target, "No such channel"]),
                    Some(RoomView { name, members, .. }) => {
                        if !members.iter().any(|u| u.nick.as_str() == me) {
                            fail(
                                parts,
                                "404",
                                &[target, "Cannot send to channel: join it first"],
                            );
                            continue;
                        }
                        let room = name.as_str().to_owned();
                        parts.handle(
                            key,
                            Command::Say {
                                room: Some(&room),
                                text,
                                action,
                                echo,
                            },
                            now_ms,
                        );
                    }
                }
            } else {
                let Some(to) = parts.core.find_nick(target) else {
                    fail(parts, "401", &[target, "No such nick"]);
                    continue;
                };
                let away = self.clients.get(&to).and_then(|c| c.away.clone());
                parts.handle(
                    key,
                    Command::Private {
                        to: target,
                        text,
                        action,
                        echo,
                    },
                    now_ms,
                );
                if let Some(away) = away.filter(|_| !quiet) {
                    let nick = answer::nick_of(parts.core, to);
                    parts.answer(key, |out| numeric(out, me, "301", &[&nick, &away]));
                }
            }
        }
        Flow::Continue
    }

    fn join<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        me: &str,
        chans: &str,
        now_ms: u64,
    ) -> Flow {
        if chans == "0" {
            for room in parts.core.rooms_of(key) {
                parts.handle(
                    key,
                    Command::Part {
                        room: room.as_str(),
                        text: None,
                    },
                    now_ms,
                );
            }
            return Flow::Continue;
        }
        for chan in chans.split(',').filter(|c| !c.is_empty()) {
            let Some(room) = chan.strip_prefix('#') else {
                parts.core.count_in(key);
                parts.answer(key, |out| {
                    numeric(
                        out,
                        me,
                        "403",
                        &[chan, "No such channel: channel names start with #"],
                    )
                });
                continue;
            };
            if let Err(why) = names::check_room(room) {
                parts.core.count_in(key);
                parts.answer(key, |out| numeric(out, me, "479", &[chan, &why]));
                continue;
            }
            let rooms = parts.core.rooms_of(key);
            if rooms.iter().any(|r| names::same(r.as_str(), room)) {
                // IRC servers ignore a JOIN of a channel one is on: a
                // second JOIN echo would look like a second membership.
                continue;
            }
            if rooms.len() >= self.settings.max_rooms {
                parts.core.count_in(key);
                let why = format!(
                    "You are in {} channels, the most this server allows; part one first",
                    rooms.len()
                );
                parts.answer(key, |out| numeric(out, me, "405", &[chan, &why]));
                continue;
            }
            parts.handle(key, Command::Join { room }, now_ms);
        }
        Flow::Continue
    }

    fn part<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        me: &str,
        chan: &str,
        text: Option<&str>,
        now_ms: u64,
    ) {
        if let Some(code) = membership(parts.core, me, chan) {
            parts.core.count_in(key);
            parts.answer(key, |out| numeric(out, me, code.0, &[chan, code.1]));
            return;
        }
        let room = &chan[1..];
        parts.handle(
            key,
            Command::Part {
                room,
                text: text.filter(|t| !t.is_empty()),
            },
            now_ms,
        );
    }

    fn topic<C: AsMut<Outlet>>(
        &mut self,
        parts: &mut Parts<'_, C>,
        key: Key,
        me: &str,
        params: &[&str],
        now_ms: u64,
    ) -> Flow {
        let chan = params[0];
        match params.get(1) {
            Some(text) => {
                if let Some(code) = membership(parts.core, me, chan) {
                    parts.core.count_in(key);
                    parts.answer(key, |out| numeric(out, me, code.0, &[chan, code.1]));
                    return Flow::Continue;
                }
                parts.handle(
                    key,
                    Command::Topic {
                        room: &chan[1..],
                        text,
                    },
                    now_ms,
                )
            }
            None => {
                parts.core.count_in(key);
                let found = chan.strip_prefix('#').and_then(|r| parts.core.room(r));
                let mut out = Vec::new();
                match found {
                    None => numeric(&mut out, me, "403", &[chan, "No such channel"]),
                    Some(RoomView { name, topic, .. }) => {
                        let chan = channel(name.as_str());
                        match topic {
                            Some(topic) => {
                                numeric(&mut out, me, "332", &[&chan, &encode::clean(&topic)])
                            }
                            None => numeric(&mut out, me, "331", &[&chan, "No topic is set"]),
                        }
                    }
                }
                parts.answer(key, |o| o.extend_from_slice(&out));
                Flow::Continue
            }
        }
    }
}

impl answer::Kept for Door {
    fn away(&self, key: Key) -> Option<&str> {
        self.clients.get(&key).and_then(|c| c.away.as_deref())
    }

    fn realname(&self, key: Key) -> Option<&str> {
        self.clients.get(&key).and_then(|c| c.realname.as_deref())
    }
}

/// 432 or 433 for a nick `key` may not take, as the lines to send.
fn nick_refusal<C>(core: &Core<C>, key: Key, me: &str, wanted: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match names::check_nick(wanted) {
        Err(why) => numeric(&mut out, me, "432", &[wanted, &why]),
        // An account's name is its owner's, logged in with SASL.
        Ok(_) if core.is_registered(wanted) && !logged_in_as(core, key, wanted) => numeric(
            &mut out,
            me,
            "433",
            &[wanted, "Nickname is a registered account; log in to use it"],
        ),
        Ok(_) => match core.find_nick(wanted) {
            Some(owner) if owner != key => numeric(
                &mut out,
                me,
                "433",
                &[
                    wanted,
                    "Nickname is already in use (look-alikes of a name are that name)",
                ],
            ),
            _ => return None,
        },
    }
    Some(out)
}

/// Whether `key` logged in as the account `name`.
fn logged_in_as<C>(core: &Core<C>, key: Key, name: &str) -> bool {
    core.user(key)
        .and_then(|u| u.account.as_deref())
        .is_some_and(|a| names::same(a.as_str(), name))
}

/// 403 (no such channel) or 442 (not on it), if `me` cannot act in `chan`.
fn membership<C>(core: &Core<C>, me: &str, chan: &str) -> Option<(&'static str, &'static str)> {
    let Some(RoomView { members, .. }) = chan.strip_prefix('#').and_then(|r| core.room(r)) else {
        return Some(("403", "No such channel"));
    };
    if members.iter().any(|u| u.nick.as_str() == me) {
        None
    } else {
        Some(("442", "You're not on that channel"))
    }
}
