//! The load generator's hot path: writing its group lines and recognising
//! its own payloads in the server's lines without a JSON parser.
//!
//! A fan-out run receives millions of lines a second on the cores the server
//! also needs, so decoding each one with serde would make the bench the
//! bottleneck it is meant to measure. The payload is chosen so that it can be
//! found by byte search: `s<sender>:<seq>:<send_ns>:` padded with `x` to the
//! requested size, characters JSON never escapes. Field order is not relied
//! on: a compact JSON line can contain `"text":"` only as that key, because a
//! `"` inside a string is always escaped. Anything the scanner does not
//! recognise goes to [`ServerMsg::decode`](crate::wire::ServerMsg::decode)
//! (see [`Scan::Other`]), so correctness never depends on the fast path.

use memchr::memmem::Finder;

/// Digits of the send time: ns since the run began, enough for 115 days.
const SENT_DIGITS: usize = 16;

/// One of our messages, as a receiver found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload {
    pub sender: usize,
    pub seq: u64,
    /// When it was written, in ns since the run's shared start.
    pub sent_ns: u64,
}

/// What the fast path made of one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// A group line carrying one of our payloads, intact.
    Ours(Payload),
    /// A group line with our header but the wrong length: the server changed
    /// the text.
    Mangled,
    /// Anything else; the caller decodes it properly.
    Other,
}

/// Byte searchers built once per event loop.
pub struct Scanner {
    text: Finder<'static>,
    group: Finder<'static>,
    kind: Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner {
            text: Finder::new(b"\"text\":\""),
            group: Finder::new(b"\"type\":\"group\""),
            kind: Finder::new(b"\"type\":\""),
        }
    }
}

impl Scanner {
    /// Looks for our payload (of `bytes` bytes at least) in a group line.
    pub fn payload(&self, line: &[u8], bytes: usize) -> Scan {
        let Some(at) = text_start(line).or_else(|| self.search_text(line)) else {
            return Scan::Other;
        };
        let text = &line[at..];
        let Some((payload, header)) = parse_header(text) else {
            return Scan::Other;
        };
        // The text must end exactly where its length says.
        if text.get(header.max(bytes)) == Some(&b'"') {
            Scan::Ours(payload)
        } else {
            Scan::Mangled
        }
    }

    /// Where the text of a group line starts, found in any field order.
    fn search_text(&self, line: &[u8]) -> Option<usize> {
        self.group.find(line)?;
        Some(self.text.find(line)? + 8)
    }

    /// The `type` of a compact server line, when it can be found by search.
    pub fn kind<'a>(&self, line: &'a [u8]) -> Option<&'a [u8]> {
        let at = self.kind.find(line)? + 8;
        let rest = &line[at..];
        Some(&rest[..memchr::memchr(b'"', rest)?])
    }
}

/// Where the text starts in a line in the server's usual layout,
/// `{"type":"group","from":"NICK","text":"...`: a few comparisons instead
/// of two searches, for the line nearly every delivery is.
fn text_start(line: &[u8]) -> Option<usize> {
    const HEAD: &[u8] = b"{\"type\":\"group\",\"from\":\"";
    const TEXT: &[u8] = b"\",\"text\":\"";
    let rest = line.strip_prefix(HEAD)?;
    // A nickname is at most 32 characters, none of them a quote.
    let nick = rest.iter().take(33).position(|&b| b == b'"')?;
    rest[nick..]
        .starts_with(TEXT)
        .then_some(HEAD.len() + nick + TEXT.len())
}

/// Reads our payload from a decoded group text (the slow path): the same
/// verdict as [`Scanner::payload`] gives for the line.
pub fn payload_of_text(text: &str, bytes: usize) -> Scan {
    payload_of_bytes(text.as_bytes(), bytes)
}

/// The same verdict for a payload that is the whole of `text`, as other
/// protocols deliver it (a NATS or Redis message body on its own line).
pub fn payload_of_bytes(text: &[u8], bytes: usize) -> Scan {
    match parse_header(text) {
        None => Scan::Other,
        Some((payload, header)) if text.len() == header.max(bytes) => Scan::Ours(payload),
        Some(_) => Scan::Mangled,
    }
}

/// `s<sender>:<seq>:<send_ns>:` at the start of `text`, and its length.
fn parse_header(text: &[u8]) -> Option<(Payload, usize)> {
    let rest = text.strip_prefix(b"s")?;
    let (sender, rest) = number(rest)?;
    let (seq, rest) = number(rest)?;
    let sent_ns = sixteen_digits(rest)?;
    if rest.get(SENT_DIGITS) != Some(&b':') {
        return None;
    }
    let payload = Payload {
        sender: usize::try_from(sender).ok()?,
        seq,
        sent_ns,
    };
    Some((payload, text.len() - rest.len() + SENT_DIGITS + 1))
}

/// Decimal digits (1 to 19, so no overflow) followed by `:`, and what
/// follows the `:`.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut n: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(20) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return (b == b':' && i > 0).then(|| (n, &bytes[i + 1..]));
        }
        if i == 19 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    None
}

/// The send time is written with a fixed [`SENT_DIGITS`] digits so that it
/// can be read eight at a time: a digit-by-digit loop is a chain of
/// multiplications, and was a quarter of the bench's CPU time.
fn sixteen_digits(bytes: &[u8]) -> Option<u64> {
    let high = eight_digits(bytes.get(..8)?)?;
    let low = eight_digits(bytes.get(8..16)?)?;
    Some(high * 100_000_000 + low)
}

/// Eight ASCII digits, most significant first, as a number (the SWAR
/// method: pairs, then quads, then the eight, each with one multiply).
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let v = u64::from_le_bytes(bytes.try_into().ok()?);
    let d = v.wrapping_sub(0x3030_3030_3030_3030);
    // A byte below '0' sets its top bit in `d`, one above '9' in `d + 0x76`.
    if (d | d.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    let d = (d.wrapping_mul(10) + (d >> 8)) & 0x00ff_00ff_00ff_00ff;
    let d = (d.wrapping_mul(100) + (d >> 16)) & 0x0000_ffff_0000_ffff;
    Some((d.wrapping_mul(10_000) + (d >> 32)) & 0xffff_ffff)
}

/// Appends one `group` line carrying a payload of `bytes` bytes (more when
/// the header alone is longer), `\n` included.
///
/// Written by hand rather than through `wire::client_line` because senders
/// emit millions of these; the text holds only characters JSON leaves
/// unescaped, and a unit test checks that the protocol parser agrees.
pub fn push_group_line(out: &mut Vec<u8>, payload: Payload, bytes: usize) {
    out.extend_from_slice(b"{\"type\":\"group\",\"text\":\"");
    push_payload(out, payload, bytes);
    out.extend_from_slice(b"\"}\n");
}

/// Appends the text alone: `s<sender>:<seq>:<send_ns>:` padded with `x` to
/// `bytes` ([`payload_len`] bytes in all).
pub fn push_payload(out: &mut Vec<u8>, payload: Payload, bytes: usize) {
    let start = out.len();
    out.push(b's');
    push_number(out, payload.sender as u64);
    push_number(out, payload.seq);
    let sent = out.len();
    push_number(out, payload.sent_ns % 10u64.pow(SENT_DIGITS as u32));
    // Zero-pad the send time to its fixed width.
    let short = SENT_DIGITS + 1 - (out.len() - sent);
    out.splice(sent..sent, std::iter::repeat_n(b'0', short));
    let header = out.len() - start;
    out.resize(out.len() + bytes.saturating_sub(header), b'x');
}

/// How long [`push_payload`] makes the text, for protocols that send the
/// length first.
pub fn payload_len(payload: Payload, bytes: usize) -> usize {
    let digits = |n: u64| n.checked_ilog10().map_or(1, |d| d as usize + 1);
    let header = 1 + digits(payload.sender as u64) + 1 + digits(payload.seq) + 1 + SENT_DIGITS + 1;
    header.max(bytes)
}

/// `n` in decimal followed by `:`.
fn push_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.push(b':');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ClientMsg, ServerMsg, parse_client_line};

    const P: Payload = Payload {
        sender: 3,
        seq: 19_999,
        sent_ns: 1_234_567_890,
    };

    fn line(bytes: usize) -> Vec<u8> {
        let mut out = Vec::new();
        push_group_line(&mut out, P, bytes);
        out
    }

    /// The server's line for a client's group line, as it would relay it.
    fn relayed(client_line: &[u8]) -> Vec<u8> {
        let Ok(Some(ClientMsg::Group { text, .. })) = parse_client_line(client_line) else {
            panic!("not a group line: {}", String::from_utf8_lossy(client_line));
        };
        let mut out = Vec::new();
        ServerMsg::Group {
            from: "s3".into(),
            text,
            ts: 1_764_165_600_000,
            action: false,
            room: None,
            seq: 0,
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn payload_len_is_what_push_payload_writes() {
        for (sender, seq) in [(0, 0), (3, 19_999), (12, 9), (7, 10)] {
            for bytes in [0, 10, 27, 28, 64] {
                let p = Payload {
                    sender,
                    seq,
                    sent_ns: 42,
                };
                let mut out = Vec::new();
                push_payload(&mut out, p, bytes);
                assert_eq!(payload_len(p, bytes), out.len(), "{p:?} {bytes}");
                assert_eq!(payload_of_bytes(&out, bytes), Scan::Ours(p));
            }
        }
    }

    #[test]
    fn the_protocol_parser_reads_our_lines_with_the_padded_length() {
        let sent = line(64);
        assert!(sent.ends_with(b"\"}\n"));
        let Ok(Some(ClientMsg::Group { text, .. })) = parse_client_line(&sent) else {
            panic!("not a group line");
        };
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("s3:19999:0000001234567890:xxx"), "{text}");
        assert!(text.ends_with('x'));
        assert_eq!(payload_of_text(&text, 64), Scan::Ours(P));
    }

    #[test]
    fn a_header_longer_than_the_size_is_sent_whole() {
        let sent = line(4);
        let Ok(Some(ClientMsg::Group { text, .. })) = parse_client_line(&sent) else {
            panic!("not a group line");
        };
        assert_eq!(text, "s3:19999:0000001234567890:");
        assert_eq!(payload_of_text(&text, 4), Scan::Ours(P));
    }

    #[test]
    fn finds_our_payload_in_the_servers_line_in_any_field_order() {
        let s = Scanner::default();
        let server = relayed(&line(64));
        let server = &server[..server.len() - 1];
        assert_eq!(s.payload(server, 64), Scan::Ours(P));
        let text = format!("s3:19999:0000001234567890:{}", "x".repeat(38));
        let reordered = format!(r#"{{"ts":1,"text":"{text}","from":"s3","type":"group"}}"#);
        assert_eq!(s.payload(reordered.as_bytes(), 64), Scan::Ours(P));
    }

    #[test]
    fn a_changed_length_is_mangled() {
        let s = Scanner::default();
        let short = format!(
            r#"{{"type":"group","from":"s3","text":"s3:19999:0000001234567890:{}","ts":1}}"#,
            "x".repeat(37)
        );
        assert_eq!(s.payload(short.as_bytes(), 64), Scan::Mangled);
        assert_eq!(
            payload_of_text("s3:19999:0000000000000001:xx", 64),
            Scan::Mangled
        );
    }

    #[test]
    fn other_lines_go_to_the_decoder() {
        let s = Scanner::default();
        for other in [
            r#"{"type":"group","from":"bob","text":"see you","ts":1}"#,
            r#"{"type":"group","from":"bob","text":"s1:2:x","ts":1}"#,
            r#"{"type":"group","from":"bob","text":"s:1:2:3:","ts":1}"#,
            r#"{"type":"private","from":"b","to":"a","text":"s1:2:3:","ts":1}"#,
            r#"{"type":"group","from":"b","text":"s99999999999999999999999:1:2:","ts":1}"#,
            r#"{"type":"join","id":4,"nick":"guest4","ts":1}"#,
            r#"{"type": "group", "text": "s1:2:3:"}"#,
            "",
            "\"text\":\"",
        ] {
            assert_eq!(s.payload(other.as_bytes(), 6), Scan::Other, "{other}");
        }
    }

    #[test]
    fn eight_digits_at_once() {
        assert_eq!(eight_digits(b"12345678"), Some(12_345_678));
        assert_eq!(eight_digits(b"00000000"), Some(0));
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        assert_eq!(sixteen_digits(b"0000001234567890"), Some(1_234_567_890));
        for bad in [&b"1234567:"[..], b"/1234567", b"1234x678", b"1234567"] {
            assert_eq!(eight_digits(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            number(b"9999999999999999999:"),
            Some((9_999_999_999_999_999_999, &b""[..]))
        );
        assert_eq!(number(b"99999999999999999999:"), None);
        assert_eq!(sixteen_digits(b"123"), None);
    }

    #[test]
    fn kind_reads_the_type() {
        let s = Scanner::default();
        let kind = |l: &'static str| s.kind(l.as_bytes());
        assert_eq!(
            kind(r#"{"type":"join","id":4,"nick":"guest4","ts":1}"#),
            Some(&b"join"[..])
        );
        assert_eq!(kind(r#"{"id":4,"type":"pong"}"#), Some(&b"pong"[..]));
        assert_eq!(kind(r#"{"type": "pong"}"#), None);
        assert_eq!(kind(r#"{"type":"po"#), None);
    }
}
