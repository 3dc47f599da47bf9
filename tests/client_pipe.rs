//! `chat client` with stdin and stdout not terminals: the scripted mode
//! (`printf 'hi\n/quit\n' | chat client`) and `--json`, against the real
//! server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;

use assert_cmd::assert::OutputAssertExt;
use common::{Conn, Server, WAIT, chat, finish_within, free_port, output_with_input};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// `chat client --server ADDR ARGS...`, stdin, stdout and stderr piped.
fn spawn_client(server: &Server, args: &[&str]) -> Child {
    chat()
        .args(["client", "--server", &server.addr.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat client")
}

/// `chat client --server ADDR ARGS...` with `input` piped in, run to its
/// end.
fn run_client(server: &Server, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = chat();
    cmd.args(["client", "--server", &server.addr.to_string()])
        .args(args);
    output_with_input(&mut cmd, input)
}

/// The client's input-reading child, from /proc.
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn is_gone(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_err()
}

/// Waits until `watcher` sees `nick` take its name: the client is ready.
fn wait_for_nick(watcher: &mut Conn, nick: &str) {
    loop {
        let msg = watcher.recv_type("nick");
        if msg["new"] == nick {
            return;
        }
    }
}

/// The lines a client prints, as they come, read by a thread so that a
/// test can wait for one.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `wanted`; returns the lines up to it.
fn wait_for_line(lines: &mpsc::Receiver<String>, wanted: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) => {
                let done = line.contains(wanted);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {wanted:?} ({e}); saw:\n{}", seen.join("\n")),
        }
    }
}

fn stdout_text(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

#[test]
fn piped_lines_are_sent_and_shown_as_plain_text() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let out = run_client(
        &server,
        &["--nick", "carol"],
        b"hi all\n/frob\n//slash\n/msg nobody hi\n/msg bob psst\n/quit done\n",
    );
    let asserted = out.assert().success();
    let out = asserted.get_output();
    let text = stdout_text(out);
    assert!(!text.contains('\x1b'), "colour in plain mode: {text:?}");
    for want in [
        "-- you are now known as carol",
        "<carol> hi all",
        "!! unknown command /frob",
        "<carol> /slash",
        "-> *bob* psst",
        "!! no user named nobody; not sent: hi",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("*nobody*"),
        "a refused message was shown as sent:\n{text}"
    );
    // Every line starts with the local time.
    for line in text.lines() {
        let time = line.split(' ').next().unwrap();
        assert!(
            time.len() == 8 && time.as_bytes()[2] == b':',
            "no time on {line:?}"
        );
    }

    assert_eq!(bob.recv_type("join")["type"], "join");
    assert_eq!(bob.recv_type("nick")["new"], "carol");
    let msg = bob.recv();
    assert_eq!(
        (&msg["type"], &msg["text"]),
        (&json!("group"), &json!("hi all"))
    );
    let msg = bob.recv();
    assert_eq!(
        (&msg["type"], &msg["text"]),
        (&json!("group"), &json!("/slash")),
        "/frob must send nothing"
    );
    let msg = bob.recv();
    assert_eq!(
        (&msg["type"], &msg["text"]),
        (&json!("private"), &json!("psst"))
    );
    let msg = bob.recv();
    assert_eq!(msg["type"], "leave");
    assert_eq!(
        (&msg["reason"], &msg["text"]),
        (&json!("quit"), &json!("done"))
    );
}

#[test]
fn the_end_of_input_quits_and_keeps_an_unfinished_last_line() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let out = assert_cmd::Command::new(common::chat_bin())
        .env_remove("CHAT_SERVER")
        .env_remove("CHAT_NICK")
        .env("USER", "dave")
        .args(["client", "--server", &server.addr.to_string()])
        .write_stdin("last words")
        .timeout(WAIT)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("<dave> last words"), "{text}");
    assert_eq!(
        bob.recv_type("nick")["new"],
        "dave",
        "$USER is the default nick"
    );
    let msg = bob.recv();
    assert_eq!(msg["text"], "last words");
    let msg = bob.recv();
    assert_eq!(
        (&msg["type"], &msg["reason"]),
        (&json!("leave"), &json!("quit"))
    );
}

#[test]
fn json_prints_the_raw_protocol_lines() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let mut client = spawn_client(&server, &["--json", "--nick", "carol"]);
    wait_for_nick(&mut bob, "carol");
    bob.send(&json!({"type": "group", "text": "clear \u{1b}[2J \u{9b}"}));
    bob.send(&json!({"type": "private", "to": "carol", "text": "psst"}));
    bob.sync();
    drop(client.stdin.take());
    let out = finish_within(client);
    let asserted = out.assert().success();
    let out = asserted.get_output();
    assert!(!out.stdout.contains(&0x1b), "raw ESC on stdout");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains('\u{9b}'),
        "raw CSI on stdout"
    );
    let msgs: Vec<Value> = stdout_text(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON {l:?}: {e}")))
        .collect();
    let types: Vec<&str> = msgs.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["welcome", "nick", "group", "private", "bye"]);
    assert_eq!(
        msgs[2]["text"], "clear \u{1b}[2J \u{9b}",
        "the text itself is unchanged"
    );
    assert_eq!(msgs[3]["from"], "bob");
}

#[test]
fn escape_sequences_from_the_network_are_shown_not_obeyed() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let mut client = spawn_client(&server, &["--nick", "carol"]);
    wait_for_nick(&mut bob, "carol");
    bob.send(&json!({"type": "group", "text": "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}1m"}));
    bob.sync();
    drop(client.stdin.take());
    let out = finish_within(client);
    let asserted = out.assert().success();
    let out = asserted.get_output();
    let text = stdout_text(out);
    assert!(
        text.contains(r"<bob> \x1b[2J\x1b]0;owned\x07\u{9b}1m"),
        "{text:?}"
    );
    assert!(!text.contains(['\x1b', '\x07', '\u{9b}']), "{text:?}");
}

#[test]
fn a_wrong_address_fails_at_once_with_one_line() {
    let port = free_port();
    let out = chat()
        .args(["client", "--server", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let asserted = out.assert().code(1).stdout("");
    let out = asserted.get_output();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("chat: cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );

    // Usage errors (exit 2) come before any connection attempt.
    let out = chat()
        .args(["client", "--server", "no where"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an address"));
    out.assert().code(2);
    let out = chat()
        .args(["client", "--server", "127.0.0.1:1", "--nick", "no spaces"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot use nickname"));
    out.assert().code(2);
}

#[test]
fn a_refused_nick_is_shown_and_the_guest_name_kept() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let mut client = spawn_client(&server, &["--nick", "BOB"]);
    bob.recv_type("join");
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"still here\n")
        .unwrap();
    let msg = bob.recv_type("group");
    let from = msg["from"].as_str().unwrap().to_owned();
    assert!(from.starts_with("guest"), "{msg}");
    let out = finish_within(client);
    let asserted = out.assert().success();
    let out = asserted.get_output();
    let text = stdout_text(out);
    assert!(
        text.contains("!! ") && text.contains(&format!("you are still {from}")),
        "{text}"
    );
    assert!(text.contains(&format!("<{from}> still here")), "{text}");
}

/// Starts a client that stays connected (its stdin held open), ready, and
/// returns it with its input child's PID.
fn connected_client(server: &Server, bob: &mut Conn) -> (Child, i32) {
    let client = spawn_client(server, &["--nick", "carol"]);
    wait_for_nick(bob, "carol");
    let children = children_of(client.id());
    assert_eq!(children.len(), 1, "one input child: {children:?}");
    (client, children[0])
}

#[test]
fn server_shutdown_ends_the_client_with_status_1_and_no_orphan() {
    let mut server = Server::start(&[]);
    let mut bob = server.join("bob");
    let (client, input_child) = connected_client(&server, &mut bob);
    assert!(server.signal_and_wait(Signal::SIGTERM).success());
    let out = finish_within(client);
    let asserted = out.assert().code(1);
    let out = asserted.get_output();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is shutting down"), "{err}");
    assert!(
        is_gone(input_child),
        "input child {input_child} outlived the client"
    );
}

#[test]
fn a_killed_server_ends_the_client_with_status_1_and_no_orphan() {
    let mut server = Server::start(&[]);
    let mut bob = server.join("bob");
    let (mut client, input_child) = connected_client(&server, &mut bob);
    let lines = lines_of(client.stdout.take().unwrap());
    server.signal_and_wait(Signal::SIGKILL);
    // It tries again, and the end of input stops it trying.
    wait_for_line(&lines, "lost the connection to");
    drop(client.stdin.take());
    let out = finish_within(client);
    let asserted = out.assert().code(1);
    let out = asserted.get_output();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("chat: lost the connection to"), "{err}");
    assert!(
        is_gone(input_child),
        "input child {input_child} outlived the client"
    );
}

#[test]
fn sigterm_to_the_client_says_quit_and_reaps_the_child() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let (client, input_child) = connected_client(&server, &mut bob);
    kill(Pid::from_raw(client.id() as i32), Signal::SIGTERM).unwrap();
    let out = finish_within(client);
    let asserted = out.assert().code(1);
    let out = asserted.get_output();
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped by SIGTERM"));
    let msg = bob.recv_type("leave");
    assert_eq!(msg["reason"], "quit");
    assert!(
        is_gone(input_child),
        "input child {input_child} outlived the client"
    );
}

#[test]
fn room_at_start_is_joined_before_the_first_line() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    bob.send(&json!({"type": "join", "room": "rust"}));
    bob.recv_type("joined");
    let out = run_client(
        &server,
        &["--nick", "carol", "--room", "Rust"],
        b"hi rust\n/part\n",
    );
    let text = stdout_text(&out);
    assert!(
        text.contains("-- you are in rust (2 here: bob, carol)"),
        "{text}"
    );
    assert!(text.contains("<carol> hi rust"), "{text}");
    assert!(text.contains("-- you left rust"), "{text}");
    loop {
        let msg = bob.recv();
        if msg["type"] == "group" {
            assert_eq!(
                (&msg["room"], &msg["text"]),
                (&json!("rust"), &json!("hi rust"))
            );
            break;
        }
    }
}

#[test]
fn unicode_names_and_rooms_from_the_client() {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    bob.send(&json!({"type": "join", "room": "café-bar"}));
    bob.recv_type("joined");
    // Piped lines are sent as they come: the nick and the room are given
    // at start, where the client waits for them.
    let out = run_client(
        &server,
        &["--nick", "小明", "--room", "Cafe\u{301}-BAR"],
        "你好\n/nick a\u{200D}b\n/msg BOB psst\n/join ДОМ\n".as_bytes(),
    );
    let text = stdout_text(&out);
    for want in [
        "-- you are now known as 小明",
        "-- you are in café-bar (2 here: bob, 小明)",
        "<小明> 你好",
        "U+200D (a format character",
        "-> *BOB* psst",
        "-- you are in дом (1 here: 小明)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(bob.recv_type("nick")["new"], "小明");
    let msg = bob.recv_type("group");
    assert_eq!(
        (&msg["room"], &msg["from"], &msg["text"]),
        (&json!("café-bar"), &json!("小明"), &json!("你好"))
    );
    assert_eq!(bob.recv_type("private")["text"], "psst");
}

#[test]
fn a_room_name_that_breaks_the_rules_is_refused_before_connecting() {
    let out = chat()
        .args(["client", "--server", "127.0.0.1:9", "--room", "no spaces"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use room \"no spaces\""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn what_was_said_before_joining_is_shown_as_history_and_history_pages_back() {
    let dir = common::TempDir::new("client-history");
    let db = dir.path.join("chat.db");
    let server = Server::start(&["--rate", "0", "--db", db.to_str().unwrap()]);
    let mut alice = server.join("alice");
    for n in 1..=22 {
        alice.send(&json!({"type": "group", "text": format!("m{n}")}));
    }
    // Answered after the 22 lines before it: all are stored.
    alice.sync();
    let out = run_client(
        &server,
        &["--nick", "carol"],
        b"hi\n/history 5\n/history\n/quit\n",
    );
    let asserted = out.assert().success();
    let text = stdout_text(asserted.get_output());
    let lines: Vec<&str> = text.lines().collect();
    let index = |wanted: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(wanted))
            .unwrap_or_else(|| panic!("no {wanted:?} in:\n{text}"))
    };
    let first = index("-- history of lobby: 20 messages (and older ones)");
    // Marked with when each was said (`[HH:MM]`), not as live lines are.
    for (k, n) in (3..=22).enumerate() {
        let line = lines[first + 1 + k];
        assert!(
            line.starts_with('[') && line.ends_with(&format!("] <alice> m{n}")),
            "{line:?} in:\n{text}"
        );
    }
    assert!(lines[first + 21].ends_with("-- end of history"), "{text}");
    assert!(
        index("<carol> hi") > first + 21,
        "history comes first:\n{text}"
    );
    let older = index("-- history of lobby: 2 messages");
    assert!(lines[older + 1].ends_with("] <alice> m1"), "{text}");
    assert!(lines[older + 2].ends_with("] <alice> m2"), "{text}");
    assert!(index("-- no older messages in lobby") > older, "{text}");
}

/// Passes one connection accepted on `listener` through to `upstream`,
/// both ways; returns both ends, to cut the connection with.
fn pass_through(listener: &TcpListener, upstream: std::net::SocketAddr) -> [TcpStream; 2] {
    let (down, _) = listener.accept().unwrap();
    let up = TcpStream::connect(upstream).unwrap();
    for (mut from, mut to) in [
        (down.try_clone().unwrap(), up.try_clone().unwrap()),
        (up.try_clone().unwrap(), down.try_clone().unwrap()),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    [down, up]
}

#[test]
fn a_lost_connection_is_made_again_and_what_was_missed_is_shown() {
    let dir = common::TempDir::new("client-reconnect");
    let db = dir.path.join("chat.db");
    let server = Server::start(&["--rate", "0", "--db", db.to_str().unwrap()]);
    // The client goes through a pass-through the test can cut, as a
    // network would.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let via = proxy.local_addr().unwrap().to_string();
    let mut alice = server.join("alice");
    let mut client = chat()
        .args(["client", "--server", &via, "--nick", "carol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(client.stdout.take().unwrap());
    let ends = pass_through(&proxy, server.addr);
    wait_for_nick(&mut alice, "carol");
    alice.send(&json!({"type": "group", "text": "before"}));
    wait_for_line(&lines, "<alice> before");

    for end in &ends {
        let _ = end.shutdown(Shutdown::Both);
    }
    wait_for_line(&lines, "trying again in");
    for n in 1..=2 {
        alice.send(&json!({"type": "group", "text": format!("missed {n}")}));
    }
    alice.sync();
    // The client comes back by itself.
    let _ends = pass_through(&proxy, server.addr);
    wait_for_line(&lines, "connected again to");
    let shown = wait_for_line(&lines, "-- end of history");
    let at = shown
        .iter()
        .position(|l| l.ends_with("-- you missed 2 messages in lobby while away"))
        .unwrap_or_else(|| panic!("no count of what was missed in:\n{}", shown.join("\n")));
    assert!(shown[at + 1].ends_with("] <alice> missed 1"), "{shown:?}");
    assert!(shown[at + 2].ends_with("] <alice> missed 2"), "{shown:?}");
    assert!(
        !shown.iter().any(|l| l.contains("before")),
        "what was seen is not shown again: {shown:?}"
    );
    // Back under its own name, and what is typed goes out.
    client
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"back\n/quit\n")
        .unwrap();
    loop {
        let msg = alice.recv_type("group");
        if msg["text"] == "back" {
            assert_eq!(msg["from"], "carol");
            break;
        }
    }
    drop(client.stdin.take());
    finish_within(client).assert().success();
}
