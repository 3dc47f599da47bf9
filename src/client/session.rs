//! The conversation, apart from any I/O: what a line from the server means
//! to the user, and what a typed command sends. The parent's loop feeds it
//! lines and carries out the [`Effect`]s, so everything here is tested
//! without sockets or terminals.

use crate::render::{Me, Renderer, json_line};
use crate::wire::{ByeReason, ClientMsg, ErrorCode, ServerMsg, check_nick, client_line};

use super::commands::{Command, HELP};
use super::room::Room;

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
    /// The other users' nicknames changed; hand them to the completer.
    Users(Vec<String>),
    /// The user asked to leave; `quit` has been sent.
    Quitting,
    /// The server said goodbye.
    Bye(ByeReason),
}

pub struct Session {
    pub room: Room,
    pub render: Renderer,
    json: bool,
    /// The nickname to ask for once welcomed.
    wanted_nick: Option<String>,
    /// Ask for the user list on connect (for completion).
    ask_who: bool,
    welcomed: bool,
    /// Our first `nick` is unanswered: typed lines wait, so that they go out
    /// under the name the user asked for.
    nick_pending: bool,
}

impl Session {
    pub fn new(
        render: Renderer,
        json: bool,
        wanted_nick: Option<String>,
        ask_who: bool,
    ) -> Session {
        Session {
            room: Room::default(),
            render,
            json,
            wanted_nick,
            ask_who,
            welcomed: false,
            nick_pending: false,
        }
    }

    /// True once typed lines can be sent: welcomed, and the nickname asked
    /// for on the command line granted or refused.
    pub fn ready(&self) -> bool {
        self.welcomed && !self.nick_pending
    }

    pub fn welcomed(&self) -> bool {
        self.welcomed
    }

    /// The server never answered our first `nick`: stop waiting for it and
    /// say so; typed lines go out under the name we have.
    pub fn nick_unanswered(&mut self, time: &str) -> Effect {
        self.nick_pending = false;
        let why = format!(
            "the server did not answer the request for a nickname; you are still {}",
            self.room.nick
        );
        self.refusal(time, &why)
    }

    /// A refusal the client itself says (a bad command, an overlong line),
    /// at `time`.
    pub fn refusal(&self, time: &str, why: &str) -> Effect {
        Effect::Note(self.render.stamp(time, &self.render.error(why)))
    }

    /// One line from the server.
    pub fn server_line(&mut self, line: &[u8], time: &str, out: &mut Vec<Effect>) {
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
        if self.json
            && let Some(raw) = json_line(line)
        {
            out.push(Effect::Show(raw));
        }
        let show = self.react(&msg, out);
        if let (Some(line), false) = (show, self.json) {
            out.push(Effect::Show(self.render.stamp(time, &line)));
        }
    }

    /// Updates what we know and returns the line that shows the event.
    fn react(&mut self, msg: &ServerMsg<'_>, out: &mut Vec<Effect>) -> Option<String> {
        match msg {
            ServerMsg::Welcome { id, nick, .. } => {
                self.welcomed = true;
                self.room.welcome(*id, nick);
                if let Some(wanted) = self.wanted_nick.take() {
                    out.push(Effect::Send(client_line(&ClientMsg::Nick {
                        nick: wanted.into(),
                    })));
                    self.nick_pending = true;
                }
                if self.ask_who {
                    out.push(Effect::Send(client_line(&ClientMsg::Who)));
                }
            }
            ServerMsg::Join { id, nick, .. } => {
                self.room.join(*id, nick);
                out.push(Effect::Users(self.room.others()));
            }
            ServerMsg::Leave { id, .. } => {
                self.room.leave(*id);
                out.push(Effect::Users(self.room.others()));
            }
            ServerMsg::Nick { id, new, .. } => {
                if self.room.rename(*id, new) {
                    self.nick_pending = false;
                }
                out.push(Effect::Users(self.room.others()));
            }
            ServerMsg::Who { users } => {
                self.room.who(users);
                out.push(Effect::Users(self.room.others()));
            }
            // The way out says it: a quiet exit, or the shutdown on stderr.
            ServerMsg::Bye { reason } => {
                out.push(Effect::Bye(*reason));
                return None;
            }
            ServerMsg::Error { code, message }
                if matches!(code, ErrorCode::BadNick | ErrorCode::NickInUse)
                    && self.nick_pending =>
            {
                self.nick_pending = false;
                let nick = &self.room.nick;
                return Some(
                    self.render
                        .error(&format!("{message}; you are still {nick}")),
                );
            }
            ServerMsg::Group { .. }
            | ServerMsg::Private { .. }
            | ServerMsg::Pong { .. }
            | ServerMsg::Error { .. } => {}
        }
        let me = Me {
            id: self.room.me,
            nick: &self.room.nick,
        };
        self.render.received(msg, me)
    }

    /// One typed line, parsed.
    pub fn command(&mut self, cmd: Command<'_>, time: &str, out: &mut Vec<Effect>) {
        match cmd {
            Command::Nothing => {}
            Command::Say(text) => self.say(&ClientMsg::Group { text: text.into() }, time, out),
            Command::Msg { to, text } => self.say(
                &ClientMsg::Private {
                    to: to.into(),
                    text: text.into(),
                },
                time,
                out,
            ),
            Command::Nick(nick) => match check_nick(nick) {
                Ok(()) => out.push(Effect::Send(client_line(&ClientMsg::Nick {
                    nick: nick.into(),
                }))),
                Err(why) => out.push(self.refusal(time, &why)),
            },
            Command::Who => out.push(Effect::Send(client_line(&ClientMsg::Who))),
            Command::Quit(reason) => {
                out.push(Effect::Send(client_line(&ClientMsg::Quit {
                    text: reason.map(Into::into),
                })));
                out.push(Effect::Quitting);
            }
            Command::Help => {
                for line in HELP {
                    let line = self.render.stamp(time, &self.render.notice(line));
                    out.push(Effect::Note(line));
                }
            }
            Command::Bad(why) => out.push(self.refusal(time, &why)),
        }
    }

    /// Sends a message, and shows it (unless `--json`) as the others see it.
    fn say(&self, msg: &ClientMsg<'_>, time: &str, out: &mut Vec<Effect>) {
        out.push(Effect::Send(client_line(msg)));
        if self.json {
            return;
        }
        if let Some(line) = self.render.sent(msg, &self.room.nick) {
            out.push(Effect::Show(self.render.stamp(time, &line)));
        }
    }
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
        Session::new(render, json, nick.map(str::to_owned), ask_who)
    }

    fn feed(s: &mut Session, line: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        s.server_line(line.as_bytes(), T, &mut out);
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
        assert_eq!(s.room.nick, "carol");
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
        let note = s.nick_unanswered(T);
        assert!(s.ready());
        assert!(
            matches!(&note, Effect::Note(l) if l.contains("!! ") && l.contains("still guest3")),
            "{note:?}"
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
        assert_eq!(s.room.others(), ["alice"]);
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
            [show(WELCOME), send(r#"{"nick":"carol","type":"nick"}"#)]
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
                show("12:00:00 -> *bob* psst")
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
}
