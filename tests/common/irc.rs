//! A raw IRC client for the tests: lines in, lines out, every read
//! bounded by [`WAIT`]. Included by the test files that speak IRC with
//! `#[path = "common/irc.rs"] mod irc;`.

#![allow(dead_code)] // each test file uses its own part of this

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use crate::common::WAIT;

/// A raw IRC client: lines in, lines out, every read bounded by WAIT.
pub struct Irc {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    token: u32,
}

impl Irc {
    pub fn connect(addr: SocketAddr) -> Irc {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        Irc {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
            token: 0,
        }
    }

    /// Connects and registers as `nick`; returns the lines up to the end
    /// of the default room's names (366).
    pub fn register(addr: SocketAddr, nick: &str) -> (Irc, Vec<String>) {
        let mut c = Irc::connect(addr);
        c.send(&format!("NICK {nick}"));
        c.send(&format!("USER {nick} 0 * :Real {nick}"));
        let lines = c.until(|l| verb(l) == "366");
        (c, lines)
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn recv(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read from server");
        assert!(n > 0, "server closed the connection");
        let line = line
            .strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("line without CRLF: {line:?}"));
        // IRC's 512 bytes are the line's without its IRCv3 tags.
        let proper = strip_tags(line);
        assert!(
            proper.len() + 2 <= 512,
            "line of {} bytes: {line:?}",
            proper.len() + 2
        );
        line.to_owned()
    }

    /// Lines up to and including the first that `done` accepts.
    pub fn until(&mut self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.recv();
            let end = done(&line);
            lines.push(line);
            if end {
                return lines;
            }
        }
    }

    /// The next line whose verb (command or numeric) is `verb`.
    pub fn expect(&mut self, verb_: &str) -> String {
        self.until(|l| verb(l) == verb_).pop().unwrap_or_default()
    }

    /// A barrier: everything the server sent before answering a PING.
    pub fn sync(&mut self) -> Vec<String> {
        self.token += 1;
        let token = format!("sync{}", self.token);
        self.send(&format!("PING {token}"));
        let mut lines = self.until(|l| verb(l) == "PONG" && l.ends_with(&token));
        lines.pop();
        lines
    }

    pub fn closed(&mut self) -> bool {
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
}

/// A line without its IRCv3 tags.
pub fn strip_tags(line: &str) -> &str {
    match line.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, rest)| rest),
        None => line,
    }
}

/// The command or numeric of a line from the server.
pub fn verb(line: &str) -> &str {
    let mut words = strip_tags(line).split(' ');
    let first = words.next().unwrap_or("");
    if first.starts_with(':') {
        words.next().unwrap_or("")
    } else {
        first
    }
}
