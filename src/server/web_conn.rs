//! One connection of the web door until it is answered or upgraded: its
//! socket (with a TLS session on `--listen-https`), the request so far, and
//! the answer on its way out.
//!
//! The answer is queued, not written at once: the page and `/metrics` can
//! be larger than a socket's send buffer, and a client that reads slowly
//! must still get all of it. So the answer goes out as the socket takes
//! it (on WRITABLE), and the connection closes once it is all written and
//! the client is done.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;

use super::tls::{Progress, Session};
use crate::outbuf::OutBuf;

pub struct HttpConn {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    /// `--listen-https`: the bytes go through this.
    pub session: Option<Box<Session>>,
    /// The request's plaintext so far; what comes after the answer is
    /// dropped.
    pub input: Vec<u8>,
    pub out: OutBuf,
    /// The answer is queued: input is no longer looked at.
    pub answered: bool,
    /// WRITABLE is registered.
    pub writing: bool,
    /// The client closed its side.
    pub peer_done: bool,
    /// Our side is shut (the answer is all written).
    shut: bool,
}

/// What one read found.
pub enum Got {
    /// Input, appended to `input` (unless the request is answered).
    Input,
    /// Nothing more for now.
    Blocked,
    /// The client closed its side.
    End,
    /// The socket or the TLS session failed: close.
    Failed,
}

impl HttpConn {
    pub fn new(stream: TcpStream, addr: SocketAddr, session: Option<Box<Session>>) -> HttpConn {
        HttpConn {
            stream,
            addr,
            session,
            input: Vec::new(),
            out: OutBuf::default(),
            answered: false,
            writing: false,
            peer_done: false,
            shut: false,
        }
    }

    /// Reads once into `scratch`; with TLS, opens what the records hold.
    pub fn read(&mut self, scratch: &mut [u8]) -> Got {
        let n = loop {
            match self.stream.read(scratch) {
                Ok(0) => return Got::End,
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Got::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Got::Failed,
            }
        };
        let Some(session) = &mut self.session else {
            if !self.answered {
                self.input.extend_from_slice(&scratch[..n]);
            }
            return Got::Input;
        };
        session.take_input(&scratch[..n]);
        let mut plain = Vec::new();
        loop {
            match session.advance(&mut self.stream, &mut plain) {
                Ok(Progress::Data) => {
                    if !self.answered {
                        self.input.append(&mut plain);
                    }
                    plain.clear();
                }
                Ok(Progress::NeedInput) => return Got::Input,
                Ok(Progress::Closed) => return Got::End,
                Err(_) => return Got::Failed,
            }
        }
    }

    /// Queues `answer`; what the client sends from now on is ignored.
    pub fn answer(&mut self, answer: &[u8]) {
        self.answered = true;
        self.input = Vec::new();
        self.out.queue().extend_from_slice(answer);
    }

    /// Writes what waits; `true` once nothing does. When the answer is all
    /// written our side is shut (close_notify first with TLS), so the
    /// client reads to the end.
    pub fn flush(&mut self, seal: &mut Vec<u8>) -> io::Result<bool> {
        let done = match &mut self.session {
            None => self.out.flush(&mut self.stream)?,
            Some(session) => {
                session.send_waiting(&mut self.stream)?;
                let done = self
                    .out
                    .flush(&mut session.writer(&mut self.stream, seal))?;
                done && !session.wants_write()
            }
        };
        if done && self.answered && !self.shut {
            self.shut = true;
            if let Some(session) = &mut self.session {
                session.close(&mut self.stream);
            }
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Ok(done)
    }
}
