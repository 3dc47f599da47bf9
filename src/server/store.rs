//! The history database: group messages and topics in one SQLite file,
//! without threads or sockets (the threads around it are in `persist`).
//!
//! The schema is documented in the man page (FILES) so that anyone can read
//! the file with `sqlite3`; its version is `PRAGMA user_version`, checked at
//! open and brought up to date by its migrations.
//!
//! One server per file: the file is `flock`ed at open, so a second server
//! refuses to start instead of interleaving `seq`s with the first. SQLite's
//! own locks are POSIX locks, which Linux keeps apart from `flock`, so the
//! server's two connections and an outside `sqlite3` still read it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wire::Page;
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// Each entry brings the schema from version `i` to `i + 1`; the file's
/// `user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE messages (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        room   TEXT    NOT NULL,
        nick   TEXT    NOT NULL,
        text   TEXT    NOT NULL,
        ts     INTEGER NOT NULL,
        action INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_room_seq ON messages (room, seq);
    CREATE TABLE topics (
        room TEXT PRIMARY KEY,
        nick TEXT    NOT NULL,
        text TEXT    NOT NULL,
        ts   INTEGER NOT NULL
    ) WITHOUT ROWID;
",
    "
    CREATE TABLE accounts (
        key     TEXT PRIMARY KEY,
        name    TEXT    NOT NULL,
        hash    TEXT    NOT NULL,
        created INTEGER NOT NULL
    ) WITHOUT ROWID;
",
];

/// The schema version this program writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// Rows deleted per retention step, so that trimming a big backlog never
/// holds the write lock (and the messages waiting on it) for long.
pub const TRIM_STEP: usize = 1000;

/// What a commit promises (`--sync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    /// WAL with `synchronous=NORMAL`: a commit survives the process being
    /// killed; the last commits may be lost if the machine loses power.
    Normal,
    /// WAL with `synchronous=FULL`: each commit is on the disk before it is
    /// acknowledged, so it survives power loss too.
    Full,
}

/// One thing to store, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Message(Stored),
    /// An empty `text` clears the room's topic.
    Topic {
        room: String,
        by: String,
        text: String,
        ts: u64,
    },
}

/// A stored group message.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub seq: u64,
    pub room: String,
    pub from: String,
    pub text: String,
    pub ts: u64,
    pub action: bool,
}

/// How much history to keep (`--history-keep`); `None` keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// Messages kept per room.
    pub count: Option<u64>,
    /// Messages older than this are deleted.
    pub age: Option<Duration>,
}

impl Keep {
    pub fn is_all(&self) -> bool {
        self.count.is_none() && self.age.is_none()
    }
}

/// The writer's side: the one connection that writes, and the lock.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: Flock<File>,
}

fn sqlite_err(path: &Path, e: &rusqlite::Error) -> String {
    format!(
        "history database {} is unreadable ({e}): it is corrupt or not a chat database; \
         move it away (a new one is then made) or pass another --db",
        path.display()
    )
}

impl Store {
    /// Opens (creating if need be) and locks the database, checks and
    /// migrates its schema. The error is one line naming the file and what
    /// to do.
    pub fn open(path: &Path, sync: Sync) -> Result<Store, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot open history database {}: {e}; check the directory exists and is \
                     writable, or pass --db none",
                    path.display()
                )
            })?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                format!(
                    "history database {} is in use by another chat server; stop that one or \
                     pass another --db",
                    path.display()
                )
            } else {
                format!("cannot lock history database {}: {errno}", path.display())
            }
        })?;
        let conn = Connection::open(path).map_err(|e| sqlite_err(path, &e))?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
            _lock: lock,
        };
        store.prepare(sync).map_err(|e| sqlite_err(path, &e))??;
        Ok(store)
    }

    /// Pragmas and schema; the inner error is a schema too new to touch.
    fn prepare(&mut self, sync: Sync) -> rusqlite::Result<Result<(), String>> {
        let conn = &mut self.conn;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(Err(format!(
                "history database {} cannot use write-ahead logging (journal mode {mode}); \
                 put it on a local file system or pass another --db",
                self.path.display()
            )));
        }
        let level = match sync {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        };
        conn.execute_batch(&format!("PRAGMA synchronous={level}"))?;
        migrate(conn, &self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The highest `seq` ever stored, deleted ones included (AUTOINCREMENT
    /// keeps it in `sqlite_sequence`), so `seq` never goes back even when
    /// retention emptied the table.
    pub fn last_seq(&self) -> rusqlite::Result<u64> {
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'messages'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    /// Every room with stored messages.
    pub fn rooms(&self) -> rusqlite::Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT DISTINCT room FROM messages")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// Every room's topic: (room, text).
    pub fn topics(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare("SELECT room, text FROM topics")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    /// Stores a batch as one transaction: one commit (one `fsync` with
    /// `--sync full`) however many messages the loop turn produced.
    pub fn append(&mut self, batch: &[Record]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (seq, room, nick, text, ts, action) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut set_topic = tx.prepare_cached(
                "INSERT OR REPLACE INTO topics (room, nick, text, ts) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut clear_topic = tx.prepare_cached("DELETE FROM topics WHERE room = ?1")?;
            for record in batch {
                match record {
                    Record::Message(m) => {
                        insert.execute(params![
                            m.seq as i64,
                            m.room,
                            m.from,
                            m.text,
                            m.ts as i64,
                            m.action
                        ])?;
                    }
                    Record::Topic { room, text, .. } if text.is_empty() => {
                        clear_topic.execute([room])?;
                    }
                    Record::Topic { room, by, text, ts } => {
                        set_topic.execute(params![room, by, text, *ts as i64])?;
                    }
                }
            }
        }
        tx.commit()
    }

    /// One retention step: deletes at most [`TRIM_STEP`] messages that
    /// `keep` no longer covers: in `room` by count, or with no room, in
    /// every room by age.
    /// Returns how many were deleted; the caller repeats while it is the
    /// full step, between batches of new messages.
    pub fn trim(&mut self, keep: Keep, room: Option<&str>, now_ms: u64) -> rusqlite::Result<usize> {
        let mut deleted = 0;
        if let (Some(age), None) = (keep.age, room) {
            let cutoff = now_ms.saturating_sub(age.as_millis() as u64) as i64;
            // Oldest first by seq, which follows time: the step stops at the
            // first young message instead of scanning the table.
            deleted += self
                .conn
                .prepare_cached(
                    "DELETE FROM messages WHERE seq IN \
                 (SELECT seq FROM messages ORDER BY seq LIMIT ?1) AND ts < ?2",
                )?
                .execute(params![TRIM_STEP as i64, cutoff])?;
        }
        if let (Some(count), Some(room)) = (keep.count, room) {
            let newest_gone: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT seq FROM messages WHERE room = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                )?
                .query_row(params![room, count as i64], |r| r.get(0))
                .optional()?;
            if let Some(last) = newest_gone {
                deleted += self
                    .conn
                    .prepare_cached(
                        "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages \
                     WHERE room = ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)",
                    )?
                    .execute(params![room, last, TRIM_STEP as i64])?;
            }
        }
        Ok(deleted)
    }
}

/// Checks the schema version and runs the migrations it lacks, in one
/// transaction; the inner error is a schema too new to touch. Shared by the
/// server and `chat account`, either of which may meet an old file first.
pub fn migrate(conn: &mut Connection, path: &Path) -> rusqlite::Result<Result<(), String>> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Ok(Err(format!(
            "history database {} has schema version {version}, newer than this chat's \
             ({VERSION}); run a newer chat or pass another --db",
            path.display()
        )));
    }
    if version == VERSION {
        return Ok(Ok(()));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have migrated between the look and the lock.
    let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(Ok(()))
}

/// A second connection that only reads: with WAL it answers `history`
/// while the writer commits.
pub struct Reader {
    conn: Connection,
}

impl Reader {
    pub fn open(path: &Path) -> rusqlite::Result<Reader> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Reader { conn })
    }

    /// Up to `limit` messages of `room` from `from`, oldest first, and
    /// whether there are more beyond them (older for [`Page::Latest`] and
    /// [`Page::Before`], newer for [`Page::After`]). Walks the (room, seq)
    /// index: the cost is the answer's size, not the room's.
    pub fn history(
        &self,
        room: &str,
        from: Page,
        limit: usize,
    ) -> rusqlite::Result<(Vec<Stored>, bool)> {
        let (sql, seq) = match from {
            Page::Latest => (
                "SELECT seq, nick, text, ts, action FROM messages \
                 WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                i64::MAX,
            ),
            Page::Before(seq) => (
                "SELECT seq, nick, text, ts, action FROM messages \
                 WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                seq.min(i64::MAX as u64) as i64,
            ),
            Page::After(seq) => (
                "SELECT seq, nick, text, ts, action FROM messages \
                 WHERE room = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3",
                seq.min(i64::MAX as u64) as i64,
            ),
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![room, seq, limit as i64 + 1], |r| {
            Ok(Stored {
                seq: r.get::<_, i64>(0)? as u64,
                room: room.to_owned(),
                from: r.get(1)?,
                text: r.get(2)?,
                ts: r.get::<_, i64>(3)? as u64,
                action: r.get(4)?,
            })
        })?;
        let mut messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        if !matches!(from, Page::After(_)) {
            messages.reverse();
        }
        Ok((messages, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("chat-store-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
        fn db(&self) -> PathBuf {
            self.0.join("chat.db")
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn msg(seq: u64, room: &str, text: &str) -> Record {
        Record::Message(Stored {
            seq,
            room: room.into(),
            from: "alice".into(),
            text: text.into(),
            ts: 1000 + seq,
            action: seq == 2,
        })
    }

    fn seqs(messages: &[Stored]) -> Vec<u64> {
        messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn messages_and_topics_come_back_after_reopening() {
        let dir = Dir::new("reopen");
        let mut store = Store::open(&dir.db(), Sync::Normal).unwrap();
        assert_eq!(store.last_seq().unwrap(), 0);
        store
            .append(&[
                msg(1, "lobby", "one"),
                msg(2, "rust", "two"),
                Record::Topic {
                    room: "rust".into(),
                    by: "alice".into(),
                    text: "borrowck".into(),
                    ts: 5,
                },
                Record::Topic {
                    room: "lobby".into(),
                    by: "alice".into(),
                    text: "".into(),
                    ts: 6,
                },
            ])
            .unwrap();
        drop(store);
        let store = Store::open(&dir.db(), Sync::Full).unwrap();
        assert_eq!(store.last_seq().unwrap(), 2);
        assert_eq!(
            store.topics().unwrap(),
            [("rust".to_string(), "borrowck".to_string())]
        );
        let reader = Reader::open(&dir.db()).unwrap();
        let (got, more) = reader.history("rust", Page::Latest, 50).unwrap();
        assert!(!more);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].seq, got[0].text.as_str(), got[0].action),
            (2, "two", true)
        );
    }

    #[test]
    fn history_pages_before_and_after() {
        let dir = Dir::new("pages");
        let mut store = Store::open(&dir.db(), Sync::Normal).unwrap();
        let batch: Vec<Record> = (1..=10)
            .map(|s| msg(s, if s % 2 == 0 { "even" } else { "odd" }, "x"))
            .collect();
        store.append(&batch).unwrap();
        let reader = Reader::open(&dir.db()).unwrap();
        let page = |from, limit| reader.history("even", from, limit).unwrap();
        let (m, more) = page(Page::Latest, 2);
        assert_eq!((seqs(&m), more), (vec![8, 10], true));
        let (m, more) = page(Page::Before(8), 2);
        assert_eq!((seqs(&m), more), (vec![4, 6], true));
        let (m, more) = page(Page::Before(4), 2);
        assert_eq!((seqs(&m), more), (vec![2], false));
        let (m, more) = page(Page::After(2), 3);
        assert_eq!((seqs(&m), more), (vec![4, 6, 8], true));
        let (m, more) = page(Page::After(8), 3);
        assert_eq!((seqs(&m), more), (vec![10], false));
        let (m, more) = reader.history("none", Page::Latest, 5).unwrap();
        assert_eq!((m.len(), more), (0, false));
    }

    #[test]
    fn a_second_opener_is_refused_naming_the_file() {
        let dir = Dir::new("lock");
        let _first = Store::open(&dir.db(), Sync::Normal).unwrap();
        let err = Store::open(&dir.db(), Sync::Normal).err().unwrap();
        assert!(err.contains("in use by another chat server"), "{err}");
        assert!(err.contains(&dir.db().display().to_string()), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = Dir::new("corrupt");
        std::fs::write(dir.db(), vec![b'x'; 4096]).unwrap();
        let err = Store::open(&dir.db(), Sync::Normal).err().unwrap();
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn a_newer_schema_is_left_alone() {
        let dir = Dir::new("newer");
        drop(Store::open(&dir.db(), Sync::Normal).unwrap());
        let conn = Connection::open(dir.db()).unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&dir.db(), Sync::Normal).err().unwrap();
        assert!(err.contains("newer than this chat"), "{err}");
    }

    #[test]
    fn retention_trims_by_count_and_age_and_seq_never_goes_back() {
        let dir = Dir::new("keep");
        let mut store = Store::open(&dir.db(), Sync::Normal).unwrap();
        let batch: Vec<Record> = (1..=10).map(|s| msg(s, "lobby", "x")).collect();
        store.append(&batch).unwrap();
        let by_count = Keep {
            count: Some(3),
            age: None,
        };
        assert_eq!(store.trim(by_count, Some("lobby"), 0).unwrap(), 7);
        let reader = Reader::open(&dir.db()).unwrap();
        let (m, more) = reader.history("lobby", Page::Latest, 50).unwrap();
        assert_eq!((seqs(&m), more), (vec![8, 9, 10], false));
        let by_age = Keep {
            count: None,
            age: Some(Duration::from_millis(1)),
        };
        assert_eq!(store.trim(by_age, None, 1_000_000).unwrap(), 3);
        assert_eq!(store.last_seq().unwrap(), 10);
    }

    #[test]
    fn a_version_1_database_gains_accounts_and_keeps_its_history() {
        let dir = Dir::new("v1");
        {
            let conn = Connection::open(dir.db()).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO messages (seq, room, nick, text, ts) VALUES (7, 'lobby', 'a', 'old', 1);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = Store::open(&dir.db(), Sync::Normal).unwrap();
        assert_eq!(store.last_seq().unwrap(), 7);
        let version: u32 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
        let accounts: i64 = store
            .conn
            .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(accounts, 0);
    }
}
