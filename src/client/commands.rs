//! What the user typed, read as a command: plain text is a group message,
//! `/word ...` is a command, `//text` is text that starts with `/`.

/// The commands, for `/help` and for Tab completion.
pub const COMMANDS: &[&str] = &["/msg", "/m", "/me", "/nick", "/who", "/quit", "/help"];

/// The `/help` text, one line each.
pub const HELP: &[&str] = &[
    "TEXT              say TEXT to everyone",
    "/msg NICK TEXT    say TEXT to NICK only (also /m)",
    "/me TEXT          say what you do: /me waves shows * NICK waves",
    "/nick NAME        take a new nickname",
    "/who              list who is online",
    "/quit [REASON]    leave (Ctrl-D on an empty line too)",
    "/help             this list",
    "//TEXT            say /TEXT to everyone",
    "Tab completes nicknames and commands; Up and Down recall history; Ctrl-C clears the line",
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
    Who,
    Quit(Option<&'a str>),
    Help,
    /// Not a valid command; the text says why. Nothing is sent.
    Bad(String),
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
        "who" => Command::Who,
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
        assert_eq!(parse("/who"), Command::Who);
        assert_eq!(parse("/quit"), Command::Quit(None));
        assert_eq!(parse("/quit  "), Command::Quit(None));
        assert_eq!(
            parse("/quit gone fishing"),
            Command::Quit(Some("gone fishing"))
        );
        assert_eq!(parse("/help"), Command::Help);
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
