//! `chat client` in a real terminal: each test runs the client in its own
//! tmux server (a pseudo-terminal with a screen model), types with
//! `send-keys` and reads the screen with `capture-pane`, while the other
//! side of the conversation is a plain protocol connection.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Conn, Server, WAIT, chat_bin};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

/// One tmux server with one pane running
/// `sh -c 'stty -g >before; chat client ...; echo $? >status; stty -g >after'`,
/// so a test can compare the terminal's settings before and after and read
/// the exit status.
struct Tmux {
    dir: PathBuf,
}

impl Tmux {
    /// A directory for the tmux server's socket, configuration, the
    /// history file and the shell's reports; no client yet.
    fn new() -> Tmux {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chat-tty-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("tmux.conf"),
            "set -g remain-on-exit on\nset -g status off\nset -g history-limit 0\n",
        )
        .unwrap();
        Tmux { dir }
    }

    fn start(server: &Server, args: &[&str], env: &[(&str, &str)]) -> Tmux {
        let tmux = Tmux::new();
        tmux.start_client(server, args, env);
        tmux
    }

    /// Runs the client (again) in a fresh pane of this tmux server.
    fn start_client(&self, server: &Server, args: &[&str], env: &[(&str, &str)]) {
        for report in ["status", "before", "after"] {
            let _ = std::fs::remove_file(self.path(report));
        }
        let mut script = String::from("stty -g > before; ");
        for (key, value) in env {
            script.push_str(&format!("{key}='{value}' "));
        }
        script.push_str("\"$@\"; echo $? > status; stty -g > after");
        let mut cmd = self.command();
        cmd.args(["new-session", "-d", "-x", "80", "-y", "24", "-c"])
            .arg(&self.dir)
            .args(["sh", "-c", &script, "sh"])
            .arg(chat_bin())
            .args(["client", "--server", &server.addr.to_string()])
            .arg("--history")
            .arg(self.path("history"))
            .args(args);
        let out = cmd.output().expect("tmux is needed for these tests");
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(self.path("sock"))
            .arg("-f")
            .arg(self.path("tmux.conf"));
        for var in [
            "CHAT_SERVER",
            "CHAT_NICK",
            "CHAT_ACCOUNT",
            "CHAT_PASSWORD",
            "NO_COLOR",
            "XDG_DATA_HOME",
            "TMUX",
        ] {
            cmd.env_remove(var);
        }
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

    /// The screen as text, one line per row, trailing blank rows dropped.
    fn screen(&self) -> String {
        let text = self.tmux(&["capture-pane", "-p"]);
        text.trim_end_matches('\n').to_owned()
    }

    /// The screen with its colours and attributes as escape sequences.
    fn screen_with_attributes(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e"])
    }

    /// Polls the screen until `done` holds; fails after [`WAIT`] showing the
    /// screen.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20)); // polling the screen, which has no event to wait on
        }
    }

    fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(text, |screen| screen.contains(text))
    }

    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
    }

    fn key(&self, key: &str) {
        self.tmux(&["send-keys", key]);
    }

    fn type_line(&self, text: &str) {
        self.type_text(text);
        self.key("Enter");
    }

    fn cursor(&self) -> (usize, usize) {
        let pos = self.tmux(&["display-message", "-p", "#{cursor_x} #{cursor_y}"]);
        let mut it = pos.split_whitespace().map(|n| n.parse().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    }

    fn title(&self) -> String {
        self.tmux(&["display-message", "-p", "#{pane_title}"])
    }

    /// The client's PID and its input child's PID.
    fn pids(&self) -> (i32, i32) {
        let shell: i32 = self
            .tmux(&["display-message", "-p", "#{pane_pid}"])
            .trim()
            .parse()
            .unwrap();
        let client = children(shell);
        assert_eq!(client.len(), 1, "sh runs one client: {client:?}");
        let input = children(client[0]);
        assert_eq!(input.len(), 1, "the client has one input child: {input:?}");
        (client[0], input[0])
    }

    /// Waits for the client to exit and returns its status.
    fn exit_status(&self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(self.path("after"))
                && let Ok(status) = std::fs::read_to_string(self.path("status"))
                && !text.is_empty()
            {
                return status.trim().parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "client did not exit; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20)); // polling for the exit, written to a file by sh
        }
    }

    /// True when the terminal's settings after the client equal those
    /// before it.
    fn terminal_restored(&self) -> bool {
        let read = |name| std::fs::read_to_string(self.path(name)).unwrap();
        read("before") == read("after")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// The last non-blank row of the screen, as it is.
fn last_row(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// The last non-blank row, with the current room's name taken off its
/// prompt (`lobby> hi` reads `> hi`), so that these tests hold with and
/// without a server that has rooms.
fn last_line(screen: &str) -> &str {
    let row = last_row(screen);
    let name = row
        .find('>')
        .filter(|&at| {
            row[..at]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .unwrap_or(0);
    &row[name..]
}

/// Starts a server, `bob` on a plain connection, and `alice` in tmux, and
/// waits until bob has seen alice take her name.
fn alice_and_bob(env: &[(&str, &str)]) -> (Server, Conn, Tmux) {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let tmux = Tmux::start(&server, &["--nick", "alice"], env);
    loop {
        if bob.recv_type("nick")["new"] == "alice" {
            break;
        }
    }
    tmux.wait_for("the prompt", |s| {
        // "2 online: ..." from a v1 server, "2 in lobby: ..." with rooms.
        s.contains(": alice, bob") && last_line(s) == ">"
    });
    (server, bob, tmux)
}

#[test]
fn typing_a_line_sends_it_and_shows_it_once() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);
    tmux.type_line("hello bob");
    let msg = bob.recv_type("group");
    assert_eq!(
        (&msg["from"], &msg["text"]),
        (&json!("alice"), &json!("hello bob"))
    );
    // The echo may print before the next readline draws its prompt.
    let screen = tmux.wait_for("the echo and a prompt", |s| {
        s.contains("<alice> hello bob") && last_line(s) == ">"
    });
    assert!(
        !screen.lines().any(|l| l.trim_end() == "> hello bob"),
        "the typed line was not replaced:\n{screen}"
    );
}

#[test]
fn an_arrival_that_takes_a_name_is_one_line() {
    let (server, mut bob, tmux) = alice_and_bob(&[]);
    let _carol = server.join("carol");
    // bob's message comes after carol's arrival, so once it is on screen
    // the arrival has been shown as it will stay.
    bob.send(&json!({"type": "group", "text": "after carol"}));
    let screen = tmux.wait_for_text("<bob> after carol");
    assert!(screen.contains("-- carol joined"), "{screen}");
    assert!(
        !screen.contains("guest3") && !screen.contains("known as carol"),
        "the guest name was shown:\n{screen}"
    );
}

#[test]
fn me_says_what_you_do() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);
    tmux.type_line("/me waves");
    let msg = bob.recv_type("group");
    assert_eq!(
        (&msg["text"], &msg["action"]),
        (&json!("waves"), &json!(true))
    );
    tmux.wait_for_text("* alice waves");
    bob.send(&json!({"type": "group", "text": "grins", "action": true}));
    tmux.wait_for_text("* bob grins");
    bob.send(&json!({"type": "private", "to": "alice", "text": "winks", "action": true}));
    tmux.wait_for_text("* *bob* winks");
}

#[test]
fn ctrl_c_on_an_empty_line_says_how_to_leave_once() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);
    let hint = "-- (type /quit or press Ctrl-D to leave)";
    tmux.key("C-c");
    // The hint is written, then the next readline draws its prompt: the
    // screen may be caught between the two.
    tmux.wait_for("a prompt after the hint", |s| {
        s.contains(hint) && last_line(s) == ">"
    });
    tmux.key("C-c");
    tmux.type_line("still here");
    assert_eq!(bob.recv_type("group")["text"], "still here");
    let screen = tmux.wait_for("the sent line and a prompt", |s| {
        s.contains("<alice> still here") && last_line(s) == ">"
    });
    assert_eq!(screen.matches(hint).count(), 1, "{screen}");
    assert_eq!(
        screen.lines().filter(|l| last_line(l) == ">").count(),
        1,
        "an empty prompt was left above the hint:\n{screen}"
    );
}

#[test]
fn incoming_messages_leave_the_partial_line_intact() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);
    tmux.type_text("half typ");
    tmux.wait_for("the partial line", |s| last_line(s) == "> half typ");
    bob.send(&json!({"type": "group", "text": "one from bob"}));
    for i in 0..30 {
        bob.send(&json!({"type": "group", "text": format!("burst {i}")}));
    }
    bob.sync();
    let screen = tmux.wait_for_text("<bob> burst 29");
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!(last_line(&screen), "> half typ", "screen:\n{screen}");
    assert!(
        lines
            .iter()
            .rev()
            .skip_while(|l| l.trim().is_empty())
            .nth(1)
            .unwrap()
            .ends_with("<bob> burst 29"),
        "the message is not right above the prompt:\n{screen}"
    );
    let (x, y) = tmux.cursor();
    assert_eq!(
        (x, y),
        (last_row(&screen).len(), lines.len() - 1),
        "cursor moved:\n{screen}"
    );
    // The line editor still holds the text: finishing it sends all of it.
    tmux.type_line("ed");
    assert_eq!(bob.recv_type("group")["text"], "half typed");
}

#[test]
fn msg_nick_who_completion_and_quit() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);

    tmux.type_text("/msg b");
    tmux.key("Tab");
    tmux.wait_for("completion", |s| last_line(s) == "> /msg bob");
    tmux.type_line("psst");
    let msg = bob.recv_type("private");
    assert_eq!(
        (&msg["from"], &msg["text"]),
        (&json!("alice"), &json!("psst"))
    );
    tmux.wait_for_text("-> *bob* psst");

    bob.send(&json!({"type": "private", "to": "alice", "text": "psst back"}));
    tmux.wait_for_text("*bob* psst back");

    // Ctrl-C clears the line and leaves the client running.
    tmux.type_text("never sent");
    tmux.key("C-c");
    tmux.wait_for("a cleared line", |s| last_line(s) == ">");

    tmux.type_line("/nick ally");
    assert_eq!(bob.recv_type("nick")["new"], "ally");
    tmux.wait_for_text("-- you are now known as ally");

    tmux.type_line("/who");
    tmux.wait_for_text(": ally, bob");

    tmux.type_line("/bogus");
    tmux.wait_for_text("!! unknown command /bogus");

    tmux.type_line("/quit see you");
    let msg = bob.recv_type("leave");
    assert_eq!(
        (&msg["nick"], &msg["text"]),
        (&json!("ally"), &json!("see you"))
    );
    let group_sent: Vec<_> = bob.sync();
    assert!(group_sent.is_empty(), "unexpected: {group_sent:?}");
    assert_eq!(tmux.exit_status(), 0);
    assert!(tmux.terminal_restored());
}

#[test]
fn escape_sequences_from_the_network_are_neutralised() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);
    bob.send(&json!({"type": "group", "text": "before"}));
    tmux.wait_for_text("<bob> before");
    let title_before = tmux.title();
    bob.send(&json!({
        "type": "group",
        "text": "\u{1b}[2J\u{1b}[H\u{1b}]2;pwned\u{7}\u{9b}31m\u{1b}[5;5Hred\u{7}"
    }));
    let screen = tmux.wait_for_text(r"\x1b[2J\x1b[H\x1b]2;pwned\x07\u{9b}31m\x1b[5;5Hred\x07");
    assert!(
        screen.contains("<bob> before"),
        "the screen was cleared:\n{screen}"
    );
    assert_eq!(last_line(&screen), ">", "the prompt moved:\n{screen}");
    assert_eq!(tmux.title(), title_before, "the title was changed");
    assert!(!tmux.title().contains("pwned"));
}

#[test]
fn colours_per_nick_unless_no_color() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);
    bob.send(&json!({"type": "group", "text": "colourful"}));
    tmux.wait_for_text("<bob> colourful");
    let line = tmux
        .screen_with_attributes()
        .lines()
        .find(|l| l.contains("colourful"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("\x1b[3") || line.contains("\x1b[9"),
        "no colour: {line:?}"
    );

    let (_server, mut bob, tmux) = alice_and_bob(&[("NO_COLOR", "1")]);
    bob.send(&json!({"type": "group", "text": "plain, alice"}));
    tmux.wait_for_text("<bob> plain, alice");
    let line = tmux
        .screen_with_attributes()
        .lines()
        .find(|l| l.contains("plain, alice"))
        .unwrap()
        .to_owned();
    assert!(
        !line.contains("\x1b[3") && !line.contains("\x1b[9"),
        "colour with NO_COLOR: {line:?}"
    );
    assert!(line.contains("\x1b[1m"), "a mention is bold: {line:?}");
}

#[test]
fn passwords_are_typed_unseen_and_kept_out_of_the_history() {
    const SECRET: &str = "Tr0ub4dor-and-3";
    let (_server, _bob, tmux) = alice_and_bob(&[]);
    // Every byte the terminal is sent from now on, including what is
    // wiped later, lands in this file.
    let raw = tmux.path("raw");
    let pipe = format!("cat >> '{}'", raw.display());
    tmux.tmux(&["pipe-pane", "-o", &pipe]);
    tmux.type_line("/login alice");
    tmux.wait_for_text("password for alice:");
    tmux.type_line(SECRET);
    // Refused or granted, the answer ends "(you are alice)".
    let screen = tmux.wait_for_text("(you are alice)");
    assert!(!screen.contains(SECRET), "shown:\n{screen}");
    assert!(!screen.contains("password for"), "prompt left:\n{screen}");
    tmux.wait_for("the prompt", |s| last_line(s) == ">");

    tmux.type_line("/register");
    tmux.wait_for_text("new password:");
    tmux.type_line(SECRET);
    tmux.wait_for_text("the same again:");
    tmux.type_line("something else");
    tmux.wait_for_text("!! the two passwords differ; nothing was sent");
    tmux.wait_for("the prompt", |s| last_line(s) == ">");
    tmux.type_line("/login alice");
    tmux.wait_for_text("password for alice:");
    tmux.key("C-c");
    tmux.wait_for_text("-- cancelled; nothing was sent");
    tmux.wait_for("the prompt", |s| last_line(s) == ">");
    tmux.type_line("after all that");
    tmux.wait_for("the line said", |s| {
        s.contains("<alice> after all that") && last_line(s) == ">"
    });
    let deadline = Instant::now() + WAIT;
    let sent = loop {
        let sent = std::fs::read(&raw).unwrap_or_default();
        let sent = String::from_utf8_lossy(&sent).into_owned();
        if sent.contains("after all that") {
            break sent;
        }
        assert!(Instant::now() < deadline, "no output piped: {sent:?}");
        std::thread::sleep(Duration::from_millis(20)); // polling a file cat writes, which has no event to wait on
    };
    assert!(sent.contains("password for alice"), "{sent:?}");
    assert!(
        !sent.contains(SECRET),
        "the terminal was sent the password: {sent:?}"
    );
    tmux.key("C-d");
    assert_eq!(tmux.exit_status(), 0);
    assert!(tmux.terminal_restored());
    let kept = std::fs::read_to_string(tmux.path("history")).unwrap();
    assert!(kept.contains("after all that"), "{kept}");
    for hidden in [SECRET, "something else", "/login", "/register"] {
        assert!(!kept.contains(hidden), "{hidden:?} in the history:\n{kept}");
    }
}

#[test]
fn the_account_password_is_asked_for_unseen_before_the_client_starts() {
    const SECRET: &str = "Tr0ub4dor-and-4";
    let server = Server::start(&[]);
    let tmux = Tmux::new();
    let raw = tmux.path("raw");
    tmux.start_client(&server, &["--account", "alice"], &[]);
    let pipe = format!("cat >> '{}'", raw.display());
    tmux.tmux(&["pipe-pane", "-o", &pipe]);
    tmux.wait_for_text(&format!("password for alice at {}:", server.addr));
    tmux.type_line(SECRET);
    // This server has no accounts: refused, the client goes on as a guest.
    tmux.wait_for_text("(you are guest1)");
    tmux.wait_for("the prompt", |s| last_line(s) == ">");
    tmux.type_line("still here");
    tmux.wait_for_text("<guest1> still here");
    let deadline = Instant::now() + WAIT;
    let sent = loop {
        let sent = String::from_utf8_lossy(&std::fs::read(&raw).unwrap_or_default()).into_owned();
        if sent.contains("still here") {
            break sent;
        }
        assert!(Instant::now() < deadline, "no output piped: {sent:?}");
        std::thread::sleep(Duration::from_millis(20)); // polling a file cat writes, which has no event to wait on
    };
    assert!(
        !sent.contains(SECRET),
        "the terminal was sent the password: {sent:?}"
    );
    assert!(!tmux.screen().contains(SECRET));
    tmux.key("C-d");
    assert_eq!(tmux.exit_status(), 0);
    assert!(tmux.terminal_restored());
}

#[test]
fn history_is_recalled_after_a_restart_bounded_and_private() {
    let server = Server::start(&[]);
    let tmux = Tmux::new();
    // A history longer than the bound, readable by all: the client keeps
    // the newest 1000 lines and makes the file private.
    let history = tmux.path("history");
    let old: String = (1..=1100).map(|i| format!("old line {i}\n")).collect();
    std::fs::write(&history, format!("#V2\n{old}")).unwrap();
    std::fs::set_permissions(&history, std::fs::Permissions::from_mode(0o644)).unwrap();
    tmux.start_client(&server, &[], &[]);
    tmux.wait_for("the prompt", |s| last_line(s) == ">");
    tmux.type_line("remember me");
    // The line shown as sent and a fresh prompt: rustyline is reading
    // again, so Ctrl-D reaches it rather than the terminal's own line
    // discipline between two reads.
    tmux.wait_for("the sent line and a new prompt", |s| {
        s.contains("<guest1> remember me") && last_line(s) == ">"
    });
    tmux.key("C-d");
    assert_eq!(tmux.exit_status(), 0);
    assert!(tmux.terminal_restored());
    let mode = std::fs::metadata(&history).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "history file mode");
    let kept = std::fs::read_to_string(&history).unwrap();
    let entries: Vec<&str> = kept.lines().skip(1).collect();
    assert_eq!(entries.len(), 1000);
    assert_eq!(entries.first(), Some(&"old line 102"));
    assert_eq!(entries.last(), Some(&"remember me"));

    // A new terminal (a tmux server of its own, so there is no race with
    // the old one shutting down), the same history file.
    let again = Tmux::new();
    std::fs::rename(&history, again.path("history")).unwrap();
    again.start_client(&server, &[], &[]);
    again.wait_for("the prompt", |s| last_line(s) == ">");
    again.key("Up");
    again.wait_for("the recalled line", |s| last_line(s) == "> remember me");
}

#[test]
fn a_killed_server_gives_exit_1_no_orphan_and_a_restored_terminal() {
    let (mut server, _bob, tmux) = alice_and_bob(&[]);
    let (_client, input_child) = tmux.pids();
    tmux.type_text("unfinished");
    tmux.wait_for("the partial line", |s| last_line(s) == "> unfinished");
    server.signal_and_wait(Signal::SIGKILL);
    // It tries to connect again until told to stop.
    tmux.wait_for_text("trying again in");
    tmux.key("Enter");
    // Keys typed before the next prompt is drawn may be taken by
    // rustyline's start-up (its cursor position query) and lost.
    tmux.wait_for("a fresh prompt", |s| last_line(s) == ">");
    tmux.type_line("/quit");
    assert_eq!(tmux.exit_status(), 1);
    let screen = tmux.screen();
    assert!(screen.contains("chat: lost the connection to"), "{screen}");
    assert!(
        kill(Pid::from_raw(input_child), None).is_err(),
        "input child left behind"
    );
    assert!(
        tmux.terminal_restored(),
        "terminal settings differ after the client"
    );
}

/// Ctrl-C while the client is trying to connect again stops the tries, as
/// `/quit` does (while connected it only clears the line).
#[test]
fn ctrl_c_stops_the_tries_to_connect_again() {
    let (mut server, _bob, tmux) = alice_and_bob(&[]);
    let (_client, input_child) = tmux.pids();
    server.signal_and_wait(Signal::SIGKILL);
    tmux.wait_for_text("(/quit or Ctrl-C to stop)");
    tmux.type_text("half a line");
    tmux.key("C-c");
    assert_eq!(tmux.exit_status(), 1);
    let screen = tmux.screen();
    assert!(screen.contains("chat: lost the connection to"), "{screen}");
    assert!(
        kill(Pid::from_raw(input_child), None).is_err(),
        "input child left behind"
    );
    assert!(
        tmux.terminal_restored(),
        "terminal settings differ after the client"
    );
}

#[test]
fn sigterm_to_the_client_restores_the_terminal() {
    let (_server, mut bob, tmux) = alice_and_bob(&[]);
    let (client, input_child) = tmux.pids();
    tmux.type_text("interrupted thought");
    tmux.wait_for("the partial line", |s| {
        last_line(s) == "> interrupted thought"
    });
    kill(Pid::from_raw(client), Signal::SIGTERM).unwrap();
    assert_eq!(tmux.exit_status(), 1);
    assert_eq!(bob.recv_type("leave")["reason"], "quit");
    assert!(
        kill(Pid::from_raw(input_child), None).is_err(),
        "input child left behind"
    );
    assert!(
        tmux.terminal_restored(),
        "terminal settings differ after the client"
    );
    let screen = tmux.screen();
    assert!(screen.contains("chat: stopped by SIGTERM"), "{screen}");
}

// Rooms (protocol v2). These need the server with rooms: until it lands the
// server answers `join` with `unknown_type` and its welcome names no room.

/// alice in tmux and bob on a plain connection, both in the lobby.
fn alice_and_bob_in_the_lobby(args: &[&str]) -> (Server, Conn, Tmux) {
    let server = Server::start(&[]);
    let mut bob = server.join("bob");
    let mut alice_args = vec!["--nick", "alice"];
    alice_args.extend_from_slice(args);
    let tmux = Tmux::start(&server, &alice_args, &[]);
    loop {
        if bob.recv_type("nick")["new"] == "alice" {
            break;
        }
    }
    (server, bob, tmux)
}

#[test]
fn join_switches_the_current_room_and_marks_lines_from_others() {
    let (_server, mut bob, tmux) = alice_and_bob_in_the_lobby(&[]);
    tmux.wait_for("the lobby prompt", |s| last_row(s) == "lobby>");
    tmux.type_line("/join rust");
    let screen = tmux.wait_for("the rust prompt", |s| last_row(s) == "rust>");
    assert!(
        screen.contains("-- you are in rust (1 here: alice)"),
        "{screen}"
    );

    tmux.type_line("hello rust");
    bob.send(&json!({"type": "group", "text": "lobby talk"}));
    tmux.wait_for_text("[lobby] <bob> lobby talk");

    bob.send(&json!({"type": "join", "room": "rust"}));
    bob.recv_type("joined");
    tmux.wait_for_text("-- bob joined");
    bob.send(&json!({"type": "group", "room": "rust", "text": "hi alice"}));
    let screen = tmux.wait_for_text("<bob> hi alice");
    assert!(
        !screen.contains("[rust]"),
        "the current room is marked:\n{screen}"
    );

    tmux.type_line("/me waves");
    let msg = bob.recv_type("group");
    assert_eq!(
        (&msg["room"], &msg["text"], &msg["action"]),
        (&json!("rust"), &json!("waves"), &json!(true))
    );

    // Tab completes a room after /part; parting the current room goes
    // back to the lobby.
    tmux.type_text("/part ru");
    tmux.key("Tab");
    tmux.wait_for("completion", |s| last_row(s) == "rust> /part rust");
    tmux.type_line("off to lunch");
    let leave = bob.recv_type("leave");
    assert_eq!(
        (&leave["room"], &leave["reason"], &leave["text"]),
        (&json!("rust"), &json!("part"), &json!("off to lunch"))
    );
    tmux.wait_for("the lobby prompt", |s| last_row(s) == "lobby>");
    tmux.type_line("back");
    let msg = bob.recv_type("group");
    assert_eq!(
        (&msg["room"], &msg["text"]),
        (&json!("lobby"), &json!("back"))
    );
}

#[test]
fn a_wide_room_name_and_a_wide_line_are_laid_out_by_their_columns() {
    let (_server, mut bob, tmux) = alice_and_bob_in_the_lobby(&[]);
    tmux.wait_for("the lobby prompt", |s| last_row(s) == "lobby>");
    bob.send(&json!({"type": "nick", "nick": "小明"}));
    bob.recv_type("nick");
    tmux.type_line("/join 小明的房间");
    tmux.wait_for("the wide prompt", |s| last_row(s) == "小明的房间>");
    // 12 columns of prompt and 34 wide characters: 80 columns, the line
    // exactly full, so the cursor goes to the next row; then 3 more.
    let line = format!("{}abc", "你".repeat(34));
    tmux.type_text(&line);
    tmux.key("Enter");
    let said = format!("<alice> {line}");
    let screen = tmux.wait_for("the line said", |s| {
        s.replace('\n', "").contains(&said) && last_row(s) == "小明的房间>"
    });
    assert!(
        !screen.contains(&format!("小明的房间> {}", "你".repeat(5))),
        "the typed line was not erased whole:\n{screen}"
    );
    // Completion of a wide name, after an ideographic space.
    bob.send(&json!({"type": "join", "room": "小明的房间"}));
    bob.recv_type("joined");
    tmux.wait_for_text("-- 小明 joined");
    tmux.type_text("你好\u{3000}小");
    tmux.key("Tab");
    tmux.wait_for("completion", |s| {
        last_row(s) == "小明的房间> 你好\u{3000}小明"
    });
    tmux.key("Enter");
    assert_eq!(bob.recv_type("group")["text"], "你好\u{3000}小明 ");
}

#[test]
fn topic_rooms_and_who_in_a_room() {
    let (_server, _bob, tmux) = alice_and_bob_in_the_lobby(&["--room", "rust"]);
    tmux.wait_for("the rust prompt", |s| last_row(s) == "rust>");
    // bob is not in rust: only alice hears of the topic.
    tmux.type_line("/topic borrowck");
    tmux.wait_for_text("-- alice set the topic: borrowck");
    tmux.type_line("/topic");
    tmux.wait_for_text("-- the topic of rust: borrowck");
    tmux.type_line("/rooms");
    tmux.wait_for_text("-- 2 rooms: lobby (2), rust (1: borrowck)");
    tmux.type_line("/who lobby");
    // The same line answered the start-up `/who`: wait for the second.
    tmux.wait_for("the answer to /who lobby", |s| {
        s.matches("-- 2 in lobby: alice, bob").count() == 2
    });
    tmux.type_line("/join lobby");
    tmux.wait_for("the lobby prompt", |s| last_row(s) == "lobby>");
}
