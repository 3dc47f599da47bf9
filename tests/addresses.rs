//! `--server` (and `CHAT_SERVER`) takes a host name as well as an address,
//! for the client, the bot and the bench: the name is resolved, each of its
//! addresses is tried in turn until one answers, the port is 8888 when left
//! out, and a name that does not resolve says so at once.
//!
//! The binary under test is the statically linked one, so the names that go
//! through the C library's lookup here (from /etc/hosts) prove that lookup
//! works without glibc's shared libraries.

mod common;

use std::net::{IpAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Server, chat, free_port, output_with_input};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `printf 'hello\n' | chat client --nick alice ARGS...` said hello to the
/// room; CHAT_SERVER is set to CHAT_SERVER when given.
fn client_says_hello(args: &[&str], chat_server: Option<&str>) {
    let mut cmd = chat();
    cmd.args(["client", "--nick", "alice"]).args(args);
    if let Some(server) = chat_server {
        cmd.env("CHAT_SERVER", server);
    }
    let out = output_with_input(&mut cmd, b"hello\n");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("<alice> hello"), "stdout: {stdout}");
}

/// `chat bot -` with a two-actor script held.
fn bot_greets(server: &str) {
    let out = output_with_input(
        chat().args(["bot", "-", "--quiet", "--server", server]),
        b"@alice say hi\n@bob expect group alice hi\n",
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
}

/// A small fan-out run held, every message delivered.
fn bench_runs(server: &str) {
    let out = chat()
        .args(["bench", "fanout", "--server", server])
        .args(["-r", "2", "-S", "1", "-n", "50", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A server listening on [::1] only, or `None` where IPv6 is off.
fn ipv6_only_server() -> Option<Server> {
    if TcpListener::bind("[::1]:0").is_err() {
        println!("note: no IPv6 loopback here; the every-address test is skipped");
        return None;
    }
    Some(Server::start_with(
        chat().args(["server", "--listen", "[::1]:0", "--quiet"]),
    ))
}

#[test]
fn localhost_is_tried_at_each_of_its_addresses() {
    // `localhost` is 127.0.0.1 and then ::1; nothing listens on the first,
    // so reaching the server means the second was tried.
    let Some(server) = ipv6_only_server() else {
        return;
    };
    let name = format!("localhost:{}", server.addr.port());
    client_says_hello(&["--server", &name], None);
    client_says_hello(&[], Some(&name));
    bot_greets(&name);
    bench_runs(&name);
    // IPv6 literals still work, with and without a port.
    client_says_hello(&["--server", &server.addr.to_string()], None);
}

#[test]
fn a_name_from_etc_hosts_reaches_the_server() {
    let Some((ip, name)) = etc_hosts_name() else {
        println!("note: /etc/hosts names nothing on a loopback address; test skipped");
        return;
    };
    let listen = match ip {
        IpAddr::V4(ip) => format!("{ip}:0"),
        IpAddr::V6(ip) => format!("[{ip}]:0"),
    };
    let server = Server::start_with(chat().args(["server", "--listen", &listen, "--quiet"]));
    let target = format!("{name}:{}", server.addr.port());
    client_says_hello(&["--server", &target], None);
    bot_greets(&target);
    bench_runs(&target);
}

/// A name in /etc/hosts for a loopback address, other than localhost (which
/// is answered without a lookup): `127.0.1.1 myhost` on Debian.
fn etc_hosts_name() -> Option<(IpAddr, String)> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let mut words = line.split('#').next()?.split_whitespace();
        let ip: IpAddr = words.next()?.parse().ok()?;
        if !ip.is_loopback() || TcpListener::bind((ip, 0)).is_err() {
            return None;
        }
        let name = words.find(|w| {
            !w.to_ascii_lowercase().contains("localhost")
                && w.contains(|c: char| c.is_ascii_alphabetic())
        })?;
        Some((ip, name.to_owned()))
    })
}

#[test]
fn the_port_defaults_to_8888() {
    // Only where 8888 is free: a server of the developer's may be there.
    match TcpListener::bind("127.0.0.1:8888") {
        Ok(probe) => drop(probe),
        Err(_) => {
            println!("note: 127.0.0.1:8888 is taken; default port not tested");
            return;
        }
    }
    let server =
        Server::start_with(chat().args(["server", "--listen", "127.0.0.1:8888", "--quiet"]));
    assert_eq!(server.addr.port(), 8888);
    client_says_hello(&["--server", "localhost"], None);
    client_says_hello(&[], Some("127.0.0.1"));
    bot_greets("localhost");
}

#[test]
fn a_name_that_does_not_resolve_says_so_at_once() {
    let programs: [&[&str]; 4] = [
        &["client"],
        &["bot", "-"],
        &["bench", "fanout"],
        &["bench", "idle"],
    ];
    for program in programs {
        let start = Instant::now();
        let out = chat()
            .args(program)
            .args(["--server", "nosuchhost.invalid"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{program:?}: {stderr}");
        assert!(
            stderr.starts_with("chat: cannot resolve nosuchhost.invalid: ")
                && stderr.lines().count() == 1,
            "{program:?}: {stderr}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{program:?} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn a_malformed_address_is_a_usage_error() {
    for (program, bad) in [
        (&["client"][..], "::1"),
        (&["client"][..], "localhost:99999"),
        (&["bot", "-"][..], "[::1"),
        (&["bench", "fanout"][..], "8888"),
        (&["bench", "idle"][..], "no such host"),
    ] {
        let out = chat()
            .args(program)
            .args(["--server", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{program:?} {bad}: {stderr}");
        assert!(
            stderr.contains(&format!("{bad:?}")),
            "{program:?}: {stderr}"
        );
    }
}

#[test]
fn a_name_where_nothing_listens_names_each_address_tried() {
    let port = free_port();
    let out = chat()
        .args(["client", "--server", &format!("localhost:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "chat: cannot connect to localhost:{port} (127.0.0.1:{port}: "
        )) && stderr.contains(&format!("[::1]:{port}: ")),
        "{stderr}"
    );
}
