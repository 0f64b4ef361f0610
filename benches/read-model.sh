#!/usr/bin/env bash
# Reads near the machine's limit, all in one session: wrk (2 threads, 64 connections) against a
# bare hyper server answering a fixed flag-sized body, then against Tower's GET /api/flags/:id
# on SQLite with the read model and with it off (TOWER_READ_MODEL_BYTES=0), alternating rounds.
# BASE_TOWER names an older tower binary to measure beside them. Prints one line per run.
#
#   cargo build --release -p flagtower-benches --bin bare -p flagtower-http --bin tower
#   benches/read-model.sh            # CONNS=64 SECS=10 ROUNDS=2 by default
set -euo pipefail
cd "$(dirname "$0")/.."
TOWER=${TOWER:-target/release/tower}
BARE=${BARE:-target/release/bare}
CONNS=${CONNS:-64}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-2}
command -v wrk >/dev/null || { echo "wrk is missing (Debian: apt-get install wrk)" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; return 1; }

# wrk's requests/s and latency percentiles, on one line.
measure() {
  local label=$1 url=$2 out
  wrk -t2 -c"$CONNS" -d2s "$url" >/dev/null # warm-up
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$url")
  printf '%-22s rps=%s p50=%s p90=%s p99=%s errors=%s\n' "$label" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "90%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "99%" {print $2}' <<<"$out")" \
    "$(awk '/Non-2xx/ {print $NF} END {}' <<<"$out" | tail -n1)"
}

tower_run() {
  local label=$1 bin=$2 bytes=$3 port dir pid
  port=$(free_port)
  dir=$(mktemp -d)
  env TOWER_STORE_URL="sqlite://$dir/t.db" TOWER_BIND=127.0.0.1 PORT="$port" \
    TOWER_READ_MODEL_BYTES="$bytes" RUST_LOG=warn "$bin" >"$dir/log" 2>&1 &
  pid=$!
  wait_port "$port"
  local t="http://127.0.0.1:$port"
  curl -sf -X POST "$t/api/apps" -H 'content-type: application/json' -d '{"title":"bench"}' >/dev/null
  curl -sf -X POST "$t/api/apps/1/flags" -H 'content-type: application/json' \
    -d '{"title":"bench-flag","rollout_percentage":50,"is_active":true}' >/dev/null
  for _ in 1 2 3 4; do
    curl -sf -X PATCH "$t/api/flags/1/toggle" -H 'content-type: application/json' >/dev/null
  done
  measure "$label" "$t/api/flags/1"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

for round in $(seq "$ROUNDS"); do
  port=$(free_port)
  "$BARE" --port "$port" --bytes "${BARE_BYTES:-1772}" >/dev/null &
  bare=$!
  wait_port "$port"
  measure "bare hyper" "http://127.0.0.1:$port/"
  kill "$bare"; wait "$bare" 2>/dev/null || true
  tower_run "tower, read model" "$TOWER" 67108864
  tower_run "tower, no read model" "$TOWER" 0
  if [ -n "${BASE_TOWER:-}" ]; then tower_run "base tower" "$BASE_TOWER" 0; fi
done
