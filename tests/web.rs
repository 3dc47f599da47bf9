//! The HTTP side of the web door (`--listen-http`): health, metrics, the
//! browser client's files and refusals, against a real server.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;

use common::{Server, WAIT, chat};
use serde_json::json;

/// A server with `--listen-http`, and the HTTP address.
fn start() -> (Server, SocketAddr) {
    start_with(&[])
}

fn start_with(extra: &[&str]) -> (Server, SocketAddr) {
    let mut child = chat()
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(["--listen-http", "127.0.0.1:0", "--quiet"])
        .args(extra)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn chat server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut read_addr = |prefix: &str| -> SocketAddr {
        let mut line = String::new();
        out.read_line(&mut line).expect("read server line");
        line.trim()
            .strip_prefix(prefix)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("server said {line:?}, not '{prefix}ADDR'"))
    };
    let addr = read_addr("listening on ");
    let http = read_addr("listening for HTTP on ");
    (Server { child, addr }, http)
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

type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket client on `/ws`, with `origin` if given.
fn ws_connect(http: SocketAddr, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{http}/ws").into_client_request()?;
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header value"));
    }
    let stream = TcpStream::connect(http).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    tungstenite::client(request, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
        })
}

/// The next JSON message of type `kind`.
fn ws_recv_type(ws: &mut Ws, kind: &str) -> serde_json::Value {
    loop {
        match ws.read().expect("read a frame") {
            tungstenite::Message::Text(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).expect("one JSON message");
                if v["type"] == kind {
                    return v;
                }
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

fn ws_send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(tungstenite::Message::text(v.to_string()))
        .expect("send");
}

#[test]
fn websocket_and_json_lines_users_talk_in_one_room() {
    let (server, http) = start();
    let mut web = ws_connect(http, Some(&format!("http://{http}"))).expect("upgrade");
    ws_recv_type(&mut web, "welcome");
    ws_send(&mut web, json!({"type": "nick", "nick": "webby"}));
    ws_recv_type(&mut web, "nick");
    let mut ann = server.join("ann");
    ann.send(&json!({"type": "group", "text": "hello web"}));
    let got = ws_recv_type(&mut web, "group");
    assert_eq!(
        (got["from"].as_str(), got["text"].as_str()),
        (Some("ann"), Some("hello web"))
    );
    ws_send(&mut web, json!({"type": "group", "text": "hello lines"}));
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
fn a_page_from_elsewhere_is_refused() {
    let (_server, http) = start();
    match ws_connect(http, Some("https://evil.example")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(e) => panic!("expected 403, got {e}"),
        Ok(_) => panic!("a foreign origin got a WebSocket"),
    }
}

#[test]
fn a_frame_over_max_line_closes_with_1009_and_ping_gets_pong() {
    let (_server, http) = start_with(&["--max-line", "1024"]);
    let mut web = ws_connect(http, None).expect("upgrade");
    ws_recv_type(&mut web, "welcome");
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

/// Sends one raw masked client frame (tungstenite will not send bad UTF-8).
fn raw_frame(ws: &mut Ws, opcode: u8, payload: &[u8]) {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    ws.get_mut().write_all(&frame).expect("write frame");
}

fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(tungstenite::Message::Close(None)) => panic!("closed without a code"),
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

#[test]
fn bad_utf8_closes_with_1007_and_binary_with_1003() {
    let (_server, http) = start();
    let mut web = ws_connect(http, None).expect("upgrade");
    ws_recv_type(&mut web, "welcome");
    raw_frame(&mut web, 0x1, b"\xff\xfe");
    assert_eq!(close_code(&mut web), 1007);
    let mut web = ws_connect(http, None).expect("upgrade");
    ws_recv_type(&mut web, "welcome");
    web.send(tungstenite::Message::Binary(b"{}".to_vec().into()))
        .expect("send");
    assert_eq!(close_code(&mut web), 1003);
}

#[test]
fn a_full_server_refuses_the_upgrade_with_503() {
    let (server, http) = start_with(&["--max-clients", "1"]);
    let _ann = server.join("ann");
    match ws_connect(http, None) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        Err(e) => panic!("expected 503, got {e}"),
        Ok(_) => panic!("a full server took a WebSocket"),
    }
}
