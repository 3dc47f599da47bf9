//! How a program of this binary ends badly: one line for the user and a
//! documented exit status (see EXIT STATUS in `man/chat.1`).

use std::fmt;

/// Everything worked (for `chat bot`: every expectation held).
pub const SUCCESS: u8 = 0;
/// The work failed at run time: cannot listen, resolve a name or connect,
/// lost the server, an expectation did not hold, the benchmark saw loss.
pub const FAILURE: u8 = 1;
/// The command line or a script is invalid; nothing was done.
pub const USAGE: u8 = 2;

/// A failure that ends the program. `main` prints `chat: MESSAGE` and exits
/// with `status`; nothing is printed twice and nothing panics.
#[derive(Debug)]
pub struct Fail {
    pub status: u8,
    pub message: String,
}

impl Fail {
    /// A run-time failure (exit 1).
    pub fn runtime(message: impl Into<String>) -> Fail {
        Fail {
            status: FAILURE,
            message: message.into(),
        }
    }

    /// A usage failure (exit 2).
    pub fn usage(message: impl Into<String>) -> Fail {
        Fail {
            status: USAGE,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What every program of the binary returns.
pub type Outcome = Result<(), Fail>;
