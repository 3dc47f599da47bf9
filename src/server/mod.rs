//! `chat server`: the process-wide set-up around the event loop, and
//! [`Server`], the same loop as a library.
//!
//! Read it as codec -> core -> events -> writers:
//!
//! - [`json`]: the JSON-lines door; a line in becomes a core
//!   [`Command`](core::Command), an event out becomes a line. Another
//!   door ([`irc`]; the WebSocket door, `ws`) is a module beside it.
//! - [`core`]: users, names, rooms and who hears what, in no protocol and
//!   without sockets; it emits [`event`]s with their receivers.
//! - [`event`]: the event stream the core emits, which the writers, the
//!   connection log (and a history store, a cluster backplane) read.
//! - [`hub`]: door, core and delivery wired together, without sockets:
//!   what the event loop drives, and what tests and fuzzers drive.
//! - [`deliver`]: events into queues, encoded once per protocol; slow
//!   readers; presence batched for big rooms; group messages held until
//!   stored.
//! - [`store`]: the history database (SQLite), its schema and queries;
//!   `persist`: the writer and reader threads around it, so the loop
//!   never waits on the disk.
//! - [`outq`]: encode once, queue slices, write with `writev`.
//! - `event_loop`: epoll, reading and writing until `WouldBlock`, timers.
//! - [`table`]: the one connection table, with generational keys; [`name`]:
//!   names stored inline; `nicks`: the nickname index, hashes and keys
//!   only.
//! - `flood`: per-connection flood control by not reading; `memory`:
//!   freed heap handed back after bursts.
//! - `log`: connection records for `--log` and stderr.
//! - [`accounts`]: the accounts table and Argon2id hashing; [`hashing`]:
//!   the threads that hash off the loop; `attempts`: the limits on
//!   failed logins per connection and per address.
//! - `tls`: the certificate of `--listen-tls`, reloaded on SIGHUP; the
//!   sessions live in the event loop, beside the connection table.
//! - [`http`]: `--listen-http`: `/healthz`, `/metrics` and the browser
//!   client's files (`assets`: the embedded page, script and style, with
//!   the Content-Security-Policy), one request per connection, and the
//!   upgrade to `/ws`; [`ws`]: WebSocket frames in and out (the JSON
//!   messages, one per text frame); [`metrics`]: the `/metrics` families,
//!   the loop's and the process's; `web_conn`: one HTTP connection's
//!   socket, TLS session and queued answer until it is answered or upgraded.
//! - [`irc`]: the IRC door (`--listen-irc`): IRC lines in, core commands
//!   and the door's own answers out, events encoded as IRC lines.
//! - [`cluster`]: `--cluster`, servers that act as one through NATS
//!   JetStream: the backplane's messages, the thread with the NATS
//!   client, and the accounts every server shares (and `chat account
//!   --cluster`'s way to them); the core's side (users of other servers,
//!   changes applied in stream order) is `core::replica`.

pub mod accounts;
mod assets;
mod attempts;
pub mod cluster;
pub mod core;
pub mod deliver;
pub mod event;
mod event_loop;
mod flood;
pub mod hashing;
pub mod http;
pub mod hub;
pub mod irc;
pub mod json;
mod log;
mod memory;
pub mod metrics;
pub mod name;
mod nicks;
pub mod outq;
mod persist;
pub mod store;
pub mod table;
mod tls;
mod web_conn;
pub mod ws;

pub use event_loop::Stopper;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, sockopt,
};

use crate::addr::parse_addr;
use crate::cli::ServerArgs;
use crate::fail::{Fail, Outcome};
use event_loop::{Accounts, EventLoop, Settings};
use log::EventLog;

/// Descriptors the server needs besides its clients: stdio, the listener,
/// epoll, the signalfd, the log, the spare for refusing, and some slack.
const RESERVED_FDS: usize = 16;

pub fn run(args: &ServerArgs) -> Outcome {
    // `--listen none`: TLS only. Without it the plaintext listener stays on
    // its address (the default one too) beside `--listen-tls`.
    let addr = match args.listen.as_str() {
        "none" => None,
        text => Some(
            parse_addr(text).map_err(|e| Fail::runtime(format!("cannot listen on {text}: {e}")))?,
        ),
    };
    let tls_addr = match &args.listen_tls {
        Some(text) => Some(
            parse_addr(text).map_err(|e| Fail::runtime(format!("cannot listen on {text}: {e}")))?,
        ),
        None => None,
    };
    let parse_irc = |text: &Option<String>| -> Result<Option<SocketAddr>, Fail> {
        text.as_deref()
            .map(|text| {
                parse_addr(text).map_err(|e| Fail::runtime(format!("cannot listen on {text}: {e}")))
            })
            .transpose()
    };
    let irc_addr = parse_irc(&args.listen_irc)?;
    let irc_tls_addr = parse_irc(&args.listen_irc_tls)?;
    let http_addr = parse_irc(&args.listen_http)?;
    let https_addr = parse_irc(&args.listen_https)?;
    if !args.http_origin.is_empty() && http_addr.is_none() && https_addr.is_none() {
        return Err(Fail::usage(
            "--http-origin needs --listen-http or --listen-https: it says who may open /ws",
        ));
    }
    if addr.is_none() && tls_addr.is_none() && irc_addr.is_none() {
        return Err(Fail::usage(
            "--listen none needs --listen-tls or --listen-irc: the server must listen somewhere",
        ));
    }
    let certs = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::Certs::load(cert, key).map_err(Fail::runtime)?),
        _ => None,
    };
    let fd_limit = raise_fd_limit();
    forbid_core_dumps();
    crate::names::prepare();
    let max_clients = args
        .max_clients
        .min(fd_limit.saturating_sub(RESERVED_FDS))
        .max(1);
    let mut log = EventLog::open(args.log.as_deref(), args.quiet).map_err(|e| {
        let path = args
            .log
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display();
        Fail::runtime(format!(
            "cannot open log {path}: {e}; check the directory exists and is writable"
        ))
    })?;
    let (history, db) = open_history(args)?;
    let accounts = open_accounts(args, db)?;
    let open = |addr: SocketAddr| -> Result<(mio::net::TcpListener, SocketAddr), Fail> {
        let listener = listen_on(addr)
            .map_err(|e| Fail::runtime(format!("cannot listen on {addr}: {}", explain(&e))))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Fail::runtime(format!("cannot listen on {addr}: {e}")))?;
        Ok((listener, bound))
    };
    let plain = addr.map(open).transpose()?;
    let secure = tls_addr.map(open).transpose()?;
    let irc = irc_addr.map(open).transpose()?;
    let irc_tls = irc_tls_addr.map(open).transpose()?;
    let irc_bound = irc.as_ref().map(|(_, bound)| *bound);
    let irc_tls_bound = irc_tls.as_ref().map(|(_, bound)| *bound);
    let web = http_addr.map(open).transpose()?;
    let http_bound = web.as_ref().map(|(_, bound)| *bound);
    let web_tls = https_addr.map(open).transpose()?;
    let https_bound = web_tls.as_ref().map(|(_, bound)| *bound);
    let signals =
        stop_signals().map_err(|e| Fail::runtime(format!("cannot handle signals: {e}")))?;
    let settings = Settings {
        max_line: args.max_line,
        max_clients,
        max_queue: args.max_queue,
        flood: flood::Limit {
            rate: args.rate,
            burst: args.burst,
        },
        core: core::Config {
            welcome: args.welcome.clone(),
            default_room: args.default_room.clone(),
            max_rooms: args.max_rooms as usize,
        },
        accounts,
        cluster: cluster::Config::of(&args.nats, args.cluster_keep),
    };
    log.say(&format!(
        "chat server: open-file limit {fd_limit}, serving up to {max_clients} clients"
    ));
    if max_clients < args.max_clients {
        log.say(&format!(
            "chat server: --max-clients {} lowered to {max_clients} to fit the open-file limit",
            args.max_clients
        ));
    }
    // Said now, not at the end of the first loop turn: whoever started the
    // server wants to know its capacity before anyone connects.
    log.flush();
    let clustered = settings.cluster.is_some();
    let bound = plain.as_ref().map(|(_, bound)| *bound);
    let tls_bound = secure.as_ref().map(|(_, bound)| *bound);
    let tls = secure
        .zip(certs)
        .map(|((listener, _), certs)| (listener, certs));
    let event_loop = EventLoop::new(
        plain.map(|(listener, _)| listener),
        tls,
        event_loop::Irc {
            plain: irc.map(|(listener, _)| listener),
            tls: irc_tls.map(|(listener, _)| listener),
            http: web.map(|(listener, _)| listener),
            https: web_tls.map(|(listener, _)| listener),
            origins: args.http_origin.clone(),
        },
        Some(signals),
        log,
        settings,
        history,
    )
    .map_err(|e| {
        if clustered {
            Fail::runtime(format!("cannot join the cluster: {e}"))
        } else {
            Fail::runtime(format!("cannot start the event loop: {e}"))
        }
    })?;
    // Scripts wait for these lines to know the server is up and where.
    let mut stdout = io::stdout();
    if let Some(bound) = bound {
        let _ = writeln!(stdout, "listening on {bound}");
    }
    if let Some(bound) = tls_bound {
        let _ = writeln!(stdout, "listening for TLS on {bound}");
    }
    if let Some(bound) = irc_bound {
        let _ = writeln!(stdout, "listening for IRC on {bound}");
    }
    if let Some(bound) = irc_tls_bound {
        let _ = writeln!(stdout, "listening for IRC over TLS on {bound}");
    }
    if let Some(bound) = http_bound {
        let _ = writeln!(stdout, "listening for HTTP on {bound}");
    }
    if let Some(bound) = https_bound {
        let _ = writeln!(stdout, "listening for HTTPS on {bound}");
    }
    if clustered {
        let _ = writeln!(stdout, "joined cluster {}", args.nats.cluster_name);
    }
    let _ = stdout.flush();
    event_loop
        .run()
        .map_err(|e| Fail::runtime(format!("the event loop failed: {e}")))
}

/// What a [`Server`] needs besides its listener: the server's options, with
/// the command line's defaults.
#[derive(Clone)]
pub struct Options {
    pub max_line: usize,
    pub max_clients: usize,
    pub max_queue: usize,
    pub rate: u32,
    pub burst: u32,
    pub welcome: String,
    pub default_room: String,
    pub max_rooms: usize,
    /// Accounts are kept in memory, for as long as the server runs.
    pub accounts: core::AccountRules,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_line: 65536,
            max_clients: 10_000,
            max_queue: 8 << 20,
            rate: 500,
            burst: 5000,
            welcome: "Welcome to the chat room!".into(),
            default_room: "lobby".into(),
            max_rooms: 100,
            accounts: core::AccountRules::default(),
        }
    }
}

/// A server on a bound listener, without touching anything process-wide
/// (no signal mask, no descriptor limit, nothing on stdout or stderr): for
/// tests and for programs that embed it. [`Server::stopper`] stops it from
/// another thread; [`Server::run`] returns once everyone was told `bye`.
/// The server is single-threaded and stays on the thread that made it (it
/// is not `Send`): create it where it will run.
pub struct Server {
    event_loop: EventLoop,
}

impl Server {
    pub fn new(listener: std::net::TcpListener, options: Options) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let listener = mio::net::TcpListener::from_std(listener);
        let log = EventLog::open(None, true)?;
        let settings = Settings {
            max_line: options.max_line,
            max_clients: options.max_clients,
            max_queue: options.max_queue,
            flood: flood::Limit {
                rate: options.rate,
                burst: options.burst,
            },
            core: core::Config {
                welcome: options.welcome,
                default_room: crate::wire::check_room(&options.default_room)
                    .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?,
                max_rooms: options.max_rooms,
            },
            accounts: Accounts {
                rules: options.accounts,
                book: accounts::Book::memory(),
                keys: Vec::new(),
                cost: accounts::Cost::OWASP,
            },
            cluster: None,
        };
        Ok(Server {
            event_loop: EventLoop::new(
                Some(listener),
                None,
                event_loop::Irc::default(),
                None,
                log,
                settings,
                None,
            )?,
        })
    }

    pub fn stopper(&self) -> Stopper {
        self.event_loop.stopper()
    }

    pub fn run(self) -> io::Result<()> {
        self.event_loop.run()
    }
}

/// The account options, and where the accounts are: in the database, or in
/// memory with `--db none`. The keys that exist are read now, before the
/// first connection, so that `nick` is checked against them from the start.
fn open_accounts(args: &ServerArgs, db: Option<std::path::PathBuf>) -> Result<Accounts, Fail> {
    let rules = core::AccountRules {
        registration_open: args.registration == crate::cli::Registration::Open,
        require_login: args.require_login,
        allow_plaintext: args.allow_plaintext_login,
        per_minute: args.login_limit,
    };
    let book = match db {
        Some(path) => accounts::Book::Db(path),
        None => accounts::Book::memory(),
    };
    let accounts = book.open().map_err(Fail::runtime)?;
    for name in accounts.rekey().map_err(Fail::runtime)? {
        eprintln!(
            "chat server: account {name} is now the same name as an older account, \
             which login reaches; rename or delete one (sqlite3, chat account del)"
        );
    }
    let keys = accounts.keys().map_err(Fail::runtime)?;
    drop(accounts);
    Ok(Accounts {
        rules,
        book,
        keys,
        cost: accounts::Cost::OWASP,
    })
}

/// `--db`: the database, its directory made on first start when it is the
/// default one, and its path; `None` for `--db none`.
fn open_history(
    args: &ServerArgs,
) -> Result<(Option<persist::Opened>, Option<std::path::PathBuf>), Fail> {
    let path = match args.db.as_deref() {
        Some(p) if p.as_os_str() == "none" => return Ok((None, None)),
        Some(p) => p.to_owned(),
        None => {
            let path = default_db(
                std::env::var("XDG_DATA_HOME").ok().as_deref(),
                std::env::var("HOME").ok().as_deref(),
            )
            .ok_or_else(|| {
                Fail::runtime(
                    "no place for the history database: set HOME or XDG_DATA_HOME, \
                     or pass --db PATH or --db none",
                )
            })?;
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .create(dir)
                    .map_err(|e| {
                        Fail::runtime(format!(
                            "cannot create {} for the history database: {e}; \
                             pass --db PATH or --db none",
                            dir.display()
                        ))
                    })?;
            }
            path
        }
    };
    let store = store::Store::open(&path, args.sync).map_err(Fail::runtime)?;
    let unreadable = |e: rusqlite::Error| {
        Fail::runtime(format!(
            "history database {} is unreadable ({e}): it is corrupt; move it away \
             (a new one is then made) or pass another --db",
            path.display()
        ))
    };
    let last_seq = store.last_seq().map_err(unreadable)?;
    let topics = store.topics().map_err(unreadable)?;
    let reader = store::Reader::open(&path).map_err(unreadable)?;
    Ok((
        Some(persist::Opened {
            store,
            reader,
            keep: args.history_keep.unwrap_or_default(),
            last_seq,
            topics,
        }),
        Some(path),
    ))
}

/// `$XDG_DATA_HOME/chat/chat.db`, else `$HOME/.local/share/chat/chat.db`;
/// a relative `XDG_DATA_HOME` is ignored, as the XDG spec says.
pub(crate) fn default_db(
    xdg_data_home: Option<&str>,
    home: Option<&str>,
) -> Option<std::path::PathBuf> {
    let data = match xdg_data_home.filter(|d| d.starts_with('/')) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::Path::new(home.filter(|h| !h.is_empty())?).join(".local/share"),
    };
    Some(data.join("chat/chat.db"))
}

/// Raises the soft open-file limit to the hard one and returns the result:
/// each client is a descriptor, and the default soft limit (often 1024) is
/// far below what a chat room on a real box needs.
fn raise_fd_limit() -> usize {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard as usize
            } else {
                soft as usize
            }
        }
        Err(_) => 1024,
    }
}

/// A crashing server would dump its memory, which holds passwords between
/// a `login` line and its hash and the TLS private key for as long as it
/// runs: no core file, so no such copy lands on disk. Best effort: a limit
/// that cannot be lowered leaves the process as it was.
fn forbid_core_dumps() {
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
}

/// A non-blocking listener with the kernel's largest backlog, so a burst of
/// connects waits in the queue rather than being dropped.
fn listen_on(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // A restarted server can take its port back while old connections linger.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match addr {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?,
        SocketAddr::V6(v6) => bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))?,
    }
    listen(&fd, Backlog::MAXCONN)?;
    Ok(mio::net::TcpListener::from_std(
        std::net::TcpListener::from(fd),
    ))
}

/// SIGINT, SIGTERM (stop) and SIGHUP (reopen the log) arrive as readable data on a descriptor the event loop
/// polls, so stopping is an ordinary event, never work in a signal handler.
fn stop_signals() -> nix::Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGHUP);
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// The kernel's reason, with what to do about it.
fn explain(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "address already in use (is another server running? choose another with --listen)"
                .into()
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges; use a higher port)".into()
        }
        io::ErrorKind::AddrNotAvailable => {
            "address not available (it is not an address of this machine)".into()
        }
        _ => e.to_string(),
    }
}
