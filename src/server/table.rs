//! The connection table: one record per connection, found by a key that
//! names the connection, not just its slot.
//!
//! A slab reuses a freed slot for the next connection at once, so a plain
//! index kept anywhere (a timer, a "read again" note, a room's member
//! list, an epoll token) could reach a stranger. Each slot therefore
//! carries a generation that changes whenever the slot is freed, and a
//! [`Key`] is slot and generation together: a stale key finds nothing.

use slab::Slab;

/// A connection's name in the table. Copy, 8 bytes, and it fits a mio
/// token, so readiness events carry it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    slot: u32,
    generation: u32,
}

impl Key {
    /// The key as one number (for a mio `Token`).
    pub fn to_usize(self) -> usize {
        (u64::from(self.generation) << 32 | u64::from(self.slot)) as usize
    }

    pub fn from_usize(n: usize) -> Key {
        let n = n as u64;
        Key {
            slot: n as u32,
            generation: (n >> 32) as u32,
        }
    }
}

pub struct Table<T> {
    slots: Slab<T>,
    /// Each slot's generation: its occupant's while it has one, the next
    /// occupant's while it is free (a slot's generation moves on when it
    /// is freed). So a key is live exactly when its generation is the
    /// slot's, and checking that reads this dense array, not the record:
    /// a broadcast to a thousand keys touches only the records it writes.
    generations: Vec<u32>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            slots: Slab::new(),
            generations: Vec::new(),
        }
    }
}

impl<T> Table<T> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn insert(&mut self, value: T) -> Key {
        let slot = self.slots.vacant_key();
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        let generation = self.generations[slot];
        self.slots.insert(value);
        Key {
            slot: slot as u32,
            generation,
        }
    }

    fn live(&self, key: Key) -> bool {
        self.generations.get(key.slot as usize) == Some(&key.generation)
    }

    pub fn get(&self, key: Key) -> Option<&T> {
        if !self.live(key) {
            return None;
        }
        self.slots.get(key.slot as usize)
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        if !self.live(key) {
            return None;
        }
        self.slots.get_mut(key.slot as usize)
    }

    pub fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    pub fn remove(&mut self, key: Key) -> Option<T> {
        self.get(key)?;
        let slot = key.slot as usize;
        // Wrapped before the top, so that no key's number is one of the
        // event loop's own tokens (near `usize::MAX`).
        let next = self.generations[slot] + 1;
        self.generations[slot] = if next >= u32::MAX - 16 { 0 } else { next };
        self.slots.try_remove(slot)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        let generations = &self.generations;
        self.slots.iter().map(move |(slot, value)| {
            (
                Key {
                    slot: slot as u32,
                    generation: generations[slot],
                },
                value,
            )
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        let generations = &self.generations;
        self.slots.iter_mut().map(move |(slot, value)| {
            (
                Key {
                    slot: slot as u32,
                    generation: generations[slot],
                },
                value,
            )
        })
    }

    pub fn keys(&self) -> Vec<Key> {
        self.iter().map(|(k, _)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_finds_nothing_after_the_slot_is_reused() {
        let mut t = Table::default();
        let a = t.insert("a");
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert("b");
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(b), Some(&"b"));
        assert_ne!(a, b);
    }

    #[test]
    fn keys_survive_a_trip_through_a_token() {
        let mut t = Table::default();
        for i in 0..3 {
            let k = t.insert(i);
            t.remove(k);
        }
        let k = t.insert(9);
        assert_eq!(Key::from_usize(k.to_usize()), k);
        assert_eq!(t.get(Key::from_usize(k.to_usize())), Some(&9));
    }
}
