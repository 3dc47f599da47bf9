//! The local time printed before every line, `HH:MM:SS`, and the shorter
//! time a message from history is marked with.
//!
//! Local time needs the time-zone rules, which only the C library reads
//! (from `/etc/localtime` and `TZ`); `localtime_r` is the reentrant way to
//! ask it, and works in the static binary.

use std::mem::MaybeUninit;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::libc;

/// The time now, as `HH:MM:SS` in the local zone.
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    local_hms(secs)
}

fn local_hms(secs: u64) -> String {
    match local(secs) {
        Some(tm) => hms(tm.tm_hour as u64, tm.tm_min as u64, tm.tm_sec as u64),
        None => hms(secs % 86_400 / 3600, secs % 3600 / 60, secs % 60),
    }
}

/// When a stored message was said (`ts`, milliseconds since the epoch):
/// `14:05` today, `Tue 14:05` on another day, so that history read the
/// morning after does not look like it was said just now.
pub fn said_at(ts_ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    said_at_from(ts_ms / 1000, now)
}

fn said_at_from(secs: u64, now: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let (Some(then), Some(today)) = (local(secs), local(now)) else {
        let hm = format!("{:02}:{:02}", secs % 86_400 / 3600, secs % 3600 / 60);
        return if secs / 86_400 == now / 86_400 {
            hm
        } else {
            format!("{} {hm}", DAYS[((secs / 86_400 + 4) % 7) as usize])
        };
    };
    let hm = format!("{:02}:{:02}", then.tm_hour, then.tm_min);
    if (then.tm_year, then.tm_yday) == (today.tm_year, today.tm_yday) {
        hm
    } else {
        let day = DAYS.get(then.tm_wday as usize).copied().unwrap_or("?");
        format!("{day} {hm}")
    }
}

/// The broken-down local time of `secs`, or `None` when the C library
/// cannot say.
fn local(secs: u64) -> Option<libc::tm> {
    let t = libc::time_t::try_from(secs).ok()?;
    let mut tm = MaybeUninit::<libc::tm>::uninit();
    // SAFETY: `t` and `tm` are valid for the duration of the call;
    // localtime_r writes only into `tm` and returns null on failure, in which
    // case `tm` is not read.
    unsafe {
        if libc::localtime_r(&t, tm.as_mut_ptr()).is_null() {
            return None;
        }
        Some(tm.assume_init())
    }
}

fn hms(h: u64, m: u64, s: u64) -> String {
    format!("{h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_digits_each() {
        assert_eq!(hms(7, 5, 9), "07:05:09");
        let now = now();
        assert_eq!(now.len(), 8, "{now}");
        assert!(now.bytes().enumerate().all(|(i, b)| if i == 2 || i == 5 {
            b == b':'
        } else {
            b.is_ascii_digit()
        }));
    }

    #[test]
    fn history_shows_the_day_only_when_it_is_not_today() {
        let now = 1_800_000_000;
        let today = said_at_from(now - 60, now);
        assert_eq!(today.len(), 5, "{today}");
        let last_week = said_at_from(now - 3 * 86_400, now);
        assert_eq!(last_week.len(), 9, "{last_week}");
        assert_eq!(
            &last_week[4..],
            &said_at_from(now - 3 * 86_400, now - 3 * 86_400)
        );
    }
}
