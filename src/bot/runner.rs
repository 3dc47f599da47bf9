//! Running a validated script: one mio event loop drives every actor's
//! connection, so five hundred actors cost five hundred sockets, not five
//! hundred threads.
//!
//! Steps run strictly in order. A step that waits (a handshake, `nick`,
//! `expect`, `quit`, `sleep`) keeps the loop turning for everyone: whatever
//! any actor receives meanwhile is printed and queued for its next
//! `expect`, and a connection that drops anywhere fails the script at once.

use std::io::{self, BufWriter, StdoutLock, Write};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token};

use super::matching::{Pattern, Received, summary};
use super::script::{Action, Script, Step};
use super::transcript::{self, by, verdict};
use crate::addr::Server;
use crate::arrivals::Arrivals;
use crate::interest::want_writable;
use crate::peer::{Incoming, Peer, ReadStatus};
use crate::render::{Me, Renderer, Style};
use crate::secret::Secret;
use crate::units::format_duration;
use serde_json::value::RawValue;

use crate::wire::{self, ClientMsg, ErrorCode, ServerMsg, client_line};

/// What the command line decided for this run.
pub struct Settings {
    /// Where every actor connects; each tries the addresses in turn.
    pub server: Server,
    /// Every wait without its own `within`: handshakes, `nick`, `quit`,
    /// `expect`.
    pub timeout: Duration,
    /// Print only failures (which `main` prints, not the transcript).
    pub quiet: bool,
    /// `--account`: the actor of that name logs in to it on connecting,
    /// instead of asking for its nickname.
    pub account: Option<String>,
    pub style: Style,
}

/// How many unconsumed messages a failed `expect` lists.
const LAST_FEW: usize = 5;

/// Runs every step. The error is the one failure line,
/// `FILE:LINE: what went wrong`.
pub fn run(script: &Script, settings: &Settings) -> Result<(), String> {
    let mut runner = Runner::new(script, settings).map_err(|e| {
        format!(
            "{}: cannot start the event loop: {}",
            script.name,
            io_reason(&e)
        )
    })?;
    let result = runner.run_steps();
    runner.finish();
    result
}

struct Runner<'a> {
    script: &'a Script,
    settings: &'a Settings,
    /// The settings' server, with the address that answered last first.
    server: Server,
    poll: Poll,
    events: Events,
    room: Room,
}

/// Every actor's connection and queue; the part of the runner that the
/// event handlers change.
struct Room {
    actors: Vec<Conn>,
    out: Option<BufWriter<StdoutLock<'static>>>,
    render: Renderer,
    /// The first connection that ended without `bye`, and why.
    dropped: Option<(usize, String)>,
    /// The script is over: connections may end as they like.
    winding_down: bool,
    /// The last ping token used as a fence.
    tokens: u64,
}

/// One actor at run time.
#[derive(Default)]
struct Conn {
    /// Its nickname as the server knows it (the script's name until then).
    nick: String,
    peer: Option<Peer>,
    /// Its id, from `welcome`.
    id: Option<u64>,
    /// Received and not yet consumed by an `expect`, oldest first.
    queue: Vec<Received>,
    /// Between connecting and the server confirming the nick: the welcome
    /// and that confirmation are the runner's business, not queued.
    handshake: bool,
    /// A `nick` request is out; the server's answer goes in `verdict`.
    awaiting_nick: bool,
    /// A `join`, `part` or `topic` is out; its answer goes in `verdict`.
    awaiting: Option<Request>,
    /// The token of the `ping` sent just before that request, until its
    /// `pong` is back: answers before it belong to earlier steps.
    fence: Option<u64>,
    /// The default room, from `welcome` (a v1 server names none).
    home: Option<String>,
    verdict: Option<Verdict>,
    bye: bool,
    /// WRITABLE is registered (only while output is pending).
    writing: bool,
    last_error: Option<String>,
    /// Why the connection is gone, once it is.
    ended: Option<String>,
    /// A newcomer's join waiting for its rename, to show as one line.
    /// The transcript's arrivals: a guest's join held for its rename. The
    /// bot never times one out: anything else the actor sees or does lets
    /// it out.
    arrivals: Arrivals<()>,
}

/// The server's answer to a `nick`, `join`, `part` or `topic` request.
#[derive(Debug)]
enum Verdict {
    Accepted,
    Refused(String),
}

/// A step that waits for the server to answer it, with the room it names
/// (case-folded, as the answer names it).
#[derive(Clone, Debug)]
enum Request {
    Join(String),
    Part(String),
    Topic(String),
    History(String),
    /// `login`, with the account.
    Login(String),
    Register,
    Logout,
}

impl Request {
    /// Whether `msg` is the answer that grants this request to the actor
    /// now called `nick`.
    fn granted_by(&self, msg: &ServerMsg<'_>, nick: &str) -> bool {
        match (self, msg) {
            (Request::Join(want), ServerMsg::Joined { room, .. })
            | (Request::Part(want), ServerMsg::Parted { room }) => crate::names::same(room, want),
            (Request::History(want), ServerMsg::History { room, .. }) => {
                crate::names::same(room, want)
            }
            (Request::Topic(want), ServerMsg::Topic { room, by, .. }) => {
                crate::names::same(room, want) && crate::names::same(by, nick)
            }
            (Request::Login(_), ServerMsg::LoggedIn { .. })
            | (Request::Register, ServerMsg::Registered { .. })
            | (Request::Logout, ServerMsg::LoggedOut) => true,
            _ => false,
        }
    }

    /// Whether an error with `code` refuses it. Every answer comes in the
    /// order asked, so one of these codes while the request is out is its
    /// answer; `unknown_type` is a server without rooms (or accounts).
    fn refused_by(&self, code: ErrorCode) -> bool {
        use ErrorCode as E;
        match self {
            Request::Join(_) | Request::Part(_) | Request::Topic(_) | Request::History(_) => {
                matches!(
                    code,
                    E::BadRoom | E::NotInRoom | E::TooManyRooms | E::UnknownType | E::BadMessage
                )
            }
            Request::Login(_) | Request::Register | Request::Logout => matches!(
                code,
                E::LoginFailed
                    | E::TooManyAttempts
                    | E::InsecureTransport
                    | E::BadPassword
                    | E::RegistrationClosed
                    | E::NickRegistered
                    | E::BadNick
                    | E::LoginRequired
                    | E::UnknownType
                    | E::BadMessage
            ),
        }
    }

    /// What `unknown_type` means for it.
    fn unknown_hint(&self) -> &'static str {
        match self {
            Request::Login(_) | Request::Register | Request::Logout => {
                "; this server has no accounts"
            }
            _ => "; this server does not serve rooms (they need protocol v2)",
        }
    }

    /// What failed, for `@alice could not ...`.
    fn doing(&self) -> String {
        match self {
            Request::Join(room) => format!("join {room}"),
            Request::Part(room) => format!("part {room}"),
            Request::Topic(room) => format!("set the topic of {room}"),
            Request::History(room) => format!("get the history of {room}"),
            Request::Login(account) => format!("log in to {account}"),
            Request::Register => "register its nickname".to_owned(),
            Request::Logout => "log out".to_owned(),
        }
    }
}

impl<'a> Runner<'a> {
    fn new(script: &'a Script, settings: &'a Settings) -> io::Result<Runner<'a>> {
        let actors = script
            .actors
            .iter()
            .map(|a| Conn {
                nick: a.name.clone(),
                ..Conn::default()
            })
            .collect();
        Ok(Runner {
            script,
            settings,
            server: settings.server.clone(),
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            room: Room {
                actors,
                out: (!settings.quiet).then(|| BufWriter::new(io::stdout().lock())),
                render: Renderer {
                    style: settings.style,
                },
                dropped: None,
                winding_down: false,
                tokens: 0,
            },
        })
    }

    fn run_steps(&mut self) -> Result<(), String> {
        let script = self.script;
        for (i, actor) in script.actors.iter().enumerate() {
            if !actor.late {
                self.connect(i)
                    .map_err(|e| format!("{}:{}: {e}", script.name, actor.line))?;
            }
        }
        for step in &script.steps {
            self.step(step)
                .map_err(|e| format!("{}:{}: {e}", script.name, step.line))?;
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        let Some(i) = step.actor else {
            if let Action::Sleep(d) = step.action {
                let line = self
                    .room
                    .render
                    .notice(&format!("sleep {}", format_duration(d)));
                self.room.note(None, &line);
                self.wait(Instant::now() + d, |_| None::<()>)?;
            }
            return Ok(());
        };
        match &step.action {
            Action::Connect => self.connect(i),
            Action::Say { room, text, action } => self.send(
                i,
                &ClientMsg::Group {
                    room: room.as_deref().map(Into::into),
                    text: text.into(),
                    action: *action,
                },
            ),
            Action::Msg { to, text } => self.send(
                i,
                &ClientMsg::Private {
                    to: to.into(),
                    text: text.into(),
                    action: false,
                },
            ),
            Action::Who(room) => self.send(
                i,
                &ClientMsg::Who {
                    room: room.as_deref().map(Into::into),
                },
            ),
            Action::Rooms => self.send(i, &ClientMsg::Rooms),
            Action::Join(room) => self.request(
                i,
                &ClientMsg::Join { room: room.into() },
                Request::Join(room.clone()),
            ),
            Action::Part { room, text } => self.request(
                i,
                &ClientMsg::Part {
                    room: room.into(),
                    text: text.as_deref().map(Into::into),
                },
                Request::Part(room.clone()),
            ),
            Action::Topic { room, text } => self.request(
                i,
                &ClientMsg::Topic {
                    room: room.into(),
                    text: text.into(),
                },
                Request::Topic(room.clone()),
            ),
            Action::History { room, limit } => self.request(
                i,
                &ClientMsg::History {
                    room: room.into(),
                    from: wire::Page::Latest,
                    limit: limit.unwrap_or(wire::HISTORY_DEFAULT),
                },
                Request::History(room.clone()),
            ),
            Action::Login { account, var } => {
                let account = account
                    .clone()
                    .unwrap_or_else(|| self.room.actors[i].nick.clone());
                let password = password(var, &self.room.actors[i].nick)?;
                self.request(
                    i,
                    &ClientMsg::Login {
                        account: account.clone().into(),
                        password: wire::Password(password.expose().into()),
                    },
                    Request::Login(account),
                )
            }
            Action::Register { var } => {
                let password = password(var, &self.room.actors[i].nick)?;
                self.request(
                    i,
                    &ClientMsg::Register {
                        password: wire::Password(password.expose().into()),
                    },
                    Request::Register,
                )
            }
            Action::Logout => self.request(i, &ClientMsg::Logout, Request::Logout),
            Action::Nick { new, taken } => self.nick(i, new, *taken),
            Action::Quit(text) => self.quit(i, text.as_deref()),
            Action::Expect { pattern, within } => {
                self.expect(i, pattern, within.unwrap_or(self.settings.timeout))
            }
            Action::Sleep(_) => Ok(()),
        }
    }

    /// Connects, reads `welcome`, asks for the actor's name and waits for
    /// the server to confirm it.
    fn connect(&mut self, i: usize) -> Result<(), String> {
        let timeout = self.settings.timeout;
        let name = self.script.actors[i].name.clone();
        let tls = self.server.tls.clone();
        let (mut peer, addr) = self
            .server
            .connect(
                |addr| Peer::connect(addr, timeout, tls.as_deref()),
                io_reason,
            )
            .map_err(|e| format!("@{name} cannot connect to {e}"))?;
        self.poll
            .registry()
            .register(&mut peer.stream, Token(i), Interest::READABLE)
            .map_err(|e| format!("@{name} cannot watch its connection: {}", io_reason(&e)))?;
        let conn = &mut self.room.actors[i];
        conn.peer = Some(peer);
        conn.handshake = true;
        let deadline = Instant::now() + timeout;
        let welcomed = self.wait(deadline, |room| room.actors[i].id.map(|_| ()))?;
        if welcomed.is_none() {
            return Err(format!(
                "@{name} got no welcome from {addr} within {}",
                format_duration(timeout)
            ));
        }
        if self.script.actors[i].login {
            // Its `login` step gives it its name.
            self.room.actors[i].handshake = false;
            return Ok(());
        }
        if let Some(account) = &self.settings.account
            && account.eq_ignore_ascii_case(&name)
        {
            self.room.actors[i].handshake = false;
            let password = password(crate::secret::PASSWORD_VAR, &name)?;
            return self.request(
                i,
                &ClientMsg::Login {
                    account: account.as_str().into(),
                    password: wire::Password(password.expose().into()),
                },
                Request::Login(account.clone()),
            );
        }
        let verdict = self.ask_nick(i, &name)?;
        self.room.actors[i].handshake = false;
        match verdict {
            Some(Verdict::Accepted) => Ok(()),
            Some(Verdict::Refused(why)) => {
                Err(format!("@{name} could not take its nickname: {why}"))
            }
            None => Err(format!(
                "@{name} got no answer to its nick request within {}",
                format_duration(timeout)
            )),
        }
    }

    /// Sends `nick NEW` and waits for the server to accept or refuse it.
    fn ask_nick(&mut self, i: usize, new: &str) -> Result<Option<Verdict>, String> {
        let conn = &mut self.room.actors[i];
        conn.awaiting_nick = true;
        conn.verdict = None;
        self.send(i, &ClientMsg::Nick { nick: new.into() })?;
        let deadline = Instant::now() + self.settings.timeout;
        let verdict = self.wait(deadline, |room| room.actors[i].verdict.take());
        self.room.actors[i].awaiting_nick = false;
        verdict
    }

    fn nick(&mut self, i: usize, new: &str, taken: bool) -> Result<(), String> {
        let old = self.room.actors[i].nick.clone();
        match (self.ask_nick(i, new)?, taken) {
            (Some(Verdict::Accepted), false) | (Some(Verdict::Refused(_)), true) => Ok(()),
            (Some(Verdict::Refused(why)), false) => {
                Err(format!("@{old} could not take the nickname {new}: {why}"))
            }
            (Some(Verdict::Accepted), true) => Err(format!(
                "@{old} was given the nickname {new}, which another actor of the script holds"
            )),
            (None, _) => Err(format!(
                "@{old} got no answer to `nick {new}` within {}",
                format_duration(self.settings.timeout)
            )),
        }
    }

    /// Sends a `join`, `part` or `topic` and waits for the server to grant
    /// it, so that the next step (maybe another actor's) finds the room as
    /// the script says. The answer stays queued for `expect`.
    ///
    /// Errors carry no reference to the line they answer, and an earlier
    /// step's `not_in_room` (an `in ROOM say` outside the room) may still
    /// be on its way; a `ping` sent first fences those off, since the
    /// server answers a connection's lines in order.
    fn request(&mut self, i: usize, msg: &ClientMsg<'_>, request: Request) -> Result<(), String> {
        self.room.tokens += 1;
        let token = self.room.tokens;
        let raw = RawValue::from_string(token.to_string())
            .map_err(|e| format!("cannot make a ping token: {e}"))?;
        let conn = &mut self.room.actors[i];
        conn.awaiting = Some(request.clone());
        conn.fence = Some(token);
        conn.verdict = None;
        self.send(
            i,
            &ClientMsg::Ping {
                token: Some(wire::Token::Owned(raw)),
            },
        )?;
        self.send(i, msg)?;
        let deadline = Instant::now() + self.settings.timeout;
        let verdict = self.wait(deadline, |room| room.actors[i].verdict.take());
        self.room.actors[i].awaiting = None;
        self.room.actors[i].fence = None;
        let nick = &self.room.actors[i].nick;
        match verdict? {
            Some(Verdict::Accepted) => Ok(()),
            Some(Verdict::Refused(why)) => {
                Err(format!("@{nick} could not {}: {why}", request.doing()))
            }
            None => Err(format!(
                "@{nick} got no answer to its request to {} within {}",
                request.doing(),
                format_duration(self.settings.timeout)
            )),
        }
    }

    /// Sends `quit` and waits for `bye`; then the connection ends.
    fn quit(&mut self, i: usize, text: Option<&str>) -> Result<(), String> {
        self.send(
            i,
            &ClientMsg::Quit {
                text: text.map(Into::into),
            },
        )?;
        let deadline = Instant::now() + self.settings.timeout;
        let bye = self.wait(deadline, |room| room.actors[i].bye.then_some(()))?;
        if bye.is_none() {
            return Err(format!(
                "@{} sent quit but no bye came within {}",
                self.room.actors[i].nick,
                format_duration(self.settings.timeout)
            ));
        }
        self.room.end(self.poll.registry(), i, "it quit");
        Ok(())
    }

    /// Waits for a queued or arriving message that matches, and consumes
    /// it; messages that do not match stay queued.
    fn expect(&mut self, i: usize, pattern: &Pattern, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let found = self.wait(deadline, |room| {
            let conn = &mut room.actors[i];
            if let Some(pos) = conn.queue.iter().position(|r| pattern.matches(r)) {
                return Some(Some(conn.queue.remove(pos)));
            }
            // A closed connection will bring nothing more.
            conn.peer.is_none().then_some(None)
        })?;
        if found.flatten().is_some() {
            let line = verdict(&self.room.render, &pattern.describe());
            self.room.note(Some(i), &line);
            return Ok(());
        }
        let conn = &self.room.actors[i];
        let shown: Vec<&Received> = conn.queue.iter().filter(|r| !r.folded).collect();
        let received = match shown.len() {
            0 => format!("{} received nothing", conn.nick),
            n => {
                let last: Vec<String> = shown[n.saturating_sub(LAST_FEW)..]
                    .iter()
                    .map(|r| summary(r))
                    .collect();
                if n > LAST_FEW {
                    format!(
                        "{} received {n} messages, the last {LAST_FEW}: {}",
                        conn.nick,
                        last.join(", ")
                    )
                } else {
                    format!("{} received: {}", conn.nick, last.join(", "))
                }
            }
        };
        let closed = match &conn.ended {
            Some(why) => format!(" (its connection is closed: {why})"),
            None => String::new(),
        };
        Err(format!(
            "@{} expected {} within {}; {received}{closed}",
            conn.nick,
            pattern.describe(),
            format_duration(within)
        ))
    }

    /// Sends one message for actor `i` and shows it as the client would.
    fn send(&mut self, i: usize, msg: &ClientMsg<'_>) -> Result<(), String> {
        let conn = &mut self.room.actors[i];
        let Some(peer) = conn.peer.as_mut() else {
            let why = conn.ended.as_deref().unwrap_or("it never connected");
            return Err(format!("@{} has no connection ({why})", conn.nick));
        };
        let sent = peer.send(&client_line(msg));
        if let Some(line) =
            transcript::sent(&self.room.render, msg, &conn.nick, conn.home.as_deref())
        {
            // Written past a held join: the rename that completes it may be
            // on its way, and a newcomer's arrival is no answer to what the
            // actor says, so the two lines may show in either order.
            self.room.write(Some(i), &line);
        }
        match sent {
            Ok(()) => self.room.watch(self.poll.registry(), i),
            Err(e) => self.room.lost(self.poll.registry(), i, io_reason(&e)),
        }
        match self.room.dropped.take() {
            Some((j, why)) => Err(self.dropped_message(j, &why)),
            None => Ok(()),
        }
    }

    /// Turns the event loop until `check` says done (`Some`), the deadline
    /// passes (`Ok(None)`), or a connection drops (the failure).
    fn wait<T>(
        &mut self,
        deadline: Instant,
        mut check: impl FnMut(&mut Room) -> Option<T>,
    ) -> Result<Option<T>, String> {
        loop {
            if let Some((j, why)) = self.room.dropped.take() {
                return Err(self.dropped_message(j, &why));
            }
            if let Some(done) = check(&mut self.room) {
                return Ok(Some(done));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.room.flush_out();
            match self.poll.poll(&mut self.events, Some(deadline - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("the event loop failed: {}", io_reason(&e))),
            }
            for event in self.events.iter() {
                self.room.on_ready(self.poll.registry(), event.token().0);
            }
        }
    }

    fn dropped_message(&self, i: usize, why: &str) -> String {
        format!(
            "@{} lost its connection to {}: {why}",
            self.room.actors[i].nick, self.server
        )
    }

    /// Ends the run politely: every actor still connected quits and waits
    /// (briefly) for its `bye`, so everything it sent is processed and the
    /// others see a `quit`, not a dropped connection.
    fn finish(&mut self) {
        for i in 0..self.room.actors.len() {
            self.room.release(i);
        }
        self.room.flush_out();
        self.room.out = None;
        self.room.winding_down = true;
        self.room.dropped = None;
        for i in 0..self.room.actors.len() {
            if self.room.actors[i].peer.is_some() && !self.room.actors[i].bye {
                let _ = self.send(i, &ClientMsg::Quit { text: None });
            }
        }
        let deadline = Instant::now() + self.settings.timeout.min(Duration::from_secs(2));
        let _ = self.wait(deadline, |room| {
            room.actors
                .iter()
                .all(|c| c.peer.is_none() || c.bye)
                .then_some(())
        });
    }
}

impl Room {
    /// Reads and writes whatever actor `i`'s socket allows, until it would
    /// block (edge-triggered readiness is reported once).
    fn on_ready(&mut self, registry: &Registry, i: usize) {
        let Some(peer) = self.actors.get_mut(i).and_then(|c| c.peer.as_mut()) else {
            return;
        };
        let mut lines = Vec::new();
        let status = peer.read_lines(|incoming| match incoming {
            Incoming::Line(line) if line.trim_ascii().is_empty() => {}
            Incoming::Line(line) => lines.push(ServerMsg::decode(line)),
            Incoming::TooLong => {
                lines.push(Err("the server sent an endless line; it was skipped".into()))
            }
        });
        let flushed = peer.flush();
        for line in lines {
            match line {
                Ok(msg) => self.on_message(i, msg),
                Err(e) => {
                    let line = self.render.error(&e);
                    self.note(Some(i), &line);
                }
            }
        }
        match (status, flushed) {
            (Ok(ReadStatus::Closed), _) => {
                let why = match &self.actors[i].last_error {
                    Some(e) => format!("the server closed it (its last word: \"{e}\")"),
                    None => "the server closed it".to_owned(),
                };
                self.lost(registry, i, why);
            }
            (Err(e), _) | (_, Err(e)) => self.lost(registry, i, io_reason(&e)),
            (Ok(ReadStatus::Open), Ok(())) => self.watch(registry, i),
        }
    }

    /// Shows, interprets and queues one message for actor `i`.
    fn on_message(&mut self, i: usize, msg: ServerMsg<'static>) {
        if self.out.is_some() {
            let conn = &mut self.actors[i];
            for (msg, ()) in conn.arrivals.offer(msg.clone(), (), Instant::now()) {
                self.show(i, &msg);
            }
        }
        let conn = &mut self.actors[i];
        match &msg {
            ServerMsg::Welcome { id, room, .. } if conn.id.is_none() => {
                conn.id = Some(*id);
                conn.home = room.as_deref().map(str::to_owned);
                return;
            }
            ServerMsg::Pong { token } => {
                let token = token.as_ref().map(wire::Token::get);
                if conn
                    .fence
                    .is_some_and(|f| token == Some(f.to_string().as_str()))
                {
                    conn.fence = None;
                }
                return;
            }
            ServerMsg::Nick { id, new, .. } if Some(*id) == conn.id => {
                conn.nick = new.to_string();
                if conn.awaiting_nick {
                    conn.verdict = Some(Verdict::Accepted);
                    if conn.handshake {
                        return;
                    }
                }
            }
            ServerMsg::Nick { id, old, new, .. } => {
                // Someone who joined as guest<ID> takes their name: from now
                // on `expect join NAME` knows them by it too.
                if let Some(join) = conn.queue.iter_mut().rev().find(|r| {
                    matches!(&r.msg, ServerMsg::Join { id: j, nick, .. }
                        if j == id && nick == old && r.became.is_none())
                }) {
                    join.became = Some(new.to_string());
                    let mut named = Received::new(msg);
                    named.folded = true;
                    named.home = conn.home.clone();
                    conn.queue.push(named);
                    return;
                }
            }
            ServerMsg::Joined { .. }
            | ServerMsg::Parted { .. }
            | ServerMsg::Topic { .. }
            | ServerMsg::History { .. }
            | ServerMsg::LoggedIn { .. }
            | ServerMsg::Registered { .. }
            | ServerMsg::LoggedOut
                if conn.fence.is_none()
                    && conn
                        .awaiting
                        .as_ref()
                        .is_some_and(|r| r.granted_by(&msg, &conn.nick)) =>
            {
                conn.verdict = Some(Verdict::Accepted);
            }
            ServerMsg::Error { code, message }
                if conn.fence.is_none()
                    && conn.awaiting.as_ref().is_some_and(|r| r.refused_by(*code)) =>
            {
                conn.last_error = Some(message.to_string());
                let hint = match &conn.awaiting {
                    Some(r) if *code == ErrorCode::UnknownType => r.unknown_hint(),
                    _ => "",
                };
                conn.verdict = Some(Verdict::Refused(format!("{message} ({code}){hint}")));
            }
            ServerMsg::Error { code, message } => {
                conn.last_error = Some(message.to_string());
                if conn.awaiting_nick && matches!(code, ErrorCode::BadNick | ErrorCode::NickInUse) {
                    conn.verdict = Some(Verdict::Refused(format!("{message} ({code})")));
                    if conn.handshake {
                        return;
                    }
                }
            }
            ServerMsg::Bye { .. } => conn.bye = true,
            _ => {}
        }
        let mut received = Received::new(msg);
        received.home = conn.home.clone();
        conn.queue.push(received);
    }

    /// Asks for WRITABLE exactly while output waits.
    fn watch(&mut self, registry: &Registry, i: usize) {
        let conn = &mut self.actors[i];
        let Some(peer) = conn.peer.as_mut() else {
            return;
        };
        let want = peer.pending() > 0;
        if let Err(e) = want_writable(
            registry,
            &mut peer.stream,
            Token(i),
            want,
            &mut conn.writing,
        ) {
            self.lost(registry, i, io_reason(&e));
        }
    }

    /// The connection ended on the server's side or by an error. After a
    /// `bye` that is the normal end; otherwise the script has failed.
    fn lost(&mut self, registry: &Registry, i: usize, why: String) {
        let expected = self.actors[i].bye || self.winding_down;
        let why = if self.actors[i].bye {
            "the server said bye".to_owned()
        } else {
            why
        };
        self.end(registry, i, &why);
        if !expected && self.dropped.is_none() {
            self.dropped = Some((i, why));
        }
    }

    /// Closes actor `i`'s connection.
    fn end(&mut self, registry: &Registry, i: usize, why: &str) {
        let conn = &mut self.actors[i];
        if let Some(mut peer) = conn.peer.take() {
            let _ = registry.deregister(&mut peer.stream);
        }
        conn.writing = false;
        conn.ended.get_or_insert_with(|| why.to_owned());
    }

    /// One transcript line, prefixed with the actor if it has one. A join
    /// the actor holds back goes first, so lines keep their order.
    fn note(&mut self, actor: Option<usize>, line: &str) {
        if let Some(i) = actor {
            self.release(i);
        }
        self.write(actor, line);
    }

    /// Shows a received message as the client would.
    fn show(&mut self, i: usize, msg: &ServerMsg<'_>) {
        let conn = &self.actors[i];
        let me = Me {
            id: conn.id,
            nick: &conn.nick,
        };
        if let ServerMsg::History {
            room,
            messages,
            more,
        } = msg
        {
            let lines =
                self.render
                    .history(room, messages, *more, me, crate::client::clock::said_at);
            for line in lines {
                self.write(Some(i), &line);
            }
            return;
        }
        if let Some(line) = self.render.received_in(msg, me, conn.home.as_deref()) {
            self.write(Some(i), &line);
        }
    }

    /// Shows actor `i`'s held join, if it has one, as it came.
    fn release(&mut self, i: usize) {
        for (join, ()) in self.actors[i].arrivals.release_all() {
            self.show(i, &join);
        }
    }

    fn write(&mut self, actor: Option<usize>, line: &str) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        // A closed stdout (`chat bot x | head`) must not stop the script.
        let _ = match actor {
            Some(i) => writeln!(out, "{}", by(&self.actors[i].nick, line)),
            None => writeln!(out, "{line}"),
        };
    }

    fn flush_out(&mut self) {
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }
}

/// The password in `$var` for actor `nick`'s step. `chat bot` checked
/// every such variable before connecting; this is the read itself.
fn password(var: &str, nick: &str) -> Result<Secret, String> {
    match crate::secret::from_env(var) {
        Ok(Some(password)) => Ok(password),
        Ok(None) => Err(format!("@{nick} has no password: ${var} is not set")),
        Err(e) => Err(format!("@{nick} has no password: {e}")),
    }
}

/// An I/O error as words, without Rust's "(os error N)" tail.
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}
