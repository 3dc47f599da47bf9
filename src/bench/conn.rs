//! Opening the load generator's connections (from a chosen source address
//! when one has too few ports) and the bench's use of [`Peer`]: reading is
//! split from framing so that an event loop can read into one large buffer
//! it owns (a 256 KiB read takes thousands of lines per system call) and
//! stamp each read with the time it returned.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::net::TcpStream;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::addr::{FindError, Server};
use crate::fail::Fail;
use crate::framing::Frame;
use crate::peer::{Got, Peer};

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

/// Hands each complete line of `data` (joined to what an earlier read
/// left unfinished) to `on_line`, without its `\n`. An error means the
/// server sent a line longer than any it may send.
pub fn lines(peer: &mut Peer, data: &[u8], mut on_line: impl FnMut(&[u8])) -> io::Result<()> {
    let mut endless = false;
    peer.frames(data, |frame| match frame {
        Frame::Line(line) => on_line(line),
        Frame::TooLong => endless = true,
    });
    match endless {
        false => Ok(()),
        true => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server sent an endless line",
        )),
    }
}

/// Reads until the socket would block, handing each read's bytes to
/// `on_read` (which takes the read's time and splits it with [`lines`]).
/// `Err(None)`: the server closed the connection.
pub fn read_all(
    peer: &mut Peer,
    buf: &mut [u8],
    mut on_read: impl FnMut(&mut Peer, &[u8]) -> io::Result<()>,
) -> Result<(), Option<io::Error>> {
    loop {
        match peer.read(buf) {
            Ok(Got::Data(n)) => on_read(peer, &buf[..n]).map_err(Some)?,
            Ok(Got::Blocked) => return Ok(()),
            Ok(Got::Closed) => return Err(None),
            Err(e) => return Err(Some(e)),
        }
    }
}

/// Writes what is queued until done (`true`) or the socket would block
/// (`false`: call again on WRITABLE).
pub fn flush(peer: &mut Peer) -> io::Result<bool> {
    peer.flush()?;
    Ok(peer.pending() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (Peer, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect(addr, None, Duration::from_secs(5)).unwrap();
        (Peer::from_stream(stream), listener)
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let (mut c, _listener) = conn();
        let mut got = Vec::new();
        for chunk in [&b"one\ntw"[..], b"", b"o", b"\nthree\n\nfour"] {
            lines(&mut c, chunk, |l| {
                got.push(String::from_utf8(l.to_vec()).unwrap())
            })
            .unwrap();
        }
        assert_eq!(got, ["one", "two", "three", ""]);
        lines(&mut c, b"\n", |l| {
            got.push(String::from_utf8(l.to_vec()).unwrap())
        })
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
