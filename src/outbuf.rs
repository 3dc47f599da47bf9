//! Bytes on their way to a non-blocking writer (a socket, the client's pipe
//! to its input process): one buffer and one flush loop for every sender on
//! the client side, so that a layer such as TLS has exactly one place to
//! wrap.
//!
//! Edge-triggered readiness means a flush writes until the writer would
//! block; what the writer did not take stays, and is written first on the
//! next flush (on WRITABLE).

use std::io::{self, Write};

#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    /// How much of `buf` the writer has taken.
    sent: usize,
}

impl OutBuf {
    /// The buffer, for appending whole lines; [`OutBuf::flush`] sends them.
    pub fn queue(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Writes until everything is taken (`true`) or the writer would block
    /// (`false`: call again when it is writable). Interrupted writes are
    /// retried; a writer that takes nothing is an error, not a loop.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while self.sent < self.buf.len() {
            match w.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        // Keeps the capacity: the next lines need no allocation.
        self.buf.clear();
        self.sent = 0;
        Ok(true)
    }

    /// Bytes queued and not yet taken by the writer.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// The unsent lines that are still whole: a line the writer took part
    /// of is lost with the writer, so what is left starts at the next one.
    pub fn unsent_whole_lines(&self) -> &[u8] {
        let rest = &self.buf[self.sent..];
        if self.sent == 0 || self.buf[self.sent - 1] == b'\n' {
            return rest;
        }
        memchr::memchr(b'\n', rest).map_or(&[][..], |i| &rest[i + 1..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `room` bytes in all, then would block.
    struct Narrow {
        taken: Vec<u8>,
        room: usize,
        chunk: usize,
    }

    impl Write for Narrow {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let n = data.len().min(self.chunk).min(self.room - self.taken.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.taken.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_the_tail_the_writer_did_not_take_and_sends_it_next() {
        let mut out = OutBuf::default();
        out.queue().extend_from_slice(b"one\ntwo\nthree\n");
        let mut w = Narrow {
            taken: Vec::new(),
            room: 6,
            chunk: 4,
        };
        assert!(!out.flush(&mut w).unwrap(), "blocked after 6 bytes");
        assert_eq!((w.taken.as_slice(), out.pending()), (&b"one\ntw"[..], 8));
        assert_eq!(out.unsent_whole_lines(), b"three\n", "two was cut");
        w.room = 100;
        out.queue().extend_from_slice(b"four\n");
        assert!(out.flush(&mut w).unwrap());
        assert_eq!(w.taken, b"one\ntwo\nthree\nfour\n");
        assert_eq!(out.pending(), 0);
        assert!(out.flush(&mut w).unwrap(), "nothing to send is done");
    }

    #[test]
    fn whole_lines_are_all_unsent_ones_at_a_line_boundary() {
        let mut out = OutBuf::default();
        out.queue().extend_from_slice(b"a\nb\n");
        assert_eq!(out.unsent_whole_lines(), b"a\nb\n");
        let mut w = Narrow {
            taken: Vec::new(),
            room: 2,
            chunk: 2,
        };
        assert!(!out.flush(&mut w).unwrap());
        assert_eq!(out.unsent_whole_lines(), b"b\n");
    }

    #[test]
    fn a_writer_that_takes_nothing_is_an_error() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = OutBuf::default();
        out.queue().push(b'x');
        let e = out.flush(&mut Zero).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }
}
