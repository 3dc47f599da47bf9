//! Helpers shared by the integration tests: run the real `chat` binary,
//! start a server on a free port and stop it by its PID, and talk the
//! protocol over plain blocking sockets with deadlines (never sleeps).
#![allow(dead_code)] // each test file uses its own part of this

pub mod webdriver;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod nats;
pub mod seeded;

/// How long any single wait in a test may take before it fails the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// The binary under test.
pub fn chat_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chat"))
}

/// A `chat` command with the environment that changes behaviour cleared.
/// Its servers keep no history (`CHAT_DB=none`) unless a test passes its
/// own `--db`: tests must neither write to the user's data directory nor
/// share one database (the second server would refuse to start).
pub fn chat() -> Command {
    let mut cmd = Command::new(chat_bin());
    for var in [
        "CHAT_SERVER",
        "CHAT_NICK",
        "CHAT_ACCOUNT",
        "CHAT_PASSWORD",
        "NO_COLOR",
        "XDG_DATA_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CHAT_DB", "none");
    cmd
}

/// A running `chat server`, killed and reaped on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `chat server --listen 127.0.0.1:0 --quiet EXTRA...` and waits
    /// for its `listening on ADDR` line.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(
            chat()
                .args(["server", "--listen", "127.0.0.1:0", "--quiet"])
                .args(extra),
        )
    }

    /// Starts a prepared server command (stdout is taken over here; stderr
    /// goes nowhere unless the command set it).
    pub fn start_with(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn chat server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("server said {line:?}, not 'listening on ADDR'"))
            .parse()
            .expect("listening address");
        Server { child, addr }
    }

    /// Starts `chat server --listen 127.0.0.1:0 LISTENERS... --quiet
    /// EXTRA...` and returns it with the addresses of the `more` listeners
    /// it announces after the plaintext one (`listening for IRC on ADDR`).
    pub fn start_listeners(
        listeners: &[&str],
        extra: &[&str],
        more: usize,
    ) -> (Server, Vec<SocketAddr>) {
        let mut cmd = chat();
        cmd.args(["server", "--listen", "127.0.0.1:0"])
            .args(listeners)
            .arg("--quiet")
            .args(extra);
        Server::spawn_announced(&mut cmd, &vec![""; more])
    }

    /// Spawns a prepared `chat server` command and reads the addresses it
    /// announces: its plaintext one (`listening on ADDR`), then one line
    /// for each of `then`, which must start with that text ("" for any).
    pub fn spawn_announced(cmd: &mut Command, then: &[&str]) -> (Server, Vec<SocketAddr>) {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn chat server");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut read_addr = |prefix: &str| -> SocketAddr {
            let mut line = String::new();
            out.read_line(&mut line).expect("read server line");
            let line = line.trim();
            line.strip_prefix(prefix)
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("server said {line:?}, not '{prefix}... ADDR'"))
        };
        let addr = read_addr("listening on ");
        let addrs = then.iter().map(|p| read_addr(p)).collect();
        (Server { child, addr }, addrs)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
    ) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("kill");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(10)); // polling a child's exit, not synchronising with it
        }
    }

    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// Connects, reads the welcome and takes NICK (confirmed by the server).
    pub fn join(&self, nick: &str) -> Conn {
        let mut c = self.connect();
        let welcome = c.recv();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        c.send(&serde_json::json!({"type": "nick", "nick": nick}));
        c.recv_type("nick");
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking test client: one JSON object per line, every read bounded by
/// [`WAIT`].
pub struct Conn {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect to server");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        }
    }

    pub fn send(&mut self, msg: &Value) {
        self.send_raw(format!("{msg}\n").as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// The next line, raw; panics on EOF or after [`WAIT`].
    pub fn recv_line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read from server");
        assert!(n > 0, "server closed the connection");
        assert!(line.ends_with('\n'), "line without newline: {line:?}");
        line
    }

    pub fn recv(&mut self) -> Value {
        let line = self.recv_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    /// Skips lines until one of type `kind` arrives.
    pub fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let msg = self.recv();
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    /// Pings with a fresh token and returns everything that arrived before
    /// the pong: a barrier proving the server processed all earlier lines.
    pub fn sync(&mut self) -> Vec<Value> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let token = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.send(&serde_json::json!({"type": "ping", "token": token}));
        let mut before = Vec::new();
        loop {
            let msg = self.recv();
            if msg["type"] == "pong" && msg["token"] == token {
                return before;
            }
            before.push(msg);
        }
    }

    /// Sends one line as given (no JSON encoding), `\n` appended.
    pub fn send_line(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Asserts that the server closes the connection next, with no further
    /// line; a timeout fails (unlike [`Conn::closed`]).
    pub fn expect_eof(&mut self) {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => {}
            Ok(_) => panic!("expected the server to close the connection, got {line:?}"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the server to close the connection, got {e}"),
        }
    }

    /// True when the server has closed the connection (EOF) within [`WAIT`].
    pub fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(self.reader.read_line(&mut line), Ok(0) | Err(_))
    }
}

/// Runs a command that should end by itself and captures its output; a
/// command still running after [`WAIT`] is killed and fails the test
/// (a server that wrongly starts must not hang the suite).
pub fn output_within(cmd: &mut Command) -> Output {
    finish_within(spawn_piped(cmd.stdin(Stdio::null())))
}

/// [`output_within`] with `input` on the command's stdin, closed after it
/// (a script piped in, as in `printf 'hi\n' | chat client`).
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = spawn_piped(cmd.stdin(Stdio::piped()));
    let written = child.stdin.take().expect("stdin").write_all(input);
    // A program that fails before reading its input (a refused TLS
    // certificate) may be gone already: its output says why.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        panic!("write to chat's stdin: {e}");
    }
    finish_within(child)
}

fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat")
}

/// Waits for a child to end by itself and collects its output, as
/// [`output_within`] does.
pub fn finish_within(mut child: Child) -> Output {
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap");
            panic!(
                "command did not end within {WAIT:?}; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10)); // polling a child's exit, not synchronising with it
    }
    child.wait_with_output().expect("collect output")
}

/// A port nothing listens on: one the kernel just gave out, freed again.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "chat-test-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A field of `/proc/PID/status` given in kB (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_status_bytes(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("kB figure");
    kib * 1024
}

/// Starts measuring a process's peak resident memory (`VmHWM`) afresh from
/// its current size: writing 5 to `clear_refs` resets the peak.
pub fn reset_peak_rss(pid: i32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// Descriptors a process holds open (the entries of `/proc/PID/fd`).
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fd directory")
        .count()
}

/// Raises this process's soft open-file limit to the hard one, for tests
/// that hold a thousand sockets where a soft limit of 1024 is common.
/// Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard
}

/// Closes a connection with a reset (RST) rather than a FIN, as a crashed
/// host or a killed NAT entry does: SO_LINGER on with a zero timeout, which
/// std has no setter for.
pub fn reset(stream: TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(&stream, sockopt::Linger, &linger).expect("SO_LINGER");
    drop(stream);
}

/// Round-trip times of `n` pings, one every `every` (pacing the probe, not
/// waiting for anything); lines that arrive meanwhile are skipped.
pub fn ping_times(conn: &mut Conn, n: usize, every: Duration) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let start = Instant::now();
            conn.sync();
            let rtt = start.elapsed();
            std::thread::sleep(every.saturating_sub(rtt)); // pacing the probe
            rtt
        })
        .collect()
}

/// The 99th percentile (nearest rank) of some durations.
pub fn p99(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * 99).div_ceil(100).max(1);
    sorted[rank - 1]
}
