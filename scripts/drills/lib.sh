#!/usr/bin/env bash
# Shared parts of the reliability drills: build, a private Postgres cluster and Redis, the fakes
# (downstream + Graph API), webhook instances, the load generator, and the final report.
# Every process is on 127.0.0.1; every wait is bounded; the drill exits non-zero on any loss.
# shellcheck disable=SC2034  # its variables (SHORT, WEBHOOK_PID, ...) are read by the sourcing scripts
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DRILL=${DRILL:-$(basename "$0")}
# DRILL_PROFILE=debug reuses the test build (CI's short runs); release gives the figures.
PROFILE=${DRILL_PROFILE:-release}
# Where cargo puts the build: CARGO_TARGET_DIR when set (a worktree's own target dir).
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$([ "$PROFILE" = release ] && echo release || echo debug)"
SHORT=${DRILL_SHORT:-0}
# --sqlite: the webhook on its SQLite default (a file in the drill's folder) instead of the
# drill's Postgres + Redis; only the drills that read no Postgres table support it (crash).
SQLITE=${DRILL_SQLITE:-0}
for arg in "$@"; do
  case "$arg" in
    --short) SHORT=1 ;;
    --sqlite) SQLITE=1 ;;
  esac
done

WORK=$(mktemp -d "/tmp/steadfast-drill-$DRILL.XXXX")
chmod 755 "$WORK"
# The drills run their own Postgres cluster and Redis server on spare ports, so stopping them
# (the outage drills) never disturbs the machine's shared servers or anything else using them.
DRILL_PG_PORT=${DRILL_PG_PORT:-15432}
DRILL_REDIS_PORT=${DRILL_REDIS_PORT:-16379}
PGDATA_DIR="$WORK/pgdata"
if [ "$SQLITE" = 1 ]; then
  # Unset, not empty: an inherited DATABASE_URL would select Postgres.
  unset DATABASE_URL REDIS_URL
  SQLITE_DB="$WORK/webhook.db"
else
  export DATABASE_URL="postgres://postgres@127.0.0.1:$DRILL_PG_PORT/postgres"
  export REDIS_URL="redis://127.0.0.1:$DRILL_REDIS_PORT"
fi
WHATSAPP_APP_SECRET="drill-app-secret-$(date +%s)"
export WHATSAPP_APP_SECRET
export WHATSAPP_VERIFY_TOKEN="drill-verify-token"
export ADMIN_TOKEN="drill-admin-token-0123456789"
export RATE_LIMIT_PER_MINUTE=0
export RUST_LOG="${RUST_LOG:-warn}"
DOWN_PORT=${DOWN_PORT:-19101}
GRAPH_PORT=${GRAPH_PORT:-19102}
PIDS=()
declare -A WEBHOOK_PID=()

log() { printf '[%s %s] %s\n' "$DRILL" "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

cleanup() {
  local code=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$SQLITE" != 1 ]; then
    stop_postgres >/dev/null 2>&1 || true
    stop_redis >/dev/null 2>&1 || true
  fi
  if [ "$code" -ne 0 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
  exit "$code"
}
trap cleanup EXIT INT TERM

# DRILL_BUILD=0 skips the build (binaries already built, e.g. while another build holds the
# target dir's lock).
build() {
  if [ "${DRILL_BUILD:-1}" = 0 ]; then log "using the $PROFILE build in $BIN"; return 0; fi
  log "building ($PROFILE)"
  if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build -q --release -p steadfast-webhook -p steadfast-loadgen)
  else
    # Same selection and features as scripts/test, so the test build is reused.
    (cd "$ROOT" && cargo build -q --workspace --all-features --bins)
  fi
}

pg_bin() {
  echo "/usr/lib/postgresql/$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)/bin"
}
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
  as_postgres "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/postgres.log" -w -t 30 \
    -o "-p $DRILL_PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
}
stop_postgres() { as_postgres "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null; }
start_redis() {
  redis-server --daemonize yes --bind 127.0.0.1 --port "$DRILL_REDIS_PORT" --save "" \
    --appendonly no --dir "$WORK" --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
  local i
  for ((i = 0; i < 40; i++)); do
    [ "$(redis-cli -p "$DRILL_REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.25
  done
  die "drill Redis did not start"
}
stop_redis() { redis-cli -p "$DRILL_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }

# A fresh Postgres cluster (trust auth, loopback only) and Redis for this drill; with
# --sqlite, nothing to start (the webhook creates its file).
fresh_stores() {
  if [ "$SQLITE" = 1 ]; then
    log "SQLite at $SQLITE_DB (no Postgres, no Redis)"
    return 0
  fi
  "$ROOT/scripts/start-services" >/dev/null  # installs the server packages when missing
  if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; fi
  as_postgres "$(pg_bin)/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 >/dev/null
  start_postgres
  start_redis
  log "drill Postgres on :$DRILL_PG_PORT, Redis on :$DRILL_REDIS_PORT"
}

# start_fakes: the fake downstream and Graph API, and the webhook config pointing at them.
# BREAKER_OPEN_SECONDS=N gives every service a breaker open for N s instead of the presets.
start_fakes() {
  local extra=()
  if [ -n "${BREAKER_OPEN_SECONDS:-}" ]; then extra+=(--breaker-open-seconds "$BREAKER_OPEN_SECONDS"); fi
  "$BIN/steadfast-loadgen" fakes --downstream-listen "127.0.0.1:$DOWN_PORT" \
    --graph-listen "127.0.0.1:$GRAPH_PORT" --app-secret "$WHATSAPP_APP_SECRET" \
    --webhook-rate-limit 0 --config-out "$WORK/fakes.toml" "${extra[@]}" >"$WORK/fakes.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$DOWN_PORT/_stats" 20 || die "fakes did not start"
}

# start_webhook PORT NAME [ARGS...]: starts an instance (ARGS go to steadfast-webhook, e.g.
# --no-worker, or `worker` for the worker-only subcommand), records its pid in
# WEBHOOK_PID[NAME]. WEBHOOK_TOML is appended to its config (tables such as `[worker]`); the
# config is checked first, so a key this build does not know fails with the webhook's message.
start_webhook() {
  local port=$1 name=$2
  shift 2
  {
    echo "listen = \"127.0.0.1:$port\""
    cat "$WORK/fakes.toml"
    if [ "$SQLITE" = 1 ]; then printf '\n[storage]\nbackend = "sqlite"\nsqlite_path = "%s"\n' "$SQLITE_DB"; fi
    [ -z "${WEBHOOK_TOML:-}" ] || printf '\n%s\n' "$WEBHOOK_TOML"
  } >"$WORK/webhook-$name.toml"
  "$BIN/steadfast-webhook" --config "$WORK/webhook-$name.toml" check-config >/dev/null \
    2>"$WORK/check-config-$name.log" \
    || die "webhook $name: config refused: $(cat "$WORK/check-config-$name.log")"
  "$BIN/steadfast-webhook" --config "$WORK/webhook-$name.toml" "$@" >>"$WORK/webhook-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  WEBHOOK_PID[$name]=$pid
  wait_http "http://127.0.0.1:$port/health" 60 || die "webhook $name did not become healthy"
  log "webhook $name up on :$port (pid $pid)"
}

# wait_http URL SECONDS: until the URL answers 200.
wait_http() {
  local url=$1 limit=$2 i
  for ((i = 0; i < limit * 4; i++)); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]; then return 0; fi
    sleep 0.25
  done
  return 1
}

# http_code URL: the status code, or 000 when nothing answers.
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

# start_load TARGETS... -- EXTRA ARGS: runs the load generator in the background (LOAD_PID).
start_load() {
  local targets=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do targets+=(--target "$1"); shift; done
  [ "${1:-}" = -- ] && shift
  "$BIN/steadfast-loadgen" run "${targets[@]}" \
    --external-fakes "http://127.0.0.1:$DOWN_PORT" --app-secret "$WHATSAPP_APP_SECRET" \
    --rate "$RATE" --duration "${DURATION}s" --concurrency "${CONCURRENCY:-16}" \
    --give-up-after 120s --retry-max-delay 2s --drain-timeout "${DRAIN:-90}s" \
    --report-json "$WORK/report.json" "$@" >"$WORK/loadgen.log" 2>&1 &
  LOAD_PID=$!
  PIDS+=("$LOAD_PID")
  LOAD_START_MS=$(date +%s%3N)
}

# metric URL REGEX: the sum of the /metrics samples whose name and labels match REGEX
# (anchored at the line start), 0 when none.
metric() {
  curl -s -m 5 "$1/metrics" 2>/dev/null | RE="^($2)" awk '$0 ~ ENVIRON["RE"] {n += $NF} END {print n + 0}'
}

# psql_value SQL: one value from the drill's Postgres.
psql_value() {
  "$(pg_bin)/psql" -h 127.0.0.1 -p "$DRILL_PG_PORT" -U postgres -d postgres -XtAq -c "$1"
}

# queue_rows CONDITION: rows of the queue table matching CONDITION (exact, unlike the
# /metrics gauges, which refresh every 10 s).
queue_rows() {
  if [ "$SQLITE" = 1 ]; then
    sqlite3 -cmd '.timeout 5000' "$SQLITE_DB" "SELECT count(*) FROM dlq_messages WHERE $1"
  else
    psql_value "SELECT count(*) FROM dlq_messages WHERE $1"
  fi
}

# wait_queue_settled SECONDS: until no message is waiting or running (every one done or dead).
wait_queue_settled() {
  local i
  for ((i = 0; i < $1; i++)); do
    [ "$(queue_rows "state NOT IN ('done', 'dead')")" = 0 ] && return 0
    sleep 1
  done
  return 1
}

# at SECONDS: sleeps until SECONDS after the load started.
at() {
  local wait_ms=$((LOAD_START_MS + $1 * 1000 - $(date +%s%3N)))
  if [ "$wait_ms" -gt 0 ]; then sleep "$((wait_ms / 1000)).$(printf '%03d' $((wait_ms % 1000)))"; fi
}

# finish [MAX_DUPLICATES]: waits for the load generator, prints the figures, and fails on any
# loss or on more duplicate deliveries than allowed (default 0).
finish() {
  local max_dup=${1:-0} code=0
  wait "$LOAD_PID" || code=$?
  [ -s "$WORK/report.json" ] || { cat "$WORK/loadgen.log" >&2; die "no report (loadgen exit $code)"; }
  # A drill's own checks once every message is in (they may set EXTRA_FIGURES or fail).
  if declare -F after_load >/dev/null; then after_load; fi
  jq -r --arg drill "$DRILL" --arg extra "${EXTRA_FIGURES:-}" '
    "== \($drill): rate \(if .config.messages_per_sec then "\(.config.messages_per_sec) messages" else .config.rate end)/s for \(.send.send_secs | round) s",
    "requests \(.send.requests), 200 \(.send.status.ok_200), 503 \(.send.status.unavailable_503), 429 \(.send.status.too_many_requests_429), connection errors \(.send.status.connection_errors), timeouts \(.send.status.timeouts), retries \(.send.retries)",
    "messages accepted \(.delivery.messages_accepted), delivered \(.delivery.delivered), lost \(.delivery.lost), duplicate deliveries \(.delivery.duplicate_deliveries), never accepted \(.delivery.messages_never_accepted)",
    "accepted p99 latency \(.send.latency_accepted.p99_ms) ms, drained in \(.drain_secs * 100 | round / 100) s, last message delivered \(.last_delivery_after_load_secs | if . == null then "n/a" else (. * 100 | round / 100) end) s after the load ended",
    (if $extra != "" then $extra else empty end)' "$WORK/report.json"
  local lost dup never
  lost=$(jq '.delivery.lost' "$WORK/report.json")
  dup=$(jq '.delivery.duplicate_deliveries' "$WORK/report.json")
  never=$(jq '.delivery.messages_never_accepted' "$WORK/report.json")
  [ "$lost" = 0 ] || die "$lost accepted message(s) lost: $(jq -c '.delivery.lost_ids[:10]' "$WORK/report.json")"
  [ "$never" = 0 ] || die "$never message(s) never accepted within the give-up time"
  [ "$dup" -le "$max_dup" ] || die "$dup duplicate deliveries (allowed: $max_dup)"
  cp "$WORK/report.json" "${REPORT_OUT:-$WORK/report.json}" 2>/dev/null || true
  log "PASSED (lost 0, duplicates $dup)"
}

# pgbench_insert_tps CLIENTS: pgbench's single-row INSERT TPS on the drill's cluster over 8 s
# (the floor reference the benchmarks compare with). Stop the webhook first.
pgbench_insert_tps() {
  local c=$1 pgb
  pgb="$(pg_bin)/pgbench"
  local args=(-h 127.0.0.1 -p "$DRILL_PG_PORT" -U postgres)
  if [ ! -s "$WORK/insert.sql" ]; then
    "$pgb" "${args[@]}" -i -s 1 -q postgres >/dev/null 2>&1
    cat >"$WORK/insert.sql" <<'SQL'
\set aid random(1, 100000)
\set delta random(-5000, 5000)
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);
SQL
  fi
  "$pgb" "${args[@]}" -n -f "$WORK/insert.sql" -c "$c" -j "$((c < 2 ? c : 2))" -T 8 postgres 2>/dev/null \
    | awk '/^tps/ {print int($3)}'
}
