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

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use memchr::memmem;
use mio::{Events, Interest, Poll, Token};

use super::conn;
use super::control::{Control, WAKE, lock, wait};
use super::fanout::{due_at, due_count};
use super::progress::Progress;
use super::report::Report;
use super::scan::{self, Payload, Scan, Scanner};
use super::stats::Histogram;
use super::system;
use crate::cli::ArrivalsArgs;
use crate::fail::{Fail, Outcome};
use crate::peer::{Got, Peer};
use crate::wire::{ClientMsg, ErrorCode, ServerMsg};

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
    let (end, tallies) = std::thread::scope(|scope| {
        let workers: Vec<_> = polls
            .into_iter()
            .enumerate()
            .map(|(w, poll)| {
                let (plan, control, counters) = (&plan, &control, &counters);
                scope.spawn(move || Worker::new(plan, control, counters, poll, w).run())
            })
            .collect();
        let end = coordinate(&plan, &control, &counters, args, &progress);
        control.set_phase(STOP);
        let tallies: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        (end, tallies)
    });
    progress.clear();
    let tallies = tallies
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Fail::runtime("an event loop of the bench crashed"))?;
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
    let addr = crate::addr::parse_addr(&args.server)
        .map_err(|e| Fail::usage(format!("cannot use --server: {e}")))?;
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

fn report(plan: &Plan, t: &Tally, joins_expected: u64, leaves_expected: u64, end: &End) -> Report {
    let pace = match plan.rate {
        0 => "one after another".to_string(),
        r => format!("{r}/s"),
    };
    let room = plan
        .room
        .as_ref()
        .map_or("the default room".to_string(), |r| {
            format!("room {}", r.name)
        });
    let mut r = Report::new(
        "arrivals",
        format!(
            "chat bench arrivals: {} arrivals {pace} into {room}, {} present, {} talkers at {} msg/s, {} threads",
            plan.arrivals, plan.present, plan.talkers, plan.chat_rate, plan.threads
        ),
    );
    r.count("arrivals", "arrivals", plan.arrivals as u64);
    r.count(
        "rate",
        "arrival rate asked (0: one after another)",
        plan.rate,
    );
    r.count("present", "members present before", plan.present as u64);
    r.count("talkers", "talkers", plan.talkers as u64);
    r.count("chat_rate", "group messages/s asked", plan.chat_rate);
    let storm = end.storm.as_secs_f64();
    r.real("storm_s", "storm lasted", storm, 3, "s");
    let per_s = if storm > 0.0 {
        plan.arrivals as f64 / storm
    } else {
        0.0
    };
    r.real("arrivals_per_s", "arrivals/s held", per_s, 1, "");
    r.count("joins_expected", "joins expected", joins_expected);
    r.count("joins_received", "joins received", t.joins);
    r.count(
        "joins_missing",
        "joins missing",
        joins_expected.saturating_sub(t.joins),
    );
    r.count(
        "joins_extra",
        "joins extra",
        t.joins.saturating_sub(joins_expected),
    );
    if plan.leave {
        r.count("leaves_expected", "leaves expected", leaves_expected);
        r.count("leaves_received", "leaves received", t.leaves);
        r.count(
            "leaves_missing",
            "leaves missing",
            leaves_expected.saturating_sub(t.leaves),
        );
        r.count(
            "leaves_extra",
            "leaves extra",
            t.leaves.saturating_sub(leaves_expected),
        );
    }
    r.count("group_received", "group deliveries received", t.received);
    r.count(
        "group_missing",
        "group deliveries missing",
        t.gaps + t.unfinished,
    );
    r.count(
        "group_out_of_order",
        "group duplicated or reordered",
        t.out_of_order,
    );
    r.count("corrupt", "corrupted", t.corrupt);
    let none = "not measured (no group deliveries: add --talkers)";
    latency_rows(
        &mut r,
        &t.quiet,
        [
            "quiet_samples",
            "quiet_p50_ms",
            "quiet_p99_ms",
            "quiet_max_ms",
        ],
        [
            "group deliveries before",
            "group latency p50 before",
            "group latency p99 before",
            "group latency max before",
        ],
    );
    latency_rows(
        &mut r,
        &t.storm,
        [
            "storm_samples",
            "storm_p50_ms",
            "storm_p99_ms",
            "storm_max_ms",
        ],
        [
            "group deliveries during",
            "group latency p50 during",
            "group latency p99 during",
            "group latency max during",
        ],
    );
    let (quiet_p99, storm_p99) = (t.quiet.quantile(0.99), t.storm.quantile(0.99));
    if t.quiet.count() > 0 && t.storm.count() > 0 && quiet_p99 > 0 {
        r.real(
            "p99_ratio",
            "p99 during / before",
            storm_p99 as f64 / quiet_p99 as f64,
            2,
            "",
        );
    } else {
        r.unmeasured("p99_ratio", "p99 during / before", none);
    }
    r.real(
        "bench_cpu_s",
        "bench CPU during",
        end.own_cpu.as_secs_f64(),
        3,
        "s",
    );
    let per_arrival = |cpu: Duration| cpu.as_secs_f64() * 1e3 / plan.arrivals as f64;
    // Every member reads every join: the bench's share tells whether it,
    // not the server, held the arrival rate.
    r.real(
        "bench_cpu_ms_per_arrival",
        "bench CPU per arrival",
        per_arrival(end.own_cpu),
        4,
        "ms",
    );
    match end.server_cpu {
        Some(cpu) if cpu >= system::MIN_PROC_CPU => {
            r.real(
                "server_cpu_s",
                "server CPU during",
                cpu.as_secs_f64(),
                2,
                "s",
            );
            r.real(
                "server_cpu_ms_per_arrival",
                "server CPU per arrival",
                per_arrival(cpu),
                4,
                "ms",
            );
        }
        Some(_) => {
            r.unmeasured(
                "server_cpu_s",
                "server CPU during",
                system::TOO_SHORT_FOR_PROC_CPU,
            );
            r.unmeasured(
                "server_cpu_ms_per_arrival",
                "server CPU per arrival",
                "too short to measure",
            );
        }
        None => r.unmeasured(
            "server_cpu_ms_per_arrival",
            "server CPU per arrival",
            "not measured (add --server-pid PID)",
        ),
    }
    if let Some((took, own, server)) = end.departures {
        let secs = took.as_secs_f64();
        let rate = if secs > 0.0 {
            plan.arrivals as f64 / secs
        } else {
            0.0
        };
        r.real("departures_per_s", "departures/s", rate, 1, "");
        r.real(
            "bench_cpu_ms_per_departure",
            "bench CPU per departure",
            per_arrival(own),
            4,
            "ms",
        );
        match server {
            Some(cpu) if cpu >= system::MIN_PROC_CPU => r.real(
                "server_cpu_ms_per_departure",
                "server CPU per departure",
                per_arrival(cpu),
                4,
                "ms",
            ),
            Some(_) => r.unmeasured(
                "server_cpu_ms_per_departure",
                "server CPU per departure",
                "too short to measure",
            ),
            None => r.unmeasured(
                "server_cpu_ms_per_departure",
                "server CPU per departure",
                "not measured (add --server-pid PID)",
            ),
        }
    }
    r
}

/// How many samples a histogram holds, and its p50, p99 and maximum.
fn latency_rows(r: &mut Report, h: &Histogram, keys: [&'static str; 4], labels: [&'static str; 4]) {
    r.count(keys[0], labels[0], h.count());
    let ms = |ns: u64| ns as f64 / 1e6;
    let figures = [h.quantile(0.5), h.quantile(0.99), h.max()];
    for ((key, label), ns) in keys[1..].iter().zip(&labels[1..]).zip(figures) {
        match h.count() {
            0 => r.unmeasured(
                key,
                label,
                "not measured (no group deliveries: add --talkers)",
            ),
            _ => r.real(key, label, ms(ns), 3, "ms"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Welcome,
    /// `join` sent, waiting for `joined`.
    Joining,
    /// In the room; setup members wait for the phase to ping.
    In,
    /// Waiting for the pong of the ping named.
    Awaiting(u8),
    Done,
    /// `quit` sent (with `--leave`), waiting for `bye`.
    Leaving,
    /// `bye` came: the server closes the connection next.
    Left,
}

struct Member {
    conn: Option<Peer>,
    /// `t3`, `p7`, `a12`: for messages.
    label: String,
    /// Which arrival this is, if one.
    arrival: Option<usize>,
    /// Which talker this is, if one, and its next sequence number.
    talker: Option<(usize, u64)>,
    stage: Stage,
    /// Joins from now on are the storm's, and counted.
    counting: bool,
    /// The next sequence number expected from each talker, once known.
    next: Vec<Option<u64>>,
    /// Lines to send once the read is done.
    reply: Vec<u8>,
}

struct Worker<'a> {
    plan: &'a Plan,
    control: &'a Control,
    counters: &'a Counters,
    poll: Poll,
    index: usize,
    /// Setup connections still to open, last first.
    setup_to_open: Vec<usize>,
    /// Arrivals still to open, last first.
    arrivals_to_open: Vec<usize>,
    /// With `--leave`, this loop's arrivals still to quit, last first
    /// (member index and arrival number).
    to_quit: Vec<(usize, usize)>,
    members: Vec<Member>,
    talkers: Vec<usize>,
    buf: Vec<u8>,
    scanner: Scanner,
    tally: Tally,
    go_ns: u64,
    storm_ns: u64,
}

/// What line handling needs besides the member.
struct Context<'a> {
    plan: &'a Plan,
    control: &'a Control,
    counters: &'a Counters,
    scanner: &'a Scanner,
    tally: &'a mut Tally,
    storm_ns: u64,
    threads: usize,
    index: usize,
}

impl<'a> Worker<'a> {
    fn new(
        plan: &'a Plan,
        control: &'a Control,
        counters: &'a Counters,
        poll: Poll,
        index: usize,
    ) -> Worker<'a> {
        let threads = plan.threads;
        let mut setup: Vec<usize> = (index..plan.setup()).step_by(threads).collect();
        setup.reverse();
        let mut arrivals: Vec<usize> = (index..plan.arrivals).step_by(threads).collect();
        arrivals.reverse();
        Worker {
            plan,
            control,
            counters,
            poll,
            index,
            setup_to_open: setup,
            arrivals_to_open: arrivals,
            to_quit: Vec::new(),
            members: Vec::new(),
            talkers: Vec::new(),
            buf: vec![0; READ_BUF],
            scanner: Scanner::default(),
            tally: Tally::default(),
            go_ns: 0,
            storm_ns: 0,
        }
    }

    fn run(mut self) -> Tally {
        let mut events = Events::with_capacity(1024);
        let mut phase = CONNECT;
        loop {
            let now_phase = self.control.phase();
            if now_phase != phase {
                phase = now_phase;
                self.enter(phase);
            }
            if phase == STOP || self.control.failure().is_some() {
                break;
            }
            self.open_some(phase);
            let timeout = self.timeout(phase);
            if let Err(e) = wait(&mut self.poll, &mut events, timeout) {
                self.control.fail(format!("cannot wait for events: {e}"));
                break;
            }
            for event in events.iter() {
                if event.token() == WAKE {
                    continue;
                }
                let i = event.token().0;
                if event.is_writable() {
                    self.flush(i);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.readable(i);
                }
            }
            if phase == QUIET || phase == STORM {
                for k in 0..self.talkers.len() {
                    self.talk(self.talkers[k]);
                }
            }
        }
        self.finish()
    }

    fn open_some(&mut self, phase: u8) {
        if phase == CONNECT {
            for _ in 0..CONNECTS_PER_TURN {
                let Some(g) = self.setup_to_open.pop() else {
                    break;
                };
                let (label, talker) = match g < self.plan.talkers {
                    true => (format!("t{g}"), Some((g, 0))),
                    false => (format!("p{}", g - self.plan.talkers), None),
                };
                self.open(label, None, talker);
            }
        }
        if phase == LEAVE {
            // Each once the one before has its bye.
            while let Some(&(i, k)) = self.to_quit.last() {
                if self.counters.departed.load(Ordering::Acquire) < k {
                    break;
                }
                self.to_quit.pop();
                let quit = crate::wire::client_line(&ClientMsg::Quit { text: None });
                self.members[i].stage = Stage::Leaving;
                self.members[i].reply.extend_from_slice(&quit);
                self.send_reply(i);
            }
        }
        if phase == STORM {
            while let Some(&k) = self.arrivals_to_open.last() {
                if !self.due(k) {
                    break;
                }
                self.arrivals_to_open.pop();
                self.open(format!("a{k}"), Some(k), None);
            }
        }
    }

    /// Whether arrival `k` may connect now.
    fn due(&self, k: usize) -> bool {
        match self.plan.rate {
            0 => self.counters.arrived.load(Ordering::Acquire) >= k,
            rate => self.control.now_ns() >= self.storm_ns + arrival_at(k, rate),
        }
    }

    fn open(&mut self, label: String, arrival: Option<usize>, talker: Option<(usize, u64)>) {
        let plan = self.plan;
        let mut stream = match conn::connect(plan.addr, None, Duration::from_secs(10)) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .control
                    .fail(format!("cannot connect to {} ({label}): {e}", plan.addr));
            }
        };
        let token = Token(self.members.len());
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            return self.control.fail(format!("cannot watch a connection: {e}"));
        }
        if talker.is_some() {
            self.talkers.push(token.0);
        }
        self.members.push(Member {
            conn: Some(Peer::from_stream(stream)),
            label,
            arrival,
            talker,
            stage: Stage::Welcome,
            counting: false,
            next: vec![None; plan.talkers],
            reply: Vec::new(),
        });
    }

    fn enter(&mut self, phase: u8) {
        match phase {
            SYNC => self.ping_all(|m| m.arrival.is_none() && m.stage == Stage::In, SYNC),
            QUIET => self.go_ns = self.counters.go_ns.load(Ordering::Acquire),
            STORM => self.storm_ns = self.counters.storm_ns.load(Ordering::Acquire),
            DRAIN => {
                let said: Vec<(usize, u64)> = self
                    .talkers
                    .iter()
                    .filter_map(|&i| self.members[i].talker)
                    .collect();
                let mut all = lock(&self.counters.said);
                all.resize(self.plan.talkers, 0);
                for (t, n) in said {
                    all[t] = n;
                }
                drop(all);
                self.ping_all(|m| m.talker.is_some(), DRAIN);
            }
            CHECK => self.ping_all(|_| true, CHECK),
            LEAVE => {
                // Opened in order, so quitting from the back of the list
                // goes in order too.
                let mut mine: Vec<(usize, usize)> = (0..self.members.len())
                    .filter_map(|i| self.members[i].arrival.map(|k| (i, k)))
                    .collect();
                mine.reverse();
                self.to_quit = mine;
            }
            FINAL => self.ping_all(|m| m.arrival.is_none(), FINAL),
            _ => {}
        }
    }

    fn ping_all(&mut self, which: impl Fn(&Member) -> bool, phase: u8) {
        let ping = crate::wire::client_line(&ClientMsg::Ping { token: None });
        for i in 0..self.members.len() {
            if self.members[i].conn.is_some() && which(&self.members[i]) {
                self.members[i].stage = Stage::Awaiting(phase);
                self.members[i].reply.extend_from_slice(&ping);
                self.send_reply(i);
            }
        }
    }

    fn timeout(&self, phase: u8) -> Duration {
        const IDLE: Duration = Duration::from_millis(100);
        if phase == CONNECT && !self.setup_to_open.is_empty() {
            return Duration::ZERO;
        }
        let now = self.control.now_ns();
        let mut timeout = IDLE;
        if phase == STORM && self.plan.rate > 0 {
            if let Some(&k) = self.arrivals_to_open.last() {
                let due = self.storm_ns + arrival_at(k, self.plan.rate);
                timeout = timeout.min(Duration::from_nanos(due.saturating_sub(now)));
            }
        }
        if phase == QUIET || phase == STORM {
            for &i in &self.talkers {
                if let Some((t, seq)) = self.members[i].talker {
                    let due = self.go_ns + due_at(t, seq, self.plan.talkers, self.plan.chat_rate);
                    timeout = timeout.min(Duration::from_nanos(due.saturating_sub(now)));
                }
            }
        }
        timeout
    }

    /// Sends what talker `i` owes by now.
    fn talk(&mut self, i: usize) {
        let (plan, control) = (self.plan, self.control);
        let m = &mut self.members[i];
        let (Some(conn), Some((t, seq))) = (m.conn.as_mut(), m.talker.as_mut()) else {
            return;
        };
        let elapsed = control.now_ns().saturating_sub(self.go_ns);
        let until = due_count(*t, plan.talkers, plan.chat_rate, elapsed);
        if *seq >= until {
            return;
        }
        let sent_ns = control.now_ns();
        while *seq < until {
            let out = conn.out();
            let payload = Payload {
                sender: *t,
                seq: *seq,
                sent_ns,
            };
            scan::push_group_line(out, payload, PAYLOAD);
            if let Some(room) = &plan.room {
                // `..."}\n` becomes `...","room":"NAME"}\n`.
                out.truncate(out.len() - 2);
                out.push(b',');
                out.extend_from_slice(&room.field);
                out.extend_from_slice(b"}\n");
            }
            *seq += 1;
        }
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let Some(conn) = self.members[i].conn.as_mut() else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.closed(i, Some(e));
        }
    }

    fn send_reply(&mut self, i: usize) {
        let m = &mut self.members[i];
        let Some(conn) = m.conn.as_mut() else { return };
        conn.out().append(&mut m.reply);
        self.flush(i);
    }

    fn readable(&mut self, i: usize) {
        let Worker {
            plan,
            control,
            counters,
            members,
            buf,
            scanner,
            tally,
            storm_ns,
            index,
            ..
        } = self;
        let m = &mut members[i];
        let Some(conn) = m.conn.as_mut() else { return };
        let (label, state) = (&m.label, &mut m.stage);
        let mut line_state = LineState {
            label,
            arrival: m.arrival,
            stage: state,
            counting: &mut m.counting,
            next: &mut m.next,
            own_talker: m.talker.map(|(t, _)| t),
            reply: &mut m.reply,
        };
        let result = loop {
            match conn.read(buf) {
                Ok(Got::Data(n)) => {
                    let now = control.now_ns();
                    let mut cx = Context {
                        plan,
                        control,
                        counters,
                        scanner,
                        tally,
                        storm_ns: *storm_ns,
                        threads: plan.threads,
                        index: *index,
                    };
                    let lines = conn::lines(conn, &buf[..n], |line| {
                        line_state.on_line(line, now, &mut cx)
                    });
                    if let Err(e) = lines {
                        break Err(Some(e));
                    }
                }
                Ok(Got::Blocked) => break Ok(()),
                Ok(Got::Closed) => break Err(None),
                Err(e) => break Err(Some(e)),
            }
        };
        match result {
            Ok(()) if !self.members[i].reply.is_empty() => self.send_reply(i),
            Ok(()) => {}
            Err(e) => self.closed(i, e),
        }
    }

    fn closed(&mut self, i: usize, error: Option<std::io::Error>) {
        let m = &mut self.members[i];
        let Some(mut conn) = m.conn.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if m.stage == Stage::Left && error.is_none() {
            // It quit; the server closes after the bye.
            return;
        }
        let how = error.map_or("was closed by the server".to_string(), |e| {
            format!("failed ({e})")
        });
        self.control
            .fail(format!("connection {} {how} during the run", m.label));
    }

    fn finish(mut self) -> Tally {
        let said = lock(&self.counters.said).clone();
        for m in &self.members {
            for (t, next) in m.next.iter().enumerate() {
                let total = said.get(t).copied().unwrap_or(0);
                if m.talker.is_some_and(|(own, _)| own == t) {
                    continue;
                }
                self.tally.unfinished += match (next, m.arrival) {
                    (Some(n), _) => total.saturating_sub(*n),
                    // Setup members were there for every message.
                    (None, None) => total,
                    // An arrival counts from the first it got.
                    (None, Some(_)) => 0,
                };
            }
        }
        self.tally
    }
}

/// When (ns after the storm began) arrival `k` is due at `rate` a second.
fn arrival_at(k: usize, rate: u64) -> u64 {
    u64::try_from(k as u128 * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX)
}

/// One member's state as its lines are handled.
struct LineState<'m> {
    label: &'m str,
    arrival: Option<usize>,
    stage: &'m mut Stage,
    counting: &'m mut bool,
    next: &'m mut Vec<Option<u64>>,
    own_talker: Option<usize>,
    reply: &'m mut Vec<u8>,
}

impl LineState<'_> {
    fn on_line(&mut self, line: &[u8], now: u64, cx: &mut Context<'_>) {
        match cx.scanner.payload(line, PAYLOAD) {
            Scan::Ours(p) => return self.deliver(p, now, cx),
            Scan::Mangled => {
                cx.tally.corrupt += 1;
                return;
            }
            Scan::Other => {}
        }
        match cx.scanner.kind(line) {
            Some(b"join") => {
                let in_room = cx
                    .plan
                    .room
                    .as_ref()
                    .is_none_or(|r| memmem::find(line, &r.field).is_some());
                if *self.counting && in_room {
                    cx.tally.joins += 1;
                }
            }
            Some(b"welcome") if *self.stage == Stage::Welcome => self.welcomed(line, cx),
            Some(b"joined") if *self.stage == Stage::Joining => {
                // One `"id":` per user listed: the room as it was joined.
                let users = memmem::find_iter(line, b"\"id\":").count() as u64;
                self.in_room(users, cx);
            }
            Some(b"leave") if *self.counting && cx.plan.leave => cx.tally.leaves += 1,
            Some(b"bye") if *self.stage == Stage::Leaving => self.left(cx),
            Some(b"pong") => self.pong(cx),
            Some(b"error" | b"bye" | b"group" | b"leave") => self.other(line, now, cx),
            // Protocol v2: clients ignore what they do not know.
            _ => {}
        }
    }

    fn welcomed(&mut self, line: &[u8], cx: &mut Context<'_>) {
        let users = match ServerMsg::decode(line) {
            Ok(ServerMsg::Welcome { users, .. }) => users,
            _ => {
                cx.tally.corrupt += 1;
                return cx
                    .control
                    .fail(format!("{}: an unreadable welcome", self.label));
            }
        };
        match &cx.plan.room {
            Some(room) => {
                *self.stage = Stage::Joining;
                self.reply.extend_from_slice(&room.join_line);
            }
            None => self.in_room(users, cx),
        }
    }

    /// In the room, which held `users` (self included) as it came in.
    fn in_room(&mut self, users: u64, cx: &mut Context<'_>) {
        *self.stage = Stage::In;
        match self.arrival {
            None => {
                cx.counters.ready.fetch_add(1, Ordering::AcqRel);
            }
            Some(k) => {
                *self.counting = true;
                cx.counters.users_sum.fetch_add(users, Ordering::AcqRel);
                if k == 0 {
                    cx.counters.first_users.store(users, Ordering::Release);
                }
                cx.counters
                    .last_arrival_ns
                    .fetch_max(cx.control.now_ns(), Ordering::AcqRel);
                cx.counters.arrived.fetch_add(1, Ordering::AcqRel);
                // With --rate 0 the next arrival waits for this one.
                let next_loop = (k + 1) % cx.threads;
                if next_loop != cx.index {
                    cx.control.wake(next_loop);
                }
            }
        }
        cx.control.nudge();
    }

    /// This arrival has its `bye`: the next may quit.
    fn left(&mut self, cx: &mut Context<'_>) {
        *self.stage = Stage::Left;
        cx.counters
            .last_departure_ns
            .fetch_max(cx.control.now_ns(), Ordering::AcqRel);
        cx.counters.departed.fetch_add(1, Ordering::AcqRel);
        if let Some(k) = self.arrival {
            let next_loop = (k + 1) % cx.threads;
            if next_loop != cx.index {
                cx.control.wake(next_loop);
            }
        }
        cx.control.nudge();
    }

    fn pong(&mut self, cx: &mut Context<'_>) {
        let Stage::Awaiting(phase) = *self.stage else {
            return;
        };
        *self.stage = Stage::Done;
        if phase == FINAL || (phase == CHECK && !cx.plan.leave) {
            // The last pong: what comes after it is the run ending (the
            // other loops closing their connections), not the run.
            *self.counting = false;
        }
        let counter = match phase {
            SYNC => {
                *self.counting = true;
                &cx.counters.synced
            }
            DRAIN => &cx.counters.drained,
            FINAL => &cx.counters.finals,
            _ => &cx.counters.checked,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        cx.control.nudge();
    }

    fn other(&mut self, line: &[u8], now: u64, cx: &mut Context<'_>) {
        match ServerMsg::decode(line) {
            Ok(ServerMsg::Group { text, .. }) => match scan::payload_of_text(&text, PAYLOAD) {
                Scan::Ours(p) => self.deliver(p, now, cx),
                Scan::Mangled => cx.tally.corrupt += 1,
                Scan::Other => {}
            },
            Ok(ServerMsg::Error { code, message }) => {
                let hint = match code {
                    ErrorCode::UnknownType if cx.plan.room.is_some() => {
                        "; this server has no rooms yet: run without --room"
                    }
                    ErrorCode::ServerFull => "; start the server with a larger --max-clients",
                    _ => "",
                };
                cx.control.fail(format!(
                    "the server refused a line of {}: {code}: {}{hint}",
                    self.label,
                    crate::render::sanitize(&message)
                ));
            }
            Ok(ServerMsg::Bye { .. }) => cx
                .control
                .fail("the server said bye: it is shutting down".into()),
            // Leaves of others (not ours: ours stay to the end), or a line
            // of a newer protocol.
            _ => {}
        }
    }

    fn deliver(&mut self, p: Payload, now: u64, cx: &mut Context<'_>) {
        if self.own_talker == Some(p.sender) {
            cx.tally.corrupt += 1;
            return;
        }
        let Some(next) = self.next.get_mut(p.sender) else {
            cx.tally.corrupt += 1;
            return;
        };
        let t = &mut *cx.tally;
        t.received += 1;
        let latency = now.saturating_sub(p.sent_ns);
        match cx.storm_ns {
            s if s > 0 && p.sent_ns >= s => t.storm.record(latency),
            _ => t.quiet.record(latency),
        }
        let expected = next.get_or_insert(match self.arrival {
            // Setup members were in the room before the first message.
            None => 0,
            Some(_) => p.seq,
        });
        if p.seq < *expected {
            t.out_of_order += 1;
            return;
        }
        t.gaps += p.seq - *expected;
        *expected = p.seq + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_spread_evenly_over_the_second() {
        assert_eq!(arrival_at(0, 100), 0);
        assert_eq!(arrival_at(1, 100), 10_000_000);
        assert_eq!(arrival_at(250, 100), 2_500_000_000);
        assert_eq!(arrival_at(3, 3), 1_000_000_000);
    }

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
