#!/usr/bin/env bash
# The web door's figures (bench/README.md, "The web door"): builds the
# release binary, starts a release server with --listen-http on free ports
# of 127.0.0.1, and in that one server runs the R=100 fan-out over the
# JSON-lines door and over the WebSocket (`--proto ws`), alternately, ROUNDS
# times (3 by default); then holds 10 000 idle connections over each door,
# each on a fresh server (so that memory an earlier run left in the heap
# cannot hide what idle connections cost). Prints one table, and writes the
# last round's pages (`--report`) and their charts as SVG files to
# bench/web/ (OUT=DIR writes them elsewhere).
#
# Runs are short (a few seconds each): the machine may be shared.
# SERVER_BIN=PATH measures another build of the server.
#
# Exit status: 0 when every run delivered everything, 1 when any run lost,
# duplicated or reordered a message or failed, whatever the speeds.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
BIN=target/x86_64-unknown-linux-gnu/release/chat
SERVER_BIN=${SERVER_BIN:-$BIN}
OUT=${OUT:-bench/web}
ROUNDS=${ROUNDS:-3}
export CHAT_DB=${CHAT_DB:-none}
mkdir -p "$OUT"
SERVER_PID=

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    exec {server_out}<&-
    SERVER_PID=
  fi
}
trap stop_server EXIT

# Starts `chat server` with a web door on port 0 and reads its two
# `listening ...` lines: JSON_ADDR and HTTP_ADDR. Flood control is off
# (--rate 0): the senders are meant to flood.
start_server() {
  local line
  exec {server_out}< <(exec "$SERVER_BIN" server --listen 127.0.0.1:0 \
    --listen-http 127.0.0.1:0 --quiet --rate 0 --max-clients 20000)
  SERVER_PID=$!
  if ! read -r -t 10 line <&"$server_out" || [[ $line != "listening on "* ]]; then
    echo "web.sh: the server did not say 'listening on ADDR' (it said: ${line:-nothing})" >&2
    exit 1
  fi
  JSON_ADDR=${line#listening on }
  if ! read -r -t 10 line <&"$server_out" || [[ $line != "listening for HTTP on "* ]]; then
    echo "web.sh: the server did not say 'listening for HTTP on ADDR'" >&2
    exit 1
  fi
  HTTP_ADDR=${line#listening for HTTP on }
}

failed=0
# bench VAR ADDR PAGE ARGS: runs `chat bench ARGS --json --report PAGE`
# against ADDR and keeps its one JSON line in VAR.
bench() {
  local var=$1 addr=$2 page=$3 json status=0
  shift 3
  json=$("$BIN" bench "$@" --server "$addr" --server-pid "$SERVER_PID" --json \
    --report "$OUT/$page.html") || status=$?
  if [ "$status" -ne 0 ]; then
    echo "web.sh: chat bench $* failed (exit $status)" >&2
    failed=1
  fi
  printf -v "$var" '%s' "${json:-"{}"}"
}

# field JSON KEY: one value of the flat report.
field() {
  sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"
}

# The R=100 fan-out, both doors, in turns on one server.
FANOUT=(fanout -r 100 -S 4 -n 10000 -p 64)
start_server
echo "web.sh: server $JSON_ADDR, web door $HTTP_ADDR (PID $SERVER_PID); fan-out runs..." >&2
json_rates=() ws_rates=()
for round in $(seq "$ROUNDS"); do
  bench json_run "$JSON_ADDR" fanout-json "${FANOUT[@]}"
  bench ws_run "$HTTP_ADDR" fanout-ws "${FANOUT[@]}" --proto ws
  json_rates+=("$(field "$json_run" deliveries_per_s)")
  ws_rates+=("$(field "$ws_run" deliveries_per_s)")
  echo "web.sh: round $round: json $(field "$json_run" deliveries_per_s)/s," \
    "ws $(field "$ws_run" deliveries_per_s)/s" >&2
done
stop_server
start_server
echo "web.sh: fresh server (PID $SERVER_PID); 10 000 idle WebSocket connections..." >&2
bench ws_idle "$HTTP_ADDR" idle-ws idle -c 10000 --proto ws
stop_server
start_server
echo "web.sh: fresh server (PID $SERVER_PID); 10 000 idle JSON-lines connections..." >&2
bench json_idle "$JSON_ADDR" idle-json idle -c 10000
stop_server

# The charts, cut out of the pages (one <svg> a line) for README.md.
for page in fanout-json fanout-ws idle-json idle-ws; do
  n=0
  while IFS= read -r svg; do
    n=$((n + 1))
    printf '%s\n' "$svg" >"$OUT/$page-$n.svg"
  done < <(grep '^<svg' "$OUT/$page.html")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
json_rate=$(median "${json_rates[@]}")
ws_rate=$(median "${ws_rates[@]}")
row() { printf '%-40s %-16s %-16s %s\n' "$@" | sed 's/ *$//'; }
ms() { [ -n "$1" ] && awk -v x="$1" 'BEGIN { printf "%.2f ms", x }'; }
row "" "JSON lines" "WebSocket" "ws / json"
row "fan-out R=100 deliveries/s (median of $ROUNDS)" \
  "$(awk -v x="$json_rate" 'BEGIN { printf "%.2f M/s", x / 1e6 }')" \
  "$(awk -v x="$ws_rate" 'BEGIN { printf "%.2f M/s", x / 1e6 }')" \
  "$(awk -v a="$ws_rate" -v b="$json_rate" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b }')"
row "  latency p50 (last round)" "$(ms "$(field "$json_run" latency_p50_ms)")" \
  "$(ms "$(field "$ws_run" latency_p50_ms)")"
row "  latency p99 (last round)" "$(ms "$(field "$json_run" latency_p99_ms)")" \
  "$(ms "$(field "$ws_run" latency_p99_ms)")"
row "  server CPU per delivery (last round)" \
  "$(field "$json_run" server_cpu_ns_per_delivery) ns" \
  "$(field "$ws_run" server_cpu_ns_per_delivery) ns"
row "idle: server RSS per connection (10 000)" \
  "$(field "$json_idle" rss_per_conn_bytes) B" "$(field "$ws_idle" rss_per_conn_bytes) B" \
  "$(awk -v a="$(field "$ws_idle" rss_per_conn_bytes)" -v b="$(field "$json_idle" rss_per_conn_bytes)" \
    'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b }')"
row "idle: ping round trip p50" "$(ms "$(field "$json_idle" ping_p50_ms)")" \
  "$(ms "$(field "$ws_idle" ping_p50_ms)")"
echo "web.sh: pages and charts in $OUT/" >&2
exit "$failed"
