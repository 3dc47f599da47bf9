//! What the user sees: one line per event, made safe for the terminal.
//!
//! Every piece of text from the network (messages, nicknames, the welcome,
//! error messages) goes through [`sanitize`] before it reaches the screen, so
//! no message can clear the screen, move the cursor, set the title or ring
//! the bell. The only escape sequences on a rendered line are the colours
//! written here.

use std::borrow::Cow;
use std::fmt::Write as _;

/// How much styling the output gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Not a terminal: plain text.
    Plain,
    /// A terminal with `NO_COLOR` set: no colours, but a mention is bold.
    Bold,
    /// A terminal: nicknames in colour, mentions highlighted.
    Colour,
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const MENTION: &str = "\x1b[1;33m";
/// Readable foreground colours on both dark and light backgrounds.
const NICK_COLOURS: [u8; 10] = [31, 32, 33, 34, 35, 36, 91, 92, 94, 95];

/// True for characters a terminal acts on instead of showing: C0 controls
/// except tab, DEL, the C1 controls (ESC's eight-bit twins), and the Unicode
/// bidirectional overrides that can make text display in an order other
/// than the one it was sent in.
fn is_dangerous(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\x0a'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Replaces every control character (C0 but tab, DEL, C1) and bidi
/// override with a visible escape: `\x1b`, `\u{9b}`.
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

/// A raw protocol line for `--json`, or `None` when it is not a JSON
/// value. Valid JSON can carry DEL, C1 and bidi characters raw inside
/// strings; they are rewritten as `\u` escapes, which mean the same to any
/// JSON reader and nothing to a terminal.
pub fn json_line(line: &[u8]) -> Option<String> {
    let line = line.trim_ascii();
    serde_json::from_slice::<serde::de::IgnoredAny>(line).ok()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_dangerous(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// True when `text` names `nick` as a word of its own, in any case
/// (nicknames compare case-insensitively everywhere).
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let (text, nick) = (text.as_bytes(), nick.as_bytes());
    let is_nick_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    text.windows(nick.len()).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(nick)
            && (i == 0 || !is_nick_byte(text[i - 1]))
            && text.get(i + nick.len()).is_none_or(|&b| !is_nick_byte(b))
    })
}

/// A nickname's colour: a hash of its lower-case form, so it is the same in
/// every session and for every user.
fn nick_colour(nick: &str) -> u8 {
    let hash = nick.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193)
    });
    NICK_COLOURS[hash as usize % NICK_COLOURS.len()]
}

/// Builds display lines in one style.
#[derive(Clone, Copy, Debug)]
pub struct Renderer {
    pub style: Style,
}

impl Renderer {
    /// `<alice> text`: a group message, by someone else or echoed.
    pub fn group(&self, time: &str, from: &str, text: &str, me: &str) -> String {
        let who = format!("<{}>", self.nick(from));
        self.line(time, &who, &self.body(text, from, me))
    }

    /// `*alice* text`: a private message to us.
    pub fn private_in(&self, time: &str, from: &str, text: &str, me: &str) -> String {
        let who = format!("*{}*", self.nick(from));
        self.line(time, &who, &self.body(text, from, me))
    }

    /// `-> *bob* text`: a private message we sent.
    pub fn private_out(&self, time: &str, to: &str, text: &str) -> String {
        let who = format!("-> *{}*", self.nick(to));
        self.line(time, &who, &sanitize(text))
    }

    /// `-- text`: something that happened (joins, leaves, renames, lists).
    pub fn notice(&self, time: &str, text: &str) -> String {
        self.line(time, "--", &sanitize(text))
    }

    /// `!! text`: something refused, by the server or by us.
    pub fn error(&self, time: &str, text: &str) -> String {
        self.line(time, "!!", &sanitize(text))
    }

    fn line(&self, time: &str, marker: &str, body: &str) -> String {
        match self.style {
            Style::Colour => format!("{DIM}{time}{RESET} {marker} {body}"),
            Style::Plain | Style::Bold => format!("{time} {marker} {body}"),
        }
    }

    fn nick(&self, nick: &str) -> String {
        let nick = sanitize(nick);
        match self.style {
            Style::Colour => format!("\x1b[{}m{nick}{RESET}", nick_colour(&nick)),
            Style::Plain | Style::Bold => nick.into_owned(),
        }
    }

    /// A message's text, highlighted when someone else's message mentions
    /// us.
    fn body(&self, text: &str, from: &str, me: &str) -> String {
        let text = sanitize(text);
        let highlight = !from.eq_ignore_ascii_case(me) && mentions(&text, me);
        match self.style {
            Style::Colour if highlight => format!("{MENTION}{text}{RESET}"),
            Style::Bold if highlight => format!("{BOLD}{text}{RESET}"),
            _ => text.into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Renderer = Renderer {
        style: Style::Plain,
    };
    const COLOUR: Renderer = Renderer {
        style: Style::Colour,
    };

    #[test]
    fn sanitize_shows_controls_as_escapes() {
        assert_eq!(sanitize("plain text, tab\tok"), "plain text, tab\tok");
        assert!(matches!(sanitize("héllo ✓"), Cow::Borrowed(_)));
        assert_eq!(sanitize("\x1b[2J"), "\\x1b[2J");
        assert_eq!(sanitize("bell\x07"), "bell\\x07");
        assert_eq!(sanitize("a\nb\rc"), "a\\x0ab\\x0dc");
        assert_eq!(sanitize("\0\x7f"), "\\x00\\x7f");
        assert_eq!(sanitize("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(sanitize("\u{85}"), "\\u{85}");
        assert_eq!(sanitize("abc\u{202e}cba"), "abc\\u{202e}cba");
        assert_eq!(sanitize("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
    }

    #[test]
    fn sanitized_text_has_no_control_characters() {
        let all: String = (0u32..0x2100).filter_map(char::from_u32).collect();
        let clean = sanitize(&all);
        assert!(!clean.chars().any(|c| c != '\t' && (c.is_control())));
        assert!(!clean.contains('\u{202e}'));
    }

    #[test]
    fn plain_lines() {
        let t = "12:00:01";
        assert_eq!(PLAIN.group(t, "alice", "hi", "bob"), "12:00:01 <alice> hi");
        assert_eq!(
            PLAIN.private_in(t, "alice", "psst", "bob"),
            "12:00:01 *alice* psst"
        );
        assert_eq!(
            PLAIN.private_out(t, "bob", "psst"),
            "12:00:01 -> *bob* psst"
        );
        assert_eq!(PLAIN.notice(t, "carol joined"), "12:00:01 -- carol joined");
        assert_eq!(
            PLAIN.error(t, "no user named zed"),
            "12:00:01 !! no user named zed"
        );
    }

    #[test]
    fn network_text_is_sanitized_everywhere() {
        let t = "12:00:01";
        let evil = "\x1b[2J";
        for line in [
            PLAIN.group(t, evil, evil, "me"),
            PLAIN.private_in(t, evil, evil, "me"),
            PLAIN.private_out(t, evil, evil),
            PLAIN.notice(t, evil),
            PLAIN.error(t, evil),
            COLOUR.group(t, evil, evil, "me"),
        ] {
            assert!(line.contains("\\x1b[2J"), "{line:?}");
            assert!(!line.contains("\x1b[2J"), "{line:?}");
        }
    }

    #[test]
    fn colours_are_per_nick_and_stable() {
        let a = COLOUR.group("t", "alice", "hi", "me");
        assert!(
            a.contains(&format!("\x1b[{}malice\x1b[0m", nick_colour("alice"))),
            "{a:?}"
        );
        assert_eq!(nick_colour("Alice"), nick_colour("alice"));
        let distinct: std::collections::HashSet<u8> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|n| nick_colour(n))
            .collect();
        assert!(distinct.len() > 1, "every nick got the same colour");
        assert!(!PLAIN.group("t", "alice", "hi", "me").contains('\x1b'));
    }

    #[test]
    fn mentions_are_whole_words_in_any_case() {
        assert!(mentions("hey bob!", "bob"));
        assert!(mentions("BOB: look", "bob"));
        assert!(mentions("bob", "bob"));
        assert!(!mentions("bobby", "bob"));
        assert!(!mentions("kebob", "bob"));
        assert!(!mentions("bob_2 there", "bob"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn mentions_are_highlighted_unless_our_own() {
        let line = COLOUR.group("t", "alice", "hi bob", "bob");
        assert!(
            line.contains(&format!("{MENTION}hi bob{RESET}")),
            "{line:?}"
        );
        let own = COLOUR.group("t", "bob", "i am bob", "bob");
        assert!(!own.contains(MENTION), "{own:?}");
        let bold = Renderer { style: Style::Bold }.group("t", "alice", "hi bob", "bob");
        assert_eq!(bold, format!("t <alice> {BOLD}hi bob{RESET}"));
        assert!(!PLAIN.group("t", "alice", "hi bob", "bob").contains('\x1b'));
    }

    #[test]
    fn json_lines_stay_json_and_lose_raw_controls() {
        let raw = "{\"type\":\"group\",\"text\":\"a\u{9b}b\u{7f}\"}\r".as_bytes();
        let line = json_line(raw).unwrap();
        assert_eq!(line, r#"{"type":"group","text":"a\u009bb\u007f"}"#);
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["text"], "a\u{9b}b\u{7f}");
        assert_eq!(json_line(b"not json\x1b[2J"), None);
    }
}
