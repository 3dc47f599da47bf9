//! The human format of chat messages, one line each: what `chat client`
//! shows and what the bot's transcript prints after its `@actor ` prefix.
//!
//! [`render`] is the one place that decides how a message looks, so the
//! client and the bot cannot drift apart.

use std::borrow::Cow;
use std::io::IsTerminal;

use crate::wire::{ByeReason, ClientMsg, LeaveReason, ServerMsg};

/// Colour is for people at a terminal, and only when they have not asked
/// for none (<https://no-color.org>: `NO_COLOR` set and not empty).
pub fn color_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const MAGENTA: &str = "\x1b[35m";
const GREEN: &str = "\x1b[32m";

/// How a line is painted when colour is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Someone's words.
    Plain,
    /// Words meant for one person.
    Private,
    /// Comings, goings and renames (`-- ...`).
    Notice,
    /// A refusal (`!! ...`).
    Error,
    /// The bot's own verdicts (an `expect` that held).
    Good,
}

/// Paints a finished line; without colour it is returned unchanged.
pub fn paint(line: &str, tone: Tone, color: bool) -> Cow<'_, str> {
    let code = match tone {
        Tone::Plain => return Cow::Borrowed(line),
        _ if !color => return Cow::Borrowed(line),
        Tone::Private => MAGENTA,
        Tone::Notice => DIM,
        Tone::Error => RED,
        Tone::Good => GREEN,
    };
    Cow::Owned(format!("{code}{line}{RESET}"))
}

/// A received message as one line, or `None` for the ones people do not
/// need to see (`pong`).
///
/// `<alice> text`, `*alice* text`, `-- carol joined`,
/// `-- carol left (quit: bye)`, `-- carol is now known as caz`, `!! message`.
pub fn render(msg: &ServerMsg<'_>, color: bool) -> Option<String> {
    let (line, tone) = match msg {
        ServerMsg::Welcome {
            nick, text, users, ..
        } => (
            format!(
                "-- {} (you are {}; {} online)",
                clean(text),
                clean(nick),
                users
            ),
            Tone::Notice,
        ),
        ServerMsg::Join { nick, .. } => (format!("-- {} joined", clean(nick)), Tone::Notice),
        ServerMsg::Leave {
            nick, reason, text, ..
        } => {
            let why = match (reason, text) {
                (LeaveReason::Quit, Some(text)) => format!("quit: {}", clean(text)),
                (reason, _) => reason.as_str().to_owned(),
            };
            (format!("-- {} left ({why})", clean(nick)), Tone::Notice)
        }
        ServerMsg::Nick { old, new, .. } => (
            format!("-- {} is now known as {}", clean(old), clean(new)),
            Tone::Notice,
        ),
        ServerMsg::Group { from, text, .. } => (
            format!("<{}> {}", bold(&clean(from), color), clean(text)),
            Tone::Plain,
        ),
        ServerMsg::Private { from, text, .. } => {
            (format!("*{}* {}", clean(from), clean(text)), Tone::Private)
        }
        ServerMsg::Who { users } => {
            let nicks: Vec<Cow<'_, str>> = users.iter().map(|u| clean(&u.nick)).collect();
            (
                format!("-- online ({}): {}", users.len(), nicks.join(", ")),
                Tone::Notice,
            )
        }
        ServerMsg::Pong { .. } => return None,
        ServerMsg::Bye { reason } => {
            let reason = match reason {
                ByeReason::Quit => "quit",
                ByeReason::Shutdown => "shutdown: the server is stopping",
            };
            (format!("-- bye ({reason})"), Tone::Notice)
        }
        ServerMsg::Error { message, .. } => (format!("!! {}", clean(message)), Tone::Error),
    };
    Some(paint(&line, tone, color).into_owned())
}

/// What one's own sent message looks like: `<me> text` for the room,
/// `-> *bob* text` for one person; `None` for messages that show nothing
/// until the server answers (`nick`, `who`, `quit`, `ping`).
pub fn render_sent(msg: &ClientMsg<'_>, own_nick: &str, color: bool) -> Option<String> {
    let (line, tone) = match msg {
        ClientMsg::Group { text } => (
            format!("<{}> {}", bold(&clean(own_nick), color), clean(text)),
            Tone::Plain,
        ),
        ClientMsg::Private { to, text } => {
            (format!("-> *{}* {}", clean(to), clean(text)), Tone::Private)
        }
        _ => return None,
    };
    Some(paint(&line, tone, color).into_owned())
}

fn bold(s: &str, color: bool) -> Cow<'_, str> {
    if color {
        Cow::Owned(format!("{BOLD}{s}{RESET}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Text from the network made safe for one terminal line: control
/// characters (a newline that would fake a second line, an escape that
/// would drive the terminal) are shown as escapes instead.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.contains(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ErrorCode, WhoEntry};

    fn r(msg: ServerMsg<'_>) -> String {
        render(&msg, false).unwrap()
    }

    #[test]
    fn renders_the_client_format() {
        assert_eq!(
            r(ServerMsg::Group {
                from: "alice".into(),
                text: "hi".into(),
                ts: 1
            }),
            "<alice> hi"
        );
        assert_eq!(
            r(ServerMsg::Private {
                from: "alice".into(),
                to: "bob".into(),
                text: "psst".into(),
                ts: 1
            }),
            "*alice* psst"
        );
        assert_eq!(
            r(ServerMsg::Join {
                id: 3,
                nick: "carol".into(),
                ts: 1
            }),
            "-- carol joined"
        );
        assert_eq!(
            r(ServerMsg::Leave {
                id: 3,
                nick: "carol".into(),
                reason: LeaveReason::Quit,
                ts: 1,
                text: Some("bye".into())
            }),
            "-- carol left (quit: bye)"
        );
        assert_eq!(
            r(ServerMsg::Leave {
                id: 3,
                nick: "carol".into(),
                reason: LeaveReason::Disconnect,
                ts: 1,
                text: None
            }),
            "-- carol left (disconnect)"
        );
        assert_eq!(
            r(ServerMsg::Nick {
                id: 3,
                old: "carol".into(),
                new: "caz".into(),
                ts: 1
            }),
            "-- carol is now known as caz"
        );
        assert_eq!(
            r(ServerMsg::Error {
                code: ErrorCode::NoSuchUser,
                message: "no user named zed".into()
            }),
            "!! no user named zed"
        );
        assert_eq!(
            r(ServerMsg::Who {
                users: vec![WhoEntry {
                    id: 1,
                    nick: "alice".into(),
                    since: 1
                }]
            }),
            "-- online (1): alice"
        );
        assert_eq!(render(&ServerMsg::Pong { token: None }, false), None);
        assert_eq!(
            render_sent(&ClientMsg::Group { text: "yo".into() }, "bob", false).as_deref(),
            Some("<bob> yo")
        );
        assert_eq!(
            render_sent(
                &ClientMsg::Private {
                    to: "bob".into(),
                    text: "yo".into()
                },
                "alice",
                false
            )
            .as_deref(),
            Some("-> *bob* yo")
        );
        assert_eq!(render_sent(&ClientMsg::Who, "bob", false), None);
    }

    #[test]
    fn network_text_cannot_forge_lines_or_drive_the_terminal() {
        let line = r(ServerMsg::Group {
            from: "mallory".into(),
            text: "hi\n<alice> fake\x1b[2J".into(),
            ts: 1,
        });
        assert!(!line.contains('\n') && !line.contains('\x1b'), "{line}");
        assert_eq!(line, "<mallory> hi\\n<alice> fake\\u{1b}[2J");
    }

    #[test]
    fn colour_only_when_asked() {
        let msg = ServerMsg::Error {
            code: ErrorCode::NoSuchUser,
            message: "x".into(),
        };
        assert!(render(&msg, true).unwrap().starts_with(RED));
        assert!(!render(&msg, false).unwrap().contains('\x1b'));
    }
}
