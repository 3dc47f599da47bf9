//! Bytes into lines, with the protocol's bound on line length.
//!
//! A `LineReader` holds only the unfinished tail of a connection's input, and
//! never more than the line limit of it: a line that outgrows the limit is
//! reported once, at the moment it does, and its bytes are dropped up to the
//! next `\n`. Complete lines that arrive inside one read are handed out as
//! slices of the caller's buffer, so a connection that is not in the middle
//! of a line owns no input memory at all (which keeps idle connections
//! cheap, see `server::room`).

/// What the reader found in the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its `\n` (a `\r` before it is left in: it
    /// counted towards the limit, and JSON parsing treats it as blank).
    Line(&'a [u8]),
    /// The current line has passed the limit; what is left of it will be
    /// skipped. Reported once per over-long line.
    TooLong,
}

#[derive(Debug)]
pub struct LineReader {
    /// The start of a line that has not seen its `\n` yet.
    partial: Vec<u8>,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    /// Longest accepted line, `\n` included. 32 bits (a line of 4 GiB is
    /// out of reach anyway): the server keeps one reader per connection.
    max_line: u32,
}

impl LineReader {
    pub fn new(max_line: usize) -> LineReader {
        LineReader {
            partial: Vec::new(),
            discarding: false,
            max_line: u32::try_from(max_line).unwrap_or(u32::MAX).max(1),
        }
    }

    /// Splits `data` into frames, calling `on_frame` for each in order.
    /// `on_frame` returns `false` to stop early (after `quit`, or when the
    /// sender has used up its message allowance); the bytes consumed are
    /// returned, so the caller can keep the rest for later.
    pub fn feed(&mut self, data: &[u8], mut on_frame: impl FnMut(Frame<'_>) -> bool) -> usize {
        let mut at = 0;
        while at < data.len() {
            if !self.discarding && self.partial.is_empty() {
                return self.feed_between_lines(data, at, &mut on_frame);
            }
            let rest = &data[at..];
            let newline = memchr::memchr(b'\n', rest);
            if self.discarding {
                match newline {
                    Some(i) => {
                        self.discarding = false;
                        at += i + 1;
                        continue;
                    }
                    None => return data.len(),
                }
            }
            // Room left for the line's content: the `\n` needs one byte.
            let room = self.max_line as usize - 1 - self.partial.len();
            match newline {
                Some(i) if i <= room => {
                    self.partial.extend_from_slice(&rest[..i]);
                    // The buffer goes with the line: a connection between
                    // lines holds no input memory.
                    let line = std::mem::take(&mut self.partial);
                    at += i + 1;
                    if !on_frame(Frame::Line(&line)) {
                        return at;
                    }
                }
                None if rest.len() <= room => {
                    self.partial.extend_from_slice(rest);
                    return data.len();
                }
                _ => {
                    if let Some(stop) = self.too_long(at, &mut on_frame) {
                        return stop;
                    }
                }
            }
        }
        data.len()
    }

    /// The hot path, with nothing held over: every complete line in
    /// `data[at..]` is handed out in place, found by one pass of `memchr`
    /// over the buffer (a load generator reads thousands of lines at a
    /// time), then the unfinished tail is kept.
    fn feed_between_lines(
        &mut self,
        data: &[u8],
        at: usize,
        on_frame: &mut impl FnMut(Frame<'_>) -> bool,
    ) -> usize {
        let rest = &data[at..];
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', rest) {
            let line_start = start;
            start = end + 1;
            // Content and `\n` over the limit.
            if end - line_start >= self.max_line as usize {
                self.discarding = true;
                if !on_frame(Frame::TooLong) {
                    // The caller feeds the line again later; it is skipped.
                    return at + line_start;
                }
                self.discarding = false;
                continue;
            }
            if !on_frame(Frame::Line(&rest[line_start..end])) {
                return at + start;
            }
        }
        let tail = &rest[start..];
        if tail.len() < self.max_line as usize {
            self.partial.extend_from_slice(tail);
            return data.len();
        }
        self.too_long(at + start, on_frame).unwrap_or(data.len())
    }

    /// The current line (starting at `at`) has passed the limit: say so
    /// now and skip to its end. `Some(at)` when the caller said stop.
    fn too_long(
        &mut self,
        at: usize,
        on_frame: &mut impl FnMut(Frame<'_>) -> bool,
    ) -> Option<usize> {
        self.partial = Vec::new();
        self.discarding = true;
        (!on_frame(Frame::TooLong)).then_some(at)
    }

    /// Bytes held for an unfinished line.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the chunks in order and lists what came out, lines as strings.
    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut reader = LineReader::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, |f| {
                out.push(match f {
                    Frame::Line(l) => String::from_utf8_lossy(l).into_owned(),
                    Frame::TooLong => "<too long>".to_owned(),
                });
                true
            });
            assert!(reader.pending() < max, "buffered past the limit");
        }
        out
    }

    #[test]
    fn splits_coalesced_lines() {
        assert_eq!(
            frames(100, &[b"a\nbb\r\n\nccc\n"]),
            ["a", "bb\r", "", "ccc"]
        );
    }

    #[test]
    fn joins_a_line_written_one_byte_at_a_time() {
        let line = b"{\"type\":\"who\"}\n";
        let chunks: Vec<&[u8]> = line.chunks(1).collect();
        assert_eq!(frames(100, &chunks), ["{\"type\":\"who\"}"]);
    }

    #[test]
    fn a_line_exactly_at_the_limit_passes() {
        // 9 bytes of content and the `\n` make 10.
        assert_eq!(frames(10, &[b"123456789\n"]), ["123456789"]);
        assert_eq!(frames(10, &[b"12345", b"6789", b"\n"]), ["123456789"]);
        assert_eq!(frames(10, &[b"12345678\r\n"]), ["12345678\r"]);
    }

    #[test]
    fn one_byte_over_is_refused_once_and_skipped() {
        assert_eq!(frames(10, &[b"1234567890\nok\n"]), ["<too long>", "ok"]);
        assert_eq!(frames(10, &[b"123456789\r\nok\n"]), ["<too long>", "ok"]);
    }

    #[test]
    fn an_endless_line_is_refused_as_soon_as_it_passes_the_limit() {
        let mut reader = LineReader::new(10);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            reader.feed(b"xxxxxxx", |f| {
                seen.push(f == Frame::TooLong);
                true
            });
        }
        assert_eq!(seen, [true], "exactly one refusal, and no lines");
        assert_eq!(reader.pending(), 0);
        reader.feed(b"tail\nnext\n", |f| {
            seen.push(matches!(f, Frame::Line(b"next")));
            true
        });
        assert_eq!(seen, [true, true]);
    }

    #[test]
    fn stopping_early_leaves_the_rest() {
        let mut reader = LineReader::new(100);
        let mut n = 0;
        let consumed = reader.feed(b"a\nb\nc\n", |_| {
            n += 1;
            n < 2
        });
        assert_eq!((n, consumed), (2, 4), "stopped after b, c left for later");
    }

    #[test]
    fn stopping_at_a_refusal_skips_that_line_when_fed_again() {
        let mut reader = LineReader::new(10);
        let data = b"1234567890\nok\n";
        let mut seen = Vec::new();
        let consumed = reader.feed(data, |f| {
            seen.push(f == Frame::TooLong);
            false
        });
        assert_eq!((seen.as_slice(), consumed), (&[true][..], 0));
        reader.feed(&data[consumed..], |f| {
            seen.push(matches!(f, Frame::Line(b"ok")));
            true
        });
        assert_eq!(seen, [true, true], "refused once, then the next line");
    }

    #[test]
    fn an_unfinished_line_waits() {
        assert_eq!(frames(100, &[b"abc"]), Vec::<String>::new());
    }
}
