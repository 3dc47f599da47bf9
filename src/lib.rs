//! `chat`: a terminal chat room in one binary.
//!
//! A map of the crate, read top-down:
//!
//! - [`cli`]: the command line and the busybox-style dispatch on argv\[0\].
//! - [`wire`]: the JSON-lines protocol; every message type and its parsing.
//! - [`framing`]: bytes into lines, with the line-length bound.
//! - [`outbuf`]: bytes waiting for a non-blocking writer, and the one
//!   flush loop that writes them.
//! - [`interest`]: WRITABLE only while output waits, for every loop.
//! - [`addr`], [`peer`]: reading addresses and resolving server names; the
//!   client side of a connection (socket, framing, output buffer) shared by
//!   client, bot and bench.
//! - [`tls`]: TLS for the programs that connect (`--tls`, `--ca`: whom to
//!   trust, the handshake, bytes through the session) and the PEM reading
//!   the server shares; [`cert`]: `chat cert`, a self-signed pair.
//! - [`server`]: the single-threaded epoll server: doors (JSON lines, IRC,
//!   the web's HTTP and WebSocket) that turn bytes into commands, a
//!   protocol-neutral core of users and rooms that emits events, the
//!   writers that queue them, the history store and the cluster's
//!   backplane; its own map is in its module.
//! - [`client`]: the interactive client, a parent that owns the connection
//!   and a forked child that owns the keyboard.
//! - [`bot`]: the scripted-conversation language, its parser and its runner.
//! - [`arrivals`]: a newcomer's `join` and its rename as one arrival, for
//!   the client and the bot's transcript.
//! - [`names`]: what a nickname or room name may be (Unicode letters,
//!   marks, digits, `_`, `-`) and the one key names are compared by.
//! - [`secret`]: passwords held in memory only while needed, wiped on
//!   drop, hidden from `Debug`, and typed on a terminal without echo.
//! - [`escape`]: controls in text from the network shown as escapes.
//! - [`glob`]: whole-string wildcard matching (the bot's patterns, IRC's
//!   WHO masks).
//! - [`render`]: the human format of messages, one line each, made safe for
//!   the terminal; shared by the client and the bot's transcript.
//! - [`bench`](mod@bench): the load generator.
//! - [`account`]: `chat account`, the administrator's accounts tool.
//! - [`completions`], [`install`]: shell completion scripts from the clap
//!   definition; the busybox links `chat --install-links` makes.
//! - [`units`], [`fail`]: sizes and durations as people type them; how a
//!   program ends with one line and an exit status.

pub mod account;
pub mod addr;
pub mod arrivals;
pub mod bench;
pub mod bot;
pub mod cert;
pub mod cli;
pub mod client;
pub mod completions;
pub mod escape;
pub mod fail;
pub mod framing;
pub mod glob;
pub mod install;
pub mod interest;
pub mod names;
pub mod outbuf;
pub mod peer;
pub mod render;
pub mod secret;
pub mod server;
pub mod tls;
pub mod units;
pub mod wire;
