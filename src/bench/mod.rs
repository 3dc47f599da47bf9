//! `chat bench`: the load generator that measures a running server.
//!
//! - `fanout`: senders and receivers in the group; throughput, latency,
//!   and proof that nothing was lost, duplicated or reordered.
//! - `idle`: many connections doing nothing; the server's memory per
//!   connection and whether it still answers promptly.
//! - `arrivals`: clients arriving one at a time into one room while members
//!   chat; the server's CPU per arrival, and the group latency it costs.
//! - `renames`: `fanout --renames`, clients renaming beside the run.
//! - `control`: the phases and wake-ups shared by a run's threads;
//!   `conn`: opening connections (to one server of `--server`'s list),
//!   and reading them in bulk; `ws`: the WebSocket client framing of
//!   `--proto ws`; `proto`: NATS, Redis and IRC, for `fanout --proto`;
//!   `scan`: our payload format and the byte-search hot path that finds
//!   it; `stats`: the latency histogram; `report`: table and JSON;
//!   `page` and `chart`: the HTML page and SVG charts of `--report`;
//!   `progress`: the stderr progress line; `system`: limits, CPU and
//!   memory from the kernel.
//!
//! Every mode runs one `mio` event loop per core, never a thread per
//! connection, so that the bench is not what limits the numbers.

mod arrivals;
mod chart;
mod conn;
mod control;
mod fanout;
mod idle;
mod page;
mod progress;
mod proto;
mod renames;
mod report;
mod scan;
mod stats;
mod system;
mod ws;

use crate::cli::{BenchArgs, BenchMode};
use crate::fail::Outcome;

pub fn run(args: &BenchArgs) -> Outcome {
    match &args.mode {
        BenchMode::Fanout(args) => fanout::run(args),
        BenchMode::Idle(args) => idle::run(args),
        BenchMode::Arrivals(args) => arrivals::run(args),
    }
}
