//! Accounts on the client's side: `chat client --account`, `/login`,
//! `/register`, `/logout`, and the bot's `login`, `register` and `logout`
//! steps, against a fake accounts server (the real one is on its own
//! branch): what they send, what they show, and that the password shows
//! nowhere but inside the `login` or `register` line itself.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use common::{Server, WAIT, chat, finish_within, output_with_input};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// How the fake server behaves.
#[derive(Clone, Copy, Default)]
struct Rules {
    /// The welcome says `"login":"required"`.
    required: bool,
    /// The first connection is cut right after its login is granted.
    cut_after_login: bool,
}

/// A fake accounts server on 127.0.0.1, one thread per connection: it
/// grants `nick`, logs in to any account with [`PASSWORD`], registers any
/// nickname, answers `ping`, `history` and `quit`, and keeps what each
/// connection sent.
struct Fake {
    addr: SocketAddr,
    heard: Arc<Mutex<Vec<Vec<Value>>>>,
}

impl Fake {
    fn start(rules: Rules) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let all = heard.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { break };
                let all = all.clone();
                all.lock().unwrap().push(Vec::new());
                std::thread::spawn(move || serve(stream, n, rules, &all));
            }
        });
        Fake { addr, heard }
    }

    /// What connection `n` sent so far.
    fn heard(&self, n: usize) -> Vec<Value> {
        self.heard
            .lock()
            .unwrap()
            .get(n)
            .cloned()
            .unwrap_or_default()
    }

    fn connections(&self) -> usize {
        self.heard.lock().unwrap().len()
    }
}

fn serve(mut stream: TcpStream, n: usize, rules: Rules, heard: &Mutex<Vec<Vec<Value>>>) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let id = n + 1;
    let mut nick = format!("guest{id}");
    let mut welcome = json!({"type": "welcome", "id": id, "nick": nick, "text": "fake",
                             "users": 1, "protocol": 2, "room": "lobby"});
    if rules.required {
        welcome["login"] = json!("required");
    }
    let send = |stream: &mut TcpStream, msg: Value| {
        let _ = stream.write_all(format!("{msg}\n").as_bytes());
    };
    send(&mut stream, welcome);
    let mut cut = false;
    for line in BufReader::new(stream.try_clone().unwrap()).lines() {
        let Ok(line) = line else { break };
        if cut {
            continue;
        }
        let msg: Value = serde_json::from_str(&line).unwrap();
        heard.lock().unwrap()[n].push(msg.clone());
        match msg["type"].as_str().unwrap_or_default() {
            "nick" => {
                let new = msg["nick"].as_str().unwrap_or_default().to_owned();
                send(
                    &mut stream,
                    json!({"type": "nick", "id": id, "old": nick, "new": new, "ts": 1}),
                );
                nick = new;
            }
            "login" if msg["password"] == PASSWORD => {
                let account = msg["account"].as_str().unwrap_or_default().to_owned();
                send(
                    &mut stream,
                    json!({"type": "nick", "id": id, "old": nick, "new": account, "ts": 1}),
                );
                send(
                    &mut stream,
                    json!({"type": "logged_in", "account": account}),
                );
                nick = account;
                if rules.cut_after_login && n == 0 {
                    // Closed for writing only, and what the client sends
                    // after is read and dropped: a close with unread input
                    // would be a reset, which loses the `logged_in` above.
                    let _ = stream.shutdown(Shutdown::Write);
                    cut = true;
                }
            }
            "login" => send(
                &mut stream,
                json!({"type": "error", "code": "login_failed",
                       "message": "wrong account or password"}),
            ),
            "register" => send(&mut stream, json!({"type": "registered", "account": nick})),
            "logout" => send(&mut stream, json!({"type": "logged_out"})),
            "ping" => send(&mut stream, json!({"type": "pong", "token": msg["token"]})),
            "history" => send(
                &mut stream,
                json!({"type": "history", "room": msg["room"], "messages": [], "more": false}),
            ),
            "quit" => {
                send(&mut stream, json!({"type": "bye", "reason": "quit"}));
                break;
            }
            _ => {}
        }
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The password appears in neither output stream.
fn assert_hidden(out: &Output) {
    let (stdout, stderr) = text(out);
    assert!(!stdout.contains(PASSWORD), "password on stdout:\n{stdout}");
    assert!(!stderr.contains(PASSWORD), "password on stderr:\n{stderr}");
}

fn kinds(heard: &[Value]) -> Vec<&str> {
    heard
        .iter()
        .map(|m| m["type"].as_str().unwrap_or_default())
        .collect()
}

#[test]
fn account_and_chat_password_log_in_first_and_the_password_shows_nowhere() {
    let fake = Fake::start(Rules::default());
    let mut cmd = chat();
    cmd.args([
        "client",
        "--server",
        &fake.addr.to_string(),
        "--account",
        "alice",
    ])
    .env("CHAT_PASSWORD", PASSWORD)
    .env("USER", "bob");
    let out = output_with_input(&mut cmd, b"hi\n/quit\n");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("-- logged in as alice"), "{stdout}");
    assert!(stdout.contains("<alice> hi"), "{stdout}");
    assert_hidden(&out);
    let heard = fake.heard(0);
    assert_eq!(
        heard[0],
        json!({"type": "login", "account": "alice", "password": PASSWORD})
    );
    // $USER is not asked for: the account is the name.
    assert!(!kinds(&heard).contains(&"nick"), "{heard:?}");
    let group = heard.iter().position(|m| m["type"] == "group").unwrap();
    assert_eq!(heard[group]["text"], "hi");
}

#[test]
fn typed_login_takes_the_next_line_as_its_password_and_never_says_it() {
    let fake = Fake::start(Rules::default());
    let mut cmd = chat();
    cmd.args([
        "client",
        "--server",
        &fake.addr.to_string(),
        "--nick",
        "bob",
    ]);
    let input = format!("/login alice\n{PASSWORD}\nhi\n/logout\n/quit\n");
    let out = output_with_input(&mut cmd, input.as_bytes());
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("-- logged in as alice"), "{stdout}");
    assert!(stdout.contains("-- logged out"), "{stdout}");
    assert_hidden(&out);
    let heard = fake.heard(0);
    let login = heard.iter().find(|m| m["type"] == "login").unwrap();
    assert_eq!(login["password"], PASSWORD);
    let said: Vec<&Value> = heard.iter().filter(|m| m["type"] == "group").collect();
    assert_eq!(
        said.len(),
        1,
        "only hi is said, not the password: {heard:?}"
    );
    assert_eq!(said[0]["text"], "hi");
}

#[test]
fn register_sends_the_next_line_and_a_cut_input_sends_nothing() {
    let fake = Fake::start(Rules::default());
    let mut cmd = chat();
    cmd.args([
        "client",
        "--server",
        &fake.addr.to_string(),
        "--nick",
        "carol",
    ]);
    let input = format!("/register\n{PASSWORD}\n/quit\n");
    let out = output_with_input(&mut cmd, input.as_bytes());
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("-- registered: the nickname carol is now yours"),
        "{stdout}"
    );
    assert_hidden(&out);
    let heard = fake.heard(0);
    let register = heard.iter().find(|m| m["type"] == "register").unwrap();
    assert_eq!(register["password"], PASSWORD);

    let fake = Fake::start(Rules::default());
    let mut cmd = chat();
    cmd.args([
        "client",
        "--server",
        &fake.addr.to_string(),
        "--nick",
        "carol",
    ]);
    let out = output_with_input(&mut cmd, b"/login carol\n");
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("!! the input ended before the password; nothing was sent"),
        "{stdout}"
    );
    assert!(!kinds(&fake.heard(0)).contains(&"login"));
}

#[test]
fn a_wrong_password_says_what_to_do() {
    let fake = Fake::start(Rules::default());
    let mut cmd = chat();
    cmd.args([
        "client",
        "--server",
        &fake.addr.to_string(),
        "--account",
        "alice",
    ])
    .env("CHAT_PASSWORD", "not it at all");
    let out = output_with_input(&mut cmd, b"/quit\n");
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("!! wrong account or password; check the account name and the password, then /login ACCOUNT again (you are guest1)"),
        "{stdout}"
    );
    assert!(!stdout.contains("not it at all"), "{stdout}");
}

#[test]
fn a_server_that_requires_login_is_said_so_and_nothing_else_is_sent() {
    let fake = Fake::start(Rules {
        required: true,
        ..Rules::default()
    });
    let mut cmd = chat();
    cmd.args([
        "client",
        "--server",
        &fake.addr.to_string(),
        "--nick",
        "bob",
    ]);
    let out = output_with_input(&mut cmd, b"/quit\n");
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("!! this server lets nobody in without an account: /login ACCOUNT to log in, or /register"),
        "{stdout}"
    );
    assert_eq!(kinds(&fake.heard(0)), ["quit"]);
}

#[test]
fn after_a_lost_connection_the_client_logs_in_again_first() {
    let fake = Fake::start(Rules {
        cut_after_login: true,
        ..Rules::default()
    });
    let mut child = chat()
        .args([
            "client",
            "--server",
            &fake.addr.to_string(),
            "--account",
            "alice",
        ])
        .env("CHAT_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let mut logins = 0;
    while logins < 2 {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("output ended; saw:\n{}", seen.join("\n")))
            .unwrap();
        logins += usize::from(line.contains("-- logged in as alice"));
        seen.push(line);
    }
    stdin.write_all(b"/quit\n").unwrap();
    drop(stdin);
    let rest = finish_within(child);
    let all = format!(
        "{}\n{}",
        seen.join("\n"),
        String::from_utf8_lossy(&rest.stdout)
    );
    assert!(all.contains("connected again"), "{all}");
    assert!(!all.contains(PASSWORD), "{all}");
    assert!(!String::from_utf8_lossy(&rest.stderr).contains(PASSWORD));
    assert_eq!(
        fake.connections(),
        2,
        "{all}\n{:?}",
        (0..fake.connections())
            .map(|n| fake.heard(n))
            .collect::<Vec<_>>()
    );
    let again = fake.heard(1);
    assert_eq!(
        again[0],
        json!({"type": "login", "account": "alice", "password": PASSWORD}),
        "{again:?}"
    );
}

#[test]
fn an_account_without_a_password_or_a_terminal_is_a_usage_error() {
    let fake = Fake::start(Rules::default());
    let mut cmd = chat();
    cmd.args([
        "client",
        "--server",
        &fake.addr.to_string(),
        "--account",
        "alice",
    ])
    .env_remove("CHAT_PASSWORD");
    // No controlling terminal: /dev/tty cannot be opened.
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let out = output_with_input(&mut cmd, b"");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--account alice needs a password: set $CHAT_PASSWORD"),
        "{stderr}"
    );
    assert_eq!(fake.connections(), 0, "nothing connects without it");
}

/// `chat bot` with `script` on stdin against `fake`, with `env` set.
fn bot(fake: &Fake, script: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = chat();
    cmd.args([
        "bot",
        "-",
        "--server",
        &fake.addr.to_string(),
        "--timeout",
        "5s",
    ])
    .env_remove("CHAT_PASSWORD");
    for (key, value) in env {
        cmd.env(key, value);
    }
    output_with_input(&mut cmd, script.as_bytes())
}

#[test]
fn bot_logs_in_registers_and_logs_out_with_passwords_from_the_environment() {
    let fake = Fake::start(Rules::default());
    let script = "@alice login\n@alice say hi\n@alice logout\n\
                  @bob register $BOB_PW\n@bob login robert $BOB_PW\n@robert say yo\n";
    let out = bot(
        &fake,
        script,
        &[("CHAT_PASSWORD", PASSWORD), ("BOB_PW", PASSWORD)],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for want in [
        "@alice -- logged in as alice",
        "@alice <alice> hi",
        "@alice -- logged out",
        "@bob -- registered: the nickname bob is now yours",
        "@robert -- logged in as robert",
    ] {
        assert!(stdout.contains(want), "missing {want:?}:\n{stdout}");
    }
    assert_hidden(&out);
    // alice's first step is its login: it never asked for a nickname.
    let alice = (0..fake.connections())
        .map(|n| fake.heard(n))
        .find(|h| h.iter().any(|m| m["account"] == "alice"))
        .unwrap();
    assert_eq!(kinds(&alice)[..2], ["ping", "login"], "{alice:?}");
}

#[test]
fn bot_fails_clearly_on_a_refused_login_and_before_connecting_without_a_password() {
    let fake = Fake::start(Rules::default());
    let out = bot(
        &fake,
        "@alice login alice $PW\n@alice say hi\n",
        &[("PW", "not it at all")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "<stdin>:1: @alice could not log in to alice: wrong account or password (login_failed)"
        ),
        "{stderr}"
    );
    assert!(!stdout.contains("not it at all") && !stderr.contains("not it at all"));

    let out = bot(&fake, "@alice say hi\n@alice register $NOPE\n", &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("<stdin>:2: no password for this step: $NOPE is not set"),
        "{stderr}"
    );
    assert_eq!(fake.connections(), 1, "the second run connected nothing");
}

#[test]
fn bot_account_logs_the_default_actor_in_on_connecting() {
    let fake = Fake::start(Rules::default());
    let mut cmd = chat();
    cmd.args([
        "bot",
        "-",
        "--server",
        &fake.addr.to_string(),
        "--account",
        "alice",
    ])
    .env("CHAT_PASSWORD", PASSWORD);
    let out = output_with_input(&mut cmd, b"say hi\n@alice say again\n");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("@alice -- logged in as alice"), "{stdout}");
    assert!(stdout.contains("@alice <alice> again"), "{stdout}");
    assert_hidden(&out);
    assert_eq!(fake.connections(), 1, "the default actor is alice");
    let heard = fake.heard(0);
    assert!(!kinds(&heard).contains(&"nick"), "{heard:?}");
    assert_eq!(heard[1]["password"], PASSWORD);

    let mut cmd = chat();
    cmd.args([
        "bot",
        "-",
        "--server",
        &fake.addr.to_string(),
        "--account",
        "alice",
    ]);
    let out = output_with_input(&mut cmd, b"say hi\n");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--account alice needs its password in $CHAT_PASSWORD"),
        "{stderr}"
    );
    assert_eq!(fake.connections(), 1);
}

/// Against the real server, once it has accounts: a nickname registered by
/// one client is logged in to by another, refused to a third, and used by
/// a bot.
#[test]
fn real_server_register_login_refuse_and_bot() {
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    let client = |args: &[&str], input: &str, env: &[(&str, &str)]| {
        let mut cmd = chat();
        cmd.args(["client", "--server", &addr]).args(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        output_with_input(&mut cmd, input.as_bytes())
    };
    let out = client(
        &["--nick", "carol"],
        &format!("/register\n{PASSWORD}\n/quit\n"),
        &[],
    );
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("-- registered: the nickname carol is now yours"),
        "{stdout}"
    );
    assert_hidden(&out);
    let out = client(
        &["--account", "carol"],
        "hi\n/quit\n",
        &[("CHAT_PASSWORD", PASSWORD)],
    );
    let (stdout, _) = text(&out);
    assert!(stdout.contains("-- logged in as carol"), "{stdout}");
    assert!(stdout.contains("<carol> hi"), "{stdout}");
    assert_hidden(&out);
    let out = client(&["--nick", "carol"], "/quit\n", &[]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("/login NAME if it is yours"), "{stdout}");
    let out = client(
        &["--account", "carol"],
        "/quit\n",
        &[("CHAT_PASSWORD", "not the password")],
    );
    let (stdout, _) = text(&out);
    assert!(stdout.contains("then /login ACCOUNT again"), "{stdout}");
    let mut cmd = chat();
    cmd.args(["bot", "-", "--server", &addr])
        .env("CHAT_PASSWORD", PASSWORD);
    let out = output_with_input(
        &mut cmd,
        b"@carol login\n@carol say from the bot\n@carol logout\n",
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_hidden(&out);
}
