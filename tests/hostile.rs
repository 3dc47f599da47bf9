//! Faults around a connection's life: a client that half-closes its
//! connection still gets what it asked for, and a log rotated under a
//! running server (SIGHUP) costs nobody their connection.

mod common;

use std::io::BufRead;
use std::net::Shutdown;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, TempDir, WAIT};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

#[test]
fn a_half_closed_client_gets_its_answers_and_others_get_its_messages_then_leave() {
    const N: usize = 200;
    let server = Server::start(&["--rate", "0"]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.sync();

    // Like `printf ... | nc -N`: everything at once, then the end of input.
    let mut burst: String = (0..N)
        .map(|i| format!("{}\n", json!({"type": "group", "text": format!("m{i}")})))
        .collect();
    burst.push_str("{\"type\":\"who\"}\n");
    alice.send_raw(burst.as_bytes());
    alice.stream.shutdown(Shutdown::Write).unwrap();

    for i in 0..N {
        let g = bob.recv();
        assert_eq!(g["type"], "group", "{g}");
        assert_eq!(g["text"], format!("m{i}"));
    }
    let leave = bob.recv();
    assert_eq!(leave["type"], "leave", "{leave}");
    assert_eq!(leave["nick"], "alice", "{leave}");
    assert_eq!(leave["reason"], "disconnect", "{leave}");

    let who = alice.recv();
    assert_eq!(who["type"], "who", "{who}");
    let nicks: Vec<&Value> = who["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["nick"])
        .collect();
    assert_eq!(nicks, [&json!("alice"), &json!("bob")]);
    alice.expect_eof();

    bob.send(&json!({"type": "who"}));
    assert_eq!(
        bob.recv_type("who")["users"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_half_closed_client_with_a_backlog_still_gets_all_of_it_and_its_answer() {
    // The same, for a client that had not read for a while: more is queued
    // for it than the kernel's buffers hold, and the answer to its last
    // line comes after all of that.
    const BACKLOG: usize = 10_000;
    let server = Server::start(&["--rate", "0", "--max-queue", "64MiB"]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.sync();
    let pad = "p".repeat(1000);
    let talk: String = (0..BACKLOG)
        .map(|i| {
            format!(
                "{}\n",
                json!({"type": "group", "text": format!("{i} {pad}")})
            )
        })
        .collect();
    bob.send_raw(talk.as_bytes());
    bob.sync(); // the server has queued all of it for alice

    alice.send_line(r#"{"type":"who"}"#);
    alice.stream.shutdown(Shutdown::Write).unwrap();
    let mut got = 0;
    loop {
        let mut line = String::new();
        alice.reader.read_line(&mut line).unwrap();
        assert!(
            line.ends_with('\n'),
            "after {got} of {BACKLOG} messages the server closed the connection \
             in the middle of a line ({} bytes of it), and the who never came",
            line.len()
        );
        let msg: Value = serde_json::from_str(&line).unwrap();
        if msg["type"] == "who" {
            break;
        }
        assert_eq!(
            msg["text"],
            format!("{got} {pad}"),
            "backlog lost or reordered"
        );
        got += 1;
    }
    assert_eq!(got, BACKLOG);
    alice.expect_eof();
    assert_eq!(bob.recv_type("leave")["reason"], "disconnect");
}

/// The log's records, parsed.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events of a log as `event id`, e.g. `connect 1`.
fn events(path: &Path) -> Vec<String> {
    records(path)
        .iter()
        .map(|r| format!("{} {}", r["event"].as_str().unwrap(), r["id"]))
        .collect()
}

#[test]
fn sighup_starts_a_new_log_at_the_same_path_and_drops_nobody() {
    let dir = TempDir::new("sighup");
    let log = dir.path.join("chat.log");
    let rotated = dir.path.join("chat.log.1");
    let server = Server::start(&["--log", log.to_str().unwrap()]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.sync();

    // What logrotate does: move the file away, then tell the server.
    std::fs::rename(&log, &rotated).unwrap();
    kill(Pid::from_raw(server.pid()), Signal::SIGHUP).unwrap();
    // A signal has no answer in the protocol; the new file appearing is
    // the server's sign that it reopened, so wait (bounded) for that.
    let deadline = Instant::now() + WAIT;
    while !log.exists() {
        assert!(Instant::now() < deadline, "no new log after SIGHUP");
        std::thread::sleep(Duration::from_millis(10)); // polling the file system, no protocol barrier
    }

    // Nobody was dropped: alice and bob still talk, and a newcomer and a
    // departure are recorded in the new file only.
    alice.send(&json!({"type": "group", "text": "after the rotation"}));
    assert_eq!(bob.recv()["text"], "after the rotation");
    let mut carol = server.join("carol");
    bob.send(&json!({"type": "quit"}));
    bob.recv_type("bye");
    bob.expect_eof();
    carol.recv_type("leave");
    carol.send(&json!({"type": "who"}));
    let who = carol.recv_type("who");
    assert_eq!(who["users"].as_array().map(Vec::len), Some(2), "{who}");

    assert_eq!(
        events(&rotated),
        ["connect 1", "nick 1", "connect 2", "nick 2"]
    );
    assert_eq!(events(&log), ["connect 3", "nick 3", "disconnect 2"]);
    let gone = records(&log).pop().unwrap();
    assert_eq!(gone["reason"], "quit", "{gone}");
}
