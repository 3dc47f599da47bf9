//! The client side of one connection, for every program that talks to a
//! server from a mio loop (the client's parent, the bot's actors, the
//! bench's connections): a non-blocking socket, line framing for what
//! arrives, and a buffer for what could not be written yet.
//!
//! It does no polling of its own; the owner registers `stream` with its
//! `Poll` and calls `read_lines` and `flush` when readiness says so, each of
//! which drains the socket until `WouldBlock`, as edge triggering requires.
//!
//! With TLS the session sits between the socket and both of those: `read`
//! hands out what the records decrypt to, and `flush` encrypts the queue
//! and writes the records. Nothing else changes for the owner, except that
//! [`Peer::pending`] counts records waiting as well as lines.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;
use rustls::ClientConnection;

use crate::framing::{Frame, LineReader};
use crate::outbuf::OutBuf;
use crate::tls::Sealed;

/// Lines from a server can be long (a `who` with thousands of users), but
/// not endless: past this we stop trusting the peer.
pub const MAX_SERVER_LINE: usize = 64 << 20;

/// What `read_lines` saw happen to the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Still open; everything readable was read.
    Open,
    /// The server closed its side (EOF).
    Closed,
}

/// What one read found.
pub enum Got {
    /// This many bytes are in the buffer.
    Data(usize),
    /// Nothing more until the next readiness event.
    Blocked,
    /// The server closed the connection.
    Closed,
}

/// One line the server sent, or its refusal to frame sensibly: the
/// framing's own [`Frame`], under the name the client and the bot use.
pub use crate::framing::Frame as Incoming;

pub struct Peer {
    pub stream: TcpStream,
    /// The TLS session, when the connection has one (boxed: it is big, and
    /// plaintext peers should not pay for it).
    tls: Option<Box<ClientConnection>>,
    reader: LineReader,
    out: OutBuf,
}

impl Peer {
    /// Connects with a deadline, in blocking mode (so a wrong address fails
    /// at once with the kernel's reason), makes the TLS handshake when
    /// `tls` is given, then switches to non-blocking for the event loop.
    pub fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&crate::tls::Client>,
    ) -> io::Result<Peer> {
        let std_stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        Peer::start(std_stream, timeout, tls)
    }

    /// A connected blocking socket made ready for an event loop: TLS
    /// handshake first when `tls` is given (within `timeout`).
    pub fn start(
        mut stream: std::net::TcpStream,
        timeout: Duration,
        tls: Option<&crate::tls::Client>,
    ) -> io::Result<Peer> {
        stream.set_nodelay(true)?;
        let session = match tls {
            Some(tls) => Some(Box::new(tls.handshake(&mut stream, timeout)?)),
            None => None,
        };
        stream.set_nonblocking(true)?;
        let mut peer = Peer::from_stream(TcpStream::from_std(stream));
        peer.tls = session;
        Ok(peer)
    }

    pub fn from_stream(stream: TcpStream) -> Peer {
        Peer {
            stream,
            tls: None,
            reader: LineReader::new(MAX_SERVER_LINE),
            out: OutBuf::default(),
        }
    }

    /// Reads until the socket would block, handing each complete line to
    /// `on_line`. Interrupted reads are retried.
    pub fn read_lines(&mut self, mut on_line: impl FnMut(Frame<'_>)) -> io::Result<ReadStatus> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.read(&mut buf)? {
                Got::Data(n) => self.frames(&buf[..n], &mut on_line),
                Got::Blocked => return Ok(ReadStatus::Open),
                Got::Closed => return Ok(ReadStatus::Closed),
            }
        }
    }

    /// One `read` into a buffer the caller owns (the bench reads 256 KiB at
    /// a time and stamps each read with the time it returned); interrupted
    /// reads are retried. [`Peer::frames`] splits what it read.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Got> {
        if let Some(tls) = &mut self.tls {
            return match crate::tls::read(tls, &mut self.stream, buf) {
                Ok(0) => Ok(Got::Closed),
                Ok(n) => Ok(Got::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Blocked),
                Err(e) => Err(e),
            };
        }
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

    /// Hands each complete line of `data`, joined to what earlier reads
    /// left unfinished, to `on_frame`, and keeps the unfinished rest.
    pub fn frames(&mut self, data: &[u8], mut on_frame: impl FnMut(Frame<'_>)) {
        self.reader.feed(data, |frame| {
            on_frame(frame);
            true
        });
    }

    /// The output queue, for appending whole lines; [`Peer::flush`] sends
    /// them.
    pub fn out(&mut self) -> &mut Vec<u8> {
        self.out.queue()
    }

    /// Queues one line (with its `\n`) and tries to send it now.
    pub fn send(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.queue().extend_from_slice(line);
        self.flush()
    }

    /// Writes queued bytes until done or the socket would block; the owner
    /// calls it again on WRITABLE (and sees what is left in
    /// [`Peer::pending`]).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => self.out.flush(&mut self.stream).map(|_| ()),
            Some(tls) => {
                let mut sink = Sealed {
                    tls: &mut **tls,
                    stream: &mut self.stream,
                };
                match sink.send_records() {
                    Ok(()) => self.out.flush(&mut sink).map(|_| ()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Bytes queued but not yet taken by the kernel (with TLS, at least
    /// one while encrypted records wait).
    pub fn pending(&self) -> usize {
        let records = self.tls.as_ref().is_some_and(|t| t.wants_write());
        self.out.pending() + usize::from(records)
    }
}
