//! `chat server` at its limits: a client that does not read is cut off
//! (`leave` reason `slow`) while everyone else still gets everything, and
//! connections beyond `--max-clients` get `server_full`.

mod common;

use std::io::{BufRead, Read};
use std::net::TcpStream;

use common::{Conn, Server, TempDir, WAIT};
use serde_json::{Value, json};

/// Group lines whose texts are "I PAD" for each I in RANGE, as one write.
fn numbered_groups(range: std::ops::Range<usize>, pad: &str) -> Vec<u8> {
    range
        .map(|i| {
            format!(
                "{}\n",
                json!({"type": "group", "text": format!("{i} {pad}")})
            )
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_client_that_does_not_read_is_cut_off_as_slow_and_nobody_else_loses_anything() {
    // Each round (~24 KiB out per receiver) stays well under the 64 KiB queue,
    // so only a client that does not read can go over it.
    const PER_ROUND: usize = 24;
    const MAX_ROUNDS: usize = 500; // 500 x 24 x ~1 KiB = 12 MB: far past any buffer
    let log = TempDir::new("slowlog");
    let log_path = log.path.join("chat.log");
    let server = Server::start(&[
        "--rate",
        "0",
        "--max-queue",
        "64KiB",
        "--log",
        log_path.to_str().unwrap(),
    ]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.sync();
    // It never reads; the kernel's buffers fill (megabytes on loopback),
    // then its queue in the server.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(WAIT)).unwrap();
    let slow_id = alice.recv_type("join")["id"].as_u64().unwrap();
    alice.sync();
    bob.sync();

    let pad = "p".repeat(1000);
    let mut sent = 0usize;
    let mut received: Vec<Value> = Vec::new();
    let mut groups = 0usize;
    let mut leave_seen_by_alice = None;
    for _ in 0..MAX_ROUNDS {
        alice.send_raw(&numbered_groups(sent..sent + PER_ROUND, &pad));
        sent += PER_ROUND;
        // Bob keeps up: he reads the whole round before the next is sent.
        while groups < sent {
            let m = bob.recv();
            groups += usize::from(m["type"] == "group");
            received.push(m);
        }
        let before = alice.sync();
        if let Some(leave) = before.into_iter().find(|m| m["type"] == "leave") {
            leave_seen_by_alice = Some(leave);
            break;
        }
    }
    let leave = leave_seen_by_alice.unwrap_or_else(|| {
        panic!("the non-reading client was never cut off after {sent} messages")
    });
    assert_eq!(leave["id"], slow_id, "{leave}");
    assert_eq!(leave["nick"], format!("guest{slow_id}"), "{leave}");
    assert_eq!(leave["reason"], "slow", "{leave}");

    // Bob got every message, in order, and the same leave.
    received.extend(bob.sync());
    let mut next = 0usize;
    let mut bob_leave = None;
    for m in &received {
        match m["type"].as_str() {
            Some("group") => {
                assert_eq!(
                    m["text"],
                    format!("{next} {pad}"),
                    "message lost or reordered"
                );
                next += 1;
            }
            Some("leave") => bob_leave = Some(m.clone()),
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(next, sent);
    assert_eq!(bob_leave.as_ref(), Some(&leave), "bob saw {bob_leave:?}");

    // The slow client finds its connection closed once it has read what the
    // kernel holds for it.
    let mut rest = Vec::new();
    match slow.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }

    // The room is still fine, without the slow client.
    alice.send(&json!({"type": "group", "text": "still here"}));
    assert_eq!(bob.recv()["text"], "still here");
    alice.send(&json!({"type": "who"}));
    let who = alice.recv();
    assert_eq!(who["users"].as_array().map(Vec::len), Some(2), "{who}");

    // The log says why it went (flushed: the who round trip came after).
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    let gone: Vec<Value> = log_text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "disconnect")
        .collect();
    assert_eq!(gone.len(), 1, "{log_text}");
    assert_eq!(gone[0]["id"], slow_id, "{}", gone[0]);
    assert_eq!(gone[0]["reason"], "slow", "{}", gone[0]);
}

#[test]
fn a_client_that_stops_reading_for_megabytes_then_reads_gets_everything_in_order() {
    // 3 MB of messages while it does not read: with a 64 KiB receive
    // buffer (smaller ones make TCP crawl once it reads again: a window
    // below the loopback MSS is not announced) most of that waits in the
    // server, many 64 KiB blocks of broadcasts, broken by the answers to
    // its own pings.
    const ROUNDS: usize = 60;
    const PER_ROUND: usize = 50;
    let server = Server::start(&["--rate", "0"]);
    let mut lazy = server.join("lazy");
    lazy.sync();
    nix::sys::socket::setsockopt(&lazy.stream, nix::sys::socket::sockopt::RcvBuf, &65536)
        .expect("SO_RCVBUF");
    let mut alice = server.join("alice");
    alice.sync();
    assert_eq!(lazy.recv_type("join")["nick"], "guest2", "alice's arrival");

    let pad = "q".repeat(1000);
    for round in 0..ROUNDS {
        let from = round * PER_ROUND;
        alice.send_raw(&numbered_groups(from..from + PER_ROUND, &pad));
        // Its own pings are answered into the same queue, between runs
        // of broadcasts; written, not read.
        lazy.send(&json!({"type": "ping", "token": round}));
        alice.sync();
    }

    // Now it reads: every message once, in order, and every pong.
    let (mut next, mut pongs) = (0usize, 0usize);
    while next < ROUNDS * PER_ROUND || pongs < ROUNDS {
        let m = lazy.recv();
        match m["type"].as_str() {
            Some("group") => {
                assert_eq!(m["text"], format!("{next} {pad}"), "lost or reordered");
                next += 1;
            }
            Some("pong") => {
                assert_eq!(m["token"], pongs, "{m}");
                pongs += 1;
            }
            Some("nick") if m["new"] == "alice" => {}
            _ => panic!("unexpected {m}"),
        }
    }
    assert!(lazy.sync().is_empty(), "more than was sent");
}

#[test]
fn a_reader_that_keeps_up_is_not_cut_off_by_one_burst_larger_than_the_queue() {
    // One write of ~96 KiB: the receiver's kernel buffers are empty and it
    // reads all the time, so nothing need wait in the server beyond 64 KiB.
    const BURST: usize = 96;
    let server = Server::start(&["--max-queue", "64KiB"]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.sync();
    let pad = "p".repeat(1000);
    let lines = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut lines = Vec::new();
            while lines.len() < BURST {
                let mut line = String::new();
                if bob.reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                lines.push(line);
            }
            lines
        });
        alice.send_raw(&numbered_groups(0..BURST, &pad));
        reader.join().unwrap()
    });
    let texts: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].clone())
        .collect();
    let expected: Vec<Value> = (0..BURST).map(|i| json!(format!("{i} {pad}"))).collect();
    assert!(
        texts == expected,
        "bob read all the time, yet got {} of {BURST} messages before the server closed him",
        texts.iter().take_while(|t| t.is_string()).count()
    );
    let sender = alice.sync();
    assert!(sender.is_empty(), "alice saw {sender:?}");
    assert!(bob.sync().is_empty());
}

#[test]
fn connections_beyond_max_clients_get_server_full_and_are_closed() {
    let server = Server::start(&["--max-clients", "2"]);
    let mut a = server.connect();
    assert_eq!(a.recv()["type"], "welcome");
    let mut b = server.connect();
    assert_eq!(b.recv()["type"], "welcome");
    a.sync();
    b.sync();

    for _ in 0..2 {
        let mut surplus = server.connect();
        let err = surplus.recv();
        assert_eq!(err["type"], "error", "{err}");
        assert_eq!(err["code"], "server_full", "{err}");
        assert!(err["message"].is_string(), "{err}");
        surplus.expect_eof();
    }
    // The refused connections were never users.
    let got = a.sync();
    assert!(
        got.is_empty(),
        "users heard of refused connections: {got:?}"
    );
    a.send(&json!({"type": "who"}));
    assert_eq!(a.recv()["users"].as_array().map(Vec::len), Some(2));

    // A freed place can be taken again.
    a.send(&json!({"type": "quit"}));
    a.recv_type("bye");
    a.expect_eof();
    assert_eq!(b.recv()["type"], "leave");
    let mut c = Conn::connect(server.addr);
    let w = c.recv();
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["users"], 2, "{w}");
}
