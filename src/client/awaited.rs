//! What the client does once the server has dealt with a line it sent.
//!
//! The server handles a connection's lines in order and answers a `ping`
//! with a `pong` carrying the same token, so a `ping` sent right after a
//! message proves, when its `pong` comes back, that the message was
//! processed: any refusal of it (an `error`) arrived before the `pong`.
//! That is how a private message is shown as sent only when it was not
//! refused, and how the prompt learns the room a `/join` led to.

use std::collections::VecDeque;

use serde_json::value::RawValue;

use crate::wire::{ClientMsg, Token, client_line};

/// What to do when the server has processed a line.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Show our private message as sent (`line`, ready to show), unless it
    /// was refused; `text` is what was said, for the refusal.
    Echo { line: String, text: String },
    /// Tell the input child the prompt for its next line (a `/join` or
    /// `/part` was answered, or refused).
    Prompt,
    /// The joins of `--room` are answered: typed lines may go.
    Started,
}

#[derive(Debug, Default)]
pub struct Awaited {
    next: u64,
    /// By token, in the order sent, so in the order answered.
    queue: VecDeque<(u64, After)>,
}

impl Awaited {
    /// The `ping` line to send after a message, and `after` to do once its
    /// `pong` is back.
    pub fn ping(&mut self, after: After) -> Vec<u8> {
        self.next += 1;
        let token = self.next;
        self.queue.push_back((token, after));
        let raw = RawValue::from_string(token.to_string()).ok();
        client_line(&ClientMsg::Ping {
            token: raw.map(Token::Owned),
        })
    }

    /// A `pong` arrived: what is now due, in order (nothing for a pong we
    /// did not ask for).
    pub fn pong(&mut self, token: Option<&Token<'_>>) -> Vec<After> {
        let Some(token) = token.and_then(|t| t.get().parse::<u64>().ok()) else {
            return Vec::new();
        };
        match self.queue.iter().position(|(t, _)| *t == token) {
            Some(at) => self.queue.drain(..=at).map(|(_, after)| after).collect(),
            None => Vec::new(),
        }
    }

    /// The server refused a private message (`no_such_user`): it is the
    /// oldest one still awaited, since answers come in order. Returns what
    /// was said; the message is no longer shown as sent.
    pub fn private_refused(&mut self) -> Option<String> {
        let at = self
            .queue
            .iter()
            .position(|(_, after)| matches!(after, After::Echo { .. }))?;
        match self.queue.remove(at) {
            Some((_, After::Echo { text, .. })) => Some(text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: &str) -> Token<'static> {
        Token::Owned(RawValue::from_string(n.to_owned()).unwrap())
    }

    fn echo(text: &str) -> After {
        After::Echo {
            line: format!("-> *bob* {text}"),
            text: text.to_owned(),
        }
    }

    #[test]
    fn pings_carry_fresh_tokens_and_pongs_release_in_order() {
        let mut a = Awaited::default();
        assert_eq!(a.ping(echo("one")), b"{\"token\":1,\"type\":\"ping\"}\n");
        a.ping(echo("two"));
        assert_eq!(a.pong(Some(&token("1"))), [echo("one")]);
        assert_eq!(a.pong(Some(&token("1"))), []);
        assert_eq!(a.pong(None), []);
        assert_eq!(a.pong(Some(&token("\"x\""))), []);
        assert_eq!(a.pong(Some(&token("2"))), [echo("two")]);
    }

    #[test]
    fn a_refusal_takes_the_oldest_private_message() {
        let mut a = Awaited::default();
        a.ping(echo("first"));
        a.ping(echo("second"));
        assert_eq!(a.private_refused().as_deref(), Some("first"));
        assert_eq!(a.pong(Some(&token("2"))), [echo("second")]);
        assert_eq!(a.private_refused(), None);
    }
}
