//! The client side of one connection, for every program that talks to a
//! server from a mio loop (the client's parent, the bot's actors): a
//! non-blocking socket, line framing for what arrives, and a buffer for what
//! could not be written yet.
//!
//! It does no polling of its own; the owner registers `stream` with its
//! `Poll` and calls `read_lines` and `flush` when readiness says so, each of
//! which drains the socket until `WouldBlock`, as edge triggering requires.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;

use crate::framing::{Frame, LineReader};

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

/// One line the server sent, or its refusal to frame sensibly.
#[derive(Debug)]
pub enum Incoming<'a> {
    Line(&'a [u8]),
    /// The server sent a line longer than [`MAX_SERVER_LINE`]; it was
    /// skipped.
    TooLong,
}

pub struct Peer {
    pub stream: TcpStream,
    reader: LineReader,
    out: Vec<u8>,
    /// How much of `out` the kernel has taken.
    sent: usize,
}

impl Peer {
    /// Connects with a deadline, in blocking mode (so a wrong address fails
    /// at once with the kernel's reason), then switches to non-blocking for
    /// the event loop.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Peer> {
        let std_stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        Ok(Peer::from_stream(TcpStream::from_std(std_stream)))
    }

    pub fn from_stream(stream: TcpStream) -> Peer {
        Peer {
            stream,
            reader: LineReader::new(MAX_SERVER_LINE),
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Reads until the socket would block, handing each complete line to
    /// `on_line`. Interrupted reads are retried.
    pub fn read_lines(&mut self, mut on_line: impl FnMut(Incoming<'_>)) -> io::Result<ReadStatus> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(ReadStatus::Closed),
                Ok(n) => {
                    self.reader.feed(&buf[..n], |frame| {
                        on_line(match frame {
                            Frame::Line(line) => Incoming::Line(line),
                            Frame::TooLong => Incoming::TooLong,
                        });
                        true
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadStatus::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues one line (with its `\n`) and tries to send it now.
    pub fn send(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(line);
        self.flush()
    }

    /// Writes queued bytes until done or the socket would block; the owner
    /// calls it again on WRITABLE.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(())
    }

    /// Bytes queued but not yet taken by the kernel.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }
}
