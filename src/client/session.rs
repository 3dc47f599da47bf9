//! The conversation, apart from any I/O: what a line from the server means
//! to the user (this file), and what a typed command sends (`typed`). The
//! parent's loop feeds it lines and carries out the [`Effect`]s, so
//! everything here is tested without sockets or terminals.

use std::collections::VecDeque;
use std::time::Instant;

use crate::arrivals::Arrivals;
use crate::render::{Me, Renderer, json_line};
use crate::secret::{Credentials, Secret};
use crate::wire::{ByeReason, ClientMsg, ErrorCode, Password, ServerMsg, check_nick, client_line};

use super::awaited::{After, Awaited};
use super::backlog::Backlog;
use super::roster::Roster;

/// Something the parent must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Show a line to the user (rendered, or the raw line with `--json`).
    Show(String),
    /// Show a line the client itself says (help, local errors); with
    /// `--json` it goes to stderr, so stdout stays protocol lines only.
    Note(String),
    /// Send this protocol line (with its `\n`).
    Send(Vec<u8>),
    /// The other users' nicknames changed; hand them to the completer
    /// (the current room's members first).
    Users(Vec<String>),
    /// The room names known changed; hand them to the completer.
    Rooms(Vec<String>),
    /// The prompt for the next typed line (it shows the current room).
    Prompt(String),
    /// The user asked to leave; `quit` has been sent.
    Quitting,
    /// The server said goodbye.
    Bye(ByeReason),
}

pub struct Session {
    pub roster: Roster,
    pub render: Renderer,
    pub(super) json: bool,
    /// The nickname to ask for once welcomed.
    wanted_nick: Option<String>,
    /// The rooms to join once welcomed (`--room`), case-folded.
    wanted_rooms: Vec<String>,
    /// Ask for the user list on connect (for completion).
    ask_who: bool,
    welcomed: bool,
    /// Our first `nick` is unanswered: typed lines wait, so that they go out
    /// under the name the user asked for.
    nick_pending: bool,
    /// The rooms of `--room` are not joined yet: typed lines wait, so that
    /// they go to the room the user asked for.
    rooms_pending: bool,
    /// Newcomers' joins held for their rename, with the time each arrived.
    arrivals: Arrivals<String>,
    /// Lines sent with a `ping` after them, and what to do at the `pong`.
    pub(super) awaited: Awaited,
    /// Rooms' pasts: what was asked for and how far back we have shown.
    pub(super) backlog: Backlog,
    /// The room to make current once the rooms asked for are joined again
    /// after a lost connection.
    return_to: Option<String>,
    /// The account to log in to once welcomed, again after a lost
    /// connection: `--account`, or the last `/login` or `/register` the
    /// server granted. Its password lives in memory only for that.
    account: Option<Credentials>,
    /// `login` and `register` sent and not answered yet, oldest first: the
    /// server answers in order, so the first answer is the oldest's.
    accounts_asked: VecDeque<Asked>,
    /// The login of [`Session::account`] at the welcome is unanswered:
    /// typed lines wait, so that they go out under the account's name.
    login_pending: bool,
    /// The welcome said the server lets nobody in without logging in.
    login_required: bool,
    /// The rest of the start (nickname, users, rooms, pasts) waits for the
    /// login, on a server that would refuse all of it before.
    start_deferred: bool,
}

/// A `login` or `register` on its way, with what to keep if it is granted.
#[derive(Debug)]
enum Asked {
    /// `started`: the login of the welcome, not a typed one.
    Login {
        credentials: Credentials,
        started: bool,
    },
    Register(Secret),
}

impl Session {
    pub fn new(
        render: Renderer,
        json: bool,
        wanted_nick: Option<String>,
        wanted_rooms: Vec<String>,
        ask_who: bool,
    ) -> Session {
        Session {
            roster: Roster::default(),
            render,
            json,
            wanted_nick,
            wanted_rooms,
            ask_who,
            welcomed: false,
            nick_pending: false,
            rooms_pending: false,
            arrivals: Arrivals::default(),
            awaited: Awaited::default(),
            backlog: Backlog::default(),
            return_to: None,
            account: None,
            accounts_asked: VecDeque::new(),
            login_pending: false,
            login_required: false,
            start_deferred: false,
        }
    }

    /// Logs in to `credentials` once welcomed, and again after each lost
    /// connection, before the nickname and the rooms are asked for.
    pub fn with_account(mut self, credentials: Credentials) -> Session {
        self.account = Some(credentials);
        self
    }

    /// True once typed lines can be sent: welcomed, the nickname asked for
    /// on the command line granted or refused, the rooms joined.
    pub fn ready(&self) -> bool {
        self.welcomed
            && !self.login_pending
            && !self.nick_pending
            && !self.rooms_pending
            && self.backlog.starting == 0
    }

    pub fn welcomed(&self) -> bool {
        self.welcomed
    }

    /// The server never finished the start (our first `nick`, or the joins
    /// of `--room`): stop waiting and say what is missing; typed lines go
    /// out as things are.
    pub fn start_overdue(&mut self, time: &str, out: &mut Vec<Effect>) {
        if std::mem::take(&mut self.login_pending) {
            let why = format!(
                "the server did not answer the login; you are still {}",
                self.roster.nick
            );
            out.push(self.refusal(time, &why));
        }
        if std::mem::take(&mut self.nick_pending) {
            let why = format!(
                "the server did not answer the request for a nickname; you are still {}",
                self.roster.nick
            );
            out.push(self.refusal(time, &why));
        }
        if std::mem::take(&mut self.rooms_pending) {
            out.push(self.refusal(time, "the server did not answer the joins of --room"));
            out.push(self.prompt());
        }
        // A server that keeps its past to itself is no reason to wait.
        self.backlog.starting = 0;
    }

    /// A refusal the client itself says (a bad command, an overlong line),
    /// at `time`.
    pub fn refusal(&self, time: &str, why: &str) -> Effect {
        Effect::Note(self.render.stamp(time, &self.render.error(why)))
    }

    /// The prompt as things are: the current room, if there are rooms.
    pub fn prompt(&self) -> Effect {
        Effect::Prompt(match self.roster.here() {
            Some(room) => format!("{room}> "),
            None => "> ".to_owned(),
        })
    }

    /// One line from the server, arrived at `now` (shown as `time`).
    pub fn server_line(&mut self, line: &[u8], time: &str, now: Instant, out: &mut Vec<Effect>) {
        let msg = match ServerMsg::decode(line) {
            Ok(msg) => msg,
            Err(why) => {
                let shown = self.render.stamp(time, &self.render.error(&why));
                out.push(if self.json {
                    Effect::Note(shown)
                } else {
                    Effect::Show(shown)
                });
                return;
            }
        };
        if self.json {
            if let Some(raw) = json_line(line) {
                out.push(Effect::Show(raw));
            }
            self.react(&msg, time, out);
            return;
        }
        for (msg, time) in self.arrivals.offer(msg, time.to_owned(), now) {
            self.handle(&msg, &time, out);
        }
    }

    /// When a held arrival is due (see [`Session::tick`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.arrivals.deadline()
    }

    /// Shows the arrivals whose rename did not come in time.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Effect>) {
        for (msg, time) in self.arrivals.tick(now) {
            self.handle(&msg, &time, out);
        }
    }

    /// Reacts to a message and shows it, as of `time`.
    fn handle(&mut self, msg: &ServerMsg<'_>, time: &str, out: &mut Vec<Effect>) {
        if let Some(line) = self.react(msg, time, out) {
            out.push(Effect::Show(self.render.stamp(time, &line)));
        }
    }

    /// Sends `ping` after what was just sent, to do `after` once the server
    /// has processed it. With `--json` there is nothing to show and the
    /// pongs would clutter the output: it is done at once.
    pub(super) fn then(&mut self, after: After, out: &mut Vec<Effect>) {
        if self.json {
            return self.done(after, out);
        }
        out.push(Effect::Send(self.awaited.ping(after)));
    }

    fn done(&mut self, after: After, out: &mut Vec<Effect>) {
        match after {
            After::Echo { line, .. } => out.push(Effect::Show(line)),
            After::Prompt => out.push(self.prompt()),
            After::Started => {
                self.rooms_pending = false;
                if let Some(room) = self.return_to.take() {
                    self.roster.switch_to(&room);
                }
                out.push(self.prompt());
            }
        }
    }

    /// What the completer offers changed.
    fn completions(&self, out: &mut Vec<Effect>) {
        out.push(Effect::Users(self.roster.others()));
        out.push(Effect::Rooms(self.roster.room_names()));
    }

    /// Updates what we know and returns the line that shows the event.
    fn react(&mut self, msg: &ServerMsg<'_>, time: &str, out: &mut Vec<Effect>) -> Option<String> {
        let here_before = self.roster.here().map(str::to_owned);
        match msg {
            ServerMsg::Welcome {
                id,
                nick,
                room,
                login,
                ..
            } => {
                self.login_required = login.as_deref() == Some("required");
                self.welcome(*id, nick, room.as_deref(), time, out);
            }
            ServerMsg::Join { id, nick, room, .. } => {
                self.roster.join(*id, nick, room.as_deref());
                out.push(Effect::Users(self.roster.others()));
            }
            ServerMsg::Leave { id, room, .. } => {
                self.roster.leave(*id, room.as_deref());
                out.push(Effect::Users(self.roster.others()));
            }
            ServerMsg::Nick { id, new, .. } => {
                if self.roster.rename(*id, new) {
                    self.nick_pending = false;
                }
                out.push(Effect::Users(self.roster.others()));
            }
            ServerMsg::Who { users, room } => {
                self.roster.who(users, room.as_deref());
                out.push(Effect::Users(self.roster.others()));
            }
            ServerMsg::Joined { room, topic, users } => {
                self.roster.joined(room, users, topic.as_deref());
                self.completions(out);
                self.history_on_join(room, self.rooms_pending, out);
            }
            ServerMsg::Parted { room } => {
                self.roster.parted(room);
                self.forget(room);
                self.completions(out);
            }
            ServerMsg::Topic { room, text, .. } => self.roster.set_topic(room, text),
            ServerMsg::Rooms { rooms } => {
                self.roster.listed(rooms.iter().map(|r| r.name.to_string()));
                out.push(Effect::Rooms(self.roster.room_names()));
            }
            // The way out says it: a quiet exit, or the shutdown on stderr.
            ServerMsg::Bye { reason } => {
                out.push(Effect::Bye(*reason));
                return None;
            }
            ServerMsg::Error { code, message } if self.answers_account(*code) => {
                return Some(self.account_refused(*code, message));
            }
            ServerMsg::Error { code, message }
                if matches!(
                    code,
                    ErrorCode::BadNick | ErrorCode::NickInUse | ErrorCode::NickRegistered
                ) && self.nick_pending =>
            {
                self.nick_pending = false;
                let nick = &self.roster.nick;
                let hint = account_hint(*code, false)
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                return Some(
                    self.render
                        .error(&format!("{message}; you are still {nick}{hint}")),
                );
            }
            ServerMsg::Error { code, message } if account_hint(*code, false).is_some() => {
                let hint = account_hint(*code, false).unwrap_or_default();
                return Some(self.render.error(&format!("{message}; {hint}")));
            }
            ServerMsg::LoggedIn { account } => self.logged_in(account, time, out),
            ServerMsg::Registered { account } => {
                if let Some(Asked::Register(password)) = self.accounts_asked.pop_front() {
                    self.account = Some(Credentials {
                        account: account.to_string(),
                        password,
                    });
                }
            }
            ServerMsg::LoggedOut => self.account = None,
            ServerMsg::Pong { token } => {
                for after in self.awaited.pong(token.as_ref()) {
                    self.done(after, out);
                }
            }
            ServerMsg::Error {
                code: ErrorCode::NoSuchUser,
                message,
            } => {
                if let Some(text) = self.awaited.private_refused() {
                    return Some(self.render.error(&format!("{message}; not sent: {text}")));
                }
            }
            ServerMsg::Group { room, seq, .. } => {
                if let Some(room) = room.as_deref().or(self.roster.default_room()) {
                    let room = room.to_owned();
                    self.seen(&room, *seq);
                }
            }
            ServerMsg::History {
                room,
                messages,
                more,
            } => {
                self.history_answer(room, messages, *more, time, out);
                return None;
            }
            ServerMsg::Private { .. } | ServerMsg::Error { .. } | ServerMsg::Unknown => {}
        }
        // The welcome says its own prompt, and the joins of `--room` end
        // with one.
        let moved = self.roster.here() != here_before.as_deref();
        if moved && !matches!(msg, ServerMsg::Welcome { .. }) && !self.rooms_pending {
            out.push(self.prompt());
        }
        let me = Me {
            id: self.roster.me,
            nick: &self.roster.nick,
        };
        self.render.received_in(msg, me, self.roster.here())
    }

    /// The connection is lost and a new one will be tried: forget the
    /// server's state, and ask, once welcomed again, for the same
    /// nickname (unless it was a guest's, which the server hands out) and
    /// the same rooms, the current one last so it is current again. What
    /// was missed meanwhile is asked for by `seq` (see `backlog`).
    pub fn lost(&mut self) {
        let nick = std::mem::take(&mut self.roster.nick);
        if !nick.is_empty() && !crate::wire::is_guest_name(&nick) {
            self.wanted_nick = Some(nick);
        }
        let default = self.roster.default_room().map(str::to_owned);
        self.wanted_rooms = self
            .roster
            .our_rooms()
            .into_iter()
            .filter(|r| Some(r) != default.as_ref())
            .collect();
        // Joining makes a room current; the default room needs no join, so
        // it is made current again once the others are joined.
        self.return_to = self
            .roster
            .here()
            .filter(|h| Some(*h) == default.as_deref())
            .map(str::to_owned);
        self.roster = Roster::default();
        self.welcomed = false;
        self.nick_pending = false;
        self.rooms_pending = false;
        self.awaited = Awaited::default();
        self.arrivals = Arrivals::default();
        self.backlog.reconnecting();
        // Answers that will never come: a login typed just before the loss
        // is forgotten with its password; the account logs in again.
        self.accounts_asked.clear();
        self.login_pending = false;
        self.login_required = false;
        self.start_deferred = false;
    }

    /// Welcomed: log in first if there is an account to log in to; on a
    /// server that requires it, everything else waits for the login.
    fn welcome(
        &mut self,
        id: u64,
        nick: &str,
        room: Option<&str>,
        time: &str,
        out: &mut Vec<Effect>,
    ) {
        self.welcomed = true;
        self.roster.welcome(id, nick, room);
        if let Some(credentials) = self.account.clone() {
            // The account's name comes with the login; another name asked
            // for (one taken by /nick before a lost connection) follows it.
            if self
                .wanted_nick
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&credentials.account))
            {
                self.wanted_nick = None;
            }
            out.push(Effect::Send(login_line(&credentials)));
            self.accounts_asked.push_back(Asked::Login {
                credentials,
                started: true,
            });
            self.login_pending = true;
        } else if self.login_required {
            // Only logging in is allowed, and it brings its own name.
            self.wanted_nick = None;
            let why = "this server lets nobody in without an account: /login ACCOUNT to log in, \
                       or /register to make one of your nickname if the server allows it";
            out.push(self.refusal(time, why));
        }
        if self.login_required {
            self.start_deferred = true;
            return out.push(self.prompt());
        }
        self.start(time, out);
    }

    /// The start once in: ask for the nickname and the rooms wanted, the
    /// users (for completion) and the pasts; the prompt follows once the
    /// rooms are joined.
    fn start(&mut self, time: &str, out: &mut Vec<Effect>) {
        if let Some(wanted) = self.wanted_nick.take() {
            out.push(Effect::Send(client_line(&ClientMsg::Nick {
                nick: wanted.into(),
            })));
            self.nick_pending = true;
        }
        if self.ask_who {
            let room = self.roster.default_room().map(|r| r.to_owned().into());
            out.push(Effect::Send(client_line(&ClientMsg::Who { room })));
        }
        // Everyone starts in the default room without a `joined`: its
        // past is asked for here, unless `--room` moves us on at once (the
        // rooms asked for bring their own); back after a lost connection,
        // what was missed in it always is.
        if let Some(home) = self
            .roster
            .default_room()
            .filter(|home| self.wanted_rooms.is_empty() || self.backlog.has_shown(home))
            .map(str::to_owned)
        {
            self.history_on_join(&home, true, out);
        }
        let wanted = std::mem::take(&mut self.wanted_rooms);
        if wanted.is_empty() {
            out.push(self.prompt());
        } else if !self.roster.has_rooms() {
            out.push(self.refusal(
                time,
                "this server has no rooms (protocol v1); --room is ignored",
            ));
            out.push(self.prompt());
        } else {
            for room in wanted {
                out.push(Effect::Send(client_line(&ClientMsg::Join {
                    room: room.into(),
                })));
            }
            self.rooms_pending = true;
            self.then(After::Started, out);
        }
    }
}

impl Session {
    /// Whether an error with `code` answers the oldest `login` or
    /// `register` still unanswered: answers come in order, and these are
    /// the codes that refuse one.
    fn answers_account(&self, code: ErrorCode) -> bool {
        use ErrorCode as E;
        match self.accounts_asked.front() {
            None => false,
            Some(Asked::Login { .. }) => matches!(
                code,
                E::LoginFailed
                    | E::TooManyAttempts
                    | E::InsecureTransport
                    | E::BadNick
                    | E::BadMessage
                    | E::UnknownType
            ),
            Some(Asked::Register(_)) => matches!(
                code,
                E::BadPassword
                    | E::RegistrationClosed
                    | E::NickRegistered
                    | E::BadNick
                    | E::InsecureTransport
                    | E::TooManyAttempts
                    | E::BadMessage
                    | E::UnknownType
            ),
        }
    }

    /// The oldest `login` or `register` was refused: its password is
    /// dropped (a refused login is not tried again after a lost
    /// connection), and the line says what to do.
    fn account_refused(&mut self, code: ErrorCode, message: &str) -> String {
        let asked = self.accounts_asked.pop_front();
        let register = matches!(asked, Some(Asked::Register(_)));
        if let Some(Asked::Login { started: true, .. }) = asked {
            self.login_pending = false;
            self.account = None;
        }
        let nick = &self.roster.nick;
        let line = match account_hint(code, register) {
            Some(hint) => format!("{message}; {hint} (you are {nick})"),
            None => format!("{message} (you are {nick})"),
        };
        self.render.error(&line)
    }

    /// `logged_in`: the account is ours; its password is kept to log in
    /// again after a lost connection. On a server that requires login the
    /// start that waited for it goes on.
    fn logged_in(&mut self, account: &str, time: &str, out: &mut Vec<Effect>) {
        if let Some(Asked::Login {
            credentials,
            started,
        }) = self.accounts_asked.pop_front()
        {
            if started {
                self.login_pending = false;
            }
            self.account = Some(Credentials {
                account: account.to_owned(),
                password: credentials.password,
            });
        }
        if std::mem::take(&mut self.start_deferred) {
            self.start(time, out);
        }
    }

    /// Sends `login` for `account`, typed by the user with `password`.
    pub fn login(&mut self, account: &str, password: Secret, time: &str, out: &mut Vec<Effect>) {
        if let Err(why) = check_nick(account) {
            let why = format!("{why}; an account is a nickname (nothing was sent)");
            return out.push(self.refusal(time, &why));
        }
        if password.is_empty() {
            return out.push(self.refusal(time, "no password given; nothing was sent"));
        }
        let credentials = Credentials {
            account: account.to_owned(),
            password,
        };
        out.push(Effect::Send(login_line(&credentials)));
        self.accounts_asked.push_back(Asked::Login {
            credentials,
            started: false,
        });
    }

    /// Sends `register` for the current nickname, with `password`.
    pub fn register(&mut self, password: Secret, time: &str, out: &mut Vec<Effect>) {
        if password.is_empty() {
            return out.push(self.refusal(time, "no password given; nothing was sent"));
        }
        out.push(Effect::Send(client_line(&ClientMsg::Register {
            password: Password(password.expose().into()),
        })));
        self.accounts_asked.push_back(Asked::Register(password));
    }

    /// Sends `logout`; the account is forgotten once the server says so.
    pub fn logout(&mut self, out: &mut Vec<Effect>) {
        out.push(Effect::Send(client_line(&ClientMsg::Logout)));
    }
}

/// The `login` line for `credentials`. It holds the password: it goes to
/// the socket and nowhere else.
fn login_line(credentials: &Credentials) -> Vec<u8> {
    client_line(&ClientMsg::Login {
        account: credentials.account.as_str().into(),
        password: Password(credentials.password.expose().into()),
    })
}

/// What to do about an account's refusal, said after the server's words.
/// `register`: the refusal answers `/register`.
fn account_hint(code: ErrorCode, register: bool) -> Option<&'static str> {
    Some(match code {
        ErrorCode::LoginFailed => {
            "check the account name and the password, then /login ACCOUNT again"
        }
        ErrorCode::TooManyAttempts => {
            "too many failed logins: wait a few minutes before you try again"
        }
        ErrorCode::InsecureTransport => {
            "this server takes passwords only over TLS or from its own machine; connect that way to log in"
        }
        ErrorCode::NickRegistered if register => {
            "it is an account already: /login to it if it is yours"
        }
        ErrorCode::NickRegistered => {
            "that name is an account: /login NAME if it is yours, or choose another /nick"
        }
        ErrorCode::BadPassword => "choose a password of 8 to 1024 bytes and /register again",
        ErrorCode::RegistrationClosed => {
            "this server makes no accounts itself; ask its operator for one"
        }
        ErrorCode::LoginRequired => "log in first: /login ACCOUNT (or /register)",
        ErrorCode::BadNick if register => {
            "a guest name cannot be an account: take a nickname with /nick, then /register"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::commands::parse;
    use super::*;
    use crate::render::Style;

    const T: &str = "12:00:00";

    fn session(json: bool, nick: Option<&str>, ask_who: bool) -> Session {
        let render = Renderer {
            style: Style::Plain,
        };
        Session::new(render, json, nick.map(str::to_owned), Vec::new(), ask_who)
    }

    fn feed(s: &mut Session, line: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        s.server_line(line.as_bytes(), T, Instant::now(), &mut out);
        out
    }

    fn typed(s: &mut Session, line: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        s.command(parse(line), T, &mut out);
        out
    }

    fn show(line: &str) -> Effect {
        Effect::Show(line.to_owned())
    }

    fn send(line: &str) -> Effect {
        Effect::Send(format!("{line}\n").into_bytes())
    }

    const WELCOME: &str =
        r#"{"type":"welcome","id":3,"nick":"guest3","text":"Welcome to the chat room!","users":2}"#;

    #[test]
    fn welcome_asks_for_the_nick_and_waits_for_the_answer() {
        let mut s = session(false, Some("carol"), false);
        assert!(!s.ready());
        let out = feed(&mut s, WELCOME);
        assert_eq!(
            out,
            [
                send(r#"{"nick":"carol","type":"nick"}"#),
                Effect::Prompt("> ".into()),
                show("12:00:00 -- Welcome to the chat room! (2 users online; you are guest3)"),
            ]
        );
        assert!(!s.ready(), "typed lines must wait for the nick answer");
        let out = feed(
            &mut s,
            r#"{"type":"nick","id":3,"old":"guest3","new":"carol","ts":1}"#,
        );
        assert_eq!(out[1], show("12:00:00 -- you are now known as carol"));
        assert!(s.ready());
        assert_eq!(s.roster.nick, "carol");
    }

    #[test]
    fn a_refused_nick_leaves_the_guest_name() {
        let mut s = session(false, Some("alice"), false);
        feed(&mut s, WELCOME);
        let out = feed(
            &mut s,
            r#"{"type":"error","code":"nick_in_use","message":"alice is taken"}"#,
        );
        assert_eq!(
            out,
            [show("12:00:00 !! alice is taken; you are still guest3")]
        );
        assert!(s.ready());
    }

    #[test]
    fn an_unanswered_nick_is_given_up_under_the_guest_name() {
        let mut s = session(false, Some("carol"), false);
        feed(&mut s, WELCOME);
        assert!(s.welcomed() && !s.ready());
        let mut out = Vec::new();
        s.start_overdue(T, &mut out);
        assert!(s.ready());
        assert!(
            matches!(&out[..], [Effect::Note(l)] if l.contains("!! ") && l.contains("still guest3")),
            "{out:?}"
        );
    }

    #[test]
    fn without_a_nick_the_session_is_ready_at_once_and_may_ask_who() {
        let mut s = session(false, None, true);
        let out = feed(&mut s, WELCOME);
        assert_eq!(out[0], send(r#"{"type":"who"}"#));
        assert!(s.ready());
    }

    #[test]
    fn events_render_one_line_each() {
        let mut s = session(false, None, false);
        feed(&mut s, WELCOME);
        let cases = [
            (
                r#"{"type":"join","id":4,"nick":"carol","ts":1}"#,
                "-- carol joined",
            ),
            (
                r#"{"type":"group","from":"alice","text":"hi","ts":1}"#,
                "<alice> hi",
            ),
            (
                r#"{"type":"private","from":"alice","to":"guest3","text":"psst","ts":1}"#,
                "*alice* psst",
            ),
            (
                r#"{"type":"nick","id":4,"old":"carol","new":"caz","ts":1}"#,
                "-- carol is now known as caz",
            ),
            (
                r#"{"type":"leave","id":4,"nick":"caz","reason":"quit","text":"bye","ts":1}"#,
                "-- caz left (quit: bye)",
            ),
            (
                r#"{"type":"leave","id":5,"nick":"dan","reason":"slow","ts":1}"#,
                "-- dan left (slow)",
            ),
            (
                r#"{"type":"error","code":"no_such_user","message":"no user named zed"}"#,
                "!! no user named zed",
            ),
            (
                r#"{"type":"who","users":[{"id":1,"nick":"alice","since":0},{"id":3,"nick":"guest3","since":0}]}"#,
                "-- 2 online: alice, guest3",
            ),
        ];
        for (line, want) in cases {
            let shown: Vec<_> = feed(&mut s, line)
                .into_iter()
                .filter_map(|e| match e {
                    Effect::Show(l) => Some(l),
                    _ => None,
                })
                .collect();
            assert_eq!(shown, [format!("{T} {want}")], "{line}");
        }
        assert_eq!(s.roster.others(), ["alice"]);
    }

    #[test]
    fn an_arrival_and_its_rename_show_as_one_line() {
        let mut s = session(false, None, false);
        feed(&mut s, WELCOME);
        assert_eq!(
            feed(&mut s, r#"{"type":"join","id":4,"nick":"guest4","ts":1}"#),
            []
        );
        let out = feed(
            &mut s,
            r#"{"type":"nick","id":4,"old":"guest4","new":"dave","ts":1}"#,
        );
        assert_eq!(
            out,
            [
                Effect::Users(vec!["dave".into()]),
                show("12:00:00 -- dave joined")
            ]
        );
        // A guest who keeps the name is shown once the hold is over.
        feed(&mut s, r#"{"type":"join","id":5,"nick":"guest5","ts":1}"#);
        let due = s.deadline().expect("a held arrival");
        let mut out = Vec::new();
        s.tick(due, &mut out);
        assert_eq!(out[1], show("12:00:00 -- guest5 joined"));
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn the_user_list_follows_the_room() {
        let mut s = session(false, None, false);
        feed(&mut s, WELCOME);
        let out = feed(&mut s, r#"{"type":"join","id":4,"nick":"carol","ts":1}"#);
        assert_eq!(out[0], Effect::Users(vec!["carol".into()]));
    }

    #[test]
    fn bye_and_garbage() {
        let mut s = session(false, None, false);
        assert_eq!(
            feed(&mut s, r#"{"type":"bye","reason":"shutdown"}"#),
            [Effect::Bye(ByeReason::Shutdown)]
        );
        let out = feed(&mut s, "\x1b[2J not json");
        let [Effect::Show(line)] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(
            line.contains("!! unreadable line from the server"),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "{line:?}");
    }

    #[test]
    fn json_mode_shows_raw_lines_and_notes_the_rest() {
        let mut s = session(true, Some("carol"), false);
        let out = feed(&mut s, WELCOME);
        assert_eq!(
            out,
            [
                show(WELCOME),
                send(r#"{"nick":"carol","type":"nick"}"#),
                Effect::Prompt("> ".into())
            ]
        );
        assert!(matches!(&feed(&mut s, "nope")[..], [Effect::Note(_)]));
        assert_eq!(
            typed(&mut s, "hi"),
            [send(r#"{"text":"hi","type":"group"}"#)]
        );
        assert!(matches!(&typed(&mut s, "/frob")[..], [Effect::Note(_)]));
    }

    #[test]
    fn typed_lines_become_messages_and_echoes() {
        let mut s = session(false, None, false);
        feed(&mut s, WELCOME);
        assert_eq!(
            typed(&mut s, "hello"),
            [
                send(r#"{"text":"hello","type":"group"}"#),
                show("12:00:00 <guest3> hello")
            ]
        );
        assert_eq!(
            typed(&mut s, "//slash"),
            [
                send(r#"{"text":"/slash","type":"group"}"#),
                show("12:00:00 <guest3> /slash")
            ]
        );
        assert_eq!(
            typed(&mut s, "/msg bob psst"),
            [
                send(r#"{"text":"psst","to":"bob","type":"private"}"#),
                send(r#"{"token":1,"type":"ping"}"#),
            ]
        );
        assert_eq!(
            feed(&mut s, r#"{"type":"pong","token":1}"#),
            [show("12:00:00 -> *bob* psst")]
        );
        assert_eq!(
            typed(&mut s, "/me waves"),
            [
                send(r#"{"action":true,"text":"waves","type":"group"}"#),
                show("12:00:00 * guest3 waves")
            ]
        );
        assert_eq!(
            typed(&mut s, "/nick caz"),
            [send(r#"{"nick":"caz","type":"nick"}"#)]
        );
        assert_eq!(typed(&mut s, "/who"), [send(r#"{"type":"who"}"#)]);
        assert_eq!(
            typed(&mut s, "/quit gone"),
            [send(r#"{"text":"gone","type":"quit"}"#), Effect::Quitting]
        );
        assert_eq!(
            typed(&mut s, "/quit"),
            [send(r#"{"type":"quit"}"#), Effect::Quitting]
        );
        assert_eq!(typed(&mut s, "   "), []);
    }

    #[test]
    fn a_private_message_to_nobody_is_shown_as_not_sent() {
        let mut s = session(false, None, false);
        feed(&mut s, WELCOME);
        typed(&mut s, "/msg zed hello?");
        let out = feed(
            &mut s,
            r#"{"type":"error","code":"no_such_user","message":"no user named zed"}"#,
        );
        assert_eq!(
            out,
            [show("12:00:00 !! no user named zed; not sent: hello?")]
        );
        assert_eq!(feed(&mut s, r#"{"type":"pong","token":1}"#), []);
    }

    #[test]
    fn refused_commands_send_nothing() {
        let mut s = session(false, None, false);
        feed(&mut s, WELCOME);
        for line in ["/frob", "/nick 9lives", "/nick guest7", "/msg bob"] {
            let out = typed(&mut s, line);
            assert!(
                matches!(&out[..], [Effect::Note(l)] if l.contains("!! ")),
                "{line}: {out:?}"
            );
        }
        assert!(
            typed(&mut s, "/help")
                .iter()
                .all(|e| matches!(e, Effect::Note(_)))
        );
    }
    const WELCOME_V2: &str = r#"{"type":"welcome","id":3,"nick":"guest3","text":"Hi","users":2,"protocol":2,"room":"lobby"}"#;

    fn shown(out: &[Effect]) -> Vec<String> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Show(l) | Effect::Note(l) => {
                    Some(l.trim_start_matches("12:00:00 ").to_owned())
                }
                _ => None,
            })
            .collect()
    }

    fn sent(out: &[Effect]) -> Vec<String> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send(l) => Some(String::from_utf8_lossy(l).trim_end().to_owned()),
                _ => None,
            })
            .collect()
    }

    fn prompts(out: &[Effect]) -> Vec<String> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Prompt(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// A session welcomed by a v2 server, in the lobby.
    fn in_lobby() -> Session {
        let mut s = session(false, None, false);
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(prompts(&out), ["lobby> "]);
        s
    }

    #[test]
    fn a_v2_welcome_makes_the_default_room_current_and_lines_go_there() {
        let mut s = in_lobby();
        let out = typed(&mut s, "hi");
        assert_eq!(
            sent(&out),
            [r#"{"room":"lobby","text":"hi","type":"group"}"#]
        );
        assert_eq!(shown(&out), ["<guest3> hi"]);
    }

    #[test]
    fn a_rooms_past_is_asked_for_on_joining_and_history_pages_back() {
        let mut s = session(false, None, false);
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(
            sent(&out),
            [r#"{"limit":20,"room":"lobby","type":"history"}"#]
        );
        let out = feed(
            &mut s,
            r#"{"type":"history","room":"lobby","messages":[{"seq":7,"from":"alice","text":"hi guest3","ts":1000},{"seq":9,"from":"bob","text":"waves","ts":2000,"action":true}],"more":true}"#,
        );
        let lines = shown(&out);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], "-- history of lobby: 2 messages (and older ones)");
        // Each message after when it was said, not when it was shown.
        assert!(lines[1].starts_with('[') && lines[1].ends_with("] <alice> hi guest3"));
        assert!(lines[2].ends_with("] * bob waves"), "{lines:?}");
        assert_eq!(lines[3], "-- end of history");
        let out = typed(&mut s, "/history 5");
        assert_eq!(
            sent(&out),
            [r#"{"before":7,"limit":5,"room":"lobby","type":"history"}"#]
        );
        let out = feed(
            &mut s,
            r#"{"type":"history","room":"lobby","messages":[],"more":false}"#,
        );
        assert_eq!(shown(&out), ["-- no older messages in lobby"]);
        let out = typed(&mut s, "/history lots");
        assert!(sent(&out).is_empty());
        assert_eq!(shown(&out), ["!! usage: /history [N], N from 1 to 500"]);
        let out = feed(
            &mut s,
            r#"{"type":"joined","room":"rust","users":[{"id":3,"nick":"guest3"}]}"#,
        );
        assert_eq!(
            sent(&out),
            [r#"{"limit":20,"room":"rust","type":"history"}"#]
        );
        // A room with no past says nothing when joined.
        let out = feed(
            &mut s,
            r#"{"type":"history","room":"rust","messages":[],"more":false}"#,
        );
        assert!(shown(&out).is_empty());
    }

    #[test]
    fn after_a_lost_connection_the_name_rooms_and_missed_messages_are_asked_for() {
        let mut s = session(false, Some("carol"), false);
        feed(&mut s, WELCOME_V2);
        feed(
            &mut s,
            r#"{"type":"nick","id":3,"old":"guest3","new":"carol","ts":1}"#,
        );
        feed(
            &mut s,
            r#"{"type":"history","room":"lobby","messages":[],"more":false}"#,
        );
        feed(
            &mut s,
            r#"{"type":"joined","room":"rust","users":[{"id":3,"nick":"carol"}]}"#,
        );
        feed(
            &mut s,
            r#"{"type":"group","room":"lobby","from":"bob","text":"hi","ts":1,"seq":41}"#,
        );
        feed(
            &mut s,
            r#"{"type":"group","room":"rust","from":"bob","text":"hi","ts":1,"seq":42}"#,
        );
        s.lost();
        assert!(!s.ready());
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(
            sent(&out),
            [
                r#"{"nick":"carol","type":"nick"}"#,
                r#"{"after":41,"limit":500,"room":"lobby","type":"history"}"#,
                r#"{"room":"rust","type":"join"}"#,
                r#"{"token":1,"type":"ping"}"#,
            ]
        );
        let out = feed(
            &mut s,
            r#"{"type":"joined","room":"rust","users":[{"id":3,"nick":"carol"}]}"#,
        );
        assert_eq!(
            sent(&out),
            [r#"{"after":42,"limit":500,"room":"rust","type":"history"}"#]
        );
        let out = feed(
            &mut s,
            r#"{"type":"history","room":"lobby","messages":[],"more":false}"#,
        );
        assert_eq!(
            shown(&out),
            ["-- nothing was said in lobby while you were away"]
        );
        let out = feed(
            &mut s,
            r#"{"type":"history","room":"rust","messages":[{"seq":42,"from":"bob","text":"hi","ts":1},{"seq":43,"from":"bob","text":"gone?","ts":1}],"more":false}"#,
        );
        let lines = shown(&out);
        assert_eq!(
            lines[0], "-- you missed 1 message in rust while away",
            "{lines:?}"
        );
        assert!(lines[1].ends_with("] <bob> gone?"), "{lines:?}");
    }

    #[test]
    fn join_switches_once_joined_and_the_prompt_follows_the_pong() {
        let mut s = in_lobby();
        let out = typed(&mut s, "/join Rust");
        assert_eq!(
            sent(&out),
            [
                r#"{"room":"rust","type":"join"}"#,
                r#"{"token":1,"type":"ping"}"#
            ]
        );
        let out = feed(
            &mut s,
            r#"{"type":"joined","room":"rust","topic":"borrowck","users":[{"id":3,"nick":"guest3"},{"id":4,"nick":"carol"}]}"#,
        );
        assert_eq!(
            shown(&out),
            ["-- you are in rust (2 here: carol, guest3); topic: borrowck"]
        );
        assert_eq!(prompts(&out), ["rust> "]);
        assert!(out.contains(&Effect::Users(vec!["carol".into()])));
        assert!(out.contains(&Effect::Rooms(vec!["lobby".into(), "rust".into()])));
        assert_eq!(
            prompts(&feed(&mut s, r#"{"type":"pong","token":1}"#)),
            ["rust> "]
        );
        let out = typed(&mut s, "/me waves");
        assert_eq!(
            sent(&out),
            [r#"{"action":true,"room":"rust","text":"waves","type":"group"}"#]
        );
        // Lines from the lobby are marked now; rust's are not.
        let out = feed(
            &mut s,
            r#"{"type":"group","from":"alice","text":"hey","ts":1,"room":"lobby","seq":1}"#,
        );
        assert_eq!(shown(&out), ["[lobby] <alice> hey"]);
        let out = feed(
            &mut s,
            r#"{"type":"group","from":"carol","text":"yo","ts":1,"room":"rust","seq":2}"#,
        );
        assert_eq!(shown(&out), ["<carol> yo"]);
        // /join of a room we are in switches at once, sending nothing.
        let out = typed(&mut s, "/join lobby");
        assert_eq!(sent(&out), Vec::<String>::new());
        assert_eq!(shown(&out), ["-- now talking in lobby"]);
        assert_eq!(prompts(&out), ["lobby> "]);
        assert_eq!(s.roster.here(), Some("lobby"));
    }

    #[test]
    fn a_refused_join_still_settles_the_prompt() {
        let mut s = in_lobby();
        typed(&mut s, "/join toomany");
        let out = feed(
            &mut s,
            r#"{"type":"error","code":"too_many_rooms","message":"you are in too many rooms"}"#,
        );
        assert_eq!(shown(&out), ["!! you are in too many rooms"]);
        assert_eq!(
            prompts(&feed(&mut s, r#"{"type":"pong","token":1}"#)),
            ["lobby> "]
        );
        let out = typed(&mut s, "/join 9lives");
        assert!(
            shown(&out)[0].starts_with("!! a room name starts with a letter"),
            "{out:?}"
        );
        assert_eq!(
            prompts(&out),
            ["lobby> "],
            "a local refusal settles it at once"
        );
    }

    #[test]
    fn part_takes_a_room_we_are_in_or_the_current_one() {
        let mut s = in_lobby();
        feed(
            &mut s,
            r#"{"type":"joined","room":"rust","users":[{"id":3,"nick":"guest3"}]}"#,
        );
        let out = typed(&mut s, "/part lobby see you");
        assert_eq!(
            sent(&out)[0],
            r#"{"room":"lobby","text":"see you","type":"part"}"#
        );
        let out = typed(&mut s, "/part off to lunch");
        assert_eq!(
            sent(&out)[0],
            r#"{"room":"rust","text":"off to lunch","type":"part"}"#
        );
        let out = typed(&mut s, "/part");
        assert_eq!(sent(&out)[0], r#"{"room":"rust","type":"part"}"#);
        let out = feed(&mut s, r#"{"type":"parted","room":"rust"}"#);
        assert_eq!(shown(&out), ["-- you left rust"]);
        assert_eq!(prompts(&out), ["lobby> "]);
        feed(&mut s, r#"{"type":"parted","room":"lobby"}"#);
        assert_eq!(s.roster.here(), None);
        let out = typed(&mut s, "anyone?");
        assert_eq!(sent(&out), Vec::<String>::new());
        assert!(
            shown(&out)[0].starts_with("!! you are in no room"),
            "{out:?}"
        );
    }

    #[test]
    fn others_join_and_part_rooms_and_leave_the_server() {
        let mut s = in_lobby();
        feed(
            &mut s,
            r#"{"type":"joined","room":"rust","users":[{"id":3,"nick":"guest3"}]}"#,
        );
        let out = feed(
            &mut s,
            r#"{"type":"join","id":5,"nick":"dave","ts":1,"room":"rust"}"#,
        );
        assert_eq!(shown(&out), ["-- dave joined"]);
        let out = feed(
            &mut s,
            r#"{"type":"join","id":6,"nick":"erin","ts":1,"room":"lobby"}"#,
        );
        assert_eq!(shown(&out), ["[lobby] -- erin joined"]);
        let out = feed(
            &mut s,
            r#"{"type":"leave","id":5,"nick":"dave","reason":"part","text":"bye","ts":1,"room":"rust"}"#,
        );
        assert_eq!(shown(&out), ["-- dave left (part: bye)"]);
        let out = feed(
            &mut s,
            r#"{"type":"leave","id":6,"nick":"erin","reason":"quit","ts":1}"#,
        );
        assert_eq!(shown(&out), ["-- erin left (quit)"]);
        assert_eq!(s.roster.others(), Vec::<String>::new());
    }

    #[test]
    fn topic_rooms_and_who_commands() {
        let mut s = in_lobby();
        assert_eq!(shown(&typed(&mut s, "/topic")), ["-- lobby has no topic"]);
        let out = typed(&mut s, "/topic all things chat");
        assert_eq!(
            sent(&out),
            [r#"{"room":"lobby","text":"all things chat","type":"topic"}"#]
        );
        let out = feed(
            &mut s,
            r#"{"type":"topic","room":"lobby","by":"guest3","text":"all things chat","ts":1}"#,
        );
        assert_eq!(shown(&out), ["-- guest3 set the topic: all things chat"]);
        assert_eq!(
            shown(&typed(&mut s, "/topic")),
            ["-- the topic of lobby: all things chat"]
        );
        assert_eq!(
            sent(&typed(&mut s, "/topic -")),
            [r#"{"room":"lobby","text":"","type":"topic"}"#]
        );
        assert_eq!(sent(&typed(&mut s, "/rooms")), [r#"{"type":"rooms"}"#]);
        let out = feed(
            &mut s,
            r#"{"type":"rooms","rooms":[{"name":"lobby","users":2},{"name":"go","users":1,"topic":"gophers"}]}"#,
        );
        assert_eq!(shown(&out), ["-- 2 rooms: go (1: gophers), lobby (2)"]);
        assert!(out.contains(&Effect::Rooms(vec!["go".into(), "lobby".into()])));
        assert_eq!(
            sent(&typed(&mut s, "/who")),
            [r#"{"room":"lobby","type":"who"}"#]
        );
        assert_eq!(
            sent(&typed(&mut s, "/who Go")),
            [r#"{"room":"go","type":"who"}"#]
        );
    }

    #[test]
    fn room_wanted_at_start_is_joined_before_typed_lines_go() {
        let render = Renderer {
            style: Style::Plain,
        };
        let mut s = Session::new(render, false, None, vec!["rust".into(), "go".into()], true);
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(
            sent(&out),
            [
                r#"{"room":"lobby","type":"who"}"#,
                r#"{"room":"rust","type":"join"}"#,
                r#"{"room":"go","type":"join"}"#,
                r#"{"token":1,"type":"ping"}"#,
            ]
        );
        assert_eq!(prompts(&out), Vec::<String>::new());
        assert!(!s.ready());
        feed(
            &mut s,
            r#"{"type":"joined","room":"rust","users":[{"id":3,"nick":"guest3"}]}"#,
        );
        let out = feed(
            &mut s,
            r#"{"type":"joined","room":"go","users":[{"id":3,"nick":"guest3"}]}"#,
        );
        assert_eq!(
            prompts(&out),
            Vec::<String>::new(),
            "no prompt until all are answered"
        );
        let out = feed(&mut s, r#"{"type":"pong","token":1}"#);
        assert_eq!(prompts(&out), ["go> "]);
        assert!(!s.ready(), "the rooms' pasts show before typed lines");
        for room in ["rust", "go"] {
            feed(
                &mut s,
                &format!(r#"{{"type":"history","room":"{room}","messages":[],"more":false}}"#),
            );
        }
        assert!(s.ready());
    }

    #[test]
    fn a_v1_server_has_no_rooms() {
        let mut s = session(false, None, false);
        feed(&mut s, WELCOME);
        assert_eq!(
            sent(&typed(&mut s, "hi")),
            [r#"{"text":"hi","type":"group"}"#]
        );
        for line in ["/join rust", "/part", "/rooms", "/topic x", "/who rust"] {
            let out = typed(&mut s, line);
            assert_eq!(sent(&out), Vec::<String>::new(), "{line}");
            assert!(shown(&out)[0].contains("no rooms"), "{line}: {out:?}");
        }
        assert_eq!(sent(&typed(&mut s, "/who")), [r#"{"type":"who"}"#]);
        let render = Renderer {
            style: Style::Plain,
        };
        let mut s = Session::new(render, false, None, vec!["rust".into()], false);
        let out = feed(&mut s, WELCOME);
        assert!(shown(&out)[0].contains("no rooms"), "{out:?}");
        assert_eq!(prompts(&out), ["> "]);
        assert!(s.ready());
    }

    const PW: &str = "correct horse";

    fn alice() -> Credentials {
        Credentials {
            account: "alice".into(),
            password: Secret::new(PW.into()),
        }
    }

    const LOGIN_ALICE: &str = r#"{"account":"alice","password":"correct horse","type":"login"}"#;
    const ALICE_RENAMED: &str = r#"{"type":"nick","id":3,"old":"guest3","new":"alice","ts":1}"#;
    const WELCOME_REQUIRED: &str = r#"{"type":"welcome","id":3,"nick":"guest3","text":"Hi","users":2,"protocol":2,"room":"lobby","login":"required"}"#;

    #[test]
    fn an_account_logs_in_first_and_typed_lines_wait_for_the_answer() {
        let mut s = session(false, None, false).with_account(alice());
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(
            sent(&out),
            [
                LOGIN_ALICE,
                r#"{"limit":20,"room":"lobby","type":"history"}"#
            ]
        );
        assert!(
            !s.ready(),
            "typed lines must go out under the account's name"
        );
        feed(&mut s, ALICE_RENAMED);
        assert!(!s.ready());
        let out = feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        assert_eq!(shown(&out), ["-- logged in as alice"]);
        feed(
            &mut s,
            r#"{"type":"history","room":"lobby","messages":[],"more":false}"#,
        );
        assert!(s.ready());
        assert_eq!(s.roster.nick, "alice");
    }

    #[test]
    fn after_a_lost_connection_the_account_logs_in_before_the_name_and_rooms() {
        let mut s = session(false, None, false).with_account(alice());
        feed(&mut s, WELCOME_V2);
        feed(&mut s, ALICE_RENAMED);
        feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        feed(
            &mut s,
            r#"{"type":"joined","room":"rust","users":[{"id":3,"nick":"alice"}]}"#,
        );
        // A name taken after the login is asked for again, after it.
        feed(
            &mut s,
            r#"{"type":"nick","id":3,"old":"alice","new":"ally","ts":1}"#,
        );
        s.lost();
        let out = feed(&mut s, WELCOME_V2);
        let lines = sent(&out);
        assert_eq!(lines[0], LOGIN_ALICE, "{lines:?}");
        assert_eq!(lines[1], r#"{"nick":"ally","type":"nick"}"#, "{lines:?}");
        assert!(
            lines.contains(&r#"{"room":"rust","type":"join"}"#.to_owned()),
            "{lines:?}"
        );
        assert!(!s.ready());
        feed(&mut s, ALICE_RENAMED);
        feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        feed(
            &mut s,
            r#"{"type":"nick","id":3,"old":"alice","new":"ally","ts":1}"#,
        );
        assert!(!s.login_pending && !s.nick_pending);
        // Back as the account's own name: no second rename.
        let mut s = session(false, None, false).with_account(alice());
        feed(&mut s, WELCOME_V2);
        feed(&mut s, ALICE_RENAMED);
        feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        s.lost();
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(
            sent(&out),
            [
                LOGIN_ALICE,
                r#"{"limit":20,"room":"lobby","type":"history"}"#
            ]
        );
    }

    #[test]
    fn an_unanswered_login_is_given_up_under_the_guest_name() {
        let mut s = session(false, None, false).with_account(alice());
        feed(&mut s, WELCOME);
        assert!(!s.ready());
        let mut out = Vec::new();
        s.start_overdue(T, &mut out);
        assert!(s.ready());
        assert_eq!(
            shown(&out),
            ["!! the server did not answer the login; you are still guest3"]
        );
    }

    #[test]
    fn a_refused_login_says_what_to_do_and_is_not_tried_again() {
        let mut s = session(false, None, false).with_account(alice());
        feed(&mut s, WELCOME_V2);
        let out = feed(
            &mut s,
            r#"{"type":"error","code":"login_failed","message":"wrong account or password"}"#,
        );
        assert_eq!(
            shown(&out),
            [
                "!! wrong account or password; check the account name and the password, then /login ACCOUNT again (you are guest3)"
            ]
        );
        assert!(!shown(&out)[0].contains(PW));
        feed(
            &mut s,
            r#"{"type":"history","room":"lobby","messages":[],"more":false}"#,
        );
        assert!(s.ready());
        s.lost();
        let out = feed(&mut s, WELCOME_V2);
        assert!(!sent(&out).iter().any(|l| l.contains("login")), "{out:?}");
        for (code, hint) in [
            ("too_many_attempts", "wait a few minutes"),
            ("insecure_transport", "only over TLS"),
        ] {
            let mut s = session(false, None, false).with_account(alice());
            feed(&mut s, WELCOME_V2);
            let out = feed(
                &mut s,
                &format!(r#"{{"type":"error","code":"{code}","message":"no"}}"#),
            );
            assert!(shown(&out)[0].contains(hint), "{code}: {out:?}");
        }
    }

    #[test]
    fn a_server_that_requires_login_says_so_and_the_start_waits_for_it() {
        let mut s = session(false, Some("carol"), true);
        let out = feed(&mut s, WELCOME_REQUIRED);
        assert_eq!(
            sent(&out),
            Vec::<String>::new(),
            "nothing but login is allowed"
        );
        let lines = shown(&out);
        assert!(
            lines[0]
                .starts_with("!! this server lets nobody in without an account: /login ACCOUNT"),
            "{lines:?}"
        );
        assert!(lines[0].contains("/register"), "{lines:?}");
        assert!(s.ready(), "the user must be able to type /login");
        let out = feed(
            &mut s,
            r#"{"type":"error","code":"login_required","message":"log in first"}"#,
        );
        assert_eq!(
            shown(&out),
            ["!! log in first; log in first: /login ACCOUNT (or /register)"]
        );
        let mut out = Vec::new();
        s.login("alice", Secret::new(PW.into()), T, &mut out);
        assert_eq!(sent(&out), [LOGIN_ALICE]);
        feed(&mut s, ALICE_RENAMED);
        let out = feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        // The start goes on, without the nickname: the account gave one.
        assert_eq!(
            sent(&out),
            [
                r#"{"room":"lobby","type":"who"}"#,
                r#"{"limit":20,"room":"lobby","type":"history"}"#
            ]
        );
        assert_eq!(shown(&out), ["-- logged in as alice"]);
    }

    #[test]
    fn a_typed_login_is_done_again_after_a_lost_connection() {
        let mut s = in_lobby();
        let mut out = Vec::new();
        s.login("alice", Secret::new(PW.into()), T, &mut out);
        assert_eq!(sent(&out), [LOGIN_ALICE]);
        feed(&mut s, ALICE_RENAMED);
        feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        s.lost();
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(sent(&out)[0], LOGIN_ALICE);
        // One typed but unanswered when the connection broke is forgotten.
        let mut s = in_lobby();
        let mut out = Vec::new();
        s.login("alice", Secret::new(PW.into()), T, &mut out);
        s.lost();
        let out = feed(&mut s, WELCOME_V2);
        assert!(!sent(&out).iter().any(|l| l.contains("login")), "{out:?}");
    }

    #[test]
    fn with_an_account_a_required_login_is_all_that_goes_first() {
        let mut s = session(false, None, true).with_account(alice());
        let out = feed(&mut s, WELCOME_REQUIRED);
        assert_eq!(sent(&out), [LOGIN_ALICE]);
        assert!(shown(&out).iter().all(|l| !l.starts_with("!!")), "{out:?}");
        assert!(!s.ready());
        let out = feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        assert_eq!(sent(&out).len(), 2, "{out:?}");
        feed(
            &mut s,
            r#"{"type":"history","room":"lobby","messages":[],"more":false}"#,
        );
        assert!(s.ready());
    }

    #[test]
    fn register_keeps_the_password_to_log_in_again_and_logout_forgets_it() {
        let mut s = session(false, Some("alice"), false);
        feed(&mut s, WELCOME_V2);
        feed(&mut s, ALICE_RENAMED);
        let mut out = Vec::new();
        s.register(Secret::new(PW.into()), T, &mut out);
        assert_eq!(
            sent(&out),
            [r#"{"password":"correct horse","type":"register"}"#]
        );
        assert!(shown(&out).is_empty(), "the password is never shown");
        let out = feed(&mut s, r#"{"type":"registered","account":"alice"}"#);
        assert_eq!(
            shown(&out),
            ["-- registered: the nickname alice is now yours"]
        );
        s.lost();
        let out = feed(&mut s, WELCOME_V2);
        assert_eq!(sent(&out)[0], LOGIN_ALICE);
        feed(&mut s, r#"{"type":"logged_in","account":"alice"}"#);
        assert_eq!(sent(&typed(&mut s, "/logout")), [r#"{"type":"logout"}"#]);
        assert_eq!(
            shown(&feed(&mut s, r#"{"type":"logged_out"}"#)),
            ["-- logged out: you keep your nickname until you change it, but no longer own it"]
        );
        s.lost();
        let out = feed(&mut s, WELCOME_V2);
        assert!(!sent(&out).iter().any(|l| l.contains("login")), "{out:?}");
    }

    #[test]
    fn register_refusals_say_what_to_do() {
        for (code, hint) in [
            ("bad_password", "8 to 1024 bytes"),
            ("registration_closed", "ask its operator"),
            ("nick_registered", "it is an account already"),
            ("bad_nick", "take a nickname with /nick, then /register"),
        ] {
            let mut s = in_lobby();
            let mut out = Vec::new();
            s.register(Secret::new(PW.into()), T, &mut out);
            let out = feed(
                &mut s,
                &format!(r#"{{"type":"error","code":"{code}","message":"no"}}"#),
            );
            assert!(shown(&out)[0].contains(hint), "{code}: {out:?}");
            s.lost();
            let out = feed(&mut s, WELCOME_V2);
            assert!(!sent(&out).iter().any(|l| l.contains("login")), "{code}");
        }
        // A password typed on the command line is refused, sending nothing.
        let mut s = in_lobby();
        let out = typed(&mut s, "/login alice hunter2hunter2");
        assert!(sent(&out).is_empty());
        assert!(!shown(&out)[0].contains("hunter2"), "{out:?}");
        let mut out = Vec::new();
        s.login("alice", Secret::new(String::new()), T, &mut out);
        assert!(sent(&out).is_empty());
        assert_eq!(shown(&out), ["!! no password given; nothing was sent"]);
    }

    #[test]
    fn a_start_nick_that_is_an_account_says_to_log_in() {
        let mut s = session(false, Some("alice"), false);
        feed(&mut s, WELCOME);
        let out = feed(
            &mut s,
            r#"{"type":"error","code":"nick_registered","message":"alice is registered"}"#,
        );
        assert_eq!(
            shown(&out),
            [
                "!! alice is registered; you are still guest3; that name is an account: /login NAME if it is yours, or choose another /nick"
            ]
        );
        assert!(s.ready());
    }

    #[test]
    fn unknown_message_types_are_ignored() {
        let mut s = in_lobby();
        assert_eq!(
            feed(&mut s, r#"{"type":"history","room":"lobby","messages":[]}"#),
            []
        );
        assert_eq!(feed(&mut s, r#"{"type":"shiny_new_thing","x":1}"#), []);
    }
}
