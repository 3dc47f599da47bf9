//! What the load generator asks the kernel: open-file limits, ephemeral
//! ports, CPU time and a process's memory (`/proc`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};

use crate::fail::Fail;

/// Descriptors the bench needs besides its connections: stdio, and an
/// epoll and an eventfd per event loop, with room to spare.
const SPARE_FDS: u64 = 64;

/// Raises the soft open-file limit to the hard one and checks that `conns`
/// connections fit under it, saying how many would when they do not.
pub fn make_room_for(conns: usize) -> Result<(), Fail> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| Fail::runtime(format!("cannot read the open-file limit: {e}")))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .map_err(|e| Fail::runtime(format!("cannot raise the open-file limit: {e}")))?;
    }
    let need = conns as u64 + SPARE_FDS;
    if need > hard {
        return Err(Fail::usage(format!(
            "{conns} connections do not fit under the open-file limit of {hard} \
             (a hard limit, which only root can raise); at most {} fit",
            hard.saturating_sub(SPARE_FDS)
        )));
    }
    Ok(())
}

/// How many connections one source address can open to one server: the
/// ephemeral port range, less a margin for ports already in use.
pub fn ports_per_source() -> usize {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|n| n.parse::<usize>().ok());
            Some((it.next()??, it.next()??))
        });
    // Linux's default range when /proc cannot say.
    let (low, high) = range.unwrap_or((32768, 60999));
    (high.saturating_sub(low) + 1).saturating_sub(1024).max(1)
}

/// The source address for connection `i` of `conns`: `None` (the kernel's
/// choice) when one address has ports enough, otherwise spread over
/// 127.0.0.1, 127.0.0.2... which all reach a loopback server.
pub fn source_for(
    i: usize,
    conns: usize,
    server: SocketAddr,
    per_source: usize,
) -> Result<Option<Ipv4Addr>, Fail> {
    if conns <= per_source {
        return Ok(None);
    }
    let IpAddr::V4(ip) = server.ip() else {
        return Err(Fail::usage(format!(
            "{conns} connections need more than one source address, which only works \
             with an IPv4 loopback server; use at most {per_source}"
        )));
    };
    if !ip.is_loopback() {
        return Err(Fail::usage(format!(
            "{conns} connections need more than one source address, which only works \
             with a loopback server (127.x.x.x); use at most {per_source}"
        )));
    }
    let sources = conns.div_ceil(per_source);
    Ok(Some(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % sources.min(254)) as u8,
    )))
}

/// This process's CPU time so far, user and system.
pub fn own_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(tv.tv_sec().max(0) as u64)
                    + Duration::from_micros(tv.tv_usec().max(0) as u64)
            };
            t(usage.user_time()) + t(usage.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Less CPU time than this, read from `/proc` in 10 ms ticks, is off by
/// more than a fifth: too little to divide into a figure per event.
pub const MIN_PROC_CPU: Duration = Duration::from_millis(50);
/// What the report says instead of a figure from less than [`MIN_PROC_CPU`].
pub const TOO_SHORT_FOR_PROC_CPU: &str =
    "too short to measure (the kernel counts in 10 ms ticks; run longer)";

/// Another process's CPU time so far (all its threads), from
/// `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name in parentheses may hold spaces; fields count from
    // after its closing parenthesis: state is field 3, utime 14, stime 15.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| format!("{path} is not a stat file"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(14), ticks(15)) else {
        return Err(format!("{path} has no CPU times"));
    };
    // Linux reports in USER_HZ, which is 100 on every architecture it
    // exports to user space.
    Ok(Duration::from_millis((user + system) * 10))
}

/// A process's resident memory in bytes, now (`VmRSS`) and at its peak
/// (`VmHWM`), from `/proc/PID/status`.
pub fn resident_bytes(pid: u32) -> Result<(u64, u64), String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| format!("{path} has no {name} line"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Event loops to run when not told: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_memory_and_cpu() {
        let me = std::process::id();
        let (now, peak) = resident_bytes(me).unwrap();
        assert!(now > 0 && peak >= now);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(process_cpu(me).unwrap() > Duration::ZERO);
        assert!(own_cpu() > Duration::ZERO);
        assert!(resident_bytes(u32::MAX).is_err());
    }

    #[test]
    fn sources_spread_only_when_one_address_is_not_enough() {
        let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(source_for(5, 100, server, 1000).unwrap(), None);
        let spread: Vec<_> = (0..4)
            .map(|i| source_for(i, 2500, server, 1000).unwrap())
            .collect();
        assert_eq!(
            spread,
            [1, 2, 3, 1].map(|d| Some(Ipv4Addr::new(127, 0, 0, d)))
        );
        let remote: SocketAddr = "10.0.0.1:9".parse().unwrap();
        assert!(source_for(0, 2500, remote, 1000).is_err());
    }
}
