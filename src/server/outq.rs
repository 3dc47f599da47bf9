//! Output: every message is encoded once into a shared block, and each
//! connection's queue holds slices of blocks, not copies.
//!
//! The [`Outbox`] appends encoded lines to its current block. A message for
//! a hundred receivers is encoded once and each receiver's [`OutQueue`]
//! records the byte range; when a receiver's last range ends where the new
//! one starts (the usual case in a busy room), the range is just extended.
//! So a receiver that keeps up writes a whole turn's messages as one slice,
//! and one that lags holds about one slice per block, however many turns it
//! is behind.
//!
//! A block only ever grows at its end and queues only read below it, so
//! sharing it needs no copy and no `unsafe`: a `RefCell` checks at run time
//! that appending (routing) and reading (writing to sockets) never overlap,
//! which they cannot in a single-threaded loop. A full block is trimmed to
//! its length and retired; it is freed when the last queue holding a slice
//! of it has written that slice.
//!
//! Nothing here allocates per delivery: a delivery is a range extension or a
//! reference-count increment.

use std::cell::{Ref, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use crate::wire::ServerMsg;

/// Bytes shared by every queue holding a slice of them.
type Block = Rc<RefCell<Vec<u8>>>;

/// A block is retired once it holds this much, so a slow reader pins at
/// most about this much memory beyond its own queue.
const BLOCK_SIZE: usize = 64 * 1024;

/// Entries per `writev`; Linux accepts 1024, but a receiver rarely has more
/// than a few slices.
const MAX_IOV: usize = 64;

/// Where messages are encoded.
pub struct Outbox {
    block: Block,
}

/// An encoded message: a range of a block.
#[derive(Clone, Debug)]
pub struct Encoded {
    block: Block,
    start: u32,
    end: u32,
}

impl Encoded {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox { block: new_block() }
    }
}

fn new_block() -> Block {
    Rc::new(RefCell::new(Vec::with_capacity(BLOCK_SIZE)))
}

impl Outbox {
    /// Encodes `msg` once, for as many queues as need it.
    pub fn encode(&mut self, msg: &ServerMsg<'_>) -> Encoded {
        self.encode_with(|bytes| msg.encode(bytes))
    }

    /// Appends what `write` writes (one or more whole lines of some
    /// protocol) as one message, for as many queues as need it.
    pub fn encode_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Encoded {
        let full = self
            .block
            .try_borrow()
            .map_or(true, |b| b.len() >= BLOCK_SIZE);
        if full {
            self.retire();
        }
        if self.block.try_borrow_mut().is_err() {
            // Only a bug could leave a block borrowed here; a fresh one
            // keeps the server going regardless.
            self.block = new_block();
        }
        let mut bytes = self.block.borrow_mut();
        let start = bytes.len();
        write(&mut bytes);
        let end = bytes.len();
        drop(bytes);
        // Blocks stay far below 4 GiB (retired at BLOCK_SIZE, and one
        // message is bounded by the line limits), so offsets fit in u32.
        Encoded {
            block: Rc::clone(&self.block),
            start: start as u32,
            end: end as u32,
        }
    }

    /// Trims the current block to its contents and starts a new one.
    fn retire(&mut self) {
        if let Ok(mut bytes) = self.block.try_borrow_mut() {
            bytes.shrink_to_fit();
        }
        self.block = new_block();
    }
}

/// A slice of a block: 16 bytes, since a lagging reader may hold many.
#[derive(Debug)]
struct Slice {
    block: Block,
    start: u32,
    end: u32,
}

/// A slice with its block borrowed for a write.
type Borrowed<'a> = (Ref<'a, Vec<u8>>, &'a Slice);

/// What one queued slice costs beyond its bytes; counted in [`OutQueue::cost`]
/// so that `--max-queue` bounds the memory a reader holds, not just bytes.
const SLICE_COST: usize = std::mem::size_of::<Slice>();

/// One connection's pending output, in order: the slices in `head`, then
/// `tail`.
///
/// The last slice lives inline, in the user's record, because that is the
/// one every delivery looks at: a broadcast to a thousand receivers that
/// keep up extends a thousand inline ranges without touching the heap, and
/// a queue of one slice (the usual case) owns no allocation at all.
#[derive(Debug, Default)]
#[repr(C)]
pub struct OutQueue {
    /// First, with `len`: the fields a delivery reads and writes.
    tail: Option<Slice>,
    len: usize,
    /// Only a lagging reader has more than the inline slice; the list is
    /// boxed so that a queue that keeps up costs 8 bytes for it, not 32
    /// (an idle connection's whole record is a few hundred bytes).
    #[allow(clippy::box_collection)]
    head: Option<Box<VecDeque<Slice>>>,
}

impl OutQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory this queue holds in the server: its bytes and its slices.
    pub fn cost(&self) -> usize {
        self.len + self.slice_count() * SLICE_COST
    }

    fn slice_count(&self) -> usize {
        self.head.as_ref().map_or(0, |h| h.len()) + usize::from(self.tail.is_some())
    }

    fn slices(&self) -> impl Iterator<Item = &Slice> {
        self.head.iter().flat_map(|h| h.iter()).chain(&self.tail)
    }

    /// Queues an encoded message after what is already queued.
    pub fn push(&mut self, msg: &Encoded) {
        self.len += msg.len();
        if let Some(last) = &mut self.tail
            && last.end == msg.start
            && Rc::ptr_eq(&last.block, &msg.block)
        {
            last.end = msg.end;
            return;
        }
        let slice = Slice {
            block: Rc::clone(&msg.block),
            start: msg.start,
            end: msg.end,
        };
        if let Some(previous) = self.tail.replace(slice) {
            self.head.get_or_insert_default().push_back(previous);
        }
    }

    /// Drops everything queued (the connection is going away).
    pub fn clear(&mut self) {
        self.head = None;
        self.tail = None;
        self.len = 0;
    }

    /// Writes the queue, several slices per system call, until it is empty
    /// or the socket would block. Returns the bytes written; `WouldBlock`
    /// is not an error here.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            let result = {
                // Borrow the blocks first, then point the iovecs into them.
                let mut slices = self.slices();
                let guards: [Option<Borrowed<'_>>; MAX_IOV] = std::array::from_fn(|_| {
                    let slice = slices.next()?;
                    Some((slice.block.try_borrow().ok()?, slice))
                });
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (bytes, slice) in guards.iter().map_while(Option::as_ref) {
                    iov[n] = IoSlice::new(&bytes[slice.start as usize..slice.end as usize]);
                    n += 1;
                }
                if n == 0 {
                    return Ok(written);
                }
                sink.write_vectored(&iov[..n])
            };
            match result {
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
        Ok(written)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front = match self.head.as_mut().and_then(|h| h.front_mut()) {
                Some(front) => front,
                None => match &mut self.tail {
                    Some(tail) => tail,
                    None => return,
                },
            };
            let avail = (front.end - front.start) as usize;
            if n < avail {
                front.start += n as u32;
                return;
            }
            n -= avail;
            if self.head.as_mut().and_then(|h| h.pop_front()).is_none() {
                self.tail = None;
            }
        }
        if self.head.as_ref().is_some_and(|h| h.is_empty()) {
            // Once a lagging reader has caught up its list goes.
            self.head = None;
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
            action: false,
            room: None,
            seq: 0,
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
            a.push(&m);
            if i % 2 == 0 {
                b.push(&m);
            }
        }
        assert_eq!(a.slice_count(), 1, "contiguous messages extend one slice");
        assert_eq!(b.slice_count(), 5);
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
    fn would_block_keeps_the_rest_in_order() {
        let mut outbox = Outbox::default();
        let mut q = OutQueue::default();
        let m = outbox.encode(&group("x"));
        q.push(&m);
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 5,
            calls: 0,
            block_after: 1,
        };
        assert_eq!(q.write_to(&mut sink).unwrap(), 5, "then the socket is full");
        let m2 = outbox.encode(&group("y"));
        q.push(&m2);
        assert_eq!(q.len(), m.len() - 5 + m2.len());
        sink.block_after = usize::MAX;
        sink.limit = usize::MAX;
        q.write_to(&mut sink).unwrap();
        assert!(q.is_empty());
        let text = String::from_utf8(sink.got).unwrap();
        assert!(text.ends_with(
            "\"x\",\"ts\":1}\n{\"type\":\"group\",\"from\":\"a\",\"text\":\"y\",\"ts\":1}\n"
        ));
    }

    #[test]
    fn a_lagging_reader_holds_about_one_slice_per_block() {
        let mut outbox = Outbox::default();
        let (mut lagging, mut keeping_up) = (OutQueue::default(), OutQueue::default());
        let big = "z".repeat(1000);
        for _turn in 0..200 {
            let m = outbox.encode(&group(&big));
            lagging.push(&m);
            keeping_up.push(&m);
            // One writes every turn; the other never does.
            keeping_up.write_to(&mut Vec::new()).unwrap();
        }
        let blocks = lagging.len() / BLOCK_SIZE + 1;
        assert!(
            lagging.slice_count() <= blocks + 1,
            "{} slices for {} blocks",
            lagging.slice_count(),
            blocks
        );
        let mut sink = Trickle {
            got: Vec::new(),
            limit: usize::MAX,
            calls: 0,
            block_after: usize::MAX,
        };
        let total = lagging.len();
        assert_eq!(lagging.write_to(&mut sink).unwrap(), total);
        assert_eq!(sink.got.iter().filter(|&&b| b == b'\n').count(), 200);
    }
}
