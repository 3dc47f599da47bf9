//! Passwords on the client's side: held in memory only as long as they are
//! needed (to log in again after a lost connection), wiped when dropped,
//! never shown by `Debug`; and typed on a terminal without echo.
//!
//! The terminal is read byte by byte with echo, canonical mode and signals
//! off, so that Ctrl-C cancels at once (rather than killing a process that
//! must restore the terminal) and nothing typed after the Enter is taken.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use nix::sys::termios::{LocalFlags, SetArg, SpecialCharacterIndices, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

/// The variable `chat client --account` and the bot's `login` read the
/// password from, unless told another.
pub const PASSWORD_VAR: &str = "CHAT_PASSWORD";

/// A password. Its memory is zeroed when it is dropped; `Debug` shows
/// nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(password: String) -> Secret {
        Secret(Zeroizing::new(password))
    }

    /// The password itself, for the one message that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// An account and its password: what logs in again after a lost
/// connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub account: String,
    pub password: Secret,
}

/// The password in the environment variable `name`: `Ok(None)` when it is
/// not set, an error (that does not quote it) when it is not UTF-8 or empty.
pub fn from_env(name: &str) -> Result<Option<Secret>, String> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(value) => match value.into_string() {
            Ok(value) if value.is_empty() => Err(format!("${name} is empty")),
            Ok(value) => Ok(Some(Secret::new(value))),
            Err(value) => {
                // Wipe the bytes we were handed before refusing them.
                drop(Zeroizing::new(value.into_encoded_bytes()));
                Err(format!("${name} is not valid UTF-8"))
            }
        },
    }
}

/// What a hidden read ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Typed {
    Line(Secret),
    /// Ctrl-C, or Ctrl-D on an empty line.
    Cancelled,
}

/// Shows `prompt` on `tty` and reads one line from it without echo, then
/// writes `end` (a new line, or a return that lets the next line overwrite
/// the prompt). The terminal's settings are put back however the read ends.
pub fn read_hidden(tty: &File, prompt: &str, end: &str) -> io::Result<Typed> {
    let saved = tcgetattr(tty.as_fd()).map_err(io::Error::from)?;
    let mut quiet = saved.clone();
    quiet
        .local_flags
        .remove(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG | LocalFlags::IEXTEN);
    quiet.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
    quiet.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    let mut out = tty;
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &quiet).map_err(io::Error::from)?;
    let typed = read_keys(tty);
    let restored = tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &saved).map_err(io::Error::from);
    // The Enter was not echoed.
    let _ = out.write_all(end.as_bytes());
    let _ = out.flush();
    let typed = typed?;
    restored?;
    Ok(typed)
}

/// The keys of one hidden line: Enter ends it, Backspace and Ctrl-U edit
/// it, Ctrl-C (and Ctrl-D on an empty line) cancel it.
fn read_keys(mut tty: &File) -> io::Result<Typed> {
    // Room enough that typing never moves (and so copies) the password.
    let mut line = Zeroizing::new(Vec::<u8>::with_capacity(4096));
    let mut byte = Zeroizing::new([0u8; 1]);
    loop {
        match tty.read(&mut byte[..]) {
            Ok(0) => return Ok(Typed::Cancelled),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        match byte[0] {
            b'\r' | b'\n' => break,
            0x03 => return Ok(Typed::Cancelled),
            0x04 if line.is_empty() => return Ok(Typed::Cancelled),
            0x7f | 0x08 => {
                // One character back: its continuation bytes, then its
                // first byte.
                while line.last().is_some_and(|b| b & 0xc0 == 0x80) {
                    line.pop();
                }
                line.pop();
            }
            0x15 => line.clear(),
            b if b < 0x20 => {}
            b => line.push(b),
        }
    }
    match std::str::from_utf8(&line) {
        Ok(text) => Ok(Typed::Line(Secret::new(text.to_owned()))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the password typed is not valid UTF-8",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_password() {
        let creds = Credentials {
            account: "alice".into(),
            password: Secret::new("hunter2-hunter2".into()),
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
    }

    #[test]
    fn keys_edit_and_end_a_hidden_line() {
        let read = |bytes: &[u8]| {
            let (r, w) = std::io::pipe().unwrap();
            let mut w = File::from(std::os::fd::OwnedFd::from(w));
            w.write_all(bytes).unwrap();
            drop(w);
            read_keys(&File::from(std::os::fd::OwnedFd::from(r))).unwrap()
        };
        let line = |s: &str| Typed::Line(Secret::new(s.into()));
        assert_eq!(read(b"s3cret\rrest"), line("s3cret"));
        assert_eq!(read(b"ab\x7fc\n"), line("ac"));
        assert_eq!(read("caf\u{e9}\x7fe\r".as_bytes()), line("cafe"));
        assert_eq!(read(b"junk\x15pw\r"), line("pw"));
        assert_eq!(read(b"pw\x03"), Typed::Cancelled);
        assert_eq!(read(b"\x04"), Typed::Cancelled);
        assert_eq!(read(b"a\x04b\r"), line("ab"));
        assert_eq!(read(b"no end"), Typed::Cancelled);
        assert_eq!(read(b"\r"), line(""));
    }
}
