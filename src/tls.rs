//! TLS for the programs that connect (client, bot, bench), and the PEM
//! reading the server shares: rustls with the `ring` provider, so the
//! binary stays static and needs no C toolchain beyond `cc`.
//!
//! A connection is verified against the system's CA bundle (the file every
//! distribution keeps under `/etc/ssl`, or `SSL_CERT_FILE`), or against
//! `--ca FILE` alone, and the certificate must name the host `--server`
//! gave: a name, or for an address an IP address in its SAN. A failure is
//! one sentence saying what failed and what to do; nothing ever falls back
//! to plaintext.
//!
//! The handshake is made in blocking mode before the socket joins an event
//! loop ([`Client::handshake`]); after it, [`crate::peer::Peer`] moves bytes
//! through the session with [`read`] and [`Sealed`] (rustls's buffered
//! API: a client has one connection, its buffers do not matter). The
//! server's sessions are its own (`server::tls`), without those buffers.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, ConnectionCommon, RootCertStore};

use crate::addr::Host;

/// Where distributions keep the bundle of trusted CAs, most common first
/// (Debian and Ubuntu, Fedora and RHEL, openSUSE, Alpine and the BSDs).
const CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The one crypto provider: `ring`, which builds without cmake and links
/// statically.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file, in order (a certbot `fullchain.pem`:
/// the server's own, then its intermediates).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |why: String| format!("cannot read certificates from {}: {why}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(fail(
            "no CERTIFICATE block in it (is it a PEM file?)".into(),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1, as certbot and
/// openssl write them). The error never shows the file's contents.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "cannot read a private key from {}: {}",
            path.display(),
            pem_reason(&e)
        )
    })
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM block of the right kind in it".into(),
        _ => "it is not a valid PEM file".into(),
    }
}

/// What a connecting program needs for TLS: whom to trust and which name
/// the server's certificate must carry.
#[derive(Debug)]
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    /// The name as the user wrote it, for messages.
    shown: String,
    /// The file of trusted CAs (`--ca` or the system's bundle), for messages.
    trusted: PathBuf,
    /// Whether it is `--ca`'s.
    own_ca: bool,
}

impl Client {
    /// Trusts `ca` alone when given, else the system's CA bundle; checks
    /// the certificate against `host`.
    pub fn new(host: &Host, ca: Option<&Path>) -> Result<Client, String> {
        let mut roots = RootCertStore::empty();
        let (certs, from) = match ca {
            Some(path) => (load_certs(path)?, path.to_owned()),
            None => system_roots()?,
        };
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "no usable CA certificate in {}; pass --ca FILE",
                from.display()
            ));
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (name, shown) = match host {
            Host::Ip(ip) => (ServerName::IpAddress((*ip).into()), ip.to_string()),
            Host::Name(name) => {
                let bare = name.strip_suffix('.').unwrap_or(name).to_owned();
                let server_name = ServerName::try_from(bare.clone())
                    .map_err(|_| format!("{name} cannot be checked by TLS: not a DNS name"))?;
                (server_name, bare)
            }
        };
        Ok(Client {
            config: Arc::new(config),
            name,
            shown,
            trusted: from,
            own_ca: ca.is_some(),
        })
    }

    /// Makes the handshake on a connected, blocking socket, within
    /// `timeout`. The error is one sentence (what failed, what to do),
    /// with the `io::ErrorKind` of what happened underneath.
    pub fn handshake(
        &self,
        stream: &mut TcpStream,
        timeout: Duration,
    ) -> io::Result<ClientConnection> {
        let mut conn = ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(|e| io::Error::other(format!("cannot start TLS: {e}")))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            match conn.complete_io(stream) {
                Ok(_) => {}
                Err(e) => return Err(io::Error::new(e.kind(), self.explain(&e))),
            }
        }
        // Whatever the handshake left to send (a client never has data to
        // send before its first line) goes now, while still blocking.
        while conn.wants_write() {
            conn.write_tls(stream)?;
        }
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        Ok(conn)
    }

    /// What a failed handshake means for the user, and what to do.
    fn explain(&self, e: &io::Error) -> String {
        let name = &self.shown;
        let trust = match self.own_ca {
            true => format!("the CA of {}", self.trusted.display()),
            false => format!("a CA this system trusts ({})", self.trusted.display()),
        };
        let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
            return match e.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                    "TLS handshake failed: the server closed the connection \
                     (is this its TLS port? it needs --listen-tls)"
                        .into()
                }
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    "TLS handshake failed: the server did not answer in time \
                     (is this its TLS port? it needs --listen-tls)"
                        .into()
                }
                _ => format!("TLS handshake failed: {e}"),
            };
        };
        match tls {
            rustls::Error::InvalidCertificate(why) => {
                let what = match why {
                    // A CA of the same name but another key signs nothing
                    // of it: for the user, the same as an unknown one.
                    CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                        "it is not signed by {trust}; pass --ca FILE with the certificate \
                         of the CA that signed it (for a self-signed one, itself)"
                    ),
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => format!(
                        "it is not for {name}; connect with a name it is for \
                         (--server NAME:PORT), or give the server a certificate for {name}"
                    ),
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                        "it has expired; the server needs a new one".into()
                    }
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                        "it is not valid yet (is this machine's clock right?)".into()
                    }
                    other => format!("it is not valid ({other:?})"),
                };
                format!("the server's TLS certificate was refused: {what}")
            }
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                "TLS handshake failed: the server does not speak TLS there \
                 (is this its TLS port? it needs --listen-tls)"
                    .into()
            }
            other => format!("TLS handshake failed: {other}"),
        }
    }
}

/// The system's trusted CAs: `SSL_CERT_FILE` when set (as OpenSSL reads
/// it), else the first bundle of [`CA_BUNDLES`] that exists.
fn system_roots() -> Result<(Vec<CertificateDer<'static>>, PathBuf), String> {
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        let path = PathBuf::from(file);
        return Ok((load_certs(&path)?, path));
    }
    for bundle in CA_BUNDLES {
        let path = Path::new(bundle);
        if path.exists() {
            return Ok((load_certs(path)?, path.to_owned()));
        }
    }
    Err(format!(
        "no CA bundle found (looked for {}); install ca-certificates or pass --ca FILE",
        CA_BUNDLES.join(", ")
    ))
}

/// One read through a TLS session, with a socket's meaning: decrypted
/// bytes already there first, else records from `sock` until some decrypt;
/// `Ok(0)` when the peer closed, `WouldBlock` when the socket has no more.
/// Records the session has to send meanwhile (handshake, alerts) are sent
/// as far as the socket takes them; `wants_write` then
/// says whether some wait. A record that does not decrypt is an error,
/// after its alert is sent, never data.
pub fn read<D>(
    tls: &mut ConnectionCommon<D>,
    sock: &mut (impl Read + Write),
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Closed without close_notify: a truncation attack only matters
            // to length-less protocols; a line protocol sees the cut line.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        match tls.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let processed = tls.process_new_packets();
        match send_records(tls, sock) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if processed.is_ok() => return Err(e),
            Err(_) => {}
        }
        if let Err(e) = processed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// Sends waiting records until none is left (`Ok`) or the socket would
/// block (`WouldBlock`).
pub fn send_records<D>(tls: &mut ConnectionCommon<D>, sock: &mut impl Write) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A socket as a writer of plaintext: what is written is encrypted and sent
/// as records. Records the kernel did not take go before anything new is
/// taken, so the session holds at most about one write's worth (and its
/// buffer limit bounds that).
pub struct Sealed<'a, D, S: Write> {
    pub tls: &'a mut ConnectionCommon<D>,
    pub stream: &'a mut S,
}

impl<D, S: Write> Sealed<'_, D, S> {
    pub fn send_records(&mut self) -> io::Result<()> {
        send_records(self.tls, self.stream)
    }
}

impl<D, S: Write> Write for Sealed<'_, D, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(data)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.send_records()?;
        let n = self.tls.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // The session's buffer is full (only before the handshake is
            // done): as a socket would say it.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.send_records() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            other => other.map(|()| n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
