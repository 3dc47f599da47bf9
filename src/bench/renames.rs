//! `chat bench fanout --renames RATE`: clients beside the run that change
//! their nicknames, RATE times a second in all, while the senders send.
//! On one server a rename is a table update; in a cluster it is a claim
//! and a release in the shared name table on NATS. The fan-out's latency
//! with and without them shows what one client's renames cost everyone
//! else. The renamers sit in a room of their own, so the receivers see
//! nothing of them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::wire::{ClientMsg, ServerMsg, client_line};

/// Connections that rename, side by side.
pub const CLIENTS: usize = 10;
/// Their room.
const ROOM: &str = "bench-renames";

/// What the renamers did while the senders sent.
pub struct Done {
    pub renames: u64,
    pub seconds: f64,
}

/// One renaming connection.
pub struct Renamer {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    id: u64,
    nick: String,
    line: String,
}

impl Renamer {
    /// Connects, takes the welcome, moves to [`ROOM`].
    fn open(addr: std::net::SocketAddr, n: usize, timeout: Duration) -> Result<Renamer, String> {
        let fail = |e: std::io::Error| format!("a renamer on {addr}: {e}");
        let writer = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
        writer.set_read_timeout(Some(timeout)).map_err(fail)?;
        writer.set_nodelay(true).map_err(fail)?;
        let reader = BufReader::new(writer.try_clone().map_err(fail)?);
        let mut r = Renamer {
            writer,
            reader,
            id: 0,
            nick: String::new(),
            line: String::new(),
        };
        let lobby = match r.next()? {
            ServerMsg::Welcome { id, nick, room, .. } => {
                (r.id, r.nick) = (id, nick.into_owned());
                room.map(|room| room.into_owned())
            }
            other => return Err(format!("a renamer on {addr} got {other:?}, not a welcome")),
        };
        r.send(&ClientMsg::Join { room: ROOM.into() })?;
        if let Some(lobby) = lobby {
            r.send(&ClientMsg::Part {
                room: lobby.into(),
                text: None,
            })?;
        }
        r.rename(&format!("renamer{n}"))?;
        Ok(r)
    }

    fn send(&mut self, msg: &ClientMsg<'_>) -> Result<(), String> {
        self.writer
            .write_all(&client_line(msg))
            .map_err(|e| format!("a renamer could not send: {e}"))
    }

    fn next(&mut self) -> Result<ServerMsg<'static>, String> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => Err("the server closed a renamer's connection".into()),
            Ok(_) => ServerMsg::decode(self.line.as_bytes())
                .map_err(|e| format!("a renamer could not read the server: {e}")),
            Err(e) => Err(format!("a renamer heard nothing: {e}")),
        }
    }

    /// Asks for `nick` and waits for the answer (granted or refused).
    fn rename(&mut self, nick: &str) -> Result<(), String> {
        self.send(&ClientMsg::Nick { nick: nick.into() })?;
        loop {
            match self.next()? {
                ServerMsg::Nick { id, new, .. } if id == self.id => {
                    self.nick = new.into_owned();
                    return Ok(());
                }
                ServerMsg::Error { .. } => return Ok(()),
                _ => {}
            }
        }
    }
}

/// Opens [`CLIENTS`] renamers, spread over `addrs` as the run's
/// connections are.
pub fn open(addrs: &[std::net::SocketAddr], timeout: Duration) -> Result<Vec<Renamer>, String> {
    (0..CLIENTS)
        .map(|n| Renamer::open(addrs[n % addrs.len()], n, timeout))
        .collect()
}

/// Renames at `rate` a second in all until `sending` says the senders
/// are done: a thread per renamer (ten; each waits for its answers, so
/// they rename side by side, as ten users would).
pub fn run(
    renamers: Vec<Renamer>,
    rate: u64,
    sending: impl Fn() -> bool + Sync,
) -> Result<Done, String> {
    let start = Instant::now();
    let each = rate as f64 / renamers.len().max(1) as f64;
    let sending = &sending;
    let counts: Vec<Result<u64, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = renamers
            .into_iter()
            .enumerate()
            .map(|(n, r)| scope.spawn(move || rename_on(r, n, each, start, sending)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a renaming thread crashed".into()))
            })
            .collect()
    });
    let mut renames = 0;
    for count in counts {
        renames += count?;
    }
    Ok(Done {
        renames,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One renamer's share: `per_s` renames a second, between two names, so
/// that every rename frees one.
fn rename_on(
    mut r: Renamer,
    n: usize,
    per_s: f64,
    start: Instant,
    sending: &(impl Fn() -> bool + Sync),
) -> Result<u64, String> {
    let mut renames: u64 = 0;
    while sending() {
        let due = start + Duration::from_secs_f64(renames as f64 / per_s);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(Duration::from_millis(50))); // pacing, not synchronisation
            continue;
        }
        let next = match r.nick.ends_with('a') {
            true => format!("renamer{n}b"),
            false => format!("renamer{n}a"),
        };
        r.rename(&next)?;
        renames += 1;
    }
    Ok(renames)
}
