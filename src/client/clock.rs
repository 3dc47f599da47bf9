//! The local time printed before every line, `HH:MM:SS`.
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
    let t = libc::time_t::try_from(secs).unwrap_or(0);
    let mut tm = MaybeUninit::<libc::tm>::uninit();
    // SAFETY: `t` and `tm` are valid for the duration of the call;
    // localtime_r writes only into `tm` and returns null on failure, in which
    // case `tm` is not read.
    let tm = unsafe {
        if libc::localtime_r(&t, tm.as_mut_ptr()).is_null() {
            return hms(secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
        }
        tm.assume_init()
    };
    hms(tm.tm_hour as u64, tm.tm_min as u64, tm.tm_sec as u64)
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
}
