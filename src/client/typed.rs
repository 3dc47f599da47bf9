//! What a typed command does: the messages it sends and the lines it shows.
//! The other half of [`Session`], the one driven by the keyboard.

use crate::wire::{ClientMsg, check_nick, check_room, client_line};

use super::awaited::After;
use super::commands::{Command, HELP};
use super::session::{Effect, Session};

impl Session {
    /// One typed line, parsed.
    pub fn command(&mut self, cmd: Command<'_>, time: &str, out: &mut Vec<Effect>) {
        match cmd {
            Command::Nothing => {}
            Command::Say(text) => self.group(text, false, time, out),
            Command::Me(text) => self.group(text, true, time, out),
            Command::Msg { to, text } => self.say(
                &ClientMsg::Private {
                    to: to.into(),
                    text: text.into(),
                    action: false,
                },
                time,
                out,
            ),
            Command::Nick(nick) => match check_nick(nick) {
                Ok(nick) => out.push(Effect::Send(client_line(&ClientMsg::Nick {
                    nick: nick.into(),
                }))),
                Err(why) => out.push(self.refusal(time, &why)),
            },
            Command::Who(room) => self.who(room, time, out),
            Command::Join(room) => self.join(room, time, out),
            Command::Part(args) => self.part(args, time, out),
            Command::Rooms => match self.no_rooms() {
                Some(why) => out.push(self.refusal(time, why)),
                None => out.push(Effect::Send(client_line(&ClientMsg::Rooms))),
            },
            Command::Topic(text) => self.topic(text, time, out),
            Command::History(count) => self.older(count, time, out),
            Command::Login(_) | Command::Register => {
                // The parent hands these over with their password; without
                // one there is nothing to send.
                out.push(self.refusal(time, "no password given; nothing was sent"));
            }
            Command::Logout => self.logout(out),
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

    /// Why room commands cannot work here, if they cannot.
    fn no_rooms(&self) -> Option<&'static str> {
        match self.roster.has_rooms() {
            true => None,
            false => Some("this server has no rooms (it speaks protocol v1)"),
        }
    }

    /// A line for the current room (for everyone, without rooms).
    fn group(&mut self, text: &str, action: bool, time: &str, out: &mut Vec<Effect>) {
        let room = match (self.roster.has_rooms(), self.roster.here()) {
            (false, _) => None,
            (true, Some(here)) => Some(here.to_owned().into()),
            (true, None) => {
                let why = "you are in no room: /join ROOM first (nothing was sent)";
                return out.push(self.refusal(time, why));
            }
        };
        let msg = ClientMsg::Group {
            room,
            text: text.into(),
            action,
        };
        self.say(&msg, time, out);
    }

    /// Sends a message, and shows it (unless `--json`) as the others see it:
    /// a group message at once, a private one once the server has not
    /// refused it (it may name nobody).
    fn say(&mut self, msg: &ClientMsg<'_>, time: &str, out: &mut Vec<Effect>) {
        out.push(Effect::Send(client_line(msg)));
        if self.json {
            return;
        }
        let Some(line) = self.render.sent(msg, &self.roster.nick) else {
            return;
        };
        let line = self.render.stamp(time, &line);
        match msg {
            ClientMsg::Private { text, .. } => {
                let after = After::Echo {
                    line,
                    text: text.to_string(),
                };
                out.push(Effect::Send(self.awaited.ping(after)));
            }
            _ => out.push(Effect::Show(line)),
        }
    }

    fn who(&mut self, room: Option<&str>, time: &str, out: &mut Vec<Effect>) {
        let room = match (room, self.no_rooms()) {
            (None, _) => self.roster.here().map(str::to_owned),
            (Some(_), Some(why)) => return out.push(self.refusal(time, why)),
            (Some(room), None) => match check_room(room) {
                Ok(room) => Some(room),
                Err(why) => return out.push(self.refusal(time, &why)),
            },
        };
        let room = room.map(Into::into);
        out.push(Effect::Send(client_line(&ClientMsg::Who { room })));
    }

    /// `/join`: a room we are in becomes current at once; another is
    /// joined, and becomes current when the server says `joined`. Either
    /// way the input child gets its next prompt once that is settled.
    fn join(&mut self, room: &str, time: &str, out: &mut Vec<Effect>) {
        if let Some(why) = self.no_rooms() {
            out.push(self.refusal(time, why));
            return out.push(self.prompt());
        }
        let room = match check_room(room) {
            Ok(room) => room,
            Err(why) => {
                out.push(self.refusal(time, &why));
                return out.push(self.prompt());
            }
        };
        if self.roster.switch_to(&room) {
            let line = self.render.notice(&format!("now talking in {room}"));
            out.push(Effect::Note(self.render.stamp(time, &line)));
            out.push(Effect::Users(self.roster.others()));
            return out.push(self.prompt());
        }
        let msg = ClientMsg::Join { room: room.into() };
        out.push(Effect::Send(client_line(&msg)));
        self.then(After::Prompt, out);
    }

    /// `/part [ROOM] [TEXT]`: the first word is the room when it names one
    /// we are in; otherwise everything is the text and the room is the
    /// current one.
    fn part(&mut self, args: &str, time: &str, out: &mut Vec<Effect>) {
        if let Some(why) = self.no_rooms() {
            out.push(self.refusal(time, why));
            return out.push(self.prompt());
        }
        let (first, rest) = args
            .split_once(char::is_whitespace)
            .map_or((args, ""), |(first, rest)| (first, rest.trim_start()));
        let named = check_room(first)
            .ok()
            .and_then(|r| self.roster.ours(&r).map(str::to_owned));
        let (room, text) = match named {
            Some(room) => (room, rest),
            None => match self.roster.here() {
                Some(here) => (here.to_owned(), args),
                None => {
                    out.push(self.refusal(time, "you are in no room; /rooms lists them"));
                    return out.push(self.prompt());
                }
            },
        };
        let msg = ClientMsg::Part {
            room: room.into(),
            text: Some(text).filter(|t| !t.is_empty()).map(Into::into),
        };
        out.push(Effect::Send(client_line(&msg)));
        self.then(After::Prompt, out);
    }

    /// `/topic` shows the current room's topic, `/topic TEXT` sets it and
    /// `/topic -` clears it.
    fn topic(&mut self, text: &str, time: &str, out: &mut Vec<Effect>) {
        if let Some(why) = self.no_rooms() {
            return out.push(self.refusal(time, why));
        }
        let Some(here) = self.roster.here().map(str::to_owned) else {
            return out.push(self.refusal(time, "you are in no room; /join ROOM first"));
        };
        if text.is_empty() {
            let line = match self.roster.topic(&here) {
                Some(topic) => format!("the topic of {here}: {topic}"),
                None => format!("{here} has no topic"),
            };
            let line = self.render.notice(&line);
            return out.push(Effect::Note(self.render.stamp(time, &line)));
        }
        let text = if text == "-" { "" } else { text };
        let msg = ClientMsg::Topic {
            room: here.into(),
            text: text.into(),
        };
        out.push(Effect::Send(client_line(&msg)));
    }
}
