//! One load-generator connection: the socket, the unfinished tail of its
//! input and its unsent output.
//!
//! Unlike [`crate::peer::Peer`], reading is split from framing so that an
//! event loop can read into one large buffer it owns (a 256 KiB read takes
//! thousands of lines per system call) and stamp each read with the time it
//! returned, and lines are found with `memchr`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::net::TcpStream;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::addr::{FindError, Server};
use crate::fail::Fail;
use crate::peer::MAX_SERVER_LINE;

/// What one read found.
pub enum Got {
    /// This many bytes are in the buffer.
    Data(usize),
    /// Nothing more until the next readiness event.
    Blocked,
    /// The server closed the connection.
    Closed,
}

pub struct Conn {
    pub stream: TcpStream,
    /// The start of a line whose `\n` has not arrived.
    partial: Vec<u8>,
    out: Vec<u8>,
    /// How much of `out` the kernel has taken.
    sent: usize,
}

/// Connects in blocking mode with a deadline, from `source` when given
/// (port chosen by the kernel), and returns the socket ready for an event
/// loop. Blocking connects, one at a time per loop, never overflow the
/// server's listen backlog, whose overflow costs a one-second SYN retry.
pub fn connect(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let stream = match (source, addr) {
        (Some(source), SocketAddr::V4(addr)) => connect_from(addr, source, timeout)?,
        _ => std::net::TcpStream::connect_timeout(&addr, timeout)?,
    };
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream))
}

/// The one address of `--server` TEXT that every connection of a run uses:
/// the only one, or when a name has several, the first that accepts a
/// connection (which is closed again at once).
pub fn server_addr(text: &str, timeout: Duration) -> Result<SocketAddr, Fail> {
    let mut server = Server::find(text).map_err(|e| match e {
        FindError::Usage(e) => Fail::usage(format!("cannot use --server: {e}")),
        FindError::Runtime(e) => Fail::runtime(e),
    })?;
    if let [addr] = server.addrs[..] {
        return Ok(addr);
    }
    server
        .connect(
            |addr| std::net::TcpStream::connect_timeout(&addr, timeout),
            |e| e.to_string(),
        )
        .map(|(_probe, addr)| addr)
        .map_err(|e| Fail::runtime(format!("cannot connect to {e}")))
}

/// `bind` before `connect`, which the standard library cannot do: each
/// source address has its own set of ephemeral ports.
fn connect_from(
    addr: SocketAddrV4,
    source: Ipv4Addr,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // A blocking connect gives up after the send timeout.
    let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    socket::setsockopt(&fd, sockopt::SendTimeout, &TimeVal::milliseconds(millis))?;
    socket::bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(source, 0)),
    )?;
    socket::connect(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
    Ok(std::net::TcpStream::from(fd))
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            partial: Vec::new(),
            out: Vec::new(),
            sent: 0,
        }
    }

    /// One `read` into `buf`; interrupted reads are retried.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        loop {
            return match self.stream.read(buf) {
                Ok(0) => Ok(Got::Closed),
                Ok(n) => Ok(Got::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Hands each complete line of `data` (joined to what an earlier read
    /// left unfinished) to `on_line`, without its `\n`, and keeps the
    /// unfinished rest. An error means the server sent a line longer than
    /// any it may send.
    pub fn lines(&mut self, mut data: &[u8], mut on_line: impl FnMut(&[u8])) -> io::Result<()> {
        if !self.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', data) else {
                return self.keep(data);
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&data[..end]);
            on_line(&line);
            line.clear();
            self.partial = line;
            data = &data[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            on_line(&data[start..end]);
            start = end + 1;
        }
        self.keep(&data[start..])
    }

    fn keep(&mut self, rest: &[u8]) -> io::Result<()> {
        if self.partial.len() + rest.len() > MAX_SERVER_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server sent an endless line",
            ));
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The output queue, for appending lines; [`Conn::flush`] sends them.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Writes queued bytes until done (`true`) or the socket would block
    /// (`false`: call again on WRITABLE).
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (Conn, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect(addr, None, Duration::from_secs(5)).unwrap();
        (Conn::new(stream), listener)
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let (mut c, _listener) = conn();
        let mut got = Vec::new();
        for chunk in [&b"one\ntw"[..], b"", b"o", b"\nthree\n\nfour"] {
            c.lines(chunk, |l| got.push(String::from_utf8(l.to_vec()).unwrap()))
                .unwrap();
        }
        assert_eq!(got, ["one", "two", "three", ""]);
        c.lines(b"\n", |l| got.push(String::from_utf8(l.to_vec()).unwrap()))
            .unwrap();
        assert_eq!(got.last().unwrap(), "four");
    }

    #[test]
    fn connects_from_another_loopback_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let source = Ipv4Addr::new(127, 0, 0, 2);
        let stream = connect(addr, Some(source), Duration::from_secs(5)).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source);
        assert_eq!(stream.local_addr().unwrap().ip(), source);
    }
}
