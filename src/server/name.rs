//! Names of users and rooms, stored inline.
//!
//! A name is at most [`wire::MAX_NICK`] ASCII bytes, so it is kept in the
//! record itself: a connection's nickname or a membership costs no heap
//! allocation (idle connections are meant to be cheap), and events carry
//! names by copy.

use crate::wire;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    len: u8,
    bytes: [u8; wire::MAX_NICK],
}

impl Name {
    /// Stands in where a name that always fits (`guest7`) somehow did not.
    pub const EMPTY: Name = Name {
        len: 0,
        bytes: [0; wire::MAX_NICK],
    };

    /// `None` unless `s` fits; callers validate with `wire::check_nick` or
    /// `wire::check_room` first.
    pub fn new(s: &str) -> Option<Name> {
        let len = s.len();
        if len > wire::MAX_NICK || !s.is_ascii() {
            return None;
        }
        let mut bytes = [0; wire::MAX_NICK];
        bytes[..len].copy_from_slice(s.as_bytes());
        Some(Name {
            len: len as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// The form names are compared in: the same for `Bob` and `bob`.
    pub fn key(&self) -> Name {
        let mut k = *self;
        k.bytes.make_ascii_lowercase();
        k
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
