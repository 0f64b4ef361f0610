#!/usr/bin/env bash
# Toggle → ruleset on NATS, measured from outside the servers by one client for all of them:
# this Tower's binary, an older one (BASE_TOWER) and the original Node.js Tower (ORIGINAL), in an
# order reversed every round. Each run gets a fresh PostgreSQL database, a private nats-server
# (JetStream, file storage) and one app with one flag; `propagation --server` then makes CHANGES
# sequential toggles and prints p50/p90/p99 from just before each PATCH to the arrival of the
# ruleset on a core NATS subscription.
#
#   cargo build --release -p flagtower-http --bin tower -p flagtower-benches --bin propagation
#   ORIGINAL=/path/to/original benches/propagation.sh
#
# ORIGINAL is a checkout of the original Tower (github.com/tailslide-io/tower) whose `server/`
# has had `npm install` (see benches/writes.sh). CHANGES=300 ROUNDS=2 by default; PGURL names the
# server (postgres://postgres@127.0.0.1:5432). This Tower connects without TLS, as the original.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}/release
TOWER=${TOWER:-$TARGET/tower}
PROBE=${PROBE:-$TARGET/propagation}
CHANGES=${CHANGES:-300}
ROUNDS=${ROUNDS:-2}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
NATS_SERVER=${TOWER_TEST_NATS_SERVER:-nats-server}
for tool in psql curl "$NATS_SERVER" "$TOWER" "$PROBE"; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
  echo "nothing listens on port $1" >&2; return 1
}
sql() { psql "$PGURL/$1" -Atq -v ON_ERROR_STOP=1 -c "$2"; }

# run LABEL KIND BIN: one measured run. KIND is tower or original.
run() {
  local label=$1 kind=$2 bin=$3 db nats_port nats_pid port url pid app flag
  db="tower_propagation_$$_${RANDOM}"
  sql postgres "CREATE DATABASE $db"
  nats_port=$(free_port)
  mkdir -p "$work/nats-$nats_port"
  "$NATS_SERVER" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats-$nats_port" >/dev/null 2>&1 &
  nats_pid=$!
  pids+=("$nats_pid")
  wait_port "$nats_port"
  port=$(free_port)
  url="http://127.0.0.1:$port"
  if [ "$kind" = original ]; then
    psql "$PGURL/$db" -q -v ON_ERROR_STOP=1 -f "$ORIGINAL/docker/init.sql" >/dev/null 2>&1
    (cd "$ORIGINAL/server" && exec env PORT="$port" PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres \
      PGDATABASE="$db" NATS_SERVER="nats://127.0.0.1:$nats_port" NATS_STREAM_NAME=flags_ruleset \
      NATS_AEROBAT_SUBJECT='apps.\*.update.manual' \
      REDIS_SERVER='{"socket":{"host":"127.0.0.1","port":6379}}' node app.js) >"$work/server.log" 2>&1 &
  else
    env TOWER_STORE_URL="$PGURL/$db?sslmode=disable" TOWER_NATS_URL="nats://127.0.0.1:$nats_port" \
      TOWER_BIND=127.0.0.1 PORT="$port" TOWER_RATE_LIMIT=off RUST_LOG=warn "$bin" >"$work/server.log" 2>&1 &
  fi
  pid=$!
  pids+=("$pid")
  wait_port "$port"
  curl -sf -X POST "$url/api/apps" -H 'content-type: application/json' -d '{"title":"propagation"}' >/dev/null
  app=$(sql "$db" "SELECT max(id) FROM apps")
  curl -sf -X POST "$url/api/apps/$app/flags" -H 'content-type: application/json' -d '{"title":"f"}' >/dev/null
  flag=$(sql "$db" "SELECT max(id) FROM flags")
  sleep 0.5
  printf '%-10s %s\n' "$label" "$("$PROBE" --server "$url" --nats "nats://127.0.0.1:$nats_port" \
    --app "$app" --flag "$flag" --changes "$CHANGES" | sed 's/^server=[^ ]* //')"
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  kill "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
  sql postgres "DROP DATABASE $db WITH (FORCE)"
}

servers=()
[ -n "${ORIGINAL:-}" ] && servers+=(original)
[ -n "${BASE_TOWER:-}" ] && servers+=(base)
servers+=(tower)
for round in $(seq "$ROUNDS"); do
  order=("${servers[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[$i]}"); done
  fi
  for server in "${order[@]}"; do
    case $server in
      original) run original original "" ;;
      base) run base tower "$BASE_TOWER" ;;
      tower) run tower tower "$TOWER" ;;
    esac
  done
done
