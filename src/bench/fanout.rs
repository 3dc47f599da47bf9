//! `chat bench fanout`: senders talk in the group, every receiver must get
//! every message, in order, and the run measures how fast and how late.
//!
//! The run goes through phases, each started by the coordinating thread
//! once every connection has finished the one before:
//!
//! 1. `CONNECT`: each event loop connects its share (receivers `r0`...,
//!    senders `s0`...), reads the welcome and takes its nickname.
//! 2. `SYNC`: every connection pings. The server handles a connection's
//!    lines in order and queues its output in order, so a pong proves every
//!    `join` and `nick` of the setup has been read: nothing of it is left to
//!    pollute the measurement, and every receiver is in the room before the
//!    first message is sent.
//! 3. `GO`: senders write as fast as the server takes their lines (or at
//!    `--rate`), receivers check and time each delivery.
//! 4. `STOP`: when every receiver has everything, or nothing arrived for
//!    `--timeout`.
//!
//! One event loop (a `mio::Poll` on its own thread) per core, connections
//! dealt round-robin; no thread per connection.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::conn::{self, Link};
use super::control::{Control, EventLoop, lock};
use super::progress::Progress;
use super::proto::{self, PeerLine};
use super::renames;
use super::report::Report;
use super::scan::{self, Payload, Scan, Scanner};
use super::stats::Histogram;
use super::system;
use crate::cli::{BenchProto, FanoutArgs};
use crate::fail::{Fail, Outcome};
use crate::wire::{ClientMsg, ErrorCode, LeaveReason, ServerMsg};

const CONNECT: u8 = 0;
const SYNC: u8 = 1;
const GO: u8 = 2;
const STOP: u8 = 3;

/// Bytes read per system call: thousands of lines at a time.
const READ_BUF: usize = 256 << 10;
/// Lines an unpaced sender formats at once (stamped with one time).
const BATCH: usize = 32 << 10;
/// Bytes one sender may write before the loop serves the others.
const TURN: usize = 256 << 10;
/// Connections an event loop opens before it drains what arrived.
const CONNECTS_PER_TURN: usize = 8;
/// How a server may say it is holding a connection back: an `error` with
/// this code (not in protocol v2 yet; recognised so the report can say so).
const RATE_LIMITED: &[u8] = b"\"code\":\"rate_limited\"";
/// The longest a payload may be and still fit the server's default line
/// limit with the JSON around it.
const MAX_PAYLOAD: usize = 60_000;
/// The same for IRC, whose lines are at most 512 bytes with the sender's
/// prefix and `PRIVMSG #bench :` around the text.
const MAX_IRC_PAYLOAD: usize = 400;

/// What was asked for, fixed for the run.
struct Plan {
    /// The servers of `--server`; connection `g` goes to the `g % n`th.
    targets: Vec<conn::Target>,
    proto: BenchProto,
    receivers: usize,
    senders: usize,
    messages: u64,
    payload: usize,
    rate: u64,
    /// Renames a second beside the run (`--renames`).
    renames: u64,
    /// Unpaced, how many messages the senders may be ahead of the average
    /// receiver.
    window: u64,
    timeout: Duration,
}

/// Counters the event loops move and the coordinator watches.
#[derive(Default)]
struct Counters {
    named: AtomicUsize,
    synced: AtomicUsize,
    /// Receivers that have every message, or will get no more.
    finished: AtomicUsize,
    delivered: AtomicU64,
    /// Messages the senders have written, all together.
    sent: AtomicU64,
    go_ns: AtomicU64,
    /// Sending: (ns since GO, deliveries so far), one a coordinator tick.
    samples: Mutex<Vec<(u64, u64)>>,
    /// Connections the server dropped, by nickname, with what we know of why.
    lost: Mutex<BTreeMap<String, &'static str>>,
    /// The server said it is holding a sender back (`rate_limited`).
    throttled: AtomicBool,
}

/// One event loop's results.
#[derive(Default)]
struct Tally {
    received: u64,
    /// Messages skipped over (a later one arrived first).
    gaps: u64,
    /// Messages at or below one already seen: duplicated or reordered.
    out_of_order: u64,
    corrupt: u64,
    /// Messages each receiver was still waiting for at the end.
    unfinished: u64,
    /// When the last delivery arrived (ns since the epoch).
    last_ns: u64,
    latency: Histogram,
}

pub fn run(args: &FanoutArgs) -> Outcome {
    let plan = plan(args)?;
    let conns = plan.receivers + plan.senders;
    system::make_room_for(conns)?;
    let threads = args.threads.unwrap_or_else(system::cores).clamp(1, conns);

    let control = Control::new();
    let counters = Counters::default();
    let polls = control.event_loops(threads)?;
    let renamers = match plan.renames {
        0 => None,
        _ => {
            let addrs: Vec<_> = plan.targets.iter().map(|t| t.addr).collect();
            Some(renames::open(&addrs, plan.timeout).map_err(Fail::runtime)?)
        }
    };
    let progress = Progress::on_stderr();
    let (end, tallies, renamed) = std::thread::scope(|scope| {
        let renaming = renamers.map(|renamers| {
            scope.spawn(|| {
                // From the start of sending to its end.
                while control.phase() < GO {
                    std::thread::sleep(Duration::from_millis(1)); // waiting for the coordinator's phase
                }
                renames::run(renamers, plan.renames, || control.phase() == GO)
            })
        });
        let (end, tallies) = control.run_loops(
            polls,
            STOP,
            |w, poll| {
                let mine = (w..conns).step_by(threads).collect();
                Worker::new(&plan, &control, &counters, poll, mine).run()
            },
            || coordinate(&plan, &control, &counters, args.server_pid, &progress),
        );
        let renamed = renaming.map(|r| {
            r.join()
                .map_err(|_| "the renaming thread crashed".to_string())
                .and_then(|done| done)
        });
        (end, tallies, renamed)
    });
    progress.clear();
    let tallies = tallies?;
    let end = end?;
    let renamed = renamed.transpose().map_err(Fail::runtime)?;

    let mut total = Tally::default();
    for t in &tallies {
        total.received += t.received;
        total.gaps += t.gaps;
        total.out_of_order += t.out_of_order;
        total.corrupt += t.corrupt;
        total.unfinished += t.unfinished;
        total.last_ns = total.last_ns.max(t.last_ns);
        total.latency.merge(&t.latency);
    }
    let lost = lock(&counters.lost).clone();
    let go_ns = counters.go_ns.load(Ordering::Acquire);
    let said = counters.throttled.load(Ordering::Acquire);
    let mut report = report(&plan, threads, &total, &lost, go_ns, &end, said);
    if let Some(done) = renamed {
        report.count("renames", "renames beside", done.renames);
        let per_s = done.renames as f64 / done.seconds.max(f64::EPSILON);
        report.real("renames_per_s", "renames/s beside", per_s, 0, "");
    }
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if let Some(path) = &args.report {
        let mut samples = lock(&counters.samples).clone();
        samples.push((total.last_ns.saturating_sub(go_ns), total.received));
        samples.sort_unstable();
        let charts = super::page::fanout_charts(&samples, &total.latency);
        super::page::write(path, &report, &charts)?;
    }
    verdict(&plan, &total, &lost, &end)
}

fn plan(args: &FanoutArgs) -> Result<Plan, Fail> {
    if args.receivers == 0 || args.senders == 0 || args.messages == 0 {
        return Err(Fail::usage(
            "a fan-out needs at least one receiver, one sender and one message",
        ));
    }
    let max = match args.proto {
        BenchProto::Irc => MAX_IRC_PAYLOAD,
        _ => MAX_PAYLOAD,
    };
    if args.payload > max {
        return Err(Fail::usage(format!(
            "a payload of {} bytes would not fit the server's line limit; use at most {max}",
            args.payload
        )));
    }
    if args.renames > 0 && (args.proto != BenchProto::Chat || args.tls.tls) {
        return Err(Fail::usage(
            "--renames works with --proto chat over plain TCP only",
        ));
    }
    if args.tls.tls && !speaks_chat(args.proto) {
        return Err(Fail::usage("--tls works with --proto chat or ws only"));
    }
    // After the checks above: a usage error is reported before any lookup.
    let targets = conn::targets(&args.server, &args.tls, args.proto == BenchProto::Ws)?;
    // What one delivery weighs on the wire: the text and the JSON around it.
    let line = args.payload.max(32) as u64 + 64;
    Ok(Plan {
        targets,
        proto: args.proto,
        receivers: args.receivers,
        senders: args.senders,
        messages: args.messages,
        payload: args.payload,
        rate: args.rate,
        renames: args.renames,
        window: (args.window as u64 / line).max(1),
        timeout: args.timeout,
    })
}

/// How the run ended, as the coordinator saw it.
struct End {
    /// Every receiver got every message it was going to get.
    finished: bool,
    /// CPU time of the bench (and of the server, when its PID was given)
    /// from the start of sending to the end.
    own_cpu: Duration,
    server_cpu: Option<Duration>,
    /// Deliveries per second over the second half of the sending, when the
    /// run lasted long enough to tell: a flood-controlled sender's burst is
    /// over by then, and what is left is the limit.
    late_rate: Option<f64>,
}

/// Moves the phases on, watches for stalls, draws the progress line.
fn coordinate(
    plan: &Plan,
    control: &Control,
    counters: &Counters,
    server_pid: Option<u32>,
    progress: &Progress,
) -> Result<End, Fail> {
    let conns = plan.receivers + plan.senders;
    let expected = plan.receivers as u64 * plan.senders as u64 * plan.messages;
    let server_cpu = || server_pid.and_then(|pid| system::process_cpu(pid).ok());
    let mut cpu_at_go = (Duration::ZERO, None);
    let mut last_change = Instant::now();
    let mut last_seen = (0, 0, 0);
    let mut last_draw = (Instant::now(), 0);
    // (ns since GO, deliveries so far), one a tick while sending.
    let mut samples = lock(&counters.samples);
    let go_ns = || counters.go_ns.load(Ordering::Acquire);
    loop {
        std::thread::park_timeout(Duration::from_millis(50));
        if let Some(why) = control.failure() {
            return Err(Fail::runtime(why));
        }
        let named = counters.named.load(Ordering::Acquire);
        let synced = counters.synced.load(Ordering::Acquire);
        let delivered = counters.delivered.load(Ordering::Relaxed);
        if control.phase() == GO {
            samples.push((control.now_ns().saturating_sub(go_ns()), delivered));
        }
        match control.phase() {
            CONNECT if named == conns => control.set_phase(SYNC),
            SYNC if synced == conns => {
                cpu_at_go = (system::own_cpu(), server_cpu());
                counters.go_ns.store(control.now_ns(), Ordering::Release);
                control.set_phase(GO);
                last_draw = (Instant::now(), 0);
            }
            GO if counters.finished.load(Ordering::Acquire) == plan.receivers => {
                return Ok(End {
                    finished: true,
                    own_cpu: system::own_cpu().saturating_sub(cpu_at_go.0),
                    server_cpu: server_cpu()
                        .zip(cpu_at_go.1)
                        .map(|(b, a)| b.saturating_sub(a)),
                    late_rate: late_rate(&samples),
                });
            }
            _ => {}
        }
        if (named, synced, delivered) != last_seen {
            last_seen = (named, synced, delivered);
            last_change = Instant::now();
        } else if last_change.elapsed() >= plan.timeout {
            let waited = crate::units::format_duration(plan.timeout);
            return match control.phase() {
                CONNECT => Err(Fail::runtime(format!(
                    "setup stalled: after {waited} only {named} of {conns} connections had \
                     their welcome and nickname"
                ))),
                SYNC => Err(Fail::runtime(format!(
                    "setup stalled: after {waited} only {synced} of {conns} connections \
                     had their pong"
                ))),
                _ => Ok(End {
                    finished: false,
                    own_cpu: system::own_cpu().saturating_sub(cpu_at_go.0),
                    server_cpu: server_cpu()
                        .zip(cpu_at_go.1)
                        .map(|(b, a)| b.saturating_sub(a)),
                    late_rate: late_rate(&samples),
                }),
            };
        }
        if last_draw.0.elapsed() >= Duration::from_millis(250) {
            let rate = (delivered - last_draw.1) as f64 / last_draw.0.elapsed().as_secs_f64();
            progress.show(&match control.phase() {
                CONNECT => format!("fanout: {named} of {conns} connected and named"),
                SYNC => format!("fanout: {synced} of {conns} synchronised"),
                _ => format!(
                    "fanout: {} of {} deliveries, {}/s",
                    millions(delivered as f64),
                    millions(expected as f64),
                    millions(rate)
                ),
            });
            last_draw = (Instant::now(), delivered);
        }
    }
}

/// Whether the server speaks chat's protocol (over a JSON-lines socket
/// or the web door's WebSocket), rather than a peer's.
fn speaks_chat(proto: BenchProto) -> bool {
    matches!(proto, BenchProto::Chat | BenchProto::Ws)
}

/// The protocol's name in the report.
fn proto_name(proto: BenchProto) -> &'static str {
    match proto {
        BenchProto::Chat => "chat",
        BenchProto::Ws => "ws",
        BenchProto::Nats => "nats",
        BenchProto::Redis => "redis",
        BenchProto::Irc => "irc",
    }
}

/// Deliveries per second from the sample nearest half-way to the last,
/// when there are a few ticks in between.
fn late_rate(samples: &[(u64, u64)]) -> Option<f64> {
    let &(end_ns, end) = samples.last()?;
    let mid = samples.iter().position(|&(t, _)| t >= end_ns / 2)?;
    let (mid_ns, at_mid) = samples[mid];
    (samples.len() - mid > 4 && end_ns > mid_ns)
        .then(|| (end - at_mid) as f64 / ((end_ns - mid_ns) as f64 / 1e9))
}

fn millions(x: f64) -> String {
    format!("{:.2}M", x / 1e6)
}

fn report(
    plan: &Plan,
    threads: usize,
    t: &Tally,
    lost: &BTreeMap<String, &'static str>,
    go_ns: u64,
    end: &End,
    throttle_said: bool,
) -> Report {
    let pace = match plan.rate {
        0 => "unpaced".to_string(),
        r => format!("paced at {r} msg/s"),
    };
    let name = proto_name(plan.proto);
    let of = match plan.proto {
        BenchProto::Chat => String::new(),
        _ => format!(" ({name})"),
    };
    let servers = match plan.targets.len() {
        1 => String::new(),
        n => format!(", {n} servers"),
    };
    let mut r = Report::new(
        "fanout",
        format!(
            "chat bench fanout{of}: {} receivers, {} senders x {} messages, {}-byte payloads, {pace}, {threads} threads{servers}",
            plan.receivers, plan.senders, plan.messages, plan.payload
        ),
    );
    r.text("proto", "protocol", name.to_string());
    r.count("servers", "servers", plan.targets.len() as u64);
    r.count("receivers", "receivers", plan.receivers as u64);
    r.count("senders", "senders", plan.senders as u64);
    r.count("messages", "messages per sender", plan.messages);
    r.count("payload", "payload bytes", plan.payload as u64);
    r.count("rate", "rate (0: unpaced)", plan.rate);
    r.count("window", "window (messages)", plan.window);
    r.count("threads", "bench threads", threads as u64);
    let expected = plan.receivers as u64 * plan.senders as u64 * plan.messages;
    r.count("expected", "deliveries expected", expected);
    r.count("received", "deliveries received", t.received);
    r.count("missing", "missing", t.gaps + t.unfinished);
    r.count("out_of_order", "duplicated or reordered", t.out_of_order);
    r.count("corrupt", "corrupted", t.corrupt);
    r.text("lost", "connections lost", lost_list(lost));
    let elapsed = Duration::from_nanos(t.last_ns.saturating_sub(go_ns)).as_secs_f64();
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    r.real("elapsed_s", "elapsed", elapsed, 3, "s");
    r.real("deliveries_per_s", "deliveries/s", per_s(t.received), 0, "");
    let sent = plan.senders as u64 * plan.messages;
    r.real("messages_in_per_s", "messages in/s", per_s(sent), 0, "");
    let ms = |ns: u64| ns as f64 / 1e6;
    r.real(
        "latency_p50_ms",
        "latency p50",
        ms(t.latency.quantile(0.5)),
        3,
        "ms",
    );
    r.real(
        "latency_p99_ms",
        "latency p99",
        ms(t.latency.quantile(0.99)),
        3,
        "ms",
    );
    r.real(
        "latency_p999_ms",
        "latency p99.9",
        ms(t.latency.quantile(0.999)),
        3,
        "ms",
    );
    r.real(
        "latency_max_ms",
        "latency max",
        ms(t.latency.max()),
        3,
        "ms",
    );
    let ns_per = |cpu: Duration| match t.received {
        0 => 0.0,
        n => cpu.as_nanos() as f64 / n as f64,
    };
    let cores = |cpu: Duration| {
        if elapsed > 0.0 {
            cpu.as_secs_f64() / elapsed
        } else {
            0.0
        }
    };
    r.real(
        "bench_cpu_s",
        "bench CPU",
        end.own_cpu.as_secs_f64(),
        3,
        "s",
    );
    r.real(
        "bench_cpu_ns_per_delivery",
        "bench CPU per delivery",
        ns_per(end.own_cpu),
        1,
        "ns",
    );
    r.real("bench_cores", "bench cores busy", cores(end.own_cpu), 2, "");
    match end.server_cpu {
        Some(cpu) if cpu >= system::MIN_PROC_CPU => {
            r.real("server_cpu_s", "server CPU", cpu.as_secs_f64(), 2, "s");
            r.real(
                "server_cpu_ns_per_delivery",
                "server CPU per delivery",
                ns_per(cpu),
                1,
                "ns",
            );
            r.real("server_cores", "server cores busy", cores(cpu), 2, "");
        }
        Some(_) => {
            let why = system::TOO_SHORT_FOR_PROC_CPU;
            r.unmeasured("server_cpu_s", "server CPU", why);
            let short = "too short to measure";
            r.unmeasured(
                "server_cpu_ns_per_delivery",
                "server CPU per delivery",
                short,
            );
            r.unmeasured("server_cores", "server cores busy", short);
        }
        None => r.unmeasured(
            "server_cpu_ns_per_delivery",
            "server CPU per delivery",
            "not measured (add --server-pid PID)",
        ),
    }
    let busy = Busy {
        elapsed,
        late_rate: end.late_rate,
        latency_p50_ns: t.latency.quantile(0.5),
        bench_cores: cores(end.own_cpu),
        server_cores: end.server_cpu.map(cores),
    };
    let ours = speaks_chat(plan.proto);
    if let Some(warning) = throttle_warning(plan, t.received, &busy, throttle_said).filter(|_| ours)
    {
        r.warn(warning);
    }
    r
}

/// What tells a server holding the senders back from one that is busy.
struct Busy {
    elapsed: f64,
    /// Deliveries per second over the second half.
    late_rate: Option<f64>,
    latency_p50_ns: u64,
    bench_cores: f64,
    server_cores: Option<f64>,
}

/// Shortest run whose idleness means anything.
const MIN_JUDGED_S: f64 = 0.5;
/// A median delivery this late, with nobody busy, waited to be read.
const WAITED_NS: u64 = 20_000_000;
/// Less than this share of a core is idle, for the bench and the server.
const IDLE_CORES: f64 = 0.25;

/// Why the figures measure the server's flood control rather than the
/// server, when they do: the server said so, or deliveries waited long while
/// neither the bench nor the server had anything to do. A busy server or
/// bench also makes messages wait, but then one of them is using a core.
fn throttle_warning(plan: &Plan, received: u64, busy: &Busy, said: bool) -> Option<String> {
    let deliveries_per_s = match (busy.late_rate, busy.elapsed) {
        (Some(rate), _) => rate,
        (None, e) if e > 0.0 => received as f64 / e,
        _ => 0.0,
    };
    let per_sender = deliveries_per_s / plan.receivers as f64 / plan.senders as f64;
    let remedy = "to measure the server rather than its flood control, start it with --rate 0";
    if said {
        return Some(format!(
            "the server said it held the senders back (rate_limited); they got {per_sender:.0} \
             msg/s each through; {remedy}"
        ));
    }
    let idle = busy.bench_cores < IDLE_CORES && busy.server_cores.is_none_or(|c| c < IDLE_CORES);
    if busy.elapsed < MIN_JUDGED_S || busy.latency_p50_ns < WAITED_NS || !idle {
        return None;
    }
    Some(format!(
        "the senders were held to {per_sender:.0} msg/s each while messages waited \
         (latency p50 {:.0} ms) and the bench{} sat idle: that is the server's flood control \
         (its --rate), not its speed; {remedy}",
        busy.latency_p50_ns as f64 / 1e6,
        if busy.server_cores.is_some() {
            " and the server"
        } else {
            ""
        }
    ))
}

fn lost_list(lost: &BTreeMap<String, &'static str>) -> String {
    if lost.is_empty() {
        return "none".into();
    }
    let all: Vec<String> = lost.iter().map(|(n, why)| format!("{n} ({why})")).collect();
    all.join(", ")
}

/// Exit 0 only when every expected delivery arrived once, in order, intact.
fn verdict(plan: &Plan, t: &Tally, lost: &BTreeMap<String, &'static str>, end: &End) -> Outcome {
    let expected = plan.receivers as u64 * plan.senders as u64 * plan.messages;
    let missing = t.gaps + t.unfinished;
    if end.finished
        && missing == 0
        && t.out_of_order == 0
        && t.corrupt == 0
        && t.received == expected
        && lost.is_empty()
    {
        return Ok(());
    }
    let mut why = format!(
        "{missing} of {expected} deliveries missing, {} duplicated or reordered, {} corrupted",
        t.out_of_order, t.corrupt
    );
    if !lost.is_empty() {
        why.push_str(&format!("; the server dropped {}", lost_list(lost)));
    }
    if !end.finished {
        why.push_str(&format!(
            "; nothing arrived for {}",
            crate::units::format_duration(plan.timeout)
        ));
    }
    Err(Fail::runtime(why))
}

/// The setup steps of one connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Welcome,
    Nick,
    Named,
    Ping,
    Ready,
}

enum Role {
    Receiver {
        /// The next sequence number expected from each sender.
        next: Vec<u64>,
        /// Senders whose every message has arrived (or been skipped).
        complete: usize,
    },
    Sender {
        index: usize,
        next_seq: u64,
        /// The socket would block: wait for WRITABLE.
        blocked: bool,
    },
}

/// One connection's state apart from its socket, so that line handling can
/// change it while the socket is being read.
struct State {
    nick: String,
    role: Role,
    stage: Stage,
    /// Lines to send once the read is done (nick, ping).
    reply: Vec<u8>,
}

struct Member {
    /// `None` once the server has closed it.
    conn: Option<Link>,
    state: State,
}

/// What line handling needs besides the connection.
struct Context<'a> {
    plan: &'a Plan,
    control: &'a Control,
    counters: &'a Counters,
    scanner: &'a Scanner,
    tally: &'a mut Tally,
}

struct Worker<'a> {
    plan: &'a Plan,
    control: &'a Control,
    counters: &'a Counters,
    poll: Poll,
    /// Global connection numbers still to open, last first.
    to_open: Vec<usize>,
    members: Vec<Member>,
    /// Which members are senders.
    senders: Vec<usize>,
    buf: Vec<u8>,
    scanner: Scanner,
    tally: Tally,
    go_ns: u64,
}

impl<'a> Worker<'a> {
    fn new(
        plan: &'a Plan,
        control: &'a Control,
        counters: &'a Counters,
        poll: Poll,
        mut mine: Vec<usize>,
    ) -> Worker<'a> {
        mine.reverse();
        Worker {
            plan,
            control,
            counters,
            poll,
            to_open: mine,
            members: Vec::new(),
            senders: Vec::new(),
            buf: vec![0; READ_BUF],
            scanner: Scanner::default(),
            tally: Tally::default(),
            go_ns: 0,
        }
    }

    fn run(mut self) -> Tally {
        let mut events = Events::with_capacity(1024);
        let mut phase = CONNECT;
        loop {
            self.open_some();
            let now_phase = self.control.phase();
            if now_phase != phase {
                phase = now_phase;
                self.enter(phase);
            }
            if phase == STOP || self.control.failure().is_some() {
                break;
            }
            let timeout = self.timeout(phase);
            if !self.turn(&mut events, timeout) {
                break;
            }
            if phase == GO {
                for k in 0..self.senders.len() {
                    self.pump(self.senders[k]);
                }
            }
        }
        self.finish()
    }

    /// Opens the next few connections of this loop's share.
    fn open_some(&mut self) {
        for _ in 0..CONNECTS_PER_TURN {
            let Some(g) = self.to_open.pop() else { return };
            let plan = self.plan;
            let (nick, role) = if g < plan.receivers {
                let role = Role::Receiver {
                    next: vec![0; plan.senders],
                    complete: 0,
                };
                (format!("r{g}"), role)
            } else {
                let index = g - plan.receivers;
                let role = Role::Sender {
                    index,
                    next_seq: 0,
                    blocked: false,
                };
                (format!("s{index}"), role)
            };
            let timeout = Duration::from_secs(10);
            let target = &plan.targets[g % plan.targets.len()];
            let mut peer = match conn::open(target, None, None, timeout, g as u64) {
                Ok(s) => s,
                Err(e) => {
                    self.control
                        .fail(format!("cannot connect to {} ({nick}): {e}", target.addr));
                    return;
                }
            };
            let token = Token(self.members.len());
            if let Err(e) = self.poll.registry().register(
                peer.stream(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.control.fail(format!("cannot watch a connection: {e}"));
                return;
            }
            if matches!(role, Role::Sender { .. }) {
                self.senders.push(token.0);
            }
            // Redis says nothing until asked: such a connection is ready
            // for the ping as soon as it is open.
            let quiet_peer = !speaks_chat(plan.proto) && !proto::greets(plan.proto);
            if quiet_peer {
                self.counters.named.fetch_add(1, Ordering::AcqRel);
                self.control.nudge();
            }
            let mut reply = Vec::new();
            proto::open(plan.proto, &nick, &mut reply);
            self.members.push(Member {
                conn: Some(peer),
                state: State {
                    nick,
                    role,
                    stage: if quiet_peer {
                        Stage::Named
                    } else {
                        Stage::Welcome
                    },
                    reply,
                },
            });
            if !self.members[token.0].state.reply.is_empty() {
                self.send_reply(token.0);
            }
        }
    }

    fn enter(&mut self, phase: u8) {
        match phase {
            SYNC => {
                let ping = crate::wire::client_line(&ClientMsg::Ping { token: None });
                for i in 0..self.members.len() {
                    let m = &mut self.members[i];
                    if m.state.stage == Stage::Named {
                        m.state.stage = Stage::Ping;
                        match self.plan.proto {
                            BenchProto::Chat | BenchProto::Ws => {
                                m.state.reply.extend_from_slice(&ping)
                            }
                            other => {
                                let receiver = matches!(m.state.role, Role::Receiver { .. });
                                proto::sync(other, receiver, &mut m.state.reply);
                            }
                        }
                        self.send_reply(i);
                    }
                }
            }
            GO => self.go_ns = self.counters.go_ns.load(Ordering::Acquire),
            _ => {}
        }
    }

    fn timeout(&self, phase: u8) -> Duration {
        const IDLE: Duration = Duration::from_millis(100);
        if !self.to_open.is_empty() {
            return Duration::ZERO;
        }
        if phase != GO {
            return IDLE;
        }
        let now = self.control.now_ns();
        let mut timeout = IDLE;
        for m in self.senders.iter().map(|&i| &self.members[i]) {
            if let (
                Some(_),
                Role::Sender {
                    index,
                    next_seq,
                    blocked: false,
                },
            ) = (&m.conn, &m.state.role)
            {
                if *next_seq >= self.plan.messages {
                    continue;
                }
                if self.plan.rate == 0 {
                    // A full window empties as the receivers read.
                    return match window_room(self.plan, self.counters) {
                        0 => Duration::from_millis(1),
                        _ => Duration::ZERO,
                    };
                }
                let due = self.go_ns + due_at(*index, *next_seq, self.plan.senders, self.plan.rate);
                timeout = timeout.min(Duration::from_nanos(due.saturating_sub(now)));
            }
        }
        timeout
    }

    /// Sends what line handling queued (nick, ping).
    fn send_reply(&mut self, i: usize) {
        let m = &mut self.members[i];
        let Some(conn) = m.conn.as_mut() else { return };
        conn.out().append(&mut m.state.reply);
        if let Err(e) = conn.flush() {
            self.closed(i, Some(e));
        }
    }

    /// Writes what a sender owes: unpaced, until the socket would block or
    /// its turn is over; paced, what is due by now.
    fn pump(&mut self, i: usize) {
        let (plan, control, counters) = (self.plan, self.control, self.counters);
        let m = &mut self.members[i];
        let Some(conn) = m.conn.as_mut() else { return };
        let Role::Sender {
            index,
            next_seq,
            blocked,
        } = &mut m.state.role
        else {
            return;
        };
        if *blocked {
            return;
        }
        let until = if plan.rate == 0 {
            plan.messages
        } else {
            let elapsed = control.now_ns().saturating_sub(self.go_ns);
            due_count(*index, plan.senders, plan.rate, elapsed).min(plan.messages)
        };
        let mut written = 0;
        let result = loop {
            if conn.pending() == 0 {
                let room = match plan.rate {
                    0 => window_room(plan, counters),
                    _ => u64::MAX,
                };
                if *next_seq >= until || written >= TURN || room == 0 {
                    break Ok(());
                }
                let sent_ns = control.now_ns();
                let out = conn.out();
                let first = *next_seq;
                while *next_seq < until && *next_seq - first < room && out.len() < BATCH {
                    let payload = Payload {
                        sender: *index,
                        seq: *next_seq,
                        sent_ns,
                    };
                    proto::push_message(plan.proto, out, payload, plan.payload);
                    *next_seq += 1;
                }
                counters
                    .sent
                    .fetch_add(*next_seq - first, Ordering::Relaxed);
                written += out.len();
            }
            match conn::flush(conn) {
                Ok(true) => {}
                Ok(false) => {
                    *blocked = true;
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            self.closed(i, Some(e));
        }
    }

    /// The server closed connection `i` (or writing to it failed).
    fn closed(&mut self, i: usize, error: Option<std::io::Error>) {
        let m = &mut self.members[i];
        let Some(mut conn) = m.conn.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream());
        let nick = &m.state.nick;
        if m.state.stage != Stage::Ready {
            let how = error.map_or("closed".to_string(), |e| format!("failed ({e})"));
            self.control
                .fail(format!("connection {nick} {how} before the run started"));
            return;
        }
        let mut lost = lock(&self.counters.lost);
        lost.entry(nick.clone()).or_insert("disconnected");
        drop(lost);
        if let Role::Receiver { complete, .. } = &m.state.role
            && *complete < self.plan.senders
        {
            // It will get no more: count it finished, its rest missing.
            self.counters.finished.fetch_add(1, Ordering::AcqRel);
            self.control.nudge();
        }
    }

    fn finish(mut self) -> Tally {
        for m in &self.members {
            if let Role::Receiver { next, .. } = &m.state.role {
                self.tally.unfinished += next
                    .iter()
                    .map(|&n| self.plan.messages.saturating_sub(n))
                    .sum::<u64>();
            }
        }
        self.tally
    }
}

impl EventLoop for Worker<'_> {
    fn poll(&mut self) -> &mut Poll {
        &mut self.poll
    }

    fn control(&self) -> &Control {
        self.control
    }

    fn writable(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Role::Sender { blocked, .. } = &mut m.state.role {
            *blocked = false;
        }
        let Some(conn) = m.conn.as_mut() else { return };
        match conn::flush(conn) {
            Ok(true) => {}
            Ok(false) => {
                if let Role::Sender { blocked, .. } = &mut m.state.role {
                    *blocked = true;
                }
            }
            Err(e) => self.closed(i, Some(e)),
        }
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
            ..
        } = self;
        let m = &mut members[i];
        let Some(conn) = m.conn.as_mut() else { return };
        let state = &mut m.state;
        let before = tally.received;
        let result = conn::read_all(conn, buf, |conn, data| {
            let now = control.now_ns();
            let mut cx = Context {
                plan,
                control,
                counters,
                scanner,
                tally,
            };
            conn::lines(conn, data, |line| state.on_line(line, now, &mut cx))
        });
        let delivered = self.tally.received - before;
        if delivered > 0 {
            self.tally.last_ns = self.control.now_ns();
            self.counters
                .delivered
                .fetch_add(delivered, Ordering::Relaxed);
        }
        match result {
            Ok(()) => {
                if !self.members[i].state.reply.is_empty() {
                    self.send_reply(i);
                }
            }
            Err(e) => self.closed(i, e),
        }
    }
}

impl State {
    fn on_line(&mut self, line: &[u8], now: u64, cx: &mut Context<'_>) {
        if !speaks_chat(cx.plan.proto) {
            return self.on_peer_line(line, now, cx);
        }
        match cx.scanner.payload(line, cx.plan.payload) {
            Scan::Ours(p) => self.deliver(p, now, cx),
            Scan::Mangled => self.mangled(cx),
            Scan::Other => {
                let kind = cx.scanner.kind(line);
                // Setup chatter of other connections: thousands of lines
                // per connection at scale, none of which matter here.
                if kind == Some(b"join") || (kind == Some(b"nick") && self.stage != Stage::Nick) {
                    return;
                }
                if kind == Some(b"error") && memchr::memmem::find(line, RATE_LIMITED).is_some() {
                    cx.counters.throttled.store(true, Ordering::Release);
                    cx.control.nudge();
                    return;
                }
                match ServerMsg::decode(line) {
                    Ok(msg) => self.on_message(msg, now, cx),
                    Err(e) => {
                        cx.tally.corrupt += 1;
                        cx.control.fail(format!("{}: {e}", self.nick));
                    }
                }
            }
        }
    }

    fn on_message(&mut self, msg: ServerMsg<'static>, now: u64, cx: &mut Context<'_>) {
        match msg {
            ServerMsg::Welcome { .. } if self.stage == Stage::Welcome => {
                self.stage = Stage::Nick;
                let nick = ClientMsg::Nick {
                    nick: Cow::Borrowed(&self.nick),
                };
                self.reply
                    .extend_from_slice(&crate::wire::client_line(&nick));
            }
            ServerMsg::Nick { new, .. } if self.stage == Stage::Nick && new == self.nick => {
                self.stage = Stage::Named;
                cx.counters.named.fetch_add(1, Ordering::AcqRel);
                cx.control.nudge();
            }
            ServerMsg::Pong { .. } if self.stage == Stage::Ping => {
                self.stage = Stage::Ready;
                cx.counters.synced.fetch_add(1, Ordering::AcqRel);
                cx.control.nudge();
            }
            ServerMsg::Group { text, .. } => match scan::payload_of_text(&text, cx.plan.payload) {
                Scan::Ours(p) => self.deliver(p, now, cx),
                Scan::Mangled => self.mangled(cx),
                // Someone else talking in the room: not ours to count.
                Scan::Other => {}
            },
            ServerMsg::Leave {
                nick,
                reason: LeaveReason::Slow,
                ..
            } => {
                let nick = crate::render::sanitize(&nick).into_owned();
                lock(&cx.counters.lost).insert(nick, "disconnected as slow");
            }
            ServerMsg::Error { code, message } => {
                let hint = match code {
                    ErrorCode::NickInUse => "; is another bench running against this server?",
                    ErrorCode::ServerFull => "; start the server with a larger --max-clients",
                    _ => "",
                };
                cx.control.fail(format!(
                    "the server refused a line of {}: {code}: {}{hint}",
                    self.nick,
                    crate::render::sanitize(&message)
                ));
            }
            ServerMsg::Bye { .. } => {
                cx.control
                    .fail("the server said bye: it is shutting down".into());
            }
            _ => {}
        }
    }

    /// A line from NATS or Redis: a message body on its own line, or what
    /// the setup waits for.
    fn on_peer_line(&mut self, line: &[u8], now: u64, cx: &mut Context<'_>) {
        let body = line.strip_suffix(b"\r").unwrap_or(line);
        match proto::body(cx.plan.proto, body).map(|b| scan::payload_of_bytes(b, cx.plan.payload)) {
            Some(Scan::Ours(p)) => return self.deliver(p, now, cx),
            Some(Scan::Mangled) => return self.mangled(cx),
            Some(Scan::Other) | None => {}
        }
        let kind = cx.plan.proto;
        match proto::classify(kind, line) {
            PeerLine::Greeting if self.stage == Stage::Welcome => {
                let receiver = matches!(self.role, Role::Receiver { .. });
                proto::hello(kind, receiver, &mut self.reply);
                self.stage = Stage::Named;
                cx.counters.named.fetch_add(1, Ordering::AcqRel);
                cx.control.nudge();
            }
            PeerLine::Ping => proto::pong(kind, line, &mut self.reply),
            PeerLine::Synced if self.stage == Stage::Ping => {
                self.stage = Stage::Ready;
                cx.counters.synced.fetch_add(1, Ordering::AcqRel);
                cx.control.nudge();
            }
            PeerLine::Error(e) => cx.control.fail(format!(
                "the server refused a line of {}: {}",
                self.nick,
                crate::render::sanitize(e)
            )),
            _ => {}
        }
    }

    fn deliver(&mut self, p: Payload, now: u64, cx: &mut Context<'_>) {
        let Role::Receiver { next, complete } = &mut self.role else {
            // Senders hear each other; they only need to keep reading.
            return;
        };
        let messages = cx.plan.messages;
        let Some(expected) = next.get_mut(p.sender).filter(|_| p.seq < messages) else {
            cx.tally.corrupt += 1;
            return;
        };
        let t = &mut *cx.tally;
        t.received += 1;
        t.latency.record(now.saturating_sub(p.sent_ns));
        if p.seq < *expected {
            t.out_of_order += 1;
            return;
        }
        t.gaps += p.seq - *expected;
        *expected = p.seq + 1;
        if *expected == messages {
            *complete += 1;
            if *complete == next.len() {
                cx.counters.finished.fetch_add(1, Ordering::AcqRel);
                cx.control.nudge();
            }
        }
    }

    fn mangled(&self, cx: &mut Context<'_>) {
        if matches!(self.role, Role::Receiver { .. }) {
            cx.tally.corrupt += 1;
        }
    }
}

/// Messages the senders may still write before they are a window ahead of
/// the average receiver. Unpaced senders outrun receivers that share the
/// machine with the server, and the server rightly drops a receiver whose
/// queue outgrows its limit; the window keeps the bench from causing the
/// very loss it looks for, without limiting a server that keeps up.
fn window_room(plan: &Plan, counters: &Counters) -> u64 {
    let received = counters.delivered.load(Ordering::Relaxed) / plan.receivers as u64;
    let sent = counters.sent.load(Ordering::Relaxed);
    (plan.window + received).saturating_sub(sent)
}

/// Paced sending: message `k` of the whole run (sender `k % senders`, its
/// `k / senders`th) is due `k / rate` seconds after the start, so the
/// senders take turns evenly. How many of sender `i`'s are due `t_ns` in.
pub(super) fn due_count(i: usize, senders: usize, rate: u64, t_ns: u64) -> u64 {
    let k = (u128::from(t_ns) * u128::from(rate) / 1_000_000_000) as u64;
    match k.checked_sub(i as u64) {
        None => 0,
        Some(after) => after / senders as u64 + 1,
    }
}

/// When (ns after the start) sender `i`'s message `seq` is due.
pub(super) fn due_at(i: usize, seq: u64, senders: usize, rate: u64) -> u64 {
    let k = u128::from(seq) * senders as u128 + i as u128;
    u64::try_from((k * 1_000_000_000).div_ceil(u128::from(rate))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_senders_take_turns() {
        // 4 senders at 1000 msg/s in all: one message a millisecond.
        let due = |i, ms: u64| due_count(i, 4, 1000, ms * 1_000_000);
        assert_eq!([due(0, 0), due(1, 0), due(3, 0)], [1, 0, 0]);
        assert_eq!([due(0, 3), due(1, 3), due(3, 3)], [1, 1, 1]);
        assert_eq!([due(0, 4), due(1, 4)], [2, 1]);
        assert_eq!(due(2, 1000), 250);
        assert_eq!(due_at(0, 1, 4, 1000), 4_000_000);
        assert_eq!(due_at(3, 0, 4, 1000), 3_000_000);
        for (i, seq) in [(0, 1), (1, 7), (3, 99)] {
            let at = due_at(i, seq, 4, 1000);
            assert_eq!(due_count(i, 4, 1000, at), seq + 1);
            assert_eq!(due_count(i, 4, 1000, at - 1), seq);
        }
    }
}
