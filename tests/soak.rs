//! The delivery invariant, soaked: "every message the server accepts from a
//! sender reaches every recipient that stays connected, once, in the
//! sender's order; a recipient that cannot keep up is disconnected (reason
//! `slow`), never silently skipped."
//!
//! Senders number their messages (`s1:17`) and stay connected throughout.
//! Receivers come and go at random (seeded): they join, quit, close without
//! a word, reset (RST), stall (stop reading for a while), or are `chat
//! client` processes that get killed. At the end every receiver's messages
//! are checked against exact bounds taken from the server's own order.
//!
//! # Which messages a receiver must have
//!
//! The server handles everything in one order, and each connection's output
//! is queued in that order. A sender pings after every batch with the
//! number of messages it has sent as the token, so in the sender's own
//! stream `pong k` marks the point where the server had handled its first
//! k messages. Where the `join` of receiver R falls among those pongs
//! brackets R's arrival: after `pong lo` and before `pong hi` means the
//! sender's messages below `lo` were handled before R arrived (R must not
//! get them) and those from `hi` on after (R must get them). So R's
//! messages from that sender must be exactly `a..b` for one `a` in
//! `lo..=hi`: contiguous, each once, in order. (The bracket is one batch
//! wide: which messages of that batch the server handled before R arrived
//! cannot be observed, and either way is right.) `b` is the sender's total
//! for a receiver still connected at the end (its own ping proves it has
//! everything), and is bracketed the same way by the `leave` for one that
//! quit. One that was dropped or vanished may end anywhere before its
//! `leave`, and a receiver that ended without being told to must have been
//! dropped as `slow`.
//!
//! Size: `CHAT_SOAK_SECS` (default 8), `CHAT_SOAK_CLIENTS` (most receivers
//! at once, default 10), `CHAT_SOAK_SENDERS` (default 3), `CHAT_SOAK_RATE`
//! (messages per second per sender, default 1000), `CHAT_SOAK_SEED`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chat::wire::{LeaveReason, ServerMsg};
use common::seeded::{Rng, setting};
use common::{Conn, Server, WAIT, chat, reset};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

/// Reads protocol lines, keeping a partial line across read timeouts.
struct Lines<R> {
    reader: BufReader<R>,
    partial: Vec<u8>,
}

enum Next {
    Msg(ServerMsg<'static>),
    /// Nothing within the read timeout.
    Idle,
    /// End of stream (or a reset); a partial last line is dropped.
    Closed,
}

impl<R: Read> Lines<R> {
    fn new(reader: BufReader<R>) -> Lines<R> {
        Lines {
            reader,
            partial: Vec::new(),
        }
    }

    fn next(&mut self) -> Next {
        match self.reader.read_until(b'\n', &mut self.partial) {
            Ok(_) if self.partial.ends_with(b"\n") => {
                let line = std::mem::take(&mut self.partial);
                let msg = ServerMsg::decode(&line)
                    .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&line)));
                Next::Msg(msg)
            }
            Ok(_) => Next::Closed,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Next::Idle
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Idle,
            Err(_) => Next::Closed,
        }
    }
}

/// What a sender saw happen, in the order the server queued it.
#[derive(Debug)]
enum Event {
    /// The server had handled this many of the sender's messages.
    Pong(u64),
    Join(u64),
    Leave(u64, LeaveReason),
}

/// Group messages received, by sender nick: their numbers, in arrival order.
type Received = HashMap<String, Vec<u64>>;

fn record_group(got: &mut Received, from: &str, text: &str) {
    let (who, rest) = text
        .split_once(':')
        .unwrap_or_else(|| panic!("not a soak message: {text:?}"));
    assert_eq!(who, from, "{text:?} arrived from {from}");
    let n = rest.split(' ').next().unwrap().parse().unwrap();
    got.entry(from.to_owned()).or_default().push(n);
}

struct Sender {
    nick: String,
    stream: TcpStream,
    lines: Lines<TcpStream>,
    sent: u64,
    events: Vec<Event>,
    got: Received,
}

impl Sender {
    fn join(server: &Server, nick: &str) -> Sender {
        // The reader that read the welcome may hold more already.
        let Conn { reader, stream } = server.join(nick);
        Sender {
            nick: nick.to_owned(),
            stream,
            lines: Lines::new(reader),
            sent: 0,
            events: Vec::new(),
            got: Received::new(),
        }
    }

    /// Pings with the count sent so far and reads up to the pong.
    fn sync(&mut self) {
        let token = self.sent;
        let ping = format!("{}\n", json!({"type": "ping", "token": token}));
        self.stream.write_all(ping.as_bytes()).unwrap();
        self.read_to_pong(token);
    }

    fn read_to_pong(&mut self, token: u64) {
        loop {
            match self.lines.next() {
                Next::Msg(ServerMsg::Pong { token: Some(t) }) if t.get() == token.to_string() => {
                    self.events.push(Event::Pong(token));
                    return;
                }
                Next::Msg(ServerMsg::Join { id, .. }) => self.events.push(Event::Join(id)),
                Next::Msg(ServerMsg::Leave { id, reason, .. }) => {
                    self.events.push(Event::Leave(id, reason))
                }
                Next::Msg(ServerMsg::Group { from, text, .. }) => {
                    record_group(&mut self.got, &from, &text)
                }
                Next::Msg(ServerMsg::Nick { .. }) => {} // a client receiver's name
                Next::Msg(other) => panic!("{} got {other:?}", self.nick),
                Next::Idle | Next::Closed => panic!("{} got no pong {token}", self.nick),
            }
        }
    }

    /// Sends numbered messages in batches, each followed by a ping, at
    /// about `rate` per second, until told to stop.
    fn talk(mut self, rate: u64, seed: u64, stop: &AtomicBool) -> Sender {
        const BATCH: u64 = 16;
        let mut rng = Rng::new(seed);
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut out = Vec::new();
            for _ in 0..BATCH {
                let pad = "x".repeat(rng.below(1500) as usize);
                let text = format!("{}:{} {pad}", self.nick, self.sent);
                out.extend_from_slice(
                    format!("{}\n", json!({"type": "group", "text": text})).as_bytes(),
                );
                self.sent += 1;
            }
            let token = self.sent;
            out.extend_from_slice(
                format!("{}\n", json!({"type": "ping", "token": token})).as_bytes(),
            );
            self.stream.write_all(&out).unwrap();
            self.read_to_pong(token);
            // Pacing the load, not waiting for anything.
            let due = start + Duration::from_secs_f64(self.sent as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        self
    }

    /// `lo..=hi`: the pongs on either side of `event` in this sender's
    /// stream (0 when it came before any pong).
    fn bracket(&self, event: impl Fn(&Event) -> bool) -> Option<(u64, u64)> {
        let at = self.events.iter().position(event)?;
        let lo = self.events[..at]
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Pong(k) => Some(*k),
                _ => None,
            })
            .unwrap_or(0);
        let hi = self.events[at..].iter().find_map(|e| match e {
            Event::Pong(k) => Some(*k),
            _ => None,
        })?;
        Some((lo, hi))
    }
}

/// What the driver asks of a receiver.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ask {
    Quit,
    Close,
    Reset,
    Kill,
    /// Prove it has everything (a ping, or a client's `/who`), then go.
    Finish,
}

/// How a plain socket receiver reads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pace {
    Steady,
    /// Stops reading now and then, for up to a few seconds.
    Sluggish,
    /// Stops reading for good after a while, until asked something.
    Stuck,
}

/// How a receiver's connection ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// Still connected at the end; its last ping (or `who`) proved it has
    /// everything.
    Stayed,
    /// Sent `quit` and got `bye`.
    Quit,
    /// We closed it (FIN, or RST with unread data), reset it, or killed
    /// its process.
    Vanished(&'static str),
    /// The server closed it without being asked.
    Dropped,
}

impl Fate {
    fn name(self) -> &'static str {
        match self {
            Fate::Stayed => "stayed",
            Fate::Quit => "quit",
            Fate::Vanished(how) => how,
            Fate::Dropped => "dropped",
        }
    }
}

struct Outcome {
    label: String,
    id: u64,
    fate: Fate,
    got: Received,
}

/// A plain socket receiver, reading at its `pace` and doing as asked.
fn tcp_receiver(
    conn: Conn,
    id: u64,
    label: String,
    pace: Pace,
    seed: u64,
    asks: mpsc::Receiver<Ask>,
) -> Outcome {
    let mut rng = Rng::new(seed);
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let Conn { reader, mut stream } = conn;
    let mut lines = Lines::new(reader);
    let mut got = Received::new();
    let mut asked = None;
    let mut bye = false;
    let mut next_stall = Instant::now()
        + match pace {
            Pace::Stuck => rng.millis(100, 500),
            _ => rng.millis(200, 3000),
        };
    let mut give_up = None;
    let fate = loop {
        let now = Instant::now();
        let stalled = asked.is_none() && pace != Pace::Steady && now >= next_stall;
        let ask = match (stalled, pace) {
            // Not reading is the behaviour under test.
            (true, Pace::Stuck) => asks.recv().ok(),
            (true, _) => {
                std::thread::sleep(rng.millis(100, 2500));
                next_stall = Instant::now() + rng.millis(200, 3000);
                asks.try_recv().ok()
            }
            (false, _) => asks.try_recv().ok(),
        };
        if let Some(ask) = ask {
            asked = Some(ask);
            give_up = Some(Instant::now() + WAIT);
            // It may have been dropped already; the stream will say.
            match ask {
                Ask::Quit => {
                    let _ = stream.write_all(b"{\"type\":\"quit\"}\n");
                }
                Ask::Finish => {
                    let _ = stream.write_all(b"{\"type\":\"ping\",\"token\":\"end\"}\n");
                }
                Ask::Close => {
                    drop(lines);
                    drop(stream);
                    break Fate::Vanished("closed");
                }
                Ask::Reset => {
                    drop(lines);
                    reset(stream);
                    break Fate::Vanished("reset");
                }
                Ask::Kill => unreachable!("a socket is not a process"),
            }
        }
        assert!(
            give_up.is_none_or(|by| Instant::now() < by),
            "{label}: no answer within {WAIT:?}"
        );
        match lines.next() {
            Next::Idle => {}
            Next::Closed if bye => break Fate::Quit,
            Next::Closed => break Fate::Dropped,
            Next::Msg(ServerMsg::Group { from, text, .. }) => record_group(&mut got, &from, &text),
            Next::Msg(ServerMsg::Bye { .. }) => bye = true,
            Next::Msg(ServerMsg::Pong { .. }) if asked == Some(Ask::Finish) => break Fate::Stayed,
            Next::Msg(_) => {}
        }
    };
    Outcome {
        label,
        id,
        fate,
        got,
    }
}

/// A `chat client --json` process fed through a pipe: it ends by being
/// killed, by the end of its input (it quits), or after a `/who` whose
/// answer proves it has everything. Nothing is known of one killed before
/// it showed its welcome.
fn client_receiver(mut child: Child, label: String, asks: mpsc::Receiver<Ask>) -> Option<Outcome> {
    let stdout = child.stdout.take().unwrap();
    let mut lines = Lines::new(BufReader::new(stdout));
    let mut got = Received::new();
    let mut id = None;
    let mut who = false;
    let mut bye = false;
    while let Next::Msg(msg) = lines.next() {
        match msg {
            ServerMsg::Welcome { id: mine, .. } => id = Some(mine),
            ServerMsg::Group { from, text, .. } => record_group(&mut got, &from, &text),
            ServerMsg::Who { .. } => who = true,
            ServerMsg::Bye { .. } => bye = true,
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{label}: {stderr}"
    );
    let fate = match asks.try_iter().last() {
        Some(Ask::Kill) => Fate::Vanished("killed"),
        Some(ask @ (Ask::Quit | Ask::Finish)) if bye => {
            assert!(status.success(), "{label} quit with {status}: {stderr}");
            if ask == Ask::Finish {
                assert!(who, "{label} never showed its who");
                Fate::Stayed
            } else {
                Fate::Quit
            }
        }
        _ => Fate::Dropped,
    };
    if id.is_none() && fate == Fate::Vanished("killed") {
        return None;
    }
    let id = id.unwrap_or_else(|| panic!("{label} never showed its welcome"));
    Some(Outcome {
        label,
        id,
        fate,
        got,
    })
}

/// A receiver as the driver sees it.
struct Receiver {
    label: String,
    asks: mpsc::Sender<Ask>,
    /// The client process's input, for `chat client` receivers.
    stdin: Option<ChildStdin>,
    pid: Option<Pid>,
    thread: JoinHandle<Option<Outcome>>,
    gone: bool,
}

impl Receiver {
    fn tell(&mut self, ask: Ask) {
        // Its thread may have ended (dropped by the server); it said why.
        let _ = self.asks.send(ask);
        match (ask, &mut self.stdin, self.pid) {
            (Ask::Kill, _, Some(pid)) => {
                let _ = kill(pid, Signal::SIGKILL);
            }
            (Ask::Finish, Some(stdin), _) => {
                let _ = stdin.write_all(b"/who\n");
            }
            _ => {}
        }
        // The end of its input makes a client quit, and lets its
        // input-reading child go after a kill.
        self.stdin = None;
    }

    /// Waits (bounded) for its thread, which for a client process means
    /// for the process to end: nothing in the protocol says when it has.
    fn outcome(self) -> Option<Outcome> {
        let deadline = Instant::now() + WAIT;
        while !self.thread.is_finished() {
            if Instant::now() > deadline {
                if let Some(pid) = self.pid {
                    let _ = kill(pid, Signal::SIGKILL);
                }
                panic!("{} did not end within {WAIT:?}", self.label);
            }
            std::thread::sleep(Duration::from_millis(10)); // polling a thread's end
        }
        let label = self.label;
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("{label} failed"))
    }
}

fn spawn_receiver(server: &Server, n: usize, rng: &mut Rng) -> Receiver {
    let (asks, asked) = mpsc::channel();
    let seed = rng.next();
    let pace = match rng.below(6) {
        0 | 1 => None,
        2 => Some(Pace::Sluggish),
        3 => Some(Pace::Stuck),
        _ => Some(Pace::Steady),
    };
    let Some(pace) = pace else {
        let label = format!("r{n} (chat client)");
        let mut child = chat()
            .args(["client", "--json", "--server", &server.addr.to_string()])
            .args(["--nick", &format!("r{n}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let name = label.clone();
        let thread = std::thread::spawn(move || client_receiver(child, name, asked));
        return Receiver {
            label,
            asks,
            stdin: Some(stdin),
            pid: Some(pid),
            thread,
            gone: false,
        };
    };
    let label = format!("r{n} ({pace:?})");
    let mut conn = server.connect();
    let welcome = conn.recv();
    let id = welcome["id"].as_u64().unwrap();
    let name = label.clone();
    let thread = std::thread::spawn(move || Some(tcp_receiver(conn, id, name, pace, seed, asked)));
    Receiver {
        label,
        asks,
        stdin: None,
        pid: None,
        thread,
        gone: false,
    }
}

/// Checks one receiver's messages from one sender against the bounds the
/// sender's stream gives; returns how many it checked.
fn check(outcome: &Outcome, sender: &Sender) -> usize {
    let who = format!("{} from {}", outcome.label, sender.nick);
    let none = Vec::new();
    let got = outcome.got.get(&sender.nick).unwrap_or(&none);
    for pair in got.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{who}: {} after {} (lost, repeated or reordered)",
            pair[1],
            pair[0]
        );
    }
    let id = outcome.id;
    let joins = sender
        .events
        .iter()
        .filter(|e| matches!(e, Event::Join(j) if *j == id))
        .count();
    let leaves = sender
        .events
        .iter()
        .filter(|e| matches!(e, Event::Leave(l, _) if *l == id))
        .count();
    assert!(
        joins == 1 && leaves <= 1,
        "{who}: the sender saw {joins} joins and {leaves} leaves"
    );
    let (jlo, jhi) = sender
        .bracket(|e| matches!(e, Event::Join(id) if *id == outcome.id))
        .unwrap_or_else(|| panic!("{who}: the sender never saw the join"));
    let leave = sender
        .events
        .iter()
        .position(|e| matches!(e, Event::Leave(id, _) if *id == outcome.id));
    let reason = leave.map(|at| match &sender.events[at] {
        Event::Leave(_, reason) => *reason,
        _ => unreachable!(),
    });
    let left = sender.bracket(|e| matches!(e, Event::Leave(id, _) if *id == outcome.id));
    // Where its messages must end, at the earliest and the latest.
    let sent = sender.sent;
    let (blo, bhi) = match (outcome.fate, reason) {
        (Fate::Stayed, None) => (sent, sent),
        // It went only after proving it had everything.
        (Fate::Stayed, Some(_)) if left.is_some_and(|(lo, _)| lo == sent) => (sent, sent),
        (Fate::Quit, Some(LeaveReason::Quit)) => left.unwrap(),
        (Fate::Vanished(_), Some(LeaveReason::Disconnect | LeaveReason::Slow))
        | (Fate::Dropped, Some(LeaveReason::Slow)) => (0, left.unwrap().1),
        (fate, reason) => panic!("{who}: ended {fate:?}, but the sender saw leave {reason:?}"),
    };
    let (a, b) = match (got.first(), got.last()) {
        (Some(first), Some(last)) => (*first, last + 1),
        _ => {
            // Nothing: its stay must fit between two messages.
            let at = jlo.max(blo);
            assert!(
                at <= jhi && at <= bhi,
                "{who}: got nothing, but joined at {jlo}..={jhi} and left at {blo}..={bhi}"
            );
            return 0;
        }
    };
    assert!(
        (jlo..=jhi).contains(&a),
        "{who}: first message {a}, but it joined between the sender's messages {jlo} and {jhi}"
    );
    assert!(
        (blo..=bhi).contains(&b),
        "{who}: messages up to {} ({:?}), but they must end between {blo} and {bhi}",
        b - 1,
        outcome.fate
    );
    got.len()
}

#[test]
fn every_accepted_message_reaches_every_receiver_that_stays_once_and_in_order() {
    let secs = setting("CHAT_SOAK_SECS", 8);
    let most = setting("CHAT_SOAK_CLIENTS", 10) as usize;
    let senders = setting("CHAT_SOAK_SENDERS", 3);
    let rate = setting("CHAT_SOAK_RATE", 1000);
    let seed = setting(
        "CHAT_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!(
        "soak: seed {seed} (CHAT_SOAK_SEED), {secs} s, {senders} senders at {rate}/s, \
         up to {most} receivers"
    );
    let mut rng = Rng::new(seed);
    let server = Server::start(&["--rate", "0", "--max-queue", "256KiB"]);

    let stop = AtomicBool::new(false);
    let talking: Vec<Sender> = (0..senders)
        .map(|k| Sender::join(&server, &format!("s{k}")))
        .collect();
    let start = Instant::now();
    let (mut senders, receivers) = std::thread::scope(|s| {
        let threads: Vec<_> = talking
            .into_iter()
            .map(|sender| {
                let seed = rng.next();
                let stop = &stop;
                s.spawn(move || sender.talk(rate, seed, stop))
            })
            .collect();

        let mut receivers: Vec<Receiver> = Vec::new();
        let until = start + Duration::from_secs(secs);
        while Instant::now() < until {
            // The pace of arrivals and departures.
            std::thread::sleep(rng.millis(20, 250));
            let live: Vec<usize> = (0..receivers.len())
                .filter(|&i| !receivers[i].gone)
                .collect();
            let arrive = match live.len() {
                n if n < 2 => true,
                n if n >= most => false,
                _ => rng.below(5) < 3,
            };
            if arrive {
                let n = receivers.len();
                receivers.push(spawn_receiver(&server, n, &mut rng));
                continue;
            }
            let r = &mut receivers[live[rng.below(live.len() as u64) as usize]];
            let how = if r.pid.is_some() {
                [Ask::Kill, Ask::Quit][rng.below(2) as usize]
            } else {
                [Ask::Quit, Ask::Close, Ask::Reset][rng.below(3) as usize]
            };
            r.tell(how);
            r.gone = true;
        }
        stop.store(true, Ordering::Relaxed);
        let senders: Vec<Sender> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        (senders, receivers)
    });

    // Everyone still here proves it has everything; then all are done.
    let mut receivers = receivers;
    for r in receivers.iter_mut().filter(|r| !r.gone) {
        r.tell(Ask::Finish);
    }
    let spawned = receivers.len();
    let outcomes: Vec<Outcome> = receivers
        .into_iter()
        .filter_map(Receiver::outcome)
        .collect();
    // The senders hear the last departures (a close has no answer of its
    // own; the `leave` is the server's word that it noticed).
    let departed: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.fate != Fate::Stayed)
        .map(|o| o.id)
        .collect();
    for sender in &mut senders {
        let deadline = Instant::now() + WAIT;
        loop {
            sender.sync();
            let heard = departed.iter().all(|id| {
                sender
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::Leave(left, _) if left == id))
            });
            if heard {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: some leave never came",
                sender.nick
            );
        }
    }
    let elapsed = start.elapsed();

    // The senders heard each other from the first message to the last.
    let mut checked = 0;
    for s in &senders {
        for other in senders.iter().filter(|o| o.nick != s.nick) {
            let got = s.got.get(&other.nick).map(Vec::as_slice).unwrap_or(&[]);
            assert!(
                got.iter().copied().eq(0..other.sent),
                "{} got {} of {}'s {} messages, or out of order",
                s.nick,
                got.len(),
                other.nick,
                other.sent
            );
            checked += got.len();
        }
    }
    let mut fates: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in &outcomes {
        for sender in &senders {
            checked += check(outcome, sender);
        }
        *fates.entry(outcome.fate.name()).or_default() += 1;
    }
    let slow = senders[0]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Leave(_, LeaveReason::Slow)))
        .count();
    let sent: u64 = senders.iter().map(|s| s.sent).sum();
    eprintln!(
        "soak: {spawned} receivers ({fates:?}; {slow} left as slow; {} killed before \
         their welcome), {sent} messages sent, {checked} deliveries checked, in {elapsed:?}",
        spawned - outcomes.len()
    );
    let stayed = outcomes.iter().filter(|o| o.fate == Fate::Stayed);
    assert!(
        stayed.clone().any(|o| !o.got.is_empty()),
        "no receiver stayed to the end with messages to check"
    );
}
