//! What a nickname or a room name may be, and when two names are one.
//!
//! The server, the client and the bot all ask here, so that a name the
//! client lets a user type is one the server takes, and two spellings the
//! server treats as one user are one user in the client's roster too.
//!
//! - [`check`] says whether a name is allowed and gives the form it is
//!   kept and sent in (NFC: the spelling the user chose, canonically
//!   composed).
//! - [`fold`] gives the one key names are compared by: two names are the
//!   same name exactly when their keys are equal. The IRC door's
//!   `ISUPPORT` cites this function as its `CASEMAPPING`, since no IRC
//!   casemapping (`ascii`, `rfc1459`) describes it.
//! - [`room_form`] gives the case-folded form a room name is sent in.
//!
//! Every table comes from the unicode-rs crates (normalization, case
//! folding, general categories, UTS #39 confusables); none is kept here.

use std::fmt::Write as _;
use std::sync::OnceLock;

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::emoji::UnicodeEmoji;
use unicode_properties::general_category::{GeneralCategory as G, UnicodeGeneralCategory};

/// The most characters (Unicode scalar values, after NFC) in a name.
pub const MAX_CHARS: usize = 32;

/// Which kind of name is checked: only the wording of errors differs,
/// and rooms are also folded (see [`room_form`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nick,
    Room,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Nick => "a nickname",
            Kind::Room => "a room name",
        }
    }
}

/// The rule every error repeats, so that a refused user knows what works.
const RULE: &str = "use letters, marks, digits, _ or -";

/// Checks a name against the protocol's rules and returns it in NFC, the
/// form it is kept, compared from and shown in. The error is one line that
/// names the offending character and the rule: the human text of a
/// `bad_nick` or `bad_room`.
///
/// The reserved guest names are not refused here (rooms may be called
/// `guest1`); [`check_nick`] adds that.
pub fn check(name: &str, kind: Kind) -> Result<String, String> {
    let noun = kind.noun();
    if !could_be_a_name(name) {
        let count = name.chars().count();
        return Err(format!(
            "{noun} has 1 to {MAX_CHARS} characters, not {count}; {RULE}"
        ));
    }
    // ASCII is its own NFC.
    let nfc: String = if name.is_ascii() {
        name.to_owned()
    } else {
        name.nfc().collect()
    };
    let count = nfc.chars().count();
    if count == 0 || count > MAX_CHARS {
        return Err(format!(
            "{noun} has 1 to {MAX_CHARS} characters, not {count}; {RULE}"
        ));
    }
    let mut chars = nfc.chars();
    if let Some(first) = chars.next()
        && !is_letter(first)
    {
        let what = describe(first);
        return Err(format!("{noun} starts with a letter, not {what}; {RULE}"));
    }
    if let Some(bad) = nfc.chars().find(|&c| !allowed(c)) {
        let what = describe(bad);
        return Err(format!("{noun} may not hold {what}; {RULE}"));
    }
    Ok(nfc)
}

/// NFC composes at most four characters into one (the longest canonical
/// decomposition), so a longer text is no name whatever it holds: it is
/// refused, or not looked up, without normalising a whole line of it.
pub fn could_be_a_name(text: &str) -> bool {
    text.len() <= 4 * 4 * MAX_CHARS && text.chars().count() <= 4 * MAX_CHARS
}

/// [`check`] for a nickname, with the server's own names (`guest7`, and
/// anything that looks like one) reserved.
pub fn check_nick(nick: &str) -> Result<String, String> {
    let nfc = check(nick, Kind::Nick)?;
    if is_guest_name(&nfc) || looks_like_guest(&fold(&nfc)) {
        return Err("names like guest<digits> are reserved for the server".into());
    }
    Ok(nfc)
}

/// [`check`] for a room name, returning the form the room is sent in
/// ([`room_form`]), which must itself be a name: a letter whose
/// compatibility form holds a space (U+FDFA) is refused.
pub fn check_room(room: &str) -> Result<String, String> {
    let nfc = check(room, Kind::Room)?;
    let folded = room_form(&nfc);
    if folded != nfc {
        check(&folded, Kind::Room).map_err(|why| format!("{room} folds to {folded:?}: {why}"))?;
    }
    Ok(folded)
}

/// `guest` followed by one or more ASCII digits, in any case: the names
/// the server hands out. Clients use it to tell a newcomer's name.
pub fn is_guest_name(nick: &str) -> bool {
    let b = nick.as_bytes();
    b.len() > 5 && b[..5].eq_ignore_ascii_case(b"guest") && b[5..].iter().all(u8::is_ascii_digit)
}

/// Whether a key (from [`fold`]) is the key of some `guest<digits>`: such
/// a name would collide with a connection yet to come.
fn looks_like_guest(key: &str) -> bool {
    // The keys of `guest` and of each digit, worked out once.
    static GUEST: OnceLock<(String, Vec<String>)> = OnceLock::new();
    let (guest, digits) = GUEST.get_or_init(|| {
        let digits = ('0'..='9')
            .map(|d| fold(d.encode_utf8(&mut [0; 4])))
            .collect();
        (fold("guest"), digits)
    });
    let Some(mut rest) = key.strip_prefix(guest.as_str()) else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        match digits.iter().find(|d| rest.starts_with(d.as_str())) {
            Some(d) => rest = &rest[d.len()..],
            None => return false,
        }
    }
    true
}

/// The key names are compared by: NFKC case folding (full Unicode case
/// folding, so `Straße` is `STRASSE` and `ΣΑΣ` is `σας`; compatibility
/// forms, so `ａｌｉｃｅ` is `alice`), then the UTS #39 confusable skeleton,
/// so that look-alikes (`аlice` with a Cyrillic `а`) are one name.
///
/// Two names are the same user, the same room, the same account exactly
/// when their keys are equal. The key is for comparing only: it is never
/// shown (the skeleton of `m` is `rn`). This is the casemapping the IRC
/// door announces in `ISUPPORT`.
pub fn fold(name: &str) -> String {
    if let Some(key) = fold_ascii(name) {
        return key;
    }
    unicode_security::skeleton(&casefold(name)).collect()
}

/// [`fold`] for ASCII text, which is most names and most words a client
/// checks for mentions, without the normalisations: the same key, from a
/// table of each ASCII character's skeleton that unicode-security itself
/// computes once. `None` when the text is not ASCII or a character's
/// skeleton is not (then the slow path is the exact one).
fn fold_ascii(name: &str) -> Option<String> {
    static SKELETONS: OnceLock<Vec<Option<String>>> = OnceLock::new();
    if !name.is_ascii() {
        return None;
    }
    let table = SKELETONS.get_or_init(|| {
        (0..128u8)
            .map(|b| {
                let c = char::from(b);
                let key: String = unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).collect();
                Some(key).filter(|k| k.is_ascii())
            })
            .collect()
    });
    let mut key = String::with_capacity(name.len());
    for b in name.bytes() {
        // ASCII case folding is lowering; NFKC leaves ASCII as it is.
        key.push_str(table.get(usize::from(b.to_ascii_lowercase()))?.as_deref()?);
    }
    Some(key)
}

/// Builds the tables [`fold`] and [`check`] build on first use. The server
/// calls it before it listens, so that the first connection does not pay
/// for them (nor the first connections' memory look bigger by them).
pub fn prepare() {
    let _ = fold("guest");
    let _ = fold("Ольга");
    let _ = check("café-bar", Kind::Room);
}

/// Whether two names are one name (see [`fold`]).
pub fn same(a: &str, b: &str) -> bool {
    a == b || fold(a) == fold(b)
}

/// NFKC case folding without the skeleton: the order names are listed
/// in, and the case-folded form rooms are sent in ([`room_form`]).
pub fn caseless(s: &str) -> String {
    casefold(s)
}

/// NFKC case folding: the compatibility caseless form of Unicode's
/// section 3.13 (`NFKD(fold(NFKD(fold(NFD(s)))))`), recomposed to NFKC.
fn casefold(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

/// The form a room name is sent in: NFKC case-folded, so `Rust`, `rust`
/// and `ＲＵＳＴ` are all sent `rust`. Look-alikes from other scripts keep
/// their letters here (they are one room by [`fold`], not one spelling).
pub fn room_form(room: &str) -> String {
    casefold(room)
}

/// ASCII is answered without a table, here and in [`allowed`]: its
/// letters and digits are L and Nd, every other ASCII character is
/// punctuation, a symbol, a space or a control (a test holds the two
/// answers equal).
fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    is_letter_by_category(c)
}

fn is_letter_by_category(c: char) -> bool {
    matches!(
        c.general_category(),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
    )
}

/// Whether `c` may be part of a name: where a name in running text
/// ends (a mention of `小明` in `小明: hi`).
pub fn is_name_char(c: char) -> bool {
    allowed(c)
}

fn allowed(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_' || c == '-';
    }
    allowed_by_category(c)
}

/// Letters, combining marks that sit on a letter (not the enclosing ones,
/// which make keycaps and other emoji), decimal digits, `_` and `-`.
/// Never the invisible ones (Default_Ignorable_Code_Point: variation
/// selectors, the Hangul fillers that are letters), with which a name
/// could look blank.
fn allowed_by_category(c: char) -> bool {
    c == '_'
        || c == '-'
        || ((is_letter_by_category(c)
            || matches!(
                c.general_category(),
                G::NonspacingMark | G::SpacingMark | G::DecimalNumber
            ))
            && !invisible(c))
}

/// Whether `c` is default-ignorable: the UTS #39 skeleton, which drops
/// exactly those (unicode-security keeps the table), leaves nothing of it.
fn invisible(c: char) -> bool {
    unicode_security::skeleton(c.encode_utf8(&mut [0; 4]))
        .next()
        .is_none()
}

/// A character as an error shows it: its code point, the character itself
/// when it is visible, and what kind of character it is.
fn describe(c: char) -> String {
    let cat = c.general_category();
    let mut out = format!("U+{:04X}", u32::from(c));
    let visible = !matches!(
        cat,
        G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
            | G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::NonspacingMark
            | G::EnclosingMark
    ) && !invisible(c);
    if visible {
        let _ = write!(out, " {c:?}");
    }
    let _ = write!(out, " ({})", category_words(c, cat));
    out
}

fn category_words(c: char, cat: G) -> &'static str {
    if invisible(c) && cat != G::Format {
        return "an invisible character";
    }
    match cat {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => "a letter",
        G::NonspacingMark | G::SpacingMark => "a combining mark",
        G::EnclosingMark => "an enclosing mark, as in emoji keycaps",
        G::DecimalNumber => "a digit",
        G::LetterNumber | G::OtherNumber => "a number that is not a decimal digit",
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => "punctuation",
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => {
            if c.is_emoji_char() && !c.is_ascii() {
                "an emoji"
            } else {
                "a symbol"
            }
        }
        G::SpaceSeparator => "a space",
        G::LineSeparator | G::ParagraphSeparator => "a line or paragraph separator",
        G::Control => "a control character",
        G::Format => "a format character, invisible",
        G::Surrogate => "a surrogate",
        G::PrivateUse => "a private-use character",
        G::Unassigned => "an unassigned code point",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_names_are_allowed() {
        for ok in [
            "a",
            "Bob",
            "x-_9",
            "guest",
            "guests1",
            "guest1a",
            "小明",
            "Ольга",
            "café-bar",
            "e\u{301}",
            "नमस्ते",
            "ǅemal", // Lt, a titlecase letter
            "aʰ",    // Lm, a modifier letter
            "का",    // Mc, a spacing mark
            "a٣",    // Nd outside ASCII
            "한글",
            "ﬁsh",
            "محمد",
            "ａｌｉｃｅ",
        ] {
            assert!(check_nick(ok).is_ok(), "{ok}: {:?}", check_nick(ok));
        }
        assert_eq!(check_nick(&"a".repeat(32)).as_deref(), Ok(&*"a".repeat(32)));
    }

    #[test]
    fn names_are_kept_in_nfc() {
        assert_eq!(check_nick("cafe\u{301}").as_deref(), Ok("caf\u{e9}"));
    }

    #[test]
    fn every_kind_of_wrong_character_is_named() {
        let cases = [
            ("a\u{200D}b", "U+200D (a format character"),
            ("a\u{200C}b", "U+200C (a format character"),
            ("a\u{202E}b", "U+202E (a format character"),
            ("a b", "U+0020 (a space)"),
            ("a\u{3000}b", "U+3000 (a space)"),
            ("a\tb", "U+0009 (a control character)"),
            ("a\u{E000}", "U+E000 (a private-use character)"),
            ("a\u{378}", "U+0378 (an unassigned code point)"),
            ("a😀", "U+1F600 '😀' (an emoji)"),
            ("a$", "U+0024 '$' (a symbol)"),
            ("a.b", "U+002E '.' (punctuation)"),
            ("a²", "U+00B2 '²' (a number that is not a decimal digit)"),
            ("a\u{20E3}", "U+20E3 (an enclosing mark"),
            ("a\u{2028}b", "U+2028 (a line or paragraph separator)"),
            ("a+b", "U+002B '+' (a symbol)"),
            ("a^b", "U+005E '^' (a symbol)"),
            ("a€", "U+20AC '€' (a symbol)"),
            ("aⅫ", "U+216B 'Ⅻ' (a number that is not a decimal digit)"),
            ("a\u{FE0F}", "U+FE0F (an invisible character)"),
            ("a\u{34F}", "U+034F (an invisible character)"),
            ("\u{3164}", "may not hold U+3164 (an invisible character)"),
            ("a\u{FFA0}", "U+FFA0 (an invisible character)"),
            ("1a", "starts with a letter, not U+0031 '1' (a digit)"),
            ("_a", "starts with a letter, not U+005F '_' (punctuation)"),
            (
                "\u{301}a",
                "starts with a letter, not U+0301 (a combining mark)",
            ),
        ];
        for (bad, says) in cases {
            let why = check_nick(bad).expect_err(bad);
            assert!(why.contains(says), "{bad:?}: {why}");
            assert!(why.contains(RULE), "{bad:?}: {why}");
            assert!(why.starts_with("a nickname"), "{why}");
        }
        let why = check_room("a\u{200D}b").expect_err("zwj");
        assert!(why.starts_with("a room name may not hold U+200D"), "{why}");
    }

    #[test]
    fn length_counts_characters_after_nfc() {
        assert!(check_nick(&"é".repeat(32)).is_ok());
        assert!(check_nick(&"小".repeat(32)).is_ok());
        let why = check_nick(&"a".repeat(33)).expect_err("33");
        assert!(why.contains("1 to 32 characters, not 33"), "{why}");
        // 32 letters written decomposed (64 scalar values) compose to 32.
        assert!(check_nick(&"e\u{301}".repeat(32)).is_ok());
        // ...but a letter with a mark that has no composed form stays two.
        assert!(check_nick(&"q\u{301}".repeat(16)).is_ok());
        assert!(check_nick(&format!("{}q\u{301}", "q".repeat(31))).is_err());
        assert!(check_nick("").is_err());
        // A whole line of combining marks is refused before normalising.
        let why = check_nick(&format!("a{}", "\u{301}".repeat(20_000))).expect_err("long");
        assert!(why.contains("not 20001"), "{why}");
        assert!(could_be_a_name(&"\u{1F82}".repeat(32)));
        assert!(!could_be_a_name(&"a".repeat(129)));
    }

    #[test]
    fn a_name_that_grows_under_nfc_must_still_fit() {
        // U+0958 DEVANAGARI LETTER QA is a composition exclusion: NFC
        // writes it as two characters, KA and NUKTA.
        assert_eq!("\u{958}".nfc().count(), 2);
        assert!(check_nick(&"\u{958}".repeat(16)).is_ok());
        let why = check_nick(&"\u{958}".repeat(17)).expect_err("34 after NFC");
        assert!(why.contains("not 34"), "{why}");
    }

    #[test]
    fn guest_names_stay_reserved_look_alikes_too() {
        for bad in [
            "guest1",
            "GUEST42",
            "Guest007",
            "ｇｕｅｓｔ１",
            "gu\u{435}st5",
            "guestl",
        ] {
            let why = check_nick(bad).expect_err(bad);
            assert!(why.contains("reserved"), "{bad}: {why}");
        }
        for ok in ["guest", "guests1", "guest1a", "guest_1"] {
            assert!(check_nick(ok).is_ok(), "{ok}");
        }
        assert_eq!(check_room("guest1").as_deref(), Ok("guest1"));
    }

    #[test]
    fn look_alikes_and_cases_are_one_name() {
        let one = [
            ("alice", "\u{430}lice"),   // Cyrillic а
            ("bob", "b\u{43E}b"),       // Cyrillic о
            ("eve", "\u{435}v\u{435}"), // Cyrillic е
            ("modern", "rnodern"),      // rn looks like m
            ("alice", "ａｌｉｃｅ"),    // fullwidth, by NFKC
            ("alice", "ALICE"),
            ("Bob", "bob"),
            ("ΣΑΣ", "σας"), // final sigma folds to σ
            ("Straße", "STRASSE"),
            ("café", "cafe\u{301}"), // NFC and NFD
            ("ﬁsh", "fish"),         // ligature, by NFKC
        ];
        for (a, b) in one {
            assert_eq!(fold(a), fold(b), "{a} / {b}");
            assert!(same(a, b), "{a} / {b}");
        }
        let two = [
            ("小明", "小朋"),
            ("alice", "alicia"),
            ("Ольга", "Олег"),
            ("bob", "bobo"),
            ("guest", "guests"),
            ("a-b", "a_b"),
        ];
        for (a, b) in two {
            assert_ne!(fold(a), fold(b), "{a} / {b}");
            assert!(!same(a, b), "{a} / {b}");
        }
    }

    #[test]
    fn rooms_are_sent_case_folded() {
        assert_eq!(check_room("Rust").as_deref(), Ok("rust"));
        assert_eq!(check_room("ＲＵＳＴ").as_deref(), Ok("rust"));
        assert_eq!(check_room("Café-Bar").as_deref(), Ok("café-bar"));
        assert_eq!(check_room("Straße").as_deref(), Ok("strasse"));
        assert_eq!(check_room("Ольга").as_deref(), Ok("ольга"));
        // A letter whose compatibility form holds spaces is no room name.
        let why = check_room("a\u{FDFA}").expect_err("U+FDFA");
        assert!(why.contains("U+0020"), "{why}");
        for bad in ["", "1a", "a b", "#rust", &"a".repeat(33)] {
            assert!(check_room(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ascii_shortcut_gives_the_exact_key() {
        let slow = |s: &str| -> String { unicode_security::skeleton(&casefold(s)).collect() };
        let all: String = (0..128u8).map(char::from).collect();
        // `%` is `°/₀`: not ASCII, so that text takes the slow path.
        assert_eq!(fold_ascii(&all), None);
        assert_eq!(fold(&all), slow(&all));
        for b in 0..128u8 {
            let s = char::from(b).to_string();
            assert_eq!(fold(&s), slow(&s), "{b:#x}");
        }
        for s in [
            "Alice", "modern", "rnodern", "guest10", "Il1|", "bob_2-x", "O0o", "a`b",
        ] {
            assert_eq!(fold_ascii(s), Some(slow(s)), "{s}");
        }
        for c in (0..128u8).map(char::from) {
            assert_eq!(allowed(c), allowed_by_category(c), "{c:?}");
            assert_eq!(is_letter(c), is_letter_by_category(c), "{c:?}");
        }
        // And the slow path's ASCII case folding is exactly lowering.
        let upper: String = (0..128u8).map(char::from).collect();
        let full: String = upper
            .chars()
            .nfd()
            .default_case_fold()
            .nfkd()
            .default_case_fold()
            .nfkc()
            .collect();
        assert_eq!(casefold(&upper), full);
    }

    #[test]
    fn the_key_of_a_folded_name_is_its_own() {
        for name in ["Rust", "ΣΑΣ", "Straße", "ａｌｉｃｅ", "小明", "e\u{301}"] {
            assert_eq!(fold(&room_form(name)), fold(name), "{name}");
        }
    }
}
