//! Placeholder until its issue lands.

use crate::fail::{Fail, Outcome};

pub fn run(_args: &crate::cli::BenchArgs) -> Outcome {
    Err(Fail::usage("'chat bench' is not yet built"))
}
