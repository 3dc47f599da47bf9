//! Placeholder until its issue lands.

use crate::fail::{Fail, Outcome};

pub fn run(_args: &crate::cli::ClientArgs) -> Outcome {
    Err(Fail::usage("'chat client' is not yet built"))
}
