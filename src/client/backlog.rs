//! A room's past: on joining, the client asks for the room's last
//! messages and shows them, marked as history, before the live lines, so
//! that someone arriving sees what the conversation is about; `/history`
//! pages further back. The other part of [`Session`] that `history`
//! answers drive.

use std::collections::HashMap;

use crate::render::Me;
use crate::wire::{ClientMsg, HISTORY_MAX, HistoryEntry, Page, client_line};

use super::clock;
use super::session::{Effect, Session};

/// How many messages a join brings back, and `/history` without N: enough
/// to see what is being talked about, few enough to fit on one screen.
pub const ON_JOIN: usize = 20;

/// Why a page of history was asked for, which decides how its answer
/// reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// A room was joined: its last messages; none is nothing to say.
    Join,
    /// `/history`: that there are no more is news.
    Typed,
    /// Back after a lost connection: what came after the last `seq` seen,
    /// and how many, even none.
    Missed,
}

/// What the session remembers about rooms' pasts.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Per room (case-folded), the oldest and newest `seq` shown:
    /// `/history` goes on from the oldest, a reconnection from the newest,
    /// and a message between them is not shown twice.
    shown: HashMap<String, (u64, u64)>,
    /// The `history` requests out, oldest first.
    asked: Vec<(String, Ask)>,
    /// How many pasts asked for at the start (the default room's at the
    /// welcome, those of the rooms joined then) have not come yet: typed
    /// lines wait, so that they show before them.
    pub(super) starting: usize,
}

impl Backlog {
    /// Whether anything of `room` has been shown.
    pub fn has_shown(&self, room: &str) -> bool {
        self.shown.contains_key(&crate::names::fold(room))
    }

    /// The connection is lost: no answer is coming to what was asked.
    pub fn reconnecting(&mut self) {
        self.asked.clear();
        self.starting = 0;
    }
}

impl Session {
    /// Asks for a page of `room`'s history. `typed`: the user asked.
    fn ask_history(
        &mut self,
        room: &str,
        from: Page,
        limit: usize,
        why: Ask,
        out: &mut Vec<Effect>,
    ) {
        self.backlog.asked.push((crate::names::fold(room), why));
        out.push(Effect::Send(client_line(&ClientMsg::History {
            room: room.to_owned().into(),
            from,
            limit,
        })));
    }

    /// We left `room`: what was shown of it is no guide to what a later
    /// join shows.
    pub(super) fn forget(&mut self, room: &str) {
        self.backlog.shown.remove(&crate::names::fold(room));
    }

    /// Asks for the last messages of a room just joined, or, when it is
    /// joined again on a new connection, for what came after the last one
    /// shown. Not with `--json`: a program reading the protocol asks for
    /// what it wants.
    /// `at_start`: typed lines wait for the answer (see
    /// [`Backlog::starting`]).
    pub(super) fn history_on_join(&mut self, room: &str, at_start: bool, out: &mut Vec<Effect>) {
        if self.json {
            return;
        }
        if at_start {
            self.backlog.starting += 1;
        }
        match self.backlog.shown.get(&crate::names::fold(room)) {
            Some(&(_, newest)) => {
                self.ask_history(room, Page::After(newest), HISTORY_MAX, Ask::Missed, out)
            }
            None => self.ask_history(room, Page::Latest, ON_JOIN, Ask::Join, out),
        }
    }

    /// A live message with `seq` was shown in `room`: `/history` pages
    /// back from the oldest one shown.
    pub(super) fn seen(&mut self, room: &str, seq: u64) {
        if seq > 0 {
            let (oldest, newest) = self
                .backlog
                .shown
                .entry(crate::names::fold(room))
                .or_insert((seq, seq));
            *oldest = (*oldest).min(seq);
            *newest = (*newest).max(seq);
        }
    }

    /// A `history` answer: its lines, the first and the last with the time
    /// they were shown; each message carries the time it was said instead.
    pub(super) fn history_answer(
        &mut self,
        room: &str,
        messages: &[HistoryEntry<'_>],
        more: bool,
        time: &str,
        out: &mut Vec<Effect>,
    ) {
        let key = crate::names::fold(room);
        let why = match self.backlog.asked.iter().position(|(r, _)| *r == key) {
            Some(at) => self.backlog.asked.remove(at).1,
            None => Ask::Join,
        };
        if why != Ask::Typed {
            self.backlog.starting = self.backlog.starting.saturating_sub(1);
        }
        // What is shown already stays shown once: a live message that came
        // between the request and its answer is in both, and two
        // `/history` typed in a row ask from the same place.
        let shown = self.backlog.shown.get(&key).copied();
        let fresh: Vec<HistoryEntry<'_>> = messages
            .iter()
            .filter(|m| shown.is_none_or(|(oldest, newest)| m.seq < oldest || m.seq > newest))
            .cloned()
            .collect();
        let messages = &fresh[..];
        let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
            let nothing = match why {
                Ask::Join => return,
                Ask::Typed => format!("no older messages in {room}"),
                Ask::Missed => format!("nothing was said in {room} while you were away"),
            };
            let line = self.render.notice(&nothing);
            return out.push(Effect::Show(self.render.stamp(time, &line)));
        };
        self.seen(room, first.seq);
        self.seen(room, last.seq);
        let me = Me {
            id: self.roster.me,
            nick: &self.roster.nick,
        };
        let lines = self
            .render
            .history(room, messages, more, me, clock::said_at);
        let mut lines = lines;
        if why == Ask::Missed {
            let count = match messages.len() {
                1 => "1 message".to_owned(),
                n => format!("{n} messages"),
            };
            let more = if more {
                " (the last ones: /history for more)"
            } else {
                ""
            };
            lines[0] = self
                .render
                .notice(&format!("you missed {count} in {room} while away{more}"));
        }
        let last = lines.len().saturating_sub(1);
        for (i, line) in lines.into_iter().enumerate() {
            out.push(Effect::Show(if i == 0 || i == last {
                self.render.stamp(time, &line)
            } else {
                line
            }));
        }
    }

    /// `/history [N]`: N older messages of the current room than the
    /// oldest shown (the last N when none has been).
    pub(super) fn older(&mut self, count: &str, time: &str, out: &mut Vec<Effect>) {
        let limit = match count {
            "" => ON_JOIN,
            n => match n.parse::<usize>() {
                Ok(n) if (1..=HISTORY_MAX).contains(&n) => n,
                _ => {
                    let why = format!("usage: /history [N], N from 1 to {HISTORY_MAX}");
                    return out.push(self.refusal(time, &why));
                }
            },
        };
        if !self.roster.has_rooms() {
            let why = "this server keeps no history (it speaks protocol v1)";
            return out.push(self.refusal(time, why));
        }
        let Some(here) = self.roster.here().map(str::to_owned) else {
            return out.push(self.refusal(time, "you are in no room: /join ROOM first"));
        };
        let from = match self.backlog.shown.get(&crate::names::fold(&here)) {
            Some(&(oldest, _)) => Page::Before(oldest),
            None => Page::Latest,
        };
        self.ask_history(&here, from, limit, Ask::Typed, out);
    }
}
