//! Tab completion in the interactive child: `/commands` at the start of the
//! line, room names after `/join`, `/part` and `/who`, nicknames anywhere
//! else. The names come from the parent (which follows the rooms) through
//! the display pipe, into a shared list.

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::commands::{COMMANDS, ROOM_COMMANDS};
use super::printer::Gate;
use crate::names;

/// What can be completed, as the parent last said.
#[derive(Debug, Default)]
pub struct Known {
    /// The other users, the current room's members first.
    pub nicks: Vec<String>,
    pub rooms: Vec<String>,
}

/// Written by the display thread, read by the completer.
pub type Names = Arc<Mutex<Known>>;

/// rustyline's helper: completion, and the one call rustyline makes
/// from inside `readline` once its raw mode is on (see [`Gate::hold`]).
pub struct ChatHelper {
    pub names: Names,
    pub gate: Arc<Gate>,
}

/// Where the word under the cursor starts, and the candidates for it.
pub fn candidates(line: &str, pos: usize, known: &Known) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    // After the last space, which may be wider than a byte (U+3000, the
    // ideographic space of CJK input methods).
    let start = before
        .char_indices()
        .rfind(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    if start == 0 && word.starts_with('/') {
        let found = COMMANDS
            .iter()
            .filter(|c| c.starts_with(word))
            .map(|c| Pair {
                display: (*c).to_owned(),
                replacement: format!("{c} "),
            })
            .collect();
        return (start, found);
    }
    // The first argument of a room command is a room.
    let mut words = before[..start].split_whitespace();
    let room_arg = matches!(
        (words.next(), words.next()),
        (Some(cmd), None) if ROOM_COMMANDS.iter().any(|c| c.eq_ignore_ascii_case(cmd))
    );
    let (names, suffix) = match (room_arg, start) {
        (true, _) => (&known.rooms, " "),
        // A nickname first on the line addresses its owner, IRC style.
        (false, 0) => (&known.nicks, ": "),
        (false, _) => (&known.nicks, " "),
    };
    // In any case and any width: `ОЛ` finds `Ольга`, `ＣＡＦ` finds `café`. (Look-alikes from other scripts are not offered: the
    // user types the script they mean.)
    let typed = names::caseless(word);
    let found = names
        .iter()
        .filter(|n| n.starts_with(word) || names::caseless(n).starts_with(&typed))
        .map(|n| Pair {
            display: n.clone(),
            replacement: format!("{n}{suffix}"),
        })
        .collect();
    (start, found)
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        // A poisoned lock only means the display thread panicked; the list
        // it left is still a list of names.
        let known = self.names.lock().unwrap_or_else(|e| e.into_inner());
        Ok(candidates(line, pos, &known))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;

    /// Asked at every redraw, the first time right before the prompt is
    /// drawn, with raw mode on: the moment prints may start again.
    fn hint(&self, _line: &str, _pos: usize, _ctx: &Context<'_>) -> Option<String> {
        self.gate.opened_inside();
        None
    }
}

impl Highlighter for ChatHelper {}

impl Validator for ChatHelper {}

impl Helper for ChatHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(nicks: &[&str], rooms: &[&str]) -> Known {
        Known {
            nicks: nicks.iter().map(|n| n.to_string()).collect(),
            rooms: rooms.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn replacements(line: &str, nicks: &[&str]) -> (usize, Vec<String>) {
        let (start, found) = candidates(line, line.len(), &known(nicks, &[]));
        (start, found.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn commands_at_the_start() {
        assert_eq!(replacements("/n", &[]), (0, vec!["/nick ".to_owned()]));
        assert_eq!(
            replacements("/m", &[]),
            (
                0,
                vec!["/msg ".to_owned(), "/m ".to_owned(), "/me ".to_owned()]
            )
        );
        assert_eq!(replacements("/zz", &[]).1, Vec::<String>::new());
    }

    #[test]
    fn nicknames_anywhere_in_any_case() {
        let nicks = ["alice", "Albert", "bob"];
        assert_eq!(
            replacements("al", &nicks),
            (0, vec!["alice: ".to_owned(), "Albert: ".to_owned()])
        );
        assert_eq!(replacements("/msg B", &nicks), (5, vec!["bob ".to_owned()]));
        assert_eq!(replacements("hi a", &nicks).1, ["alice ", "Albert "]);
        assert_eq!(replacements("hi z", &nicks).1, Vec::<String>::new());
    }

    #[test]
    fn rooms_after_the_room_commands() {
        let k = known(&["rusty"], &["lobby", "rust"]);
        let rooms = |line: &str| -> Vec<String> {
            let (_, found) = candidates(line, line.len(), &k);
            found.into_iter().map(|p| p.replacement).collect()
        };
        assert_eq!(rooms("/join ru"), ["rust "]);
        assert_eq!(rooms("/JOIN R"), ["rust "]);
        assert_eq!(rooms("/part l"), ["lobby "]);
        assert_eq!(rooms("/who "), ["lobby ", "rust "]);
        assert_eq!(
            rooms("/part rust ru"),
            ["rusty "],
            "the text after the room"
        );
        assert_eq!(rooms("/msg ru"), ["rusty "]);
    }

    #[test]
    fn unicode_names_complete_in_any_case_and_width() {
        let nicks = ["小明", "小朋", "Ольга", "café"];
        assert_eq!(replacements("小", &nicks).1, ["小明: ", "小朋: "]);
        assert_eq!(replacements("hi ОЛ", &nicks).1, ["Ольга "]);
        assert_eq!(replacements("hi ｏｌ", &nicks).1, Vec::<String>::new());
        assert_eq!(replacements("hi ＣＡＦ", &nicks).1, ["café "]);
        assert_eq!(replacements("hi CAF", &nicks).1, ["café "]);
        assert_eq!(replacements("hi cafe\u{301}", &nicks).1, ["café "]);
        // After an ideographic space (three bytes): no slicing inside it.
        assert_eq!(
            replacements("你好\u{3000}小明", &nicks),
            (9, vec!["小明 ".to_owned()])
        );
        let k = known(&[], &["café-bar"]);
        let (_, found) = candidates("/join CAFÉ", "/join CAFÉ".len(), &k);
        assert_eq!(found[0].replacement, "café-bar ");
    }

    #[test]
    fn completes_the_word_under_the_cursor() {
        let k = known(&["bob"], &[]);
        let (start, found) = candidates("say b and more", 5, &k);
        assert_eq!(start, 4);
        assert_eq!(found[0].replacement, "bob ");
    }
}
