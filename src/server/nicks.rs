//! The nickname index: from a name's comparison key (`Name::key`) to the
//! connection that holds it.
//!
//! It keeps each key's hash and the connection, not the key itself: a map
//! from key to connection would hold a second copy of every name (32
//! bytes) beside the one in the user's record, some 40 bytes per idle
//! connection of a budget of 512. A lookup compares the key it is given
//! with the key of the name in the record found under the same hash,
//! which the caller works out for it (`key_of`); growing the index needs
//! only the stored hashes.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::name::Name;
use super::table::Key;

#[derive(Default)]
pub struct NickIndex {
    entries: HashTable<(u64, Key)>,
    /// Seeded per server, as `HashMap`'s: names come from the network.
    hasher: RandomState,
}

impl NickIndex {
    /// Names indexed: the number of users present.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Who holds the name whose key is `key`; `key_of` gives the key of
    /// the name a connection holds.
    pub fn get(&self, key: &str, key_of: impl Fn(Key) -> Option<Name>) -> Option<Key> {
        let hash = self.hasher.hash_one(key);
        self.entries
            .find(hash, |&(h, k)| {
                h == hash && key_of(k).is_some_and(|n| n.as_str() == key)
            })
            .map(|&(_, k)| k)
    }

    /// Indexes `conn` under `key`, which nobody holds.
    pub fn insert(&mut self, key: &str, conn: Key) {
        let hash = self.hasher.hash_one(key);
        self.entries.insert_unique(hash, (hash, conn), |&(h, _)| h);
    }

    /// Forgets `conn`, indexed under `key`.
    pub fn remove(&mut self, key: &str, conn: Key) {
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.entries.find_entry(hash, |&(_, k)| k == conn) {
            entry.remove();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn finds_each_owner_by_key_through_growth_and_renames() {
        let mut names: HashMap<Key, Name> = HashMap::new();
        let mut index = NickIndex::default();
        for i in 0..5000usize {
            let conn = Key::from_usize(i);
            let name = Name::new(&format!("User{i}"));
            index.insert(name.key().as_str(), conn);
            names.insert(conn, name);
        }
        assert_eq!(index.len(), 5000);
        // Renames: out under the old key, in under the new.
        for i in (0..5000usize).step_by(2) {
            let conn = Key::from_usize(i);
            let old = names[&conn].key();
            index.remove(old.as_str(), conn);
            let new = Name::new(&format!("Пётр{i}"));
            index.insert(new.key().as_str(), conn);
            names.insert(conn, new);
        }
        let key_of = |k: Key| names.get(&k).map(Name::key);
        for i in 0..5000usize {
            let now = if i % 2 == 0 {
                format!("ПЁТР{i}")
            } else {
                format!("user{i}")
            };
            let key = Name::key_of(&now);
            assert_eq!(
                index.get(key.as_str(), key_of),
                Some(Key::from_usize(i)),
                "{now}"
            );
        }
        assert_eq!(index.get(Name::key_of("user0").as_str(), key_of), None);
        assert_eq!(index.get(Name::key_of("nobody").as_str(), key_of), None);
        index.remove(Name::key_of("USER1").as_str(), Key::from_usize(1));
        assert_eq!(index.get(Name::key_of("user1").as_str(), key_of), None);
        assert_eq!(index.len(), 4999);
    }
}
