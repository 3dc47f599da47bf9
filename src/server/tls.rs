//! The server's TLS set-up: the certificate and key of `--tls-cert` and
//! `--tls-key`, read again on SIGHUP (certbot's deploy hook sends it after
//! a renewal). A pair that does not load, or whose key is not the
//! certificate's, is refused and the one in use stays; connections already
//! open keep the session they have, and new handshakes use the new pair.
//!
//! The sessions themselves are the event loop's: a connection from the
//! TLS listener is flagged, its `rustls::ServerConnection` is kept in a
//! table beside the connections (a plaintext connection pays nothing), and
//! its reads and writes go through [`crate::tls::read`] and
//! [`crate::tls::Sealed`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;

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
