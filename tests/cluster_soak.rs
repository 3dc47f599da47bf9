//! The delivery invariant of tests/soak.rs, across a cluster: three `chat
//! server --cluster` processes on one real nats-server with JetStream, with
//! clients spread over all three and moving between them; during the
//! traffic one server is killed (SIGKILL) and restarted, then nats-server
//! is restarted.
//!
//! # What is checked, and against what
//!
//! One server orders everything in one loop, so tests/soak.rs brackets a
//! receiver's arrival between a sender's pongs. Across servers there is no
//! such shared loop; there is the cluster's one total order instead: every
//! group message's `seq`, and the history `H` of the room, which must be
//! the same (same seq, from, text) on every server at the end. So:
//!
//! - Senders number their messages (`s1:17 xxx`). In `H`, each sender's
//!   numbers are strictly increasing (its order), and each message it sent
//!   is either in `H` once or was refused with an error (never both, never
//!   neither): `|H_s| + refused_s == sent_s`.
//! - Every live `group` a client received is in `H` with the same seq,
//!   sender and text, once (strictly increasing seq per connection).
//! - A connection received every message of `H` between its first and its
//!   last (no gap while it was a member), and nothing it should have had
//!   before its first: right after its welcome it asks the room's last
//!   stored seq `L`, and its first message is the first of `H` after `L`
//!   (messages after `L` were handled after it arrived). A connection that
//!   stayed to the end ends at `H`'s end.
//! - A client that moves (quits on one server, connects to another, asks
//!   `history after` the last seq it saw) has, live and caught up
//!   together, exactly `H` from its first message to the end.
//! - Users of the killed server leave everywhere with reason `disconnect`
//!   within 10 s, and their nicknames are free again.
//!
//! While nats-server is down the servers are degraded: they may refuse
//! group messages (counted as refused, above) and the test does not move
//! clients then. Nothing accepted may be lost or reordered across it.
//!
//! Size: `CHAT_CLUSTER_SOAK_SECS` (traffic before, between and after the
//! faults, default 3 each), `CHAT_CLUSTER_SOAK_RATE` (messages per second
//! per sender, default 300), `CHAT_CLUSTER_SOAK_SEED`;
//! `CHAT_CLUSTER_SOAK_NATS_RESTART=0` leaves nats-server alone (to tell a
//! fault of the resynchronisation from the others).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::nats::{self, Nats};
use common::seeded::{Rng, setting};
use common::{Conn, Server, TempDir, WAIT, chat};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// The room all the traffic goes to (the servers' default room).
const ROOM: &str = "lobby";

/// The `error` codes a cluster server sends unasked, as notices: NATS lost,
/// NATS back.
const NOTICES: [&str; 2] = ["cluster_degraded", "cluster_restored"];

/// How long after a SIGKILL its users must have left everywhere.
const NOTICED: Duration = Duration::from_secs(10);

/// Whether this build can cluster at all (`chat server --help` lists
/// `--cluster`): a build without it skips the cluster tests with a note.
fn can_cluster() -> bool {
    let help = common::output_within(chat().args(["server", "--help"]));
    let found = String::from_utf8_lossy(&help.stdout).contains("--cluster");
    if !found {
        eprintln!("skipped: this build's `chat server` has no --cluster");
    }
    found
}

/// One `chat server --cluster`, with what it takes to start it again on
/// the same history store after it was killed.
struct Node {
    server: Option<Server>,
    db: PathBuf,
    url: String,
    /// Its current address, for the client threads (0 while it is down).
    addr: Arc<Mutex<Option<SocketAddr>>>,
}

impl Node {
    fn start(dir: &Path, k: usize, url: &str) -> Node {
        let mut node = Node {
            server: None,
            db: dir.join(format!("node{k}.db")),
            url: url.to_owned(),
            addr: Arc::new(Mutex::new(None)),
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let server = Server::start(&[
            "--rate",
            "0",
            "--db",
            self.db.to_str().expect("utf-8 temp path"),
            "--cluster",
            &self.url,
        ]);
        *self.addr.lock().unwrap() = Some(server.addr);
        self.server = Some(server);
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("a running node")
    }

    fn kill(&mut self) {
        *self.addr.lock().unwrap() = None;
        if let Some(mut server) = self.server.take() {
            server.signal_and_wait(Signal::SIGKILL);
        }
    }
}

/// Waits until the servers act as one: a probe on each joins a room of
/// its own, and the first probe sees every other one arrive there (an
/// arrival is shared only once the server that took it is in the
/// cluster's order, and the first probe's server applies that order).
fn wait_as_one(servers: &[&Server], room: &str) {
    let mut first = servers[0].join(&format!("{room}w"));
    first.send(&json!({"type": "join", "room": room}));
    first.recv_type("joined");
    let mut probes = Vec::new();
    for (k, server) in servers.iter().enumerate().skip(1) {
        let nick = format!("{room}p{k}");
        let mut probe = server.join(&nick);
        probe.send(&json!({"type": "join", "room": room}));
        probe.recv_type("joined");
        loop {
            let msg = first.recv();
            if msg["type"] == "join" && msg["room"] == room && msg["nick"] == nick.as_str() {
                break;
            }
        }
        probes.push(probe);
    }
    first.send(&json!({"type": "quit"}));
    for mut probe in probes {
        probe.send(&json!({"type": "quit"}));
    }
}

/// Reads protocol lines as JSON values, keeping a partial line across
/// read timeouts.
struct Lines {
    reader: BufReader<TcpStream>,
    partial: Vec<u8>,
}

enum Next {
    Msg(Value),
    Idle,
    Closed,
}

impl Lines {
    fn new(reader: BufReader<TcpStream>) -> Lines {
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        Lines {
            reader,
            partial: Vec::new(),
        }
    }

    fn next(&mut self) -> Next {
        match self.reader.read_until(b'\n', &mut self.partial) {
            Ok(_) if self.partial.ends_with(b"\n") => {
                let line = std::mem::take(&mut self.partial);
                Next::Msg(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("bad JSON ({e}): {:?}", String::from_utf8_lossy(&line))
                }))
            }
            Ok(_) => Next::Closed,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Next::Idle
            }
            Err(_) => Next::Closed,
        }
    }

    /// The next message within [`WAIT`], or None when the connection
    /// closed.
    fn recv(&mut self) -> Option<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next() {
                Next::Msg(msg) => return Some(msg),
                Next::Closed => return None,
                Next::Idle => assert!(Instant::now() < deadline, "no line within {WAIT:?}"),
            }
        }
    }
}

/// A group message as a client saw it (live or in a history answer).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    seq: u64,
    from: String,
    text: String,
}

impl Entry {
    fn of(msg: &Value) -> Entry {
        Entry {
            seq: msg["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no seq in {msg}")),
            from: msg["from"].as_str().unwrap_or_default().to_owned(),
            text: msg["text"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// The sender's number for the message (`s1:17 xxx` is 17), None for
    /// its end marker (`s1:end`).
    fn number(&self) -> Option<u64> {
        let (who, rest) = self
            .text
            .split_once(':')
            .unwrap_or_else(|| panic!("not a soak message: {self:?}"));
        assert_eq!(who, self.from, "{self:?}: text names another sender");
        let n = rest.split(' ').next().unwrap_or_default();
        if n == "end" {
            return None;
        }
        Some(
            n.parse()
                .unwrap_or_else(|_| panic!("bad number in {self:?}")),
        )
    }
}

/// The room's whole stored history, asked from one server, oldest first.
fn history(server: &Server) -> Vec<Entry> {
    let mut conn = server.connect();
    conn.recv_type("welcome");
    let mut all: Vec<Entry> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.seq);
        conn.send(&json!({"type": "history", "room": ROOM, "after": after, "limit": 500}));
        let answer = conn.recv_type("history");
        let page = answer["messages"].as_array().expect("messages");
        all.extend(page.iter().map(Entry::of));
        if answer["more"] != true {
            return all;
        }
    }
}

/// Asks the room's last stored seq right after the welcome; live group
/// messages that come before the answer go to `live`. None when the
/// connection closed first.
fn last_seq(lines: &mut Lines, stream: &mut TcpStream, live: &mut Vec<Entry>) -> Option<u64> {
    let ask = json!({"type": "history", "room": ROOM, "limit": 1});
    stream.write_all(format!("{ask}\n").as_bytes()).ok()?;
    loop {
        let msg = lines.recv()?;
        match msg["type"].as_str() {
            Some("history") => {
                let last = msg["messages"].as_array().and_then(|m| m.last());
                return Some(last.map_or(0, |m| m["seq"].as_u64().unwrap_or(0)));
            }
            Some("group") if msg["room"] == ROOM => live.push(Entry::of(&msg)),
            _ => {}
        }
    }
}

/// Connects and takes `nick`, as [`Server::join`] does, by address.
fn join_at(addr: SocketAddr, nick: &str) -> Conn {
    let mut conn = Conn::connect(addr);
    let welcome = conn.recv();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    conn.send(&json!({"type": "nick", "nick": nick}));
    loop {
        let msg = conn.recv();
        match msg["type"].as_str() {
            Some("nick") if msg["new"] == nick => return conn,
            Some("error") => panic!("{nick}: {msg}"),
            _ => {}
        }
    }
}

/// What one sender did.
struct Sent {
    nick: String,
    /// Numbered messages sent.
    sent: u64,
    /// Error lines while sending numbered messages, by code (notices included).
    refused: BTreeMap<String, u64>,
    got: Vec<Entry>,
}

/// Sends numbered group messages in batches of 16, each batch followed by
/// a ping, at about `rate` per second, until `stop`; then its end marker,
/// again until it is accepted.
fn sender(addr: SocketAddr, nick: &str, rate: u64, seed: u64, stop: &AtomicBool) -> Sent {
    let Conn { reader, mut stream } = join_at(addr, nick);
    let mut lines = Lines::new(reader);
    let mut rng = Rng::new(seed);
    let mut got = Vec::new();
    let mut token = 0u64;
    // Sends `batch` and reads to its pong; the codes of the refusals.
    let mut exchange = |batch: &[String], got: &mut Vec<Entry>| -> Vec<String> {
        token += 1;
        let mut bytes = Vec::new();
        for text in batch {
            bytes.extend_from_slice(
                format!("{}\n", json!({"type": "group", "text": text})).as_bytes(),
            );
        }
        bytes
            .extend_from_slice(format!("{}\n", json!({"type": "ping", "token": token})).as_bytes());
        stream
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("{nick}: write: {e}"));
        let mut refusals = Vec::new();
        loop {
            let msg = lines
                .recv()
                .unwrap_or_else(|| panic!("{nick}: its server closed the connection"));
            match msg["type"].as_str() {
                Some("pong") if msg["token"] == token => return refusals,
                Some("group") => got.push(Entry::of(&msg)),
                Some("error") => refusals.push(msg["code"].as_str().unwrap_or("?").to_owned()),
                _ => {}
            }
        }
    };
    let mut sent = 0;
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<String> = (0..16)
            .map(|_| {
                let pad = "x".repeat(rng.below(200) as usize);
                sent += 1;
                format!("{nick}:{} {pad}", sent - 1)
            })
            .collect();
        for code in exchange(&batch, &mut got) {
            *refused.entry(code).or_default() += 1;
        }
        // Pacing the load, not waiting for anything.
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let deadline = Instant::now() + WAIT;
    while exchange(&[format!("{nick}:end")], &mut got)
        .iter()
        .any(|code| !NOTICES.contains(&code.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "{nick}: its end marker was refused for {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50)); // pacing a retry of a refused message
    }
    let _ = stream.write_all(b"{\"type\":\"quit\"}\n");
    Sent {
        nick: nick.to_owned(),
        sent,
        refused,
        got,
    }
}

/// One connection of a receiver: what it saw, in order.
#[derive(Default, Debug)]
struct Session {
    server: usize,
    /// The room's last stored seq right after the welcome.
    arrived_after: u64,
    /// A history catch-up (`history after` the last seq seen before).
    caught_up: Vec<Entry>,
    live: Vec<Entry>,
    /// Still connected when every end marker had arrived.
    stayed: bool,
}

impl Session {
    /// One line saying what the session saw, for a failure's message.
    fn summary(&self) -> String {
        let span = |v: &[Entry]| match (v.first(), v.last()) {
            (Some(a), Some(b)) => format!("{}..{} ({})", a.seq, b.seq, v.len()),
            _ => "none".to_owned(),
        };
        format!(
            "server {}: arrived after {}, caught up {}, live {}, stayed {}",
            self.server,
            self.arrived_after,
            span(&self.caught_up),
            span(&self.live),
            self.stayed
        )
    }
}

/// How a receiver behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Stays on one server (until that server dies).
    Stayer,
    /// Quits and comes back through another server now and then, catching
    /// up with `history after`.
    Mover,
}

struct Shared {
    /// Each node's address while it is up.
    addrs: Vec<Arc<Mutex<Option<SocketAddr>>>>,
    /// Movers stay where they are while this is set (nats-server down).
    hold: AtomicBool,
    senders: u64,
    /// Set when the senders stop: from then on a receiver has [`WAIT`] to
    /// see every end marker.
    stop: AtomicBool,
}

fn receiver(kind: Kind, home: usize, seed: u64, shared: &Shared) -> Vec<Session> {
    let mut rng = Rng::new(seed);
    let mut sessions: Vec<Session> = Vec::new();
    let mut server = home;
    let mut ends: Vec<String> = Vec::new();
    // Once the senders stop, a receiver has [`WAIT`] in all, however many
    // times it moves meanwhile.
    let mut give_up = None;
    loop {
        let Some(addr) = *shared.addrs[server].lock().unwrap() else {
            assert_eq!(kind, Kind::Mover, "a stayer's server is gone");
            server = (server + 1) % shared.addrs.len();
            continue;
        };
        // The server may be killed between reading its address and here.
        let Ok(mut stream) = TcpStream::connect(addr) else {
            server = (server + 1) % shared.addrs.len();
            continue;
        };
        stream.set_nodelay(true).expect("nodelay");
        let mut lines = Lines::new(BufReader::new(stream.try_clone().expect("clone")));
        match lines.recv() {
            Some(welcome) => assert_eq!(welcome["type"], "welcome", "{welcome}"),
            None => continue,
        }
        let mut session = Session {
            server,
            ..Session::default()
        };
        let Some(after) = last_seq(&mut lines, &mut stream, &mut session.live) else {
            // Its server went down at once.
            sessions.push(session);
            continue;
        };
        session.arrived_after = after;
        let seen = sessions
            .iter()
            .flat_map(|s| s.live.iter().chain(&s.caught_up))
            .map(|e| e.seq)
            .max();
        // Catching up, page by page, until a page says there is no more.
        // A mover does not move meanwhile: its next catch-up starts after
        // the highest seq it has seen, so pages it left unread would be a
        // hole nobody asks for again.
        let mut catching_up = false;
        if let Some(seen) = seen {
            let ask = json!({"type": "history", "room": ROOM, "after": seen, "limit": 500});
            catching_up = stream.write_all(format!("{ask}\n").as_bytes()).is_ok();
        }
        let move_at = Instant::now() + Duration::from_millis(300 + rng.below(1200));
        let mut closed = false;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                let by = *give_up.get_or_insert(Instant::now() + WAIT);
                assert!(
                    Instant::now() < by,
                    "{kind:?} on server {server}: only {ends:?} of the end markers came within \
                     {WAIT:?}; this connection's last message: {:?}; its sessions:\n{}",
                    session.live.last(),
                    sessions
                        .iter()
                        .chain(std::iter::once(&session))
                        .map(Session::summary)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            match lines.next() {
                Next::Msg(msg) => match msg["type"].as_str() {
                    Some("group") if msg["room"] == ROOM => {
                        let entry = Entry::of(&msg);
                        if entry.text.ends_with(":end") {
                            ends.push(entry.from.clone());
                        }
                        session.live.push(entry);
                    }
                    Some("history") => {
                        let page: Vec<Entry> = msg["messages"]
                            .as_array()
                            .expect("messages")
                            .iter()
                            .map(Entry::of)
                            .collect();
                        for e in page.iter().filter(|e| e.text.ends_with(":end")) {
                            ends.push(e.from.clone());
                        }
                        if msg["more"] == true {
                            let last = page.last().map_or(0, |e| e.seq);
                            let ask = json!({"type": "history", "room": ROOM, "after": last, "limit": 500});
                            let _ = stream.write_all(format!("{ask}\n").as_bytes());
                        } else {
                            catching_up = false;
                        }
                        session.caught_up.extend(page);
                    }
                    _ => {}
                },
                Next::Idle => {}
                Next::Closed => {
                    closed = true;
                    break;
                }
            }
            ends.sort();
            ends.dedup();
            if ends.len() as u64 == shared.senders {
                session.stayed = true;
                break;
            }
            if kind == Kind::Mover
                && !catching_up
                && !shared.hold.load(Ordering::Relaxed)
                && Instant::now() > move_at
            {
                let _ = stream.write_all(b"{\"type\":\"quit\"}\n");
                // Read to the bye (or the end): what came before it counts.
                while let Some(msg) = lines.recv() {
                    if msg["type"] == "group" && msg["room"] == ROOM {
                        let entry = Entry::of(&msg);
                        // An end marker read here counts as one read
                        // above: the next catch-up starts after it.
                        if entry.text.ends_with(":end") {
                            ends.push(entry.from.clone());
                        }
                        session.live.push(entry);
                    }
                    if msg["type"] == "bye" {
                        break;
                    }
                }
                break;
            }
        }
        let stayed = session.stayed;
        sessions.push(session);
        if stayed {
            let _ = stream.write_all(b"{\"type\":\"quit\"}\n");
            return sessions;
        }
        if closed && kind == Kind::Stayer {
            // Its server was killed: it is over for this one.
            return sessions;
        }
        server = (server + 1 + rng.below(2) as usize) % shared.addrs.len();
    }
}

/// Fails, saying where, unless a client received exactly the seqs it had
/// to (whole lists of thousands would hide the point).
fn same_seqs(who: &str, got: &[u64], expected: &[u64]) {
    if got == expected {
        return;
    }
    let at = got
        .iter()
        .zip(expected)
        .position(|(g, e)| g != e)
        .unwrap_or(got.len().min(expected.len()));
    let near = |v: &[u64]| v[at.saturating_sub(3)..(at + 3).min(v.len())].to_vec();
    panic!(
        "{who}: got {} messages, history says {}; they part at index {at}: got {:?}, history {:?}",
        got.len(),
        expected.len(),
        near(got),
        near(expected)
    );
}

/// Checks a receiver's sessions against the history `h`; returns the
/// deliveries checked.
fn check_receiver(label: &str, kind: Kind, sessions: &[Session], h: &[Entry]) -> usize {
    let by_seq: HashMap<u64, &Entry> = h.iter().map(|e| (e.seq, e)).collect();
    let mut checked = 0;
    for (k, s) in sessions.iter().enumerate() {
        let who = format!("{label} session {k} (server {})", s.server);
        for pair in s.live.windows(2) {
            assert!(
                pair[0].seq < pair[1].seq,
                "{who}: seq {} after {} (repeated or reordered)",
                pair[1].seq,
                pair[0].seq
            );
        }
        for e in s.live.iter().chain(&s.caught_up) {
            assert_eq!(
                by_seq.get(&e.seq),
                Some(&e),
                "{who}: received {e:?}, which is not what history holds at that seq"
            );
        }
        checked += s.live.len();
        // No gap while connected, nothing missed from its arrival on:
        // every message after the seq it was told on arrival, and every
        // one between its first and its last.
        if let (Some(first), Some(last)) = (s.live.first(), s.live.last()) {
            let from = first.seq.min(s.arrived_after + 1);
            let expected: Vec<u64> = h
                .iter()
                .map(|e| e.seq)
                .filter(|&q| q >= from && q <= last.seq)
                .collect();
            let got: Vec<u64> = s.live.iter().map(|e| e.seq).collect();
            same_seqs(
                &format!("{who}, arrived after seq {}, live", s.arrived_after),
                &got,
                &expected,
            );
        }
        if s.stayed && kind == Kind::Stayer {
            assert_eq!(
                s.live.last().map(|e| e.seq),
                h.last().map(|e| e.seq),
                "{who}: stayed but did not get the room's last message"
            );
        }
    }
    if kind == Kind::Mover {
        // Live and caught up together: all of H from its first message on.
        let mut all: Vec<u64> = sessions
            .iter()
            .flat_map(|s| s.live.iter().chain(&s.caught_up))
            .map(|e| e.seq)
            .collect();
        all.sort_unstable();
        all.dedup();
        if let Some(&first) = all.first() {
            let expected: Vec<u64> = h.iter().map(|e| e.seq).filter(|&q| q >= first).collect();
            same_seqs(&format!("{label}, live and caught up"), &all, &expected);
        }
    }
    checked
}

/// Checks one sender's messages in `h`: once each, in its order, and all
/// that were not refused.
fn check_sender(s: &Sent, h: &[Entry]) {
    let numbers: Vec<u64> = h
        .iter()
        .filter(|e| e.from == s.nick)
        .filter_map(Entry::number)
        .collect();
    for pair in numbers.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{}: {} stored after {} (repeated or reordered)",
            s.nick,
            pair[1],
            pair[0]
        );
    }
    // An `error` is also how a server tells its users, unasked, that NATS
    // is lost (`cluster_degraded`) and back (`cluster_restored`): notices,
    // not refusals.
    let refused: u64 = s
        .refused
        .iter()
        .filter(|(code, _)| !NOTICES.contains(&code.as_str()))
        .map(|(_, n)| n)
        .sum();
    let ends = h
        .iter()
        .filter(|e| e.from == s.nick && e.text.ends_with(":end"))
        .count();
    assert_eq!(ends, 1, "{}: {ends} end markers stored", s.nick);
    assert_eq!(
        numbers.len() as u64 + refused,
        s.sent,
        "{}: sent {}, {} stored, {refused} refused ({:?})",
        s.nick,
        s.sent,
        numbers.len(),
        s.refused
    );
}

#[test]
fn a_cluster_delivers_every_message_once_in_order_through_a_killed_server_and_a_nats_restart() {
    if !nats::available() || !can_cluster() {
        return;
    }
    let phase = Duration::from_secs(setting("CHAT_CLUSTER_SOAK_SECS", 3));
    let rate = setting("CHAT_CLUSTER_SOAK_RATE", 300);
    let seed = setting(
        "CHAT_CLUSTER_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    eprintln!(
        "cluster soak: seed {seed} (CHAT_CLUSTER_SOAK_SEED), {phase:?} phases, {rate}/s per sender"
    );
    let mut rng = Rng::new(seed);
    let dir = TempDir::new("cluster-soak");
    let mut nats = Nats::start(&dir.path);
    let mut nodes: Vec<Node> = (0..3)
        .map(|k| Node::start(&dir.path, k, &nats.url()))
        .collect();
    wait_as_one(&nodes.iter().map(Node::server).collect::<Vec<_>>(), "ready");

    // The victim, on the server that will be killed, and a watcher on
    // another, both in a quiet room of their own (so neither is flooded).
    let mut watcher = nodes[0].server().join("watcher");
    watcher.send(&json!({"type": "part", "room": ROOM}));
    watcher.send(&json!({"type": "join", "room": "watch"}));
    watcher.recv_type("joined");
    let mut victim = nodes[2].server().join("victim");
    victim.send(&json!({"type": "part", "room": ROOM}));
    victim.send(&json!({"type": "join", "room": "watch"}));
    victim.recv_type("joined");
    let victim_id = loop {
        let msg = watcher.recv();
        if msg["type"] == "join" && msg["nick"] == "victim" {
            break msg["id"].as_u64().expect("join id");
        }
    };

    let shared = Shared {
        addrs: nodes.iter().map(|n| Arc::clone(&n.addr)).collect(),
        hold: AtomicBool::new(false),
        senders: 2,
        stop: AtomicBool::new(false),
    };
    let start = Instant::now();
    let (sent, received) = std::thread::scope(|s| {
        // Senders on the two servers that stay up; receivers on all three.
        let senders: Vec<_> = (0..2)
            .map(|k| {
                let addr = nodes[k].server().addr;
                let seed = rng.next();
                let stop = &shared.stop;
                s.spawn(move || sender(addr, &format!("s{k}"), rate, seed, stop))
            })
            .collect();
        let plan = [
            (Kind::Stayer, 0),
            (Kind::Stayer, 1),
            (Kind::Stayer, 2),
            (Kind::Mover, 0),
            (Kind::Mover, 1),
            (Kind::Mover, 2),
        ];
        let receivers: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, &(kind, home))| {
                let seed = rng.next();
                let shared = &shared;
                let label = format!("r{i} ({kind:?}, from server {home})");
                (
                    label,
                    kind,
                    s.spawn(move || receiver(kind, home, seed, shared)),
                )
            })
            .collect();

        std::thread::sleep(phase); // traffic before the first fault
        let killed = Instant::now();
        eprintln!("cluster soak: {:?}: killing server 2", start.elapsed());
        nodes[2].kill();
        drop(victim);
        loop {
            let msg = watcher.recv();
            if msg["type"] == "leave" && msg["id"].as_u64() == Some(victim_id) {
                assert_eq!(msg["reason"], "disconnect", "{msg}");
                break;
            }
        }
        let noticed = killed.elapsed();
        assert!(
            noticed < NOTICED,
            "the killed server's user left after {noticed:?}"
        );
        watcher.send(&json!({"type": "nick", "nick": "victim"}));
        let renamed = watcher.recv_type("nick");
        assert_eq!(
            renamed["new"], "victim",
            "the dead user's name is not free: {renamed}"
        );
        eprintln!(
            "cluster soak: {:?}: starting server 2 again",
            start.elapsed()
        );
        nodes[2].spawn();
        wait_as_one(&nodes.iter().map(Node::server).collect::<Vec<_>>(), "back");

        std::thread::sleep(phase); // traffic with the restarted server
        if setting("CHAT_CLUSTER_SOAK_NATS_RESTART", 1) == 1 {
            shared.hold.store(true, Ordering::Relaxed);
            eprintln!(
                "cluster soak: {:?}: restarting nats-server",
                start.elapsed()
            );
            nats.restart();
            eprintln!("cluster soak: {:?}: nats-server is back", start.elapsed());
            std::thread::sleep(phase); // traffic across the resynchronisation
            shared.hold.store(false, Ordering::Relaxed);
            std::thread::sleep(phase); // traffic once all is well again
        }
        eprintln!("cluster soak: {:?}: stopping the senders", start.elapsed());
        shared.stop.store(true, Ordering::Relaxed);
        let sent: Vec<Sent> = senders.into_iter().map(|t| t.join().unwrap()).collect();
        let received: Vec<(String, Kind, Vec<Session>)> = receivers
            .into_iter()
            .map(|(label, kind, t)| {
                let sessions = t.join().unwrap_or_else(|_| panic!("{label} failed"));
                (label, kind, sessions)
            })
            .collect();
        eprintln!("cluster soak: killed server noticed after {noticed:?}");
        (sent, received)
    });

    // History is the same on every server.
    let h = history(nodes[0].server());
    for node in &nodes[1..] {
        let other = history(node.server());
        assert!(
            other == h,
            "history differs between servers ({} and {} messages)",
            h.len(),
            other.len()
        );
    }
    for s in &sent {
        check_sender(s, &h);
    }
    // The senders heard each other from the first message on, without
    // gaps (each stops reading once its own end marker is in, so not
    // necessarily to the end).
    let mut checked = 0;
    for s in &sent {
        let mine = Session {
            live: s.got.clone(),
            ..Session::default()
        };
        let others: Vec<Entry> = h.iter().filter(|e| e.from != s.nick).cloned().collect();
        checked += check_receiver(&s.nick, Kind::Stayer, std::slice::from_ref(&mine), &others);
    }
    for (label, kind, sessions) in &received {
        checked += check_receiver(label, *kind, sessions, &h);
    }
    let refused: u64 = sent
        .iter()
        .flat_map(|s| &s.refused)
        .filter(|(code, _)| !NOTICES.contains(&code.as_str()))
        .map(|(_, n)| n)
        .sum();
    let moves: usize = received.iter().map(|(_, _, s)| s.len()).sum();
    eprintln!(
        "cluster soak: {} messages stored, {refused} refused while degraded, {moves} sessions, \
         {checked} deliveries checked, in {:?}",
        h.len(),
        start.elapsed()
    );
}

/// Two servers racing for one nickname: exactly one wins, and the loser
/// is told `nick_in_use`.
#[test]
fn two_servers_racing_for_one_nick_give_it_to_exactly_one() {
    if !nats::available() || !can_cluster() {
        return;
    }
    let dir = TempDir::new("cluster-race");
    let nats = Nats::start(&dir.path);
    let nodes: Vec<Node> = (0..2)
        .map(|k| Node::start(&dir.path, k, &nats.url()))
        .collect();
    wait_as_one(&nodes.iter().map(Node::server).collect::<Vec<_>>(), "ready");
    for round in 0..20 {
        let mut a = nodes[0].server().connect();
        let mut b = nodes[1].server().connect();
        let ids = [&mut a, &mut b].map(|c| c.recv_type("welcome")["id"].as_u64());
        let nick = format!("racer{round}");
        for c in [&mut a, &mut b] {
            c.send(&json!({"type": "nick", "nick": nick}));
        }
        let outcome = [(&mut a, ids[0]), (&mut b, ids[1])].map(|(c, id)| {
            loop {
                let msg = c.recv();
                match msg["type"].as_str() {
                    Some("nick") if msg["id"].as_u64() == id => break Ok(()),
                    Some("error") => break Err(msg["code"].as_str().unwrap_or("?").to_owned()),
                    _ => {}
                }
            }
        });
        let wins = outcome.iter().filter(|o| o.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcome:?}");
        assert!(
            outcome
                .iter()
                .any(|o| o.as_ref().err().is_some_and(|c| c == "nick_in_use")),
            "round {round}: the loser was not told nick_in_use: {outcome:?}"
        );
        for c in [&mut a, &mut b] {
            c.send(&json!({"type": "quit"}));
        }
    }
}

/// A message sent just before its sender quits is delivered on every
/// server, the sender's own included: the sender left after it, in the
/// cluster's order as in the sender's.
#[test]
fn a_message_sent_just_before_quitting_reaches_every_server() {
    if !nats::available() || !can_cluster() {
        return;
    }
    let dir = TempDir::new("cluster-last-words");
    let nats = Nats::start(&dir.path);
    let nodes: Vec<Node> = (0..2)
        .map(|k| Node::start(&dir.path, k, &nats.url()))
        .collect();
    wait_as_one(&nodes.iter().map(Node::server).collect::<Vec<_>>(), "ready");
    let mut near = nodes[0].server().join("near");
    let mut far = nodes[1].server().join("far");
    let mut talker = nodes[0].server().join("talker");
    for c in [&mut near, &mut far] {
        loop {
            // Its arrival as a guest, then its rename.
            let msg = c.recv();
            if msg["type"] == "nick" && msg["new"] == "talker" {
                break;
            }
        }
    }
    talker.send_line(r#"{"type":"group","text":"last words"}"#);
    talker.send_line(r#"{"type":"quit"}"#);
    for (name, c) in [("near (same server)", &mut near), ("far", &mut far)] {
        let mut got = Vec::new();
        loop {
            let msg = c.recv();
            match msg["type"].as_str() {
                Some("group") => got.push(msg["text"].as_str().unwrap_or_default().to_owned()),
                Some("leave") if msg["nick"] == "talker" => break,
                _ => {}
            }
        }
        assert_eq!(
            got,
            ["last words"],
            "{name}: before talker's leave (the sender's order: its message, then its quit)"
        );
    }
}
