//! IRCv3 SASL PLAIN's side of the door: `AUTHENTICATE` lines gathered
//! into a payload (sent in chunks of 400 bytes, `+` for an empty one),
//! decoded from base64 and split into the account and its password.
//!
//! Everything that holds the password is zeroized when dropped, and none
//! of it has a `Debug` that shows it.

use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

/// A chunk this long means more follow.
pub const CHUNK: usize = 400;
/// The longest payload gathered: an account and a long password in
/// base64, with room to spare.
pub const MAX_PAYLOAD: usize = 4 * CHUNK;

/// Where a connection's `AUTHENTICATE` exchange stands.
#[derive(Default)]
pub enum Sasl {
    #[default]
    Idle,
    /// `AUTHENTICATE PLAIN` was answered with `AUTHENTICATE +`; the
    /// payload's chunks so far.
    Plain(Zeroizing<String>),
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sasl::Idle => f.write_str("Idle"),
            Sasl::Plain(_) => f.write_str("Plain(..)"),
        }
    }
}

/// What one chunk of the payload leads to.
pub enum Step {
    /// More chunks to come.
    More,
    /// One chunk was longer than 400 bytes (905, ERR_SASLTOOLONG).
    TooLong,
    /// The chunks together were too long: 905 is for one chunk only, so
    /// this is a plain failure (904), as the IRCv3 SASL spec's tests expect.
    Overflow,
    /// Not PLAIN's `authzid\0authcid\0password` in base64 (904).
    Malformed,
    /// The account (authcid) and the password.
    Done(String, Zeroizing<String>),
}

/// Adds `chunk` to the payload gathered in `buf`.
pub fn step(buf: &mut Zeroizing<String>, chunk: &str) -> Step {
    if chunk.len() > CHUNK {
        return Step::TooLong;
    }
    if buf.len() + chunk.len() > MAX_PAYLOAD {
        return Step::Overflow;
    }
    if chunk != "+" {
        buf.push_str(chunk);
    }
    if chunk.len() == CHUNK {
        return Step::More;
    }
    let Some(raw) = decode(buf) else {
        return Step::Malformed;
    };
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Malformed;
    };
    let (Ok(authzid), Ok(authcid), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
    ) else {
        return Step::Malformed;
    };
    // Acting as another account is not something accounts here can do.
    if authcid.is_empty() || !(authzid.is_empty() || authzid == authcid) {
        return Step::Malformed;
    }
    Step::Done(authcid.to_owned(), Zeroizing::new(password.to_owned()))
}

/// Standard base64 with padding; `None` for anything else. base64ct
/// (RustCrypto's, already here for the Argon2 hashes) decodes in constant
/// time, which suits a password.
fn decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(vec![0; text.len() / 4 * 3]);
    let len = Base64::decode(text, &mut out).ok()?.len();
    out.truncate(len);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(chunk: &str) -> Option<(String, String)> {
        match step(&mut Zeroizing::new(String::new()), chunk) {
            Step::Done(account, password) => Some((account, password.to_string())),
            _ => None,
        }
    }

    #[test]
    fn plain_payloads_are_decoded_and_split() {
        // "\0ann\0correct horse" and "ann\0ann\0pw"
        assert_eq!(
            done("AGFubgBjb3JyZWN0IGhvcnNl"),
            Some(("ann".into(), "correct horse".into()))
        );
        assert_eq!(done("YW5uAGFubgBwdw=="), Some(("ann".into(), "pw".into())));
    }

    #[test]
    fn other_identities_and_garbage_are_refused() {
        // "bob\0ann\0pw": ann acting as bob.
        assert_eq!(done("Ym9iAGFubgBwdw=="), None);
        assert_eq!(done("not base64!"), None);
        assert_eq!(done("+"), None);
        // "ann" alone: no NULs.
        assert_eq!(done("YW5u"), None);
    }

    #[test]
    fn a_400_byte_chunk_waits_for_more_and_a_long_payload_is_refused() {
        let mut buf = Zeroizing::new(String::new());
        assert!(matches!(step(&mut buf, &"A".repeat(CHUNK)), Step::More));
        assert!(matches!(
            step(&mut buf, &"A".repeat(CHUNK + 1)),
            Step::TooLong
        ));
        for _ in 1..MAX_PAYLOAD / CHUNK {
            assert!(matches!(step(&mut buf, &"A".repeat(CHUNK)), Step::More));
        }
        assert!(matches!(step(&mut buf, "AAAA"), Step::Overflow));
    }
}
