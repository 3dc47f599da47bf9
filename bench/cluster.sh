#!/usr/bin/env bash
# The cluster's figures (issue 16, bench/README.md "A cluster"): the same
# fan-out runs against one `chat server` alone, one `chat server --cluster`
# (the backplane's cost without a second server), and three `chat server
# --cluster` on one nats-server with JetStream, with the bench's receivers
# and senders spread over the three (`--server A,B,C`). For the cluster
# runs it reads nats-server's monitoring endpoint (/varz: in_msgs,
# in_bytes, out_msgs, out_bytes) before and after each run and divides the
# difference by the group messages sent: what one group message costs on
# the backplane. Everything listens on free ports of 127.0.0.1 and is
# stopped by its PID.
#
# Each server keeps its history in a database of its own under a scratch
# directory (a cluster's servers need one to replay the stream from; the
# lone server gets one too, so the comparison is like for like).
#
# Needs nats-server (apt-get install nats-server). Exit status: 0 when
# every run delivered everything, 1 when any run lost, duplicated or
# reordered a message or failed, 2 when nats-server is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS=$(command -v nats-server || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; } || true)
if [ -z "$NATS" ]; then
  echo "cluster.sh: nats-server is not installed (apt-get install nats-server)" >&2
  exit 2
fi
cargo build --release --quiet
BIN=target/x86_64-unknown-linux-gnu/release/chat
SCRATCH=$(mktemp -d)
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap 'stop_all; rm -rf "$SCRATCH"' EXIT

# A port of 127.0.0.1 nothing listens on.
free_port() {
  local port
  for port in $(shuf -i 20000-60000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "cluster.sh: found no free port" >&2
  exit 1
}

# Starts nats-server with JetStream on free ports (NATS_PORT, client;
# MON_PORT, monitoring) and waits for its "Server is ready" line.
start_nats() {
  local line out
  NATS_PORT=$(free_port) MON_PORT=$(free_port)
  exec {out}< <(exec "$NATS" -a 127.0.0.1 -p "$NATS_PORT" -m "$MON_PORT" -js \
    -sd "$SCRATCH/jetstream.$NATS_PORT" 2>&1)
  PIDS+=($!)
  NATS_PID=$!
  while read -r -t 10 line <&"$out"; do
    if [[ $line == *"Server is ready"* ]]; then
      cat <&"$out" >/dev/null &
      return 0
    fi
  done
  echo "cluster.sh: nats-server did not say it was ready" >&2
  exit 1
}

# varz FIELD: one total from nats-server's /varz (no curl needed).
varz() {
  local body
  exec {http}<>"/dev/tcp/127.0.0.1/$MON_PORT"
  printf 'GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$http"
  body=$(cat <&"$http")
  exec {http}<&-
  sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" <<<"$body" | head -n 1
}

# start_chat NAME [ARGS...]: starts `chat server` on port 0 with its own
# database, reads its `listening on ADDR` line; the address goes to ADDRS.
ADDRS=()
start_chat() {
  local name=$1 line out
  shift
  exec {out}< <(exec "$BIN" server --listen 127.0.0.1:0 --quiet --rate 0 \
    --max-clients 20000 --db "$SCRATCH/$name.db" "$@")
  PIDS+=($!)
  if ! read -r -t 10 line <&"$out" || [[ $line != "listening on "* ]]; then
    echo "cluster.sh: $name did not say 'listening on ADDR' (it said: ${line:-nothing})" >&2
    exit 1
  fi
  cat <&"$out" >/dev/null &
  ADDRS+=("${line#listening on }")
}

# Waits until a message sent through the first server reaches receivers on
# every server: one tiny fan-out run that delivers everything.
wait_as_one() {
  local servers=$1 deadline=$((SECONDS + 15))
  until "$BIN" bench fanout --server "$servers" -r 3 -S 1 -n 1 -p 16 --timeout 2s >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: the servers $servers did not act as one within 15 s" >&2
      exit 1
    fi
  done
}

failed=0
# bench VAR SERVERS ARGS: runs `chat bench ARGS --json` against SERVERS
# (A or A,B,C) and keeps its JSON line in VAR.
bench() {
  local var=$1 servers=$2 json status=0
  shift 2
  json=$("$BIN" bench "$@" --server "$servers" --json) || status=$?
  if [ "$status" -ne 0 ]; then
    echo "cluster.sh: chat bench $* against $servers failed (exit $status)" >&2
    failed=1
  fi
  printf -v "$var" '%s' "${json:-"{}"}"
}

# nats-server's CPU time so far, in clock ticks (user + system, from
# /proc/PID/stat: fields 14 and 15, counted after the name in parentheses).
nats_ticks() { sed 's/.*) //' "/proc/$NATS_PID/stat" | awk '{ print $12 + $13 }'; }

# cost VAR MSGS: the backplane traffic since `mark`, per group message, as
# "in_msgs in_bytes out_msgs out_bytes nats_cpu_us".
mark() {
  MARK=("$(varz in_msgs)" "$(varz in_bytes)" "$(varz out_msgs)" "$(varz out_bytes)" "$(nats_ticks)")
}
cost() {
  local var=$1 msgs=$2 now hz
  now=("$(varz in_msgs)" "$(varz in_bytes)" "$(varz out_msgs)" "$(varz out_bytes)" "$(nats_ticks)")
  hz=$(getconf CLK_TCK)
  printf -v "$var" '%s' "$(awk -v m="$msgs" -v a="${MARK[0]}" -v b="${MARK[1]}" -v c="${MARK[2]}" \
    -v d="${MARK[3]}" -v e="${MARK[4]}" -v A="${now[0]}" -v B="${now[1]}" -v C="${now[2]}" \
    -v D="${now[3]}" -v E="${now[4]}" -v hz="$hz" \
    'BEGIN { printf "%.2f %.0f %.2f %.0f %.1f", (A-a)/m, (B-b)/m, (C-c)/m, (D-d)/m, (E-e)/hz*1e6/m }')"
}

# The runs: R=100 unpaced for throughput, paced for latency. Short: the
# machine is shared. FAN is the unpaced one's messages (S*n).
FANOUT=(fanout -r 100 -S 4 -n 5000 -p 64)
FAN_MSGS=$((4 * 5000))
PACED=(fanout -r 100 -S 4 -n 500 -p 64 --rate 500)
PACED_MSGS=$((4 * 500))
# The paced run again, with ten clients renaming 3000 times a second
# beside it: what the name table's claims and releases cost the others.
RENAMES=(--renames 3000)

start_chat alone
echo "cluster.sh: one server alone on ${ADDRS[0]}..." >&2
bench alone_fan "${ADDRS[0]}" "${FANOUT[@]}"
bench alone_paced "${ADDRS[0]}" "${PACED[@]}"
bench alone_renames "${ADDRS[0]}" "${PACED[@]}" "${RENAMES[@]}"
stop_all

start_nats
ADDRS=()
start_chat one --cluster "nats://127.0.0.1:$NATS_PORT"
wait_as_one "${ADDRS[0]}"
echo "cluster.sh: one server in a cluster on ${ADDRS[0]}, nats-server on $NATS_PORT..." >&2
mark
bench one_fan "${ADDRS[0]}" "${FANOUT[@]}"
cost one_fan_cost "$FAN_MSGS"
mark
bench one_paced "${ADDRS[0]}" "${PACED[@]}"
cost one_paced_cost "$PACED_MSGS"
bench one_renames "${ADDRS[0]}" "${PACED[@]}" "${RENAMES[@]}"
stop_all

start_nats
ADDRS=()
for k in a b c; do
  start_chat "three-$k" --cluster "nats://127.0.0.1:$NATS_PORT"
done
THREE=$(IFS=,; echo "${ADDRS[*]}")
wait_as_one "$THREE"
echo "cluster.sh: three servers $THREE, nats-server on $NATS_PORT..." >&2
mark
bench three_fan "$THREE" "${FANOUT[@]}"
cost three_fan_cost "$FAN_MSGS"
mark
bench three_paced "$THREE" "${PACED[@]}"
cost three_paced_cost "$PACED_MSGS"
bench three_renames "$THREE" "${PACED[@]}" "${RENAMES[@]}"
stop_all

field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }
row() { printf '%-36s %-18s %-18s %s\n' "$@" | sed 's/ *$//'; }
dps() { awk -v x="$(field "$1" deliveries_per_s)" 'BEGIN { if (x != "") printf "%.2f M/s", x / 1e6 }'; }
lat() { [ "$1" = "{}" ] || echo "$(field "$1" latency_p50_ms) / $(field "$1" latency_p99_ms) ms"; }
loss() {
  local m o c
  [ "$1" = "{}" ] && return
  m=$(field "$1" missing) o=$(field "$1" out_of_order) c=$(field "$1" corrupt)
  if [ "${m:-x}${o:-x}${c:-x}" = 000 ]; then echo "none"; else echo "LOSS: $m/$o/$c"; fi
}
# per VAR N: the Nth figure of a cost line (1 in_msgs, 2 in_bytes, 3
# out_msgs, 4 out_bytes, 5 nats-server CPU microseconds).
per() { awk -v n="$2" '{ print $n }' <<<"$1"; }

echo
row "R=100 S=4 p=64" "one server" "one, --cluster" "three, --cluster"
row "fan-out n=5000: deliveries/s" "$(dps "$alone_fan")" "$(dps "$one_fan")" "$(dps "$three_fan")"
row "  latency p50 / p99" "$(lat "$alone_fan")" "$(lat "$one_fan")" "$(lat "$three_fan")"
row "  loss (missing/dup/corrupt)" "$(loss "$alone_fan")" "$(loss "$one_fan")" "$(loss "$three_fan")"
row "paced 500 msg/s n=500: p50 / p99" "$(lat "$alone_paced")" "$(lat "$one_paced")" "$(lat "$three_paced")"
row "  loss (missing/dup/corrupt)" "$(loss "$alone_paced")" "$(loss "$one_paced")" "$(loss "$three_paced")"
row "the same, renames beside: p50 / p99" "$(lat "$alone_renames")" "$(lat "$one_renames")" "$(lat "$three_renames")"
row "  renames/s made" "$(field "$alone_renames" renames_per_s)" "$(field "$one_renames" renames_per_s)" \
  "$(field "$three_renames" renames_per_s)"
row "backplane per group message (fan-out)" "" "" ""
row "  NATS messages in / out" "" "$(per "$one_fan_cost" 1) / $(per "$one_fan_cost" 3)" \
  "$(per "$three_fan_cost" 1) / $(per "$three_fan_cost" 3)"
row "  NATS bytes in / out" "" "$(per "$one_fan_cost" 2) / $(per "$one_fan_cost" 4)" \
  "$(per "$three_fan_cost" 2) / $(per "$three_fan_cost" 4)"
row "  nats-server CPU" "" "$(per "$one_fan_cost" 5) us" "$(per "$three_fan_cost" 5) us"
row "backplane per group message (paced)" "" "" ""
row "  NATS messages in / out" "" "$(per "$one_paced_cost" 1) / $(per "$one_paced_cost" 3)" \
  "$(per "$three_paced_cost" 1) / $(per "$three_paced_cost" 3)"
row "  NATS bytes in / out" "" "$(per "$one_paced_cost" 2) / $(per "$one_paced_cost" 4)" \
  "$(per "$three_paced_cost" 2) / $(per "$three_paced_cost" 4)"
row "  nats-server CPU" "" "$(per "$one_paced_cost" 5) us" "$(per "$three_paced_cost" 5) us"
exit "$failed"
