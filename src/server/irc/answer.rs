//! The IRC door's answers from the core's state: WHO, WHOIS, NAMES,
//! MODE, and the registration burst (001-005, LUSERS, MOTD).

use crate::names;
use crate::server::core::{Core, Presence, RoomView};
use crate::server::table::Key;

use super::door::Settings;
use super::encode::{self, HOST, SERVER, channel, numeric, who_line};

/// What the door keeps of its users that the core has no place for: the
/// other doors have no AWAY and no realname.
pub trait Kept {
    /// Its AWAY text, if it is away.
    fn away(&self, key: Key) -> Option<&str>;
    /// The realname its `USER` gave; users of the other doors have none.
    fn realname(&self, key: Key) -> Option<&str>;
}

/// WHO `#chan` (its members), WHO with a mask (`*`, `ann*`, `*!*@chat`:
/// every user whose nick, `nick!nick@chat` or realname it matches), or WHO
/// `nick`.
pub fn who<C>(core: &Core<C>, out: &mut Vec<u8>, me: &str, mask: Option<&str>, kept: &dyn Kept) {
    let Some(mask) = mask else {
        return numeric(out, me, "315", &["*", "End of /WHO list"]);
    };
    let line = |out: &mut Vec<u8>, chan: &str, key: Key, nick: &str| {
        let real = kept.realname(key).unwrap_or(nick);
        who_line(out, me, chan, nick, real, kept.away(key).is_some());
    };
    if let Some(room) = mask.strip_prefix('#') {
        if let Some(RoomView { name, members, .. }) = core.room(room) {
            let chan = channel(name.as_str());
            for user in members {
                if let Some(key) = core.find_nick(user.nick.as_str()) {
                    line(out, &chan, key, user.nick.as_str());
                }
            }
        }
    } else if mask.contains(['*', '?']) {
        // A longer mask matches no nick, mask or realname (each shorter
        // than this), and would make every match cost more.
        let keys = match mask.len() <= MAX_MASK {
            true => core.keys(),
            false => Vec::new(),
        };
        let pattern: Vec<char> = mask.chars().collect();
        for key in keys {
            let nick = nick_of(core, key);
            let real = kept.realname(key).unwrap_or(&nick);
            if !nick.is_empty()
                && (glob(&pattern, &nick)
                    || glob(&pattern, &encode::mask(&nick))
                    || glob(&pattern, real))
            {
                line(out, "*", key, &nick);
            }
        }
    } else if let Some(key) = core.find_nick(mask) {
        line(out, "*", key, &nick_of(core, key));
    }
    numeric(out, me, "315", &[mask, "End of /WHO list"]);
}

/// The longest WHO mask matched: a nick, `nick!nick@chat` and a realname
/// are all shorter.
const MAX_MASK: usize = 100;

/// IRC's wildcard match: `*` any run, `?` any one character, letters
/// compared without ASCII case.
fn glob(mask: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    crate::glob::glob_by(mask, &text, '*', Some('?'), |m, c| {
        m.eq_ignore_ascii_case(&c)
    })
}

pub fn whois<C>(core: &Core<C>, out: &mut Vec<u8>, me: &str, nick: &str, kept: &dyn Kept) {
    let Some(key) = core.find_nick(nick) else {
        numeric(out, me, "401", &[nick, "No such nick"]);
        return numeric(out, me, "318", &[nick, "End of /WHOIS list"]);
    };
    let nick = nick_of(core, key);
    let real = kept.realname(key).unwrap_or(&nick);
    numeric(out, me, "311", &[&nick, &nick, HOST, "*", real]);
    let chans: Vec<String> = core
        .rooms_of(key)
        .iter()
        .map(|r| channel(r.as_str()))
        .collect();
    if !chans.is_empty() {
        numeric(out, me, "319", &[&nick, &chans.join(" ")]);
    }
    numeric(out, me, "312", &[&nick, SERVER, "chat server"]);
    if let Some(away) = kept.away(key) {
        numeric(out, me, "301", &[&nick, away]);
    }
    numeric(out, me, "318", &[&nick, "End of /WHOIS list"]);
}

pub fn nick_of<C>(core: &Core<C>, key: Key) -> String {
    core.user(key)
        .filter(|u| u.presence == Presence::Here)
        .map(|u| u.nick.as_str().to_owned())
        .unwrap_or_default()
}

pub fn names_of<C>(core: &Core<C>, out: &mut Vec<u8>, me: &str, chan: &str) {
    match chan.strip_prefix('#').and_then(|r| core.room(r)) {
        Some(RoomView { name, members, .. }) => encode::names(
            out,
            me,
            &channel(name.as_str()),
            members.iter().map(|u| u.nick.as_str()),
        ),
        None => numeric(out, me, "366", &[chan, "End of /NAMES list"]),
    }
}

/// Channels are `+n` (only members speak in them; anyone in one may set
/// its topic, so not `+t`) and nobody is an operator; users have no modes.
/// A ban list asked for (clients ask on joining) is empty; any other
/// change is refused for a channel and ignored for oneself.
pub fn mode<C>(core: &Core<C>, key: Key, out: &mut Vec<u8>, me: &str, params: &[&str]) {
    let target = params[0];
    if let Some(room) = target.strip_prefix('#') {
        let Some(RoomView { name, .. }) = core.room(room) else {
            return numeric(out, me, "403", &[target, "No such channel"]);
        };
        let chan = channel(name.as_str());
        match params.get(1).map(|m| m.trim_start_matches('+')) {
            None => numeric(out, me, "324", &[&chan, "+n"]),
            Some("b") => numeric(out, me, "368", &[&chan, "End of channel ban list"]),
            Some(_) => numeric(out, me, "482", &[&chan, "You're not channel operator"]),
        }
        return;
    }
    match core.find_nick(target) {
        Some(owner) if owner == key => {
            if params.len() == 1 {
                numeric(out, me, "221", &["+"]);
            }
        }
        Some(_) => numeric(out, me, "502", &["Can't change mode for other users"]),
        None => numeric(out, me, "401", &[target, "No such nick"]),
    }
}

/// 001-005, LUSERS and the MOTD (the server's welcome text).
pub fn burst(out: &mut Vec<u8>, me: &str, settings: &Settings, counts: Counts) {
    let version = env!("CARGO_PKG_VERSION");
    let welcome = format!("Welcome to the chat IRC door, {me}");
    numeric(out, me, "001", &[&welcome]);
    let host = format!("Your host is {SERVER}, running chat {version}");
    numeric(out, me, "002", &[&host]);
    numeric(out, me, "003", &["This server speaks JSON lines and IRC"]);
    let chat_version = format!("chat-{version}");
    numeric(out, me, "004", &[SERVER, &chat_version, "i", "n"]);
    // Names compare by `names::fold` (NFKC case folding and the UTS #39
    // skeleton: look-alikes are one name), which no CASEMAPPING value
    // describes. `ascii` is the least wrong: two names equal under it are
    // equal here too; this server merely merges more (other cases, other
    // scripts' look-alikes), and says so with 433 when it matters.
    // NICKLEN and CHANNELLEN count characters, as chat does, not bytes.
    let chanlimit = format!("CHANLIMIT=#:{}", settings.max_rooms);
    let nicklen = format!("NICKLEN={}", names::MAX_CHARS);
    let chanlen = format!("CHANNELLEN={}", names::MAX_CHARS + 1);
    let topiclen = format!("TOPICLEN={}", crate::server::core::MAX_TOPIC);
    let history = format!("CHATHISTORY={}", crate::wire::HISTORY_MAX);
    numeric(
        out,
        me,
        "005",
        &[
            "CHANTYPES=#",
            &nicklen,
            &chanlen,
            &topiclen,
            &chanlimit,
            "CASEMAPPING=ascii",
            "UTF8ONLY",
            "NETWORK=chat",
            "PREFIX=",
            "CHANMODES=,,,n",
            &history,
            "are supported by this server",
        ],
    );
    lusers(out, me, counts);
    numeric(
        out,
        me,
        "375",
        &[&format!("- {SERVER} Message of the day - ")],
    );
    for line in settings.welcome.lines() {
        numeric(out, me, "372", &[&format!("- {}", encode::clean(line))]);
    }
    numeric(out, me, "376", &["End of /MOTD command."]);
}

/// What LUSERS counts: users present (everyone is visible, on this one
/// server as IRC sees it), rooms, and IRC connections not yet registered.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub users: usize,
    pub rooms: usize,
    pub unknown: usize,
}

/// 251-255, in the registration burst and as the answer to LUSERS.
pub fn lusers(out: &mut Vec<u8>, me: &str, counts: Counts) {
    let Counts {
        users,
        rooms,
        unknown,
    } = counts;
    let users_line = format!("There are {users} users and 0 invisible on 1 servers");
    numeric(out, me, "251", &[&users_line]);
    numeric(out, me, "252", &["0", "operator(s) online"]);
    numeric(
        out,
        me,
        "253",
        &[&unknown.to_string(), "unknown connection(s)"],
    );
    numeric(out, me, "254", &[&rooms.to_string(), "channels formed"]);
    let clients = format!("I have {users} clients and 0 servers");
    numeric(out, me, "255", &[&clients]);
}
