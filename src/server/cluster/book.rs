//! The cluster's accounts: a JetStream key-value bucket
//! (`<cluster-name>_accounts`) that every server shares, so that an
//! account registered on one server logs in on any other and its name is
//! refused to guests everywhere.
//!
//! A key is the hex of the account name's comparison key (bucket keys
//! allow few characters); a value is the name as its owner spelled it and
//! its PHC hash, never the password. `register` is the bucket's `create`,
//! a compare-and-set: of two servers registering one name, one wins.
//!
//! The hashing threads reach the bucket through the cluster's thread
//! ([`Shelf`] blocks on its answer); every server keeps the last known
//! copy of the bucket, fed by a watch, which `nick` is checked against
//! and which a `login` falls back to while NATS is away.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Out;
use crate::server::accounts;

/// The longest a hashing thread waits for the bucket.
pub const WAIT: Duration = Duration::from_secs(3);

/// What the bucket holds for one account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    pub name: String,
    pub hash: String,
}

/// Without the hash: a debug line is no place for it.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({})", self.name)
    }
}

/// The bucket's key for an account key.
pub fn bucket_key(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The account key a bucket key stands for (`None`: not one of ours).
pub fn account_key(bucket_key: &str) -> Option<String> {
    let bytes = bucket_key.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let raw = bytes
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(raw).ok()
}

/// The account a bucket entry holds; `None` for a deleted one, or a value
/// that is not an account.
pub fn value_of(entry: &async_nats::jetstream::kv::Entry) -> Option<Value> {
    if entry.operation != async_nats::jetstream::kv::Operation::Put {
        return None;
    }
    serde_json::from_slice(&entry.value).ok()
}

/// An answer from the cluster's thread: found or added (`Ok`), or why
/// the bucket could not be reached.
pub type Reply<T> = mpsc::Sender<Result<T, String>>;

/// The hashing threads' end: asks the cluster's thread, keeps the last
/// known copy.
pub struct Shelf {
    known: Mutex<HashMap<String, Value>>,
    to_thread: tokio::sync::mpsc::UnboundedSender<Out>,
}

impl Shelf {
    pub fn new(to_thread: tokio::sync::mpsc::UnboundedSender<Out>) -> Shelf {
        Shelf {
            known: Mutex::default(),
            to_thread,
        }
    }

    /// What the watch saw: `key` (an account key) is this account now.
    /// Whether it was new here.
    pub fn learn(&self, key: String, value: Value) -> bool {
        self.lock().insert(key, value).is_none()
    }

    /// The account `key` is no more; whether it was known here.
    pub fn forget(&self, key: &str) -> bool {
        self.lock().remove(key).is_some()
    }

    /// The last known copy of one account.
    pub fn known(&self, key: &str) -> Option<Value> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ask<T>(&self, out: impl FnOnce(Reply<T>) -> Out) -> Result<T, String> {
        let (tx, rx) = mpsc::channel();
        self.to_thread
            .send(out(tx))
            .map_err(|_| "the cluster's thread stopped".to_owned())?;
        // Longer than the thread's own limit, so that an answer it
        // gives (an account made) is not taken for no answer.
        rx.recv_timeout(WAIT + Duration::from_secs(1))
            .map_err(|_| "the cluster's accounts did not answer in time".to_owned())?
    }
}

impl accounts::Shelf for Shelf {
    fn find(&self, key: &str) -> Result<Option<(String, String)>, String> {
        let found = match self.ask(|reply| Out::FindAccount {
            key: key.to_owned(),
            reply,
        }) {
            Ok(found) => found,
            // NATS away: the last known copy.
            Err(_) => self.known(key),
        };
        Ok(found.map(|v| (v.name, v.hash)))
    }

    fn add(&self, name: &str, key: &str, hash: &str) -> Result<bool, String> {
        let value = Value {
            name: name.to_owned(),
            hash: hash.to_owned(),
        };
        let added = self.ask(|reply| Out::AddAccount {
            key: key.to_owned(),
            value: value.clone(),
            reply,
        })?;
        if added {
            self.learn(key.to_owned(), value);
        }
        Ok(added)
    }

    fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// Makes `shelf` a [`accounts::Book`].
pub fn book(shelf: &Arc<Shelf>) -> accounts::Book {
    accounts::Book::Shared(Arc::clone(shelf) as Arc<dyn accounts::Shelf>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::accounts::Shelf as _;

    #[test]
    fn bucket_keys_are_hex_and_read_back() {
        assert_eq!(bucket_key("bob"), "626f62");
        assert_eq!(account_key("626f62").as_deref(), Some("bob"));
        let key = "zoë";
        assert_eq!(account_key(&bucket_key(key)).as_deref(), Some(key));
        assert_eq!(account_key("6"), None);
        assert_eq!(account_key("zz"), None);
    }

    #[test]
    fn without_the_thread_a_login_checks_the_last_known_copy_and_register_fails() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        let shelf = Shelf::new(tx);
        assert!(shelf.learn(
            "bob".into(),
            Value {
                name: "Bob".into(),
                hash: "h".into()
            }
        ));
        assert_eq!(shelf.find("bob").unwrap(), Some(("Bob".into(), "h".into())));
        assert_eq!(shelf.find("eve").unwrap(), None);
        assert!(shelf.add("Eve", "eve", "h").is_err());
        assert_eq!(shelf.keys(), ["bob"]);
    }
}
