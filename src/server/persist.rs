//! The threads around the store, so that the event loop never waits on
//! the disk.
//!
//! The writer owns the writing connection. At the end of each loop turn the
//! loop sends it the turn's group messages and topics as one batch; the
//! writer stores whatever has arrived meanwhile as one transaction (group
//! commit), answers "committed through seq S" and wakes the loop, which
//! then releases what waited for that commit (see `deliver`). Between
//! batches it trims what `--history-keep` no longer covers, a small step at
//! a time, so that new messages never wait long behind a big deletion.
//!
//! The reader owns a second, read-only connection (WAL lets it read while
//! the writer writes) and answers `history`, one request at a time. Asks
//! reach it through the writer, after the commit of every message emitted
//! before them: whoever sends a message and then asks for history finds it
//! there.
//!
//! A failing write (disk full) is reported once; the batch is kept and
//! retried, and chat goes on meanwhile: the messages are released as if
//! committed, since holding them would stop the server for everyone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::Waker;

use super::core::Ask;
use super::store::{Keep, Reader, Record, Store, TRIM_STEP};

/// How long a failed write waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How often retention looks for what it no longer covers.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// Records kept for a retry while the disk refuses them; beyond this the
/// oldest are given up, so a long outage cannot exhaust memory.
const MAX_PENDING: usize = 1_000_000;

/// What the threads tell the loop.
pub enum Done {
    /// Every group message up to this `seq` is committed (or given up on
    /// after a failure, which was reported).
    Committed(u64),
    /// Storing failed, for the first time since it last worked.
    Failed(String),
    /// Storing works again after a failure.
    Recovered,
    /// The answer to a `history` ask.
    History {
        ask: Ask,
        messages: Vec<super::store::Stored>,
        more: bool,
    },
}

/// An opened store and what the core needs from it at start.
pub struct Opened {
    pub store: Store,
    pub reader: Reader,
    pub keep: Keep,
    pub last_seq: u64,
    pub topics: Vec<(String, String)>,
}

/// The loop's handle on the threads; dropping it lets the writer commit
/// what it was sent and waits for it.
pub struct Persist {
    to_writer: Option<Sender<ToWriter>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl Persist {
    pub fn start(
        store: Store,
        reader: Reader,
        keep: Keep,
        waker: Arc<Waker>,
    ) -> std::io::Result<Persist> {
        let (to_writer, batches) = mpsc::channel();
        let (to_reader, asks) = mpsc::channel::<Ask>();
        let (done_tx, done) = mpsc::channel();
        let writer = {
            let (done, waker) = (done_tx.clone(), Arc::clone(&waker));
            thread::Builder::new()
                .name("chat-store-writer".into())
                .spawn(move || write_loop(store, keep, &batches, &to_reader, &done, &waker))?
        };
        let reader = thread::Builder::new()
            .name("chat-store-reader".into())
            .spawn(move || read_loop(&reader, &asks, &done_tx, &waker))?;
        Ok(Persist {
            to_writer: Some(to_writer),
            done,
            threads: vec![writer, reader],
        })
    }

    /// Hands a loop turn's records to the writer, then the turn's asks,
    /// which the reader answers once those records are committed.
    pub fn store(&self, batch: Vec<Record>, asks: &mut Vec<Ask>) {
        if let Some(tx) = &self.to_writer {
            if !batch.is_empty() {
                let _ = tx.send(ToWriter::Records(batch));
            }
            for ask in asks.drain(..) {
                let _ = tx.send(ToWriter::Ask(ask));
            }
        }
    }

    /// What the threads have said since the last call.
    pub fn take(&self) -> impl Iterator<Item = Done> + '_ {
        self.done.try_iter()
    }
}

impl Drop for Persist {
    fn drop(&mut self) {
        self.to_writer = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What the loop sends the writer, in the order it happened.
enum ToWriter {
    Records(Vec<Record>),
    /// For the reader, once what came before is committed.
    Ask(Ask),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn tell(done: &Sender<Done>, waker: &Waker, what: Done) {
    let _ = done.send(what);
    let _ = waker.wake();
}

fn write_loop(
    mut store: Store,
    keep: Keep,
    batches: &Receiver<ToWriter>,
    to_reader: &Sender<Ask>,
    done: &Sender<Done>,
    waker: &Waker,
) {
    let mut pending: Vec<Record> = Vec::new();
    let mut asks: Vec<Ask> = Vec::new();
    let mut failing = false;
    // Rooms written since retention last looked; `None` is the age rule.
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut to_trim: Vec<Option<String>> = Vec::new();
    let mut next_trim = Instant::now();
    if keep.count.is_some() {
        touched.extend(store.rooms().unwrap_or_default());
    }
    let mut open = true;
    while open || !pending.is_empty() {
        let wait = if failing {
            RETRY
        } else if !to_trim.is_empty() {
            Duration::ZERO
        } else if keep.is_all() {
            Duration::from_secs(3600)
        } else {
            next_trim.saturating_duration_since(Instant::now())
        };
        if open {
            let mut take = |what| match what {
                ToWriter::Records(batch) => pending.extend(batch),
                ToWriter::Ask(ask) => asks.push(ask),
            };
            match batches.recv_timeout(wait) {
                Ok(what) => take(what),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            // Whatever else is waiting goes into the same transaction.
            while let Ok(what) = batches.try_recv() {
                take(what);
            }
        }
        if !pending.is_empty() {
            let last = pending
                .iter()
                .filter_map(|r| match r {
                    Record::Message(m) => Some(m.seq),
                    Record::Topic { .. } => None,
                })
                .max();
            match store.append(&pending) {
                Ok(()) => {
                    for r in pending.drain(..) {
                        if let Record::Message(m) = r
                            && keep.count.is_some()
                            && !touched.contains(&m.room)
                        {
                            touched.insert(m.room);
                        }
                    }
                    if failing {
                        failing = false;
                        tell(done, waker, Done::Recovered);
                    }
                }
                Err(e) => {
                    if !failing {
                        failing = true;
                        let why = format!(
                            "cannot store history in {}: {e}; chat goes on unrecorded, \
                             retrying every second",
                            store.path().display()
                        );
                        tell(done, waker, Done::Failed(why));
                    }
                    if pending.len() > MAX_PENDING {
                        pending.drain(..pending.len() - MAX_PENDING);
                    }
                    if !open {
                        // Stopping: one last try is all there is.
                        break;
                    }
                }
            }
            if let Some(seq) = last {
                tell(done, waker, Done::Committed(seq));
            }
        }
        for ask in asks.drain(..) {
            let _ = to_reader.send(ask);
        }
        if failing {
            continue;
        }
        if keep.is_all() {
            continue;
        }
        if to_trim.is_empty() && Instant::now() >= next_trim {
            next_trim = Instant::now() + TRIM_EVERY;
            to_trim.push(None);
            to_trim.extend(std::mem::take(&mut touched).into_iter().map(Some));
        }
        if let Some(room) = to_trim.last() {
            match store.trim(keep, room.as_deref(), now_ms()) {
                Ok(n) if n >= TRIM_STEP => {}
                Ok(_) | Err(_) => {
                    to_trim.pop();
                }
            }
        }
    }
}

fn read_loop(reader: &Reader, asks: &Receiver<Ask>, done: &Sender<Done>, waker: &Waker) {
    for ask in asks {
        let (messages, more) = reader
            .history(&ask.room, ask.from, ask.limit)
            .unwrap_or_else(|_| (Vec::new(), false));
        tell(
            done,
            waker,
            Done::History {
                ask,
                messages,
                more,
            },
        );
    }
}
