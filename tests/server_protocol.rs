//! `chat server` against the wire protocol, written from protocol.md alone
//! (the server is a black box): every message type, every error code, and
//! that a connection stays usable after each refusal.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Conn, Server};
use serde_json::{Value, json};

/// Connects, reads the welcome and takes NICK; returns the connection and
/// its server-assigned id.
fn join(server: &Server, nick: &str) -> (Conn, u64) {
    let mut c = server.connect();
    let welcome = c.recv();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let id = welcome["id"].as_u64().expect("welcome id");
    c.send(&json!({"type": "nick", "nick": nick}));
    let renamed = c.recv_type("nick");
    assert_eq!(renamed["new"], nick, "{renamed}");
    (c, id)
}

/// Joins each nick in turn, then drains everyone's join and nick notices so
/// that a test starts from a quiet room.
fn room(server: &Server, nicks: &[&str]) -> Vec<(Conn, u64)> {
    let mut conns: Vec<(Conn, u64)> = nicks.iter().map(|n| join(server, n)).collect();
    for (c, _) in &mut conns {
        c.sync();
    }
    conns
}

/// Asserts that `ts` is integer milliseconds since the epoch, near now.
fn assert_ts(msg: &Value) {
    let ts = msg["ts"]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer ts in {msg}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        ts.abs_diff(now) < 60_000,
        "ts {ts} is not near now ({now}) in {msg}"
    );
}

/// Asserts that the connection has nothing pending: a ping's pong is the
/// next line.
fn assert_quiet(conn: &mut Conn, who: &str) {
    let got = conn.sync();
    assert!(
        got.is_empty(),
        "{who} should have received nothing, got {got:?}"
    );
}

/// Sends one raw line and asserts that the only answer is an `error` with
/// CODE and a human message, and that the connection still answers a ping.
fn assert_refused(conn: &mut Conn, line: &[u8], code: &str) {
    conn.send_raw(line);
    conn.send_raw(b"\n");
    let shown = String::from_utf8_lossy(line);
    let got = conn.sync();
    assert_eq!(
        got.len(),
        1,
        "after {shown:?} expected one error {code}, got {got:?}"
    );
    let err = &got[0];
    assert_eq!(err["type"], "error", "after {shown:?}: {err}");
    assert_eq!(err["code"], code, "after {shown:?}: {err}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "after {shown:?}: error without a human message: {err}"
    );
}

// ---- session: welcome, join, leave -------------------------------------

#[test]
fn welcome_carries_id_guest_nick_greeting_and_user_count() {
    let server = Server::start(&[]);
    let mut first = server.connect();
    let w = first.recv();
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["id"], 1, "ids start at 1: {w}");
    assert_eq!(w["nick"], "guest1", "{w}");
    assert_eq!(w["text"], "Welcome to the chat room!", "{w}");
    assert_eq!(w["users"], 1, "users counts yourself: {w}");

    let mut second = server.connect();
    let w2 = second.recv();
    let id2 = w2["id"].as_u64().expect("id");
    assert_ne!(id2, 1, "ids are unique: {w2}");
    assert_eq!(w2["nick"], format!("guest{id2}"), "{w2}");
    assert_eq!(w2["users"], 2, "{w2}");

    // A user who left no longer counts, and ids are never reused.
    drop(second);
    first.recv_type("leave");
    let mut third = server.connect();
    let w3 = third.recv();
    let id3 = w3["id"].as_u64().expect("id");
    assert!(id3 != 1 && id3 != id2, "id {id3} was already used: {w3}");
    assert_eq!(w3["nick"], format!("guest{id3}"), "{w3}");
    assert_eq!(w3["users"], 2, "{w3}");
}

#[test]
fn join_is_announced_to_others_but_not_to_the_newcomer() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let mut newcomer = server.connect();
    let w = newcomer.recv();
    let id = w["id"].as_u64().unwrap();
    for (c, _) in &mut conns {
        let j = c.recv();
        assert_eq!(j["type"], "join", "{j}");
        assert_eq!(j["id"], id, "{j}");
        assert_eq!(j["nick"], format!("guest{id}"), "{j}");
        assert_ts(&j);
    }
    assert_quiet(&mut newcomer, "the newcomer");
}

#[test]
fn quit_with_text_gets_bye_then_close_and_others_get_leave_with_text() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob", "carol"]);
    let (alice, alice_id) = &mut conns[0];
    let alice_id = *alice_id;
    alice.send(&json!({"type": "quit", "text": "gotta go"}));
    let bye = alice.recv();
    assert_eq!(bye, json!({"type": "bye", "reason": "quit"}));
    alice.expect_eof();
    for (c, _) in &mut conns[1..] {
        let leave = c.recv();
        assert_eq!(leave["type"], "leave", "{leave}");
        assert_eq!(leave["id"], alice_id, "{leave}");
        assert_eq!(leave["nick"], "alice", "{leave}");
        assert_eq!(leave["reason"], "quit", "{leave}");
        assert_eq!(leave["text"], "gotta go", "{leave}");
        assert_ts(&leave);
    }
}

#[test]
fn quit_without_text_or_with_empty_text_leaves_without_text() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob", "carol"]);
    let quits = [json!({"type": "quit"}), json!({"type": "quit", "text": ""})];
    for (i, quit) in quits.iter().enumerate() {
        let (quitter, id) = &mut conns[i];
        let id = *id;
        quitter.send(quit);
        // The second quitter first hears of the first one's leave.
        assert_eq!(
            quitter.recv_type("bye"),
            json!({"type": "bye", "reason": "quit"})
        );
        quitter.expect_eof();
        let (watcher, _) = &mut conns[2];
        let leave = watcher.recv();
        assert_eq!(leave["type"], "leave", "{leave}");
        assert_eq!(leave["id"], id, "{leave}");
        assert_eq!(leave["reason"], "quit", "{leave}");
        assert!(leave.get("text").is_none(), "after {quit}: {leave}");
    }
}

#[test]
fn closing_without_quit_is_leave_with_reason_disconnect() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let (alice, alice_id) = conns.remove(0);
    drop(alice);
    let (bob, _) = &mut conns[0];
    let leave = bob.recv();
    assert_eq!(leave["type"], "leave", "{leave}");
    assert_eq!(leave["id"], alice_id, "{leave}");
    assert_eq!(leave["nick"], "alice", "{leave}");
    assert_eq!(leave["reason"], "disconnect", "{leave}");
    assert!(leave.get("text").is_none(), "{leave}");
    assert_ts(&leave);
}

#[test]
fn a_user_who_left_leaves_no_trace() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let (alice, _) = conns.remove(0);
    drop(alice);
    let (bob, _) = &mut conns[0];
    bob.recv_type("leave");
    assert_refused(
        bob,
        br#"{"type":"private","to":"alice","text":"still there?"}"#,
        "no_such_user",
    );
    bob.send(&json!({"type": "who"}));
    let who = bob.recv();
    let nicks: Vec<&Value> = who["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["nick"])
        .collect();
    assert_eq!(nicks, [&json!("bob")], "{who}");
    // The name is free again.
    let (_again, _) = join(&server, "alice");
}

// ---- group, private, nick, who, ping ----------------------------------

#[test]
fn group_reaches_everyone_else_and_is_not_echoed_to_the_sender() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob", "carol"]);
    let text = "héllo \"room\" \\ tab\there 🎉";
    conns[0].0.send(&json!({"type": "group", "text": text}));
    for (c, _) in &mut conns[1..] {
        let g = c.recv();
        assert_eq!(g["type"], "group", "{g}");
        assert_eq!(g["from"], "alice", "{g}");
        assert_eq!(g["text"], text, "{g}");
        assert_ts(&g);
    }
    assert_quiet(&mut conns[0].0, "the sender");
}

#[test]
fn private_reaches_only_the_recipient_whose_nick_matches_in_any_case() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob", "carol"]);
    conns[0]
        .0
        .send(&json!({"type": "private", "to": "BOB", "text": "psst"}));
    let p = conns[1].0.recv();
    assert_eq!(p["type"], "private", "{p}");
    assert_eq!(p["from"], "alice", "{p}");
    assert!(
        p["to"]
            .as_str()
            .is_some_and(|to| to.eq_ignore_ascii_case("bob")),
        "{p}"
    );
    assert_eq!(p["text"], "psst", "{p}");
    assert_ts(&p);
    assert_quiet(&mut conns[0].0, "the sender");
    assert_quiet(&mut conns[2].0, "a third user");
}

#[test]
fn private_to_yourself_is_delivered_to_you() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    conns[0]
        .0
        .send(&json!({"type": "private", "to": "Alice", "text": "note to self"}));
    let p = conns[0].0.recv();
    assert_eq!(p["type"], "private", "{p}");
    assert_eq!(p["from"], "alice", "{p}");
    assert_eq!(p["text"], "note to self", "{p}");
    assert_quiet(&mut conns[1].0, "another user");
}

#[test]
fn private_to_nobody_is_no_such_user() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    assert_refused(
        &mut conns[0].0,
        br#"{"type":"private","to":"zed","text":"hello?"}"#,
        "no_such_user",
    );
    assert_quiet(&mut conns[1].0, "bob");
}

#[test]
fn nick_change_is_announced_to_everyone_including_the_sender() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let alice_id = conns[0].1;
    conns[0].0.send(&json!({"type": "nick", "nick": "alicia"}));
    for (c, _) in &mut conns {
        let n = c.recv();
        assert_eq!(n["type"], "nick", "{n}");
        assert_eq!(n["id"], alice_id, "{n}");
        assert_eq!(n["old"], "alice", "{n}");
        assert_eq!(n["new"], "alicia", "{n}");
        assert_ts(&n);
    }
    conns[0]
        .0
        .send(&json!({"type": "group", "text": "new name"}));
    let g = conns[1].0.recv();
    assert_eq!(g["from"], "alicia", "{g}");
}

#[test]
fn renaming_yourself_in_another_case_is_allowed() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    conns[1].0.send(&json!({"type": "nick", "nick": "Bob"}));
    for (c, _) in &mut conns {
        let n = c.recv();
        assert_eq!(n["type"], "nick", "{n}");
        assert_eq!(n["old"], "bob", "{n}");
        assert_eq!(n["new"], "Bob", "{n}");
    }
    conns[0]
        .0
        .send(&json!({"type": "private", "to": "bob", "text": "hi Bob"}));
    let p = conns[1].0.recv();
    assert_eq!(p["type"], "private", "{p}");
    assert_eq!(p["text"], "hi Bob", "{p}");
}

#[test]
fn a_taken_nick_is_nick_in_use_in_any_case() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    for line in [
        r#"{"type":"nick","nick":"bob"}"#,
        r#"{"type":"nick","nick":"BOB"}"#,
        r#"{"type":"nick","nick":"bOb"}"#,
    ] {
        assert_refused(&mut conns[0].0, line.as_bytes(), "nick_in_use");
    }
    // Nothing changed: bob heard of no rename, and alice is still alice.
    assert_quiet(&mut conns[1].0, "bob");
    conns[0]
        .0
        .send(&json!({"type": "group", "text": "still me"}));
    let g = conns[1].0.recv();
    assert_eq!(g["from"], "alice", "{g}");
}

#[test]
fn every_nick_rule_is_enforced_with_bad_nick() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let long = format!("a{}", "b".repeat(32)); // 33 characters
    let bad = [
        "",
        long.as_str(),
        "1abc",
        "_abc",
        "-abc",
        "a b",
        "a.b",
        "a+b",
        "al!ce",
        "a\u{200D}b",
        "smile\u{1F600}",
        "tab\t",
        "guest1",
        "guest42",
        "GUEST7",
        "Guest007",
        "gUeSt9",
    ];
    for nick in bad {
        let line = json!({"type": "nick", "nick": nick}).to_string();
        assert_refused(&mut conns[0].0, line.as_bytes(), "bad_nick");
    }
    assert_quiet(&mut conns[1].0, "bob");
}

#[test]
fn nicks_at_the_edges_of_the_rules_are_accepted() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let longest = format!("Z{}", "9".repeat(31)); // 32 characters
    let good = [
        "a",
        longest.as_str(),
        "Q-_9",
        "guests",
        "guest_1",
        "guest1a",
        "Guesthouse",
    ];
    let mut old = "alice".to_string();
    for nick in good {
        conns[0].0.send(&json!({"type": "nick", "nick": nick}));
        let n = conns[0].0.recv();
        assert_eq!(n["type"], "nick", "nick {nick:?} was refused: {n}");
        assert_eq!(n["old"], old.as_str(), "{n}");
        assert_eq!(n["new"], nick, "{n}");
        assert_eq!(conns[1].0.recv(), n, "bob sees the same rename");
        old = nick.to_string();
    }
}

#[test]
fn who_lists_every_user_with_id_nick_and_connect_time() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice"]);
    let alice_id = conns[0].1;
    let mut newcomer = server.connect();
    let newcomer_id = newcomer.recv()["id"].as_u64().unwrap();
    let join = conns[0].0.recv();
    assert_eq!(join["type"], "join", "{join}");

    newcomer.send(&json!({"type": "who"}));
    let who = newcomer.recv();
    assert_eq!(who["type"], "who", "{who}");
    let users = who["users"].as_array().expect("users array");
    assert_eq!(users.len(), 2, "{who}");
    let find = |id: u64| {
        users
            .iter()
            .find(|u| u["id"] == id)
            .unwrap_or_else(|| panic!("no user {id} in {who}"))
    };
    let a = find(alice_id);
    assert_eq!(a["nick"], "alice", "{who}");
    assert!(a["since"].is_u64(), "{who}");
    let n = find(newcomer_id);
    assert_eq!(n["nick"], format!("guest{newcomer_id}"), "{who}");
    assert_eq!(
        n["since"], join["ts"],
        "since is the connect ts: {who} vs {join}"
    );
    assert!(
        a["since"].as_u64() <= n["since"].as_u64(),
        "alice connected first: {who}"
    );

    // The list follows renames.
    newcomer.send(&json!({"type": "nick", "nick": "nina"}));
    newcomer.recv_type("nick");
    conns[0].0.send(&json!({"type": "who", "extra": [1, 2]}));
    let who = conns[0].0.recv_type("who");
    let mut nicks: Vec<String> = who["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["nick"].as_str().unwrap().to_string())
        .collect();
    nicks.sort();
    assert_eq!(nicks, ["alice", "nina"], "{who}");
}

#[test]
fn pong_echoes_the_token_exactly_and_absent_stays_absent() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    c.recv();
    c.send(&json!({"type": "ping"}));
    let pong = c.recv();
    assert_eq!(pong["type"], "pong", "{pong}");
    assert!(pong.get("token").is_none(), "no token in, none out: {pong}");

    let tokens = [
        json!(null),
        json!(0),
        json!(42),
        json!(-7),
        json!(1.5),
        json!(u64::MAX),
        json!(true),
        json!(""),
        json!("abc"),
        json!("quote \" backslash \\ unicode é ☃"),
        json!([1, "two", null, [3]]),
        json!({"a": {"b": [true, false, null]}, "c": "d", "n": 3}),
    ];
    for token in tokens {
        c.send(&json!({"type": "ping", "token": token}));
        let pong = c.recv();
        assert_eq!(pong["type"], "pong", "{pong}");
        assert_eq!(
            pong.get("token"),
            Some(&token),
            "token {token} came back as {pong}"
        );
    }
}

// ---- errors -------------------------------------------------------------

#[test]
fn malformed_json_is_bad_json_and_the_connection_goes_on() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let lines: [&[u8]; 16] = [
        b"{not json}",
        b"hello",
        b"{\"type\":\"group\",\"text\":\"caf\xe9\"}", // Latin-1, not UTF-8
        b"{\"type\":\"group\",\"text\":\"\xff\xfe\"}",
        b"\xc3\x28",
        b"[1,2,3]",
        b"\"group\"",
        b"42",
        b"null",
        b"true",
        br#"{"type":"group","text":"x",}"#,
        br#"{"type":"ping","token":NaN}"#,
        br#"{"type":"ping","token":Infinity}"#,
        br#"{"type":"ping"} /* comment */"#,
        br#"{"type":"ping"}{"type":"ping"}"#,
        br#"{"type":'group'}"#,
    ];
    for line in lines {
        assert_refused(&mut conns[0].0, line, "bad_json");
    }
    assert_quiet(&mut conns[1].0, "bob");
}

#[test]
fn missing_or_mistyped_fields_are_bad_message() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let lines = [
        r#"{}"#,
        r#"{"text":"no type"}"#,
        r#"{"type":5}"#,
        r#"{"type":null}"#,
        r#"{"type":["group"]}"#,
        r#"{"type":"group"}"#,
        r#"{"type":"group","text":5}"#,
        r#"{"type":"group","text":null}"#,
        r#"{"type":"group","text":""}"#,
        r#"{"type":"private","text":"x"}"#,
        r#"{"type":"private","to":"bob"}"#,
        r#"{"type":"private","to":5,"text":"x"}"#,
        r#"{"type":"private","to":"bob","text":["x"]}"#,
        r#"{"type":"private","to":"bob","text":""}"#,
        r#"{"type":"nick"}"#,
        r#"{"type":"nick","nick":7}"#,
        r#"{"type":"nick","nick":{"n":"x"}}"#,
        r#"{"type":"quit","text":5}"#,
    ];
    for line in lines {
        assert_refused(&mut conns[0].0, line.as_bytes(), "bad_message");
    }
    // Nothing was delivered, renamed or quit on the way.
    assert_quiet(&mut conns[1].0, "bob");
}

#[test]
fn an_unknown_type_is_unknown_type() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    for line in [
        r#"{"type":"dance"}"#,
        r#"{"type":"dance","text":"cha-cha"}"#,
        r#"{"type":""}"#,
    ] {
        assert_refused(&mut conns[0].0, line.as_bytes(), "unknown_type");
    }
    assert_quiet(&mut conns[1].0, "bob");
}

#[test]
fn unknown_fields_are_ignored() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    conns[0]
        .0
        .send_line(r#"{"v":2,"type":"group","text":"hi","extra":{"nested":[1,2]},"flag":true}"#);
    let g = conns[1].0.recv();
    assert_eq!(g["type"], "group", "{g}");
    assert_eq!(g["text"], "hi", "{g}");
    conns[0]
        .0
        .send_line(r#"{"type":"private","to":"bob","text":"p","priority":"high"}"#);
    assert_eq!(conns[1].0.recv()["text"], "p");
    conns[0]
        .0
        .send_line(r#"{"type":"nick","nick":"ally","reason":"shorter"}"#);
    assert_eq!(conns[1].0.recv()["new"], "ally");
    conns[0]
        .0
        .send_line(r#"{"type":"ping","token":1,"foo":"bar"}"#);
    let pong = conns[0].0.recv_type("pong");
    assert_eq!(pong["token"], 1, "{pong}");
    conns[0]
        .0
        .send_line(r#"{"type":"quit","text":"done","when":"now"}"#);
    assert_eq!(conns[0].0.recv_type("bye")["reason"], "quit");
    let leave = conns[1].0.recv();
    assert_eq!(leave["text"], "done", "{leave}");
}
