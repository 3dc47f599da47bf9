//! The web door's HTTP side (`--listen-http`): one request per connection,
//! answered from what the loop already counts. Pure: bytes in, bytes out,
//! so the event loop only moves them.

use std::time::Duration;

use super::metrics::{self, Counts};

/// A request's head must fit in this; more is refused with 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// A request not complete by then is closed unanswered (slow senders hold
/// no slot for long).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The answer to an upgrade when the server is at `--max-clients`.
pub fn full() -> Vec<u8> {
    status(503, "Service Unavailable")
}

/// Answers that are not the page: never kept, never sniffed.
const NOT_PAGE: &str = "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";

/// What to do with the bytes read so far.
pub enum Verdict {
    /// The head is not complete yet.
    More,
    /// Write this and close.
    Answer(Vec<u8>),
    /// Write `answer` (101) and speak WebSocket; the request took `used`
    /// bytes of the input.
    Upgrade { answer: Vec<u8>, used: usize },
}

/// Judges the request in `input`; `counts` is asked for only by `/metrics`.
pub fn answer(input: &[u8], origins: &[String], counts: impl FnOnce() -> Counts) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let (path, used) = match request.parse(input) {
        Ok(httparse::Status::Partial) if input.len() >= MAX_HEAD => {
            return Verdict::Answer(status(431, "Request Header Fields Too Large"));
        }
        Ok(httparse::Status::Partial) => return Verdict::More,
        Err(httparse::Error::TooManyHeaders) => {
            return Verdict::Answer(status(431, "Request Header Fields Too Large"));
        }
        Err(_) => return Verdict::Answer(status(400, "Bad Request")),
        Ok(httparse::Status::Complete(used)) => (request.path.unwrap_or(""), used),
    };
    let method = request.method.unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Verdict::Answer(status(405, "Method Not Allowed"));
    }
    // The query does not choose the page.
    let path = path.split('?').next().unwrap_or("");
    if path == "/ws" {
        return upgrade(request.headers, method, origins, used);
    }
    let (body, kind, headers) = match path {
        "/healthz" => ("ok\n".to_owned(), "text/plain; charset=utf-8", NOT_PAGE),
        "/metrics" => (
            metrics::render(&counts()),
            "text/plain; version=0.0.4",
            NOT_PAGE,
        ),
        _ => match super::assets::find(path) {
            Some(a) => (a.body.to_owned(), a.kind, super::assets::HEADERS),
            None => return Verdict::Answer(status(404, "Not Found")),
        },
    };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{headers}",
        body.len()
    );
    out.push_str("Connection: close\r\n\r\n");
    if method == "GET" {
        out.push_str(&body);
    }
    Verdict::Answer(out.into_bytes())
}

/// The WebSocket upgrade: RFC 6455 §4.2.1's checks, then the page's
/// origin: one of `origins`, or with none given, the host it was served
/// from. Clients that are not browsers send no Origin and are let in.
fn upgrade(headers: &[httparse::Header], method: &str, origins: &[String], used: usize) -> Verdict {
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has = |name: &str, word: &str| {
        header(name).is_some_and(|v| v.split(',').any(|w| w.trim().eq_ignore_ascii_case(word)))
    };
    let key = header("Sec-WebSocket-Key");
    if method != "GET"
        || !has("Upgrade", "websocket")
        || !has("Connection", "upgrade")
        || header("Sec-WebSocket-Version").map(str::trim) != Some("13")
        || key.is_none()
    {
        return Verdict::Answer(status(400, "Bad Request"));
    }
    if let Some(origin) = header("Origin") {
        let allowed = if origins.is_empty() {
            let host = header("Host").unwrap_or("");
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        } else {
            origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
        };
        if !allowed {
            return Verdict::Answer(status(403, "Forbidden"));
        }
    }
    let accept = super::ws::accept_key(key.unwrap_or(""));
    Verdict::Upgrade {
        answer: format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes(),
        used,
    }
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Verdict) -> String {
        match v {
            Verdict::Answer(b) => String::from_utf8(b).unwrap_or_default(),
            Verdict::More => "MORE".into(),
            Verdict::Upgrade { answer, .. } => String::from_utf8(answer).unwrap_or_default(),
        }
    }

    #[test]
    fn paths_answer_as_documented() {
        let get = |p: &str| {
            text(answer(
                format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
                &[],
                Counts::default,
            ))
        };
        assert!(
            get("/healthz").starts_with("HTTP/1.1 200")
                && get("/healthz").ends_with("\r\n\r\nok\n")
        );
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
        assert!(get("/").contains("Content-Security-Policy: default-src 'none'"));
        assert!(get("/metrics").contains("chat_connections{door=\"json\"} 0"));
        assert_eq!(
            text(answer(b"GET / HTTP/1.1\r\n", &[], Counts::default)),
            "MORE"
        );
        assert!(
            text(answer(b"\x01\x02 junk\r\n\r\n", &[], Counts::default))
                .starts_with("HTTP/1.1 400")
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(text(answer(big.as_bytes(), &[], Counts::default)).starts_with("HTTP/1.1 431"));
    }
}
