//! `chat server` at its limits: a client that does not read is cut off
//! (`leave` reason `slow`) while everyone else still gets everything, and
//! connections beyond `--max-clients` get `server_full`.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use common::{Conn, Server, WAIT};
use serde_json::{Value, json};

/// A connection whose kernel receive buffer is as small as Linux allows, so
/// that a client that never reads backs up into the server quickly.
fn connect_with_small_receive_buffer(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn a_client_that_does_not_read_is_cut_off_as_slow_and_nobody_else_loses_anything() {
    const PER_ROUND: usize = 64;
    const MAX_ROUNDS: usize = 200; // 200 x 64 x ~1 KiB = 13 MB: far past any buffer
    let server = Server::start(&["--max-queue", "64KiB"]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    let mut slow = connect_with_small_receive_buffer(server.addr);
    let slow_id = alice.recv_type("join")["id"].as_u64().unwrap();
    alice.sync();
    bob.sync();

    let pad = "p".repeat(1000);
    let mut sent = 0usize;
    let mut received: Vec<Value> = Vec::new();
    let mut groups = 0usize;
    let mut leave_seen_by_alice = None;
    for _ in 0..MAX_ROUNDS {
        let burst: String = (sent..sent + PER_ROUND)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"type": "group", "text": format!("{i} {pad}")})
                )
            })
            .collect();
        alice.send_raw(burst.as_bytes());
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

    // The slow client finds its connection closed once it drains it.
    let mut rest = Vec::new();
    match slow.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }

    // The room is still fine.
    alice.send(&json!({"type": "group", "text": "still here"}));
    assert_eq!(bob.recv()["text"], "still here");
}

#[test]
fn connections_beyond_max_clients_get_server_full_and_are_closed() {
    let server = Server::start(&["--max-clients", "2"]);
    let mut a = server.connect();
    assert_eq!(a.recv()["type"], "welcome");
    let mut b = server.connect();
    assert_eq!(b.recv()["type"], "welcome");
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
