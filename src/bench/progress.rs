//! The progress line on stderr, redrawn in place while a run goes on, and
//! only when stderr is a terminal (a log file or a pipe gets nothing).

use std::io::{IsTerminal, Write};

pub struct Progress {
    on: bool,
}

impl Progress {
    pub fn on_stderr() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    pub fn show(&self, text: &str) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r{text}\x1b[K");
        }
    }

    /// Erases the line, before the report is printed.
    pub fn clear(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
