//! The cluster's accounts bucket as `chat account --cluster` reaches it:
//! one connection to NATS for one command, blocking calls on a runtime of
//! its own. The servers watch the bucket, so what is changed here holds on
//! every server at once, as a `register` on one of them does.

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use super::Config;
use super::book::{Value, account_key, bucket_key, value_of};
use super::nats::{Names, connect_options, open_bucket};

/// One account in the bucket, with what a change must quote.
pub struct Found {
    pub value: Value,
    revision: u64,
}

/// An open accounts bucket.
pub struct Bucket {
    runtime: tokio::runtime::Runtime,
    store: kv::Store,
    /// Kept so that the connection lives as long as the bucket.
    _client: async_nats::Client,
}

impl Bucket {
    /// Connects to the cluster's NATS and opens its accounts bucket.
    pub fn open(config: &Config) -> Result<Bucket, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a NATS client: {e}"))?;
        let (client, store) = runtime.block_on(async {
            let urls = config.urls.join(",");
            let client = connect_options(config)
                .await?
                .name("chat account")
                .connect(urls.as_str())
                .await
                .map_err(|e| format!("cannot reach NATS at {urls}: {e}; check --cluster"))?;
            let js = jetstream::new(client.clone());
            let store = open_bucket(&js, &Names::new(&config.name).accounts()).await?;
            Ok::<_, String>((client, store))
        })?;
        Ok(Bucket {
            runtime,
            store,
            _client: client,
        })
    }

    /// Every account, sorted by name: its value and when it last changed
    /// (ms since the epoch).
    pub fn list(&self) -> Result<Vec<(Value, u64)>, String> {
        let mut all = self.runtime.block_on(async {
            let mut keys = self
                .store
                .keys()
                .await
                .map_err(|e| format!("cannot list the accounts on NATS: {e}"))?;
            let mut all = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|e| format!("cannot list the accounts on NATS: {e}"))?;
                if account_key(&key).is_none() {
                    continue;
                }
                let entry = self
                    .store
                    .entry(&key)
                    .await
                    .map_err(|e| format!("cannot read the accounts on NATS: {e}"))?;
                if let Some(entry) = entry
                    && let Some(value) = value_of(&entry)
                {
                    let ms = entry.created.unix_timestamp_nanos() / 1_000_000;
                    all.push((value, u64::try_from(ms).unwrap_or(0)));
                }
            }
            Ok::<_, String>(all)
        })?;
        all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(all)
    }

    /// The account with this account key.
    pub fn find(&self, key: &str) -> Result<Option<Found>, String> {
        let entry = self
            .runtime
            .block_on(self.store.entry(bucket_key(key)))
            .map_err(|e| format!("cannot read the accounts on NATS: {e}"))?;
        Ok(entry.and_then(|entry| {
            Some(Found {
                value: value_of(&entry)?,
                revision: entry.revision,
            })
        }))
    }

    /// Adds an account unless its key is taken (then `false`).
    pub fn add(&self, key: &str, value: &Value) -> Result<bool, String> {
        let made = self
            .runtime
            .block_on(self.store.create(bucket_key(key), encode(value)?.into()));
        match made {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(format!("cannot add the account on NATS: {e}")),
        }
    }

    /// Replaces what `found` was read as; `false` if it changed since.
    pub fn replace(&self, key: &str, found: &Found, value: &Value) -> Result<bool, String> {
        let done = self.runtime.block_on(self.store.update(
            bucket_key(key),
            encode(value)?.into(),
            found.revision,
        ));
        match done {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(format!("cannot change the account on NATS: {e}")),
        }
    }

    /// Deletes what `found` was read as; `false` if it changed since.
    pub fn delete(&self, key: &str, found: &Found) -> Result<bool, String> {
        let done = self.runtime.block_on(
            self.store
                .delete_expect_revision(bucket_key(key), Some(found.revision)),
        );
        match done {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(format!("cannot delete the account on NATS: {e}")),
        }
    }
}

fn encode(value: &Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("cannot encode the account: {e}"))
}
