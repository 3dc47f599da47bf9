//! Unicode names over a real server (protocol.md, "Names for everyone"):
//! names in any script are taken and seen by others, look-alikes are one
//! name, and a room is one room by any of its spellings.

mod common;

use common::{Conn, Server};
use serde_json::{Value, json};

/// Sends `nick` and returns the server's answer: the `nick` event or the
/// `error`.
fn try_nick(conn: &mut Conn, nick: &str) -> Value {
    conn.send(&json!({"type": "nick", "nick": nick}));
    let got = conn.sync();
    assert_eq!(got.len(), 1, "one answer to nick {nick:?}: {got:?}");
    got[0].clone()
}

#[test]
fn a_chinese_nickname_is_taken_and_seen_by_the_others() {
    let server = Server::start(&[]);
    let mut alice = server.join("alice");
    let mut other = server.connect();
    let id = other.recv()["id"].as_u64().expect("id");
    alice.recv_type("join");
    let answer = try_nick(&mut other, "小明");
    assert_eq!(answer["type"], "nick", "{answer}");
    assert_eq!(answer["new"], "小明");
    let seen = alice.recv_type("nick");
    assert_eq!(seen["id"], id);
    assert_eq!(seen["new"], "小明");
    // And it speaks under that name.
    other.send(&json!({"type": "group", "text": "你好"}));
    let said = alice.recv_type("group");
    assert_eq!(said["from"], "小明", "{said}");
    other.send(&json!({"type": "who"}));
    let who = other.recv_type("who");
    let nicks: Vec<&str> = who["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["nick"].as_str().unwrap())
        .collect();
    assert_eq!(nicks, ["alice", "小明"]);
}

#[test]
fn a_look_alike_of_an_online_name_is_nick_in_use() {
    let server = Server::start(&[]);
    let mut alice = server.join("alice");
    let mut mallory = server.join("mallory");
    alice.sync();
    // Cyrillic а (U+0430), fullwidth letters, another case.
    for spelling in ["\u{430}lice", "ａｌｉｃｅ", "ALICE", "Alice"] {
        let answer = try_nick(&mut mallory, spelling);
        assert_eq!(answer["type"], "error", "{spelling}: {answer}");
        assert_eq!(answer["code"], "nick_in_use", "{spelling}: {answer}");
    }
    assert!(alice.sync().is_empty(), "alice hears of no rename");
    // alice may take a look-alike spelling of her own name.
    let answer = try_nick(&mut alice, "\u{430}lice");
    assert_eq!(answer["new"], "\u{430}lice", "{answer}");
    // Once she is gone, the name is free again.
    alice.send(&json!({"type": "quit"}));
    alice.recv_type("bye");
    mallory.recv_type("leave");
    let answer = try_nick(&mut mallory, "alice");
    assert_eq!(answer["new"], "alice", "{answer}");
}

#[test]
fn private_to_any_spelling_reaches_the_user() {
    let server = Server::start(&[]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    let mut ming = server.join("小明");
    alice.sync();
    bob.sync();
    for (n, to) in ["ALICE", "\u{410}lice", "ａｌｉｃｅ"].iter().enumerate() {
        bob.send(&json!({"type": "private", "to": to, "text": format!("psst {n}")}));
        let got = alice.recv_type("private");
        assert_eq!(got["to"], "alice", "{to}: {got}");
        assert_eq!(got["text"], format!("psst {n}"));
    }
    bob.send(&json!({"type": "private", "to": "小明", "text": "嗨"}));
    assert_eq!(ming.recv_type("private")["text"], "嗨");
    // A different name, however close, is somebody else.
    bob.send(&json!({"type": "private", "to": "小朋", "text": "?"}));
    let err = bob.recv_type("error");
    assert_eq!(err["code"], "no_such_user", "{err}");
}

#[test]
fn a_unicode_room_joined_by_two_spellings_is_one_room() {
    let server = Server::start(&[]);
    let mut olga = server.join("Ольга");
    let mut ming = server.join("小明");
    olga.sync();
    olga.send(&json!({"type": "join", "room": "Café-Bar"}));
    let joined = olga.recv_type("joined");
    assert_eq!(joined["room"], "café-bar", "sent case-folded: {joined}");
    // Decomposed é, upper case.
    ming.send(&json!({"type": "join", "room": "CAFE\u{301}-BAR"}));
    let joined = ming.recv_type("joined");
    assert_eq!(joined["room"], "café-bar", "{joined}");
    assert_eq!(
        joined["users"].as_array().map(Vec::len),
        Some(2),
        "{joined}"
    );
    let join = olga.recv_type("join");
    assert_eq!(join["room"], "café-bar");
    assert_eq!(join["nick"], "小明");
    ming.send(&json!({"type": "group", "room": "café-BAR", "text": "☕?"}));
    let said = olga.recv_type("group");
    assert_eq!(
        (said["room"].as_str(), said["text"].as_str()),
        (Some("café-bar"), Some("☕?"))
    );
    olga.send(&json!({"type": "rooms"}));
    let rooms = olga.recv_type("rooms");
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["café-bar", "lobby"]);
}

#[test]
fn names_out_of_the_rules_are_refused_saying_which_character() {
    let server = Server::start(&[]);
    let mut c = server.join("alice");
    let cases = [
        ("nick", "a\u{200D}b", "bad_nick", "U+200D"),
        ("nick", "a\u{E000}", "bad_nick", "U+E000"),
        ("nick", "a\u{378}", "bad_nick", "U+0378"),
        ("nick", "a\u{1F600}", "bad_nick", "U+1F600"),
        ("nick", "a\u{3000}b", "bad_nick", "U+3000"),
        ("nick", "guest\u{FF11}", "bad_nick", "reserved"),
        ("join", "caf\u{E9}\u{202E}", "bad_room", "U+202E"),
        ("join", "a\u{2603}", "bad_room", "U+2603"),
    ];
    for (kind, name, code, says) in cases {
        let field = if kind == "nick" { "nick" } else { "room" };
        c.send(&json!({"type": kind, field: name}));
        let got = c.sync();
        assert_eq!(got.len(), 1, "{name:?}: {got:?}");
        assert_eq!(got[0]["code"], code, "{name:?}: {:?}", got[0]);
        let message = got[0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{name:?}: {message}");
    }
}

#[test]
fn thirty_two_characters_but_not_thirty_three_whatever_the_bytes() {
    let server = Server::start(&[]);
    let mut c = server.join("alice");
    let longest = "明".repeat(32); // 96 bytes
    assert_eq!(try_nick(&mut c, &longest)["new"], longest.as_str());
    let decomposed = "e\u{301}".repeat(32); // 64 scalar values, 32 after NFC
    assert_eq!(try_nick(&mut c, &decomposed)["new"], "\u{e9}".repeat(32));
    let answer = try_nick(&mut c, &"明".repeat(33));
    assert_eq!(answer["code"], "bad_nick", "{answer}");
    // U+0958 grows to two characters under NFC: 17 of them are 34.
    let answer = try_nick(&mut c, &"\u{958}".repeat(17));
    assert_eq!(answer["code"], "bad_nick", "{answer}");
}

#[test]
fn a_lone_surrogate_escape_is_bad_json_and_the_connection_lives() {
    let server = Server::start(&[]);
    let mut c = server.join("alice");
    for line in [
        br#"{"type":"nick","nick":"\ud800"}"#.as_slice(),
        br#"{"type":"nick","nick":"a\udc00b"}"#,
        br#"{"type":"join","room":"\udbff"}"#,
    ] {
        c.send_raw(line);
        c.send_raw(b"\n");
        let got = c.sync();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["code"], "bad_json", "{:?}", got[0]);
    }
    assert_eq!(try_nick(&mut c, "Ольга")["new"], "Ольга");
}
