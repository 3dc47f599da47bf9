//! The command line: one clap definition for every program in the binary, and
//! the busybox-style dispatch on the name the binary was run as.
//!
//! This definition is the single source for `--help`, and the man page test
//! (`tests/man_page.rs`) walks it, so an option cannot exist undocumented.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

use crate::fail::{Fail, Outcome};
use crate::units::{parse_duration, parse_size};

/// The address every program uses when told nothing else.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8888";

/// The programs a link name can select (`chat-server` and so on).
pub const PROGRAMS: [&str; 4] = ["server", "client", "bot", "bench"];

/// What `--version` prints after the name: the version, and the git commit
/// the binary was built from when the build knew it (see `build.rs`), so a
/// bug report names the exact source.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| match option_env!("CHAT_GIT_COMMIT") {
        Some(commit) => format!("{} ({commit})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    });
    &VERSION
}

#[derive(Debug, Parser)]
#[command(
    name = "chat",
    version = version(),
    override_usage = "chat <COMMAND>\n       chat --install-links <DIR>",
    about = "A terminal chat room: server, client, bot and load generator in one binary",
    long_about = None,
    after_help = "Run 'chat COMMAND --help' for a command's options; 'man chat' for the whole story.",
    propagate_version = true,
    args_conflicts_with_subcommands = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Create the links chat-server, chat-client, chat-bot and chat-bench in
    /// DIR, beside the binary or a link to it named chat, and exit
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub install_links: Option<PathBuf>,

    // Needed unless --install-links is given (the two exclude each other).
    #[command(subcommand)]
    pub command: Option<Command>,
}

// Parsed once per run: the size of the server's options costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the chat server (one thread, edge-triggered epoll)
    Server(ServerArgs),
    /// Chat interactively (line editing, history, nick completion)
    Client(ClientArgs),
    /// Replay a scripted conversation and check what arrives
    Bot(BotArgs),
    /// Measure a running server (fan-out throughput, latency, idle cost, arrivals)
    Bench(BenchArgs),
    /// Write a self-signed TLS certificate and key for a quick start
    Cert(CertArgs),
    /// Print the completion script for a shell, to install where it looks
    Completions(CompletionsArgs),
    /// Manage the server's accounts, or a cluster's (add, del, passwd, list, import), even while it runs
    Account(AccountArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    #[command(subcommand)]
    pub action: AccountAction,

    /// The server's database (default: $XDG_DATA_HOME/chat/chat.db)
    #[arg(long, value_name = "PATH", env = "CHAT_DB", global = true, value_hint = ValueHint::FilePath)]
    pub db: Option<PathBuf>,

    /// With --cluster: the cluster's accounts, on its NATS, not a database's
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AccountAction {
    /// Register NAME; the password is read from the terminal (twice) or one line of stdin
    Add { name: String },
    /// Delete NAME's account
    Del { name: String },
    /// Set NAME's password, read as for add
    Passwd { name: String },
    /// List the accounts, one per line: name and creation time (UTC; a cluster's: last change)
    List,
    /// Copy a database's accounts (--db) into the cluster's (--cluster); names the cluster has already are kept
    Import,
}

/// How to reach a cluster's NATS: the server's `--cluster` options, which
/// `chat account` takes too, to manage the cluster's accounts.
#[derive(Debug, Clone, Default, Args)]
pub struct NatsArgs {
    /// The cluster's NATS servers (JetStream on), nats://HOST:PORT[,URL...]: a server joins the cluster; chat account changes its accounts
    #[arg(long, value_name = "URLS", value_delimiter = ',', global = true)]
    pub cluster: Vec<String>,

    /// The cluster's name: the prefix of its stream and subjects, so clusters can share a NATS
    #[arg(long, value_name = "NAME", default_value = "chat", requires = "cluster", value_parser = parse_cluster_name, global = true)]
    pub cluster_name: String,

    /// NATS credentials file (.creds: JWT and NKey seed)
    #[arg(long, value_name = "FILE", requires = "cluster", value_hint = ValueHint::FilePath, global = true)]
    pub cluster_creds: Option<PathBuf>,

    /// NATS user name (with --cluster-password)
    #[arg(long, value_name = "USER", requires_all = ["cluster", "cluster_password"], global = true)]
    pub cluster_user: Option<String>,

    /// NATS password (better from the environment than on the command line)
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "CHAT_CLUSTER_PASSWORD",
        hide_env_values = true,
        requires = "cluster_user",
        global = true
    )]
    pub cluster_password: Option<String>,

    /// NATS token (better from the environment than on the command line)
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CHAT_CLUSTER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub cluster_token: Option<String>,

    /// Speak TLS to NATS, trusting the CA certificates in FILE (PEM)
    #[arg(long, value_name = "FILE", requires = "cluster", value_hint = ValueHint::FilePath, global = true)]
    pub cluster_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// Host name or IP address the certificate is for (repeatable)
    #[arg(long, value_name = "NAME", required = true)]
    pub host: Vec<String>,

    /// Where to write the certificate (PEM)
    #[arg(long, value_name = "FILE", default_value = "chat-cert.pem", value_hint = ValueHint::FilePath)]
    pub cert: PathBuf,

    /// Where to write the private key (PEM, mode 0600)
    #[arg(long, value_name = "FILE", default_value = "chat-key.pem", value_hint = ValueHint::FilePath)]
    pub key: PathBuf,

    /// Days the certificate is valid
    #[arg(long, value_name = "N", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,

    /// Overwrite the files if they exist
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[arg(
        long,
        value_name = "ADDR",
        default_value = DEFAULT_ADDR,
        help = "Address to listen on, IPv4 or IPv6 ([::1]:8888); port 0 picks a free port; none for no plaintext listener"
    )]
    pub listen: String,

    /// Also listen for TLS connections on ADDR (needs --tls-cert and --tls-key)
    #[arg(long, value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    pub listen_tls: Option<String>,

    /// Also speak IRC to IRC clients on ADDR (irssi, WeeChat): channel #room is room `room`
    #[arg(long, value_name = "ADDR")]
    pub listen_irc: Option<String>,

    /// Also speak IRC over TLS on ADDR, with the certificate of --listen-tls
    #[arg(long, value_name = "ADDR", requires = "listen_tls")]
    pub listen_irc_tls: Option<String>,

    /// Also serve HTTP on ADDR: /healthz, /metrics (Prometheus), /ws (WebSocket) and the browser client at /
    #[arg(long, value_name = "ADDR")]
    pub listen_http: Option<String>,

    /// Also serve the web door over TLS on ADDR (the page then uses wss:), with the certificate of --listen-tls
    #[arg(long, value_name = "ADDR", requires = "listen_tls")]
    pub listen_https: Option<String>,

    /// A page origin allowed to open /ws, as browsers send it (scheme, host and port); repeatable; default: the Host itself
    #[arg(long, value_name = "ORIGIN")]
    pub http_origin: Vec<String>,

    /// TLS certificate chain, PEM (certbot's fullchain.pem); SIGHUP reloads it
    #[arg(long, value_name = "FILE", requires = "listen_tls", value_hint = ValueHint::FilePath)]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key, PEM (certbot's privkey.pem); SIGHUP reloads it
    #[arg(long, value_name = "FILE", requires = "listen_tls", value_hint = ValueHint::FilePath)]
    pub tls_key: Option<PathBuf>,

    /// Longest accepted line in bytes, line ending included (KiB, MiB allowed)
    #[arg(long, value_name = "BYTES", default_value = "65536", value_parser = parse_size)]
    pub max_line: usize,

    /// Bytes that may wait for one slow client before it is disconnected
    #[arg(long, value_name = "BYTES", default_value = "8MiB", value_parser = parse_size)]
    pub max_queue: usize,

    /// Most clients served at once (capped by the open-file limit)
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_clients: usize,

    /// Messages per second one connection may send, sustained (0: no limit)
    #[arg(long, value_name = "MSGS_PER_S", default_value_t = 500)]
    pub rate: u32,

    /// Messages one connection may send at once after a quiet spell
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub burst: u32,

    /// Greeting sent in every welcome
    #[arg(long, value_name = "TEXT", default_value = "Welcome to the chat room!")]
    pub welcome: String,

    /// The room every connection starts in
    #[arg(long, value_name = "ROOM", default_value = "lobby", value_parser = parse_room)]
    pub default_room: String,

    /// Rooms one user may be in at once, the default room included
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rooms: u32,

    /// History database (default: $XDG_DATA_HOME/chat/chat.db); none keeps no history
    #[arg(long, value_name = "PATH", env = "CHAT_DB", value_hint = ValueHint::FilePath)]
    pub db: Option<PathBuf>,

    /// What a stored message survives: normal (a killed server) or full (power loss too)
    #[arg(long, value_name = "MODE", default_value = "normal")]
    pub sync: crate::server::store::Sync,

    /// History kept per room, by count (10000), age (30d) or both (10000,30d); default all
    #[arg(long, value_name = "N,AGE", value_parser = parse_keep)]
    pub history_keep: Option<crate::server::store::Keep>,

    /// Append one JSON line per connect, nick change, register, login and disconnect to FILE
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Print nothing on stderr but errors
    #[arg(long, short)]
    pub quiet: bool,

    /// Who makes accounts: open (anyone, with register) or closed (the administrator)
    #[arg(long, value_name = "WHO", default_value = "open")]
    pub registration: Registration,

    /// Let nobody in before they log in to an account
    #[arg(long)]
    pub require_login: bool,

    /// Take passwords over plain TCP from other machines (behind a TLS proxy)
    #[arg(long)]
    pub allow_plaintext_login: bool,

    /// Failed logins allowed per client address per minute (0: no limit)
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub login_limit: u32,

    #[command(flatten)]
    pub nats: NatsArgs,

    /// How long the cluster's stream keeps changes (12h, 7d, 2w; 0: forever)
    #[arg(long, value_name = "DURATION", default_value = "7d", requires = "cluster", value_parser = parse_cluster_keep)]
    pub cluster_keep: Duration,
}

/// `--cluster-keep`: an age as `--history-keep` takes one (`12h`, `7d`,
/// `2w`, or what [`parse_duration`] reads), at
/// least a minute, or 0 for no limit; the stream's duplicate window (two
/// minutes, at most its age limit) needs that much.
fn parse_cluster_keep(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let per = match text.chars().last() {
        Some('w') => Some(7 * 86_400),
        Some('d') => Some(86_400),
        Some('h') => Some(3600),
        _ => None,
    };
    let keep = match per {
        Some(per) => text[..text.len() - 1]
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(per))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is not a duration (try 12h, 7d, 2w or 0)"))?,
        None => parse_duration(text)?,
    };
    if keep.is_zero() || keep >= Duration::from_secs(60) {
        Ok(keep)
    } else {
        Err(format!(
            "{text:?} is too short: the cluster's stream keeps changes for at least 1m (or 0: forever)"
        ))
    }
}

/// `--cluster-name`: letters, digits, `-` and `_`, as NATS subject and
/// stream names allow.
fn parse_cluster_name(text: &str) -> Result<String, String> {
    if !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(text.to_owned())
    } else {
        Err("a cluster name is 1 to 64 ASCII letters, digits, - and _".into())
    }
}

/// `--registration`: whether `register` is open to anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Registration {
    Open,
    Closed,
}

/// How a connecting program speaks TLS; shared by client, bot and bench.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Connect with TLS, checking the server's certificate against the system's CAs
    #[arg(long)]
    pub tls: bool,

    /// With --tls, trust only the CA certificates in FILE (PEM), such as a self-signed server's
    #[arg(long, value_name = "FILE", requires = "tls", value_hint = ValueHint::FilePath)]
    pub ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS set-up for a server named `host`, or `None` without `--tls`.
    pub fn client(
        &self,
        host: &crate::addr::Host,
    ) -> Result<Option<std::sync::Arc<crate::tls::Client>>, Fail> {
        if !self.tls {
            return Ok(None);
        }
        crate::tls::Client::new(host, self.ca.as_deref())
            .map(|c| Some(std::sync::Arc::new(c)))
            .map_err(Fail::runtime)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server to connect to: a host name or address, with :PORT unless it is 8888
    #[arg(long, short, value_name = "ADDR", env = "CHAT_SERVER", default_value = DEFAULT_ADDR)]
    pub server: String,

    /// Nickname to take after connecting (default: $USER when it is a valid nickname)
    #[arg(long, short, value_name = "NAME", env = "CHAT_NICK")]
    pub nick: Option<String>,

    /// Room to join at start, and talk in (repeatable; the last one is current)
    #[arg(long, value_name = "NAME")]
    pub room: Vec<String>,

    /// Account to log in to (and again after a reconnect); password from $CHAT_PASSWORD or asked
    #[arg(long, short, value_name = "NAME", env = "CHAT_ACCOUNT")]
    pub account: Option<String>,

    /// History file (default: $XDG_DATA_HOME/chat/history)
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,

    /// Print the raw protocol lines instead of rendering them, for scripts
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BotArgs {
    /// The script to run, or - for standard input
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,

    /// Server to connect to: a host name or address, with :PORT unless it is 8888
    #[arg(long, short, value_name = "ADDR", env = "CHAT_SERVER", default_value = DEFAULT_ADDR)]
    pub server: String,

    /// Nickname of the default actor (steps without @ACTOR)
    #[arg(long, short, value_name = "NAME", default_value = "bot")]
    pub nick: String,

    /// The default actor is NAME and logs in to that account on connecting (password: $CHAT_PASSWORD)
    #[arg(long, short, value_name = "NAME", conflicts_with = "nick")]
    pub account: Option<String>,

    /// How long an expect waits unless its line says `within`
    #[arg(long, short, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print only failures
    #[arg(long, short)]
    pub quiet: bool,

    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub mode: BenchMode,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BenchMode {
    /// Group fan-out: senders talk, every receiver must get every message
    Fanout(FanoutArgs),
    /// Hold many idle connections and report the server's memory per connection
    Idle(IdleArgs),
    /// Clients arriving one at a time into one room while members chat: presence cost
    Arrivals(ArrivalsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Servers to measure (a list, or the option repeated; connections are dealt round-robin): host names or addresses, with :PORT unless it is 8888; with --proto ws, the --listen-http address
    #[arg(long, short, value_name = "ADDR[,ADDR...]", env = "CHAT_SERVER", default_value = DEFAULT_ADDR, value_delimiter = ',')]
    pub server: Vec<String>,

    /// Receiving connections
    #[arg(short = 'r', long, value_name = "N", default_value_t = 100)]
    pub receivers: usize,

    /// Sending connections
    #[arg(short = 'S', long, value_name = "N", default_value_t = 4)]
    pub senders: usize,

    /// Messages per sender
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20_000)]
    pub messages: u64,

    /// Payload bytes of each message's text
    #[arg(short = 'p', long, value_name = "BYTES", default_value_t = 64)]
    pub payload: usize,

    /// The protocol of the server: chat, ws (chat over the web door's WebSocket), or a peer to compare with (nats, redis pub/sub, irc in one channel)
    #[arg(long, value_name = "PROTO", value_enum, default_value_t = BenchProto::Chat)]
    pub proto: BenchProto,

    /// Pace the senders at this many messages per second in total (0: as fast as possible)
    #[arg(long, value_name = "MSGS_PER_S", default_value_t = 0)]
    pub rate: u64,

    /// Ten more clients, in a room of their own, change their nicknames this many times a second in all while the senders send (--proto chat only): what renames cost everyone else
    #[arg(long, value_name = "PER_S", default_value_t = 0)]
    pub renames: u64,

    /// Unpaced, the most the senders may be ahead of the average receiver (KiB, MiB allowed)
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub window: usize,

    /// Event-loop threads (default: one per core)
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// PID of the server, to report its CPU time per delivery from /proc
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Give up when nothing has arrived for this long (missing messages are then reported)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,

    /// Also write the results as a self-contained HTML page with charts to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// What `chat bench fanout` talks: chat, or a peer's publish/subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchProto {
    Chat,
    /// Chat over the web door's WebSocket (`/ws` of --listen-http)
    Ws,
    Nats,
    Redis,
    Irc,
}

/// What `chat bench idle` talks: chat, or IRC to compare IRC servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdleProto {
    Chat,
    /// Chat over the web door's WebSocket (`/ws` of --listen-http)
    Ws,
    Irc,
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Servers to measure (a list, or the option repeated; connections are dealt round-robin): host names or addresses, with :PORT unless it is 8888; with --proto ws, the --listen-http address
    #[arg(long, short, value_name = "ADDR[,ADDR...]", env = "CHAT_SERVER", default_value = DEFAULT_ADDR, value_delimiter = ',')]
    pub server: Vec<String>,

    /// Connections to open and hold
    #[arg(short = 'c', long, value_name = "N", default_value_t = 10_000)]
    pub conns: usize,

    /// PID of the server, to read its memory from /proc
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// How long to hold the connections once all are open
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub hold: Duration,

    /// All but the first connection stop reading after their welcome: the cost of joins piling up
    #[arg(long)]
    pub unread: bool,

    /// The protocol of the server: chat, ws (chat over the web door's WebSocket), or irc (registered IRC connections; not with --unread)
    #[arg(long, value_name = "PROTO", value_enum, default_value_t = IdleProto::Chat)]
    pub proto: IdleProto,

    /// Event-loop threads (default: one per core)
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Give up when no connection has progressed for this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,

    /// Also write the results as a self-contained HTML page with charts to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ArrivalsArgs {
    /// Server to measure: a host name or address, with :PORT unless it is 8888
    #[arg(long, short, value_name = "ADDR", env = "CHAT_SERVER", default_value = DEFAULT_ADDR)]
    pub server: String,

    /// Clients that arrive, one at a time, and stay
    #[arg(short = 'c', long, value_name = "N", default_value_t = 10_000)]
    pub clients: usize,

    /// Arrivals per second (0: each as soon as the one before it is in the room)
    #[arg(long, value_name = "ARRIVALS_PER_S", default_value_t = 0)]
    pub rate: u64,

    /// Members already in the room when the arrivals start
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub present: usize,

    /// Members who chat, paced, to time group messages during the storm
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub talkers: usize,

    /// Group messages per second from all talkers together
    #[arg(long, value_name = "MSGS_PER_S", default_value_t = 100)]
    pub chat_rate: u64,

    /// How long the talkers chat before the arrivals start, for the latency to compare with
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub quiet: Duration,

    /// Every client joins this room after its welcome (protocol v2 rooms)
    #[arg(long, value_name = "NAME")]
    pub room: Option<String>,

    /// At the end the arrivals quit, one after another; every member must get every leave
    #[arg(long)]
    pub leave: bool,

    /// Event-loop threads (default: one per core)
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// PID of the server, to report its CPU time per arrival from /proc
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Give up when nothing has progressed for this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print one JSON object instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: Shell,
}

/// The shells `chat completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The program a link name selects: `chat-server` runs `server`, and so on.
/// `None` for the binary's own name or any other, which then reads the
/// program from its first argument.
pub fn program_for_name(argv0: &OsStr) -> Option<&'static str> {
    let stem = Path::new(argv0).file_stem()?.to_str()?;
    let program = stem.strip_prefix("chat-")?;
    PROGRAMS.into_iter().find(|p| *p == program)
}

/// The argument list clap should see: for `chat-server --listen x` that is
/// `chat server --listen x`.
pub fn normalize_args(mut args: Vec<OsString>) -> Vec<OsString> {
    if let Some(program) = args.first().and_then(|a| program_for_name(a)) {
        args[0] = "chat".into();
        args.insert(1, program.into());
    }
    args
}

/// Parses the command line and runs the chosen program.
pub fn run(args: Vec<OsString>) -> Outcome {
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(cli) => cli,
        Err(e) => return help_or_usage(e),
    };
    match (cli.command, cli.install_links) {
        (Some(Command::Server(args)), _) => crate::server::run(&args),
        (Some(Command::Client(args)), _) => crate::client::run(&args),
        (Some(Command::Bot(args)), _) => crate::bot::run(&args),
        (Some(Command::Bench(args)), _) => crate::bench::run(&args),
        (Some(Command::Cert(args)), _) => crate::cert::run(&args),
        (Some(Command::Completions(args)), _) => crate::completions::run(args.shell),
        (Some(Command::Account(args)), _) => crate::account::run(&args),
        (None, Some(dir)) => crate::install::run(&dir),
        // clap shows the help for an empty command line; this is the rest.
        (None, None) => Err(Fail::usage("a command is needed; try 'chat --help'")),
    }
}

/// `--help` and `--version` print and succeed; anything else clap refuses is
/// one line and exit 2.
fn help_or_usage(e: clap::Error) -> Outcome {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A closed stdout (`chat --help | head -1`) is not an error.
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                Err(Fail::usage("a command is needed; try 'chat --help'"))
            } else {
                Ok(())
            }
        }
        _ => {
            // clap's first paragraph, on one line: the message may go on
            // indented ("not provided:\n  <SHELL>", "[possible values: ...]").
            let rendered = e.to_string();
            let first: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = first.join(" ");
            let message = message.trim_start_matches("error: ");
            let message = if message.is_empty() {
                "invalid command line"
            } else {
                message
            };
            Err(Fail::usage(format!("{message}; try 'chat --help'")))
        }
    }
}

/// `--history-keep`: a count, an age (a number with `s`, `m`, `h`, `d` or
/// `w`), or both, separated by a comma.
fn parse_keep(s: &str) -> Result<crate::server::store::Keep, String> {
    let mut keep = crate::server::store::Keep::default();
    for part in s.split(',').map(str::trim) {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = part.parse().map_err(|_| format!("{part:?} is too large"))?;
            if n == 0 {
                return Err("keeping 0 messages is --db none".into());
            }
            keep.count = Some(n);
            continue;
        }
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let (digits, unit) = part.split_at(split);
        let scale = match unit {
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => {
                keep.age = Some(parse_duration(part).map_err(|_| {
                    format!("{part:?} is neither a count nor an age (try 10000, 30d or 10000,30d)")
                })?);
                continue;
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{part:?} is not an age (try 12h, 30d or 8w)"))?;
        keep.age = Some(Duration::from_secs(n.saturating_mul(scale)));
    }
    Ok(keep)
}

/// A room name as the protocol takes it, folded (`Lobby` is `lobby`).
fn parse_room(s: &str) -> Result<String, String> {
    crate::wire::check_room(s)
}

#[cfg(test)]
mod tests {

    #[test]
    fn cluster_keep_takes_an_age_of_a_minute_or_more_or_0() {
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_cluster_keep("7d"), Ok(7 * day));
        assert_eq!(parse_cluster_keep("2w"), Ok(14 * day));
        assert_eq!(parse_cluster_keep("12h"), Ok(day / 2));
        assert_eq!(parse_cluster_keep("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_cluster_keep("0"), Ok(Duration::ZERO));
        for bad in ["", "30s", "d", "1.5d", "-1d", "99999999999999999999d"] {
            assert!(parse_cluster_keep(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_keep_takes_a_count_an_age_or_both() {
        let keep = |s| parse_keep(s).map(|k| (k.count, k.age.map(|a| a.as_secs())));
        assert_eq!(keep("10000"), Ok((Some(10000), None)));
        assert_eq!(keep("30d"), Ok((None, Some(30 * 86_400))));
        assert_eq!(keep("2w"), Ok((None, Some(14 * 86_400))));
        assert_eq!(keep("10000, 12h"), Ok((Some(10000), Some(12 * 3600))));
        assert_eq!(keep("90m"), Ok((None, Some(90 * 60))));
        for bad in ["0", "lots", "30y", "", "99999999999999999999999"] {
            assert!(parse_keep(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn link_names_select_programs() {
        assert_eq!(program_for_name(OsStr::new("chat-server")), Some("server"));
        assert_eq!(
            program_for_name(OsStr::new("/usr/local/bin/chat-client")),
            Some("client")
        );
        assert_eq!(program_for_name(OsStr::new("./chat-bot")), Some("bot"));
        assert_eq!(program_for_name(OsStr::new("chat-bench")), Some("bench"));
        assert_eq!(program_for_name(OsStr::new("chat")), None);
        assert_eq!(program_for_name(OsStr::new("/x/chat")), None);
        assert_eq!(program_for_name(OsStr::new("chat-nonsense")), None);
        assert_eq!(program_for_name(OsStr::new("server")), None);
        assert_eq!(program_for_name(OsStr::new("")), None);
    }

    #[test]
    fn link_names_become_subcommands() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            normalize_args(args(&["/bin/chat-server", "--quiet"])),
            args(&["chat", "server", "--quiet"])
        );
        assert_eq!(
            normalize_args(args(&["chat", "server"])),
            args(&["chat", "server"])
        );
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
