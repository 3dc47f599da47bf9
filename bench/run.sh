#!/usr/bin/env bash
# The standard benchmark set (bench/README.md): builds the release binary,
# starts a release server on a free port, runs the three fan-out runs, then
# the idle run against a fresh server (so that memory the fan-out runs left
# in the server's heap cannot hide what idle connections cost), then the two
# arrivals runs, each on a fresh server, and prints one table with our
# targets and the peers' figures beside ours.
#
# Exit status: 0 when every run delivered everything, 1 when any run lost,
# duplicated or reordered a message or failed, whatever the speeds.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
BIN=target/x86_64-unknown-linux-gnu/release/chat
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
trap stop_server EXIT

# Starts `chat server` on port 0 and reads its `listening on ADDR` line.
# Flood control is off (--rate 0): the senders are meant to flood.
start_server() {
  local line
  exec {server_out}< <(exec "$BIN" server --listen 127.0.0.1:0 --quiet --rate 0 \
    --max-clients 20000)
  SERVER_PID=$!
  if ! read -r -t 10 line <&"$server_out" || [[ $line != "listening on "* ]]; then
    echo "run.sh: the server did not say 'listening on ADDR' (it said: ${line:-nothing})" >&2
    exit 1
  fi
  SERVER_ADDR=${line#listening on }
}

failed=0
# bench VAR ARGS: runs `chat bench ARGS --json` and keeps its one JSON line
# in VAR (the bench prints it even when it reports loss with exit status 1).
bench() {
  local var=$1 json status=0
  shift
  json=$("$BIN" bench "$@" --server "$SERVER_ADDR" --server-pid "$SERVER_PID" --json) || status=$?
  if [ "$status" -ne 0 ]; then
    echo "run.sh: chat bench $* failed (exit $status)" >&2
    failed=1
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
echo "run.sh: fresh server $SERVER_ADDR (PID $SERVER_PID); arrivals runs..." >&2
bench arrive arrivals -c 1000
stop_server
start_server
bench storm arrivals -c 200 --rate 100 --present 1000
stop_server

# One row per figure: what, ours, target, peers.
row() { printf '%-34s %-22s %-14s %s\n' "$@" | sed 's/ *$//'; }
mps() { awk -v x="$1" 'BEGIN { printf "%.2f M/s", x / 1e6 }'; }
per_s() { awk -v x="$1" 'BEGIN { printf "%.0f/s", x }'; }
loss() {
  local m o c
  m=$(field "$1" missing) o=$(field "$1" out_of_order) c=$(field "$1" corrupt)
  if [ "${m:-x}${o:-x}${c:-x}" = 000 ]; then echo "none"; else echo "LOSS: $m missing, $o dup/reordered, $c corrupt"; fi
}

# joins: the arrivals runs' loss.
joins() {
  local j g o c
  j=$(field "$1" joins_missing) g=$(field "$1" group_missing) o=$(field "$1" group_out_of_order) c=$(field "$1" corrupt)
  if [ "${j:-x}${g:-x}${o:-x}${c:-x}" = 0000 ]; then echo "none"; else echo "LOSS: $j joins, $g group missing, $o dup/reordered, $c corrupt"; fi
}

echo
row "benchmark" "ours" "target" "peers (same machine class)"
row "fan-out R=100 S=4 n=20000 p=64" "$(mps "$(field "$r100" deliveries_per_s)")" ">= 6.8 M/s" "nats 3.4 M/s, redis 3.0 M/s"
row "  messages in" "$(per_s "$(field "$r100" messages_in_per_s)")" "" ""
row "  loss" "$(loss "$r100")" "none" ""
row "  CPU per delivery bench/server" "$(field "$r100" bench_cpu_ns_per_delivery) / $(field "$r100" server_cpu_ns_per_delivery) ns" "" ""
row "fan-out R=1000 S=4 n=2000 p=64" "$(mps "$(field "$r1000" deliveries_per_s)")" ">= 6.0 M/s" "nats 3.0 M/s, redis 2.1 M/s"
row "  messages in" "$(per_s "$(field "$r1000" messages_in_per_s)")" "" ""
row "  loss" "$(loss "$r1000")" "none" ""
row "  CPU per delivery bench/server" "$(field "$r1000" bench_cpu_ns_per_delivery) / $(field "$r1000" server_cpu_ns_per_delivery) ns" "" ""
row "paced 500 msg/s R=100 S=4 n=1000" "" "" ""
row "  latency p50 / p99" "$(field "$paced" latency_p50_ms) / $(field "$paced" latency_p99_ms) ms" "p99 < 1 ms" "redis 0.66/1.6 ms, nats 0.90/2.5 ms"
row "  latency p99.9 / max" "$(field "$paced" latency_p999_ms) / $(field "$paced" latency_max_ms) ms" "" ""
row "  loss" "$(loss "$paced")" "none" ""
row "idle 10000 connections" "" "" ""
row "  server RSS per connection" "$(field "$idle" rss_per_conn_bytes) bytes" "<= 512 bytes" "mosquitto 0.75 KB"
row "  server RSS after / peak" "$(field "$idle" rss_after_kib) / $(field "$idle" rss_peak_kib) KiB" "" ""
row "  ping round trip p50 / max" "$(field "$idle" ping_p50_ms) / $(field "$idle" ping_max_ms) ms" "" ""
row "arrivals 1000, one after another" "" "" ""
row "  server / bench CPU per arrival" "$(field "$arrive" server_cpu_ms_per_arrival) / $(field "$arrive" bench_cpu_ms_per_arrival) ms" "<= 1 ms (10 000)" ""
row "  arrivals/s held" "$(field "$arrive" arrivals_per_s)/s" "" ""
row "  loss" "$(joins "$arrive")" "none" ""
row "100 arrivals/s into 1000 present" "" "" ""
row "  group p99 before / during" "$(field "$storm" quiet_p99_ms) / $(field "$storm" storm_p99_ms) ms" "during <= 2x" ""
row "  loss" "$(joins "$storm")" "none" ""
exit "$failed"
