//! Limits on password guessing, per connection and per client address.
//!
//! An attempt is charged when it is made, before its hash is checked, and
//! given back when it succeeds: a thousand connections from one address
//! that all send `login` at once are limited as surely as one connection
//! that sends a thousand.
//!
//! Per connection: [`CONN_TRIES`] attempts, then [`CONN_PAUSE_MS`] of
//! `too_many_attempts`. Per address: a budget of `per_minute` attempts
//! that refills continuously at that rate, so a patient guesser gets one
//! try every few seconds and no burst. IPv6 addresses are counted by /64,
//! what one subscriber usually holds. The per-address table has a fixed
//! size: full, it forgets the addresses whose budget has refilled, then
//! the least recently seen.

use std::collections::HashMap;
use std::net::IpAddr;

/// Attempts a connection may make before it is paused.
pub const CONN_TRIES: u8 = 5;
/// How long a connection that used its attempts is refused.
pub const CONN_PAUSE_MS: u64 = 60_000;
/// Addresses remembered at most (a few megabytes).
pub const MAX_ADDRS: usize = 65_536;

/// One connection's count, kept in its record: eight bytes, since every
/// idle connection carries one.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnTries {
    used: u8,
    /// Seconds since the epoch.
    paused_until: u32,
}

impl ConnTries {
    /// Charges one attempt; `false` (nothing charged) when paused.
    pub fn charge(&mut self, now_ms: u64) -> bool {
        if now_ms / 1000 < u64::from(self.paused_until) {
            return false;
        }
        self.used += 1;
        if self.used >= CONN_TRIES {
            self.used = 0;
            self.paused_until = ((now_ms + CONN_PAUSE_MS) / 1000).min(u64::from(u32::MAX)) as u32;
        }
        true
    }

    /// A login succeeded: the count starts again.
    pub fn reset(&mut self) {
        *self = ConnTries::default();
    }
}

/// Milli-attempts, so the refill needs no floating point.
const MILLI: u64 = 1000;

#[derive(Clone, Copy)]
struct Budget {
    /// Milli-attempts used, as of `at`.
    used: u64,
    at: u64,
}

/// The per-address budgets.
pub struct AddrTries {
    per_minute: u64,
    max: usize,
    map: HashMap<u128, Budget>,
}

impl AddrTries {
    /// `per_minute` 0 is no limit.
    pub fn new(per_minute: u32) -> AddrTries {
        AddrTries::with_capacity(per_minute, MAX_ADDRS)
    }

    pub fn with_capacity(per_minute: u32, max: usize) -> AddrTries {
        AddrTries {
            per_minute: u64::from(per_minute),
            max: max.max(1),
            map: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn refilled(&self, b: Budget, now_ms: u64) -> u64 {
        // per_minute attempts per 60 000 ms, in milli-attempts per ms.
        let back = now_ms.saturating_sub(b.at).saturating_mul(self.per_minute) / 60;
        b.used.saturating_sub(back)
    }

    /// Charges one attempt from `ip`; `false` (nothing charged) when its
    /// budget is spent.
    pub fn charge(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let k = addr_key(ip);
        let used = self.map.get(&k).map_or(0, |&b| self.refilled(b, now_ms));
        if used + MILLI > self.per_minute * MILLI {
            return false;
        }
        if !self.map.contains_key(&k) && self.map.len() >= self.max {
            self.make_room(now_ms);
        }
        self.map.insert(
            k,
            Budget {
                used: used + MILLI,
                at: now_ms,
            },
        );
        true
    }

    /// Gives back an attempt that succeeded.
    pub fn refund(&mut self, ip: IpAddr, now_ms: u64) {
        let k = addr_key(ip);
        if let Some(&b) = self.map.get(&k) {
            let used = self.refilled(b, now_ms).saturating_sub(MILLI);
            if used == 0 {
                self.map.remove(&k);
            } else {
                self.map.insert(k, Budget { used, at: now_ms });
            }
        }
    }

    /// Forgets whoever has a full budget again; if that is nobody, the
    /// least recently seen quarter.
    fn make_room(&mut self, now_ms: u64) {
        let per_minute = self.per_minute;
        self.map.retain(|_, b| {
            let back = now_ms.saturating_sub(b.at).saturating_mul(per_minute) / 60;
            b.used > back
        });
        if self.map.len() >= self.max {
            let mut ats: Vec<u64> = self.map.values().map(|b| b.at).collect();
            let cut = ats.len() / 4;
            ats.select_nth_unstable(cut);
            let oldest = ats[cut];
            self.map.retain(|_, b| b.at > oldest);
        }
    }
}

/// IPv4 whole (IPv4-mapped IPv6 too), IPv6 by its /64.
fn addr_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64 << 64) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_connection_gets_five_tries_then_a_pause() {
        let mut t = ConnTries::default();
        for _ in 0..CONN_TRIES {
            assert!(t.charge(0));
        }
        assert!(!t.charge(1));
        assert!(!t.charge(CONN_PAUSE_MS - 1));
        assert!(t.charge(CONN_PAUSE_MS));
    }

    #[test]
    fn an_address_budget_refills_at_its_rate() {
        let mut t = AddrTries::new(20);
        for _ in 0..20 {
            assert!(t.charge(ip("192.0.2.1"), 0));
        }
        assert!(!t.charge(ip("192.0.2.1"), 0));
        assert!(t.charge(ip("192.0.2.2"), 0), "another address is apart");
        assert!(!t.charge(ip("192.0.2.1"), 2_999));
        assert!(t.charge(ip("192.0.2.1"), 3_000), "one back every 3 s");
        assert!(!t.charge(ip("192.0.2.1"), 3_000));
        t.refund(ip("192.0.2.1"), 3_000);
        assert!(t.charge(ip("192.0.2.1"), 3_000));
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let mut t = AddrTries::new(1);
        assert!(t.charge(ip("2001:db8:1:2::1"), 0));
        assert!(!t.charge(ip("2001:db8:1:2::ffff"), 0));
        assert!(t.charge(ip("2001:db8:1:3::1"), 0));
        assert!(t.charge(ip("192.0.2.9"), 0));
        assert!(!t.charge(ip("::ffff:192.0.2.9"), 0));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut t = AddrTries::with_capacity(20, 1000);
        for i in 0..100_000u32 {
            t.charge(IpAddr::from(i.to_be_bytes()), u64::from(i));
            assert!(t.len() <= 1000);
        }
        let mut none = AddrTries::new(0);
        assert!((0..100).all(|_| none.charge(ip("192.0.2.1"), 0)));
        assert!(none.is_empty());
    }
}
