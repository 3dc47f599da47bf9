//! Flood control: a token bucket per connection (`--rate`, `--burst`).
//!
//! A connection that has spent its allowance is simply not read until the
//! bucket refills. Its bytes wait in the kernel's buffers, then in the
//! sender's, and TCP slows the sender down: nothing it sent is dropped, and
//! the time the server would have spent on its flood goes to everyone else.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// Messages per second, sustained. Zero turns flood control off.
    pub rate: u32,
    /// Messages that may arrive at once after a quiet spell.
    pub burst: u32,
}

impl Limit {
    pub fn is_off(&self) -> bool {
        self.rate == 0
    }
}

/// What a connection may still send.
#[derive(Debug)]
pub struct Allowance {
    tokens: f64,
    refilled: Instant,
}

impl Allowance {
    pub fn new(limit: Limit, now: Instant) -> Allowance {
        Allowance {
            tokens: f64::from(limit.burst.max(1)),
            refilled: now,
        }
    }

    fn refill(&mut self, limit: Limit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(limit.rate)).min(f64::from(limit.burst.max(1)));
        self.refilled = now;
    }

    /// Whether one more message may be read now.
    pub fn has_room(&mut self, limit: Limit, now: Instant) -> bool {
        if limit.is_off() {
            return true;
        }
        self.refill(limit, now);
        self.tokens >= 1.0
    }

    /// Counts one message read.
    pub fn spend(&mut self, limit: Limit) {
        if !limit.is_off() {
            self.tokens -= 1.0;
        }
    }

    /// When the next message may be read.
    pub fn ready_at(&self, limit: Limit) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.refilled + Duration::from_secs_f64(missing / f64::from(limit.rate.max(1)))
    }

    /// How much to read at once: about what the allowance lets through, so
    /// that input held back for later stays small.
    pub fn read_size(&self, limit: Limit, max: usize) -> usize {
        if limit.is_off() {
            return max;
        }
        ((self.tokens.max(0.0) as usize).saturating_mul(128)).clamp(4096, max.min(64 * 1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = Limit { rate: 10, burst: 3 };
        let t0 = Instant::now();
        let mut a = Allowance::new(limit, t0);
        for _ in 0..3 {
            assert!(a.has_room(limit, t0));
            a.spend(limit);
        }
        assert!(!a.has_room(limit, t0), "burst spent");
        let ready = a.ready_at(limit);
        assert_eq!(ready.duration_since(t0), Duration::from_millis(100));
        assert!(!a.has_room(limit, t0 + Duration::from_millis(50)));
        assert!(a.has_room(limit, t0 + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        let mut n = 0;
        while a.has_room(limit, later) {
            a.spend(limit);
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn zero_rate_is_off() {
        let limit = Limit { rate: 0, burst: 0 };
        let t0 = Instant::now();
        let mut a = Allowance::new(limit, t0);
        for _ in 0..10_000 {
            assert!(a.has_room(limit, t0));
            a.spend(limit);
        }
        assert_eq!(a.read_size(limit, 1 << 20), 1 << 20);
    }
}
