//! The backplane's thread: the NATS client (async-nats) on a tokio
//! current-thread runtime of its own, so the event loop stays as it is.
//! It publishes what the loop hands it, in order, and hands back what the
//! stream delivers, in stream order, with a wake of the loop's `Waker`.
//!
//! Liveness lives here too: every instance says `hb` on core NATS each
//! [`BEAT`]; an instance heard of (by a heartbeat or an op) and then
//! silent for [`SILENT`] is published as `gone` by every survivor that
//! notices (applying `gone` twice does nothing).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use mio::Waker;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::book::{self, Shelf};
use super::name_jobs::{Job, NameJobs};
use super::op::{self, Envelope, Op, Private};
use super::{Config, In, Out};

/// How often an instance says it is alive.
pub const BEAT: Duration = Duration::from_secs(1);
/// How long a silent instance is taken for alive.
pub const SILENT: Duration = Duration::from_secs(5);

/// The names on NATS of one cluster (`--cluster-name`).
pub(super) struct Names {
    log: String,
    stream: String,
    hb: String,
    pm: String,
}

impl Names {
    pub(super) fn new(cluster: &str) -> Names {
        Names {
            log: format!("{cluster}.log"),
            // Stream names may not hold `.`.
            stream: format!("{}_log", cluster.replace('.', "_")),
            hb: format!("{cluster}.hb"),
            pm: format!("{cluster}.pm"),
        }
    }

    /// The key-value bucket of the accounts.
    pub(super) fn accounts(&self) -> String {
        format!("{}_accounts", self.stream.trim_end_matches("_log"))
    }

    /// The key-value bucket of the names in use.
    fn nicks(&self) -> String {
        format!("{}_nicks", self.stream.trim_end_matches("_log"))
    }
}

/// What the loop learns once, before it serves anyone.
pub struct Started {
    pub id_base: u64,
    pub first_seq: u64,
}

/// How long the stream remembers a message id, so that a publish retried
/// after a lost ack is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

pub(super) async fn connect_options(config: &Config) -> Result<async_nats::ConnectOptions, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name("chat server")
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(2))
        .max_reconnects(None);
    if let Some(path) = &config.creds {
        options = options.credentials_file(path).await.map_err(|e| {
            format!(
                "cannot read the NATS credentials {}: {e}; check --cluster-creds",
                path.display()
            )
        })?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(options)
}

/// The thread's body: connects, says hello, then runs until the loop
/// drops its sender.
// The thread's whole world, handed over once at its start: the channels
// each way and the state it shares with the loop.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: Config,
    instance: String,
    shelf: Arc<Shelf>,
    started: Sender<Result<Started, String>>,
    to_loop: Sender<In>,
    waker: Arc<Waker>,
    mut from_loop: UnboundedReceiver<Out>,
    servers: Arc<std::sync::atomic::AtomicUsize>,
) {
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let setup = async {
        let options = connect_options(&config)
            .await?
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    let _ = events_tx.send(event);
                }
            });
        let urls = config.urls.join(",");
        let client = options.connect(urls.as_str()).await.map_err(|e| {
            format!(
                "cannot reach NATS at {urls}: {e}; start nats-server with -js or check --cluster"
            )
        })?;
        let names = Names::new(&config.name);
        let js = jetstream::new(client.clone());
        let wanted = stream::Config {
            name: names.stream.clone(),
            subjects: vec![names.log.clone()],
            storage: stream::StorageType::File,
            // `--cluster-keep`; NATS wants the duplicate window within it.
            max_age: config.keep,
            duplicate_window: if config.keep.is_zero() {
                DUPLICATE_WINDOW
            } else {
                DUPLICATE_WINDOW.min(config.keep)
            },
            ..Default::default()
        };
        let mut log = js.get_or_create_stream(wanted.clone()).await.map_err(|e| {
            format!(
                "cannot open the stream {} on NATS: {e}; is JetStream on (nats-server -js)?",
                names.stream
            )
        })?;
        let had = &log.cached_info().config;
        if had.max_age != wanted.max_age || had.duplicate_window != wanted.duplicate_window {
            // The last server started says how long the stream keeps.
            let mut changed = had.clone();
            changed.max_age = wanted.max_age;
            changed.duplicate_window = wanted.duplicate_window;
            js.update_stream(changed).await.map_err(|e| {
                format!(
                    "cannot set the age limit of the stream {} on NATS: {e}; check --cluster-keep",
                    names.stream
                )
            })?;
        }
        let first_seq = log
            .info()
            .await
            .map_err(|e| format!("cannot read the stream {}: {e}", names.stream))?
            .state
            .first_sequence;
        let hello = encode(&instance, Op::Hello);
        let ack = js
            .publish(names.log.clone(), hello.into())
            .await
            .map_err(|e| format!("cannot publish to {}: {e}", names.log))?
            .await
            .map_err(|e| format!("cannot publish to {}: {e}", names.log))?;
        // From the first message the stream still has (older ones aged
        // out): a store behind it has a gap, which the loop reports.
        let messages = read_from(&log, &names.log, first_seq.max(1))
            .await
            .map_err(|e| format!("cannot read the stream {}: {e}", names.stream))?;
        let nicks = open_bucket(&js, &names.nicks()).await?;
        let accounts = open_bucket(&js, &names.accounts()).await?;
        // Watched before the listing, so that nothing registered between
        // the two is missed (seen twice is harmless).
        let watch = accounts
            .watch_with_history(">")
            .await
            .map_err(|e| format!("cannot watch the accounts on NATS: {e}"))?;
        let mut listed = accounts
            .keys()
            .await
            .map_err(|e| format!("cannot read the accounts on NATS: {e}"))?;
        while let Some(Ok(key)) = listed.next().await {
            if let Ok(Some(entry)) = accounts.entry(key).await {
                learn(&shelf, &entry);
            }
        }
        let hb = client
            .subscribe(names.hb.clone())
            .await
            .map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
        let pm = client
            .subscribe(format!("{}.{instance}", names.pm))
            .await
            .map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
        Ok::<_, String>((
            client,
            js,
            log,
            nicks,
            accounts,
            Some(watch),
            names,
            messages,
            hb,
            pm,
            ack.sequence,
            first_seq,
        ))
    };
    let (
        client,
        js,
        log,
        nicks,
        accounts,
        mut watch,
        names,
        mut messages,
        mut hb,
        mut pm,
        hello,
        first_seq,
    ) = match setup.await {
        Ok(parts) => parts,
        Err(why) => {
            let _ = started.send(Err(why));
            return;
        }
    };
    let mut state = State {
        instance: instance.clone(),
        seen: HashMap::new(),
        gone: HashSet::new(),
        last_seq: 0,
    };
    // What happened before this instance's hello is handed over before
    // the loop serves anyone: a server starts with the cluster's state,
    // and a restarted one stores the history it missed.
    let caught_up = tokio::time::timeout(CATCH_UP, async {
        while state.last_seq < hello {
            match messages.next().await {
                Some(Ok(message)) => {
                    if let Some(got) = state.receive(&message) {
                        let _ = to_loop.send(got);
                    }
                }
                Some(Err(_)) => {}
                None => return false,
            }
        }
        true
    })
    .await;
    if caught_up != Ok(true) {
        let _ = started.send(Err(format!(
            "cannot read the stream {} up to this server's start within {CATCH_UP:?}",
            names.stream
        )));
        return;
    }
    if started
        .send(Ok(Started {
            id_base: op::id_base(hello),
            first_seq,
        }))
        .is_err()
    {
        return;
    }
    let tell = |what: In| {
        if to_loop.send(what).is_ok() {
            let _ = waker.wake();
        }
    };
    let publisher = spawn_publisher(js.clone(), names.log.clone());
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = true;
    let mut unreleased: Vec<crate::server::core::Release> = Vec::new();
    let started_at = Instant::now();
    let mut jobs: NameJobs<Vec<u8>> = NameJobs::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let run = |job: Job, state: &State| {
        let dead = state.dead(started_at);
        spawn_job(job, nicks.clone(), instance.clone(), dead, done_tx.clone());
    };
    loop {
        tokio::select! {
            done = done_rx.recv() => {
                let Some(done) = done else { continue };
                finish(done, &mut jobs, &mut unreleased, &tell, &publisher, |job| run(job, &state));
            }
            message = messages.next() => {
                let Some(message) = message else { break };
                let Ok(message) = message else { continue };
                if let Some(got) = state.receive(&message) {
                    tell(got);
                }
            }
            beat = hb.next() => {
                let Some(beat) = beat else { break };
                if let Ok(from) = std::str::from_utf8(&beat.payload)
                    && from != instance
                    && !state.gone.contains(from)
                {
                    state.seen.insert(from.to_owned(), Instant::now());
                }
            }
            entry = next_entry(&mut watch) => {
                match entry {
                    Some(Ok(entry)) => {
                        if let Some(news) = learn(&shelf, &entry) {
                            tell(news);
                        }
                    }
                    Some(Err(_)) => {}
                    // Read again when NATS is back.
                    None => watch = None,
                }
            }
            private = pm.next() => {
                let Some(private) = private else { break };
                if let Ok(private) = serde_json::from_slice::<Private>(&private.payload)
                    && private.v == op::VERSION
                {
                    tell(In::Private(private));
                }
            }
            out = from_loop.recv() => {
                match out {
                    None => {
                        // Ops held for releases still go out, after them if
                        // they answer in time.
                        let _ = tokio::time::timeout(CLAIM_WAIT, async {
                            while jobs.releasing() {
                                let Some(done) = done_rx.recv().await else { break };
                                finish(done, &mut jobs, &mut unreleased, &tell, &publisher, |job| run(job, &state));
                            }
                        })
                        .await;
                        for op in jobs.take_held() {
                            let _ = publisher.send(op);
                        }
                        break;
                    }
                    Some(Out::Op(op)) => {
                        if let Some(op) = jobs.op(encode(&instance, op)) {
                            let _ = publisher.send(op);
                        }
                    }
                    Some(Out::Claim { ask }) => {
                        // Refused at once while NATS is away, not after
                        // the claim's timeout: an IRC client registering
                        // meanwhile hears 433 straight away.
                        if !up {
                            tell(In::Claimed { ask, ok: false });
                            continue;
                        }
                        if let Some(job) = jobs.claim(ask) {
                            run(job, &state);
                        }
                    }
                    Some(Out::Release(gone)) => {
                        // Kept while NATS is away or failing, and tried
                        // again: a name left held by a live server would
                        // be nobody's to take.
                        if !up {
                            unreleased.push(gone);
                        } else if let Some(job) = jobs.release(gone) {
                            run(job, &state);
                        }
                    }
                    Some(Out::FindAccount { key, reply }) => {
                        if !up {
                            let _ = reply.send(Err("NATS is away".into()));
                            continue;
                        }
                        let (accounts, shelf, to_loop, waker) =
                            (accounts.clone(), Arc::clone(&shelf), to_loop.clone(), Arc::clone(&waker));
                        tokio::spawn(async move {
                            let found = tokio::time::timeout(book::WAIT, accounts.entry(book::bucket_key(&key))).await;
                            let answer = match found {
                                Ok(Ok(Some(entry))) => {
                                    if let Some(news) = learn(&shelf, &entry) && to_loop.send(news).is_ok() {
                                        let _ = waker.wake();
                                    }
                                    Ok(book::value_of(&entry))
                                }
                                Ok(Ok(None)) => Ok(None),
                                Ok(Err(e)) => Err(format!("cannot read the accounts on NATS: {e}")),
                                Err(_) => Err("the accounts on NATS did not answer in time".into()),
                            };
                            let _ = reply.send(answer);
                        });
                    }
                    Some(Out::AddAccount { key, value, reply }) => {
                        if !up {
                            let _ = reply.send(Err("NATS is away".into()));
                            continue;
                        }
                        let accounts = accounts.clone();
                        tokio::spawn(async move {
                            let bytes = serde_json::to_vec(&value).unwrap_or_default();
                            let made = tokio::time::timeout(
                                book::WAIT,
                                accounts.create(book::bucket_key(&key), bytes.into()),
                            )
                            .await;
                            let answer = match made {
                                Ok(Ok(_)) => Ok(true),
                                Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                                Ok(Err(e)) => Err(format!("cannot register on NATS: {e}")),
                                Err(_) => Err("the accounts on NATS did not answer in time".into()),
                            };
                            let _ = reply.send(answer);
                        });
                    }
                    Some(Out::Private { instance: to, private }) => {
                        if let Ok(bytes) = serde_json::to_vec(&private) {
                            let _ = client.publish(format!("{}.{to}", names.pm), bytes.into()).await;
                        }
                    }
                }
            }
            event = events.recv() => {
                let Some(event) = event else { continue };
                let now_up = match event {
                    async_nats::Event::Connected => true,
                    async_nats::Event::Disconnected => false,
                    _ => continue,
                };
                if now_up != up {
                    up = now_up;
                    if up {
                        // Nobody was heard while this instance was away:
                        // the others get the liveness delay from now.
                        let now = Instant::now();
                        for at in state.seen.values_mut() {
                            *at = now;
                        }
                        // The consumer may not have survived NATS's
                        // restart: read on from the last message applied.
                        match read_from(&log, &names.log, state.last_seq + 1).await {
                            Ok(again) => messages = again,
                            Err(e) => eprintln!("chat server: cannot read the cluster's stream again: {e}"),
                        }
                        // The same for the accounts' watch: what was
                        // registered meanwhile comes with the history.
                        match accounts.watch_with_history(">").await {
                            Ok(again) => watch = Some(again),
                            Err(e) => eprintln!("chat server: cannot watch the cluster's accounts again: {e}"),
                        }
                    }
                    if up {
                        retry_releases(&mut unreleased, &mut jobs, |job| run(job, &state));
                    }
                    tell(In::Up(up));
                }
            }
            _ = tick.tick() => {
                if up {
                    let _ = client.publish(names.hb.clone(), instance.clone().into_bytes().into()).await;
                    let now = Instant::now();
                    let silent: Vec<String> = state
                        .seen
                        .iter()
                        .filter(|(_, at)| now.duration_since(**at) > SILENT)
                        .map(|(who, _)| who.clone())
                        .collect();
                    for who in silent {
                        state.seen.remove(&who);
                        let _ = publisher.send(encode(&instance, Op::Gone { instance: who }));
                    }
                    servers.store(state.seen.len() + 1, std::sync::atomic::Ordering::Relaxed);
                    retry_releases(&mut unreleased, &mut jobs, |job| run(job, &state));
                }
            }
        }
    }
    let _ = client.flush().await;
}

/// Opens a key-value bucket, making its stream by hand as a bucket's
/// stream is made: `create_key_value` asks the account's limits in a form
/// nats-server 2.9 does not answer.
pub(super) async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
) -> Result<kv::Store, String> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: Duration::from_secs(120),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot open the bucket {bucket} on NATS: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| format!("cannot open the bucket {bucket} on NATS: {e}"))
}

/// Keeps an entry of the accounts bucket in the last known copy: what
/// the loop must hear of it, if anything (an account new here, or one
/// deleted by `chat account del --cluster`).
fn learn(shelf: &Shelf, entry: &kv::Entry) -> Option<In> {
    let key = book::account_key(&entry.key)?;
    match book::value_of(entry) {
        Some(value) => shelf
            .learn(key.clone(), value)
            .then_some(In::Registered(key)),
        None if entry.operation != kv::Operation::Put => {
            shelf.forget(&key).then_some(In::Unregistered(key))
        }
        None => None,
    }
}

/// The next change of the accounts; never, while there is no watch
/// (until NATS is back and a new one is made).
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}

/// The longest a starting server reads the stream before it serves.
const CATCH_UP: Duration = Duration::from_secs(120);

/// What the thread knows of the stream and of the other instances.
struct State {
    instance: String,
    /// Instances heard of, and when last.
    seen: HashMap<String, Instant>,
    /// Instances declared gone on the stream.
    gone: HashSet<String>,
    /// The last stream message handed over.
    last_seq: u64,
}

impl State {
    /// One message of the stream, for the loop (`None`: read before, or
    /// not for this version).
    fn receive(&mut self, message: &jetstream::Message) -> Option<In> {
        let seq = message.info().ok()?.stream_sequence;
        if seq <= self.last_seq {
            // Read again after a new consumer was made.
            return None;
        }
        self.last_seq = seq;
        let envelope = serde_json::from_slice::<Envelope>(&message.payload).ok()?;
        if envelope.v != op::VERSION {
            return None;
        }
        if let Op::Gone { instance: dead } = &envelope.op {
            self.gone.insert(dead.clone());
            self.seen.remove(dead);
        } else if envelope.from != self.instance && !self.gone.contains(&envelope.from) {
            self.seen.insert(envelope.from.clone(), Instant::now());
        }
        Some(In::Op {
            seq,
            mine: envelope.from == self.instance,
            from: envelope.from,
            op: envelope.op,
        })
    }
}

/// The longest a claim or a release of a name may take.
const CLAIM_WAIT: Duration = Duration::from_secs(3);

impl State {
    /// What the instances' liveness is now, for a claim to take a dead
    /// instance's name.
    fn dead(&self, started_at: Instant) -> Dead {
        Dead {
            instance: self.instance.clone(),
            gone: self.gone.clone(),
            seen: self.seen.keys().cloned().collect(),
            settled: started_at.elapsed() > SILENT,
        }
    }
}

/// The instances' liveness when a claim starts.
struct Dead {
    instance: String,
    gone: HashSet<String>,
    seen: HashSet<String>,
    /// This instance has run as long as the liveness rule gives: an
    /// instance not heard of since is dead.
    settled: bool,
}

impl Dead {
    /// Whether the instance `other` is dead: declared gone, or not heard
    /// of for as long as the liveness rule gives (counted from this
    /// instance's start, when nothing was heard yet).
    fn is(&self, other: &str) -> bool {
        other != self.instance
            && (self.gone.contains(other) || (self.settled && !self.seen.contains(other)))
    }
}

/// A claim or release finished (see [`spawn_job`]).
enum Done {
    Claimed {
        ask: super::NameAsk,
        ok: bool,
    },
    Released {
        gone: crate::server::core::Release,
        ticket: u64,
        ok: bool,
    },
}

/// Runs one change of the name table beside the thread's loop, which
/// hears of its end through `done`.
fn spawn_job(
    job: Job,
    nicks: kv::Store,
    instance: String,
    dead: Dead,
    done: UnboundedSender<Done>,
) {
    tokio::spawn(async move {
        let finished = match job {
            Job::Claim(ask) => {
                let owner = format!("{instance}:{}", ask.id);
                let ok = tokio::time::timeout(
                    CLAIM_WAIT,
                    claim(&nicks, &ask.name, &owner, |other| dead.is(other)),
                )
                .await
                .unwrap_or(false);
                Done::Claimed { ask, ok }
            }
            Job::Release { gone, ticket } => {
                let ok = release(&nicks, &gone, &instance).await;
                Done::Released { gone, ticket, ok }
            }
        };
        let _ = done.send(finished);
    });
}

/// Asks again for the releases NATS did not answer.
fn retry_releases(
    unreleased: &mut Vec<crate::server::core::Release>,
    jobs: &mut NameJobs<Vec<u8>>,
    start: impl Fn(Job),
) {
    for gone in std::mem::take(unreleased) {
        if let Some(job) = jobs.release(gone) {
            start(job);
        }
    }
}

/// Takes a finished job in: the claim's answer to the loop, a failed
/// release kept to try again, the ops it held to the publisher, and the
/// next job on the same name to `start`.
fn finish(
    done: Done,
    jobs: &mut NameJobs<Vec<u8>>,
    unreleased: &mut Vec<crate::server::core::Release>,
    tell: &impl Fn(In),
    publisher: &UnboundedSender<Vec<u8>>,
    start: impl Fn(Job),
) {
    let mut free = Vec::new();
    let next = match done {
        Done::Claimed { ask, ok } => {
            let name = ask.name.clone();
            tell(In::Claimed { ask, ok });
            jobs.done(&name, None, &mut free)
        }
        Done::Released { gone, ticket, ok } => {
            let next = jobs.done(&gone.name, Some(ticket), &mut free);
            if !ok {
                unreleased.push(gone);
            }
            next
        }
    };
    for op in free {
        let _ = publisher.send(op);
    }
    if let Some(job) = next {
        start(job);
    }
}

/// Makes `name` this owner's (`instance:id`) in the name table, if it is
/// nobody's, already its own, or a dead instance's.
async fn claim(nicks: &kv::Store, name: &str, owner: &str, is_dead: impl Fn(&str) -> bool) -> bool {
    match nicks
        .create(name, owner.to_owned().into_bytes().into())
        .await
    {
        Ok(_) => true,
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let Ok(Some(entry)) = nicks.entry(name).await else {
                return false;
            };
            let held = String::from_utf8_lossy(&entry.value);
            if held == owner {
                return true;
            }
            let holder = held.split(':').next().unwrap_or_default();
            let free = entry.operation != kv::Operation::Put || is_dead(holder);
            free && nicks
                .update(name, owner.to_owned().into_bytes().into(), entry.revision)
                .await
                .is_ok()
        }
        Err(_) => false,
    }
}

/// Frees a name if the table still says it is the user's who gave it up
/// (nobody else took it meanwhile). False when NATS did not answer, so
/// that it is tried again.
async fn release(nicks: &kv::Store, gone: &crate::server::core::Release, instance: &str) -> bool {
    let owner = format!("{instance}:{}", gone.id);
    let done = tokio::time::timeout(CLAIM_WAIT, async {
        let entry = match nicks.entry(&gone.name).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return true,
            Err(_) => return false,
        };
        if entry.operation != kv::Operation::Put || *entry.value != *owner.as_bytes() {
            return true;
        }
        match nicks
            .delete_expect_revision(&gone.name, Some(entry.revision))
            .await
        {
            Ok(()) => true,
            // Changed since it was read: it is someone else's now.
            Err(e) => e.kind() == kv::UpdateErrorKind::WrongLastRevision,
        }
    });
    done.await.unwrap_or(false)
}

/// An ordered consumer of the stream from `start` on.
async fn read_from(
    log: &stream::Stream,
    subject: &str,
    start: u64,
) -> Result<consumer::pull::Ordered, async_nats::Error> {
    let consumer = log
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

fn encode(instance: &str, op: Op) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        v: op::VERSION,
        from: instance.to_owned(),
        op,
    })
    .unwrap_or_default()
}

/// Publishes to the stream in order, each message until the stream
/// acknowledges it: while NATS is away, what the loop sent waits here
/// (a leave made in degraded mode reaches the others when NATS is back).
/// Each message carries a `Nats-Msg-Id`, so a retry after a lost ack is
/// not stored twice.
fn spawn_publisher(js: jetstream::Context, subject: String) -> UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let prefix = nuid_prefix();
        let mut n: u64 = 0;
        // Acks awaited in order, a window of them in flight.
        let mut flight: std::collections::VecDeque<(
            String,
            Vec<u8>,
            jetstream::context::PublishAckFuture,
        )> = Default::default();
        loop {
            let next = if flight.len() < 256 {
                if flight.is_empty() {
                    rx.recv().await
                } else {
                    match rx.try_recv() {
                        Ok(bytes) => Some(bytes),
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                            // Nothing new: settle the oldest ack.
                            settle(&js, &subject, &mut flight).await;
                            continue;
                        }
                        Err(_) => None,
                    }
                }
            } else {
                settle(&js, &subject, &mut flight).await;
                continue;
            };
            let Some(bytes) = next else {
                while !flight.is_empty() {
                    settle(&js, &subject, &mut flight).await;
                }
                return;
            };
            n += 1;
            let id = format!("{prefix}.{n}");
            let ack = publish(&js, &subject, &id, &bytes).await;
            flight.push_back((id, bytes, ack));
        }
    });
    tx
}

/// Publishes until NATS takes the message (not yet its ack).
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    bytes: &[u8],
) -> jetstream::context::PublishAckFuture {
    loop {
        let message = jetstream::message::PublishMessage::build()
            .message_id(id)
            .payload(bytes.to_vec().into());
        match js.send_publish(subject.to_owned(), message).await {
            Ok(ack) => return ack,
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Waits for the oldest ack; when it failed, that message and every one
/// after it are published again (the ids make the stream drop those it
/// already has), so nothing is lost and, but for the lost one, nothing
/// is reordered.
async fn settle(
    js: &jetstream::Context,
    subject: &str,
    flight: &mut std::collections::VecDeque<(
        String,
        Vec<u8>,
        jetstream::context::PublishAckFuture,
    )>,
) {
    let Some((id, bytes, ack)) = flight.pop_front() else {
        return;
    };
    if ack.await.is_ok() {
        return;
    }
    let mut again = vec![(id, bytes)];
    again.extend(flight.drain(..).map(|(id, bytes, _)| (id, bytes)));
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut all_ok = true;
        for (id, bytes) in &again {
            let ack = publish(js, subject, id, bytes).await;
            if ack.await.is_err() {
                all_ok = false;
                break;
            }
        }
        if all_ok {
            return;
        }
    }
}

/// A per-process prefix for message ids.
fn nuid_prefix() -> String {
    super::instance_id()
}
