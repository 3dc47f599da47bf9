//! The parent: one mio loop over the socket, the pipe from the child, the
//! pipe to it, and a signalfd. Lines from the child become protocol
//! messages, lines from the server become display lines (see `session`);
//! this file only moves bytes and decides when the session is over.
//!
//! Every wakeup services every source until it would block, which is what
//! edge-triggered readiness needs and keeps the flow easy to follow: there
//! are four descriptors, not thousands.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::unix::pipe::Receiver;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use crate::addr::Server;
use crate::fail::{Fail, Outcome};
use crate::framing::{Frame, LineReader};
use crate::interest::want_writable;
use crate::peer::{Incoming, Peer, ReadStatus};
use crate::secret::Secret;
use crate::wire::{ByeReason, ClientMsg, client_line};
use zeroize::Zeroize;

use super::clock;
use super::commands;
use super::display::{MAX_QUEUE, Screen};
use super::input::CTRL_C_LINE;
use super::session::{Effect, Session};

const SERVER: Token = Token(0);
const INPUT: Token = Token(1);
const DISPLAY: Token = Token(2);
const SIGNALS: Token = Token(3);

/// How long the server may take to welcome us and answer our first
/// `nick`: a server that says nothing sensible (not a chat server, or a
/// broken one) must not leave the client waiting forever.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(5);
/// How long `quit` may wait for its `bye`.
const BYE_WAIT: Duration = Duration::from_secs(3);
/// How long the child may take to draw its last lines and go.
const CHILD_WAIT: Duration = Duration::from_secs(2);
/// Longest typed line; the server's own limit is 64 KiB.
const MAX_INPUT_LINE: usize = 1 << 20;
/// Typed lines held while the server has not welcomed us yet.
const MAX_WAITING_LINES: usize = 10_000;
/// The first wait before connecting again after a lost connection; each
/// failed try doubles it, up to [`RETRY_MAX`]: a server restarting is back
/// within seconds, one that is down for long is not hammered.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// One try at connecting again; short, as the loop waits for it.
const RETRY_CONNECT: Duration = Duration::from_secs(2);

/// A line from the child.
enum Typed {
    Line(String),
    /// Longer than [`MAX_INPUT_LINE`]; dropped.
    TooLong,
    /// `/login` or `/register` with the line after it, its password;
    /// `None` when the child's prompt for it was cancelled (it sends
    /// [`CTRL_C_LINE`] then) or the input ended first.
    WithPassword {
        line: String,
        password: Option<Secret>,
    },
}

enum Phase {
    Chatting,
    /// The connection was lost; the next try is `at`. Typed lines wait;
    /// `/quit`, the end of input or Ctrl-C stop trying.
    Reconnecting {
        at: Instant,
        /// The wait before this try, doubled for the next.
        delay: Duration,
        /// Why the connection was lost, for the exit message.
        why: String,
    },
    /// `quit` is sent; waiting for `bye`.
    Quitting {
        until: Instant,
    },
    /// The session is over; waiting for the child to finish and go.
    Closing {
        until: Instant,
        outcome: Outcome,
    },
}

pub struct Parent {
    poll: Poll,
    /// Every address of the server, to connect again.
    server: Server,
    /// The address connected to.
    addr: SocketAddr,
    /// `None` once the connection is closed.
    peer: Option<Peer>,
    peer_writable: bool,
    /// `None` once the child has closed its end (it has exited).
    input: Option<Receiver>,
    input_lines: LineReader,
    /// A `/login` or `/register` whose password is the next line in.
    wants_password: Option<String>,
    /// Typed lines that arrived before the session was ready.
    waiting: VecDeque<Typed>,
    input_ended: bool,
    screen: Screen,
    signals: SignalFd,
    session: Session,
    child: Pid,
    json: bool,
    interactive: bool,
    phase: Phase,
    /// Until the session is ready: when to stop waiting for it.
    ready_by: Option<Instant>,
}

/// What the parent is given at the fork.
pub struct Parts {
    pub server: Server,
    pub addr: SocketAddr,
    pub peer: Peer,
    pub input: Receiver,
    pub screen: Screen,
    pub signals: SignalFd,
    pub session: Session,
    pub child: Pid,
    pub json: bool,
    pub interactive: bool,
}

impl Parent {
    pub fn new(mut parts: Parts) -> io::Result<Parent> {
        let poll = Poll::new()?;
        let registry = poll.registry();
        registry.register(&mut parts.peer.stream, SERVER, Interest::READABLE)?;
        parts.input.set_nonblocking(true)?;
        registry.register(&mut parts.input, INPUT, Interest::READABLE)?;
        if let Screen::Child { pipe, .. } = &mut parts.screen {
            pipe.set_nonblocking(true)?;
            registry.register(pipe, DISPLAY, Interest::WRITABLE)?;
        }
        let signal_fd = parts.signals.as_raw_fd();
        registry.register(&mut SourceFd(&signal_fd), SIGNALS, Interest::READABLE)?;
        Ok(Parent {
            poll,
            server: parts.server,
            addr: parts.addr,
            peer: Some(parts.peer),
            peer_writable: false,
            input: Some(parts.input),
            input_lines: LineReader::new(MAX_INPUT_LINE),
            wants_password: None,
            waiting: VecDeque::new(),
            input_ended: false,
            screen: parts.screen,
            signals: parts.signals,
            session: parts.session,
            child: parts.child,
            json: parts.json,
            interactive: parts.interactive,
            phase: Phase::Chatting,
            ready_by: Some(Instant::now() + HANDSHAKE_WAIT),
        })
    }

    /// Runs the session to its end. The child has exited (or been killed)
    /// when this returns; reaping it and restoring the terminal is the
    /// caller's.
    pub fn run(mut self) -> Outcome {
        let mut events = Events::with_capacity(16);
        loop {
            self.service();
            if let Some(outcome) = self.finished() {
                return outcome;
            }
            let timeout = self
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                self.close(Err(Fail::runtime(format!("cannot wait for events: {e}"))));
            }
        }
    }

    /// One turn: every source, until it would block.
    fn service(&mut self) {
        self.read_signals();
        loop {
            self.flush_screen();
            let paused = self.read_server();
            loop {
                let stalled = self.read_input();
                self.run_waiting_lines();
                if !(stalled && self.waiting.is_empty()) {
                    break;
                }
            }
            self.flush_server();
            self.flush_screen();
            // A read stopped at a limit that is lifted now: read again, since
            // edge-triggered readiness will not tell twice.
            if !(paused && self.screen.pending() <= MAX_QUEUE) {
                break;
            }
        }
        if self.screen.closed() && matches!(self.phase, Phase::Chatting) {
            self.end_input();
        }
        self.check_deadlines();
    }

    fn flush_screen(&mut self) {
        if self.screen.flush().is_err() {
            // The child is gone; the end of its input pipe follows.
            self.drop_child_screen();
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Chatting => self.ready_by,
            Phase::Reconnecting { at, .. } => Some(*at),
            Phase::Quitting { until } | Phase::Closing { until, .. } => Some(*until),
        };
        [phase, self.session.deadline()].into_iter().flatten().min()
    }

    fn read_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGINT) => {
                    // While the child edits lines the terminal sends no
                    // SIGINT; one that arrives anyway is not for us.
                    let child_edits = self.interactive && self.input.is_some();
                    if child_edits {
                        continue;
                    }
                    if let Phase::Reconnecting { why, .. } = &self.phase {
                        let message = self.lost_message(why);
                        self.close(Err(Fail::runtime(message)));
                    } else if self.input_ended {
                        self.close(Err(Fail::runtime("interrupted")));
                    } else {
                        self.end_input();
                    }
                }
                Ok(sig) => {
                    if let Some(peer) = &mut self.peer {
                        let _ = peer.send(&client_line(&ClientMsg::Quit { text: None }));
                    }
                    self.close(Err(Fail::runtime(format!("stopped by {sig}"))));
                }
                Err(_) => {}
            }
        }
    }

    /// Reads what the server sent; true when it did not, because the child
    /// is behind on drawing.
    fn read_server(&mut self) -> bool {
        if self.screen.pending() > MAX_QUEUE {
            return true;
        }
        if matches!(self.phase, Phase::Closing { .. }) {
            return false;
        }
        let Some(peer) = &mut self.peer else {
            return false;
        };
        // In arrival order; `None` for a line too long to keep.
        let mut lines: Vec<Option<Vec<u8>>> = Vec::new();
        let status = peer.read_lines(|incoming| match incoming {
            Incoming::Line(line) => lines.push(Some(line.to_vec())),
            Incoming::TooLong => lines.push(None),
        });
        let time = clock::now();
        let now = Instant::now();
        let mut effects = Vec::new();
        for line in &lines {
            match line {
                None => {
                    let why = "the server sent an overlong line; skipped";
                    effects.push(self.session.refusal(&time, why));
                }
                Some(line) if line.trim_ascii().is_empty() => {}
                Some(line) => self.session.server_line(line, &time, now, &mut effects),
            }
        }
        self.apply(effects);
        match status {
            Ok(ReadStatus::Open) => {}
            Ok(ReadStatus::Closed) => self.server_gone("the server closed the connection"),
            Err(e) => self.server_gone(&e.to_string()),
        }
        false
    }

    fn server_gone(&mut self, why: &str) {
        match self.phase {
            Phase::Quitting { .. } => self.close(Ok(())),
            // A session that was under way is worth getting back: a
            // restarting server is up again in a moment. Not with `--json`:
            // the program reading the protocol decides what to do.
            Phase::Chatting if self.session.welcomed() && !self.json => self.lose(why),
            Phase::Chatting => {
                let message = self.lost_message(why);
                self.close(Err(Fail::runtime(message)));
            }
            Phase::Reconnecting { .. } | Phase::Closing { .. } => {}
        }
    }

    fn lost_message(&self, why: &str) -> String {
        format!("lost the connection to {}: {why}", self.addr)
    }

    /// The connection is gone: drop it and try again after a while.
    fn lose(&mut self, why: &str) {
        if let Some(mut peer) = self.peer.take() {
            let _ = self.poll.registry().deregister(&mut peer.stream);
        }
        self.peer_writable = false;
        self.ready_by = None;
        self.session.lost();
        let delay = jittered(RETRY_FIRST);
        let line = format!(
            "{}; trying again in {} (/quit or Ctrl-C to stop)",
            self.lost_message(why),
            seconds(delay)
        );
        self.say_error(&line);
        self.phase = Phase::Reconnecting {
            at: Instant::now() + delay,
            delay: RETRY_FIRST,
            why: why.to_owned(),
        };
    }

    /// One try at connecting again; on failure the next is set, later.
    fn reconnect(&mut self) {
        let Phase::Reconnecting { delay, why, .. } = &self.phase else {
            return;
        };
        let (delay, why) = (*delay, why.clone());
        let tls = self.server.tls.clone();
        let tried = self.server.connect(
            |addr| Peer::connect(addr, RETRY_CONNECT, tls.as_deref()),
            crate::bot::runner::io_reason,
        );
        let registered = tried.and_then(|(mut peer, addr)| {
            self.poll
                .registry()
                .register(&mut peer.stream, SERVER, Interest::READABLE)
                .map(|()| (peer, addr))
                .map_err(|e| format!("{addr}: {e}"))
        });
        match registered {
            Ok((peer, addr)) => {
                self.peer = Some(peer);
                self.addr = addr;
                self.phase = Phase::Chatting;
                self.ready_by = Some(Instant::now() + HANDSHAKE_WAIT);
                let line = self
                    .session
                    .render
                    .notice(&format!("connected again to {addr}"));
                self.screen
                    .show(&self.session.render.stamp(&clock::now(), &line));
            }
            Err(e) => {
                let delay = (delay * 2).min(RETRY_MAX);
                let wait = jittered(delay);
                self.say_error(&format!(
                    "cannot connect again to {e}; trying again in {} (/quit or Ctrl-C to stop)",
                    seconds(wait)
                ));
                self.phase = Phase::Reconnecting {
                    at: Instant::now() + wait,
                    delay,
                    why,
                };
            }
        }
    }

    fn say_error(&mut self, text: &str) {
        let line = self.session.render.error(text);
        self.screen
            .show(&self.session.render.stamp(&clock::now(), &line));
    }

    /// Reads what the child sent; true when it stopped early because too
    /// many lines are waiting for the session to be ready.
    fn read_input(&mut self) -> bool {
        if self.waiting.len() > MAX_WAITING_LINES {
            return true;
        }
        let Some(input) = &mut self.input else {
            return false;
        };
        let mut buf = [0u8; 16 * 1024];
        let mut eof = false;
        loop {
            match input.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    let waiting = &mut self.waiting;
                    let wants_password = &mut self.wants_password;
                    self.input_lines.feed(&buf[..n], |frame| {
                        waiting.extend(typed(frame, wants_password));
                        true
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        // It may have held a password.
        buf.zeroize();
        if eof {
            if let Some(line) = self.wants_password.take() {
                self.waiting.push_back(Typed::WithPassword {
                    line,
                    password: None,
                });
            }
            // The child has closed its end: it has exited.
            if let Some(mut input) = self.input.take() {
                let _ = self.poll.registry().deregister(&mut input);
            }
            self.drop_child_screen();
            self.input_ended = true;
        }
        false
    }

    /// Typed lines run once the session is ready; the end of input then
    /// quits.
    fn run_waiting_lines(&mut self) {
        if let Phase::Reconnecting { why, .. } = &self.phase {
            // Lines typed while away go out once back, unless one of them
            // (or the end of input) says to stop: then what was lost is the
            // outcome.
            let quit = self.waiting.iter().any(|t| {
                matches!(t, Typed::Line(l) if l == CTRL_C_LINE
                    || matches!(commands::parse(l), commands::Command::Quit(_)))
            });
            if quit || self.input_ended {
                let message = self.lost_message(why);
                self.waiting.clear();
                self.close(Err(Fail::runtime(message)));
            }
            return;
        }
        if !matches!(self.phase, Phase::Chatting) {
            self.waiting.clear();
            return;
        }
        if !self.session.ready() {
            return;
        }
        while let Some(typed) = self.waiting.pop_front() {
            let time = clock::now();
            let mut effects = Vec::new();
            match typed {
                // Ctrl-C while connected: the child has handled it.
                Typed::Line(line) if line == CTRL_C_LINE => {}
                Typed::Line(line) => {
                    self.session
                        .command(commands::parse(&line), &time, &mut effects);
                }
                Typed::TooLong => {
                    let why = "that line is too long; nothing was sent";
                    effects.push(self.session.refusal(&time, why));
                }
                Typed::WithPassword { line, password } => {
                    self.with_password(&line, password, &time, &mut effects);
                }
            }
            self.apply(effects);
            if !matches!(self.phase, Phase::Chatting) {
                self.waiting.clear();
                return;
            }
        }
        if self.input_ended {
            self.end_input();
        }
    }

    /// `/login` or `/register`, and its password if one came.
    fn with_password(
        &mut self,
        line: &str,
        password: Option<Secret>,
        time: &str,
        effects: &mut Vec<Effect>,
    ) {
        let Some(password) = password else {
            // The child said why (a cancelled prompt); at the end of piped
            // input nothing followed the command.
            if !self.interactive {
                let why = "the input ended before the password; nothing was sent";
                effects.push(self.session.refusal(time, why));
            }
            return;
        };
        match commands::parse(line) {
            commands::Command::Login(account) => {
                self.session.login(account, password, time, effects);
            }
            commands::Command::Register => self.session.register(password, time, effects),
            other => self.session.command(other, time, effects),
        }
    }

    /// The user is done typing: say `quit` and wait for `bye`.
    fn end_input(&mut self) {
        if matches!(self.phase, Phase::Reconnecting { .. }) {
            self.input_ended = true;
            return self.run_waiting_lines();
        }
        if let Some(peer) = &mut self.peer
            && let Err(e) = peer.send(&client_line(&ClientMsg::Quit { text: None }))
        {
            return self.server_gone(&e.to_string());
        }
        self.start_quitting();
    }

    fn start_quitting(&mut self) {
        if matches!(self.phase, Phase::Chatting) {
            self.phase = Phase::Quitting {
                until: Instant::now() + BYE_WAIT,
            };
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Show(line) => self.screen.show(&line),
                Effect::Note(line) => self.screen.note(&line),
                Effect::Users(nicks) => self.screen.users(&nicks),
                Effect::Rooms(rooms) => self.screen.rooms(&rooms),
                Effect::Prompt(prompt) => self.screen.prompt(&prompt),
                Effect::Send(line) => {
                    if let Some(peer) = &mut self.peer
                        && let Err(e) = peer.send(&line)
                    {
                        self.server_gone(&e.to_string());
                    }
                }
                Effect::Quitting => self.start_quitting(),
                Effect::Bye(ByeReason::Quit) => self.close(Ok(())),
                Effect::Bye(ByeReason::Shutdown) => {
                    let message = format!("the server at {} is shutting down", self.addr);
                    self.close(Err(Fail::runtime(message)));
                }
            }
        }
    }

    fn flush_server(&mut self) {
        let Some(peer) = &mut self.peer else { return };
        if let Err(e) = peer.flush() {
            return self.server_gone(&e.to_string());
        }
        let want = peer.pending() > 0;
        let registry = self.poll.registry();
        // On failure the interest stays as it was and the next flush retries.
        let _ = want_writable(
            registry,
            &mut peer.stream,
            SERVER,
            want,
            &mut self.peer_writable,
        );
    }

    /// Ends the session with `outcome` (the first one decided wins): closes
    /// the connection and tells the child to finish.
    fn close(&mut self, outcome: Outcome) {
        if matches!(self.phase, Phase::Closing { .. }) {
            return;
        }
        if let Some(mut peer) = self.peer.take() {
            let _ = peer.flush();
            let _ = self.poll.registry().deregister(&mut peer.stream);
        }
        if !matches!(self.screen, Screen::Child { .. }) && self.input.is_some() {
            // A child copying stdin has nothing to draw and may be blocked
            // reading: stop it now.
            let _ = kill(self.child, Signal::SIGTERM);
        }
        self.phase = Phase::Closing {
            until: Instant::now() + CHILD_WAIT,
            outcome,
        };
    }

    /// The child's screen is no longer usable (it exited): what it did not
    /// take is printed here, and from now on lines go to stdout.
    fn drop_child_screen(&mut self) {
        if let Some(mut pipe) = self.screen.switch_to_stdout(self.json) {
            let _ = self.poll.registry().deregister(&mut pipe);
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        if self.session.deadline().is_some_and(|d| d <= now) {
            let mut effects = Vec::new();
            self.session.tick(now, &mut effects);
            self.apply(effects);
            self.flush_screen();
        }
        if self.session.ready() {
            self.ready_by = None;
        }
        if let (Phase::Chatting, Some(by)) = (&self.phase, self.ready_by)
            && now >= by
        {
            self.ready_by = None;
            self.handshake_overdue();
        }
        if matches!(&self.phase, Phase::Reconnecting { at, .. } if now >= *at) {
            self.reconnect();
        }
        match &self.phase {
            Phase::Quitting { until } if now >= *until => self.close(Ok(())),
            Phase::Closing { .. } if self.screen.pending() == 0 => {
                // All lines are in the pipe: closing it tells the child's
                // display thread to draw them and end the child.
                if let Screen::Child { .. } = self.screen {
                    self.drop_child_screen();
                }
            }
            _ => {}
        }
    }

    /// The server did not welcome us, or did not answer our nickname or
    /// our joins, in time. Without a welcome there is no session; the rest
    /// is given up, and the lines typed meanwhile go out as things are.
    fn handshake_overdue(&mut self) {
        if !self.session.welcomed() {
            let message = format!(
                "no welcome from {} within {} s; is it a chat server?",
                self.addr,
                HANDSHAKE_WAIT.as_secs()
            );
            return self.close(Err(Fail::runtime(message)));
        }
        let mut effects = Vec::new();
        self.session.start_overdue(&clock::now(), &mut effects);
        self.apply(effects);
        self.run_waiting_lines();
        self.flush_server();
        self.flush_screen();
    }

    /// The outcome, once the session is closed and the child is gone (or
    /// overdue, and then killed).
    fn finished(&mut self) -> Option<Outcome> {
        let Phase::Closing { until, .. } = &self.phase else {
            return None;
        };
        let overdue = Instant::now() >= *until;
        if self.input.is_some() && !overdue {
            return None;
        }
        if self.input.is_some() {
            let _ = kill(self.child, Signal::SIGKILL);
        }
        self.drop_child_screen();
        match std::mem::replace(&mut self.phase, Phase::Chatting) {
            Phase::Closing { outcome, .. } => Some(outcome),
            _ => None,
        }
    }
}

/// One line from the child, as typed. The line after a `/login` or
/// `/register` is its password: it is never read as a command, never
/// said, and only ever sent inside that `login` or `register`.
/// `None` for a command that waits for its password.
fn typed(frame: Frame<'_>, wants_password: &mut Option<String>) -> Option<Typed> {
    Some(match (frame, wants_password.take()) {
        (Frame::Line(bytes), Some(line)) => {
            let password = match std::str::from_utf8(bytes) {
                Ok(CTRL_C_LINE) => None,
                Ok(text) => Some(Secret::new(
                    text.strip_suffix('\r').unwrap_or(text).to_owned(),
                )),
                Err(_) => Some(Secret::new(String::new())),
            };
            Typed::WithPassword { line, password }
        }
        (Frame::TooLong, Some(line)) => Typed::WithPassword {
            line,
            password: Some(Secret::new(String::new())),
        },
        (Frame::Line(bytes), None) => {
            let line = String::from_utf8_lossy(bytes).into_owned();
            if commands::parse(&line).wants_password() {
                *wants_password = Some(line);
                return None;
            }
            Typed::Line(line)
        }
        (Frame::TooLong, None) => Typed::TooLong,
    })
}

/// `delay` less up to a quarter, so that many clients cut off together do
/// not all come back in the same instant. The clock's nanoseconds are
/// random enough for that.
fn jittered(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let quarter = delay / 4;
    delay - quarter.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// `1 s`, `1.5 s`: a wait, as people read it.
fn seconds(d: Duration) -> String {
    let tenths = d.as_millis().div_ceil(100);
    match tenths % 10 {
        0 => format!("{} s", tenths / 10),
        t => format!("{}.{t} s", tenths / 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_a_little_less_than_the_delay() {
        for delay in [RETRY_FIRST, RETRY_MAX] {
            let d = jittered(delay);
            assert!(d <= delay && d >= delay * 3 / 4, "{d:?}");
        }
        assert_eq!(seconds(Duration::from_secs(2)), "2 s");
        assert_eq!(seconds(Duration::from_millis(750)), "0.8 s");
    }
}
