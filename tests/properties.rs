//! Property tests over the entry points the fuzz targets drive (see
//! `fuzz/README.md`): framing, the client-line parser, the hub and its
//! rooms, server messages and their rendering, and the bot-script parser.
//! The fuzzers search for minutes; these run a few hundred generated cases
//! each in every `cargo test`, so a regression in those invariants shows
//! up in CI.

use std::collections::HashSet;
use std::net::SocketAddr;

use chat::bot::script;
use chat::framing::{Frame, LineReader};
use chat::render::{self, Me, Renderer, Style};
use chat::server::core::{Config, Flow, Peer};
use chat::server::deliver::{Door, Outlet};
use chat::server::hub::Hub;
use chat::server::table::Key;
use chat::wire::{self, ByeReason, ErrorCode, LeaveReason, ServerMsg, Token, WhoEntry};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use serde_json::{Value, json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // A failure is shrunk, but not for minutes.
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

/// A frame, owned, to compare runs.
#[derive(Debug, PartialEq)]
enum Seen {
    Line(Vec<u8>),
    TooLong,
}

/// Feeds `chunks` in order; checks the buffer bound after each.
fn frames(max_line: usize, chunks: &[&[u8]]) -> Vec<Seen> {
    let mut reader = LineReader::new(max_line);
    let mut out = Vec::new();
    for chunk in chunks {
        let consumed = reader.feed(chunk, |f| {
            out.push(match f {
                Frame::Line(l) => Seen::Line(l.to_vec()),
                Frame::TooLong => Seen::TooLong,
            });
            true
        });
        assert_eq!(consumed, chunk.len());
        assert!(
            reader.pending() < max_line,
            "{} bytes held with a limit of {max_line}",
            reader.pending()
        );
    }
    out
}

/// Any byte but `\n`, with `\r` common (it counts towards the limit).
fn not_newline() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'\r'),
        any::<u8>().prop_map(|b| if b == b'\n' { b'x' } else { b }),
    ]
}

/// Text as people and hostile servers send it: plain words, nicknames,
/// anything Unicode, and terminal escapes.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-zA-Z0-9 _*,.!-]{0,16}",
        any::<String>(),
        Just("\u{1b}[2J\n<alice> fake\r".to_owned()),
        Just("abc\u{202e}cba\u{9b}31m\u{7f}".to_owned()),
        Just("bob".to_owned()),
    ]
    .boxed()
}

fn nick() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        "[gG][uU][eE][sS][tT][0-9]{1,3}",
        // Any script, marks and digits, and now and then a character no
        // name may hold (a format character, a symbol, private use).
        "\\p{L}[\\p{L}\\p{M}\\p{Nd}_-]{0,8}",
        "\\p{L}[\\p{L}\\p{Cf}\\p{So}\\p{Co}\\p{Zs}]{0,4}",
        Just("bob".to_owned()),
        Just("BOB".to_owned()),
        // Look-alikes of bob: Cyrillic о, fullwidth letters.
        Just("b\u{43e}b".to_owned()),
        Just("ｂｏｂ".to_owned()),
        Just("小明".to_owned()),
        Just("cafe\u{301}".to_owned()),
        text(),
    ]
    .boxed()
}

/// A JSON value that could be a field of a client message.
fn field() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => text().prop_map(Value::from),
        3 => nick().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => vec(any::<u8>(), 0..3).prop_map(|v| json!(v)),
        1 => Just(json!({"a": [1, 2.5, null]})),
    ]
    .boxed()
}

/// A client line: mostly well-formed objects of every type, some with
/// missing or mistyped fields, and some arbitrary bytes.
fn client_line() -> BoxedStrategy<Vec<u8>> {
    let kind = prop_oneof![
        Just("group"),
        Just("private"),
        Just("nick"),
        Just("who"),
        Just("ping"),
        Just("quit"),
        Just("join"),
        Just("part"),
        Just("topic"),
        Just("rooms"),
        Just("dance"),
        Just(""),
    ];
    let object = (
        option::weighted(0.95, kind),
        option::of(field()),
        option::of(field()),
        option::of(field()),
        option::of(field()),
        (option::of(field()), option::weighted(0.2, field())),
        any::<bool>(),
    )
        .prop_map(|(kind, text, to, nick, token, (room, action), pretty)| {
            let mut m = serde_json::Map::new();
            if let Some(kind) = kind {
                m.insert("type".into(), kind.into());
            }
            let fields = [
                ("text", text),
                ("to", to),
                ("nick", nick),
                ("token", token),
                ("room", room),
                ("action", action),
            ];
            for (name, v) in fields {
                if let Some(v) = v {
                    m.insert(name.into(), v);
                }
            }
            let v = Value::Object(m);
            if pretty {
                // Whitespace between tokens, a CR ending: still one line.
                format!(" {} \r", v).into_bytes()
            } else {
                v.to_string().into_bytes()
            }
        });
    prop_oneof![
        8 => object,
        1 => vec(any::<u8>(), 0..64),
        1 => "[{}\\[\\]\":,a-z0-9 ]{0,32}".prop_map(String::into_bytes),
    ]
    .boxed()
}

/// Controls but tab, DEL, C1 and the bidi overrides: what a rendered line
/// must never hold raw.
fn dangerous(c: char) -> bool {
    (c.is_control() && c != '\t')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn token() -> BoxedStrategy<Option<Token<'static>>> {
    let value = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
        vec(any::<u32>(), 0..4).prop_map(|v| json!(v)),
        text().prop_map(|t| json!({"t": t, "n": [1, {"x": null}]})),
    ];
    option::of(value.prop_map(|v| {
        let raw = serde_json::value::RawValue::from_string(v.to_string()).unwrap();
        Token::Owned(raw)
    }))
    .boxed()
}

fn server_msg() -> BoxedStrategy<ServerMsg<'static>> {
    let s = || text().prop_map(std::borrow::Cow::Owned);
    let leave = prop_oneof![
        Just(LeaveReason::Quit),
        Just(LeaveReason::Disconnect),
        Just(LeaveReason::Slow),
        Just(LeaveReason::Part)
    ];
    let bye = prop_oneof![Just(ByeReason::Quit), Just(ByeReason::Shutdown)];
    let code = prop_oneof![
        Just(ErrorCode::BadJson),
        Just(ErrorCode::BadMessage),
        Just(ErrorCode::UnknownType),
        Just(ErrorCode::LineTooLong),
        Just(ErrorCode::NoSuchUser),
        Just(ErrorCode::BadNick),
        Just(ErrorCode::NickInUse),
        Just(ErrorCode::ServerFull),
    ];
    let entry = (any::<u64>(), s(), any::<u64>()).prop_map(|(id, nick, since)| WhoEntry {
        id,
        nick,
        since,
    });
    prop_oneof![
        (
            any::<u64>(),
            s(),
            s(),
            any::<u64>(),
            any::<u64>(),
            option::of(s()),
            option::of(s())
        )
            .prop_map(|(id, nick, text, users, protocol, room, login)| {
                ServerMsg::Welcome {
                    id,
                    nick,
                    text,
                    users,
                    protocol,
                    room,
                    login,
                }
            }),
        (any::<u64>(), s(), any::<u64>(), option::of(s()))
            .prop_map(|(id, nick, ts, room)| { ServerMsg::Join { id, nick, ts, room } }),
        (
            any::<u64>(),
            s(),
            leave,
            any::<u64>(),
            option::of(s()),
            option::of(s())
        )
            .prop_map(|(id, nick, reason, ts, text, room)| ServerMsg::Leave {
                id,
                nick,
                reason,
                ts,
                text,
                room
            }),
        (any::<u64>(), s(), s(), any::<u64>()).prop_map(|(id, old, new, ts)| ServerMsg::Nick {
            id,
            old,
            new,
            ts
        }),
        (
            s(),
            s(),
            any::<u64>(),
            option::of(s()),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(from, text, ts, room, seq, action)| ServerMsg::Group {
                from,
                text,
                ts,
                room,
                seq,
                action
            }),
        (s(), s(), s(), any::<u64>(), any::<bool>()).prop_map(|(from, to, text, ts, action)| {
            ServerMsg::Private {
                from,
                to,
                text,
                ts,
                action,
            }
        }),
        (vec(entry, 0..4), option::of(s()))
            .prop_map(|(users, room)| ServerMsg::Who { users, room }),
        token().prop_map(|token| ServerMsg::Pong { token }),
        bye.prop_map(|reason| ServerMsg::Bye { reason }),
        (code, s()).prop_map(|(code, message)| ServerMsg::Error { code, message }),
    ]
    .boxed()
}

/// A bot-script line: mostly the language's own words in a plausible
/// order, some noise.
fn script_line() -> BoxedStrategy<String> {
    let word = prop_oneof![
        Just("say"),
        Just("msg"),
        Just("nick"),
        Just("sleep"),
        Just("expect"),
        Just("connect"),
        Just("who"),
        Just("quit"),
        Just("within"),
        Just("group"),
        Just("private"),
        Just("join"),
        Just("leave"),
        Just("error"),
        Just("bye"),
        Just("250ms"),
        Just("2s"),
        Just("1m"),
        Just("@alice"),
        Just("@bob"),
        Just("@Bob"),
        Just("@carol"),
        Just("alice"),
        Just("bob"),
        Just("robert"),
        Just("guest7"),
        Just("\"quoted *\""),
        Just("\"bad \\q\""),
        Just("\"unterminated"),
        Just("#"),
        Just("hello*"),
        Just("me"),
        Just("in"),
        Just("rust"),
        Just("Rust"),
        Just("r.s"),
        Just("*"),
        Just("part"),
        Just("topic"),
        Just("rooms"),
        Just("action"),
        Just("joined"),
        Just("parted"),
    ]
    .prop_map(str::to_owned);
    prop_oneof![
        6 => vec(word, 0..6).prop_map(|w| w.join(" ")),
        1 => any::<String>().prop_map(|s| s.replace('\n', " ")),
        1 => "[ \t@a-z\"*\\\\0-9]{0,20}",
    ]
    .boxed()
}

fn addr() -> Peer {
    Peer::plain(SocketAddr::from(([127, 0, 0, 1], 5000)))
}

type Room = Hub<Outlet>;

fn room() -> Room {
    let config = Config {
        welcome: "hi".into(),
        default_room: "lobby".into(),
        max_rooms: 4,
    };
    Hub::new(config, 1 << 20)
}

/// Drains one user's queue and decodes every line of it.
fn drain(room: &mut Room, slot: Key) -> Vec<ServerMsg<'static>> {
    let mut bytes = Vec::new();
    let outlet = room.core.conn_mut(slot).expect("a live slot");
    outlet.out.write_to(&mut bytes).unwrap();
    assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "a partial line");
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| ServerMsg::decode(l).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// One step of a room script.
#[derive(Clone, Debug)]
enum Step {
    Join,
    Line(usize, Vec<u8>),
    Close(usize),
    Read(usize),
}

fn room_step() -> BoxedStrategy<Step> {
    prop_oneof![
        1 => Just(Step::Join),
        6 => (any::<usize>(), client_line()).prop_map(|(k, l)| Step::Line(k, l)),
        1 => any::<usize>().prop_map(Step::Close),
        2 => any::<usize>().prop_map(Step::Read),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(1000))]

    /// However a stream is cut into reads, the same lines come out, each
    /// over-long line is refused once, and nothing past the limit is held.
    #[test]
    fn framing_is_the_same_for_any_split(
        max_line in 1usize..48,
        lines in vec(vec(not_newline(), 0..64), 0..8),
        tail in vec(not_newline(), 0..64),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut stream = Vec::new();
        for line in &lines {
            stream.extend_from_slice(line);
            stream.push(b'\n');
        }
        stream.extend_from_slice(&tail);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for cut in cuts {
            chunks.push(&stream[at..cut]);
            at = cut;
        }
        chunks.push(&stream[at..]);
        let mut expected: Vec<Seen> = lines
            .iter()
            .map(|l| if l.len() < max_line { Seen::Line(l.clone()) } else { Seen::TooLong })
            .collect();
        if tail.len() >= max_line {
            expected.push(Seen::TooLong);
        }
        prop_assert_eq!(frames(max_line, &chunks), expected);
    }

    /// Any line either parses or is refused with a line-level code and a
    /// message; what parses encodes back to the same message.
    #[test]
    fn client_lines_parse_or_are_refused_with_a_code(line in client_line()) {
        match wire::parse_client_line(&line) {
            Ok(None) => prop_assert!(line.trim_ascii().is_empty()),
            Ok(Some(msg)) => {
                let again = wire::client_line(&msg);
                prop_assert_eq!(again.iter().filter(|&&b| b == b'\n').count(), 1);
                let back = wire::parse_client_line(&again[..again.len() - 1]);
                prop_assert_eq!(back, Ok(Some(msg)));
            }
            Err(refusal) => {
                let line_level = [ErrorCode::BadJson, ErrorCode::BadMessage, ErrorCode::UnknownType];
                prop_assert!(line_level.contains(&refusal.code), "{:?}", refusal.code);
                prop_assert!(!refusal.message.is_empty());
            }
        }
    }

    /// Every server message is one line and decodes to itself.
    #[test]
    fn server_messages_round_trip(msg in server_msg()) {
        let mut line = Vec::new();
        msg.encode(&mut line);
        prop_assert_eq!(line.iter().position(|&b| b == b'\n'), Some(line.len() - 1));
        prop_assert_eq!(ServerMsg::decode(&line), Ok(msg));
    }

    /// Whatever the server sends, the plain rendering holds no character a
    /// terminal acts on, and the styled ones differ only by their colours.
    #[test]
    fn rendering_strips_controls(msg in server_msg(), id in option::of(0u64..4)) {
        let me = Me { id, nick: "bob" };
        let plain = Renderer { style: Style::Plain }.received(&msg, me);
        prop_assert_eq!(plain.is_none(), matches!(msg, ServerMsg::Pong { .. }));
        if let Some(plain) = &plain {
            prop_assert!(!plain.contains(dangerous), "{:?}", plain);
        }
        let colour = Renderer { style: Style::Colour }.received(&msg, me);
        if let Some(colour) = colour {
            let mut rest = colour.as_str();
            let mut shown = String::new();
            while let Some(i) = rest.find('\x1b') {
                shown.push_str(&rest[..i]);
                let after = rest[i + 1..].strip_prefix('[').expect("only SGR escapes");
                let after = after.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
                rest = after.strip_prefix('m').expect("only SGR escapes");
            }
            shown.push_str(rest);
            prop_assert_eq!(Some(shown), plain);
        }
        let mut line = Vec::new();
        msg.encode(&mut line);
        let json = render::json_line(&line).expect("a server line is JSON");
        prop_assert!(!json.contains(dangerous), "{:?}", json);
    }

    /// The bot parser never panics; its errors and steps point at lines of
    /// the file, in order.
    #[test]
    fn bot_scripts_report_lines_in_range(lines in vec(script_line(), 0..12), crlf in any::<bool>()) {
        let source = lines.join(if crlf { "\r\n" } else { "\n" });
        let count = source.split('\n').count();
        match script::parse("p.chat", source.as_bytes(), "bot") {
            Ok(s) => {
                let numbers: Vec<usize> = s.steps.iter().map(|st| st.line).collect();
                prop_assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{:?}", numbers);
                prop_assert!(numbers.iter().all(|n| (1..=count).contains(n)));
                for st in &s.steps {
                    prop_assert!(st.actor.is_none_or(|a| a < s.actors.len()));
                    // A room the bot will send is one the server takes, as
                    // the server spells it back.
                    let room = match &st.action {
                        script::Action::Join(room)
                        | script::Action::Part { room, .. }
                        | script::Action::Topic { room, .. }
                        | script::Action::Who(Some(room))
                        | script::Action::Say { room: Some(room), .. } => Some(room),
                        _ => None,
                    };
                    if let Some(room) = room {
                        let checked = chat::wire::check_room(room);
                        prop_assert_eq!(checked.as_ref(), Ok(room));
                    }
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                let mut last = 0;
                for e in &errors {
                    let rest = e.strip_prefix("p.chat:").expect("FILE:LINE: what");
                    let (n, what) = rest.split_once(": ").expect("FILE:LINE: what");
                    let n: usize = n.parse().expect("a line number");
                    prop_assert!((1..=count).contains(&n) && n >= last, "{} of {}", n, count);
                    prop_assert!(!what.is_empty() && !e.contains(dangerous), "{:?}", e);
                    last = n;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The room driven by several users: the user count is joins minus
    /// departures, every queue holds valid lines, `welcome` comes first,
    /// and `who` agrees with who is here.
    #[test]
    fn the_room_keeps_count_and_queues_valid_lines(steps in vec(room_step(), 1..40)) {
        let mut room = room();
        // (key, id, still here, lines read)
        let mut users: Vec<(Key, u64, bool, usize)> = Vec::new();
        let join = |room: &mut Room, users: &mut Vec<(Key, u64, bool, usize)>| {
            let slot = room.connect(addr(), 1, Outlet::new(Door::JsonLines));
            users.push((slot, room.core.user(slot).unwrap().id, true, 0));
        };
        join(&mut room, &mut users);
        for step in steps {
            match step {
                Step::Join => join(&mut room, &mut users),
                _ if users.is_empty() => {}
                Step::Line(k, line) => {
                    let k = k % users.len();
                    if users[k].2 && room.line(users[k].0, &line, 2) == Flow::Close {
                        users[k].2 = false;
                    }
                }
                Step::Close(k) => {
                    let (slot, id, ..) = users.swap_remove(k % users.len());
                    prop_assert_eq!(room.remove(slot, 3).map(|(u, _)| u.id), Some(id));
                }
                Step::Read(k) => {
                    let k = k % users.len();
                    for msg in drain(&mut room, users[k].0) {
                        let first = users[k].3 == 0;
                        prop_assert_eq!(first, matches!(msg, ServerMsg::Welcome { .. }), "{:?}", msg);
                        users[k].3 += 1;
                    }
                }
            }
            let here = users.iter().filter(|u| u.2).count();
            prop_assert_eq!(room.core.here(), here);
        }
        let observer = room.connect(addr(), 4, Outlet::new(Door::JsonLines));
        drain(&mut room, observer);
        room.line(observer, br#"{"type":"who"}"#, 4);
        let answer = drain(&mut room, observer);
        let [ServerMsg::Who { users: listed, .. }] = &answer[..] else {
            panic!("who answered {answer:?}");
        };
        let ids: HashSet<u64> = listed.iter().map(|u| u.id).collect();
        // Held once by the key names compare by: no look-alike twice.
        let nicks: HashSet<String> = listed.iter().map(|u| chat::names::fold(&u.nick)).collect();
        prop_assert_eq!(ids.len(), room.core.here());
        prop_assert_eq!(nicks.len(), room.core.here(), "a nickname held twice: {:?}", listed);
        for (_, id, here, _) in &users {
            prop_assert_eq!(ids.contains(id), *here);
        }
    }
}

/// The rooms a room script uses: the default room and four more, one
/// spelled in capitals, one written decomposed and one in Cyrillic
/// capitals (the server composes and folds them); one more than `room()`
/// lets a user be in.
const ROOMS: [&str; 5] = ["lobby", "a", "B", "Cafe\u{301}", "ДОМ"];

/// One step of a rooms script; user numbers wrap over who is connected.
#[derive(Clone, Debug)]
enum RoomStep {
    Connect,
    Join(usize, usize),
    Part(usize, usize),
    Say(usize, Option<usize>),
    Topic(usize, usize),
    Who(usize, usize),
    Quit(usize),
    Close(usize),
}

fn rooms_step() -> BoxedStrategy<RoomStep> {
    let room = 0..ROOMS.len();
    prop_oneof![
        1 => Just(RoomStep::Connect),
        4 => (any::<usize>(), room.clone()).prop_map(|(u, r)| RoomStep::Join(u, r)),
        2 => (any::<usize>(), room.clone()).prop_map(|(u, r)| RoomStep::Part(u, r)),
        4 => (any::<usize>(), option::of(room.clone())).prop_map(|(u, r)| RoomStep::Say(u, r)),
        1 => (any::<usize>(), room.clone()).prop_map(|(u, r)| RoomStep::Topic(u, r)),
        2 => (any::<usize>(), room).prop_map(|(u, r)| RoomStep::Who(u, r)),
        1 => any::<usize>().prop_map(RoomStep::Quit),
        1 => any::<usize>().prop_map(RoomStep::Close),
    ]
    .boxed()
}

/// A connected user as the spec's room rules say it stands.
struct Member {
    key: Key,
    id: u64,
    rooms: HashSet<String>,
}

fn connect(hub: &mut Room, users: &mut Vec<Member>) -> Vec<ServerMsg<'static>> {
    let key = hub.connect(addr(), 1, Outlet::new(Door::JsonLines));
    let id = hub.core.user(key).unwrap().id;
    users.push(Member {
        key,
        id,
        rooms: HashSet::from(["lobby".to_owned()]),
    });
    drain(hub, key)
}

fn send(hub: &mut Room, key: Key, msg: Value) -> Flow {
    hub.line(key, msg.to_string().as_bytes(), 2)
}

fn error_code(msgs: &[ServerMsg<'_>]) -> Option<ErrorCode> {
    match msgs {
        [ServerMsg::Error { code, .. }] => Some(*code),
        _ => None,
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Joins, parts, group messages, topics, quits and closes among a few
    /// users and rooms, each step's output drained and compared with the
    /// spec's rules: a group message reaches exactly the other members of
    /// its room at that moment, with `seq` one more than the last; a user
    /// leaving the server is announced once to each user who shared a
    /// room; `who ROOM` lists exactly its members; refusals reach only the
    /// one refused.
    #[test]
    fn rooms_route_to_exactly_their_members(steps in vec(rooms_step(), 1..40)) {
        let mut hub = room();
        let mut users: Vec<Member> = Vec::new();
        let mut seq = 0;
        connect(&mut hub, &mut users);
        for step in steps {
            if users.is_empty() {
                connect(&mut hub, &mut users);
                continue;
            }
            let n = users.len();
            // What the actor hears, what each other user hears (None: the
            // actor left and was forgotten), and the actor's index.
            let (actor, heard) = match step {
                RoomStep::Connect => {
                    let welcome = connect(&mut hub, &mut users);
                    prop_assert!(matches!(welcome[..], [ServerMsg::Welcome { .. }]), "{:?}", welcome);
                    (users.len() - 1, welcome)
                }
                RoomStep::Join(u, r) | RoomStep::Part(u, r) | RoomStep::Topic(u, r)
                | RoomStep::Who(u, r) => {
                    let (u, name) = (u % n, ROOMS[r]);
                    let msg = match step {
                        RoomStep::Join(..) => json!({"type": "join", "room": name}),
                        RoomStep::Part(..) => json!({"type": "part", "room": name, "text": "bye"}),
                        RoomStep::Topic(..) => json!({"type": "topic", "room": name, "text": "t"}),
                        _ => json!({"type": "who", "room": name}),
                    };
                    send(&mut hub, users[u].key, msg);
                    (u, drain(&mut hub, users[u].key))
                }
                RoomStep::Say(u, r) => {
                    let u = u % n;
                    let mut msg = json!({"type": "group", "text": "hi"});
                    if let Some(r) = r {
                        msg["room"] = json!(ROOMS[r]);
                    }
                    send(&mut hub, users[u].key, msg);
                    (u, drain(&mut hub, users[u].key))
                }
                RoomStep::Quit(u) | RoomStep::Close(u) => {
                    let u = u % n;
                    let key = users[u].key;
                    let mut got = Vec::new();
                    if matches!(step, RoomStep::Quit(_)) {
                        prop_assert_eq!(send(&mut hub, key, json!({"type": "quit"})), Flow::Close);
                        got = drain(&mut hub, key);
                    }
                    prop_assert!(hub.remove(key, 3).is_some());
                    (u, got)
                }
            };
            let mut others: Vec<(usize, Vec<ServerMsg<'static>>)> = (0..users.len())
                .filter(|&k| k != actor)
                .map(|k| (k, drain(&mut hub, users[k].key)))
                .collect();
            let (my_id, my_rooms) = (users[actor].id, users[actor].rooms.clone());
            let folded = |r: usize| chat::names::check_room(ROOMS[r]).unwrap_or_default();
            let members = |users: &[Member], room: &str| -> HashSet<u64> {
                users.iter().filter(|m| m.rooms.contains(room)).map(|m| m.id).collect()
            };
            match step {
                RoomStep::Connect => {
                    for (k, got) in &others {
                        let want = users[*k].rooms.contains("lobby");
                        let join = matches!(&got[..], [ServerMsg::Join { id, room: Some(r), .. }]
                            if *id == my_id && r == "lobby");
                        prop_assert_eq!(join, want, "{:?}", got);
                        prop_assert!(want || got.is_empty(), "{:?}", got);
                    }
                    others.clear();
                }
                RoomStep::Join(_, r) => {
                    let room = folded(r);
                    let already = my_rooms.contains(&room);
                    if !already && my_rooms.len() >= 4 {
                        prop_assert_eq!(error_code(&heard), Some(ErrorCode::TooManyRooms));
                    } else {
                        users[actor].rooms.insert(room.clone());
                        let [ServerMsg::Joined { room: named, users: listed, .. }] = &heard[..] else {
                            panic!("join {room} answered {heard:?}");
                        };
                        prop_assert_eq!(&**named, room.as_str());
                        let ids: HashSet<u64> = listed.iter().map(|m| m.id).collect();
                        prop_assert_eq!(ids, members(&users, &room));
                        if !already {
                            for (k, got) in others.drain(..) {
                                let want = users[k].rooms.contains(&room);
                                let join = matches!(&got[..], [ServerMsg::Join { id, room: Some(r), .. }]
                                    if *id == my_id && *r == room);
                                prop_assert_eq!(join, want, "{:?}", got);
                                prop_assert!(want || got.is_empty(), "{:?}", got);
                            }
                        }
                    }
                }
                RoomStep::Part(_, r) => {
                    let room = folded(r);
                    if users[actor].rooms.remove(&room) {
                        prop_assert!(matches!(&heard[..], [ServerMsg::Parted { room: p }] if *p == room), "{:?}", heard);
                        for (k, got) in others.drain(..) {
                            let want = users[k].rooms.contains(&room);
                            let leave = matches!(&got[..], [ServerMsg::Leave { id, room: Some(p), reason: LeaveReason::Part, .. }]
                                if *id == my_id && *p == room);
                            prop_assert_eq!(leave, want, "{:?}", got);
                            prop_assert!(want || got.is_empty(), "{:?}", got);
                        }
                    } else {
                        prop_assert_eq!(error_code(&heard), Some(ErrorCode::NotInRoom));
                    }
                }
                RoomStep::Say(..) | RoomStep::Topic(..) => {
                    let (topic, room) = match step {
                        RoomStep::Topic(_, r) => (true, folded(r)),
                        RoomStep::Say(_, r) => (false, r.map_or("lobby".to_owned(), folded)),
                        _ => unreachable!(),
                    };
                    if my_rooms.contains(&room) {
                        if topic {
                            prop_assert!(matches!(&heard[..], [ServerMsg::Topic { .. }]), "{:?}", heard);
                        } else {
                            prop_assert!(heard.is_empty(), "{:?}", heard);
                            seq += 1;
                        }
                        for (k, got) in others.drain(..) {
                            let want = users[k].rooms.contains(&room);
                            let arrived = match &got[..] {
                                [ServerMsg::Group { room: Some(g), seq: s, .. }] => {
                                    prop_assert_eq!(*s, seq);
                                    !topic && *g == room
                                }
                                [ServerMsg::Topic { room: t, .. }] => topic && *t == room,
                                _ => false,
                            };
                            prop_assert_eq!(arrived, want, "{} in {}: {:?}", users[k].id, room, got);
                            prop_assert!(want || got.is_empty(), "{:?}", got);
                        }
                    } else {
                        prop_assert_eq!(error_code(&heard), Some(ErrorCode::NotInRoom));
                    }
                }
                RoomStep::Who(_, r) => {
                    let room = folded(r);
                    let [ServerMsg::Who { users: listed, room: Some(named) }] = &heard[..] else {
                        panic!("who {room} answered {heard:?}");
                    };
                    prop_assert_eq!(&**named, room.as_str());
                    let ids: HashSet<u64> = listed.iter().map(|u| u.id).collect();
                    prop_assert_eq!(ids.len(), listed.len());
                    prop_assert_eq!(ids, members(&users, &room));
                }
                RoomStep::Quit(_) | RoomStep::Close(_) => {
                    let reason = if matches!(step, RoomStep::Quit(_)) {
                        prop_assert!(matches!(heard[..], [ServerMsg::Bye { reason: ByeReason::Quit }]), "{:?}", heard);
                        LeaveReason::Quit
                    } else {
                        LeaveReason::Disconnect
                    };
                    for (k, got) in others.drain(..) {
                        let shared = !users[k].rooms.is_disjoint(&my_rooms);
                        let leave = matches!(&got[..], [ServerMsg::Leave { id, room: None, reason: why, .. }]
                            if *id == my_id && *why == reason);
                        prop_assert_eq!(leave, shared, "{:?}", got);
                        prop_assert!(shared || got.is_empty(), "{:?}", got);
                    }
                    users.remove(actor);
                }
            }
            for (k, got) in &others {
                prop_assert!(got.is_empty(), "{} overheard {:?}", users[*k].id, got);
            }
        }
    }
}
