//! `chat server` as a process: startup errors, `--welcome`, `--quiet`,
//! the `--log` file, and shutdown on SIGTERM/SIGINT.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Conn, Server, TempDir, chat, output_within};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Asserts a failed start: exit status 1 and exactly one line on stderr,
/// which mentions MENTION.
fn assert_startup_error(args: &[&str], mention: &str) {
    let out = output_within(chat().arg("server").args(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr {stderr:?}");
    assert!(
        stderr.contains(mention),
        "{args:?}: {stderr:?} does not name {mention:?}"
    );
}

#[test]
fn an_address_in_use_is_one_line_naming_it_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_startup_error(&["--listen", &addr], &addr);
}

#[test]
fn a_malformed_listen_address_is_exit_1() {
    for bad in ["not-an-address", "127.0.0.1:99999", "127.0.0.1"] {
        assert_startup_error(&["--listen", bad], bad);
    }
}

#[test]
fn a_log_file_that_cannot_be_opened_is_one_line_and_exit_1() {
    let dir = TempDir::new("badlog");
    let path = dir.path.join("missing").join("chat.log");
    let path = path.to_str().unwrap();
    assert_startup_error(&["--listen", "127.0.0.1:0", "--log", path], path);
}

#[test]
fn welcome_text_is_configurable() {
    let server = Server::start(&["--welcome", "Hi from the test room ☃"]);
    let w = server.connect().recv();
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["text"], "Hi from the test room ☃", "{w}");
}

#[test]
fn sigterm_says_bye_shutdown_to_everyone_closes_and_exits_0() {
    let mut server = Server::start(&[]);
    let mut alice = server.join("alice");
    let mut guest = server.connect();
    guest.recv();
    alice.sync();
    let status = server.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status}");
    for c in [&mut alice, &mut guest] {
        assert_eq!(c.recv(), json!({"type": "bye", "reason": "shutdown"}));
        c.expect_eof();
    }
}

#[test]
fn sigint_shuts_down_like_sigterm() {
    let mut server = Server::start(&[]);
    let mut alice = server.join("alice");
    let status = server.signal_and_wait(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "{status}");
    assert_eq!(alice.recv(), json!({"type": "bye", "reason": "shutdown"}));
    alice.expect_eof();
}

#[test]
fn shutdown_does_not_wait_for_a_client_that_never_reads() {
    let mut server = Server::start(&[]);
    let mut alice = server.join("alice");
    // Never reads: megabytes back up for it, in the kernel and the server.
    let _stuck = std::net::TcpStream::connect(server.addr).unwrap();
    alice.recv_type("join");
    let line = format!("{}\n", json!({"type": "group", "text": "z".repeat(4000)}));
    alice.send_raw(line.repeat(1500).as_bytes()); // 6 MB
    alice.sync();
    let start = Instant::now();
    let status = server.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}; the grace period is about a second",
        start.elapsed()
    );
    assert_eq!(alice.recv(), json!({"type": "bye", "reason": "shutdown"}));
    alice.expect_eof();
}

#[test]
fn quiet_prints_nothing_on_stderr() {
    let mut server = Server::start_with(
        chat()
            .args(["server", "--listen", "127.0.0.1:0", "--quiet"])
            .stderr(Stdio::piped()),
    );
    let mut alice = server.join("alice");
    alice.send(&json!({"type": "group", "text": "hi"}));
    alice.send_line("not json");
    alice.sync();
    drop(alice);
    let mut stderr = server.child.stderr.take().unwrap();
    assert_eq!(server.signal_and_wait(Signal::SIGTERM).code(), Some(0));
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    assert_eq!(text, "", "--quiet server wrote to stderr");
}

/// The log's JSON lines after the first SKIP lines.
fn log_events(path: &std::path::Path, skip: usize) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(skip)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect()
}

fn assert_int(event: &Value, field: &str) -> u64 {
    event[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {field} in {event}"))
}

#[test]
fn the_log_file_gets_one_json_line_per_connect_nick_and_disconnect() {
    let dir = TempDir::new("log");
    let path = dir.path.join("chat.log");
    std::fs::write(&path, "an earlier line\n").unwrap();
    let mut server = Server::start(&["--log", path.to_str().unwrap()]);

    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    let mut carol = server.join("carol");
    let addr_of = |c: &Conn| c.stream.local_addr().unwrap().to_string();
    let addrs = [addr_of(&alice), addr_of(&bob), addr_of(&carol)];

    alice.send(&json!({"type": "group", "text": "one"}));
    alice.send(&json!({"type": "group", "text": "two"}));
    alice.send(&json!({"type": "quit", "text": "bye all"}));
    alice.recv_type("bye");
    bob.recv_type("leave");
    drop(bob);
    carol.recv_type("leave");
    carol.recv_type("leave");
    // The log is flushed every loop turn: after this round trip it holds
    // everything above.
    carol.sync();

    let events = log_events(&path, 1);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().next(),
        Some("an earlier line"),
        "the log is appended to, not truncated"
    );
    let summary: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("?").to_string(),
                assert_int(e, "id"),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("connect", 1),
        ("nick", 1),
        ("connect", 2),
        ("nick", 2),
        ("connect", 3),
        ("nick", 3),
        ("disconnect", 1),
        ("disconnect", 2),
    ]
    .iter()
    .map(|(e, id)| (e.to_string(), *id))
    .collect();
    assert_eq!(summary, expected, "{events:#?}");

    for e in &events {
        assert_int(e, "ts");
    }
    for (i, nick) in ["alice", "bob", "carol"].iter().enumerate() {
        let connect = &events[2 * i];
        assert_eq!(connect["addr"], addrs[i].as_str(), "{connect}");
        let renamed = &events[2 * i + 1];
        assert_eq!(renamed["old"], format!("guest{}", i + 1), "{renamed}");
        assert_eq!(renamed["new"], *nick, "{renamed}");
    }
    let (gone_alice, gone_bob) = (&events[6], &events[7]);
    assert_eq!(gone_alice["nick"], "alice", "{gone_alice}");
    assert_eq!(gone_alice["addr"], addrs[0].as_str(), "{gone_alice}");
    assert_eq!(gone_alice["reason"], "quit", "{gone_alice}");
    assert!(
        assert_int(gone_alice, "msgs_in") >= 2,
        "two groups at least: {gone_alice}"
    );
    assert_eq!(gone_bob["nick"], "bob", "{gone_bob}");
    assert_eq!(gone_bob["addr"], addrs[1].as_str(), "{gone_bob}");
    assert_eq!(gone_bob["reason"], "disconnect", "{gone_bob}");
    assert!(
        assert_int(gone_bob, "msgs_out") >= 2,
        "alice's two groups: {gone_bob}"
    );
    for gone in [gone_alice, gone_bob] {
        assert_int(gone, "duration_ms");
    }

    // Shutdown logs the users still connected, and the file is complete
    // when the server has exited.
    assert_eq!(server.signal_and_wait(Signal::SIGTERM).code(), Some(0));
    let events = log_events(&path, 1);
    assert_eq!(events.len(), 9, "{events:#?}");
    let last = &events[8];
    assert_eq!(last["event"], "disconnect", "{last}");
    assert_eq!(last["id"], 3, "{last}");
    assert_eq!(last["nick"], "carol", "{last}");
    assert_eq!(last["reason"], "shutdown", "{last}");
}
