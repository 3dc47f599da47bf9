//! The browser client in a real browser: headless Chromium driven over
//! WebDriver (chromedriver, see `common/webdriver.rs`) against a real
//! server with `--listen-http`, next to users of the other doors (`chat
//! client`, JSON lines, IRC). The page is read only through the DOM
//! contract the client keeps (`#status`, `#rooms`, `#log`, `#composer`...).
//!
//! Outside CI a missing Chromium or chromedriver skips these tests with a
//! note on stderr; in CI (`CI=true`, where `.ci/run` installs both) it
//! fails them. Screenshots land in `target/browser-screenshots/`.

mod common;
#[path = "common/irc.rs"]
mod irc;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;

use common::webdriver::{self, Driver, Element, Session, keys, wait_for};
use common::{Server, TempDir, WAIT, chat};
use irc::Irc;
use serde_json::{Value, json};

/// A server with `--listen-http` and `--listen-irc` on free ports: the
/// server, its HTTP address and its IRC address.
fn start(extra: &[&str]) -> (Server, SocketAddr, SocketAddr) {
    start_on("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", extra)
}

/// A server on given addresses (to restart one on the addresses it had),
/// waited for until it has said where it listens.
fn start_on(
    listen: &str,
    http: &str,
    irc: &str,
    extra: &[&str],
) -> (Server, SocketAddr, SocketAddr) {
    let mut cmd = chat();
    cmd.args(["server", "--listen", listen, "--listen-irc", irc])
        .args(["--listen-http", http, "--quiet"])
        .args(extra);
    let (server, addrs) = Server::spawn_announced(
        &mut cmd,
        &["listening for IRC on ", "listening for HTTP on "],
    );
    (server, addrs[1], addrs[0])
}

/// How a page is looked at: a desktop window or a phone.
#[derive(Clone, Copy)]
enum Screen {
    Desktop,
    Phone,
}

impl Screen {
    fn name(self) -> &'static str {
        match self {
            Screen::Desktop => "desktop",
            Screen::Phone => "phone",
        }
    }

    /// The viewport in CSS pixels: a common laptop, and a common phone.
    fn size(self) -> (u32, u32) {
        match self {
            Screen::Desktop => (1280, 800),
            Screen::Phone => (390, 844),
        }
    }

    fn session(self, driver: &Driver) -> Session<'_> {
        let (width, height) = self.size();
        match self {
            Screen::Desktop => driver.session(width, height),
            Screen::Phone => driver.phone_session(width, height),
        }
    }
}

/// One person's browser tab on the chat page.
struct Page<'d> {
    s: Session<'d>,
    screen: Screen,
}

impl<'d> Page<'d> {
    /// Opens the page in a new browser and waits until it is connected.
    fn open(driver: &'d Driver, http: SocketAddr, screen: Screen) -> Page<'d> {
        let page = Page::blank(driver, screen);
        page.load(http);
        page
    }

    /// A new browser that has not loaded the page yet.
    fn blank(driver: &'d Driver, screen: Screen) -> Page<'d> {
        Page {
            s: screen.session(driver),
            screen,
        }
    }

    /// The size of a screenshot of an empty page in this browser, to tell
    /// a blank picture from a real one; taken before the page is loaded.
    fn blank_size(&self) -> usize {
        self.s.navigate("about:blank");
        let file = webdriver::screenshot_dir().join(format!("blank-{}.png", self.screen.name()));
        self.s.screenshot(&file).len()
    }

    /// Loads the page and waits until it is connected.
    fn load(&self, http: SocketAddr) {
        self.s.navigate(&format!("http://{http}/"));
        self.wait_state("open");
    }

    /// Waits until `#status` says `state`.
    fn wait_state(&self, state: &str) {
        self.wait(
            &format!("#status to be {state}"),
            "const s = document.querySelector('#status');
             return s && s.dataset.state === arguments[0];",
            &[json!(state)],
        );
    }

    /// Polls a script until it returns something truthy, failing with the
    /// page's console in the message.
    fn wait(&self, what: &str, script: &str, args: &[Value]) -> Value {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.s.wait_script(what, script, args)
        }));
        match result {
            Ok(v) => v,
            Err(e) => {
                eprintln!(
                    "page console:\n{}\n#log:\n{}",
                    self.s.console().join("\n"),
                    self.log_text()
                );
                std::panic::resume_unwind(e)
            }
        }
    }

    fn log_text(&self) -> String {
        self.s
            .script(
                "const l = document.querySelector('#log'); return l ? l.innerText : '(no #log)';",
                &[],
            )
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn composer(&self) -> Element {
        self.s.find("#composer")
    }

    /// Types a line into the composer and sends it with Enter.
    fn say(&self, text: &str) {
        let composer = self.composer();
        self.s
            .send_keys(&composer, &format!("{text}{}", keys::ENTER));
    }

    /// Takes a nickname with `/nick` and waits until `#me` shows it.
    fn nick(&self, nick: &str) {
        self.say(&format!("/nick {nick}"));
        self.wait(
            &format!("#me to say {nick}"),
            "const me = document.querySelector('#me');
             return me && me.textContent.trim() === arguments[0];",
            &[json!(nick)],
        );
    }

    /// The group messages shown in `#log`: `(seq, from, text)`.
    fn groups(&self) -> Vec<(u64, String, String)> {
        let v = self.s.script(&format!("return ({GROUPS_FN})();"), &[]);
        v.as_array()
            .map(|a| a.iter().map(group_of).collect())
            .unwrap_or_default()
    }

    /// Waits for a group message from `from` saying `text` in `#log`.
    fn wait_group(&self, from: &str, text: &str) {
        self.wait(
            &format!("<{from}> {text:?} in #log"),
            &format!(
                "return ({GROUPS_FN})().some(m => m.from === arguments[0] && m.text === arguments[1]);"
            ),
            &[json!(from), json!(text)],
        );
    }

    /// The rooms of `#rooms`: `(room, unread, current)`.
    fn rooms(&self) -> Vec<(String, String, bool)> {
        let v = self.s.script(
            "return Array.from(document.querySelectorAll('#rooms li.room')).map(r => {
                 const u = r.querySelector('.unread');
                 return [r.dataset.room, u ? u.innerText.trim() : '',
                         r.getAttribute('aria-current') === 'true'];
             });",
            &[],
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r[0].as_str().unwrap_or("").to_owned(),
                            r[1].as_str().unwrap_or("").to_owned(),
                            r[2] == true,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `#rooms` satisfies `ok`, reporting what it held.
    fn wait_rooms(&self, what: &str, ok: impl Fn(&[(String, String, bool)]) -> bool) {
        let mut last = Vec::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, || {
                last = self.rooms();
                ok(&last).then_some(())
            })
        }));
        if let Err(e) = found {
            eprintln!("#rooms held {last:?}");
            std::panic::resume_unwind(e);
        }
    }

    /// Waits until the room `room` is the one shown.
    fn wait_current(&self, room: &str) {
        self.wait_rooms(&format!("{room} to be the current room"), |rooms| {
            rooms.iter().any(|(r, _, current)| r == room && *current)
        });
    }

    /// Clicks a room in `#rooms` and waits until it is the current one.
    fn show(&self, room: &str) {
        let el = self
            .s
            .find(&format!("#rooms li.room[data-room=\"{room}\"]"));
        self.s.click(&el);
        self.wait_current(room);
    }

    /// Waits until `#members` lists exactly `nicks` (in any order).
    fn wait_members(&self, nicks: &[&str]) {
        let mut want: Vec<String> = nicks.iter().map(|n| (*n).to_owned()).collect();
        want.sort();
        self.wait(
            &format!("#members to be {want:?}"),
            "const got = Array.from(document.querySelectorAll('#members li.member'))
                 .map(m => m.dataset.nick).sort();
             return JSON.stringify(got) === JSON.stringify(arguments[0]);",
            &[json!(want)],
        );
    }

    /// Saves a screenshot as `NAME-SCREEN.png` and checks what a person
    /// would see: a real picture of the window's size, more than a blank
    /// page, and for each selector of `must_see` the last element it
    /// matches on screen and not covered by anything.
    fn screenshot(&self, name: &str, blank_size: usize, must_see: &[&str]) {
        let file = webdriver::screenshot_dir().join(format!("{name}-{}.png", self.screen.name()));
        let png = self.s.screenshot(&file);
        let (css_width, css_height) = self.screen.size();
        let ratio = self
            .s
            .script("return devicePixelRatio;", &[])
            .as_f64()
            .unwrap_or(1.0);
        assert_eq!(
            png_size(&png),
            (
                (f64::from(css_width) * ratio) as u32,
                (f64::from(css_height) * ratio) as u32
            ),
            "{} is not a picture of the whole window",
            file.display()
        );
        // The page is laid out for the screen it is on: on a phone, its
        // viewport meta tag makes the layout as wide as the phone.
        let inner = self.s.script("return [innerWidth, innerHeight];", &[]);
        assert_eq!(
            inner,
            json!([css_width, css_height]),
            "the page is not laid out for a {} of {css_width}x{css_height}",
            self.screen.name()
        );
        // A blank page of this size compresses to almost nothing; a page
        // with a room list, messages and a composer does not.
        assert!(
            png.len() > blank_size * 2,
            "{} looks blank: {} bytes, a blank page is {blank_size}",
            file.display(),
            png.len()
        );
        for css in must_see {
            let last = self.s.find_all(css).pop();
            let el = last.unwrap_or_else(|| panic!("no {css} for {}", file.display()));
            self.assert_seen(&el, css, &file);
        }
    }

    /// Asserts that `el` is inside the viewport, has a size, and is what
    /// the browser finds at its centre (nothing covers it).
    fn assert_seen(&self, el: &Element, what: &str, file: &Path) {
        let v = self.s.script(SEEN, &[el.arg()]);
        assert!(
            v["inside"] == true && v["hit"] == true,
            "{what} is not visible in {}: {v}",
            file.display()
        );
    }
}

/// What must be on screen in a room: its newest message and the composer.
const ROOM_VIEW: &[&str] = &["#log .msg", "#composer"];

/// The group messages of `#log` as `{seq, from, text}`, oldest first.
const GROUPS_FN: &str = "() => Array.from(document.querySelectorAll('#log .msg.group')).map(m => {
    const f = m.querySelector('.from'), t = m.querySelector('.text');
    return {seq: Number(m.dataset.seq), from: f ? f.textContent.trim() : null,
            text: t ? t.textContent : null};
})";

/// Run before the page's scripts (through DevTools, so the page's CSP
/// does not apply): records in `window.__firstMessageAt` the
/// `performance.now()` (milliseconds since navigation start) at which the
/// first group message was in the document.
const FIRST_MESSAGE_AT: &str = "(() => {
    const seen = () => {
        if (window.__firstMessageAt === undefined && document.querySelector('#log .msg.group')) {
            window.__firstMessageAt = performance.now();
            return true;
        }
        return false;
    };
    const watch = new MutationObserver(() => { if (seen()) watch.disconnect(); });
    watch.observe(document, {childList: true, subtree: true});
})();";

/// Where an element is and whether it is what shows at its centre.
const SEEN: &str = "const el = arguments[0];
const r = el.getBoundingClientRect();
const inside = r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0
    && r.bottom <= innerHeight && r.right <= innerWidth;
const at = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
return {inside, hit: !!at && (at === el || el.contains(at)),
        rect: [r.left, r.top, r.width, r.height], viewport: [innerWidth, innerHeight],
        at: at ? at.outerHTML.slice(0, 120) : null};";

fn group_of(m: &Value) -> (u64, String, String) {
    (
        m["seq"].as_u64().unwrap_or(0),
        m["from"].as_str().unwrap_or("").to_owned(),
        m["text"].as_str().unwrap_or("").to_owned(),
    )
}

/// A PNG's width and height, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

/// `chat client` in pipe mode: lines typed on its stdin, its output read
/// line by line.
struct Terminal {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Terminal {
    fn start(server: &Server, nick: &str) -> Terminal {
        let mut child = chat()
            .args(["client", "--server", &server.addr.to_string()])
            .args(["--nick", nick])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chat client");
        let stdout = child.stdout.take().expect("client stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("client stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to chat client");
    }

    /// Waits for an output line containing `wanted`.
    fn wait_for(&mut self, wanted: &str) {
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => {
                    let done = line.contains(wanted);
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(e) => panic!(
                    "chat client printed no {wanted:?} ({e}); it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches `path` from the HTTP door; the body of a 200 answer.
fn http_get(http: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(http).expect("connect to the HTTP door");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
        .expect("write request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read answer");
    assert!(out.starts_with("HTTP/1.1 200 "), "GET {path}: {out}");
    out.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Parses a Prometheus text exposition (format 0.0.4) strictly enough to
/// catch what a scraper would reject: `# HELP name text` and `# TYPE name
/// kind` comments, then samples `name{label="value",...} number`, with
/// every sample's family declared by a TYPE line before it. Returns the
/// samples as `(name{labels}, value)`.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (kind, name, tail) = (words.next(), words.next(), words.next());
            match (kind, name) {
                (Some("HELP"), Some(name)) => assert!(valid_name(name), "{line:?}"),
                (Some("TYPE"), Some(name)) => {
                    assert!(valid_name(name), "{line:?}");
                    let tail = tail.unwrap_or("");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail),
                        "unknown type in {line:?}"
                    );
                    assert!(
                        !typed.iter().any(|(n, _)| n == name),
                        "second TYPE for {name}"
                    );
                    typed.push((name.to_owned(), tail.to_owned()));
                }
                _ => {} // other comments are allowed
            }
            continue;
        }
        assert!(!line.starts_with('#'), "comment without a space: {line:?}");
        let (key, value) = match line.find('}') {
            Some(close) => {
                let (key, rest) = line.split_at(close + 1);
                (key, rest.trim_start())
            }
            None => line
                .split_once(' ')
                .unwrap_or_else(|| panic!("no value in {line:?}")),
        };
        // An optional timestamp may follow the value.
        let value = value.split(' ').next().unwrap_or("");
        let number: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = key.split('{').next().unwrap_or("");
        assert!(valid_name(name), "bad metric name in {line:?}");
        if let Some(labels) = key.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in {line:?}"));
            for pair in inner.split(',').filter(|p| !p.is_empty()) {
                let (label, quoted) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("label without = in {line:?}"));
                assert!(
                    valid_name(label) && !label.contains(':'),
                    "bad label name in {line:?}"
                );
                assert!(
                    quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                    "unquoted label value in {line:?}"
                );
            }
        }
        let family = typed.iter().find(|(n, kind)| {
            name == n
                || (kind == "histogram"
                    && [
                        n.to_owned() + "_bucket",
                        n.to_owned() + "_sum",
                        n.to_owned() + "_count",
                    ]
                    .iter()
                    .any(|s| s == name))
                || (kind == "summary"
                    && [n.to_owned() + "_sum", n.to_owned() + "_count"]
                        .iter()
                        .any(|s| s == name))
        });
        assert!(family.is_some(), "sample before its # TYPE: {line:?}");
        samples.push((key.to_owned(), number));
    }
    samples
}

/// A sample's value, by `name{labels}` as printed.
fn sample(samples: &[(String, f64)], key: &str) -> f64 {
    samples
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key} in /metrics: {samples:?}"))
}

#[test]
fn browsers_terminal_and_irc_users_talk_in_one_room() {
    if !webdriver::available() {
        return;
    }
    let (server, http, irc_addr) = start(&[]);
    let metrics = parse_prometheus(&http_get(http, "/metrics"));
    let out_before = sample(&metrics, "chat_messages_out_total");

    let driver = Driver::start();
    let ann = Page::open(&driver, http, Screen::Desktop);
    ann.nick("ann");
    let bob = Page::blank(&driver, Screen::Desktop);
    let blank = bob.blank_size();
    bob.load(http);
    bob.nick("bob");
    let mut carol = Terminal::start(&server, "carol");
    carol.wait_for("you are now known as carol");
    let mut dave = Irc::register(irc_addr, "dave").0;
    ann.wait_members(&["ann", "bob", "carol", "dave"]);
    bob.wait_members(&["ann", "bob", "carol", "dave"]);

    // Browser to everyone.
    ann.say("hello from ann");
    bob.wait_group("ann", "hello from ann");
    ann.wait_group("ann", "hello from ann");
    carol.wait_for("<ann> hello from ann");
    dave.until(|l| l.ends_with("PRIVMSG #lobby :hello from ann"));
    // Terminal and IRC to the browsers.
    carol.type_line("hi from carol");
    ann.wait_group("carol", "hi from carol");
    bob.wait_group("carol", "hi from carol");
    dave.send("PRIVMSG #lobby :hi from dave");
    ann.wait_group("dave", "hi from dave");
    bob.wait_group("dave", "hi from dave");
    // Bob answers; the composer is empty again after Enter.
    bob.say("hi ann");
    ann.wait_group("bob", "hi ann");
    carol.wait_for("<bob> hi ann");
    assert_eq!(
        bob.s
            .script("return document.querySelector('#composer').value;", &[]),
        json!("")
    );

    // A draft in the composer stays while messages arrive.
    let composer = ann.composer();
    ann.s.send_keys(&composer, "half a thought");
    bob.say("interrupting");
    ann.wait_group("bob", "interrupting");
    assert_eq!(
        ann.s
            .script("return document.querySelector('#composer').value;", &[]),
        json!("half a thought"),
        "a message arriving changed the draft"
    );
    ann.s.clear(&composer);
    // An unknown command is answered in the log, and sends nothing.
    ann.say("/frob");
    ann.wait(
        "a system line about /frob",
        "return Array.from(document.querySelectorAll('#log .msg.system'))
             .some(m => m.textContent.includes('frob'));",
        &[],
    );

    // Up brings back what was sent, newest first; Down goes forward again
    // and ends at the draft that was there.
    ann.say("said first");
    ann.say("said second");
    let composer = ann.composer();
    ann.s.send_keys(&composer, "a draft");
    let value = || {
        ann.s
            .script("return document.querySelector('#composer').value;", &[])
    };
    for (key, want) in [
        (keys::ARROW_UP, "said second"),
        (keys::ARROW_UP, "said first"),
        (keys::ARROW_DOWN, "said second"),
        (keys::ARROW_DOWN, "a draft"),
    ] {
        ann.s.press(key);
        assert_eq!(value(), json!(want), "recalling sent lines");
    }
    ann.s.clear(&composer);
    // Tab completes a member's nick (at the start of a line, with ": ").
    ann.s.send_keys(&composer, "bo");
    ann.s.press(keys::TAB);
    assert_eq!(value(), json!("bob: "), "Tab completion");
    ann.s.clear(&composer);

    // Shift+Enter is a new line in the composer, Enter sends both lines.
    ann.s.send_keys(&composer, "line one");
    ann.s.chord(keys::SHIFT, keys::ENTER);
    ann.s.send_keys(&composer, "line two");
    assert_eq!(
        ann.s
            .script("return document.querySelector('#composer').value;", &[]),
        json!("line one\nline two"),
        "Shift+Enter did not put a new line in the composer"
    );
    ann.s.send_keys(&composer, keys::ENTER);
    bob.wait_group("ann", "line one\nline two");

    // Markup in a message is text, and runs nothing.
    let attacks = [
        "<script>window.__pwned=1</script>",
        "<img src=x onerror=\"window.__pwned=1\">",
    ];
    for attack in attacks {
        ann.say(attack);
        bob.wait_group("ann", attack);
        ann.wait_group("ann", attack);
    }
    for page in [&ann, &bob] {
        let shown: Vec<String> = page.groups().into_iter().map(|(_, _, t)| t).collect();
        for attack in attacks {
            assert!(shown.iter().any(|t| t == attack), "{shown:?}");
        }
        let v = page.s.script(
            "return {pwned: typeof window.__pwned,
                     tags: document.querySelectorAll('#log img, #log script').length};",
            &[],
        );
        assert_eq!(v, json!({"pwned": "undefined", "tags": 0}), "markup ran");
        // What a person sees is the markup itself.
        let texts = page.s.find_all("#log .msg.group .text");
        let last = texts.last().expect("a message");
        assert_eq!(page.s.text(last), attacks[1]);
    }

    // The desktop, as bob sees it.
    bob.screenshot("room", blank, ROOM_VIEW);

    // A phone in the same room sees a message arrive, and can answer.
    let eve = Page::blank(&driver, Screen::Phone);
    let phone_blank = eve.blank_size();
    eve.load(http);
    eve.nick("eve");
    ann.say("hello eve");
    eve.wait_group("ann", "hello eve");
    eve.screenshot("room", phone_blank, ROOM_VIEW);
    eve.say("hi from the phone");
    ann.wait_group("eve", "hi from the phone");

    // Nothing went wrong in the pages: no script error, no CSP refusal.
    for page in [&ann, &bob, &eve] {
        let severe: Vec<String> = page
            .s
            .console()
            .into_iter()
            .filter(|l| l.starts_with("\"SEVERE\""))
            .collect();
        assert!(
            severe.is_empty(),
            "errors in the page's console: {severe:#?}"
        );
    }

    // /metrics still parses, and counted the deliveries.
    let metrics = parse_prometheus(&http_get(http, "/metrics"));
    let out_after = sample(&metrics, "chat_messages_out_total");
    assert!(
        out_after >= out_before + 20.0,
        "chat_messages_out_total went from {out_before} to {out_after}"
    );
    assert_eq!(
        sample(&metrics, "chat_connections{door=\"websocket\"}"),
        3.0,
        "ann, bob and eve are the WebSocket connections"
    );
    // What the browsers sent is counted under their door.
    assert!(
        sample(&metrics, "chat_messages_in_total{door=\"websocket\"}") >= 8.0,
        "the browsers' messages are not counted: {metrics:?}"
    );
    // The loop-turn histogram is whole: buckets never decrease and the
    // last one (+Inf) is the count.
    let buckets: Vec<f64> = metrics
        .iter()
        .filter(|(k, _)| k.starts_with("chat_loop_turn_seconds_bucket{"))
        .map(|(_, v)| *v)
        .collect();
    assert!(
        !buckets.is_empty() && buckets.windows(2).all(|w| w[0] <= w[1]),
        "{buckets:?}"
    );
    assert_eq!(
        buckets.last().copied(),
        Some(sample(&metrics, "chat_loop_turn_seconds_count"))
    );
}

#[test]
fn rooms_are_joined_and_parted_and_count_what_was_missed() {
    if !webdriver::available() {
        return;
    }
    let (_server, http, _irc) = start(&[]);
    let driver = Driver::start();
    let ann = Page::open(&driver, http, Screen::Desktop);
    ann.nick("ann");
    let bob = Page::open(&driver, http, Screen::Desktop);
    bob.nick("bob");
    bob.wait_current("lobby");

    bob.say("/join rust");
    bob.wait_current("rust");
    bob.wait_members(&["bob"]);
    ann.say("/join Rust");
    ann.wait_current("rust");
    ann.wait_members(&["ann", "bob"]);
    bob.wait_members(&["ann", "bob"]);
    ann.wait_rooms("ann in lobby and rust", |rooms| {
        rooms.iter().any(|(r, _, _)| r == "lobby") && rooms.iter().any(|(r, _, _)| r == "rust")
    });

    // Bob looks at the lobby while ann talks in rust: the count rises.
    bob.show("lobby");
    ann.say("one");
    ann.say("two");
    ann.wait_group("ann", "two");
    bob.wait_rooms("2 unread in rust", |rooms| {
        rooms
            .iter()
            .any(|(r, unread, _)| r == "rust" && unread == "2")
    });
    assert!(
        !bob.groups().iter().any(|(_, _, t)| t == "one"),
        "rust's message shown in the lobby"
    );
    // Showing the room shows them and clears the count.
    bob.show("rust");
    bob.wait_group("ann", "one");
    bob.wait_group("ann", "two");
    bob.wait_rooms("no unread in rust", |rooms| {
        rooms
            .iter()
            .any(|(r, unread, _)| r == "rust" && (unread.is_empty() || unread == "0"))
    });

    // Alt+ArrowUp and Alt+ArrowDown move between rooms; Escape goes back
    // to the composer.
    bob.s.chord(keys::ALT, keys::ARROW_UP);
    bob.wait_current("lobby");
    bob.s.chord(keys::ALT, keys::ARROW_DOWN);
    bob.wait_current("rust");
    let rooms = bob.s.find("#rooms li.room");
    bob.s.script("arguments[0].focus();", &[rooms.arg()]);
    bob.s.press(keys::ESCAPE);
    bob.wait(
        "Escape to focus the composer",
        "return document.activeElement === document.querySelector('#composer');",
        &[],
    );

    // Every control is reached by Tab, each with a visible focus ring.
    let mut reached = Vec::new();
    for _ in 0..40 {
        bob.s.press(keys::TAB);
        let v = bob.s.script(
            "const el = document.activeElement;
             if (!el || el === document.body) return null;
             const st = getComputedStyle(el);
             const ring = (st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0)
                 || st.boxShadow !== 'none';
             const name = el.id || (el.dataset.room && 'room:' + el.dataset.room)
                 || (el.dataset.nick && 'member:' + el.dataset.nick)
                 || el.tagName + ' ' + el.textContent.trim().slice(0, 20);
             return [name, ring];",
            &[],
        );
        if let Some(name) = v[0].as_str() {
            assert_eq!(v[1], json!(true), "{name} has no visible focus ring");
            reached.push(name.to_owned());
            if name == "composer" {
                break; // round the page once, from the composer to it
            }
        }
    }
    for control in [
        "composer",
        "login-open",
        "room:lobby",
        "room:rust",
        "member:bob",
    ] {
        assert!(
            reached.iter().any(|r| r == control),
            "Tab never reached {control}; it reached {reached:?}"
        );
    }

    // A private message opens a conversation with its own unread count.
    ann.say("/msg bob psst");
    bob.wait_rooms("a conversation with ann, 1 unread", |rooms| {
        rooms
            .iter()
            .any(|(r, unread, current)| r == "@ann" && unread == "1" && !current)
    });
    bob.show("@ann");
    bob.wait(
        "ann's private message in the conversation",
        "return Array.from(document.querySelectorAll('#log .msg.private'))
             .some(m => m.textContent.includes('psst'));",
        &[],
    );
    bob.show("rust");

    // Ann parts: the room leaves her list and she leaves bob's members.
    ann.say("/part rust");
    ann.wait_rooms("rust gone from ann's rooms", |rooms| {
        !rooms.iter().any(|(r, _, _)| r == "rust")
    });
    bob.wait_members(&["bob"]);
    bob.show("lobby");
    bob.wait_members(&["ann", "bob"]);
}

#[test]
fn scrolling_up_loads_older_history_in_order() {
    if !webdriver::available() {
        return;
    }
    let dir = TempDir::new("browser-history");
    let db = dir.path.join("chat.db");
    let (server, http, _irc) = start(&["--db", db.to_str().expect("utf-8 path")]);
    let mut seeder = server.join("seeder");
    for i in 1..=150 {
        seeder.send(&json!({"type": "group", "text": format!("old {i}")}));
    }
    seeder.sync();

    let driver = Driver::start();
    let reader = Page::blank(&driver, Screen::Desktop);
    // Before the page's own scripts: note when the first message shows.
    reader.s.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": FIRST_MESSAGE_AT}),
    );
    reader.load(http);
    reader.wait_group("seeder", "old 150");
    let first = reader.wait(
        "the time of the first message",
        "return window.__firstMessageAt;",
        &[],
    );
    let navigation = reader.s.script(
        "const n = performance.getEntriesByType('navigation')[0];
         return n ? [n.responseEnd, n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize] : null;",
        &[],
    );
    eprintln!(
        "time to first message: {:.0} ms from navigation start \
         (response end {}, DOMContentLoaded {}, load {} ms; page transfer {} bytes)",
        first.as_f64().unwrap_or(f64::NAN),
        navigation[0],
        navigation[1],
        navigation[2],
        navigation[3]
    );
    let first_screen = reader.groups();
    assert!(
        first_screen.len() < 150,
        "the whole history came at once ({}); nothing to scroll for",
        first_screen.len()
    );
    // One scroll to the top: older messages come in above, and the one
    // the reader was looking at stays in view.
    let oldest_seen = first_screen[0].2.clone();
    reader
        .s
        .script("document.querySelector('#log').scrollTop = 0;", &[]);
    wait_for("older messages after scrolling to the top", || {
        (reader.groups().len() > first_screen.len()).then_some(())
    });
    let v = reader.s.script(
        "const log = document.querySelector('#log').getBoundingClientRect();
         const m = Array.from(document.querySelectorAll('#log .msg.group'))
             .find(m => m.querySelector('.text').textContent === arguments[0]);
         const r = m.getBoundingClientRect();
         return {visible: r.bottom > log.top && r.top < log.bottom, top: r.top, log: [log.top, log.bottom]};",
        &[json!(oldest_seen)],
    );
    assert_eq!(
        v["visible"],
        json!(true),
        "loading history moved {oldest_seen:?} out of view: {v}"
    );
    // Scroll to the top until the oldest message is there.
    wait_for("old 1 to be loaded by scrolling up", || {
        // A real scroll (its event comes from the browser): if the page
        // left the view at the top after prepending, this would not fire
        // again and the wait would fail.
        reader
            .s
            .script("document.querySelector('#log').scrollTop = 0;", &[]);
        reader
            .groups()
            .iter()
            .any(|(_, _, t)| t == "old 1")
            .then_some(())
    });
    let all = reader.groups();
    let texts: Vec<String> = all
        .iter()
        .filter(|(_, from, _)| from == "seeder")
        .map(|(_, _, t)| t.clone())
        .collect();
    let want: Vec<String> = (1..=150).map(|i| format!("old {i}")).collect();
    assert_eq!(texts, want, "history out of order, doubled or missing");
    let seqs: Vec<u64> = all.iter().map(|(seq, _, _)| *seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "data-seq not increasing: {seqs:?}"
    );
}

#[test]
fn the_page_reconnects_after_a_restart_and_catches_up() {
    if !webdriver::available() {
        return;
    }
    let dir = TempDir::new("browser-restart");
    let db = dir.path.join("chat.db");
    let db = db.to_str().expect("utf-8 path").to_owned();
    let (mut server, http, irc) = start(&["--db", &db]);
    let driver = Driver::start();
    let ann = Page::blank(&driver, Screen::Desktop);
    let blank = ann.blank_size();
    ann.load(http);
    ann.nick("ann");
    let mut bob = server.join("bob");
    bob.send(&json!({"type": "group", "text": "before"}));
    bob.sync();
    ann.wait_group("bob", "before");
    drop(bob);

    // Stopped by PID, started again on the same addresses and database.
    let addr = server.addr;
    server.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    drop(server);
    ann.wait_state("closed");
    // A screen reader hears the state once; the countdown beside it is
    // hidden from it, so it is not read out every second.
    ann.wait(
        "#status to say it reconnects, the countdown hidden",
        "const s = document.querySelector('#status');
         const hidden = s.querySelector('span[aria-hidden=true]');
         return s.dataset.state === 'closed'
             && s.firstChild.textContent === 'Disconnected; reconnecting'
             && !!hidden && /^ in \\d+ s/.test(hidden.textContent);",
        &[],
    );
    // Someone looking now sees that the page is reconnecting, and still
    // has the conversation and the composer.
    ann.screenshot(
        "reconnecting",
        blank,
        &["#status", "#log .msg", "#composer"],
    );
    let (server, _, _) = start_on(
        &addr.to_string(),
        &http.to_string(),
        &irc.to_string(),
        &["--db", &db],
    );
    // Said while the page is away (or just back): it must show once.
    let mut carol = server.join("carol");
    carol.send(&json!({"type": "group", "text": "while you were away"}));
    carol.sync();
    ann.wait_state("open");
    ann.wait_group("carol", "while you were away");
    // The page is back as ann, and talks.
    ann.wait(
        "#me to say ann again",
        "return document.querySelector('#me').textContent.trim() === 'ann';",
        &[],
    );
    ann.say("back again");
    loop {
        let msg = carol.recv_type("group");
        if msg["text"] == "back again" {
            assert_eq!(msg["from"], "ann", "{msg}");
            break;
        }
    }
    ann.wait_group("ann", "back again");
    let texts: Vec<String> = ann.groups().into_iter().map(|(_, _, t)| t).collect();
    for once in ["before", "while you were away", "back again"] {
        assert_eq!(
            texts.iter().filter(|t| *t == once).count(),
            1,
            "{once:?} not shown exactly once: {texts:?}"
        );
    }
}

#[test]
fn registering_logging_in_and_a_wrong_password() {
    if !webdriver::available() {
        return;
    }
    let dir = TempDir::new("browser-login");
    let db = dir.path.join("chat.db");
    let (server, http, _irc) = start(&["--db", db.to_str().expect("utf-8 path")]);
    let mut owner = server.join("ann");
    owner.send(&json!({"type": "register", "password": "correct horse"}));
    owner.recv_type("registered");
    owner.send(&json!({"type": "quit"}));
    owner.recv_type("bye");

    let driver = Driver::start();
    let page = Page::blank(&driver, Screen::Phone);
    let blank = page.blank_size();
    page.load(http);
    let fill = |account_name: &str, password: &str, button: &str| {
        // After a refusal the dialog stays open, for another try.
        let shown = page.s.script(
            "const d = document.querySelector('#login');
             return !!d && d.getClientRects().length > 0;",
            &[],
        );
        if shown != json!(true) {
            let open = page.s.find("#login-open");
            page.s.click(&open);
        }
        let account = page.s.find("#login-account");
        page.s.clear(&account);
        page.s.send_keys(&account, account_name);
        let field = page.s.find("#login-password");
        page.s.clear(&field);
        page.s.send_keys(&field, password);
        let submit = page.s.find(button);
        page.s.click(&submit);
    };
    let login = |password: &str| fill("ann", password, "#login-submit");

    // Registering from the dialog takes the name and makes it an account.
    fill("zoe", "zoe's long secret", "#register-submit");
    page.wait(
        "#me to say zoe",
        "return document.querySelector('#me').textContent.trim() === 'zoe';",
        &[],
    );
    page.wait(
        "the dialog to close after registering",
        "const d = document.querySelector('#login');
         return !d || d.getClientRects().length === 0;",
        &[],
    );
    let mut other = server.join("other");
    other.send(&json!({"type": "nick", "nick": "zoe"}));
    assert_eq!(
        other.recv_type("error")["code"],
        "nick_registered",
        "the page did not register zoe"
    );

    let failed = |http| {
        sample(
            &parse_prometheus(&http_get(http, "/metrics")),
            "chat_failed_logins_total",
        )
    };
    let failed_before = failed(http);
    login("wrong password");
    page.wait(
        "#login-error to say something",
        "const e = document.querySelector('#login-error');
         return e && e.innerText.trim() !== '' && e.getClientRects().length > 0;",
        &[],
    );
    page.screenshot(
        "login-refused",
        blank,
        &["#login-error", "#login-password", "#login-submit"],
    );
    let me = page.s.find("#me");
    assert_ne!(page.s.text(&me), "ann", "a wrong password logged in");
    assert_eq!(
        failed(http),
        failed_before + 1.0,
        "the refusal is not counted"
    );
    login("correct horse");
    page.wait(
        "#me to say ann",
        "const me = document.querySelector('#me');
         return me && me.textContent.trim() === 'ann';",
        &[],
    );
    page.wait(
        "the login dialog to close",
        "const d = document.querySelector('#login');
         return !d || d.getClientRects().length === 0 || d.open === false;",
        &[],
    );
    // The others see the account's name.
    let mut watcher = server.join("watcher");
    watcher.send(&json!({"type": "who"}));
    let who = watcher.recv_type("who");
    assert!(
        who["users"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["nick"] == "ann")),
        "{who}"
    );
}

/// The figure for the closing note: time from navigation start to the
/// first group message on screen, over several loads of a page whose room
/// has history, and what the page weighs. Run it with
/// `cargo test --release --test browser -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn time_to_first_message() {
    if !webdriver::available() {
        return;
    }
    let dir = TempDir::new("browser-timing");
    let db = dir.path.join("chat.db");
    let (server, http, _irc) = start(&["--db", db.to_str().expect("utf-8 path")]);
    let mut seeder = server.join("seeder");
    for i in 1..=50 {
        seeder.send(&json!({"type": "group", "text": format!("message {i}")}));
    }
    seeder.sync();
    let driver = Driver::start();
    let page = Page::blank(&driver, Screen::Desktop);
    page.s.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": FIRST_MESSAGE_AT}),
    );
    let mut times = Vec::new();
    let mut bytes = 0.0;
    for _ in 0..9 {
        page.load(http);
        let first = page.wait(
            "the time of the first message",
            "return window.__firstMessageAt;",
            &[],
        );
        times.push(first.as_f64().unwrap_or(f64::NAN));
        let v = page.s.script(
            "return performance.getEntries()
                 .filter(e => e.entryType === 'navigation' || e.entryType === 'resource')
                 .reduce((n, e) => n + (e.transferSize || 0), 0);",
            &[],
        );
        bytes = v.as_f64().unwrap_or(0.0);
    }
    // The first load starts a fresh browser process for the page; the
    // others are what a reload costs.
    let cold = times[0];
    let mut warm = times[1..].to_vec();
    warm.sort_by(f64::total_cmp);
    eprintln!(
        "time to first message: first load {cold:.0} ms; next {} loads median {:.0} ms \
         (min {:.0}, max {:.0}); page transfer {bytes} bytes",
        warm.len(),
        warm[warm.len() / 2],
        warm[0],
        warm[warm.len() - 1],
    );
}
