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

/// What the session remembers about rooms' pasts.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Per room (case-folded), the oldest `seq` shown: where `/history`
    /// goes on from.
    oldest: HashMap<String, u64>,
    /// The `history` requests out, oldest first, each with whether the user
    /// typed it (an empty answer to `/history` is news; to a join, noise).
    asked: Vec<(String, bool)>,
    /// The default room's past, asked for at the welcome, has not come
    /// yet: typed lines wait, so that it shows before them.
    pub(super) starting: bool,
}

impl Session {
    /// Asks for a page of `room`'s history. `typed`: the user asked.
    pub(super) fn ask_history(
        &mut self,
        room: &str,
        from: Page,
        limit: usize,
        typed: bool,
        out: &mut Vec<Effect>,
    ) {
        self.backlog.asked.push((room.to_ascii_lowercase(), typed));
        out.push(Effect::Send(client_line(&ClientMsg::History {
            room: room.to_owned().into(),
            from,
            limit,
        })));
    }

    /// We left `room`: what was shown of it is no guide to what a later
    /// join shows.
    pub(super) fn forget(&mut self, room: &str) {
        self.backlog.oldest.remove(&room.to_ascii_lowercase());
    }

    /// Asks for the last messages of a room just joined. Not with
    /// `--json`: a program reading the protocol asks for what it wants.
    pub(super) fn history_on_join(&mut self, room: &str, out: &mut Vec<Effect>) {
        if !self.json {
            self.ask_history(room, Page::Latest, ON_JOIN, false, out);
        }
    }

    /// A live message with `seq` was shown in `room`: `/history` pages
    /// back from the oldest one shown.
    pub(super) fn seen(&mut self, room: &str, seq: u64) {
        if seq > 0 {
            let oldest = self
                .backlog
                .oldest
                .entry(room.to_ascii_lowercase())
                .or_insert(seq);
            *oldest = (*oldest).min(seq);
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
        let key = room.to_ascii_lowercase();
        let typed = match self.backlog.asked.iter().position(|(r, _)| *r == key) {
            Some(at) => self.backlog.asked.remove(at).1,
            None => false,
        };
        if !typed {
            self.backlog.starting = false;
        }
        // What is shown already stays shown once: a live message that came
        // between the request and its answer is in both, and two
        // `/history` typed in a row ask from the same place.
        let shown_from = self.backlog.oldest.get(&key).copied();
        let fresh: Vec<HistoryEntry<'_>> = messages
            .iter()
            .filter(|m| shown_from.is_none_or(|oldest| m.seq < oldest))
            .cloned()
            .collect();
        let messages = &fresh[..];
        let Some(first) = messages.first() else {
            if typed {
                let line = self.render.notice(&format!("no older messages in {room}"));
                out.push(Effect::Show(self.render.stamp(time, &line)));
            }
            return;
        };
        self.seen(room, first.seq);
        let me = Me {
            id: self.roster.me,
            nick: &self.roster.nick,
        };
        let lines = self
            .render
            .history(room, messages, more, me, clock::said_at);
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
        let from = match self.backlog.oldest.get(&here.to_ascii_lowercase()) {
            Some(&seq) => Page::Before(seq),
            None => Page::Latest,
        };
        self.ask_history(&here, from, limit, true, out);
    }
}
