//! Events into IRC lines: what an IRC client sees of the rooms.
//!
//! Everyone appears as `nick!nick@chat`: the host part is the same for all
//! (it says nothing of where anyone connects from), so it is stable across
//! reconnections and renames. A message longer than an IRC line is sent as
//! several, cut on character boundaries; line breaks in a JSON user's text
//! start a new message, since IRC has none.

use crate::server::deliver::Tags;
use crate::server::event::Event;
use crate::wire::{ByeReason, ErrorCode, LeaveReason};

use super::message::{write, write_text, write_text_tagged};

/// The server's name, the source of numerics.
pub const SERVER: &str = "chat";
/// Every user's host part.
pub const HOST: &str = "chat";
/// An IRC line, CRLF included (tags aside).
pub const LINE: usize = 512;

/// `nick!nick@chat`.
pub fn mask(nick: &str) -> String {
    format!("{nick}!{nick}@{HOST}")
}

/// `#room`.
pub fn channel(room: &str) -> String {
    format!("#{room}")
}

/// A numeric from the server to `me` (`*` before it has a name).
pub fn numeric(out: &mut Vec<u8>, me: &str, code: &str, params: &[&str]) {
    let me = if me.is_empty() { "*" } else { me };
    let mut all = Vec::with_capacity(params.len() + 1);
    all.push(me);
    all.extend_from_slice(params);
    write_text(out, Some(SERVER), code, &all);
}

/// `2026-12-02T10:00:00.000Z`, the form IRCv3 `server-time` wants, for
/// milliseconds since the Unix epoch.
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The tags a receiver that asked for `tags` gets on an event: its time,
/// a group message's `seq`, a logged-in sender's account.
struct Stamp<'a> {
    time: Option<String>,
    msgid: Option<String>,
    account: Option<&'a str>,
}

fn stamp<'a>(tags: Tags, ts: u64, seq: Option<u64>, account: Option<&'a str>) -> Stamp<'a> {
    Stamp {
        time: tags.time.then(|| iso_time(ts)),
        msgid: seq.filter(|_| tags.msgid).map(|s| s.to_string()),
        account: account.filter(|_| tags.account),
    }
}

fn tag_list<'a>(stamp: &'a Stamp<'_>) -> Vec<(&'static str, &'a str)> {
    let mut list = Vec::with_capacity(3);
    if let Some(time) = &stamp.time {
        list.push(("time", time.as_str()));
    }
    if let Some(id) = &stamp.msgid {
        list.push(("msgid", id.as_str()));
    }
    if let Some(account) = stamp.account {
        list.push(("account", account));
    }
    list
}

/// Appends `event` as IRC lines for `me`, with the IRCv3 `tags` it asked
/// for. Only answers to one (joined, parted, who, rooms, errors) read
/// `me`: the bytes of a broadcast are shared by every IRC receiver with
/// the same tags.
/// `account` is the sender's, for a message from a logged-in user.
pub fn encode(event: &Event, me: &str, tags: Tags, account: Option<&str>, out: &mut Vec<u8>) {
    let stamped = match event {
        Event::Join { ts, .. }
        | Event::Leave { ts, .. }
        | Event::Nick { ts, .. }
        | Event::Topic { ts, .. } => stamp(tags, *ts, None, None),
        Event::Private { ts, .. } => stamp(tags, *ts, None, account),
        Event::Group { ts, seq, .. } => stamp(tags, *ts, Some(*seq), account),
        _ => stamp(Tags::default(), 0, None, None),
    };
    let t = tag_list(&stamped);
    let t = t.as_slice();
    match event {
        // The door wrote the registration burst itself.
        Event::Welcome { .. } => {}
        // The answer to CHATHISTORY, asked for only with `batch`.
        Event::History { room, messages, .. } => {
            let chan = channel(room.as_str());
            let id = format!("h{}", messages.first().map_or(0, |m| m.seq));
            let open = format!("+{id}");
            write(
                out,
                &[],
                Some(SERVER),
                "BATCH",
                &[&open, "chathistory", &chan],
            );
            for m in messages {
                let stamped = stamp(tags, m.ts, Some(m.seq), None);
                let mut t = vec![("batch", id.as_str())];
                t.extend(tag_list(&stamped));
                privmsg(out, &t, &mask(&m.from), &chan, &m.text, m.action);
            }
            write(out, &[], Some(SERVER), "BATCH", &[&format!("-{id}")]);
        }
        Event::Join { nick, room, .. } => {
            let room = channel(room.as_str());
            write(out, t, Some(&mask(nick.as_str())), "JOIN", &[&room]);
        }
        Event::Leave {
            nick,
            reason,
            text,
            room,
            ..
        } => {
            let source = mask(nick.as_str());
            match room {
                Some(room) => {
                    let room = channel(room.as_str());
                    match text.as_deref() {
                        Some(text) => {
                            write_text_tagged(out, t, Some(&source), "PART", &[&room, &clean(text)])
                        }
                        None => write(out, t, Some(&source), "PART", &[&room]),
                    }
                }
                None => {
                    let why = match (text.as_deref(), reason) {
                        (Some(text), _) => format!("Quit: {}", clean(text)),
                        (None, LeaveReason::Quit) => "Quit".into(),
                        (None, LeaveReason::Slow) => "Too slow to read".into(),
                        (None, _) => "Connection closed".into(),
                    };
                    write_text_tagged(out, t, Some(&source), "QUIT", &[&why]);
                }
            }
        }
        Event::Nick { old, new, .. } => {
            write(out, t, Some(&mask(old.as_str())), "NICK", &[new.as_str()]);
        }
        Event::Group {
            room,
            from,
            text,
            action,
            ..
        } => privmsg(
            out,
            t,
            &mask(from.as_str()),
            &channel(room.as_str()),
            text,
            *action,
        ),
        Event::Private {
            from,
            to,
            text,
            action,
            ..
        } => privmsg(out, t, &mask(from.as_str()), to.as_str(), text, *action),
        Event::Who { room, users } => {
            let target = room.as_ref().map(|r| channel(r.as_str()));
            let target = target.as_deref().unwrap_or("*");
            for (_, nick, _) in users {
                who_line(out, me, target, nick.as_str(), nick.as_str(), false);
            }
            numeric(out, me, "315", &[target, "End of /WHO list"]);
        }
        Event::Joined { room, topic, users } => {
            let chan = channel(room.as_str());
            write(out, &[], Some(&mask(me)), "JOIN", &[&chan]);
            if let Some(topic) = topic {
                numeric(out, me, "332", &[&chan, &clean(topic)]);
            }
            names(out, me, &chan, users.iter().map(|(_, n)| n.as_str()));
        }
        Event::Parted { room, text } => {
            let chan = channel(room.as_str());
            match text.as_deref() {
                Some(text) => write_text(out, Some(&mask(me)), "PART", &[&chan, &clean(text)]),
                None => write(out, &[], Some(&mask(me)), "PART", &[&chan]),
            }
        }
        Event::Topic { room, by, text, .. } => {
            let chan = channel(room.as_str());
            write_text_tagged(
                out,
                t,
                Some(&mask(by.as_str())),
                "TOPIC",
                &[&chan, &clean(text)],
            );
        }
        Event::Rooms { rooms } => {
            numeric(out, me, "321", &["Channel", "Users  Name"]);
            for (name, users, topic) in rooms {
                let topic = topic.as_deref().map(clean).unwrap_or_default();
                numeric(
                    out,
                    me,
                    "322",
                    &[&channel(name.as_str()), &users.to_string(), &topic],
                );
            }
            numeric(out, me, "323", &["End of /LIST"]);
        }
        Event::Bye { reason } => {
            let why = match reason {
                ByeReason::Quit => "Closing link: quit",
                ByeReason::Shutdown => "Closing link: the server is shutting down",
            };
            write_text(out, None, "ERROR", &[why]);
        }
        Event::Error { code, message } => error(out, me, *code, message),
        // An IRC user logs in only with SASL, whose success is these two.
        Event::LoggedIn { account } => {
            let text = format!("You are now logged in as {account}");
            let who = if me.is_empty() { "*" } else { me };
            numeric(out, me, "900", &[&mask(who), account.as_str(), &text]);
            numeric(out, me, "903", &["SASL authentication successful"]);
        }
        Event::LoggedOut => numeric(out, me, "901", &[&mask(me), "You are now logged out"]),
        Event::Registered { account } => {
            let text = format!("The nickname {account} is now a registered account");
            write_text(out, Some(SERVER), "NOTICE", &[me, &text]);
        }
    }
}

/// The numeric for a refusal the door did not see coming (it checks
/// what it can first, to fill in the name the numeric is about).
fn error(out: &mut Vec<u8>, me: &str, code: ErrorCode, message: &str) {
    let message = clean(message);
    let code = match code {
        ErrorCode::BadNick => "432",
        ErrorCode::NickInUse => "433",
        ErrorCode::NoSuchUser => "401",
        ErrorCode::BadRoom => "403",
        ErrorCode::NotInRoom => "442",
        ErrorCode::TooManyRooms => "405",
        ErrorCode::LineTooLong => return numeric(out, me, "417", &[&message]),
        // Only SASL logs an IRC user in: its failure is 904.
        ErrorCode::LoginFailed | ErrorCode::TooManyAttempts | ErrorCode::InsecureTransport => {
            let text = format!("SASL authentication failed: {message}");
            return numeric(out, me, "904", &[&text]);
        }
        _ => {
            let me = if me.is_empty() { "*" } else { me };
            return write_text(out, Some(SERVER), "NOTICE", &[me, &message]);
        }
    };
    numeric(out, me, code, &["*", &message]);
}

/// One WHO reply line: `<me> <channel> <user> <host> <server> <nick>
/// <H|G> :0 <realname>`.
pub fn who_line(out: &mut Vec<u8>, me: &str, target: &str, nick: &str, real: &str, away: bool) {
    let flags = if away { "G" } else { "H" };
    let real = format!("0 {real}");
    numeric(
        out,
        me,
        "352",
        &[target, nick, HOST, SERVER, nick, flags, &real],
    );
}

/// 353 lines of names, each within an IRC line, then 366.
pub fn names<'a>(out: &mut Vec<u8>, me: &str, chan: &str, nicks: impl Iterator<Item = &'a str>) {
    // ":chat 353 me = #chan :" and CRLF.
    let room_for = LINE.saturating_sub(SERVER.len() + me.len() + chan.len() + 12);
    let mut line = String::new();
    for nick in nicks {
        if !line.is_empty() && line.len() + 1 + nick.len() > room_for {
            numeric(out, me, "353", &["=", chan, &line]);
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(nick);
    }
    if !line.is_empty() {
        numeric(out, me, "353", &["=", chan, &line]);
    }
    numeric(out, me, "366", &[chan, "End of /NAMES list"]);
}

/// A message as one or more PRIVMSGs, each within an IRC line; an action
/// is a CTCP ACTION. Line breaks start a new message, and a message is
/// cut on a character boundary, never inside a UTF-8 sequence. Every line
/// carries the tags but `msgid`, which must be unique: only the first has it.
pub fn privmsg(
    out: &mut Vec<u8>,
    tags: &[(&str, &str)],
    source: &str,
    target: &str,
    text: &str,
    action: bool,
) {
    let rest_tags: Vec<(&str, &str)> = tags
        .iter()
        .copied()
        .filter(|(n, _)| *n != "msgid")
        .collect();
    let mut tags = tags;
    // ":" source " PRIVMSG " target " :" ... CRLF, and the CTCP wrapping.
    let overhead = 1 + source.len() + 9 + target.len() + 2 + 2 + if action { 9 } else { 0 };
    let room_for = LINE.saturating_sub(overhead).max(4);
    let mut body = String::new();
    for piece in text.split(['\r', '\n']) {
        let mut rest = piece;
        loop {
            let mut cut = rest.len().min(room_for);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (chunk, tail) = rest.split_at(cut);
            body.clear();
            if action {
                body.push_str("\u{1}ACTION ");
                body.push_str(chunk);
                body.push('\u{1}');
            } else {
                body.push_str(chunk);
            }
            let body = body.replace('\0', "");
            write_text_tagged(out, tags, Some(source), "PRIVMSG", &[target, &body]);
            tags = &rest_tags;
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
    }
}

/// Text that may reach an IRC line: no CR, LF or NUL.
pub fn clean(text: &str) -> String {
    text.replace(['\r', '\n'], " ").replace('\0', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::name::Name;

    fn lines(event: &Event, me: &str) -> Vec<String> {
        let mut out = Vec::new();
        encode(event, me, Tags::default(), None, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\r\n"));
        text.split_terminator("\r\n").map(str::to_owned).collect()
    }

    fn group(text: &str, action: bool) -> Event {
        Event::Group {
            room: Name::new("rust"),
            seq: 1,
            from: Name::new("ann"),
            text: text.into(),
            ts: 0,
            action,
        }
    }

    #[test]
    fn a_group_message_is_a_privmsg_to_the_channel() {
        assert_eq!(
            lines(&group("hi there", false), "bob"),
            [":ann!ann@chat PRIVMSG #rust :hi there"]
        );
        assert_eq!(
            lines(&group("waves", true), "bob"),
            [":ann!ann@chat PRIVMSG #rust :\u{1}ACTION waves\u{1}"]
        );
    }

    #[test]
    fn a_long_message_is_cut_into_lines_on_character_boundaries() {
        let text = "é".repeat(600) + "ü";
        let got = lines(&group(&text, false), "bob");
        assert!(got.len() >= 3, "{got:?}");
        let mut joined = String::new();
        for line in &got {
            assert!(line.len() + 2 <= LINE, "{} bytes", line.len() + 2);
            let body = line.strip_prefix(":ann!ann@chat PRIVMSG #rust :").unwrap();
            joined.push_str(body);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn server_time_is_utc_with_milliseconds() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        // 2024 was a leap year; 2026-12-02 is this sample's day.
        assert_eq!(iso_time(1_709_164_800_123), "2024-02-29T00:00:00.123Z");
        assert_eq!(iso_time(1_796_205_600_000), "2026-12-02T10:00:00.000Z");
    }

    #[test]
    fn a_long_message_has_its_msgid_once_and_its_time_on_every_line() {
        let mut out = Vec::new();
        let tags = Tags {
            time: true,
            msgid: true,
            account: false,
        };
        encode(&group(&"x".repeat(900), false), "bob", tags, None, &mut out);
        let text = String::from_utf8(out).unwrap();
        let got: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("@time=1970-01-01T00:00:00.000Z;msgid=1 :ann"));
        assert!(got[1].starts_with("@time=1970-01-01T00:00:00.000Z :ann"));
    }

    #[test]
    fn line_breaks_start_new_messages() {
        assert_eq!(
            lines(&group("one\ntwo", false), "bob"),
            [
                ":ann!ann@chat PRIVMSG #rust :one",
                ":ann!ann@chat PRIVMSG #rust :two"
            ]
        );
    }

    #[test]
    fn joined_is_a_join_echo_topic_and_names() {
        let event = Event::Joined {
            room: Name::new("rust"),
            topic: Some("crabs".into()),
            users: vec![(1, Name::new("ann")), (2, Name::new("bob"))],
        };
        assert_eq!(
            lines(&event, "bob"),
            [
                ":bob!bob@chat JOIN #rust",
                ":chat 332 bob #rust :crabs",
                ":chat 353 bob = #rust :ann bob",
                ":chat 366 bob #rust :End of /NAMES list",
            ]
        );
    }

    #[test]
    fn leaving_is_part_or_quit() {
        let leave = |room: Option<&str>, text: Option<&str>| Event::Leave {
            id: 1,
            nick: Name::new("ann"),
            reason: if room.is_some() {
                LeaveReason::Part
            } else {
                LeaveReason::Quit
            },
            text: text.map(Into::into),
            room: room.map(Name::new),
            ts: 0,
        };
        assert_eq!(
            lines(&leave(Some("rust"), Some("bye all")), "x"),
            [":ann!ann@chat PART #rust :bye all"]
        );
        assert_eq!(lines(&leave(None, None), "x"), [":ann!ann@chat QUIT :Quit"]);
    }

    #[test]
    fn refusals_are_numerics_addressed_to_the_receiver() {
        let event = Event::Error {
            code: ErrorCode::NickInUse,
            message: "taken".into(),
        };
        assert_eq!(lines(&event, "bob"), [":chat 433 bob * :taken"]);
        assert_eq!(lines(&event, ""), [":chat 433 * * :taken"]);
    }
}
