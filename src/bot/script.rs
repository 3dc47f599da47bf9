//! Reading a bot script (`shared/spec/bot-scripts.md`): lines into steps
//! that are known to make sense, or every mistake at once as
//! `FILE:LINE: what is wrong`, before anything connects.
//!
//! Two passes: the words of each line on their own (`parse_line`), then,
//! in order, who each line's actor is at that point of the script
//! (nicknames change, actors quit and new ones arrive), which decides which
//! actors connect at the start and which `connect` steps are misplaced.

use std::collections::HashMap;
use std::time::Duration;

use super::matching::{Kind, Pattern};
use super::words::{
    one_word, optional_text, quoted, required_text, split_word, strip_within, trim, within_clause,
};
use crate::names;
use crate::render::sanitize;
use crate::units::parse_duration;
use crate::wire::{check_nick, check_room, is_guest_name};

/// A script that passed validation.
#[derive(Debug)]
pub struct Script {
    /// The file as the user named it (`<stdin>` for `-`), for messages.
    pub name: String,
    /// Every participant, in order of first appearance.
    pub actors: Vec<Actor>,
    pub steps: Vec<Step>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Actor {
    /// The nickname it asks for when it connects.
    pub name: String,
    /// Where it first appears.
    pub line: usize,
    /// Its first step is `connect`: it arrives then, not at the start.
    pub late: bool,
    /// Its first step is `login`: it connects at the start but asks for no
    /// nickname (its name may be an account's, which only the login
    /// grants); it takes the account's name when that step runs.
    pub login: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    /// Index into [`Script::actors`]; `None` only for `sleep`.
    pub actor: Option<usize>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Connect,
    /// `say`, or `me` (an `action`: something the actor does); in `room`
    /// (`in ROOM say ...`, case-folded), or the default room when `None`.
    Say {
        room: Option<String>,
        text: String,
        action: bool,
    },
    Msg {
        to: String,
        text: String,
    },
    /// `taken`: NEW belongs to another actor of the script at this point,
    /// so the server must refuse it (`nick_in_use`) and the actor keeps its
    /// name; otherwise the server must accept it.
    Nick {
        new: String,
        taken: bool,
    },
    Sleep(Duration),
    Expect {
        pattern: Pattern,
        /// `within DURATION`; `None` means the `--timeout`.
        within: Option<Duration>,
    },
    /// Everyone online, or the members of a room.
    Who(Option<String>),
    /// Rooms are case-folded here, as the server sends them back, so the
    /// runner can recognise its answer.
    Join(String),
    Part {
        room: String,
        text: Option<String>,
    },
    /// An empty `text` clears the topic.
    Topic {
        room: String,
        text: String,
    },
    Rooms,
    /// Ask for a room's stored messages (the last `limit`, or the server's
    /// default), case-folded like `join`; the runner waits for the answer,
    /// which stays queued for `expect history`.
    History {
        room: String,
        limit: Option<usize>,
    },
    Quit(Option<String>),
    /// Log in to `account` (the actor's name when `None`) with the
    /// password in the environment variable `var`; the runner waits for
    /// `logged_in`, and the actor is called by the account's name after.
    Login {
        account: Option<String>,
        var: String,
    },
    /// Make the actor's nickname an account, with the password in `var`;
    /// the runner waits for `registered`.
    Register {
        var: String,
    },
    /// The runner waits for `logged_out`.
    Logout,
}

impl Action {
    /// The environment variable holding the password this step sends.
    pub fn password_var(&self) -> Option<&str> {
        match self {
            Action::Login { var, .. } | Action::Register { var } => Some(var),
            _ => None,
        }
    }
}

/// The verbs, in the order the spec lists them (used in messages).
const VERBS: &str = "say, me, msg, nick, sleep, expect, connect, who, join, part, topic, rooms, history, quit, login, register, logout, in ROOM";

/// The verbs that `in ROOM` may qualify.
const IN_VERBS: &str = "say, me and expect";

/// Reads a whole script. `default_nick` is the actor of steps without
/// `@ACTOR` (`--nick`). The error is every problem found, one
/// `FILE:LINE: what` each, in line order.
pub fn parse(name: &str, source: &[u8], default_nick: &str) -> Result<Script, Vec<String>> {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in source.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = match std::str::from_utf8(raw) {
            Ok(text) => parse_line(text),
            Err(_) => Err("not valid UTF-8".to_owned()),
        };
        match parsed {
            Ok(None) => {}
            Ok(Some(line)) => lines.push((number, line)),
            Err(e) => errors.push((number, e)),
        }
    }
    let mut resolver = Resolver::new(default_nick);
    let mut steps = Vec::new();
    let mut rest = lines.as_slice();
    while let Some(((number, line), later)) = rest.split_first() {
        match resolver.resolve(*number, line, later) {
            Ok(step) => steps.push(step),
            Err(e) => errors.push((*number, e)),
        }
        rest = later;
    }
    errors.extend(resolver.unheld_refusals());
    if errors.is_empty() {
        return Ok(Script {
            name: name.to_owned(),
            actors: resolver.into_actors(),
            steps,
        });
    }
    errors.sort_by_key(|(number, _)| *number);
    // Messages quote the script, which may hold controls; they go to a
    // terminal as one line each, so controls show as escapes.
    Err(errors
        .into_iter()
        .map(|(number, e)| sanitize(&format!("{name}:{number}: {e}")).into_owned())
        .collect())
}

/// Whether a later line still calls an actor `@NAME` (before a `connect`
/// starts a new actor of that name).
fn still_called(name: &str, later: &[(usize, Line)]) -> bool {
    later
        .iter()
        .find(|(_, l)| l.actor.as_deref().is_some_and(|a| names::same(a, name)))
        .is_some_and(|(_, l)| l.action != Action::Connect)
}

/// One step as written: its actor by name, not yet resolved.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    actor: Option<String>,
    action: Action,
}

/// The words of one line; `Ok(None)` for blank and comment lines.
fn parse_line(text: &str) -> Result<Option<Line>, String> {
    let text = trim(text);
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let (first, rest) = split_word(text);
    let (actor, verb, args) = match first.strip_prefix('@') {
        Some(actor) => {
            check_nick(actor).map_err(|e| format!("bad nick \"@{actor}\": {e}"))?;
            let (verb, args) = split_word(rest);
            if verb.is_empty() {
                return Err(format!("@{actor} needs a verb ({VERBS})"));
            }
            (Some(actor.to_owned()), verb, args)
        }
        None => (None, first, rest),
    };
    let (room, verb, args) = match verb {
        "in" => {
            let (room, rest) = split_word(args);
            let (verb, args) = split_word(rest);
            if verb.is_empty() {
                return Err(format!(
                    "in needs a ROOM and a step ({IN_VERBS}): `in rust say hi`"
                ));
            }
            (Some(room), verb, args)
        }
        _ => (None, verb, args),
    };
    let action = match verb {
        "say" | "me" => {
            let room = room
                .map(|r| check_room(r).map_err(|e| format!("bad room \"{r}\" after in: {e}")))
                .transpose()?;
            let action = verb == "me";
            let missing = if action {
                "me needs a TEXT (what the actor does: `me waves`)"
            } else {
                "say needs a TEXT"
            };
            Action::Say {
                room,
                text: required_text(args, missing)?,
                action,
            }
        }
        "expect" => parse_expect(args, room)?,
        _ if room.is_some() => {
            return Err(match verb {
                "msg" | "nick" | "sleep" | "connect" | "rooms" | "quit" | "in" | "login"
                | "register" | "logout" => {
                    format!("in ROOM goes only with {IN_VERBS}, not with {verb}")
                }
                "join" | "part" | "topic" | "who" | "history" => format!(
                    "in ROOM goes only with {IN_VERBS}; {verb} names its room after the verb (`{verb} rust`)"
                ),
                other => format!("unknown verb \"{other}\" ({VERBS})"),
            });
        }
        "msg" => {
            let (to, text) = split_word(args);
            if to.is_empty() {
                return Err("msg needs a NICK and a TEXT".to_owned());
            }
            check_nick(to)
                .or_else(|e| {
                    if is_guest_name(to) {
                        Ok(to.to_owned())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| format!("bad nick \"{to}\" after msg: {e}"))?;
            let text = required_text(text, &format!("msg {to} needs a TEXT after the nick"))?;
            Action::Msg {
                to: to.to_owned(),
                text,
            }
        }
        "nick" => {
            let new = one_word(args, "nick needs one NEW nickname")?;
            check_nick(new).map_err(|e| format!("bad nick \"{new}\": {e}"))?;
            Action::Nick {
                new: new.to_owned(),
                taken: false,
            }
        }
        "sleep" => {
            if let Some(actor) = &actor {
                return Err(format!(
                    "sleep pauses everyone and belongs to no actor; drop the @{actor}"
                ));
            }
            Action::Sleep(parse_duration(one_word(
                args,
                "sleep needs a DURATION (250ms, 2s, 1m)",
            )?)?)
        }
        "connect" => no_args(args, Action::Connect, "connect")?,
        "who" if args.is_empty() => Action::Who(None),
        "who" => Action::Who(Some(room_arg(
            one_word(args, "who takes at most a ROOM")?,
            "who",
        )?)),
        "join" => Action::Join(room_arg(one_word(args, "join needs one ROOM")?, "join")?),
        "part" => {
            let (room, text) = split_word(args);
            if room.is_empty() {
                return Err("part needs a ROOM (and may give a reason)".to_owned());
            }
            Action::Part {
                room: room_arg(room, "part")?,
                text: optional_text(text)?,
            }
        }
        "topic" => {
            let (room, text) = split_word(args);
            if room.is_empty() {
                return Err("topic needs a ROOM and a TEXT".to_owned());
            }
            let room = room_arg(room, "topic")?;
            let text = match optional_text(text)? {
                Some(text) => text,
                None if text.is_empty() => {
                    return Err(format!("topic {room} needs a TEXT (\"\" clears the topic)"));
                }
                None => String::new(),
            };
            Action::Topic { room, text }
        }
        "rooms" => no_args(args, Action::Rooms, "rooms")?,
        "history" => {
            let (room, rest) = split_word(args);
            if room.is_empty() {
                return Err("history needs a ROOM (and may give how many messages, N)".to_owned());
            }
            let room = room_arg(room, "history")?;
            let limit = match rest {
                "" => None,
                n => Some(history_limit(n)?),
            };
            Action::History { room, limit }
        }
        "quit" => Action::Quit(optional_text(args)?),
        "login" => {
            let (first, rest) = split_word(args);
            let (account, var) = match first.strip_prefix('$') {
                Some(_) => (None, args),
                None if first.is_empty() => (None, ""),
                None => {
                    check_nick(first)
                        .map_err(|e| format!("bad account \"{first}\" after login: {e}"))?;
                    (Some(first.to_owned()), rest)
                }
            };
            Action::Login {
                account,
                var: password_var(var, "login [ACCOUNT] [$VAR]")?,
            }
        }
        "register" => Action::Register {
            var: password_var(args, "register [$VAR]")?,
        },
        "logout" => no_args(args, Action::Logout, "logout")?,
        other => return Err(format!("unknown verb \"{other}\" ({VERBS})")),
    };
    Ok(Some(Line { actor, action }))
}

/// A ROOM argument, checked by the protocol's rules and case-folded.
fn room_arg(room: &str, verb: &str) -> Result<String, String> {
    check_room(room).map_err(|e| format!("bad room \"{room}\" after {verb}: {e}"))
}

/// The N of `history ROOM N`: what the server accepts (1 to 500), checked
/// here so that a typo fails before anything connects.
fn history_limit(n: &str) -> Result<usize, String> {
    let max = crate::wire::HISTORY_MAX;
    match n.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "history takes a ROOM and at most a count N from 1 to {max}, not \"{n}\""
        )),
    }
}

/// `[in ROOM] expect KIND [FROM [TEXT]] [within DURATION]`; for
/// `expect history ROOM [FROM [TEXT]]` the room comes first, since
/// the answer is about a room the way `joined`'s is.
fn parse_expect(args: &str, room: Option<&str>) -> Result<Action, String> {
    let kinds = || {
        Kind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (word, mut rest) = split_word(args);
    if word.is_empty() {
        return Err(format!("expect needs a KIND ({})", kinds()));
    }
    let kind = Kind::parse(word)
        .ok_or_else(|| format!("unknown KIND \"{word}\" after expect ({})", kinds()))?;
    let mut room = room.map(|r| room_pattern(r, kind)).transpose()?;
    if kind == Kind::History {
        let (r, after) = split_word(rest);
        if r.is_empty() || within_clause(rest).is_some() {
            return Err(
                "expect history needs a ROOM (then maybe FROM and TEXT of a message in it)"
                    .to_owned(),
            );
        }
        room = Some(room_pattern_chars(r, "expect history")?);
        rest = after;
    }
    let mut from = None;
    let mut text = None;
    let mut within = None;
    if let Some(d) = within_clause(rest) {
        within = Some(d);
    } else if !rest.is_empty() {
        let (f, after) = if rest.starts_with('"') {
            quoted(rest)?
        } else {
            let (w, after) = split_word(rest);
            (w.to_owned(), after)
        };
        from = Some(f);
        rest = after;
        if let Some(d) = within_clause(rest) {
            within = Some(d);
        } else if rest.starts_with('"') {
            let (t, after) = quoted(rest)?;
            text = Some(t);
            if !after.is_empty() {
                within = Some(within_clause(after).ok_or_else(|| {
                    format!("unexpected \"{after}\" after the quoted TEXT (only `within DURATION` may follow)")
                })?);
            }
        } else if !rest.is_empty() {
            let (body, d) = strip_within(rest)?;
            text = Some(body.to_owned());
            within = d;
        }
    }
    if text.is_some() && !kind.has_text() {
        return Err(format!("expect {} takes no TEXT, only a FROM", kind.name()));
    }
    let within = within.map(parse_duration).transpose()?;
    Ok(Action::Expect {
        pattern: Pattern {
            kind,
            from,
            text,
            room,
        },
        within,
    })
}

/// The ROOM of `in ROOM expect KIND`: a pattern, like FROM (so `in *`
/// is any room), of a room's characters; only for the kinds that happen
/// in a room.
fn room_pattern(room: &str, kind: Kind) -> Result<String, String> {
    if !kind.in_a_room() {
        let why = if kind.names_a_room() {
            format!(
                "expect {0} names its room after the KIND (`expect {0} {room}`)",
                kind.name()
            )
        } else {
            format!("expect {} happens in no room", kind.name())
        };
        return Err(format!("{why}; drop the `in {room}`"));
    }
    room_pattern_chars(room, "in")
}

/// A room pattern's characters: a room's, and `*`; lower-cased.
fn room_pattern_chars(room: &str, after: &str) -> Result<String, String> {
    if room.is_empty() || !room.chars().all(|c| names::is_name_char(c) || c == '*') {
        return Err(format!(
            "bad room \"{room}\" after {after}: a room name has only letters, marks, digits, _ and - (and * in a pattern)"
        ));
    }
    Ok(names::caseless(room))
}

/// The `$VAR` naming the environment variable that holds a password
/// (`CHAT_PASSWORD` when none is given). A password itself never goes in
/// a script, so anything else there is refused.
fn password_var(args: &str, usage: &str) -> Result<String, String> {
    if args.is_empty() {
        return Ok(crate::secret::PASSWORD_VAR.to_owned());
    }
    let (word, rest) = split_word(args);
    let var = word.strip_prefix('$').filter(|v| {
        !v.is_empty()
            && !v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    match var {
        Some(var) if rest.is_empty() => Ok(var.to_owned()),
        _ => Err(format!(
            "usage: {usage}; the password is read from the environment variable $VAR \
             ($CHAT_PASSWORD by default), never written in the script"
        )),
    }
}

fn no_args(args: &str, action: Action, verb: &str) -> Result<Action, String> {
    if args.is_empty() {
        Ok(action)
    } else {
        Err(format!("{verb} takes no arguments, but has \"{args}\""))
    }
}

/// Who is who as the script goes on.
struct Resolver {
    actors: Vec<Known>,
    /// Lower-cased current nickname -> actor (case-insensitive, as the
    /// server compares them). Quit actors stay until someone takes the name.
    by_name: HashMap<String, usize>,
    /// The name steps without `@ACTOR` stand for; follows the default
    /// actor's renames.
    default_name: String,
    /// `nick` steps expected to be refused for the sake of an actor named
    /// further down, checked once all actors are known.
    refusals: Vec<Refusal>,
}

/// A `nick` at `line` by actor `id`, then called `old`, to be refused.
struct Refusal {
    line: usize,
    id: usize,
    old: String,
    new: String,
}

struct Known {
    first: Actor,
    /// Its nickname at this point of the script.
    name: String,
    /// The line of its `quit`.
    quit: Option<usize>,
}

impl Resolver {
    fn new(default_nick: &str) -> Resolver {
        Resolver {
            actors: Vec::new(),
            by_name: HashMap::new(),
            default_name: default_nick.to_owned(),
            refusals: Vec::new(),
        }
    }

    fn into_actors(self) -> Vec<Actor> {
        self.actors.into_iter().map(|k| k.first).collect()
    }

    /// Who performs this line, given what came before; `later` are the
    /// lines after it, for the one question the past cannot answer (see
    /// `Action::Nick` below).
    fn resolve(
        &mut self,
        line: usize,
        parsed: &Line,
        later: &[(usize, Line)],
    ) -> Result<Step, String> {
        let action = parsed.action.clone();
        if matches!(action, Action::Sleep(_)) {
            return Ok(Step {
                line,
                actor: None,
                action,
            });
        }
        let name = parsed
            .actor
            .clone()
            .unwrap_or_else(|| self.default_name.clone());
        let key = names::fold(&name);
        let connect = action == Action::Connect;
        let id = match self.by_name.get(&key).copied() {
            Some(id) if self.actors[id].quit.is_none() => {
                if connect {
                    let first = &self.actors[id].first;
                    let alias = if names::same(&first.name, &name) {
                        String::new()
                    } else {
                        format!(" (as @{})", first.name)
                    };
                    return Err(format!(
                        "connect must be an actor's first step, but @{name} already acts at line {}{alias}",
                        first.line
                    ));
                }
                id
            }
            Some(id) if !connect => {
                if !matches!(action, Action::Expect { .. }) {
                    return Err(format!(
                        "@{name} quit at line {}; after that it can only expect (what it received before leaving), or come back with `@{name} connect`",
                        self.actors[id].quit.unwrap_or(line)
                    ));
                }
                id
            }
            _ => {
                self.actors.push(Known {
                    first: Actor {
                        name: name.clone(),
                        line,
                        late: connect,
                        login: matches!(action, Action::Login { .. }),
                    },
                    name: name.clone(),
                    quit: None,
                });
                let id = self.actors.len() - 1;
                self.by_name.insert(key.clone(), id);
                id
            }
        };
        let action = match action {
            Action::Nick { new, .. } => {
                let new_key = names::fold(&new);
                let held = matches!(
                    self.by_name.get(&new_key),
                    Some(&other) if other != id && self.actors[other].quit.is_none()
                );
                // An actor named only further down still connects at the
                // start and holds its name already. The script says so by
                // going on with the old name: that `nick` is meant to fail.
                let kept = !held && new_key != key && still_called(&name, later);
                if kept {
                    self.refusals.push(Refusal {
                        line,
                        id,
                        old: name.clone(),
                        new: new.clone(),
                    });
                } else if !held {
                    self.rename(id, &key, &new);
                }
                Action::Nick {
                    new,
                    taken: held || kept,
                }
            }
            Action::Quit(text) => {
                self.actors[id].quit = Some(line);
                Action::Quit(text)
            }
            // The login gives the actor the account's name, as a `nick`
            // would.
            Action::Login { account, var } => {
                let account = account.unwrap_or_else(|| self.actors[id].name.clone());
                if !account.eq_ignore_ascii_case(&name) {
                    self.rename(id, &key, &account);
                }
                Action::Login {
                    account: Some(account),
                    var,
                }
            }
            other => other,
        };
        Ok(Step {
            line,
            actor: Some(id),
            action,
        })
    }

    /// The `nick` steps read as refusals because later steps keep the old
    /// name, whose NEW no actor connecting at the start turned out to hold:
    /// the server would accept them, contrary to the rest of the script.
    fn unheld_refusals(&self) -> Vec<(usize, String)> {
        self.refusals
            .iter()
            .filter(|r| {
                !self.actors.iter().enumerate().any(|(other, a)| {
                    other != r.id
                        && !a.first.late
                        && a.first.line > r.line
                        && names::same(&a.first.name, &r.new)
                })
            })
            .map(|Refusal { line, old, new, .. }| {
                (
                    *line,
                    format!(
                        "after `nick {new}` the script still calls this actor @{old}, as if {new} were taken, \
                         but no other actor has that name here; write the later steps as @{new}"
                    ),
                )
            })
            .collect()
    }

    fn rename(&mut self, id: usize, old_key: &str, new: &str) {
        let new_key = names::fold(new);
        if self.by_name.get(old_key) == Some(&id) {
            self.by_name.remove(old_key);
        }
        self.by_name.insert(new_key.clone(), id);
        if names::fold(&self.default_name) == old_key {
            self.default_name = new.to_owned();
        }
        self.actors[id].name = new.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_verbs_name_the_variable_that_holds_the_password() {
        assert_eq!(
            action("login"),
            Action::Login {
                account: None,
                var: "CHAT_PASSWORD".into()
            }
        );
        assert_eq!(
            action("login alice $ALICE_PW"),
            Action::Login {
                account: Some("alice".into()),
                var: "ALICE_PW".into()
            }
        );
        assert_eq!(
            action("login $PW"),
            Action::Login {
                account: None,
                var: "PW".into()
            }
        );
        assert_eq!(
            action("register"),
            Action::Register {
                var: "CHAT_PASSWORD".into()
            }
        );
        assert_eq!(
            action("register $NEW_PW"),
            Action::Register {
                var: "NEW_PW".into()
            }
        );
        assert_eq!(action("logout"), Action::Logout);
        assert_eq!(action("register $PW").password_var(), Some("PW"));
        assert_eq!(action("logout").password_var(), None);
        // A password written in the script is refused, and not quoted back.
        for bad in [
            "login alice hunter2hunter2",
            "login alice $",
            "login alice $1X",
            "register hunter2hunter2",
            "login alice $PW extra",
        ] {
            let e = error(bad);
            assert!(e.contains("never written in the script"), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        assert!(error("login 9lives").contains("bad account"));
        assert_eq!(
            error("logout now"),
            "logout takes no arguments, but has \"now\""
        );
        assert_eq!(
            error("in rust login"),
            "in ROOM goes only with say, me and expect, not with login"
        );
    }

    #[test]
    fn a_first_login_replaces_the_nick_and_the_account_names_the_actor() {
        let source = b"@alice login\n@alice say hi\n@bob login carol $CAROL_PW\n@carol say yo\n@dave say hey\n@dave login\n";
        let script = parse("t.chat", source, "bot").unwrap();
        let actors: Vec<_> = script
            .actors
            .iter()
            .map(|a| (a.name.as_str(), a.late, a.login))
            .collect();
        assert_eq!(
            actors,
            [
                ("alice", false, true),
                ("bob", false, true),
                ("dave", false, false)
            ]
        );
        assert_eq!(script.steps[2].actor, Some(1));
        assert_eq!(
            script.steps[3].actor,
            Some(1),
            "bob is carol after the login"
        );
        assert_eq!(
            script.steps[0].action,
            Action::Login {
                account: Some("alice".into()),
                var: "CHAT_PASSWORD".into()
            }
        );
        // After it, @bob is someone else, as after `nick`.
        let script = parse("t.chat", b"@bob login carol\n@bob say hi\n", "bot").unwrap();
        assert_eq!(script.actors.len(), 2);
    }

    fn line(text: &str) -> Line {
        parse_line(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .unwrap_or_else(|| panic!("{text}: no step"))
    }

    fn action(text: &str) -> Action {
        line(text).action
    }

    fn say(text: &str) -> Action {
        Action::Say {
            room: None,
            text: text.into(),
            action: false,
        }
    }

    fn error(text: &str) -> String {
        match parse_line(text) {
            Err(e) => e,
            Ok(l) => panic!("{text} parsed as {l:?}"),
        }
    }

    fn expect(kind: Kind, from: Option<&str>, text: Option<&str>, within: Option<u64>) -> Action {
        Action::Expect {
            pattern: Pattern {
                kind,
                from: from.map(String::from),
                text: text.map(String::from),
                room: None,
            },
            within: within.map(Duration::from_millis),
        }
    }

    /// The same expectation, narrowed by `in ROOM`.
    fn in_room(room: &str, expected: Action) -> Action {
        match expected {
            Action::Expect { pattern, within } => Action::Expect {
                pattern: Pattern {
                    room: Some(room.into()),
                    ..pattern
                },
                within,
            },
            other => other,
        }
    }

    #[test]
    fn blank_and_comment_lines_are_nothing() {
        for text in ["", "   ", "\t", "# a comment", "   # indented comment"] {
            assert_eq!(parse_line(text), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn every_verb() {
        assert_eq!(
            line("@alice say hello, world"),
            Line {
                actor: Some("alice".into()),
                action: say("hello, world")
            }
        );
        assert_eq!(action("  say   spaced  out  "), say("spaced  out"));
        assert_eq!(
            action("say \"two  spaces\\tand a tab\""),
            say("two  spaces\tand a tab")
        );
        assert_eq!(action("say he said \"hi\""), say("he said \"hi\""));
        assert_eq!(
            action("@bob   msg alice hi alice"),
            Action::Msg {
                to: "alice".into(),
                text: "hi alice".into()
            }
        );
        assert_eq!(
            action("msg guest7 \" padded \""),
            Action::Msg {
                to: "guest7".into(),
                text: " padded ".into()
            }
        );
        assert_eq!(
            action("nick robert"),
            Action::Nick {
                new: "robert".into(),
                taken: false
            }
        );
        assert_eq!(
            action("sleep 250ms"),
            Action::Sleep(Duration::from_millis(250))
        );
        assert_eq!(
            action("@alice me waves at everyone"),
            Action::Say {
                room: None,
                text: "waves at everyone".into(),
                action: true
            }
        );
        assert_eq!(action("@carol connect"), Action::Connect);
        assert_eq!(action("who"), Action::Who(None));
        assert_eq!(action("quit"), Action::Quit(None));
        assert_eq!(action("quit \"\""), Action::Quit(None));
        assert_eq!(action("quit bye now"), Action::Quit(Some("bye now".into())));
    }

    #[test]
    fn expect_forms() {
        assert_eq!(action("expect join"), expect(Kind::Join, None, None, None));
        assert_eq!(
            action("expect join carol"),
            expect(Kind::Join, Some("carol"), None, None)
        );
        assert_eq!(
            action("expect group alice \"hello, world\""),
            expect(Kind::Group, Some("alice"), Some("hello, world"), None)
        );
        assert_eq!(
            action("expect group alice hello, world"),
            expect(Kind::Group, Some("alice"), Some("hello, world"), None)
        );
        assert_eq!(
            action("expect private bob \"hi *\" within 2s"),
            expect(Kind::Private, Some("bob"), Some("hi *"), Some(2000))
        );
        assert_eq!(
            action("expect group alice back soon within 250ms"),
            expect(Kind::Group, Some("alice"), Some("back soon"), Some(250))
        );
        assert_eq!(
            action("expect group alice \"back within 5s\""),
            expect(Kind::Group, Some("alice"), Some("back within 5s"), None)
        );
        assert_eq!(
            action("expect join carol within 1m"),
            expect(Kind::Join, Some("carol"), None, Some(60_000))
        );
        assert_eq!(
            action("expect bye within 1s"),
            expect(Kind::Bye, None, None, Some(1000))
        );
        assert_eq!(
            action("expect leave \"*\" \"\""),
            expect(Kind::Leave, Some("*"), Some(""), None)
        );
        assert_eq!(
            action("expect error nick_in_use"),
            expect(Kind::Error, Some("nick_in_use"), None, None)
        );
        assert_eq!(
            action("expect who alice"),
            expect(Kind::Who, Some("alice"), None, None)
        );
        assert_eq!(
            action("expect action alice \"waves*\""),
            expect(Kind::Action, Some("alice"), Some("waves*"), None)
        );
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        let cases = [
            ("sya hello", "unknown verb \"sya\""),
            ("@alice", "@alice needs a verb"),
            ("say", "say needs a TEXT"),
            ("say \"\"", "say needs a TEXT"),
            ("me", "me needs a TEXT"),
            ("msg", "msg needs a NICK"),
            ("msg bob", "msg bob needs a TEXT"),
            ("msg 9lives hi", "bad nick \"9lives\""),
            ("nick", "nick needs one NEW"),
            ("nick a b", "unexpected \"b\""),
            ("nick guest12", "bad nick \"guest12\""),
            ("@bad.name say hi", "bad nick \"@bad.name\""),
            ("@ say hi", "bad nick \"@\""),
            ("sleep", "sleep needs a DURATION"),
            ("sleep 5", "\"5\" is not a duration"),
            ("sleep 2 s", "unexpected \"s\""),
            ("@alice sleep 1s", "belongs to no actor"),
            ("expect", "expect needs a KIND"),
            ("expect welcome", "unknown KIND \"welcome\""),
            ("expect join carol hello", "expect join takes no TEXT"),
            (
                "expect group alice hi within soon",
                "\"soon\" is not a duration",
            ),
            ("expect group alice hi within", "needs a DURATION"),
            ("expect group alice \"hi\" there", "unexpected \"there\""),
            ("expect group alice \"hi", "unterminated quote"),
            ("say \"hello", "unterminated quote"),
            ("say \"a\\qb\"", "bad quoted text"),
            ("say \"hi\" there", "unexpected \"there\""),
            ("say \"hi\"there", "right after the closing quote"),
            ("connect now", "connect takes no arguments"),
            ("who rust go", "unexpected \"go\""),
        ];
        for (text, wanted) in cases {
            let e = error(text);
            assert!(e.contains(wanted), "{text:?} gave {e:?}, wanted {wanted:?}");
        }
    }

    #[test]
    fn room_verbs() {
        assert_eq!(action("join rust"), Action::Join("rust".into()));
        assert_eq!(
            action("@alice join Rust"),
            Action::Join("rust".into()),
            "rooms are case-folded, as the server sends them"
        );
        assert_eq!(
            action("part rust"),
            Action::Part {
                room: "rust".into(),
                text: None
            }
        );
        assert_eq!(
            action("part rust off to lunch"),
            Action::Part {
                room: "rust".into(),
                text: Some("off to lunch".into())
            }
        );
        assert_eq!(
            action("topic rust Rust talk, all day"),
            Action::Topic {
                room: "rust".into(),
                text: "Rust talk, all day".into()
            }
        );
        assert_eq!(
            action("topic rust \"\""),
            Action::Topic {
                room: "rust".into(),
                text: String::new()
            },
            "an empty quoted TEXT clears the topic"
        );
        assert_eq!(action("rooms"), Action::Rooms);
        assert_eq!(action("who Rust"), Action::Who(Some("rust".into())));
        assert_eq!(
            action("@alice in Rust say hi there"),
            Action::Say {
                room: Some("rust".into()),
                text: "hi there".into(),
                action: false
            }
        );
        assert_eq!(
            action("in rust me waves"),
            Action::Say {
                room: Some("rust".into()),
                text: "waves".into(),
                action: true
            }
        );
        // `in` is only a room before the verb: after it, it is TEXT, as it
        // always was (every existing script keeps its meaning).
        assert_eq!(action("say in a minute"), say("in a minute"));
        assert_eq!(action("say #rust is fun"), say("#rust is fun"));
    }

    #[test]
    fn room_expectations() {
        assert_eq!(
            action("in rust expect group alice \"hi\""),
            in_room("rust", expect(Kind::Group, Some("alice"), Some("hi"), None))
        );
        assert_eq!(
            action("@bob in Rust expect join carol within 2s"),
            in_room("rust", expect(Kind::Join, Some("carol"), None, Some(2000)))
        );
        assert_eq!(
            action("in * expect leave carol"),
            in_room("*", expect(Kind::Leave, Some("carol"), None, None))
        );
        assert_eq!(
            action("in rust expect action alice waves"),
            in_room(
                "rust",
                expect(Kind::Action, Some("alice"), Some("waves"), None)
            )
        );
        assert_eq!(
            action("in rust expect who carol"),
            in_room("rust", expect(Kind::Who, Some("carol"), None, None))
        );
        // Unchanged: a TEXT that ends with `in rust` is TEXT.
        assert_eq!(
            action("expect group alice I live in rust"),
            expect(Kind::Group, Some("alice"), Some("I live in rust"), None)
        );
        assert_eq!(
            action("expect joined rust"),
            expect(Kind::Joined, Some("rust"), None, None)
        );
        assert_eq!(
            action("expect joined rust \"Rust talk*\""),
            expect(Kind::Joined, Some("rust"), Some("Rust talk*"), None)
        );
        assert_eq!(
            action("expect parted rust"),
            expect(Kind::Parted, Some("rust"), None, None)
        );
        assert_eq!(
            action("expect topic rust Rust talk"),
            expect(Kind::Topic, Some("rust"), Some("Rust talk"), None)
        );
        assert_eq!(
            action("expect rooms rust"),
            expect(Kind::Rooms, Some("rust"), None, None)
        );
        assert_eq!(
            action("expect error too_many_rooms"),
            expect(Kind::Error, Some("too_many_rooms"), None, None)
        );
    }

    #[test]
    fn room_mistakes_say_what_is_wrong() {
        let cases = [
            ("join", "join needs one ROOM"),
            ("join rust go", "unexpected \"go\""),
            ("join 9lives", "bad room \"9lives\" after join"),
            ("join #rust", "bad room \"#rust\" after join"),
            ("part", "part needs a ROOM"),
            ("part r.s", "bad room \"r.s\" after part"),
            ("topic", "topic needs a ROOM and a TEXT"),
            (
                "topic rust",
                "topic rust needs a TEXT (\"\" clears the topic)",
            ),
            ("topic rust \"x\" y", "unexpected \"y\""),
            ("rooms all", "rooms takes no arguments"),
            ("who r!", "bad room \"r!\" after who"),
            ("in", "in needs a ROOM and a step"),
            ("@alice in rust", "in needs a ROOM and a step"),
            ("in rust say", "say needs a TEXT"),
            ("in r.s say hi", "bad room \"r.s\" after in"),
            (
                "in rust msg bob hi",
                "in ROOM goes only with say, me and expect, not with msg",
            ),
            ("in rust join", "join names its room after the verb"),
            ("in rust who", "who names its room after the verb"),
            ("in rust sleep 1s", "not with sleep"),
            ("in rust in lobby say hi", "not with in"),
            ("in rust sya hi", "unknown verb \"sya\""),
            (
                "in rust expect private bob",
                "expect private happens in no room; drop the `in rust`",
            ),
            ("in rust expect error", "expect error happens in no room"),
            (
                "in rust expect joined rust",
                "expect joined names its room after the KIND (`expect joined rust`)",
            ),
            ("in r.s expect group", "bad room \"r.s\" after in"),
            ("expect parted rust bye", "expect parted takes no TEXT"),
            ("expect rooms rust lobby", "expect rooms takes no TEXT"),
        ];
        for (text, wanted) in cases {
            let e = error(text);
            assert!(e.contains(wanted), "{text:?} gave {e:?}, wanted {wanted:?}");
        }
    }

    #[test]
    fn history_asks_for_a_room_and_expect_history_names_it_first() {
        assert_eq!(
            action("history Rust"),
            Action::History {
                room: "rust".into(),
                limit: None
            }
        );
        assert_eq!(
            action("history rust 3"),
            Action::History {
                room: "rust".into(),
                limit: Some(3)
            }
        );
        assert_eq!(
            action("expect history rust"),
            in_room("rust", expect(Kind::History, None, None, None))
        );
        assert_eq!(
            action("expect history Ru* alice \"hi, *\" within 2s"),
            in_room(
                "ru*",
                expect(Kind::History, Some("alice"), Some("hi, *"), Some(2000))
            )
        );
        assert_eq!(
            action("expect history rust alice I was here"),
            in_room(
                "rust",
                expect(Kind::History, Some("alice"), Some("I was here"), None)
            )
        );
        let cases = [
            ("history", "history needs a ROOM"),
            ("history r.s", "bad room \"r.s\" after history"),
            ("history rust 0", "a count N from 1 to 500, not \"0\""),
            ("history rust 501", "not \"501\""),
            ("history rust all", "not \"all\""),
            ("in rust history", "history names its room after the verb"),
            ("expect history", "expect history needs a ROOM"),
            ("expect history within 2s", "expect history needs a ROOM"),
            (
                "expect history r.s",
                "bad room \"r.s\" after expect history",
            ),
            (
                "in rust expect history rust",
                "expect history names its room after the KIND",
            ),
        ];
        for (text, wanted) in cases {
            let e = error(text);
            assert!(e.contains(wanted), "{text:?} gave {e:?}, wanted {wanted:?}");
        }
    }

    #[test]
    fn room_steps_belong_to_their_actor() {
        let s = script(
            "@alice join rust\n\
             @bob join rust\n\
             @alice in rust expect join bob\n\
             @bob in rust say hi\n\
             in rust me waves\n",
        );
        assert_eq!(
            actors(&s),
            [("alice", 1, false), ("bob", 2, false), ("bot", 5, false)]
        );
        assert_eq!(s.steps[2].actor, Some(0));
        assert_eq!(s.steps[4].actor, Some(2), "`in ROOM` comes after the actor");
        let e = errors("@alice join rust\n@alice quit\n@alice part rust\n");
        assert!(e[0].starts_with("t.chat:3: @alice quit at line 2"), "{e:?}");
    }

    fn script(text: &str) -> Script {
        parse("t.chat", text.as_bytes(), "bot").unwrap_or_else(|e| panic!("{}", e.join("\n")))
    }

    fn errors(text: &str) -> Vec<String> {
        match parse("t.chat", text.as_bytes(), "bot") {
            Err(e) => e,
            Ok(s) => panic!("parsed: {s:?}"),
        }
    }

    fn actors(s: &Script) -> Vec<(&str, usize, bool)> {
        s.actors
            .iter()
            .map(|a| (a.name.as_str(), a.line, a.late))
            .collect()
    }

    #[test]
    fn the_spec_example_parses() {
        let s = script(
            "# two users greet each other, a third arrives late, one leaves\n\
             @alice say hello, world\n\
             @bob   expect group alice \"hello, world\"\n\
             @bob   msg alice hi alice\n\
             @alice expect private bob \"hi *\"\n\
             @carol connect\n\
             @bob   expect join carol\n\
             @alice quit bye now\n\
             @bob   expect leave alice\n",
        );
        assert_eq!(
            actors(&s),
            [("alice", 2, false), ("bob", 3, false), ("carol", 6, true)]
        );
        assert_eq!(s.steps.len(), 8);
        assert_eq!(s.steps[4].line, 6);
        assert_eq!(s.steps[4].action, Action::Connect);
        assert_eq!(s.steps[6].action, Action::Quit(Some("bye now".into())));
    }

    #[test]
    fn the_default_actor_exists_only_when_a_step_uses_it() {
        let s = script("sleep 10ms\n@alice say hi\n");
        assert_eq!(actors(&s), [("alice", 2, false)]);
        assert_eq!(s.steps[0].actor, None);
        let s = script("@alice say hi\nsay hello\n@bot expect group alice\n");
        assert_eq!(actors(&s), [("alice", 1, false), ("bot", 2, false)]);
        assert_eq!(s.steps[2].actor, Some(1), "@bot is the default actor");
    }

    #[test]
    fn unicode_actors_and_rooms() {
        let s = script(
            "@小明 in Café say 你好\n@Ольга in café expect group 小明 \"你好\"\n@ОЛЬГА nick Оля\n",
        );
        assert_eq!(actors(&s), [("小明", 1, false), ("Ольга", 2, false)]);
        assert_eq!(s.steps[2].actor, Some(1), "ОЛЬГА is Ольга");
        assert_eq!(
            s.steps[0].action,
            Action::Say {
                room: Some("café".into()),
                text: "你好".into(),
                action: false
            }
        );
        // A look-alike is the same actor: Cyrillic а in аlice.
        let s = script("@alice say hi\n@\u{430}lice say again\n");
        assert_eq!(actors(&s), [("alice", 1, false)]);
        let e = errors("@a\u{200D}b say hi\n");
        assert!(e[0].contains("U+200D"), "{e:?}");
        let e = errors("in a\u{2603} say hi\n");
        assert!(e[0].contains("U+2603"), "{e:?}");
    }

    #[test]
    fn renamed_actors_go_by_their_new_name() {
        let s = script("@bob nick robert\n@robert say hi\n@alice expect nick bob robert\n");
        assert_eq!(actors(&s), [("bob", 1, false), ("alice", 3, false)]);
        assert_eq!(s.steps[1].actor, Some(0));
        let s = script("nick robot\nsay beep\n");
        assert_eq!(actors(&s), [("bot", 1, false)]);
        assert_eq!(
            s.steps[1].actor,
            Some(0),
            "steps without @ follow the default actor"
        );
        let e = errors("@bob nick robert\n@bob say hi\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "t.chat:1: after `nick robert` the script still calls this actor @bob"
            ),
            "{e:?}"
        );
        assert!(e[0].contains("write the later steps as @robert"), "{e:?}");
        // Robert named further down is someone else, whose name bob tries.
        let s = script("@bob nick robert\n@robert say hi\n@bob say hi\n");
        assert_eq!(actors(&s), [("bob", 1, false), ("robert", 2, false)]);
        assert_eq!(s.steps[2].actor, Some(0));
        let s = script("@bob nick robert\n@bob connect\n@bob say hi\n");
        assert_eq!(actors(&s), [("bob", 1, false), ("bob", 2, true)]);
    }

    #[test]
    fn a_nick_held_by_another_actor_is_expected_to_be_refused() {
        let s = script("@alice say hi\n@bob nick Alice\n@bob expect error nick_in_use\n");
        assert_eq!(
            s.steps[1].action,
            Action::Nick {
                new: "Alice".into(),
                taken: true
            }
        );
        assert_eq!(s.steps[2].actor, Some(1), "bob keeps his name");
        // The same when alice is named only further down: she connects at
        // the start all the same, and bob goes on as @bob.
        let s = script("@bob nick alice\n@bob expect error nick_in_use\n@alice say still me\n");
        assert_eq!(actors(&s), [("bob", 1, false), ("alice", 3, false)]);
        assert_eq!(
            s.steps[0].action,
            Action::Nick {
                new: "alice".into(),
                taken: true
            }
        );
        assert_eq!(s.steps[1].actor, Some(0));
        // Free once its holder has quit.
        let s = script("@alice quit\n@bob nick alice\n@alice say I am bob\n");
        assert_eq!(
            s.steps[1].action,
            Action::Nick {
                new: "alice".into(),
                taken: false
            }
        );
        assert_eq!(s.steps[2].actor, Some(1));
        // A change of case is one's own name.
        let s = script("@bob nick Bob\n@BOB say hi\n");
        assert_eq!(
            s.steps[0].action,
            Action::Nick {
                new: "Bob".into(),
                taken: false
            }
        );
        assert_eq!(s.actors.len(), 1);
    }

    #[test]
    fn connect_only_as_the_first_step() {
        let e = errors("@carol say hi\n@carol connect\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "t.chat:2: connect must be an actor's first step, but @carol already acts at line 1"
            ),
            "{e:?}"
        );
        let e = errors("@carol connect\n@carol connect\n");
        assert!(e[0].starts_with("t.chat:2: connect must"), "{e:?}");
        let e = errors("@bob nick carol\n@carol connect\n");
        assert!(e[0].contains("(as @bob)"), "{e:?}");
    }

    #[test]
    fn after_quit_only_expect_or_a_new_connect() {
        let s = script("@alice quit\n@alice expect bye quit\n@alice connect\n@alice say back\n");
        assert_eq!(actors(&s), [("alice", 1, false), ("alice", 3, true)]);
        assert_eq!(s.steps[1].actor, Some(0));
        assert_eq!(s.steps[3].actor, Some(1));
        let e = errors("@alice quit\n@alice say hi\n");
        assert!(e[0].starts_with("t.chat:2: @alice quit at line 1"), "{e:?}");
    }

    #[test]
    fn every_bad_line_is_reported_in_order() {
        let e = errors(
            "@alice say hi\n\
             sya hello\n\
             \n\
             @bob expect group alice \"unterminated\n\
             sleep forever\n\
             @alice say fine\n\
             @carol connect extra\n\
             \u{0}\n",
        );
        let lines: Vec<&str> = e.iter().map(|l| l.split(": ").next().unwrap()).collect();
        assert_eq!(
            lines,
            ["t.chat:2", "t.chat:4", "t.chat:5", "t.chat:7", "t.chat:8"],
            "{e:?}"
        );
        let bad_utf8 = parse("x", b"say \xff\n", "bot").unwrap_err();
        assert_eq!(bad_utf8, ["x:1: not valid UTF-8"]);
    }

    #[test]
    fn crlf_lines_are_read_like_lf_lines() {
        let s = script("@alice say hi\r\n@bob expect group alice hi\r\n");
        assert_eq!(s.steps[0].action, say("hi"));
    }

    /// Found by fuzzing (`bot_script`): a control in a bad line reached the
    /// terminal raw inside the error that quotes it.
    #[test]
    fn errors_show_controls_as_escapes() {
        let e = errors("s\x1b[2J\rx hi\n@alice say \"a\\qb\u{9b}\"\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.chat:1: unknown verb \"s\\x1b[2J\\x0dx\""),
            "{e:?}"
        );
        assert!(e[1].contains("\\u{9b}"), "{e:?}");
        assert!(!e.concat().contains(|c: char| c.is_control()), "{e:?}");
    }
}
