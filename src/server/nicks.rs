//! The nickname index: from a folded nickname to the key of its owner.
//!
//! It holds only keys. A map from name to key would keep a second copy
//! of every nickname (a `Name` is 33 bytes inline) beside the one in the
//! user's record: at 10 000 idle connections that copy and its padding
//! were some 60 bytes each of a budget of 512. Here a lookup hashes the
//! name it is given and compares it with the names in the records of the
//! keys found under that hash, which the caller reads for it (`name_of`,
//! the folded nickname a key is indexed under, from the connection
//! table).

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::name::Name;
use super::table::Key;

#[derive(Default)]
pub struct NickIndex {
    keys: HashTable<Key>,
    /// Seeded per server, as `HashMap`'s: nicknames come from the network.
    hasher: RandomState,
}

impl NickIndex {
    /// Users indexed, which is the number present.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The owner of `folded`.
    pub fn get(&self, folded: &Name, name_of: impl Fn(Key) -> Option<Name>) -> Option<Key> {
        let hash = self.hasher.hash_one(folded);
        self.keys
            .find(hash, |&k| name_of(k).as_ref() == Some(folded))
            .copied()
    }

    /// Indexes `key` under `folded`, which nobody else holds. `name_of` must
    /// give every key already indexed the name it is indexed under (it is
    /// asked again when the index grows).
    pub fn insert(&mut self, folded: Name, key: Key, name_of: impl Fn(Key) -> Option<Name>) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(folded);
        self.keys.insert_unique(hash, key, |&k| {
            hasher.hash_one(name_of(k).unwrap_or(Name::EMPTY))
        });
    }

    /// Forgets `key`, indexed under `folded`.
    pub fn remove(&mut self, folded: &Name, key: Key) {
        let hash = self.hasher.hash_one(folded);
        if let Ok(entry) = self.keys.find_entry(hash, |&k| k == key) {
            entry.remove();
        }
    }

    pub fn clear(&mut self) {
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn finds_each_owner_by_folded_name_through_growth_and_renames() {
        let mut names: HashMap<Key, Name> = HashMap::new();
        let mut index = NickIndex::default();
        let folded = |s: &str| Name::new(s).map(|n| n.key()).unwrap_or(Name::EMPTY);
        for i in 0..5000u32 {
            let key = Key::from_usize(i as usize);
            let name = folded(&format!("User{i}"));
            names.insert(key, name);
            index.insert(name, key, |k| names.get(&k).copied());
        }
        assert_eq!(index.len(), 5000);
        // Renames: out under the old name, in under the new.
        for i in (0..5000u32).step_by(2) {
            let key = Key::from_usize(i as usize);
            let old = names[&key];
            index.remove(&old, key);
            let new = folded(&format!("renamed{i}"));
            names.insert(key, new);
            index.insert(new, key, |k| names.get(&k).copied());
        }
        let lookup = |k: Key| names.get(&k).copied();
        for i in 0..5000u32 {
            let key = Key::from_usize(i as usize);
            let now = if i % 2 == 0 {
                format!("RENAMED{i}")
            } else {
                format!("user{i}")
            };
            assert_eq!(index.get(&folded(&now), lookup), Some(key), "{now}");
        }
        assert_eq!(index.get(&folded("user0"), lookup), None, "renamed away");
        assert_eq!(index.get(&folded("nobody"), lookup), None);
        index.remove(&folded("user1"), Key::from_usize(1));
        assert_eq!(index.get(&folded("user1"), lookup), None);
        assert_eq!(index.len(), 4999);
    }
}
