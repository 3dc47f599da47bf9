//! The server's records of connections: JSON lines in `--log FILE` for
//! machines, one human line per connect and disconnect on stderr for people.
//!
//! Both are buffered during a loop turn and written once at its end, so a
//! burst of a thousand connects costs two writes, not two thousand.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::core::{Departure, User};

/// One line of `--log`, fields in the order people read them.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Record<'a> {
    Connect {
        id: u64,
        addr: SocketAddr,
        ts: u64,
    },
    Nick {
        id: u64,
        old: &'a str,
        new: &'a str,
        ts: u64,
    },
    Disconnect {
        id: u64,
        nick: &'a str,
        addr: SocketAddr,
        reason: &'a str,
        ts: u64,
        duration_ms: u64,
        msgs_in: u64,
        msgs_out: u64,
    },
    /// A `register` or `login` answered (never with the password; a failed
    /// login names no account, since the name tried may be a password
    /// typed in the wrong field).
    Account {
        id: u64,
        addr: SocketAddr,
        action: &'a str,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        account: Option<&'a str>,
        ts: u64,
    },
    /// The history store stopped working (`ok` false) or works again.
    Store {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        ts: u64,
    },
}

pub struct EventLog {
    file: Option<(File, PathBuf)>,
    json: Vec<u8>,
    human: Option<Vec<u8>>,
}

impl EventLog {
    /// Opens `path` for appending (created if missing). `quiet` silences the
    /// human lines.
    pub fn open(path: Option<&Path>, quiet: bool) -> io::Result<EventLog> {
        let file = match path {
            Some(path) => Some((
                OpenOptions::new().create(true).append(true).open(path)?,
                path.to_owned(),
            )),
            None => None,
        };
        Ok(EventLog {
            file,
            json: Vec::new(),
            human: (!quiet).then(Vec::new),
        })
    }

    /// A line for people only (startup facts, warnings), unless quiet.
    pub fn say(&mut self, line: &str) {
        if let Some(human) = &mut self.human {
            human.extend_from_slice(line.as_bytes());
            human.push(b'\n');
        }
    }

    pub fn connect(&mut self, id: u64, addr: SocketAddr, ts: u64) {
        self.record(&Record::Connect { id, addr, ts });
        if let Some(human) = &mut self.human {
            let _ = writeln!(human, "connect #{id} from {addr}");
        }
    }

    pub fn rename(&mut self, id: u64, old: &str, new: &str, ts: u64) {
        self.record(&Record::Nick { id, old, new, ts });
    }

    /// `msgs_out` is what was queued for it: the edge counts that, not the
    /// core.
    pub fn disconnect(&mut self, user: &User, msgs_out: u64, why: Departure, ts: u64) {
        let duration_ms = ts.saturating_sub(user.since_ms);
        self.record(&Record::Disconnect {
            id: user.id,
            nick: user.nick.as_str(),
            addr: user.peer.addr(),
            reason: why.as_str(),
            ts,
            duration_ms,
            msgs_in: u64::from(user.msgs_in),
            msgs_out,
        });
        if let Some(human) = &mut self.human {
            let _ = writeln!(
                human,
                "disconnect #{} {} from {} ({}) after {:.1}s, {} messages in, {} out",
                user.id,
                user.nick.as_str(),
                user.peer.addr(),
                why.as_str(),
                duration_ms as f64 / 1000.0,
                user.msgs_in,
                msgs_out
            );
        }
    }

    /// `action` is `register` or `login`; `account` only when `ok`.
    pub fn account(
        &mut self,
        id: u64,
        addr: SocketAddr,
        action: &str,
        account: Option<&str>,
        ts: u64,
    ) {
        self.record(&Record::Account {
            id,
            addr,
            action,
            ok: account.is_some(),
            account,
            ts,
        });
    }

    /// Storing history failed (once per outage): an error, so it reaches
    /// stderr even with `--quiet`.
    pub fn store_failed(&mut self, why: &str, ts: u64) {
        self.record(&Record::Store {
            ok: false,
            error: Some(why),
            ts,
        });
        eprintln!("chat server: {why}");
    }

    pub fn store_recovered(&mut self, ts: u64) {
        self.record(&Record::Store {
            ok: true,
            error: None,
            ts,
        });
        self.say("chat server: history is stored again");
    }

    /// Opens the log file again by its name (after `logrotate` moved it);
    /// on failure the old file is kept and the reason goes to stderr.
    pub fn reopen(&mut self) {
        self.flush_json();
        let Some((file, path)) = &mut self.file else {
            return;
        };
        match OpenOptions::new().create(true).append(true).open(&*path) {
            Ok(new) => *file = new,
            Err(e) => eprintln!(
                "chat server: cannot reopen log {}: {e}; still writing to the old file",
                path.display()
            ),
        }
    }

    fn record(&mut self, record: &Record<'_>) {
        if self.file.is_some() {
            let _ = serde_json::to_writer(&mut self.json, record);
            self.json.push(b'\n');
        }
    }

    /// Writes what the turn produced. A log that fails to write is reported
    /// once per turn on stderr; the chat goes on.
    pub fn flush(&mut self) {
        if let Some(human) = &mut self.human
            && !human.is_empty()
        {
            let _ = io::stderr().write_all(human);
            human.clear();
        }
        self.flush_json();
    }

    fn flush_json(&mut self) {
        if let Some((file, path)) = &mut self.file
            && !self.json.is_empty()
        {
            if let Err(e) = file.write_all(&self.json) {
                eprintln!("chat server: cannot write log {}: {e}", path.display());
            }
            self.json.clear();
        }
    }
}
