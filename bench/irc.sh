#!/usr/bin/env bash
# IRC against IRC (bench/README.md, "IRC"): the same loads through chat's
# IRC door (`chat server --listen-irc`), Debian's ngircd and Debian's
# inspircd, each started on a free port of 127.0.0.1 with the
# configuration beside this script (limits lifted, no lookups), stopped by
# its PID, and fresh for every run. One table: fan-out deliveries/s in one
# channel at R=100 and R=1000, paced p99, memory per idle registered
# connection. A peer that is not installed is left out (apt-get install
# ngircd inspircd).
#
# MESSAGES=N scales the fan-out runs (messages per sender at R=100; a tenth
# of that at R=1000).
#
# Exit status: 0 when every chat run delivered everything, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
BIN=target/x86_64-unknown-linux-gnu/release/chat
export CHAT_DB=none
MESSAGES=${MESSAGES:-1000}
SCRATCH=$(mktemp -d)
PID=
stop() {
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
  fi
}
trap 'stop; rm -rf "$SCRATCH"' EXIT

# A port of 127.0.0.1 nothing listens on (ngircd and inspircd cannot pick
# one), below the kernel's ephemeral range, where the bench's own
# connections could hold it.
free_port() {
  local port
  for port in $(shuf -i 20000-32000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "irc.sh: no free port found" >&2
  exit 1
}

# start chat|ngircd|inspircd: starts it on a free port, sets PID and PORT,
# and waits until the port answers.
start() {
  PORT=$(free_port)
  case $1 in
    chat)
      "$BIN" server --listen 127.0.0.1:0 --listen-irc "127.0.0.1:$PORT" --quiet \
        --rate 0 --max-clients 20000 >"$SCRATCH/chat.log" 2>&1 &
      ;;
    ngircd)
      sed "s/^\(\s*Ports = \).*/\1$PORT/" bench/ngircd.conf >"$SCRATCH/ngircd.conf"
      ngircd --nodaemon --config "$SCRATCH/ngircd.conf" >"$SCRATCH/ngircd.log" 2>&1 &
      ;;
    inspircd)
      sed -e "s/port=\"6667\"/port=\"$PORT\"/" \
        -e "s|/tmp/inspircd-bench.pid|$SCRATCH/inspircd.pid|" \
        bench/inspircd.conf >"$SCRATCH/inspircd.conf"
      inspircd --nofork --runasroot --config="$SCRATCH/inspircd.conf" \
        >"$SCRATCH/inspircd.log" 2>&1 &
      ;;
  esac
  PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      return
    fi
    sleep 0.1 # waiting for a listener that has no other way to say it is up
  done
  echo "irc.sh: $1 did not listen on 127.0.0.1:$PORT; its log:" >&2
  cat "$SCRATCH/$1.log" >&2
  exit 1
}

failed=0
# run SERVER VAR ARGS: a fresh SERVER, `chat bench ARGS --json` against it,
# its JSON line kept in VAR.
run() {
  local server=$1 var=$2 json status=0
  shift 2
  start "$server"
  json=$("$BIN" bench "$@" --proto irc --server "127.0.0.1:$PORT" --server-pid "$PID" \
    --json) || status=$?
  stop
  if [ "$status" -ne 0 ]; then
    echo "irc.sh: $server: chat bench $* failed (exit $status)" >&2
    [ "$server" != chat ] || failed=1
  fi
  printf -v "$var" '%s' "${json:-"{}"}"
}

field() {
  sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"
}

servers=(chat)
command -v ngircd >/dev/null && servers+=(ngircd)
command -v inspircd >/dev/null && servers+=(inspircd)
# The same window for all: what a server holds for a slow reader differs
# (ngircd drops a client whose output passes its write buffer).
window=(--window 64KiB --timeout 20s)
for s in "${servers[@]}"; do
  echo "irc.sh: $s" >&2
  run "$s" "f100_$s" fanout -r 100 -S 4 -n "$MESSAGES" "${window[@]}"
  run "$s" "f1000_$s" fanout -r 1000 -S 4 -n $((MESSAGES / 10)) "${window[@]}"
  run "$s" "paced_$s" fanout -r 100 -S 4 -n 500 --rate 1000 "${window[@]}"
  run "$s" "idle_$s" idle -c 1000 --hold 2s
done

row() {
  local label=$1 var=$2 key=$3 s
  printf '%-34s' "$label"
  for s in "${servers[@]}"; do
    local ref="${var}_$s"
    printf '%14s' "$(field "${!ref}" "$key")"
  done
  printf '\n'
}
printf '%-34s' ""
for s in "${servers[@]}"; do printf '%14s' "$s"; done
printf '\n'
row "fan-out R=100 deliveries/s" f100 deliveries_per_s
row "fan-out R=100 missing" f100 missing
row "fan-out R=1000 deliveries/s" f1000 deliveries_per_s
row "fan-out R=1000 missing" f1000 missing
row "paced 1000 msg/s R=100 p99 ms" paced latency_p99_ms
row "paced missing" paced missing
row "idle: RSS per registered conn, B" idle rss_per_conn_bytes
exit "$failed"
