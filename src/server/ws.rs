//! WebSocket (RFC 6455) for the web door: the upgrade's accept key, and
//! frames in both directions. One protocol-v2 JSON message per text frame:
//! the bytes of a JSON line without its `\n`.

use base64ct::{Base64, Encoding};

/// The key the server proves it read the upgrade with (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(client_key.trim().as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    Base64::encode_string(ctx.finish().as_ref())
}

/// Turns the JSON line appended to `out` from `start` into one text frame
/// (servers do not mask).
pub fn frame_line(out: &mut Vec<u8>, start: usize) {
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    let len = out.len() - start;
    let header = header(0x1, len);
    out.splice(start..start, header);
}

/// A whole frame with `payload`, for control frames (pong, close).
pub fn frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.extend(header(opcode, payload.len()));
    out.extend_from_slice(payload);
}

/// A close frame with `code`.
pub fn close(code: u16, out: &mut Vec<u8>) {
    frame(0x8, &code.to_be_bytes(), out);
}

fn header(opcode: u8, len: usize) -> Vec<u8> {
    let mut h = vec![0x80 | opcode];
    if len < 126 {
        h.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        h.push(126);
        h.extend(short.to_be_bytes());
    } else {
        h.push(127);
        h.extend((len as u64).to_be_bytes());
    }
    h
}

/// What the client sent, a frame at a time.
pub enum Input<'a> {
    /// A whole text message.
    Text(&'a str),
    /// Answer with a pong carrying this.
    Ping(Vec<u8>),
    /// The client closes, or must be closed with this code.
    Close(u16),
}

/// Frames from a client, reassembled from what the socket gave.
#[derive(Default)]
pub struct Reader {
    input: Vec<u8>,
    message: Vec<u8>,
    /// A fragmented text message is under way.
    fragmented: bool,
}

/// Close codes (RFC 6455 §7.4.1).
pub const NORMAL: u16 = 1000;
pub const PROTOCOL: u16 = 1002;
pub const UNSUPPORTED: u16 = 1003;
pub const BAD_DATA: u16 = 1007;
pub const TOO_BIG: u16 = 1009;

impl Reader {
    /// Takes `bytes` and calls `each` for each complete input until it
    /// returns false or a close; returns false after a close.
    pub fn feed(&mut self, bytes: &[u8], max: usize, mut each: impl FnMut(Input) -> bool) -> bool {
        self.input.extend_from_slice(bytes);
        let mut at = 0;
        let go_on = loop {
            match self.next(at, max) {
                Step::More => break true,
                Step::Fail(code) => {
                    each(Input::Close(code));
                    break false;
                }
                Step::Frame {
                    end,
                    fin,
                    opcode,
                    payload,
                } => {
                    at = end;
                    let data = &self.input[payload];
                    let input = match opcode {
                        0x0 | 0x1 => {
                            if (opcode == 0x1) == self.fragmented {
                                each(Input::Close(PROTOCOL));
                                break false;
                            }
                            if self.message.len() + data.len() > max {
                                each(Input::Close(TOO_BIG));
                                break false;
                            }
                            self.message.extend_from_slice(data);
                            self.fragmented = !fin;
                            if !fin {
                                continue;
                            }
                            let message = std::mem::take(&mut self.message);
                            let ok = match std::str::from_utf8(&message) {
                                Ok(text) => each(Input::Text(text)),
                                Err(_) => {
                                    each(Input::Close(BAD_DATA));
                                    break false;
                                }
                            };
                            self.message = message;
                            self.message.clear();
                            if !ok {
                                break true;
                            }
                            continue;
                        }
                        0x2 => Input::Close(UNSUPPORTED),
                        0x8 => Input::Close(NORMAL),
                        0x9 => Input::Ping(data.to_vec()),
                        0xA => continue,
                        _ => Input::Close(PROTOCOL),
                    };
                    let close = matches!(input, Input::Close(_));
                    if !each(input) || close {
                        break !close;
                    }
                }
            }
        };
        self.input.drain(..at);
        go_on
    }

    /// Input not yet processed (the handler paused): held by the caller
    /// and fed again later.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    fn next(&mut self, at: usize, max: usize) -> Step {
        let buf = &self.input[at..];
        if buf.len() < 2 {
            return Step::More;
        }
        let fin = buf[0] & 0x80 != 0;
        let opcode = buf[0] & 0x0F;
        if buf[0] & 0x70 != 0 || buf[1] & 0x80 == 0 {
            // Reserved bits, or a client frame not masked.
            return Step::Fail(PROTOCOL);
        }
        let (len, mut pos) = match buf[1] & 0x7F {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            126 | 127 => return Step::More,
            n => (u64::from(n), 2),
        };
        if opcode >= 0x8 && (len > 125 || !fin) {
            return Step::Fail(PROTOCOL);
        }
        if len > max as u64 {
            return Step::Fail(TOO_BIG);
        }
        let len = len as usize;
        if buf.len() < pos + 4 + len {
            return Step::More;
        }
        let mask = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        let start = at + pos;
        for (i, b) in self.input[start..start + len].iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        Step::Frame {
            end: start + len,
            fin,
            opcode,
            payload: start..start + len,
        }
    }
}

enum Step {
    More,
    Fail(u16),
    Frame {
        end: usize,
        fin: bool,
        opcode: u8,
        payload: std::ops::Range<usize>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![first, 0x80 | payload.len() as u8];
        f.extend(mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn texts(reader: &mut Reader, bytes: &[u8]) -> Vec<String> {
        let mut got = Vec::new();
        reader.feed(bytes, 100, |input| {
            match input {
                Input::Text(t) => got.push(t.to_owned()),
                Input::Ping(_) => got.push("PING".into()),
                Input::Close(code) => got.push(format!("CLOSE {code}")),
            }
            true
        });
        got
    }

    #[test]
    fn frames_split_anywhere_and_fragments_join() {
        let mut bytes = masked(0x81, b"{\"type\":\"ping\"}");
        bytes.extend(masked(0x01, b"hel"));
        bytes.extend(masked(0x89, b"p"));
        bytes.extend(masked(0x80, b"lo"));
        let mut reader = Reader::default();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(texts(&mut reader, std::slice::from_ref(b)));
        }
        assert_eq!(got, ["{\"type\":\"ping\"}", "PING", "hello"]);
    }

    #[test]
    fn refusals_carry_their_codes() {
        let code = |bytes: &[u8]| texts(&mut Reader::default(), bytes);
        assert_eq!(code(&masked(0x81, &[0xff])), ["CLOSE 1007"]);
        assert_eq!(code(&masked(0x82, b"x")), ["CLOSE 1003"]);
        assert_eq!(code(&masked(0x81, &[b'x'; 101])), ["CLOSE 1009"]);
        assert_eq!(code(&[0x81, 0x01, b'x']), ["CLOSE 1002"], "unmasked");
    }
}
