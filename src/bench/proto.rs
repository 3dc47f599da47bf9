//! The peers `chat bench fanout --proto` can measure beside chat: NATS and
//! Redis publish/subscribe, on one subject or channel, `bench`, and IRC
//! (chat's own IRC door, or another IRC server) in one channel, `#bench`.
//!
//! NATS and Redis deliver the message body on a line of its own (after
//! NATS's `MSG bench 1 N`, or Redis's `$N`); IRC ends its `PRIVMSG` line
//! with it ([`body`] cuts it out). The receivers then find the payload
//! as they do in a chat line: by its header and length, without parsing
//! the protocol around it. The rest of the lines only drive the setup:
//! a connection is subscribed, and has had the pong that proves it, before
//! the first message is sent.

use super::scan::{self, Payload};
use crate::cli::BenchProto;

/// The subject (NATS) or channel (Redis) of every message.
const SUBJECT: &str = "bench";
/// The IRC channel of every message.
const CHANNEL: &str = "#bench";
/// What precedes the payload on an IRC delivery, after the sender's prefix.
const PRIVMSG: &[u8] = b" PRIVMSG #bench :";

/// What a line of the peer's protocol means to the bench (a payload line
/// is found before this is asked).
#[derive(Debug, PartialEq, Eq)]
pub enum PeerLine<'a> {
    /// NATS's `INFO`, IRC's `001`: the connection is open (registered);
    /// say `CONNECT` (and `SUB`), or `JOIN`.
    Greeting,
    /// The server's keep-alive: answer [`pong`].
    Ping,
    /// The answer to our ping, or Redis's subscription confirmed.
    Synced,
    /// `-ERR ...`, an IRC error numeric or `ERROR`: the peer refused
    /// something.
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
    if proto == BenchProto::Irc {
        return classify_irc(line);
    }
    match (proto, line) {
        (BenchProto::Nats, l) if l.starts_with(b"INFO ") => PeerLine::Greeting,
        (BenchProto::Nats, b"PING") => PeerLine::Ping,
        (BenchProto::Nats, b"PONG") => PeerLine::Synced,
        (BenchProto::Redis, b"+PONG" | b"subscribe") => PeerLine::Synced,
        _ => PeerLine::Other,
    }
}

/// An IRC line, `[:prefix] COMMAND params`: the welcome, a ping, our
/// pong, and the numerics that refuse (400 to 599, but for 422, "no
/// message of the day", which only informs) are what matter.
fn classify_irc(line: &[u8]) -> PeerLine<'_> {
    let rest = match line.strip_prefix(b":") {
        Some(prefixed) => match memchr::memchr(b' ', prefixed) {
            Some(space) => &prefixed[space + 1..],
            None => return PeerLine::Other,
        },
        None => line,
    };
    let command = &rest[..memchr::memchr(b' ', rest).unwrap_or(rest.len())];
    match command {
        b"001" => PeerLine::Greeting,
        b"422" => PeerLine::Other,
        b"PING" => PeerLine::Ping,
        b"PONG" => PeerLine::Synced,
        b"ERROR" => PeerLine::Error(std::str::from_utf8(rest).unwrap_or("?").trim()),
        [b'4' | b'5', b'0'..=b'9', b'0'..=b'9'] => {
            PeerLine::Error(std::str::from_utf8(rest).unwrap_or("?").trim())
        }
        _ => PeerLine::Other,
    }
}

/// Whether the peer speaks first (NATS's `INFO`, IRC's welcome once we
/// have registered); Redis waits for us.
pub fn greets(proto: BenchProto) -> bool {
    matches!(proto, BenchProto::Nats | BenchProto::Irc)
}

/// What a connection says as soon as it is open: IRC's registration.
pub fn open(proto: BenchProto, nick: &str, out: &mut Vec<u8>) {
    if proto == BenchProto::Irc {
        out.extend_from_slice(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes());
    }
}

/// The payload of a delivery: the whole line, or the text of an IRC
/// `PRIVMSG` to the channel (`None` for any other IRC line).
pub fn body(proto: BenchProto, line: &[u8]) -> Option<&[u8]> {
    if proto != BenchProto::Irc {
        return Some(line);
    }
    memchr::memmem::find(line, PRIVMSG).map(|at| &line[at + PRIVMSG.len()..])
}

/// What a connection says once greeted: NATS's `CONNECT` (quiet: no `+OK`
/// per message), and a receiver's subscription.
pub fn hello(proto: BenchProto, receiver: bool, out: &mut Vec<u8>) {
    match proto {
        BenchProto::Nats => {
            out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
            if receiver {
                out.extend_from_slice(format!("SUB {SUBJECT} 1\r\n").as_bytes());
            }
        }
        // Senders join too: an IRC channel refuses messages from outside
        // (mode +n) by default.
        BenchProto::Irc => out.extend_from_slice(format!("JOIN {CHANNEL}\r\n").as_bytes()),
        _ => {}
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
        (BenchProto::Irc, _) => out.extend_from_slice(b"PING :bench\r\n"),
        _ => out.extend_from_slice(b"PING\r\n"),
    }
}

/// The answer to the server's `PING` (IRC's echoes its token).
pub fn pong(proto: BenchProto, ping: &[u8], out: &mut Vec<u8>) {
    if proto == BenchProto::Irc {
        let ping = ping.strip_suffix(b"\r").unwrap_or(ping);
        let token = memchr::memmem::find(ping, b"PING ").map_or(&b""[..], |at| &ping[at + 5..]);
        out.extend_from_slice(b"PONG ");
        out.extend_from_slice(token);
        out.extend_from_slice(b"\r\n");
        return;
    }
    out.extend_from_slice(b"PONG\r\n");
}

/// Appends one published message carrying `payload`.
pub fn push_message(proto: BenchProto, out: &mut Vec<u8>, payload: Payload, bytes: usize) {
    let len = scan::payload_len(payload, bytes);
    match proto {
        BenchProto::Chat | BenchProto::Ws => return scan::push_group_line(out, payload, bytes),
        BenchProto::Irc => out.extend_from_slice(format!("PRIVMSG {CHANNEL} :").as_bytes()),
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
    fn an_irc_delivery_carries_the_payload_at_the_end_of_its_privmsg() {
        let mut out = Vec::new();
        push_message(BenchProto::Irc, &mut out, P, 40);
        let sent = out.strip_suffix(b"\r\n").unwrap();
        let delivered = [&b":s1!s1@127.0.0.1 "[..], sent].concat();
        let text = body(BenchProto::Irc, &delivered).unwrap();
        assert_eq!(scan::payload_of_bytes(text, 40), scan::Scan::Ours(P));
        assert_eq!(body(BenchProto::Irc, b":r1!r1@h JOIN #bench"), None);
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
        let irc = BenchProto::Irc;
        assert_eq!(
            classify(irc, b":irc.example 001 r1 :Welcome\r"),
            PeerLine::Greeting
        );
        assert_eq!(classify(irc, b"PING :abc\r"), PeerLine::Ping);
        assert_eq!(
            classify(irc, b":irc.example PONG irc.example :bench\r"),
            PeerLine::Synced
        );
        assert_eq!(
            classify(irc, b":irc.example 404 s0 #bench :Cannot send to channel"),
            PeerLine::Error("404 s0 #bench :Cannot send to channel")
        );
        assert_eq!(
            classify(irc, b":irc.example 353 r1 = #bench :r1 r2"),
            PeerLine::Other
        );
        assert_eq!(classify(irc, b":s0!s0@h JOIN #bench"), PeerLine::Other);
        let mut out = Vec::new();
        pong(irc, b"PING :abc\r", &mut out);
        assert_eq!(out, b"PONG :abc\r\n");
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
