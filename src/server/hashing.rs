//! The hashing threads: `register` and `login` are answered here, off the
//! event loop, since an Argon2id hash is tens of milliseconds of one core
//! and 19 MiB of memory by design.
//!
//! A small fixed number of threads (at most two) take [`Job`]s from a
//! bounded queue. What a login storm can cost is therefore fixed: two
//! cores' worth of hashing and the queue's jobs in memory, whatever the
//! number of connections. When the queue is full the loop answers at once
//! with `too_many_attempts` ("the server is busy") instead of waiting, so
//! nothing piles up behind it; a connection has at most one job in flight,
//! since the loop stops reading it until the answer is back.
//!
//! Answers come back over a channel, and the loop is woken through its
//! `Waker`, as the store's threads do (`persist`). An answer for a
//! connection that closed meanwhile finds its key stale in the table and
//! is dropped.
//!
//! A third thread watches the database for accounts that `chat account`
//! adds or deletes while the server runs, and sends the loop the new list
//! of account keys, which `nick` is checked against. The hashing threads
//! open their database connections at their first job, so that an idle
//! server holds one connection more than it did without accounts, not
//! three (descriptors are what a busy server runs out of).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::Waker;
use zeroize::Zeroizing;

use super::accounts::{self, Accounts, Book, Cost};
use super::table::Key;

/// Jobs waiting for a hashing thread, beyond which logins are told the
/// server is busy: about a second of work for two threads.
pub const QUEUE: usize = 64;
/// A hashing thread idle this long gives its working memory back.
const IDLE: Duration = Duration::from_secs(5);
/// How often the watcher looks for accounts changed by `chat account`.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A password to check or to hash. Its `Debug` leaves the password out,
/// and the password's memory is zeroed when the job is dropped, right
/// after hashing.
pub enum Job {
    /// Register `name` (the connection's nickname, `key` its comparison
    /// key) as an account.
    Register {
        conn: Key,
        name: String,
        key: String,
        password: Zeroizing<String>,
    },
    /// Log in to the account whose key is `key` (empty when the name
    /// given is no nickname at all: then no account matches).
    Login {
        conn: Key,
        key: String,
        password: Zeroizing<String>,
    },
}

impl Job {
    pub fn conn(&self) -> Key {
        match self {
            Job::Register { conn, .. } | Job::Login { conn, .. } => *conn,
        }
    }

    pub fn is_login(&self) -> bool {
        matches!(self, Job::Login { .. })
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Register { conn, name, .. } => write!(f, "Register({conn:?}, {name})"),
            Job::Login { conn, key, .. } => write!(f, "Login({conn:?}, {key})"),
        }
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The account is made, under this name.
    Registered(String),
    /// The name is an account already.
    Taken,
    /// The password is right; the account's name as its owner spelled it.
    LoggedIn(String),
    /// No such account, or the wrong password: one answer for both.
    Failed,
    /// The accounts could not be read or written; the reason is for the
    /// server's log, not for the client.
    Broken(String),
}

#[derive(Debug)]
pub struct Answer {
    pub conn: Key,
    pub login: bool,
    pub outcome: Outcome,
}

/// What the threads tell the loop.
pub enum Report {
    Answer(Answer),
    /// Every account key, after someone else changed the table, and the
    /// keys there at the last look that are gone now.
    Keys {
        keys: Vec<String>,
        deleted: Vec<String>,
    },
}

/// What one hashing thread holds: its access to the accounts, and the
/// dummy hash an unknown account is checked against, so that it costs
/// what a wrong password costs.
pub struct Worker {
    book: Book,
    /// Opened at the first use.
    accounts: std::cell::OnceCell<Result<Accounts, String>>,
    hasher: std::cell::RefCell<accounts::Hasher>,
    cost: Cost,
    /// Made at the first unknown account, not at start: a server that
    /// never sees one never pays for it.
    dummy: std::cell::OnceCell<String>,
}

impl Worker {
    pub fn new(book: &Book, cost: Cost) -> Worker {
        Worker {
            book: book.clone(),
            accounts: std::cell::OnceCell::new(),
            hasher: std::cell::RefCell::default(),
            cost,
            dummy: std::cell::OnceCell::new(),
        }
    }

    /// Frees the hashing memory; whether there was any.
    fn release(&self) -> bool {
        self.hasher.borrow_mut().release()
    }

    fn accounts(&self) -> &Result<Accounts, String> {
        self.accounts.get_or_init(|| self.book.open())
    }

    fn dummy(&self) -> &str {
        self.dummy.get_or_init(|| {
            let mut noise = Zeroizing::new([0u8; 32]);
            // Fails only without a kernel random source; a hash of zeros
            // costs the same to check.
            let _ = getrandom(noise.as_mut_slice());
            self.hasher
                .borrow_mut()
                .hash(noise.as_slice(), self.cost)
                .unwrap_or_default()
        })
    }

    /// Does one job, blocking for as long as a hash takes.
    pub fn work(&self, job: Job, now_ms: u64) -> Answer {
        let (conn, login) = (job.conn(), job.is_login());
        let outcome = match self.accounts() {
            Err(why) => Outcome::Broken(why.clone()),
            Ok(accounts) => self.outcome(accounts, &job, now_ms),
        };
        // The job, and with it the password, is zeroed and freed here.
        drop(job);
        Answer {
            conn,
            login,
            outcome,
        }
    }

    fn outcome(&self, accounts: &Accounts, job: &Job, now_ms: u64) -> Outcome {
        match job {
            Job::Login { key, password, .. } => {
                let found = match accounts.find(key) {
                    Ok(found) => found,
                    Err(why) => return Outcome::Broken(why),
                };
                match found {
                    Some((name, hash))
                        if self.hasher.borrow_mut().verify(password.as_bytes(), &hash) =>
                    {
                        Outcome::LoggedIn(name)
                    }
                    Some(_) => Outcome::Failed,
                    None => {
                        // The same work as for a wrong password.
                        let dummy = self.dummy();
                        let _ = self.hasher.borrow_mut().verify(password.as_bytes(), dummy);
                        Outcome::Failed
                    }
                }
            }
            Job::Register {
                name,
                key,
                password,
                ..
            } => {
                match accounts.find(key) {
                    Ok(Some(_)) => return Outcome::Taken,
                    Ok(None) => {}
                    Err(why) => return Outcome::Broken(why),
                }
                let hash = match self
                    .hasher
                    .borrow_mut()
                    .hash(password.as_bytes(), self.cost)
                {
                    Ok(hash) => hash,
                    Err(why) => return Outcome::Broken(why),
                };
                match accounts.add(name, key, &hash, now_ms) {
                    Ok(true) => Outcome::Registered(name.clone()),
                    Ok(false) => Outcome::Taken,
                    Err(why) => Outcome::Broken(why),
                }
            }
        }
    }
}

/// Random bytes from the kernel, through the salt generator's source.
fn getrandom(buf: &mut [u8]) -> Result<(), ()> {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    OsRng.try_fill_bytes(buf).map_err(|_| ())
}

/// The loop's handle on the threads.
pub struct Pool {
    jobs: Option<SyncSender<Job>>,
    reports: Receiver<Report>,
    /// Dropped to stop the watcher.
    watch: Option<Sender<()>>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `threads` hashing threads (clamped to 1..=2) over `book`; with a
    /// database, a watcher too.
    pub fn start(
        book: Book,
        cost: Cost,
        threads: usize,
        waker: Arc<Waker>,
    ) -> std::io::Result<Pool> {
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(QUEUE);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (reports_tx, reports) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..threads.clamp(1, 2) {
            let (book, jobs, tx, waker, stopping) = (
                book.clone(),
                Arc::clone(&jobs_rx),
                reports_tx.clone(),
                Arc::clone(&waker),
                Arc::clone(&stopping),
            );
            handles.push(
                thread::Builder::new()
                    .name(format!("chat-hash-{i}"))
                    .spawn(move || hash_loop(&book, cost, &jobs, &tx, &waker, &stopping))?,
            );
        }
        let mut watch = None;
        if let Book::Db(_) = book {
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            watch = Some(stop_tx);
            handles.push(
                thread::Builder::new()
                    .name("chat-accounts".into())
                    .spawn(move || watch_loop(&book, &stop_rx, &reports_tx, &waker))?,
            );
        }
        Ok(Pool {
            jobs: Some(jobs_tx),
            reports,
            watch,
            stopping,
            threads: handles,
        })
    }

    /// Queues a job; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let Some(tx) = &self.jobs else {
            return Err(job);
        };
        tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }

    /// What the threads said since the last call.
    pub fn take(&self) -> impl Iterator<Item = Report> + '_ {
        self.reports.try_iter()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Jobs still queued are dropped unanswered: nobody is left to hear.
        self.stopping.store(true, Ordering::SeqCst);
        self.jobs = None;
        self.watch = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hash_loop(
    book: &Book,
    cost: Cost,
    jobs: &Mutex<Receiver<Job>>,
    reports: &Sender<Report>,
    waker: &Waker,
    stopping: &AtomicBool,
) {
    let worker = Worker::new(book, cost);
    loop {
        // The lock is held only while waiting; the other thread waits for
        // the lock meanwhile, which is the same as waiting for a job.
        let job = jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv_timeout(IDLE);
        let job = match job {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if worker.release() {
                    super::memory::give_back();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if stopping.load(Ordering::SeqCst) {
            continue;
        }
        let answer = worker.work(job, now_ms());
        let _ = reports.send(Report::Answer(answer));
        let _ = waker.wake();
    }
}

fn watch_loop(book: &Book, stop: &Receiver<()>, reports: &Sender<Report>, waker: &Waker) {
    let Ok(accounts) = book.open() else {
        return;
    };
    let mut seen = Seen {
        version: accounts.version().ok(),
        accounts: accounts.fingerprint().ok(),
        keys: accounts.keys().unwrap_or_default().into_iter().collect(),
    };
    loop {
        match stop.recv_timeout(WATCH_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        look_for_changes(&accounts, &mut seen, reports, waker);
    }
}

/// What the watcher last saw of the database.
struct Seen {
    version: Option<i64>,
    accounts: Option<(i64, i64)>,
    /// The keys at the last look. Each look reads a later state of the
    /// file than the one before, so a key missing now was deleted; the
    /// loop's own set cannot tell that, as a look begun before a
    /// `register` committed may reach it after the answer.
    keys: HashSet<String>,
}

/// Sends the loop every account key when another connection (`chat
/// account`, or the other hashing thread) changed the accounts.
fn look_for_changes(accounts: &Accounts, seen: &mut Seen, reports: &Sender<Report>, waker: &Waker) {
    let version = accounts.version().ok();
    if version == seen.version {
        return;
    }
    seen.version = version;
    // Most commits are history: the accounts are looked at, not sent.
    let fingerprint = accounts.fingerprint().ok();
    if fingerprint == seen.accounts {
        return;
    }
    seen.accounts = fingerprint;
    if let Ok(keys) = accounts.keys() {
        let now: HashSet<String> = keys.iter().cloned().collect();
        let deleted = seen.keys.difference(&now).cloned().collect();
        seen.keys = now;
        let _ = reports.send(Report::Keys { keys, deleted });
        let _ = waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(worker: &Worker, key: &str, password: &str) -> Outcome {
        let job = Job::Login {
            conn: Key::from_usize(0),
            key: key.into(),
            password: Zeroizing::new(password.into()),
        };
        worker.work(job, 0).outcome
    }

    #[test]
    fn register_then_login_right_and_wrong() {
        let worker = Worker::new(&Book::memory(), Cost::CHEAP);
        let register = |name: &str| Job::Register {
            conn: Key::from_usize(0),
            name: name.into(),
            key: name.to_ascii_lowercase(),
            password: Zeroizing::new("hunter2hunter2".into()),
        };
        assert_eq!(
            worker.work(register("Alice"), 1).outcome,
            Outcome::Registered("Alice".into())
        );
        assert_eq!(worker.work(register("ALICE"), 1).outcome, Outcome::Taken);
        assert_eq!(
            login(&worker, "alice", "hunter2hunter2"),
            Outcome::LoggedIn("Alice".into())
        );
        assert_eq!(login(&worker, "alice", "hunter3hunter3"), Outcome::Failed);
        assert_eq!(login(&worker, "bob", "hunter2hunter2"), Outcome::Failed);
        assert_eq!(login(&worker, "", "hunter2hunter2"), Outcome::Failed);
    }

    #[test]
    fn a_job_debug_shows_no_password() {
        let job = Job::Login {
            conn: Key::from_usize(3),
            key: "alice".into(),
            password: Zeroizing::new("Zebra-Quartz-77".into()),
        };
        assert!(!format!("{job:?}").contains("Zebra"));
    }
}
