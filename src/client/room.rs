//! What the client knows about the room: who we are, and who else is here
//! (kept from `welcome`, `who`, `join`, `leave` and `nick`, for Tab
//! completion).

use std::collections::BTreeMap;

use crate::wire::{WhoEntry, check_nick, is_guest_name};

#[derive(Debug, Default)]
pub struct Room {
    /// Our connection's id, once welcomed.
    pub me: Option<u64>,
    /// Our nickname as the server last told it.
    pub nick: String,
    users: BTreeMap<u64, String>,
}

impl Room {
    pub fn welcome(&mut self, id: u64, nick: &str) {
        self.me = Some(id);
        self.nick = nick.to_owned();
        self.users.insert(id, nick.to_owned());
    }

    pub fn join(&mut self, id: u64, nick: &str) {
        self.users.insert(id, nick.to_owned());
    }

    pub fn leave(&mut self, id: u64) {
        self.users.remove(&id);
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

    /// Replaces the list with a `who` answer (which includes us).
    pub fn who(&mut self, users: &[WhoEntry<'_>]) {
        self.users = users.iter().map(|u| (u.id, u.nick.to_string())).collect();
        if let Some(me) = self.me {
            self.users.insert(me, self.nick.clone());
        }
    }

    /// The other users' nicknames, sorted, for completion. Names the
    /// protocol would not allow are left out: a misbehaving server cannot
    /// put spaces or control characters into the input line this way.
    pub fn others(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self
            .users
            .iter()
            .filter(|(id, nick)| {
                Some(**id) != self.me && (check_nick(nick).is_ok() || is_guest_name(nick))
            })
            .map(|(_, nick)| nick.clone())
            .collect();
        nicks.sort_by_key(|n| n.to_ascii_lowercase());
        nicks
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

    #[test]
    fn follows_joins_leaves_and_renames() {
        let mut room = Room::default();
        room.welcome(3, "guest3");
        room.who(&[entry(1, "alice"), entry(3, "guest3")]);
        room.join(4, "Bob");
        assert_eq!(room.others(), ["alice", "Bob"]);
        assert!(!room.rename(1, "ally"));
        assert!(room.rename(3, "carol"));
        assert_eq!(room.nick, "carol");
        room.leave(4);
        assert_eq!(room.others(), ["ally"]);
    }

    #[test]
    fn invalid_names_are_not_offered_for_completion() {
        let mut room = Room::default();
        room.welcome(1, "me");
        room.join(2, "bad name");
        room.join(3, "\x1b[2J");
        room.join(4, "guest4");
        assert_eq!(room.others(), ["guest4"]);
    }
}
