#!/usr/bin/env bash
# Durable changes on PostgreSQL with NATS JetStream: this Tower beside the original Node.js
# Tower, in alternating rounds of one run. Each run gets a fresh database and a private
# nats-server (JetStream, file storage), wrk (2 threads, CONNS connections) sends PATCH
# /api/flags/:id/toggle for SECS seconds, and the log entries the server wrote meanwhile are
# counted in PostgreSQL: a request the server answered without writing is not a change.
#
#   hot     one app with one flag, every request to it
#   spread  100 apps of one flag each, every connection going through them in turn
#
# published/s is how many rulesets JetStream took meanwhile (its monitoring endpoint); lag50/99
# is this Tower's own commit → publish latency over the run (its /metrics histogram).
#
# This Tower's toggle without a body flips the flag (every request a change); the original's
# sets the value in its body, so its requests alternate {"is_active": true} and false, and it
# logs every one.
#
#   cargo build --release -p flagtower-http --bin tower
#   benches/writes.sh                         # this Tower alone
#   ORIGINAL=/path/to/original benches/writes.sh
#
# ORIGINAL is a checkout of the original Tower (github.com/tailslide-io/tower) whose `server/`
# has had `npm install`; it is started as `node app.js` there, on the schema of its
# `docker/init.sql` (benches/servers.sh starts every server). BASE_TOWER names an older tower binary to run beside this one.
# CONNS=8 SECS=10 ROUNDS=2 SCENARIOS="hot spread" by default; PGURL names the server
# (postgres://postgres@127.0.0.1:5432); STORE=sqlite runs this Tower on a SQLite file instead
# (the original on PostgreSQL still); this Tower connects without TLS, as the original does
# (SSLMODE=prefer to measure it with). Prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
TOWER=${TOWER:-${CARGO_TARGET_DIR:-target}/release/tower}
CONNS=${CONNS:-8}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-2}
SCENARIOS=${SCENARIOS:-hot spread}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
for tool in wrk psql curl "${TOWER_TEST_NATS_SERVER:-nats-server}"; do
  command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
[ -x "$TOWER" ] || { echo "$TOWER is missing: cargo build --release -p flagtower-http --bin tower" >&2; exit 1; }

. benches/servers.sh
STORE=${STORE:-postgres}
# query KIND DB SQL: one value from the run's database (this Tower's SQLite file with STORE=sqlite).
query() {
  if [ "$1" = tower ] && [ "$STORE" = sqlite ]; then
    python3 -c 'import sqlite3, sys; print(*sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone())' \
      "$work/$2.db" "$3"
  else
    sql "$2" "$3"
  fi
}
# ids KIND DB TABLE: the table's ids, comma-separated, in order.
ids() {
  local agg="string_agg(CAST(id AS text), ',')"
  [ "$1" = tower ] && [ "$STORE" = sqlite ] && agg="group_concat(id, ',')"
  query "$1" "$2" "SELECT coalesce($agg, '') FROM (SELECT id FROM $3 ORDER BY id) t"
}

# The wrk script: PATCH the toggles of the flags in FLAGS (comma-separated ids) in turn, each
# thread starting at a different one; with SET=1 the bodies alternate true and false.
cat >"$work/toggle.lua" <<'LUA'
local flags, set, n, i = {}, os.getenv("SET") == "1", 0, 0
for id in string.gmatch(os.getenv("FLAGS"), "%d+") do flags[#flags + 1] = id end
local headers = { ["Content-Type"] = "application/json" }
function init(args) i = math.random(#flags) end
function request()
  n = n + 1
  i = i % #flags + 1
  local body = nil
  if set then body = (n % 2 == 0) and '{"is_active":true}' or '{"is_active":false}' end
  return wrk.format("PATCH", "/api/flags/" .. flags[i] .. "/toggle", headers, body)
end
LUA

# js_messages: how many messages JetStream's streams have taken so far (the sum of their last
# sequence numbers, from the monitoring endpoint; a stream keeps only each app's newest).
js_messages() {
  curl -sf "http://127.0.0.1:$NATS_MONITOR/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(s["state"]["last_seq"] for a in d.get("account_details") or [] for s in a.get("stream_detail") or []))'
}

# publish_lag URL BEFORE: this Tower's commit → publish latency since the scrape BEFORE (a
# file), p50 and p99 interpolated in the buckets of tower_publish_latency_seconds.
publish_lag() {
  curl -sf "$1/metrics" | python3 -c '
import sys
def read(lines):
    out = {}
    for l in lines:
        if l.startswith("tower_publish_latency_seconds_bucket"):
            le = l.split("le=\"")[1].split("\"")[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(l.split()[-1])
    return out
after = read(sys.stdin)
before = read(open(sys.argv[1])) if sys.argv[1] else {}
d = sorted((le, n - before.get(le, 0)) for le, n in after.items())
total = d[-1][1] if d else 0
def q(p):
    want, lo, prev = p * total, 0.0, 0.0
    for le, n in d:
        if n >= want:
            if le == float("inf"):
                return "> %.1fms" % (lo * 1000)
            return "%.2fms" % ((lo + (le - lo) * ((want - prev) / max(n - prev, 1))) * 1000)
        lo, prev = le, n
print("%s/%s" % (q(0.5), q(0.99)) if total else "-")' "$2"
}

# run LABEL KIND BIN SCENARIO: one measured run. KIND is tower or original.
run() {
  local label=$1 kind=$2 bin=$3 scenario=$4 db port pid apps url flags out before after
  db="tower_writes_$$_${RANDOM}"
  sql postgres "CREATE DATABASE $db"
  start_nats
  port=$(free_port)
  url="http://127.0.0.1:$port"
  # Plain TCP, as the original connects (node-postgres' default); SSLMODE=prefer for TLS.
  local store_url="$PGURL/$db?sslmode=${SSLMODE:-disable}"
  [ "$STORE" = sqlite ] && store_url="sqlite://$work/$db.db"
  start_server "$kind" "$bin" "$db" "$port" "$store_url"
  apps=1
  [ "$scenario" = spread ] && apps=100
  for a in $(seq "$apps"); do
    curl -sf -X POST "$url/api/apps" -H 'content-type: application/json' \
      -d "{\"title\":\"bench-$a\"}" >/dev/null
  done
  for a in $(ids "$kind" "$db" apps | tr , ' '); do
    curl -sf -X POST "$url/api/apps/$a/flags" -H 'content-type: application/json' \
      -d "{\"title\":\"bench-flag-$a\"}" >/dev/null
  done
  flags=$(ids "$kind" "$db" flags)
  local set=0
  [ "$kind" = original ] && set=1
  FLAGS=$flags SET=$set wrk -t2 -c"$CONNS" -d2s -s "$work/toggle.lua" "$url" >/dev/null # warm-up
  before=$(query "$kind" "$db" "SELECT count(*) FROM logs")
  local sent_before sent_after
  sent_before=$(js_messages)
  [ "$kind" = tower ] && curl -sf "$url/metrics" >"$work/metrics.before"
  out=$(FLAGS=$flags SET=$set wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$work/toggle.lua" "$url")
  after=$(query "$kind" "$db" "SELECT count(*) FROM logs")
  sent_after=$(js_messages)
  local lag=-
  [ "$kind" = tower ] && lag=$(publish_lag "$url" "$work/metrics.before")
  printf '%-10s %-8s %-7s rps=%s changes/s=%s published/s=%s lag50/99=%s p50=%s p99=%s non2xx=%s\n' "$label" "$([ "$kind" = tower ] && echo "$STORE" || echo postgres)" "$scenario" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(( (after - before) / SECS ))" \
    "$(( (sent_after - sent_before) / SECS ))" \
    "$lag" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "99%" {print $2}' <<<"$out")" \
    "$(awk '/Non-2xx/ {print $NF}' <<<"$out" | tail -n1)"
  stop_run "$db"
}

for round in $(seq "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    for server in $(servers_in_round "$round"); do measure "$server" "$scenario"; done
  done
done
