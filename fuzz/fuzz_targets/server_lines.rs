//! What the client and the bot must survive from a server: any line goes
//! through `ServerMsg::decode`, and what decodes is shown through
//! `chat::render` (the client's and the transcript's human format), the
//! bot's failure summary, and `render::json_line` (`chat client --json`).
//!
//! Checked: nothing panics; a decoded message encodes and decodes back to
//! itself; a rendered line in the plain style holds no character a
//! terminal would act on, and the bold and colour styles differ from it
//! only by their own SGR escapes; `--json` output is the same JSON value,
//! free of raw controls.

#![no_main]

use chat::bot::matching::{Received, summary};
use chat::render::{self, Me, Renderer, Style};
use chat::wire::ServerMsg;
use libfuzzer_sys::fuzz_target;

/// Controls but tab (C0, DEL, C1) and the bidi overrides: what the
/// renderer promises never to pass through.
fn dangerous(c: char) -> bool {
    (c.is_control() && c != '\t')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// The line without `ESC [ digits-and-semicolons m`, the only escapes the
/// styles add.
fn strip_sgr(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let params = after
            .strip_prefix('[')
            .map(|p| p.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';'));
        match params.and_then(|p| p.strip_prefix('m')) {
            Some(tail) => rest = tail,
            None => panic!("a raw escape that is not a colour: {line:?}"),
        }
    }
    out.push_str(rest);
    out
}

/// Equal JSON values, floats within a relative 1e-15.
fn same_meaning(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_meaning(x, y))
        }
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_meaning(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(json) = render::json_line(data) {
        assert!(!json.contains(dangerous), "{json:?}");
        serde_json::from_str::<serde::de::IgnoredAny>(&json).expect("still JSON");
        // A `Value` refuses numbers past f64 (JSON itself allows them).
        if let Ok(sent) = serde_json::from_slice::<serde_json::Value>(data) {
            let shown: serde_json::Value = serde_json::from_str(&json).expect("still a Value");
            assert_eq!(shown, sent);
        }
    }
    let msg = match ServerMsg::decode(data) {
        Ok(msg) => msg,
        Err(e) => {
            assert!(!e.contains(dangerous), "{e:?}");
            return;
        }
    };
    let mut line = Vec::new();
    msg.encode(&mut line);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    let again = ServerMsg::decode(&line).expect("what we encode decodes");
    match (&again, &msg) {
        // A token is decoded through `serde_json::Value`, whose float
        // parsing is best-effort (no `float_roundtrip`): a float may come
        // back one unit in the last place off. Nobody reads token values
        // (the client prints raw lines), so only their meaning must hold.
        (ServerMsg::Pong { token: Some(a) }, ServerMsg::Pong { token: Some(b) }) => {
            let a: serde_json::Value = serde_json::from_str(a.get()).expect("a token");
            let b: serde_json::Value = serde_json::from_str(b.get()).expect("a token");
            assert!(same_meaning(&a, &b), "{a} != {b}");
        }
        _ => assert_eq!(again, msg, "{:?}", String::from_utf8_lossy(&line)),
    }

    // A reader whose id the input's length picks, so that some renames are
    // "you are now known as".
    let me = Me {
        id: Some(data.len() as u64 % 4),
        nick: "bob",
    };
    let plain = Renderer {
        style: Style::Plain,
    }
    .received(&msg, me);
    // A `pong` is nobody's business but the pinger's, and a type from a
    // newer server is ignored, as the protocol asks: neither is shown.
    let hidden = matches!(msg, ServerMsg::Pong { .. } | ServerMsg::Unknown);
    assert_eq!(plain.is_none(), hidden, "{msg:?}");
    if let Some(plain) = &plain {
        assert!(!plain.contains(dangerous), "{plain:?}");
    }
    for style in [Style::Bold, Style::Colour] {
        let styled = Renderer { style }.received(&msg, me);
        assert_eq!(styled.as_deref().map(strip_sgr), plain, "{style:?}");
    }
    let summary = summary(&Received::new(msg));
    assert!(!summary.contains(dangerous), "{summary:?}");
});
