//! The event loop: one thread, one epoll instance (through mio, which is
//! edge-triggered), and the table of open connections.
//!
//! A loop turn has three phases:
//!
//! 1. **Wait** for readiness, or for the next timer (flood control resuming
//!    a reader, a finished connection's linger running out), or not at all
//!    when a connection still has input left over from the last turn's read
//!    budget.
//! 2. **React**: accept until the listener would block; read each readable
//!    socket until it would block or its budget is spent, framing lines and
//!    handing them to the room, which queues the answers; note which sockets
//!    became writable.
//! 3. **Write**: write every connection with something queued, one
//!    `writev` covering all its messages of the turn. Connections that fell
//!    too far behind or failed are closed here, and so are finished ones
//!    (quit, or hung up) once all that was queued for them is written; what
//!    a departure tells the others is written in the same turn.
//!
//! Edge triggering means the kernel reports a socket once per change, so
//! every read, write and accept continues until `WouldBlock`; the read
//! budget only moves the rest of a flood to the next turn, it never drops a
//! readiness. A connection asks for WRITABLE only while it has bytes queued.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

/// Changes from the cluster applied per loop turn at most.
const CLUSTER_TURN: usize = 4096;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use super::accounts::{Book, Cost};
use super::cluster::{Backplane, In, NameAsk, Out};
use super::core::Ask;
use super::core::{self, Departure, Flow, Peer, Presence};
use super::deliver::{Door, Outlet, PRESENCE_DELAY};
use super::event::Event;
use super::flood::{Allowance, Limit};
use super::hashing::{Job, Pool, Report};
use super::http;
use super::hub::Hub;
use super::irc::door::{self as irc, Tick};
use super::log::EventLog;
use super::metrics::{self, Counts};
use super::persist::{Done, Opened, Persist};
use super::store::{Record, Stored};
use super::table::Key;
use super::tls::{Certs, Progress, Session};
use super::web_conn::{Got, HttpConn};
use super::ws;
use crate::framing::{Frame, LineReader};
use crate::interest::want_writable;
use crate::wire::{ErrorCode, LeaveReason, ServerMsg};

// Connection keys never reach these (see `table`).
const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);
const TLS_LISTENER: Token = Token(usize::MAX - 4);
const IRC_LISTENER: Token = Token(usize::MAX - 5);
const IRC_TLS_LISTENER: Token = Token(usize::MAX - 6);
const HTTP_LISTENER: Token = Token(usize::MAX - 7);
const HTTPS_LISTENER: Token = Token(usize::MAX - 8);
/// HTTP connections count down from here; connection keys never reach it
/// (their generation stays below `u32::MAX - 16`).
const HTTP_BASE: usize = usize::MAX - 1024;
/// At most this many HTTP requests are served at once; more wait in the
/// backlog.
const MAX_HTTP: usize = 64;

/// Reads of input after an HTTP answer (dropped) before the connection
/// is cut off.
const HTTP_DRAIN_READS: usize = 64;

/// One read; big, so a busy sender is served in few system calls.
const SCRATCH: usize = 256 * 1024;
/// Input taken from one connection per turn before the others get theirs.
const READ_BUDGET: usize = 1024 * 1024;
/// Connections accepted per turn before existing ones are served again.
const ACCEPT_BUDGET: usize = 1024;
/// How long shutdown waits for `bye` to be written to everyone.
const GRACE: Duration = Duration::from_secs(1);
/// When accepting fails for want of resources and no close wakes us first,
/// try again after this long (never spin on a listener that stays ready).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Batched receivers written at one presence tick from which the freed
/// heap is handed back to the kernel (a big room's storm of arrivals).
const TRIM_AFTER: usize = 1024;

/// How long a connection that is done (it quit, or closed its side) may
/// take to read what is still queued for it before it is closed anyway.
const LINGER: Duration = Duration::from_secs(10);

/// Ciphertext read from a TLS connection at once.
const TLS_READ: usize = 64 * 1024;

/// How long a TLS connection may take to finish its handshake: one that
/// stalls holds a descriptor and a session, so it is closed after this.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// What a connection is doing, as far as its socket is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Done: it sent `quit`, closed its side (a half-close), or the server
    /// is stopping. Input is ignored; the socket closes once everything
    /// queued has been written, or after [`LINGER`].
    Closing,
}

/// Something to do at a given time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Flood control: its allowance has room again; read it.
    Resume(Key),
    /// Its linger time is over: close it if it is still closing.
    Linger(Key),
    /// Batched presence is due (see `deliver`).
    Presence,
    /// Its TLS handshake must be done by now, or it is closed.
    Handshake(Key),
    /// An IRC connection's registration deadline or ping is due.
    Irc(Key),
    /// An HTTP request's deadline: close it if it is still there.
    Http(usize, u64),
}

/// A connection as the event loop sees it: the socket and its input side,
/// and the output queue. The core keeps it in its table beside the user.
///
/// The output queue comes first, in a fixed order: it is all a broadcast
/// touches, and a thousand receivers' queues then cost a thousand cache
/// lines rather than several thousand.
#[repr(C)]
pub struct Conn {
    outlet: Outlet,
    /// The small fields together, so that the record has no holes: an idle
    /// connection's whole cost is a few hundred bytes.
    stream: TcpStream,
    state: State,
    /// WRITABLE is registered: there were bytes the kernel would not take.
    writing: bool,
    /// A `Timer::Resume` is set for it.
    resuming: bool,
    /// Its `history` ask is with the store: nothing more is read from it
    /// until the answer is queued, so nothing it sends later is answered
    /// first.
    awaiting: bool,
    /// It came by the TLS listener: its bytes go through its session in
    /// [`EventLoop::sessions`]. A flag in what was padding, so that a
    /// plaintext connection pays nothing for TLS (a session is kilobytes).
    tls: bool,
    reader: LineReader,
    allowance: Allowance,
    /// Input read but not yet handled because the allowance ran out; never
    /// more than one (allowance-sized) read. Boxed: only a flooding
    /// connection has any, and the record costs 8 bytes for it, not 24.
    #[allow(clippy::box_collection)]
    held: Option<Box<Vec<u8>>>,
}

impl AsMut<Outlet> for Conn {
    fn as_mut(&mut self) -> &mut Outlet {
        &mut self.outlet
    }
}

/// Which listener a connection came by: its door, and whether TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Plain,
    Tls,
    Irc,
    IrcTls,
}

impl Entry {
    const ALL: [Entry; 4] = [Entry::Plain, Entry::Tls, Entry::Irc, Entry::IrcTls];

    fn tls(self) -> bool {
        matches!(self, Entry::Tls | Entry::IrcTls)
    }

    fn door(self) -> Door {
        match self {
            Entry::Plain | Entry::Tls => Door::JsonLines,
            Entry::Irc | Entry::IrcTls => Door::Irc,
        }
    }
}

/// Something with input left after its budget ran out.
#[derive(Clone, Copy)]
enum Again {
    Listener(Entry),
    Conn(Key),
}

/// The IRC listeners (`--listen-irc`, `--listen-irc-tls`); the TLS one
/// uses the certificate of `--listen-tls`.
#[derive(Default)]
pub struct Irc {
    pub plain: Option<TcpListener>,
    pub tls: Option<TcpListener>,
    /// `--listen-http`: health, metrics, the browser client and its WebSocket.
    pub http: Option<TcpListener>,
    /// `--listen-https`: the same over TLS, with the certificate of
    /// `--listen-tls`.
    pub https: Option<TcpListener>,
    /// `--http-origin`: empty, the page must come from the Host itself.
    pub origins: Vec<String>,
}

/// Everything the event loop is told at start.
pub struct Settings {
    pub max_line: usize,
    pub max_clients: usize,
    pub max_queue: usize,
    pub flood: Limit,
    pub core: core::Config,
    pub accounts: Accounts,
    /// `--cluster`: joined before the first connection.
    pub cluster: Option<super::cluster::Config>,
}

/// Where the accounts are and what the server allows of them.
pub struct Accounts {
    pub rules: core::AccountRules,
    pub book: Book,
    /// The keys of the accounts that exist at start.
    pub keys: Vec<String>,
    pub cost: Cost,
}

/// Asks a running server to stop, from any thread: it then says `bye` to
/// everyone and returns, as on SIGTERM.
#[derive(Clone)]
pub struct Stopper {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl Stopper {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

pub struct EventLoop {
    poll: Poll,
    /// The history store's threads; `None` with `--db none`.
    persist: Option<Persist>,
    /// A turn's records for the store.
    records: Vec<Record>,
    asks: Vec<Ask>,
    /// The threads that hash passwords.
    hashing: Pool,
    jobs: Vec<Job>,
    /// The last answer was the accounts database failing.
    accounts_failing: bool,
    listener: Option<TcpListener>,
    /// `--listen-tls`, with the certificate its sessions are made with.
    tls_listener: Option<TcpListener>,
    /// `--listen-irc` and `--listen-irc-tls`.
    irc_listener: Option<TcpListener>,
    irc_tls_listener: Option<TcpListener>,
    http_listener: Option<TcpListener>,
    https_listener: Option<TcpListener>,
    /// HTTP connections with their serial (so a deadline finds its own).
    http: slab::Slab<(u64, HttpConn)>,
    http_serial: u64,
    /// An HTTP connection closed: accept again (see `close_http`).
    http_resume: bool,
    /// The frame readers of the WebSocket connections.
    websockets: HashMap<Key, ws::Reader>,
    /// `--http-origin`: the pages allowed to open a WebSocket.
    origins: Vec<String>,
    counts: Counts,
    certs: Option<Certs>,
    /// The TLS sessions of the connections whose `tls` is set.
    sessions: HashMap<Key, Box<Session>>,
    /// Plaintext of one TLS record, on its way to the framing.
    plain: Vec<u8>,
    /// Where records are sealed before they are written: shared by every
    /// TLS connection, so that none keeps a buffer of its own.
    seal: Vec<u8>,
    signals: Option<SignalFd>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    hub: Hub<Conn>,
    log: EventLog,
    settings: Settings,
    scratch: Box<[u8]>,
    /// Held open so that, out of descriptors, we can still accept one
    /// connection to tell it `server_full` (see `accept`).
    spare: Option<File>,
    /// Accepting stopped for lack of resources; retried when a connection
    /// closes, or at this time.
    accept_paused: Option<Instant>,
    again: Vec<Again>,
    /// Connections to look at again later, soonest first.
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// A `Timer::Presence` is set.
    presence_due: bool,
    /// Many batched queues were written this turn: give freed memory back.
    trim_due: bool,
    dirty: Vec<Key>,
    server_full: Vec<u8>,
    shutdown_by: Option<Instant>,
    now_ms: u64,
    /// `--cluster`: the NATS thread's end; `None` on a server alone.
    cluster: Option<Backplane>,
    ops: Vec<super::cluster::Op>,
}

impl EventLoop {
    /// A loop serving `listener` and `tls` (a listener and the certificate
    /// for its sessions); with `signals`, SIGINT and SIGTERM stop it and
    /// SIGHUP reopens the log and reloads the certificate.
    pub fn new(
        listener: Option<TcpListener>,
        tls: Option<(TcpListener, Certs)>,
        irc: Irc,
        signals: Option<SignalFd>,
        log: EventLog,
        settings: Settings,
        history: Option<Opened>,
    ) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let mut listener = listener;
        if let Some(listener) = &mut listener {
            poll.registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        let (tls_listener, certs) = match tls {
            Some((mut tls_listener, certs)) => {
                poll.registry()
                    .register(&mut tls_listener, TLS_LISTENER, Interest::READABLE)?;
                (Some(tls_listener), Some(certs))
            }
            None => (None, None),
        };
        let Irc {
            plain: mut irc_listener,
            tls: mut irc_tls_listener,
            http: mut http_listener,
            https: mut https_listener,
            origins,
        } = irc;
        for (listener, token) in [
            (&mut irc_listener, IRC_LISTENER),
            (&mut irc_tls_listener, IRC_TLS_LISTENER),
            (&mut http_listener, HTTP_LISTENER),
            (&mut https_listener, HTTPS_LISTENER),
        ] {
            if let Some(listener) = listener {
                poll.registry()
                    .register(listener, token, Interest::READABLE)?;
            }
        }
        if let Some(signals) = &signals {
            poll.registry().register(
                &mut SourceFd(&signals.as_raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut server_full = Vec::new();
        ServerMsg::Error {
            code: ErrorCode::ServerFull,
            message: "the server is full; try again later".into(),
        }
        .encode(&mut server_full);
        let mut stored_seq = 0;
        let (hub, persist) = match history {
            None => (Hub::new(settings.core.clone(), settings.max_queue), None),
            Some(opened) => {
                let mut hub = Hub::stored(settings.core.clone(), settings.max_queue);
                stored_seq = opened.last_seq;
                hub.core.restore(opened.last_seq, opened.topics);
                let persist =
                    Persist::start(opened.store, opened.reader, opened.keep, Arc::clone(&waker))?;
                (hub, Some(persist))
            }
        };
        let mut hub = hub;
        let cluster = match &settings.cluster {
            Some(config) => {
                let backplane = Backplane::start(config.clone(), Arc::clone(&waker))
                    .map_err(io::Error::other)?;
                hub.core
                    .join_cluster(&backplane.instance, backplane.id_base);
                if persist.is_some() && backplane.first_seq > stored_seq + 1 {
                    eprintln!(
                        "chat server: the cluster's stream starts at {} but this server's history \
                         ends at {stored_seq}: messages in between aged out (--cluster-keep) and \
                         are missing from its history; it goes on from {}",
                        backplane.first_seq, backplane.first_seq
                    );
                }
                Some(backplane)
            }
            None => None,
        };
        let accounts = &settings.accounts;
        // In a cluster, the accounts are the cluster's, not the database's.
        let (book, keys) = match &cluster {
            Some(backplane) => (
                super::cluster::book::book(&backplane.shelf),
                super::accounts::Shelf::keys(&*backplane.shelf),
            ),
            None => (accounts.book.clone(), accounts.keys.clone()),
        };
        hub.core.set_accounts(accounts.rules, &keys);
        // Leave a core to the loop when there are few.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
        let hashing = Pool::start(book, accounts.cost, threads, Arc::clone(&waker))?;
        Ok(EventLoop {
            poll,
            persist,
            records: Vec::new(),
            asks: Vec::new(),
            hashing,
            jobs: Vec::new(),
            accounts_failing: false,
            listener,
            tls_listener,
            irc_listener,
            irc_tls_listener,
            http_listener,
            https_listener,
            http: slab::Slab::new(),
            http_serial: 0,
            http_resume: false,
            websockets: HashMap::new(),
            origins,
            counts: Counts {
                started: Some(Instant::now()),
                stored_seq,
                ..Counts::default()
            },
            certs,
            sessions: HashMap::new(),
            plain: Vec::new(),
            seal: Vec::new(),
            signals,
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            hub,
            log,
            settings,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            spare: open_spare(),
            accept_paused: None,
            again: Vec::new(),
            timers: BinaryHeap::new(),
            presence_due: false,
            trim_due: false,
            dirty: Vec::new(),
            server_full,
            shutdown_by: None,
            now_ms: now_ms(),
            cluster,
            ops: Vec::new(),
        })
    }

    /// A handle that stops this loop from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            waker: Arc::clone(&self.waker),
            stop: Arc::clone(&self.stop),
        }
    }

    /// Runs until a signal or the [`Stopper`] asks the server to stop and
    /// the goodbyes are written (or the grace period is over).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        // The cluster's state from before this server started, before
        // the first connection is accepted.
        while self.cluster.is_some() && self.on_cluster() == CLUSTER_TURN {}
        loop {
            let timeout = if !self.again.is_empty() {
                Some(Duration::ZERO)
            } else {
                let wakeup = self.timers.peek().map(|Reverse((at, _))| *at);
                [self.shutdown_by, self.accept_paused, wakeup]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|by| by.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now_ms = now_ms();
            let now = Instant::now();
            if self.accept_paused.is_some_and(|at| now >= at) {
                self.resume_accepting();
            }
            while let Some(&Reverse((at, timer))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                self.on_timer(timer);
            }
            for again in std::mem::take(&mut self.again) {
                match again {
                    Again::Listener(entry) => self.accept(entry),
                    Again::Conn(key) => self.read(key),
                }
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(Entry::Plain),
                    TLS_LISTENER => self.accept(Entry::Tls),
                    IRC_LISTENER => self.accept(Entry::Irc),
                    IRC_TLS_LISTENER => self.accept(Entry::IrcTls),
                    HTTP_LISTENER => self.accept_http(false),
                    HTTPS_LISTENER => self.accept_http(true),
                    Token(n) if n <= HTTP_BASE && n > HTTP_BASE - MAX_HTTP - 1 => {
                        self.serve_http(HTTP_BASE - n)
                    }
                    SIGNALS => self.on_signal(),
                    WAKER => {
                        self.on_store();
                        self.on_hashing();
                        let _ = self.on_cluster();
                        if self.stop.load(Ordering::SeqCst) {
                            self.begin_shutdown();
                        }
                    }
                    Token(n) => {
                        let key = Key::from_usize(n);
                        // Hang-ups and errors are found by reading.
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key);
                        }
                        if event.is_writable() {
                            self.hub.delivery.mark_dirty(&mut self.hub.core, key);
                        }
                    }
                }
            }
            while std::mem::take(&mut self.http_resume) {
                self.accept_http(false);
                self.accept_http(true);
            }
            self.publish();
            // After the releases `publish` handed over: a required login
            // claims the name a squatter here just gave back.
            self.send_claims();
            self.write();
            // From the end of the wait to here: what a turn costs.
            self.counts.turns.observe(now.elapsed());
            if let Some(by) = self.shutdown_by
                && (self.hub.core.is_empty() || Instant::now() >= by)
            {
                self.close_all();
                return Ok(());
            }
        }
    }

    /// Accepts on one listener.
    fn accept(&mut self, entry: Entry) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listener(entry) else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => self.admit(stream, addr, entry),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient_accept_error(&e) => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    if !self.refuse_with_spare(entry) {
                        // Nothing to refuse with: wait for a close rather
                        // than spin on a listener that stays ready.
                        self.pause_accepting();
                        return;
                    }
                }
                Err(e) => {
                    self.log
                        .say(&format!("accept failed: {e}; retrying shortly"));
                    self.pause_accepting();
                    return;
                }
            }
        }
        self.again.push(Again::Listener(entry));
    }

    /// Accepts HTTP connections (HTTPS with `tls`) while there is room
    /// for them.
    fn accept_http(&mut self, tls: bool) {
        while self.http.len() < MAX_HTTP {
            let listener = match tls {
                false => &self.http_listener,
                true => &self.https_listener,
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, addr)) => {
                    let session = match (tls, &self.certs) {
                        (false, _) => None,
                        (true, Some(certs)) => match Session::new(certs.config()) {
                            Ok(session) => Some(Box::new(session)),
                            Err(_) => continue,
                        },
                        (true, None) => continue,
                    };
                    let entry = self.http.vacant_entry();
                    let slot = entry.key();
                    let token = Token(HTTP_BASE - slot);
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.http_serial += 1;
                    let serial = self.http_serial;
                    entry.insert((serial, HttpConn::new(stream, addr, session)));
                    let by = Instant::now() + http::DEADLINE;
                    self.timers.push(Reverse((by, Timer::Http(slot, serial))));
                    // Data may have come with the connection.
                    self.serve_http(slot);
                }
                Err(e) if is_transient_accept_error(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// Reads an HTTP request; once its head is complete (or wrong), queues
    /// the answer and writes it as the socket takes it, or upgrades to a
    /// WebSocket.
    fn serve_http(&mut self, slot: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut reads = 0;
        let upgrade = loop {
            let Some((_, conn)) = self.http.get_mut(slot) else {
                self.scratch = scratch;
                return;
            };
            match conn.read(&mut scratch[..16 * 1024]) {
                // Input after the answer is dropped; a client that keeps
                // streaming it would hold the loop here, so it is cut off.
                Got::Input if conn.answered && reads >= HTTP_DRAIN_READS => {
                    self.scratch = scratch;
                    return self.close_http(slot);
                }
                Got::Input => reads += 1,
                Got::Blocked => break None,
                Got::End if conn.answered => {
                    // It may still read: the answer goes out first.
                    conn.peer_done = true;
                    break None;
                }
                Got::End | Got::Failed => {
                    self.scratch = scratch;
                    return self.close_http(slot);
                }
            }
            if conn.answered {
                continue;
            }
            let core = &self.hub.core;
            let mut counts = self.counts;
            counts.cluster = self.cluster.as_ref().map(|c| metrics::Cluster {
                published: c.published,
                published_bytes: c.published_bytes,
                received: c.received,
                up: !core.cluster_down(),
                servers: c.servers(),
            });
            let open = self.http.len();
            let Some((_, conn)) = self.http.get_mut(slot) else {
                break None;
            };
            let verdict = http::answer(&conn.input, &self.origins, || {
                for key in core.keys() {
                    // Those gone counted theirs on leaving.
                    counts.msgs_out += core.conn(key).map_or(0, |c| c.outlet.msgs_out);
                    if let Some(conn) = core.conn(key) {
                        counts.conns[door_index(conn.outlet.door)] += 1;
                    }
                }
                counts.rooms = core.room_count();
                counts.http_conns = open;
                counts
            });
            match verdict {
                http::Verdict::Answer(bytes) => {
                    self.counts.answered(&bytes);
                    conn.answer(&bytes);
                }
                http::Verdict::Upgrade { .. }
                    if self.hub.core.len() >= self.settings.max_clients =>
                {
                    let full = http::full();
                    self.counts.answered(&full);
                    conn.answer(&full);
                }
                http::Verdict::Upgrade { answer, used } => {
                    self.counts.answered(&answer);
                    break Some((answer, used));
                }
                http::Verdict::More => {}
            }
        };
        self.scratch = scratch;
        match upgrade {
            Some((answer, used)) => self.upgrade_http(slot, &answer, used),
            None => self.flush_http(slot),
        }
    }

    /// Writes an HTTP answer as far as the socket takes it; closes once it
    /// is written and the client is done.
    fn flush_http(&mut self, slot: usize) {
        let Some((_, conn)) = self.http.get_mut(slot) else {
            return;
        };
        let done = match conn.flush(&mut self.seal) {
            Ok(done) => done,
            Err(_) => return self.close_http(slot),
        };
        if done && conn.answered && conn.peer_done {
            return self.close_http(slot);
        }
        let token = Token(HTTP_BASE - slot);
        if want_writable(
            self.poll.registry(),
            &mut conn.stream,
            token,
            !done,
            &mut conn.writing,
        )
        .is_err()
        {
            self.close_http(slot);
        }
    }

    /// Moves a connection whose upgrade was accepted from the HTTP slab to
    /// the connection table.
    fn upgrade_http(&mut self, slot: usize, answer: &[u8], used: usize) {
        let (_, mut conn) = self.http.remove(slot);
        self.http_resume = true;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        // A fresh socket's send buffer takes the short 101; with TLS, the
        // records it does not take wait in the session, and go first.
        let written = match &mut conn.session {
            None => conn.stream.write_all(answer),
            Some(session) => session
                .writer(&mut conn.stream, &mut self.seal)
                .write_all(answer),
        };
        if written.is_err() {
            return;
        }
        let rest = conn.input.split_off(used.min(conn.input.len()));
        self.admit_websocket(conn.stream, conn.addr, conn.session, &rest);
    }

    /// A WebSocket upgraded from the HTTP listener joins the chat as any
    /// connection does; `rest` is what came after the upgrade request.
    fn admit_websocket(
        &mut self,
        stream: TcpStream,
        addr: SocketAddr,
        session: Option<Box<Session>>,
        rest: &[u8],
    ) {
        let tls = session.is_some();
        let _ = stream.set_nodelay(true);
        keep_alive(&stream);
        let conn = Conn {
            stream,
            outlet: Outlet::new(Door::WebSocket),
            reader: LineReader::new(0),
            state: State::Open,
            writing: false,
            allowance: Allowance::new(self.settings.flood, Instant::now()),
            held: None,
            resuming: false,
            awaiting: false,
            tls,
        };
        let key = self.hub.connect(Peer::new(addr, tls), self.now_ms, conn);
        self.websockets.insert(key, ws::Reader::default());
        if let Some(session) = session {
            self.sessions.insert(key, session);
        }
        if let Some(user) = self.hub.core.user(key) {
            self.log.connect(user.id, addr, self.now_ms);
        }
        let registered = match self.hub.core.conn_mut(key) {
            Some(conn) => self
                .poll
                .registry()
                .register(&mut conn.stream, Token(key.to_usize()), Interest::READABLE)
                .is_ok(),
            None => false,
        };
        if !registered {
            return self.close(key);
        }
        if !rest.is_empty() {
            self.input(key, rest, Instant::now());
        }
        // Input may wait in the socket already: edge triggering would not
        // say so again.
        self.again.push(Again::Conn(key));
    }

    fn close_http(&mut self, slot: usize) {
        if self.http.contains(slot) {
            let (_, mut conn) = self.http.remove(slot);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            // More may wait in the backlog now that there is room: accepted
            // at the end of the turn (accepting here could recurse).
            self.http_resume = true;
        }
    }

    fn listener(&self, entry: Entry) -> Option<&TcpListener> {
        match entry {
            Entry::Plain => self.listener.as_ref(),
            Entry::Tls => self.tls_listener.as_ref(),
            Entry::Irc => self.irc_listener.as_ref(),
            Entry::IrcTls => self.irc_tls_listener.as_ref(),
        }
    }

    /// Out of descriptors: give back the spare one, accept the waiting
    /// connection with it, tell it `server_full`, and take the spare again.
    /// Without this the connection would sit in the backlog, unanswered, and
    /// the listener would stay ready forever.
    fn refuse_with_spare(&mut self, entry: Entry) -> bool {
        let Some(spare) = self.spare.take() else {
            self.spare = open_spare();
            return false;
        };
        drop(spare);
        let refused = match self.listener(entry).map(|l| l.accept()) {
            Some(Ok((stream, _))) => {
                self.refuse(stream, entry);
                true
            }
            _ => false,
        };
        self.spare = open_spare();
        refused && self.spare.is_some()
    }

    fn admit(&mut self, stream: TcpStream, addr: SocketAddr, entry: Entry) {
        let tls = entry.tls();
        if self.hub.core.len() >= self.settings.max_clients {
            self.refuse(stream, entry);
            return;
        }
        let session = match (tls, &self.certs) {
            (false, _) => None,
            (true, Some(certs)) => match Session::new(certs.config()) {
                Ok(session) => Some(Box::new(session)),
                Err(_) => return self.refuse(stream, entry),
            },
            (true, None) => return self.refuse(stream, entry),
        };
        // Writes are already batched per turn; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        keep_alive(&stream);
        let conn = Conn {
            stream,
            outlet: Outlet::new(entry.door()),
            reader: LineReader::new(match entry.door() {
                Door::JsonLines | Door::WebSocket => self.settings.max_line,
                Door::Irc => irc::MAX_INPUT,
            }),
            state: State::Open,
            writing: false,
            allowance: Allowance::new(self.settings.flood, Instant::now()),
            held: None,
            resuming: false,
            awaiting: false,
            tls,
        };
        let peer = Peer::new(addr, tls);
        let key = match entry.door() {
            Door::JsonLines | Door::WebSocket => self.hub.connect(peer, self.now_ms, conn),
            Door::Irc => {
                let key = self.hub.admit_irc(peer, self.now_ms, conn);
                let at = Instant::now() + Duration::from_millis(irc::REGISTER_WITHIN_MS);
                self.timers.push(Reverse((at, Timer::Irc(key))));
                key
            }
        };
        if let Some(session) = session {
            self.sessions.insert(key, session);
            let by = Instant::now() + HANDSHAKE_DEADLINE;
            self.timers.push(Reverse((by, Timer::Handshake(key))));
        }
        if let Some(user) = self.hub.core.user(key) {
            self.log.connect(user.id, addr, self.now_ms);
        }
        let registered = match self.hub.core.conn_mut(key) {
            Some(conn) => self
                .poll
                .registry()
                .register(&mut conn.stream, Token(key.to_usize()), Interest::READABLE)
                .is_ok(),
            None => false,
        };
        if !registered {
            self.close(key);
        }
    }

    /// Sends `server_full` as the connection's only line and closes it;
    /// a TLS one is just closed (no session is spent on a refusal).
    fn refuse(&mut self, mut stream: TcpStream, entry: Entry) {
        if entry.tls() {
            return;
        }
        // A fresh socket's send buffer is empty, so this short line fits.
        let _ = match entry.door() {
            Door::JsonLines | Door::WebSocket => stream.write(&self.server_full),
            Door::Irc => stream.write(irc::SERVER_FULL),
        };
        let _ = stream.shutdown(Shutdown::Write);
        // Unread input would make close() send a reset, which can destroy
        // the line before the client reads it.
        let _ = stream.read(&mut self.scratch[..4096]);
    }

    /// Reads and handles what `key` sent, until the socket would block,
    /// the turn's budget is spent, or flood control pauses it.
    fn read(&mut self, key: Key) {
        let now = Instant::now();
        let limit = self.settings.flood;
        let Some(conn) = self.hub.core.conn_mut(key) else {
            return;
        };
        if conn.state != State::Open || conn.awaiting {
            return;
        }
        let tls = conn.tls;
        // A connection over its allowance waits for its wake-up, whatever
        // arrives meanwhile.
        if !conn.allowance.has_room(limit, now) {
            resume_later(conn, key, limit, &mut self.timers);
            return;
        }
        if let Some(held) = conn.held.take()
            && !self.input(key, &held, now)
        {
            return;
        }
        if tls {
            return self.read_sealed(key, now);
        }
        let mut budget = READ_BUDGET;
        loop {
            let Some(conn) = self.hub.core.conn_mut(key) else {
                return;
            };
            let size = conn.allowance.read_size(limit, SCRATCH);
            let mut scratch = std::mem::take(&mut self.scratch);
            let result = conn.stream.read(&mut scratch[..size]);
            let go_on = match result {
                Ok(0) => {
                    // The peer is done sending (a last line without `\n` is
                    // dropped, as the protocol says). It may still be
                    // reading: what is queued for it goes out first.
                    self.hub.depart(key, LeaveReason::Disconnect, self.now_ms);
                    self.finish(key);
                    false
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.input(key, &scratch[..n], now)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
                Err(_) => {
                    self.close(key);
                    false
                }
            };
            self.scratch = scratch;
            if !go_on {
                return;
            }
            if budget == 0 {
                self.again.push(Again::Conn(key));
                return;
            }
        }
    }

    /// [`EventLoop::read`] for a TLS connection: records already read are
    /// opened first, one at a time, each record's plaintext handled as a
    /// plaintext connection's read is; then the socket is read, until it
    /// would block, the budget is spent or the reader pauses (what is not
    /// processed stays in the session, and the reader's wake-up finds it).
    fn read_sealed(&mut self, key: Key, now: Instant) {
        let mut budget = READ_BUDGET;
        loop {
            let (Some(conn), Some(session)) =
                (self.hub.core.conn_mut(key), self.sessions.get_mut(&key))
            else {
                return self.close(key);
            };
            let mut plain = std::mem::take(&mut self.plain);
            plain.clear();
            let handshaking = session.is_handshaking();
            let progress = session.advance(&mut conn.stream, &mut plain);
            if session.wants_write() || (handshaking && !session.is_handshaking()) {
                // Handshake records the socket did not take, or the
                // handshake is done and what was queued meanwhile can go.
                self.hub.delivery.mark_dirty(&mut self.hub.core, key);
            }
            let go_on = match progress {
                Ok(Progress::Data) => {
                    budget = budget.saturating_sub(plain.len());
                    self.input(key, &plain, now)
                }
                Ok(Progress::NeedInput) => self.read_records(key),
                Ok(Progress::Closed) => {
                    self.hub.depart(key, LeaveReason::Disconnect, self.now_ms);
                    self.finish(key);
                    false
                }
                Err(_) => {
                    // Not TLS, or TLS gone wrong: the alert is sent.
                    self.close(key);
                    false
                }
            };
            self.plain = plain;
            if !go_on {
                return;
            }
            if budget == 0 {
                self.again.push(Again::Conn(key));
                return;
            }
        }
    }

    /// Reads records from a TLS connection's socket into its session;
    /// whether there is more to process (not at `WouldBlock`, nor at the
    /// end, which is handled here).
    fn read_records(&mut self, key: Key) -> bool {
        let (Some(conn), Some(session)) =
            (self.hub.core.conn_mut(key), self.sessions.get_mut(&key))
        else {
            return false;
        };
        // Records are at most 16 KiB; a few at a time keep the session's
        // buffer small.
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = conn.stream.read(&mut scratch[..TLS_READ]);
        let go_on = match result {
            // Gone before the handshake was done: nothing can reach it.
            Ok(0) if session.is_handshaking() => {
                self.close(key);
                false
            }
            Ok(0) => {
                self.hub.depart(key, LeaveReason::Disconnect, self.now_ms);
                self.finish(key);
                false
            }
            Ok(n) => {
                session.take_input(&scratch[..n]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => {
                self.close(key);
                false
            }
        };
        self.scratch = scratch;
        go_on
    }

    /// Handles input by its door's framing.
    fn input(&mut self, key: Key, input: &[u8], now: Instant) -> bool {
        if self.websockets.contains_key(&key) {
            self.handle_frames(key, input, now)
        } else {
            self.handle_input(key, input, now)
        }
    }

    /// [`EventLoop::handle_input`] for a WebSocket: each text frame is a
    /// line; pings are answered; a frame the door refuses closes it with
    /// the code that says why.
    fn handle_frames(&mut self, key: Key, input: &[u8], now: Instant) -> bool {
        let limit = self.settings.flood;
        let max_line = self.settings.max_line;
        let Some(conn) = self.hub.core.conn_mut(key) else {
            return false;
        };
        if !conn.allowance.has_room(limit, now) {
            conn.held.get_or_insert_default().extend_from_slice(input);
            resume_later(conn, key, limit, &mut self.timers);
            return false;
        }
        let Some(mut reader) = self.websockets.remove(&key) else {
            return false;
        };
        let mut flow = Flow::Continue;
        let mut pongs = Vec::new();
        let mut close = None;
        let mut stopped = false;
        let hub = &mut self.hub;
        let now_ms = self.now_ms;
        let msgs_in = &mut self.counts.msgs_in[door_index(Door::WebSocket)];
        reader.feed(input, max_line, |input| match input {
            ws::Input::Text(text) => {
                *msgs_in += 1;
                flow = hub.line(key, text.as_bytes(), now_ms);
                let Some(conn) = hub.core.conn_mut(key) else {
                    return false;
                };
                conn.allowance.spend(limit);
                let go = flow == Flow::Continue
                    && conn.allowance.has_room(limit, now)
                    && !hub.core.has_asks()
                    && !hub.core.has_jobs()
                    && !hub.core.has_claims();
                stopped = !go;
                go
            }
            ws::Input::Ping(payload) => {
                pongs.push(payload);
                // A ping costs what a message does: a ping flood is slowed
                // by not reading, as a line flood is.
                let Some(conn) = hub.core.conn_mut(key) else {
                    return false;
                };
                conn.allowance.spend(limit);
                let go = conn.allowance.has_room(limit, now);
                stopped = !go;
                go
            }
            ws::Input::Close(code) => {
                close = Some(code);
                false
            }
        });
        let rest = if stopped {
            reader.take_rest()
        } else {
            Vec::new()
        };
        self.websockets.insert(key, reader);
        self.send_asks();
        self.send_jobs();
        self.send_claims();
        for payload in pongs {
            self.hub
                .delivery
                .answer(&mut self.hub.core, key, |out| ws::pong(&payload, out));
        }
        if let Some(code) = close {
            self.hub
                .delivery
                .answer(&mut self.hub.core, key, |out| ws::close(code, out));
            self.hub.depart(key, LeaveReason::Disconnect, self.now_ms);
            self.finish(key);
            return false;
        }
        if flow == Flow::Close {
            self.hub
                .delivery
                .answer(&mut self.hub.core, key, |out| ws::close(ws::NORMAL, out));
            self.finish(key);
            return false;
        }
        let Some(conn) = self.hub.core.conn_mut(key) else {
            return false;
        };
        let paused = stopped;
        if paused {
            conn.held.get_or_insert_default().extend_from_slice(&rest);
        }
        if !conn.allowance.has_room(limit, now) {
            resume_later(conn, key, limit, &mut self.timers);
        }
        if self.hub.delivery.has_over() {
            self.relieve();
        }
        !paused && self.hub.core.conn(key).is_some_and(|c| !c.awaiting)
    }

    /// Frames and handles input. Returns whether to go on reading: not after
    /// `quit`, nor when the allowance ran out (the rest is held, and a
    /// wake-up is set for when the allowance allows more).
    fn handle_input(&mut self, key: Key, input: &[u8], now: Instant) -> bool {
        let limit = self.settings.flood;
        let max_line = self.settings.max_line;
        let Some(conn) = self.hub.core.conn_mut(key) else {
            return false;
        };
        if !conn.allowance.has_room(limit, now) {
            conn.held.get_or_insert_default().extend_from_slice(input);
            resume_later(conn, key, limit, &mut self.timers);
            return false;
        }
        // The reader is lent out while its lines are handled: handling
        // reaches into the table that holds it.
        let mut reader = std::mem::replace(&mut conn.reader, LineReader::new(0));
        let door = door_index(conn.outlet.door);
        let mut flow = Flow::Continue;
        let hub = &mut self.hub;
        let now_ms = self.now_ms;
        let msgs_in = &mut self.counts.msgs_in[door];
        let consumed = reader.feed(input, |frame| {
            match frame {
                Frame::Line(line) => {
                    *msgs_in += 1;
                    flow = hub.line(key, line, now_ms)
                }
                Frame::TooLong => hub.line_too_long(key, max_line),
            }
            let Some(conn) = hub.core.conn_mut(key) else {
                return false;
            };
            conn.allowance.spend(limit);
            flow == Flow::Continue
                && conn.allowance.has_room(limit, now)
                && !hub.core.has_asks()
                && !hub.core.has_jobs()
                && !hub.core.has_claims()
        });
        self.send_asks();
        self.send_jobs();
        self.send_claims();
        let Some(conn) = self.hub.core.conn_mut(key) else {
            return false;
        };
        conn.reader = reader;
        if flow == Flow::Close {
            self.finish(key);
            return false;
        }
        let paused = consumed < input.len();
        if paused {
            conn.held
                .get_or_insert_default()
                .extend_from_slice(&input[consumed..]);
        }
        if !conn.allowance.has_room(limit, now) {
            // Whether or not input is held, more may wait in the socket, and
            // no new readiness will come for it: come back when allowed.
            resume_later(conn, key, limit, &mut self.timers);
        }
        if self.hub.delivery.has_over() {
            self.relieve();
        }
        !paused && self.hub.core.conn(key).is_some_and(|c| !c.awaiting)
    }

    /// Keeps `history` asks for the store, which gets them at the end of
    /// the turn after the turn's messages; their askers are not read until
    /// the answer is queued.
    fn send_asks(&mut self) {
        if !self.hub.core.has_asks() {
            return;
        }
        let mut asks = Vec::new();
        self.hub.core.take_asks(&mut asks);
        for ask in asks {
            if let Some(conn) = self.hub.core.conn_mut(ask.key) {
                conn.awaiting = true;
                self.asks.push(ask);
            }
        }
    }

    /// Hands `register` and `login` to the hashing threads; the sender is
    /// not read until the answer is queued, so its later lines keep their
    /// order. A full queue is answered at once ("busy").
    fn send_jobs(&mut self) {
        if !self.hub.core.has_jobs() {
            return;
        }
        let mut jobs = std::mem::take(&mut self.jobs);
        self.hub.core.take_jobs(&mut jobs);
        for job in jobs.drain(..) {
            let key = job.conn();
            match self.hashing.submit(job) {
                Ok(()) => {
                    if let Some(conn) = self.hub.core.conn_mut(key) {
                        conn.awaiting = true;
                    }
                }
                Err(job) => self.hub.job_refused(&job, self.now_ms),
            }
        }
        self.jobs = jobs;
    }

    /// The hashing threads answered: the answers are queued and their
    /// connections read again.
    fn on_hashing(&mut self) {
        let reports: Vec<Report> = self.hashing.take().collect();
        for report in reports {
            match report {
                Report::Keys { keys, deleted } => {
                    self.hub.accounts_changed(&keys, &deleted, self.now_ms)
                }
                Report::Answer(answer) => {
                    // Said once per spell of failures, as storing history is.
                    let broken = matches!(answer.outcome, super::hashing::Outcome::Broken(_));
                    if let super::hashing::Outcome::Broken(why) = &answer.outcome
                        && !self.accounts_failing
                    {
                        eprintln!("chat server: accounts: {why}");
                    }
                    self.accounts_failing = broken;
                    if answer.login && matches!(answer.outcome, super::hashing::Outcome::Failed) {
                        self.counts.failed_logins += 1;
                    }
                    let key = answer.conn;
                    if let Some(user) = self.hub.core.user(key) {
                        use super::hashing::Outcome as O;
                        let action = if answer.login { "login" } else { "register" };
                        let account = match &answer.outcome {
                            O::Registered(name) | O::LoggedIn(name) => Some(name.as_str()),
                            O::Taken | O::Failed | O::Broken(_) => None,
                        };
                        let (id, addr) = (user.id, user.peer.addr());
                        self.log.account(id, addr, action, account, self.now_ms);
                    }
                    self.hub.answer_job(answer, self.now_ms);
                    if let Some(conn) = self.hub.core.conn_mut(key) {
                        conn.awaiting = false;
                        self.again.push(Again::Conn(key));
                    }
                }
            }
        }
    }

    /// The store's threads said something: commits release what waited
    /// for them, answers to `history` are queued and their askers read
    /// again.
    /// What the cluster's thread brought: changes in stream order,
    /// private messages, NATS lost or back.
    fn on_cluster(&mut self) -> usize {
        if self.cluster.is_none() {
            return 0;
        }
        let mut dropped = false;
        let mut taken = 0;
        // A bounded turn, so that clients are read meanwhile; the rest
        // waits for the next turn (see the wake below).
        while taken < CLUSTER_TURN {
            let Some(got) = self.cluster.as_mut().and_then(|c| c.try_recv()) else {
                break;
            };
            taken += 1;
            match got {
                In::Op {
                    seq,
                    mine,
                    from,
                    op,
                } => {
                    if self.hub.apply_cluster(&from, mine, seq, op, self.now_ms)
                        == core::Applied::DroppedMe
                    {
                        dropped = true;
                    }
                }
                In::Private(private) => self.hub.private_from_cluster(private),
                In::Claimed { ask, ok } => {
                    let key = Key::from_usize(ask.token);
                    let claim = core::Claim {
                        key,
                        id: ask.id,
                        nick: ask.nick,
                        name: ask.name,
                        arrival: ask.arrival,
                    };
                    self.hub.claimed(claim, ok, self.now_ms);
                    if let Some(conn) = self.hub.core.conn_mut(key) {
                        conn.awaiting = false;
                        self.again.push(Again::Conn(key));
                    }
                }
                In::Registered(key) => self.hub.core.add_registered(&key),
                In::Unregistered(key) => self.hub.account_deleted(&key, self.now_ms),
                In::Up(up) => {
                    self.log.say(if up {
                        "chat server: NATS is back; the cluster resumes"
                    } else {
                        "chat server: lost NATS; serving local users in degraded mode"
                    });
                    self.hub.set_cluster_down(!up);
                }
            }
        }
        if dropped {
            self.log.say(
                "chat server: the cluster declared this server gone; its users must reconnect",
            );
            for key in self.hub.drop_locals(self.now_ms) {
                self.finish(key);
            }
        }
        if self.hub.delivery.has_over() {
            self.relieve();
        }
        // More may wait than one turn takes.
        if taken == CLUSTER_TURN {
            let _ = self.waker.wake();
        }
        taken
    }

    /// Hands renames to the cluster's name table; the sender is not read
    /// until the answer is queued, so its later lines keep their order.
    fn send_claims(&mut self) {
        if !self.hub.core.has_claims() {
            return;
        }
        for claim in self.hub.core.take_claims() {
            if let Some(conn) = self.hub.core.conn_mut(claim.key) {
                conn.awaiting = true;
            }
            if let Some(cluster) = &mut self.cluster {
                cluster.send(Out::Claim {
                    ask: NameAsk {
                        token: claim.key.to_usize(),
                        id: claim.id,
                        nick: claim.nick,
                        name: claim.name,
                        arrival: claim.arrival,
                    },
                });
            }
        }
    }

    /// Hands this turn's changes to the cluster's thread, in order.
    fn publish(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        // Names first: by the time the others see a leave or a rename,
        // the name it gave up is free in the name table.
        for release in self.hub.core.take_releases() {
            cluster.send(Out::Release(release));
        }
        self.hub.core.take_ops(&mut self.ops);
        for op in self.ops.drain(..) {
            cluster.send(Out::Op(op));
        }
        for (instance, private) in self.hub.core.take_privates() {
            cluster.send(Out::Private {
                instance: instance.as_ref().into(),
                private,
            });
        }
    }

    fn on_store(&mut self) {
        let Some(persist) = &self.persist else {
            return;
        };
        let done: Vec<Done> = persist.take().collect();
        for done in done {
            match done {
                Done::Committed(seq) => {
                    self.counts.stored_seq = self.counts.stored_seq.max(seq);
                    self.hub.delivery.release(&mut self.hub.core, seq)
                }
                Done::Failed(why) => self.log.store_failed(&why, self.now_ms),
                Done::Recovered => self.log.store_recovered(self.now_ms),
                Done::History {
                    ask,
                    messages,
                    more,
                } => {
                    self.hub.answer_history(&ask, messages, more);
                    if let Some(conn) = self.hub.core.conn_mut(ask.key) {
                        conn.awaiting = false;
                        self.again.push(Again::Conn(ask.key));
                    }
                }
            }
        }
    }

    /// Some queues went past `--max-queue`: write to them now, since what
    /// the kernel takes was never pending here, and drop as slow whoever
    /// is still over. Called after every chunk of input, so a queue is
    /// judged at most one read's worth of fan-out past its limit.
    fn relieve(&mut self) {
        let over = self.hub.delivery.over().to_vec();
        for key in over {
            self.flush(key);
        }
        for key in self.hub.drop_slow(self.now_ms) {
            self.counts.dropped_slow += 1;
            self.close(key);
        }
    }

    fn on_signal(&mut self) {
        loop {
            let Some(signals) = &self.signals else {
                return;
            };
            let Ok(Some(info)) = signals.read_signal() else {
                return;
            };
            if info.ssi_signo == Signal::SIGHUP as u32 {
                // Log rotation: the old file was moved away; start a new one.
                self.log.reopen();
                // Certificate renewal: new handshakes use the new pair.
                if let Some(certs) = &mut self.certs {
                    match certs.reload() {
                        Ok(()) => self.log.say(&format!(
                            "chat server: TLS certificate reloaded from {}",
                            certs.cert_path().display()
                        )),
                        Err(why) => {
                            eprintln!(
                                "chat server: {why}; still using the certificate loaded before"
                            )
                        }
                    }
                }
            } else {
                self.begin_shutdown();
            }
        }
    }

    /// Stops accepting and says `bye` to everyone; `run` ends once that is
    /// written or the grace period is over.
    fn begin_shutdown(&mut self) {
        if self.shutdown_by.is_some() {
            return;
        }
        for mut listener in [
            self.listener.take(),
            self.tls_listener.take(),
            self.irc_listener.take(),
            self.irc_tls_listener.take(),
            self.http_listener.take(),
            self.https_listener.take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.again.clear();
        self.hub.shutdown();
        for key in self.hub.core.keys() {
            if let Some(conn) = self.hub.core.conn_mut(key) {
                conn.state = State::Closing;
            }
        }
        self.shutdown_by = Some(Instant::now() + GRACE);
    }

    /// Phase three of a turn: see the module comment.
    fn write(&mut self) {
        loop {
            self.relieve();
            let mut dirty = std::mem::take(&mut self.dirty);
            self.hub.delivery.take_dirty(&mut self.hub.core, &mut dirty);
            if dirty.is_empty() {
                self.dirty = dirty;
                break;
            }
            for &key in &dirty {
                self.flush(key);
            }
            self.dirty = dirty;
        }
        for event in self.hub.journal.drain(..) {
            match event {
                Event::Nick { id, old, new, ts } => {
                    self.log.rename(id, old.as_str(), new.as_str(), ts);
                }
                Event::Group {
                    room,
                    seq,
                    from,
                    text,
                    ts,
                    action,
                } if self.persist.is_some() => self.records.push(Record::Message(Stored {
                    seq,
                    room: room.as_str().into(),
                    from: from.as_str().into(),
                    text: text.into(),
                    ts,
                    action,
                })),
                Event::Topic { room, by, text, ts } if self.persist.is_some() => {
                    self.records.push(Record::Topic {
                        room: room.as_str().into(),
                        by: by.as_str().into(),
                        text: text.as_ref().into(),
                        ts,
                    });
                }
                _ => {}
            }
        }
        if let Some(persist) = &self.persist
            && (!self.records.is_empty() || !self.asks.is_empty())
        {
            persist.store(std::mem::take(&mut self.records), &mut self.asks);
        }
        self.log.flush();
        if std::mem::take(&mut self.trim_due) {
            self.hub.shrink();
            // Only scratch between turns: the list last written.
            self.dirty.clear();
            self.dirty.shrink_to(super::deliver::KEEP_LISTED);
            super::memory::give_back();
        }
        if self.hub.delivery.has_batched() && !self.presence_due {
            self.presence_due = true;
            let at = Instant::now() + PRESENCE_DELAY;
            self.timers.push(Reverse((at, Timer::Presence)));
        }
    }

    fn flush(&mut self, key: Key) {
        let Some(conn) = self.hub.core.conn_mut(key) else {
            return;
        };
        let queued = conn.outlet.out.len();
        let (written, sealed) = match conn.tls {
            false => (conn.outlet.out.write_to(&mut conn.stream), false),
            true => match self.sessions.get_mut(&key) {
                Some(tls) => {
                    let written = tls
                        .write(&mut conn.stream, &mut conn.outlet.out, &mut self.seal)
                        .map(|()| 0);
                    (written, tls.wants_write())
                }
                None => (Err(io::ErrorKind::NotConnected.into()), false),
            },
        };
        self.counts.bytes_out += (queued - conn.outlet.out.len().min(queued)) as u64;
        if written.is_err() {
            self.close(key);
            return;
        }
        // With TLS, encrypted records may wait as well as slices.
        let pending = !conn.outlet.out.is_empty() || sealed;
        let registry = self.poll.registry();
        if want_writable(
            registry,
            &mut conn.stream,
            Token(key.to_usize()),
            pending,
            &mut conn.writing,
        )
        .is_err()
        {
            self.close(key);
            return;
        }
        if !pending && conn.state == State::Closing && !conn.outlet.awaits_store() {
            self.close(key);
        }
    }

    /// The connection is done (quit or hung up): it closes once its queue is
    /// written, or after [`LINGER`] if it does not read.
    fn finish(&mut self, key: Key) {
        let Some(conn) = self.hub.core.conn_mut(key) else {
            return;
        };
        conn.state = State::Closing;
        if conn.outlet.out.is_empty() && !conn.outlet.awaits_store() {
            self.close(key);
        } else {
            self.timers
                .push(Reverse((Instant::now() + LINGER, Timer::Linger(key))));
            self.hub.delivery.mark_dirty(&mut self.hub.core, key);
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Resume(key) => {
                if let Some(conn) = self.hub.core.conn_mut(key) {
                    conn.resuming = false;
                    self.again.push(Again::Conn(key));
                }
            }
            Timer::Linger(key) => {
                let closing = self
                    .hub
                    .core
                    .conn(key)
                    .is_some_and(|c| c.state == State::Closing);
                if closing {
                    self.close(key);
                }
            }
            Timer::Http(slot, serial) => {
                if self.http.get(slot).is_some_and(|(s, _)| *s == serial) {
                    self.close_http(slot);
                }
            }
            Timer::Irc(key) => match self.hub.irc_tick(key, self.now_ms) {
                Tick::Again(ms) => {
                    let at = Instant::now() + Duration::from_millis(ms);
                    self.timers.push(Reverse((at, Timer::Irc(key))));
                }
                Tick::Close => {
                    self.hub.depart(key, LeaveReason::Disconnect, self.now_ms);
                    self.finish(key);
                }
            },
            Timer::Handshake(key) => {
                let stalled = self.sessions.get(&key).is_some_and(|t| t.is_handshaking());
                if stalled {
                    self.close(key);
                }
            }
            Timer::Presence => {
                self.presence_due = false;
                let released = self.hub.delivery.release_batched(&mut self.hub.core);
                // A storm of arrivals in a big room leaves the heap full
                // of holes once everyone's batch is written; hand them
                // back after this turn's writes, so that idle connections
                // cost what they hold, not what the storm held.
                self.trim_due |= released >= TRIM_AFTER;
            }
        }
    }

    /// Closes a connection and forgets it: the one place a key is freed.
    fn close(&mut self, key: Key) {
        let Some((user, mut conn)) = self.hub.remove(key, self.now_ms) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.websockets.remove(&key);
        if conn.tls
            && let Some(mut tls) = self.sessions.remove(&key)
        {
            // Says the end was meant (best effort: the socket may be full).
            tls.close(&mut conn.stream);
        }
        if self.sessions.capacity() > 64 && self.sessions.len() * 4 < self.sessions.capacity() {
            // After a crowd of TLS connections left.
            self.sessions.shrink_to_fit();
        }
        let why = match user.presence {
            Presence::Gone(why) => why,
            Presence::Here | Presence::Waiting => Departure::Left(LeaveReason::Disconnect),
        };
        self.counts.msgs_out += conn.outlet.msgs_out;
        self.log
            .disconnect(&user, conn.outlet.msgs_out, why, self.now_ms);
        drop(conn);
        self.resume_accepting();
    }

    fn pause_accepting(&mut self) {
        self.accept_paused = Some(Instant::now() + ACCEPT_RETRY);
    }

    fn resume_accepting(&mut self) {
        if self.accept_paused.take().is_some() {
            for entry in Entry::ALL {
                self.again.push(Again::Listener(entry));
            }
        }
    }

    fn close_all(&mut self) {
        for key in self.hub.core.keys() {
            self.close(key);
        }
        self.log.flush();
    }
}

/// A door's place in [`Counts`]'s arrays (see `metrics::DOORS`).
fn door_index(door: Door) -> usize {
    match door {
        Door::JsonLines => 0,
        Door::Irc => 1,
        Door::WebSocket => 2,
    }
}

/// Has the kernel probe an idle connection, so a peer that vanished
/// without a FIN or RST (power loss, a dead NAT entry) is found and
/// reaped: after 60 s of silence, a probe every 10 s, gone after 6
/// unanswered, about two minutes in all.
fn keep_alive(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &60);
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &10);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &6);
}

/// Sets a timer to read `conn` again when its allowance has room (once:
/// readiness that arrives meanwhile must not pile up timers).
fn resume_later(
    conn: &mut Conn,
    key: Key,
    limit: Limit,
    timers: &mut BinaryHeap<Reverse<(Instant, Timer)>>,
) {
    if !conn.resuming {
        conn.resuming = true;
        timers.push(Reverse((
            conn.allowance.ready_at(limit),
            Timer::Resume(key),
        )));
    }
}

/// Accept errors that concern one connection, not the listener.
fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::ECONNABORTED | libc_errno::EPROTO | libc_errno::EPERM)
    ) || e.kind() == io::ErrorKind::Interrupted
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE)
    )
}

/// errno values, from nix so we need no `libc` dependency of our own.
mod libc_errno {
    use nix::errno::Errno;
    pub const ECONNABORTED: i32 = Errno::ECONNABORTED as i32;
    pub const EPROTO: i32 = Errno::EPROTO as i32;
    pub const EPERM: i32 = Errno::EPERM as i32;
    pub const EMFILE: i32 = Errno::EMFILE as i32;
    pub const ENFILE: i32 = Errno::ENFILE as i32;
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plaintext connection pays nothing for TLS: its flag sits where
    /// the record had padding, and sessions live beside the table.
    #[test]
    fn a_connection_pays_nothing_for_tls() {
        #[repr(C)]
        struct Without {
            outlet: Outlet,
            stream: TcpStream,
            state: State,
            writing: bool,
            resuming: bool,
            awaiting: bool,
            reader: LineReader,
            allowance: Allowance,
            #[allow(clippy::box_collection)]
            held: Option<Box<Vec<u8>>>,
        }
        assert_eq!(std::mem::size_of::<Conn>(), std::mem::size_of::<Without>());
    }
}
