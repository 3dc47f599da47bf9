//! `chat server --cluster`: two servers on one real nats-server act as
//! one server (issue 16). The soak test across three is
//! tests/cluster_soak.rs.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/irc.rs"]
mod irc;
#[path = "common/ws.rs"]
mod ws;

use std::time::{Duration, Instant};

use cluster::Cluster;
use common::{Conn, WAIT};
use irc::Irc;
use serde_json::{Value, json};

/// Skips lines until a `join` of `nick` to `room`.
fn wait_join(conn: &mut Conn, nick: &str, room: &str) -> Value {
    loop {
        let msg = conn.recv_type("join");
        if msg["nick"] == nick && msg["room"] == room {
            return msg;
        }
    }
}

fn history(conn: &mut Conn, room: &str) -> Vec<(u64, String, String)> {
    conn.send(&json!({"type": "history", "room": room}));
    let answer = conn.recv_type("history");
    answer["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["from"].as_str().unwrap_or_default().to_owned(),
                m["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn two_servers_share_rooms_messages_privates_and_history() {
    let Some(cluster) = Cluster::start("cluster-two", 2, &[]) else {
        return;
    };
    let mut alice = cluster.join(0, "alice");
    let mut bob = cluster.join(1, "bob");
    // Bob's arrival and rename reach alice's server.
    let nick = alice.recv_type("nick");
    assert_eq!(nick["new"], "bob", "{nick}");

    alice.send(&json!({"type": "group", "text": "one"}));
    alice.send(&json!({"type": "group", "text": "two"}));
    let one = bob.recv_type("group");
    let two = bob.recv_type("group");
    assert_eq!(
        (one["from"].clone(), one["text"].clone()),
        (json!("alice"), json!("one"))
    );
    assert_eq!(two["text"], "two");
    let (s1, s2) = (
        one["seq"].as_u64().expect("seq"),
        two["seq"].as_u64().expect("seq"),
    );
    assert!(s2 > s1, "seq increases across the cluster: {s1} then {s2}");

    // Private messages cross servers, both ways.
    bob.send(&json!({"type": "private", "to": "alice", "text": "psst"}));
    let private = alice.recv_type("private");
    assert_eq!(
        (private["from"].clone(), private["text"].clone()),
        (json!("bob"), json!("psst"))
    );
    alice.send(&json!({"type": "private", "to": "bob", "text": "back"}));
    assert_eq!(bob.recv_type("private")["text"], "back");

    // Rooms: a join on one server is seen on the other, and so is a topic.
    alice.send(&json!({"type": "join", "room": "dev"}));
    alice.recv_type("joined");
    bob.send(&json!({"type": "join", "room": "dev"}));
    let joined = bob.recv_type("joined");
    let members: Vec<&str> = joined["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["nick"].as_str())
        .collect();
    // Alice is in the answer, or her join (applied on her server first)
    // follows it.
    if !members.contains(&"alice") {
        wait_join(&mut bob, "alice", "dev");
    }
    wait_join(&mut alice, "bob", "dev");
    bob.send(&json!({"type": "topic", "room": "dev", "text": "shipping"}));
    let topic = alice.recv_type("topic");
    assert_eq!(
        (topic["by"].clone(), topic["text"].clone()),
        (json!("bob"), json!("shipping"))
    );

    // History is the same from both servers.
    bob.sync();
    let from_a = history(&mut alice, "lobby");
    let from_b = history(&mut bob, "lobby");
    assert_eq!(from_a, from_b);
    assert_eq!(
        from_a,
        vec![
            (s1, "alice".into(), "one".into()),
            (s2, "alice".into(), "two".into())
        ]
    );

    // A quit is a leave on the other server.
    alice.send(&json!({"type": "quit"}));
    let leave = bob.recv_type("leave");
    assert_eq!(
        (leave["nick"].clone(), leave["reason"].clone()),
        (json!("alice"), json!("quit"))
    );
}

#[test]
fn a_killed_server_s_users_leave_everywhere_and_their_names_are_free() {
    let Some(mut cluster) = Cluster::start("cluster-kill", 2, &[]) else {
        return;
    };
    let _alice = cluster.join(0, "alice");
    let mut bob = cluster.join(1, "bob");
    Cluster::wait_seen(&mut [&mut bob], "alice");
    let killed = Instant::now();
    cluster.kill(0);
    let leave = bob.recv_type("leave");
    assert_eq!(
        (leave["nick"].clone(), leave["reason"].clone()),
        (json!("alice"), json!("disconnect"))
    );
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "noticed after {:?}",
        killed.elapsed()
    );
    // The name is free again, on the server that survived.
    let _alice_again = cluster.join(1, "alice");
}

#[test]
fn a_server_without_nats_stays_up_refuses_what_needs_it_and_resumes() {
    let Some(mut cluster) = Cluster::start("cluster-degraded", 2, &[]) else {
        return;
    };
    let mut alice = cluster.join(0, "alice");
    let mut carl = cluster.join(0, "carl");
    let mut bob = cluster.join(1, "bob");
    Cluster::wait_seen(&mut [&mut alice, &mut bob], "carl");
    Cluster::wait_seen(&mut [&mut alice], "bob");
    cluster.nats_down();
    let notice = alice.recv_type("error");
    assert_eq!(notice["code"], "cluster_degraded", "{notice}");
    // carl leaves while NATS is away: his name is given back once it is
    // here again.
    carl.send(&json!({"type": "quit"}));
    carl.recv_type("bye");
    // Reads answer from the local view; a group message is refused.
    alice.sync();
    alice.send(&json!({"type": "group", "text": "lost?"}));
    let refused = alice.recv_type("error");
    assert_eq!(refused["code"], "cluster_unavailable", "{refused}");
    cluster.nats_up();
    let back = alice.recv_type("error");
    assert_eq!(back["code"], "cluster_restored", "{back}");
    bob.recv_type("error");
    wait_leave(&mut bob, "carl");
    bob.send(&json!({"type": "nick", "nick": "carl"}));
    let renamed = bob.recv_type("nick");
    assert_eq!(renamed["new"], "carl", "carl's name still held: {renamed}");
    bob.send(&json!({"type": "nick", "nick": "bob"}));
    bob.recv_type("nick");
    let deadline = Instant::now() + WAIT;
    alice.send(&json!({"type": "group", "text": "back"}));
    let got = bob.recv_type("group");
    assert_eq!(got["text"], "back");
    assert!(Instant::now() < deadline);
}

#[test]
fn a_restarted_server_stores_what_it_missed_and_has_the_same_history() {
    let Some(mut cluster) = Cluster::start("cluster-restart", 2, &[]) else {
        return;
    };
    let mut alice = cluster.join(0, "alice");
    let mut bob = cluster.join(1, "bob");
    alice.recv_type("nick");
    alice.send(&json!({"type": "group", "text": "before"}));
    bob.recv_type("group");
    cluster.kill(0);
    bob.send(&json!({"type": "group", "text": "while it was down"}));
    bob.sync();
    cluster.restart(0);
    let mut carol = cluster.join(0, "carol");
    let on_restarted = history(&mut carol, "lobby");
    let on_survivor = history(&mut bob, "lobby");
    assert_eq!(on_restarted, on_survivor);
    let texts: Vec<&str> = on_restarted.iter().map(|m| m.2.as_str()).collect();
    assert_eq!(texts, ["before", "while it was down"]);
    // Bob, on the survivor, is known to the restarted server at once.
    carol.send(&json!({"type": "private", "to": "bob", "text": "hi"}));
    assert_eq!(bob.recv_type("private")["text"], "hi");
}

#[test]
fn a_name_is_one_user_s_across_servers() {
    let Some(cluster) = Cluster::start("cluster-names", 2, &[]) else {
        return;
    };
    let mut a = cluster.join(0, "ann");
    let mut b = cluster.join(1, "ben");
    // Both ask for the same name at once: one gets it.
    a.send(&json!({"type": "nick", "nick": "zed"}));
    b.send(&json!({"type": "nick", "nick": "Zed"}));
    // Its own rename or its error: the other's rename, which it may see
    // first when the other won, is not its answer.
    let answer = |conn: &mut Conn, me: &str| loop {
        let msg = conn.recv();
        if msg["type"] == "error"
            || (msg["type"] == "nick"
                && msg["old"] == me
                && msg["new"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("zed")))
        {
            return msg;
        }
    };
    let (got_a, got_b) = (answer(&mut a, "ann"), answer(&mut b, "ben"));
    let won: Vec<bool> = [&got_a, &got_b]
        .iter()
        .map(|m| m["type"] == "nick")
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{got_a} {got_b}");
    let (winner, loser, lost) = if won[0] { (a, b, got_b) } else { (b, a, got_a) };
    assert_eq!(lost["code"], "nick_in_use", "{lost}");
    // Once its holder leaves, the name is free on the other server too.
    let mut winner = winner;
    let mut loser = loser;
    winner.send(&json!({"type": "quit"}));
    loser.recv_type("leave");
    // The holder's server frees the name in the name table before it
    // publishes the leave: whoever sees the leave can take the name.
    let me = if won[0] { "ben" } else { "ann" };
    loser.send(&json!({"type": "nick", "nick": "zed"}));
    let renamed = answer(&mut loser, me);
    assert_eq!(
        renamed["type"], "nick",
        "zed still held after its holder left: {renamed}"
    );
}

#[test]
fn an_account_registered_on_one_server_is_the_same_on_the_other() {
    let Some(cluster) = Cluster::start("cluster-accounts", 2, &[]) else {
        return;
    };
    const PASSWORD: &str = "correct horse battery";
    let mut alice = cluster.join(0, "Alice");
    alice.send(&json!({"type": "register", "password": PASSWORD}));
    assert_eq!(
        alice.recv_type("registered"),
        json!({"type": "registered", "account": "Alice"})
    );
    let mut bob = cluster.join(1, "bob");
    let mut carl = cluster.join(1, "carl");
    alice.send(&json!({"type": "quit"}));
    wait_leave(&mut carl, "Alice");
    // A wrong password on the other server fails as on the first.
    bob.send(&json!({"type": "login", "account": "alice", "password": "wrong password"}));
    let failed = bob.recv_type("error");
    assert_eq!(failed["code"], "login_failed", "{failed}");
    // A guest there cannot take the name, though its owner left.
    carl.send(&json!({"type": "nick", "nick": "ALICE"}));
    let refused = carl.recv_type("error");
    assert_eq!(refused["code"], "nick_registered", "{refused}");
    // The right password logs in there, under the name as registered.
    bob.send(&json!({"type": "login", "account": "alice", "password": PASSWORD}));
    assert_eq!(bob.recv_type("logged_in")["account"], "Alice");
}

/// Skips lines until `nick` leaves.
fn wait_leave(conn: &mut Conn, nick: &str) {
    loop {
        if conn.recv_type("leave")["nick"] == nick {
            return;
        }
    }
}

/// A bare IRC client: registers as `nick` and returns its stream, the
/// reader, and the verb of the first of 001 (welcome) or 433 (in use).
fn irc_register(addr: std::net::SocketAddr, nick: &str) -> (std::net::TcpStream, String) {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the IRC door");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes())
        .expect("write");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read from the IRC door");
        assert!(n > 0, "the IRC door closed before 001 or 433");
        let verb = line.split(' ').nth(1).unwrap_or_default().to_owned();
        if verb == "001" || verb == "433" {
            return (stream, verb);
        }
    }
}

#[test]
fn without_nats_a_login_checks_the_last_known_accounts() {
    let Some(mut cluster) = Cluster::start("cluster-degraded-login", 2, &[]) else {
        return;
    };
    const PASSWORD: &str = "correct horse battery";
    let mut bob = cluster.join(1, "bob");
    bob.send(&json!({"type": "register", "password": PASSWORD}));
    bob.recv_type("registered");
    let mut alice = cluster.join(0, "alice");
    // Read once while NATS is there: this server has seen the account.
    alice.send(&json!({"type": "login", "account": "bob", "password": "wrong password"}));
    assert_eq!(alice.recv_type("error")["code"], "login_failed");
    cluster.nats_down();
    let notice = alice.recv_type("error");
    assert_eq!(notice["code"], "cluster_degraded", "{notice}");
    // Taking the name from bob (on the other server) would be a rename
    // the other server never hears of: refused until NATS is back.
    alice.send(&json!({"type": "login", "account": "bob", "password": PASSWORD}));
    assert_eq!(alice.recv_type("error")["code"], "cluster_unavailable");
    // bob, holding his own name, logs in from the last copy of the accounts.
    bob.recv_type("error"); // cluster_degraded
    bob.send(&json!({"type": "logout"}));
    bob.recv_type("logged_out");
    bob.send(&json!({"type": "login", "account": "bob", "password": "wrong again!"}));
    assert_eq!(bob.recv_type("error")["code"], "login_failed");
    bob.send(&json!({"type": "login", "account": "bob", "password": PASSWORD}));
    assert_eq!(bob.recv_type("logged_in")["account"], "bob");
}

#[test]
fn an_irc_registration_claims_its_name_across_servers() {
    let Some(cluster) = Cluster::start_doors("cluster-irc-names", 2, &["--listen-irc"], &[]) else {
        return;
    };
    let mut bob = cluster.join(0, "bob");
    // Bob holds the name on server 0: an IRC NICK bob on server 1 is refused.
    let (_late, verb) = irc_register(cluster.door(1, 0), "bob");
    assert_eq!(verb, "433", "NICK bob while bob is on the other server");
    // The JSON bob is untouched: still bob, still there for the others.
    bob.send(&json!({"type": "nick", "nick": "bob"}));
    let mut ann = cluster.join(1, "ann");
    // The claim said no; server 1's own view may still be on its way.
    Cluster::wait_seen(&mut [&mut ann], "bob");
    ann.send(&json!({"type": "private", "to": "bob", "text": "still you?"}));
    assert_eq!(bob.recv_type("private")["text"], "still you?");

    // Two registrations of one name at once, on two servers: one wins.
    // Both connections stay open until both have their answer: a winner
    // that left at once would free the name for the other, rightly.
    let (a0, a1) = (cluster.door(0, 0), cluster.door(1, 0));
    let first = std::thread::spawn(move || irc_register(a0, "zoe"));
    let second = std::thread::spawn(move || irc_register(a1, "Zoe"));
    let (first, second) = (
        first.join().expect("first registration"),
        second.join().expect("second registration"),
    );
    let verbs = [first.1, second.1];
    assert_eq!(
        verbs.iter().filter(|v| *v == "001").count(),
        1,
        "exactly one registration of zoe wins: {verbs:?}"
    );
    assert!(verbs.contains(&"433".to_owned()), "{verbs:?}");
}

/// `/metrics` of a web door, the body only.
fn metrics(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the web door");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read /metrics");
    out.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned())
}

/// The value of the family `name` (unlabelled) in a `/metrics` body.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn metrics_show_the_backplane() {
    let Some(cluster) = Cluster::start_doors("cluster-metrics", 2, &["--listen-http"], &[]) else {
        return;
    };
    let http = cluster.door(0, 0);
    let before = metrics(http);
    assert_eq!(metric(&before, "chat_cluster_up"), 1.0, "{before}");
    assert!(metric(&before, "chat_cluster_servers") >= 1.0, "{before}");
    let published = metric(&before, "chat_cluster_published_messages_total");
    let bytes = metric(&before, "chat_cluster_published_bytes_total");
    let received = metric(&before, "chat_cluster_received_messages_total");
    let mut ann = cluster.join(0, "ann");
    let mut bob = cluster.join(1, "bob");
    Cluster::wait_seen(&mut [&mut ann], "bob");
    ann.send(&json!({"type": "group", "text": "counted"}));
    assert_eq!(bob.recv_type("group")["text"], "counted");
    let after = metrics(http);
    assert!(
        metric(&after, "chat_cluster_published_messages_total") >= published + 2.0,
        "{after}"
    );
    assert!(
        metric(&after, "chat_cluster_published_bytes_total") > bytes,
        "{after}"
    );
    assert!(
        metric(&after, "chat_cluster_received_messages_total") > received,
        "{after}"
    );
    // Bob's arrival, applied on ann's server (wait_seen), was received.
}

/// Asks NATS's JetStream API `subject` (with an empty body), as a bare
/// NATS client, and returns its JSON answer.
fn jetstream_api(cluster: &Cluster, subject: &str) -> Value {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr = format!("127.0.0.1:{}", cluster.nats.port);
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to NATS");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(
            format!(
                "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.t 1\r\nPUB {subject} _INBOX.t 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("write to NATS");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read from NATS");
        assert!(n > 0, "NATS closed before answering {subject}");
        if let Some(rest) = line.trim_end().strip_prefix("MSG _INBOX.t 1 ") {
            let len: usize = rest.parse().expect("MSG length");
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).expect("read MSG body");
            body.truncate(len);
            return serde_json::from_slice(&body).expect("JSON from the JetStream API");
        }
    }
}

#[test]
fn the_stream_keeps_changes_for_cluster_keep_and_a_server_behind_it_starts() {
    let Some(mut cluster) = Cluster::start("cluster-keep", 1, &["--cluster-keep", "2m"]) else {
        return;
    };
    let info = jetstream_api(&cluster, "$JS.API.STREAM.INFO.chat_log");
    assert_eq!(
        info["config"]["max_age"],
        json!(120_000_000_000u64),
        "max_age is --cluster-keep, in ns: {info}"
    );
    let mut ann = cluster.join(0, "ann");
    let mut cat = cluster.join(0, "cat");
    ann.send(&json!({"type": "group", "text": "before"}));
    // Delivered once stored.
    assert_eq!(cat.recv_type("group")["text"], "before");
    // A change after it, so that the stream goes past the store.
    ann.send(&json!({"type": "nick", "nick": "ann2"}));
    assert_eq!(cat.recv_type("nick")["new"], "ann2");
    // Everything ages out at once (as a purge), after the server's last
    // stored message and its quit: its store is now behind the stream.
    let purged = jetstream_api(&cluster, "$JS.API.STREAM.PURGE.chat_log");
    assert_eq!(purged["success"], json!(true), "{purged}");
    cluster.restart(0);
    let mut bob = cluster.join(0, "bob");
    assert_eq!(
        history(&mut bob, "lobby")
            .iter()
            .map(|m| m.2.as_str())
            .collect::<Vec<_>>(),
        ["before"],
        "its own history is kept"
    );
    let mut dan = cluster.join(0, "dan");
    bob.send(&json!({"type": "group", "text": "after"}));
    let after = dan.recv_type("group");
    assert_eq!(after["text"], "after");
    let seq = after["seq"].as_u64().expect("seq");
    let first = jetstream_api(&cluster, "$JS.API.STREAM.INFO.chat_log")["state"]["first_seq"]
        .as_u64()
        .expect("first_seq");
    assert!(seq >= first, "seq goes on from the stream: {seq} < {first}");
}

/// The next message of type `kind` from `from`, skipping others.
fn recv_from(conn: &mut Conn, kind: &str, from: &str) -> Value {
    loop {
        let msg = conn.recv_type(kind);
        if msg["from"] == from {
            return msg;
        }
    }
}

/// As [`recv_from`], over the WebSocket.
fn ws_recv_from(web: &mut ws::Ws, kind: &str, from: &str) -> Value {
    loop {
        let msg = ws::recv_type(web, kind);
        if msg["from"] == from {
            return msg;
        }
    }
}

#[test]
fn json_irc_and_websocket_users_on_three_servers_are_one_chat() {
    let doors = ["--listen-irc", "--listen-http"];
    let Some(cluster) = Cluster::start_doors("cluster-doors", 3, &doors, &[]) else {
        return;
    };
    // jay over JSON lines on server 0, irene over IRC on 1, wes in a
    // browser's WebSocket on 2.
    let mut jay = cluster.join(0, "jay");
    let (mut irene, _) = Irc::register(cluster.door(1, 0), "irene");
    let mut wes = ws::connect(cluster.door(2, 1), None).expect("WebSocket upgrade");
    ws::recv_type(&mut wes, "welcome");
    ws::send(&mut wes, json!({"type": "nick", "nick": "wes"}));
    ws::recv_type(&mut wes, "nick");
    Cluster::wait_seen(&mut [&mut jay], "irene");
    Cluster::wait_seen(&mut [&mut jay], "wes");

    // Group messages, every door to every other, with one seq each.
    jay.send(&json!({"type": "group", "text": "from json"}));
    irene.until(|l| l.starts_with(":jay!") && l.ends_with("PRIVMSG #lobby :from json"));
    let a = ws_recv_from(&mut wes, "group", "jay");
    assert_eq!(a["text"], "from json");
    irene.send("PRIVMSG #lobby :from irc");
    let b = recv_from(&mut jay, "group", "irene");
    assert_eq!(b["text"], "from irc");
    assert_eq!(ws_recv_from(&mut wes, "group", "irene")["seq"], b["seq"]);
    ws::send(&mut wes, json!({"type": "group", "text": "from web"}));
    let c = recv_from(&mut jay, "group", "wes");
    assert_eq!(c["text"], "from web");
    irene.until(|l| l.starts_with(":wes!") && l.ends_with("PRIVMSG #lobby :from web"));
    let seqs: Vec<u64> = [&a, &b, &c]
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "one increasing seq: {seqs:?}"
    );

    // Private messages between doors and servers (each sender has seen
    // its receiver's messages, so its server knows where they are).
    ws::send(
        &mut wes,
        json!({"type": "private", "to": "irene", "text": "psst irene"}),
    );
    irene.until(|l| l.starts_with(":wes!") && l.ends_with("PRIVMSG irene :psst irene"));
    irene.send("PRIVMSG jay :psst jay");
    assert_eq!(recv_from(&mut jay, "private", "irene")["text"], "psst jay");
    jay.send(&json!({"type": "private", "to": "wes", "text": "psst wes"}));
    assert_eq!(ws_recv_from(&mut wes, "private", "jay")["text"], "psst wes");

    // A topic set over IRC, a rename in the browser: seen at every door.
    irene.send("TOPIC #lobby :one chat, three servers");
    let topic = jay.recv_type("topic");
    assert_eq!(
        (topic["by"].as_str(), topic["text"].as_str()),
        (Some("irene"), Some("one chat, three servers"))
    );
    assert_eq!(
        ws::recv_type(&mut wes, "topic")["text"],
        "one chat, three servers"
    );
    ws::send(&mut wes, json!({"type": "nick", "nick": "wesley"}));
    let renamed = jay.recv_type("nick");
    assert_eq!(
        (renamed["old"].as_str(), renamed["new"].as_str()),
        (Some("wes"), Some("wesley"))
    );
    irene.until(|l| l.starts_with(":wes!") && l.contains("NICK") && l.ends_with("wesley"));

    // History from the browser's server is what everyone saw.
    ws::send(
        &mut wes,
        json!({"type": "history", "room": "lobby", "limit": 10}),
    );
    let history = ws::recv_type(&mut wes, "history");
    let stored: Vec<(u64, &str)> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| Some((m["seq"].as_u64()?, m["text"].as_str()?)))
        .collect();
    let seen: Vec<(u64, &str)> = [&a, &b, &c]
        .iter()
        .filter_map(|m| Some((m["seq"].as_u64()?, m["text"].as_str()?)))
        .collect();
    assert_eq!(stored, seen, "history on server 2");

    // An IRC QUIT is a leave with reason quit everywhere.
    irene.send("QUIT :bye all");
    let left = loop {
        let msg = jay.recv_type("leave");
        if msg["nick"] == "irene" {
            break msg;
        }
    };
    assert_eq!(left["reason"], "quit", "{left}");
    let left = loop {
        let msg = ws::recv_type(&mut wes, "leave");
        if msg["nick"] == "irene" {
            break msg;
        }
    };
    assert_eq!(left["reason"], "quit", "{left}");
}

/// `chat account ARGS... --cluster URL`, `input` on its stdin.
fn account_cli(url: &str, args: &[&str], input: &str) -> std::process::Output {
    common::output_with_input(
        common::chat()
            .arg("account")
            .args(args)
            .args(["--cluster", url]),
        input.as_bytes(),
    )
}

/// The answer to a login: `logged_in` or the error.
fn try_login(conn: &mut Conn, account: &str, password: &str) -> Value {
    conn.send(&json!({"type": "login", "account": account, "password": password}));
    loop {
        let msg = conn.recv();
        if msg["type"] == "logged_in" || msg["type"] == "error" {
            return msg;
        }
    }
}

#[test]
fn chat_account_manages_the_cluster_s_accounts_and_imports_a_database_s() {
    let Some(cluster) = Cluster::start("cluster-account-cli", 2, &[]) else {
        return;
    };
    const PASSWORD: &str = "correct horse battery";
    const NEW: &str = "a new staple for the horse";
    let url = cluster.nats_url();
    // dora is an account of a database from before the cluster (server
    // 0's own, which it does not read while in a cluster): imported, she
    // logs in on server 1.
    let db = cluster.db(0);
    let db = db.to_str().expect("utf-8 path");
    let add = common::output_with_input(
        common::chat().args(["account", "add", "dora", "--db", db]),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(add.status.success(), "{add:?}");
    let mut c = cluster.join(1, "c1");
    assert_eq!(
        try_login(&mut c, "dora", PASSWORD)["code"],
        "login_failed",
        "not imported yet"
    );
    let import = account_cli(&url, &["import", "--db", db], "");
    assert!(import.status.success(), "{import:?}");
    let said = String::from_utf8_lossy(&import.stdout);
    assert!(said.contains("1 accounts copied"), "{said}");
    assert_eq!(try_login(&mut c, "dora", PASSWORD)["account"], "dora");
    // Imported twice: the cluster's account stays.
    let again = account_cli(&url, &["import", "--db", db], "");
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        said.contains("0 accounts copied") && said.contains("dora"),
        "{said}"
    );

    // add, passwd, list and del on the cluster, each seen by the servers.
    let add = account_cli(&url, &["add", "erin"], &format!("{PASSWORD}\n"));
    assert!(add.status.success(), "{add:?}");
    let twice = account_cli(&url, &["add", "Erin"], &format!("{PASSWORD}\n"));
    assert_eq!(twice.status.code(), Some(1), "{twice:?}");
    let mut e = cluster.join(0, "e0");
    assert_eq!(try_login(&mut e, "erin", PASSWORD)["account"], "erin");
    e.send(&json!({"type": "logout"}));
    e.recv_type("logged_out");
    let passwd = account_cli(&url, &["passwd", "erin"], &format!("{NEW}\n"));
    assert!(passwd.status.success(), "{passwd:?}");
    assert_eq!(try_login(&mut e, "erin", PASSWORD)["code"], "login_failed");
    assert_eq!(try_login(&mut e, "erin", NEW)["account"], "erin");
    e.send(&json!({"type": "logout"}));
    e.recv_type("logged_out");
    // Logged out, e still holds the name: it gives it back.
    e.send(&json!({"type": "nick", "nick": "e0"}));
    e.recv_type("nick");
    let list = account_cli(&url, &["list"], "");
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split('\t').next().map(str::to_owned))
        .collect();
    assert_eq!(names, ["dora", "erin"], "{list:?}");
    // A guest is refused the name of an account; once it is deleted, the
    // name is anybody's on every server (as soon as each has seen the
    // deletion on its watch).
    c.send(&json!({"type": "nick", "nick": "erin"}));
    assert_eq!(c.recv_type("error")["code"], "nick_registered");
    assert_eq!(try_login(&mut e, "erin", NEW)["account"], "erin");
    let del = account_cli(&url, &["del", "erin"], "");
    assert!(del.status.success(), "{del:?}");
    // Whoever was logged in to it is logged out (here, on server 0).
    e.recv_type("logged_out");
    assert_eq!(try_login(&mut e, "erin", NEW)["code"], "login_failed");
    e.send(&json!({"type": "nick", "nick": "e0"}));
    e.recv_type("nick");
    let gone = account_cli(&url, &["del", "erin"], "");
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        c.send(&json!({"type": "nick", "nick": "erin"}));
        let answer = loop {
            let msg = c.recv();
            if msg["type"] == "nick" || msg["type"] == "error" {
                break msg;
            }
        };
        if answer["type"] == "nick" {
            break;
        }
        assert_eq!(answer["code"], "nick_registered", "{answer}");
        assert!(
            Instant::now() < deadline,
            "erin still registered on server 1"
        );
    }
    // Without NATS there: one clear line, exit status 1.
    let unreachable = account_cli("nats://127.0.0.1:1", &["list"], "");
    assert_eq!(unreachable.status.code(), Some(1), "{unreachable:?}");
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        err.contains("cannot reach NATS") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn a_server_started_after_the_stream_forgot_an_idle_user_still_knows_them() {
    let Some(mut cluster) = Cluster::start("cluster-announce", 2, &[]) else {
        return;
    };
    let mut ann = cluster.join(0, "ann");
    cluster.kill(1);
    ann.send(&json!({"type": "topic", "room": "lobby", "text": "said while 1 was down"}));
    ann.recv_type("topic");
    // ann's arrival and the topic age out of the stream (as a purge
    // does), and ann stays idle: server 1 learns of her only from
    // server 0, which says who is there when a server starts.
    let purged = jetstream_api(&cluster, "$JS.API.STREAM.PURGE.chat_log");
    assert_eq!(purged["success"], json!(true), "{purged}");
    cluster.restart(1);
    let mut bob = cluster.join(1, "bob");
    Cluster::wait_seen(&mut [&mut bob], "ann");
    bob.send(&json!({"type": "private", "to": "ann", "text": "still there?"}));
    assert_eq!(ann.recv_type("private")["text"], "still there?");
    let deadline = Instant::now() + WAIT;
    loop {
        bob.send(&json!({"type": "join", "room": "lobby"}));
        let joined = bob.recv_type("joined");
        if joined["topic"] == "said while 1 was down" {
            break;
        }
        assert!(Instant::now() < deadline, "no topic on server 1: {joined}");
    }
}
