//! Hostile load: slowloris connections, an endless line, and connection
//! churn. The server must keep serving everyone else promptly, hold its
//! memory to what its limits promise, and leave no descriptor or user
//! behind.
//!
//! These tests measure time and memory, so they take turns (`TURN`): run
//! side by side on two cores they would measure each other.

mod common;

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat::wire::{LeaveReason, ServerMsg};
use common::{
    Conn, Server, WAIT, open_fds, p99, ping_times, proc_status_bytes, raise_fd_limit, reset,
    reset_peak_rss,
};
use serde_json::json;

static TURN: Mutex<()> = Mutex::new(());

fn my_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

const MIB: u64 = 1 << 20;

#[test]
fn a_thousand_slowloris_connections_do_not_slow_an_ordinary_client() {
    const SLOW: usize = 1000;
    const MAX_LINE: u64 = 4096;
    let _turn = my_turn();
    raise_fd_limit();
    let server = Server::start(&["--max-line", "4096"]);
    let mut alice = server.join("alice");
    let before = proc_status_bytes(server.pid(), "VmRSS");

    // Each opens a line, sends half a line's worth, and then only dribbles.
    let opening = format!(r#"{{"type":"group","text":"{}"#, "x".repeat(2000));
    let mut loris: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(opening.as_bytes()).unwrap();
            s
        })
        .collect();
    // Alice has heard of every one of them: all are connected.
    let mut joined = 0;
    while joined < SLOW {
        joined += usize::from(alice.recv()["type"] == "join");
    }

    let done = AtomicBool::new(false);
    let (rtts, bytes) = std::thread::scope(|s| {
        let dribbler = s.spawn(|| {
            // The attack's pace: every connection sends a byte every 100 ms,
            // a twentieth of them every 5 ms, as independent clients would.
            let mut bytes = 0;
            while !done.load(Ordering::Relaxed) {
                for l in loris.iter_mut().skip(bytes % SLOW).take(SLOW / 20) {
                    l.write_all(b"x").unwrap();
                    bytes += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            bytes
        });
        let rtts = ping_times(&mut alice, 200, Duration::from_millis(10));
        done.store(true, Ordering::Relaxed);
        (rtts, dribbler.join().unwrap())
    });
    let after = proc_status_bytes(server.pid(), "VmRSS");
    let p99 = p99(&rtts);
    let growth = after.saturating_sub(before);
    eprintln!(
        "slowloris: {SLOW} connections, {bytes} bytes dribbled; ping p50 {:?} p99 {p99:?}, max {:?}; \
         server RSS {} KiB -> {} KiB (+{} B per connection)",
        {
            let mut s = rtts.clone();
            s.sort();
            s[s.len() / 2]
        },
        rtts.iter().max().unwrap(),
        before / 1024,
        after / 1024,
        growth / SLOW as u64
    );
    assert!(
        p99 < Duration::from_millis(10),
        "ping p99 {p99:?} under {SLOW} slowloris connections"
    );
    // Each holds at most one --max-line of input, plus its bookkeeping.
    let bound = SLOW as u64 * (MAX_LINE + 16 * 1024);
    assert!(
        growth <= bound,
        "server RSS grew by {growth} B for {SLOW} slowloris connections (bound {bound} B)"
    );
    // The room still works for alice.
    let mut bob = server.join("bob");
    alice.send(&json!({"type": "group", "text": "still here"}));
    assert_eq!(bob.recv_type("group")["text"], "still here");
}

#[test]
fn a_gigabyte_line_costs_the_server_one_max_line_and_the_sender_goes_on() {
    const MAX_LINE: u64 = 65536;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let _turn = my_turn();
    let server = Server::start(&[]);
    let mut alice = server.join("alice");
    let mut bob = server.join("bob");
    alice.sync();
    reset_peak_rss(server.pid());
    let before = proc_status_bytes(server.pid(), "VmRSS");

    let start = Instant::now();
    alice.send_raw(br#"{"type":"group","text":""#);
    let chunk = vec![b'x'; CHUNK];
    for _ in 0..CHUNKS {
        alice.send_raw(&chunk);
    }
    alice.send_raw(b"\"}\n");
    let answers = alice.sync();
    let elapsed = start.elapsed();
    let mib = (CHUNK * CHUNKS) >> 20;
    let peak = proc_status_bytes(server.pid(), "VmHWM");
    let growth = peak.saturating_sub(before);
    eprintln!(
        "endless line: {} MiB in {elapsed:?} ({:.0} MiB/s); server RSS {} KiB, peak {} KiB (+{} KiB)",
        mib,
        mib as f64 / elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024,
        growth / 1024
    );
    assert_eq!(
        answers.len(),
        1,
        "one answer for one long line: {answers:?}"
    );
    assert_eq!(answers[0]["code"], "line_too_long", "{}", answers[0]);
    let bound = MAX_LINE + 4 * MIB;
    assert!(
        growth <= bound,
        "server peak RSS grew by {growth} B for one endless line (bound {bound} B)"
    );
    // Nothing of it reached anyone, and alice goes on.
    alice.send(&json!({"type": "group", "text": "after"}));
    assert_eq!(bob.recv()["text"], "after");
}

/// How a churning connection ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    Quit,
    Close,
    Reset,
}

/// Connects, waits for its welcome, and ends as told.
fn churn_once(server: &Server, ending: Ending) {
    let mut conn = server.connect();
    assert_eq!(conn.recv()["type"], "welcome");
    match ending {
        Ending::Quit => {
            conn.send(&json!({"type": "quit"}));
            conn.recv_type("bye");
            assert!(conn.closed());
        }
        Ending::Close => drop(conn),
        Ending::Reset => {
            drop(conn.reader);
            reset(conn.stream);
        }
    }
}

#[test]
fn ten_thousand_connects_and_disconnects_leave_no_descriptor_or_user_behind() {
    const THREADS: usize = 4;
    let cycles: usize = std::env::var("CHAT_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let _turn = my_turn();
    let server = Server::start(&[]);
    let mut watcher = server.join("watcher");
    watcher.sync();
    let fds_before = open_fds(server.pid());

    let endings = [Ending::Quit, Ending::Close, Ending::Reset];
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let server = &server;
            s.spawn(move || {
                for i in (t..cycles).step_by(THREADS) {
                    churn_once(server, endings[i % endings.len()]);
                }
            });
        }
    });
    let elapsed = start.elapsed();

    // The watcher hears every arrival and every departure, with its reason.
    let (mut joins, mut quits, mut disconnects) = (0, 0, 0);
    while quits + disconnects < cycles {
        let mut line = String::new();
        watcher.reader.read_line(&mut line).unwrap();
        match ServerMsg::decode(line.as_bytes()).unwrap() {
            ServerMsg::Join { .. } => joins += 1,
            ServerMsg::Leave { reason, .. } => match reason {
                LeaveReason::Quit => quits += 1,
                LeaveReason::Disconnect => disconnects += 1,
                LeaveReason::Slow => panic!("a churning connection was dropped as slow"),
                LeaveReason::Part => panic!("nobody parted a room"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(watcher.sync().is_empty(), "more departures than arrivals");
    assert_eq!(joins, cycles);
    let expected_quits = (0..cycles).filter(|i| i % endings.len() == 0).count();
    assert_eq!(quits, expected_quits, "leave reasons: quit");
    assert_eq!(
        disconnects,
        cycles - expected_quits,
        "leave reasons: disconnect"
    );

    watcher.send(&json!({"type": "who"}));
    let who = watcher.recv_type("who");
    assert_eq!(who["users"].as_array().map(Vec::len), Some(1), "{who}");

    // No message follows the closing of a descriptor, so wait (bounded)
    // for the count to settle back.
    let deadline = Instant::now() + WAIT;
    let mut fds = open_fds(server.pid());
    while fds != fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10)); // polling /proc, no protocol barrier
        fds = open_fds(server.pid());
    }
    eprintln!(
        "churn: {cycles} cycles ({expected_quits} quit, the rest close and reset) in {elapsed:?}; \
         server descriptors {fds_before} before, {fds} after"
    );
    assert_eq!(fds, fds_before, "descriptors leaked");
    // And the server still serves.
    let mut late = Conn::connect(server.addr);
    assert_eq!(late.recv()["type"], "welcome");
}
