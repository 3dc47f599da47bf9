#!/usr/bin/env bash
# The standard benchmark set (bench/README.md): builds the release binary,
# starts a release server on a free port, runs the three fan-out runs, then
# the idle run against a fresh server (so that memory the fan-out runs left
# in the server's heap cannot hide what idle connections cost), the same
# with clients that do not read (--unread), then the two arrivals runs,
# each on a fresh server. The R=100 and paced fan-out runs and the idle run
# are made again over TLS (`--listen-tls` with a certificate from `chat
# cert`, clients with `--tls --ca`). The same three fan-out runs go to
# Debian's nats-server and redis-server when they are installed (apt-get
# install nats-server redis-server), each started on a free port of
# 127.0.0.1 and stopped by its PID. One table: chat, nats, redis, target.
#
# SERVER_BIN=PATH runs another build of the server (an older commit's, for
# a before/after table) under the same bench. CHAT_DB=PATH measures the
# server with its history kept in PATH (by default it keeps none).
#
# Exit status: 0 when every run delivered everything, 1 when any run lost,
# duplicated or reordered a message or failed, whatever the speeds.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
BIN=target/x86_64-unknown-linux-gnu/release/chat
SERVER_BIN=${SERVER_BIN:-$BIN}
# The servers keep no history unless CHAT_DB names a database to measure
# with: a benchmark must not fill the user's own history, nor fail because
# the user's server holds it.
export CHAT_DB=${CHAT_DB:-none}
SERVER_PID=
SERVER_ADDR=

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    exec {server_out}<&-
    SERVER_PID=
  fi
}
PEER_PID=
PEER_ADDR=
stop_peer() {
  if [ -n "$PEER_PID" ]; then
    kill "$PEER_PID" 2>/dev/null || true
    wait "$PEER_PID" 2>/dev/null || true
    exec {peer_out}<&-
    PEER_PID=
  fi
}
CERT_DIR=$(mktemp -d)
trap 'stop_server; stop_peer; rm -rf "$CERT_DIR"' EXIT
"$BIN" cert --host 127.0.0.1 --cert "$CERT_DIR/cert.pem" --key "$CERT_DIR/key.pem" >/dev/null

# A port of 127.0.0.1 nothing listens on (redis-server cannot pick one).
free_port() {
  local port
  for port in $(shuf -i 20000-60000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "run.sh: found no free port" >&2
  exit 1
}

# start_peer nats|redis: starts it on a free port of 127.0.0.1, waits for
# its "ready" line, and drains its log in the background. Returns 1 when
# it is not installed.
start_peer() {
  local line port ready
  case $1 in
  nats)
    command -v nats-server >/dev/null || return 1
    exec {peer_out}< <(exec nats-server -a 127.0.0.1 -p -1 2>&1)
    ready="Listening for client connections on " ;;
  redis)
    command -v redis-server >/dev/null || return 1
    port=$(free_port)
    exec {peer_out}< <(exec redis-server --bind 127.0.0.1 --port "$port" --save '' \
      --appendonly no --daemonize no 2>&1)
    PEER_ADDR=127.0.0.1:$port
    ready="Ready to accept connections" ;;
  esac
  PEER_PID=$!
  while read -r -t 10 line <&"$peer_out"; do
    if [[ $line == *"$ready"* ]]; then
      [ "$1" = nats ] && PEER_ADDR=${line##*"$ready"}
      cat <&"$peer_out" >/dev/null &
      return 0
    fi
  done
  echo "run.sh: $1 did not say it was ready" >&2
  exit 1
}

# Starts `chat server` on port 0 and reads its `listening on ADDR` line;
# with `tls`, it listens for TLS too (SERVER_TLS_ADDR).
# Flood control is off (--rate 0): the senders are meant to flood.
start_server() {
  local line tls=()
  [ "${1:-}" = tls ] && tls=(--listen-tls 127.0.0.1:0 --tls-cert "$CERT_DIR/cert.pem" \
    --tls-key "$CERT_DIR/key.pem")
  exec {server_out}< <(exec "$SERVER_BIN" server --listen 127.0.0.1:0 --quiet --rate 0 \
    --max-clients 20000 "${tls[@]}")
  SERVER_PID=$!
  if ! read -r -t 10 line <&"$server_out" || [[ $line != "listening on "* ]]; then
    echo "run.sh: the server did not say 'listening on ADDR' (it said: ${line:-nothing})" >&2
    exit 1
  fi
  SERVER_ADDR=${line#listening on }
  if [ ${#tls[@]} -gt 0 ]; then
    if ! read -r -t 10 line <&"$server_out" || [[ $line != "listening for TLS on "* ]]; then
      echo "run.sh: the server did not say 'listening for TLS on ADDR'" >&2
      exit 1
    fi
    SERVER_TLS_ADDR=${line#listening for TLS on }
  fi
}

failed=0
# bench VAR ARGS: runs `chat bench ARGS --json` and keeps its one JSON line
# in VAR (the bench prints it even when it reports loss with exit status 1).
bench() {
  local var=$1 json status=0
  shift
  json=$("$BIN" bench "$@" --server "${TARGET_ADDR:-$SERVER_ADDR}" \
    --server-pid "${TARGET_PID:-$SERVER_PID}" --json) || status=$?
  if [ "$status" -ne 0 ]; then
    echo "run.sh: chat bench $* failed (exit $status)" >&2
    # A peer's loss is shown in the table; the verdict is chat's.
    [ -n "${TARGET_PID:-}" ] || failed=1
  fi
  printf -v "$var" '%s' "${json:-"{}"}"
}

# field JSON KEY: one value of the flat report.
field() {
  sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"
}

start_server
echo "run.sh: server $SERVER_ADDR (PID $SERVER_PID); fan-out runs..." >&2
bench r100 fanout -r 100 -S 4 -n 20000 -p 64
bench r1000 fanout -r 1000 -S 4 -n 2000 -p 64
bench paced fanout -r 100 -S 4 -n 1000 -p 64 --rate 500
stop_server
start_server
echo "run.sh: fresh server $SERVER_ADDR (PID $SERVER_PID); idle run..." >&2
bench idle idle -c 10000
stop_server
start_server
echo "run.sh: fresh server $SERVER_ADDR (PID $SERVER_PID); idle run, clients not reading..." >&2
bench unread idle -c 10000 --unread
stop_server
# The peers: the same fan-out runs, nats_r100, redis_paced and so on.
nats_r100={} nats_r1000={} nats_paced={} redis_r100={} redis_r1000={} redis_paced={}
for peer in nats redis; do
  if ! start_peer "$peer"; then
    echo "run.sh: $peer-server is not installed (apt-get install $peer-server); its column stays empty" >&2
    continue
  fi
  echo "run.sh: $peer $PEER_ADDR (PID $PEER_PID); fan-out runs..." >&2
  TARGET_ADDR=$PEER_ADDR TARGET_PID=$PEER_PID bench "${peer}_r100" fanout --proto "$peer" -r 100 -S 4 -n 20000 -p 64
  TARGET_ADDR=$PEER_ADDR TARGET_PID=$PEER_PID bench "${peer}_r1000" fanout --proto "$peer" -r 1000 -S 4 -n 2000 -p 64
  TARGET_ADDR=$PEER_ADDR TARGET_PID=$PEER_PID bench "${peer}_paced" fanout --proto "$peer" -r 100 -S 4 -n 1000 -p 64 --rate 500
  stop_peer
done
TLS=(--tls --ca "$CERT_DIR/cert.pem")
start_server tls
echo "run.sh: fresh server, TLS on $SERVER_TLS_ADDR (PID $SERVER_PID); fan-out runs over TLS..." >&2
TARGET_ADDR=$SERVER_TLS_ADDR bench tls_r100 fanout -r 100 -S 4 -n 20000 -p 64 "${TLS[@]}"
TARGET_ADDR=$SERVER_TLS_ADDR bench tls_paced fanout -r 100 -S 4 -n 1000 -p 64 --rate 500 "${TLS[@]}"
stop_server
start_server tls
echo "run.sh: fresh server, TLS on $SERVER_TLS_ADDR (PID $SERVER_PID); idle run over TLS..." >&2
TARGET_ADDR=$SERVER_TLS_ADDR bench tls_idle idle -c 10000 "${TLS[@]}"
stop_server
start_server
echo "run.sh: fresh server $SERVER_ADDR (PID $SERVER_PID); arrivals runs..." >&2
bench arrive arrivals -c 1000
stop_server
start_server
bench storm arrivals -c 200 --rate 100 --present 1000
stop_server

# One row per figure: what, chat, nats, redis, target.
row() { printf '%-34s %-20s %-20s %-20s %s\n' "$@" | sed 's/ *$//'; }
mps() { [ -n "$1" ] && awk -v x="$1" 'BEGIN { printf "%.2f M/s", x / 1e6 }'; }
per_s() { [ -n "$1" ] && awk -v x="$1" 'BEGIN { printf "%.0f/s", x }'; }
loss() {
  local m o c
  [ "$1" = "{}" ] && return
  m=$(field "$1" missing) o=$(field "$1" out_of_order) c=$(field "$1" corrupt)
  if [ "${m:-x}${o:-x}${c:-x}" = 000 ]; then echo "none"; else echo "LOSS: $m/$o/$c"; fi
}
# fig RUN ROW...: one fan-out row for chat, nats and redis; ROW is a
# function of a run's JSON.
fig() {
  local label=$1 run=$2 target=$3 fn=$4 nats redis
  nats=${run/#/nats_} redis=${run/#/redis_}
  row "$label" "$($fn "${!run}")" "$($fn "${!nats}")" "$($fn "${!redis}")" "$target"
}
dps() { mps "$(field "$1" deliveries_per_s)"; }
in_s() { per_s "$(field "$1" messages_in_per_s)"; }
cpu() { [ "$1" = "{}" ] || echo "$(field "$1" bench_cpu_ns_per_delivery) / $(field "$1" server_cpu_ns_per_delivery) ns"; }
p50_99() { [ "$1" = "{}" ] || echo "$(field "$1" latency_p50_ms) / $(field "$1" latency_p99_ms) ms"; }
p999_max() { [ "$1" = "{}" ] || echo "$(field "$1" latency_p999_ms) / $(field "$1" latency_max_ms) ms"; }

# joins: the arrivals runs' loss.
joins() {
  local j g o c
  j=$(field "$1" joins_missing) g=$(field "$1" group_missing) o=$(field "$1" group_out_of_order) c=$(field "$1" corrupt)
  if [ "${j:-x}${g:-x}${o:-x}${c:-x}" = 0000 ]; then echo "none"; else echo "LOSS: $j joins, $g group missing, $o dup/reordered, $c corrupt"; fi
}

echo
row "benchmark" "chat" "nats" "redis" "target"
fig "fan-out R=100 S=4 n=20000 p=64" r100 ">= 6.8 M/s" dps
fig "  messages in" r100 "" in_s
fig "  loss (missing/dup/corrupt)" r100 "none" loss
fig "  CPU per delivery bench/server" r100 "" cpu
fig "fan-out R=1000 S=4 n=2000 p=64" r1000 ">= 6.0 M/s" dps
fig "  messages in" r1000 "" in_s
fig "  loss (missing/dup/corrupt)" r1000 "none" loss
fig "  CPU per delivery bench/server" r1000 "" cpu
row "paced 500 msg/s R=100 S=4 n=1000" "" "" "" ""
fig "  latency p50 / p99" paced "p99 < 1 ms" p50_99
fig "  latency p99.9 / max" paced "" p999_max
fig "  loss (missing/dup/corrupt)" paced "none" loss
row "idle 10000 connections" "" "" "" ""
row "  server RSS per connection" "$(field "$idle" rss_per_conn_bytes) bytes" "" "" "<= 512 bytes (mosquitto 0.75 KB)"
row "  server RSS after / peak" "$(field "$idle" rss_after_kib) / $(field "$idle" rss_peak_kib) KiB" "" "" ""
row "  ping round trip p50 / max" "$(field "$idle" ping_p50_ms) / $(field "$idle" ping_max_ms) ms" "" "" ""
row "  same, clients not reading" "$(field "$unread" rss_per_conn_bytes) bytes" "" "" "<= 512 bytes"
row "over TLS (rustls, ring)" "" "" "" ""
row "  fan-out R=100 S=4 n=20000 p=64" "$(dps "$tls_r100")" "" "" ">= 50% of plaintext"
row "  loss (missing/dup/corrupt)" "$(loss "$tls_r100")" "" "" "none"
row "  paced latency p50 / p99" "$(p50_99 "$tls_paced")" "" "" "p99 within 1 ms of plaintext"
row "  idle RSS per connection" "$(field "$tls_idle" rss_per_conn_bytes) bytes" "" "" ""
row "arrivals 1000, one after another" "" "" "" ""
row "  server / bench CPU per arrival" "$(field "$arrive" server_cpu_ms_per_arrival) / $(field "$arrive" bench_cpu_ms_per_arrival) ms" "" "" "<= 1 ms (10 000)"
row "  arrivals/s held" "$(field "$arrive" arrivals_per_s)/s" "" "" ""
row "  loss" "$(joins "$arrive")" "" "" "none"
row "100 arrivals/s into 1000 present" "" "" "" ""
row "  group p99 before / during" "$(field "$storm" quiet_p99_ms) / $(field "$storm" storm_p99_ms) ms" "" "" "during <= 2x"
row "  loss" "$(joins "$storm")" "" "" "none"
exit "$failed"
