//! How the coordinating thread and the event loops of a run agree: a shared
//! clock, the run's phase, the first failure, and the wake-ups both ways
//! (an event loop unparks the coordinator when it has news; the coordinator
//! wakes every loop's `Poll` when the phase changes).

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

/// The token of each event loop's waker; connections use their index.
pub const WAKE: Token = Token(usize::MAX);

pub struct Control {
    /// Every timestamp of the run is in ns since this instant, so that the
    /// threads' clocks agree (CLOCK_MONOTONIC).
    epoch: Instant,
    phase: AtomicU8,
    failure: Mutex<Option<String>>,
    coordinator: Thread,
    wakers: Mutex<Vec<std::sync::Arc<Waker>>>,
}

impl Control {
    /// Made on the coordinating thread, which is the one unparked.
    pub fn new() -> Control {
        Control {
            epoch: Instant::now(),
            phase: AtomicU8::new(0),
            failure: Mutex::new(None),
            coordinator: std::thread::current(),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// A new event loop's `Poll`, whose waker this control will ring.
    fn event_loop(&self) -> io::Result<Poll> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        lock(&self.wakers).push(std::sync::Arc::new(waker));
        Ok(poll)
    }

    /// `n` event loops, one per bench thread.
    pub fn event_loops(&self, n: usize) -> Result<Vec<Poll>, crate::fail::Fail> {
        (0..n)
            .map(|_| {
                self.event_loop().map_err(|e| {
                    crate::fail::Fail::runtime(format!("cannot create an event loop: {e}"))
                })
            })
            .collect()
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    /// Moves every event loop on to `phase`.
    pub fn set_phase(&self, phase: u8) {
        self.phase.store(phase, Ordering::Release);
        for waker in lock(&self.wakers).iter() {
            // A failed wake only delays the loop to its next timeout.
            let _ = waker.wake();
        }
    }

    /// Wakes event loop `i` (in the order [`Control::event_loops`] made
    /// them), when another loop did what it was waiting for.
    pub fn wake(&self, i: usize) {
        if let Some(waker) = lock(&self.wakers).get(i) {
            // A failed wake only delays the loop to its next timeout.
            let _ = waker.wake();
        }
    }

    /// Records why the run cannot go on (the first reason wins) and stops
    /// the event loops.
    pub fn fail(&self, why: String) {
        lock(&self.failure).get_or_insert(why);
        self.nudge();
    }

    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Tells the coordinator a counter moved.
    pub fn nudge(&self) {
        self.coordinator.unpark();
    }

    /// Runs `work` on each event loop, a thread each, while `coordinate`
    /// runs on this thread (the one [`Control::nudge`] unparks); when it
    /// returns, moves the loops on to `stop` and collects what each found.
    pub fn run_loops<T: Send, E>(
        &self,
        polls: Vec<Poll>,
        stop: u8,
        work: impl Fn(usize, Poll) -> T + Sync,
        coordinate: impl FnOnce() -> E,
    ) -> (E, Result<Vec<T>, crate::fail::Fail>) {
        let (end, found) = std::thread::scope(|scope| {
            let work = &work;
            let workers: Vec<_> = polls
                .into_iter()
                .enumerate()
                .map(|(w, poll)| scope.spawn(move || work(w, poll)))
                .collect();
            let end = coordinate();
            self.set_phase(stop);
            let found: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
            (end, found)
        });
        let found = found
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| crate::fail::Fail::runtime("an event loop of the bench crashed"));
        (end, found)
    }
}

/// An event loop's side of a run: its connections, by token.
pub trait EventLoop {
    fn poll(&mut self) -> &mut Poll;
    fn control(&self) -> &Control;
    /// Connection `i` can take more output.
    fn writable(&mut self, i: usize);
    /// Connection `i` has input, or was closed.
    fn readable(&mut self, i: usize);

    /// Waits up to `timeout` and serves the connections with news; false
    /// when the wait itself failed, which fails the run.
    fn turn(&mut self, events: &mut Events, timeout: Duration) -> bool {
        if let Err(e) = wait(self.poll(), events, timeout) {
            self.control().fail(format!("cannot wait for events: {e}"));
            return false;
        }
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let i = event.token().0;
            if event.is_writable() {
                self.writable(i);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.readable(i);
            }
        }
        true
    }
}

/// A poisoned lock only means another thread panicked, which the
/// coordinator reports on joining it; the data is still usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One `poll`, retried when a signal interrupts it.
fn wait(poll: &mut Poll, events: &mut Events, timeout: Duration) -> io::Result<()> {
    loop {
        match poll.poll(events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
