//! A small W3C WebDriver client for the browser tests: chromedriver driven
//! over blocking HTTP/1.1 on a `TcpStream`, JSON bodies with `serde_json`.
//! No async runtime and no WebDriver crate: the tests need a dozen
//! commands, and each is one request and one answer.
//!
//! chromedriver runs in its own process group, so that dropping the
//! [`Driver`] kills it and every Chromium it started, whatever state they
//! are in. Waiting is always polling a condition against a deadline
//! ([`super::WAIT`]), never a fixed sleep.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{TempDir, WAIT};

/// The browser and its driver, as Debian's `chromium` and
/// `chromium-driver` packages install them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which WebDriver passes an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's code points for keys that are not characters.
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
    pub const SHIFT: &str = "\u{E008}";
    pub const ALT: &str = "\u{E00A}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const TAB: &str = "\u{E004}";
    pub const ARROW_UP: &str = "\u{E013}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}

/// Whether the browser tests can run here: both programs are installed.
/// Outside CI a missing one skips the test with a note on stderr; in CI
/// (`CI=true`, where `.ci/run` installs them) it fails the test.
pub fn available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} not installed, and CI must run the browser tests (.ci/run installs them)",
        missing.join(" and ")
    );
    eprintln!(
        "skipped: {} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    false
}

/// An error answer from the driver: WebDriver's error code and message.
#[derive(Debug)]
pub struct Error {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

/// A running chromedriver, killed with its browsers on drop.
pub struct Driver {
    child: Child,
    addr: SocketAddr,
    /// Chromium's configuration and cache (its crash handler's database
    /// among them), kept out of the user's home directory.
    _home: TempDir,
}

impl Driver {
    /// Starts chromedriver on a port it picks itself (`--port=0`, read back
    /// from its banner: no race for a free port) and waits until `/status`
    /// says it is ready. A driver that exits before saying its port (seen
    /// once on a loaded machine) is started again, twice at most; the
    /// failure shows what it printed.
    pub fn start() -> Driver {
        let mut said = Vec::new();
        for _ in 0..3 {
            match Driver::try_start() {
                Ok(driver) => return driver,
                Err(output) => said.push(output),
            }
        }
        panic!(
            "chromedriver did not say which port it listens on; it printed:\n{}",
            said.join("\n--\n")
        );
    }

    fn try_start() -> Result<Driver, String> {
        let home = TempDir::new("chromedriver");
        let mut child = Command::new(CHROMEDRIVER)
            .args(["--port=0", "--log-level=SEVERE"])
            .env("XDG_CONFIG_HOME", home.path.join("config"))
            .env("XDG_CACHE_HOME", home.path.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let (tx, rx) = mpsc::channel();
        // Both streams are read to their end, so that a chatty driver
        // never blocks on a full pipe; every line goes to the channel.
        let stdout = child.stdout.take().expect("chromedriver stdout");
        let stderr = child.stderr.take().expect("chromedriver stderr");
        let out_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut printed = Vec::new();
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let port = line
                        .split("started successfully on port ")
                        .nth(1)
                        .and_then(|p| p.trim_end_matches('.').trim().parse::<u16>().ok());
                    printed.push(line);
                    if let Some(port) = port {
                        break port;
                    }
                }
                Err(e) => {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(child.id() as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let status = child.wait();
                    printed.push(format!("({e}; exit {status:?})"));
                    return Err(printed.join("\n"));
                }
            }
        };
        let driver = Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _home: home,
        };
        wait_for("chromedriver to be ready", || {
            driver
                .request("GET", "/status", None)
                .ok()
                .filter(|v| v["ready"] == true)
        });
        Ok(driver)
    }

    /// Opens a fresh headless Chromium with its own profile directory and
    /// a viewport of `width` x `height` CSS pixels (the window is grown by
    /// whatever its frame takes, so the page gets the size asked for).
    pub fn session(&self, width: u32, height: u32) -> Session<'_> {
        let session = self.new_session(width, height, json!({}));
        let inner = session.script("return [innerWidth, innerHeight];", &[]);
        let (w, h) = (
            inner[0].as_u64().unwrap_or(0),
            inner[1].as_u64().unwrap_or(0),
        );
        if (w, h) != (u64::from(width), u64::from(height)) && w > 0 && h > 0 {
            let outer = session.window_rect();
            let grow = |outer: &Value, inner: u64, want: u32| {
                (outer.as_u64().unwrap_or(0) + u64::from(want)).saturating_sub(inner)
            };
            session.cmd(
                "POST",
                "/window/rect",
                Some(json!({
                    "width": grow(&outer["width"], w, width),
                    "height": grow(&outer["height"], h, height),
                })),
            );
        }
        session
    }

    /// Opens a fresh headless Chromium that shows pages as a phone of
    /// `width` x `height` CSS pixels does: Chrome's mobile emulation, so
    /// the page's viewport meta tag, touch and device pixel ratio apply.
    pub fn phone_session(&self, width: u32, height: u32) -> Session<'_> {
        let emulation = json!({"mobileEmulation": {"deviceMetrics": {
            "width": width, "height": height, "pixelRatio": 2, "mobile": true, "touch": true,
        }}});
        self.new_session(width, height, emulation)
    }

    fn new_session(&self, width: u32, height: u32, extra: Value) -> Session<'_> {
        let profile = TempDir::new("chromium");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--user-data-dir={}", profile.path.display()),
            format!("--window-size={width},{height}"),
        ];
        let mut options = json!({"binary": CHROMIUM, "args": args});
        if let (Some(options), Some(extra)) = (options.as_object_mut(), extra.as_object()) {
            options.extend(extra.clone());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
            "pageLoadStrategy": "normal",
        }}});
        let value = self
            .request("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_owned();
        Session {
            driver: self,
            id,
            _profile: profile,
        }
    }

    /// One WebDriver command: `method path` with an optional JSON body;
    /// the answer's `value`, or the error it carries.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(self.addr).map_err(|e| io_error("connect", &e))?;
        stream
            .set_read_timeout(Some(WAIT * 3))
            .map_err(|e| io_error("set timeout", &e))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .map_err(|e| io_error("send", &e))?;
        let (status, answer) = read_response(stream)?;
        let value: Value = serde_json::from_slice(&answer).map_err(|e| Error {
            status,
            error: "bad answer".to_owned(),
            message: format!("{e}: {}", String::from_utf8_lossy(&answer)),
        })?;
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if status == 200 {
            return Ok(value);
        }
        Err(Error {
            status,
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or("").to_owned(),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any Chromium it left behind.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error {
        status: 0,
        error: format!("{what} to chromedriver failed"),
        message: e.to_string(),
    }
}

/// Reads an HTTP/1.1 answer: the status, then a body of `Content-Length`
/// bytes, or up to the close when there is none.
fn read_response(stream: TcpStream) -> Result<(u16, Vec<u8>), Error> {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| io_error("read", &e))?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error {
            status: 0,
            error: "bad status line".to_owned(),
            message: status_line.clone(),
        })?;
    let mut length = None;
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| io_error("read", &e))?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader
                .read_exact(&mut body)
                .map_err(|e| io_error("read", &e))?;
        }
        None => {
            reader
                .read_to_end(&mut body)
                .map_err(|e| io_error("read", &e))?;
        }
    }
    Ok((status, body))
}

/// Polls `condition` until it gives a value, failing the test after
/// [`WAIT`] with `what` was awaited.
pub fn wait_for<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20)); // pacing the poll, not synchronising
    }
}

/// One browser window, closed (and its Chromium ended) on drop.
pub struct Session<'d> {
    driver: &'d Driver,
    id: String,
    _profile: TempDir,
}

/// An element of the page, as the driver knows it.
#[derive(Clone, Debug)]
pub struct Element {
    pub id: String,
}

impl Element {
    /// The reference WebDriver expects as a script argument.
    pub fn arg(&self) -> Value {
        json!({ ELEMENT: self.id })
    }
}

impl Session<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.id)
    }

    /// A command of this session; the error if the driver refused it.
    pub fn try_cmd(&self, method: &str, tail: &str, body: Option<Value>) -> Result<Value, Error> {
        self.driver.request(method, &self.path(tail), body.as_ref())
    }

    /// A command of this session that must succeed.
    pub fn cmd(&self, method: &str, tail: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, tail, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {tail} failed: {e}"))
    }

    pub fn navigate(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.cmd("POST", "/refresh", Some(json!({})));
    }

    /// The first element matching a CSS selector, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": css});
        match self.try_cmd("POST", "/element", Some(body)) {
            Ok(v) => Some(element_of(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding {css:?} failed: {e}"),
        }
    }

    /// The element matching a CSS selector, waited for.
    pub fn find(&self, css: &str) -> Element {
        wait_for(&format!("an element matching {css:?}"), || {
            self.try_find(css)
        })
    }

    /// Every element matching a CSS selector, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({"using": "css selector", "value": css});
        let v = self.cmd("POST", "/elements", Some(body));
        v.as_array()
            .map(|a| a.iter().map(element_of).collect())
            .unwrap_or_default()
    }

    /// The rendered text of an element (what a person sees, trimmed).
    pub fn text(&self, el: &Element) -> String {
        let v = self.cmd("GET", &format!("/element/{}/text", el.id), None);
        v.as_str().unwrap_or("").to_owned()
    }

    /// An attribute of an element, `None` when it has none.
    pub fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        let v = self.cmd("GET", &format!("/element/{}/attribute/{name}", el.id), None);
        v.as_str().map(str::to_owned)
    }

    pub fn click(&self, el: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/click", el.id),
            Some(json!({})),
        );
    }

    /// Types `text` into an element; [`keys`] give Enter and friends.
    pub fn send_keys(&self, el: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.id),
            Some(json!({ "text": text })),
        );
    }

    /// Clears an input or textarea.
    pub fn clear(&self, el: &Element) {
        self.cmd(
            "POST",
            &format!("/element/{}/clear", el.id),
            Some(json!({})),
        );
    }

    /// Presses `key` while holding `modifier` (Shift+Enter, Alt+ArrowUp)
    /// in the focused element, through the actions API: a real key-down
    /// and key-up sequence, as a keyboard would send.
    pub fn chord(&self, modifier: &str, key: &str) {
        let actions = json!({"actions": [{
            "type": "key", "id": "keyboard",
            "actions": [
                {"type": "keyDown", "value": modifier},
                {"type": "keyDown", "value": key},
                {"type": "keyUp", "value": key},
                {"type": "keyUp", "value": modifier},
            ],
        }]});
        self.cmd("POST", "/actions", Some(actions));
        self.cmd("DELETE", "/actions", None);
    }

    /// Presses and releases one key in the focused element.
    pub fn press(&self, key: &str) {
        let actions = json!({"actions": [{
            "type": "key", "id": "keyboard",
            "actions": [{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}],
        }]});
        self.cmd("POST", "/actions", Some(actions));
        self.cmd("DELETE", "/actions", None);
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub fn script(&self, script: &str, args: &[Value]) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Polls a script until it returns something truthy; returns that.
    pub fn wait_script(&self, what: &str, script: &str, args: &[Value]) -> Value {
        wait_for(what, || {
            let v = self.script(script, args);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            truthy.then_some(v)
        })
    }

    /// The window's position and size (`x`, `y`, `width`, `height`).
    pub fn window_rect(&self) -> Value {
        self.cmd("GET", "/window/rect", None)
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Takes a screenshot of the viewport and writes the PNG to `file`;
    /// returns its bytes.
    pub fn screenshot(&self, file: &Path) -> Vec<u8> {
        use base64ct::Encoding as _;
        let v = self.cmd("GET", "/screenshot", None);
        let b64 = v.as_str().expect("screenshot is a base64 string");
        let png = base64ct::Base64::decode_vec(b64).expect("screenshot is valid base64");
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot directory");
        }
        std::fs::write(file, &png).expect("write the screenshot");
        png
    }

    /// A Chrome DevTools Protocol command, through chromedriver: for what
    /// WebDriver has no command for (a script run before the page's own).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
    }

    /// What the page printed to its console (errors such as a refused
    /// script or a CSP violation), for failure messages.
    pub fn console(&self) -> Vec<String> {
        self.try_cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| format!("{} {}", e["level"], e["message"]))
            .collect()
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.driver.request("DELETE", &self.path(""), None);
    }
}

fn element_of(v: &Value) -> Element {
    Element {
        id: v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {v}"))
            .to_owned(),
    }
}

/// Where the tests leave their screenshots: `target/browser-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("browser-screenshots")
}
