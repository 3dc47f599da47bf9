#!/usr/bin/env bash
# bench/compare.sh OLD_BIN NEW_BIN: a before/after table of two builds of
# the server, measured by the same bench (this tree's) in the same session.
#
# Each round runs, against each server in turn (old, new, alternating, so
# that a change in the machine's load falls on both): fan-out R=100 and
# R=1000 (server CPU per delivery, deliveries/s), paced 500 msg/s R=100
# (latency p50 / p99), on one server; then idle 10 000 connections, and
# idle 10 000 with --unread (all but one stop reading after their welcome),
# each on a fresh server (bytes of server RSS per connection). The same
# fan-out and paced runs go once to nats-server and redis-server when they
# are installed (PEERS=0 leaves them out). One markdown table: every run's
# value (sorted) and, in bold, the median.
#
# ROUNDS=N (default 3) sets the rounds; CONNS=N (default 10000) the idle
# connections. The servers keep no history (CHAT_DB=none). A build from an
# older commit, for OLD_BIN:
#   git worktree add /tmp/before COMMIT && (cd /tmp/before && cargo build --release)
#   bench/compare.sh /tmp/before/target/x86_64-unknown-linux-gnu/release/chat \
#     target/x86_64-unknown-linux-gnu/release/chat
#
# Exit status: 0 when every run of either server delivered everything, 1 when
# any lost, duplicated or reordered a message or failed, 2 on bad usage.
set -euo pipefail
if [ $# -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
  echo "usage: bench/compare.sh OLD_BIN NEW_BIN (two executable chat binaries)" >&2
  exit 2
fi
OLD=$(realpath "$1") NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/x86_64-unknown-linux-gnu/release/chat
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-10000}
PEERS=${PEERS:-1}
export CHAT_DB=none

PID=
ADDR=
stop() {
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    exec {out}<&-
    PID=
  fi
}
trap stop EXIT

# start SERVER_BIN: a server on a free port of 127.0.0.1, flood control off.
start() {
  local line
  exec {out}< <(exec "$1" server --listen 127.0.0.1:0 --quiet --rate 0 --max-clients 20000)
  PID=$!
  if ! read -r -t 10 line <&"$out" || [[ $line != "listening on "* ]]; then
    echo "compare.sh: $1 did not say 'listening on ADDR' (it said: ${line:-nothing})" >&2
    exit 1
  fi
  ADDR=${line#listening on }
}

# start_peer nats|redis: as bench/run.sh does; returns 1 if not installed.
start_peer() {
  local line ready port
  case $1 in
  nats)
    command -v nats-server >/dev/null || return 1
    exec {out}< <(exec nats-server -a 127.0.0.1 -p -1 2>&1)
    ready="Listening for client connections on " ;;
  redis)
    command -v redis-server >/dev/null || return 1
    port=$(shuf -i 20000-60000 -n 1)
    exec {out}< <(exec redis-server --bind 127.0.0.1 --port "$port" --save '' \
      --appendonly no --daemonize no 2>&1)
    ADDR=127.0.0.1:$port
    ready="Ready to accept connections" ;;
  esac
  PID=$!
  while read -r -t 10 line <&"$out"; do
    if [[ $line == *"$ready"* ]]; then
      [ "$1" = nats ] && ADDR=${line##*"$ready"}
      cat <&"$out" >/dev/null &
      return 0
    fi
  done
  echo "compare.sh: $1 did not say it was ready" >&2
  exit 1
}

failed=0
# run WHO NAME ARGS: one `chat bench ARGS --json` against the running
# server; its JSON line goes to $results/WHO.NAME, one line per round.
results=$(mktemp -d)
trap 'stop; rm -rf "$results"' EXIT
run() {
  local who=$1 name=$2 json status=0
  shift 2
  json=$("$BIN" bench "$@" --server "$ADDR" --server-pid "$PID" --json) || status=$?
  if [ "$status" -ne 0 ]; then
    echo "compare.sh: $who: chat bench $* failed (exit $status)" >&2
    # A peer's loss shows in its column; the verdict is chat's.
    case $who in old | new) failed=1 ;; esac
  fi
  echo "${json:-"{}"}" >>"$results/$who.$name"
}

FANOUTS=(
  "r100 fanout -r 100 -S 4 -n 20000 -p 64"
  "r1000 fanout -r 1000 -S 4 -n 2000 -p 64"
  "paced fanout -r 100 -S 4 -n 1000 -p 64 --rate 500"
)
measure() {
  local who=$1 bin=$2 f
  start "$bin"
  for f in "${FANOUTS[@]}"; do
    # shellcheck disable=SC2086
    run "$who" $f
  done
  stop
  start "$bin"
  run "$who" idle idle -c "$CONNS"
  stop
  start "$bin"
  run "$who" unread idle -c "$CONNS" --unread
  stop
}

for round in $(seq "$ROUNDS"); do
  echo "compare.sh: round $round of $ROUNDS: old..." >&2
  measure old "$OLD"
  echo "compare.sh: round $round of $ROUNDS: new..." >&2
  measure new "$NEW"
done
if [ "$PEERS" = 1 ]; then
  for peer in nats redis; do
    if ! start_peer "$peer"; then
      echo "compare.sh: $peer-server is not installed; its column stays empty" >&2
      continue
    fi
    echo "compare.sh: $peer..." >&2
    for f in "${FANOUTS[@]}"; do
      set -- $f
      name=$1
      shift
      run "$peer" "$name" "$1" --proto "$peer" "${@:2}"
    done
    stop
  done
fi

# values WHO NAME KEY: that figure of every round, in order.
values() {
  [ -f "$results/$1.$2" ] || return 0
  sed -n "s/.*\"$3\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$results/$1.$2"
}
# cell WHO NAME KEY [SUFFIX [DIVISOR]]: "a, b, c (**median**)" or the one
# value, each divided by DIVISOR (then with two decimals).
cell() {
  local v
  v=$(values "$1" "$2" "$3")
  [ -n "$v" ] || return 0
  # Sorted, so that the median is the middle one.
  sort -g <<<"$v" | awk -v s="${4:-}" -v d="${5:-1}" '
    { x[NR] = (d == 1) ? $1 : sprintf("%.2f", $1 / d) } END {
    m = (NR % 2) ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2
    out = ""; for (i = 1; i <= NR; i++) out = out (i > 1 ? ", " : "") x[i]
    if (NR > 1) printf "%s (**%s**)%s", out, m, s; else printf "%s%s", out, s
  }'
}
loss() {
  local who=$1 name bad=0 any=0 m o c
  for name in r100 r1000 paced; do
    [ -f "$results/$who.$name" ] || continue
    any=1
    while read -r m o c; do
      [ "${m:-x}${o:-x}${c:-x}" = 000 ] || bad=1
    done < <(paste -d' ' <(values "$who" "$name" missing) <(values "$who" "$name" out_of_order) \
      <(values "$who" "$name" corrupt))
  done
  [ "$any" = 1 ] || return 0
  if [ "$bad" = 0 ]; then echo "none"; else echo "LOSS"; fi
}

row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
fig() {
  local label=$1 name=$2 key=$3 suffix=${4:-} div=${5:-1}
  row "$label" "$(cell old "$name" "$key" "$suffix" "$div")" \
    "$(cell new "$name" "$key" "$suffix" "$div")" \
    "$(cell nats "$name" "$key" "$suffix" "$div")" "$(cell redis "$name" "$key" "$suffix" "$div")"
}
echo
echo "old: $OLD"
echo "new: $NEW"
echo "$ROUNDS rounds, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
row "figure" "old" "new" "nats" "redis"
row "---" "---" "---" "---" "---"
fig "fan-out R=100 S=4 n=20000 p=64, server CPU per delivery" r100 server_cpu_ns_per_delivery " ns"
fig "same, deliveries/s" r100 deliveries_per_s " M" 1000000
fig "fan-out R=1000 S=4 n=2000 p=64, server CPU per delivery" r1000 server_cpu_ns_per_delivery " ns"
fig "same, deliveries/s" r1000 deliveries_per_s " M" 1000000
fig "paced 500 msg/s R=100 S=4, latency p50" paced latency_p50_ms " ms"
fig "same, latency p99" paced latency_p99_ms " ms"
fig "idle $CONNS, server RSS per connection" idle rss_per_conn_bytes " B"
fig "idle $CONNS --unread, server RSS per connection" unread rss_per_conn_bytes " B"
row "loss, duplicates, reordering" "$(loss old)" "$(loss new)" "$(loss nats)" "$(loss redis)"
exit "$failed"
