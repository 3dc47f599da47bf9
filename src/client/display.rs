//! Where the parent's lines go: straight to stdout, or, while the
//! interactive child owns the terminal, down a pipe to the child, which
//! prints them above its prompt.
//!
//! The pipe carries one record per line: `p` and a line to print, `u` and
//! the other users' nicknames separated by spaces, `r` and the room names
//! (both for completion), or `>` and the prompt for the next line.
//! Printed lines are sanitized and never contain `\n`, and names are
//! checked against the protocol's rules, so a record is always one line.

use std::io::{self, Write};

use mio::unix::pipe::Sender;

use crate::outbuf::OutBuf;

/// One record from the parent to the interactive child.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Print(String),
    Users(Vec<String>),
    Rooms(Vec<String>),
    Prompt(String),
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Print(line) => {
                out.push(b'p');
                out.extend_from_slice(line.as_bytes());
            }
            Record::Users(nicks) => {
                out.push(b'u');
                out.extend_from_slice(nicks.join(" ").as_bytes());
            }
            Record::Rooms(rooms) => {
                out.push(b'r');
                out.extend_from_slice(rooms.join(" ").as_bytes());
            }
            Record::Prompt(prompt) => {
                out.push(b'>');
                out.extend_from_slice(prompt.as_bytes());
            }
        }
        out.push(b'\n');
    }

    /// Reads one record (without its `\n`); `None` for anything else.
    pub fn decode(line: &str) -> Option<Record> {
        let mut chars = line.chars();
        match chars.next()? {
            'p' => Some(Record::Print(chars.as_str().to_owned())),
            'u' => Some(Record::Users(words(chars.as_str()))),
            'r' => Some(Record::Rooms(words(chars.as_str()))),
            '>' => Some(Record::Prompt(chars.as_str().to_owned())),
            _ => None,
        }
    }
}

fn words(list: &str) -> Vec<String> {
    list.split(' ')
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The parent's output.
pub enum Screen {
    /// The child draws the terminal; lines are queued for the pipe and
    /// written as it accepts them, never blocking the loop.
    Child { pipe: Sender, queue: OutBuf },
    /// Lines go to stdout (and, with `--json`, notes to stderr).
    Direct { json: bool, closed: bool },
}

/// The queue to the child past which the parent stops reading the server:
/// the server then holds the rest, and drops us if we fall too far behind,
/// as the protocol intends for slow readers.
pub const MAX_QUEUE: usize = 1 << 20;

impl Screen {
    /// A line for the user.
    pub fn show(&mut self, line: &str) {
        match self {
            Screen::Child { queue, .. } => Record::Print(line.to_owned()).encode(queue.queue()),
            Screen::Direct { closed, .. } => print_line(&mut io::stdout().lock(), line, closed),
        }
    }

    /// A line from the client itself: like [`Screen::show`], but off stdout
    /// with `--json`.
    pub fn note(&mut self, line: &str) {
        match self {
            Screen::Direct { json: true, .. } => {
                let _ = writeln!(io::stderr(), "{line}");
            }
            _ => self.show(line),
        }
    }

    pub fn users(&mut self, nicks: &[String]) {
        if let Screen::Child { queue, .. } = self {
            Record::Users(nicks.to_vec()).encode(queue.queue());
        }
    }

    pub fn rooms(&mut self, rooms: &[String]) {
        if let Screen::Child { queue, .. } = self {
            Record::Rooms(rooms.to_vec()).encode(queue.queue());
        }
    }

    /// The prompt for the child's next line.
    pub fn prompt(&mut self, prompt: &str) {
        if let Screen::Child { queue, .. } = self {
            Record::Prompt(prompt.to_owned()).encode(queue.queue());
        }
    }

    /// Bytes waiting for the child.
    pub fn pending(&self) -> usize {
        match self {
            Screen::Child { queue, .. } => queue.pending(),
            Screen::Direct { .. } => 0,
        }
    }

    /// True when stdout was closed under us (`chat client | head -1`): the
    /// user is gone, which ends the session like the end of input.
    pub fn closed(&self) -> bool {
        matches!(self, Screen::Direct { closed: true, .. })
    }

    /// Writes what the child's pipe takes now. An error means the child is
    /// gone.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Screen::Child { pipe, queue } => queue.flush(pipe).map(|_| ()),
            Screen::Direct { .. } => Ok(()),
        }
    }

    /// The child is gone: what it did not take is printed here, and from now
    /// on lines go to stdout. Returns the pipe, for the caller to deregister.
    pub fn switch_to_stdout(&mut self, json: bool) -> Option<Sender> {
        let direct = Screen::Direct {
            json,
            closed: false,
        };
        let Screen::Child { pipe, queue } = std::mem::replace(self, direct) else {
            return None;
        };
        let whole = queue.unsent_whole_lines();
        for line in String::from_utf8_lossy(whole).lines() {
            if let Some(Record::Print(text)) = Record::decode(line) {
                self.show(&text);
            }
        }
        Some(pipe)
    }
}

fn print_line(out: &mut impl Write, line: &str, closed: &mut bool) {
    if *closed {
        return;
    }
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        *closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for record in [
            Record::Print("12:00:00 <a> hi \x1b[31mthere".into()),
            Record::Print(String::new()),
            Record::Users(vec!["alice".into(), "bob".into()]),
            Record::Users(vec![]),
            Record::Rooms(vec!["lobby".into(), "rust".into()]),
            Record::Prompt("rust> ".into()),
        ] {
            let mut bytes = Vec::new();
            record.encode(&mut bytes);
            assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
            let line = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
            assert_eq!(Record::decode(line), Some(record));
        }
        assert_eq!(Record::decode("x"), None);
        assert_eq!(Record::decode(""), None);
    }
}
