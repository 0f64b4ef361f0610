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
# has had `npm install` (see benches/writes.sh). CHANGES=1000 ROUNDS=2 by default; PGURL names the
# server (postgres://postgres@127.0.0.1:5432). This Tower connects without TLS, as the original.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}/release
TOWER=${TOWER:-$TARGET/tower}
PROBE=${PROBE:-$TARGET/propagation}
CHANGES=${CHANGES:-1000}
ROUNDS=${ROUNDS:-2}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
for tool in psql curl "${TOWER_TEST_NATS_SERVER:-nats-server}" "$TOWER" "$PROBE"; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
. benches/servers.sh

# run LABEL KIND BIN: one measured run. KIND is tower or original.
run() {
  local label=$1 kind=$2 bin=$3 db port url app flag
  db="tower_propagation_$$_${RANDOM}"
  sql postgres "CREATE DATABASE $db"
  start_nats
  port=$(free_port)
  url="http://127.0.0.1:$port"
  start_server "$kind" "$bin" "$db" "$port" "$PGURL/$db?sslmode=disable"
  curl -sf -X POST "$url/api/apps" -H 'content-type: application/json' -d '{"title":"propagation"}' >/dev/null
  app=$(sql "$db" "SELECT max(id) FROM apps")
  curl -sf -X POST "$url/api/apps/$app/flags" -H 'content-type: application/json' -d '{"title":"f"}' >/dev/null
  flag=$(sql "$db" "SELECT max(id) FROM flags")
  sleep 0.5
  printf '%-10s %s\n' "$label" "$("$PROBE" --server "$url" --nats "$NATS_URL" \
    --app "$app" --flag "$flag" --changes "$CHANGES" | sed 's/^server=[^ ]* //')"
  stop_run "$db"
}

for round in $(seq "$ROUNDS"); do
  for server in $(servers_in_round "$round"); do measure "$server"; done
done
