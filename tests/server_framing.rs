//! `chat server` line framing from protocol.md: how bytes become lines
//! (split writes, CRLF, batches, blank lines, a last line without newline),
//! the line-length limit, and per-sender ordering.

mod common;

use common::{Conn, Server};
use serde_json::json;

/// Connects and takes NICK, then drains the notices of earlier joins.
fn room(server: &Server, nicks: &[&str]) -> Vec<Conn> {
    let mut conns: Vec<Conn> = nicks.iter().map(|n| server.join(n)).collect();
    for c in &mut conns {
        c.sync();
    }
    conns
}

/// A `group` line of exactly TOTAL bytes, ENDING (`\n` or `\r\n`) included.
fn group_line_of_len(total: usize, ending: &str) -> Vec<u8> {
    let prefix = r#"{"type":"group","text":""#;
    let suffix = r#""}"#;
    let fill = total - prefix.len() - suffix.len() - ending.len();
    let line = format!("{prefix}{}{suffix}{ending}", "x".repeat(fill));
    assert_eq!(line.len(), total);
    line.into_bytes()
}

/// Asserts that the next lines for CONN are exactly the group messages
/// TEXTS, in order, and nothing else.
fn assert_groups(conn: &mut Conn, texts: &[&str]) {
    let got = conn.sync();
    let got_texts: Vec<&str> = got
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "group", "{m}");
            m["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(got_texts, texts);
}

/// Asserts that the next lines for CONN are exactly one `error` with CODE.
fn assert_one_error(conn: &mut Conn, code: &str) {
    let got = conn.sync();
    assert_eq!(
        got.len(),
        1,
        "expected exactly one {code} error, got {got:?}"
    );
    assert_eq!(got[0]["type"], "error", "{}", got[0]);
    assert_eq!(got[0]["code"], code, "{}", got[0]);
}

#[test]
fn a_message_written_one_byte_at_a_time_arrives_whole() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let text = "drip é🎉 drop";
    let bytes = format!(
        "{}\n{}\n",
        json!({"type": "group", "text": text}),
        json!({"type": "ping", "token": "dripped"})
    );
    for b in bytes.as_bytes() {
        conns[0].send_raw(std::slice::from_ref(b));
    }
    let pong = conns[0].recv();
    assert_eq!(pong, json!({"type": "pong", "token": "dripped"}));
    assert_groups(&mut conns[1], &[text]);
}

#[test]
fn several_messages_in_one_write_are_all_handled_in_order() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    conns[0].send_raw(
        b"{\"type\":\"group\",\"text\":\"one\"}\n{\"type\":\"group\",\"text\":\"two\"}\r\n\
          {\"type\":\"private\",\"to\":\"bob\",\"text\":\"three\"}\n{\"type\":\"ping\",\"token\":3}\n",
    );
    assert_eq!(conns[0].recv(), json!({"type": "pong", "token": 3}));
    let texts: Vec<String> = (0..3)
        .map(|_| conns[1].recv()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
}

#[test]
fn crlf_line_endings_are_accepted_and_not_part_of_the_message() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    conns[0].send_raw(b"{\"type\":\"group\",\"text\":\"windows\"}\r\n");
    conns[0].send_raw(b"{\"type\":\"ping\",\"token\":\"crlf\"}\r\n");
    assert_eq!(conns[0].recv(), json!({"type": "pong", "token": "crlf"}));
    assert_groups(&mut conns[1], &["windows"]);
}

#[test]
fn blank_lines_are_ignored() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    conns[0].send_raw(b"\n\r\n   \n\t \r\n\n");
    let got = conns[0].sync();
    assert!(got.is_empty(), "blank lines got answers: {got:?}");
    assert_groups(&mut conns[1], &[]);
}

#[test]
fn a_last_line_without_newline_is_discarded_on_close() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    let mut alice = conns.remove(0);
    alice.send_raw(br#"{"type":"group","text":"unfinished"}"#);
    drop(alice);
    let bob = &mut conns[0];
    let next = bob.recv();
    assert_eq!(
        next["type"], "leave",
        "the unfinished line was delivered: {next}"
    );
    assert_eq!(next["reason"], "disconnect", "{next}");
}

#[test]
fn a_line_exactly_at_the_limit_is_accepted() {
    let server = Server::start(&["--max-line", "1024"]);
    let mut conns = room(&server, &["alice", "bob"]);
    for ending in ["\n", "\r\n"] {
        conns[0].send_raw(&group_line_of_len(1024, ending));
        let got = conns[0].sync();
        assert!(
            got.is_empty(),
            "a 1024-byte line ending {ending:?} was refused: {got:?}"
        );
        let g = conns[1].recv();
        assert_eq!(g["type"], "group", "{g}");
        assert_eq!(
            g["text"].as_str().map(str::len),
            Some(1024 - 26 - ending.len())
        );
    }
}

#[test]
fn one_byte_over_the_limit_is_one_line_too_long_and_the_next_line_works() {
    let server = Server::start(&["--max-line", "1024"]);
    let mut conns = room(&server, &["alice", "bob"]);
    // With CRLF the `\r` counts: 1023 bytes before it would fit with `\n` alone.
    for ending in ["\n", "\r\n"] {
        conns[0].send_raw(&group_line_of_len(1025, ending));
        conns[0].send_line(r#"{"type":"group","text":"after"}"#);
        assert_one_error(&mut conns[0], "line_too_long");
        assert_groups(&mut conns[1], &["after"]);
    }
}

#[test]
fn the_default_limit_is_65536_bytes() {
    let server = Server::start(&[]);
    let mut conns = room(&server, &["alice", "bob"]);
    conns[0].send_raw(&group_line_of_len(65536, "\n"));
    let got = conns[0].sync();
    assert!(got.is_empty(), "a 65536-byte line was refused: {got:?}");
    assert_eq!(conns[1].recv()["type"], "group");
    conns[0].send_raw(&group_line_of_len(65537, "\n"));
    assert_one_error(&mut conns[0], "line_too_long");
    assert_groups(&mut conns[1], &[]);
}

#[test]
fn a_huge_line_is_refused_before_its_newline_arrives() {
    let server = Server::start(&["--max-line", "1024"]);
    let mut conns = room(&server, &["alice", "bob"]);
    let alice = &mut conns[0];
    alice.send_raw(br#"{"type":"group","text":""#);
    alice.send_raw(&[b'x'; 8 * 1024]);
    // No newline yet: the refusal must come anyway.
    let err = alice.recv();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "line_too_long", "{err}");
    // The rest of the line, however long, is discarded without a second error.
    alice.send_raw(&[b'x'; 4 * 1024]);
    alice.send_raw(b"\"}\n");
    alice.send_line(r#"{"type":"group","text":"after"}"#);
    let got = alice.sync();
    assert!(got.is_empty(), "more answers for one long line: {got:?}");
    assert_groups(&mut conns[1], &["after"]);
}

#[test]
fn messages_from_one_sender_arrive_in_order_at_every_receiver() {
    const N: usize = 2000;
    let server = Server::start(&[]);
    let conns = room(&server, &["alice", "bob", "carol", "dave"]);
    let mut conns = conns.into_iter();
    let (mut alice, mut bob) = (conns.next().unwrap(), conns.next().unwrap());
    let mut receivers: Vec<Conn> = conns.collect();

    // Two senders flood at once, each in one back-to-back burst.
    let burst = |who: &str| -> Vec<u8> {
        (0..N)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"type": "group", "text": format!("{who} {i}")})
                )
            })
            .collect::<String>()
            .into_bytes()
    };
    let (a_burst, b_burst) = (burst("alice"), burst("bob"));
    std::thread::scope(|s| {
        s.spawn(|| alice.send_raw(&a_burst));
        s.spawn(|| bob.send_raw(&b_burst));
    });

    let check = |conn: &mut Conn, senders: &[&str]| {
        let mut next = vec![0usize; senders.len()];
        for _ in 0..N * senders.len() {
            let g = conn.recv();
            assert_eq!(g["type"], "group", "{g}");
            let from = g["from"].as_str().unwrap();
            let k = senders.iter().position(|s| *s == from).unwrap();
            assert_eq!(g["text"], format!("{from} {}", next[k]), "out of order");
            next[k] += 1;
        }
        let extra = conn.sync();
        assert!(extra.is_empty(), "more than was sent: {extra:?}");
    };
    for r in &mut receivers {
        check(r, &["alice", "bob"]);
    }
    check(&mut alice, &["bob"]);
    check(&mut bob, &["alice"]);
}
