//! Placeholder until its issue lands.

use crate::fail::{Fail, Outcome};

pub fn run(_args: &crate::cli::BotArgs) -> Outcome {
    Err(Fail::usage("'chat bot' is not yet built"))
}
