//! The server's records of connections: JSON lines in `--log FILE` for
//! machines, one human line per connect and disconnect on stderr for people.
//!
//! Both are buffered during a loop turn and written once at its end, so a
//! burst of a thousand connects costs two writes, not two thousand.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::room::{Departure, Renamed, User};

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
        self.record(json!({"event": "connect", "id": id, "addr": addr.to_string(), "ts": ts}));
        if let Some(human) = &mut self.human {
            let _ = writeln!(human, "connect #{id} from {addr}");
        }
    }

    pub fn rename(&mut self, r: &Renamed, ts: u64) {
        self.record(json!({
            "event": "nick", "id": r.id, "old": r.old.as_str(), "new": r.new.as_str(), "ts": ts
        }));
    }

    pub fn disconnect(&mut self, user: &User, why: Departure, ts: u64) {
        let duration_ms = user.connected.elapsed().as_millis() as u64;
        self.record(json!({
            "event": "disconnect",
            "id": user.id,
            "nick": user.nick.as_str(),
            "addr": user.addr.to_string(),
            "reason": why.as_str(),
            "ts": ts,
            "duration_ms": duration_ms,
            "msgs_in": user.msgs_in,
            "msgs_out": user.msgs_out,
        }));
        if let Some(human) = &mut self.human {
            let _ = writeln!(
                human,
                "disconnect #{} {} from {} ({}) after {:.1}s, {} messages in, {} out",
                user.id,
                user.nick.as_str(),
                user.addr,
                why.as_str(),
                duration_ms as f64 / 1000.0,
                user.msgs_in,
                user.msgs_out
            );
        }
    }

    fn record(&mut self, value: serde_json::Value) {
        if self.file.is_some() {
            let _ = serde_json::to_writer(&mut self.json, &value);
            self.json.push(b'\n');
        }
    }

    /// Writes what the turn produced. A log that fails to write is reported
    /// once per turn on stderr; the chat goes on.
    pub fn flush(&mut self) {
        if let Some(human) = &mut self.human {
            if !human.is_empty() {
                let _ = io::stderr().write_all(human);
                human.clear();
            }
        }
        if let Some((file, path)) = &mut self.file {
            if !self.json.is_empty() {
                if let Err(e) = file.write_all(&self.json) {
                    eprintln!("chat server: cannot write log {}: {e}", path.display());
                }
                self.json.clear();
            }
        }
    }
}
