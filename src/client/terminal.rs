//! The terminal's state, saved before the fork and put back on every way
//! out.
//!
//! rustyline restores the terminal in a drop guard, which never runs when
//! its process is killed (by us, at the end of a session, or by anyone
//! else). So the parent saves the settings before forking and restores them
//! after reaping the child, and the child's display thread does the same if
//! the parent vanishes first. Restoring twice is harmless.

use std::io::{self, IsTerminal, Write};

use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};

/// Turns off bracketed paste (which rustyline turns on while it reads), then
/// clears whatever is left of a prompt on the cursor's line, so the next line
/// printed starts clean.
const RESET_DISPLAY: &[u8] = b"\x1b[?2004l\r\x1b[K";

/// What to put back when the session ends.
#[derive(Clone)]
pub struct Saved {
    termios: Termios,
}

/// Saves the settings of the terminal on standard input, if it is one.
pub fn save() -> Option<Saved> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return None;
    }
    tcgetattr(&stdin).ok().map(|termios| Saved { termios })
}

impl Saved {
    /// Puts the settings back and tidies the cursor's line. Errors are
    /// ignored: this runs on the way out, where nothing better can be done.
    pub fn restore(&self) {
        let _ = tcsetattr(io::stdin(), SetArg::TCSANOW, &self.termios);
        let mut stdout = io::stdout();
        if stdout.is_terminal() {
            let _ = stdout.write_all(RESET_DISPLAY);
            let _ = stdout.flush();
        }
    }
}
