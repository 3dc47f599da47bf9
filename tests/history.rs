//! History through the binary: what the server stores survives a restart
//! and a `kill -9`, `history` pages through it, and a database that cannot
//! be used stops the server at start with one line.

mod common;

use std::io::{BufRead, Write};
use std::path::Path;

use common::{Conn, Server, TempDir, WAIT, chat, output_within};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn start_on(db: &Path) -> Server {
    Server::start(&["--rate", "0", "--db", db.to_str().unwrap()])
}

fn history(conn: &mut Conn, ask: Value) -> Value {
    conn.send(&ask);
    conn.recv_type("history")
}

/// (seq, from, text) of each message of a `history` answer.
fn rows(answer: &Value) -> Vec<(u64, String, String)> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["from"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn texts(answer: &Value) -> Vec<String> {
    rows(answer).into_iter().map(|r| r.2).collect()
}

#[test]
fn messages_topics_and_seq_survive_a_restart() {
    let dir = TempDir::new("history-restart");
    let db = dir.path.join("chat.db");
    let mut server = start_on(&db);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.send(&json!({"type": "group", "text": "one"}));
    alice.send(&json!({"type": "group", "text": "waves", "action": true}));
    alice.send(&json!({"type": "private", "to": "bob", "text": "secret"}));
    alice.send(&json!({"type": "topic", "room": "lobby", "text": "restarts"}));
    assert_eq!(bob.recv_type("topic")["text"], "restarts");
    assert_eq!(server.signal_and_wait(Signal::SIGTERM).code(), Some(0));

    let server = start_on(&db);
    let mut carol = server.join("carol");
    carol.send(&json!({"type": "join", "room": "lobby"}));
    assert_eq!(carol.recv_type("joined")["topic"], "restarts");
    let answer = history(&mut carol, json!({"type": "history", "room": "lobby"}));
    assert_eq!(
        answer["messages"],
        json!([
            {"seq": 1, "from": "alice", "text": "one", "ts": answer["messages"][0]["ts"]},
            {"seq": 2, "from": "alice", "text": "waves", "ts": answer["messages"][1]["ts"],
             "action": true}
        ]),
        "private messages are never stored"
    );
    assert_eq!(answer["more"], false);
    let mut dave = server.join("dave");
    carol.send(&json!({"type": "group", "text": "after"}));
    assert_eq!(dave.recv_type("group")["seq"], 3, "seq goes on");
}

#[test]
fn history_pages_before_and_after_and_refuses_a_bad_limit() {
    let dir = TempDir::new("history-pages");
    let server = start_on(&dir.path.join("chat.db"));
    let mut alice = server.join("alice");
    for n in 1..=5 {
        alice.send(&json!({"type": "group", "text": format!("m{n}")}));
    }
    // Asked right after sending: the asker's own messages are there.
    let last = history(
        &mut alice,
        json!({"type": "history", "room": "lobby", "limit": 2}),
    );
    assert_eq!(
        (texts(&last), &last["more"]),
        (vec!["m4".into(), "m5".into()], &json!(true))
    );
    let seq4 = rows(&last)[0].0;
    let before = history(
        &mut alice,
        json!({"type": "history", "room": "Lobby", "before": seq4, "limit": 2}),
    );
    assert_eq!(before["room"], "lobby");
    assert_eq!(texts(&before), ["m2", "m3"]);
    assert_eq!(before["more"], true);
    let after = history(
        &mut alice,
        json!({"type": "history", "room": "lobby", "after": seq4 - 2}),
    );
    assert_eq!(
        (texts(&after), &after["more"]),
        (vec!["m3".into(), "m4".into(), "m5".into()], &json!(false))
    );
    let empty = history(&mut alice, json!({"type": "history", "room": "nowhere"}));
    assert_eq!(
        (&empty["messages"], &empty["more"]),
        (&json!([]), &json!(false))
    );
    for bad in [
        json!({"type": "history", "room": "lobby", "limit": 0}),
        json!({"type": "history", "room": "lobby", "limit": 501}),
        json!({"type": "history", "room": "lobby", "before": 3, "after": 1}),
        json!({"type": "history"}),
    ] {
        alice.send(&bad);
        let error = alice.recv();
        assert_eq!(error["code"], "bad_message", "{bad}: {error}");
    }
    alice.send(&json!({"type": "history", "room": "#no"}));
    assert_eq!(alice.recv()["code"], "bad_room");
}

#[test]
fn without_a_database_history_is_empty_and_seq_starts_at_1() {
    let server = Server::start(&["--db", "none"]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.send(&json!({"type": "group", "text": "gone"}));
    assert_eq!(bob.recv_type("group")["seq"], 1);
    let answer = history(&mut alice, json!({"type": "history", "room": "lobby"}));
    assert_eq!(
        answer,
        json!({"type": "history", "room": "lobby", "messages": [], "more": false})
    );
}

/// Exit status 1 and exactly one line on stderr, naming `mention`.
fn assert_refused(args: &[&str], mention: &str) {
    let out = output_within(
        chat()
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(args),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: stderr {stderr:?}");
    assert!(
        stderr.contains(mention),
        "{stderr:?} does not name {mention:?}"
    );
}

#[test]
fn a_second_server_on_the_same_database_refuses_to_start() {
    let dir = TempDir::new("history-lock");
    let db = dir.path.join("chat.db");
    let server = start_on(&db);
    assert_refused(&["--db", db.to_str().unwrap()], db.to_str().unwrap());
    // The first one is unharmed.
    server.join("alice").sync();
}

#[test]
fn an_unusable_database_is_one_line_and_exit_1() {
    let dir = TempDir::new("history-bad");
    let missing = dir.path.join("no/such/dir/chat.db");
    assert_refused(
        &["--db", missing.to_str().unwrap()],
        missing.to_str().unwrap(),
    );
    let junk = dir.path.join("junk.db");
    std::fs::write(&junk, vec![b'j'; 8192]).unwrap();
    assert_refused(&["--db", junk.to_str().unwrap()], "corrupt");
}

#[test]
fn the_default_database_is_made_under_xdg_data_home() {
    let dir = TempDir::new("history-default");
    let mut server = Server::start_with(
        chat()
            .env_remove("CHAT_DB")
            .env("XDG_DATA_HOME", &dir.path)
            .args(["server", "--listen", "127.0.0.1:0", "--quiet"]),
    );
    server.join("alice").sync();
    assert!(dir.path.join("chat/chat.db").exists());
    assert_eq!(server.signal_and_wait(Signal::SIGTERM).code(), Some(0));
}

/// After `kill -9`, the database holds every group message any client
/// received: once each, in seq order, with the same sender and text.
#[test]
fn kill_9_loses_nothing_anyone_received() {
    let dir = TempDir::new("history-kill");
    let db = dir.path.join("chat.db");
    let mut server = start_on(&db);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    let mut carol = server.join("carol");
    for n in 0..300 {
        let (from, to) = if n % 2 == 0 {
            (&mut alice, "a")
        } else {
            (&mut bob, "b")
        };
        from.send(&json!({"type": "group", "text": format!("{to}{n}")}));
    }
    // Carol reads a good part of the stream, then the server dies.
    let mut received = Vec::new();
    while received.len() < 200 {
        let msg = carol.recv();
        if msg["type"] == "group" {
            received.push((
                msg["seq"].as_u64().unwrap(),
                msg["from"].as_str().unwrap().to_owned(),
                msg["text"].as_str().unwrap().to_owned(),
            ));
        }
    }
    server.signal_and_wait(Signal::SIGKILL);
    // Whatever else was already on its way to carol counts as received.
    let mut line = String::new();
    while matches!(carol.reader.read_line(&mut line), Ok(n) if n > 0) {
        if !line.ends_with('\n') {
            break; // cut short by the kill: never received
        }
        let msg: Value = serde_json::from_str(&line).unwrap();
        line.clear();
        if msg["type"] == "group" {
            received.push((
                msg["seq"].as_u64().unwrap(),
                msg["from"].as_str().unwrap().to_owned(),
                msg["text"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let server = start_on(&db);
    let mut dave = server.join("dave");
    let stored = rows(&history(
        &mut dave,
        json!({"type": "history", "room": "lobby", "after": 0, "limit": 500}),
    ));
    let seqs: Vec<u64> = stored.iter().map(|r| r.0).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in seq order, once each");
    for got in &received {
        assert!(
            stored.contains(got),
            "received {got:?} but it was not stored"
        );
    }
}

/// A small seeded generator (xorshift64*) for the crash schedule.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// How a round of [`crashes_lose_nothing_anyone_received`] ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Kill,
    Term,
    Hup,
}

/// (room, seq, from, text) of a group message a client received.
type Got = (String, u64, String, String);

/// Every complete `group` line on a connection until the server goes away
/// (a line cut short by a kill was never received).
fn read_until_gone(mut reader: impl BufRead, got: std::sync::mpsc::Sender<Got>) {
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) && line.ends_with('\n') {
        let msg: Value = serde_json::from_str(&line).unwrap();
        line.clear();
        if msg["type"] == "group" {
            let field = |k: &str| msg[k].as_str().unwrap().to_owned();
            let _ = got.send((
                field("room"),
                msg["seq"].as_u64().unwrap(),
                field("from"),
                field("text"),
            ));
        }
    }
}

/// Every stored message of `room`, paged with `after` from 0.
fn all_history(conn: &mut Conn, room: &str) -> Vec<(u64, String, String)> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |r: &(u64, String, String)| r.0);
        let page = history(
            conn,
            json!({"type": "history", "room": room, "after": after, "limit": 500}),
        );
        all.extend(rows(&page));
        if page["more"] == false {
            return all;
        }
    }
}

/// The history invariant under crashes: clients chat in three rooms (some
/// in two) while the server, on one database, is killed with SIGKILL at
/// seeded pseudo-random moments (after a random number of deliveries, with
/// more messages in flight) and restarted, round after round; one round ends
/// with SIGTERM instead, and one is cut by SIGHUP, which must not stop the
/// server (it reopens the log; chatting goes on and everything is
/// delivered). After every round each room's `history` holds every group
/// message any client received, once, in `seq` order, with the sender and
/// text received; what was stored before stays stored unchanged; and `seq`
/// keeps increasing across restarts. `CHAT_CRASH_SEED` replays a schedule.
#[test]
fn crashes_lose_nothing_anyone_received() {
    const ROOMS: [&str; 3] = ["ra", "rb", "rc"];
    // Client i's rooms: three rooms, clients 1, 3 and 4 in two of them.
    const MEMBERS: [&[usize]; 5] = [&[0], &[0, 1], &[1], &[1, 2], &[2, 0]];
    let seed = std::env::var("CHAT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a5);
    let mut rng = Rng(seed | 1);
    let dir = TempDir::new("history-crash");
    let db = dir.path.join("chat.db");
    let log = dir.path.join("chat.log");
    let start = || {
        Server::start(&[
            "--rate",
            "0",
            "--db",
            db.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ])
    };
    let mut stored: Vec<Vec<(u64, String, String)>> = vec![Vec::new(); ROOMS.len()];
    let mut server = None;
    let ends = [
        End::Kill,
        End::Kill,
        End::Hup,
        End::Kill,
        End::Term,
        End::Kill,
    ];
    for (round, &end) in ends.iter().enumerate() {
        let server = server.get_or_insert_with(start);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for (i, rooms) in MEMBERS.iter().enumerate() {
            let mut conn = server.join(&format!("c{i}r{round}"));
            for &r in *rooms {
                conn.send(&json!({"type": "join", "room": ROOMS[r]}));
                conn.recv_type("joined");
            }
            writers.push(conn.stream.try_clone().unwrap());
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || read_until_gone(conn.reader, tx)));
        }
        drop(tx);
        // Every join was answered above: all members are in before anyone speaks.
        // Messages in flight, then the end after a random number of
        // deliveries (each message goes to the room's other members).
        let count = 60 + rng.below(90) as usize;
        let mut sent = Vec::new();
        let mut deliveries = 0;
        for n in 0..count {
            let who = rng.below(MEMBERS.len() as u64) as usize;
            let room = MEMBERS[who][rng.below(MEMBERS[who].len() as u64) as usize];
            let text = format!("r{round} n{n} from c{who}");
            let line = json!({"type": "group", "room": ROOMS[room], "text": text});
            writers[who]
                .write_all(format!("{line}\n").as_bytes())
                .unwrap();
            deliveries += MEMBERS.iter().filter(|m| m.contains(&room)).count() - 1;
            sent.push((ROOMS[room], format!("c{who}r{round}"), text));
        }
        let cut = 1 + rng.below(deliveries as u64 - 1) as usize;
        let mut received: Vec<Got> = Vec::new();
        while received.len() < cut {
            received.push(rx.recv_timeout(WAIT).expect("a delivery before the cut"));
        }
        match end {
            End::Kill => {
                server.signal_and_wait(Signal::SIGKILL);
            }
            End::Term => assert_eq!(server.signal_and_wait(Signal::SIGTERM).code(), Some(0)),
            End::Hup => {
                // As logrotate does: move the log away, then SIGHUP.
                std::fs::rename(&log, dir.path.join("chat.log.1")).unwrap();
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid()), Signal::SIGHUP)
                    .unwrap();
                // Chatting goes on: every message reaches every other member.
                while received.len() < deliveries {
                    received.push(rx.recv_timeout(WAIT).expect("delivery after SIGHUP"));
                }
                let mut late = server.join(&format!("late{round}"));
                late.sync();
                assert!(
                    std::fs::read_to_string(&log)
                        .unwrap()
                        .contains(&format!("late{round}")),
                    "SIGHUP reopened the log under its name"
                );
                assert!(
                    server.child.try_wait().unwrap().is_none(),
                    "SIGHUP stopped the server"
                );
                for w in &writers {
                    w.shutdown(std::net::Shutdown::Both).unwrap();
                }
            }
        }
        for reader in readers {
            reader.join().unwrap();
        }
        received.extend(rx.try_iter());
        if end == End::Hup {
            let mut sorted: Vec<_> = received
                .iter()
                .map(|g| (g.0.as_str(), &g.2, &g.3))
                .collect();
            sorted.sort_unstable();
            let mut want = Vec::new();
            for (room, from, text) in &sent {
                let r = ROOMS.iter().position(|x| x == room).unwrap();
                for _ in 1..MEMBERS.iter().filter(|m| m.contains(&r)).count() {
                    want.push((*room, from, text));
                }
            }
            want.sort_unstable();
            assert_eq!(
                sorted, want,
                "round {round}: everything delivered once after SIGHUP"
            );
        } else {
            *server = start();
        }

        let mut checker = server.join(&format!("check{round}"));
        let before = stored.iter().flatten().map(|r| r.0).max().unwrap_or(0);
        for (r, room) in ROOMS.iter().enumerate() {
            let now = all_history(&mut checker, room);
            let seqs: Vec<u64> = now.iter().map(|m| m.0).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "seed {seed} round {round}: {room} not once each in seq order: {seqs:?}"
            );
            assert_eq!(
                now[..stored[r].len()],
                stored[r][..],
                "seed {seed} round {round}: {room} lost or changed what was stored before"
            );
            assert!(
                now[stored[r].len()..].iter().all(|m| m.0 > before),
                "seed {seed} round {round}: {room} seq went back after a restart"
            );
            for got in received.iter().filter(|g| g.0 == *room) {
                let want = (got.1, got.2.clone(), got.3.clone());
                assert!(
                    now.contains(&want),
                    "seed {seed} round {round} ({end:?}): received {got:?} but it was not stored"
                );
            }
            stored[r] = now;
        }
    }
}

/// Unmounts the test's small filesystem on drop, whatever happened.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Polls the connection log until a line holds `needle` (the log has no
/// event to wait on; it is written at the end of each loop turn).
fn wait_for_log(log: &Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20)); // polling a file
    }
}

/// A full disk stops the record, not the chat: every message is still
/// delivered, the failure is said once (stderr and the log), and once
/// there is room again what was said meanwhile is stored after all. It
/// needs a filesystem small enough to fill, a tmpfs mounted for the test;
/// where mounting is not allowed (not root) the test says so and checks
/// nothing.
#[test]
fn a_full_disk_stops_the_record_not_the_chat() {
    let dir = TempDir::new("history-full");
    let small = dir.path.join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("note: cannot mount a small tmpfs here; the full-disk test checked nothing");
        return;
    }
    let _unmount = Mounted(small.clone());
    let db = small.join("chat.db");
    let log = dir.path.join("chat.log");
    let mut server = Server::start_with(
        chat()
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--quiet",
                "--rate",
                "0",
            ])
            .arg("--db")
            .arg(&db)
            .arg("--log")
            .arg(&log)
            .stderr(std::process::Stdio::piped()),
    );
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    // Leave some 100 KiB: the twenty 20 KiB messages below do not fit.
    let free = nix::sys::statvfs::statvfs(&small).unwrap();
    let room = free.blocks_available() as u64 * free.fragment_size() as u64;
    let filler = small.join("filler");
    std::fs::write(&filler, vec![0u8; room.saturating_sub(100 << 10) as usize]).unwrap();

    let said: Vec<String> = (0..20)
        .map(|i| format!("{i} {}", "x".repeat(20 << 10)))
        .collect();
    for text in &said {
        alice.send(&json!({"type": "group", "text": text}));
    }
    for text in &said {
        assert_eq!(&bob.recv_type("group")["text"], text, "the chat stopped");
    }
    wait_for_log(&log, r#""ok":false"#);

    std::fs::remove_file(&filler).unwrap();
    let text = wait_for_log(&log, r#""ok":true"#);
    assert_eq!(
        text.matches(r#""ok":false"#).count(),
        1,
        "said more than once:\n{text}"
    );
    alice.send(&json!({"type": "group", "text": "room again"}));
    assert_eq!(bob.recv_type("group")["text"], "room again");
    let stored = texts(&history(
        &mut bob,
        json!({"type": "history", "room": "lobby", "after": 0, "limit": 500}),
    ));
    let mut want = said.clone();
    want.push("room again".into());
    assert_eq!(
        stored, want,
        "what was said while the disk was full is lost"
    );

    assert!(server.signal_and_wait(Signal::SIGTERM).success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        stderr.matches("cannot store history in").count(),
        1,
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains(&db.display().to_string()),
        "stderr: {stderr}"
    );
}
