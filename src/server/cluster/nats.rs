//! The backplane's thread: the NATS client (async-nats) on a tokio
//! current-thread runtime of its own, so the event loop stays as it is.
//! It publishes what the loop hands it, in order, and hands back what the
//! stream delivers, in stream order, with a wake of the loop's `Waker`.
//!
//! Liveness lives here too: every instance says `hb` on core NATS each
//! [`BEAT`]; an instance heard of (by a heartbeat or an op) and then
//! silent for [`SILENT`] is published as `gone` by every survivor that
//! notices (applying `gone` twice does nothing).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use mio::Waker;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::op::{self, Envelope, Op, Private};
use super::{Config, In, Out};

/// How often an instance says it is alive.
pub const BEAT: Duration = Duration::from_secs(1);
/// How long a silent instance is taken for alive.
pub const SILENT: Duration = Duration::from_secs(5);

/// The names on NATS of one cluster (`--cluster-name`).
struct Names {
    log: String,
    stream: String,
    hb: String,
    pm: String,
}

impl Names {
    fn new(cluster: &str) -> Names {
        Names {
            log: format!("{cluster}.log"),
            // Stream names may not hold `.`.
            stream: format!("{}_log", cluster.replace('.', "_")),
            hb: format!("{cluster}.hb"),
            pm: format!("{cluster}.pm"),
        }
    }
}

/// What the loop learns once, before it serves anyone.
pub struct Started {
    pub id_base: u64,
}

async fn connect_options(config: &Config) -> Result<async_nats::ConnectOptions, String> {
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
pub async fn run(
    config: Config,
    instance: String,
    started: Sender<Result<Started, String>>,
    to_loop: Sender<In>,
    waker: Arc<Waker>,
    mut from_loop: UnboundedReceiver<Out>,
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
        let log = js
            .get_or_create_stream(stream::Config {
                name: names.stream.clone(),
                subjects: vec![names.log.clone()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                format!(
                    "cannot open the stream {} on NATS: {e}; is JetStream on (nats-server -js)?",
                    names.stream
                )
            })?;
        let hello = encode(&instance, Op::Hello);
        let ack = js
            .publish(names.log.clone(), hello.into())
            .await
            .map_err(|e| format!("cannot publish to {}: {e}", names.log))?
            .await
            .map_err(|e| format!("cannot publish to {}: {e}", names.log))?;
        let consumer = log
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: names.log.clone(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot read the stream {}: {e}", names.stream))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| format!("cannot read the stream {}: {e}", names.stream))?;
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
            names,
            messages,
            hb,
            pm,
            op::id_base(ack.sequence),
        ))
    };
    let (client, js, names, mut messages, mut hb, mut pm, id_base) = match setup.await {
        Ok(parts) => parts,
        Err(why) => {
            let _ = started.send(Err(why));
            return;
        }
    };
    if started.send(Ok(Started { id_base })).is_err() {
        return;
    }
    let tell = |what: In| {
        if to_loop.send(what).is_ok() {
            let _ = waker.wake();
        }
    };
    let publisher = spawn_publisher(js.clone(), names.log.clone());
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut gone: std::collections::HashSet<String> = Default::default();
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = true;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                let Ok(message) = message else { continue };
                let Ok(info) = message.info() else { continue };
                let seq = info.stream_sequence;
                let Ok(envelope) = serde_json::from_slice::<Envelope>(&message.payload) else {
                    continue;
                };
                if envelope.v != op::VERSION {
                    continue;
                }
                if let Op::Gone { instance: dead } = &envelope.op {
                    gone.insert(dead.clone());
                    seen.remove(dead);
                } else if envelope.from != instance && !gone.contains(&envelope.from) {
                    seen.insert(envelope.from.clone(), Instant::now());
                }
                tell(In::Op { seq, mine: envelope.from == instance, from: envelope.from, op: envelope.op });
            }
            beat = hb.next() => {
                let Some(beat) = beat else { break };
                if let Ok(from) = std::str::from_utf8(&beat.payload)
                    && from != instance
                    && !gone.contains(from)
                {
                    seen.insert(from.to_owned(), Instant::now());
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
                    None => break,
                    Some(Out::Op(op)) => {
                        let _ = publisher.send(encode(&instance, op));
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
                    tell(In::Up(up));
                }
            }
            _ = tick.tick() => {
                if up {
                    let _ = client.publish(names.hb.clone(), instance.clone().into_bytes().into()).await;
                    let now = Instant::now();
                    let silent: Vec<String> = seen
                        .iter()
                        .filter(|(_, at)| now.duration_since(**at) > SILENT)
                        .map(|(who, _)| who.clone())
                        .collect();
                    for who in silent {
                        seen.remove(&who);
                        let _ = publisher.send(encode(&instance, Op::Gone { instance: who }));
                    }
                }
            }
        }
    }
    let _ = client.flush().await;
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
