//! Reading the addresses people type: `127.0.0.1:8888`, `[::1]:8888`,
//! `localhost:8888`.
//!
//! Only literal addresses and `localhost` are understood. The binary is
//! statically linked, and glibc's name service cannot be used from a static
//! binary without the very shared libraries we avoid; a chat room on a LAN is
//! reached by address anyway.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Parses `HOST:PORT`. The error is a sentence fragment for
/// `cannot use ADDR: ...`.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    Err(format!(
        "{text:?} is not an address; write IP:PORT, such as 127.0.0.1:8888 or [::1]:8888"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_localhost() {
        assert_eq!(
            parse_addr("127.0.0.1:8888").unwrap(),
            "127.0.0.1:8888".parse().unwrap()
        );
        assert_eq!(parse_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(
            parse_addr("localhost:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        for bad in [
            "",
            "8888",
            "127.0.0.1",
            "example.com:80",
            "1.2.3.4:99999",
            "::1:80",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }
}
