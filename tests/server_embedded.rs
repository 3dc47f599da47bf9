//! The server as a library: `chat::server::Server` on a listener the test
//! bound itself (no race on readiness, no process), stopped from another
//! thread as SIGTERM would stop it.

mod common;

use std::net::TcpListener;

use chat::server::{Options, Server};
use common::Conn;
use serde_json::json;

#[test]
fn a_server_on_a_bound_listener_serves_until_stopped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let options = Options {
        welcome: "embedded".into(),
        default_room: "Hall".into(),
        ..Options::default()
    };
    // The server lives on one thread (it is single-threaded by design and
    // not Send); only its stopper crosses over.
    let (tx, rx) = std::sync::mpsc::channel();
    let running = std::thread::spawn(move || {
        let server = Server::new(listener, options)?;
        let _ = tx.send(server.stopper());
        server.run()
    });
    let stopper = rx.recv().unwrap();

    let mut alice = Conn::connect(addr);
    let welcome = alice.recv();
    assert_eq!(welcome["text"], "embedded", "{welcome}");
    assert_eq!(welcome["room"], "hall", "{welcome}");
    assert_eq!(welcome["protocol"], 2, "{welcome}");
    let mut bob = Conn::connect(addr);
    bob.recv_type("welcome");
    bob.send(&json!({"type": "group", "text": "hi"}));
    let g = alice.recv_type("group");
    assert_eq!((&g["text"], &g["room"]), (&json!("hi"), &json!("hall")));

    stopper.stop();
    assert_eq!(alice.recv_type("bye")["reason"], "shutdown");
    assert_eq!(bob.recv_type("bye")["reason"], "shutdown");
    running.join().unwrap().unwrap();
}

#[test]
fn a_bad_default_room_is_refused_before_serving() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let options = Options {
        default_room: "#lobby".into(),
        ..Options::default()
    };
    let Err(e) = Server::new(listener, options) else {
        panic!("a server with default room #lobby");
    };
    assert!(e.to_string().contains("starts with a letter"), "{e}");
}
