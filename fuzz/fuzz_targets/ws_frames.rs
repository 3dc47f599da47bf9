//! What the web door must survive from a WebSocket client: any bytes as
//! client frames go through `server::ws::Reader`, once whole and once in
//! pieces of sizes the input chooses (as the socket may hand them over).
//!
//! Input: byte 0 picks the message bound (`--max-line`, 1 to 256 bytes),
//! bytes 1 to 4 the piece sizes (cycled, 1 to 64 bytes), the rest is the
//! stream.
//!
//! Checked: nothing panics; the pieces give exactly the inputs (texts,
//! pings, the close and its code) the whole stream gives; a text is never
//! over the bound; every close code is one the door documents.

#![no_main]

use chat::server::ws::{self, Input, Reader};
use libfuzzer_sys::fuzz_target;

const CODES: [u16; 5] = [
    ws::NORMAL,
    ws::PROTOCOL,
    ws::UNSUPPORTED,
    ws::BAD_DATA,
    ws::TOO_BIG,
];

/// Feeds `pieces` in turn until the reader closes; what it handed out.
fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>, max: usize) -> Vec<String> {
    let mut reader = Reader::default();
    let mut got = Vec::new();
    for piece in pieces {
        let open = reader.feed(piece, max, |input| {
            match input {
                Input::Text(text) => {
                    assert!(text.len() <= max, "a text over the bound");
                    got.push(format!("text {text:?}"));
                }
                Input::Ping(payload) => got.push(format!("ping {payload:?}")),
                Input::Close(code) => {
                    assert!(CODES.contains(&code), "undocumented close {code}");
                    got.push(format!("close {code}"));
                }
            }
            true
        });
        if !open {
            break;
        }
    }
    got
}

fuzz_target!(|data: &[u8]| {
    let Some((&[bound, a, b, c, d], stream)) = data.split_first_chunk::<5>() else {
        return;
    };
    let max = usize::from(bound) + 1;
    let whole = run(std::iter::once(stream), max);
    let sizes = [a, b, c, d].map(|s| usize::from(s % 64) + 1);
    let mut rest = stream;
    let pieces = sizes.iter().cycle().map_while(|&size| {
        if rest.is_empty() {
            return None;
        }
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        Some(piece)
    });
    let split = run(pieces, max);
    assert_eq!(whole, split);
});
