//! The door's timers and registration, through the hub, without
//! sockets.

use super::door::*;
use crate::server::core::{self, Peer, Presence};
use crate::server::deliver::Door as Kind;
use crate::server::deliver::Outlet;
use crate::server::hub::Hub;
use crate::server::table::Key;

const NOW: u64 = 1_764_165_600_000;

fn hub() -> Hub<Outlet> {
    let config = core::Config {
        welcome: "hi".into(),
        default_room: "lobby".into(),
        max_rooms: 3,
    };
    Hub::new(config, 1 << 20)
}

fn peer() -> Peer {
    Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)))
}

fn read(hub: &mut Hub<Outlet>, key: Key) -> Vec<String> {
    let mut bytes = Vec::new();
    hub.core
        .conn_mut(key)
        .unwrap()
        .out
        .write_to(&mut bytes)
        .unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .split_terminator("\r\n")
        .map(str::to_owned)
        .collect()
}

fn registered(hub: &mut Hub<Outlet>, nick: &str) -> Key {
    let key = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    hub.line(key, format!("NICK {nick}\r").as_bytes(), NOW);
    hub.line(key, b"USER u 0 * :U\r", NOW);
    assert!(read(hub, key).iter().any(|l| l.contains(" 366 ")));
    key
}

#[test]
fn an_unregistered_connection_is_closed_after_the_deadline() {
    let mut hub = hub();
    let key = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    assert_eq!(
        hub.irc_tick(key, NOW + 1000),
        Tick::Again(REGISTER_WITHIN_MS - 1000)
    );
    assert_eq!(hub.irc_tick(key, NOW + REGISTER_WITHIN_MS), Tick::Close);
    assert_eq!(
        read(&mut hub, key),
        ["ERROR :Closing link: registration timed out"]
    );
    // Nobody ever saw it: it was never a user.
    assert_eq!(hub.core.here(), 0);
}

#[test]
fn a_silent_client_is_pinged_then_closed() {
    let mut hub = hub();
    let key = registered(&mut hub, "ann");
    assert_eq!(
        hub.irc_tick(key, NOW + 1000),
        Tick::Again(PING_AFTER_MS - 1000)
    );
    assert_eq!(
        hub.irc_tick(key, NOW + PING_AFTER_MS),
        Tick::Again(PING_TIMEOUT_MS)
    );
    assert_eq!(read(&mut hub, key), ["PING :chat"]);
    // Any line answers it.
    hub.line(key, b"PONG :chat\r", NOW + PING_AFTER_MS + 10);
    assert_eq!(
        hub.irc_tick(key, NOW + PING_AFTER_MS + 20),
        Tick::Again(PING_AFTER_MS - 10)
    );
    let later = NOW + 3 * PING_AFTER_MS;
    assert_eq!(hub.irc_tick(key, later), Tick::Again(PING_TIMEOUT_MS));
    assert_eq!(read(&mut hub, key), ["PING :chat"]);
    assert_eq!(hub.irc_tick(key, later + PING_TIMEOUT_MS), Tick::Close);
    assert_eq!(read(&mut hub, key), ["ERROR :Closing link: ping timeout"]);
}

#[test]
fn a_nick_taken_between_nick_and_user_is_refused_at_user() {
    let mut hub = hub();
    let key = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    hub.line(key, b"NICK ann\r", NOW);
    let _other = registered(&mut hub, "Ann");
    hub.line(key, b"USER u 0 * :U\r", NOW);
    let lines = read(&mut hub, key);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(":chat 433 * ann :"), "{lines:?}");
    hub.line(key, b"NICK bob\r", NOW);
    assert!(
        read(&mut hub, key)
            .iter()
            .any(|l| l == ":bob!bob@chat JOIN #lobby")
    );
}

#[test]
fn a_connection_still_registering_is_nobody_to_the_others() {
    let mut hub = hub();
    let json = hub.connect(peer(), NOW, Outlet::new(Kind::JsonLines));
    let waiting = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    hub.line(waiting, b"NICK ann\r", NOW);
    let _ = read(&mut hub, waiting);
    let mut bytes = Vec::new();
    hub.core
        .conn_mut(json)
        .unwrap()
        .out
        .write_to(&mut bytes)
        .unwrap();
    hub.line(json, br#"{"type":"group","text":"hi"}"#, NOW);
    hub.line(json, br#"{"type":"who"}"#, NOW);
    assert!(read(&mut hub, waiting).is_empty());
    let mut bytes = Vec::new();
    hub.core
        .conn_mut(json)
        .unwrap()
        .out
        .write_to(&mut bytes)
        .unwrap();
    let who = String::from_utf8(bytes).unwrap();
    assert!(who.contains(r#""type":"who""#), "{who}");
    assert!(!who.contains("ann"), "{who}");
    // Its nick is not taken until it registers.
    hub.line(json, br#"{"type":"nick","nick":"ann"}"#, NOW);
    hub.line(waiting, b"USER u 0 * :U\r", NOW);
    let lines = read(&mut hub, waiting);
    assert!(lines[0].starts_with(":chat 433 * ann :"), "{lines:?}");
}

/// Random bytes, IRC-looking words among them, before and after
/// registration: answers or silence, never a panic, and the
/// connection still answers PING afterwards.
#[test]
fn garbage_never_breaks_the_door() {
    const WORDS: &[&[u8]] = &[
        b"NICK",
        b"USER",
        b"JOIN",
        b"PART",
        b"PRIVMSG",
        b"NOTICE",
        b"TOPIC",
        b"MODE",
        b"WHO",
        b"WHOIS",
        b"NAMES",
        b"LIST",
        b"CAP",
        b"AWAY",
        b"ISON",
        b"USERHOST",
        b"PING",
        b"LUSERS",
        b"TIME",
        b"INFO",
        b"OPER",
        b"WHOWAS",
        b"KICK",
        b"#",
        b"#lobby",
        b":",
        b"@",
        b"=",
        b";",
        b",",
        b" ",
        b"\x01ACTION",
        b"0",
        b"\xff",
        b"\xc3",
        b"\r",
    ];
    let mut hub = hub();
    let _json = hub.connect(peer(), NOW, Outlet::new(Kind::JsonLines));
    let waiting = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    let user = registered(&mut hub, "ann");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..5000 {
        let mut line = Vec::new();
        for _ in 0..next() % 12 {
            match next() % 3 {
                0 => line.push((next() % 256) as u8),
                _ => line.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize]),
            }
            if next() % 2 == 0 {
                line.push(b' ');
            }
        }
        line.retain(|&b| b != b'\n');
        for key in [waiting, user] {
            hub.line(key, &line, NOW);
            let _ = read(&mut hub, key);
        }
    }
    assert!(hub.core.user(user).is_some_and(|u| u.is_here()));
    for key in [waiting, user] {
        if hub
            .core
            .user(key)
            .is_some_and(|u| u.is_here() || u.presence == Presence::Waiting)
        {
            hub.line(key, b"PING :still\r", NOW);
            let lines = read(&mut hub, key);
            assert!(
                lines.iter().any(|l| l == ":chat PONG chat :still"),
                "{lines:?}"
            );
        }
    }
}

#[test]
fn shutdown_closes_waiting_connections_too() {
    let mut hub = hub();
    let key = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    hub.shutdown();
    assert_eq!(
        read(&mut hub, key),
        ["ERROR :Closing link: the server is shutting down"]
    );
}

#[test]
fn sasl_over_plaintext_from_afar_is_refused_before_any_password_is_checked() {
    let mut hub = hub();
    let far = Peer::plain(std::net::SocketAddr::from(([192, 0, 2, 7], 5000)));
    let key = hub.admit_irc(far, NOW, Outlet::new(Kind::Irc));
    for line in ["CAP LS 302", "CAP REQ :sasl", "NICK ann", "USER u 0 * :U"] {
        hub.line(key, format!("{line}\r").as_bytes(), NOW);
    }
    hub.line(key, b"AUTHENTICATE PLAIN\r", NOW);
    assert_eq!(read(&mut hub, key).last().unwrap(), "AUTHENTICATE +");
    // "\0ann\0pw"
    hub.line(key, b"AUTHENTICATE AGFubgBwdw==\r", NOW);
    let lines = read(&mut hub, key);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(":chat 904 * :SASL authentication failed: passwords cross only TLS"),
        "{lines:?}"
    );
    assert!(!hub.core.has_jobs(), "no password went to the hashing pool");
    // Registration goes on without an account.
    hub.line(key, b"CAP END\r", NOW);
    assert!(read(&mut hub, key)[0].starts_with(":chat 001 ann "));
}

/// Lines a registered `key` gets for `line`.
fn ask(hub: &mut Hub<Outlet>, key: Key, line: &str) -> Vec<String> {
    hub.line(key, format!("{line}\r").as_bytes(), NOW);
    read(hub, key)
}

#[test]
fn a_line_that_is_not_utf8_is_dropped_with_fail_invalid_utf8() {
    let mut hub = hub();
    let key = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    hub.line(key, b"NICK ann\r", NOW);
    // A Latin-1 realname: refused, and registration waits for a good USER.
    hub.line(key, b"USER u 0 * :i\xe8rc\xe9\r", NOW);
    assert_eq!(
        read(&mut hub, key),
        [":chat FAIL USER INVALID_UTF8 :This server speaks UTF-8 only; the line was not UTF-8"]
    );
    hub.line(key, b"USER u 0 * :irc\r", NOW);
    assert!(read(&mut hub, key)[0].starts_with(":chat 001 ann "));
    hub.line(key, b"PRIVMSG #lobby :hi\xaa\r", NOW);
    let lines = read(&mut hub, key);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(":chat FAIL PRIVMSG INVALID_UTF8 :"),
        "{lines:?}"
    );
    // No command to name: `*`.
    hub.line(key, b"\xff\xfe\r", NOW);
    assert!(read(&mut hub, key)[0].starts_with(":chat FAIL * INVALID_UTF8 :"));
}

#[test]
fn lusers_counts_users_rooms_and_connections_still_registering() {
    let mut hub = hub();
    let ann = registered(&mut hub, "ann");
    let _bob = registered(&mut hub, "bob");
    let _ = read(&mut hub, ann);
    let _waiting = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    assert_eq!(
        ask(&mut hub, ann, "LUSERS"),
        [
            ":chat 251 ann :There are 2 users and 0 invisible on 1 servers",
            ":chat 252 ann 0 :operator(s) online",
            ":chat 253 ann 1 :unknown connection(s)",
            ":chat 254 ann 1 :channels formed",
            ":chat 255 ann :I have 2 clients and 0 servers",
        ]
    );
}

#[test]
fn time_and_info_are_answered() {
    let mut hub = hub();
    let ann = registered(&mut hub, "ann");
    assert_eq!(
        ask(&mut hub, ann, "TIME"),
        [":chat 391 ann chat :2025-11-26T14:00:00.000Z"]
    );
    let info = ask(&mut hub, ann, "INFO");
    assert!(info.len() >= 2, "{info:?}");
    assert_eq!(info.last().unwrap(), ":chat 374 ann :End of INFO list");
    assert!(
        info[..info.len() - 1]
            .iter()
            .all(|l| l.starts_with(":chat 371 ann :"))
    );
}

#[test]
fn list_with_channels_lists_only_those() {
    let mut hub = hub();
    let ann = registered(&mut hub, "ann");
    let _ = ask(&mut hub, ann, "JOIN #rust");
    assert_eq!(
        ask(&mut hub, ann, "LIST #RUST,#nowhere"),
        [
            ":chat 321 ann Channel :Users  Name",
            ":chat 322 ann #rust 1 :",
            ":chat 323 ann :End of /LIST",
        ]
    );
    assert_eq!(ask(&mut hub, ann, "LIST").len(), 4);
}

#[test]
fn oper_whowas_and_kick_get_the_numerics_of_a_server_without_operators() {
    let mut hub = hub();
    let ann = registered(&mut hub, "ann");
    let bob = registered(&mut hub, "bob");
    let _ = ask(&mut hub, ann, "JOIN #rust");
    assert_eq!(
        ask(&mut hub, ann, "OPER ann secret"),
        [":chat 491 ann :No O-lines for your host"]
    );
    assert_eq!(
        ask(&mut hub, ann, "OPER ann"),
        [":chat 461 ann OPER :Not enough parameters"]
    );
    assert_eq!(
        ask(&mut hub, ann, "WHOWAS bob"),
        [
            ":chat 406 ann bob :There was no such nickname",
            ":chat 369 ann bob :End of WHOWAS",
        ]
    );
    assert_eq!(
        ask(&mut hub, ann, "WHOWAS"),
        [":chat 461 ann WHOWAS :Not enough parameters"]
    );
    assert_eq!(
        ask(&mut hub, ann, "KICK #nowhere bob"),
        [":chat 403 ann #nowhere :No such channel"]
    );
    assert_eq!(
        ask(&mut hub, bob, "KICK #rust ann"),
        [":chat 442 bob #rust :You're not on that channel"]
    );
    assert_eq!(
        ask(&mut hub, ann, "KICK #Rust bob :bye"),
        [":chat 482 ann #rust :You're not channel operator"]
    );
}

#[test]
fn who_and_whois_give_the_realname_and_who_takes_masks() {
    let mut hub = hub();
    let ann = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    hub.line(ann, b"NICK ann\r", NOW);
    hub.line(ann, b"USER a 0 * :Ann Smith\r", NOW);
    let bob = registered(&mut hub, "bob");
    let _ = ask(&mut hub, bob, "AWAY :lunch");
    let whois = ask(&mut hub, bob, "WHOIS ann");
    assert_eq!(whois[0], ":chat 311 bob ann ann chat * :Ann Smith");
    let ann_line = ":chat 352 bob * ann chat chat ann H :0 Ann Smith";
    let bob_line = ":chat 352 bob * bob chat chat bob G :0 U";
    assert_eq!(
        ask(&mut hub, bob, "WHO ANN"),
        [ann_line, ":chat 315 bob ANN :End of /WHO list"]
    );
    assert_eq!(
        ask(&mut hub, bob, "WHO a?N*"),
        [ann_line, ":chat 315 bob a?N* :End of /WHO list"]
    );
    assert_eq!(
        ask(&mut hub, bob, "WHO *smith"),
        [ann_line, ":chat 315 bob *smith :End of /WHO list"]
    );
    let mut all = ask(&mut hub, bob, "WHO *");
    all.sort();
    assert_eq!(
        all,
        [":chat 315 bob * :End of /WHO list", ann_line, bob_line]
    );
    assert_eq!(
        ask(&mut hub, bob, "WHO *!*@elsewhere"),
        [":chat 315 bob *!*@elsewhere :End of /WHO list"]
    );
    let chan = ask(&mut hub, bob, "WHO #lobby");
    assert!(
        chan.contains(&":chat 352 bob #lobby ann chat chat ann H :0 Ann Smith".to_owned()),
        "{chan:?}"
    );
}

#[test]
fn a_nick_to_itself_changes_nothing_and_a_change_of_case_is_a_change() {
    let mut hub = hub();
    let ann = registered(&mut hub, "ann");
    let bob = registered(&mut hub, "bob");
    read(&mut hub, ann);
    assert!(ask(&mut hub, ann, "NICK ann").is_empty());
    assert!(read(&mut hub, bob).is_empty());
    assert_eq!(ask(&mut hub, ann, "NICK Ann"), [":ann!ann@chat NICK Ann"]);
    assert_eq!(read(&mut hub, bob), [":ann!ann@chat NICK Ann"]);
}

#[test]
fn a_realname_is_kept_to_reallen_and_an_overlong_mask_matches_nobody() {
    let mut hub = hub();
    let ann = hub.admit_irc(peer(), NOW, Outlet::new(Kind::Irc));
    hub.line(ann, b"NICK ann\r", NOW);
    let long = "a".repeat(400);
    hub.line(ann, format!("USER a 0 * :{long}\r").as_bytes(), NOW);
    read(&mut hub, ann);
    let whois = ask(&mut hub, ann, "WHOIS ann");
    let real = "a".repeat(REALLEN);
    assert_eq!(whois[0], format!(":chat 311 ann ann ann chat * :{real}"));
    // Every user's realname is matched against a mask: one longer than
    // 100 bytes is tried against nobody, though it would match ann.
    let mask = format!("{}a", "*".repeat(100));
    assert_eq!(
        ask(&mut hub, ann, &format!("WHO {mask}")),
        [format!(":chat 315 ann {mask} :End of /WHO list")]
    );
    assert_eq!(ask(&mut hub, ann, "WHO *a").len(), 2);
}
