//! Placeholder.
use crate::fail::{Fail, Outcome};
pub fn run(_args: &crate::cli::ServerArgs) -> Outcome {
    Err(Fail::usage("not yet"))
}
