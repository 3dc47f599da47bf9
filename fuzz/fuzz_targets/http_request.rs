//! What the web door must survive from a client before it speaks
//! WebSocket: any bytes as an HTTP request head go through
//! `server::http::answer`, as the event loop calls it after each read.
//!
//! Checked: nothing panics; an answer is one HTTP/1.1 response with a
//! three-digit status whose body is exactly Content-Length bytes; a
//! 101 is only for `GET /ws` and takes no more than was given; "more,
//! please" only while the head is under its 8 KiB bound (past it the
//! answer is 431), so a slow client can never make the server buffer
//! without end.

#![no_main]

use chat::server::http::{self, MAX_HEAD, Verdict};
use libfuzzer_sys::fuzz_target;

fn check_answer(answer: &[u8]) {
    let text = std::str::from_utf8(answer).expect("answers are text");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.strip_prefix("HTTP/1.1 ").expect("a status line");
    assert!(
        status.len() >= 3 && status.as_bytes()[..3].iter().all(u8::is_ascii_digit),
        "{status}"
    );
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse::<usize>().ok());
    // A HEAD request gets the length of the body it did not get.
    if let Some(length) = length
        && !body.is_empty()
    {
        assert_eq!(length, body.len(), "{head}");
    }
}

fuzz_target!(|data: &[u8]| {
    let origins = ["https://chat.example.org".to_owned()];
    match http::answer(data, &origins, Default::default) {
        Verdict::More => assert!(data.len() < MAX_HEAD, "more past the bound"),
        Verdict::Answer(answer) => check_answer(&answer),
        Verdict::Upgrade { answer, used } => {
            assert!(used <= data.len());
            assert!(answer.starts_with(b"HTTP/1.1 101 "));
            let head = String::from_utf8_lossy(&data[..used]);
            assert!(head.starts_with("GET /ws"), "{head}");
        }
    }
});
