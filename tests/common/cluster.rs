//! A cluster for tests: one real nats-server with JetStream ([`Nats`])
//! and chat servers started with `--cluster` on it, each with its own
//! history database in the test's directory.
//!
//! A server prints `listening on ADDR` only after it joined the cluster
//! (the stream exists and it has its id block), so [`Server::start`]'s
//! wait for that line is the wait for joining. Include it from a test as
//! `#[path = "common/cluster.rs"] mod cluster;` beside `mod common;`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::json;

use crate::common::nats::{self, Nats};
use crate::common::{Conn, Server, TempDir, WAIT};

pub struct Cluster {
    /// Dropped first: the servers go first, then NATS, then the directory.
    pub servers: Vec<Option<Server>>,
    pub nats: Nats,
    /// NATS started again by [`Cluster::nats_up`] after [`Cluster::nats_down`].
    nats_again: Option<Child>,
    pub dir: TempDir,
    extra: Vec<String>,
    /// Listener options (`--listen-irc`, `--listen-http`) each server gets
    /// on `127.0.0.1:0`, and the addresses each announced, in that order.
    doors: Vec<String>,
    pub door_addrs: Vec<Vec<SocketAddr>>,
}

impl Cluster {
    /// NATS and `n` servers, or `None` where nats-server is not installed
    /// (outside CI; see [`nats::available`]).
    pub fn start(label: &str, n: usize, extra: &[&str]) -> Option<Cluster> {
        Cluster::start_doors(label, n, &[], extra)
    }

    /// As [`Cluster::start`], each server also listening with the listener
    /// options `doors` (such as `--listen-irc`); see [`Cluster::door`].
    pub fn start_doors(label: &str, n: usize, doors: &[&str], extra: &[&str]) -> Option<Cluster> {
        if !nats::available() {
            return None;
        }
        let dir = TempDir::new(label);
        let nats = Nats::start(&dir.path);
        let mut cluster = Cluster {
            servers: Vec::new(),
            nats,
            nats_again: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            doors: doors.iter().map(|s| s.to_string()).collect(),
            door_addrs: Vec::new(),
        };
        for i in 0..n {
            let (server, addrs) = cluster.spawn(i);
            cluster.servers.push(Some(server));
            cluster.door_addrs.push(addrs);
        }
        Some(cluster)
    }

    /// Server `i`'s history database: the same one across its restarts.
    pub fn db(&self, i: usize) -> PathBuf {
        self.dir.path.join(format!("server{i}.db"))
    }

    fn spawn(&self, i: usize) -> (Server, Vec<SocketAddr>) {
        let db = self.db(i);
        let url = self.nats.url();
        let mut args: Vec<&str> = vec!["--db", db.to_str().expect("utf-8 path"), "--cluster", &url];
        args.extend(self.extra.iter().map(String::as_str));
        let listeners: Vec<&str> = self
            .doors
            .iter()
            .flat_map(|d| [d.as_str(), "127.0.0.1:0"])
            .collect();
        Server::start_listeners(&listeners, &args, self.doors.len())
    }

    /// The URL of the cluster's NATS, as the servers are given it.
    pub fn nats_url(&self) -> String {
        self.nats.url()
    }

    /// Server `i`'s address for its `n`th door of [`Cluster::start_doors`].
    pub fn door(&self, i: usize, n: usize) -> SocketAddr {
        self.door_addrs[i][n]
    }

    pub fn server(&self, i: usize) -> &Server {
        self.servers[i].as_ref().expect("server is running")
    }

    /// SIGKILLs server `i` (and reaps it).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut server) = self.servers[i].take() {
            server.signal_and_wait(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Starts server `i` again on its database (a new instance, a new
    /// port).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let (server, addrs) = self.spawn(i);
        self.servers[i] = Some(server);
        self.door_addrs[i] = addrs;
    }

    /// Connects to server `i` as `nick`: welcome read, the rename
    /// confirmed (which, in a cluster, waits for the name's claim).
    pub fn join(&self, i: usize, nick: &str) -> Conn {
        self.server(i).join(nick)
    }

    /// Stops NATS (SIGTERM, a clean stop) and leaves it stopped.
    pub fn nats_down(&mut self) {
        if let Some(mut child) = self.nats_again.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        } else {
            self.nats.stop(nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Starts NATS again on its port and store, after [`Cluster::nats_down`],
    /// and waits for its `Server is ready`.
    pub fn nats_up(&mut self) {
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.nats.port.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path.join("jetstream"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let mut log = BufReader::new(child.stderr.take().expect("nats-server stderr"));
        let deadline = Instant::now() + WAIT;
        let mut line = String::new();
        loop {
            line.clear();
            let n = log.read_line(&mut line).expect("read nats-server log");
            assert!(n > 0, "nats-server ended before it was ready");
            if line.contains("Server is ready") {
                break;
            }
            assert!(Instant::now() < deadline, "nats-server not ready");
        }
        // Its log drained from now on, so that it never blocks on the pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while log.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        self.nats_again = Some(child);
    }

    /// Waits until every one of `conns` sees `nick` in `who`: the arrival
    /// went round the cluster.
    pub fn wait_seen(conns: &mut [&mut Conn], nick: &str) {
        let deadline = Instant::now() + WAIT;
        for conn in conns.iter_mut() {
            loop {
                conn.send(&json!({"type": "who"}));
                let who = conn.recv_type("who");
                let seen = who["users"]
                    .as_array()
                    .is_some_and(|users| users.iter().any(|u| u["nick"] == nick));
                if seen {
                    break;
                }
                assert!(Instant::now() < deadline, "{nick} never seen: {who}");
                // Polling another process's view; there is no event to wait on.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.nats_again.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
