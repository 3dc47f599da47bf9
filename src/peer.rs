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

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;
use rustls::ClientConnection;

use crate::framing::{Frame, LineReader};
use crate::outbuf::OutBuf;

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
            return read_tls(tls, &mut self.stream, buf);
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
                    tls,
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

/// One read through the TLS session: decrypted bytes already there first,
/// else records from the socket until some decrypt or the socket would
/// block. A record that does not decrypt is an error, never data.
fn read_tls(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> io::Result<Got> {
    loop {
        match tls.reader().read(buf) {
            Ok(0) => return Ok(Got::Closed),
            Ok(n) => return Ok(Got::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Got::Closed),
            Err(e) => return Err(e),
        }
        match tls.read_tls(stream) {
            Ok(0) => return Ok(Got::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            // Tell the server why (the alert is queued), then give up.
            let _ = tls.write_tls(stream);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// The socket as a writer of plaintext: bytes written are encrypted and
/// sent as records. Records the kernel did not take are sent before any
/// new bytes are taken, so the session buffers at most one write's worth.
struct Sealed<'a> {
    tls: &'a mut ClientConnection,
    stream: &'a mut TcpStream,
}

impl Sealed<'_> {
    /// Sends waiting records until none is left (`Ok`) or the socket
    /// would block (`WouldBlock`).
    fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Write for Sealed<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send_records()?;
        let n = self.tls.writer().write(data)?;
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.send_records() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            other => other.map(|()| n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
