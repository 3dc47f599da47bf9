//! One event loop of an arrivals run: it opens its share of the members
//! and of the arrivals (each when due), chats for its talkers, and checks
//! every line its connections read.

use std::sync::atomic::Ordering;
use std::time::Duration;

use memchr::memmem;
use mio::{Events, Interest, Poll, Token};

use super::{
    CHECK, CONNECT, CONNECTS_PER_TURN, Counters, DRAIN, FINAL, LEAVE, PAYLOAD, Plan, QUIET,
    READ_BUF, STOP, STORM, SYNC, Tally,
};
use crate::bench::conn::{self, Link};
use crate::bench::control::{Control, EventLoop, lock};
use crate::bench::fanout::{due_at, due_count};
use crate::bench::scan::{self, Payload, Scan, Scanner};
use crate::wire::{ClientMsg, ErrorCode, ServerMsg};

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
    conn: Option<Link>,
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

pub(super) struct Worker<'a> {
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
    pub(super) fn new(
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

    pub(super) fn run(mut self) -> Tally {
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
            if !self.turn(&mut events, timeout) {
                break;
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
        let mut stream = match conn::connect(plan.addr, None, None, Duration::from_secs(10)) {
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
            conn: Some(Link::plain(stream)),
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
        if phase == STORM
            && self.plan.rate > 0
            && let Some(&k) = self.arrivals_to_open.last()
        {
            let due = self.storm_ns + arrival_at(k, self.plan.rate);
            timeout = timeout.min(Duration::from_nanos(due.saturating_sub(now)));
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

    fn closed(&mut self, i: usize, error: Option<std::io::Error>) {
        let m = &mut self.members[i];
        let Some(mut conn) = m.conn.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.stream());
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
        let result = conn::read_all(conn, buf, |conn, data| {
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
            conn::lines(conn, data, |line| line_state.on_line(line, now, &mut cx))
        });
        match result {
            Ok(()) if !self.members[i].reply.is_empty() => self.send_reply(i),
            Ok(()) => {}
            Err(e) => self.closed(i, e),
        }
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
}
