//! What the client knows about people and rooms: who we are, who else is
//! about and in which of our rooms, each room's topic, and the current
//! room, where a typed line goes. It follows `welcome`, `join`, `leave`,
//! `nick`, `who`, `joined`, `parted` and `topic`, and feeds Tab completion.
//!
//! A v1 server has no rooms (its `welcome` names none): then everyone is
//! in the one room there is, the list of users is the whole server, and
//! there is no current room to show.

use std::collections::{BTreeMap, BTreeSet};

use crate::names;
use crate::wire::{Member, WhoEntry, check_nick, check_room, is_guest_name};

#[derive(Debug, Default)]
struct RoomState {
    members: BTreeSet<u64>,
    topic: Option<String>,
    /// When we joined it, to choose where to go when the current room is
    /// parted.
    joined: u64,
}

#[derive(Debug, Default)]
pub struct Roster {
    /// Our connection's id, once welcomed.
    pub me: Option<u64>,
    /// Our nickname as the server last told it.
    pub nick: String,
    /// Everyone we share a room with (with a v1 server: everyone online).
    users: BTreeMap<u64, String>,
    /// The rooms we are in; empty with a v1 server.
    rooms: BTreeMap<String, RoomState>,
    /// The server's default room; `None` for a v1 server.
    default_room: Option<String>,
    here: Option<String>,
    /// Rooms named by the last `rooms` answer, for completion.
    listed: BTreeSet<String>,
    joins: u64,
}

/// A room name as the server should send it, or `None` for one it should
/// not have sent (which then never reaches the prompt or the completer).
fn room_name(room: &str) -> Option<String> {
    check_room(room).ok()
}

impl Roster {
    /// `room` is the welcome's default room; `None` from a v1 server.
    pub fn welcome(&mut self, id: u64, nick: &str, room: Option<&str>) {
        self.me = Some(id);
        self.nick = nick.to_owned();
        self.users.insert(id, nick.to_owned());
        if let Some(room) = room.and_then(room_name) {
            self.enter(&room, [id].into(), None);
            self.default_room = Some(room.clone());
            self.here = Some(room);
        }
    }

    /// True when the server has rooms (protocol v2).
    pub fn has_rooms(&self) -> bool {
        self.default_room.is_some()
    }

    pub fn default_room(&self) -> Option<&str> {
        self.default_room.as_deref()
    }

    /// The current room: where a typed line goes, shown in the prompt.
    pub fn here(&self) -> Option<&str> {
        self.here.as_deref()
    }

    /// Makes a room we are in the current one; false if we are not in it.
    pub fn switch_to(&mut self, room: &str) -> bool {
        let found = self.ours(room).map(str::to_owned);
        let is_in = found.is_some();
        if is_in {
            self.here = found;
        }
        is_in
    }

    pub fn is_in(&self, room: &str) -> bool {
        self.ours(room).is_some()
    }

    /// A room we are in, under the name the server sent it by, given any
    /// spelling of it (`names::same`: a look-alike joins the same room).
    pub fn ours(&self, room: &str) -> Option<&str> {
        if let Some((name, _)) = self.rooms.get_key_value(room) {
            return Some(name);
        }
        let key = names::fold(room);
        self.rooms
            .keys()
            .find(|name| names::fold(name) == key)
            .map(String::as_str)
    }

    pub fn topic(&self, room: &str) -> Option<&str> {
        self.rooms.get(self.ours(room)?)?.topic.as_deref()
    }

    /// `room` is the room joined; absent from a v1 server (and then the
    /// default room, for a v2 one).
    pub fn join(&mut self, id: u64, nick: &str, room: Option<&str>) {
        self.users.insert(id, nick.to_owned());
        let room = room.or(self.default_room.as_deref()).and_then(room_name);
        if let Some(state) = room.and_then(|r| self.rooms.get_mut(&r)) {
            state.members.insert(id);
        }
    }

    /// A `leave`: of one room (`room`, a part), or of the server.
    pub fn leave(&mut self, id: u64, room: Option<&str>) {
        match room.and_then(room_name) {
            Some(room) => {
                if let Some(state) = self.rooms.get_mut(&room) {
                    state.members.remove(&id);
                }
                self.forget_strangers();
            }
            None => {
                self.users.remove(&id);
                for state in self.rooms.values_mut() {
                    state.members.remove(&id);
                }
            }
        }
    }

    /// Records a rename; true when it was ours.
    pub fn rename(&mut self, id: u64, new: &str) -> bool {
        self.users.insert(id, new.to_owned());
        let ours = self.me == Some(id);
        if ours {
            self.nick = new.to_owned();
        }
        ours
    }

    /// A `who` answer. Without a room, from a v1 server, it is everyone
    /// (us included); with a room we are in, that room's members. Other
    /// answers change nothing: a v2 server tells us of comings and goings
    /// only in our rooms, so a list of others would go stale.
    pub fn who(&mut self, users: &[WhoEntry<'_>], room: Option<&str>) {
        match room.and_then(room_name) {
            None if !self.has_rooms() => {
                self.users = users.iter().map(|u| (u.id, u.nick.to_string())).collect();
                if let Some(me) = self.me {
                    self.users.insert(me, self.nick.clone());
                }
            }
            Some(room) if self.is_in(&room) => {
                let members: BTreeSet<u64> = users.iter().map(|u| u.id).collect();
                for u in users {
                    self.users.insert(u.id, u.nick.to_string());
                }
                if let Some(state) = self.rooms.get_mut(&room) {
                    state.members = members;
                    state.members.extend(self.me);
                }
            }
            _ => {}
        }
    }

    /// Our `join` was answered: we are in `room`, which becomes current.
    pub fn joined(&mut self, room: &str, users: &[Member<'_>], topic: Option<&str>) {
        let Some(room) = room_name(room) else { return };
        for u in users {
            self.users.insert(u.id, u.nick.to_string());
        }
        let mut members: BTreeSet<u64> = users.iter().map(|u| u.id).collect();
        members.extend(self.me);
        self.enter(&room, members, topic.filter(|t| !t.is_empty()));
        self.here = Some(room);
    }

    /// Our `part` was answered. When it was the current room, the default
    /// room (if we are in it) or else the room joined last becomes current.
    pub fn parted(&mut self, room: &str) {
        let Some(room) = room_name(room) else { return };
        self.rooms.remove(&room);
        self.forget_strangers();
        if self.here.as_deref() == Some(room.as_str()) {
            let default = self.default_room.clone().filter(|d| self.is_in(d));
            self.here = default.or_else(|| {
                self.rooms
                    .iter()
                    .max_by_key(|(_, state)| state.joined)
                    .map(|(name, _)| name.clone())
            });
        }
    }

    pub fn set_topic(&mut self, room: &str, text: &str) {
        if let Some(state) = room_name(room).and_then(|r| self.rooms.get_mut(&r)) {
            state.topic = Some(text.to_owned()).filter(|t| !t.is_empty());
        }
    }

    /// A `rooms` answer: names for completion.
    pub fn listed(&mut self, names: impl Iterator<Item = String>) {
        self.listed = names.filter_map(|n| room_name(&n)).collect();
    }

    /// The other users' nicknames for completion: the current room's
    /// members first, then everyone else we know of, each part sorted.
    /// Names the protocol would not allow are left out: a misbehaving
    /// server cannot put spaces or control characters into the input line
    /// this way.
    pub fn others(&self) -> Vec<String> {
        let here: BTreeSet<u64> = self
            .here
            .as_deref()
            .and_then(|r| self.rooms.get(r))
            .map(|state| state.members.clone())
            .unwrap_or_default();
        let mut nicks: Vec<(bool, String)> = self
            .users
            .iter()
            .filter(|(id, nick)| {
                Some(**id) != self.me && (check_nick(nick).is_ok() || is_guest_name(nick))
            })
            .map(|(id, nick)| (!here.contains(id), nick.clone()))
            .collect();
        nicks.sort_by_key(|(elsewhere, n)| (*elsewhere, names::room_form(n)));
        nicks.into_iter().map(|(_, n)| n).collect()
    }

    /// The rooms we are in, the current one last: what to join again on a
    /// new connection so that the current room ends up current again.
    pub fn our_rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self
            .rooms
            .keys()
            .filter(|r| Some(r.as_str()) != self.here.as_deref())
            .cloned()
            .collect();
        rooms.extend(self.here.clone());
        rooms
    }

    /// Room names for completion: ours, and those the server listed.
    pub fn room_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.rooms.keys().cloned().collect();
        names.extend(self.listed.iter().cloned());
        names.into_iter().collect()
    }

    fn enter(&mut self, room: &str, members: BTreeSet<u64>, topic: Option<&str>) {
        self.joins += 1;
        let joined = match self.rooms.get(room) {
            Some(state) => state.joined,
            None => self.joins,
        };
        self.rooms.insert(
            room.to_owned(),
            RoomState {
                members,
                topic: topic.map(str::to_owned),
                joined,
            },
        );
    }

    /// With rooms, the users we no longer share any room with are out of
    /// sight: the server will not tell us when they leave.
    fn forget_strangers(&mut self) {
        if !self.has_rooms() {
            return;
        }
        let seen: BTreeSet<u64> = self
            .rooms
            .values()
            .flat_map(|state| state.members.iter().copied())
            .collect();
        let me = self.me;
        self.users
            .retain(|id, _| Some(*id) == me || seen.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, nick: &str) -> WhoEntry<'static> {
        WhoEntry {
            id,
            nick: nick.to_owned().into(),
            since: 0,
        }
    }

    fn member(id: u64, nick: &str) -> Member<'static> {
        Member {
            id,
            nick: nick.to_owned().into(),
        }
    }

    #[test]
    fn follows_joins_leaves_and_renames() {
        let mut r = Roster::default();
        r.welcome(3, "guest3", None);
        assert!(!r.has_rooms());
        assert_eq!(r.here(), None);
        r.who(&[entry(1, "alice"), entry(3, "guest3")], None);
        r.join(4, "Bob", None);
        assert_eq!(r.others(), ["alice", "Bob"]);
        assert!(!r.rename(1, "ally"));
        assert!(r.rename(3, "carol"));
        assert_eq!(r.nick, "carol");
        r.leave(4, None);
        assert_eq!(r.others(), ["ally"]);
    }

    #[test]
    fn unicode_rooms_are_found_by_any_spelling() {
        let mut r = Roster::default();
        r.welcome(1, "me", Some("lobby"));
        r.joined(
            "café-bar",
            &[member(1, "me"), member(2, "小明")],
            Some("☕"),
        );
        r.join(3, "Ольга", Some("café-bar"));
        assert_eq!(r.here(), Some("café-bar"));
        assert!(r.switch_to("LOBBY"));
        assert_eq!(r.here(), Some("lobby"));
        // Decomposed, upper case, a Cyrillic с: the room the server named.
        for spelling in ["CAFE\u{301}-BAR", "\u{441}afé-bar"] {
            assert!(r.is_in(spelling), "{spelling}");
            assert_eq!(r.ours(spelling), Some("café-bar"));
            assert_eq!(r.topic(spelling), Some("☕"));
        }
        assert!(r.switch_to("\u{441}afé-bar"));
        assert_eq!(r.here(), Some("café-bar"), "the server's spelling");
        assert_eq!(r.others(), ["Ольга", "小明"]);
    }

    #[test]
    fn invalid_names_are_not_offered_for_completion() {
        let mut r = Roster::default();
        r.welcome(1, "me", None);
        r.join(2, "bad name", None);
        r.join(3, "\x1b[2J", None);
        r.join(4, "guest4", None);
        assert_eq!(r.others(), ["guest4"]);
    }

    /// Welcomed into the lobby with alice and bob; bob and carol in rust.
    fn in_two_rooms() -> Roster {
        let mut r = Roster::default();
        r.welcome(3, "me", Some("lobby"));
        r.who(
            &[entry(1, "alice"), entry(2, "bob"), entry(3, "me")],
            Some("lobby"),
        );
        r.joined(
            "rust",
            &[member(2, "bob"), member(4, "carol"), member(3, "me")],
            Some("borrowck"),
        );
        r
    }

    #[test]
    fn rooms_follow_joined_parted_and_the_current_room() {
        let mut r = in_two_rooms();
        assert!(r.has_rooms());
        assert_eq!(r.here(), Some("rust"));
        assert_eq!(r.topic("rust"), Some("borrowck"));
        assert_eq!(r.room_names(), ["lobby", "rust"]);
        // The current room's members come first for completion.
        assert_eq!(r.others(), ["bob", "carol", "alice"]);
        assert!(r.switch_to("lobby"));
        assert_eq!(r.others(), ["alice", "bob", "carol"]);
        assert!(!r.switch_to("go"));
        r.switch_to("rust");
        r.parted("rust");
        assert_eq!(r.here(), Some("lobby"), "back to the default room");
        assert_eq!(r.others(), ["alice", "bob"], "carol is out of sight");
        r.parted("lobby");
        assert_eq!(r.here(), None);
    }

    #[test]
    fn parting_the_current_room_goes_to_the_last_one_joined_without_the_default() {
        let mut r = in_two_rooms();
        r.parted("lobby");
        r.joined("go", &[member(3, "me")], None);
        r.switch_to("rust");
        r.parted("rust");
        assert_eq!(r.here(), Some("go"));
    }

    #[test]
    fn a_leave_with_a_room_is_a_part_and_without_one_leaves_everything() {
        let mut r = in_two_rooms();
        r.leave(2, Some("rust"));
        assert_eq!(
            r.others(),
            ["carol", "alice", "bob"],
            "bob is still in the lobby"
        );
        r.leave(1, Some("lobby"));
        assert_eq!(
            r.others(),
            ["carol", "bob"],
            "alice shares no room any more"
        );
        r.leave(2, None);
        assert_eq!(r.others(), ["carol"]);
        r.join(5, "dave", Some("rust"));
        r.join(6, "erin", None);
        assert_eq!(r.others(), ["carol", "dave", "erin"]);
        r.switch_to("lobby");
        assert_eq!(
            r.others(),
            ["erin", "carol", "dave"],
            "a join without room is the default room"
        );
    }

    #[test]
    fn topics_and_listed_rooms() {
        let mut r = in_two_rooms();
        r.set_topic("Rust", "lifetimes");
        assert_eq!(r.topic("rust"), Some("lifetimes"));
        r.set_topic("rust", "");
        assert_eq!(r.topic("rust"), None);
        r.listed(["go".to_owned(), "bad room".to_owned(), "Zig".to_owned()].into_iter());
        assert_eq!(r.room_names(), ["go", "lobby", "rust", "zig"]);
    }

    #[test]
    fn a_room_the_server_should_not_name_is_ignored() {
        let mut r = Roster::default();
        r.welcome(1, "me", Some("bad\nroom"));
        assert!(!r.has_rooms());
        r.joined("\x1b[2J", &[], None);
        assert_eq!(r.here(), None);
    }
}
