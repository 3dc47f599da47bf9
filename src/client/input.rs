//! The forked child: it owns the keyboard. It reads what the user types
//! (with rustyline when stdin is a terminal, line by line otherwise) and
//! writes each line into the pipe to the parent, which does everything
//! else. Its code path ends in `_exit`, never in the parent's code.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Pid, getppid};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Config, Editor, Event, EventContext,
    EventHandler, KeyCode, KeyEvent, Modifiers, Movement, RepeatCount,
};

use super::commands;
use super::complete::{ChatHelper, Names};
use super::fork::exit_now;
use super::printer::{CloseOnEnter, Gate, PromptCell};
use super::{clock, history, printer, signals, terminal};
use crate::render::{Renderer, Style};
use crate::secret;
use zeroize::Zeroizing;

/// How long the first prompt may wait for the welcome (the parent gives
/// up on the server after as long).
const FIRST_PROMPT_WAIT: Duration = Duration::from_secs(5);
/// How long a `/join` or `/part` may take to settle the next prompt.
const ROOM_PROMPT_WAIT: Duration = Duration::from_secs(2);

/// What Ctrl-C on an empty line says, once: people press it to leave.
pub const CTRL_C_HINT: &str = "(type /quit or press Ctrl-D to leave)";

/// The line the child sends the parent for each Ctrl-C (ETX, which the
/// editor never puts in a typed line: Ctrl-C is bound here). The parent
/// stops its tries to connect again on it and otherwise ignores it.
pub const CTRL_C_LINE: &str = "\u{3}";

/// Everything the child gets from the parent at the fork.
pub struct Child {
    /// The write end of the input pipe.
    pub to_parent: OwnedFd,
    /// The read end of the display pipe; present exactly when the child
    /// edits lines on a terminal.
    pub from_parent: Option<OwnedFd>,
    pub history: Option<PathBuf>,
    pub saved: Option<terminal::Saved>,
    pub parent: Pid,
    /// The signal mask from before the parent blocked its signals.
    pub mask: SigSet,
    /// How the child's own lines (the Ctrl-C hint) look.
    pub style: Style,
}

/// The child's whole life.
pub fn run(child: Child) -> ! {
    let interactive = child.from_parent.is_some();
    signals::unblock(&child.mask, interactive);
    // Die with the parent. If it is already gone (it died between the fork
    // and here), the death signal will never come: leave now.
    if prctl::set_pdeathsig(Signal::SIGTERM).is_err() || getppid() != child.parent {
        exit_now(1);
    }
    let to_parent = File::from(child.to_parent);
    match child.from_parent {
        Some(from_parent) => edit_lines(
            to_parent,
            File::from(from_parent),
            child.history,
            child.saved,
            Renderer { style: child.style },
        ),
        None => copy_lines(to_parent),
    }
}

/// Stdin is not a terminal: pass its bytes on as they come (the parent cuts
/// lines), ending an unfinished last line so it is not lost.
fn copy_lines(mut to_parent: File) -> ! {
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 16 * 1024];
    let mut at_line_start = true;
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => {
                if !at_line_start {
                    let _ = to_parent.write_all(b"\n");
                }
                exit_now(0);
            }
            Ok(n) => {
                at_line_start = buf[n - 1] == b'\n';
                if to_parent.write_all(&buf[..n]).is_err() {
                    exit_now(0);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => exit_now(1),
        }
    }
}

/// Ctrl-C empties the line (rustyline would end `readline` instead). On an
/// empty line, the first time, it ends `readline` so that the hint can be
/// shown between two lines, where nothing else prints (the gate is closed
/// as for Enter). Each Ctrl-C is also told to the parent ([`CTRL_C_LINE`]):
/// while it is trying to connect again, Ctrl-C stops that as `/quit` does.
struct CtrlC {
    gate: Arc<Gate>,
    hinted: AtomicBool,
    to_parent: File,
}

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext<'_>) -> Option<Cmd> {
        // One short write to a pipe is atomic: it cannot split a line.
        let _ = (&self.to_parent).write_all(format!("{CTRL_C_LINE}\n").as_bytes());
        if ctx.line().is_empty() && !self.hinted.swap(true, Ordering::Relaxed) {
            self.gate.close();
            return Some(Cmd::Interrupt);
        }
        Some(Cmd::Kill(Movement::WholeBuffer))
    }
}

fn editor(
    names: Names,
    gate: Arc<Gate>,
    to_parent: File,
) -> rustyline::Result<Editor<ChatHelper, FileHistory>> {
    let config = Config::builder()
        .max_history_size(history::MAX_LINES)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut rl = Editor::with_config(config)?;
    rl.set_helper(Some(ChatHelper {
        names,
        gate: gate.clone(),
    }));
    rl.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(CtrlC {
            gate,
            hinted: AtomicBool::new(false),
            to_parent,
        })),
    );
    Ok(rl)
}

/// Stdin is a terminal: edit lines with rustyline, print the parent's lines
/// through rustyline's external printer (see `printer`).
fn edit_lines(
    mut to_parent: File,
    from_parent: File,
    history: Option<PathBuf>,
    saved: Option<terminal::Saved>,
    render: Renderer,
) -> ! {
    let names = Names::default();
    let gate = Arc::new(Gate::default());
    let prompts = Arc::new(PromptCell::default());
    let ctrl_c_to_parent = match to_parent.try_clone() {
        Ok(file) => file,
        Err(e) => fail(&format!("cannot pass Ctrl-C on: {e}")),
    };
    let mut rl = match editor(names.clone(), gate.clone(), ctrl_c_to_parent) {
        Ok(rl) => rl,
        Err(e) => fail(&format!("cannot edit lines on this terminal: {e}")),
    };
    // Every key that accepts the line (Enter, Ctrl-J, Ctrl-M) closes the
    // gate first.
    for key in [
        KeyEvent(KeyCode::Enter, Modifiers::NONE),
        KeyEvent::ctrl('J'),
        KeyEvent::ctrl('M'),
    ] {
        rl.bind_sequence(
            key,
            EventHandler::Conditional(Box::new(CloseOnEnter(gate.clone()))),
        );
    }
    let mut history = history.filter(|path| match history::prepare(path) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("chat: not keeping history in {}: {e}", path.display());
            false
        }
    });
    if let Some(path) = &history
        && let Err(e) = rl.load_history(path)
    {
        eprintln!("chat: cannot read history from {}: {e}", path.display());
    }
    let printer = match rl.create_external_printer() {
        Ok(p) => p,
        Err(e) => fail(&format!("cannot print above the prompt: {e}")),
    };
    let display_gate = gate.clone();
    let display_prompts = prompts.clone();
    std::thread::spawn(move || {
        printer::run(
            from_parent,
            printer,
            names,
            display_prompts,
            display_gate,
            saved,
        )
    });

    // The first prompt comes with the welcome (and the rooms of --room).
    gate.open();
    let mut prompt = prompts.after(0, FIRST_PROMPT_WAIT);
    loop {
        gate.hold();
        let line = match rl.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                // Ctrl-C on an empty line: the gate is closed; the empty
                // prompt gives way to the hint.
                let mut stdout = io::stdout().lock();
                if !gate.raced() {
                    let _ = stdout.write_all(printer::erase(1).as_bytes());
                }
                let hint = render.stamp(&clock::now(), &render.notice(CTRL_C_HINT));
                let _ = writeln!(stdout, "{hint}");
                let _ = stdout.flush();
                continue;
            }
            Err(ReadlineError::Eof) => exit_now(0),
            Err(e) => fail(&format!("cannot read the keyboard: {e}")),
        };
        // The gate is closed: nothing prints until it opens again.
        let mut stdout = io::stdout().lock();
        if !gate.raced() {
            let cols = rl.dimensions().map_or(80, |(cols, _)| usize::from(cols));
            let _ = stdout
                .write_all(printer::erase(printer::rows_used(&prompt, &line, cols)).as_bytes());
        }
        let command = commands::parse(&line);
        if !line.trim().is_empty() && !is_account_line(&line) {
            let _ = rl.add_history_entry(line.as_str());
            if let Some(path) = &history
                && let Err(e) = rl.append_history(path)
            {
                let _ = writeln!(stdout, "!! not keeping history in {}: {e}", path.display());
                history = None;
            }
        }
        let _ = stdout.flush();
        drop(stdout);
        let seen = prompts.count();
        if to_parent.write_all(format!("{line}\n").as_bytes()).is_err() {
            exit_now(0);
        }
        // Its password follows, typed without echo (the gate is still
        // closed: nothing prints over the prompt for it).
        if command.wants_password() && to_parent.write_all(&password(&command, render)).is_err() {
            exit_now(0);
        }
        // A line that may change the current room: the next prompt waits
        // for the parent to say which room that is. Lines from the parent
        // print meanwhile, as between any two lines.
        let wait = match command.changes_room() {
            true => ROOM_PROMPT_WAIT,
            false => Duration::ZERO,
        };
        gate.open();
        prompt = prompts.after(seen, wait);
    }
}

/// `/login` and `/register` lines stay out of the history, even mistyped
/// with a password after them.
fn is_account_line(line: &str) -> bool {
    let word = line.split_whitespace().next().unwrap_or("");
    ["/login", "/register"]
        .iter()
        .any(|c| word.eq_ignore_ascii_case(c))
}

/// The line for the parent after `/login` or `/register`: the password
/// typed without echo (twice for `/register`), or [`CTRL_C_LINE`] when
/// there is none, after saying why. The prompt is wiped once answered.
fn password(command: &commands::Command<'_>, render: Renderer) -> Zeroizing<Vec<u8>> {
    // Room enough that pushing never moves (and so copies) the password.
    let mut line = Zeroizing::new(Vec::with_capacity(4096));
    let say = |text: &str, error: bool| {
        let shown = match error {
            true => render.error(text),
            false => render.notice(text),
        };
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{}", render.stamp(&clock::now(), &shown));
        let _ = stdout.flush();
    };
    let tty = match File::options().read(true).write(true).open("/dev/tty") {
        Ok(tty) => tty,
        Err(e) => {
            say(&format!("cannot ask for the password: /dev/tty: {e}"), true);
            line.extend_from_slice(format!("{CTRL_C_LINE}\n").as_bytes());
            return line;
        }
    };
    const WIPE: &str = "\r\x1b[K";
    let ask = |prompt: &str| match secret::read_hidden(&tty, prompt, WIPE) {
        Ok(secret::Typed::Line(password)) => Some(password),
        Ok(secret::Typed::Cancelled) => {
            say("cancelled; nothing was sent", false);
            None
        }
        Err(e) => {
            say(&format!("cannot read the password: {e}"), true);
            None
        }
    };
    let typed = match command {
        commands::Command::Login(account) => ask(&format!("password for {account}: ")),
        _ => ask("new password: ").and_then(|first| {
            let again = ask("the same again: ")?;
            if again != first {
                say("the two passwords differ; nothing was sent", true);
                return None;
            }
            Some(first)
        }),
    };
    match typed {
        Some(password) => line.extend_from_slice(password.expose().as_bytes()),
        None => line.extend_from_slice(CTRL_C_LINE.as_bytes()),
    }
    line.push(b'\n');
    line
}

/// One line on stderr, then out. The parent sees the pipe close and ends
/// the session.
fn fail(message: &str) -> ! {
    eprintln!("chat: {message}");
    exit_now(1)
}
