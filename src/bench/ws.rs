//! The client side of the web door's WebSocket (RFC 6455) for `--proto
//! ws`: the upgrade, then one protocol-v2 JSON message per text frame.
//!
//! Written here rather than with tungstenite's frame layer: a fan-out run
//! decodes millions of frames a second on the cores the server needs, and
//! here each frame's payload is handed on as a slice of the read buffer,
//! where tungstenite's `Frame` owns a `Vec` per frame. The subset a bench
//! needs is small: masked text frames out, unmasked frames in (text,
//! continuation, ping answered with pong, close), and the `101` answer
//! checked against the key we sent.
//!
//! The owner queues whole lines, as with every other protocol; [`Session`]
//! frames each line when the connection is flushed, and turns each text
//! frame that arrives back into a line.
//!
//! One line is translated: a token-less `ping` goes out as a WebSocket
//! ping frame, and its pong frame comes back as a `pong` line. The server
//! queues both kinds of answer after everything it queued before, so the
//! bench's synchronisation means the same; and the web door (as of this
//! writing) sends the `pong` of a JSON `ping` unframed, which no client
//! can read.

use std::io;

use base64ct::{Base64, Encoding};

/// The longest frame a server may send: as long as the longest line
/// ([`crate::peer::MAX_SERVER_LINE`]).
const MAX_FRAME: u64 = crate::peer::MAX_SERVER_LINE as u64;
/// The longest `101` answer (its headers) we wait for.
const MAX_ANSWER: usize = 16 << 10;
/// RFC 6455's fixed GUID, hashed with the client's key into the answer's
/// `Sec-WebSocket-Accept`.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The line translated to a ping frame, and the one its pong becomes.
const PING_LINE: &[u8] = b"{\"type\":\"ping\"}";
const PONG_LINE: &[u8] = b"{\"type\":\"pong\"}";
/// What our ping frames carry, to tell their pongs from others'.
const PING_PAYLOAD: &[u8] = b"bench";

/// One connection's WebSocket state.
pub struct Session {
    /// `Some(accept)` until the server's `101` has arrived: the
    /// `Sec-WebSocket-Accept` it must carry.
    upgrading: Option<String>,
    /// Bytes of an unfinished frame (or of the unfinished answer).
    pending: Vec<u8>,
    /// A fragmented message's payload so far.
    message: Vec<u8>,
    fragmented: bool,
    /// Lines the owner queued, framed on the next flush.
    lines: Vec<u8>,
    /// Masking keys. RFC 6455 wants them unpredictable so that a script
    /// cannot choose the bytes a proxy sees; the bench chooses its own
    /// bytes, so a fast generator that differs per frame is enough.
    rng: u64,
}

impl Session {
    /// A session for a connection to `host` (its `Host` header), seeded
    /// with `seed` (any value; distinct per connection); `request` receives
    /// the upgrade request to send first.
    pub fn start(host: &str, path: &str, seed: u64, request: &mut Vec<u8>) -> Session {
        let mut session = Session {
            upgrading: None,
            pending: Vec::new(),
            message: Vec::new(),
            fragmented: false,
            lines: Vec::new(),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_mut(8) {
            chunk.copy_from_slice(&session.next().to_le_bytes());
        }
        let key = Base64::encode_string(&nonce);
        session.upgrading = Some(accept_key(&key));
        request.extend_from_slice(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        );
        session
    }

    /// xorshift64.
    fn next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Where the owner queues lines (each ending in `\n`).
    pub fn lines(&mut self) -> &mut Vec<u8> {
        &mut self.lines
    }

    /// Bytes queued by the owner and not yet framed.
    pub fn queued(&self) -> usize {
        self.lines.len()
    }

    /// Moves every complete queued line into `out` as a masked text frame.
    pub fn frame_lines(&mut self, out: &mut Vec<u8>) {
        let lines = std::mem::take(&mut self.lines);
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &lines) {
            let mask = (self.next() as u32).to_le_bytes();
            match &lines[start..end] {
                PING_LINE => push_frame(out, PING, PING_PAYLOAD, mask),
                line => push_frame(out, TEXT, line, mask),
            }
            start = end + 1;
        }
        self.lines = lines;
        self.lines.drain(..start);
    }

    /// Takes `data` as read from the socket: the rest of the `101` answer,
    /// then frames. Each text message goes to `on_line` (without a final
    /// `\n`); a ping's pong is queued in `out`. An error means the server
    /// refused the upgrade, broke the protocol, or closed the WebSocket.
    pub fn feed(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        mut on_line: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        let result = if pending.is_empty() {
            self.parse(data, out, &mut on_line).map(|used| {
                pending.extend_from_slice(&data[used..]);
            })
        } else {
            pending.extend_from_slice(data);
            self.parse(&pending, out, &mut on_line).map(|used| {
                pending.drain(..used);
            })
        };
        self.pending = pending;
        result
    }

    /// Handles what `buf` holds complete; returns how much that was.
    fn parse(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        on_line: &mut impl FnMut(&[u8]),
    ) -> io::Result<usize> {
        let mut at = 0;
        if let Some(accept) = &self.upgrading {
            let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
                if buf.len() > MAX_ANSWER {
                    return Err(refused("its answer to the upgrade never ended"));
                }
                return Ok(0);
            };
            check_answer(&buf[..end], accept)?;
            self.upgrading = None;
            at = end + 4;
        }
        while let Some((frame, len)) = next_frame(&buf[at..])? {
            at += len;
            self.handle(frame, out, on_line)?;
        }
        Ok(at)
    }

    fn handle(
        &mut self,
        frame: Frame<'_>,
        out: &mut Vec<u8>,
        on_line: &mut impl FnMut(&[u8]),
    ) -> io::Result<()> {
        let line = |payload: &[u8], on_line: &mut dyn FnMut(&[u8])| {
            on_line(payload.strip_suffix(b"\n").unwrap_or(payload))
        };
        match frame.opcode {
            TEXT | BINARY if !self.fragmented => {
                if frame.fin {
                    line(frame.payload, on_line);
                } else {
                    self.fragmented = true;
                    self.message.clear();
                    self.message.extend_from_slice(frame.payload);
                }
            }
            CONTINUATION if self.fragmented => {
                self.message.extend_from_slice(frame.payload);
                if frame.fin {
                    self.fragmented = false;
                    line(&self.message, on_line);
                }
            }
            PING => {
                let mask = self.next() as u32;
                push_frame(out, PONG, frame.payload, mask.to_le_bytes());
            }
            PONG if frame.payload == PING_PAYLOAD => on_line(PONG_LINE),
            PONG => {}
            CLOSE => {
                let code = frame
                    .payload
                    .get(..2)
                    .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the server closed the WebSocket (code {code})"),
                ));
            }
            other => {
                return Err(invalid(format!(
                    "the server sent a WebSocket frame out of place (opcode {other:#x})"
                )));
            }
        }
        Ok(())
    }
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
fn accept_key(key: &str) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    Base64::encode_string(digest.as_ref())
}

/// The answer's head (up to its blank line) must be a `101` carrying
/// `accept`.
fn check_answer(head: &[u8], accept: &str) -> io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    if status.split(' ').nth(1) != Some("101") {
        let status = crate::render::sanitize(status).into_owned();
        return Err(refused(&format!(
            "it answered {status:?} (is the address the server's --listen-http?)"
        )));
    }
    let matches = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == accept
        })
    });
    if !matches {
        return Err(refused("its Sec-WebSocket-Accept did not match our key"));
    }
    Ok(())
}

fn refused(why: &str) -> io::Error {
    invalid(format!("the server refused the WebSocket upgrade: {why}"))
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

struct Frame<'a> {
    fin: bool,
    opcode: u8,
    payload: &'a [u8],
}

/// The frame at the start of `buf` and its length, or `None` when it is
/// not all there yet.
fn next_frame(buf: &[u8]) -> io::Result<Option<(Frame<'_>, usize)>> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err(invalid("the server sent a masked WebSocket frame".into()));
    }
    let (len, head) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(b);
                (u64::from_be_bytes(bytes), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        return Err(invalid(format!(
            "the server sent a WebSocket frame of {len} bytes"
        )));
    }
    // Within MAX_FRAME, which fits a usize.
    let end = head + len as usize;
    let Some(payload) = buf.get(head..end) else {
        return Ok(None);
    };
    let frame = Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload,
    };
    Ok(Some((frame, end)))
}

/// Appends one final frame of `opcode` carrying `payload`, masked with
/// `mask`, as a client must send it.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a server sends it: unmasked.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn session() -> (Session, String) {
        let mut request = Vec::new();
        let s = Session::start("127.0.0.1:80", "/ws", 7, &mut request);
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_string();
        (s, key)
    }

    fn answer(key: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(key)
        )
        .into_bytes()
    }

    #[test]
    fn the_rfc_example_key_is_accepted() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_after_the_answer_become_lines_however_they_are_split() {
        let (_, key) = session();
        let mut wire = answer(&key);
        wire.extend(server_frame(true, TEXT, b"{\"type\":\"welcome\"}"));
        wire.extend(server_frame(false, TEXT, b"{\"a\":"));
        wire.extend(server_frame(true, CONTINUATION, b"1}\n"));
        wire.extend(server_frame(true, PING, b"hi"));
        wire.extend(server_frame(true, TEXT, &[b'x'; 300]));
        for step in [1, 3, 7, wire.len()] {
            // Seeded alike, every session sends the same key.
            let (mut s, _) = session();
            let (mut got, mut out) = (Vec::new(), Vec::new());
            for chunk in wire.chunks(step) {
                s.feed(chunk, &mut out, |l| got.push(l.to_vec())).unwrap();
            }
            assert_eq!(got.len(), 3, "split every {step}");
            assert_eq!(got[0], b"{\"type\":\"welcome\"}");
            assert_eq!(got[1], b"{\"a\":1}");
            assert_eq!(got[2], vec![b'x'; 300]);
            // The pong: masked, final, carrying "hi" once unmasked.
            assert_eq!(out[..2], [0x80 | PONG, 0x80 | 2]);
            let mask = &out[2..6];
            assert_eq!([out[6] ^ mask[0], out[7] ^ mask[1]], *b"hi");
        }
    }

    #[test]
    fn queued_lines_go_out_as_masked_text_frames() {
        let (mut s, _) = session();
        s.lines().extend_from_slice(b"{\"type\":\"nick\"}\n");
        s.lines().extend_from_slice(&[b'y'; 200]);
        s.lines().push(b'\n');
        s.lines().extend_from_slice(b"unfinished");
        let mut out = Vec::new();
        s.frame_lines(&mut out);
        assert_eq!(s.lines(), b"unfinished");
        let unmask = |frame: &[u8], head: usize, len: usize| -> Vec<u8> {
            let mask = &frame[head..head + 4];
            frame[head + 4..head + 4 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect()
        };
        assert_eq!(out[..2], [0x81, 0x80 | 15]);
        assert_eq!(unmask(&out, 2, 15), b"{\"type\":\"nick\"}");
        let second = &out[2 + 4 + 15..];
        assert_eq!(second[..4], [0x81, 0x80 | 126, 0, 200]);
        assert_eq!(unmask(second, 4, 200), vec![b'y'; 200]);
        assert_eq!(second.len(), 4 + 4 + 200);
    }

    #[test]
    fn a_ping_line_travels_as_a_ping_frame_and_its_pong_comes_back_as_a_line() {
        let (mut s, key) = session();
        let ping = crate::wire::client_line(&crate::wire::ClientMsg::Ping { token: None });
        s.lines().extend_from_slice(&ping);
        let mut out = Vec::new();
        s.frame_lines(&mut out);
        assert_eq!(out[..2], [0x80 | PING, 0x80 | PING_PAYLOAD.len() as u8]);
        let mut wire = answer(&key);
        wire.extend(server_frame(true, PONG, b"someone else's"));
        wire.extend(server_frame(true, PONG, PING_PAYLOAD));
        let mut got = Vec::new();
        s.feed(&wire, &mut Vec::new(), |l| got.push(l.to_vec()))
            .unwrap();
        assert_eq!(got, [PONG_LINE.to_vec()]);
        let kind = crate::bench::scan::Scanner::default()
            .kind(&got[0])
            .map(<[u8]>::to_vec);
        assert_eq!(kind, Some(b"pong".to_vec()));
    }

    #[test]
    fn refusals_and_closes_are_errors_that_say_why() {
        let (mut s, _) = session();
        let e = s
            .feed(b"HTTP/1.1 404 Not Found\r\n\r\n", &mut Vec::new(), |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
        let (mut s, _) = session();
        let e = s
            .feed(&answer("not our key"), &mut Vec::new(), |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("Accept"), "{e}");
        let (mut s, key) = session();
        let mut wire = answer(&key);
        wire.extend(server_frame(true, CLOSE, &1009u16.to_be_bytes()));
        let e = s.feed(&wire, &mut Vec::new(), |_| {}).unwrap_err();
        assert!(e.to_string().contains("1009"), "{e}");
        let (mut s, key) = session();
        let mut wire = answer(&key);
        wire.extend([0x81, 0x80 | 1, 0, 0, 0, 0, b'x']);
        assert!(s.feed(&wire, &mut Vec::new(), |_| {}).is_err());
    }
}
