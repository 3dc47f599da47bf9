//! WebSocket (RFC 6455) for the web door: the upgrade's accept key, and
//! frames in both directions. One protocol-v2 JSON message per text frame:
//! the bytes of a JSON line without its `\n`.
//!
//! The frame layer is tungstenite's (`FrameHeader` parses and formats
//! headers: lengths, opcodes, reserved bits, masks), a well-kept crate
//! rather than our own bit-twiddling. Its `WebSocket<Stream>` state machine
//! is not used: it owns the socket and keeps a 128 KiB read buffer per
//! connection, where ours share the loop's scratch buffer and an idle
//! connection holds nothing. The door's policy stays here: fragments
//! reassembled, `--max-line` as the bound of a message (1009), text only
//! (binary 1003), UTF-8 (1007), masks and control frames as the RFC says
//! (1002), pings answered, and the close handshake.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};

/// The key the server proves it read the upgrade with (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &str) -> String {
    tungstenite::handshake::derive_accept_key(client_key.trim().as_bytes())
}

/// Turns the JSON line appended to `out` from `start` into one text frame
/// (servers do not mask). Called once per event: every WebSocket receiver
/// shares the framed bytes.
pub fn frame_line(out: &mut Vec<u8>, start: usize) {
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    let len = out.len() - start;
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut head = Vec::with_capacity(header.len(len as u64));
    // Writing to a Vec cannot fail.
    let _ = header.format(len as u64, &mut head);
    out.splice(start..start, head);
}

/// A pong answering a ping that carried `payload`.
pub fn pong(payload: &[u8], out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = Frame::pong(payload.to_vec()).format(out);
}

/// A close frame with `code`.
pub fn close(code: u16, out: &mut Vec<u8>) {
    let frame = Frame::close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    }));
    let _ = frame.format(out);
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
                        OpCode::Data(data_op @ (Data::Continue | Data::Text)) => {
                            // A text frame starts a message, a continuation
                            // goes on with one: anything else is out of turn.
                            if (data_op == Data::Text) == self.fragmented {
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
                        OpCode::Data(Data::Binary) => Input::Close(UNSUPPORTED),
                        OpCode::Control(Control::Close) => Input::Close(close_answer(data)),
                        OpCode::Control(Control::Ping) => Input::Ping(data.to_vec()),
                        OpCode::Control(Control::Pong) => continue,
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
        // An idle WebSocket holds no buffer, as an idle JSON-lines reader
        // holds none: what one big message grew is given back.
        if self.input.is_empty() {
            self.input = Vec::new();
        }
        if !self.fragmented {
            self.message = Vec::new();
        }
        go_on
    }

    /// Input not yet processed (the handler paused): held by the caller
    /// and fed again later.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    fn next(&mut self, at: usize, max: usize) -> Step {
        let mut cursor = Cursor::new(&self.input[at..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Step::More,
            // A reserved opcode.
            Err(_) => return Step::Fail(PROTOCOL),
        };
        let FrameHeader {
            is_final: fin,
            rsv1,
            rsv2,
            rsv3,
            opcode,
            mask,
        } = header;
        // No extension was agreed, and clients must mask (RFC 6455 §5.1).
        let Some(mask) = mask.filter(|_| !(rsv1 || rsv2 || rsv3)) else {
            return Step::Fail(PROTOCOL);
        };
        let control = matches!(opcode, OpCode::Control(_));
        if control && (len > 125 || !fin) {
            return Step::Fail(PROTOCOL);
        }
        if len > max as u64 {
            return Step::Fail(TOO_BIG);
        }
        let len = len as usize;
        let start = at + cursor.position() as usize;
        if self.input.len() < start + len {
            return Step::More;
        }
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

/// The code to answer a client's close frame with (RFC 6455 §5.5.1, §7.4):
/// its own code echoed, 1000 for a close without one, 1002 for a body of
/// one byte or a code no endpoint may send, 1007 for a reason that is not
/// UTF-8.
fn close_answer(body: &[u8]) -> u16 {
    let Some((code, reason)) = body.split_first_chunk::<2>() else {
        return if body.is_empty() { NORMAL } else { PROTOCOL };
    };
    let code = u16::from_be_bytes(*code);
    // 1004-1006 and 1015 are reserved, never sent; 1012-1014 are
    // registered with IANA since; 3000-4999 are for libraries and
    // applications.
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        PROTOCOL
    } else if std::str::from_utf8(reason).is_err() {
        BAD_DATA
    } else {
        code
    }
}

enum Step {
    More,
    Fail(u16),
    Frame {
        end: usize,
        fin: bool,
        opcode: OpCode,
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
        let mut f = vec![first];
        match u16::try_from(payload.len()) {
            Ok(n) if n < 126 => f.push(0x80 | n as u8),
            Ok(n) => {
                f.push(0x80 | 126);
                f.extend(n.to_be_bytes());
            }
            Err(_) => unreachable!("test frames are short"),
        }
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
        assert_eq!(code(&masked(0xC1, b"x")), ["CLOSE 1002"], "rsv1 set");
        assert_eq!(code(&masked(0x83, b"x")), ["CLOSE 1002"], "reserved opcode");
        assert_eq!(
            code(&masked(0x80, b"x")),
            ["CLOSE 1002"],
            "continuation first"
        );
        assert_eq!(code(&masked(0x09, b"x")), ["CLOSE 1002"], "fragmented ping");
        assert_eq!(
            code(&masked(0x89, &[b'x'; 126][..])),
            ["CLOSE 1002"],
            "ping over 125 bytes"
        );
        assert_eq!(
            code(&masked(0x88, &[0x03])),
            ["CLOSE 1002"],
            "a one-byte close body"
        );
        assert_eq!(
            code(&masked(0x88, &[0x03, 0xED])),
            ["CLOSE 1002"],
            "close with 1005"
        );
        assert_eq!(
            code(&masked(0x88, &[0x03, 0xE7])),
            ["CLOSE 1002"],
            "close with 999"
        );
        assert_eq!(
            code(&masked(0x88, &[0x03, 0xE8, 0xff])),
            ["CLOSE 1007"],
            "reason not UTF-8"
        );
        let mut twice = masked(0x01, b"a");
        twice.extend(masked(0x81, b"b"));
        assert_eq!(code(&twice), ["CLOSE 1002"], "a new message mid-fragment");
    }

    #[test]
    fn a_client_s_close_is_echoed() {
        let code = |bytes: &[u8]| texts(&mut Reader::default(), bytes);
        assert_eq!(code(&masked(0x88, b"")), ["CLOSE 1000"], "no code");
        assert_eq!(
            code(&masked(0x88, &[0x03, 0xE9])),
            ["CLOSE 1001"],
            "going away"
        );
        assert_eq!(
            code(&masked(0x88, b"\x0f\xa0bye \xc3\xa9")),
            ["CLOSE 4000"],
            "an application's"
        );
    }

    #[test]
    fn control_frames_are_well_formed() {
        let mut out = Vec::new();
        close(TOO_BIG, &mut out);
        assert_eq!(out, [0x88, 2, 0x03, 0xF1]);
        out.clear();
        pong(b"hi", &mut out);
        assert_eq!(out, [0x8A, 2, b'h', b'i']);
        let mut line = b"{}\n".to_vec();
        frame_line(&mut line, 0);
        assert_eq!(line, [0x81, 2, b'{', b'}']);
        let mut long = vec![b'x'; 300];
        frame_line(&mut long, 0);
        assert_eq!(long[..4], [0x81, 126, 1, 44]);
    }
}
