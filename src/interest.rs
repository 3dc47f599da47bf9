//! Asking epoll for WRITABLE only while output waits, for every mio loop in
//! the binary (server, client, bot).
//!
//! A socket is writable nearly all the time; registered for it with nothing
//! to write, a loop would wake for nothing. So a connection asks for
//! WRITABLE when the kernel refuses some of its bytes, and drops the
//! interest once everything is written.

use std::io;

use mio::event::Source;
use mio::{Interest, Registry, Token};

/// Registers `source` for READABLE, plus WRITABLE when `want`, unless that
/// is already what `registered` says. On success `registered` is `want`.
pub fn want_writable(
    registry: &Registry,
    source: &mut impl Source,
    token: Token,
    want: bool,
    registered: &mut bool,
) -> io::Result<()> {
    if want == *registered {
        return Ok(());
    }
    let interest = if want {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    registry.reregister(source, token, interest)?;
    *registered = want;
    Ok(())
}
