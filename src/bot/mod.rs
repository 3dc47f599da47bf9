//! `chat bot SCRIPT`: replays a scripted conversation among one or more
//! actors against a running server and checks what they receive
//! (`shared/spec/bot-scripts.md`). Its exit status is the verdict.
//!
//! - [`script`]: the script's lines into validated steps, or every mistake
//!   as `FILE:LINE: what`; [`words`]: how a line splits into words and a
//!   TEXT.
//! - [`matching`]: `*` patterns, which fields `expect` looks at, and in
//!   which room a message happened.
//! - [`runner`]: the single event loop that plays the steps, and waits for
//!   the server's answer to `nick`, `join`, `part` and `topic`.
//! - [`transcript`]: the actor, the `ok:` lines, actions, `[room]` and one
//!   line per arrival around the human format of [`crate::render`], which
//!   the client shows too.

pub mod matching;
pub mod runner;
pub mod script;
pub mod transcript;
pub mod words;

use std::io::{IsTerminal, Read};
use std::path::Path;

use crate::addr::{Server, parse_server, resolve};
use crate::cli::BotArgs;
use crate::fail::{Fail, Outcome};
use crate::render::Style;
use crate::wire::check_nick;

pub fn run(args: &BotArgs) -> Outcome {
    let from_stdin = args.script == Path::new("-");
    let name = if from_stdin {
        "<stdin>".to_owned()
    } else {
        args.script.display().to_string()
    };
    check_nick(&args.nick).map_err(|e| Fail::usage(format!("--nick {:?}: {e}", args.nick)))?;
    if let Some(account) = &args.account {
        check_nick(account).map_err(|e| Fail::usage(format!("--account {account:?}: {e}")))?;
        match crate::secret::from_env(crate::secret::PASSWORD_VAR) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Fail::usage(format!(
                    "--account {account} needs its password in ${}",
                    crate::secret::PASSWORD_VAR
                )));
            }
            Err(e) => return Err(Fail::usage(format!("--account {account}: {e}"))),
        }
    }
    let default_nick = args.account.as_deref().unwrap_or(&args.nick);
    if args.timeout.is_zero() {
        // `within 0ms` on one line is a fine "must be here already"; as
        // the wait for every connection and answer it cannot work.
        return Err(Fail::usage(
            "--timeout must be longer than 0 (it is also how long connecting may take)",
        ));
    }
    let addr = parse_server(&args.server)
        .map_err(|e| Fail::usage(format!("cannot use --server {}: {e}", args.server)))?;
    let source = read_script(&args.script, from_stdin)
        .map_err(|e| Fail::usage(format!("cannot read the script {name}: {e}")))?;
    let script = match script::parse(&name, &source, default_nick) {
        Ok(script) => script,
        Err(mut errors) => {
            // Every bad line, each as one `chat: FILE:LINE: ...` line; the
            // last goes out through `main` like any other failure.
            let last = errors.pop().unwrap_or_default();
            for error in errors {
                eprintln!("chat: {error}");
            }
            return Err(Fail::usage(last));
        }
    };
    // A password the script needs and cannot have is a mistake found
    // before anything connects, like the script's own.
    for step in &script.steps {
        if let Some(var) = step.action.password_var()
            && let Err(why) = crate::secret::from_env(var)
                .and_then(|p| p.map(drop).ok_or_else(|| format!("${var} is not set")))
        {
            return Err(Fail::usage(format!(
                "{name}:{}: no password for this step: {why} (the password is read from the environment, never from the script)",
                step.line
            )));
        }
    }
    // Only a valid script is worth a lookup (exit 2 means nothing
    // connected; a name that does not resolve is a failure to connect).
    let tls = args.tls.client(&addr.host)?;
    let addrs = resolve(&addr).map_err(Fail::runtime)?;
    let settings = runner::Settings {
        server: Server { addr, addrs, tls },
        timeout: args.timeout,
        quiet: args.quiet,
        account: args.account.clone(),
        style: Style::for_output(std::io::stdout().is_terminal()),
    };
    runner::run(&script, &settings).map_err(Fail::runtime)
}

fn read_script(path: &Path, from_stdin: bool) -> Result<Vec<u8>, String> {
    let mut source = Vec::new();
    let read = if from_stdin {
        std::io::stdin().lock().read_to_end(&mut source).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut source).map(|_| ()))
    };
    read.map_err(|e| runner::io_reason(&e))?;
    Ok(source)
}
