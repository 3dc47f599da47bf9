//! The `chat` binary: parse, dispatch, and turn the outcome into one line and
//! an exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug must still end as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("chat: internal error: {info}; please report it");
    }));
    match chat::cli::run(std::env::args_os().collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => {
            eprintln!("chat: {fail}");
            ExitCode::from(fail.status)
        }
    }
}
