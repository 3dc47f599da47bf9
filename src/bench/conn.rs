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
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::addr::{FindError, Server};
use crate::fail::Fail;
use crate::framing::Frame;
use crate::peer::{Got, Peer};

use super::ws;

/// Connects in blocking mode with a deadline, from `source` when given
/// (port chosen by the kernel), and returns the socket ready for an event
/// loop. Blocking connects, one at a time per loop, never overflow the
/// server's listen backlog, whose overflow costs a one-second SYN retry.
/// `recv_buf` sets the socket's receive buffer (`SO_RCVBUF`) before it
/// connects, so that the window it offers is small from the start.
pub fn connect(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    recv_buf: Option<usize>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let stream = connect_blocking(addr, source, recv_buf, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream))
}

/// As [`connect`], with the TLS handshake made (still blocking, within
/// `timeout`) when the target asks for TLS, and the WebSocket upgrade
/// request queued and sent when it asks for that: the connection as a
/// [`Link`]. The upgrade's answer is read by the event loop, with the rest.
pub fn open(
    target: &Target,
    source: Option<Ipv4Addr>,
    recv_buf: Option<usize>,
    timeout: Duration,
    seed: u64,
) -> io::Result<Link> {
    let stream = connect_blocking(target.addr, source, recv_buf, timeout)?;
    let mut peer = Peer::start(stream, timeout, target.tls)?;
    let ws = match &target.ws_host {
        Some(host) => {
            let session = ws::Session::start(host, WS_PATH, seed, peer.out());
            peer.flush()?;
            Some(Box::new(session))
        }
        None => None,
    };
    Ok(Link { peer, ws })
}

/// The web door's WebSocket path.
const WS_PATH: &str = "/ws";

/// One server of `--server`: where its connections go, and how they talk.
pub struct Target {
    pub addr: SocketAddr,
    /// `--tls`: every connection makes a handshake first.
    pub tls: Option<&'static crate::tls::Client>,
    /// `--proto ws`: the `Host` of the upgrade request.
    pub ws_host: Option<String>,
}

/// The servers of `--server` (a list, or the option repeated), each found
/// and checked as [`server_addr`] does; connection `g` of a run goes to
/// the `g % n`th.
pub fn targets(
    servers: &[String],
    tls: &crate::cli::TlsArgs,
    ws: bool,
) -> Result<Vec<Target>, Fail> {
    let mut targets = Vec::new();
    for text in servers.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let addr = server_addr(text, Duration::from_secs(10))?;
        let ws_host = ws.then(|| {
            crate::addr::parse_server(text).map_or_else(|_| addr.to_string(), |s| s.to_string())
        });
        targets.push(Target {
            addr,
            tls: tls_for(text, tls)?,
            ws_host,
        });
    }
    if targets.is_empty() {
        return Err(Fail::usage("--server names no server"));
    }
    Ok(targets)
}

/// A connection as the bench drives it: the [`Peer`], and for `--proto ws`
/// the WebSocket session that frames the lines queued in [`Link::out`] and
/// unframes what [`lines`] is given. The owner's code is the same for
/// every protocol.
pub struct Link {
    peer: Peer,
    ws: Option<Box<ws::Session>>,
}

impl Link {
    /// A plaintext JSON-lines connection on a connected socket.
    pub fn plain(stream: TcpStream) -> Link {
        Link {
            peer: Peer::from_stream(stream),
            ws: None,
        }
    }

    /// The socket, to register with a `Poll`.
    pub fn stream(&mut self) -> &mut mio::net::TcpStream {
        &mut self.peer.stream
    }

    /// The queue of whole lines to send; [`Link::flush`] sends them.
    pub fn out(&mut self) -> &mut Vec<u8> {
        match &mut self.ws {
            Some(ws) => ws.lines(),
            None => self.peer.out(),
        }
    }

    /// Sends what is queued, until done or the socket would block.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(ws) = &mut self.ws {
            ws.frame_lines(self.peer.out());
        }
        self.peer.flush()
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn pending(&self) -> usize {
        self.peer.pending() + self.ws.as_ref().map_or(0, |ws| ws.queued())
    }
}

fn connect_blocking(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    recv_buf: Option<usize>,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    match (source, addr, recv_buf) {
        (Some(_), SocketAddr::V4(_), _) | (_, _, Some(_)) => {
            connect_from(addr, source, recv_buf, timeout)
        }
        _ => std::net::TcpStream::connect_timeout(&addr, timeout),
    }
}

/// The TLS set-up of `--tls` and `--ca` for `--server` TEXT, made once and
/// kept for the whole run (every loop thread shares it).
pub fn tls_for(
    text: &str,
    args: &crate::cli::TlsArgs,
) -> Result<Option<&'static crate::tls::Client>, Fail> {
    if !args.tls {
        return Ok(None);
    }
    let addr = crate::addr::parse_server(text)
        .map_err(|e| Fail::usage(format!("cannot use --server: {e}")))?;
    let client = crate::tls::Client::new(&addr.host, args.ca.as_deref()).map_err(Fail::runtime)?;
    Ok(Some(Box::leak(Box::new(client))))
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
/// The receive buffer is set here too, as it must be before `connect`.
fn connect_from(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    recv_buf: Option<usize>,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    // A blocking connect gives up after the send timeout.
    let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    socket::setsockopt(&fd, sockopt::SendTimeout, &TimeVal::milliseconds(millis))?;
    if let Some(bytes) = recv_buf {
        socket::setsockopt(&fd, sockopt::RcvBuf, &bytes)?;
    }
    match (addr, source) {
        (SocketAddr::V4(addr), source) => {
            if let Some(source) = source {
                socket::bind(
                    fd.as_raw_fd(),
                    &SockaddrIn::from(SocketAddrV4::new(source, 0)),
                )?;
            }
            socket::connect(fd.as_raw_fd(), &SockaddrIn::from(addr))?;
        }
        (SocketAddr::V6(addr), _) => {
            socket::connect(fd.as_raw_fd(), &SockaddrIn6::from(addr))?;
        }
    }
    Ok(std::net::TcpStream::from(fd))
}

/// Hands each complete line of `data` (joined to what an earlier read
/// left unfinished) to `on_line`, without its `\n`. An error means the
/// server sent a line longer than any it may send.
pub fn lines(link: &mut Link, data: &[u8], mut on_line: impl FnMut(&[u8])) -> io::Result<()> {
    if let Some(ws) = &mut link.ws {
        let mut pongs = Vec::new();
        ws.feed(data, &mut pongs, on_line)?;
        if !pongs.is_empty() {
            link.peer.out().append(&mut pongs);
            link.peer.flush()?;
        }
        return Ok(());
    }
    let mut endless = false;
    link.peer.frames(data, |frame| match frame {
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
    link: &mut Link,
    buf: &mut [u8],
    mut on_read: impl FnMut(&mut Link, &[u8]) -> io::Result<()>,
) -> Result<(), Option<io::Error>> {
    read_while(link, buf, |peer, data| on_read(peer, data).map(|()| true))
}

/// As [`read_all`], but stops early, leaving the rest in the socket, once
/// `on_read` returns `false`.
pub fn read_while(
    link: &mut Link,
    buf: &mut [u8],
    mut on_read: impl FnMut(&mut Link, &[u8]) -> io::Result<bool>,
) -> Result<(), Option<io::Error>> {
    loop {
        match link.peer.read(buf) {
            Ok(Got::Data(n)) => {
                if !on_read(link, &buf[..n]).map_err(Some)? {
                    return Ok(());
                }
            }
            Ok(Got::Blocked) => return Ok(()),
            Ok(Got::Closed) => return Err(None),
            Err(e) => return Err(Some(e)),
        }
    }
}

/// Writes what is queued until done (`true`) or the socket would block
/// (`false`: call again on WRITABLE).
pub fn flush(link: &mut Link) -> io::Result<bool> {
    link.flush()?;
    Ok(link.pending() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (Link, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect(addr, None, None, Duration::from_secs(5)).unwrap();
        let link = Link {
            peer: Peer::from_stream(stream),
            ws: None,
        };
        (link, listener)
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
        let stream = connect(addr, Some(source), None, Duration::from_secs(5)).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), source);
        assert_eq!(stream.local_addr().unwrap().ip(), source);
    }

    #[test]
    fn a_receive_buffer_is_set_before_connecting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect(addr, None, Some(4096), Duration::from_secs(5)).unwrap();
        let fd = std::os::fd::AsFd::as_fd(&stream);
        // Linux doubles the value asked for, for its own bookkeeping.
        let size = socket::getsockopt(&fd, sockopt::RcvBuf).unwrap();
        assert!((4096..=8192).contains(&size), "{size}");
        assert_eq!(stream.peer_addr().unwrap(), addr);
    }
}
