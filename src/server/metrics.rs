//! `/metrics`: what the loop counts, and the process as `/proc` shows it,
//! in the Prometheus text format (version 0.0.4).
//!
//! The families follow what people already watch a chat or message server
//! by (NATS's `/varz`, Redis's `INFO`): connections by door, messages in
//! and out, bytes out, slow clients dropped, rooms, the history store,
//! failed logins, HTTP answers, and how long a loop turn takes, which is
//! the latency every client pays. Names are Prometheus's: base units,
//! `_total` on counters, the standard `process_*` families.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The HTTP statuses the web door answers with, in the order they are
/// counted.
pub const STATUSES: [u16; 8] = [101, 200, 400, 403, 404, 405, 431, 503];

/// Loop-turn histogram bounds, in nanoseconds: 25 µs to 100 ms.
const TURN_BOUNDS_NS: [u64; 11] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
];

/// How long loop turns took: a count per bucket (the last one above every
/// bound) and the sum. Observing is a few comparisons, cheap enough for
/// every turn.
#[derive(Default, Clone, Copy)]
pub struct Turns {
    buckets: [u64; TURN_BOUNDS_NS.len() + 1],
    sum_ns: u64,
}

impl Turns {
    pub fn observe(&mut self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = TURN_BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.buckets[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }
}

/// What the server counts. Doors are indexed json, irc, websocket.
#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub conns: [usize; 3],
    pub http_conns: usize,
    pub rooms: usize,
    /// Messages (lines, text frames) received, by door.
    pub msgs_in: [u64; 3],
    /// Messages queued for clients (each receiver counts).
    pub msgs_out: u64,
    /// Bytes of messages written to clients (before TLS).
    pub bytes_out: u64,
    pub dropped_slow: u64,
    pub failed_logins: u64,
    /// HTTP answers, by [`STATUSES`].
    pub http: [u64; STATUSES.len()],
    /// The history store's last committed sequence number (0 without one).
    pub stored_seq: u64,
    pub started: Option<Instant>,
    pub turns: Turns,
    /// The backplane's, with `--cluster` only.
    pub cluster: Option<Cluster>,
}

/// What the backplane counts: how much this server hands to NATS and
/// takes from its stream, and whether it is in contact with the rest.
#[derive(Default, Clone, Copy)]
pub struct Cluster {
    /// Messages handed to NATS (ops, private messages, name claims and
    /// releases) and the bytes of the ops among them.
    pub published: u64,
    pub published_bytes: u64,
    /// Stream messages applied here (every server's, this one's included).
    pub received: u64,
    pub up: bool,
    /// Servers known to be alive, this one included.
    pub servers: usize,
}

/// The doors as labelled.
pub const DOORS: [&str; 3] = ["json", "irc", "websocket"];

impl Counts {
    /// Counts an HTTP answer by its status (the status line's code).
    pub fn answered(&mut self, answer: &[u8]) {
        let code = answer
            .get(9..12)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<u16>().ok());
        if let Some(i) = code.and_then(|c| STATUSES.iter().position(|&s| s == c)) {
            self.http[i] += 1;
        }
    }
}

/// Writes one family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The whole `/metrics` body.
pub fn render(c: &Counts) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "chat_connections",
        "gauge",
        "Open connections, by door.",
    );
    for (door, n) in DOORS.iter().zip(c.conns) {
        let _ = writeln!(out, "chat_connections{{door=\"{door}\"}} {n}");
    }
    let _ = writeln!(out, "chat_connections{{door=\"http\"}} {}", c.http_conns);
    family(
        &mut out,
        "chat_messages_in_total",
        "counter",
        "Messages received from clients (lines, text frames), by door.",
    );
    for (door, n) in DOORS.iter().zip(c.msgs_in) {
        let _ = writeln!(out, "chat_messages_in_total{{door=\"{door}\"}} {n}");
    }
    single(
        &mut out,
        "chat_lines_in_total",
        "counter",
        "Messages received from clients, all doors.",
        c.msgs_in.iter().sum::<u64>(),
    );
    single(
        &mut out,
        "chat_messages_out_total",
        "counter",
        "Deliveries: messages queued for clients, one per receiver.",
        c.msgs_out,
    );
    single(
        &mut out,
        "chat_bytes_out_total",
        "counter",
        "Bytes of messages written to clients (before TLS).",
        c.bytes_out,
    );
    single(
        &mut out,
        "chat_dropped_slow_total",
        "counter",
        "Clients dropped for reading too slowly.",
        c.dropped_slow,
    );
    single(
        &mut out,
        "chat_rooms",
        "gauge",
        "Rooms with someone in them.",
        c.rooms,
    );
    single(
        &mut out,
        "chat_history_last_seq",
        "gauge",
        "Sequence number of the last message the history store committed (0 without --db).",
        c.stored_seq,
    );
    single(
        &mut out,
        "chat_failed_logins_total",
        "counter",
        "Logins refused for a wrong name or password.",
        c.failed_logins,
    );
    family(
        &mut out,
        "chat_http_requests_total",
        "counter",
        "HTTP requests answered, by status code.",
    );
    for (code, n) in STATUSES.iter().zip(c.http) {
        let _ = writeln!(out, "chat_http_requests_total{{code=\"{code}\"}} {n}");
    }
    let uptime = c.started.map_or(0.0, |at| at.elapsed().as_secs_f64());
    single(
        &mut out,
        "chat_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        uptime,
    );
    family(
        &mut out,
        "chat_loop_turn_seconds",
        "histogram",
        "Duration of one event-loop turn (react and write).",
    );
    let mut cumulative = 0;
    for (i, n) in c.turns.buckets.iter().enumerate() {
        cumulative += n;
        let le = match TURN_BOUNDS_NS.get(i) {
            Some(ns) => format!("{}", *ns as f64 / 1e9),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(
            out,
            "chat_loop_turn_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "chat_loop_turn_seconds_sum {}\nchat_loop_turn_seconds_count {cumulative}",
        c.turns.sum_ns as f64 / 1e9
    );
    if let Some(cl) = &c.cluster {
        cluster(&mut out, cl);
    }
    process(&mut out);
    out
}

/// The `chat_cluster_*` families.
fn cluster(out: &mut String, c: &Cluster) {
    single(
        out,
        "chat_cluster_published_messages_total",
        "counter",
        "Messages handed to NATS (changes, private messages, name claims and releases).",
        c.published,
    );
    single(
        out,
        "chat_cluster_published_bytes_total",
        "counter",
        "Bytes of the changes published to the cluster's stream.",
        c.published_bytes,
    );
    single(
        out,
        "chat_cluster_received_messages_total",
        "counter",
        "Messages of the cluster's stream applied here, this server's included.",
        c.received,
    );
    single(
        out,
        "chat_cluster_up",
        "gauge",
        "1 while in contact with NATS, 0 in degraded mode.",
        u8::from(c.up),
    );
    single(
        out,
        "chat_cluster_servers",
        "gauge",
        "Servers of the cluster known to be alive, this one included.",
        c.servers,
    );
}

/// Linux reports CPU time in ticks of 1/100 s to user space whatever the
/// kernel's HZ (`USER_HZ`); Prometheus's own procfs reader assumes the same.
const USER_HZ: f64 = 100.0;

/// The standard `process_*` families, read from `/proc` now. A file that
/// cannot be read leaves its families out rather than report a wrong 0.
fn process(out: &mut String) {
    if let Some(kib) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| status_kib(&s, "VmRSS:"))
    {
        single(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            kib * 1024,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is among them.
        let open = dir.count().saturating_sub(1);
        single(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open,
        );
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| max_open_files(&s))
    {
        single(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields);
    if let Some((utime, stime, start_ticks)) = fields {
        single(
            out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) as f64 / USER_HZ,
        );
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        if let Some(boot) = boot {
            single(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + start_ticks as f64 / USER_HZ,
            );
        }
    }
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// utime, stime and starttime from `/proc/self/stat` (fields 14, 15 and
/// 22; the command name in parentheses may hold spaces, so fields are
/// counted after its closing parenthesis).
fn stat_fields(stat: &str) -> Option<(u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some((field(14)?, field(15)?, field(22)?))
}

fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small parser of the text format: every sample belongs to a family
    /// announced by HELP and TYPE before it, names and labels are well
    /// formed, values are numbers, and a histogram's buckets rise to
    /// `+Inf`, which equals its count. Returns the samples by their full
    /// key (`name{labels}`).
    fn parse(text: &str) -> Result<HashMap<String, f64>, String> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped: Vec<String> = Vec::new();
        let mut samples = HashMap::new();
        let mut last_bucket: Option<(String, f64)> = None;
        let name_ok = |n: &str| {
            !n.is_empty()
                && !n.starts_with(|c: char| c.is_ascii_digit())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').ok_or(format!("HELP: {line}"))?;
                if helped.iter().any(|h| h == name) {
                    return Err(format!("family twice: {name}"));
                }
                helped.push(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or(format!("TYPE: {line}"))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("type: {line}"));
                }
                if helped.last().map(String::as_str) != Some(name) {
                    return Err(format!("TYPE without HELP just before: {line}"));
                }
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                return Err(format!("stray line: {line:?}"));
            }
            let (key, value) = line.rsplit_once(' ').ok_or(format!("sample: {line}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().map_err(|_| format!("value: {line}"))?,
            };
            let (name, labels) = match key.split_once('{') {
                Some((n, l)) => (
                    n,
                    Some(l.strip_suffix('}').ok_or(format!("labels: {line}"))?),
                ),
                None => (key, None),
            };
            if !name_ok(name) {
                return Err(format!("name: {line}"));
            }
            for pair in labels.into_iter().flat_map(|l| l.split(',')) {
                let (label, v) = pair.split_once('=').ok_or(format!("label: {line}"))?;
                let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
                if !(name_ok(label) && quoted) {
                    return Err(format!("label: {line}"));
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            let kind = types.get(family).ok_or(format!("no TYPE before: {line}"))?;
            if kind == "counter" && !name.ends_with("_total") {
                return Err(format!("counter not named _total: {line}"));
            }
            if name.ends_with("_bucket") {
                if let Some((f, before)) = &last_bucket
                    && f == family
                    && value < *before
                {
                    return Err(format!("buckets fall: {line}"));
                }
                last_bucket = Some((family.to_owned(), value));
            }
            if name.ends_with("_count")
                && let Some((f, inf)) = &last_bucket
                && f == family
                && *inf != value
            {
                return Err(format!("+Inf bucket is not the count: {line}"));
            }
            samples.insert(key.to_owned(), value);
        }
        Ok(samples)
    }

    #[test]
    fn the_output_parses_and_says_what_was_counted() {
        let mut c = Counts {
            started: Some(Instant::now()),
            ..Counts::default()
        };
        c.conns = [2, 1, 3];
        c.msgs_in = [5, 6, 7];
        c.answered(b"HTTP/1.1 404 Not Found\r\n");
        c.answered(b"HTTP/1.1 200 OK\r\n");
        c.answered(b"HTTP/1.1 200 OK\r\n");
        c.turns.observe(Duration::from_micros(10));
        c.turns.observe(Duration::from_micros(30));
        c.turns.observe(Duration::from_secs(1));
        let text = render(&c);
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s["chat_connections{door=\"websocket\"}"], 3.0);
        assert_eq!(s["chat_messages_in_total{door=\"irc\"}"], 6.0);
        assert_eq!(s["chat_lines_in_total"], 18.0);
        assert_eq!(s["chat_http_requests_total{code=\"200\"}"], 2.0);
        assert_eq!(s["chat_http_requests_total{code=\"404\"}"], 1.0);
        assert_eq!(s["chat_loop_turn_seconds_bucket{le=\"0.000025\"}"], 1.0);
        assert_eq!(s["chat_loop_turn_seconds_bucket{le=\"0.00005\"}"], 2.0);
        assert_eq!(s["chat_loop_turn_seconds_bucket{le=\"0.1\"}"], 2.0);
        assert_eq!(s["chat_loop_turn_seconds_bucket{le=\"+Inf\"}"], 3.0);
        assert_eq!(s["chat_loop_turn_seconds_count"], 3.0);
        assert!(s["process_resident_memory_bytes"] > 0.0);
        assert!(s["process_open_fds"] >= 3.0);
        assert!(s["process_start_time_seconds"] > 1.5e9);
        assert!(s.contains_key("process_cpu_seconds_total"));
        assert!(
            !s.keys().any(|k| k.starts_with("chat_cluster_")),
            "no cluster families without --cluster"
        );
        c.cluster = Some(Cluster {
            published: 4,
            published_bytes: 400,
            received: 9,
            up: false,
            servers: 3,
        });
        let text = render(&c);
        let s = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s["chat_cluster_published_messages_total"], 4.0);
        assert_eq!(s["chat_cluster_published_bytes_total"], 400.0);
        assert_eq!(s["chat_cluster_received_messages_total"], 9.0);
        assert_eq!(s["chat_cluster_up"], 0.0);
        assert_eq!(s["chat_cluster_servers"], 3.0);
    }

    #[test]
    fn the_parser_refuses_what_prometheus_would() {
        assert!(parse("x 1\n").is_err(), "no TYPE");
        assert!(
            parse("# HELP x h\n# TYPE x counter\nx 1\n").is_err(),
            "counter without _total"
        );
        assert!(parse("# HELP x h\n# TYPE x gauge\nx one\n").is_err());
        assert!(parse("# HELP x h\n# TYPE x gauge\nx{a=b} 1\n").is_err());
        assert!(parse("# HELP x h\n# TYPE x gauge\nx{a=\"b\"} 1\n").is_ok());
    }

    #[test]
    fn proc_fields_are_found() {
        let stat = "12 (a b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 13 14 15 16 17 18 333 20";
        assert_eq!(stat_fields(stat), Some((111, 222, 333)));
        assert_eq!(status_kib("VmRSS:\t  1234 kB\n", "VmRSS:"), Some(1234));
        assert_eq!(
            max_open_files(
                "Max open files            20000                20000                files\n"
            ),
            Some(20000)
        );
    }
}
