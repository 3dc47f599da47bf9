//! The HTTP side of the web door (`--listen-http`): health, metrics, the
//! browser client's files and refusals, against a real server.

mod common;
#[path = "common/ws.rs"]
mod ws;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{Server, WAIT, chat};
use serde_json::json;

/// A server with `--listen-http`, and the HTTP address.
fn start() -> (Server, SocketAddr) {
    start_with(&[])
}

fn start_with(extra: &[&str]) -> (Server, SocketAddr) {
    let mut cmd = chat();
    cmd.args(["server", "--listen", "127.0.0.1:0"])
        .args(["--listen-http", "127.0.0.1:0", "--quiet"])
        .args(extra);
    let (server, addrs) = Server::spawn_announced(&mut cmd, &["listening for HTTP on "]);
    (server, addrs[0])
}

/// Sends `request` raw and reads the whole answer (the server closes).
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read answer");
    String::from_utf8(out).expect("utf-8 answer")
}

fn get(addr: SocketAddr, path: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// A metric's value, checking on the way that every line is a comment or
/// `name{labels} value`.
fn metric(text: &str, name: &str) -> f64 {
    let mut found = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let metric_name = key.split('{').next().unwrap_or("");
        assert!(
            !metric_name.is_empty()
                && metric_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name in {line:?}"
        );
        if let Some(labels) = key.strip_prefix(metric_name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line:?}");
        }
        if key == name {
            found = Some(value);
        }
    }
    found.unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn healthz_says_ok() {
    let (_server, http) = start();
    let answer = get(http, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(body(&answer), "ok\n");
}

#[test]
fn metrics_parse_and_count_a_message() {
    let (server, http) = start();
    let answer = get(http, "/metrics");
    assert!(
        answer.contains("Content-Type: text/plain; version=0.0.4"),
        "{answer}"
    );
    let before = metric(body(&answer), "chat_lines_in_total");
    let out_before = metric(body(&answer), "chat_messages_out_total");
    let mut ann = server.join("ann");
    let mut bob = server.join("bob");
    ann.send(&json!({"type": "group", "text": "hello"}));
    assert_eq!(bob.recv_type("group")["text"], "hello");
    let answer = get(http, "/metrics");
    let text = body(&answer);
    assert!(
        metric(text, "chat_lines_in_total") >= before + 2.0,
        "{text}"
    );
    assert!(
        metric(text, "chat_messages_out_total") > out_before,
        "{text}"
    );
    assert_eq!(
        metric(text, "chat_connections{door=\"json\"}"),
        2.0,
        "{text}"
    );
    assert_eq!(metric(text, "chat_rooms"), 1.0, "{text}");
    assert!(
        metric(text, "chat_messages_in_total{door=\"json\"}") >= 3.0,
        "{text}"
    );
    assert!(metric(text, "chat_bytes_out_total") > 0.0, "{text}");
    assert!(
        metric(text, "chat_http_requests_total{code=\"200\"}") >= 1.0,
        "{text}"
    );
    assert!(metric(text, "chat_loop_turn_seconds_count") > 0.0, "{text}");
    assert_eq!(
        metric(text, "chat_loop_turn_seconds_bucket{le=\"+Inf\"}"),
        metric(text, "chat_loop_turn_seconds_count"),
        "{text}"
    );
    assert!(metric(text, "process_open_fds") >= 5.0, "{text}");
    assert!(
        metric(text, "process_resident_memory_bytes") > 1e6,
        "{text}"
    );
}

#[test]
fn the_page_is_self_contained_and_strict() {
    let (_server, http) = start();
    let page = get(http, "/");
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    assert!(!body(&page).contains("http"), "no outside links: {page}");
    // Everything the page loads comes from this server, typed, under the
    // same policy: no inline script or style, nothing from elsewhere.
    for (path, kind) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        assert!(body(&page).contains(&format!("\"{path}\"")) || path == "/");
        let answer = get(http, path);
        let head = answer.split_once("\r\n\r\n").map_or("", |(h, _)| h);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{path}: {head}");
        assert!(
            head.contains(&format!("Content-Type: {kind}")),
            "{path}: {head}"
        );
        for header in [
            "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
             connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            "X-Content-Type-Options: nosniff",
            "Referrer-Policy: no-referrer",
            "Cache-Control: no-cache",
        ] {
            assert!(head.contains(header), "{path} lacks {header}: {head}");
        }
        assert!(!body(&answer).is_empty(), "{path} is empty");
    }
}

#[test]
fn unknown_paths_and_bad_requests_are_refused() {
    let (_server, http) = start();
    assert!(get(http, "/nope").starts_with("HTTP/1.1 404 "));
    let bad = raw(http, b"\x01\x02garbage\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 16 * 1024));
    let answer = raw(http, &big);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    // The chat server is unharmed.
    assert!(get(http, "/healthz").starts_with("HTTP/1.1 200 "));
}

#[test]
fn websocket_and_json_lines_users_talk_in_one_room() {
    let (server, http) = start();
    let mut web = ws::connect(http, Some(&format!("http://{http}"))).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    ws::send(&mut web, json!({"type": "nick", "nick": "webby"}));
    ws::recv_type(&mut web, "nick");
    let mut ann = server.join("ann");
    ann.send(&json!({"type": "group", "text": "hello web"}));
    let got = ws::recv_type(&mut web, "group");
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some("ann"), Some("hello web"))
    );
    ws::send(&mut web, json!({"type": "group", "text": "hello lines"}));
    let got = ann.recv_type("group");
    assert_eq!(got["from"], "webby");
    assert_eq!(got["text"], "hello lines");
    let metrics = get(http, "/metrics");
    let text = body(&metrics);
    assert_eq!(
        metric(text, "chat_connections{door=\"json\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(text, "chat_connections{door=\"websocket\"}"),
        1.0,
        "{text}"
    );
}

#[test]
fn a_protocol_ping_over_websocket_gets_its_pong_as_a_text_frame() {
    let (_server, http) = start();
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    ws::send(&mut web, json!({"type": "ping", "token": [1, "two"]}));
    let pong = ws::recv_type(&mut web, "pong");
    assert_eq!(pong["token"], json!([1, "two"]));
}

#[test]
fn a_page_from_elsewhere_is_refused() {
    let (_server, http) = start();
    match ws::connect(http, Some("https://evil.example")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(e) => panic!("expected 403, got {e}"),
        Ok(_) => panic!("a foreign origin got a WebSocket"),
    }
}

#[test]
fn a_frame_over_max_line_closes_with_1009_and_ping_gets_pong() {
    let (_server, http) = start_with(&["--max-line", "1024"]);
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    web.send(tungstenite::Message::Ping(b"are you there".to_vec().into()))
        .expect("ping");
    match web.read().expect("read") {
        tungstenite::Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected pong, got {other:?}"),
    }
    let big = "x".repeat(2_000);
    web.send(tungstenite::Message::text(big)).expect("send");
    loop {
        match web.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Ok(tungstenite::Message::Close(None)) => panic!("closed without a code"),
            Ok(_) => {}
            Err(e) => panic!("expected close 1009, got {e}"),
        }
    }
}

#[test]
fn bad_utf8_closes_with_1007_and_binary_with_1003() {
    let (_server, http) = start();
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    ws::raw_frame(&mut web, 0x1, b"\xff\xfe");
    assert_eq!(ws::close_code(&mut web), 1007);
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    web.send(tungstenite::Message::Binary(b"{}".to_vec().into()))
        .expect("send");
    assert_eq!(ws::close_code(&mut web), 1003);
}

#[test]
fn a_client_s_close_is_answered_with_its_code_and_it_leaves() {
    let (server, http) = start();
    let mut ann = server.join("ann");
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    ws::send(&mut web, json!({"type": "nick", "nick": "webby"}));
    ws::recv_type(&mut web, "nick");
    // 1001, "going away", as a browser closing its tab sends.
    ws::raw_frame(&mut web, 0x8, &[0x03, 0xE9, b'b', b'y', b'e']);
    let mut answer = Vec::new();
    web.get_mut()
        .read_to_end(&mut answer)
        .expect("read to the end");
    assert_eq!(
        answer,
        [0x88, 2, 0x03, 0xE9],
        "the close echoed, then the end"
    );
    loop {
        let msg = ann.recv();
        if msg["type"] == "leave" {
            assert_eq!(msg["nick"], "webby", "{msg}");
            break;
        }
    }
    // A close frame done wrong is answered as such.
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    ws::raw_frame(&mut web, 0x8, &[0x03, 0xED]);
    assert_eq!(ws::close_code(&mut web), 1002, "1005 may not be sent");
    unharmed(&mut ann, http);
}

#[test]
fn a_full_server_refuses_the_upgrade_with_503() {
    let (server, http) = start_with(&["--max-clients", "1"]);
    let _ann = server.join("ann");
    match ws::connect(http, None) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        Err(e) => panic!("expected 503, got {e}"),
        Ok(_) => panic!("a full server took a WebSocket"),
    }
}

/// The answer as the header says it: the head, and a body of exactly
/// Content-Length bytes.
fn whole(answer: &str) -> bool {
    let length = answer
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    length == Some(body(answer).len())
}

#[test]
fn a_client_that_reads_slowly_gets_the_whole_answer() {
    use nix::sys::socket::{setsockopt, sockopt};
    let (_server, http) = start();
    for path in ["/", "/metrics"] {
        let mut slow = TcpStream::connect(http).expect("connect");
        // A small receive window: the server's
        // writes outrun it at once.
        setsockopt(&slow, sockopt::RcvBuf, &4096).expect("SO_RCVBUF");
        slow.set_read_timeout(Some(WAIT)).expect("timeout");
        slow.write_all(format!("GET {path} HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
            .expect("write");
        // Answered meanwhile: the slow one holds no one up, and its
        // answer is queued by now.
        assert!(get(http, "/healthz").starts_with("HTTP/1.1 200 "));
        let mut out = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            match slow.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("reading {path}: {e}"),
            }
        }
        let answer = String::from_utf8(out).expect("utf-8");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(whole(&answer), "cut short: {answer}");
    }
}

#[test]
fn a_wss_session_round_trips_a_message_with_a_json_user() {
    use chat::addr::Host;
    use rustls::StreamOwned;
    let dir = common::TempDir::new("wss");
    let cert = dir.path.join("cert.pem");
    let key = dir.path.join("key.pem");
    let made = common::output_within(
        chat()
            .args(["cert", "--host", "localhost", "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key),
    );
    assert!(made.status.success(), "chat cert: {made:?}");
    let mut cmd = chat();
    cmd.args(["server", "--listen", "127.0.0.1:0", "--quiet"])
        .args([
            "--listen-tls",
            "127.0.0.1:0",
            "--listen-https",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key);
    let (server, https) = Server::spawn_announced(
        &mut cmd,
        &["listening for TLS on ", "listening for HTTPS on "],
    );
    let https = https[1];

    let client =
        chat::tls::Client::new(&Host::Name("localhost".into()), Some(&cert)).expect("TLS set-up");
    let mut tcp = TcpStream::connect(https).expect("connect");
    let session = client.handshake(&mut tcp, WAIT).expect("TLS handshake");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let stream = StreamOwned::new(session, tcp);
    let (mut web, _) = tungstenite::client(format!("wss://localhost:{}/ws", https.port()), stream)
        .unwrap_or_else(|e| panic!("upgrade over TLS: {e}"));
    let mut recv = |kind: &str| loop {
        match web.read().expect("read a frame") {
            tungstenite::Message::Text(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                if v["type"] == kind {
                    break v;
                }
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    };
    recv("welcome");
    let mut ann = server.join("ann");
    ann.send(&json!({"type": "group", "text": "over tls"}));
    assert_eq!(recv("group")["text"], "over tls");
    web.send(tungstenite::Message::text(
        json!({"type": "group", "text": "back over wss"}).to_string(),
    ))
    .expect("send");
    assert_eq!(ann.recv_type("group")["text"], "back over wss");

    // The rest of the door answers over TLS too.
    let mut tcp = TcpStream::connect(https).expect("connect");
    let session = client.handshake(&mut tcp, WAIT).expect("TLS handshake");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut stream = StreamOwned::new(session, tcp);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && body(&answer) == "ok\n",
        "{answer}"
    );
}

/// "Nobody else notices": a JSON-lines user is still connected and
/// answered, and so is the HTTP door.
fn unharmed(ann: &mut common::Conn, http: SocketAddr) {
    ann.sync();
    assert!(get(http, "/healthz").starts_with("HTTP/1.1 200 "));
}

#[test]
fn a_request_dribbled_byte_by_byte_is_still_answered() {
    let (server, http) = start();
    let mut ann = server.join("ann");
    let mut slow = TcpStream::connect(http).expect("connect");
    slow.set_nodelay(true).expect("nodelay");
    slow.set_read_timeout(Some(WAIT)).expect("timeout");
    for byte in format!("GET /healthz HTTP/1.1\r\nHost: {http}\r\n\r\n").bytes() {
        slow.write_all(&[byte]).expect("write a byte");
        // A round trip of the JSON user between bytes: the server reads
        // the dribble in many pieces, and serves others meanwhile.
        ann.sync();
    }
    let mut answer = String::new();
    slow.read_to_string(&mut answer).expect("answer");
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && body(&answer) == "ok\n",
        "{answer}"
    );
    unharmed(&mut ann, http);
}

#[test]
fn requests_never_finished_are_closed_at_the_deadline() {
    let (server, http) = start();
    let mut ann = server.join("ann");
    let heads: [&[u8]; 3] = [
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        // An upgrade the client never completes.
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    ];
    let started = std::time::Instant::now();
    let mut stalled: Vec<TcpStream> = heads
        .iter()
        .map(|head| {
            let mut s = TcpStream::connect(http).expect("connect");
            s.set_read_timeout(Some(WAIT + WAIT)).expect("timeout");
            s.write_all(head).expect("write");
            s
        })
        .collect();
    unharmed(&mut ann, http);
    for s in &mut stalled {
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("closed, not timed out");
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    // The deadline is 10 s (see the man page); not much earlier.
    assert!(started.elapsed() >= std::time::Duration::from_secs(8));
    unharmed(&mut ann, http);
}

#[test]
fn paths_outside_the_embedded_files_are_not_found() {
    let (server, http) = start();
    let mut ann = server.join("ann");
    for path in [
        "/../etc/passwd",
        "/%2e%2e/",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "//etc",
        "//etc/passwd",
        "/./../Cargo.toml",
    ] {
        let answer = get(http, path);
        assert!(answer.starts_with("HTTP/1.1 404 "), "{path}: {answer}");
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..100 {
        many.extend(format!("X-{i}: y\r\n").bytes());
    }
    many.extend(b"\r\n");
    let answer = raw(http, &many);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    unharmed(&mut ann, http);
}

#[test]
fn frames_done_wrong_close_with_1002() {
    let (server, http) = start();
    let mut ann = server.join("ann");
    let cases: [(&str, &[u8]); 4] = [
        ("an unmasked frame", &[0x81, 0x01, b'x']),
        // Continuation with no message begun (masked, key 0).
        ("a continuation first", &[0x80, 0x81, 0, 0, 0, 0, b'x']),
        (
            "a new text frame mid-message",
            &[0x01, 0x81, 0, 0, 0, 0, b'a', 0x81, 0x81, 0, 0, 0, 0, b'b'],
        ),
        ("a fragmented ping", &[0x09, 0x81, 0, 0, 0, 0, b'p']),
    ];
    for (what, bytes) in cases {
        let mut web = ws::connect(http, None).expect("upgrade");
        ws::recv_type(&mut web, "welcome");
        web.get_mut().write_all(bytes).expect("write");
        assert_eq!(ws::close_code(&mut web), 1002, "{what}");
        unharmed(&mut ann, http);
    }
    // Over --max-line (64 KiB by default), in fragments: 1009.
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    let chunk = vec![b'x'; 60 * 1024];
    for first in [true, false] {
        let mut frame = vec![if first { 0x01 } else { 0x00 }, 0x80 | 126];
        frame.extend((chunk.len() as u16).to_be_bytes());
        frame.extend([0, 0, 0, 0]);
        frame.extend(&chunk);
        web.get_mut().write_all(&frame).expect("write");
    }
    assert_eq!(ws::close_code(&mut web), 1009);
    unharmed(&mut ann, http);
}

#[test]
fn a_ping_flood_is_slowed_and_json_users_stay_fast() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (server, http) = start();
    let mut ann = server.join("ann");
    let mut web = ws::connect(http, None).expect("upgrade");
    ws::recv_type(&mut web, "welcome");
    let mut flood = web.get_ref().try_clone().expect("clone");
    flood
        .set_write_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // Masked pings, never reading the pongs.
            let mut batch = Vec::new();
            for _ in 0..256 {
                batch.extend([0x89, 0x80 | 4, 1, 2, 3, 4]);
                batch.extend(b"ping".iter().zip([1, 2, 3, 4]).map(|(b, m)| b ^ m));
            }
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match flood.write_all(&batch) {
                    Ok(()) => sent += 256,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            sent
        })
    };
    let times = common::ping_times(&mut ann, 40, std::time::Duration::from_millis(5));
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().expect("flooder");
    let p99 = common::p99(&times);
    eprintln!("ping flood: {sent} pings sent; a JSON user's ping p99 {p99:?}");
    assert!(
        p99 < std::time::Duration::from_millis(100),
        "a JSON user's ping took {p99:?} (p99) during a flood of {sent} pings"
    );
    // The flooder got pongs (or was closed, had its queue overflowed).
    match web.read() {
        Ok(tungstenite::Message::Pong(p)) => assert_eq!(&p[..], b"ping"),
        Ok(tungstenite::Message::Close(_)) | Err(_) => {}
        Ok(other) => panic!("expected a pong, got {other:?}"),
    }
    unharmed(&mut ann, http);
}

#[test]
fn a_client_streaming_after_its_request_is_cut_off() {
    let (server, http) = start();
    let mut ann = server.join("ann");
    let mut hose = TcpStream::connect(http).expect("connect");
    hose.set_write_timeout(Some(WAIT)).expect("timeout");
    hose.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
        .expect("request");
    let junk = vec![b'x'; 64 * 1024];
    let streamer = std::thread::spawn(move || {
        // Until the server closes (reset or broken pipe); at most 1 GiB.
        for _ in 0..16 * 1024 {
            if hose.write_all(&junk).is_err() {
                return true;
            }
        }
        false
    });
    unharmed(&mut ann, http);
    assert!(streamer.join().expect("streamer"), "never cut off");
    unharmed(&mut ann, http);
}
