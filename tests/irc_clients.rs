//! Real IRC clients against the IRC door: irssi and WeeChat, each in its
//! own tmux server (a pseudo-terminal with a screen model), typed into with
//! `send-keys` and read with `capture-pane`, while a JSON-lines user and a
//! `chat bot` share the room with them.
//!
//! Outside CI a missing client skips its test with a note on stderr; in CI
//! (`CI=true`, where `.ci/run` installs both) it fails the test.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Conn, Server, TempDir, WAIT, chat, finish_within};
use serde_json::{Value, json};

/// A server with `--listen-irc`, and the IRC address.
fn start() -> (Server, SocketAddr) {
    let (server, mut addrs) = Server::start_listeners(&["--listen-irc", "127.0.0.1:0"], &[], 1);
    (server, addrs.remove(0))
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Irssi,
    Weechat,
}

impl Client {
    fn program(self) -> &'static str {
        match self {
            Client::Irssi => "irssi",
            Client::Weechat => "weechat",
        }
    }

    /// Whether the test can run: the client is installed, or (outside CI
    /// only) it is not and the test says so and passes.
    fn available(self) -> bool {
        let found = Command::new(self.program())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} is not installed, and CI must run this test (.ci/run installs it)",
                self.program()
            );
            eprintln!(
                "skipped: {} is not installed (apt-get install {})",
                self.program(),
                match self {
                    Client::Irssi => "irssi",
                    Client::Weechat => "weechat-curses",
                }
            );
        }
        found
    }

    /// Runs the client in a fresh tmux server, connecting to `irc` as
    /// `nick`, or (with `sasl`) logging in to that account with that
    /// password.
    fn start(self, irc: SocketAddr, nick: &str, sasl: Option<&str>) -> Pane {
        let pane = Pane::new();
        let dir = pane.dir.path.join("home");
        std::fs::create_dir(&dir).expect("client home");
        let port = irc.port().to_string();
        let mut argv: Vec<String> = vec![self.program().to_owned()];
        match self {
            Client::Irssi => {
                // Nothing network-y beyond our server: no default networks,
                // no CTCP version answer, no settings written back; and no
                // flood protection holding typed lines back for seconds.
                let mut config = format!(
                    "settings = {{\n  core = {{ real_name = \"{nick}\"; user_name = \"{nick}\"; \
                     nick = \"{nick}\"; settings_autosave = \"no\"; }};\n  \
                     \"irc/core\" = {{ skip_motd = \"yes\"; ctcp_version_reply = \"\"; \
                     cmds_max_at_once = \"100\"; cmd_queue_speed = \"0msec\"; }};\n}};\n"
                );
                if let Some(password) = sasl {
                    config.push_str(&format!(
                        "chatnets = {{ chat = {{ type = \"IRC\"; sasl_mechanism = \"PLAIN\"; \
                         sasl_username = \"{nick}\"; sasl_password = \"{password}\"; }}; }};\n\
                         servers = ( {{ address = \"127.0.0.1\"; chatnet = \"chat\"; \
                         port = \"{port}\"; use_tls = \"no\"; autoconnect = \"yes\"; }} );\n"
                    ));
                }
                std::fs::write(dir.join("config"), config).expect("irssi config");
                argv.push(format!("--home={}", dir.display()));
                if sasl.is_none() {
                    argv.extend([
                        "--connect=127.0.0.1".to_owned(),
                        format!("--port={port}"),
                        format!("--nick={nick}"),
                    ]);
                }
            }
            Client::Weechat => {
                let mut commands = format!(
                    "/server add chat 127.0.0.1/{port} -notls; \
                     /set irc.server.chat.nicks {nick}; /set irc.server.chat.username {nick}; \
                     /set irc.server.chat.realname {nick}; \
                     /set irc.server.chat.anti_flood_prio_high 0; \
                     /set irc.server.chat.anti_flood_prio_low 0; "
                );
                if let Some(password) = sasl {
                    commands.push_str(&format!(
                        "/set irc.server.chat.sasl_mechanism plain; \
                         /set irc.server.chat.sasl_username {nick}; \
                         /set irc.server.chat.sasl_password {password}; "
                    ));
                }
                commands.push_str("/connect chat");
                argv.extend([
                    "--dir".to_owned(),
                    dir.display().to_string(),
                    "-r".to_owned(),
                    commands,
                ]);
            }
        }
        pane.run(&argv);
        pane
    }

    /// Shows the window or buffer of a channel or query already open.
    fn go_to(self, pane: &Pane, name: &str) {
        match self {
            Client::Irssi => pane.type_line(&format!("/window goto {name}")),
            Client::Weechat => pane.type_line(&format!("/buffer {name}")),
        }
    }
}

/// One tmux server with one wide pane (long lines stay on one row).
struct Pane {
    dir: TempDir,
}

impl Pane {
    fn new() -> Pane {
        let dir = TempDir::new("irc-client");
        std::fs::write(
            dir.path.join("tmux.conf"),
            "set -g status off\nset -g history-limit 0\n",
        )
        .expect("tmux.conf");
        Pane { dir }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(self.dir.path.join("sock"))
            .arg("-f")
            .arg(self.dir.path.join("tmux.conf"))
            .env_remove("TMUX")
            .env("HOME", &self.dir.path);
        cmd
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run(&self, argv: &[String]) {
        let mut args = vec!["new-session", "-d", "-x", "200", "-y", "50", "--"];
        args.extend(argv.iter().map(String::as_str));
        self.tmux(&args);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    /// Polls the screen until a row holds every one of `words`; fails after
    /// [`WAIT`] showing the screen.
    fn wait_for(&self, words: &[&str]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.lines().any(|l| words.iter().all(|w| l.contains(w))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waited for a row with {words:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20)); // polling the screen, which has no event to wait on
        }
    }

    fn type_line(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
        self.tmux(&["send-keys", "Enter"]);
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// Reads until a message for which `want` holds (bounded by [`WAIT`] per
/// line, as every read of a [`Conn`] is).
fn until(conn: &mut Conn, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let msg = conn.recv();
        if want(&msg) {
            return msg;
        }
    }
}

/// `chat bot` as `botty`, its script on stdin: it joins the room, talks
/// to `nick` in the room and in private, expects the answers, and leaves.
fn bot(server: &Server, dir: &Path, nick: &str) -> Child {
    let script = format!(
        "join rust\n\
         in rust say beep from the bot\n\
         in rust expect group {nick} \"boop*\" within 10s\n\
         msg {nick} psst from the bot\n\
         expect private {nick} \"got it*\" within 10s\n\
         part rust\n"
    );
    let mut child = chat()
        .current_dir(dir)
        .args(["bot", "-", "--nick", "botty", "--server"])
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat bot");
    child
        .stdin
        .take()
        .expect("bot stdin")
        .write_all(script.as_bytes())
        .expect("write the bot's script");
    child
}

/// The whole conversation, the same for every client.
fn converse(client: Client, nick: &str) {
    if !client.available() {
        return;
    }
    let (server, irc) = start();
    let mut ann = server.join("ann");
    ann.send(&json!({"type": "join", "room": "rust"}));
    ann.recv_type("joined");

    // Registration puts the client in the lobby, as everyone.
    let pane = client.start(irc, nick, None);
    until(&mut ann, |m| m["type"] == "join" && m["nick"] == nick);
    pane.type_line("/join #rust");
    until(&mut ann, |m| {
        m["type"] == "join" && m["nick"] == nick && m["room"] == "rust"
    });
    pane.wait_for(&[nick, "has joined #rust"]);

    // Channel messages, both ways.
    ann.send(&json!({"type": "group", "room": "rust", "text": "hello from ann"}));
    pane.wait_for(&["ann", "hello from ann"]);
    pane.type_line("hi ann, it is me");
    let msg = until(&mut ann, |m| m["type"] == "group");
    assert_eq!(
        (
            msg["from"].as_str(),
            msg["room"].as_str(),
            msg["text"].as_str()
        ),
        (Some(nick), Some("rust"), Some("hi ann, it is me"))
    );

    // A bot arrives, talks in the room and in private, and leaves.
    let scratch = TempDir::new("irc-bot");
    let botty = bot(&server, &scratch.path, nick);
    pane.wait_for(&["botty", "has joined #rust"]);
    pane.wait_for(&["botty", "beep from the bot"]);
    pane.type_line("boop, botty");
    pane.type_line("/query botty");
    pane.wait_for(&["botty", "psst from the bot"]);
    pane.type_line("got it, botty");
    // Back in the room (what it showed before proves the switch).
    client.go_to(&pane, "#rust");
    pane.wait_for(&["botty", "beep from the bot"]);
    pane.wait_for(&["botty", "has left #rust"]);
    let out = finish_within(botty);
    assert!(
        out.status.success(),
        "the bot's script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A JSON user's rename, topic and private message.
    ann.send(&json!({"type": "nick", "nick": "anna"}));
    pane.wait_for(&["ann", "is now known as anna"]);
    ann.send(&json!({"type": "topic", "room": "rust", "text": "all about rust"}));
    pane.wait_for(&["anna", "topic", "all about rust"]);
    ann.send(&json!({"type": "private", "to": nick, "text": "a secret for you"}));
    pane.type_line("/query anna");
    pane.wait_for(&["anna", "a secret for you"]);
    pane.type_line("kept");
    let msg = until(&mut ann, |m| m["type"] == "private");
    assert_eq!(
        (msg["from"].as_str(), msg["text"].as_str()),
        (Some(nick), Some("kept"))
    );

    // The client's own topic and rename reach the JSON user.
    client.go_to(&pane, "#rust");
    pane.wait_for(&["anna", "topic", "all about rust"]);
    pane.type_line("/topic #rust typed in a terminal");
    let topic = until(&mut ann, |m| m["type"] == "topic");
    assert_eq!(
        (topic["room"].as_str(), topic["text"].as_str()),
        (Some("rust"), Some("typed in a terminal"))
    );
    let renamed = format!("{nick}2");
    pane.type_line(&format!("/nick {renamed}"));
    let msg = until(&mut ann, |m| m["type"] == "nick");
    assert_eq!(
        (msg["old"].as_str(), msg["new"].as_str()),
        (Some(nick), Some(renamed.as_str()))
    );

    // The JSON user quits; the client sees it in the room.
    ann.send(&json!({"type": "quit", "text": "good night"}));
    pane.wait_for(&["anna", "quit", "good night"]);
}

#[test]
fn irssi_talks_with_json_users_and_bots_and_sees_the_room_change() {
    converse(Client::Irssi, "irssiu");
}

#[test]
fn weechat_talks_with_json_users_and_bots_and_sees_the_room_change() {
    converse(Client::Weechat, "weeu");
}

/// Registers `name` as an account through a JSON connection, then leaves,
/// so an IRC client can log in to it.
fn register(server: &Server, name: &str, password: &str) {
    let mut conn = server.join(name);
    conn.send(&json!({"type": "register", "password": password}));
    let answer = until(&mut conn, |m| {
        m["type"] == "registered" || m["type"] == "error"
    });
    assert_eq!(answer["type"], "registered", "{answer}");
    conn.send(&json!({"type": "quit"}));
}

/// SASL PLAIN login: the JSON user sees the account's name arrive.
fn sasl_login(client: Client, account: &str) {
    if !client.available() {
        return;
    }
    let (server, irc) = start();
    register(&server, account, "correct-horse-battery");
    let mut ann = server.join("ann");
    let _pane = client.start(irc, account, Some("correct-horse-battery"));
    until(&mut ann, |m| m["type"] == "join" && m["nick"] == account);
}

#[test]
fn irssi_logs_in_to_an_account_with_sasl() {
    sasl_login(Client::Irssi, "irssiacct");
}

#[test]
fn weechat_logs_in_to_an_account_with_sasl() {
    sasl_login(Client::Weechat, "weeacct");
}
