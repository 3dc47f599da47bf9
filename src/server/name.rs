//! Names of users and rooms, and their comparison keys, kept small.
//!
//! A name is up to 32 Unicode characters, so up to 128 bytes; but most
//! names (every `guest7`, most chosen ones) are short, and an idle
//! connection is meant to be cheap. A name of up to [`INLINE`] bytes is
//! kept in the record itself, with no heap allocation; a longer one is a
//! shared `Rc<str>`, so that events carry names by a counted reference,
//! never by copying the text.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use crate::names;

/// Names of up to this many bytes are kept inline: with the length and
/// the enum's tag the type is 32 bytes, the size of the `Rc<str>` variant
/// rounded up, and smaller than the old inline 33-byte ASCII name.
pub const INLINE: usize = 30;

#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Rc<str>),
}

impl Name {
    /// Stands in where a name that always fits (`guest7`) somehow did not.
    pub const EMPTY: Name = Name(Repr::Inline {
        len: 0,
        bytes: [0; INLINE],
    });

    /// Keeps `s` as it is: callers check names with `names::check_nick`
    /// or `names::check_room` first, and keys may be longer than names.
    pub fn new(s: &str) -> Name {
        let len = s.len();
        if len <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..len].copy_from_slice(s.as_bytes());
            Name(Repr::Inline {
                len: len as u8,
                bytes,
            })
        } else {
            Name(Repr::Shared(s.into()))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only ever copied whole from a `str`.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Repr::Shared(s) => s,
        }
    }

    /// The form names are compared in ([`names::fold`]): the same for
    /// `Bob`, `bob` and `Ьоb`. The nickname and room indexes are keyed by
    /// it, and so is anything else that must treat look-alikes as one name
    /// (accounts).
    pub fn key(&self) -> Name {
        Name::key_of(self.as_str())
    }

    /// The comparison key of a name given as text.
    pub fn key_of(s: &str) -> Name {
        Name::new(&names::fold(s))
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

/// As `str` hashes, so that an index keyed by `Name` is searched by `&str`.
impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_costs_no_more_than_the_ascii_one_did() {
        assert!(std::mem::size_of::<Name>() <= 32);
    }

    #[test]
    fn short_and_long_names_read_back() {
        for s in [
            "",
            "guest7",
            "小明",
            &"é".repeat(15),
            &"小".repeat(32),
            &"a".repeat(31),
        ] {
            assert_eq!(Name::new(s).as_str(), s);
            assert_eq!(Name::new(s), Name::new(s));
        }
        assert!(matches!(Name::new(&"a".repeat(30)).0, Repr::Inline { .. }));
        assert!(matches!(Name::new(&"a".repeat(31)).0, Repr::Shared(_)));
    }

    #[test]
    fn keys_join_look_alikes() {
        assert_eq!(Name::new("Alice").key(), Name::new("\u{430}lice").key());
        let mut index = std::collections::HashMap::new();
        index.insert(Name::key_of("ΣΑΣ"), 1);
        assert_eq!(index.get(names::fold("σας").as_str()), Some(&1));
    }
}
