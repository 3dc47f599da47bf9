//! Printing the parent's lines above the prompt without garbling it.
//!
//! Nothing may write to the terminal while rustyline edits a line
//! (rustyline issue #767): it would land in the middle of the prompt and
//! rustyline, which redraws from what it believes is on screen, would then
//! smear the partial input. rustyline's `ExternalPrinter` is the one safe
//! way in: while a line is being edited, a printed message goes through
//! rustyline's own loop, which clears the prompt, prints the message, and
//! redraws prompt, input and cursor. So the child runs one thread (this
//! module) that reads the parent's records from the display pipe and hands
//! them to the printer; the parent itself never touches the terminal while
//! the child lives. That thread exists because `readline` blocks its own;
//! the parent's side stays a single poll loop.
//!
//! Between two `readline` calls the printer writes directly instead. The
//! [`Gate`] keeps those direct writes away from the moment the accepted
//! line is erased (to be replaced by its rendered echo): Enter closes the
//! gate inside rustyline, and the main thread opens it again once the screen
//! is tidy. It keeps them away from the start of `readline` too: held
//! before, it opens from inside, once the raw mode that sends prints
//! through rustyline's queue is on.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustyline::{Cmd, ConditionalEventHandler, Event, EventContext, ExternalPrinter, RepeatCount};
use unicode_width::UnicodeWidthChar;

use super::complete::Names;
use super::display::Record;
use super::fork::exit_now;
use super::terminal;

/// Prints nothing visible (cursor up a line, then down again) but goes
/// through rustyline's queue, which lets [`run`] wait for that queue to
/// drain before the child exits.
const BARRIER: &str = "\x1b[A\n";

#[derive(Default)]
struct GateState {
    /// Prints may start.
    open: bool,
    /// A print is under way.
    busy: bool,
    /// A print was under way when the gate closed: it may have written
    /// anywhere, so the accepted line is left alone rather than erased.
    raced: bool,
    /// Held for a `readline` about to start: it opens from inside.
    armed: bool,
    /// Inside `readline`, raw mode on: prints go through rustyline's queue.
    reading: bool,
    /// The print under way began outside `readline`: rustyline writes it
    /// to the terminal straight away.
    direct: bool,
}

/// When the display thread may print; see the module comment.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the main thread between lines, while it waits for the
    /// next prompt: lines print straight to the terminal meanwhile.
    pub fn open(&self) {
        let mut state = self.lock();
        state.open = true;
        state.raced = false;
        self.changed.notify_all();
    }

    /// Called by the main thread right before `readline`: no print may
    /// start until `readline` has its raw mode on ([`Gate::opened_inside`]),
    /// and a direct one under way ends first. rustyline's printer looks at
    /// its raw-mode flag, then writes: a print that saw it off and wrote
    /// only after `readline` drew its prompt put its lines after the
    /// prompt, which was then lost above them (seen under load).
    pub fn hold(&self) {
        let mut state = self.lock();
        state.open = false;
        state.armed = true;
        // Only a direct print: one that went to rustyline's queue may wait
        // there for this very `readline` to take it.
        while state.busy && state.direct {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Called from inside `readline` (the helper's hint, before each
    /// redraw, the first with raw mode on): opens the gate held for it,
    /// once; after Enter closed it, later redraws leave it closed.
    pub fn opened_inside(&self) {
        let mut state = self.lock();
        if state.armed {
            state.armed = false;
            state.open = true;
            state.reading = true;
            state.raced = false;
            self.changed.notify_all();
        }
    }

    /// True when a print overlapped the last Enter.
    pub fn raced(&self) -> bool {
        self.lock().raced
    }

    /// Called from inside rustyline when `readline` is about to return.
    pub fn close(&self) {
        let mut state = self.lock();
        state.open = false;
        state.reading = false;
        state.raced = state.busy;
    }

    /// Waits until prints may start and marks one under way. The lock is
    /// not held while printing: a print can block until rustyline takes the
    /// previous one, and rustyline may at that moment be waiting for
    /// [`Gate::close`].
    fn begin(&self) {
        let mut state = self.lock();
        while !state.open {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.busy = true;
        state.direct = !state.reading;
    }

    fn end(&self) {
        self.lock().busy = false;
        self.changed.notify_all();
    }
}

/// The prompt for the next line, as the parent last said, and how many
/// times it has said it. rustyline draws a prompt only when `readline`
/// starts, so the child waits for the parent's word before a line that
/// may change the current room (and before the first line) rather than
/// show a prompt that is out of date.
#[derive(Default)]
pub struct PromptCell {
    state: Mutex<(u64, String)>,
    changed: Condvar,
}

impl PromptCell {
    fn lock(&self) -> MutexGuard<'_, (u64, String)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, prompt: String) {
        let mut state = self.lock();
        state.0 += 1;
        state.1 = prompt;
        self.changed.notify_all();
    }

    /// How many prompts the parent has sent so far.
    pub fn count(&self) -> u64 {
        self.lock().0
    }

    /// The prompt once the parent has sent more than `seen` of them, or as
    /// it is after `wait` (`"> "` if none came).
    pub fn after(&self, seen: u64, wait: Duration) -> String {
        let until = Instant::now() + wait;
        let mut state = self.lock();
        while state.0 <= seen {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(e) => e.into_inner().0,
            };
        }
        if state.1.is_empty() {
            "> ".to_owned()
        } else {
            state.1.clone()
        }
    }
}

/// Bound to Enter: closes the gate from inside rustyline, while the line is
/// still being edited, then lets Enter do what it always does.
pub struct CloseOnEnter(pub Arc<Gate>);

impl ConditionalEventHandler for CloseOnEnter {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext<'_>) -> Option<Cmd> {
        self.0.close();
        None
    }
}

/// The number of screen rows between the start of the prompt and the cursor
/// after rustyline accepted `line` (it ends with a newline), computed as
/// rustyline lays out text: wide characters take two columns, tabs go to the
/// next multiple of 8, a line that exactly fills the width pushes the
/// cursor to the next row.
pub fn rows_used(prompt: &str, line: &str, cols: usize) -> usize {
    let cols = cols.max(1);
    let (mut row, mut col) = (0, 0);
    for c in prompt.chars().chain(line.chars()) {
        if c == '\n' {
            row += 1;
            col = 0;
            continue;
        }
        let width = if c == '\t' {
            8 - col % 8
        } else {
            c.width().unwrap_or(0)
        };
        col += width;
        if col > cols {
            row += 1;
            col = width;
        }
    }
    if col == cols {
        row += 1;
    }
    row + 1
}

/// The escape sequence that erases an accepted line spanning `rows` rows,
/// leaving the cursor where the prompt began.
pub fn erase(rows: usize) -> String {
    format!("\x1b[{rows}A\r\x1b[J")
}

/// The display thread: prints the parent's lines, passes on the names for
/// completion and the prompt,
/// and when the parent closes the pipe (the session is over, or the parent
/// died) makes sure everything sent was drawn, restores the terminal and
/// ends the child.
pub fn run(
    pipe: File,
    mut printer: impl ExternalPrinter,
    names: Names,
    prompt: Arc<PromptCell>,
    gate: Arc<Gate>,
    saved: Option<terminal::Saved>,
) -> ! {
    let mut reader = BufReader::new(pipe);
    let mut line = String::new();
    loop {
        // Whatever is already buffered goes out as one message: a burst of
        // lines costs one redraw of the prompt, not one each.
        let mut batch = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => finish(&mut printer, &batch, &gate, saved.as_ref()),
                Ok(_) => {}
            }
            match Record::decode(line.trim_end_matches('\n')) {
                Some(Record::Print(text)) => {
                    batch.push_str(&text);
                    batch.push('\n');
                }
                Some(Record::Users(list)) => {
                    names.lock().unwrap_or_else(|e| e.into_inner()).nicks = list;
                }
                Some(Record::Rooms(list)) => {
                    names.lock().unwrap_or_else(|e| e.into_inner()).rooms = list;
                }
                Some(Record::Prompt(text)) => prompt.set(text),
                None => {}
            }
            if !reader.buffer().contains(&b'\n') {
                break;
            }
        }
        if !batch.is_empty() {
            gate.begin();
            let printed = printer.print(batch);
            gate.end();
            if printed.is_err() {
                finish(&mut printer, "", &gate, saved.as_ref());
            }
        }
    }
}

/// Prints the last lines, waits until rustyline has drawn them (two
/// barriers: when the second is queued, the first has been taken, so
/// everything before it has been drawn), then restores the terminal and
/// ends the child.
fn finish(
    printer: &mut impl ExternalPrinter,
    last: &str,
    gate: &Gate,
    saved: Option<&terminal::Saved>,
) -> ! {
    gate.begin();
    if !last.is_empty() {
        let _ = printer.print(last.to_owned());
    }
    let _ = printer.print(BARRIER.to_owned());
    let _ = printer.print(BARRIER.to_owned());
    if let Some(saved) = saved {
        saved.restore();
    }
    exit_now(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_rustyline_layout() {
        assert_eq!(rows_used("> ", "", 80), 1);
        assert_eq!(rows_used("> ", "hello", 80), 1);
        assert_eq!(rows_used("> ", &"x".repeat(77), 80), 1);
        // Exactly full: rustyline moves to the next row before the newline.
        assert_eq!(rows_used("> ", &"x".repeat(78), 80), 2);
        assert_eq!(rows_used("> ", &"x".repeat(79), 80), 2);
        assert_eq!(rows_used("> ", &"x".repeat(158), 80), 3);
        // Wide characters take two columns and do not split.
        assert_eq!(rows_used("> ", &"界".repeat(39), 80), 2);
        assert_eq!(rows_used("> ", &"界".repeat(38), 80), 1);
        assert_eq!(rows_used("> ", "a\nb", 80), 2);
        assert_eq!(rows_used("> ", "\t", 10), 1);
        assert_eq!(rows_used("> ", "\t\t", 10), 2);
    }

    #[test]
    fn a_unicode_room_in_the_prompt_counts_its_columns() {
        // 小明的房间 is five wide characters: ten columns, and "> " two.
        assert_eq!(rows_used("小明的房间> ", &"x".repeat(67), 80), 1);
        assert_eq!(rows_used("小明的房间> ", &"x".repeat(68), 80), 2);
        // A combining accent takes no column of its own: cafe\u{301} is 4.
        assert_eq!(rows_used("cafe\u{301}-bar> ", &"x".repeat(69), 80), 1);
        assert_eq!(rows_used("cafe\u{301}-bar> ", &"x".repeat(70), 80), 2);
        assert_eq!(rows_used("ольга> ", &"Ольга ".repeat(12), 80), 1);
    }

    #[test]
    fn a_prompt_is_waited_for_until_it_comes_or_time_is_up() {
        let cell = Arc::new(PromptCell::default());
        assert_eq!(cell.after(0, Duration::ZERO), "> ");
        let setter = cell.clone();
        let t = std::thread::spawn(move || setter.set("rust> ".into()));
        assert_eq!(cell.after(0, Duration::from_secs(10)), "rust> ");
        t.join().unwrap();
        assert_eq!(cell.count(), 1);
        assert_eq!(cell.after(1, Duration::ZERO), "rust> ");
    }

    #[test]
    fn erasing_goes_up_and_clears_below() {
        assert_eq!(erase(2), "\x1b[2A\r\x1b[J");
    }
}
