//! `chat bench arrivals`: clients arrive one at a time into one room, every
//! member reading, while a few members chat; the run measures what presence
//! costs the server (CPU per arrival: every arrival is a `join` to every
//! member) and what it costs the members (group latency during the storm
//! against the same room before it), and proves that every member got every
//! `join` and every group message.
//!
//! Phases, each started by the coordinating thread once every connection
//! has finished the one before:
//!
//! 1. `CONNECT`: the talkers and the `--present` members connect, read the
//!    welcome and, with `--room`, join the room.
//! 2. `SYNC`: each pings; the pong proves the setup's joins are drained.
//! 3. `QUIET`: the talkers chat for `--quiet`, paced: the latency without
//!    arrivals.
//! 4. `STORM`: the arrivals connect, one after another (each once the one
//!    before is in the room) or at `--rate`, each joining the room, while
//!    the talkers go on chatting.
//! 5. `DRAIN`: the talkers stop and ping; their pongs prove the server has
//!    queued all they said to every member. Then `CHECK`: everyone pings;
//!    a pong proves every `join` and message meant for that connection
//!    came before it.
//! 6. With `--leave`, `LEAVE`: the arrivals quit, one after another, each
//!    once the one before has its `bye`; then `FINAL`: the members ping,
//!    the pong proving every `leave` came before it.
//!
//! Then the counts are compared.
//!
//! Joins are checked in total: arrival B's `join` goes to everyone in the
//! room when it arrives, which its `welcome` counts (`users`, self
//! included), or, with `--room`, its `joined` lists. Group messages are
//! checked per member and talker as in `fanout`: in order, none skipped,
//! and the setup members have all of them; an arrival counts from the first
//! one it gets.
//!
//! Here: the plan, the coordinator and the counts; `worker`: one event
//! loop and the lines its connections read; `report`: the figures.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::control::Control;
use super::progress::Progress;
use super::stats::Histogram;
use super::system;
use crate::cli::ArrivalsArgs;
use crate::fail::{Fail, Outcome};

mod report;
mod worker;

use report::report;
use worker::Worker;

const CONNECT: u8 = 0;
const SYNC: u8 = 1;
const QUIET: u8 = 2;
const STORM: u8 = 3;
const DRAIN: u8 = 4;
const CHECK: u8 = 5;
const LEAVE: u8 = 6;
const FINAL: u8 = 7;
const STOP: u8 = 8;

const READ_BUF: usize = 256 << 10;
const CONNECTS_PER_TURN: usize = 16;
/// Bytes of each group message's text.
const PAYLOAD: usize = 64;

struct Plan {
    addr: SocketAddr,
    arrivals: usize,
    rate: u64,
    present: usize,
    talkers: usize,
    chat_rate: u64,
    /// `"room":"NAME"` as the server writes it, and the `join` line to send.
    room: Option<Room>,
    timeout: Duration,
    threads: usize,
    /// The arrivals quit at the end, one after another.
    leave: bool,
}

struct Room {
    name: String,
    /// The field in the server's `join` and `group` lines.
    field: Vec<u8>,
    join_line: Vec<u8>,
}

impl Plan {
    fn setup(&self) -> usize {
        self.talkers + self.present
    }
}

#[derive(Default)]
struct Counters {
    /// Setup connections welcomed (and in the room).
    ready: AtomicUsize,
    synced: AtomicUsize,
    /// Arrivals in the room; with `--rate 0` the next may start.
    arrived: AtomicUsize,
    drained: AtomicUsize,
    checked: AtomicUsize,
    /// Arrivals that have their `bye`; with `--leave` the next may quit.
    departed: AtomicUsize,
    finals: AtomicUsize,
    /// When the last arrival got its `bye` (ns).
    last_departure_ns: AtomicU64,
    /// When the storm started and the last arrival got in (ns).
    storm_ns: AtomicU64,
    last_arrival_ns: AtomicU64,
    /// When the talkers started (ns), for pacing.
    go_ns: AtomicU64,
    /// Sum of the room sizes the arrivals were told, and the first one's.
    users_sum: AtomicU64,
    first_users: AtomicU64,
    /// Messages each talker sent, known once they stop.
    said: Mutex<Vec<u64>>,
}

#[derive(Default)]
struct Tally {
    joins: u64,
    leaves: u64,
    received: u64,
    gaps: u64,
    out_of_order: u64,
    corrupt: u64,
    unfinished: u64,
    quiet: Histogram,
    storm: Histogram,
}

pub fn run(args: &ArrivalsArgs) -> Outcome {
    let plan = plan(args)?;
    system::make_room_for(plan.setup() + plan.arrivals)?;
    let control = Control::new();
    let counters = Counters::default();
    let polls = control.event_loops(plan.threads)?;
    let progress = Progress::on_stderr();
    let (end, tallies) = control.run_loops(
        polls,
        STOP,
        |w, poll| Worker::new(&plan, &control, &counters, poll, w).run(),
        || coordinate(&plan, &control, &counters, args, &progress),
    );
    progress.clear();
    let tallies = tallies?;
    let end = end?;
    let mut t = Tally::default();
    for one in &tallies {
        t.joins += one.joins;
        t.leaves += one.leaves;
        t.received += one.received;
        t.gaps += one.gaps;
        t.out_of_order += one.out_of_order;
        t.corrupt += one.corrupt;
        t.unfinished += one.unfinished;
        t.quiet.merge(&one.quiet);
        t.storm.merge(&one.storm);
    }
    let joins_expected = joins_expected(&plan, &counters);
    let leaves_expected = leaves_expected(&plan);
    let r = report(&plan, &t, joins_expected, leaves_expected, &end);
    if args.json {
        println!("{}", r.json());
    } else {
        print!("{}", r.table());
    }
    let missing = t.gaps + t.unfinished;
    if t.joins == joins_expected
        && t.leaves == leaves_expected
        && missing == 0
        && t.out_of_order == 0
        && t.corrupt == 0
    {
        return Ok(());
    }
    let mut why = format!(
        "{} of {joins_expected} joins missing, {} extra; ",
        joins_expected.saturating_sub(t.joins),
        t.joins.saturating_sub(joins_expected),
    );
    if plan.leave {
        why.push_str(&format!(
            "{} of {leaves_expected} leaves missing, {} extra; ",
            leaves_expected.saturating_sub(t.leaves),
            t.leaves.saturating_sub(leaves_expected),
        ));
    }
    why.push_str(&format!(
        "{missing} group deliveries missing, {} duplicated or reordered, {} corrupted",
        t.out_of_order, t.corrupt
    ));
    Err(Fail::runtime(why))
}

fn plan(args: &ArrivalsArgs) -> Result<Plan, Fail> {
    let addr = super::conn::server_addr(&args.server, args.timeout)?;
    if args.clients == 0 {
        return Err(Fail::usage("an arrivals run needs at least one client"));
    }
    if args.talkers > 0 && args.chat_rate == 0 {
        return Err(Fail::usage(
            "talkers need a --chat-rate above 0 (or use --talkers 0)",
        ));
    }
    let room = args.room.as_ref().map(|name| {
        // Written by hand: `wire` has no v2 messages yet.
        let quoted = serde_json::Value::from(name.as_str()).to_string();
        // The server sends room names case-folded.
        let folded = serde_json::Value::from(name.to_lowercase()).to_string();
        Room {
            name: name.clone(),
            field: format!("\"room\":{folded}").into_bytes(),
            join_line: format!("{{\"type\":\"join\",\"room\":{quoted}}}\n").into_bytes(),
        }
    });
    let conns = args.talkers + args.present + args.clients;
    Ok(Plan {
        addr,
        arrivals: args.clients,
        rate: args.rate,
        present: args.present,
        talkers: args.talkers,
        chat_rate: args.chat_rate,
        room,
        timeout: args.timeout,
        threads: args.threads.unwrap_or_else(system::cores).clamp(1, conns),
        leave: args.leave,
    })
}

/// Every arrival's `join` goes to the others in the room when it arrives:
/// its room size less one. Anyone in the room who is not ours (the first
/// arrival's size tells how many) gets joins we never see.
fn joins_expected(plan: &Plan, counters: &Counters) -> u64 {
    let sum = counters.users_sum.load(Ordering::Acquire);
    let first = counters.first_users.load(Ordering::Acquire);
    let ours_before_first = plan.setup() as u64 + 1;
    let strangers = first.saturating_sub(ours_before_first);
    sum.saturating_sub(plan.arrivals as u64 * (1 + strangers))
}

/// Arrival K quits when the members and the arrivals after it remain: each
/// of them gets its `leave`.
fn leaves_expected(plan: &Plan) -> u64 {
    if !plan.leave {
        return 0;
    }
    let (n, setup) = (plan.arrivals as u64, plan.setup() as u64);
    n * setup + n * (n - 1) / 2
}

struct End {
    storm: Duration,
    own_cpu: Duration,
    server_cpu: Option<Duration>,
    /// With `--leave`: how long the departures took, and the CPU they cost.
    departures: Option<(Duration, Duration, Option<Duration>)>,
}

fn coordinate(
    plan: &Plan,
    control: &Control,
    counters: &Counters,
    args: &ArrivalsArgs,
    progress: &Progress,
) -> Result<End, Fail> {
    let server_cpu = || {
        args.server_pid
            .and_then(|pid| system::process_cpu(pid).ok())
    };
    let mut at_storm = (Duration::ZERO, None);
    let mut at_leave = (Duration::ZERO, None, 0);
    let mut end = None;
    let mut quiet_until = None;
    let mut last_seen = [0; 7];
    let mut last_change = Instant::now();
    let mut last_draw = Instant::now();
    loop {
        std::thread::park_timeout(Duration::from_millis(20));
        if let Some(why) = control.failure() {
            return Err(Fail::runtime(why));
        }
        let seen = [
            counters.ready.load(Ordering::Acquire),
            counters.synced.load(Ordering::Acquire),
            counters.arrived.load(Ordering::Acquire),
            counters.drained.load(Ordering::Acquire),
            counters.checked.load(Ordering::Acquire),
            counters.departed.load(Ordering::Acquire),
            counters.finals.load(Ordering::Acquire),
        ];
        let [ready, synced, arrived, drained, checked, departed, finals] = seen;
        let phase = control.phase();
        match phase {
            CONNECT if ready == plan.setup() => control.set_phase(SYNC),
            SYNC if synced == plan.setup() => {
                counters.go_ns.store(control.now_ns(), Ordering::Release);
                quiet_until = Some(Instant::now() + args.quiet);
                control.set_phase(QUIET);
            }
            QUIET if quiet_until.is_none_or(|t| Instant::now() >= t) || plan.talkers == 0 => {
                at_storm = (system::own_cpu(), server_cpu());
                counters.storm_ns.store(control.now_ns(), Ordering::Release);
                control.set_phase(STORM);
            }
            STORM if arrived == plan.arrivals => {
                let storm_ns = counters.storm_ns.load(Ordering::Acquire);
                let last = counters.last_arrival_ns.load(Ordering::Acquire);
                end = Some(End {
                    storm: Duration::from_nanos(last.saturating_sub(storm_ns)),
                    own_cpu: system::own_cpu().saturating_sub(at_storm.0),
                    server_cpu: server_cpu()
                        .zip(at_storm.1)
                        .map(|(b, a)| b.saturating_sub(a)),
                    departures: None,
                });
                control.set_phase(DRAIN);
            }
            DRAIN if drained == plan.talkers => control.set_phase(CHECK),
            CHECK if checked == plan.setup() + plan.arrivals && !plan.leave => {
                return end.ok_or_else(|| Fail::runtime("the storm never ended"));
            }
            CHECK if checked == plan.setup() + plan.arrivals => {
                at_leave = (system::own_cpu(), server_cpu(), control.now_ns());
                control.set_phase(LEAVE);
            }
            LEAVE if departed == plan.arrivals => {
                let last = counters.last_departure_ns.load(Ordering::Acquire);
                let took = Duration::from_nanos(last.saturating_sub(at_leave.2));
                let own = system::own_cpu().saturating_sub(at_leave.0);
                let server = server_cpu()
                    .zip(at_leave.1)
                    .map(|(b, a)| b.saturating_sub(a));
                if let Some(end) = end.as_mut() {
                    end.departures = Some((took, own, server));
                }
                control.set_phase(FINAL);
            }
            FINAL if finals == plan.setup() => {
                return end.ok_or_else(|| Fail::runtime("the storm never ended"));
            }
            _ => {}
        }
        if seen != last_seen || phase == QUIET {
            last_seen = seen;
            last_change = Instant::now();
        } else if last_change.elapsed() >= plan.timeout {
            let waited = crate::units::format_duration(plan.timeout);
            let setup = plan.setup();
            let what = match phase {
                CONNECT => format!("{ready} of {setup} members were in the room"),
                SYNC => format!("{synced} of {setup} members had their pong"),
                STORM => format!("{arrived} of {} arrivals were in the room", plan.arrivals),
                DRAIN => format!("{drained} of {} talkers had their pong", plan.talkers),
                LEAVE => format!("{departed} of {} arrivals had left", plan.arrivals),
                FINAL => format!("{finals} of {setup} members had their last pong"),
                _ => format!(
                    "{checked} of {} connections had their last pong",
                    setup + plan.arrivals
                ),
            };
            return Err(Fail::runtime(format!(
                "stalled: after {waited} only {what}"
            )));
        }
        if last_draw.elapsed() >= Duration::from_millis(250) {
            progress.show(&match phase {
                CONNECT => format!("arrivals: {ready} of {} members in", plan.setup()),
                SYNC => format!("arrivals: {synced} of {} synchronised", plan.setup()),
                QUIET => "arrivals: talkers chatting before the storm".to_string(),
                STORM => format!("arrivals: {arrived} of {} arrived", plan.arrivals),
                LEAVE => format!("arrivals: {departed} of {} left", plan.arrivals),
                _ => "arrivals: checking".to_string(),
            });
            last_draw = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_expected_leave_out_strangers() {
        let plan = |setup: usize| Plan {
            addr: "127.0.0.1:9".parse().unwrap(),
            arrivals: 3,
            rate: 0,
            present: setup,
            talkers: 0,
            chat_rate: 0,
            room: None,
            timeout: Duration::from_secs(1),
            threads: 1,
            leave: false,
        };
        let counters = Counters::default();
        // Two present, then three arrivals told 3, 4, 5 users: 2 + 3 + 4.
        counters.users_sum.store(3 + 4 + 5, Ordering::Release);
        counters.first_users.store(3, Ordering::Release);
        assert_eq!(joins_expected(&plan(2), &counters), 9);
        // One stranger in the room too: the same joins are ours to see.
        counters.users_sum.store(4 + 5 + 6, Ordering::Release);
        counters.first_users.store(4, Ordering::Release);
        assert_eq!(joins_expected(&plan(2), &counters), 9);
    }
}
