//! `--cluster`: servers that act as one through NATS.
//!
//! A JetStream stream is the one total order of changes to the shared
//! state (arrivals, joins, parts, renames, topics, leaves, group
//! messages). Each server applies it, in stream order, to its core, where
//! the users of the other servers are users without a connection; a group
//! message is delivered (and stored) only when it comes back from the
//! stream, with the stream's sequence as its `seq`, so `seq` is one
//! increasing sequence across the cluster and history is the same on
//! every server that saw it. Private messages go over core NATS to the
//! server holding the receiver and are never stored.
//!
//! - [`op`]: what crosses the backplane, one NATS message per change.
//! - `nats`: the thread with the NATS client, liveness included.
//! - `name_jobs`: the order of the name table's claims and releases, which
//!   run side by side on that thread.
//! - [`book`]: the accounts, in a key-value bucket every server shares.
//! - [`admin`]: that bucket as `chat account --cluster` reaches it.
//!
//! The event loop owns a [`Backplane`]: what it gives the thread goes
//! through an unbounded channel; what the thread gives back comes through
//! a `std::sync::mpsc` channel and a wake of the loop's `mio::Waker`.

pub mod admin;
pub mod book;
mod name_jobs;
mod nats;
pub mod op;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;

use mio::Waker;

pub use op::{Op, Private};

/// The `--cluster*` options.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// NATS servers, `nats://HOST:PORT` (or `tls://`).
    pub urls: Vec<String>,
    /// The prefix of the stream's and subjects' names, so that two
    /// clusters can share one NATS.
    pub name: String,
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// A CA to trust for NATS's TLS; TLS is then required.
    pub ca: Option<PathBuf>,
    /// The stream's age limit (`--cluster-keep`; zero: none).
    pub keep: std::time::Duration,
}

impl Config {
    /// The options' cluster, if `--cluster` was given.
    pub fn of(args: &crate::cli::NatsArgs, keep: std::time::Duration) -> Option<Config> {
        (!args.cluster.is_empty()).then(|| Config {
            urls: args.cluster.clone(),
            name: args.cluster_name.clone(),
            creds: args.cluster_creds.clone(),
            user: args.cluster_user.clone(),
            password: args.cluster_password.clone(),
            token: args.cluster_token.clone(),
            ca: args.cluster_ca.clone(),
            keep,
        })
    }
}

/// From the loop to the thread.
#[derive(Debug)]
pub enum Out {
    Op(Op),
    Private {
        instance: String,
        private: Private,
    },
    /// Claim the name `name` (a key of the name table) for user `id`;
    /// answered with [`In::Claimed`] carrying the same `ask`.
    Claim {
        ask: NameAsk,
    },
    /// A name a user here no longer holds.
    Release(crate::server::core::Release),
    /// Read one account (by account key) from the accounts bucket.
    FindAccount {
        key: String,
        reply: book::Reply<Option<book::Value>>,
    },
    /// Create one account in the accounts bucket; `false` if it exists.
    AddAccount {
        key: String,
        value: book::Value,
        reply: book::Reply<bool>,
    },
}

/// A claim of a name, as the loop asked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAsk {
    /// The asker's key in the core's table.
    pub token: usize,
    pub id: u64,
    pub nick: String,
    pub name: String,
    /// A name to arrive with, not a rename.
    pub arrival: bool,
}

/// From the thread to the loop.
#[derive(Debug)]
pub enum In {
    /// A change, in stream order; `mine` when this instance published it.
    Op {
        seq: u64,
        mine: bool,
        from: String,
        op: Op,
    },
    Private(Private),
    /// The answer to [`Out::Claim`].
    Claimed {
        ask: NameAsk,
        ok: bool,
    },
    /// NATS was lost (`false`) or is back (`true`).
    Up(bool),
    /// An account exists (its key), registered on any server.
    Registered(String),
    /// An account (its key) was deleted.
    Unregistered(String),
}

/// The loop's end of the backplane.
pub struct Backplane {
    pub instance: String,
    pub id_base: u64,
    /// The stream's first message when this server joined: older ones
    /// were dropped by its age limit.
    pub first_seq: u64,
    to_thread: tokio::sync::mpsc::UnboundedSender<Out>,
    from_thread: Receiver<In>,
    /// Messages and bytes handed to NATS (for `/metrics` and the figures).
    pub published: u64,
    pub published_bytes: u64,
    /// The cluster's accounts, for the hashing threads.
    pub shelf: Arc<book::Shelf>,
    /// Stream messages handed to the loop.
    pub received: u64,
    /// Instances the thread hears from, this one included.
    servers: Arc<AtomicUsize>,
}

impl Backplane {
    /// Starts the thread and waits until it has joined the cluster: the
    /// stream exists, this instance said hello and has its id block.
    pub fn start(config: Config, waker: Arc<Waker>) -> Result<Backplane, String> {
        let instance = instance_id();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (in_tx, in_rx) = std::sync::mpsc::channel();
        let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the cluster's thread: {e}"))?;
        let me = instance.clone();
        let shelf = Arc::new(book::Shelf::new(out_tx.clone()));
        let theirs = Arc::clone(&shelf);
        let servers = Arc::new(AtomicUsize::new(1));
        let heard = Arc::clone(&servers);
        std::thread::Builder::new()
            .name("chat-cluster".into())
            .spawn(move || {
                runtime.block_on(nats::run(
                    config, me, theirs, started_tx, in_tx, waker, out_rx, heard,
                ));
            })
            .map_err(|e| format!("cannot start the cluster's thread: {e}"))?;
        let started = started_rx
            .recv()
            .map_err(|_| "the cluster's thread stopped while joining".to_owned())??;
        Ok(Backplane {
            instance,
            id_base: started.id_base,
            first_seq: started.first_seq,
            to_thread: out_tx,
            from_thread: in_rx,
            published: 0,
            published_bytes: 0,
            shelf,
            received: 0,
            servers,
        })
    }

    pub fn send(&mut self, out: Out) {
        self.published += 1;
        if let Out::Op(op) = &out {
            self.published_bytes += serde_json::to_vec(op).map_or(0, |b| b.len() as u64);
        }
        let _ = self.to_thread.send(out);
    }

    pub fn try_recv(&mut self) -> Option<In> {
        let got = self.from_thread.try_recv().ok();
        if let Some(In::Op { .. }) = &got {
            self.received += 1;
        }
        got
    }

    /// Servers known to be alive, this one included (as of the last
    /// heartbeat tick).
    pub fn servers(&self) -> usize {
        self.servers.load(Ordering::Relaxed)
    }
}

/// A random id per process start: a restarted server is a new instance.
pub fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
