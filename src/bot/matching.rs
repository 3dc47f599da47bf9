//! What an `expect` step matches: `*` glob patterns, and the table of which
//! fields of each kind of message stand for FROM and TEXT (bot-scripts.md).
//!
//! Also the two ways the runner writes these down for people: a pattern
//! (`group from alice "hello*"`) and a received message (`group carol "hi"`),
//! so that a failure reads the same way as the line that caused it.

use crate::glob::glob;
use crate::names;
use crate::wire::{ServerMsg, WhoEntry};

/// The kinds of message an `expect` can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Group,
    /// A group message that is an action (`/me`): not a `group`.
    Action,
    Private,
    Join,
    Leave,
    Nick,
    Error,
    Who,
    Bye,
    /// The answer to our `join`.
    Joined,
    /// The answer to our `part`.
    Parted,
    Topic,
    /// The answer to `rooms`.
    Rooms,
    /// The answer to `history`: FROM and TEXT match one of its messages.
    History,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Group,
        Kind::Action,
        Kind::Private,
        Kind::Join,
        Kind::Leave,
        Kind::Nick,
        Kind::Error,
        Kind::Who,
        Kind::Bye,
        Kind::Joined,
        Kind::Parted,
        Kind::Topic,
        Kind::Rooms,
        Kind::History,
    ];

    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == word)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Action => "action",
            Kind::Private => "private",
            Kind::Join => "join",
            Kind::Leave => "leave",
            Kind::Nick => "nick",
            Kind::Error => "error",
            Kind::Who => "who",
            Kind::Bye => "bye",
            Kind::Joined => "joined",
            Kind::Parted => "parted",
            Kind::Topic => "topic",
            Kind::Rooms => "rooms",
            Kind::History => "history",
        }
    }

    /// Whether the table gives this kind a TEXT (`join`, `who` and `bye`
    /// have none, so a TEXT on their line is a mistake in the script).
    pub fn has_text(self) -> bool {
        !matches!(
            self,
            Kind::Join | Kind::Who | Kind::Bye | Kind::Parted | Kind::Rooms
        )
    }

    /// Whether `in ROOM` may narrow it: the messages that happen in a room
    /// and carry it beside their FROM.
    pub fn in_a_room(self) -> bool {
        matches!(
            self,
            Kind::Group | Kind::Action | Kind::Join | Kind::Leave | Kind::Who
        )
    }

    /// Whether its FROM is a room's name (so `in ROOM` would say it twice).
    pub fn names_a_room(self) -> bool {
        matches!(
            self,
            Kind::Joined | Kind::Parted | Kind::Topic | Kind::Rooms | Kind::History
        )
    }

    /// The word between KIND and FROM when a pattern is written for people.
    fn before_from(self) -> &'static str {
        match self {
            Kind::Group | Kind::Action | Kind::Private => " from",
            Kind::Who | Kind::Rooms => " listing",
            _ => "",
        }
    }
}

/// One message as an actor's queue holds it.
#[derive(Clone, Debug)]
pub struct Received {
    pub msg: ServerMsg<'static>,
    /// For a `join`: the name the newcomer took right after joining. A user
    /// joins as `guest<ID>` and only then asks for a nickname, so without
    /// this `expect join carol` could never match.
    pub became: Option<String>,
    /// For a `nick`: it is that newcomer naming itself, which failure
    /// reports already show as `join NAME`. It stays matchable.
    pub folded: bool,
    /// The default room, as the actor's `welcome` named it (a v1 server
    /// names none): where a message that names no room happened.
    pub home: Option<String>,
}

impl Received {
    pub fn new(msg: ServerMsg<'static>) -> Received {
        Received {
            msg,
            became: None,
            folded: false,
            home: None,
        }
    }

    /// The room the message happened in, as `in ROOM` sees it.
    fn place(&self) -> Place<'_> {
        match &self.msg {
            ServerMsg::Group { room, .. } | ServerMsg::Join { room, .. } => match room {
                Some(room) => Place::In(room),
                None => self.home.as_deref().map_or(Place::Nowhere, Place::In),
            },
            ServerMsg::Leave {
                room: Some(room), ..
            }
            | ServerMsg::Who {
                room: Some(room), ..
            }
            | ServerMsg::History { room, .. } => Place::In(room),
            // Leaving the server is leaving every room.
            ServerMsg::Leave { room: None, .. } => Place::Everywhere,
            _ => Place::Nowhere,
        }
    }

    /// The room to name beside the message when it is not the default
    /// one: ` in rust`.
    fn elsewhere(&self) -> Option<&str> {
        match self.place() {
            Place::In(room) if !self.home.as_deref().is_some_and(|h| names::same(h, room)) => {
                Some(room)
            }
            _ => None,
        }
    }
}

/// Where a received message happened.
enum Place<'a> {
    In(&'a str),
    /// A user leaving the server: gone from every room.
    Everywhere,
    /// Not in a room (private messages, errors), or in the default room of
    /// a server that never named it.
    Nowhere,
}

/// The FROM and TEXT of a message, by the table. FROM is usually one name;
/// a `who` offers every nick in its list and a renamed `join` two.
struct Fields<'a> {
    kind: Kind,
    from: Vec<&'a str>,
    text: Option<&'a str>,
}

fn fields(r: &Received) -> Option<Fields<'_>> {
    let (kind, from, text) = match &r.msg {
        ServerMsg::Group {
            from, text, action, ..
        } => {
            let kind = if *action { Kind::Action } else { Kind::Group };
            (kind, vec![&**from], Some(&**text))
        }
        ServerMsg::Private { from, text, .. } => (Kind::Private, vec![&**from], Some(&**text)),
        ServerMsg::Join { nick, .. } => {
            let mut from = vec![&**nick];
            from.extend(r.became.as_deref());
            (Kind::Join, from, None)
        }
        ServerMsg::Leave { nick, text, .. } => (
            Kind::Leave,
            vec![&**nick],
            Some(text.as_deref().unwrap_or("")),
        ),
        ServerMsg::Nick { old, new, .. } => (Kind::Nick, vec![&**old], Some(&**new)),
        ServerMsg::Error { code, message } => (Kind::Error, vec![code.as_str()], Some(&**message)),
        ServerMsg::Who { users, .. } => (
            Kind::Who,
            users.iter().map(|u: &WhoEntry<'_>| &*u.nick).collect(),
            None,
        ),
        ServerMsg::Bye { reason } => (
            Kind::Bye,
            vec![match reason {
                crate::wire::ByeReason::Quit => "quit",
                crate::wire::ByeReason::Shutdown => "shutdown",
            }],
            None,
        ),
        ServerMsg::Joined { room, topic, .. } => (
            Kind::Joined,
            vec![&**room],
            Some(topic.as_deref().unwrap_or("")),
        ),
        ServerMsg::Parted { room } => (Kind::Parted, vec![&**room], None),
        ServerMsg::Topic { room, text, .. } => (Kind::Topic, vec![&**room], Some(&**text)),
        ServerMsg::Rooms { rooms } => (Kind::Rooms, rooms.iter().map(|r| &*r.name).collect(), None),
        ServerMsg::Welcome { .. }
        | ServerMsg::Pong { .. }
        | ServerMsg::History { .. }
        | ServerMsg::Registered { .. }
        | ServerMsg::LoggedIn { .. }
        | ServerMsg::LoggedOut
        | ServerMsg::Unknown => return None,
    };
    Some(Fields { kind, from, text })
}

/// What an `expect` line asks for. `None` matches anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub kind: Kind,
    pub from: Option<String>,
    pub text: Option<String>,
    /// `in ROOM`, lower-cased: only messages in a room it matches. `None`
    /// matches a message in any room, or in none.
    pub room: Option<String>,
}

impl Pattern {
    /// FROM is a name (or an error code, or a bye reason) and names are
    /// compared without regard to case everywhere in the protocol, so FROM
    /// is too; TEXT is what people wrote and must match exactly.
    pub fn matches(&self, r: &Received) -> bool {
        if let ServerMsg::History { messages, .. } = &r.msg {
            // Any one stored message may be the one the script is after;
            // FROM and TEXT must hold for the same message.
            return self.kind == Kind::History
                && self.in_room(r)
                && (self.from.is_none() && self.text.is_none()
                    || messages
                        .iter()
                        .any(|m| self.holds(&[&*m.from], Some(&*m.text))));
        }
        let Some(f) = fields(r) else {
            return false;
        };
        f.kind == self.kind && self.in_room(r) && self.holds(&f.from, f.text)
    }

    /// Whether the message happened in a room `in ROOM` matches (any, when
    /// the pattern names none).
    fn in_room(&self, r: &Received) -> bool {
        let Some(pattern) = &self.room else {
            return true;
        };
        match r.place() {
            Place::In(room) => glob(pattern.as_bytes(), names::caseless(room).as_bytes()),
            Place::Everywhere => true,
            Place::Nowhere => false,
        }
    }

    /// Whether one of `from` matches FROM and `text` matches TEXT.
    fn holds(&self, from: &[&str], text: Option<&str>) -> bool {
        if let Some(pattern) = &self.from {
            // In any case and width, as names are (look-alikes from other
            // scripts are not matched by a pattern: it names what it means).
            let pattern = names::caseless(pattern);
            let hit = from
                .iter()
                .any(|from| glob(pattern.as_bytes(), names::caseless(from).as_bytes()));
            if !hit {
                return false;
            }
        }
        match (&self.text, text) {
            (None, _) => true,
            (Some(pattern), Some(text)) => glob(pattern.as_bytes(), text.as_bytes()),
            (Some(_), None) => false,
        }
    }

    /// The pattern in words: `group from alice "hello*"`, `join carol`.
    pub fn describe(&self) -> String {
        if self.kind == Kind::History {
            // `history of rust from alice "hi"`: the room is not optional.
            let mut s = format!(
                "history of {}",
                word_or_quoted(self.room.as_deref().unwrap_or("*"))
            );
            if let Some(from) = &self.from {
                s.push_str(" from ");
                s.push_str(&word_or_quoted(from));
            }
            if let Some(text) = &self.text {
                s.push(' ');
                s.push_str(&quoted(text));
            }
            return s;
        }
        let mut s = self.kind.name().to_owned();
        if let Some(from) = &self.from {
            s.push_str(self.kind.before_from());
            s.push(' ');
            s.push_str(&word_or_quoted(from));
        }
        if let Some(text) = &self.text {
            s.push(' ');
            s.push_str(&quoted(text));
        }
        if let Some(room) = &self.room {
            s.push_str(" in ");
            s.push_str(&word_or_quoted(room));
        }
        s
    }
}

/// A received message in the words of the table, for failure reports:
/// `group carol "hi"`, `join carol`, `who [alice, bob]`. A join is shown
/// by the name its newcomer took, as the spec's example does.
pub fn summary(r: &Received) -> String {
    let mut s = match &r.msg {
        ServerMsg::History { room, messages, .. } => {
            let said: Vec<String> = messages
                .iter()
                .map(|m| format!("{} {}", word_or_quoted(&m.from), quoted(&m.text)))
                .collect();
            return format!("history of {} [{}]", word_or_quoted(room), said.join(", "));
        }
        ServerMsg::Who { users, .. } => {
            let nicks: Vec<String> = users.iter().map(|u| word_or_quoted(&u.nick)).collect();
            format!("who [{}]", nicks.join(", "))
        }
        ServerMsg::Rooms { rooms } => {
            let names: Vec<String> = rooms.iter().map(|r| word_or_quoted(&r.name)).collect();
            format!("rooms [{}]", names.join(", "))
        }
        ServerMsg::Join { nick, .. } => {
            format!(
                "join {}",
                word_or_quoted(r.became.as_deref().unwrap_or(nick))
            )
        }
        ServerMsg::Leave {
            nick, text: None, ..
        } => format!("leave {}", word_or_quoted(nick)),
        ServerMsg::Joined {
            room, topic: None, ..
        } => format!("joined {}", word_or_quoted(room)),
        _ => match fields(r) {
            Some(f) => {
                let mut s = format!("{} {}", f.kind.name(), word_or_quoted(f.from[0]));
                if let Some(text) = f.text {
                    s.push(' ');
                    s.push_str(&quoted(text));
                }
                s
            }
            None => "an unexpected message".to_owned(),
        },
    };
    if let Some(room) = r.elsewhere() {
        s.push_str(" in ");
        s.push_str(&word_or_quoted(room));
    }
    s
}

/// A FROM as the script would have to write it: bare when it is one plain
/// word, otherwise in JSON quotes.
fn word_or_quoted(s: &str) -> String {
    if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '"' || c.is_control()) {
        crate::render::sanitize(s).into_owned()
    } else {
        quoted(s)
    }
}

/// JSON quoting escapes C0 controls; the sanitiser then shows what JSON
/// leaves raw (DEL, C1, bidi overrides), since these lines reach a terminal.
fn quoted(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
    crate::render::sanitize(&json).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ByeReason, ErrorCode, LeaveReason};

    fn pat(kind: Kind, from: Option<&str>, text: Option<&str>) -> Pattern {
        Pattern {
            kind,
            from: from.map(String::from),
            text: text.map(String::from),
            room: None,
        }
    }

    fn in_room(room: &str, pattern: Pattern) -> Pattern {
        Pattern {
            room: Some(room.into()),
            ..pattern
        }
    }

    fn group(from: &str, text: &str) -> Received {
        Received::new(ServerMsg::Group {
            from: from.to_owned().into(),
            text: text.to_owned().into(),
            ts: 1,
            action: false,
            room: None,
            seq: 0,
        })
    }

    #[test]
    fn group_and_private_use_from_and_text() {
        let m = group("Alice", "hello, world");
        assert!(pat(Kind::Group, None, None).matches(&m));
        assert!(
            pat(Kind::Group, Some("alice"), None).matches(&m),
            "FROM ignores case"
        );
        assert!(pat(Kind::Group, Some("a*"), Some("hello*")).matches(&m));
        assert!(
            !pat(Kind::Group, Some("alice"), Some("Hello*")).matches(&m),
            "TEXT keeps case"
        );
        assert!(!pat(Kind::Group, Some("bob"), None).matches(&m));
        assert!(!pat(Kind::Private, Some("alice"), None).matches(&m));
        let p = Received::new(ServerMsg::Private {
            from: "bob".into(),
            to: "alice".into(),
            text: "hi alice".into(),
            ts: 1,
            action: false,
        });
        assert!(pat(Kind::Private, Some("bob"), Some("hi *")).matches(&p));
    }

    #[test]
    fn an_action_is_not_a_group_message() {
        let mut waved = group("alice", "waves");
        if let ServerMsg::Group { action, .. } = &mut waved.msg {
            *action = true;
        }
        assert!(pat(Kind::Action, Some("alice"), Some("wave*")).matches(&waved));
        assert!(!pat(Kind::Group, None, None).matches(&waved));
        assert!(!pat(Kind::Action, None, None).matches(&group("alice", "waves")));
        assert_eq!(summary(&waved), "action alice \"waves\"");
        assert_eq!(
            pat(Kind::Action, Some("alice"), Some("waves")).describe(),
            "action from alice \"waves\""
        );
    }

    #[test]
    fn join_matches_the_guest_name_and_the_name_taken_after() {
        let mut j = Received::new(ServerMsg::Join {
            id: 3,
            nick: "guest3".into(),
            ts: 1,
            room: None,
        });
        assert!(pat(Kind::Join, Some("guest3"), None).matches(&j));
        assert!(!pat(Kind::Join, Some("carol"), None).matches(&j));
        j.became = Some("carol".into());
        assert!(pat(Kind::Join, Some("carol"), None).matches(&j));
        assert!(pat(Kind::Join, Some("guest*"), None).matches(&j));
        assert_eq!(summary(&j), "join carol");
    }

    #[test]
    fn leave_text_is_the_quit_reason_or_empty() {
        let with = Received::new(ServerMsg::Leave {
            id: 1,
            nick: "alice".into(),
            reason: LeaveReason::Quit,
            ts: 1,
            text: Some("bye now".into()),
            room: None,
        });
        let without = Received::new(ServerMsg::Leave {
            id: 1,
            nick: "alice".into(),
            reason: LeaveReason::Disconnect,
            ts: 1,
            text: None,
            room: None,
        });
        assert!(pat(Kind::Leave, Some("alice"), Some("bye*")).matches(&with));
        assert!(pat(Kind::Leave, Some("alice"), Some("")).matches(&without));
        assert!(!pat(Kind::Leave, Some("alice"), Some("")).matches(&with));
        assert_eq!(summary(&with), "leave alice \"bye now\"");
        assert_eq!(summary(&without), "leave alice");
    }

    #[test]
    fn nick_error_who_and_bye() {
        let n = Received::new(ServerMsg::Nick {
            id: 2,
            old: "bob".into(),
            new: "robert".into(),
            ts: 1,
        });
        assert!(pat(Kind::Nick, Some("bob"), Some("robert")).matches(&n));
        assert!(!pat(Kind::Nick, Some("robert"), None).matches(&n));
        let e = Received::new(ServerMsg::Error {
            code: ErrorCode::NickInUse,
            message: "nickname alice is taken".into(),
        });
        assert!(pat(Kind::Error, Some("nick_in_use"), None).matches(&e));
        assert!(pat(Kind::Error, Some("nick_*"), Some("*taken")).matches(&e));
        assert!(!pat(Kind::Error, Some("no_such_user"), None).matches(&e));
        let w = Received::new(ServerMsg::Who {
            users: vec![
                WhoEntry {
                    id: 1,
                    nick: "alice".into(),
                    since: 1,
                },
                WhoEntry {
                    id: 2,
                    nick: "bob".into(),
                    since: 1,
                },
            ],
            room: None,
        });
        assert!(pat(Kind::Who, Some("bob"), None).matches(&w));
        assert!(pat(Kind::Who, None, None).matches(&w));
        assert!(!pat(Kind::Who, Some("carol"), None).matches(&w));
        assert_eq!(summary(&w), "who [alice, bob]");
        let b = Received::new(ServerMsg::Bye {
            reason: ByeReason::Quit,
        });
        assert!(pat(Kind::Bye, Some("quit"), None).matches(&b));
        assert!(!pat(Kind::Bye, Some("shutdown"), None).matches(&b));
        assert_eq!(summary(&b), "bye quit");
    }

    fn in_a(room: Option<&str>, home: Option<&str>, mut r: Received) -> Received {
        match &mut r.msg {
            ServerMsg::Group { room: at, .. }
            | ServerMsg::Join { room: at, .. }
            | ServerMsg::Leave { room: at, .. }
            | ServerMsg::Who { room: at, .. } => *at = room.map(|x| x.to_owned().into()),
            _ => {}
        }
        r.home = home.map(String::from);
        r
    }

    #[test]
    fn in_room_narrows_and_no_room_means_any() {
        let lobby = Some("lobby");
        let there = in_a(Some("rust"), lobby, group("alice", "hi"));
        let here = in_a(Some("lobby"), lobby, group("alice", "hi"));
        let v1 = in_a(None, None, group("alice", "hi"));
        let any = pat(Kind::Group, Some("alice"), None);
        for r in [&there, &here, &v1] {
            assert!(any.matches(r), "no `in`: any room, or none");
        }
        let rust = in_room("rust", any.clone());
        assert!(rust.matches(&there));
        assert!(!rust.matches(&here));
        assert!(!rust.matches(&v1));
        assert!(in_room("lobby", any.clone()).matches(&here));
        assert!(
            in_room("lobby", any.clone()).matches(&in_a(None, lobby, group("alice", "hi"))),
            "a message naming no room is in the default room"
        );
        assert!(in_room("r*", any.clone()).matches(&there));
        assert!(in_room("*", any).matches(&here));
        assert_eq!(summary(&there), "group alice \"hi\" in rust");
        assert_eq!(summary(&here), "group alice \"hi\"");
        assert_eq!(
            in_room("rust", pat(Kind::Group, Some("alice"), Some("hi"))).describe(),
            "group from alice \"hi\" in rust"
        );
    }

    #[test]
    fn leaving_the_server_is_leaving_every_room() {
        let leave = |reason, room: Option<&str>| {
            in_a(
                room,
                Some("lobby"),
                Received::new(ServerMsg::Leave {
                    id: 3,
                    nick: "carol".into(),
                    reason,
                    ts: 1,
                    text: Some("bye".into()),
                    room: None,
                }),
            )
        };
        let parted = leave(LeaveReason::Part, Some("rust"));
        let quit = leave(LeaveReason::Quit, None);
        let rust = in_room("rust", pat(Kind::Leave, Some("carol"), Some("bye")));
        assert!(rust.matches(&parted));
        assert!(rust.matches(&quit));
        assert!(!in_room("go", pat(Kind::Leave, None, None)).matches(&parted));
        assert!(pat(Kind::Leave, Some("carol"), None).matches(&parted));
        assert_eq!(summary(&parted), "leave carol \"bye\" in rust");
    }

    #[test]
    fn history_holds_when_one_message_matches_from_and_text() {
        use crate::wire::HistoryEntry;
        let entry = |from: &str, text: &str| HistoryEntry {
            seq: 1,
            from: from.to_owned().into(),
            text: text.to_owned().into(),
            ts: 1,
            action: false,
        };
        let answer = Received::new(ServerMsg::History {
            room: "rust".into(),
            messages: vec![entry("alice", "hi"), entry("bob", "bye")],
            more: false,
        });
        let history = |room, from, text| in_room(room, pat(Kind::History, from, text));
        assert!(history("rust", None, None).matches(&answer));
        assert!(history("r*", Some("Alice"), Some("h*")).matches(&answer));
        assert!(history("rust", Some("bob"), Some("bye")).matches(&answer));
        assert!(
            !history("rust", Some("alice"), Some("bye")).matches(&answer),
            "FROM and TEXT of one message"
        );
        assert!(!history("go", None, None).matches(&answer));
        assert!(!pat(Kind::Joined, Some("rust"), None).matches(&answer));
        let empty = Received::new(ServerMsg::History {
            room: "go".into(),
            messages: vec![],
            more: false,
        });
        assert!(history("go", None, None).matches(&empty));
        assert!(!history("go", Some("*"), None).matches(&empty));
        assert_eq!(
            summary(&answer),
            "history of rust [alice \"hi\", bob \"bye\"]"
        );
        assert_eq!(
            history("rust", Some("alice"), Some("hi*")).describe(),
            "history of rust from alice \"hi*\""
        );
    }

    #[test]
    fn room_answers_match_by_their_room() {
        let joined = Received::new(ServerMsg::Joined {
            room: "rust".into(),
            topic: Some("Rust talk".into()),
            users: vec![],
        });
        assert!(pat(Kind::Joined, Some("Rust"), None).matches(&joined));
        assert!(pat(Kind::Joined, Some("rust"), Some("Rust*")).matches(&joined));
        assert!(!pat(Kind::Joined, Some("go"), None).matches(&joined));
        assert_eq!(summary(&joined), "joined rust \"Rust talk\"");
        let bare = Received::new(ServerMsg::Joined {
            room: "go".into(),
            topic: None,
            users: vec![],
        });
        assert!(pat(Kind::Joined, Some("go"), Some("")).matches(&bare));
        assert_eq!(summary(&bare), "joined go");
        let parted = Received::new(ServerMsg::Parted {
            room: "rust".into(),
        });
        assert!(pat(Kind::Parted, Some("rust"), None).matches(&parted));
        assert!(!pat(Kind::Joined, None, None).matches(&parted));
        assert_eq!(summary(&parted), "parted rust");
        let topic = Received::new(ServerMsg::Topic {
            room: "rust".into(),
            by: "alice".into(),
            text: "Rust talk".into(),
            ts: 1,
        });
        assert!(pat(Kind::Topic, Some("rust"), Some("Rust talk")).matches(&topic));
        assert_eq!(summary(&topic), "topic rust \"Rust talk\"");
        let rooms = Received::new(ServerMsg::Rooms {
            rooms: ["lobby", "rust"]
                .iter()
                .map(|name| crate::wire::RoomEntry {
                    name: (*name).into(),
                    users: 1,
                    topic: None,
                })
                .collect(),
        });
        assert!(pat(Kind::Rooms, Some("rust"), None).matches(&rooms));
        assert!(!pat(Kind::Rooms, Some("go"), None).matches(&rooms));
        assert_eq!(summary(&rooms), "rooms [lobby, rust]");
        assert_eq!(
            pat(Kind::Rooms, Some("rust"), None).describe(),
            "rooms listing rust"
        );
    }

    #[test]
    fn patterns_read_like_the_spec() {
        assert_eq!(
            pat(Kind::Group, Some("alice"), Some("hello*")).describe(),
            "group from alice \"hello*\""
        );
        assert_eq!(
            pat(Kind::Join, Some("carol"), None).describe(),
            "join carol"
        );
        assert_eq!(pat(Kind::Leave, None, None).describe(), "leave");
        assert_eq!(
            pat(Kind::Leave, Some("two words"), Some("")).describe(),
            "leave \"two words\" \"\""
        );
        assert_eq!(
            pat(Kind::Who, Some("bob"), None).describe(),
            "who listing bob"
        );
        assert_eq!(summary(&group("carol", "hi")), "group carol \"hi\"");
    }

    /// Found by fuzzing (`server_lines`): the nicks of a `who` went into
    /// the failure line raw, so a server could drive the terminal.
    #[test]
    fn who_summaries_show_controls_as_escapes() {
        let w = Received::new(ServerMsg::Who {
            users: ["alice", "e\x7fvil\x1b[2J", "two words"]
                .iter()
                .map(|nick| WhoEntry {
                    id: 1,
                    nick: (*nick).into(),
                    since: 1,
                })
                .collect(),
            room: None,
        });
        assert_eq!(
            summary(&w),
            r#"who [alice, "e\x7fvil\u001b[2J", "two words"]"#
        );
    }
}
