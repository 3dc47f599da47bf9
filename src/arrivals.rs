//! One line per arrival: a newcomer's `join` under its guest name, followed
//! at once by its rename, reads `bob joined` instead of `guest2 joined` and
//! `guest2 is now known as bob`.
//!
//! Every client that chooses a name renames itself right after its welcome,
//! so the server announces each arrival twice. [`Arrivals`] holds the `join`
//! of a guest name back for a moment and lets the messages through in an
//! order a person reads as the same story: the rename, when it comes, is
//! folded into the held `join`; any other message first releases what is
//! held, so nothing is ever shown out of order; and a held `join` is
//! released as it was after [`HOLD`], for a newcomer who keeps its guest
//! name. It does no I/O and reads no clock: the caller passes the time in,
//! asks for the [`Arrivals::deadline`] to wake at, and calls
//! [`Arrivals::tick`] then. The client and the bot's transcript share it.

use std::time::{Duration, Instant};

use crate::wire::{ServerMsg, is_guest_name};

/// How long a guest's `join` may wait for its rename.
pub const HOLD: Duration = Duration::from_secs(1);

/// A held `join`, with whatever the caller keeps beside a message (the
/// time it arrived, say).
struct Held<T> {
    msg: ServerMsg<'static>,
    extra: T,
    until: Instant,
}

/// The messages from one connection, arrivals folded with their renames.
pub struct Arrivals<T> {
    held: Vec<Held<T>>,
}

impl<T> Default for Arrivals<T> {
    fn default() -> Self {
        Arrivals { held: Vec::new() }
    }
}

impl<T> Arrivals<T> {
    /// One message as it arrived, and what to handle now, in order: nothing
    /// (a guest's `join`, held), the held `join` renamed (its rename), or
    /// whatever was held followed by this message.
    pub fn offer(
        &mut self,
        msg: ServerMsg<'static>,
        extra: T,
        now: Instant,
    ) -> Vec<(ServerMsg<'static>, T)> {
        match &msg {
            ServerMsg::Join { nick, .. } if is_guest_name(nick) => {
                self.held.push(Held {
                    msg,
                    extra,
                    until: now + HOLD,
                });
                Vec::new()
            }
            ServerMsg::Nick { id, new, .. } if self.holds(*id) => {
                // Only this user's joins go: another guest's may still be
                // followed by its own rename, and arrivals may be shown in
                // either order.
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                    .into_iter()
                    .partition(|h| joined_id(&h.msg) == Some(*id));
                self.held = others;
                let new = new.to_string();
                mine.into_iter()
                    .map(|h| (renamed(h.msg, &new), h.extra))
                    .collect()
            }
            _ => {
                let mut out = self.release_all();
                out.push((msg, extra));
                out
            }
        }
    }

    /// When the first held `join` is due; `None` when nothing is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.until).min()
    }

    /// The held joins that are due at `now`, as they arrived.
    pub fn tick(&mut self, now: Instant) -> Vec<(ServerMsg<'static>, T)> {
        let (due, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| h.until <= now);
        self.held = kept;
        due.into_iter().map(|h| (h.msg, h.extra)).collect()
    }

    /// Everything held, as it arrived (at the end of a connection).
    pub fn release_all(&mut self) -> Vec<(ServerMsg<'static>, T)> {
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|h| (h.msg, h.extra))
            .collect()
    }

    fn holds(&self, id: u64) -> bool {
        self.held.iter().any(|h| joined_id(&h.msg) == Some(id))
    }
}

fn joined_id(msg: &ServerMsg<'_>) -> Option<u64> {
    match msg {
        ServerMsg::Join { id, .. } => Some(*id),
        _ => None,
    }
}

fn renamed(msg: ServerMsg<'static>, new: &str) -> ServerMsg<'static> {
    match msg {
        ServerMsg::Join { id, ts, room, .. } => ServerMsg::Join {
            id,
            nick: new.to_owned().into(),
            ts,
            room,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::samples::{group, join};

    fn nick(id: u64, old: &str, new: &str) -> ServerMsg<'static> {
        ServerMsg::Nick {
            id,
            old: old.to_owned().into(),
            new: new.to_owned().into(),
            ts: 2,
        }
    }

    fn msgs(out: Vec<(ServerMsg<'static>, u32)>) -> Vec<ServerMsg<'static>> {
        out.into_iter().map(|(m, _)| m).collect()
    }

    #[test]
    fn a_join_and_its_rename_become_one_join_under_the_new_name() {
        let t = Instant::now();
        let mut a = Arrivals::default();
        assert!(a.offer(join(2, "guest2"), 7, t).is_empty());
        assert_eq!(a.deadline(), Some(t + HOLD));
        let out = a.offer(nick(2, "guest2", "bob"), 8, t);
        assert_eq!(out, [(join(2, "bob"), 7)]);
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn a_guest_that_keeps_its_name_is_shown_after_the_hold() {
        let t = Instant::now();
        let mut a = Arrivals::default();
        a.offer(join(2, "guest2"), 0, t);
        assert!(a.tick(t + HOLD / 2).is_empty());
        assert_eq!(msgs(a.tick(t + HOLD)), [join(2, "guest2")]);
        assert!(a.tick(t + HOLD * 2).is_empty());
    }

    #[test]
    fn any_other_message_releases_what_is_held_first() {
        let t = Instant::now();
        let mut a = Arrivals::default();
        a.offer(join(2, "guest2"), 0, t);
        assert_eq!(
            msgs(a.offer(group("guest2"), 0, t)),
            [join(2, "guest2"), group("guest2")]
        );
        // A rename of someone not held passes as it is.
        assert_eq!(
            msgs(a.offer(nick(5, "carol", "caz"), 0, t)),
            [nick(5, "carol", "caz")]
        );
    }

    #[test]
    fn named_joins_pass_at_once() {
        let t = Instant::now();
        let mut a = Arrivals::default();
        assert_eq!(msgs(a.offer(join(4, "dave"), 0, t)), [join(4, "dave")]);
    }

    #[test]
    fn two_arrivals_at_once_are_folded_each_with_its_own_rename() {
        let t = Instant::now();
        let mut a = Arrivals::default();
        a.offer(join(2, "guest2"), 0, t);
        a.offer(join(3, "guest3"), 0, t);
        assert_eq!(
            msgs(a.offer(nick(3, "guest3", "carol"), 0, t)),
            [join(3, "carol")]
        );
        assert_eq!(
            msgs(a.offer(nick(2, "guest2", "bob"), 0, t)),
            [join(2, "bob")]
        );
        assert!(a.release_all().is_empty());
    }
}
