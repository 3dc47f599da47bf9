//! `chat client`: chat interactively, or from a script through a pipe.
//!
//! Two processes share the work. The parent owns the connection: one mio
//! loop over the socket, the pipes and a signalfd (`parent`), with the
//! protocol logic kept apart from I/O (`session` and `typed`, `roster`,
//! `awaited`; the lines shown
//! are [`crate::render`]'s, with the time before them, `clock`). A forked
//! child owns the keyboard (`input`): it reads lines with rustyline
//! (`complete`, `history`) and writes them into a pipe. While the child
//! edits a line on a terminal, the parent's lines reach the screen only
//! through the child's display thread and rustyline's external printer
//! (`printer`, `display`), so incoming messages never garble the input.
//!
//! Order of events, each step before the next: connect (so a wrong address
//! fails at once, before any fork), create the pipes, save the terminal,
//! block the signals the parent handles, fork (`fork`), run the loop, reap
//! the child, restore the terminal (`terminal`).

mod awaited;
mod backlog;
pub(crate) mod clock;
mod commands;
mod complete;
mod display;
mod fork;
mod history;
mod input;
mod parent;
mod printer;
mod roster;
mod session;
mod signals;
mod terminal;
mod typed;

use std::io::{self, IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{SigmaskHow, pthread_sigmask};
use nix::sys::wait::waitpid;
use nix::unistd::{getpid, pipe2};

use crate::addr::{Server, parse_server, resolve};
use crate::cli::ClientArgs;
use crate::fail::{Fail, Outcome};
use crate::peer::Peer;
use crate::render::{Renderer, Style};
use crate::secret::{self, Credentials, PASSWORD_VAR};
use crate::wire::{check_nick, check_room};

use display::Screen;
use session::Session;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: &ClientArgs) -> Outcome {
    let server = parse_server(&args.server)
        .map_err(|e| Fail::usage(format!("cannot use server address: {e}")))?;
    let account = match &args.account {
        Some(account) => Some(credentials(account, &args.server)?),
        None => None,
    };
    // Logging in brings the account's name: $USER is not asked for then
    // (a --nick given too is taken after the login).
    let nick = match &args.nick {
        Some(nick) => {
            check_nick(nick)
                .map_err(|e| Fail::usage(format!("cannot use nickname {nick:?}: {e}")))?;
            Some(nick.clone())
        }
        None if account.is_some() => None,
        None => default_nick(std::env::var("USER").ok().as_deref()),
    };
    let rooms = args
        .room
        .iter()
        .map(|room| {
            check_room(room).map_err(|e| Fail::usage(format!("cannot use room {room:?}: {e}")))
        })
        .collect::<Result<Vec<String>, Fail>>()?;
    let interactive = io::stdin().is_terminal()
        && io::stdout().is_terminal()
        && term_can_edit(std::env::var("TERM").ok().as_deref());
    let style = Style::for_output(interactive);
    let history = if interactive {
        history::path(
            args.history.as_deref(),
            std::env::var("XDG_DATA_HOME").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        )
    } else {
        None
    };

    let tls = args.tls.client(&server.host)?;
    let addrs = resolve(&server).map_err(Fail::runtime)?;
    let mut server = Server {
        addr: server,
        addrs,
        tls: tls.clone(),
    };
    let (peer, addr) = server
        .connect(
            |addr| Peer::connect(addr, CONNECT_TIMEOUT, tls.as_deref()),
            |e| e.to_string(),
        )
        .map_err(|e| Fail::runtime(format!("cannot connect to {e}")))?;

    let setup = |e: nix::Error| Fail::runtime(format!("cannot set up the client: {e}"));
    let (input_rx, input_tx) = pipe2(OFlag::O_CLOEXEC).map_err(setup)?;
    let (display_rx, display_tx) = match interactive {
        true => pipe2(OFlag::O_CLOEXEC)
            .map(|(r, w)| (Some(r), Some(w)))
            .map_err(setup)?,
        false => (None, None),
    };
    let saved = terminal::save();
    let mask = signals::block().map_err(setup)?;
    let signal_fd = signals::signal_fd().map_err(setup)?;
    let _ = io::stdout().flush();

    let mut inherited = vec![
        peer.stream.as_raw_fd(),
        input_rx.as_raw_fd(),
        signal_fd.as_raw_fd(),
    ];
    inherited.extend(display_tx.as_ref().map(AsRawFd::as_raw_fd));
    let child = input::Child {
        to_parent: input_tx,
        from_parent: display_rx,
        history,
        saved: saved.clone(),
        parent: getpid(),
        mask,
        style,
    };
    let pid = fork::fork_child((inherited, child), |(inherited, child)| {
        fork::close_inherited(&inherited);
        input::run(child)
    });
    let pid = match pid {
        Ok(pid) => pid,
        Err(e) => {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None);
            return Err(Fail::runtime(format!(
                "cannot start the input process: {e}"
            )));
        }
    };

    let screen = match display_tx {
        Some(fd) => Screen::Child {
            pipe: fd.into(),
            queue: Default::default(),
        },
        None => Screen::Direct {
            json: args.json,
            closed: false,
        },
    };
    let session = Session::new(Renderer { style }, args.json, nick, rooms, interactive);
    let parts = parent::Parts {
        server,
        addr,
        peer,
        input: input_rx.into(),
        screen,
        signals: signal_fd,
        session: match account {
            Some(account) => session.with_account(account),
            None => session,
        },
        child: pid,
        json: args.json,
        interactive,
    };
    let outcome = match parent::Parent::new(parts) {
        Ok(parent) => parent.run(),
        Err(e) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            Err(Fail::runtime(format!("cannot set up the event loop: {e}")))
        }
    };
    while let Err(nix::Error::EINTR) = waitpid(pid, None) {}
    if let Some(saved) = &saved {
        saved.restore();
    }
    outcome
}

/// The account of `--account` and its password: `$CHAT_PASSWORD`, or
/// typed on the terminal without echo, before anything else starts.
fn credentials(account: &str, server: &str) -> Result<Credentials, Fail> {
    check_nick(account).map_err(|e| Fail::usage(format!("cannot use account {account:?}: {e}")))?;
    let password = match secret::from_env(PASSWORD_VAR).map_err(Fail::usage)? {
        Some(password) => password,
        None => {
            let tty = std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/tty")
                .map_err(|e| {
                    Fail::usage(format!(
                        "--account {account} needs a password: set ${PASSWORD_VAR}, or run in a terminal to type it ({e})"
                    ))
                })?;
            let prompt = format!("password for {account} at {server}: ");
            match secret::read_hidden(&tty, &prompt, "\r\n") {
                Ok(secret::Typed::Line(password)) if !password.is_empty() => password,
                Ok(_) => return Err(Fail::usage("no password given; not connecting")),
                Err(e) => {
                    return Err(Fail::usage(format!("cannot read the password: {e}")));
                }
            }
        }
    };
    Ok(Credentials {
        account: account.to_owned(),
        password,
    })
}

/// `$USER` when it is a nickname the server would accept.
fn default_nick(user: Option<&str>) -> Option<String> {
    user.filter(|u| check_nick(u).is_ok()).map(str::to_owned)
}

/// rustyline cannot edit lines on these terminals (it reads them plainly),
/// so the client does not try either.
fn term_can_edit(term: Option<&str>) -> bool {
    !matches!(term, Some("dumb" | "cons25" | "emacs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_becomes_the_nick_only_when_valid() {
        assert_eq!(default_nick(Some("alice")), Some("alice".into()));
        assert_eq!(default_nick(Some("john.doe")), None);
        assert_eq!(default_nick(Some("guest12")), None);
        assert_eq!(default_nick(Some("")), None);
        assert_eq!(default_nick(None), None);
    }

    #[test]
    fn line_editing_needs_a_capable_terminal() {
        assert!(!term_can_edit(Some("dumb")));
        assert!(term_can_edit(Some("xterm-256color")));
        assert!(term_can_edit(None));
    }
}
