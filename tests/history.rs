//! History through the binary: what the server stores survives a restart
//! and a `kill -9`, `history` pages through it, and a database that cannot
//! be used stops the server at start with one line.

mod common;

use std::io::BufRead;
use std::path::Path;

use common::{Conn, Server, TempDir, chat, output_within};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn start_on(db: &Path) -> Server {
    Server::start(&["--rate", "0", "--db", db.to_str().unwrap()])
}

fn history(conn: &mut Conn, ask: Value) -> Value {
    conn.send(&ask);
    conn.recv_type("history")
}

/// (seq, from, text) of each message of a `history` answer.
fn rows(answer: &Value) -> Vec<(u64, String, String)> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["from"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn texts(answer: &Value) -> Vec<String> {
    rows(answer).into_iter().map(|r| r.2).collect()
}

#[test]
fn messages_topics_and_seq_survive_a_restart() {
    let dir = TempDir::new("history-restart");
    let db = dir.path.join("chat.db");
    let mut server = start_on(&db);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.send(&json!({"type": "group", "text": "one"}));
    alice.send(&json!({"type": "group", "text": "waves", "action": true}));
    alice.send(&json!({"type": "private", "to": "bob", "text": "secret"}));
    alice.send(&json!({"type": "topic", "room": "lobby", "text": "restarts"}));
    assert_eq!(bob.recv_type("topic")["text"], "restarts");
    assert_eq!(server.signal_and_wait(Signal::SIGTERM).code(), Some(0));

    let server = start_on(&db);
    let mut carol = server.join("carol");
    carol.send(&json!({"type": "join", "room": "lobby"}));
    assert_eq!(carol.recv_type("joined")["topic"], "restarts");
    let answer = history(&mut carol, json!({"type": "history", "room": "lobby"}));
    assert_eq!(
        answer["messages"],
        json!([
            {"seq": 1, "from": "alice", "text": "one", "ts": answer["messages"][0]["ts"]},
            {"seq": 2, "from": "alice", "text": "waves", "ts": answer["messages"][1]["ts"],
             "action": true}
        ]),
        "private messages are never stored"
    );
    assert_eq!(answer["more"], false);
    let mut dave = server.join("dave");
    carol.send(&json!({"type": "group", "text": "after"}));
    assert_eq!(dave.recv_type("group")["seq"], 3, "seq goes on");
}

#[test]
fn history_pages_before_and_after_and_refuses_a_bad_limit() {
    let dir = TempDir::new("history-pages");
    let server = start_on(&dir.path.join("chat.db"));
    let mut alice = server.join("alice");
    for n in 1..=5 {
        alice.send(&json!({"type": "group", "text": format!("m{n}")}));
    }
    // Asked right after sending: the asker's own messages are there.
    let last = history(
        &mut alice,
        json!({"type": "history", "room": "lobby", "limit": 2}),
    );
    assert_eq!(
        (texts(&last), &last["more"]),
        (vec!["m4".into(), "m5".into()], &json!(true))
    );
    let seq4 = rows(&last)[0].0;
    let before = history(
        &mut alice,
        json!({"type": "history", "room": "Lobby", "before": seq4, "limit": 2}),
    );
    assert_eq!(before["room"], "lobby");
    assert_eq!(texts(&before), ["m2", "m3"]);
    assert_eq!(before["more"], true);
    let after = history(
        &mut alice,
        json!({"type": "history", "room": "lobby", "after": seq4 - 2}),
    );
    assert_eq!(
        (texts(&after), &after["more"]),
        (vec!["m3".into(), "m4".into(), "m5".into()], &json!(false))
    );
    let empty = history(&mut alice, json!({"type": "history", "room": "nowhere"}));
    assert_eq!(
        (&empty["messages"], &empty["more"]),
        (&json!([]), &json!(false))
    );
    for bad in [
        json!({"type": "history", "room": "lobby", "limit": 0}),
        json!({"type": "history", "room": "lobby", "limit": 501}),
        json!({"type": "history", "room": "lobby", "before": 3, "after": 1}),
        json!({"type": "history"}),
    ] {
        alice.send(&bad);
        let error = alice.recv();
        assert_eq!(error["code"], "bad_message", "{bad}: {error}");
    }
    alice.send(&json!({"type": "history", "room": "#no"}));
    assert_eq!(alice.recv()["code"], "bad_room");
}

#[test]
fn without_a_database_history_is_empty_and_seq_starts_at_1() {
    let server = Server::start(&["--db", "none"]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.send(&json!({"type": "group", "text": "gone"}));
    assert_eq!(bob.recv_type("group")["seq"], 1);
    let answer = history(&mut alice, json!({"type": "history", "room": "lobby"}));
    assert_eq!(
        answer,
        json!({"type": "history", "room": "lobby", "messages": [], "more": false})
    );
}

/// Exit status 1 and exactly one line on stderr, naming `mention`.
fn assert_refused(args: &[&str], mention: &str) {
    let out = output_within(
        chat()
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(args),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr {stderr:?}");
    assert!(
        stderr.contains(mention),
        "{stderr:?} does not name {mention:?}"
    );
}

#[test]
fn a_second_server_on_the_same_database_refuses_to_start() {
    let dir = TempDir::new("history-lock");
    let db = dir.path.join("chat.db");
    let server = start_on(&db);
    assert_refused(&["--db", db.to_str().unwrap()], db.to_str().unwrap());
    // The first one is unharmed.
    server.join("alice").sync();
}

#[test]
fn an_unusable_database_is_one_line_and_exit_1() {
    let dir = TempDir::new("history-bad");
    let missing = dir.path.join("no/such/dir/chat.db");
    assert_refused(
        &["--db", missing.to_str().unwrap()],
        missing.to_str().unwrap(),
    );
    let junk = dir.path.join("junk.db");
    std::fs::write(&junk, vec![b'j'; 8192]).unwrap();
    assert_refused(&["--db", junk.to_str().unwrap()], "corrupt");
}

#[test]
fn the_default_database_is_made_under_xdg_data_home() {
    let dir = TempDir::new("history-default");
    let mut server = Server::start_with(
        chat()
            .env_remove("CHAT_DB")
            .env("XDG_DATA_HOME", &dir.path)
            .args(["server", "--listen", "127.0.0.1:0", "--quiet"]),
    );
    server.join("alice").sync();
    assert!(dir.path.join("chat/chat.db").exists());
    assert_eq!(server.signal_and_wait(Signal::SIGTERM).code(), Some(0));
}

/// After `kill -9`, the database holds every group message any client
/// received: once each, in seq order, with the same sender and text.
#[test]
fn kill_9_loses_nothing_anyone_received() {
    let dir = TempDir::new("history-kill");
    let db = dir.path.join("chat.db");
    let mut server = start_on(&db);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    let mut carol = server.join("carol");
    for n in 0..300 {
        let (from, to) = if n % 2 == 0 {
            (&mut alice, "a")
        } else {
            (&mut bob, "b")
        };
        from.send(&json!({"type": "group", "text": format!("{to}{n}")}));
    }
    // Carol reads a good part of the stream, then the server dies.
    let mut received = Vec::new();
    while received.len() < 200 {
        let msg = carol.recv();
        if msg["type"] == "group" {
            received.push((
                msg["seq"].as_u64().unwrap(),
                msg["from"].as_str().unwrap().to_owned(),
                msg["text"].as_str().unwrap().to_owned(),
            ));
        }
    }
    server.signal_and_wait(Signal::SIGKILL);
    // Whatever else was already on its way to carol counts as received.
    let mut line = String::new();
    while matches!(carol.reader.read_line(&mut line), Ok(n) if n > 0) {
        if !line.ends_with('\n') {
            break; // cut short by the kill: never received
        }
        let msg: Value = serde_json::from_str(&line).unwrap();
        line.clear();
        if msg["type"] == "group" {
            received.push((
                msg["seq"].as_u64().unwrap(),
                msg["from"].as_str().unwrap().to_owned(),
                msg["text"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let server = start_on(&db);
    let mut dave = server.join("dave");
    let stored = rows(&history(
        &mut dave,
        json!({"type": "history", "room": "lobby", "after": 0, "limit": 500}),
    ));
    let seqs: Vec<u64> = stored.iter().map(|r| r.0).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in seq order, once each");
    for got in &received {
        assert!(
            stored.contains(got),
            "received {got:?} but it was not stored"
        );
    }
}
