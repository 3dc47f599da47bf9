//! `chat server`: set-up and tear-down around the event loop.
//!
//! - `event_loop`: epoll, the connection table, reading and writing.
//! - [`room`]: the protocol's state and its routing, without sockets.
//! - `flood`: per-connection flood control by not reading.
//! - [`outq`]: encode once, queue slices, write with `writev`.
//! - `log`: connection records for `--log` and stderr.

mod event_loop;
mod flood;
mod log;
pub mod outq;
pub mod room;

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
use event_loop::{EventLoop, Settings};
use log::EventLog;
use room::Room;

/// Descriptors the server needs besides its clients: stdio, the listener,
/// epoll, the signalfd, the log, the spare for refusing, and some slack.
const RESERVED_FDS: usize = 16;

pub fn run(args: &ServerArgs) -> Outcome {
    let addr = parse_addr(&args.listen)
        .map_err(|e| Fail::runtime(format!("cannot listen on {}: {e}", args.listen)))?;
    let fd_limit = raise_fd_limit();
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
    let listener = listen_on(addr)
        .map_err(|e| Fail::runtime(format!("cannot listen on {addr}: {}", explain(&e))))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Fail::runtime(format!("cannot listen on {addr}: {e}")))?;
    let signals =
        stop_signals().map_err(|e| Fail::runtime(format!("cannot handle signals: {e}")))?;
    let room = Room::new(args.welcome.clone(), args.max_queue);
    let settings = Settings {
        max_line: args.max_line,
        max_clients,
        flood: flood::Limit {
            rate: args.rate,
            burst: args.burst,
        },
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
    let event_loop = EventLoop::new(listener, signals, room, log, settings)
        .map_err(|e| Fail::runtime(format!("cannot start the event loop: {e}")))?;
    // Scripts wait for this line to know the server is up and where.
    let mut stdout = io::stdout();
    let _ = writeln!(stdout, "listening on {bound}");
    let _ = stdout.flush();
    event_loop
        .run()
        .map_err(|e| Fail::runtime(format!("the event loop failed: {e}")))
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
