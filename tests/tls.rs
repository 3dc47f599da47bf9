//! TLS end to end: `chat cert` makes a pair, `chat server --listen-tls`
//! serves it beside the plaintext port, and client, bot and raw sessions
//! talk across the two. Verification failures end in one line and exit 1;
//! SIGHUP reloads the pair (a bad one is refused and the old one serves);
//! stalled or garbage handshakes hold nobody up and end at their deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chat::addr::Host;
use common::{Conn, Server, TempDir, WAIT, chat, output_with_input, output_within};
use rustls::{ClientConnection, StreamOwned};
use serde_json::{Value, json};

/// `chat cert --host HOSTS... --cert DIR/NAME-cert.pem --key DIR/NAME-key.pem`;
/// returns the two paths.
fn make_cert(dir: &Path, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let mut cmd = chat();
    cmd.arg("cert")
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key);
    for host in hosts {
        cmd.args(["--host", host]);
    }
    let out = output_within(&mut cmd);
    assert!(out.status.success(), "chat cert: {out:?}");
    (cert, key)
}

/// A server with both listeners; its stderr lines arrive on `stderr`.
struct TlsServer {
    server: Server,
    tls_addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

fn start_tls(cert: &Path, key: &Path) -> TlsServer {
    start_tls_with(cert, key, &[])
}

fn start_tls_with(cert: &Path, key: &Path, extra: &[&str]) -> TlsServer {
    let mut child = chat()
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--listen-tls",
            "127.0.0.1:0",
            "--quiet",
        ])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut read_addr = |prefix: &str| -> SocketAddr {
        line.clear();
        out.read_line(&mut line).expect("read the server's line");
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("server said {line:?}, not '{prefix}ADDR'"))
            .parse()
            .expect("address")
    };
    let addr = read_addr("listening on ");
    let tls_addr = read_addr("listening for TLS on ");
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    TlsServer {
        server: Server { child, addr },
        tls_addr,
        stderr: rx,
    }
}

/// A blocking TLS session speaking the protocol, as [`Conn`] does in
/// plaintext.
struct TlsConn {
    inner: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsConn {
    fn try_connect(addr: SocketAddr, host: &str, ca: &Path) -> std::io::Result<TlsConn> {
        let host = match host.parse() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.into()),
        };
        let client = chat::tls::Client::new(&host, Some(ca)).expect("TLS set-up");
        let mut tcp = TcpStream::connect(addr)?;
        let session = client.handshake(&mut tcp, WAIT)?;
        tcp.set_read_timeout(Some(WAIT))?;
        Ok(TlsConn {
            inner: BufReader::new(StreamOwned::new(session, tcp)),
        })
    }

    fn connect(addr: SocketAddr, ca: &Path) -> TlsConn {
        TlsConn::try_connect(addr, "localhost", ca).expect("TLS connect")
    }

    fn join(addr: SocketAddr, ca: &Path, nick: &str) -> TlsConn {
        let mut c = TlsConn::connect(addr, ca);
        assert_eq!(c.recv()["type"], "welcome");
        c.send(&json!({"type": "nick", "nick": nick}));
        c.recv_type("nick");
        c
    }

    fn send(&mut self, msg: &Value) {
        let s = self.inner.get_mut();
        s.write_all(format!("{msg}\n").as_bytes()).expect("write");
        s.flush().expect("flush");
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.inner.read_line(&mut line).expect("read");
        assert!(n > 0, "server closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let msg = self.recv();
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    /// A ping round trip.
    fn sync(&mut self) {
        self.send(&json!({"type": "ping", "token": 7}));
        let pong = self.recv_type("pong");
        assert_eq!(pong["token"], 7);
    }
}

/// Exactly one line on stderr, `chat: ` and something containing `want`,
/// and exit status 1.
fn assert_one_line_failure(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("chat: "), "{err}");
    assert!(lines[0].contains(want), "{err}");
}

#[test]
fn client_and_bot_over_tls_talk_with_a_plaintext_user() {
    let dir = TempDir::new("tls-talk");
    let (cert, key) = make_cert(&dir.path, "srv", &["localhost", "127.0.0.1"]);
    let s = start_tls(&cert, &key);
    let mut plain = s.server.join("plain");

    // The bot, by host name, against the CA of --ca.
    let script = dir.path.join("talk.chat");
    std::fs::write(
        &script,
        "@tina say hello from tls\n@tina expect group plain hi tina*\n",
    )
    .unwrap();
    let bot: Child = chat()
        .arg("bot")
        .arg(&script)
        .args(["--tls", "--ca"])
        .arg(&cert)
        .args(["--server", &format!("localhost:{}", s.tls_addr.port())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        let msg = plain.recv_type("group");
        if msg["from"] == "tina" {
            assert_eq!(msg["text"], "hello from tls");
            break;
        }
    }
    plain.send(&json!({"type": "group", "text": "hi tina, from plaintext"}));
    let out = common::finish_within(bot);
    assert!(
        out.status.success(),
        "bot: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The client, by IP address (an IP SAN), piped.
    let out = output_with_input(
        chat()
            .args(["client", "--json", "--nick", "carl", "--tls", "--ca"])
            .arg(&cert)
            .args(["--server", &s.tls_addr.to_string()]),
        b"hello, I am encrypted\n/quit\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"type\":\"welcome\""), "{stdout}");
    loop {
        let msg = plain.recv_type("group");
        if msg["from"] == "carl" {
            assert_eq!(msg["text"], "hello, I am encrypted");
            break;
        }
    }
    // And the other way: a plaintext line reaches a TLS session.
    let mut tls = TlsConn::join(s.tls_addr, &cert, "tess");
    plain.send(&json!({"type": "group", "text": "to tess"}));
    let got = tls.recv_type("group");
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some("plain"), Some("to tess"))
    );
}

#[test]
fn verification_failures_are_one_line_and_exit_1() {
    let dir = TempDir::new("tls-verify");
    // The server's certificate names localhost only: no IP SAN.
    let (cert, key) = make_cert(&dir.path, "srv", &["localhost"]);
    let (other, _) = make_cert(&dir.path, "other", &["localhost"]);
    let s = start_tls(&cert, &key);
    let port = s.tls_addr.port();
    let client = |server: &str, ca: Option<&Path>| {
        let mut cmd = chat();
        cmd.args([
            "client", "--json", "--nick", "v", "--tls", "--server", server,
        ]);
        if let Some(ca) = ca {
            cmd.arg("--ca").arg(ca);
        }
        // An empty bundle stands for a system store without our CA.
        cmd.env("SSL_CERT_FILE", &other);
        output_with_input(&mut cmd, b"/quit\n")
    };
    let by_name = format!("localhost:{port}");
    let by_ip = format!("127.0.0.1:{port}");

    let wrong_ca = client(&by_name, Some(&other));
    assert_one_line_failure(&wrong_ca, "--ca FILE");
    let system = client(&by_name, None);
    assert_one_line_failure(&system, "not signed by a CA this system trusts");
    let wrong_name = client(&by_ip, Some(&cert));
    assert_one_line_failure(&wrong_name, "it is not for 127.0.0.1");
    let plaintext_port = client(&s.server.addr.to_string(), Some(&cert));
    assert_one_line_failure(&plaintext_port, "is this its TLS port?");

    // The bot says it the same way.
    let script = dir.path.join("one.chat");
    std::fs::write(&script, "say hi\n").unwrap();
    let out = output_within(
        chat()
            .arg("bot")
            .arg(&script)
            .args(["--quiet", "--tls", "--ca"])
            .arg(&other)
            .args(["--server", &by_name]),
    );
    assert_one_line_failure(&out, "--ca FILE");

    // None of it fell back to plaintext: the plain port saw one TLS
    // client, which got the usual error, and nobody joined as "v".
    let mut plain = s.server.join("watcher");
    plain.send(&json!({"type": "who"}));
    let who = plain.recv_type("who");
    assert!(!who.to_string().contains("\"v\""), "{who}");
    // And the right name with the right CA works.
    let ok = client(&by_name, Some(&cert));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// Sends SIGHUP and waits until the server has handled it: a signal
/// queued before a ping is read in the same loop turn or an earlier one.
fn hup(s: &TlsServer, conn: &mut Conn) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.server.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    conn.sync();
}

#[test]
fn sighup_reloads_a_good_pair_and_refuses_a_bad_one() {
    let dir = TempDir::new("tls-hup");
    let (cert, key) = make_cert(&dir.path, "live", &["localhost"]);
    let old_cert = dir.path.join("old-cert.pem");
    std::fs::copy(&cert, &old_cert).unwrap();
    let (new_cert, new_key) = make_cert(&dir.path, "new", &["localhost"]);
    let s = start_tls(&cert, &key);
    let mut plain = s.server.join("plain");
    let mut before = TlsConn::join(s.tls_addr, &old_cert, "before");

    // A bad pair: the new certificate with the old key.
    std::fs::copy(&new_cert, &cert).unwrap();
    hup(&s, &mut plain);
    let line = s.stderr.recv_timeout(WAIT).expect("a line on stderr");
    assert!(line.starts_with("chat server: cannot use "), "{line}");
    assert!(
        line.contains("still using the certificate loaded before"),
        "{line}"
    );
    assert!(s.stderr.try_recv().is_err(), "one line only");
    // The old pair still serves new handshakes; the new CA is not trusted.
    TlsConn::join(s.tls_addr, &old_cert, "still-old").sync();
    assert!(TlsConn::try_connect(s.tls_addr, "localhost", &new_cert).is_err());

    // A file that is not a key at all, then a good pair.
    std::fs::write(&key, "not a key\n").unwrap();
    hup(&s, &mut plain);
    let line = s.stderr.recv_timeout(WAIT).expect("a line on stderr");
    assert!(line.contains("cannot read a private key"), "{line}");
    assert!(
        !line.contains("not a key"),
        "the key file's text is never shown: {line}"
    );
    std::fs::copy(&new_key, &key).unwrap();
    hup(&s, &mut plain);
    assert!(s.stderr.try_recv().is_err(), "a good pair is taken quietly");
    TlsConn::join(s.tls_addr, &new_cert, "after").sync();
    assert!(TlsConn::try_connect(s.tls_addr, "localhost", &old_cert).is_err());
    // A session made before goes on with the pair it was made with.
    before.sync();
}

/// A TLS record header for a handshake message of 512 bytes, then a few of
/// them: a ClientHello that never finishes.
const PARTIAL_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];

#[test]
fn stalled_handshakes_hold_nobody_up() {
    common::raise_fd_limit();
    let dir = TempDir::new("tls-stall");
    let (cert, key) = make_cert(&dir.path, "srv", &["localhost"]);
    let s = start_tls(&cert, &key);
    let mut stalled = Vec::new();
    for i in 0..1000 {
        let mut c = TcpStream::connect(s.tls_addr).expect("connect");
        if i % 2 == 0 {
            c.write_all(PARTIAL_HELLO).unwrap();
        }
        stalled.push(c);
    }
    let mut plain = s.server.join("plain");
    let mut tls = TlsConn::join(s.tls_addr, &cert, "fast");
    let start = Instant::now();
    for _ in 0..50 {
        tls.sync();
        plain.sync();
    }
    // Generous: this is "works while they stall", not a benchmark.
    assert!(
        start.elapsed() < WAIT,
        "{:?} for 100 round trips",
        start.elapsed()
    );
    plain.send(&json!({"type": "group", "text": "still here"}));
    assert_eq!(tls.recv_type("group")["text"], "still here");
    drop(stalled);
}

#[test]
fn plaintext_and_garbage_on_the_tls_port_are_closed_and_the_server_lives_on() {
    let dir = TempDir::new("tls-garbage");
    let (cert, key) = make_cert(&dir.path, "srv", &["localhost"]);
    let s = start_tls(&cert, &key);
    let garbage: [&[u8]; 4] = [
        b"{\"type\":\"ping\"}\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00],
        &[0x17; 64],
    ];
    for bytes in garbage {
        let mut c = TcpStream::connect(s.tls_addr).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c.write_all(bytes).unwrap();
        // At most an alert record, then the end; never a JSON line.
        let mut got = Vec::new();
        match c.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{bytes:?}: no clean close: {e}"),
        }
        assert!(
            got.len() < 64 && !got.contains(&b'{'),
            "{bytes:?} got {got:?}"
        );
    }
    TlsConn::join(s.tls_addr, &cert, "after").sync();
    s.server.join("plain").sync();
}

#[test]
fn a_stalled_handshake_is_closed_at_its_deadline() {
    let dir = TempDir::new("tls-deadline");
    let (cert, key) = make_cert(&dir.path, "srv", &["localhost"]);
    let s = start_tls(&cert, &key);
    let mut c = TcpStream::connect(s.tls_addr).unwrap();
    c.write_all(PARTIAL_HELLO).unwrap();
    let start = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(25),
        "closed after {took:?}"
    );
    TlsConn::join(s.tls_addr, &cert, "after").sync();
}

#[test]
fn chat_cert_writes_a_private_key_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("tls-cert");
    let (cert, key) = (dir.path.join("c.pem"), dir.path.join("k.pem"));
    let run = |force: bool| {
        let mut cmd = chat();
        cmd.args([
            "cert",
            "--host",
            "chat.example.org",
            "--host",
            "::1",
            "--cert",
        ])
        .arg(&cert)
        .arg("--key")
        .arg(&key);
        if force {
            cmd.arg("--force");
        }
        output_within(&mut cmd)
    };
    let first = run(false);
    assert!(first.status.success(), "{first:?}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stdout = String::from_utf8_lossy(&first.stdout);
    let der = chat::tls::load_certs(&cert).unwrap().remove(0);
    let fingerprint = chat::cert::fingerprint(der.as_ref());
    assert!(
        stdout.contains(&format!("SHA-256 fingerprint: {fingerprint}")),
        "{stdout}"
    );

    let before = std::fs::read(&key).unwrap();
    let again = run(false);
    assert_one_line_failure(&again, "--force");
    assert_eq!(std::fs::read(&key).unwrap(), before, "the key is untouched");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(run(true).status.success());
    assert_ne!(std::fs::read(&key).unwrap(), before);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an overwritten key is private again");

    // A host no client could check is refused before anything is written.
    let bad = dir.path.join("bad.pem");
    let out = output_within(
        chat()
            .args(["cert", "--host", "bad name", "--cert"])
            .arg(&bad)
            .arg("--key")
            .arg(dir.path.join("bad-key.pem")),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!bad.exists());
}

#[test]
fn the_bench_measures_over_tls() {
    let dir = TempDir::new("tls-bench");
    let (cert, key) = make_cert(&dir.path, "srv", &["127.0.0.1"]);
    let s = start_tls(&cert, &key);
    let server = s.tls_addr.to_string();
    let fanout = output_within(
        chat()
            .args([
                "bench", "fanout", "-r", "5", "-S", "2", "-n", "200", "--json", "--tls", "--ca",
            ])
            .arg(&cert)
            .args(["--server", &server]),
    );
    let report = String::from_utf8_lossy(&fanout.stdout);
    assert!(
        fanout.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&fanout.stderr)
    );
    assert!(report.contains("\"missing\":0"), "{report}");
    let idle = output_within(
        chat()
            .args([
                "bench", "idle", "-c", "50", "--hold", "10ms", "--tls", "--ca",
            ])
            .arg(&cert)
            .args([
                "--server",
                &server,
                "--server-pid",
                &s.server.pid().to_string(),
            ]),
    );
    assert!(
        idle.status.success(),
        "{}",
        String::from_utf8_lossy(&idle.stderr)
    );
    // Against CAs that did not sign it, the bench refuses the server, as
    // the client does.
    let (other, _) = make_cert(&dir.path, "other", &["127.0.0.1"]);
    let refused = output_within(
        chat()
            .args(["bench", "fanout", "-r", "1", "-S", "1", "-n", "1", "--tls"])
            .env("SSL_CERT_FILE", &other)
            .args(["--server", &server]),
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("certificate was refused"), "{err}");
}

#[test]
fn flood_control_holds_over_tls() {
    let dir = TempDir::new("tls-flood");
    let (cert, key) = make_cert(&dir.path, "srv", &["localhost"]);
    let s = start_tls_with(&cert, &key, &["--rate", "20", "--burst", "5"]);
    let mut flooder = TlsConn::join(s.tls_addr, &cert, "flooder");
    let start = Instant::now();
    let pings: String = (0..45)
        .map(|i| format!("{}\n", json!({"type": "ping", "token": i})))
        .collect();
    let w = flooder.inner.get_mut();
    w.write_all(pings.as_bytes()).unwrap();
    w.flush().unwrap();
    for i in 0..45 {
        assert_eq!(flooder.recv_type("pong")["token"], i);
    }
    // The bucket holds 5; the other 40 come at 20 a second.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "45 pings answered in {took:?}"
    );
}

#[test]
fn a_tls_client_that_does_not_read_is_cut_off_as_slow() {
    let dir = TempDir::new("tls-slow");
    let (cert, key) = make_cert(&dir.path, "srv", &["localhost"]);
    let s = start_tls_with(&cert, &key, &["--rate", "0", "--max-queue", "64KiB"]);
    let mut alice = s.server.join("alice");
    // It reads its welcome, then nothing more.
    let mut slow = TlsConn::connect(s.tls_addr, &cert);
    let slow_id = slow.recv()["id"].clone();
    alice.sync();
    let pad = "p".repeat(1000);
    let mut sent = 0;
    let leave = loop {
        assert!(
            sent < 12_000,
            "the non-reading TLS client was never cut off"
        );
        let round: String = (0..24)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"type": "group", "text": format!("{} {pad}", sent + i)})
                )
            })
            .collect();
        alice.send_raw(round.as_bytes());
        sent += 24;
        if let Some(leave) = alice.sync().into_iter().find(|m| m["type"] == "leave") {
            break leave;
        }
    };
    assert_eq!(leave["id"], slow_id, "{leave}");
    assert_eq!(leave["reason"], "slow", "{leave}");
    alice.sync();
}

#[test]
fn tls_options_are_checked_at_start() {
    let dir = TempDir::new("tls-start");
    let (cert, _) = make_cert(&dir.path, "srv", &["localhost"]);
    let (_, other_key) = make_cert(&dir.path, "other", &["localhost"]);
    let server = |args: &[&str], extra: &[&Path]| {
        let mut cmd = chat();
        cmd.arg("server").args(args);
        for (flag, path) in ["--tls-cert", "--tls-key"].iter().zip(extra) {
            cmd.arg(flag).arg(path);
        }
        output_within(&mut cmd)
    };
    // Nowhere to listen, or TLS without its files: usage errors.
    let none = server(&["--listen", "none"], &[]);
    assert_eq!(none.status.code(), Some(2), "{none:?}");
    let no_key = server(&["--listen-tls", "127.0.0.1:0"], &[&cert]);
    assert_eq!(no_key.status.code(), Some(2), "{no_key:?}");
    // A key that is not the certificate's: one line, exit 1.
    let mismatched = server(
        &["--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"],
        &[&cert, &other_key],
    );
    assert_one_line_failure(&mismatched, "the key is not the certificate's");
}

/// Passes one connection accepted on `listener` through to `upstream`,
/// both ways; returns both ends, to cut the connection with.
fn pass_through(listener: &std::net::TcpListener, upstream: SocketAddr) -> [TcpStream; 2] {
    let (down, _) = listener.accept().unwrap();
    let up = TcpStream::connect(upstream).unwrap();
    for (mut from, mut to) in [
        (down.try_clone().unwrap(), up.try_clone().unwrap()),
        (up.try_clone().unwrap(), down.try_clone().unwrap()),
    ] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
    [down, up]
}

/// Waits for a line containing `wanted` among the client's.
fn wait_for_line(lines: &mpsc::Receiver<String>, wanted: &str) {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) if line.contains(wanted) => return,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line with {wanted:?} ({e}); saw:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn a_lost_tls_connection_is_made_again_over_tls() {
    let dir = TempDir::new("tls-reconnect");
    let (cert, key) = make_cert(&dir.path, "srv", &["127.0.0.1"]);
    let s = start_tls(&cert, &key);
    // The client goes through a pass-through the test can cut.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let via = proxy.local_addr().unwrap().to_string();
    let mut alice = s.server.join("alice");
    let mut client = chat()
        .args(["client", "--nick", "carol", "--tls", "--ca"])
        .arg(&cert)
        .args(["--server", &via])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ends = pass_through(&proxy, s.tls_addr);
    loop {
        if alice.recv_type("nick")["new"] == "carol" {
            break;
        }
    }
    alice.send(&json!({"type": "group", "text": "before"}));
    wait_for_line(&lines, "<alice> before");
    for end in &ends {
        let _ = end.shutdown(std::net::Shutdown::Both);
    }
    wait_for_line(&lines, "trying again in");
    let _ends = pass_through(&proxy, s.tls_addr);
    wait_for_line(&lines, "connected again to");
    alice.send(&json!({"type": "group", "text": "after"}));
    wait_for_line(&lines, "<alice> after");
    client
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"back over TLS\n/quit\n")
        .unwrap();
    loop {
        let msg = alice.recv_type("group");
        if msg["text"] == "back over TLS" {
            assert_eq!(msg["from"], "carol");
            break;
        }
    }
    drop(client.stdin.take());
    assert!(common::finish_within(client).status.success());
}
