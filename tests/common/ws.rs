//! A WebSocket client of the web door's `/ws` for the tests, on
//! tungstenite, every read bounded by [`WAIT`]. Included with
//! `#[path = "common/ws.rs"] mod ws;`.

#![allow(dead_code)] // each test file uses its own part of this

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use crate::common::WAIT;

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket client on `/ws`, with `origin` if given.
pub fn connect(http: SocketAddr, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
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
pub fn recv_type(ws: &mut Ws, kind: &str) -> serde_json::Value {
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

pub fn send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(tungstenite::Message::text(v.to_string()))
        .expect("send");
}

/// Sends one raw masked client frame (tungstenite will not send bad UTF-8).
pub fn raw_frame(ws: &mut Ws, opcode: u8, payload: &[u8]) {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    ws.get_mut().write_all(&frame).expect("write frame");
}

pub fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(tungstenite::Message::Close(None)) => panic!("closed without a code"),
            Ok(_) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}
