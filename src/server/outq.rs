//! Output: every message is encoded once into a shared block, and each
//! connection's queue holds slices of blocks, not copies.
//!
//! During a loop turn the [`Outbox`] appends encoded lines to one growing
//! buffer. A message for a hundred receivers is encoded once and each
//! receiver's [`OutQueue`] records the byte range; when a receiver's last
//! range ends where the new one starts (the usual case in a busy room), the
//! range is just extended, so a receiver's whole turn worth of messages is
//! often one slice and one `writev` entry. Before anything is written the
//! outbox *seals* the buffer (moves it into its block's `OnceCell`), after
//! which the bytes never change and are shared by plain reference.
//!
//! Nothing here allocates per delivery: a delivery is a range extension or a
//! reference-count increment, and a block is freed when the last queue that
//! holds a slice of it has written it.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use crate::wire::ServerMsg;

/// Bytes shared by every queue holding a slice of them. Empty until sealed.
type Block = Rc<OnceCell<Vec<u8>>>;

/// A block is sealed early once it holds this much, so a slow receiver
/// pins at most this much memory beyond its own queue per block it holds.
const BLOCK_SIZE: usize = 64 * 1024;

/// Entries per `writev`; Linux accepts 1024, but a turn rarely produces
/// more than a few slices per receiver.
const MAX_IOV: usize = 64;

/// Where a turn's messages are encoded.
pub struct Outbox {
    buf: Vec<u8>,
    block: Block,
}

/// An encoded message: a range of the outbox's current block.
#[derive(Clone, Copy, Debug)]
pub struct Encoded {
    start: usize,
    end: usize,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            buf: Vec::with_capacity(BLOCK_SIZE),
            block: Rc::default(),
        }
    }
}

impl Outbox {
    /// Encodes `msg` once. The result is valid for [`OutQueue::push`] until
    /// the next `encode` or `seal`.
    pub fn encode(&mut self, msg: &ServerMsg<'_>) -> Encoded {
        if self.buf.len() >= BLOCK_SIZE {
            self.seal();
        }
        let start = self.buf.len();
        msg.encode(&mut self.buf);
        Encoded {
            start,
            end: self.buf.len(),
        }
    }

    /// Freezes what was encoded so far, so queues can write it, and starts a
    /// new block. Cheap when nothing was encoded.
    pub fn seal(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK_SIZE));
        // A fresh block is never sealed twice: the cell is replaced right away.
        let _ = self.block.set(bytes);
        self.block = Rc::default();
    }
}

/// A slice of a block.
#[derive(Debug)]
struct Slice {
    block: Block,
    start: usize,
    end: usize,
}

/// One connection's pending output, in order.
#[derive(Debug, Default)]
pub struct OutQueue {
    slices: VecDeque<Slice>,
    len: usize,
}

impl OutQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a message encoded in `outbox` (the latest `encode`).
    pub fn push(&mut self, outbox: &Outbox, msg: Encoded) {
        self.len += msg.len();
        if let Some(last) = self.slices.back_mut() {
            if last.end == msg.start && Rc::ptr_eq(&last.block, &outbox.block) {
                last.end = msg.end;
                return;
            }
        }
        self.slices.push_back(Slice {
            block: Rc::clone(&outbox.block),
            start: msg.start,
            end: msg.end,
        });
    }

    /// Drops everything queued (the connection is going away).
    pub fn clear(&mut self) {
        self.slices = VecDeque::new();
        self.len = 0;
    }

    /// Writes sealed slices, several per system call, until the queue is
    /// empty, the socket would block, or an unsealed slice is reached.
    /// Returns the bytes written; `WouldBlock` is not an error here.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut written = 0;
        loop {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for slice in self.slices.iter().take(MAX_IOV) {
                match slice.block.get() {
                    Some(bytes) => iov[n] = IoSlice::new(&bytes[slice.start..slice.end]),
                    None => break,
                }
                n += 1;
            }
            if n == 0 {
                return Ok(written);
            }
            match sink.write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => {
                    self.consume(w);
                    written += w;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.slices.front_mut() else {
                return;
            };
            let avail = front.end - front.start;
            if n < avail {
                front.start += n;
                return;
            }
            n -= avail;
            self.slices.pop_front();
        }
        if self.slices.is_empty() && self.slices.capacity() > 8 {
            // An idle connection should not keep a burst's worth of entries.
            self.slices = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn group(text: &str) -> ServerMsg<'_> {
        ServerMsg::Group {
            from: Cow::Borrowed("a"),
            text: Cow::Borrowed(text),
            ts: 1,
        }
    }

    /// A sink that takes at most `limit` bytes per call, then blocks.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
        calls: usize,
        block_after: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls == self.block_after {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn consecutive_messages_share_one_slice_and_arrive_whole() {
        let mut outbox = Outbox::default();
        let (mut a, mut b) = (OutQueue::default(), OutQueue::default());
        for i in 0..10 {
            let text = format!("m{i}");
            let m = outbox.encode(&group(&text));
            a.push(&outbox, m);
            if i % 2 == 0 {
                b.push(&outbox, m);
            }
        }
        assert_eq!(a.slices.len(), 1, "contiguous messages extend one slice");
        assert_eq!(b.slices.len(), 5);
        outbox.seal();
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 7,
            calls: 0,
            block_after: usize::MAX,
        };
        a.write_to(&mut sink).unwrap();
        assert!(a.is_empty());
        let text = String::from_utf8(sink.got).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10);
        assert!(lines[9].contains("\"m9\""));
    }

    #[test]
    fn unsealed_bytes_wait_and_would_block_keeps_the_rest() {
        let mut outbox = Outbox::default();
        let mut q = OutQueue::default();
        let m = outbox.encode(&group("x"));
        q.push(&outbox, m);
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 1000,
            calls: 0,
            block_after: 1,
        };
        assert_eq!(q.write_to(&mut sink).unwrap(), 0, "nothing sealed yet");
        outbox.seal();
        let m2 = outbox.encode(&group("y"));
        q.push(&outbox, m2);
        assert_eq!(q.write_to(&mut sink).unwrap(), m.len(), "sealed part only");
        assert_eq!(q.len(), m2.len());
        outbox.seal();
        assert_eq!(q.write_to(&mut sink).unwrap(), 0, "socket would block");
        assert_eq!(q.len(), m2.len());
    }

    #[test]
    fn blocks_are_sealed_when_full() {
        let mut outbox = Outbox::default();
        let mut q = OutQueue::default();
        let big = "z".repeat(1000);
        for _ in 0..200 {
            let m = outbox.encode(&group(&big));
            q.push(&outbox, m);
        }
        assert!(q.slices.len() >= 3, "a 200 KB turn spans several blocks");
        outbox.seal();
        let mut sink = Trickle {
            got: Vec::new(),
            limit: usize::MAX,
            calls: 0,
            block_after: usize::MAX,
        };
        let total = q.len();
        assert_eq!(q.write_to(&mut sink).unwrap(), total);
        assert_eq!(sink.got.iter().filter(|&&b| b == b'\n').count(), 200);
    }
}
