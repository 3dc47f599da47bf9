//! `chat bench`: a small fan-out against the real server accounts for every
//! delivery; idle reports the server's memory per connection; and a server
//! that loses or duplicates a message makes the bench fail.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{Server, chat};
use serde_json::{Value, json};

fn run(args: &[&str]) -> Output {
    chat()
        .arg("bench")
        .args(args)
        .output()
        .expect("run chat bench")
}

/// The JSON report on stdout, with both streams shown on failure.
fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Asserts the run succeeded, with both streams shown if not.
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fan-out that is over at once (2 receivers, 1 sender, 10 messages),
/// for what its table says.
fn small_fanout(server: &Server, extra: &[&str]) -> Output {
    let addr = server.addr.to_string();
    let args = ["fanout", "-s", &addr, "-r", "2", "-S", "1", "-n", "10"];
    run(&[&args[..], extra].concat())
}

#[test]
fn fanout_accounts_for_every_delivery() {
    let server = Server::start(&["--rate", "0"]);
    let addr = server.addr.to_string();
    let pid = server.pid().to_string();
    let out = run(&[
        "fanout",
        "--server",
        &addr,
        "-r",
        "5",
        "-S",
        "2",
        "-n",
        "200",
        "-p",
        "80",
        "--json",
        "--server-pid",
        &pid,
    ]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["mode"], "fanout");
    assert_eq!(r["expected"], 5 * 2 * 200, "{r}");
    assert_eq!(r["received"], r["expected"], "{r}");
    for zero in ["missing", "out_of_order", "corrupt"] {
        assert_eq!(r[zero], 0, "{zero}: {r}");
    }
    assert_eq!(r["lost"], "none");
    assert!(r["deliveries_per_s"].as_f64().unwrap() > 0.0, "{r}");
    let (p50, max) = (r["latency_p50_ms"].as_f64(), r["latency_max_ms"].as_f64());
    assert!(p50.unwrap() > 0.0 && p50 <= max, "{r}");
    assert!(
        r["server_cpu_s"].is_number() || r["server_cpu_s"].is_null(),
        "{r}"
    );
    assert_eq!(r["warning"], "", "{r}");
}

#[test]
fn a_server_with_flood_control_is_named_as_what_was_measured() {
    // 100 messages a sender at 100 a second: the run measures the limit.
    let server = Server::start(&["--rate", "100", "--burst", "10"]);
    let pid = server.pid().to_string();
    let out = run(&[
        "fanout",
        "-s",
        &server.addr.to_string(),
        "-r",
        "2",
        "-S",
        "2",
        "-n",
        "100",
        "--server-pid",
        &pid,
        "--json",
    ]);
    let r = report(&out);
    assert!(out.status.success(), "nothing was lost: {r}");
    let warning = r["warning"].as_str().unwrap();
    assert!(warning.contains("flood control"), "{r}");
    assert!(warning.contains("--rate 0"), "{r}");
}

#[test]
fn renames_beside_a_fanout_are_counted_and_disturb_nothing() {
    let server = Server::start(&[]);
    // Half a second of sending, with ten renamers at 200 renames a second.
    let addr = server.addr.to_string();
    let out = run(&[
        "fanout",
        "-s",
        &addr,
        "-r",
        "2",
        "-S",
        "1",
        "-n",
        "200",
        "--rate",
        "400",
        "--renames",
        "200",
        "--json",
    ]);
    let r = report(&out);
    assert!(out.status.success(), "nothing was lost: {r}");
    assert_eq!(r["received"], 400, "{r}");
    let renames = r["renames"].as_u64().unwrap_or(0);
    assert!(renames >= 10, "each renamer renamed at least once: {r}");
    assert!(r["renames_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    // Only the chat protocol over plain TCP has nicknames to change.
    let refused = run(&["fanout", "--proto", "nats", "--renames", "10"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

#[test]
fn fanout_prints_a_table_without_json() {
    let server = Server::start(&[]);
    let out = small_fanout(&server, &[]);
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("chat bench fanout: 2 receivers, 1 senders"),
        "{table}"
    );
    assert!(
        table.contains("server CPU per delivery  not measured (add --server-pid PID)"),
        "{table}"
    );
    for row in [
        "deliveries expected",
        "deliveries received",
        "latency p99.9",
        "missing",
    ] {
        assert!(table.contains(row), "no {row:?} in\n{table}");
    }
}

#[test]
fn idle_reports_memory_per_connection_and_ping_time() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let out = run(&[
        "idle",
        "--server",
        &server.addr.to_string(),
        "-c",
        "200",
        "--server-pid",
        &pid,
        "--hold",
        "0s",
        "--json",
    ]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["conns"], 200);
    assert!(r["rss_per_conn_bytes"].as_f64().unwrap() > 0.0, "{r}");
    assert!(
        r["rss_after_kib"].as_f64().unwrap() > r["rss_before_kib"].as_f64().unwrap(),
        "{r}"
    );
    assert_eq!(r["pings"], 100, "{r}");
    assert!(r["ping_p50_ms"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn idle_unread_measures_connections_that_stop_reading() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let args = ["idle", "--server", &server.addr.to_string(), "-c", "50"];
    let out = run(&[
        &args[..],
        &["--unread", "--server-pid", &pid, "--hold", "0s"],
    ]
    .concat());
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("connections not reading")
            && table.contains("49 of 50 (stopped after their welcome"),
        "{table}"
    );
    let rss = table
        .lines()
        .find(|l| l.contains("server RSS per connection"))
        .unwrap_or_else(|| panic!("no RSS row: {table}"));
    assert!(rss.ends_with("bytes"), "{table}");
}

#[test]
fn a_run_too_short_to_time_the_server_says_so() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let out = small_fanout(&server, &["--server-pid", &pid]);
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.contains("server CPU per delivery"))
        .unwrap_or_else(|| panic!("no server CPU row in\n{table}"));
    assert!(row.contains("too short to measure"), "{table}");
    assert!(!row.contains(" ns"), "{table}");
}

#[test]
fn idle_without_the_server_pid_says_which_option_adds_memory() {
    let server = Server::start(&[]);
    // CHAT_SERVER names the server, as it does for client and bot.
    let out = chat()
        .env("CHAT_SERVER", server.addr.to_string())
        .args(["bench", "idle", "-c", "5", "--hold", "0s"])
        .output()
        .expect("run chat bench");
    assert_ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("server RSS per connection  not measured (add --server-pid PID)"),
        "{table}"
    );
}

#[test]
fn more_connections_than_descriptors_is_refused_up_front() {
    let out = run(&["idle", "--server", "127.0.0.1:9", "-c", "100000000"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open-file limit"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// What the fake server does wrong with the fourth group message.
#[derive(Clone, Copy)]
enum Fault {
    Drop,
    Duplicate,
    /// Disconnects receiver `r1` as slow instead of relaying it.
    DisconnectSlow,
    /// Does not tell the first connection that the fifth arrived.
    DropJoin,
}

/// The fake server's connections: id, nickname, socket.
type Clients = Mutex<Vec<(u64, String, TcpStream)>>;

/// A chat server just good enough for the bench's setup (welcome, nick,
/// pong), relaying group messages to everyone else, with one fault.
fn faulty_server(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let clients: Arc<Clients> = Arc::default();
    let groups = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for (id, stream) in (1..).zip(listener.incoming()) {
            let Ok(mut stream) = stream else { return };
            let nick = format!("guest{id}");
            let mut all = clients.lock().unwrap();
            let welcome = json!({"type": "welcome", "id": id, "nick": nick,
                                 "text": "hi", "users": all.len() + 1});
            stream.write_all(format!("{welcome}\n").as_bytes()).unwrap();
            let join = format!(
                "{}\n",
                json!({"type": "join", "id": id, "nick": nick, "ts": 0})
            );
            for (n, (_, _, s)) in all.iter_mut().enumerate() {
                if !(matches!(fault, Fault::DropJoin) && id == 5 && n == 0) {
                    let _ = s.write_all(join.as_bytes());
                }
            }
            all.push((id, nick, stream.try_clone().unwrap()));
            drop(all);
            let (clients, groups) = (clients.clone(), groups.clone());
            std::thread::spawn(move || serve(id, stream, fault, &clients, &groups));
        }
    });
    addr
}

fn serve(id: u64, mut stream: TcpStream, fault: Fault, clients: &Clients, groups: &AtomicU64) {
    let mut nick = format!("guest{id}");
    for line in BufReader::new(stream.try_clone().unwrap()).lines() {
        let Ok(line) = line else { return };
        let msg: Value = serde_json::from_str(&line).unwrap_or_default();
        match msg["type"].as_str() {
            Some("nick") => {
                let new = msg["nick"].as_str().unwrap_or_default().to_string();
                let answer = json!({"type": "nick", "id": id, "old": nick, "new": new, "ts": 0});
                // Under the lock, in one write: other threads write joins
                // to this socket too.
                let mut all = clients.lock().unwrap();
                stream.write_all(format!("{answer}\n").as_bytes()).unwrap();
                for (other, name, _) in all.iter_mut() {
                    if *other == id {
                        name.clone_from(&new);
                    }
                }
                nick = new;
            }
            Some("ping") => {
                let _all = clients.lock().unwrap();
                stream.write_all(b"{\"type\":\"pong\"}\n").unwrap();
            }
            Some("group") => {
                let copies = match (groups.fetch_add(1, Ordering::SeqCst), fault) {
                    (3, Fault::Drop) => 0,
                    (3, Fault::Duplicate) => 2,
                    (3, Fault::DisconnectSlow) => {
                        disconnect_slow(clients, "r1");
                        1
                    }
                    _ => 1,
                };
                let relay = json!({"type": "group", "from": nick, "text": msg["text"], "ts": 0});
                for (other, _, s) in clients.lock().unwrap().iter_mut() {
                    for _ in 0..copies {
                        if *other != id {
                            let _ = writeln!(s, "{relay}");
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Closes `victim`'s connection and tells everyone else it was slow.
fn disconnect_slow(clients: &Clients, victim: &str) {
    let mut clients = clients.lock().unwrap();
    let leave = json!({"type": "leave", "id": 0, "nick": victim, "reason": "slow", "ts": 0});
    clients.retain_mut(|(_, nick, s)| {
        if nick == victim {
            let _ = s.shutdown(std::net::Shutdown::Both);
            return false;
        }
        let _ = writeln!(s, "{leave}");
        true
    });
}

/// A small fan-out (3 receivers, 2 senders, 20 messages each) against a
/// fake server with `fault`; the exit status and the JSON report.
fn fanout_against(fault: Fault, timeout: &str) -> (Output, Value) {
    let addr = faulty_server(fault).to_string();
    let out = run(&[
        "fanout",
        "--server",
        &addr,
        "-r",
        "3",
        "-S",
        "2",
        "-n",
        "20",
        "--json",
        "--timeout",
        timeout,
    ]);
    let r = report(&out);
    (out, r)
}

#[test]
fn a_lost_message_fails_the_run() {
    let (out, r) = fanout_against(Fault::Drop, "1s");
    assert_eq!(out.status.code(), Some(1), "{r}");
    assert_eq!(r["missing"], 3, "one message, to three receivers: {r}");
    assert_eq!(r["received"], 3 * 2 * 20 - 3, "{r}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 of 120 deliveries missing"), "{err}");
}

#[test]
fn a_duplicated_message_fails_the_run() {
    let (out, r) = fanout_against(Fault::Duplicate, "5s");
    assert_eq!(out.status.code(), Some(1), "{r}");
    assert_eq!(r["out_of_order"], 3, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 duplicated or reordered"), "{err}");
}

#[test]
fn a_receiver_disconnected_as_slow_fails_the_run() {
    let (out, r) = fanout_against(Fault::DisconnectSlow, "5s");
    assert_eq!(out.status.code(), Some(1), "{r}");
    assert_eq!(r["lost"], "r1 (disconnected as slow)", "{r}");
    let missing = r["missing"].as_u64().unwrap();
    assert!(
        missing > 0 && missing <= 40,
        "r1 missed some of its 40: {r}"
    );
    assert_eq!(r["received"].as_u64().unwrap() + missing, 120, "{r}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the server dropped r1 (disconnected as slow)"),
        "{err}"
    );
}

#[test]
fn arrivals_account_for_every_join_and_group_message() {
    let server = Server::start(&["--rate", "0"]);
    let pid = server.pid().to_string();
    let out = run(&[
        "arrivals",
        "-s",
        &server.addr.to_string(),
        "-c",
        "100",
        "--present",
        "5",
        "--talkers",
        "2",
        "--chat-rate",
        "200",
        "--quiet",
        "200ms",
        "--leave",
        "--server-pid",
        &pid,
        "--json",
    ]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["mode"], "arrivals");
    // Arrival k finds the 7 members and the k arrivals before it, and
    // leaves the 7 and the 99 - k after it.
    assert_eq!(r["joins_expected"], 100 * 7 + 99 * 100 / 2, "{r}");
    assert_eq!(r["joins_received"], r["joins_expected"], "{r}");
    assert_eq!(r["leaves_expected"], r["joins_expected"], "{r}");
    assert_eq!(r["leaves_received"], r["leaves_expected"], "{r}");
    assert!(r["departures_per_s"].as_f64().unwrap() > 0.0, "{r}");
    for zero in ["group_missing", "group_out_of_order", "corrupt"] {
        assert_eq!(r[zero], 0, "{zero}: {r}");
    }
    assert!(r["quiet_samples"].as_u64().unwrap() > 0, "{r}");
    assert!(r["storm_samples"].as_u64().unwrap() > 0, "{r}");
    assert!(r["arrivals_per_s"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn arrivals_into_a_room_join_it_or_say_the_server_has_no_rooms() {
    let server = Server::start(&["--rate", "0"]);
    let out = run(&[
        "arrivals",
        "-s",
        &server.addr.to_string(),
        "-c",
        "20",
        "--talkers",
        "1",
        "--quiet",
        "100ms",
        "--room",
        "bench",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let r = report(&out);
        assert_eq!(r["joins_missing"], 0, "{r}");
        assert_eq!(r["joins_received"], 20 + 19 * 20 / 2, "{r}");
    } else {
        assert!(err.contains("run without --room"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_lost_join_fails_the_arrivals_run() {
    let addr = faulty_server(Fault::DropJoin).to_string();
    let out = run(&[
        "arrivals",
        "-s",
        &addr,
        "-c",
        "5",
        "--present",
        "2",
        "--talkers",
        "0",
        "--json",
    ]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r}");
    // Arrivals 3 to 7 find 2, 3, 4, 5 and 6 others.
    assert_eq!(r["joins_expected"], 20, "{r}");
    assert_eq!(r["joins_missing"], 1, "{r}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 of 20 joins missing"), "{err}");
}

/// Subscribers of the fake pub/sub server: their sockets.
type Subscribers = Mutex<Vec<TcpStream>>;

/// Just enough of a NATS or Redis server for `fanout --proto`: NATS greets
/// with INFO, answers PING and relays PUB to every SUB as MSG; Redis
/// confirms SUBSCRIBE, answers PING and relays PUBLISH (a RESP array) as a
/// `message` to every subscriber.
fn fake_pubsub(proto: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let subs: Arc<Subscribers> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            if proto == "nats" {
                stream
                    .write_all(b"INFO {\"server_id\":\"fake\"}\r\n")
                    .unwrap();
            }
            let subs = subs.clone();
            std::thread::spawn(move || serve_pubsub(proto, stream, &subs));
        }
    });
    addr
}

fn serve_pubsub(proto: &str, stream: TcpStream, subs: &Subscribers) {
    use std::io::Read;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    let line = |reader: &mut BufReader<TcpStream>| {
        let mut l = String::new();
        match reader.read_line(&mut l) {
            Ok(n) if n > 0 => Some(l.trim_end().to_string()),
            _ => None,
        }
    };
    // Replies go out under the lock too, so no line is cut by a relay.
    let reply = |out: &mut TcpStream, bytes: &[u8]| {
        let _lock = subs.lock().unwrap();
        let _ = out.write_all(bytes);
    };
    while let Some(l) = line(&mut reader) {
        let (publish, n) = match (proto, l.as_str()) {
            ("nats", "PING") | ("redis", "PING") => {
                let pong: &[u8] = if proto == "nats" {
                    b"PONG\r\n"
                } else {
                    b"+PONG\r\n"
                };
                reply(&mut out, pong);
                continue;
            }
            ("nats", l) if l.starts_with("SUB ") => {
                subs.lock().unwrap().push(out.try_clone().unwrap());
                continue;
            }
            ("redis", "SUBSCRIBE bench") => {
                reply(&mut out, b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n");
                subs.lock().unwrap().push(out.try_clone().unwrap());
                continue;
            }
            ("nats", l) if l.starts_with("PUB bench ") => (true, l[10..].parse::<usize>().unwrap()),
            ("redis", "*3") => {
                for expected in ["$7", "PUBLISH", "$5", "bench"] {
                    assert_eq!(line(&mut reader).as_deref(), Some(expected));
                }
                let length = line(&mut reader).unwrap();
                (true, length[1..].parse::<usize>().unwrap())
            }
            _ => (false, 0),
        };
        if !publish {
            continue;
        }
        let mut body = vec![0; n + 2];
        reader.read_exact(&mut body).unwrap();
        let head = match proto {
            "nats" => format!("MSG bench 1 {n}\r\n"),
            _ => format!("*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n${n}\r\n"),
        };
        let mut subs = subs.lock().unwrap();
        for s in subs.iter_mut() {
            let _ = s.write_all(&[head.as_bytes(), &body].concat());
        }
        if proto == "redis" {
            let _ = out.write_all(format!(":{}\r\n", subs.len()).as_bytes());
        }
    }
}

#[test]
fn fanout_measures_nats_and_redis_too() {
    for proto in ["nats", "redis"] {
        let addr = fake_pubsub(proto).to_string();
        let out = run(&[
            "fanout", "-s", &addr, "--proto", proto, "-r", "3", "-S", "2", "-n", "50", "--json",
        ]);
        let r = report(&out);
        assert_ok(&out);
        assert_eq!(r["proto"], proto, "{r}");
        assert_eq!(r["received"], 3 * 2 * 50, "{proto}: {r}");
        assert_eq!(r["missing"], 0, "{proto}: {r}");
    }
}

/// A server with `--listen-irc` and its IRC address (the second line it
/// prints).
fn irc_server() -> (Server, SocketAddr) {
    let mut child = chat()
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(["--listen-irc", "127.0.0.1:0", "--quiet", "--rate", "0"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("spawn chat server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let addrs = [0, 1].map(|_| {
        let mut line = String::new();
        out.read_line(&mut line).expect("read server line");
        line.trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("server said {line:?}"))
    });
    (
        Server {
            child,
            addr: addrs[0],
        },
        addrs[1],
    )
}

#[test]
fn fanout_and_idle_measure_an_irc_server() {
    let (server, irc) = irc_server();
    let irc = irc.to_string();
    let pid = server.pid().to_string();
    let out = run(&[
        "fanout", "-s", &irc, "--proto", "irc", "-r", "5", "-S", "2", "-n", "100", "--json",
    ]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["proto"], "irc", "{r}");
    assert_eq!(r["received"], 5 * 2 * 100, "{r}");
    assert_eq!(r["missing"], 0, "{r}");

    let out = run(&[
        "idle",
        "-s",
        &irc,
        "--proto",
        "irc",
        "-c",
        "50",
        "--server-pid",
        &pid,
        "--hold",
        "0s",
        "--json",
    ]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["conns"], 50, "{r}");
    assert_eq!(r["pings"], 100, "{r}");
    assert!(r["rss_per_conn_bytes"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn an_irc_payload_longer_than_an_irc_line_is_refused_up_front() {
    let out = run(&["fanout", "-s", "127.0.0.1:1", "--proto", "irc", "-p", "401"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("use at most 400"),
        "{out:?}"
    );
}

/// A server with a web door (`--listen-http`): the server and the HTTP
/// address, where `/ws` and `/metrics` are.
fn web_server(extra: &[&str]) -> (Server, SocketAddr) {
    let (server, more) = Server::start_listeners(&["--listen-http", "127.0.0.1:0"], extra, 1);
    (server, more[0])
}

/// A metric's value from the server's `/metrics`.
fn metric(http: SocketAddr, name: &str) -> f64 {
    use std::io::Read;
    let mut s = TcpStream::connect(http).expect("connect for /metrics");
    s.set_read_timeout(Some(common::WAIT)).expect("timeout");
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
        .expect("ask for /metrics");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read /metrics");
    answer
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {answer}"))
}

#[test]
fn fanout_and_idle_over_the_web_socket_account_for_everything() {
    let (server, http_addr) = web_server(&["--rate", "0"]);
    let http = http_addr.to_string();
    let out = run(&[
        "fanout", "--proto", "ws", "-s", &http, "-r", "5", "-S", "2", "-n", "200", "-p", "80",
        "--json",
    ]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["proto"], "ws", "{r}");
    assert_eq!(r["expected"], 5 * 2 * 200, "{r}");
    assert_eq!(r["received"], r["expected"], "{r}");
    for zero in ["missing", "out_of_order", "corrupt"] {
        assert_eq!(r[zero], 0, "{zero}: {r}");
    }
    let pid = server.pid().to_string();
    let args = [
        "idle", "--proto", "ws", "-s", &http, "-c", "50", "--hold", "0s",
    ];
    let out = run(&[&args[..], &["--server-pid", &pid, "--json"]].concat());
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(
        (r["proto"].as_str(), r["conns"].as_u64()),
        (Some("ws"), Some(50))
    );
    assert_eq!(r["pings"], 100, "{r}");
    assert!(r["rss_per_conn_bytes"].as_f64().is_some(), "{r}");
    // The senders' 400 messages came in by the web door, the only one used.
    assert!(metric(http_addr, "chat_lines_in_total") >= 400.0);
}

#[test]
fn ws_against_a_port_that_is_not_the_web_door_says_which_address_to_use() {
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    let out = run(&[
        "fanout", "--proto", "ws", "-s", &addr, "-r", "1", "-S", "1", "-n", "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the WebSocket upgrade") && stderr.contains("--listen-http"),
        "{stderr}"
    );
}

#[test]
fn report_writes_a_self_contained_page_with_charts() {
    let server = Server::start(&["--rate", "0"]);
    let dir = common::TempDir::new("bench-report");
    let page = dir.path.join("fanout.html");
    let out = small_fanout(&server, &["--report", page.to_str().expect("utf-8 path")]);
    assert_ok(&out);
    let html = std::fs::read_to_string(&page).expect("the page was written");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert_eq!(html.matches("<svg").count(), 3, "{html}");
    for part in [
        "Deliveries per second",
        "Latency distribution",
        "Latency by percentile",
    ] {
        assert!(html.contains(part), "no {part:?} chart");
    }
    assert!(html.contains("deliveries received"), "no table");
    // Self-contained: no script, nothing fetched.
    for absent in ["<script", "<link", "<img", "src=", "url("] {
        assert!(!html.contains(absent), "{absent} in the page");
    }
    let pid = server.pid().to_string();
    let idle_page = dir.path.join("idle.html");
    let addr = server.addr.to_string();
    let out = run(&[
        "idle",
        "-s",
        &addr,
        "-c",
        "20",
        "--hold",
        "0s",
        "--server-pid",
        &pid,
        "--report",
        idle_page.to_str().expect("utf-8 path"),
    ]);
    assert_ok(&out);
    let html = std::fs::read_to_string(&idle_page).expect("the idle page was written");
    assert!(html.contains("Server memory per idle connection"), "{html}");
    assert!(!html.contains("<script"));
    // A page that cannot be written is an error that names it.
    let out = small_fanout(&server, &["--report", "/nonexistent-dir/x.html"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent-dir/x.html"), "{stderr}");
}

#[test]
fn several_servers_share_the_connections_round_robin() {
    let (a, a_http) = web_server(&[]);
    let (b, b_http) = web_server(&[]);
    let servers = format!("{},{}", a.addr, b.addr);
    let out = run(&["idle", "-s", &servers, "-c", "10", "--hold", "0s", "--json"]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["servers"], 2, "{r}");
    // Every connection pings once to sync; connection 0, on the first
    // server, also times 100 round trips. Five each: dealt in turn.
    assert_eq!(metric(a_http, "chat_lines_in_total"), 105.0);
    assert_eq!(metric(b_http, "chat_lines_in_total"), 5.0);
    // The option may be repeated too.
    let (a, b) = (a.addr.to_string(), b.addr.to_string());
    let out = run(&[
        "idle", "-s", &a, "-s", &b, "-c", "4", "--hold", "0s", "--json",
    ]);
    assert_eq!(report(&out)["servers"], 2);
    assert_eq!(metric(b_http, "chat_lines_in_total"), 7.0);
}

#[test]
fn ws_over_tls_is_wss() {
    let help = chat()
        .args(["server", "--help"])
        .output()
        .expect("chat server --help");
    if !String::from_utf8_lossy(&help.stdout).contains("--listen-https") {
        // The server's HTTPS door is not in this build yet.
        eprintln!("skipped: chat server has no --listen-https");
        return;
    }
    let dir = common::TempDir::new("bench-wss");
    let (cert, key) = (dir.path.join("cert.pem"), dir.path.join("key.pem"));
    let made = chat()
        .args(["cert", "--host", "127.0.0.1", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .expect("chat cert");
    assert!(made.status.success(), "{made:?}");
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let tls = [
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let (_server, addrs) = Server::start_listeners(
        &[
            &tls[..],
            &[
                "--listen-http",
                "127.0.0.1:0",
                "--listen-https",
                "127.0.0.1:0",
            ],
        ]
        .concat(),
        &["--rate", "0"],
        3,
    );
    let https = addrs[2].to_string();
    let out = run(&[
        "fanout", "--proto", "ws", "--tls", "--ca", cert, "-s", &https, "-r", "3", "-S", "2", "-n",
        "100", "--json",
    ]);
    let r = report(&out);
    assert_ok(&out);
    assert_eq!(r["received"], 3 * 2 * 100, "{r}");
}
