//! `chat bot` against a live server: the stories in `bots/` pass, and every
//! way a script can fail ends with the documented exit status and a
//! `FILE:LINE` message that says what went wrong.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use common::{Server, WAIT, chat};
use serde_json::json;

/// A fresh directory for one test's scripts, so that messages name them
/// as `NAME.chat`, relative, the way a user would type them. Removed on
/// drop.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(files: &[(&str, &str)]) -> Scratch {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chat-bot-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    Scratch(dir)
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// A `chat bot ...` command run in `dir`, against `server` when given.
fn bot(dir: &Path, server: Option<&Server>, args: &[&str]) -> Command {
    let mut cmd = chat();
    cmd.current_dir(dir).arg("bot").args(args);
    if let Some(server) = server {
        cmd.args(["--server", &server.addr.to_string()]);
    }
    cmd
}

/// Spawns with piped output, collected by threads so a full pipe cannot
/// block the bot.
fn spawn(
    cmd: &mut Command,
    stdin: Option<&str>,
) -> (Child, JoinHandle<String>, JoinHandle<String>) {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat bot");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    (child, out, err)
}

/// Waits for the bot to exit (bounded), killing it if it does not.
fn finish(mut child: Child, out: JoinHandle<String>, err: JoinHandle<String>) -> Run {
    let deadline = Instant::now() + 3 * WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chat bot did not finish in time");
        }
        std::thread::sleep(std::time::Duration::from_millis(10)); // polling a child's exit
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn run(mut cmd: Command) -> Run {
    let (child, out, err) = spawn(&mut cmd, None);
    finish(child, out, err)
}

fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Run {
    let (child, out, err) = spawn(cmd, Some(stdin));
    finish(child, out, err)
}

/// A local port nobody listens on.
fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

fn stories() -> Vec<PathBuf> {
    let bots = Path::new(env!("CARGO_MANIFEST_DIR")).join("bots");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&bots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "chat"))
        .collect();
    scripts.sort();
    scripts
}

/// Runs each story against a fresh server (names used by one story are
/// free for the next) and checks it passes quietly.
fn run_stories(scripts: Vec<PathBuf>) {
    let bots = Path::new(env!("CARGO_MANIFEST_DIR")).join("bots");
    for script in scripts {
        // A fresh server each: names used by one story are free for the next.
        let server = Server::start(&[]);
        let r = run(bot(&bots, Some(&server), &[script.to_str().unwrap()]));
        assert_eq!(
            r.code(),
            0,
            "{} failed:\n{}\n{}",
            script.display(),
            r.stdout,
            r.stderr
        );
        assert!(
            r.stdout.contains(" ok: "),
            "{}: {}",
            script.display(),
            r.stdout
        );
        assert_eq!(r.stderr, "", "{}", script.display());
    }
}

#[test]
fn every_story_in_bots_runs_clean() {
    let scripts = stories();
    assert!(
        scripts.iter().any(|p| p.ends_with("rooms.chat")),
        "{scripts:?}"
    );
    assert!(scripts.len() >= 5, "bots/ has only {scripts:?}");
    run_stories(scripts);
}

#[test]
fn the_spec_example_runs_and_prints_the_client_format() {
    let server = Server::start(&[]);
    let dir = scratch(&[(
        "example.chat",
        "# two users greet each other, a third arrives late, one leaves\n\
         @alice say hello, world\n\
         @bob   expect group alice \"hello, world\"\n\
         @bob   msg alice hi alice\n\
         @alice expect private bob \"hi *\"\n\
         @carol connect\n\
         @bob   expect join carol\n\
         @alice quit bye now\n\
         @bob   expect leave alice\n",
    )]);
    let r = run(bot(&dir, Some(&server), &["example.chat"]));
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    for wanted in [
        "@alice -- Welcome to the chat room! (1 user online; you are guest1)",
        "@alice -- you are now known as alice",
        "@bob -- Welcome to the chat room! (2 users online; you are guest2)",
        "@alice <alice> hello, world",
        "@bob <alice> hello, world",
        "@bob ok: group from alice \"hello, world\"",
        "@bob -> *alice* hi alice",
        "@alice *bob* hi alice",
        "@alice -- bob joined",
        "@bob -- carol joined",
        "@bob ok: join carol",
        "@bob -- alice left (quit: bye now)",
        "@bob ok: leave alice",
    ] {
        assert!(lines.contains(&wanted), "no {wanted:?} in:\n{}", r.stdout);
    }
    assert!(
        !r.stdout.contains('\x1b'),
        "colour on a pipe:\n{}",
        r.stdout
    );
    // An arrival is one line, by the name the newcomer took (issue 10).
    assert!(
        !r.stdout.contains("guest2 joined") && !r.stdout.contains("is now known as carol"),
        "an arrival shown as two lines:\n{}",
        r.stdout
    );
    // Steps run in order: alice spoke before bob's expect, carol came after.
    let at = |l: &str| lines.iter().position(|x| *x == l).unwrap();
    assert!(at("@alice <alice> hello, world") < at("@bob ok: group from alice \"hello, world\""));
    assert!(at("@bob ok: leave alice") == lines.len() - 1);

    let quiet = run(bot(&dir, Some(&server), &["example.chat", "--quiet"]));
    assert_eq!(quiet.code(), 0, "{}", quiet.stderr);
    assert_eq!(quiet.stdout, "", "--quiet prints only failures");
}

#[test]
fn a_script_in_unicode_names_runs_clean() {
    let server = Server::start(&[]);
    let dir = scratch(&[(
        "names.chat",
        "@小明 join Café\n\
         @Ольга join CAFÉ\n\
         @小明 in café expect join Ольга\n\
         @小明 in café say 你好\n\
         @ОЛЬГА in café expect group 小明 \"你好\"\n\
         @Ольга msg 小明 привет\n\
         @小明 expect private ольга \"привет\"\n",
    )]);
    let r = run(bot(&dir, Some(&server), &["names.chat"]));
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("@Ольга ok: group from 小明 \"你好\""),
        "{}",
        r.stdout
    );
}

#[test]
fn a_failed_expect_names_the_line_and_what_did_arrive() {
    let server = Server::start(&[]);
    let dir = scratch(&[(
        "greet.chat",
        "@alice say hi\n\
         @alice say there\n\
         \n\
         # bob waits for something nobody says\n\
         @bob expect group alice \"hello*\" within 300ms\n\
         @bob say never reached\n",
    )]);
    let r = run(bot(&dir, Some(&server), &["greet.chat", "--quiet"]));
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        "chat: greet.chat:5: @bob expected group from alice \"hello*\" within 300ms; \
         bob received: group alice \"hi\", group alice \"there\"\n"
    );

    // The spec's own example: a late arrival is listed by the name it took.
    let dir = scratch(&[(
        "greet.chat",
        "@bob who\n\
         @bob expect who bob\n\
         @carol connect\n\
         @carol say hi\n\
         # line 6:\n\
         @bob expect group alice \"hello*\"\n",
    )]);
    let r = run(bot(&dir, Some(&server), &["greet.chat", "--timeout", "1s"]));
    assert_eq!(r.code(), 1);
    assert_eq!(
        r.stderr,
        "chat: greet.chat:6: @bob expected group from alice \"hello*\" within 1s; \
         bob received: join carol, group carol \"hi\"\n"
    );
    assert!(
        r.stdout.contains("@bob <carol> hi"),
        "the transcript still shows what came:\n{}",
        r.stdout
    );
}

#[test]
fn an_invalid_script_lists_every_bad_line_and_connects_nothing() {
    let server = Server::start(&[]);
    let dir = scratch(&[(
        "bad.chat",
        "@alice say hi\n\
         @alice sya hello\n\
         @bob expect group alice \"unterminated\n\
         sleep 5\n\
         @carol say hi\n\
         @carol connect\n\
         @guest7 say hi\n\
         msg bob\n\
         @bob expect party\n",
    )]);
    let r = run(bot(&dir, Some(&server), &["bad.chat"]));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    let lines: Vec<&str> = r.stderr.lines().collect();
    let wanted = [
        "chat: bad.chat:2: unknown verb \"sya\"",
        "chat: bad.chat:3: unterminated quote",
        "chat: bad.chat:4: \"5\" is not a duration",
        "chat: bad.chat:6: connect must be an actor's first step",
        "chat: bad.chat:7: bad nick \"@guest7\"",
        "chat: bad.chat:8: msg bob needs a TEXT",
        "chat: bad.chat:9: unknown KIND \"party\"",
    ];
    assert_eq!(lines.len(), wanted.len(), "{}", r.stderr);
    for (line, wanted) in lines.iter().zip(wanted) {
        assert!(line.starts_with(wanted), "{line:?} is not {wanted:?}");
    }
    // Nothing connected: the first connection the server sees gets id 1.
    let mut probe = server.connect();
    let welcome = probe.recv();
    assert_eq!(welcome["id"], 1, "{welcome}");
}

#[test]
fn a_missing_script_is_one_line_and_exit_2() {
    let dir = scratch(&[]);
    let r = run(bot(&dir, None, &["nowhere.chat", "--server", &dead_addr()]));
    assert_eq!(r.code(), 2);
    assert_eq!(
        r.stderr,
        "chat: cannot read the script nowhere.chat: No such file or directory\n"
    );
    let r = run(bot(&dir, None, &["nowhere.chat", "--timeout", "0s"]));
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr
            .starts_with("chat: --timeout must be longer than 0"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_refused_connection_names_the_address() {
    let dir = scratch(&[("hi.chat", "# hello\n@alice say hi\n")]);
    let addr = dead_addr();
    let r = run(bot(&dir, None, &["hi.chat", "--server", &addr]));
    assert_eq!(r.code(), 1);
    assert_eq!(
        r.stderr,
        format!("chat: hi.chat:2: @alice cannot connect to {addr}: Connection refused\n")
    );
}

#[test]
fn a_dropped_connection_names_the_actor() {
    let mut server = Server::start(&[]);
    let dir = scratch(&[(
        "drop.chat",
        "@alice say anyone?\n@alice expect group nobody within 20s\n",
    )]);
    // Stop the server without a goodbye once alice has spoken.
    let mut watcher = server.join("watcher");
    let (child, out, err) = spawn(&mut bot(&dir, Some(&server), &["drop.chat"]), None);
    assert_eq!(watcher.recv_type("group")["text"], "anyone?");
    server.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
    let r = finish(child, out, err);
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "chat: drop.chat:2: @alice lost its connection to {}",
            server.addr
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn a_server_shutdown_is_a_bye_a_script_can_expect() {
    let mut server = Server::start(&[]);
    let dir = scratch(&[(
        "shutdown.chat",
        "@alice say going down?\n@alice expect bye shutdown within 20s\n",
    )]);
    let mut watcher = server.join("watcher");
    let (child, out, err) = spawn(&mut bot(&dir, Some(&server), &["shutdown.chat"]), None);
    assert_eq!(watcher.recv_type("group")["text"], "going down?");
    server.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    let r = finish(child, out, err);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("@alice ok: bye shutdown"), "{}", r.stdout);
}

#[test]
fn an_actor_whose_nick_is_refused_fails_the_script() {
    let server = Server::start(&[]);
    let mut alice = server.join("alice");
    let dir = scratch(&[("twin.chat", "@bob say hi\n@alice say me too\n")]);
    let r = run(bot(&dir, Some(&server), &["twin.chat"]));
    assert_eq!(r.code(), 1, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("chat: twin.chat:2: @alice could not take its nickname: "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.trim_end().ends_with("(nick_in_use)"),
        "{}",
        r.stderr
    );
    // Bob connected first and was never allowed to speak.
    for msg in alice.sync() {
        assert_ne!(msg["type"], "group", "{msg}");
    }
}

#[test]
fn a_nick_step_refused_by_someone_outside_the_script_fails_it() {
    let server = Server::start(&[]);
    let _robert = server.join("robert");
    let dir = scratch(&[("rename.chat", "@bob nick robert\n@robert say hi\n")]);
    let r = run(bot(&dir, Some(&server), &["rename.chat"]));
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr
            .starts_with("chat: rename.chat:1: @bob could not take the nickname robert: "),
        "{}",
        r.stderr
    );
}

#[test]
fn a_script_can_come_from_standard_input() {
    let server = Server::start(&[]);
    let dir = scratch(&[]);
    let good = "@alice say hi\n@bob expect group alice hi\n";
    let r = run_with_stdin(&mut bot(&dir, Some(&server), &["-"]), good);
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let r = run_with_stdin(
        &mut bot(&dir, Some(&server), &["-"]),
        "@alice say hi\nshout\n",
    );
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr
            .starts_with("chat: <stdin>:2: unknown verb \"shout\""),
        "{}",
        r.stderr
    );
}

#[test]
fn the_default_actor_is_the_nick_option_and_only_connects_when_used() {
    let server = Server::start(&[]);
    let mut watcher = server.join("watcher");
    let dir = scratch(&[
        ("sleepy.chat", "sleep 10ms\n@alice say hi\n"),
        ("announce.chat", "say deployed\nexpect who deployer\n"),
    ]);
    let r = run(bot(&dir, Some(&server), &["sleepy.chat"]));
    assert_eq!(r.code(), 0, "{}", r.stderr);
    let seen = watcher.sync();
    let joined: Vec<&str> = seen
        .iter()
        .filter(|m| m["type"] == "nick")
        .map(|m| m["new"].as_str().unwrap())
        .collect();
    assert_eq!(joined, ["alice"], "sleep made someone connect: {seen:?}");

    // `expect who` needs a `who` first: this one fails, naming the actor.
    let r = run(bot(
        &dir,
        Some(&server),
        &["announce.chat", "--nick", "deployer", "--timeout", "200ms"],
    ));
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr.starts_with(
            "chat: announce.chat:2: @deployer expected who listing deployer within 200ms"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(watcher.recv_type("group")["from"], "deployer");
}

/// Five hundred actors in one script run on the bot's one thread.
#[test]
fn five_hundred_actors_share_one_event_loop() {
    const N: usize = 500;
    let server = Server::start(&[]);
    let mut watcher = server.join("watcher");
    let mut script = String::new();
    for i in 1..=N {
        script.push_str(&format!("@u{i} msg u1 here\n"));
    }
    script.push_str("@u1 msg watcher all here\n");
    script.push_str("@u1 expect private watcher go within 30s\n");
    script.push_str("@u1 say hello, all of you\n");
    script.push_str(&format!("@u{N} expect group u1 hello*\n"));
    script.push_str(&format!("@u{} expect group u1 hello*\n", N / 2));
    script.push_str(&format!("@u1 expect join u{N}\n"));
    script.push_str(&format!("@u1 expect private u{N} here\n"));
    let dir = scratch(&[("crowd.chat", &script)]);
    let (child, out, err) = spawn(
        &mut bot(
            &dir,
            Some(&server),
            &["crowd.chat", "--quiet", "--timeout", "30s"],
        ),
        None,
    );
    // Every actor is connected once u1 speaks (they connect before the
    // first step); now count the bot's threads.
    let note = loop {
        let msg = watcher.recv();
        if msg["type"] == "private" {
            break msg;
        }
    };
    assert_eq!(note["from"], "u1");
    let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .count();
    assert_eq!(tasks, 1, "the bot runs {tasks} threads for {N} actors");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .count();
    assert!(fds > N, "only {fds} descriptors open for {N} actors");
    watcher.send(&json!({"type": "private", "to": "u1", "text": "go"}));
    let r = finish(child, out, err);
    assert_eq!(r.code(), 0, "{}", r.stderr);
}

/// The transcript is line-buffered through a pipe: a reader sees each line
/// as it happens, which is what makes a bot usable as a live monitor.
#[test]
fn the_transcript_arrives_while_the_script_runs() {
    let server = Server::start(&[]);
    let mut watcher = server.join("watcher");
    let dir = scratch(&[(
        "wait.chat",
        "@alice say ready\n@alice expect private watcher go within 20s\n",
    )]);
    let mut cmd = bot(&dir, Some(&server), &["wait.chat"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first_said = loop {
        let line = lines.next().expect("transcript line").unwrap();
        if line.contains("<alice>") {
            break line;
        }
    };
    assert_eq!(first_said, "@alice <alice> ready");
    watcher.send(&json!({"type": "private", "to": "alice", "text": "go"}));
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(rest.contains(&"@alice *watcher* go".to_owned()), "{rest:?}");
    assert!(child.wait().unwrap().success());
}

/// Runs a script with its standard output on a pseudo-terminal and returns
/// what the terminal showed.
fn on_a_terminal(server: &Server, dir: &Path, script: &str, no_color: Option<&str>) -> String {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut cmd = bot(dir, Some(server), &[script]);
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The command held the only other copy of the slave side; once the bot
    // exits, reading the master ends (EIO).
    drop(cmd);
    let mut shown = Vec::new();
    let mut master = std::fs::File::from(pty.master);
    let _ = master.read_to_end(&mut shown);
    assert!(child.wait().unwrap().success());
    String::from_utf8(shown).unwrap()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let server = Server::start(&[]);
    let dir = scratch(&[(
        "hi.chat",
        "@alice msg zed hello?\n@alice expect error no_such_user\n",
    )]);
    let coloured = on_a_terminal(&server, &dir, "hi.chat", None);
    assert!(
        coloured.contains("\x1b[31m!! no user named zed\x1b[0m"),
        "{coloured:?}"
    );
    let plain = on_a_terminal(&server, &dir, "hi.chat", Some("1"));
    assert!(plain.contains("@alice !! no user named zed"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

/// A newcomer who keeps its guest name still shows as it came: the join
/// held back for a rename comes out before the actor's next line.
#[test]
fn a_newcomer_who_never_renames_is_shown_by_its_guest_name() {
    let server = Server::start(&[]);
    let mut watcher = server.join("watcher");
    let dir = scratch(&[(
        "guest.chat",
        "@alice say ready\n@alice expect join guest* within 20s\n",
    )]);
    let (child, out, err) = spawn(&mut bot(&dir, Some(&server), &["guest.chat"]), None);
    assert_eq!(watcher.recv_type("group")["text"], "ready");
    let mut guest = server.connect();
    let id = guest.recv_type("welcome")["id"].clone();
    let r = finish(child, out, err);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let joined = format!("@alice -- guest{id} joined");
    let at = |l: &str| lines.iter().position(|x| *x == l);
    assert!(
        at(&joined) < at("@alice ok: join guest*") && at(&joined).is_some(),
        "{}",
        r.stdout
    );
}

/// `me` sends an action (issue 10's `/me`): others receive a group message
/// with `"action":true`, `expect action` waits for one, and the transcript
/// shows it as `* alice waves`.
#[test]
fn actions_are_sent_expected_and_shown_as_a_star() {
    let server = Server::start(&[]);
    let mut watcher = server.join("watcher");
    let dir = scratch(&[
        (
            "wave.chat",
            "@alice me waves at bob\n\
             @bob expect action alice \"waves*\"\n\
             @bob say hi alice\n\
             @alice expect group bob\n",
        ),
        (
            "mixup.chat",
            "@alice me waves\n@bob expect group alice within 300ms\n",
        ),
    ]);
    let r = run(bot(&dir, Some(&server), &["wave.chat"]));
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    for wanted in [
        "@alice * alice waves at bob",
        "@bob * alice waves at bob",
        "@bob ok: action from alice \"waves*\"",
        "@alice <bob> hi alice",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == wanted),
            "no {wanted:?} in:\n{}",
            r.stdout
        );
    }
    let waved = watcher.recv_type("group");
    assert_eq!(waved["text"], "waves at bob", "{waved}");
    assert_eq!(waved["action"], true, "{waved}");
    assert_eq!(
        watcher.recv_type("group")["action"],
        serde_json::Value::Null
    );

    // An action is not a `group`; the failure says what came instead.
    let r = run(bot(&dir, Some(&server), &["mixup.chat"]));
    assert_eq!(r.code(), 1, "{}", r.stdout);
    assert_eq!(
        r.stderr,
        "chat: mixup.chat:2: @bob expected group from alice within 300ms; \
         bob received: action alice \"waves\"\n"
    );
}

#[test]
fn bad_room_steps_are_reported_before_anything_connects() {
    let server = Server::start(&[]);
    let dir = scratch(&[(
        "rooms.chat",
        "@alice join 9lives\n\
         @alice in rust msg bob hi\n\
         @alice topic rust\n\
         @bob in rust expect private alice\n\
         @bob in rust say hi\n",
    )]);
    let r = run(bot(&dir, Some(&server), &["rooms.chat"]));
    assert_eq!(r.code(), 2, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let wanted = [
        "chat: rooms.chat:1: bad room \"9lives\" after join: ",
        "chat: rooms.chat:2: in ROOM goes only with say, me and expect, not with msg",
        "chat: rooms.chat:3: topic rust needs a TEXT (\"\" clears the topic)",
        "chat: rooms.chat:4: expect private happens in no room; drop the `in rust`",
    ];
    assert_eq!(lines.len(), wanted.len(), "{}", r.stderr);
    for (line, wanted) in lines.iter().zip(wanted) {
        assert!(line.starts_with(wanted), "{line:?} is not {wanted:?}");
    }
    let mut probe = server.connect();
    assert_eq!(probe.recv()["id"], 1, "something connected");
}

/// A one-connection stand-in for a server with rooms, for the bot's side
/// of them until the real one lands: it welcomes as protocol v2 in `lobby`,
/// grants `nick`, answers `join` with `joined` (and eve saying hi in the
/// room), `topic` with its announcement, `part` with `parted`, and `quit`
/// with `bye`, `ping` with `pong`. It refuses a join to `full` with
/// `too_many_rooms` and a message to `nowhere` with `not_in_room`; with
/// `v1`, it refuses every room message with `unknown_type`, as a server
/// without rooms does.
fn fake_rooms_server(v1: bool) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serve = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut send = |msg: serde_json::Value| {
            let _ = writeln!(out, "{msg}");
        };
        send(
            json!({"type": "welcome", "id": 1, "nick": "guest1", "text": "Fake rooms",
                    "users": 1, "protocol": 2, "room": "lobby"}),
        );
        let mut nick = "guest1".to_owned();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let msg: serde_json::Value = serde_json::from_str(&line).unwrap();
            let room = msg["room"].as_str().unwrap_or("").to_owned();
            match msg["type"].as_str().unwrap_or("") {
                "nick" => {
                    let new = msg["nick"].as_str().unwrap().to_owned();
                    send(json!({"type": "nick", "id": 1, "old": nick, "new": new, "ts": 1}));
                    nick = new;
                }
                "join" | "part" | "topic" if v1 => send(json!({"type": "error",
                    "code": "unknown_type", "message": format!("unknown message type \"{}\"", msg["type"].as_str().unwrap())})),
                "join" if room == "full" => send(json!({"type": "error",
                    "code": "too_many_rooms", "message": "you are in too many rooms"})),
                "join" => {
                    send(json!({"type": "joined", "room": room, "topic": "Rust talk",
                                "users": [{"id": 1, "nick": nick}, {"id": 2, "nick": "eve"}]}));
                    send(
                        json!({"type": "group", "from": "eve", "text": "hi", "ts": 1,
                                "room": room, "seq": 7}),
                    );
                }
                "part" => send(json!({"type": "parted", "room": room})),
                "ping" => send(json!({"type": "pong", "token": msg["token"]})),
                "group" if room == "nowhere" => send(json!({"type": "error",
                    "code": "not_in_room", "message": "you are not in nowhere"})),
                "topic" => send(json!({"type": "topic", "room": room, "by": nick,
                                       "text": msg["text"], "ts": 1})),
                "quit" => {
                    send(json!({"type": "bye", "reason": "quit"}));
                    return;
                }
                _ => {}
            }
        }
    });
    (addr, serve)
}

#[test]
fn join_waits_for_joined_and_room_lines_name_their_room() {
    let (addr, serve) = fake_rooms_server(false);
    let dir = scratch(&[(
        "rooms.chat",
        "@alice join Rust\n\
         @alice expect joined rust \"Rust talk\"\n\
         @alice in rust expect group eve hi\n\
         @alice in rust say hello eve\n\
         @alice topic rust Rust talk, all day\n\
         @alice expect topic rust \"*all day\"\n\
         @alice part rust\n\
         @alice expect parted rust\n\
         @alice in lobby expect group eve within 100ms\n",
    )]);
    let r = run(bot(&dir, None, &["rooms.chat", "--server", &addr]));
    serve.join().unwrap();
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    for wanted in [
        "@alice -- you are in rust (2 here: alice, eve); topic: Rust talk",
        "@alice ok: joined rust \"Rust talk\"",
        "@alice [rust] <eve> hi",
        "@alice ok: group from eve \"hi\" in rust",
        "@alice [rust] <alice> hello eve",
        "@alice [rust] -- alice set the topic: Rust talk, all day",
        "@alice ok: topic rust \"*all day\"",
        "@alice -- you left rust",
        "@alice ok: parted rust",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == wanted),
            "no {wanted:?} in:\n{}",
            r.stdout
        );
    }
    // The last line looks in the lobby, where eve said nothing.
    assert_eq!(
        r.stderr,
        "chat: rooms.chat:9: @alice expected group from eve in lobby within 100ms; \
         alice received nothing\n"
    );
}

/// An earlier step's refusal still on its way is not taken for the answer
/// to a `join`.
#[test]
fn a_join_is_not_refused_by_an_earlier_steps_error() {
    let (addr, serve) = fake_rooms_server(false);
    let dir = scratch(&[(
        "stray.chat",
        "@alice in nowhere say hi\n@alice join rust\n@alice expect error not_in_room\n",
    )]);
    let r = run(bot(&dir, None, &["stray.chat", "--server", &addr]));
    serve.join().unwrap();
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("@alice ok: error not_in_room"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_failure_names_the_room_of_what_did_arrive() {
    let (addr, serve) = fake_rooms_server(false);
    let dir = scratch(&[(
        "elsewhere.chat",
        "@alice join rust\n@alice expect group eve within 100ms\n@alice in go expect group eve within 100ms\n",
    )]);
    let r = run(bot(&dir, None, &["elsewhere.chat", "--server", &addr]));
    serve.join().unwrap();
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("@alice ok: group from eve\n"),
        "without `in`, any room:\n{}",
        r.stdout
    );
    assert_eq!(
        r.stderr,
        "chat: elsewhere.chat:3: @alice expected group from eve in go within 100ms; \
         alice received: joined rust \"Rust talk\"\n"
    );
}

#[test]
fn a_refused_join_fails_the_script_naming_the_actor_and_the_room() {
    let (addr, serve) = fake_rooms_server(false);
    let dir = scratch(&[(
        "full.chat",
        "@alice join rust\n@alice join full\n@alice say never\n",
    )]);
    let r = run(bot(&dir, None, &["full.chat", "--server", &addr]));
    serve.join().unwrap();
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr,
        "chat: full.chat:2: @alice could not join full: you are in too many rooms (too_many_rooms)\n"
    );
    assert!(!r.stdout.contains("never"), "{}", r.stdout);

    // A server without rooms says so, and the line says what that means.
    let (addr, serve) = fake_rooms_server(true);
    let dir = scratch(&[("old.chat", "@alice say hi\n@alice part rust bye\n")]);
    let r = run(bot(&dir, None, &["old.chat", "--server", &addr]));
    serve.join().unwrap();
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr,
        "chat: old.chat:2: @alice could not part rust: unknown message type \"part\" (unknown_type); \
         this server does not serve rooms (they need protocol v2)\n"
    );
}

/// Two actors meet in a room on the real server: `join` has been granted
/// before the next step runs, so bob's arrival and words reach alice.
#[test]
fn actors_meet_in_a_room_on_the_real_server() {
    let server = Server::start(&[]);
    let mut watcher = server.join("watcher");
    let dir = scratch(&[(
        "meet.chat",
        "@alice join rust\n\
         @bob join rust\n\
         @alice in rust expect join bob\n\
         @bob in rust say hi alice\n\
         @alice in rust expect group bob \"hi alice\"\n\
         @alice in rust me waves\n\
         @bob in rust expect action alice waves\n\
         @bob say back in the lobby\n\
         @alice in lobby expect group bob back*\n\
         @bob part rust bye\n\
         @alice in rust expect leave bob bye\n",
    )]);
    let r = run(bot(&dir, Some(&server), &["meet.chat"]));
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    for wanted in [
        "@alice [rust] -- bob joined",
        "@alice [rust] <bob> hi alice",
        "@bob [rust] * alice waves",
        "@alice <bob> back in the lobby",
        "@alice ok: leave bob \"bye\" in rust",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == wanted),
            "no {wanted:?} in:\n{}",
            r.stdout
        );
    }
    // The lobby heard only what was said in the lobby.
    let texts: Vec<String> = watcher
        .sync()
        .iter()
        .filter(|m| m["type"] == "group")
        .map(|m| m["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(texts, ["back in the lobby"]);
}

#[test]
fn refusals_of_room_steps_fail_the_script_on_the_real_server() {
    let server = Server::start(&["--max-rooms", "2"]);
    let dir = scratch(&[
        ("many.chat", "join r1\njoin r2\njoin r3\nsay never\n"),
        ("stranger.chat", "part rust\n"),
    ]);
    let r = run(bot(&dir, Some(&server), &["many.chat"]));
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.starts_with("chat: many.chat:")
            && r.stderr.contains(": @bot could not join r")
            && r.stderr.ends_with("(too_many_rooms)\n"),
        "{}",
        r.stderr
    );
    assert!(!r.stdout.contains("never"), "{}", r.stdout);
    let r = run(bot(&dir, Some(&server), &["stranger.chat"]));
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .starts_with("chat: stranger.chat:1: @bot could not part rust: ")
            && r.stderr.ends_with("(not_in_room)\n"),
        "{}",
        r.stderr
    );
}

#[test]
fn history_shows_what_survived_a_restart_and_expect_history_checks_it() {
    let db_dir = common::TempDir::new("bot-history");
    let db = db_dir.path.join("chat.db");
    let db = db.to_str().unwrap();
    let dir = scratch(&[
        (
            "before.chat",
            "@alice join rust\n\
             @alice in rust say before the restart\n\
             @alice in rust me waves\n\
             @alice history rust\n\
             @alice expect history rust alice \"before the*\"\n",
        ),
        (
            "after.chat",
            "@bob history rust 5\n\
             @bob expect history rust alice \"before the restart\"\n\
             @bob history rust\n\
             @bob expect history rust carol within 1s\n",
        ),
    ]);
    let mut server = Server::start(&["--db", db]);
    let r = run(bot(&dir, Some(&server), &["before.chat"]));
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        server
            .signal_and_wait(nix::sys::signal::Signal::SIGTERM)
            .code(),
        Some(0)
    );

    let server = Server::start(&["--db", db]);
    let r = run(bot(&dir, Some(&server), &["after.chat"]));
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "@bob -- history of rust: 2 messages")
        .unwrap_or_else(|| panic!("no history header in:\n{}", r.stdout));
    let said = |line: &str, wanted: &str| {
        // `@bob [14:05] <alice> ...`: the time it was said, then the line.
        line.strip_prefix("@bob [")
            .and_then(|l| l.split_once("] "))
            .is_some_and(|(_, rest)| rest == wanted)
    };
    assert!(
        said(lines[at + 1], "<alice> before the restart"),
        "{}",
        r.stdout
    );
    assert!(said(lines[at + 2], "* alice waves"), "{}", r.stdout);
    assert_eq!(lines[at + 3], "@bob -- end of history");
    assert!(
        r.stdout
            .contains("@bob ok: history of rust from alice \"before the restart\"\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.starts_with(
            "chat: after.chat:4: @bob expected history of rust from carol within 1s; "
        ) && r.stderr.contains(
            "bob received: history of rust [alice \"before the restart\", alice \"waves\"]"
        ),
        "{}",
        r.stderr
    );
}
