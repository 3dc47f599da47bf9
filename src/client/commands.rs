//! What the user typed, read as a command: plain text is a group message,
//! `/word ...` is a command, `//text` is text that starts with `/`.

/// The commands, for `/help` and for Tab completion.
pub const COMMANDS: &[&str] = &[
    "/msg",
    "/m",
    "/me",
    "/join",
    "/part",
    "/rooms",
    "/topic",
    "/history",
    "/who",
    "/nick",
    "/login",
    "/register",
    "/logout",
    "/quit",
    "/help",
];

/// The commands whose first word is a room name, for Tab completion.
pub const ROOM_COMMANDS: &[&str] = &["/join", "/part", "/who"];

/// The `/help` text, one line each.
pub const HELP: &[&str] = &[
    "TEXT              say TEXT in the current room (to everyone, without rooms)",
    "/msg NICK TEXT    say TEXT to NICK only (also /m)",
    "/me TEXT          say what you do: /me waves shows * NICK waves",
    "/join ROOM        join ROOM (made if new) and talk there; in it already: talk there",
    "/part [ROOM] [TEXT]  leave ROOM (the current room by default), saying TEXT",
    "/rooms            list the rooms",
    "/topic [TEXT]     show the current room's topic, or set it (/topic - clears it)",
    "/history [N]      show N older messages of the current room (20 by default)",
    "/who [ROOM]       list who is in the current room, or in ROOM",
    "/nick NAME        take a new nickname",
    "/login ACCOUNT    log in to ACCOUNT (the password is asked for, not shown); take its name",
    "/register         make your current nickname an account, yours (password asked twice)",
    "/logout           stop owning the nickname (you keep it until you change it)",
    "/quit [REASON]    leave (Ctrl-D on an empty line too)",
    "/help             this list",
    "//TEXT            say /TEXT",
    "Tab completes nicknames, rooms and commands; Up and Down recall history; Ctrl-C clears the line",
];

/// One typed line, understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// A blank line: nothing to do.
    Nothing,
    Say(&'a str),
    /// `/me waves`: an action.
    Me(&'a str),
    Msg {
        to: &'a str,
        text: &'a str,
    },
    Nick(&'a str),
    /// Everyone (no rooms), the current room, or the named one.
    Who(Option<&'a str>),
    Join(&'a str),
    /// The arguments as typed: whether the first word is a room depends
    /// on the rooms we are in, which the session knows.
    Part(&'a str),
    Rooms,
    /// Empty: show the topic; `-`: clear it.
    Topic(&'a str),
    /// Older messages of the current room: how many, as typed (the
    /// session checks it, as it knows the limit).
    History(&'a str),
    /// The password follows as the next line from the input child, which
    /// reads it without echo and keeps it out of the history.
    Login(&'a str),
    /// Like `Login`, the password follows as the next line.
    Register,
    Logout,
    Quit(Option<&'a str>),
    Help,
    /// Not a valid command; the text says why. Nothing is sent.
    Bad(String),
}

impl Command<'_> {
    /// True for the commands that may change the current room: the input
    /// child waits for the prompt they lead to before it reads the next
    /// line.
    pub fn changes_room(&self) -> bool {
        matches!(self, Command::Join(_) | Command::Part(_))
    }

    /// True for the commands whose next input line is a password: the
    /// input child reads it without echo and never keeps it, and the
    /// parent takes it as the password, not as a line to say.
    pub fn wants_password(&self) -> bool {
        matches!(self, Command::Login(_) | Command::Register)
    }
}

/// Reads one line (without its line ending).
pub fn parse(line: &str) -> Command<'_> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Command::Nothing;
    }
    if line.starts_with("//") {
        return Command::Say(&line[1..]);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Command::Say(line);
    };
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    match name.to_ascii_lowercase().as_str() {
        "msg" | "m" => match args.split_once(char::is_whitespace) {
            Some((to, text)) if !text.trim().is_empty() => Command::Msg {
                to,
                text: text.trim_start(),
            },
            _ => Command::Bad(format!("usage: /{name} NICK TEXT")),
        },
        "me" if !args.is_empty() => Command::Me(args),
        "me" => Command::Bad("usage: /me TEXT".into()),
        "nick" if !args.is_empty() && !args.contains(char::is_whitespace) => Command::Nick(args),
        "nick" => Command::Bad("usage: /nick NAME".into()),
        "who" if !args.contains(char::is_whitespace) => {
            Command::Who(Some(args).filter(|a| !a.is_empty()))
        }
        "who" => Command::Bad("usage: /who [ROOM]".into()),
        "join" if !args.is_empty() && !args.contains(char::is_whitespace) => Command::Join(args),
        "join" => Command::Bad("usage: /join ROOM".into()),
        "part" => Command::Part(args),
        "rooms" if args.is_empty() => Command::Rooms,
        "rooms" => Command::Bad("usage: /rooms".into()),
        "topic" => Command::Topic(args),
        "history" => Command::History(args),
        "login" if !args.is_empty() && !args.contains(char::is_whitespace) => Command::Login(args),
        "login" => Command::Bad(
            "usage: /login ACCOUNT (the password is asked for next, never on the line)".into(),
        ),
        "register" if args.is_empty() => Command::Register,
        "register" => Command::Bad(
            "usage: /register (it registers your current nickname; the password is asked for next)"
                .into(),
        ),
        "logout" if args.is_empty() => Command::Logout,
        "logout" => Command::Bad("usage: /logout".into()),
        "quit" => Command::Quit(Some(args).filter(|a| !a.is_empty())),
        "help" => Command::Help,
        _ => Command::Bad(format!(
            "unknown command /{name}; /help lists the commands (//TEXT sends /TEXT)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_said_as_typed() {
        assert_eq!(parse("hello  all "), Command::Say("hello  all "));
        assert_eq!(parse("  indented"), Command::Say("  indented"));
        assert_eq!(parse("crlf\r"), Command::Say("crlf"));
        assert_eq!(parse("a/b"), Command::Say("a/b"));
    }

    #[test]
    fn blank_lines_do_nothing() {
        for line in ["", "   ", "\t", "\r"] {
            assert_eq!(parse(line), Command::Nothing, "{line:?}");
        }
    }

    #[test]
    fn double_slash_says_a_literal_slash() {
        assert_eq!(parse("//me waves"), Command::Say("/me waves"));
        assert_eq!(parse("//"), Command::Say("/"));
    }

    #[test]
    fn private_messages() {
        let want = Command::Msg {
            to: "bob",
            text: "psst  there",
        };
        assert_eq!(parse("/msg bob psst  there"), want);
        assert_eq!(parse("/m bob psst  there"), want);
        assert_eq!(parse("/MSG bob   psst  there"), want);
        for bad in ["/msg", "/msg bob", "/msg bob   ", "/m"] {
            assert!(
                matches!(parse(bad), Command::Bad(ref e) if e.starts_with("usage:")),
                "{bad}"
            );
        }
    }

    #[test]
    fn nick_who_quit_help() {
        assert_eq!(parse("/nick caz"), Command::Nick("caz"));
        assert_eq!(parse("/nick  caz "), Command::Nick("caz"));
        assert!(matches!(parse("/nick"), Command::Bad(_)));
        assert!(matches!(parse("/nick a b"), Command::Bad(_)));
        assert_eq!(parse("/who"), Command::Who(None));
        assert_eq!(parse("/quit"), Command::Quit(None));
        assert_eq!(parse("/quit  "), Command::Quit(None));
        assert_eq!(
            parse("/quit gone fishing"),
            Command::Quit(Some("gone fishing"))
        );
        assert_eq!(parse("/help"), Command::Help);
    }

    #[test]
    fn room_commands() {
        assert_eq!(parse("/join rust"), Command::Join("rust"));
        assert_eq!(parse("/JOIN  Rust "), Command::Join("Rust"));
        for bad in ["/join", "/join a b"] {
            assert!(
                matches!(parse(bad), Command::Bad(ref e) if e == "usage: /join ROOM"),
                "{bad}"
            );
        }
        assert_eq!(parse("/part"), Command::Part(""));
        assert_eq!(
            parse("/part rust  gone for lunch "),
            Command::Part("rust  gone for lunch")
        );
        assert_eq!(parse("/rooms"), Command::Rooms);
        assert!(matches!(parse("/rooms x"), Command::Bad(_)));
        assert_eq!(parse("/topic"), Command::Topic(""));
        assert_eq!(
            parse("/topic  all about  Rust "),
            Command::Topic("all about  Rust")
        );
        assert_eq!(parse("/topic -"), Command::Topic("-"));
        assert_eq!(parse("/who rust"), Command::Who(Some("rust")));
        assert!(matches!(parse("/who a b"), Command::Bad(_)));
        assert!(parse("/join x").changes_room());
        assert!(parse("/part").changes_room());
        assert!(!parse("/rooms").changes_room());
        assert!(!parse("join").changes_room());
    }

    #[test]
    fn account_commands_take_no_password_on_the_line() {
        assert_eq!(parse("/login alice"), Command::Login("alice"));
        assert_eq!(parse("/LOGIN  alice "), Command::Login("alice"));
        assert!(parse("/login alice").wants_password());
        assert_eq!(parse("/register"), Command::Register);
        assert!(parse("/register").wants_password());
        assert_eq!(parse("/logout"), Command::Logout);
        assert!(!parse("/logout").wants_password());
        // A password typed on the line is refused, and nothing waits for
        // one: the next line is a line again.
        for bad in [
            "/login",
            "/login alice hunter22",
            "/register hunter22",
            "/logout x",
        ] {
            let cmd = parse(bad);
            assert!(
                matches!(cmd, Command::Bad(ref e) if e.starts_with("usage:")),
                "{bad}"
            );
            assert!(!cmd.wants_password(), "{bad}");
        }
    }

    #[test]
    fn me_is_an_action() {
        assert_eq!(parse("/me waves  hello"), Command::Me("waves  hello"));
        assert_eq!(parse("/ME  waves "), Command::Me("waves"));
        assert!(matches!(parse("/me"), Command::Bad(ref e) if e == "usage: /me TEXT"));
        assert!(matches!(parse("/me   "), Command::Bad(_)));
    }

    #[test]
    fn unknown_commands_are_refused_locally() {
        match parse("/frob x") {
            Command::Bad(e) => assert!(e.contains("unknown command /frob"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("/"), Command::Bad(_)));
        assert!(matches!(parse("/ msg"), Command::Bad(_)));
    }
}
