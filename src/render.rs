//! The human format: every server message, and every message we send, as
//! the one line a person reads. `chat client` shows these lines after the
//! time; the transcript of `chat bot` prints them after `@actor `. Both
//! come from here, so the two cannot drift apart.
//!
//! Every piece of text from the network (messages, nicknames, the welcome,
//! error messages) goes through [`sanitize`] before it reaches the screen,
//! so no message can clear the screen, move the cursor, set the title or
//! ring the bell. The only escape sequences on a rendered line are the
//! colours written here.

use std::fmt::Write as _;

use crate::escape::is_dangerous;
pub use crate::escape::sanitize;
use crate::names;
use crate::wire::{ByeReason, ClientMsg, HistoryEntry, LeaveReason, ServerMsg};

/// How much styling the output gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Not a terminal: plain text.
    Plain,
    /// A terminal with `NO_COLOR` set: no colours, but a mention is bold.
    Bold,
    /// A terminal: nicknames in colour, mentions highlighted, notices dim
    /// and refusals red.
    Colour,
}

impl Style {
    /// The style for output that goes to a terminal or not, as
    /// <https://no-color.org> asks: `NO_COLOR` set and not empty means no
    /// colour.
    pub fn for_output(terminal: bool) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style::choose(terminal, no_color)
    }

    fn choose(terminal: bool, no_color: bool) -> Style {
        match (terminal, no_color) {
            (false, _) => Style::Plain,
            (true, true) => Style::Bold,
            (true, false) => Style::Colour,
        }
    }
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const MENTION: &str = "\x1b[1;33m";
/// Readable foreground colours on both dark and light backgrounds.
const NICK_COLOURS: [u8; 10] = [31, 32, 33, 34, 35, 36, 91, 92, 94, 95];

/// A colour for a whole finished line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tint {
    /// Comings, goings, lists: the background of a conversation.
    Dim,
    /// A refusal.
    Red,
    /// Something checked that held (the bot's `ok:` lines).
    Green,
}

/// A raw protocol line for `chat client --json`, or `None` when it is not
/// a JSON value. Valid JSON can carry DEL, C1 and bidi characters raw
/// inside strings; they are rewritten as `\u` escapes, which mean the same
/// to any JSON reader and nothing to a terminal. Raw C0 controls cannot be
/// inside strings, so a `\r` or `\n` is whitespace between tokens, where an
/// escape would not be JSON: it becomes a space.
pub fn json_line(line: &[u8]) -> Option<String> {
    let line = line.trim_ascii();
    serde_json::from_slice::<serde::de::IgnoredAny>(line).ok()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\r' || c == '\n' {
            out.push(' ');
        } else if is_dangerous(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// True when `text` names `nick` as a word of its own, in any case and
/// width (`names::caseless`; look-alikes from other scripts are not
/// highlighted). A word is a run of the characters names are made of, so
/// `小明` is mentioned in `小明: 你好` but not in `小明你好`. Every received
/// message goes through here: an ASCII word (most of them) is compared
/// without normalising, and a word too long to be a name not at all.
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let want = names::caseless(nick);
    let is_it = |word: &str| {
        if word.is_ascii() {
            // ASCII folds to lower case, and `want` holds no upper case.
            !word.is_empty() && word.eq_ignore_ascii_case(&want)
        } else {
            names::could_be_a_name(word) && names::caseless(word) == want
        }
    };
    // By bytes, not `str::split`: a message is long and this runs for
    // every one, so an ASCII byte is judged without decoding a char.
    let bytes = text.as_bytes();
    let (mut start, mut at) = (0, 0);
    while let Some(&b) = bytes.get(at) {
        let (len, inside) = if b.is_ascii() {
            (1, b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        } else {
            match text.get(at..).and_then(|rest| rest.chars().next()) {
                Some(c) => (c.len_utf8(), names::is_name_char(c)),
                None => (1, false),
            }
        };
        if !inside {
            if text.get(start..at).is_some_and(is_it) {
                return true;
            }
            start = at + len;
        }
        at += len;
    }
    text.get(start..).is_some_and(is_it)
}

/// The room a message happened in, for the messages that belong to one
/// room: a group message, a room's `join`, a `part`, a topic change.
pub fn room_of<'m>(msg: &'m ServerMsg<'_>) -> Option<&'m str> {
    match msg {
        ServerMsg::Group { room, .. }
        | ServerMsg::Join { room, .. }
        | ServerMsg::Leave { room, .. } => room.as_deref(),
        ServerMsg::Topic { room, .. } => Some(room),
        _ => None,
    }
}

/// The most names a list shows; a big room's `who` stays one readable line.
const MAX_NAMES: usize = 30;

/// Names sorted as people read them (any case), `a, b, c`, and
/// `and N more` past [`MAX_NAMES`].
fn names<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let mut names: Vec<&str> = names.collect();
    names.sort_by_cached_key(|n| names::caseless(n));
    let more = names.len().saturating_sub(MAX_NAMES);
    names.truncate(MAX_NAMES);
    let mut list = names.join(", ");
    if more > 0 {
        let _ = write!(list, " and {more} more");
    }
    list
}

/// A nickname's colour: a hash of its comparison key, so it is the same in
/// every session and for every user, and look-alikes cannot wear another
/// colour than the name they imitate.
fn nick_colour(nick: &str) -> u8 {
    let hash = names::fold(nick).bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    NICK_COLOURS[hash as usize % NICK_COLOURS.len()]
}

/// Who reads the line: a message naming `nick` is highlighted, and a
/// rename of connection `id` reads "you are now known as".
#[derive(Clone, Copy, Debug)]
pub struct Me<'a> {
    /// Our connection's id, once welcomed.
    pub id: Option<u64>,
    pub nick: &'a str,
}

/// Builds display lines in one style.
#[derive(Clone, Copy, Debug)]
pub struct Renderer {
    pub style: Style,
}

impl Renderer {
    /// A received message as one line, or `None` for the one nobody needs
    /// to see (`pong`).
    ///
    /// `<alice> text`, `*alice* text`, `* alice waves` (an action, `/me`),
    /// `* *alice* waves` (a private action), `-- carol joined`,
    /// `-- carol left (quit: bye)`, `-- carol is now known as caz`,
    /// `-- 2 online: alice, bob`, `!! message`.
    pub fn received(&self, msg: &ServerMsg<'_>, me: Me<'_>) -> Option<String> {
        self.received_in(msg, me, None)
    }

    /// Like [`Renderer::received`], for a reader who has a current room
    /// `here` (the client's; the bot reads as if it were the default room):
    /// a line from another room starts with that room in brackets,
    /// `[rust] <alice> hi`, `[rust] -- bob joined`. With `here` `None` (a
    /// v1 server, no rooms) no line is marked.
    pub fn received_in(
        &self,
        msg: &ServerMsg<'_>,
        me: Me<'_>,
        here: Option<&str>,
    ) -> Option<String> {
        let line = self.body(msg, me)?;
        Some(match (room_of(msg), here) {
            (Some(room), Some(here)) if !names::same(room, here) => {
                format!("{} {line}", self.room_mark(room))
            }
            _ => line,
        })
    }

    /// `[rust]`: the room a line comes from, in the room's colour.
    pub fn room_mark(&self, room: &str) -> String {
        let room = sanitize(room);
        match self.style {
            Style::Colour => format!("[\x1b[{}m{room}{RESET}]", nick_colour(&room)),
            Style::Plain | Style::Bold => format!("[{room}]"),
        }
    }

    fn body(&self, msg: &ServerMsg<'_>, me: Me<'_>) -> Option<String> {
        Some(match msg {
            ServerMsg::Welcome {
                nick, text, users, ..
            } => {
                let plural = if *users == 1 { "" } else { "s" };
                self.notice(&format!(
                    "{text} ({users} user{plural} online; you are {nick})"
                ))
            }
            ServerMsg::Join { nick, .. } => self.notice(&format!("{nick} joined")),
            ServerMsg::Leave {
                nick, reason, text, ..
            } => {
                let why = match (reason, text) {
                    (LeaveReason::Quit | LeaveReason::Part, Some(text)) => {
                        format!("{}: {text}", reason.as_str())
                    }
                    (reason, _) => reason.as_str().to_owned(),
                };
                self.notice(&format!("{nick} left ({why})"))
            }
            ServerMsg::Nick { id, new, .. } if me.id == Some(*id) => {
                self.notice(&format!("you are now known as {new}"))
            }
            ServerMsg::Nick { old, new, .. } => {
                self.notice(&format!("{old} is now known as {new}"))
            }
            ServerMsg::Group {
                from, text, action, ..
            } => {
                let who = match action {
                    true => format!("* {}", self.nick(from)),
                    false => format!("<{}>", self.nick(from)),
                };
                self.said(&who, text, from, me.nick)
            }
            ServerMsg::Private {
                from, text, action, ..
            } => {
                let who = match action {
                    true => format!("* *{}*", self.nick(from)),
                    false => format!("*{}*", self.nick(from)),
                };
                self.said(&who, text, from, me.nick)
            }
            ServerMsg::Who { users, room } => {
                let nicks = names(users.iter().map(|u| &*u.nick));
                match room {
                    Some(room) => self.notice(&format!("{} in {room}: {nicks}", users.len())),
                    None => self.notice(&format!("{} online: {nicks}", users.len())),
                }
            }
            ServerMsg::Pong { .. } => return None,
            ServerMsg::Bye { reason } => self.notice(match reason {
                ByeReason::Quit => "bye (quit)",
                ByeReason::Shutdown => "bye (shutdown: the server is stopping)",
            }),
            ServerMsg::Error { message, .. } => self.error(message),
            ServerMsg::Registered { account } => {
                self.notice(&format!("registered: the nickname {account} is now yours"))
            }
            ServerMsg::LoggedIn { account } => self.notice(&format!("logged in as {account}")),
            ServerMsg::LoggedOut => self.notice(
                "logged out: you keep your nickname until you change it, but no longer own it",
            ),
            ServerMsg::Joined { room, topic, users } => {
                let nicks = names(users.iter().map(|u| &*u.nick));
                let topic = topic
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .map(|t| format!("; topic: {t}"))
                    .unwrap_or_default();
                self.notice(&format!(
                    "you are in {room} ({} here: {nicks}){topic}",
                    users.len()
                ))
            }
            ServerMsg::Parted { room } => self.notice(&format!("you left {room}")),
            ServerMsg::Topic { by, text, .. } if text.is_empty() => {
                self.notice(&format!("{by} cleared the topic"))
            }
            ServerMsg::Topic { by, text, .. } => {
                self.notice(&format!("{by} set the topic: {text}"))
            }
            ServerMsg::Rooms { rooms } if rooms.is_empty() => self.notice("no rooms"),
            ServerMsg::Rooms { rooms } => {
                let mut rooms: Vec<_> = rooms.iter().collect();
                rooms.sort_by_key(|r| r.name.to_ascii_lowercase());
                let list: Vec<String> = rooms
                    .iter()
                    .map(|r| match r.topic.as_deref().filter(|t| !t.is_empty()) {
                        Some(topic) => format!("{} ({}: {topic})", r.name, r.users),
                        None => format!("{} ({})", r.name, r.users),
                    })
                    .collect();
                let plural = if rooms.len() == 1 { "" } else { "s" };
                self.notice(&format!(
                    "{} room{plural}: {}",
                    rooms.len(),
                    list.join(", ")
                ))
            }
            ServerMsg::History { .. } | ServerMsg::Unknown => return None,
        })
    }

    /// A `history` answer as lines: `-- history of rust: 3 messages`, then
    /// each message as a live one reads, after the time it was said in
    /// brackets (`[14:05] <alice> hi`, `[Tue 14:05] * bob waves`), then
    /// `-- end of history`. The bracketed time, dim in colour, is what
    /// tells an old line from a live one: a reader must not answer a
    /// question asked yesterday as if it were asked now. `when` turns a
    /// `ts` into that time (the local clock's business, not ours).
    pub fn history(
        &self,
        room: &str,
        messages: &[HistoryEntry<'_>],
        more: bool,
        me: Me<'_>,
        when: impl Fn(u64) -> String,
    ) -> Vec<String> {
        let count = match messages.len() {
            1 => "1 message".to_owned(),
            n => format!("{n} messages"),
        };
        let older = if more { " (and older ones)" } else { "" };
        let mut lines = Vec::with_capacity(messages.len() + 2);
        lines.push(self.notice(&format!("history of {room}: {count}{older}")));
        for m in messages {
            let who = match m.action {
                true => format!("* {}", self.nick(&m.from)),
                false => format!("<{}>", self.nick(&m.from)),
            };
            let time = self.tint(Tint::Dim, &format!("[{}]", sanitize(&when(m.ts))));
            lines.push(format!(
                "{time} {}",
                self.said(&who, &m.text, &m.from, me.nick)
            ));
        }
        lines.push(self.notice("end of history"));
        lines
    }

    /// What we sent, as the others will see it: `<me> text` for the room,
    /// `-> *bob* text` for one person, `* me waves` and
    /// `-> *bob* * me waves` for actions (`/me`); `None` for messages that
    /// show nothing until the server answers (`nick`, `who`, `ping`,
    /// `quit`).
    pub fn sent(&self, msg: &ClientMsg<'_>, me: &str) -> Option<String> {
        let who = match msg {
            ClientMsg::Group { action: false, .. } => format!("<{}>", self.nick(me)),
            ClientMsg::Group { action: true, .. } => format!("* {}", self.nick(me)),
            ClientMsg::Private {
                to, action: false, ..
            } => format!("-> *{}*", self.nick(to)),
            ClientMsg::Private {
                to, action: true, ..
            } => format!("-> *{}* * {}", self.nick(to), self.nick(me)),
            _ => return None,
        };
        match msg {
            ClientMsg::Group { text, .. } | ClientMsg::Private { text, .. } => {
                Some(self.said(&who, text, me, me))
            }
            _ => None,
        }
    }

    /// `-- text`: something that happened, or something we say ourselves.
    pub fn notice(&self, text: &str) -> String {
        self.tint(Tint::Dim, &format!("-- {}", sanitize(text)))
    }

    /// `!! text`: something refused, by the server or by us.
    pub fn error(&self, text: &str) -> String {
        self.tint(Tint::Red, &format!("!! {}", sanitize(text)))
    }

    /// `HH:MM:SS line`: a line with the time it was shown at.
    pub fn stamp(&self, time: &str, line: &str) -> String {
        match self.style {
            Style::Colour => format!("{DIM}{time}{RESET} {line}"),
            Style::Plain | Style::Bold => format!("{time} {line}"),
        }
    }

    /// Colours a finished line, in the colour style only.
    pub fn tint(&self, tint: Tint, line: &str) -> String {
        let code = match tint {
            Tint::Dim => DIM,
            Tint::Red => RED,
            Tint::Green => GREEN,
        };
        match self.style {
            Style::Colour => format!("{code}{line}{RESET}"),
            Style::Plain | Style::Bold => line.to_owned(),
        }
    }

    /// `WHO text`, the text highlighted when someone else's message
    /// mentions us.
    fn said(&self, who: &str, text: &str, from: &str, me: &str) -> String {
        let text = sanitize(text);
        let highlight = !names::same(from, me) && mentions(&text, me);
        match self.style {
            Style::Colour if highlight => format!("{who} {MENTION}{text}{RESET}"),
            Style::Bold if highlight => format!("{who} {BOLD}{text}{RESET}"),
            _ => format!("{who} {text}"),
        }
    }

    fn nick(&self, nick: &str) -> String {
        let nick = sanitize(nick);
        match self.style {
            Style::Colour => format!("\x1b[{}m{nick}{RESET}", nick_colour(&nick)),
            Style::Plain | Style::Bold => nick.into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ErrorCode, WhoEntry};

    const PLAIN: Renderer = Renderer {
        style: Style::Plain,
    };
    const BOLD_ONLY: Renderer = Renderer { style: Style::Bold };
    const COLOUR: Renderer = Renderer {
        style: Style::Colour,
    };
    const BOB: Me<'static> = Me {
        id: Some(2),
        nick: "bob",
    };

    fn group(from: &str, text: &str) -> ServerMsg<'static> {
        ServerMsg::Group {
            from: from.to_owned().into(),
            text: text.to_owned().into(),
            ts: 1,
            action: false,
            room: None,
            seq: 0,
        }
    }

    fn plain(msg: ServerMsg<'_>) -> String {
        PLAIN.received(&msg, BOB).unwrap()
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert_eq!(Style::choose(true, false), Style::Colour);
        assert_eq!(Style::choose(true, true), Style::Bold);
        assert_eq!(Style::choose(false, false), Style::Plain);
        assert_eq!(Style::choose(false, true), Style::Plain);
    }

    #[test]
    fn sanitize_shows_controls_as_escapes() {
        assert_eq!(sanitize("plain text, tab\tok"), "plain text, tab\tok");
        assert!(matches!(sanitize("héllo ✓"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(sanitize("\x1b[2J"), "\\x1b[2J");
        assert_eq!(sanitize("bell\x07"), "bell\\x07");
        assert_eq!(sanitize("a\nb\rc"), "a\\x0ab\\x0dc");
        assert_eq!(sanitize("\0\x7f"), "\\x00\\x7f");
        assert_eq!(sanitize("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(sanitize("\u{85}"), "\\u{85}");
        assert_eq!(sanitize("abc\u{202e}cba"), "abc\\u{202e}cba");
        assert_eq!(sanitize("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
    }

    #[test]
    fn sanitized_text_has_no_control_characters() {
        let all: String = (0u32..0x2100).filter_map(char::from_u32).collect();
        let clean = sanitize(&all);
        assert!(!clean.chars().any(|c| c != '\t' && (c.is_control())));
        assert!(!clean.contains('\u{202e}'));
    }

    #[test]
    fn every_message_in_the_human_format() {
        assert_eq!(
            plain(ServerMsg::Welcome {
                id: 3,
                nick: "guest3".into(),
                text: "Welcome to the chat room!".into(),
                users: 2,
                protocol: 0,
                room: None,
                login: None,
            }),
            "-- Welcome to the chat room! (2 users online; you are guest3)"
        );
        assert_eq!(
            plain(ServerMsg::Welcome {
                id: 1,
                nick: "guest1".into(),
                text: "Hi".into(),
                users: 1,
                protocol: 0,
                room: None,
                login: None,
            }),
            "-- Hi (1 user online; you are guest1)"
        );
        assert_eq!(plain(group("alice", "hi")), "<alice> hi");
        assert_eq!(
            plain(ServerMsg::Private {
                from: "alice".into(),
                to: "bob".into(),
                text: "psst".into(),
                ts: 1,
                action: false
            }),
            "*alice* psst"
        );
        assert_eq!(
            plain(ServerMsg::Join {
                id: 3,
                nick: "carol".into(),
                ts: 1,
                room: None
            }),
            "-- carol joined"
        );
        assert_eq!(
            plain(ServerMsg::Leave {
                id: 3,
                nick: "carol".into(),
                reason: LeaveReason::Quit,
                ts: 1,
                text: Some("bye".into()),
                room: None
            }),
            "-- carol left (quit: bye)"
        );
        assert_eq!(
            plain(ServerMsg::Leave {
                id: 3,
                nick: "carol".into(),
                reason: LeaveReason::Disconnect,
                ts: 1,
                text: None,
                room: None
            }),
            "-- carol left (disconnect)"
        );
        assert_eq!(
            plain(ServerMsg::Nick {
                id: 3,
                old: "carol".into(),
                new: "caz".into(),
                ts: 1
            }),
            "-- carol is now known as caz"
        );
        assert_eq!(
            plain(ServerMsg::Nick {
                id: 2,
                old: "guest2".into(),
                new: "bob".into(),
                ts: 1
            }),
            "-- you are now known as bob"
        );
        assert_eq!(
            plain(ServerMsg::Who {
                users: ["carol", "Alice", "bob"]
                    .iter()
                    .zip(1..)
                    .map(|(nick, id)| WhoEntry {
                        id,
                        nick: (*nick).into(),
                        since: 1
                    })
                    .collect(),
                room: None
            }),
            "-- 3 online: Alice, bob, carol"
        );
        assert_eq!(
            plain(ServerMsg::Bye {
                reason: ByeReason::Quit
            }),
            "-- bye (quit)"
        );
        assert_eq!(
            plain(ServerMsg::Error {
                code: ErrorCode::NoSuchUser,
                message: "no user named zed".into()
            }),
            "!! no user named zed"
        );
        assert_eq!(PLAIN.received(&ServerMsg::Pong { token: None }, BOB), None);
    }

    #[test]
    fn history_is_marked_with_when_it_was_said() {
        let entry = |seq, from: &str, text: &str, action| HistoryEntry {
            seq,
            from: from.to_owned().into(),
            text: text.to_owned().into(),
            ts: seq * 1000,
            action,
        };
        let messages = [
            entry(1, "alice", "hi bob", false),
            entry(2, "carol", "waves\x1b[2J", true),
        ];
        let when = |ts: u64| format!("t{}", ts / 1000);
        assert_eq!(
            PLAIN.history("rust", &messages, true, BOB, when),
            [
                "-- history of rust: 2 messages (and older ones)",
                "[t1] <alice> hi bob",
                "[t2] * carol waves\\x1b[2J",
                "-- end of history",
            ]
        );
        assert_eq!(
            PLAIN.history("rust", &messages[..1], false, BOB, when)[0],
            "-- history of rust: 1 message"
        );
        let coloured = COLOUR.history("rust", &messages[..1], false, BOB, when);
        assert!(
            coloured[1].starts_with("\x1b[2m[t1]\x1b[0m "),
            "{:?}",
            coloured[1]
        );
        assert!(coloured[1].contains(MENTION), "a mention still stands out");
    }

    #[test]
    fn what_we_sent() {
        let said = ClientMsg::Group {
            text: "yo".into(),
            action: false,
            room: None,
        };
        assert_eq!(PLAIN.sent(&said, "bob").as_deref(), Some("<bob> yo"));
        let whispered = ClientMsg::Private {
            to: "bob".into(),
            text: "psst".into(),
            action: false,
        };
        assert_eq!(
            PLAIN.sent(&whispered, "alice").as_deref(),
            Some("-> *bob* psst")
        );
        assert_eq!(PLAIN.sent(&ClientMsg::Who { room: None }, "bob"), None);
        assert_eq!(PLAIN.sent(&ClientMsg::Quit { text: None }, "bob"), None);
    }

    fn in_room(msg: ServerMsg<'_>, here: Option<&str>) -> String {
        PLAIN.received_in(&msg, BOB, here).unwrap()
    }

    #[test]
    fn lines_from_another_room_name_it() {
        let said = |room: &str| ServerMsg::Group {
            from: "alice".into(),
            text: "hi".into(),
            ts: 1,
            room: Some(room.to_owned().into()),
            seq: 7,
            action: false,
        };
        assert_eq!(in_room(said("lobby"), Some("lobby")), "<alice> hi");
        assert_eq!(in_room(said("rust"), Some("lobby")), "[rust] <alice> hi");
        assert_eq!(in_room(said("rust"), None), "<alice> hi");
        let joined = ServerMsg::Join {
            id: 4,
            nick: "bob".into(),
            ts: 1,
            room: Some("rust".into()),
        };
        assert_eq!(in_room(joined, Some("lobby")), "[rust] -- bob joined");
        let parted = ServerMsg::Leave {
            id: 4,
            nick: "bob".into(),
            reason: LeaveReason::Part,
            ts: 1,
            text: Some("lunch".into()),
            room: Some("rust".into()),
        };
        assert_eq!(in_room(parted, Some("rust")), "-- bob left (part: lunch)");
        let topic = |text: &str| ServerMsg::Topic {
            room: "rust".into(),
            by: "alice".into(),
            text: text.to_owned().into(),
            ts: 1,
        };
        assert_eq!(
            in_room(topic("borrowck"), Some("lobby")),
            "[rust] -- alice set the topic: borrowck"
        );
        assert_eq!(
            in_room(topic(""), Some("rust")),
            "-- alice cleared the topic"
        );
        // A rename or a departure from the server belongs to no room.
        let gone = ServerMsg::Leave {
            id: 4,
            nick: "bob".into(),
            reason: LeaveReason::Quit,
            ts: 1,
            text: None,
            room: None,
        };
        assert_eq!(in_room(gone, Some("lobby")), "-- bob left (quit)");
        let colour = COLOUR
            .received_in(&said("rust"), BOB, Some("lobby"))
            .unwrap();
        assert!(colour.starts_with("[\x1b["), "{colour:?}");
        let evil = COLOUR.room_mark("\x1b[2J");
        assert!(!evil.contains("\x1b[2J"), "{evil:?}");
    }

    #[test]
    fn room_answers_in_the_human_format() {
        let member = |id, nick: &str| crate::wire::Member {
            id,
            nick: nick.to_owned().into(),
        };
        let joined = ServerMsg::Joined {
            room: "rust".into(),
            topic: Some("borrowck".into()),
            users: vec![member(2, "bob"), member(1, "Alice")],
        };
        assert_eq!(
            plain(joined),
            "-- you are in rust (2 here: Alice, bob); topic: borrowck"
        );
        assert_eq!(
            plain(ServerMsg::Parted {
                room: "rust".into()
            }),
            "-- you left rust"
        );
        let entry = |name: &str, users, topic: Option<&str>| crate::wire::RoomEntry {
            name: name.to_owned().into(),
            users,
            topic: topic.map(|t| t.to_owned().into()),
        };
        assert_eq!(
            plain(ServerMsg::Rooms {
                rooms: vec![entry("rust", 2, Some("borrowck")), entry("lobby", 5, None)]
            }),
            "-- 2 rooms: lobby (5), rust (2: borrowck)"
        );
        assert_eq!(plain(ServerMsg::Rooms { rooms: vec![] }), "-- no rooms");
        let who = ServerMsg::Who {
            users: (1..=40)
                .map(|id| WhoEntry {
                    id,
                    nick: format!("u{id:02}").into(),
                    since: 1,
                })
                .collect(),
            room: Some("big".into()),
        };
        let line = plain(who);
        assert!(line.starts_with("-- 40 in big: u01, u02,"), "{line}");
        assert!(line.ends_with("u30 and 10 more"), "{line}");
        assert_eq!(PLAIN.received(&ServerMsg::Unknown, BOB), None);
    }

    #[test]
    fn actions_read_as_the_sender_doing_something() {
        let waves = ServerMsg::Group {
            from: "alice".into(),
            text: "waves".into(),
            ts: 1,
            room: None,
            seq: 0,
            action: true,
        };
        assert_eq!(plain(waves), "* alice waves");
        let private = ServerMsg::Private {
            from: "alice".into(),
            to: "bob".into(),
            text: "winks".into(),
            ts: 1,
            action: true,
        };
        assert_eq!(plain(private), "* *alice* winks");
        let group = ClientMsg::Group {
            room: None,
            text: "waves".into(),
            action: true,
        };
        assert_eq!(PLAIN.sent(&group, "bob").as_deref(), Some("* bob waves"));
        let private = ClientMsg::Private {
            to: "alice".into(),
            text: "winks".into(),
            action: true,
        };
        assert_eq!(
            PLAIN.sent(&private, "bob").as_deref(),
            Some("-> *alice* * bob winks")
        );
    }

    #[test]
    fn an_action_is_a_star_and_the_doer() {
        let acted = |r: &Renderer, from: &str, text: &str| {
            let msg = ServerMsg::Group {
                from: from.to_owned().into(),
                text: text.to_owned().into(),
                ts: 1,
                room: None,
                seq: 1,
                action: true,
            };
            r.received(&msg, BOB).unwrap()
        };
        assert_eq!(acted(&PLAIN, "alice", "waves"), "* alice waves");
        assert_eq!(acted(&PLAIN, "a\x1b[2J", "x\x07"), "* a\\x1b[2J x\\x07");
        let line = acted(&COLOUR, "alice", "pokes bob");
        assert!(line.contains(MENTION), "{line:?}");
        assert!(!acted(&COLOUR, "bob", "pokes bob").contains(MENTION));
    }

    #[test]
    fn the_time_is_a_prefix_of_its_own() {
        let line = PLAIN.notice("carol joined");
        assert_eq!(PLAIN.stamp("12:00:01", &line), "12:00:01 -- carol joined");
        assert_eq!(
            COLOUR.stamp("12:00:01", "x"),
            format!("{DIM}12:00:01{RESET} x")
        );
    }

    #[test]
    fn network_text_is_sanitized_everywhere() {
        let evil = "\x1b[2J\n<alice> fake";
        let msgs = [
            group(evil, evil),
            ServerMsg::Private {
                from: evil.into(),
                to: "bob".into(),
                text: evil.into(),
                ts: 1,
                action: false,
            },
            ServerMsg::Welcome {
                id: 1,
                nick: evil.into(),
                text: evil.into(),
                users: 1,
                protocol: 0,
                room: None,
                login: None,
            },
            ServerMsg::Join {
                id: 3,
                nick: evil.into(),
                ts: 1,
                room: None,
            },
            ServerMsg::Leave {
                id: 3,
                nick: evil.into(),
                reason: LeaveReason::Quit,
                ts: 1,
                text: Some(evil.into()),
                room: None,
            },
            ServerMsg::Nick {
                id: 3,
                old: evil.into(),
                new: evil.into(),
                ts: 1,
            },
            ServerMsg::Who {
                users: vec![WhoEntry {
                    id: 1,
                    nick: evil.into(),
                    since: 1,
                }],
                room: None,
            },
            ServerMsg::Error {
                code: ErrorCode::BadJson,
                message: evil.into(),
            },
        ];
        let mut lines: Vec<String> = msgs
            .iter()
            .flat_map(|m| [PLAIN.received(m, BOB), COLOUR.received(m, BOB)])
            .flatten()
            .collect();
        let sent = ClientMsg::Private {
            to: evil.into(),
            text: evil.into(),
            action: false,
        };
        lines.extend(PLAIN.sent(&sent, evil));
        lines.push(PLAIN.notice(evil));
        lines.push(PLAIN.error(evil));
        for line in lines {
            assert!(line.contains("\\x1b[2J\\x0a<alice> fake"), "{line:?}");
            assert!(
                !line.contains("\x1b[2J") && !line.contains('\n'),
                "{line:?}"
            );
        }
    }

    #[test]
    fn colours_are_per_nick_and_stable() {
        let a = COLOUR.received(&group("alice", "hi"), BOB).unwrap();
        assert!(
            a.contains(&format!("\x1b[{}malice\x1b[0m", nick_colour("alice"))),
            "{a:?}"
        );
        assert_eq!(nick_colour("Alice"), nick_colour("alice"));
        let distinct: std::collections::HashSet<u8> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|n| nick_colour(n))
            .collect();
        assert!(distinct.len() > 1, "every nick got the same colour");
        assert!(!plain(group("alice", "hi")).contains('\x1b'));
    }

    #[test]
    fn notices_are_dim_and_refusals_red_in_colour_only() {
        assert_eq!(COLOUR.error("x"), format!("{RED}!! x{RESET}"));
        assert_eq!(COLOUR.notice("x"), format!("{DIM}-- x{RESET}"));
        assert_eq!(
            COLOUR.tint(Tint::Green, "ok: x"),
            format!("{GREEN}ok: x{RESET}")
        );
        for r in [PLAIN, BOLD_ONLY] {
            assert_eq!(r.error("x"), "!! x");
            assert_eq!(r.notice("x"), "-- x");
            assert_eq!(r.tint(Tint::Green, "ok: x"), "ok: x");
        }
    }

    #[test]
    fn mentions_are_whole_words_in_any_case() {
        assert!(mentions("hey bob!", "bob"));
        assert!(mentions("BOB: look", "bob"));
        assert!(mentions("bob", "bob"));
        assert!(!mentions("bobby", "bob"));
        assert!(!mentions("kebob", "bob"));
        assert!(!mentions("bob_2 there", "bob"));
        assert!(!mentions("anything", ""));
        assert!(mentions("小明: 你好", "小明"));
        assert!(mentions("привет, ОЛЬГА", "Ольга"));
        assert!(mentions("hi ＡＬＩＣＥ", "alice"), "fullwidth letters");
        assert!(mentions("hi alice", "ａｌｉｃｅ"));
        assert!(mentions("STRASSE!", "Straße"));
        assert!(!mentions(&format!("{} alice", "x".repeat(5000)), "bob"));
        assert!(mentions("cafe\u{301} opens", "café"));
        assert!(!mentions("小明你好", "小明"), "no word of its own");
        assert!(!mentions("Ольгами", "Ольга"));
    }

    #[test]
    fn mentions_are_highlighted_unless_our_own() {
        let line = COLOUR.received(&group("alice", "hi bob"), BOB).unwrap();
        assert!(
            line.contains(&format!("{MENTION}hi bob{RESET}")),
            "{line:?}"
        );
        let private = ServerMsg::Private {
            from: "alice".into(),
            to: "bob".into(),
            text: "hi bob".into(),
            ts: 1,
            action: false,
        };
        let line = COLOUR.received(&private, BOB).unwrap();
        assert!(line.contains(MENTION), "{line:?}");
        let own = COLOUR.received(&group("bob", "i am bob"), BOB).unwrap();
        assert!(!own.contains(MENTION), "{own:?}");
        let own = COLOUR.sent(
            &ClientMsg::Group {
                text: "bob".into(),
                action: false,
                room: None,
            },
            "bob",
        );
        assert!(!own.unwrap().contains(MENTION));
        let bold = BOLD_ONLY.received(&group("alice", "hi bob"), BOB).unwrap();
        assert_eq!(bold, format!("<alice> {BOLD}hi bob{RESET}"));
        assert!(!plain(group("alice", "hi bob")).contains('\x1b'));
    }

    #[test]
    fn json_lines_stay_json_and_lose_raw_controls() {
        let raw = "{\"type\":\"group\",\"text\":\"a\u{9b}b\u{7f}\"}\r".as_bytes();
        let line = json_line(raw).unwrap();
        assert_eq!(line, r#"{"type":"group","text":"a\u009bb\u007f"}"#);
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["text"], "a\u{9b}b\u{7f}");
        assert_eq!(json_line(b"not json\x1b[2J"), None);
    }

    /// Found by fuzzing (`server_lines`): a `\r` between tokens came out
    /// as `\u000d`, which is not JSON.
    #[test]
    fn json_lines_keep_whitespace_between_tokens_valid() {
        let line = json_line(b"{\"type\":\r\"pong\",\n\"token\":\t1}").unwrap();
        assert_eq!(line, "{\"type\": \"pong\", \"token\":\t1}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["type"], "pong");
    }
}
