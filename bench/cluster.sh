#!/usr/bin/env bash
# The cluster's figures (bench/README.md, "Several servers"): starts
# Debian's nats-server with JetStream on random ports of 127.0.0.1 (its
# store in a temporary directory), three `chat server --cluster` on it
# (a cluster name of their own, so that no other cluster on that NATS is
# disturbed), and runs the fan-out with receivers and senders dealt over
# the three (`chat bench fanout --server A,B,C`); then the same fan-out
# against one server alone, without a cluster. The backplane's cost per
# group message is read from NATS's /varz (messages and bytes in and out)
# over two cluster runs, of N and 2N messages per sender: the difference,
# divided by the extra group messages, leaves the set-up (joins, names)
# out. Every process is stopped by its PID.
#
# SERVER_BIN=PATH runs another build of the server (one with --cluster);
# N=... messages per sender (default 2000); OUT=DIR for the page of the
# larger cluster run (default bench/web).
#
# Exit status: 0 when every run delivered everything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
BIN=target/x86_64-unknown-linux-gnu/release/chat
SERVER_BIN=${SERVER_BIN:-$BIN}
N=${N:-2000}
OUT=${OUT:-bench/web}
mkdir -p "$OUT"
export CHAT_DB=${CHAT_DB:-none}
command -v nats-server >/dev/null || {
  echo "cluster.sh: nats-server is not installed (apt-get install nats-server)" >&2
  exit 1
}
"$SERVER_BIN" server --help | grep -q -- --cluster || {
  echo "cluster.sh: $SERVER_BIN has no --cluster; pass SERVER_BIN=PATH of a build with it" >&2
  exit 1
}
STORE=$(mktemp -d)
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; rm -rf "$STORE"' EXIT

# NATS: -p -1 and -m -1 pick free ports; its log says which.
exec {nats_out}< <(exec nats-server -a 127.0.0.1 -p -1 -m -1 -js -sd "$STORE" 2>&1)
PIDS+=($!)
NATS= MONITOR=
while read -r -t 10 line <&"$nats_out"; do
  case $line in
  *"Starting http monitor on "*) MONITOR=${line##*on } ;;
  *"Listening for client connections on "*) NATS=${line##*on } ;;
  esac
  [ -n "$NATS" ] && [ -n "$MONITOR" ] && break
done
[ -n "$NATS" ] || { echo "cluster.sh: nats-server did not say where it listens" >&2; exit 1; }
cat <&"$nats_out" >/dev/null &
MONITOR=${MONITOR#http://}

# start_server VAR [ARGS]: a chat server on port 0, its address in VAR,
# its PID in VAR_PID.
start_server() {
  local var=$1 line fd
  shift
  exec {fd}< <(exec "$SERVER_BIN" server --listen 127.0.0.1:0 --quiet --rate 0 \
    --max-clients 20000 "$@")
  PIDS+=($!)
  printf -v "${var}_PID" '%s' "$!"
  if ! read -r -t 20 line <&"$fd" || [[ $line != "listening on "* ]]; then
    echo "cluster.sh: a server did not say 'listening on ADDR' (it said: ${line:-nothing})" >&2
    exit 1
  fi
  printf -v "$var" '%s' "${line#listening on }"
  cat <&"$fd" >/dev/null &
}

CLUSTER=(--cluster "nats://$NATS" --cluster-name "bench$$")
start_server A "${CLUSTER[@]}"
start_server B "${CLUSTER[@]}"
start_server C "${CLUSTER[@]}"
echo "cluster.sh: nats $NATS (monitor $MONITOR), servers $A $B $C" >&2

# varz KEY: one counter of NATS's /varz.
varz() {
  local body
  exec {http}<>"/dev/tcp/${MONITOR%:*}/${MONITOR##*:}"
  printf 'GET /varz HTTP/1.0\r\nHost: %s\r\n\r\n' "$MONITOR" >&"$http"
  body=$(cat <&"$http")
  exec {http}<&-
  sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" <<<"$body" | head -1
}
counters() { echo "$(varz in_msgs) $(varz in_bytes) $(varz out_msgs) $(varz out_bytes)"; }

field() {
  sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"
}
failed=0
bench() {
  local var=$1 json status=0
  shift
  json=$("$BIN" bench fanout -r 99 -S 3 -p 64 --timeout 30s --json "$@") || status=$?
  if [ "$status" -ne 0 ]; then
    echo "cluster.sh: chat bench fanout $* failed (exit $status)" >&2
    failed=1
  fi
  printf -v "$var" '%s' "${json:-"{}"}"
}

read -r m0 b0 o0 p0 <<<"$(counters)"
bench one_n -n "$N" -s "$A,$B,$C"
read -r m1 b1 o1 p1 <<<"$(counters)"
bench two_n -n $((2 * N)) -s "$A,$B,$C" --report "$OUT/cluster.html"
read -r m2 b2 o2 p2 <<<"$(counters)"
stop_all
start_server ALONE
bench alone -n $((2 * N)) -s "$ALONE" --server-pid "$ALONE_PID"
stop_all

extra=$((3 * N))
# The second run's counters minus the first's, over the extra messages.
d_in_msgs=$(awk -v a=$((m1 - m0)) -v b=$((m2 - m1)) -v n=$extra 'BEGIN { printf "%.2f", (b - a) / n }')
d_in_bytes=$(awk -v a=$((b1 - b0)) -v b=$((b2 - b1)) -v n=$extra 'BEGIN { printf "%.0f", (b - a) / n }')
d_out_msgs=$(awk -v a=$((o1 - o0)) -v b=$((o2 - o1)) -v n=$extra 'BEGIN { printf "%.2f", (b - a) / n }')
d_out_bytes=$(awk -v a=$((p1 - p0)) -v b=$((p2 - p1)) -v n=$extra 'BEGIN { printf "%.0f", (b - a) / n }')
row() { printf '%-44s %-18s %s\n' "$@" | sed 's/ *$//'; }
mps() { awk -v x="$1" 'BEGIN { printf "%.3f M/s", x / 1e6 }'; }
row "" "3 servers (NATS)" "1 server alone"
row "fan-out R=99 S=3, deliveries/s" "$(mps "$(field "$two_n" deliveries_per_s)")" \
  "$(mps "$(field "$alone" deliveries_per_s)")"
row "  latency p50" "$(field "$two_n" latency_p50_ms) ms" "$(field "$alone" latency_p50_ms) ms"
row "  latency p99" "$(field "$two_n" latency_p99_ms) ms" "$(field "$alone" latency_p99_ms) ms"
row "  missing / duplicated or reordered" \
  "$(field "$two_n" missing) / $(field "$two_n" out_of_order)" \
  "$(field "$alone" missing) / $(field "$alone" out_of_order)"
row "backplane per group message: NATS msgs in" "$d_in_msgs"
row "  bytes in" "$d_in_bytes B"
row "  NATS msgs out" "$d_out_msgs"
row "  bytes out" "$d_out_bytes B"
exit "$failed"
