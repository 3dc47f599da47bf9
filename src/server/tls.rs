//! The server's TLS set-up: the certificate and key of `--tls-cert` and
//! `--tls-key`, read again on SIGHUP (certbot's deploy hook sends it after
//! a renewal). A pair that does not load, or whose key is not the
//! certificate's, is refused and the one in use stays; connections already
//! open keep the session they have, and new handshakes use the new pair.
//!
//! And [`Session`], one connection's TLS: rustls's unbuffered API, so that
//! the ciphertext buffers are ours and an idle session keeps none. The
//! event loop flags a connection from the TLS listener and keeps its
//! session in a table beside the connections (a plaintext connection pays
//! nothing); reads go socket -> [`Session::take_input`] ->
//! [`Session::advance`] -> plaintext -> the usual framing, and writes take
//! the same queued slices through [`Session::write`], which seals them in
//! a buffer every session shares.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, WriteTraffic};

use super::outq::OutQueue;

/// The files, and the configuration made from them last time they loaded.
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    config: Arc<ServerConfig>,
}

impl Certs {
    pub fn load(cert: &Path, key: &Path) -> Result<Certs, String> {
        Ok(Certs {
            config: config(cert, key)?,
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads the files again; on failure the pair in use stays and the
    /// error says why.
    pub fn reload(&mut self) -> Result<(), String> {
        self.config = config(&self.cert, &self.key)?;
        Ok(())
    }

    /// What a new session is made with.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

fn config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = crate::tls::load_certs(cert)?;
    let private = crate::tls::load_key(key)?;
    let config = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "cannot use {} with {}: {}",
                cert.display(),
                key.display(),
                match e {
                    rustls::Error::InconsistentKeys(_) =>
                        "the key is not the certificate's".to_owned(),
                    other => other.to_string(),
                }
            )
        })?;
    Ok(Arc::new(config))
}

/// What [`Session::advance`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// One record's plaintext was appended to the caller's buffer.
    Data,
    /// Everything read so far is processed: read more from the socket.
    NeedInput,
    /// The peer ended the session (close_notify).
    Closed,
}

/// Where rustls's state machine stopped.
enum Stop<R> {
    /// Application data may be sealed; what the caller did with it.
    Traffic(R),
    /// The handshake needs more input.
    Blocked,
    /// A record's plaintext is in the stash (only when asked to stop there).
    Data,
    /// Both sides closed.
    Closed,
}

/// The most plaintext sealed into records per write: four full records.
const SEAL_AT_ONCE: usize = 64 * 1024;

/// One TLS connection's session, with rustls's unbuffered API: the
/// ciphertext buffers are ours, so an idle session holds none (the
/// buffered API keeps a 4 KiB read buffer per connection for ever).
/// Reading goes through the loop's scratch buffer and sealing through a
/// shared one; only what a socket leaves (a partial record in, records the
/// kernel did not take out) stays here.
pub struct Session {
    conn: UnbufferedServerConnection,
    /// Ciphertext read and not yet processed: a partial record, or records
    /// left while the reader is paused. rustls keeps offsets into it, so
    /// every call gets it (never another buffer), less what it discarded.
    incoming: Vec<u8>,
    /// Records the socket did not take yet, sent before anything else.
    outgoing: Vec<u8>,
    /// Plaintext opened while writing (the state machine hands out records
    /// in order, whoever asks), for the next read.
    stash: Vec<u8>,
    /// The handshake is done: application data may be sealed.
    ready: bool,
    /// close_notify arrived.
    peer_closed: bool,
    /// The state machine failed: it must not be run again (the same error
    /// would be raised twice), only closed.
    broken: bool,
}

impl Session {
    pub fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            stash: Vec::new(),
            ready: false,
            peer_closed: false,
            broken: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        !self.ready
    }

    /// Records wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Ciphertext read from the socket, for [`Session::advance`].
    pub fn take_input(&mut self, data: &[u8]) {
        self.incoming.extend_from_slice(data);
    }

    /// Runs the state machine over what was read: handshake records into
    /// `outgoing` and to `sock` as far as it takes them, plaintext into the
    /// stash (stopping there with `stop_at_data`), close_notify noted.
    /// At `WriteTraffic`, `on_traffic` may seal application data.
    fn drive<R>(
        &mut self,
        sock: &mut impl Write,
        stop_at_data: bool,
        on_traffic: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> R,
    ) -> Result<Stop<R>, rustls::Error> {
        if self.broken {
            return Err(rustls::Error::General("the session failed".into()));
        }
        let result = self.drive_once(sock, stop_at_data, on_traffic);
        self.broken = result.is_err();
        result
    }

    fn drive_once<R>(
        &mut self,
        sock: &mut impl Write,
        stop_at_data: bool,
        on_traffic: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Vec<u8>) -> R,
    ) -> Result<Stop<R>, rustls::Error> {
        let Session {
            conn,
            incoming,
            outgoing,
            stash,
            ready,
            peer_closed,
            ..
        } = self;
        let mut on_traffic = Some(on_traffic);
        // Bounded: each turn consumes input or output, and a stray state
        // machine must not hang the loop.
        for _ in 0..1024 {
            let status = conn.process_tls_records(incoming);
            let discard = status.discard;
            let stop = match status.state {
                Err(e) => {
                    incoming.drain(..discard);
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    while let Some(record) = records.next_record() {
                        stash.extend_from_slice(record?.payload);
                    }
                    stop_at_data.then_some(Stop::Data)
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, outgoing)?;
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // The records are ours now, sent in order before any
                    // later ones: for rustls they are transmitted.
                    transmit.done();
                    let _ = send(outgoing, sock);
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    *peer_closed = true;
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    *ready = true;
                    let on_traffic = on_traffic.take();
                    Some(Stop::Traffic(on_traffic.map(|f| f(&mut traffic, outgoing))))
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Stop::Blocked),
                Ok(ConnectionState::Closed) => {
                    *peer_closed = true;
                    Some(Stop::Closed)
                }
                // Early data is off (its default); nothing else is known.
                Ok(_) => return Err(rustls::Error::General("unexpected TLS state".into())),
            };
            incoming.drain(..discard);
            if incoming.is_empty() {
                // An idle session holds no buffer.
                *incoming = Vec::new();
            }
            if let Some(stop) = stop {
                return Ok(match stop {
                    Stop::Traffic(Some(r)) => Stop::Traffic(r),
                    Stop::Traffic(None) | Stop::Blocked => Stop::Blocked,
                    Stop::Data => Stop::Data,
                    Stop::Closed => Stop::Closed,
                });
            }
        }
        Err(rustls::Error::General(
            "TLS state machine made no progress".into(),
        ))
    }

    /// Processes what was read until one record's plaintext is appended to
    /// `plain`, or all is processed. Handshake records are sent to `sock`
    /// as far as it takes them (the rest waits, see
    /// [`Session::wants_write`]). On an error the alert is sent the same
    /// way; the caller then closes.
    pub fn advance(
        &mut self,
        sock: &mut impl Write,
        plain: &mut Vec<u8>,
    ) -> Result<Progress, rustls::Error> {
        if self.stash.is_empty() && !self.peer_closed {
            let first = !self.broken;
            if let Err(e) = self.drive(sock, true, |_, _| ()) {
                if first {
                    self.send_alert(sock);
                }
                return Err(e);
            }
        }
        if !self.stash.is_empty() {
            plain.append(&mut self.stash);
            self.stash = Vec::new();
            return Ok(Progress::Data);
        }
        Ok(match self.peer_closed {
            true => Progress::Closed,
            false => Progress::NeedInput,
        })
    }

    /// Sends the alert an error queued, as far as the socket takes it.
    /// The state machine hands out queued records before it looks at the
    /// input again, and it must not look again (the same error would be
    /// raised twice): one call, for the alert only.
    fn send_alert(&mut self, sock: &mut impl Write) {
        let status = self.conn.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
            let _ = encode_into(&mut encode, &mut self.outgoing);
        }
        let _ = send(&mut self.outgoing, sock);
    }

    /// Writes `out` through the session: waiting records first, then the
    /// queue sealed into records (in `seal`, a buffer shared by every
    /// session), until the queue is empty or the socket would block.
    /// Before the handshake is done nothing is sealed: the queue waits,
    /// and the reader marks the connection for writing once it is done.
    pub fn write(
        &mut self,
        sock: &mut impl Write,
        out: &mut OutQueue,
        seal: &mut Vec<u8>,
    ) -> io::Result<()> {
        match send(&mut self.outgoing, sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
        if !self.ready || out.is_empty() {
            return Ok(());
        }
        let mut sink = Sink {
            session: self,
            sock,
            seal,
        };
        out.write_to(&mut sink).map(|_| ())
    }

    /// Seals `data` (or its first [`SEAL_AT_ONCE`] bytes) and writes the
    /// records; returns how much of `data` was taken. Records the socket
    /// does not take wait in `outgoing`.
    fn seal(
        &mut self,
        data: &[u8],
        sock: &mut impl Write,
        seal: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let data = &data[..data.len().min(SEAL_AT_ONCE)];
        let stop = self
            .drive(sock, false, |traffic, outgoing| {
                let sealed = loop {
                    match traffic.encrypt(data, seal) {
                        Ok(n) => break n,
                        Err(EncryptError::InsufficientSize(need)) => {
                            seal.resize(need.required_size, 0);
                        }
                        Err(e) => return Err(invalid(e)),
                    }
                };
                if !outgoing.is_empty() {
                    // Records made meanwhile (a ticket, a key update) go
                    // first: these follow them.
                    outgoing.extend_from_slice(&seal[..sealed]);
                    return Ok(0);
                }
                Ok(sealed)
            })
            .map_err(invalid)?;
        let sealed = match stop {
            Stop::Traffic(sealed) => sealed?,
            Stop::Blocked | Stop::Data => return Err(io::ErrorKind::WouldBlock.into()),
            Stop::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        // The usual case: straight from the shared buffer to the socket.
        let mut written = 0;
        while written < sealed {
            match sock.write(&seal[written..sealed]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.outgoing.extend_from_slice(&seal[written..sealed]);
        match send(&mut self.outgoing, sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(data.len())
    }

    /// Sends the records waiting for the socket (handshake records, or
    /// what a sealed write left), as far as it takes them: the web door's
    /// HTTP side writes its answer through [`Session::writer`], and has no
    /// [`OutQueue`] to hand to [`Session::write`].
    pub fn send_waiting(&mut self, sock: &mut impl Write) -> io::Result<()> {
        match send(&mut self.outgoing, sock) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }

    /// A writer that seals what it is given into records for `sock`
    /// (records waiting go first); it would block until the handshake is
    /// done.
    pub fn writer<'a, S: Write>(
        &'a mut self,
        sock: &'a mut S,
        seal: &'a mut Vec<u8>,
    ) -> impl Write + 'a {
        Sink {
            session: self,
            sock,
            seal,
        }
    }

    /// Sends close_notify when the session is up (best effort).
    pub fn close(&mut self, sock: &mut impl Write) {
        if !self.ready || self.broken {
            return;
        }
        let _ = self.drive(sock, false, |traffic, outgoing| {
            let mut buf = [0u8; 64];
            if let Ok(n) = traffic.queue_close_notify(&mut buf) {
                outgoing.extend_from_slice(&buf[..n]);
            }
        });
        let _ = send(&mut self.outgoing, sock);
    }
}
/// The plaintext queue's writer for one session.
struct Sink<'a, S: Write> {
    session: &'a mut Session,
    sock: &'a mut S,
    seal: &'a mut Vec<u8>,
}

impl<S: Write> Write for Sink<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match send(&mut self.session.outgoing, self.sock) {
            Ok(()) => {}
            Err(e) => return Err(e),
        }
        self.session.seal(data, self.sock, self.seal)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // One slice at a time: a reader that keeps up has one per turn.
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) => self.write(first),
            None => Ok(0),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends a handshake record rustls made to `outgoing`.
fn encode_into(
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    let start = outgoing.len();
    let mut room = 1024;
    loop {
        outgoing.resize(start + room, 0);
        match encode.encode(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(need)) => room = need.required_size,
            Err(e) => {
                outgoing.truncate(start);
                return Err(rustls::Error::General(e.to_string()));
            }
        }
    }
}

/// Writes `outgoing` until it is empty (then freed: an idle session holds
/// no buffer) or the socket would block (`WouldBlock`, the rest kept).
fn send(outgoing: &mut Vec<u8>, sock: &mut impl Write) -> io::Result<()> {
    let mut written = 0;
    let result = loop {
        if written == outgoing.len() {
            break Ok(());
        }
        match sock.write(&outgoing[written..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    outgoing.drain(..written);
    if outgoing.is_empty() {
        *outgoing = Vec::new();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::outq::Outbox;
    use crate::wire::ServerMsg;
    use std::io::Read;

    /// A socket's sending side: takes at most `room` bytes, then blocks.
    struct Wire {
        sent: Vec<u8>,
        room: usize,
    }

    impl Write for Wire {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let n = data.len().min(self.room);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.room -= n;
            self.sent.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pair() -> (Session, rustls::ClientConnection) {
        pair_with(rustls::DEFAULT_VERSIONS)
    }

    fn pair_with(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Session, rustls::ClientConnection) {
        let (cert, key, _) = crate::cert::make(&["localhost".into()], 1).unwrap();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chat-session-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        let certs = Certs::load(&c, &k).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(crate::tls::load_certs(&c).unwrap());
        let client_config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client =
            rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
                .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        (Session::new(certs.config()).unwrap(), client)
    }

    /// Moves the client's records to the server in pieces of `chunk`
    /// bytes, collecting the plaintext, and the server's records back.
    fn exchange(
        server: &mut Session,
        client: &mut rustls::ClientConnection,
        chunk: usize,
        plain: &mut Vec<u8>,
    ) {
        let mut records = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut records).unwrap();
        }
        let mut wire = Wire {
            sent: Vec::new(),
            room: usize::MAX,
        };
        for piece in records.chunks(chunk).chain([&[][..]]) {
            server.take_input(piece);
            while server.advance(&mut wire, plain).unwrap() == Progress::Data {}
        }
        let mut back = &wire.sent[..];
        while !back.is_empty() {
            client.read_tls(&mut back).unwrap();
            client.process_new_packets().unwrap();
        }
    }

    #[test]
    fn a_session_carries_lines_both_ways_through_split_records_and_full_sockets() {
        let (mut server, mut client) = pair();
        let mut plain = Vec::new();
        for _ in 0..4 {
            exchange(&mut server, &mut client, 7, &mut plain);
        }
        assert!(!server.is_handshaking() && !client.is_handshaking());
        assert!(!server.wants_write());

        // In: 100 lines of 2 KiB, fed to the server a few bytes at a time.
        let line = format!("{}\n", "x".repeat(2047));
        client.set_buffer_limit(None);
        for _ in 0..100 {
            client.writer().write_all(line.as_bytes()).unwrap();
        }
        exchange(&mut server, &mut client, 3, &mut plain);
        assert_eq!(plain.len(), 100 * 2048);
        assert!(plain.chunks(2048).all(|l| l == line.as_bytes()));

        // Out: a queue of 300 KiB through a socket that takes 10 KiB a
        // time, in order and whole.
        let mut outbox = Outbox::default();
        let mut out = OutQueue::default();
        let mut want = Vec::new();
        for i in 0..1000 {
            let text = format!("{i} {}", "y".repeat(300));
            let msg = ServerMsg::Error {
                code: crate::wire::ErrorCode::BadJson,
                message: text.into(),
            };
            msg.encode(&mut want);
            out.push(&outbox.encode(&msg));
        }
        let mut seal = Vec::new();
        let mut got = Vec::new();
        for _ in 0..10_000 {
            if out.is_empty() && !server.wants_write() {
                break;
            }
            let mut wire = Wire {
                sent: Vec::new(),
                room: 10 * 1024,
            };
            server.write(&mut wire, &mut out, &mut seal).unwrap();
            let mut records = &wire.sent[..];
            while !records.is_empty() {
                client.read_tls(&mut records).unwrap();
                client.process_new_packets().unwrap();
                let mut buf = [0u8; 65536];
                while let Ok(n) = client.reader().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the bytes differ");
        assert!(
            server.incoming.capacity() == 0 && server.outgoing.capacity() == 0,
            "an idle session holds no buffer"
        );
    }

    #[test]
    fn a_tls12_client_is_served_too() {
        let (mut server, mut client) = pair_with(&[&rustls::version::TLS12]);
        let mut plain = Vec::new();
        for _ in 0..4 {
            exchange(&mut server, &mut client, 5, &mut plain);
        }
        assert!(!server.is_handshaking() && !client.is_handshaking());
        client.writer().write_all(b"hello\n").unwrap();
        exchange(&mut server, &mut client, 5, &mut plain);
        assert_eq!(plain, b"hello\n");
    }

    #[test]
    fn garbage_is_an_error_with_an_alert_and_never_runs_twice() {
        let (mut server, _) = pair();
        let mut wire = Wire {
            sent: Vec::new(),
            room: usize::MAX,
        };
        server.take_input(b"{\"type\":\"ping\"}\n");
        let mut plain = Vec::new();
        assert!(server.advance(&mut wire, &mut plain).is_err());
        assert_eq!(wire.sent.first(), Some(&0x15), "an alert record");
        assert!(server.advance(&mut wire, &mut plain).is_err());
        server.close(&mut wire);
        assert!(plain.is_empty());
    }
}
