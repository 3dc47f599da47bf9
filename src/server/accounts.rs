//! Accounts: registered nicknames and their password hashes, and the
//! hashing itself. Blocking work, all of it: the event loop never calls
//! this; the hashing threads (`hashing`) and `chat account` do.
//!
//! An account is kept as the name its owner chose, the comparison key of
//! that name (what `nick` and `login` look it up by, so that `Bob` and
//! `bob` are one account), and an Argon2id hash in PHC form
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), which carries its own
//! parameters and salt: raising the cost later leaves old hashes valid.
//!
//! The accounts live in the history database (table `accounts`, schema
//! version 2), or in memory with `--db none`. The server does not cache
//! the hashes: every `login` reads the table, so `chat account del` takes
//! effect at the next login, without a restart. With `--cluster` they
//! live in the cluster's key-value bucket instead ([`Shelf`], made by
//! the cluster's code), so that every server has the same ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{Connection, OptionalExtension, params};

use super::name::Name;
use crate::wire;

/// The shortest password accepted, in bytes.
pub const MIN_PASSWORD: usize = 8;
/// The longest, in bytes: a passphrase, not a file.
pub const MAX_PASSWORD: usize = 1024;

/// Why a password cannot be registered; `None` if it can.
pub fn check_password(password: &str) -> Option<String> {
    let len = password.len();
    if len < MIN_PASSWORD {
        Some(format!(
            "a password has at least {MIN_PASSWORD} bytes; this one has {len}"
        ))
    } else if len > MAX_PASSWORD {
        Some(format!(
            "a password has at most {MAX_PASSWORD} bytes; this one has {len}"
        ))
    } else {
        None
    }
}

/// The comparison key of an account name, or why it is not one: the same
/// rule and the same key as nicknames (`Name::key`), guest names excepted.
pub fn account_key(name: &str) -> Result<Name, String> {
    let nfc = wire::check_nick(name)?;
    Ok(Name::key_of(&nfc))
}

/// What a hash costs. [`Cost::OWASP`] everywhere but in unit tests, which
/// use a cheap one so that they hash in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Memory, KiB.
    pub m: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Cost {
    /// The OWASP Password Storage Cheat Sheet's first Argon2id setting:
    /// 19 MiB, two passes, one lane (about 20 ms on a current core).
    pub const OWASP: Cost = Cost {
        m: 19456,
        t: 2,
        p: 1,
    };

    /// For tests only: as cheap as Argon2 allows.
    pub const CHEAP: Cost = Cost { m: 8, t: 1, p: 1 };

    fn argon2(self) -> Result<Argon2<'static>, String> {
        let params = Params::new(self.m, self.t, self.p, None).map_err(|e| e.to_string())?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashes a password with a fresh random salt; the PHC string.
pub fn hash(password: &[u8], cost: Cost) -> Result<String, String> {
    Hasher::default().hash(password, cost)
}

/// Whether `password` matches the PHC string `phc`.
pub fn verify(password: &[u8], phc: &str) -> bool {
    Hasher::default().verify(password, phc)
}

/// Argon2's working memory, kept from one hash to the next. Allocated per
/// hash instead, 19 MiB blocks freed by two threads grow glibc's arenas
/// (its mmap threshold rises to meet them) to far more than two hashes'
/// worth; kept, a hashing thread costs its one block array while it
/// works, and gives it back when idle (`hashing`).
#[derive(Default)]
pub struct Hasher {
    blocks: Vec<argon2::Block>,
}

impl Hasher {
    /// Frees the working memory (the next hash allocates it again);
    /// whether there was any.
    pub fn release(&mut self) -> bool {
        let had = !self.blocks.is_empty();
        self.blocks = Vec::new();
        had
    }

    fn memory(&mut self, params: &Params) -> &mut [argon2::Block] {
        let need = params.block_count();
        if self.blocks.len() < need {
            self.blocks.resize(need, argon2::Block::default());
        }
        &mut self.blocks[..need]
    }

    /// As [`hash`], in this hasher's memory.
    pub fn hash(&mut self, password: &[u8], cost: Cost) -> Result<String, String> {
        let fail = |e: &dyn std::fmt::Display| format!("cannot hash the password: {e}");
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
        let argon2 = cost.argon2()?;
        let params = argon2.params().clone();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        argon2
            .hash_password_into_with_memory(password, salt_bytes, &mut out, self.memory(&params))
            .map_err(|e| fail(&e))?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: (&params).try_into().map_err(|e| fail(&e))?,
            salt: Some(salt.as_salt()),
            hash: Some(argon2::password_hash::Output::new(&out).map_err(|e| fail(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string `phc`, with the
    /// parameters and salt it carries. The comparison of the outputs is
    /// `Output`'s, in constant time; a malformed hash matches nothing.
    pub fn verify(&mut self, password: &[u8], phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) = (
            Algorithm::try_from(parsed.algorithm),
            Params::try_from(&parsed),
        ) else {
            return false;
        };
        // A stored hash asking for more than a gigabyte is no hash of ours.
        if params.m_cost() > 1 << 20 {
            return false;
        }
        let version = parsed
            .version
            .and_then(|v| Version::try_from(v).ok())
            .unwrap_or_default();
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
            return false;
        };
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        if argon2
            .hash_password_into_with_memory(password, salt_bytes, &mut out, self.memory(&params))
            .is_err()
        {
            return false;
        }
        argon2::password_hash::Output::new(&out).is_ok_and(|got| got == expected)
    }
}

/// A stored account, without its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub created_ms: u64,
}

/// Where the accounts are: a database file, or (with `--db none`) a map
/// shared by the hashing threads that lasts as long as the server, or
/// (with `--cluster`) a store every server of the cluster shares.
#[derive(Clone)]
pub enum Book {
    Db(PathBuf),
    Memory(Arc<Mutex<HashMap<String, Entry>>>),
    Shared(Arc<dyn Shelf>),
}

/// Accounts kept elsewhere than in this process's database (the
/// cluster's key-value bucket), so that every server has the same ones.
/// Called from the hashing threads: the calls may block for a round trip.
pub trait Shelf: Send + Sync {
    /// The account with this key: its name as chosen and its hash.
    fn find(&self, key: &str) -> Result<Option<(String, String)>, String>;
    /// Adds an account unless its key is taken (then `false`), as one
    /// compare-and-set: of two servers adding one key, one wins.
    fn add(&self, name: &str, key: &str, hash: &str) -> Result<bool, String>;
    /// Every account's key known here.
    fn keys(&self) -> Vec<String>;
}

/// One account as the memory book keeps it.
#[derive(Clone)]
pub struct Entry {
    name: String,
    hash: String,
    created_ms: u64,
}

impl Book {
    pub fn memory() -> Book {
        Book::Memory(Arc::default())
    }

    /// A handle for one thread: a database connection of its own (no
    /// `flock`: the server holds that, and `chat account` must work beside
    /// it; SQLite's own locking and the busy timeout keep writers apart).
    pub fn open(&self) -> Result<Accounts, String> {
        match self {
            Book::Db(path) => open_db(path).map(Accounts::Db),
            Book::Memory(map) => Ok(Accounts::Memory(Arc::clone(map))),
            Book::Shared(shelf) => Ok(Accounts::Shared(Arc::clone(shelf))),
        }
    }
}

fn open_db(path: &Path) -> Result<Connection, String> {
    let fail = |e: rusqlite::Error| {
        format!(
            "cannot use the accounts in {} ({e}); is it a chat database?",
            path.display()
        )
    };
    let mut conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(fail)?;
    super::store::migrate(&mut conn, path).map_err(fail)??;
    Ok(conn)
}

/// One thread's access to the accounts.
pub enum Accounts {
    Db(Connection),
    Memory(Arc<Mutex<HashMap<String, Entry>>>),
    Shared(Arc<dyn Shelf>),
}

/// What `chat account` cannot do to a cluster's accounts.
const SHARED_ONLY: &str =
    "a cluster's accounts are changed through the servers (register), not here";

type Res<T> = Result<T, String>;

fn db_err(e: rusqlite::Error) -> String {
    format!("the accounts table failed: {e}")
}

impl Accounts {
    /// The account with this key: its name as chosen and its hash.
    pub fn find(&self, key: &str) -> Res<Option<(String, String)>> {
        match self {
            Accounts::Db(conn) => conn
                .prepare_cached("SELECT name, hash FROM accounts WHERE key = ?1")
                .and_then(|mut s| {
                    s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(db_err),
            Accounts::Memory(map) => {
                Ok(lock(map).get(key).map(|e| (e.name.clone(), e.hash.clone())))
            }
            Accounts::Shared(shelf) => shelf.find(key),
        }
    }

    /// Adds an account; `false` if its key is taken.
    pub fn add(&self, name: &str, key: &str, hash: &str, now_ms: u64) -> Res<bool> {
        match self {
            Accounts::Db(conn) => conn
                .execute(
                    "INSERT OR IGNORE INTO accounts (key, name, hash, created) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![key, name, hash, now_ms as i64],
                )
                .map(|n| n == 1)
                .map_err(db_err),
            Accounts::Memory(map) => {
                let mut map = lock(map);
                if map.contains_key(key) {
                    return Ok(false);
                }
                map.insert(
                    key.to_owned(),
                    Entry {
                        name: name.to_owned(),
                        hash: hash.to_owned(),
                        created_ms: now_ms,
                    },
                );
                Ok(true)
            }
            Accounts::Shared(shelf) => shelf.add(name, key, hash),
        }
    }

    /// Deletes an account; `false` if there was none.
    pub fn delete(&self, key: &str) -> Res<bool> {
        match self {
            Accounts::Db(conn) => conn
                .execute("DELETE FROM accounts WHERE key = ?1", [key])
                .map(|n| n == 1)
                .map_err(db_err),
            Accounts::Memory(map) => Ok(lock(map).remove(key).is_some()),
            Accounts::Shared(_) => Err(SHARED_ONLY.into()),
        }
    }

    /// Replaces an account's hash; `false` if there is no such account.
    pub fn set_hash(&self, key: &str, hash: &str) -> Res<bool> {
        match self {
            Accounts::Db(conn) => conn
                .execute("UPDATE accounts SET hash = ?2 WHERE key = ?1", [key, hash])
                .map(|n| n == 1)
                .map_err(db_err),
            Accounts::Memory(map) => Ok(lock(map)
                .get_mut(key)
                .map(|e| e.hash = hash.to_owned())
                .is_some()),
            Accounts::Shared(_) => Err(SHARED_ONLY.into()),
        }
    }

    /// Every account, by name.
    pub fn list(&self) -> Res<Vec<Account>> {
        let mut all: Vec<Account> = match self {
            Accounts::Db(conn) => conn
                .prepare("SELECT name, created FROM accounts")
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok(Account {
                            name: r.get(0)?,
                            created_ms: r.get::<_, i64>(1)?.max(0) as u64,
                        })
                    })?
                    .collect()
                })
                .map_err(db_err)?,
            Accounts::Memory(map) => lock(map)
                .values()
                .map(|e| Account {
                    name: e.name.clone(),
                    created_ms: e.created_ms,
                })
                .collect(),
            Accounts::Shared(_) => return Err(SHARED_ONLY.into()),
        };
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Brings every stored key up to date with the comparison rule of
    /// this program (`Name::key`), which a newer version may refine (Unicode
    /// case folding, look-alikes): an account stays reachable by its name.
    /// Of two accounts that become one name, the older takes it; the other
    /// is left as it was (unreachable, nothing deleted) and its name
    /// returned, for the administrator to hear of.
    pub fn rekey(&self) -> Res<Vec<String>> {
        let Accounts::Db(conn) = self else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT key, name FROM accounts ORDER BY created, key")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(db_err)?;
        let stale: Vec<(String, String, String)> = rows
            .into_iter()
            .filter_map(|(key, name)| {
                let new = account_key(&name).ok()?.as_str().to_owned();
                (new != key).then_some((key, name, new))
            })
            .collect();
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        let mut lost = Vec::new();
        let tx = conn.unchecked_transaction().map_err(db_err)?;
        for (key, name, new) in stale {
            let moved = tx
                .execute(
                    "UPDATE OR IGNORE accounts SET key = ?2 WHERE key = ?1",
                    [&key, &new],
                )
                .map_err(db_err)?;
            if moved == 0 {
                lost.push(name);
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(lost)
    }

    /// Every account's key: what the server checks `nick` against.
    pub fn keys(&self) -> Res<Vec<String>> {
        match self {
            Accounts::Db(conn) => conn
                .prepare("SELECT key FROM accounts")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(db_err),
            Accounts::Memory(map) => Ok(lock(map).keys().cloned().collect()),
            Accounts::Shared(shelf) => Ok(shelf.keys()),
        }
    }

    /// Changes whenever another connection commits (SQLite's
    /// `data_version`), history included: whether to look again.
    pub fn version(&self) -> Res<i64> {
        match self {
            Accounts::Db(conn) => conn
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(db_err),
            Accounts::Memory(_) | Accounts::Shared(_) => Ok(0),
        }
    }

    /// Changes when accounts are added or deleted: their number and the sum
    /// of their creation times. Cheaper to read than every key, and what
    /// the loop is sent only when it changed.
    pub fn fingerprint(&self) -> Res<(i64, i64)> {
        match self {
            Accounts::Db(conn) => conn
                .query_row(
                    "SELECT count(*), coalesce(sum(created), 0) FROM accounts",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err),
            Accounts::Memory(map) => Ok((lock(map).len() as i64, 0)),
            Accounts::Shared(shelf) => Ok((shelf.keys().len() as i64, 0)),
        }
    }
}

/// A poisoned lock means a hashing thread panicked; the map is still whole.
fn lock(map: &Mutex<HashMap<String, Entry>>) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_carries_owasp_parameters() {
        let phc = hash(b"correct horse", Cost::OWASP).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(b"correct horse", &phc));
        assert!(!verify(b"correct horsf", &phc));
        assert!(!verify(b"correct horse", "not a hash"));
        let again = hash(b"correct horse", Cost::OWASP).unwrap();
        assert_ne!(phc, again, "each hash has its own salt");
    }

    #[test]
    fn password_lengths() {
        assert!(check_password("1234567").is_some());
        assert!(check_password("12345678").is_none());
        assert!(check_password(&"x".repeat(1024)).is_none());
        assert!(check_password(&"x".repeat(1025)).is_some());
    }

    #[test]
    fn accounts_in_a_database_are_found_by_key() {
        let dir = std::env::temp_dir().join(format!("chat-accounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let book = Book::Db(dir.join("chat.db"));
        let accounts = book.open().unwrap();
        let key = account_key("Alice").unwrap();
        assert!(accounts.add("Alice", key.as_str(), "h1", 5).unwrap());
        assert!(!accounts.add("ALICE", key.as_str(), "h2", 6).unwrap());
        assert_eq!(
            accounts.find("alice").unwrap(),
            Some(("Alice".into(), "h1".into()))
        );
        assert!(accounts.set_hash("alice", "h3").unwrap());
        let other = book.open().unwrap();
        assert_eq!(other.find("alice").unwrap().unwrap().1, "h3");
        assert_eq!(
            other.list().unwrap(),
            [Account {
                name: "Alice".into(),
                created_ms: 5
            }]
        );
        assert!(other.delete("alice").unwrap());
        assert!(!other.delete("alice").unwrap());
        assert_eq!(accounts.find("alice").unwrap(), None);
        assert!(account_key("guest12").is_err());
        // Keys stored by an older rule are brought up to date; of two that
        // become one, the older account stays.
        accounts.add("Zed", "OLD-zed", "h", 1).unwrap();
        accounts.add("ZED", "older-ZED", "h", 2).unwrap();
        assert_eq!(accounts.rekey().unwrap(), ["ZED"]);
        assert_eq!(accounts.find("zed").unwrap().unwrap().0, "Zed");
        assert_eq!(accounts.list().unwrap().len(), 2, "nothing deleted");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
