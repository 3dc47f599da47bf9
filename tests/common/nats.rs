//! A real `nats-server` with JetStream for the cluster tests: started on a
//! free loopback port with its store in a test directory, waited for (its
//! `Server is ready` log line), restarted on the same port and store, and
//! stopped by its PID. Its monitoring endpoint (`-m`) gives the traffic
//! counters (`/varz`) the backplane figures are made from.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{WAIT, free_port};

/// The program, as Debian installs it (`/usr/sbin`, which a user's PATH
/// may lack) or anywhere on PATH.
fn program() -> Option<PathBuf> {
    let candidates = [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ];
    candidates.iter().map(PathBuf::from).find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Whether a test that needs nats-server can run: it is installed, or
/// (outside CI only) it is not and the test says so and passes. In CI
/// (`CI=true`, where `.ci/run` installs it) a missing one fails the test.
pub fn available() -> bool {
    if program().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "nats-server is not installed, and CI must run this test (.ci/run installs it)"
    );
    eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
    false
}

/// A running nats-server with JetStream, killed and reaped on drop.
pub struct Nats {
    child: Option<Child>,
    /// The client port, kept across restarts so the chat servers' URL
    /// stays right.
    pub port: u16,
    /// The monitoring (HTTP) port.
    pub monitor: u16,
    store: PathBuf,
}

impl Nats {
    /// Starts nats-server on free loopback ports, with its JetStream store
    /// under `dir`.
    pub fn start(dir: &Path) -> Nats {
        let mut nats = Nats {
            child: None,
            port: free_port(),
            monitor: free_port(),
            store: dir.join("jetstream"),
        };
        nats.spawn();
        nats
    }

    /// The URL the chat servers are given with `--cluster`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Starts the process and waits for `Server is ready` on its log
    /// (stderr), which it prints once the client port listens and
    /// JetStream has recovered its store. The log is drained by a thread
    /// from then on so a chatty server never blocks on a full pipe.
    fn spawn(&mut self) {
        let program = program().expect("nats-server (check nats::available first)");
        let mut child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().expect("nats-server stderr");
        let (ready, is_ready) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server is ready") {
                    let _ = ready.send(Ok(()));
                }
                log.push_str(&line);
                log.push('\n');
            }
            // Ended before saying it was ready: the log says why.
            let _ = ready.send(Err(log));
        });
        match is_ready.recv_timeout(WAIT) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("nats-server ended before it was ready:\n{log}"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nats-server was not ready within {WAIT:?}");
            }
        }
        self.child = Some(child);
    }

    /// Sends `signal` and waits for the process to end.
    pub fn stop(&mut self, signal: nix::sys::signal::Signal) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal nats-server");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().expect("try_wait nats-server").is_none() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(10)); // polling a child's exit
        }
    }

    /// Stops the server (SIGTERM: it closes its store cleanly) and starts
    /// it again on the same ports with the same store.
    pub fn restart(&mut self) {
        self.stop(nix::sys::signal::Signal::SIGTERM);
        self.spawn();
    }

    /// The monitoring endpoint's `/varz`: the server's totals, among them
    /// `in_msgs`, `in_bytes`, `out_msgs`, `out_bytes`.
    pub fn varz(&self) -> serde_json::Value {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.monitor)).expect("connect to nats monitor");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream
            .write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("ask nats monitor");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read nats monitor");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("no HTTP body from nats monitor: {response:?}"));
        serde_json::from_str(body).unwrap_or_else(|e| panic!("bad /varz JSON ({e}): {body:?}"))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
