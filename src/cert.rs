//! `chat cert`: a self-signed certificate and its key, so that a server can
//! speak TLS in a minute, before (or instead of) a certificate from a CA.
//! Clients then trust it with `--ca` and the certificate file; its SHA-256
//! fingerprint is printed so that it can be compared out of band.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::cli::CertArgs;
use crate::fail::{Fail, Outcome};

pub fn run(args: &CertArgs) -> Outcome {
    for host in &args.host {
        check_host(host)
            .map_err(|why| Fail::usage(format!("cannot use --host {host:?}: {why}")))?;
    }
    if !args.force {
        for path in [&args.cert, &args.key] {
            if path.exists() {
                return Err(Fail::runtime(format!(
                    "{} exists; pass --force to overwrite it, or choose another name",
                    path.display()
                )));
            }
        }
    }
    let (cert_pem, key_pem, der) = make(&args.host, args.days).map_err(Fail::runtime)?;
    // The key first, so that a certificate never lies around without it.
    write(&args.key, key_pem.as_bytes(), 0o600, args.force)?;
    write(&args.cert, cert_pem.as_bytes(), 0o644, args.force)?;
    println!(
        "wrote {} and {} (key), for {}, valid {} days",
        args.cert.display(),
        args.key.display(),
        args.host.join(", "),
        args.days
    );
    println!("SHA-256 fingerprint: {}", fingerprint(&der));
    Ok(())
}

/// A certificate for `hosts` (names, or IP addresses that become IP SANs)
/// valid from now for `days`: its PEM, its key's PEM and its DER.
pub fn make(hosts: &[String], days: u32) -> Result<(String, String, Vec<u8>), String> {
    let mut params = CertificateParams::new(hosts.to_vec())
        .map_err(|e| format!("cannot make a certificate for {}: {e}", hosts.join(", ")))?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks slightly behind this one.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec()))
}

/// A name a client can check a certificate against: a DNS name (a
/// wildcard `*.` first allowed) or an IP address.
fn check_host(host: &str) -> Result<(), &'static str> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if !host.is_ascii() {
        return Err("write an international name in its xn-- form");
    }
    match rustls::pki_types::ServerName::try_from(name) {
        Ok(_) => Ok(()),
        Err(_) => Err("not a host name or IP address"),
    }
}

/// `AB:CD:...`, as `openssl x509 -fingerprint -sha256` shows it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes `bytes` to `path` with `mode`; an existing file only with
/// `force`, and then its mode is set too (a key must not stay readable).
fn write(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), Fail> {
    let fail = |e: std::io::Error| Fail::runtime(format!("cannot write {}: {e}", path.display()));
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file: File = options.open(path).map_err(fail)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses() {
        for good in [
            "localhost",
            "chat.example.org",
            "*.example.org",
            "127.0.0.1",
            "::1",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in ["bad name", "caf\u{e9}.example", "", "a..b", "[::1]"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_made_certificate_is_accepted_by_rustls_with_its_key() {
        let (cert, key, der) = make(&["localhost".into(), "127.0.0.1".into()], 2).unwrap();
        let dir = std::env::temp_dir().join(format!("chat-cert-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        let certs = crate::tls::load_certs(&c).unwrap();
        assert_eq!(certs[0].as_ref(), &der[..]);
        let key = crate::tls::load_key(&k).unwrap();
        rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        assert_eq!(fingerprint(&der).len(), 32 * 3 - 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
