//! `chat client` and `chat bot` against a server that speaks garbage: lines
//! that are not JSON, unknown types, missing or mistyped fields, over-long
//! lines, a connection cut in the middle of a line, and no welcome at all.
//! Each says what was wrong in one clear line and goes on, or ends with the
//! documented status; none panics.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::process::{Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chat::wire::ServerMsg;
use common::{WAIT, chat};
use serde_json::{Value, json};

const WELCOME: &str =
    r#"{"type":"welcome","id":1,"nick":"guest1","text":"Welcome to the fake!","users":1}"#;
const STILL_ALIVE: &str = r#"{"type":"group","from":"eve","text":"still alive","ts":1}"#;

/// Lines no client can make sense of, each of which must be reported once.
const GARBAGE: &[&[u8]] = &[
    b"hello there",
    b"\x1b[2J\x1b[31mred alert",
    b"\xff\xfe\xfd not UTF-8",
    b"[1,2,3]",
    b"{}",
    b"null",
    b"42",
    br#"{"type":"group","from":"eve"}"#,
    br#"{"type":"join","id":"seven","nick":"x","ts":1}"#,
    br#"{"type":"leave","id":9,"nick":"ghost","reason":"eaten","ts":1}"#,
    br#"{"type":"pong","token":NaN}"#,
    br#"{"type":"group","from":"eve","text":"hi","ts":1,}"#,
    br#"{"type":"bye","reason":"whatever"}"#,
    br#"{"type":"who","users":[{"id":1}]}"#,
];

/// A message type from a newer server: protocol v2 says clients ignore
/// it, so it is neither shown nor reported.
const FROM_THE_FUTURE: &[u8] = br#"{"type":"frobnicate","x":1}"#;

/// The welcome, every garbage line (and a blank one, and one of a type
/// from the future, both ignored), then a good message: whoever shows it
/// survived the rest.
fn welcome_garbage_and_a_message() -> Vec<u8> {
    let mut out = format!("{WELCOME}\n").into_bytes();
    out.extend_from_slice(FROM_THE_FUTURE);
    out.push(b'\n');
    for line in GARBAGE {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"   \r\n");
    out.extend_from_slice(format!("{STILL_ALIVE}\n").as_bytes());
    out
}

/// How the fake server answers what the client sends.
#[derive(Clone, Copy, PartialEq)]
enum Answers {
    /// `nick` is granted, `quit` gets `bye`.
    Nick,
    /// `quit` gets `bye`; `nick` gets nothing.
    NotNick,
    /// `nick` is granted, then the connection is cut in the middle of a
    /// line.
    NickThenCut,
}

/// A one-connection server on 127.0.0.1 that writes `opening` at once and
/// answers as told; it returns what the client sent.
struct Fake {
    addr: SocketAddr,
    heard: JoinHandle<Vec<Value>>,
}

fn fake_server(opening: Vec<u8>, answers: Answers) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let heard = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        // The client may give up before taking it all.
        let _ = stream.write_all(&opening);
        let mut heard = Vec::new();
        for line in BufReader::new(stream.try_clone().unwrap()).lines() {
            let Ok(line) = line else { break };
            let msg: Value = serde_json::from_str(&line).unwrap();
            let kind = msg["type"].as_str().unwrap_or_default().to_owned();
            heard.push(msg.clone());
            match (kind.as_str(), answers) {
                ("nick", Answers::Nick | Answers::NickThenCut) => {
                    let granted = json!({"type": "nick", "id": 1, "old": "guest1",
                                         "new": msg["nick"], "ts": 1});
                    let _ = stream.write_all(format!("{granted}\n").as_bytes());
                    if answers == Answers::NickThenCut {
                        let _ = stream.write_all(br#"{"type":"group","from":"eve","te"#);
                        // Closed for writing only, and what follows read
                        // and dropped: a close with the client's next line
                        // unread would be a reset, not the end it expects.
                        let _ = stream.shutdown(Shutdown::Write);
                        let _ = std::io::copy(&mut stream, &mut std::io::sink());
                        break;
                    }
                }
                ("quit", _) => {
                    let _ = stream.write_all(b"{\"type\":\"bye\",\"reason\":\"quit\"}\n");
                    break;
                }
                _ => {}
            }
        }
        heard
    });
    Fake { addr, heard }
}

/// Runs `chat ARGS` with `input` on stdin; the end of input comes with it
/// unless `hold_input`, in which case stdin stays open until the program
/// ends by itself. Bounded by [`WAIT`].
fn run(args: &[String], input: &[u8], hold_input: bool) -> Output {
    let mut child = chat()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let held = match hold_input {
        true => Some(stdin),
        false => {
            drop(stdin);
            None
        }
    };
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "chat {args:?} did not end; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10)); // polling a child's exit
    }
    drop(held);
    child.wait_with_output().unwrap()
}

/// Stdout and stderr as text, after checking that nothing panicked.
fn texts(out: &Output) -> (String, String) {
    let stdout = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    let stderr = String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8");
    for bad in ["panicked", "internal error", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(bad), "{bad} on stderr: {stderr}");
    }
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "an escape sequence from the network reached the terminal"
    );
    (stdout, stderr)
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

fn client_args(fake: &Fake, extra: &[&str]) -> Vec<String> {
    [
        "client",
        "--server",
        &fake.addr.to_string(),
        "--nick",
        "carol",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

fn bot_args(fake: &Fake) -> Vec<String> {
    [
        "bot",
        "-",
        "--server",
        &fake.addr.to_string(),
        "--timeout",
        "2s",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn the_client_reports_each_garbage_line_and_goes_on_chatting() {
    let fake = fake_server(welcome_garbage_and_a_message(), Answers::Nick);
    let out = run(&client_args(&fake, &[]), b"hello\n", false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        count(&stdout, "!! unreadable line from the server"),
        GARBAGE.len(),
        "{stdout}"
    );
    for want in [
        "<eve> still alive",
        "-- you are now known as carol",
        "<carol> hello",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let heard = fake.heard.join().unwrap();
    assert!(
        heard.contains(&json!({"type": "group", "text": "hello"})),
        "{heard:?}"
    );
    assert_eq!(heard.last().unwrap()["type"], "quit");
}

/// A protocol 1 server (its welcome names no room) has no rooms: the
/// client says so and sends nothing for the room commands.
#[test]
fn room_commands_on_a_v1_server_are_refused_and_send_nothing() {
    let fake = fake_server(format!("{WELCOME}\n").into_bytes(), Answers::Nick);
    let out = run(
        &client_args(&fake, &[]),
        b"/join rust\n/rooms\nstill here\n",
        false,
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(count(&stdout, "this server has no rooms"), 2, "{stdout}");
    let heard = fake.heard.join().unwrap();
    let kinds: Vec<&str> = heard.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(kinds, ["nick", "group", "quit"], "{heard:?}");
    assert_eq!(heard[1]["text"], "still here");
}

#[test]
fn the_json_client_keeps_garbage_off_stdout_and_reports_it_on_stderr() {
    let fake = fake_server(welcome_garbage_and_a_message(), Answers::Nick);
    let out = run(&client_args(&fake, &["--json"]), b"hello\n", false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    // Stdout is protocol lines only: each one a message, known or (from a
    // newer server) unknown, passed on as it came.
    let kinds: Vec<String> = stdout
        .lines()
        .map(|line| match ServerMsg::decode(line.as_bytes()) {
            Ok(msg) => serde_json::to_value(&msg).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned(),
            Err(e) => panic!("{e}: {line:?} on stdout"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["welcome", "unknown", "group", "nick", "bye"],
        "{stdout}"
    );
    assert_eq!(
        count(&stderr, "!! unreadable line from the server"),
        GARBAGE.len(),
        "{stderr}"
    );
}

#[test]
fn a_line_longer_than_the_client_takes_is_skipped_with_a_note() {
    // Just past the 64 MiB the client accepts from a server.
    let mut opening = format!("{WELCOME}\n").into_bytes();
    opening.extend(std::iter::repeat_n(b'x', (64 << 20) + 1));
    opening.push(b'\n');
    opening.extend_from_slice(format!("{STILL_ALIVE}\n").as_bytes());
    let fake = fake_server(opening.clone(), Answers::Nick);
    let out = run(&client_args(&fake, &[]), b"hello\n", false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        count(&stdout, "!! the server sent an overlong line"),
        1,
        "{stdout}"
    );
    // Said in its place among the lines around it.
    let at = |needle: &str| stdout.find(needle).unwrap_or(usize::MAX);
    assert!(
        at("Welcome to the fake!") < at("overlong") && at("overlong") < at("<eve> still alive"),
        "{stdout}"
    );

    let fake = fake_server(opening, Answers::Nick);
    let script = "say hi\nexpect group eve \"still alive\"\n";
    let out = run(&bot_args(&fake), script.as_bytes(), false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        count(&stdout, "!! the server sent an endless line"),
        1,
        "{stdout}"
    );
}

#[test]
fn a_connection_cut_in_the_middle_of_a_line_ends_the_client_with_status_1() {
    let fake = fake_server(format!("{WELCOME}\n").into_bytes(), Answers::NickThenCut);
    let mut child = chat()
        .args(client_args(&fake, &[]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The client tries to connect again; the end of its input stops it.
    let mut shown = Vec::new();
    for line in BufReader::new(child.stdout.as_mut().unwrap()).lines() {
        let line = line.unwrap();
        let retrying = line.contains("trying again in");
        shown.push(line);
        if retrying {
            break;
        }
    }
    drop(child.stdin.take());
    let mut out = common::finish_within(child);
    out.stdout = [shown.join("\n").into_bytes(), b"\n".to_vec(), out.stdout].concat();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "chat: lost the connection to {}: the server closed the connection",
            fake.addr
        )
    );
    assert!(!stdout.contains("eve"), "a cut line was shown: {stdout}");
    assert!(stdout.contains("trying again in"), "{stdout}");
}

#[test]
fn a_server_that_never_welcomes_is_given_up_with_status_1() {
    // What answering an SSH port looks like.
    let fake = fake_server(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), Answers::Nick);
    let out = run(&client_args(&fake, &[]), b"hello\n", true);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(count(&stdout, "!! unreadable line from the server"), 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "chat: no welcome from {} within 5 s; is it a chat server?",
            fake.addr
        )
    );
    let heard = fake.heard.join().unwrap();
    assert!(
        heard.is_empty(),
        "the client sent {heard:?} without a welcome"
    );
}

#[test]
fn an_unanswered_nick_leaves_the_client_chatting_under_its_guest_name() {
    let fake = fake_server(format!("{WELCOME}\n").into_bytes(), Answers::NotNick);
    let out = run(&client_args(&fake, &[]), b"hello\n", false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "!! the server did not answer the request for a nickname; you are still guest1"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("<guest1> hello"), "{stdout}");
    let heard = fake.heard.join().unwrap();
    let kinds: Vec<&Value> = heard.iter().map(|m| &m["type"]).collect();
    assert_eq!(kinds, ["nick", "group", "quit"]);
}

#[test]
fn the_bot_reports_each_garbage_line_and_its_script_still_holds() {
    let fake = fake_server(welcome_garbage_and_a_message(), Answers::Nick);
    let script = "say hi\nexpect group eve \"still alive\"\n";
    let out = run(&bot_args(&fake), script.as_bytes(), false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        count(&stdout, "!! unreadable line from the server"),
        GARBAGE.len(),
        "{stdout}"
    );
    assert!(stdout.contains("ok: group from eve"), "{stdout}");
    let heard = fake.heard.join().unwrap();
    assert!(
        heard.contains(&json!({"type": "group", "text": "hi"})),
        "{heard:?}"
    );
}

#[test]
fn the_bot_fails_cleanly_on_a_server_that_never_welcomes() {
    let fake = fake_server(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), Answers::Nick);
    let out = run(&bot_args(&fake), b"say hi\n", false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "chat: <stdin>:1: @bot got no welcome from {} within 2s",
            fake.addr
        )
    );
}

#[test]
fn the_bot_fails_cleanly_when_the_connection_is_cut_mid_line() {
    let fake = fake_server(format!("{WELCOME}\n").into_bytes(), Answers::NickThenCut);
    let out = run(&bot_args(&fake), b"say hi\nexpect group eve\n", false);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("@bot lost its connection to {}", fake.addr)),
        "{stderr}"
    );
}
