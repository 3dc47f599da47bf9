//! The IRC door over a real server: raw IRC clients over TCP beside JSON
//! clients, in the same rooms. Every wait is for a line (PING/PONG is the
//! IRC side's barrier, `ping` the JSON side's), never a sleep.

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use common::{Conn, Server, WAIT, chat};
use irc::{Irc, verb};
use serde_json::json;

/// A server with `--listen-irc`, and the IRC address.
fn start(extra: &[&str]) -> (Server, SocketAddr) {
    let (server, mut addrs) = start_with(&["--listen-irc", "127.0.0.1:0"], extra, 1);
    (server, addrs.remove(0))
}

/// A server with `listeners` beside the plaintext one, and the addresses
/// of the `more` listeners it prints after the plaintext one.
fn start_with(listeners: &[&str], extra: &[&str], more: usize) -> (Server, Vec<SocketAddr>) {
    let extra = [&["--welcome", "Be nice.\nSecond line."], extra].concat();
    Server::start_listeners(listeners, &extra, more)
}

fn json_user(server: &Server, nick: &str) -> Conn {
    server.join(nick)
}

#[test]
fn registration_gives_the_welcome_burst_and_the_default_room() {
    let (_server, irc) = start(&["--max-rooms", "7"]);
    let mut c = Irc::connect(irc);
    c.send("CAP LS 302");
    assert!(c.recv().starts_with(":chat CAP * LS :"));
    c.send("JOIN #early");
    assert_eq!(verb(&c.recv()), "451");
    c.send("NICK ann");
    c.send("USER ann 0 * :Ann");
    // Still negotiating: nothing until CAP END.
    assert!(c.sync().is_empty());
    c.send("CAP END");
    let lines = c.until(|l| verb(l) == "366");
    let verbs: Vec<&str> = lines.iter().map(|l| verb(l)).collect();
    for v in [
        "001", "002", "003", "004", "005", "251", "252", "253", "254", "255", "375", "372", "376",
        "JOIN", "353", "366",
    ] {
        assert!(verbs.contains(&v), "no {v} in {lines:#?}");
    }
    assert_eq!(lines[0], ":chat 001 ann :Welcome to the chat IRC door, ann");
    let isupport = lines.iter().find(|l| verb(l) == "005").unwrap();
    for token in [
        "CHANTYPES=#",
        "NICKLEN=32",
        "CHANNELLEN=33",
        "TOPICLEN=512",
        "CHANLIMIT=#:7",
        "CASEMAPPING=ascii",
        "UTF8ONLY",
        "NETWORK=chat",
    ] {
        assert!(
            isupport.split(' ').any(|t| t == token),
            "no {token} in {isupport}"
        );
    }
    assert!(
        lines.iter().any(|l| l.ends_with(" 372 ann :- Be nice.")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(" 372 ann :- Second line."))
    );
    assert!(
        lines.contains(&":ann!ann@chat JOIN #lobby".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&":chat 353 ann = #lobby :ann".to_owned()),
        "{lines:#?}"
    );
}

#[test]
fn irc_and_json_users_talk_in_the_same_room_both_ways() {
    let (server, irc) = start(&[]);
    let mut ann = json_user(&server, "ann");
    ann.send(&json!({"type": "join", "room": "rust"}));
    ann.recv_type("joined");
    let (mut bob, _) = Irc::register(irc, "bob");
    bob.send("JOIN #Rust");
    let lines = bob.until(|l| verb(l) == "366");
    assert!(
        lines.contains(&":bob!bob@chat JOIN #rust".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&":chat 353 bob = #rust :ann bob".to_owned()),
        "{lines:#?}"
    );
    assert_eq!(ann.recv_type("join")["room"], "lobby");
    let join = ann.recv_type("join");
    assert_eq!(
        (join["nick"].as_str(), join["room"].as_str()),
        (Some("bob"), Some("rust"))
    );

    // Group, both ways; IRC formatting codes reach JSON users unchanged.
    bob.send("PRIVMSG #rust :hello \u{2}bold\u{2} ann");
    let msg = ann.recv_type("group");
    assert_eq!(msg["from"], "bob");
    assert_eq!(msg["room"], "rust");
    assert_eq!(msg["text"], "hello \u{2}bold\u{2} ann");
    ann.send(&json!({"type": "group", "room": "rust", "text": "hi bob"}));
    assert_eq!(bob.expect("PRIVMSG"), ":ann!ann@chat PRIVMSG #rust :hi bob");

    // Private, both ways.
    bob.send("PRIVMSG ann :psst");
    let msg = ann.recv_type("private");
    assert_eq!(
        (msg["from"].as_str(), msg["text"].as_str()),
        (Some("bob"), Some("psst"))
    );
    ann.send(&json!({"type": "private", "to": "bob", "text": "yes?"}));
    assert_eq!(bob.expect("PRIVMSG"), ":ann!ann@chat PRIVMSG bob :yes?");

    // /me, both ways.
    bob.send("PRIVMSG #rust :\u{1}ACTION waves\u{1}");
    let msg = ann.recv_type("group");
    assert_eq!(
        (msg["text"].as_str(), msg["action"].as_bool()),
        (Some("waves"), Some(true))
    );
    ann.send(&json!({"type": "group", "room": "rust", "text": "bows", "action": true}));
    assert_eq!(
        bob.expect("PRIVMSG"),
        ":ann!ann@chat PRIVMSG #rust :\u{1}ACTION bows\u{1}"
    );

    // NOTICE reaches JSON users as a message.
    bob.send("NOTICE ann :note");
    assert_eq!(ann.recv_type("private")["text"], "note");
}

#[test]
fn comings_goings_renames_and_topics_are_seen_across_doors() {
    let (server, irc) = start(&[]);
    let mut ann = json_user(&server, "ann");
    let (mut bob, _) = Irc::register(irc, "bob");
    assert_eq!(ann.recv_type("join")["nick"], "bob");

    // From JSON to IRC.
    ann.send(&json!({"type": "nick", "nick": "anna"}));
    assert_eq!(bob.expect("NICK"), ":ann!ann@chat NICK anna");
    ann.send(&json!({"type": "topic", "room": "lobby", "text": "welcome all"}));
    assert_eq!(
        bob.expect("TOPIC"),
        ":anna!anna@chat TOPIC #lobby :welcome all"
    );
    bob.send("TOPIC #lobby");
    assert_eq!(bob.expect("332"), ":chat 332 bob #lobby :welcome all");
    ann.send(&json!({"type": "join", "room": "rust"}));
    ann.recv_type("joined");
    bob.send("JOIN #rust");
    bob.expect("366");
    ann.send(&json!({"type": "part", "room": "rust", "text": "later"}));
    assert_eq!(bob.expect("PART"), ":anna!anna@chat PART #rust :later");

    // From IRC to JSON.
    bob.send("NICK bobby");
    assert_eq!(bob.expect("NICK"), ":bob!bob@chat NICK bobby");
    let nick = ann.recv_type("nick");
    assert_eq!(
        (nick["old"].as_str(), nick["new"].as_str()),
        (Some("bob"), Some("bobby"))
    );
    bob.send("TOPIC #lobby :new topic");
    assert_eq!(
        bob.expect("TOPIC"),
        ":bobby!bobby@chat TOPIC #lobby :new topic"
    );
    assert_eq!(ann.recv_type("topic")["text"], "new topic");
    // The parter sees their own reason, as everyone else does.
    bob.send("PART #lobby :bye");
    assert_eq!(bob.expect("PART"), ":bobby!bobby@chat PART #lobby :bye");
    let leave = ann.recv_type("leave");
    assert_eq!(
        (leave["room"].as_str(), leave["text"].as_str()),
        (Some("lobby"), Some("bye"))
    );
    bob.send("JOIN #lobby");
    bob.expect("366");
    assert_eq!(ann.recv_type("join")["nick"], "bobby");
    bob.send("QUIT :gone fishing");
    bob.expect("ERROR");
    assert!(bob.closed());
    let leave = ann.recv_type("leave");
    assert_eq!(
        (leave["nick"].as_str(), leave["text"].as_str()),
        (Some("bobby"), Some("gone fishing"))
    );

    // A JSON user's quit is an IRC QUIT.
    let (mut cy, _) = Irc::register(irc, "cy");
    ann.send(&json!({"type": "quit", "text": "night"}));
    assert_eq!(cy.expect("QUIT"), ":anna!anna@chat QUIT :Quit: night");
}

#[test]
fn mistakes_get_numerics_and_the_connection_lives() {
    let (server, irc) = start(&[]);
    let _ann = json_user(&server, "ann");
    let mut c = Irc::connect(irc);
    c.send("NICK 9lives");
    let bad = c.recv();
    assert!(bad.starts_with(":chat 432 * 9lives :"), "{bad}");
    assert!(bad.contains("letter"), "the rules are given: {bad}");
    c.send("NICK ANN");
    assert!(c.recv().starts_with(":chat 433 * ANN :"));
    c.send("NICK bob");
    // An empty realname is a missing one: no welcome until USER is whole.
    c.send("USER bob 0 * :");
    assert_eq!(c.recv(), ":chat 461 * USER :Not enough parameters");
    c.send("USER bob 0 * :Bob");
    assert_eq!(verb(&c.recv()), "001");
    c.expect("366");
    c.send("FROB x");
    assert_eq!(c.recv(), ":chat 421 bob FROB :Unknown command");
    c.send("JOIN");
    assert_eq!(c.recv(), ":chat 461 bob JOIN :Not enough parameters");
    c.send("PART #nowhere");
    assert_eq!(c.recv(), ":chat 403 bob #nowhere :No such channel");
    let mut dan = json_user(&server, "dan");
    dan.send(&json!({"type": "join", "room": "rust"}));
    dan.recv_type("joined");
    c.sync();
    c.send("PART #rust");
    assert_eq!(c.recv(), ":chat 442 bob #rust :You're not on that channel");
    c.send("PRIVMSG nobody :hi");
    assert_eq!(c.recv(), ":chat 401 bob nobody :No such nick");
    c.send("NICK dan");
    assert!(c.recv().starts_with(":chat 433 bob dan :"));
    // Garbage: not UTF-8, a source alone, a blank line.
    c.send_raw(b"PRIVMSG #lobby :\xff\xfe\r\n:only.a.source\r\n\r\n");
    assert_eq!(
        c.recv(),
        ":chat FAIL PRIVMSG INVALID_UTF8 :This server speaks UTF-8 only; the line was not UTF-8"
    );
    // Too long: 417, and the connection lives on.
    c.send(&format!("PRIVMSG #lobby :{}", "x".repeat(600)));
    assert_eq!(c.recv(), ":chat 417 bob :Input line was too long");
    c.send(&format!("PRIVMSG #lobby :{}", "x".repeat(9000)));
    assert_eq!(c.recv(), ":chat 417 bob :Input line was too long");
    // A client's tags: up to 4094 bytes, then 417 (IRCv3 message-tags).
    c.send(&format!("@+a={} PRIVMSG #lobby :tagged", "t".repeat(4091)));
    c.send(&format!("@+a={} PRIVMSG #lobby :tagged", "t".repeat(4092)));
    assert_eq!(c.recv(), ":chat 417 bob :Input line was too long");
    assert!(c.sync().is_empty());
}

#[test]
fn a_long_json_message_is_split_into_irc_lines() {
    let (server, irc) = start(&[]);
    let mut ann = json_user(&server, "ann");
    let (mut bob, _) = Irc::register(irc, "bob");
    ann.recv_type("join");
    let text: String = "é€😀a".repeat(300);
    ann.send(&json!({"type": "group", "room": "lobby", "text": text}));
    ann.sync();
    let lines = bob.sync();
    assert!(lines.len() >= 6, "{} lines", lines.len());
    let mut joined = String::new();
    for line in &lines {
        let body = line
            .strip_prefix(":ann!ann@chat PRIVMSG #lobby :")
            .unwrap_or_else(|| panic!("{line}"));
        joined.push_str(body);
    }
    assert_eq!(joined, text);
}

#[test]
fn questions_are_answered_from_the_rooms() {
    let (server, irc) = start(&[]);
    let mut ann = json_user(&server, "ann");
    ann.send(&json!({"type": "topic", "room": "lobby", "text": "hello"}));
    ann.recv_type("topic");
    let (mut bob, _) = Irc::register(irc, "bob");
    bob.send("NAMES #lobby");
    assert_eq!(bob.recv(), ":chat 353 bob = #lobby :ann bob");
    assert_eq!(bob.recv(), ":chat 366 bob #lobby :End of /NAMES list");
    bob.send("WHO #lobby");
    let who = bob.until(|l| verb(l) == "315");
    assert_eq!(who[0], ":chat 352 bob #lobby ann chat chat ann H :0 ann");
    bob.send("WHOIS ann");
    let whois = bob.until(|l| verb(l) == "318");
    assert_eq!(whois[0], ":chat 311 bob ann ann chat * :ann");
    assert!(
        whois.contains(&":chat 319 bob ann :#lobby".to_owned()),
        "{whois:#?}"
    );
    bob.send("LIST");
    let list = bob.until(|l| verb(l) == "323");
    assert!(
        list.contains(&":chat 322 bob #lobby 2 :hello".to_owned()),
        "{list:#?}"
    );
    bob.send("MODE #lobby");
    assert_eq!(bob.recv(), ":chat 324 bob #lobby :+n");
    bob.send("MODE #lobby +o ann");
    assert_eq!(verb(&bob.recv()), "482");
    bob.send("MODE bob");
    assert_eq!(bob.recv(), ":chat 221 bob :+");
    bob.send("ISON ann nobody bob");
    assert_eq!(bob.recv(), ":chat 303 bob :ann bob");
    bob.send("USERHOST ann");
    assert_eq!(bob.recv(), ":chat 302 bob :ann=+ann@chat");
    bob.send("AWAY :lunch");
    assert_eq!(verb(&bob.recv()), "306");
    bob.send("AWAY");
    assert_eq!(verb(&bob.recv()), "305");
    bob.send("JOIN 0");
    assert_eq!(bob.expect("PART"), ":bob!bob@chat PART #lobby");
    assert_eq!(ann.recv_type("leave")["nick"], "bob");
}

#[test]
fn irc_over_tls_reaches_the_same_rooms() {
    let dir = common::TempDir::new("irc-tls");
    let cert = dir.path.join("cert.pem");
    let key = dir.path.join("key.pem");
    let out = common::output_within(
        chat()
            .args(["cert", "--host", "localhost", "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key),
    );
    assert!(out.status.success(), "chat cert: {out:?}");
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (server, addrs) = start_with(
        &[
            "--listen-tls",
            "127.0.0.1:0",
            "--listen-irc-tls",
            "127.0.0.1:0",
            "--tls-cert",
            cert_s,
            "--tls-key",
            key_s,
        ],
        &[],
        2,
    );
    let mut ann = json_user(&server, "ann");
    let client = chat::tls::Client::new(&chat::addr::Host::Name("localhost".into()), Some(&cert))
        .expect("TLS set-up");
    let mut tcp = TcpStream::connect(addrs[1]).expect("connect");
    let session = client.handshake(&mut tcp, WAIT).expect("handshake");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut tls = rustls::StreamOwned::new(session, tcp);
    tls.write_all(b"NICK bob\r\nUSER bob 0 * :Bob\r\nPRIVMSG #lobby :over tls\r\n")
        .expect("write");
    tls.flush().expect("flush");
    let msg = ann.recv_type("group");
    assert_eq!(
        (msg["from"].as_str(), msg["text"].as_str()),
        (Some("bob"), Some("over tls"))
    );
    ann.send(&json!({"type": "group", "text": "back"}));
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).expect("read") > 0, "closed");
        if line.contains(" PRIVMSG ") {
            break;
        }
    }
    assert_eq!(line, ":ann!ann@chat PRIVMSG #lobby :back\r\n");
}

#[test]
fn with_a_history_store_messages_wait_for_it_and_still_flow_both_ways() {
    let dir = common::TempDir::new("irc-db");
    let db = dir.path.join("chat.db");
    let (server, irc) = start(&["--db", db.to_str().unwrap()]);
    let mut ann = json_user(&server, "ann");
    let (mut bob, _) = Irc::register(irc, "bob");
    bob.send("JOIN #lobby");
    assert!(
        bob.sync().is_empty(),
        "a second JOIN of a channel is ignored"
    );
    bob.send("PRIVMSG #lobby :stored");
    assert_eq!(ann.recv_type("group")["text"], "stored");
    ann.send(&json!({"type": "group", "text": "also stored"}));
    assert_eq!(
        bob.expect("PRIVMSG"),
        ":ann!ann@chat PRIVMSG #lobby :also stored"
    );
    ann.send(&json!({"type": "history", "room": "lobby"}));
    let history = ann.recv_type("history");
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["stored", "also stored"]);
}

#[test]
fn a_full_server_tells_an_irc_client_in_irc() {
    let (server, irc) = start(&["--max-clients", "1"]);
    let _ann = json_user(&server, "ann");
    let mut c = Irc::connect(irc);
    assert_eq!(
        c.recv(),
        "ERROR :Closing link: the server is full; try again later"
    );
    assert!(c.closed());
}

/// An account's name belongs to its owner on every door: an IRC client,
/// which cannot log in yet, may not take it, as NICK at registration or
/// as a rename.
#[test]
fn an_account_name_is_refused_to_an_irc_client() {
    let (server, irc) = start(&[]);
    let mut ann = json_user(&server, "ann");
    ann.send(&json!({"type": "register", "password": "correct horse battery"}));
    assert_eq!(ann.recv_type("registered")["account"], "ann");
    ann.send(&json!({"type": "quit"}));
    ann.recv_type("bye");
    let mut c = Irc::connect(irc);
    c.send("NICK Ann");
    let refused = c.recv();
    assert!(refused.starts_with(":chat 433 * Ann :"), "{refused}");
    assert!(refused.contains("registered account"), "{refused}");
    c.send("NICK bob");
    c.send("USER bob 0 * :Bob");
    c.expect("366");
    c.send("NICK ann");
    let refused = c.recv();
    assert!(
        refused.contains(" ann ") && refused.contains("log in"),
        "{refused}"
    );
    assert!(c.sync().is_empty());
}

/// Connects, negotiates `caps` with `CAP LS 302` / `REQ` / `END`, and
/// registers as `nick`.
fn register_with_caps(addr: SocketAddr, nick: &str, caps: &str) -> Irc {
    let mut c = Irc::connect(addr);
    c.send("CAP LS 302");
    c.expect("CAP");
    c.send(&format!("CAP REQ :{caps}"));
    let ack = c.expect("CAP");
    assert_eq!(ack, format!(":chat CAP * ACK :{caps}"));
    c.send(&format!("NICK {nick}"));
    c.send(&format!("USER {nick} 0 * :Real {nick}"));
    c.send("CAP END");
    c.expect("366");
    c
}

#[test]
fn capabilities_are_negotiated_all_or_nothing_and_hold_registration() {
    let (_server, irc) = start(&[]);
    let mut c = Irc::connect(irc);
    c.send("CAP LS 302");
    let ls = c.expect("CAP");
    let listed: Vec<&str> = ls.rsplit(':').next().unwrap_or("").split(' ').collect();
    for cap in [
        "cap-notify",
        "echo-message",
        "message-tags",
        "multi-prefix",
        "server-time",
    ] {
        assert!(listed.contains(&cap), "{cap} missing from {ls}");
    }
    c.send("CAP REQ :server-time no-such-cap");
    assert_eq!(c.expect("CAP"), ":chat CAP * NAK :server-time no-such-cap");
    c.send("CAP REQ :server-time multi-prefix");
    assert_eq!(c.expect("CAP"), ":chat CAP * ACK :server-time multi-prefix");
    c.send("CAP REQ :-multi-prefix");
    assert_eq!(c.expect("CAP"), ":chat CAP * ACK :-multi-prefix");
    c.send("CAP LIST");
    // 302 implies cap-notify; the NAKed request changed nothing.
    assert_eq!(c.expect("CAP"), ":chat CAP * LIST :cap-notify server-time");
    c.send("NICK bob");
    c.send("USER bob 0 * :Bob");
    let before_end = c.sync();
    assert!(
        !before_end.iter().any(|l| verb(l) == "001"),
        "registered before CAP END: {before_end:#?}"
    );
    c.send("CAP END");
    assert_eq!(verb(&c.recv()), "001");
    c.expect("366");
    c.send("CAP LIST");
    assert_eq!(
        c.expect("CAP"),
        ":chat CAP bob LIST :cap-notify server-time"
    );
}

#[test]
fn tags_carry_the_time_and_the_seq_only_to_clients_that_asked() {
    let (server, irc) = start(&[]);
    let mut ann = json_user(&server, "ann");
    let mut dan = json_user(&server, "dan");
    ann.sync();
    let (mut plain, _) = Irc::register(irc, "plain");
    let mut timed = register_with_caps(irc, "timed", "server-time");
    let mut tagged = register_with_caps(irc, "tagged", "server-time message-tags");
    for c in [&mut plain, &mut timed, &mut tagged] {
        c.sync();
    }
    ann.send(&json!({"type": "group", "text": "hello all"}));
    let seq = loop {
        let msg = dan.recv();
        if msg["type"] == "group" {
            break msg["seq"].as_u64().expect("seq");
        }
    };
    let time_tag = |line: &str| -> String {
        let tags = line.strip_prefix("@time=").expect("a time tag first");
        let time = tags.split([';', ' ']).next().unwrap_or("").to_owned();
        // 2026-12-02T10:00:00.000Z
        assert_eq!(time.len(), 24, "{line}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
        time
    };
    assert_eq!(
        plain.expect("PRIVMSG"),
        ":ann!ann@chat PRIVMSG #lobby :hello all"
    );
    let line = timed.expect("PRIVMSG");
    let time = time_tag(&line);
    assert_eq!(
        line,
        format!("@time={time} :ann!ann@chat PRIVMSG #lobby :hello all")
    );
    let line = tagged.expect("PRIVMSG");
    let time = time_tag(&line);
    assert_eq!(
        line,
        format!("@time={time};msgid={seq} :ann!ann@chat PRIVMSG #lobby :hello all")
    );
    // Comings and goings carry the time too.
    ann.send(&json!({"type": "nick", "nick": "anna"}));
    let line = timed.expect("NICK");
    time_tag(&line);
    assert!(line.ends_with(":ann!ann@chat NICK anna"), "{line}");
}

#[test]
fn echo_message_returns_the_senders_own_messages_with_their_seq() {
    let dir = common::TempDir::new("irc-echo");
    let db = dir.path.join("chat.db");
    let (server, irc) = start(&["--db", db.to_str().unwrap()]);
    let mut ann = json_user(&server, "ann");
    ann.sync();
    let mut bob = register_with_caps(irc, "bob", "echo-message message-tags");
    ann.recv_type("join");
    bob.send("PRIVMSG #lobby :mine too");
    let seen = ann.recv_type("group");
    let echo = bob.expect("PRIVMSG");
    assert_eq!(
        echo,
        format!(
            "@msgid={} :bob!bob@chat PRIVMSG #lobby :mine too",
            seen["seq"]
        )
    );
    bob.send("PRIVMSG ann :just you");
    assert_eq!(ann.recv_type("private")["text"], "just you");
    assert_eq!(bob.expect("PRIVMSG"), ":bob!bob@chat PRIVMSG ann :just you");
    // Without the capability, nothing comes back.
    let (mut carol, _) = Irc::register(irc, "carol");
    carol.send("PRIVMSG #lobby :not echoed");
    let lines = carol.sync();
    assert!(
        !lines.iter().any(|l| l.contains("not echoed")),
        "{lines:#?}"
    );
}

/// A server where `ann` is an account with password "correct horse
/// battery", and ann is gone.
fn server_with_account_ann() -> (Server, SocketAddr) {
    let (server, irc) = start(&[]);
    let mut ann = json_user(&server, "ann");
    ann.send(&json!({"type": "register", "password": "correct horse battery"}));
    assert_eq!(ann.recv_type("registered")["account"], "ann");
    ann.send(&json!({"type": "quit"}));
    ann.recv_type("bye");
    (server, irc)
}

/// Negotiates `sasl` as `nick` and sends the PLAIN payload; returns the
/// SASL numerics' lines up to 903 or 904.
fn sasl_plain(c: &mut Irc, nick: &str, payload: &str) -> Vec<String> {
    c.send("CAP LS 302");
    let ls = c.expect("CAP");
    assert!(ls.contains(" sasl=PLAIN"), "{ls}");
    c.send(&format!("NICK {nick}"));
    c.send(&format!("USER {nick} 0 * :Real {nick}"));
    c.send("CAP REQ :sasl");
    assert_eq!(c.expect("CAP"), ":chat CAP * ACK :sasl");
    c.send("AUTHENTICATE PLAIN");
    assert_eq!(c.recv(), "AUTHENTICATE +");
    c.send(&format!("AUTHENTICATE {payload}"));
    c.until(|l| matches!(verb(l), "903" | "904"))
}

#[test]
fn sasl_plain_logs_in_to_an_account_and_takes_its_name() {
    let (server, irc) = server_with_account_ann();
    let mut watch = register_with_caps(irc, "watch", "account-tag");
    let mut c = Irc::connect(irc);
    let lines = sasl_plain(&mut c, "ann", "AGFubgBjb3JyZWN0IGhvcnNlIGJhdHRlcnk=");
    let verbs: Vec<&str> = lines.iter().map(|l| verb(l)).collect();
    assert_eq!(verbs, ["900", "903"], "{lines:#?}");
    assert!(
        lines[0].contains(" ann :You are now logged in as ann"),
        "{lines:#?}"
    );
    c.send("CAP END");
    assert!(c.recv().starts_with(":chat 001 ann "));
    c.expect("366");
    c.send("AUTHENTICATE PLAIN");
    assert_eq!(verb(&c.recv()), "907");
    // account-tag: messages from a logged-in user say whose account.
    c.send("PRIVMSG #lobby :signed");
    assert_eq!(
        watch.expect("PRIVMSG"),
        "@account=ann :ann!ann@chat PRIVMSG #lobby :signed"
    );
    let (mut guest, _) = Irc::register(irc, "guest");
    guest.send("PRIVMSG #lobby :unsigned");
    assert_eq!(
        watch.expect("PRIVMSG"),
        ":guest!guest@chat PRIVMSG #lobby :unsigned"
    );
    // The JSON side sees ann, logged in, in the lobby.
    let mut dan = json_user(&server, "dan");
    dan.send(&json!({"type": "who"}));
    let who = dan.recv_type("who");
    assert!(who.to_string().contains("\"ann\""), "{who}");
}

#[test]
fn a_wrong_sasl_password_is_904_and_the_account_name_stays_refused() {
    let (_server, irc) = server_with_account_ann();
    let mut c = Irc::connect(irc);
    let lines = sasl_plain(&mut c, "ann", "AGFubgB3cm9uZyBob3JzZSBiYXR0ZXJ5");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(":chat 904 * :SASL authentication failed"),
        "{lines:#?}"
    );
    // Garbage and unknown mechanisms are refused too, and the exchange
    // can be aborted.
    c.send("AUTHENTICATE EXTERNAL");
    assert_eq!(verb(&c.recv()), "908");
    assert_eq!(verb(&c.recv()), "904");
    c.send("AUTHENTICATE PLAIN");
    assert_eq!(c.recv(), "AUTHENTICATE +");
    c.send("AUTHENTICATE *");
    assert_eq!(verb(&c.recv()), "906");
    // Endless 400-byte chunks fail the exchange with 904 (905 is for one
    // chunk over 400 bytes).
    c.send("AUTHENTICATE PLAIN");
    assert_eq!(c.recv(), "AUTHENTICATE +");
    let chunk = "A".repeat(400);
    for _ in 0..5 {
        c.send(&format!("AUTHENTICATE {chunk}"));
    }
    let failed = c.recv();
    assert!(
        failed.starts_with(":chat 904 * :SASL authentication failed"),
        "{failed}"
    );
    c.send("CAP END");
    let refused = c.recv();
    assert!(refused.starts_with(":chat 433 * ann :"), "{refused}");
    c.send("NICK bob");
    assert!(c.recv().starts_with(":chat 001 bob "));
}

#[test]
fn chathistory_pages_the_stored_messages_in_a_batch() {
    let dir = common::TempDir::new("irc-history");
    let db = dir.path.join("chat.db");
    let (server, irc) = start(&["--db", db.to_str().unwrap()]);
    let mut ann = json_user(&server, "ann");
    let mut seqs = Vec::new();
    for text in ["one", "two", "three"] {
        ann.send(&json!({"type": "group", "text": text}));
        ann.send(&json!({"type": "history", "room": "lobby", "limit": 1}));
        let page = ann.recv_type("history");
        seqs.push(page["messages"][0]["seq"].as_u64().expect("seq"));
    }
    let mut bob = register_with_caps(
        irc,
        "bob",
        "batch draft/chathistory server-time message-tags",
    );
    let isupport = {
        let mut c = Irc::connect(irc);
        c.send("NICK probe");
        c.send("USER probe 0 * :Probe");
        c.expect("005")
    };
    assert!(isupport.contains(" CHATHISTORY=500 "), "{isupport}");

    // The probe's comings and goings may come first.
    bob.send("CHATHISTORY LATEST #lobby * 2");
    let mut lines = bob.until(|l| l.starts_with(":chat BATCH -"));
    let start = lines
        .iter()
        .position(|l| l.starts_with(":chat BATCH +"))
        .unwrap_or(0);
    lines.drain(..start);
    let open = &lines[0];
    assert!(
        open.starts_with(":chat BATCH +") && open.ends_with(" chathistory #lobby"),
        "{lines:#?}"
    );
    let id = open.split(' ').nth(2).unwrap_or("").trim_start_matches('+');
    let texts: Vec<&str> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| {
            assert!(l.starts_with(&format!("@batch={id};time=")), "{l}");
            l.rsplit(" :").next().unwrap_or("")
        })
        .collect();
    assert_eq!(texts, ["two", "three"]);
    assert!(
        lines[1].contains(&format!(";msgid={} ", seqs[1])),
        "{lines:#?}"
    );
    assert_eq!(lines.last().unwrap(), &format!(":chat BATCH -{id}"));

    bob.send(&format!("CHATHISTORY BEFORE #lobby msgid={} 10", seqs[1]));
    let lines = bob.until(|l| l.starts_with(":chat BATCH -"));
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[1].ends_with(":ann!ann@chat PRIVMSG #lobby :one"),
        "{lines:#?}"
    );

    bob.send(&format!("CHATHISTORY AFTER #lobby msgid={} 10", seqs[2]));
    let lines = bob.until(|l| l.starts_with(":chat BATCH -"));
    assert_eq!(lines.len(), 2, "an empty batch: {lines:#?}");

    bob.send("CHATHISTORY BEFORE #lobby timestamp=2026-01-01T00:00:00.000Z 10");
    assert!(
        bob.recv()
            .starts_with(":chat FAIL CHATHISTORY INVALID_PARAMS ")
    );
    // Without the capabilities, no batch.
    let (mut carol, _) = Irc::register(irc, "carol");
    carol.send("CHATHISTORY LATEST #lobby * 10");
    assert!(
        carol
            .recv()
            .starts_with(":chat FAIL CHATHISTORY INVALID_PARAMS ")
    );
}

#[test]
fn a_second_session_of_an_account_keeps_the_nick_it_gave() {
    let (server, irc) = server_with_account_ann();
    let mut ann = json_user(&server, "annjson");
    ann.send(&json!({"type": "login", "account": "ann", "password": "correct horse battery"}));
    ann.recv_type("logged_in");
    let mut c = Irc::connect(irc);
    let lines = sasl_plain(&mut c, "ann", "AGFubgBjb3JyZWN0IGhvcnNlIGJhdHRlcnk=");
    assert_eq!(verb(&lines[lines.len() - 1]), "903", "{lines:#?}");
    c.send("CAP END");
    // ann is taken by the JSON session: 433, and another nick will do.
    assert_eq!(verb(&c.recv()), "433");
    c.send("NICK ann_irc");
    assert!(c.recv().starts_with(":chat 001 ann_irc "));
}
