//! The server without sockets: the JSON-lines door, the core and delivery
//! wired together and driven by lines.
//!
//! The event loop is this plus sockets and time. Tests, property tests and
//! fuzzers drive the same path with byte strings and read the queues, so
//! what they check is what the server does.

use super::core::{self, Ask, Core, Flow, Peer, User};
use super::deliver::{Delivery, Outlet};
use super::event::Event;
use super::json::{self, Line};
use super::store::Stored;
use super::table::Key;
use crate::wire::{ErrorCode, LeaveReason, Refusal};

pub struct Hub<C> {
    pub core: Core<C>,
    pub delivery: Delivery,
    /// The room events (joins, leaves, renames, messages, topics) in the
    /// order they happened, for whoever keeps a record of them; the event
    /// loop hands them to the connection log each turn.
    pub journal: Vec<Event>,
    /// History is stored: group messages wait for their commit before
    /// anyone receives them, and `history` asks wait for the store.
    stored: bool,
    asks: Vec<Ask>,
}

impl<C: AsMut<Outlet>> Hub<C> {
    pub fn new(config: core::Config, max_queue: usize) -> Hub<C> {
        Hub {
            core: Core::new(config),
            delivery: Delivery::new(max_queue),
            journal: Vec::new(),
            stored: false,
            asks: Vec::new(),
        }
    }

    /// A hub whose history goes to a store: each group message, and
    /// everything emitted after it, is held until
    /// [`Delivery::release`] says the store committed it; `history` asks
    /// are left for the edge to take with [`Core::take_asks`].
    pub fn stored(config: core::Config, max_queue: usize) -> Hub<C> {
        let mut hub = Hub::new(config, max_queue);
        hub.stored = true;
        hub.delivery.hold_until_stored();
        hub
    }

    /// The store's answer to `ask`, delivered in its place.
    pub fn answer_history(&mut self, ask: &Ask, messages: Vec<Stored>, more: bool) {
        self.core.answer_history(ask, messages, more);
        self.deliver();
    }

    /// A new connection, welcomed and announced.
    pub fn connect(&mut self, peer: Peer, now_ms: u64, conn: C) -> Key {
        let key = self.core.connect(peer, now_ms, conn);
        self.deliver();
        key
    }

    /// One line from `key`, without its `\n`.
    pub fn line(&mut self, key: Key, line: &[u8], now_ms: u64) -> Flow {
        let Hub { core, delivery, .. } = self;
        let flow = json::with_line(line, |line| match line {
            Line::Blank => Flow::Continue,
            Line::Command(cmd) => core.handle(key, cmd, now_ms),
            Line::Refused(refusal) => {
                core.refuse_line(key, &refusal);
                Flow::Continue
            }
            Line::Pong(pong) => {
                core.count_in(key);
                delivery.answer(core, key, |out| pong.encode(out));
                Flow::Continue
            }
        });
        if !self.stored && self.core.has_asks() {
            // Nothing is stored: every room's history is empty.
            let mut asks = std::mem::take(&mut self.asks);
            self.core.take_asks(&mut asks);
            for ask in asks.drain(..) {
                self.core.answer_history(&ask, Vec::new(), false);
            }
            self.asks = asks;
        }
        self.deliver();
        flow
    }

    /// The line `key` is sending passed the length limit.
    pub fn line_too_long(&mut self, key: Key, max_line: usize) {
        let refusal = Refusal::new(
            ErrorCode::LineTooLong,
            format!("line longer than {max_line} bytes; skipped to its end"),
        );
        self.core.refuse_line(key, &refusal);
        self.deliver();
    }

    /// `key` left without a `quit` (it closed its side).
    pub fn depart(&mut self, key: Key, reason: LeaveReason, now_ms: u64) {
        self.core.depart(key, reason, None, now_ms);
        self.deliver();
    }

    /// Forgets a closed connection, telling whoever still needs telling.
    pub fn remove(&mut self, key: Key, now_ms: u64) -> Option<(User, C)> {
        let removed = self.core.remove(key, now_ms);
        self.deliver();
        removed
    }

    /// Everyone gets `bye` with reason `shutdown`.
    pub fn shutdown(&mut self) {
        self.core.shutdown();
        self.deliver();
    }

    /// After the queues past the limit were written: drops whoever is still
    /// over, as `slow`, and returns their keys to close.
    pub fn drop_slow(&mut self, now_ms: u64) -> Vec<Key> {
        self.delivery
            .drop_slow(&mut self.core, now_ms, &mut self.journal)
    }

    /// After a burst: the per-turn lists give back what they grew to (the
    /// journal must have been read).
    pub fn shrink(&mut self) {
        self.deliver();
        self.journal.shrink_to(super::deliver::KEEP_LISTED);
        self.delivery.shrink(&mut self.core);
    }

    fn deliver(&mut self) {
        self.delivery.deliver(&mut self.core, &mut self.journal);
    }
}

#[cfg(test)]
mod tests {
    //! The protocol's routing rules, end to end from lines in to lines out,
    //! without sockets.

    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::server::deliver::Door;

    const NOW: u64 = 1_764_165_600_000;

    fn addr() -> Peer {
        Peer::plain(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)))
    }

    fn hub() -> Hub<Outlet> {
        hub_with(1 << 20, 3)
    }

    fn hub_with(max_queue: usize, max_rooms: usize) -> Hub<Outlet> {
        let config = core::Config {
            welcome: "hi".into(),
            default_room: "lobby".into(),
            max_rooms,
        };
        Hub::new(config, max_queue)
    }

    fn join(hub: &mut Hub<Outlet>) -> Key {
        hub.connect(addr(), NOW, Outlet::new(Door::JsonLines))
    }

    /// Drains every queue, returning each connection's messages.
    fn drain(hub: &mut Hub<Outlet>) -> HashMap<Key, Vec<Value>> {
        let mut out = HashMap::new();
        for key in hub.core.keys() {
            out.insert(key, read(hub, key));
        }
        let mut dirty = Vec::new();
        hub.delivery.take_dirty(&mut hub.core, &mut dirty);
        out
    }

    fn read(hub: &mut Hub<Outlet>, key: Key) -> Vec<Value> {
        let mut bytes = Vec::new();
        hub.core
            .conn_mut(key)
            .unwrap()
            .out
            .write_to(&mut bytes)
            .unwrap();
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn line(hub: &mut Hub<Outlet>, key: Key, v: Value) -> Flow {
        hub.line(key, v.to_string().as_bytes(), NOW)
    }

    fn named(hub: &mut Hub<Outlet>, nick: &str) -> Key {
        let key = join(hub);
        line(hub, key, json!({"type": "nick", "nick": nick}));
        key
    }

    fn types(msgs: &[Value]) -> Vec<&str> {
        msgs.iter().map(|m| m["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn welcome_then_join_for_the_others() {
        let mut hub = hub();
        let a = join(&mut hub);
        let b = join(&mut hub);
        let out = drain(&mut hub);
        assert_eq!(
            out[&a],
            [
                json!({"type":"welcome","id":1,"nick":"guest1","text":"hi","users":1,
                       "protocol":2,"room":"lobby"}),
                json!({"type":"join","id":2,"nick":"guest2","ts":NOW,"room":"lobby"})
            ]
        );
        assert_eq!(
            out[&b],
            [
                json!({"type":"welcome","id":2,"nick":"guest2","text":"hi","users":2,
                          "protocol":2,"room":"lobby"})
            ]
        );
    }

    #[test]
    fn group_goes_to_everyone_else_private_to_one() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        let c = named(&mut hub, "carol");
        drain(&mut hub);
        line(&mut hub, a, json!({"type":"group","text":"hello"}));
        line(
            &mut hub,
            a,
            json!({"type":"private","to":"BOB","text":"psst"}),
        );
        line(
            &mut hub,
            a,
            json!({"type":"private","to":"Alice","text":"waves","action":true}),
        );
        let out = drain(&mut hub);
        let group =
            json!({"type":"group","from":"alice","text":"hello","ts":NOW,"room":"lobby","seq":1});
        assert_eq!(
            out[&a],
            [
                json!({"type":"private","from":"alice","to":"alice","text":"waves","ts":NOW,"action":true})
            ]
        );
        assert_eq!(
            out[&b],
            [
                group.clone(),
                json!({"type":"private","from":"alice","to":"bob","text":"psst","ts":NOW})
            ]
        );
        assert_eq!(out[&c], [group]);
    }

    #[test]
    fn nicknames_are_unique_regardless_of_case() {
        let mut hub = hub();
        let a = named(&mut hub, "bob");
        let b = join(&mut hub);
        drain(&mut hub);
        hub.journal.clear();
        line(&mut hub, b, json!({"type":"nick","nick":"BOB"}));
        line(&mut hub, b, json!({"type":"nick","nick":"guest7"}));
        line(&mut hub, a, json!({"type":"nick","nick":"Bob"}));
        let out = drain(&mut hub);
        let codes: Vec<Value> = out[&b].iter().map(|m| m["code"].clone()).collect();
        assert_eq!(codes[..2], [json!("nick_in_use"), json!("bad_nick")]);
        let rename = json!({"type":"nick","id":1,"old":"bob","new":"Bob","ts":NOW});
        assert_eq!(out[&a], std::slice::from_ref(&rename));
        assert_eq!(out[&b][2], rename);
        assert_eq!(hub.journal.len(), 1, "the rename is in the event stream");
    }

    #[test]
    fn private_to_nobody_is_refused() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        drain(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"private","to":"zed","text":"hello?"}),
        );
        line(
            &mut hub,
            a,
            json!({"type":"private","to":"not a nick at all, far too long to be one","text":"x"}),
        );
        let out = drain(&mut hub);
        assert_eq!(
            out[&a][0],
            json!({"type":"error","code":"no_such_user","message":"no user named zed"})
        );
        assert_eq!(out[&a][1]["code"], "no_such_user");
    }

    #[test]
    fn quit_says_bye_and_others_see_leave() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        drain(&mut hub);
        assert_eq!(
            line(&mut hub, a, json!({"type":"quit","text":"bye now"})),
            Flow::Close
        );
        line(&mut hub, b, json!({"type":"who"}));
        let out = drain(&mut hub);
        assert_eq!(out[&a], [json!({"type":"bye","reason":"quit"})]);
        assert_eq!(
            out[&b][0],
            json!({"type":"leave","id":1,"nick":"alice","reason":"quit","ts":NOW,"text":"bye now"})
        );
        assert_eq!(
            out[&b][1]["users"],
            json!([{"id":2,"nick":"bob","since":NOW}])
        );
        assert_eq!(hub.core.here(), 1);
        // Her name is free at once, and closing her socket tells nobody twice.
        hub.remove(a, NOW);
        assert!(drain(&mut hub)[&b].is_empty());
        let c = named(&mut hub, "alice");
        assert_eq!(hub.core.user(c).unwrap().nick.as_str(), "alice");
    }

    #[test]
    fn a_reader_that_falls_behind_is_dropped_alone() {
        let mut hub = hub_with(4096, 3);
        let talker = named(&mut hub, "talker");
        let slow = named(&mut hub, "slow");
        let fast = named(&mut hub, "fast");
        drain(&mut hub);
        let text = "x".repeat(100);
        let mut dropped = Vec::new();
        let mut fast_got = Vec::new();
        for _ in 0..30 {
            line(&mut hub, talker, json!({"type":"group","text":text}));
            // The fast reader keeps up; the slow one never reads.
            fast_got.extend(read(&mut hub, fast));
            dropped.extend(hub.drop_slow(NOW));
        }
        assert_eq!(dropped, [slow]);
        fast_got.extend(read(&mut hub, fast));
        assert_eq!(
            types(&fast_got).iter().filter(|t| **t == "group").count(),
            30
        );
        let leave = fast_got.iter().find(|m| m["type"] == "leave").unwrap();
        assert_eq!(
            (&leave["nick"], &leave["reason"]),
            (&json!("slow"), &json!("slow"))
        );
    }

    #[test]
    fn readers_dropped_together_are_not_told_of_each_other() {
        let mut hub = hub_with(4096, 3);
        let talker = named(&mut hub, "talker");
        let slow = [named(&mut hub, "slow1"), named(&mut hub, "slow2")];
        drain(&mut hub);
        let text = "x".repeat(100);
        while !hub.delivery.has_over() || hub.delivery.over().len() < 2 {
            line(&mut hub, talker, json!({"type":"group","text":text}));
        }
        let mut dropped = hub.drop_slow(NOW);
        dropped.sort();
        assert_eq!(dropped, slow);
        // Their sockets are closed next: nothing may wait in their queues.
        for key in slow {
            assert!(hub.core.conn(key).unwrap().out.is_empty());
        }
        let leaves: Vec<Value> = read(&mut hub, talker)
            .into_iter()
            .filter(|m| m["type"] == "leave")
            .collect();
        assert_eq!(leaves.len(), 2, "{leaves:?}");
    }

    #[test]
    fn refusals_count_as_messages_and_keep_the_connection() {
        let mut hub = hub();
        let a = join(&mut hub);
        drain(&mut hub);
        assert_eq!(hub.line(a, b"{oops", NOW), Flow::Continue);
        hub.line_too_long(a, 10);
        assert_eq!(hub.line(a, b"", NOW), Flow::Continue);
        hub.line(a, br#"{"type":"ping","token":[1]}"#, NOW);
        let out = drain(&mut hub);
        assert_eq!(types(&out[&a]), ["error", "error", "pong"]);
        assert_eq!(out[&a][0]["code"], "bad_json");
        assert_eq!(out[&a][1]["code"], "line_too_long");
        assert_eq!(out[&a][2]["token"], json!([1]));
        assert_eq!(hub.core.user(a).unwrap().msgs_in, 3);
    }

    #[test]
    fn shutdown_says_bye_to_everyone() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = join(&mut hub);
        drain(&mut hub);
        hub.shutdown();
        let out = drain(&mut hub);
        for key in [a, b] {
            assert_eq!(out[&key], [json!({"type":"bye","reason":"shutdown"})]);
        }
    }

    // ---- history -----------------------------------------------------------

    #[test]
    fn a_group_message_and_all_after_it_wait_for_the_commit() {
        let mut hub: Hub<Outlet> = Hub::stored(
            core::Config {
                welcome: "hi".into(),
                default_room: "lobby".into(),
                max_rooms: 3,
            },
            1 << 20,
        );
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        drain(&mut hub);
        line(&mut hub, a, json!({"type":"group","text":"one"}));
        line(
            &mut hub,
            a,
            json!({"type":"private","to":"bob","text":"psst"}),
        );
        line(&mut hub, b, json!({"type":"ping","token":7}));
        line(&mut hub, a, json!({"type":"group","text":"two"}));
        line(&mut hub, b, json!({"type":"who"}));
        let out = drain(&mut hub);
        assert!(
            out[&b].is_empty(),
            "nothing before the commit: {:?}",
            out[&b]
        );
        assert!(hub.delivery.has_held());
        // Committed through seq 1: the first message and what followed it,
        // up to the second message, in order.
        hub.delivery.release(&mut hub.core, 1);
        let out = drain(&mut hub);
        assert_eq!(types(&out[&b]), ["group", "private", "pong"]);
        hub.delivery.release(&mut hub.core, 2);
        let out = drain(&mut hub);
        assert_eq!(types(&out[&b]), ["group", "who"]);
        assert_eq!(out[&b][0]["seq"], 2);
        assert!(!hub.delivery.has_held());
    }

    #[test]
    fn history_without_a_store_is_empty_at_once() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        line(&mut hub, a, json!({"type":"group","text":"one"}));
        drain(&mut hub);
        line(&mut hub, a, json!({"type":"history","room":"Lobby"}));
        let out = drain(&mut hub);
        assert_eq!(
            out[&a],
            [json!({"type":"history","room":"lobby","messages":[],"more":false})]
        );
        assert!(!hub.core.has_asks());
    }

    #[test]
    fn history_with_a_store_is_asked_for_and_answered_in_place() {
        let mut hub: Hub<Outlet> = Hub::stored(
            core::Config {
                welcome: "hi".into(),
                default_room: "lobby".into(),
                max_rooms: 3,
            },
            1 << 20,
        );
        hub.core
            .restore(41, [("lobby".to_string(), "kept".to_string())]);
        let a = named(&mut hub, "alice");
        drain(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"history","room":"lobby","after":3,"limit":2}),
        );
        let mut asks = Vec::new();
        hub.core.take_asks(&mut asks);
        assert_eq!(asks.len(), 1);
        assert_eq!(
            (asks[0].from, asks[0].limit),
            (crate::wire::Page::After(3), 2)
        );
        let stored = Stored {
            seq: 4,
            room: "lobby".into(),
            from: "zed".into(),
            text: "old".into(),
            ts: NOW,
            action: true,
        };
        hub.answer_history(&asks[0], vec![stored], true);
        line(&mut hub, a, json!({"type":"join","room":"lobby"}));
        line(&mut hub, a, json!({"type":"group","text":"new"}));
        hub.delivery.release(&mut hub.core, 42);
        let out = drain(&mut hub);
        assert_eq!(
            out[&a][0],
            json!({"type":"history","room":"lobby","messages":[
                {"seq":4,"from":"zed","text":"old","ts":NOW,"action":true}],"more":true})
        );
        assert_eq!(out[&a][1]["topic"], "kept", "topics come back");
        assert_eq!(
            hub.journal
                .iter()
                .filter_map(|e| match e {
                    Event::Group { seq, .. } => Some(*seq),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            [42],
            "seq goes on from the store's"
        );
    }

    // ---- rooms -----------------------------------------------------------

    #[test]
    fn join_answers_joined_and_tells_the_members() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        let c = named(&mut hub, "carol");
        line(&mut hub, a, json!({"type":"join","room":"Rust"}));
        drain(&mut hub);
        line(&mut hub, b, json!({"type":"join","room":"rust"}));
        let out = drain(&mut hub);
        assert_eq!(
            out[&b],
            [json!({"type":"joined","room":"rust","users":[
                {"id":1,"nick":"alice"},{"id":2,"nick":"bob"}]})]
        );
        assert_eq!(
            out[&a],
            [json!({"type":"join","id":2,"nick":"bob","ts":NOW,"room":"rust"})]
        );
        assert!(out[&c].is_empty(), "carol is not in rust: {:?}", out[&c]);
        // Joining again answers again and tells nobody.
        line(&mut hub, b, json!({"type":"join","room":"RUST"}));
        let out = drain(&mut hub);
        assert_eq!(types(&out[&b]), ["joined"]);
        assert!(out[&a].is_empty());
    }

    #[test]
    fn group_in_a_room_reaches_its_members_with_increasing_seq() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        let c = named(&mut hub, "carol");
        for k in [a, b] {
            line(&mut hub, k, json!({"type":"join","room":"rust"}));
        }
        drain(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"group","room":"rust","text":"in rust"}),
        );
        line(&mut hub, a, json!({"type":"group","text":"in the lobby"}));
        line(
            &mut hub,
            c,
            json!({"type":"group","room":"rust","text":"let me in"}),
        );
        let out = drain(&mut hub);
        assert_eq!(
            out[&b],
            [
                json!({"type":"group","from":"alice","text":"in rust","ts":NOW,"room":"rust","seq":1}),
                json!({"type":"group","from":"alice","text":"in the lobby","ts":NOW,"room":"lobby","seq":2})
            ]
        );
        assert_eq!(types(&out[&c]), ["group", "error"]);
        assert_eq!(out[&c][1]["code"], "not_in_room");
    }

    #[test]
    fn part_tells_the_rest_and_the_default_room_can_be_parted() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        drain(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"part","room":"lobby","text":"brb"}),
        );
        let out = drain(&mut hub);
        assert_eq!(out[&a], [json!({"type":"parted","room":"lobby"})]);
        assert_eq!(
            out[&b],
            [
                json!({"type":"leave","id":1,"nick":"alice","reason":"part","ts":NOW,
                    "text":"brb","room":"lobby"})
            ]
        );
        // No longer a member: saying something there is refused, and a
        // second part too; she is still online.
        line(&mut hub, a, json!({"type":"group","text":"hello?"}));
        line(&mut hub, a, json!({"type":"part","room":"lobby"}));
        line(&mut hub, b, json!({"type":"who"}));
        let out = drain(&mut hub);
        assert_eq!(out[&a][0]["code"], "not_in_room");
        assert_eq!(out[&a][1]["code"], "not_in_room");
        assert_eq!(out[&b][0]["users"].as_array().unwrap().len(), 2);
        // Sharing no room, bob hears nothing of her going.
        hub.remove(a, NOW);
        assert!(drain(&mut hub)[&b].is_empty());
    }

    #[test]
    fn leaving_is_told_once_to_each_who_shared_a_room() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        for k in [a, b] {
            line(&mut hub, k, json!({"type":"join","room":"rust"}));
            line(&mut hub, k, json!({"type":"join","room":"go"}));
        }
        drain(&mut hub);
        line(&mut hub, a, json!({"type":"nick","nick":"alicia"}));
        hub.remove(a, NOW);
        let out = drain(&mut hub);
        assert_eq!(types(&out[&b]), ["nick", "leave"]);
        assert_eq!(out[&b][1]["reason"], "disconnect");
        assert!(out[&b][1].get("room").is_none());
    }

    #[test]
    fn topics_go_to_members_and_outlive_the_room() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        line(&mut hub, a, json!({"type":"join","room":"rust"}));
        drain(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"topic","room":"rust","text":"borrowck"}),
        );
        line(
            &mut hub,
            b,
            json!({"type":"topic","room":"rust","text":"mine"}),
        );
        line(
            &mut hub,
            a,
            json!({"type":"topic","room":"rust","text":"x".repeat(super::core::MAX_TOPIC + 1)}),
        );
        let out = drain(&mut hub);
        assert_eq!(
            out[&a][0],
            json!({"type":"topic","room":"rust","by":"alice","text":"borrowck","ts":NOW})
        );
        assert_eq!(out[&a][1]["code"], "bad_message");
        assert_eq!(out[&b][0]["code"], "not_in_room");
        line(&mut hub, a, json!({"type":"part","room":"rust"}));
        line(&mut hub, b, json!({"type":"rooms"}));
        line(&mut hub, b, json!({"type":"join","room":"rust"}));
        let out = drain(&mut hub);
        assert_eq!(
            out[&b][0],
            json!({"type":"rooms","rooms":[{"name":"lobby","users":2}]})
        );
        assert_eq!(out[&b][1]["topic"], "borrowck");
        line(&mut hub, b, json!({"type":"topic","room":"rust","text":""}));
        line(&mut hub, a, json!({"type":"rooms"}));
        let out = drain(&mut hub);
        assert_eq!(out[&b][0]["text"], "");
        assert_eq!(
            out[&a][0]["rooms"],
            json!([{"name":"lobby","users":2},{"name":"rust","users":1}])
        );
    }

    #[test]
    fn who_of_a_room_lists_its_members_to_anyone() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        line(&mut hub, a, json!({"type":"join","room":"rust"}));
        drain(&mut hub);
        line(&mut hub, b, json!({"type":"who","room":"Rust"}));
        line(&mut hub, b, json!({"type":"who","room":"empty"}));
        line(&mut hub, b, json!({"type":"who","room":"no such room!"}));
        let out = drain(&mut hub);
        assert_eq!(
            out[&b][0],
            json!({"type":"who","room":"rust","users":[{"id":1,"nick":"alice","since":NOW}]})
        );
        assert_eq!(out[&b][1], json!({"type":"who","room":"empty","users":[]}));
        assert_eq!(out[&b][2]["code"], "bad_room");
    }

    #[test]
    fn bad_rooms_and_too_many_rooms_are_refused() {
        let mut hub = hub_with(1 << 20, 3);
        let a = named(&mut hub, "alice");
        drain(&mut hub);
        for room in ["#rust", "1x", "", &"r".repeat(33)] {
            line(&mut hub, a, json!({"type":"join","room":room}));
        }
        for room in ["r1", "r2", "r3"] {
            line(&mut hub, a, json!({"type":"join","room":room}));
        }
        let out = drain(&mut hub);
        let codes: Vec<&str> = out[&a]
            .iter()
            .map(|m| m["code"].as_str().unwrap_or(m["type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            codes,
            [
                "bad_room",
                "bad_room",
                "bad_room",
                "bad_room",
                "joined",
                "joined",
                "too_many_rooms"
            ]
        );
    }

    #[test]
    fn presence_in_big_rooms_is_batched_but_answers_are_not() {
        let mut hub = hub();
        let members: Vec<Key> = (0..super::super::deliver::BATCH_REACH)
            .map(|_| join(&mut hub))
            .collect();
        drain(&mut hub);
        let newcomer = join(&mut hub);
        line(&mut hub, newcomer, json!({"type":"nick","nick":"zed"}));
        let mut dirty = Vec::new();
        hub.delivery.take_dirty(&mut hub.core, &mut dirty);
        assert_eq!(dirty, [newcomer], "only the newcomer is written at once");
        assert!(hub.delivery.has_batched());
        // At the tick everyone is written, with both events, in order.
        hub.delivery.release_batched(&mut hub.core);
        hub.delivery.take_dirty(&mut hub.core, &mut dirty);
        assert_eq!(dirty.len(), members.len());
        assert_eq!(types(&read(&mut hub, members[0])), ["join", "nick"]);
    }
}
