//! Output: every message is encoded once into a shared block, and each
//! connection's queue holds slices of blocks, not copies.
//!
//! The [`Outbox`] appends encoded lines to its current block. A message for
//! a hundred receivers is encoded once and each receiver's [`OutQueue`]
//! records the byte range; when a receiver's last range ends where the new
//! one starts (the usual case in a busy room), the range is just extended.
//! So a receiver that keeps up writes a whole turn's messages as one slice,
//! and one that lags behind a run of broadcasts still holds one slice,
//! however many blocks it is behind: the slice runs on from a retired
//! block into the next one of the same outbox (see `BlockData`).
//!
//! A block only ever grows at its end and queues only read below it, so
//! sharing it needs no copy and no `unsafe`: a `RefCell` checks at run time
//! that appending (routing) and reading (writing to sockets) never overlap,
//! which they cannot in a single-threaded loop. A full block is trimmed to
//! its length and retired; it is freed when the last queue holding a slice
//! of it (or running through it) has written that slice.
//!
//! Nothing here allocates per delivery: a delivery is a range extension or a
//! reference-count increment.

use std::cell::{Cell, Ref, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::ServerMsg;

/// Bytes shared by every queue holding a slice of them.
type Block = Rc<BlockData>;

/// A block's bytes, where it stands in its outbox's sequence, and the link
/// that lets one slice run on into the next block.
///
/// A lagging reader's queue would otherwise hold one slice per block it is
/// behind, and an idle connection that does not read its presence
/// notices is behind by every `join` since it stopped: at 10 000
/// connections that list was most of its memory. Now a slice can run on
/// through consecutive blocks of one outbox, held together by `next`.
/// The link is counted (`crossings`) and cut when no queued slice runs
/// through it any more, so that a queue holding a stale slice of one block
/// never pins the blocks after it.
#[derive(Debug)]
struct BlockData {
    bytes: RefCell<Vec<u8>>,
    /// Its outbox's identity (high 32 bits) and its place in that outbox's
    /// sequence: the block after it in the same outbox is `index + 1`.
    index: u64,
    /// The final length of the block before it in the same outbox, or
    /// `u32::MAX` if there is none: a slice ending there runs on into this
    /// block only when it ended at that length.
    prev_len: u32,
    /// The next block of the same outbox, while some slice runs into it.
    next: RefCell<Option<Block>>,
    /// Queued slices running from this block into `next`.
    crossings: Cell<u32>,
}

impl BlockData {
    fn len(&self) -> usize {
        self.bytes.try_borrow().map_or(0, |b| b.len())
    }

    fn next(&self) -> Option<Block> {
        self.next.try_borrow().ok().and_then(|n| n.clone())
    }

    /// One more slice runs from this block into `next`.
    fn link(&self, next: &Block) {
        if let Ok(mut link) = self.next.try_borrow_mut()
            && link.is_none()
        {
            *link = Some(Rc::clone(next));
        }
        self.crossings.set(self.crossings.get() + 1);
    }

    /// One slice no longer runs on past this block: the last one cuts the
    /// link, and the next block lives only as long as others hold it.
    fn unlink(&self) {
        let left = self.crossings.get().saturating_sub(1);
        self.crossings.set(left);
        if left == 0
            && let Ok(mut link) = self.next.try_borrow_mut()
        {
            *link = None;
        }
    }
}

impl Drop for BlockData {
    /// Frees a chain of linked blocks one by one, not by recursion (only a
    /// bug could leave a link behind, but a long chain must not overflow
    /// the stack even then).
    fn drop(&mut self) {
        let mut next = self.next.get_mut().take();
        while let Some(block) = next {
            next = match Rc::try_unwrap(block) {
                Ok(mut data) => data.next.get_mut().take(),
                Err(_) => None,
            };
        }
    }
}

/// A block is retired once it holds this much, so a slow reader pins at
/// most about this much memory beyond its own queue.
const BLOCK_SIZE: usize = 64 * 1024;

/// Entries per `writev`; Linux accepts 1024, but a receiver rarely has more
/// than a few slices.
const MAX_IOV: usize = 64;

/// Outboxes so far: each gets its own range of block indices.
static OUTBOXES: AtomicU64 = AtomicU64::new(0);

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
        let outbox = OUTBOXES.fetch_add(1, Ordering::Relaxed);
        Outbox {
            block: new_block(outbox << 32, u32::MAX),
        }
    }
}

fn new_block(index: u64, prev_len: u32) -> Block {
    Rc::new(BlockData {
        bytes: RefCell::new(Vec::with_capacity(BLOCK_SIZE)),
        index,
        prev_len,
        next: RefCell::new(None),
        crossings: Cell::new(0),
    })
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
            .bytes
            .try_borrow()
            .map_or(true, |b| b.len() >= BLOCK_SIZE);
        if full {
            self.retire();
        }
        if self.block.bytes.try_borrow_mut().is_err() {
            // Only a bug could leave a block borrowed here; a fresh one
            // (that no slice may run into) keeps the server going.
            self.block = new_block(self.block.index.wrapping_add(1), u32::MAX);
        }
        let mut bytes = self.block.bytes.borrow_mut();
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

    /// Trims the current block to its contents and starts the next one.
    fn retire(&mut self) {
        let prev_len = match self.block.bytes.try_borrow_mut() {
            Ok(mut bytes) => {
                bytes.shrink_to_fit();
                u32::try_from(bytes.len()).unwrap_or(u32::MAX)
            }
            Err(_) => u32::MAX,
        };
        self.block = new_block(self.block.index.wrapping_add(1), prev_len);
    }
}

/// A run of bytes: from `start` in `block` through `span` more blocks of
/// the same outbox (linked by their `next`), to `end` in the last one.
#[derive(Debug)]
struct Slice {
    block: Block,
    start: u32,
    end: u32,
    span: u32,
}

impl Slice {
    /// Runs the slice on to the end of `msg`, when `msg` comes right after
    /// it: in its last block, or at the start of the block after that one.
    fn extend(&mut self, msg: &Encoded) -> bool {
        if self.span == 0 {
            // The usual case: one block, and the message follows at once.
            if self.end == msg.start && Rc::ptr_eq(&self.block, &msg.block) {
                self.end = msg.end;
                return true;
            }
        } else if self.end == msg.start
            && msg.block.index == self.block.index.wrapping_add(u64::from(self.span))
        {
            self.end = msg.end;
            return true;
        }
        let follows = msg.start == 0
            && msg.block.prev_len == self.end
            && msg.block.index == self.block.index.wrapping_add(u64::from(self.span) + 1);
        if !follows {
            return false;
        }
        let Some(last) = self.last_block() else {
            return false;
        };
        last.link(&msg.block);
        self.span += 1;
        self.end = msg.end;
        true
    }

    /// The block the slice ends in: a walk of `span` links, made once per
    /// block a lagging reader falls behind.
    fn last_block(&self) -> Option<Block> {
        let mut block = Rc::clone(&self.block);
        for _ in 0..self.span {
            block = block.next()?;
        }
        Some(block)
    }

    /// Where the slice's bytes in its first block end.
    fn first_end(&self) -> u32 {
        if self.span == 0 {
            self.end
        } else {
            self.block.len() as u32
        }
    }

    /// Drops the first block from a slice that runs on past it.
    fn advance(&mut self) {
        let Some(next) = self.block.next() else {
            // Unreachable while the links are counted right; end the
            // slice rather than loop.
            self.end = self.start;
            self.span = 0;
            return;
        };
        self.block.unlink();
        self.block = next;
        self.span -= 1;
        self.start = 0;
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        if self.span == 0 {
            return;
        }
        let mut block = Rc::clone(&self.block);
        for _ in 0..self.span {
            let next = block.next();
            block.unlink();
            match next {
                Some(next) => block = next,
                None => return,
            }
        }
    }
}

/// A piece of a slice with its block borrowed for a write.
type Borrowed<'a> = (Ref<'a, Vec<u8>>, u32, u32);

/// What one queued slice costs beyond its bytes; counted in [`OutQueue::cost`]
/// so that `--max-queue` bounds the memory a reader holds, not just bytes.
const SLICE_COST: usize = std::mem::size_of::<Slice>();

/// One connection's pending output, in order: the slices in `head`, then
/// `tail`.
///
/// The last slice lives inline, in the user's record, because that is the
/// one every delivery looks at: a broadcast to a thousand receivers that
/// keep up extends a thousand inline ranges without touching the heap, and
/// a queue of one slice (the usual case) owns no allocation at all. That
/// includes a reader that lags by many blocks of broadcasts: its slice
/// runs on through them.
#[derive(Debug, Default)]
#[repr(C)]
pub struct OutQueue {
    /// First, with `len`: the fields a delivery reads and writes.
    tail: Option<Slice>,
    len: usize,
    /// Only a reader whose output is not one run of bytes (a `pong` or a
    /// welcome between broadcasts, messages of rooms in turn) has more
    /// than the inline slice; the list is boxed so that a queue that keeps
    /// up costs 8 bytes for it, not 32.
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

    /// Slices held: one per run of contiguous messages.
    pub fn slice_count(&self) -> usize {
        self.head.as_ref().map_or(0, |h| h.len()) + usize::from(self.tail.is_some())
    }

    fn slices(&self) -> impl Iterator<Item = &Slice> {
        self.head.iter().flat_map(|h| h.iter()).chain(&self.tail)
    }

    /// Queues an encoded message after what is already queued.
    pub fn push(&mut self, msg: &Encoded) {
        self.len += msg.len();
        if let Some(last) = &mut self.tail
            && last.extend(msg)
        {
            return;
        }
        let slice = Slice {
            block: Rc::clone(&msg.block),
            start: msg.start,
            end: msg.end,
            span: 0,
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

    /// Up to [`MAX_IOV`] pieces of the queue, in order, as (block, start,
    /// end): a slice that runs through several blocks is one per block.
    fn pieces(&self) -> [Option<(Block, u32, u32)>; MAX_IOV] {
        let mut pieces: [Option<(Block, u32, u32)>; MAX_IOV] = std::array::from_fn(|_| None);
        let mut n = 0;
        'slices: for slice in self.slices() {
            let mut block = Rc::clone(&slice.block);
            let mut start = slice.start;
            for i in 0..=slice.span {
                if n == MAX_IOV {
                    break 'slices;
                }
                let end = if i == slice.span {
                    slice.end
                } else {
                    block.len() as u32
                };
                if i == slice.span {
                    pieces[n] = Some((block, start, end));
                    n += 1;
                    continue 'slices;
                }
                // A missing link (only a bug) must not let later bytes
                // go out before these: stop at it.
                let Some(next) = block.next() else {
                    pieces[n] = Some((block, start, end));
                    break 'slices;
                };
                pieces[n] = Some((block, start, end));
                n += 1;
                start = 0;
                block = next;
            }
        }
        pieces
    }

    /// Writes the queue, several slices per system call, until it is empty
    /// or the socket would block. Returns the bytes written; `WouldBlock`
    /// is not an error here.
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            let result = {
                // Borrow the blocks first, then point the iovecs into them.
                let pieces = self.pieces();
                let guards: [Option<Borrowed<'_>>; MAX_IOV] = std::array::from_fn(|i| {
                    let (block, start, end) = pieces[i].as_ref()?;
                    Some((block.bytes.try_borrow().ok()?, *start, *end))
                });
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (bytes, start, end) in guards.iter().map_while(Option::as_ref) {
                    let Some(piece) = bytes.get(*start as usize..*end as usize) else {
                        break;
                    };
                    iov[n] = IoSlice::new(piece);
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
            let avail = front.first_end().saturating_sub(front.start) as usize;
            if n < avail {
                front.start += n as u32;
                return;
            }
            n -= avail;
            if front.span > 0 {
                front.advance();
                continue;
            }
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

    fn sink() -> Trickle {
        Trickle {
            got: Vec::new(),
            limit: usize::MAX,
            calls: 0,
            block_after: usize::MAX,
        }
    }

    #[test]
    fn a_lagging_reader_holds_one_slice_across_blocks() {
        let mut outbox = Outbox::default();
        let (mut lagging, mut keeping_up) = (OutQueue::default(), OutQueue::default());
        let big = "z".repeat(1000);
        let mut expected = Vec::new();
        for turn in 0..200 {
            let text = format!("{turn}:{big}");
            let m = outbox.encode(&group(&text));
            group(&text).encode(&mut expected);
            lagging.push(&m);
            keeping_up.push(&m);
            // One writes every turn; the other never does.
            keeping_up.write_to(&mut Vec::new()).unwrap();
        }
        assert!(lagging.len() > 3 * BLOCK_SIZE, "the run crosses blocks");
        assert_eq!(lagging.slice_count(), 1, "one slice, however far behind");
        // Written in small pieces, so that writes end inside blocks and at
        // their edges: the same bytes, in order.
        let mut sink = Trickle {
            limit: 4093,
            ..sink()
        };
        let total = lagging.len();
        assert_eq!(lagging.write_to(&mut sink).unwrap(), total);
        assert!(lagging.is_empty());
        assert_eq!(sink.got, expected);
    }

    #[test]
    fn written_blocks_are_freed_and_a_stale_slice_pins_only_its_own() {
        let mut outbox = Outbox::default();
        let (mut stale, mut lagging) = (OutQueue::default(), OutQueue::default());
        let big = "y".repeat(1000);
        let first = outbox.encode(&group("first"));
        stale.push(&first);
        lagging.push(&first);
        let first_block = Rc::downgrade(&first.block);
        drop(first);
        let mut later = Vec::new();
        for _ in 0..300 {
            let m = outbox.encode(&group(&big));
            lagging.push(&m);
            let block = Rc::downgrade(&m.block);
            if !block.ptr_eq(&first_block) {
                later.push(block);
            }
        }
        assert_eq!(lagging.slice_count(), 1);
        assert!(later.len() > 200, "most of them in later blocks");
        // The outbox moves on, so only queues hold the old blocks.
        outbox = Outbox::default();
        let _ = outbox.encode(&group("elsewhere"));
        lagging.write_to(&mut sink()).unwrap();
        assert!(lagging.is_empty());
        assert!(first_block.upgrade().is_some(), "the stale slice's block");
        assert!(
            later.iter().all(|b| b.upgrade().is_none()),
            "blocks after the stale slice are freed once written"
        );
        stale.clear();
        assert!(first_block.upgrade().is_none());
    }

    #[test]
    fn a_queue_dropped_unwritten_frees_its_blocks() {
        let mut outbox = Outbox::default();
        let mut q = OutQueue::default();
        let big = "x".repeat(2000);
        let mut blocks = Vec::new();
        for _ in 0..200 {
            let m = outbox.encode(&group(&big));
            q.push(&m);
            blocks.push(Rc::downgrade(&m.block));
        }
        // Half written, so the slice starts inside a later block.
        let mut sink = Trickle {
            limit: q.len() / 2,
            block_after: 1,
            ..sink()
        };
        q.write_to(&mut sink).unwrap();
        drop(outbox);
        drop(q);
        assert!(blocks.iter().all(|b| b.upgrade().is_none()));
    }

    #[test]
    fn runs_do_not_cross_into_another_outboxs_blocks() {
        let (mut all, mut one) = (Outbox::default(), Outbox::default());
        let mut q = OutQueue::default();
        let big = "w".repeat(3000);
        let mut expected = Vec::new();
        for i in 0..100 {
            let text = format!("{i}{big}");
            let m = if i % 10 == 9 {
                one.encode(&group(&text))
            } else {
                all.encode(&group(&text))
            };
            group(&text).encode(&mut expected);
            q.push(&m);
        }
        let mut sink = Trickle {
            limit: 1000,
            ..sink()
        };
        q.write_to(&mut sink).unwrap();
        assert_eq!(sink.got, expected);
    }
}
