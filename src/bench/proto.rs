//! The peers `chat bench fanout --proto` can measure beside chat: NATS and
//! Redis publish/subscribe, on one subject or channel, `bench`.
//!
//! Both deliver the message body on a line of its own (after NATS's
//! `MSG bench 1 N`, or Redis's `$N`), so the receivers find the payload
//! as they do in a chat line: by its header and length, without parsing
//! the protocol around it. The rest of the lines only drive the setup:
//! a connection is subscribed, and has had the pong that proves it, before
//! the first message is sent.

use super::scan::{self, Payload};
use crate::cli::BenchProto;

/// The subject (NATS) or channel (Redis) of every message.
const SUBJECT: &str = "bench";

/// What a line of the peer's protocol means to the bench (a payload line
/// is found before this is asked).
#[derive(Debug, PartialEq, Eq)]
pub enum PeerLine<'a> {
    /// NATS's `INFO`: the connection is open; say `CONNECT` (and `SUB`).
    Greeting,
    /// The server's keep-alive: answer [`pong`].
    Ping,
    /// The answer to our ping, or Redis's subscription confirmed.
    Synced,
    /// `-ERR ...`: the peer refused something.
    Error(&'a str),
    /// Framing around a message, `+OK`, a publish count: nothing to do.
    Other,
}

/// Reads one line (without `\n`; a `\r` before it is dropped here).
pub fn classify(proto: BenchProto, line: &[u8]) -> PeerLine<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(error) = line
        .strip_prefix(b"-ERR")
        .or_else(|| line.strip_prefix(b"-"))
    {
        return PeerLine::Error(std::str::from_utf8(error).unwrap_or("?").trim());
    }
    match (proto, line) {
        (BenchProto::Nats, l) if l.starts_with(b"INFO ") => PeerLine::Greeting,
        (BenchProto::Nats, b"PING") => PeerLine::Ping,
        (BenchProto::Nats, b"PONG") => PeerLine::Synced,
        (BenchProto::Redis, b"+PONG" | b"subscribe") => PeerLine::Synced,
        _ => PeerLine::Other,
    }
}

/// Whether the peer speaks first (NATS's `INFO`); Redis waits for us.
pub fn greets(proto: BenchProto) -> bool {
    proto == BenchProto::Nats
}

/// What a connection says once greeted: NATS's `CONNECT` (quiet: no `+OK`
/// per message), and a receiver's subscription.
pub fn hello(proto: BenchProto, receiver: bool, out: &mut Vec<u8>) {
    if proto == BenchProto::Nats {
        out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
        if receiver {
            out.extend_from_slice(format!("SUB {SUBJECT} 1\r\n").as_bytes());
        }
    }
}

/// The line whose answer proves the connection ready: a ping (after
/// NATS's `SUB`, which the server handles first), or Redis's `SUBSCRIBE`,
/// whose confirmation is that proof for a receiver.
pub fn sync(proto: BenchProto, receiver: bool, out: &mut Vec<u8>) {
    match (proto, receiver) {
        (BenchProto::Redis, true) => {
            out.extend_from_slice(format!("SUBSCRIBE {SUBJECT}\r\n").as_bytes())
        }
        _ => out.extend_from_slice(b"PING\r\n"),
    }
}

/// The answer to the server's `PING`.
pub fn pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

/// Appends one published message carrying `payload`.
pub fn push_message(proto: BenchProto, out: &mut Vec<u8>, payload: Payload, bytes: usize) {
    let len = scan::payload_len(payload, bytes);
    match proto {
        BenchProto::Chat => return scan::push_group_line(out, payload, bytes),
        BenchProto::Nats => out.extend_from_slice(format!("PUB {SUBJECT} {len}\r\n").as_bytes()),
        BenchProto::Redis => out.extend_from_slice(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{SUBJECT}\r\n${len}\r\n",
                SUBJECT.len()
            )
            .as_bytes(),
        ),
    }
    scan::push_payload(out, payload, bytes);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Payload = Payload {
        sender: 1,
        seq: 7,
        sent_ns: 99,
    };

    #[test]
    fn messages_carry_the_payload_on_a_line_of_its_own() {
        for proto in [BenchProto::Nats, BenchProto::Redis] {
            let mut out = Vec::new();
            push_message(proto, &mut out, P, 40);
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.split("\r\n").collect();
            let body = lines[lines.len() - 2];
            assert_eq!(body.len(), 40, "{text:?}");
            let length = lines[lines.len() - 3];
            assert!(length.ends_with(" 40") || length == "$40", "{text:?}");
            assert_eq!(
                scan::payload_of_bytes(body.as_bytes(), 40),
                scan::Scan::Ours(P)
            );
        }
    }

    #[test]
    fn lines_of_the_peers_are_told_apart() {
        let nats = BenchProto::Nats;
        assert_eq!(
            classify(nats, b"INFO {\"server_id\":\"x\"}\r"),
            PeerLine::Greeting
        );
        assert_eq!(classify(nats, b"PING\r"), PeerLine::Ping);
        assert_eq!(classify(nats, b"PONG\r"), PeerLine::Synced);
        assert_eq!(classify(nats, b"MSG bench 1 64\r"), PeerLine::Other);
        assert_eq!(
            classify(nats, b"-ERR 'Unknown Protocol Operation'\r"),
            PeerLine::Error("'Unknown Protocol Operation'")
        );
        let redis = BenchProto::Redis;
        assert_eq!(classify(redis, b"subscribe\r"), PeerLine::Synced);
        assert_eq!(classify(redis, b"+PONG\r"), PeerLine::Synced);
        assert_eq!(classify(redis, b":100\r"), PeerLine::Other);
        assert_eq!(
            classify(redis, b"-ERR unknown command\r"),
            PeerLine::Error("unknown command")
        );
    }
}
