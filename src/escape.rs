//! Text from the network made harmless for a terminal.
//!
//! Its own module because both the protocol (`wire`, whose decode errors
//! quote what arrived) and the human format (`render`) need it, and the
//! protocol must not depend on the presentation layer.

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters a terminal acts on instead of showing: C0 controls
/// except tab, DEL, the C1 controls (ESC's eight-bit twins), and the Unicode
/// bidirectional overrides that can make text display in an order other
/// than the one it was sent in.
pub fn is_dangerous(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\x0a'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Replaces every control character (C0 but tab, DEL, C1) and bidi
/// override with a visible escape: `\x1b`, `\u{9b}`. A newline cannot fake
/// a second line, an escape cannot drive the terminal.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.contains(is_dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_dangerous(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}
