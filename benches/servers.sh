# Shared by benches/writes.sh and benches/propagation.sh (sourced, not run): private nats-servers,
# fresh databases, this Tower's binary or the original Node.js Tower started on them, and the
# order the servers take turns in.
#
# The sourcing script sets PGURL, TOWER, ORIGINAL and BASE_TOWER (both optional) first.

NATS_SERVER=${TOWER_TEST_NATS_SERVER:-nats-server}
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

# start_nats: a private JetStream server (file storage) with its monitoring endpoint; sets
# NATS_URL, NATS_MONITOR (the endpoint's port) and NATS_PID.
start_nats() {
  local port
  port=$(free_port)
  NATS_MONITOR=$(free_port)
  mkdir -p "$work/nats-$port"
  "$NATS_SERVER" -a 127.0.0.1 -p "$port" -m "$NATS_MONITOR" -js -sd "$work/nats-$port" >"$work/nats-$port.log" 2>&1 &
  NATS_PID=$!
  pids+=("$NATS_PID")
  wait_port "$port"
  NATS_URL="nats://127.0.0.1:$port"
}

# start_server KIND BIN DB PORT STORE_URL: the original (KIND original: its schema from
# docker/init.sql into DB, then `node app.js`) or this Tower (BIN on STORE_URL), publishing to
# NATS_URL, until it listens on PORT; sets SERVER_PID.
#
# The original gets the stream subject of its docker/env.md, the backslash kept: unset, it
# cannot create its stream; the bare wildcard overlaps the subjects it adds per app. This Tower
# connects to PostgreSQL as STORE_URL says (the scripts use plain TCP, as the original does).
start_server() {
  local kind=$1 bin=$2 db=$3 port=$4 store_url=$5
  if [ "$kind" = original ]; then
    sql "$db" "SET client_min_messages = warning" >/dev/null
    psql "$PGURL/$db" -q -v ON_ERROR_STOP=1 -f "$ORIGINAL/docker/init.sql" >/dev/null 2>&1
    (cd "$ORIGINAL/server" && exec env PORT="$port" PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres \
      PGDATABASE="$db" NATS_SERVER="$NATS_URL" NATS_STREAM_NAME=flags_ruleset SDK_KEY=myToken \
      NATS_AEROBAT_SUBJECT='apps.\*.update.manual' \
      REDIS_SERVER='{"socket":{"host":"127.0.0.1","port":6379}}' node app.js) >"$work/server.log" 2>&1 &
  else
    env TOWER_STORE_URL="$store_url" TOWER_NATS_URL="$NATS_URL" TOWER_BIND=127.0.0.1 PORT="$port" \
      TOWER_RATE_LIMIT=off RUST_LOG=warn "$bin" >"$work/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  pids+=("$SERVER_PID")
  wait_port "$port"
}

# stop_run DB: stops the run's server and nats-server, and drops DB.
stop_run() {
  kill -INT "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  kill "$NATS_PID" 2>/dev/null || true
  wait "$NATS_PID" 2>/dev/null || true
  sql postgres "DROP DATABASE $1 WITH (FORCE)"
}

# servers_in_round N: the servers to measure (original, base, tower: those given), in round N's
# order, reversed every other round: the same binary measured twice in a row ran about 10 %
# slower the second time on this project's machine, so a fixed order would favour whichever
# goes first.
servers_in_round() {
  local servers=() i
  [ -n "${ORIGINAL:-}" ] && servers+=(original)
  [ -n "${BASE_TOWER:-}" ] && servers+=(base)
  servers+=(tower)
  if [ $(($1 % 2)) -eq 0 ]; then
    for ((i = ${#servers[@]} - 1; i >= 0; i--)); do echo "${servers[$i]}"; done
  else
    printf '%s\n' "${servers[@]}"
  fi
}

# measure SERVER ARGS...: `run LABEL KIND BIN ARGS...` (the sourcing script's) for one server of
# servers_in_round.
measure() {
  local server=$1
  shift
  case $server in
    original) run original original "" "$@" ;;
    base) run base tower "$BASE_TOWER" "$@" ;;
    tower) run tower tower "$TOWER" "$@" ;;
  esac
}
