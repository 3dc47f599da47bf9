//! `chat bench idle`: open many connections, hold them doing nothing, and
//! report what each costs the server in memory and whether it still answers
//! promptly.
//!
//! Phases, each started by the coordinating thread once every connection
//! has finished the one before:
//!
//! 1. `CONNECT`: each event loop opens its share and reads the welcomes,
//!    draining the `join` every newcomer causes on all the others (half of
//!    CONNS squared lines: 50 million at 10 000 connections).
//! 2. `SYNC`: every connection pings; the pongs prove the server has
//!    nothing left queued for anyone, so what it holds is the idle cost.
//! 3. `PROBE`: the first connection pings [`PROBES`] times in turn, timing
//!    each round trip.
//! 4. `HOLD`: nothing happens for `--hold`; then the server's memory is read
//!    and the run ends.
//!
//! With `--unread` every connection but the first stops reading once it has
//! its welcome, with a small receive buffer ([`UNREAD_RCVBUF`]), so the
//! joins that follow pile up in the server. Only the first connection
//! syncs; the joins it has read up to its pong are all the server had sent
//! before, so every other connection has been told of everyone too. A
//! `leave` it reads means the server dropped a non-reader, which fails the
//! run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::conn::{self, Link};
use super::control::{Control, EventLoop, lock};
use super::progress::Progress;
use super::proto::{self, PeerLine};
use super::report::Report;
use super::scan::Scanner;
use super::stats::Histogram;
use super::system;
use crate::cli::{BenchProto, IdleArgs, IdleProto};
use crate::fail::{Fail, Outcome};
use crate::wire::{ClientMsg, ErrorCode, ServerMsg};

const CONNECT: u8 = 0;
const SYNC: u8 = 1;
const PROBE: u8 = 2;
const HOLD: u8 = 3;
const STOP: u8 = 4;

/// Round trips timed while the connections are held.
const PROBES: usize = 100;
const READ_BUF: usize = 256 << 10;
const CONNECTS_PER_TURN: usize = 16;
/// `SO_RCVBUF` of a connection that does not read (`--unread`); the kernel
/// doubles it and holds about that much, the server the rest.
const UNREAD_RCVBUF: usize = 4096;

struct Plan {
    /// The servers of `--server`; connection `g` goes to the `g % n`th.
    targets: Vec<conn::Target>,
    conns: usize,
    per_source: usize,
    timeout: Duration,
    /// Only connection 0 reads past its welcome (`--unread`).
    unread: bool,
    /// Chat, or IRC: registered with `NICK`/`USER`, welcomed by `001`.
    irc: bool,
}

impl Plan {
    /// Connections that sync with a ping once all are welcomed.
    fn syncing(&self) -> usize {
        if self.unread { 1 } else { self.conns }
    }
}

#[derive(Default)]
struct Counters {
    welcomed: AtomicUsize,
    synced: AtomicUsize,
    probed: AtomicUsize,
    /// `leave`s connection 0 read under `--unread`: non-readers dropped.
    dropped: AtomicUsize,
    round_trips: std::sync::Mutex<Histogram>,
    /// With `--server-pid`, while connecting: (connections welcomed, the
    /// server's resident bytes), one a coordinator tick.
    rss: std::sync::Mutex<Vec<(u64, u64)>>,
}

pub fn run(args: &IdleArgs) -> Outcome {
    if args.conns == 0 {
        return Err(Fail::usage("an idle run needs at least one connection"));
    }
    let irc = args.proto == IdleProto::Irc;
    if irc && args.unread {
        return Err(Fail::usage("--unread works with --proto chat only"));
    }
    if irc && args.tls.tls {
        return Err(Fail::usage("--tls works with --proto chat only"));
    }
    let targets = conn::targets(&args.server, &args.tls, args.proto == IdleProto::Ws)?;
    let addr = targets[0].addr;
    system::make_room_for(args.conns)?;
    let plan = Plan {
        targets,
        conns: args.conns,
        per_source: system::ports_per_source(),
        timeout: args.timeout,
        unread: args.unread,
        irc,
    };
    // Refuse at once what cannot be spread over source addresses.
    let sources = match system::source_for(0, plan.conns, addr, plan.per_source)? {
        None => 1,
        Some(_) => plan.conns.div_ceil(plan.per_source),
    };
    let threads = args
        .threads
        .unwrap_or_else(system::cores)
        .clamp(1, plan.conns);
    let rss = |pid: u32| system::resident_bytes(pid).map_err(Fail::runtime);
    let rss_before = args.server_pid.map(rss).transpose()?;

    let control = Control::new();
    let counters = Counters::default();
    let polls = control.event_loops(threads)?;
    let progress = Progress::on_stderr();
    let (end, joined) = control.run_loops(
        polls,
        STOP,
        |w, poll| {
            let mine = (w..plan.conns).step_by(threads).collect();
            Worker::new(&plan, &control, &counters, poll, mine).run()
        },
        || coordinate(&plan, &control, &counters, args, &progress),
    );
    progress.clear();
    joined?;
    let (connected_in, dropped) = end?;
    let rss_after = args.server_pid.map(rss).transpose()?;
    if dropped > 0 {
        return Err(Fail::runtime(format!(
            "the server dropped {dropped} of the {} connections that did not read \
             (a larger --max-queue keeps them)",
            plan.conns - 1
        )));
    }

    let mut r = Report::new(
        "idle",
        format!(
            "chat bench idle{}: {} connections held {}, {threads} threads{}",
            match args.proto {
                IdleProto::Chat => "",
                IdleProto::Ws => " (ws)",
                IdleProto::Irc => " (irc)",
            },
            plan.conns,
            crate::units::format_duration(args.hold),
            match plan.targets.len() {
                1 => String::new(),
                n => format!(", {n} servers"),
            }
        ),
    );
    let proto = match args.proto {
        IdleProto::Chat => "chat",
        IdleProto::Ws => "ws",
        IdleProto::Irc => "irc",
    };
    r.text("proto", "protocol", proto.to_string());
    r.count("servers", "servers", plan.targets.len() as u64);
    r.count("conns", "connections", plan.conns as u64);
    r.count("sources", "source addresses", sources as u64);
    r.count("threads", "bench threads", threads as u64);
    if plan.unread {
        r.text(
            "unread",
            "connections not reading",
            format!(
                "{} of {} (stopped after their welcome; receive buffer {UNREAD_RCVBUF} B)",
                plan.conns - 1,
                plan.conns
            ),
        );
    }
    r.real(
        "connect_s",
        "all connected in",
        connected_in.as_secs_f64(),
        3,
        "s",
    );
    let trips = lock(&counters.round_trips).clone();
    let ms = |ns: u64| ns as f64 / 1e6;
    r.count("pings", "ping round trips timed", trips.count());
    r.real(
        "ping_p50_ms",
        "ping round trip p50",
        ms(trips.quantile(0.5)),
        3,
        "ms",
    );
    r.real(
        "ping_max_ms",
        "ping round trip max",
        ms(trips.max()),
        3,
        "ms",
    );
    if rss_before.is_none() {
        r.unmeasured(
            "rss_per_conn_bytes",
            "server RSS per connection",
            "not measured (add --server-pid PID)",
        );
    }
    if let (Some((before, _)), Some((after, peak))) = (rss_before, rss_after) {
        let per_conn = after.saturating_sub(before) as f64 / plan.conns as f64;
        let kib = |b: u64| b as f64 / 1024.0;
        r.real("rss_before_kib", "server RSS before", kib(before), 0, "KiB");
        r.real("rss_after_kib", "server RSS after", kib(after), 0, "KiB");
        // Well above `after`: the server gave back memory after the joins.
        r.real("rss_peak_kib", "server RSS peak", kib(peak), 0, "KiB");
        r.real(
            "rss_per_conn_bytes",
            "server RSS per connection",
            per_conn,
            0,
            "bytes",
        );
    }
    if args.json {
        println!("{}", r.json());
    } else {
        print!("{}", r.table());
    }
    if let Some(path) = &args.report {
        let per_conn = rss_before.zip(rss_after).map(|((before, _), (after, _))| {
            after.saturating_sub(before) as f64 / plan.conns as f64
        });
        let samples = lock(&counters.rss).clone();
        let charts = super::page::idle_charts(&samples, rss_before.map(|b| b.0), per_conn);
        super::page::write(path, &r, &charts)?;
    }
    Ok(())
}

/// Moves the phases on and watches for stalls; returns how long connecting
/// and welcoming everyone took, and how many connections the server dropped
/// under `--unread` (the leaves connection 0 read).
fn coordinate(
    plan: &Plan,
    control: &Control,
    counters: &Counters,
    args: &IdleArgs,
    progress: &Progress,
) -> Result<(Duration, usize), Fail> {
    let started = Instant::now();
    let mut connected_in = Duration::ZERO;
    let mut hold_until = None;
    let mut last_seen = (0, 0, 0);
    let mut last_change = Instant::now();
    let mut last_draw = Instant::now();
    loop {
        std::thread::park_timeout(Duration::from_millis(50));
        if let Some(why) = control.failure() {
            return Err(Fail::runtime(why));
        }
        let welcomed = counters.welcomed.load(Ordering::Acquire);
        let synced = counters.synced.load(Ordering::Acquire);
        let probed = counters.probed.load(Ordering::Acquire);
        if let Some(pid) = args.server_pid.filter(|_| control.phase() == CONNECT)
            && let Ok((rss, _)) = system::resident_bytes(pid)
        {
            lock(&counters.rss).push((welcomed as u64, rss));
        }
        match control.phase() {
            CONNECT if welcomed == plan.conns => {
                connected_in = started.elapsed();
                control.set_phase(SYNC);
            }
            SYNC if synced == plan.syncing() => control.set_phase(PROBE),
            PROBE if probed == PROBES => {
                hold_until = Some(Instant::now() + args.hold);
                control.set_phase(HOLD);
            }
            HOLD if hold_until.is_some_and(|t| Instant::now() >= t) => {
                // Read before the loops close their connections, whose
                // leaves connection 0 may read too.
                let dropped = counters.dropped.load(Ordering::Acquire);
                return Ok((connected_in, dropped));
            }
            _ => {}
        }
        if (welcomed, synced, probed) != last_seen || control.phase() == HOLD {
            last_seen = (welcomed, synced, probed);
            last_change = Instant::now();
        } else if last_change.elapsed() >= plan.timeout {
            let waited = crate::units::format_duration(plan.timeout);
            return Err(Fail::runtime(match control.phase() {
                CONNECT => format!(
                    "stalled: after {waited} only {welcomed} of {} connections had their welcome",
                    plan.conns
                ),
                SYNC => format!(
                    "stalled: after {waited} only {synced} of {} connections had their pong",
                    plan.syncing()
                ),
                _ => format!("stalled: the server did not answer a ping within {waited}"),
            }));
        }
        if last_draw.elapsed() >= Duration::from_millis(250) {
            progress.show(&match control.phase() {
                CONNECT => format!("idle: {welcomed} of {} welcomed", plan.conns),
                SYNC => format!("idle: {synced} of {} synchronised", plan.syncing()),
                PROBE => format!("idle: ping {probed} of {PROBES}"),
                _ => "idle: holding".to_string(),
            });
            last_draw = Instant::now();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Welcome,
    Welcomed,
    Ping,
    Ready,
}

struct Worker<'a> {
    plan: &'a Plan,
    control: &'a Control,
    counters: &'a Counters,
    poll: Poll,
    to_open: Vec<usize>,
    conns: Vec<Option<Link>>,
    stages: Vec<Stage>,
    buf: Vec<u8>,
    scanner: Scanner,
    /// This loop holds connection 0, which times the round trips.
    first: bool,
    /// When the probe ping in flight was sent.
    probe_sent: Option<u64>,
}

impl<'a> Worker<'a> {
    fn new(
        plan: &'a Plan,
        control: &'a Control,
        counters: &'a Counters,
        poll: Poll,
        mut mine: Vec<usize>,
    ) -> Worker<'a> {
        let first = mine.first() == Some(&0);
        mine.reverse();
        Worker {
            plan,
            control,
            counters,
            poll,
            to_open: mine,
            conns: Vec::new(),
            stages: Vec::new(),
            buf: vec![0; READ_BUF],
            scanner: Scanner::default(),
            first,
            probe_sent: None,
        }
    }

    fn run(mut self) {
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
                return;
            }
            let timeout = if self.to_open.is_empty() {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            if !self.turn(&mut events, timeout) {
                return;
            }
        }
    }

    fn open_some(&mut self) {
        for _ in 0..CONNECTS_PER_TURN {
            let Some(g) = self.to_open.pop() else { return };
            let plan = self.plan;
            // Connection 0 always reads: it syncs and times the pings.
            let recv_buf = (plan.unread && g != 0).then_some(UNREAD_RCVBUF);
            let target = &plan.targets[g % plan.targets.len()];
            let opened = system::source_for(g, plan.conns, target.addr, plan.per_source)
                .map_err(|f| f.message)
                .and_then(|source| {
                    let timeout = Duration::from_secs(10);
                    conn::open(target, source, recv_buf, timeout, g as u64).map_err(|e| {
                        let from = source.map_or(String::new(), |s| format!(" from {s}"));
                        format!("cannot open connection {g} to {}{from}: {e}", target.addr)
                    })
                });
            let mut peer = match opened {
                Ok(s) => s,
                Err(why) => return self.control.fail(why),
            };
            let token = Token(self.conns.len());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self
                .poll
                .registry()
                .register(peer.stream(), token, interest)
            {
                return self.control.fail(format!("cannot watch a connection: {e}"));
            }
            if plan.irc {
                proto::open(BenchProto::Irc, &format!("i{g}"), peer.out());
            }
            self.conns.push(Some(peer));
            self.stages.push(Stage::Welcome);
            if plan.irc {
                self.flush(token.0);
            }
        }
    }

    fn enter(&mut self, phase: u8) {
        match phase {
            SYNC => {
                for i in 0..self.conns.len() {
                    if self.stages[i] == Stage::Welcomed && self.reads(i) {
                        self.stages[i] = Stage::Ping;
                        self.send_ping(i);
                    }
                }
            }
            // Connections are dealt round-robin from 0, so the first loop
            // holds connection 0, which does the probing.
            PROBE if self.first => self.probe(),
            _ => {}
        }
    }

    /// Whether connection `i` of this loop reads past its welcome: all do,
    /// but under `--unread` only connection 0.
    fn reads(&self, i: usize) -> bool {
        !self.plan.unread || (self.first && i == 0)
    }

    fn probe(&mut self) {
        self.probe_sent = Some(self.control.now_ns());
        self.send_ping(0);
    }

    fn send_ping(&mut self, i: usize) {
        if let Some(conn) = self.conns[i].as_mut() {
            if self.plan.irc {
                proto::sync(BenchProto::Irc, false, conn.out());
            } else {
                let ping = crate::wire::client_line(&ClientMsg::Ping { token: None });
                conn.out().extend_from_slice(&ping);
            }
        }
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let Some(conn) = self.conns[i].as_mut() else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.closed(i, Some(e));
        }
    }

    fn pong(&mut self, i: usize) {
        if self.stages[i] == Stage::Ping {
            self.stages[i] = Stage::Ready;
            self.counters.synced.fetch_add(1, Ordering::AcqRel);
            self.control.nudge();
            return;
        }
        let Some(sent) = self.probe_sent.take() else {
            return;
        };
        let rtt = self.control.now_ns().saturating_sub(sent);
        lock(&self.counters.round_trips).record(rtt);
        let done = self.counters.probed.fetch_add(1, Ordering::AcqRel) + 1;
        self.control.nudge();
        if done < PROBES {
            self.probe();
        }
    }

    fn closed(&mut self, i: usize, error: Option<std::io::Error>) {
        let Some(mut conn) = self.conns[i].take() else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream());
        let how = error.map_or("closed".to_string(), |e| format!("failed ({e})"));
        self.control
            .fail(format!("a held connection {how}: the server dropped it"));
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
        self.flush(i);
    }

    fn readable(&mut self, i: usize) {
        if self.plan.irc {
            return self.readable_irc(i);
        }
        if self.stages[i] != Stage::Welcome && !self.reads(i) {
            // Under --unread: it never reads again, whatever arrives.
            return;
        }
        let count_leaves = self.plan.unread;
        let stops = !self.reads(i);
        let Some(conn) = self.conns[i].as_mut() else {
            return;
        };
        let (scanner, stage) = (&self.scanner, &mut self.stages[i]);
        let (control, counters) = (self.control, self.counters);
        let mut pongs = 0;
        let result = conn::read_while(conn, &mut self.buf, |conn, data| {
            conn::lines(conn, data, |line| match scanner.kind(line) {
                Some(b"leave") if count_leaves => {
                    counters.dropped.fetch_add(1, Ordering::AcqRel);
                }
                Some(b"join" | b"leave" | b"nick") => {}
                Some(b"welcome") if *stage == Stage::Welcome => {
                    *stage = Stage::Welcomed;
                    counters.welcomed.fetch_add(1, Ordering::AcqRel);
                    control.nudge();
                }
                Some(b"pong") => pongs += 1,
                _ => other(line, i, control),
            })?;
            Ok(!(stops && *stage != Stage::Welcome))
        });
        for _ in 0..pongs {
            self.pong(i);
        }
        if let Err(e) = result {
            self.closed(i, e);
        }
    }
}

impl Worker<'_> {
    /// An IRC connection's lines: its welcome, the server's pings (answered)
    /// and the pongs to ours; a refusal fails the run.
    fn readable_irc(&mut self, i: usize) {
        let Some(conn) = self.conns[i].as_mut() else {
            return;
        };
        let stage = &mut self.stages[i];
        let (control, counters) = (self.control, self.counters);
        let mut pongs = 0;
        let mut reply = Vec::new();
        let result = conn::read_while(conn, &mut self.buf, |conn, data| {
            conn::lines(conn, data, |line| {
                match proto::classify(BenchProto::Irc, line) {
                    PeerLine::Greeting if *stage == Stage::Welcome => {
                        *stage = Stage::Welcomed;
                        counters.welcomed.fetch_add(1, Ordering::AcqRel);
                        control.nudge();
                    }
                    PeerLine::Ping => proto::pong(BenchProto::Irc, line, &mut reply),
                    PeerLine::Synced => pongs += 1,
                    PeerLine::Error(e) => control.fail(format!(
                        "the server refused a connection (#{i} of its loop): {}",
                        crate::render::sanitize(e)
                    )),
                    _ => {}
                }
            })?;
            Ok(true)
        });
        if let Err(e) = result {
            return self.closed(i, e);
        }
        if !reply.is_empty() {
            if let Some(conn) = self.conns[i].as_mut() {
                conn.out().append(&mut reply);
            }
            self.flush(i);
        }
        for _ in 0..pongs {
            self.pong(i);
        }
    }
}

/// A line the scanner did not place: only errors and shutdown matter.
fn other(line: &[u8], i: usize, control: &Control) {
    match ServerMsg::decode(line) {
        Ok(ServerMsg::Error { code, message }) => {
            let hint = match code {
                ErrorCode::ServerFull => "; start the server with a larger --max-clients",
                _ => "",
            };
            control.fail(format!(
                "the server refused a connection (#{i} of its loop): {code}: {}{hint}",
                crate::render::sanitize(&message)
            ));
        }
        Ok(ServerMsg::Bye { .. }) => {
            control.fail("the server said bye: it is shutting down".into())
        }
        Ok(_) => {}
        Err(e) => control.fail(e),
    }
}
