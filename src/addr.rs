//! Reading the addresses people type, and finding what they stand for.
//!
//! A server to connect to (`--server`, `CHAT_SERVER`) is `HOST[:PORT]`: an
//! IPv4 address, an IPv6 address in brackets (`[::1]:8888`, `[::1]`) or a
//! host name (`localhost`, `chat.example.org:7000`); the port is 8888 when
//! left out. A name may stand for several addresses, and [`Server::connect`]
//! tries each in turn until one answers.
//!
//! Names are looked up with the C library's `getaddrinfo`, so `/etc/hosts`
//! and the DNS servers of `/etc/resolv.conf` answer as they do for every
//! other program. The binary is linked statically with glibc, which has both
//! of those lookups built in since 2.34; any other module `/etc/nsswitch.conf`
//! names (`mdns4_minimal`, `resolve`, `myhostname`...) is a shared library
//! that a static binary would have to `dlopen`, and glibc warns at link time
//! that doing so needs the very glibc version it was linked with. So the
//! static binary asks glibc to use only `files` and `dns` for host names (see
//! `nss` below); a dynamically linked build follows `nsswitch.conf` in full.
//!
//! `localhost` and names under `.invalid` are answered without a lookup, as
//! RFC 6761 asks: the loopback addresses, and "no such name" (at once, not
//! after a DNS timeout).
//!
//! The server's `--listen` takes an address, not a name ([`parse_addr`]).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// The port a server address means when it names none.
pub const DEFAULT_PORT: u16 = 8888;

/// Parses `IP:PORT` (or `localhost:PORT`) for `--listen`. The error is a
/// sentence fragment for `cannot use ADDR: ...`.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(format!(
        "{text:?} is not an address; write IP:PORT, such as 127.0.0.1:8888 or [::1]:8888"
    ))
}

/// The host part of a server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A server to connect to, as the user named it: `HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for ServerAddr {
    /// `127.0.0.1:8888`, `[::1]:8888`, `chat.example.org:8888`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Parses `HOST[:PORT]` for `--server`. Only the form is checked here (a
/// bad one is a usage error); whether the name exists is [`resolve`]'s
/// business. The error is a sentence fragment for `cannot use ...: `.
pub fn parse_server(text: &str) -> Result<ServerAddr, String> {
    let not_an_address = || {
        format!(
            "{text:?} is not an address; write HOST or HOST:PORT, such as localhost, \
             chat.example.org:8888, 127.0.0.1:8888 or [::1]:8888"
        )
    };
    let port_of = |port: &str| -> Result<u16, String> {
        port.parse::<u16>()
            .map_err(|_| format!("{text:?} has no valid port ({port:?}; 0 to 65535)"))
    };
    // [IPv6] or [IPv6]:PORT
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(not_an_address)?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| not_an_address())?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => port_of(after.strip_prefix(':').ok_or_else(not_an_address)?)?,
        };
        return Ok(ServerAddr {
            host: Host::Ip(IpAddr::V6(ip)),
            port,
        });
    }
    let (host, port) = match text.split_once(':') {
        // Two colons or more: an IPv6 address, whose last group cannot be
        // told from a port without the brackets.
        Some((_, rest)) if rest.contains(':') => {
            return Err(match text.parse::<Ipv6Addr>() {
                Ok(_) => format!(
                    "{text:?}: write an IPv6 address in brackets, as [{text}] or [{text}]:8888"
                ),
                Err(_) => not_an_address(),
            });
        }
        Some((host, port)) => (host, port_of(port)?),
        None => (text, DEFAULT_PORT),
    };
    let host = match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(IpAddr::V4(ip)),
        Err(_) if is_host_name(host) => Host::Name(host.to_owned()),
        Err(_) => return Err(not_an_address()),
    };
    Ok(ServerAddr { host, port })
}

/// Whether TEXT can be a DNS host name: dot-separated labels of letters,
/// digits, `-` and `_`, a trailing dot allowed, and a last label that is not
/// all digits (so `8888` and `127.1` are refused rather than read by
/// `getaddrinfo` as the IPv4 addresses 0.0.34.184 and 127.0.0.1).
fn is_host_name(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last = name.rsplit('.').next().unwrap_or(name);
    name.split('.').all(label_ok) && !last.bytes().all(|b| b.is_ascii_digit())
}

/// Every address ADDR stands for, in the order to try them. The error is the
/// whole message: `cannot resolve NAME: REASON`.
pub fn resolve(addr: &ServerAddr) -> Result<Vec<SocketAddr>, String> {
    let name = match &addr.host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, addr.port)]),
        Host::Name(name) => name,
    };
    let fail = |reason: &str| format!("cannot resolve {name}: {reason}");
    let bare = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if bare == "localhost" || bare.ends_with(".localhost") {
        // IPv4 first: the server's default address is 127.0.0.1.
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port),
        ]);
    }
    if bare == "invalid" || bare.ends_with(".invalid") {
        return Err(fail("no such name (.invalid names never exist, RFC 6761)"));
    }
    nss::use_builtin_modules();
    let found = (name.as_str(), addr.port)
        .to_socket_addrs()
        .map_err(|e| fail(&lookup_reason(&e)))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in found {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(fail("the name has no address"));
    }
    Ok(addrs)
}

/// `getaddrinfo`'s reason without the standard library's preamble:
/// "Name or service not known", "Temporary failure in name resolution".
fn lookup_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.strip_prefix("failed to lookup address information: ") {
        Some(reason) => reason.to_owned(),
        None => text,
    }
}

/// A server to connect to: its name as given and the addresses it stands
/// for, which [`Server::connect`] tries in turn, and whether (and how) to
/// speak TLS to it.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: ServerAddr,
    pub addrs: Vec<SocketAddr>,
    pub tls: Option<std::sync::Arc<crate::tls::Client>>,
}

impl Server {
    /// Parses and resolves TEXT. A bad form is `Err(Usage(...))`, a name
    /// that cannot be resolved `Err(Runtime(...))`, each a whole message.
    pub fn find(text: &str) -> Result<Server, FindError> {
        let addr = parse_server(text).map_err(FindError::Usage)?;
        let addrs = resolve(&addr).map_err(FindError::Runtime)?;
        Ok(Server {
            addr,
            addrs,
            tls: None,
        })
    }

    /// Calls CONNECT with each address until one succeeds, and moves that
    /// address to the front so later connections try it first. The error
    /// is what follows `cannot connect to `: the name, and each address
    /// tried with REASON for its failure when the name was not an address.
    pub fn connect<T>(
        &mut self,
        mut connect: impl FnMut(SocketAddr) -> io::Result<T>,
        reason: impl Fn(&io::Error) -> String,
    ) -> Result<(T, SocketAddr), String> {
        let mut failures = Vec::new();
        for (i, &addr) in self.addrs.iter().enumerate() {
            match connect(addr) {
                Ok(t) => {
                    self.addrs[..=i].rotate_right(1);
                    return Ok((t, addr));
                }
                Err(e) => failures.push(format!("{addr}: {}", reason(&e))),
            }
        }
        Err(match &self.addr.host {
            Host::Ip(_) => failures.join("; "),
            Host::Name(_) => format!("{} ({})", self.addr, failures.join("; ")),
        })
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

/// Why [`Server::find`] failed: the form (exit 2) or the lookup (exit 1).
#[derive(Debug, PartialEq, Eq)]
pub enum FindError {
    Usage(String),
    Runtime(String),
}

/// The `hosts` line of `nsswitch.conf` cut down to the lookups glibc has
/// built in, `files` and `dns`, each with the `[STATUS=action]` that follows
/// it; `files dns` when nothing of it is left (or there is no such line).
/// `hosts: files mdns4_minimal [NOTFOUND=return] dns` becomes `files dns`,
/// `hosts: files` stays `files`.
pub fn builtin_hosts_line(nsswitch_conf: &str) -> String {
    let line = nsswitch_conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .find_map(|l| l.trim_start().strip_prefix("hosts:"));
    let mut kept: Vec<String> = Vec::new();
    let mut keeping = false;
    let mut rest = line.unwrap_or("").trim_start();
    while !rest.is_empty() {
        let (token, after) = if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest.split_at(end + 1),
                None => (rest, ""),
            }
        } else {
            rest.split_at(
                rest.find(|c: char| c.is_whitespace() || c == '[')
                    .unwrap_or(rest.len()),
            )
        };
        if token.starts_with('[') {
            if keeping {
                kept.push(token.split_whitespace().collect());
            }
        } else {
            keeping = token == "files" || token == "dns";
            if keeping {
                kept.push(token.to_owned());
            }
        }
        rest = after.trim_start();
    }
    if kept.iter().any(|t| !t.starts_with('[')) {
        kept.join(" ")
    } else {
        "files dns".to_owned()
    }
}

/// Keeping a static binary's host lookups to what glibc has built in.
#[cfg(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static"))]
mod nss {
    use std::ffi::{CString, c_char, c_int};
    use std::sync::Once;

    unsafe extern "C" {
        /// glibc's `<nss.h>`: use SERVICE_LINE for database DBNAME instead
        /// of what `/etc/nsswitch.conf` says.
        fn __nss_configure_lookup(dbname: *const c_char, service_line: *const c_char) -> c_int;
    }

    /// Before the first lookup: `hosts` uses only `files` and `dns`, in the
    /// order (and with the actions) `/etc/nsswitch.conf` gives them.
    pub fn use_builtin_modules() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let conf = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
            let line = super::builtin_hosts_line(&conf);
            // Made from ASCII words without NUL; leaked, since glibc may
            // keep the pointer (it is one short string, once).
            let line = CString::new(line).unwrap_or_else(|_| c"files dns".to_owned());
            // SAFETY: both arguments are NUL-terminated strings that live
            // for the rest of the program; this runs once, before this
            // process's first host lookup (every one goes through here) and
            // before the bench starts its threads.
            unsafe {
                __nss_configure_lookup(c"hosts".as_ptr(), line.into_raw());
            }
        });
    }
}

/// A dynamically linked build can load any NSS module: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu", target_feature = "crt-static")))]
mod nss {
    pub fn use_builtin_modules() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn name(host: &str, port: u16) -> ServerAddr {
        ServerAddr {
            host: Host::Name(host.to_owned()),
            port,
        }
    }

    #[test]
    fn listen_addresses_are_literal_or_localhost() {
        assert_eq!(
            parse_addr("127.0.0.1:8888").unwrap(),
            sock("127.0.0.1:8888")
        );
        assert_eq!(parse_addr("[::1]:0").unwrap(), sock("[::1]:0"));
        assert_eq!(parse_addr("localhost:80").unwrap(), sock("127.0.0.1:80"));
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

    #[test]
    fn server_addresses_with_and_without_port() {
        let ip = |text: &str| {
            let a = sock(text);
            ServerAddr {
                host: Host::Ip(a.ip()),
                port: a.port(),
            }
        };
        let cases = [
            ("127.0.0.1:8888", ip("127.0.0.1:8888")),
            ("127.0.0.1", ip("127.0.0.1:8888")),
            ("10.1.2.3:7000", ip("10.1.2.3:7000")),
            ("[::1]:9000", ip("[::1]:9000")),
            ("[::1]", ip("[::1]:8888")),
            ("[2001:db8::7]:1", ip("[2001:db8::7]:1")),
            ("localhost", name("localhost", 8888)),
            ("localhost:7000", name("localhost", 7000)),
            ("chat.example.org", name("chat.example.org", 8888)),
            ("chat.example.org.:80", name("chat.example.org.", 80)),
            ("my_host-2:0", name("my_host-2", 0)),
            ("1password.example", name("1password.example", 8888)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_server(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_server_addresses_are_refused() {
        for bad in [
            "",
            ":8888",
            "8888",
            "127.1",
            "localhost:",
            "localhost:http",
            "localhost:99999",
            "1.2.3.4:99999",
            "::1",
            "::1:80",
            "[::1",
            "[::1]8888",
            "[::1]:",
            "[localhost]:80",
            "chat..example.org",
            ".example.org",
            "no space",
            "bad/char",
            "caf\u{e9}.example",
            "a:b:c",
        ] {
            assert!(parse_server(bad).is_err(), "{bad:?} was accepted");
        }
        let why = parse_server("::1").unwrap_err();
        assert!(why.contains("[::1]:8888"), "{why}");
        let why = parse_server("localhost:99999").unwrap_err();
        assert!(why.contains("port"), "{why}");
        let long = format!("{}.example", "a".repeat(64));
        assert!(parse_server(&long).is_err());
    }

    #[test]
    fn server_addresses_print_as_typed() {
        for text in [
            "127.0.0.1:8888",
            "[::1]:80",
            "localhost:8888",
            "chat.example.org:1",
        ] {
            assert_eq!(parse_server(text).unwrap().to_string(), text);
        }
        assert_eq!(parse_server("[::1]").unwrap().to_string(), "[::1]:8888");
        assert_eq!(
            parse_server("localhost").unwrap().to_string(),
            "localhost:8888"
        );
    }

    #[test]
    fn localhost_is_both_loopbacks_without_a_lookup() {
        for host in ["localhost", "LocalHost.", "chat.localhost"] {
            assert_eq!(
                resolve(&name(host, 9)).unwrap(),
                vec![sock("127.0.0.1:9"), sock("[::1]:9")],
                "{host}"
            );
        }
    }

    #[test]
    fn invalid_names_fail_at_once() {
        for host in ["nosuchhost.invalid", "invalid", "x.y.INVALID."] {
            let start = Instant::now();
            let why = resolve(&name(host, 1)).unwrap_err();
            assert!(start.elapsed() < Duration::from_millis(100));
            assert!(
                why.starts_with(&format!("cannot resolve {host}: ")),
                "{why}"
            );
        }
    }

    /// A name from /etc/hosts goes through getaddrinfo (in the static
    /// binary too) and comes back with its address.
    #[test]
    fn names_in_etc_hosts_resolve() {
        let Some((ip, host)) = etc_hosts_name() else {
            println!("note: /etc/hosts has no name besides localhost; lookup not tested");
            return;
        };
        let addrs = resolve(&name(&host, 7)).unwrap();
        assert!(
            addrs.contains(&SocketAddr::new(ip, 7)),
            "{host} resolved to {addrs:?}, /etc/hosts says {ip}"
        );
    }

    /// Some (address, name) of /etc/hosts whose name is not a localhost.
    fn etc_hosts_name() -> Option<(IpAddr, String)> {
        let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
        hosts.lines().find_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            let host = words.find(|w| {
                parse_server(w).is_ok_and(|a| matches!(a.host, Host::Name(_)))
                    && !w.to_ascii_lowercase().contains("localhost")
            })?;
            Some((ip, host.to_owned()))
        })
    }

    #[test]
    fn connect_tries_each_address_and_remembers_the_one_that_answered() {
        let mut server = Server {
            addr: name("both", 1),
            addrs: vec![sock("[::1]:1"), sock("127.0.0.1:1"), sock("10.0.0.1:1")],
            tls: None,
        };
        let mut tried = Vec::new();
        let got = server.connect(
            |a| {
                tried.push(a);
                match a.is_ipv4() {
                    true => Ok(a.ip()),
                    false => Err(io::ErrorKind::ConnectionRefused.into()),
                }
            },
            |e| e.to_string(),
        );
        assert_eq!(
            got.unwrap(),
            (sock("127.0.0.1:1").ip(), sock("127.0.0.1:1"))
        );
        assert_eq!(tried, [sock("[::1]:1"), sock("127.0.0.1:1")]);
        assert_eq!(
            server.addrs,
            [sock("127.0.0.1:1"), sock("[::1]:1"), sock("10.0.0.1:1")]
        );
    }

    #[test]
    fn connect_failures_name_every_address_tried() {
        let refused = |_| -> io::Result<()> { Err(io::ErrorKind::ConnectionRefused.into()) };
        let reason = |_: &io::Error| "refused".to_owned();
        let mut literal = Server {
            addr: parse_server("127.0.0.1:5").unwrap(),
            addrs: vec![sock("127.0.0.1:5")],
            tls: None,
        };
        assert_eq!(
            literal.connect(refused, reason).unwrap_err(),
            "127.0.0.1:5: refused"
        );
        let mut named = Server {
            addr: name("localhost", 5),
            addrs: vec![sock("127.0.0.1:5"), sock("[::1]:5")],
            tls: None,
        };
        assert_eq!(
            named.connect(refused, reason).unwrap_err(),
            "localhost:5 (127.0.0.1:5: refused; [::1]:5: refused)"
        );
    }

    #[test]
    fn find_tells_usage_from_runtime_failures() {
        assert!(matches!(Server::find("[::1"), Err(FindError::Usage(_))));
        assert!(matches!(
            Server::find("a.invalid"),
            Err(FindError::Runtime(_))
        ));
        let found = Server::find("[::1]").unwrap();
        assert_eq!(found.addrs, [sock("[::1]:8888")]);
    }

    #[test]
    fn the_hosts_line_keeps_only_files_and_dns() {
        let cases = [
            ("hosts: files dns\n", "files dns"),
            ("hosts:          files dns myhostname\n", "files dns"),
            (
                "hosts: files mdns4_minimal [NOTFOUND=return] dns\n",
                "files dns",
            ),
            (
                "hosts: mymachines resolve [!UNAVAIL=return] files myhostname dns",
                "files dns",
            ),
            (
                "hosts: dns [!UNAVAIL=return] files",
                "dns [!UNAVAIL=return] files",
            ),
            (
                "hosts: files [ NOTFOUND = return ] dns",
                "files [NOTFOUND=return] dns",
            ),
            ("hosts: files", "files"),
            (
                "hosts: files[SUCCESS=return]dns",
                "files [SUCCESS=return] dns",
            ),
            (
                "# hosts: dns\npasswd: files\n  hosts: dns files # nis\n",
                "dns files",
            ),
            ("hosts: nis ldap", "files dns"),
            ("hosts:", "files dns"),
            ("passwd: files", "files dns"),
            ("", "files dns"),
        ];
        for (conf, want) in cases {
            assert_eq!(builtin_hosts_line(conf), want, "{conf:?}");
        }
    }
}
