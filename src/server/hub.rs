//! The server without sockets: the JSON-lines door, the core and delivery
//! wired together and driven by lines.
//!
//! The event loop is this plus sockets and time. Tests, property tests and
//! fuzzers drive the same path with byte strings and read the queues, so
//! what they check is what the server does.

use super::core::{self, Ask, Core, Flow, Peer, User};
use super::deliver::{Delivery, Door, Outlet};
use super::event::Event;
use super::hashing::{Answer, Job, Worker};
use super::irc::door::{self as irc, Parts, Tick};
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
    /// Hashes on the spot rather than leaving jobs for the edge.
    inline: Option<Worker>,
    jobs: Vec<Job>,
    /// The IRC door's state of its connections.
    irc: irc::Door,
}

impl<C: AsMut<Outlet>> Hub<C> {
    pub fn new(config: core::Config, max_queue: usize) -> Hub<C> {
        let irc = irc::Door::new(irc::Settings {
            welcome: config.welcome.clone(),
            max_rooms: config.max_rooms,
        });
        Hub {
            irc,
            core: Core::new(config),
            delivery: Delivery::new(max_queue),
            journal: Vec::new(),
            stored: false,
            asks: Vec::new(),
            inline: None,
            jobs: Vec::new(),
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

    /// `register` and `login` are hashed on the spot, blocking, by
    /// `worker`: for tests and fuzzers, which have no threads to wait for.
    /// Without this the jobs wait for the edge ([`Core::take_jobs`]).
    pub fn hash_inline(&mut self, worker: Worker) {
        self.inline = Some(worker);
    }

    /// The hashing threads' answer, delivered in its place.
    pub fn answer_job(&mut self, answer: Answer, now_ms: u64) {
        self.core.answer_job(answer, now_ms);
        self.deliver();
    }

    /// The hashing threads' queue was full.
    pub fn job_refused(&mut self, job: &Job, now_ms: u64) {
        self.core.job_refused(job, now_ms);
        self.deliver();
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

    /// A new IRC connection: a user once it registers.
    pub fn admit_irc(&mut self, peer: Peer, now_ms: u64, conn: C) -> Key {
        let key = self.core.admit(peer, now_ms, conn);
        self.irc.admit(key, now_ms);
        key
    }

    /// An IRC connection's timer ran out: see [`irc::Door::tick`].
    pub fn irc_tick(&mut self, key: Key, now_ms: u64) -> Tick {
        let mut parts = Parts {
            core: &mut self.core,
            delivery: &mut self.delivery,
            journal: &mut self.journal,
        };
        self.irc.tick(&mut parts, key, now_ms)
    }

    fn door(&mut self, key: Key) -> Door {
        self.core
            .conn_mut(key)
            .map_or(Door::JsonLines, |c| c.as_mut().door)
    }

    /// One line from `key`, without its `\n`.
    pub fn line(&mut self, key: Key, line: &[u8], now_ms: u64) -> Flow {
        if self.door(key) == Door::Irc {
            let mut parts = Parts {
                core: &mut self.core,
                delivery: &mut self.delivery,
                journal: &mut self.journal,
            };
            let flow = self.irc.line(&mut parts, key, line, now_ms);
            self.deliver();
            return flow;
        }
        let door = self.door(key);
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
                // Answered here, past the core, but carried as the door
                // carries every JSON line (a text frame on a WebSocket).
                delivery.answer(core, key, |out| door.json(out, |out| pong.encode(out)));
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
        if let Some(worker) = &self.inline
            && self.core.has_jobs()
        {
            self.core.take_jobs(&mut self.jobs);
            for job in self.jobs.drain(..) {
                let answer = worker.work(job, now_ms);
                self.core.answer_job(answer, now_ms);
            }
        }
        self.deliver();
        flow
    }

    /// The line `key` is sending passed the length limit.
    pub fn line_too_long(&mut self, key: Key, max_line: usize) {
        if self.door(key) == Door::Irc {
            let mut parts = Parts {
                core: &mut self.core,
                delivery: &mut self.delivery,
                journal: &mut self.journal,
            };
            self.irc.too_long(&mut parts, key);
            return self.deliver();
        }
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
        self.irc.remove(key);
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

    /// One change from the cluster's stream, applied and delivered.
    pub fn apply_cluster(
        &mut self,
        from: &str,
        mine: bool,
        seq: u64,
        op: super::cluster::Op,
        now_ms: u64,
    ) -> core::Applied {
        let applied = self.core.apply(from, mine, seq, op, now_ms);
        self.deliver();
        applied
    }

    /// A private message from another server of the cluster.
    pub fn private_from_cluster(&mut self, private: super::cluster::Private) {
        self.core.private_from_cluster(private);
        self.deliver();
    }

    /// The cluster's name table answered a rename.
    pub fn claimed(&mut self, claim: core::Claim, ok: bool, now_ms: u64) {
        let waiting = self
            .core
            .user(claim.key)
            .is_some_and(|u| u.id == claim.id && u.presence == core::Presence::Waiting);
        if claim.arrival && waiting {
            // Only the IRC door introduces a waiting connection by name.
            let mut parts = Parts {
                core: &mut self.core,
                delivery: &mut self.delivery,
                journal: &mut self.journal,
            };
            self.irc
                .claimed(&mut parts, claim.key, &claim.nick, ok, now_ms);
            self.deliver();
            return;
        }
        self.core.claimed(claim, ok, now_ms);
        self.deliver();
    }

    /// The accounts changed in the database (`chat account` while the
    /// server runs); those logged in to a deleted one are logged out.
    pub fn accounts_changed(&mut self, keys: &[String], deleted: &[String], now_ms: u64) {
        self.core.set_registered(keys, deleted, now_ms);
        self.deliver();
    }

    /// An account was deleted from the cluster's bucket.
    pub fn account_deleted(&mut self, key: &str, now_ms: u64) {
        self.core.remove_registered(key, now_ms);
        self.deliver();
    }

    /// NATS was lost or is back.
    pub fn set_cluster_down(&mut self, down: bool) {
        self.core.set_cluster_down(down);
        self.deliver();
    }

    /// The others declared this server gone: every user here is told why
    /// and leaves; returns their keys, to close.
    pub fn drop_locals(&mut self, now_ms: u64) -> Vec<Key> {
        let keys = self.core.locals();
        for &key in &keys {
            self.core.refuse_line(
                key,
                &Refusal::new(
                    ErrorCode::ClusterUnavailable,
                    "this server was cut off from the cluster long enough for the others \
                     to drop its users; reconnect",
                ),
            );
            self.core.depart(key, LeaveReason::Disconnect, None, now_ms);
        }
        self.deliver();
        keys
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
    fn unicode_nicknames_and_their_look_alikes_are_one_name() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = join(&mut hub);
        drain(&mut hub);
        // Cyrillic а, and fullwidth letters: alice's name, not a new one.
        line(&mut hub, b, json!({"type":"nick","nick":"\u{430}lice"}));
        line(&mut hub, b, json!({"type":"nick","nick":"ａｌｉｃｅ"}));
        line(&mut hub, b, json!({"type":"nick","nick":"a\u{200D}b"}));
        line(&mut hub, b, json!({"type":"nick","nick":"小明"}));
        let out = drain(&mut hub);
        let codes: Vec<&Value> = out[&b].iter().map(|m| &m["code"]).collect();
        assert_eq!(
            codes[..3],
            [
                &json!("nick_in_use"),
                &json!("nick_in_use"),
                &json!("bad_nick")
            ]
        );
        let why = out[&b][0]["message"].as_str().unwrap();
        assert!(why.contains("same name as alice's"), "{why}");
        let why = out[&b][2]["message"].as_str().unwrap();
        assert!(why.contains("U+200D"), "{why}");
        let rename = json!({"type":"nick","id":2,"old":"guest2","new":"小明","ts":NOW});
        assert_eq!(out[&b][3], rename);
        assert_eq!(out[&a], [rename]);
        // Any spelling with alice's key reaches alice; a decomposed name is
        // kept composed.
        line(
            &mut hub,
            b,
            json!({"type":"private","to":"ALICE","text":"1"}),
        );
        line(
            &mut hub,
            b,
            json!({"type":"private","to":"\u{410}lice","text":"2"}),
        );
        line(
            &mut hub,
            a,
            json!({"type":"private","to":"小明","text":"3"}),
        );
        line(&mut hub, a, json!({"type":"nick","nick":"\u{430}lice"}));
        line(&mut hub, b, json!({"type":"nick","nick":"cafe\u{301}"}));
        let out = drain(&mut hub);
        assert_eq!(out[&a][0]["to"], "alice");
        assert_eq!(out[&a][1]["text"], "2");
        assert_eq!(out[&b][0]["text"], "3");
        assert_eq!(
            out[&a][2]["new"], "\u{430}lice",
            "a look-alike of one's own name is one's own"
        );
        assert_eq!(out[&b][2]["new"], "caf\u{e9}");
    }

    #[test]
    fn a_unicode_room_joined_by_two_spellings_is_one_room() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        let b = named(&mut hub, "bob");
        let c = named(&mut hub, "carol");
        line(&mut hub, a, json!({"type":"join","room":"Café-Bar"}));
        drain(&mut hub);
        line(&mut hub, b, json!({"type":"join","room":"CAFE\u{301}-BAR"}));
        // With a Cyrillic с: the same room, under the name it has.
        line(&mut hub, c, json!({"type":"join","room":"\u{441}afé-bar"}));
        line(
            &mut hub,
            c,
            json!({"type":"topic","room":"\u{421}AFÉ-BAR","text":"☕"}),
        );
        line(&mut hub, c, json!({"type":"rooms"}));
        let out = drain(&mut hub);
        assert_eq!(out[&b][0]["type"], "joined");
        assert_eq!(out[&b][0]["room"], "café-bar");
        assert_eq!(out[&c][0]["room"], "café-bar");
        assert_eq!(out[&c][0]["users"].as_array().unwrap().len(), 3);
        assert_eq!(
            types(&out[&a]),
            ["join", "join", "topic"],
            "alice hears both join and the topic: {:?}",
            out[&a]
        );
        assert_eq!(out[&a][2]["room"], "café-bar");
        assert_eq!(
            out[&c].last().unwrap()["rooms"],
            json!([{"name":"café-bar","users":3,"topic":"☕"},{"name":"lobby","users":3}])
        );
    }

    #[test]
    fn an_empty_default_room_joined_by_a_look_alike_keeps_its_name() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        // Cyrillic о: the lobby, which keeps its name for everyone.
        drain(&mut hub);
        line(&mut hub, a, json!({"type":"part","room":"lobby"}));
        line(&mut hub, a, json!({"type":"join","room":"l\u{43e}bby"}));
        let b = join(&mut hub);
        let out = drain(&mut hub);
        assert_eq!(types(&out[&a]), ["parted", "joined", "join"]);
        for msg in &out[&a][1..] {
            assert_eq!(msg["room"], "lobby", "{msg}");
        }
        assert_eq!(out[&b][0]["room"], "lobby");
    }

    #[test]
    fn a_lone_surrogate_in_a_name_is_bad_json() {
        let mut hub = hub();
        let a = named(&mut hub, "alice");
        drain(&mut hub);
        hub.line(a, br#"{"type":"nick","nick":"\ud800"}"#, NOW);
        hub.line(a, br#"{"type":"join","room":"a\udfff"}"#, NOW);
        line(&mut hub, a, json!({"type":"who"}));
        let out = drain(&mut hub);
        assert_eq!(types(&out[&a]), ["error", "error", "who"]);
        assert_eq!(out[&a][0]["code"], "bad_json");
        assert_eq!(out[&a][1]["code"], "bad_json");
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
        // A room's history and topic are asked for under the name the room
        // is stored by, whichever spelling asks: Cyrillic о, upper case.
        hub.core
            .restore(42, [("café".to_string(), "☕".to_string())]);
        line(&mut hub, a, json!({"type":"join","room":"CAFÉ"}));
        line(&mut hub, a, json!({"type":"history","room":"l\u{43e}bby"}));
        line(&mut hub, a, json!({"type":"history","room":"Cafe\u{301}"}));
        hub.core.take_asks(&mut asks);
        let rooms: Vec<&str> = asks.iter().map(|a| &*a.room).collect();
        assert_eq!(rooms, ["lobby", "café"]);
        let out = drain(&mut hub);
        assert_eq!(out[&a][0]["topic"], "☕");
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

    #[test]
    fn a_room_of_two_doors_keeps_one_run_of_broadcasts_per_receiver() {
        let mut hub = hub();
        let web = hub.connect(addr(), NOW, Outlet::new(Door::WebSocket));
        let lines = join(&mut hub);
        for _ in 0..50 {
            join(&mut hub);
        }
        // Each door's encodings are contiguous in its own outbox: the
        // welcome (an answer) is one slice, the 50 arrivals one more, not
        // one slice per arrival as when the two encodings interleaved.
        for key in [web, lines] {
            let slices = hub.core.conn(key).map_or(0, |c| c.out.slice_count());
            assert_eq!(slices, 2, "slices for a welcome and 50 arrivals");
        }
    }

    // Accounts: the rules of register, login and logout, hashed on the
    // spot with a cheap cost.

    use crate::server::accounts::{Book, Cost};
    use crate::server::hashing::{Outcome, Worker};

    fn accounts_hub(rules: core::AccountRules) -> Hub<Outlet> {
        let mut hub = hub();
        hub.core.set_accounts(rules, &[]);
        hub.hash_inline(Worker::new(&Book::memory(), Cost::CHEAP));
        hub
    }

    fn from(hub: &mut Hub<Outlet>, ip: [u8; 4]) -> Key {
        let peer = Peer::plain(std::net::SocketAddr::from((ip, 5000)));
        hub.connect(peer, NOW, Outlet::new(Door::JsonLines))
    }

    fn codes(msgs: &[Value]) -> Vec<&str> {
        msgs.iter()
            .map(|m| m["code"].as_str().unwrap_or(m["type"].as_str().unwrap()))
            .collect()
    }

    const PW: &str = "a good long password";

    #[test]
    fn register_login_logout_and_the_protected_name() {
        let mut hub = accounts_hub(core::AccountRules::default());
        let a = join(&mut hub);
        line(&mut hub, a, json!({"type":"register","password":PW}));
        line(&mut hub, a, json!({"type":"nick","nick":"Alice"}));
        line(&mut hub, a, json!({"type":"register","password":"short"}));
        line(&mut hub, a, json!({"type":"register","password":PW}));
        line(&mut hub, a, json!({"type":"register","password":PW}));
        let out = drain(&mut hub);
        assert_eq!(
            codes(&out[&a]),
            [
                "welcome",
                "bad_nick",
                "nick",
                "bad_password",
                "registered",
                "nick_registered"
            ]
        );
        assert_eq!(out[&a][4], json!({"type":"registered","account":"Alice"}));
        let b = join(&mut hub);
        line(&mut hub, b, json!({"type":"nick","nick":"alice"}));
        line(&mut hub, a, json!({"type":"logout"}));
        // Logged out, alice keeps her name but may not take it again.
        line(&mut hub, a, json!({"type":"nick","nick":"ALICE"}));
        line(
            &mut hub,
            b,
            json!({"type":"login","account":"alice","password":"wrong one!"}),
        );
        line(
            &mut hub,
            b,
            json!({"type":"login","account":"zed","password":PW}),
        );
        line(
            &mut hub,
            b,
            json!({"type":"login","account":"ALICE","password":PW}),
        );
        let out = drain(&mut hub);
        assert_eq!(
            codes(&out[&b]),
            [
                "welcome",
                "nick_registered",
                "login_failed",
                "login_failed",
                "nick",
                "nick",
                "logged_in"
            ]
        );
        assert_eq!(out[&b][2], out[&b][3], "one answer for both");
        assert_eq!(
            (&out[&b][4]["old"], &out[&b][4]["new"]),
            (&json!("Alice"), &json!("guest1"))
        );
        assert_eq!(
            (&out[&b][5]["old"], &out[&b][5]["new"]),
            (&json!("guest2"), &json!("Alice"))
        );
        assert_eq!(out[&b][6], json!({"type":"logged_in","account":"Alice"}));
        assert_eq!(
            codes(&out[&a]),
            ["join", "logged_out", "nick_registered", "nick", "nick"]
        );
        // The owner may respell it, and logging in again to it is fine.
        line(&mut hub, b, json!({"type":"nick","nick":"ALICE"}));
        line(
            &mut hub,
            b,
            json!({"type":"login","account":"alice","password":PW}),
        );
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&b]), ["nick", "nick", "logged_in"]);
        assert_eq!(
            out[&b][1]["new"], "Alice",
            "login takes the account's spelling"
        );
    }

    #[test]
    fn passwords_cross_only_tls_or_loopback_unless_allowed() {
        let mut hub = accounts_hub(core::AccountRules::default());
        let far = from(&mut hub, [192, 0, 2, 1]);
        line(&mut hub, far, json!({"type":"nick","nick":"far"}));
        line(&mut hub, far, json!({"type":"register","password":PW}));
        line(
            &mut hub,
            far,
            json!({"type":"login","account":"far","password":PW}),
        );
        let tls = hub.connect(
            Peer::new(std::net::SocketAddr::from(([192, 0, 2, 2], 5000)), true),
            NOW,
            Outlet::new(Door::JsonLines),
        );
        line(&mut hub, tls, json!({"type":"nick","nick":"secure"}));
        line(&mut hub, tls, json!({"type":"register","password":PW}));
        let out = drain(&mut hub);
        assert_eq!(
            codes(&out[&far])[2..4],
            ["insecure_transport", "insecure_transport"]
        );
        assert_eq!(codes(&out[&tls]).last(), Some(&"registered"));
        let mut hub = accounts_hub(core::AccountRules {
            allow_plaintext: true,
            ..core::AccountRules::default()
        });
        let far = from(&mut hub, [192, 0, 2, 1]);
        line(&mut hub, far, json!({"type":"nick","nick":"far"}));
        line(&mut hub, far, json!({"type":"register","password":PW}));
        assert_eq!(codes(&drain(&mut hub)[&far]).last(), Some(&"registered"));
    }

    #[test]
    fn closed_registration() {
        let mut hub = accounts_hub(core::AccountRules {
            registration_open: false,
            ..core::AccountRules::default()
        });
        let a = named(&mut hub, "alice");
        line(&mut hub, a, json!({"type":"register","password":PW}));
        assert_eq!(
            codes(&drain(&mut hub)[&a]).last(),
            Some(&"registration_closed")
        );
    }

    #[test]
    fn failed_logins_are_limited_per_connection_and_per_address() {
        let mut hub = accounts_hub(core::AccountRules {
            per_minute: 7,
            ..core::AccountRules::default()
        });
        let a = from(&mut hub, [127, 0, 0, 2]);
        let guess = json!({"type":"login","account":"x","password":"guess guess"});
        for _ in 0..7 {
            line(&mut hub, a, guess.clone());
        }
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&a])[1..6], ["login_failed"; 5]);
        assert_eq!(codes(&out[&a])[6..], ["too_many_attempts"; 2]);
        // Another connection from the address has two left; another
        // address is apart.
        let b = from(&mut hub, [127, 0, 0, 2]);
        let c = from(&mut hub, [127, 0, 0, 3]);
        for _ in 0..3 {
            line(&mut hub, b, guess.clone());
            line(&mut hub, c, guess.clone());
        }
        let out = drain(&mut hub);
        assert_eq!(
            codes(&out[&b])[2..],
            ["login_failed", "login_failed", "too_many_attempts"]
        );
        assert_eq!(codes(&out[&c])[1..], ["login_failed"; 3]);
        // The connection lives on.
        assert_eq!(line(&mut hub, b, json!({"type":"who"})), Flow::Continue);
        assert_eq!(codes(&drain(&mut hub)[&b]), ["who"]);
    }

    #[test]
    fn login_required_hides_a_connection_until_it_logs_in() {
        let rules = core::AccountRules {
            require_login: true,
            ..core::AccountRules::default()
        };
        let mut hub = accounts_hub(rules);
        // An account made beforehand (as by `chat account add`).
        let maker = {
            let mut open = accounts_hub(core::AccountRules::default());
            let k = named(&mut open, "carol");
            line(&mut open, k, json!({"type":"register","password":PW}));
            open
        };
        drop(maker);
        let a = join(&mut hub);
        let b = join(&mut hub);
        line(&mut hub, a, json!({"type":"who"}));
        line(&mut hub, a, json!({"type":"group","text":"hi"}));
        line(&mut hub, a, json!({"type":"logout"}));
        line(&mut hub, a, json!({"type":"register","password":PW}));
        let out = drain(&mut hub);
        assert_eq!(out[&a][0]["login"], "required");
        assert_eq!(out[&a][0]["users"], 0);
        assert_eq!(
            codes(&out[&a])[1..],
            [
                "login_required",
                "login_required",
                "login_required",
                "bad_nick"
            ]
        );
        assert!(
            out[&b][1..].is_empty(),
            "b heard nothing of a: {:?}",
            out[&b]
        );
        let _ = (a, b);
    }

    #[test]
    fn in_a_cluster_a_login_takes_its_account_s_name_once_claimed() {
        let mut hub = hub();
        hub.core.join_cluster("me", 1);
        let a = join(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"login","account":"dora","password":PW}),
        );
        let mut jobs = Vec::new();
        hub.core.take_jobs(&mut jobs);
        hub.answer_job(
            Answer {
                conn: a,
                login: true,
                outcome: Outcome::LoggedIn("dora".into()),
            },
            NOW,
        );
        drain(&mut hub);
        let claims = hub.core.take_claims();
        assert_eq!(claims.len(), 1, "the account's name is claimed");
        assert!(!claims[0].arrival && claims[0].nick == "dora");
        hub.claimed(claims[0].clone(), true, NOW);
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&a]), ["nick"]);
        assert_eq!(hub.core.user(a).unwrap().nick.as_str(), "dora");
    }

    #[test]
    fn in_a_cluster_a_required_login_arrives_once_its_name_is_claimed() {
        let rules = core::AccountRules {
            require_login: true,
            ..core::AccountRules::default()
        };
        let mut hub = hub();
        hub.core.join_cluster("me", 1);
        hub.core.set_accounts(rules, &[]);
        let (a, b) = (join(&mut hub), join(&mut hub));
        let mut jobs = Vec::new();
        for k in [a, b] {
            line(
                &mut hub,
                k,
                json!({"type":"login","account":"dora","password":PW}),
            );
            hub.core.take_jobs(&mut jobs);
            hub.answer_job(
                Answer {
                    conn: k,
                    login: true,
                    outcome: Outcome::LoggedIn("dora".into()),
                },
                NOW,
            );
        }
        drain(&mut hub);
        let claims = hub.core.take_claims();
        assert_eq!(claims.len(), 2, "each arrival waits for its claim");
        assert!(claims.iter().all(|c| c.arrival && c.nick == "dora"));
        assert!(!hub.core.user(a).unwrap().admitted);
        // The name table gives it to a; b's is held elsewhere.
        hub.claimed(claims[0].clone(), true, NOW);
        hub.claimed(claims[1].clone(), false, NOW);
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&a]), ["nick", "logged_in", "joined"]);
        assert_eq!(codes(&out[&b]), ["nick_in_use"]);
        assert!(!hub.core.user(b).unwrap().admitted);
        assert!(
            hub.core.user(b).unwrap().account.is_none(),
            "b logs in again"
        );
    }

    #[test]
    fn a_deleted_account_logs_out_whoever_holds_it() {
        let mut hub = hub();
        hub.core.set_accounts(core::AccountRules::default(), &[]);
        let (a, b) = (join(&mut hub), join(&mut hub));
        let mut jobs = Vec::new();
        for (k, account) in [(a, "Dora"), (b, "eve")] {
            line(
                &mut hub,
                k,
                json!({"type":"login","account":account,"password":PW}),
            );
            hub.core.take_jobs(&mut jobs);
            hub.answer_job(
                Answer {
                    conn: k,
                    login: true,
                    outcome: Outcome::LoggedIn(account.into()),
                },
                NOW,
            );
        }
        drain(&mut hub);
        // `chat account del dora`, as the database's watcher reports it.
        let left = ["eve".to_owned()];
        hub.accounts_changed(&left, &["dora".to_owned()], NOW);
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&a]), ["logged_out"]);
        assert!(out[&b].is_empty(), "{:?}", out[&b]);
        assert!(hub.core.user(a).unwrap().account.is_none());
        assert_eq!(hub.core.user(a).unwrap().nick.as_str(), "Dora");
        // And from a cluster's bucket.
        hub.account_deleted("eve", NOW);
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&b]), ["logged_out"]);
        assert!(out[&a].is_empty(), "{:?}", out[&a]);
        // Both names are free for guests again.
        let c = join(&mut hub);
        line(&mut hub, c, json!({"type":"nick","nick":"eve2"}));
        drain(&mut hub);
        line(&mut hub, a, json!({"type":"nick","nick":"dora2"}));
        line(&mut hub, b, json!({"type":"nick","nick":"eve3"}));
        line(&mut hub, c, json!({"type":"nick","nick":"Eve"}));
        let out = drain(&mut hub);
        assert_eq!(out[&c].last().unwrap()["new"], "Eve", "{:?}", out[&c]);
    }

    #[test]
    fn after_a_required_login_it_arrives_as_a_newcomer() {
        let rules = core::AccountRules {
            require_login: true,
            ..core::AccountRules::default()
        };
        let mut hub = hub();
        hub.core.set_accounts(rules, &[]);
        // Jobs are left for the edge: answered here by hand.
        let a = join(&mut hub);
        let b = join(&mut hub);
        for k in [a, b] {
            line(
                &mut hub,
                k,
                json!({"type":"login","account":"dora","password":PW}),
            );
        }
        let mut jobs = Vec::new();
        hub.core.take_jobs(&mut jobs);
        assert_eq!(jobs.len(), 2);
        assert!(hub.core.user(a).unwrap().hashing);
        drain(&mut hub);
        hub.answer_job(
            Answer {
                conn: a,
                login: true,
                outcome: Outcome::LoggedIn("Dora".into()),
            },
            NOW,
        );
        hub.answer_job(
            Answer {
                conn: b,
                login: true,
                outcome: Outcome::Failed,
            },
            NOW,
        );
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&a]), ["nick", "logged_in", "joined"]);
        assert_eq!(out[&a][2]["users"], json!([{"id":1,"nick":"Dora"}]));
        assert_eq!(codes(&out[&b]), ["login_failed"]);
        let c = join(&mut hub);
        line(
            &mut hub,
            c,
            json!({"type":"login","account":"eve","password":PW}),
        );
        hub.core.take_jobs(&mut jobs);
        hub.answer_job(
            Answer {
                conn: c,
                login: true,
                outcome: Outcome::LoggedIn("eve".into()),
            },
            NOW,
        );
        let out = drain(&mut hub);
        assert_eq!(
            out[&a],
            [json!({"type":"join","id":3,"nick":"eve","ts":NOW,"room":"lobby"})]
        );
        // Logging out under required login is leaving everyone's sight.
        line(&mut hub, c, json!({"type":"logout"}));
        line(&mut hub, c, json!({"type":"group","text":"still here?"}));
        let out = drain(&mut hub);
        assert_eq!(codes(&out[&c]), ["logged_out", "login_required"]);
        assert_eq!(out[&a][0]["type"], "leave");
        line(&mut hub, a, json!({"type":"who"}));
        let out = drain(&mut hub);
        assert_eq!(
            out[&a][0]["users"],
            json!([{"id":1,"nick":"Dora","since":NOW}])
        );
    }

    #[test]
    fn an_answer_for_a_closed_connection_is_dropped() {
        let mut hub = hub();
        let a = join(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"login","account":"dora","password":PW}),
        );
        let mut jobs = Vec::new();
        hub.core.take_jobs(&mut jobs);
        hub.remove(a, NOW);
        // The slot is taken again by someone else, under a new generation.
        let b = join(&mut hub);
        drain(&mut hub);
        let answer = |outcome| Answer {
            conn: a,
            login: true,
            outcome,
        };
        hub.answer_job(answer(Outcome::LoggedIn("dora".into())), NOW);
        hub.answer_job(answer(Outcome::Failed), NOW);
        hub.job_refused(&jobs[0], NOW);
        assert!(drain(&mut hub)[&b].is_empty());
        assert_eq!(hub.core.user(b).unwrap().account, None);
    }

    #[test]
    fn a_full_hashing_queue_answers_busy_at_once() {
        let mut hub = hub();
        let a = join(&mut hub);
        line(
            &mut hub,
            a,
            json!({"type":"login","account":"dora","password":PW}),
        );
        let mut jobs = Vec::new();
        hub.core.take_jobs(&mut jobs);
        drain(&mut hub);
        hub.job_refused(&jobs[0], NOW);
        let out = drain(&mut hub);
        assert_eq!(out[&a][0]["code"], "too_many_attempts");
        assert!(out[&a][0]["message"].as_str().unwrap().contains("busy"));
        assert!(!hub.core.user(a).unwrap().hashing);
        line(
            &mut hub,
            a,
            json!({"type":"login","account":"dora","password":PW}),
        );
        hub.core.take_jobs(&mut jobs);
        assert_eq!(jobs.len(), 1, "it may try again");
    }
}
