//! Running out of file descriptors: the server refuses the surplus with
//! `server_full`, keeps serving who it has, and accepts again once
//! descriptors are free.

mod common;

use std::process::Command;

use common::{Conn, Server, chat_bin};
use serde_json::json;

/// Descriptors the server inherits and holds, so that it runs out of them
/// before its own client cap (derived from the limit) is reached.
const INHERITED: u32 = 20;

fn starved_server() -> Server {
    let opens: String = (10..10 + INHERITED)
        .map(|fd| format!("exec {fd}</dev/null; "))
        .collect();
    let script = format!(
        "ulimit -n 48 && {opens} exec \"$0\" server --listen 127.0.0.1:0 --quiet --max-clients 1000"
    );
    // No history: the test must not touch the user's own database.
    Server::start_with(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(chat_bin())
            .env("CHAT_DB", "none"),
    )
}

#[test]
fn out_of_descriptors_refuses_cleanly_and_recovers() {
    let server = starved_server();
    let mut admitted: Vec<Conn> = Vec::new();
    let refusal = loop {
        assert!(admitted.len() < 48, "never ran out of descriptors");
        let mut conn = server.connect();
        let first = conn.recv();
        if first["type"] == "welcome" {
            admitted.push(conn);
            continue;
        }
        assert!(
            conn.closed(),
            "a refused connection is closed after its one line"
        );
        break first;
    };
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["code"], "server_full");
    assert!(admitted.len() >= 10, "only {} admitted", admitted.len());

    // Still full: refused again, not left waiting in the backlog.
    let mut again = server.connect();
    assert_eq!(again.recv()["code"], "server_full");

    // Those inside keep chatting.
    let (first, rest) = admitted.split_at_mut(1);
    first[0].send(&json!({"type": "group", "text": "still here?"}));
    let got = rest[0].recv_type("group");
    assert_eq!(got["text"], "still here?");

    // Free some descriptors; the next connection gets in.
    for mut conn in admitted.drain(..3) {
        conn.send(&json!({"type": "quit"}));
        assert_eq!(conn.recv_type("bye")["reason"], "quit");
        assert!(conn.closed());
    }
    admitted[0].sync();
    let mut late = server.connect();
    assert_eq!(late.recv()["type"], "welcome");
    late.send(&json!({"type": "who"}));
    let who = late.recv_type("who");
    assert_eq!(
        who["users"].as_array().map(Vec::len),
        Some(admitted.len() + 1)
    );
}
