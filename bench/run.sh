#!/usr/bin/env bash
# Benchmarks examplebank against its database's own limit (issue 7). Run by hand, never in CI.
#
#   bench/run.sh                    # full size: 10,000 people, 1,000,000 transactions
#   BENCH_PEOPLE=500 BENCH_TRANSACTIONS=50000 BENCH_SECONDS=5 bench/run.sh    # a quick try
#
# What it does, in one run on this machine (see docs/performance.md):
#   1. builds the release binary and the helper (crates/bench);
#   2. PostgreSQL: creates a fresh database, seeds it through the store, starts the server with
#      rate limits lifted, signs people in through the real login flow, drives
#      POST and GET /bank/v1/transactions with wrk at each concurrency, measures P3 (charge to
#      points under P1's load) and P4 (logins at 10x capacity), stops the server, then runs
#      pgbench with scripts of exactly the server's statements for the same requests;
#   3. SQLite: the same against a seeded file, compared with a direct loop of the statements;
#   4. P5: start-up time and idle RSS of `serve --roles all`;
#   4b. P6: identity, users, transactions and rewards as separate processes on the same
#      database, the same POST load against the transactions process;
#   5. prints every figure, each ratio (like 0.83x) and PASS/FAIL per target (bench/report.py).
#
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) with pgbench and psql,
# sqlite3, python3 and wrk (installed with apt-get when missing and running as root).
# Everything it starts it stops; all traffic stays on 127.0.0.1. Results go to
# target/bench/<UTC time>/ (results.jsonl, report.md, logs); BENCH_KEEP=1 keeps the database.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PEOPLE=${BENCH_PEOPLE:-10000}
TRANSACTIONS=${BENCH_TRANSACTIONS:-1000000}
RUN_SECONDS=${BENCH_SECONDS:-20}
SESSIONS=${BENCH_SESSIONS:-64}        # logged-in people the load spreads over (pgbench: <= 127)
CONCURRENCIES=${BENCH_CONCURRENCIES:-"16 64"}
PG_SERVER=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
DB=eb_bench
PG_URL="$PG_SERVER/$DB"
PORT=${BENCH_PORT:-18080}
ADDR=127.0.0.1:$PORT
URL=http://$ADDR
OUT=${BENCH_OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# BENCH_BIN / BENCH_HELPER: measure binaries built elsewhere (e.g. a "before" build) and skip
# the build step.
BIN=${BENCH_BIN:-$TARGET_DIR/release/examplebank}
HELPER=${BENCH_HELPER:-$TARGET_DIR/release/examplebank-bench}
RESULTS=$OUT/results.jsonl
PGBENCH=$(ls -d /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n 1 || true)

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
die() { echo "bench: $*" >&2; exit 1; }

# ---- tools ---------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    die "wrk is missing: apt-get install -y wrk"
  fi
fi
[ -x "$PGBENCH" ] || die "pgbench is missing (Debian package postgresql-<version>)"
for tool in psql sqlite3 python3 curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
psql "$PG_SERVER/postgres" -qAtc 'select 1' >/dev/null || die "PostgreSQL does not answer at $PG_SERVER"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

mkdir -p "$OUT"
: >"$RESULTS"
echo "bench: results in $OUT"

# ---- processes we start, and stop ----------------------------------------------------------
SERVER_PID=
LOAD_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
SPLIT_PIDS=()
cleanup() {
  if [ -n "$LOAD_PID" ]; then kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true; fi
  stop_server
  local pid
  for pid in "${SPLIT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    psql "$PG_SERVER/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# The server refuses EXAMPLEBANK_* names it does not know: start from none but ours.
for name in $(compgen -e | grep '^EXAMPLEBANK_' || true); do unset "$name"; done
MASTER_KEY="m1:$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')"
export EXAMPLEBANK_MASTER_KEY=$MASTER_KEY
export EXAMPLEBANK_REWARDS_CLIENT_SECRET=bench-rewards-client-secret
# Rate limits lifted: the load comes from one address and a few dozen people.
export EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE=1000000000
export EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE=1000000000
export EXAMPLEBANK_LOGIN_FAILURES_PER_ADDRESS=1000000000

# start_server LABEL DATA_DIR [DATABASE_URL [ROLES]]
start_server() {
  local label=$1 dir=$2 db=${3:-} roles=${4:-all}
  if [ -n "$db" ]; then
    EXAMPLEBANK_DATABASE_URL=$db "$BIN" serve --roles "$roles" --addr "$ADDR" --data-dir "$dir" \
      >"$OUT/server-$label.out" 2>"$OUT/server-$label.log" &
  else
    "$BIN" serve --roles all --addr "$ADDR" --data-dir "$dir" \
      >"$OUT/server-$label.out" 2>"$OUT/server-$label.log" &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server stopped; see $OUT/server-$label.log"
    sleep 0.1
  done
  die "the server did not become ready; see $OUT/server-$label.log"
}

# wrk_run BACKEND REQUEST CONCURRENCY SECONDS [URL]
wrk_run() {
  BENCH_TOKENS=$OUT/sessions.txt BENCH_BACKEND=$1 BENCH_REQUEST=$2 BENCH_CONCURRENCY=$3 \
    wrk -t2 -c"$3" -d"$4s" --timeout 30s -s bench/wrk/requests.lua "${5:-$URL}" >"$OUT/wrk-$1-$2-$3.txt"
  grep '^{"kind":"wrk"' "$OUT/wrk-$1-$2-$3.txt" | tee -a "$RESULTS"
}

# wait_drained LABEL COUNT_COMMAND...: waits until the reward worker has emptied the outbox
# (at most BENCH_DRAIN_LIMIT seconds, 600 by default; what is left is recorded).
wait_drained() {
  local label=$1; shift
  local start events now left
  start=$(date +%s.%N)
  events=$("$@")
  left=$events
  local limit=$(( ${BENCH_DRAIN_LIMIT:-600} * 2 ))
  for _ in $(seq 1 "$limit"); do
    [ "$left" = 0 ] && break
    sleep 0.5
    left=$("$@")
  done
  now=$(date +%s.%N)
  python3 -c "import json,sys; e,s=int(sys.argv[2]),float(sys.argv[4])-float(sys.argv[3]); print(json.dumps({'kind':'drain','after':sys.argv[1],'events':e,'seconds':s,'per_s':e/s if s>0 else None,'left':int(sys.argv[5])}))" \
    "$label" "$events" "$start" "$now" "$left" | tee -a "$RESULTS"
}
# Every measured run starts from the same state: dead rows vacuumed, statistics fresh, no
# checkpoint pending (so one cannot land in the middle of one run and not another).
settle_pg() {
  psql "$PG_URL" -qAtc "VACUUM ANALYZE" >/dev/null
  psql "$PG_URL" -qAtc "CHECKPOINT" >/dev/null
}
settle_sqlite() {
  sqlite3 -cmd ".timeout 10000" "$OUT/sqlite-data/examplebank.sqlite" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null || true
}
# Sessions stuck inside a transaction, and the server's "transaction in progress" warnings:
# signs of a pooled connection handed out inside a transaction a cancelled request left open.
pg_stuck() {
  local label=$1 log=$2
  local stuck warnings
  stuck=$(psql "$PG_URL" -qAtc "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
    AND state LIKE 'idle in transaction%' AND now() - state_change > interval '2 seconds'")
  warnings=$(grep -c 'transaction in progress' "$log" || true)
  python3 -c "import json,sys; print(json.dumps({'kind':'stuck','after':sys.argv[1],'idle_in_transaction':int(sys.argv[2]),'warnings':int(sys.argv[3])}))" \
    "$label" "$stuck" "$warnings" | tee -a "$RESULTS"
}
relogin() {
  "$HELPER" login --url "$URL" --first 1 --count "$SESSIONS" --out "$OUT/sessions.txt"
  sessions_ok
}
# The load must spread over SESSIONS people, as the report says it does.
sessions_ok() {
  local have
  have=$(wc -l <"$OUT/sessions.txt")
  [ "$have" = "$SESSIONS" ] || die "$have sessions instead of $SESSIONS in $OUT/sessions.txt"
}
pg_outbox() { psql "$PG_URL" -qAtc "SELECT count(*) FROM outbox WHERE parked_at IS NULL"; }
sqlite_outbox() { sqlite3 "$OUT/sqlite-data/examplebank.sqlite" "SELECT count(*) FROM outbox WHERE parked_at IS NULL"; }

# ---- build ---------------------------------------------------------------------------------
if [ -z "${BENCH_BIN:-}" ]; then
  step "build (release)"
  cargo build --release -p examplebank -p examplebank-bench
fi

# ---- PostgreSQL ----------------------------------------------------------------------------
step "PostgreSQL: fresh database $DB, seeding $PEOPLE people and $TRANSACTIONS transactions"
psql "$PG_SERVER/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql "$PG_SERVER/postgres" -qAtc "CREATE DATABASE $DB" >/dev/null
mkdir -p "$OUT/pg-data"
"$HELPER" seed --database-url "$PG_URL" --keys-dir "$OUT/pg-data/keys" \
  --people "$PEOPLE" --transactions "$TRANSACTIONS" | tee -a "$RESULTS"
psql "$PG_URL" -qAtc "VACUUM ANALYZE" >/dev/null

step "PostgreSQL: the statements the server issues for one POST and one GET"
PG_LOG=$(pg_lsclusters -h | awk '$3 == 5432 { print $7 }' | head -n 1)
psql "$PG_SERVER/postgres" -qAtc "ALTER DATABASE $DB SET log_statement = 'all'" >/dev/null
start_server pg-statements "$OUT/pg-data" "$PG_URL"
relogin
"$HELPER" login --url "$URL" --first $((SESSIONS + 1)) --count 1 --out "$OUT/probe.txt"
TOKEN=$(head -n 1 "$OUT/sessions.txt" | awk '{ print $3 }')
sleep 1
offset=$(stat -c %s "$PG_LOG" 2>/dev/null || echo 0)
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"transactionName":"Statement check","category":"other","amount":"1.00"}' "$URL/bank/v1/transactions"
sleep 1
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/bank/v1/transactions?limit=50"
sleep 0.5
stop_server
psql "$PG_SERVER/postgres" -qAtc "ALTER DATABASE $DB RESET log_statement" >/dev/null
if [ -r "$PG_LOG" ]; then
  tail -c +"$((offset + 1))" "$PG_LOG" | grep -E 'LOG:  (execute|statement)' \
    | sed -E 's/^.*LOG:  //' >"$OUT/statements.log" || true
  echo "statements logged by PostgreSQL for one POST, then one GET (with the reward worker's):"
  cat "$OUT/statements.log"
fi

step "PostgreSQL: POST with the reward worker stopped (the request alone, as pgbench runs it)"
# pgbench issues only the request's statements; the server's reward worker would add its own
# writes for every charge on the same cores and database. This run leaves the worker out
# (every role but rewards and erasure); the next one, with every role, drains what it left.
start_server pg-alone "$OUT/pg-data" "$PG_URL" identity,users,transactions,ui
for c in $CONCURRENCIES; do settle_pg; wrk_run postgres-alone post "$c" "$RUN_SECONDS"; done
stop_server

step "PostgreSQL: server under wrk"
start_server pg "$OUT/pg-data" "$PG_URL"
wait_drained "the runs without the worker" pg_outbox
for c in $CONCURRENCIES; do settle_pg; wrk_run postgres post "$c" "$RUN_SECONDS"; done
sleep 3
pg_stuck "postgres POST runs" "$OUT/server-pg.log"
wait_drained "postgres POST runs" pg_outbox
relogin   # access tokens live 15 minutes
for c in $CONCURRENCIES; do settle_pg; wrk_run postgres get "$c" "$RUN_SECONDS"; done

step "P3: charge to points visible, under P1's load (64 clients)"
P3_C=$(echo "$CONCURRENCIES" | awk '{ print $NF }')
relogin
"$HELPER" login --url "$URL" --first $((SESSIONS + 1)) --count 1 --out "$OUT/probe.txt"
settle_pg
BENCH_TOKENS=$OUT/sessions.txt BENCH_BACKEND=postgres-p3 BENCH_REQUEST=post BENCH_CONCURRENCY=$P3_C \
  wrk -t2 -c"$P3_C" -d"$((RUN_SECONDS + 4))s" --timeout 30s -s bench/wrk/requests.lua "$URL" \
  >"$OUT/wrk-p3-load.txt" &
LOAD_PID=$!
sleep 2
"$HELPER" reward-latency --url "$URL" --token-file "$OUT/probe.txt" --seconds "$RUN_SECONDS" | tee -a "$RESULTS"
wait "$LOAD_PID" || true
LOAD_PID=
grep '^{"kind":"wrk"' "$OUT/wrk-p3-load.txt" | sed 's/"kind":"wrk"/"kind":"wrk_p3"/' | tee -a "$RESULTS" || true
sleep 3
pg_stuck "P3 load" "$OUT/server-pg.log"
wait_drained "P3 load" pg_outbox

step "P4: logins at 10x capacity"
"$HELPER" logins --url "$URL" --first $((SESSIONS + 2)) --people $((PEOPLE - SESSIONS - 1)) \
  --capacity-seconds 10 --seconds 15 --factor 10 | tee -a "$RESULTS"
python3 -c "import json,sys; print(json.dumps({'kind':'connection_cap','closed':int(sys.argv[1]),'answered':int(sys.argv[2])}))" \
  "$(grep -c 'connection limit reached; closing' "$OUT/server-pg.log" || true)" \
  "$(grep -c 'connection limit reached; answering' "$OUT/server-pg.log" || true)" | tee -a "$RESULTS"
sleep 5
"$HELPER" rss --pid "$SERVER_PID" --label "postgres server after the load, idle 5 s" | tee -a "$RESULTS"
stop_server

step "P6: split mode (identity, users, transactions, rewards as separate processes), POST under wrk"
# The same database and key store; identity answers at the monolith's address (the public base
# URL, so the simulator client's redirect and the tokens' issuer are unchanged) and the load goes
# to the transactions process, which asks the users process for each person's standing over
# HTTP (cached for standing_cache_ms). The rewards process writes points through the
# transactions service's API, as in a real split deployment.
SPLIT_PIDS=()
TX_URL=http://127.0.0.1:$((PORT + 2))
USERS_URL=http://127.0.0.1:$((PORT + 3))
REWARDS_URL=http://127.0.0.1:$((PORT + 4))
# start_role ROLE URL
start_role() {
  local role=$1 url=$2
  mkdir -p "$OUT/split-$role"
  EXAMPLEBANK_DATABASE_URL=$PG_URL EXAMPLEBANK_KEYS_DIR=$OUT/pg-data/keys \
    EXAMPLEBANK_PUBLIC_BASE_URL=$URL EXAMPLEBANK_MIGRATE_ON_START=false \
    EXAMPLEBANK_IDENTITY_URL=$URL EXAMPLEBANK_USERS_URL=$USERS_URL EXAMPLEBANK_TRANSACTIONS_URL=$TX_URL \
    EXAMPLEBANK_TRANSACTIONS_CLIENT_SECRET=bench-transactions-client-secret \
    "$BIN" serve --roles "$role" --addr "${url#http://}" --data-dir "$OUT/split-$role" \
    >"$OUT/server-split-$role.out" 2>"$OUT/server-split-$role.log" &
  SPLIT_PIDS+=("$!")
}
stop_split() {
  local pid
  for pid in "${SPLIT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SPLIT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  SPLIT_PIDS=()
}
start_role identity "$URL"
start_role users "$USERS_URL"
start_role transactions "$TX_URL"
start_role rewards "$REWARDS_URL"
for u in "$URL" "$USERS_URL" "$TX_URL" "$REWARDS_URL"; do
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null "$u/readyz" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS -o /dev/null "$u/readyz" || { stop_split; die "split mode: $u is not ready; see $OUT/server-split-*.log"; }
done
relogin
for c in $CONCURRENCIES; do settle_pg; wrk_run postgres-split post "$c" "$RUN_SECONDS" "$TX_URL"; done
sleep 3
wait_drained "split-mode POST runs" pg_outbox
stop_split

step "PostgreSQL: pgbench with the server's statements (server stopped)"
python3 bench/pgbench.py scripts "$OUT/sessions.txt" "$OUT/pgbench"
for request in post get; do
  mark=$(psql "$PG_URL" -qAtc "SELECT COALESCE(max(seq), 0) FROM outbox")
  for c in $CONCURRENCIES; do
    args=()
    for f in "$OUT"/pgbench/"${request}"_*.sql; do args+=(-f "$f@1"); done
    settle_pg
    "$PGBENCH" -n -M prepared -c "$c" -j 2 -T "$RUN_SECONDS" -l --log-prefix="$OUT/pgbench/log-$request-$c" \
      "${args[@]}" "$PG_URL" >"$OUT/pgbench-$request-$c.txt" 2>&1
    python3 bench/pgbench.py result "$OUT/pgbench/log-$request-$c" "$OUT/pgbench-$request-$c.txt" "$request" "$c" \
      | tee -a "$RESULTS"
  done
  # pgbench's charges have no worker behind them: drop their events.
  psql "$PG_URL" -qAtc "DELETE FROM outbox WHERE seq > $mark" >/dev/null
done

step "P5: start-up and idle memory of serve --roles all (PostgreSQL, 5 s idle)"
EXAMPLEBANK_DATABASE_URL=$PG_URL "$HELPER" startup --binary "$BIN" --addr 127.0.0.1:$((PORT + 1)) \
  --log "$OUT/startup-pg.log" --label "PostgreSQL, seeded" -- serve --roles all \
  --addr 127.0.0.1:$((PORT + 1)) --data-dir "$OUT/pg-data" | tee -a "$RESULTS"

# ---- SQLite --------------------------------------------------------------------------------
step "SQLite: seeding $PEOPLE people and $TRANSACTIONS transactions"
mkdir -p "$OUT/sqlite-data"
"$HELPER" seed --sqlite "$OUT/sqlite-data/examplebank.sqlite" --keys-dir "$OUT/sqlite-data/keys" \
  --people "$PEOPLE" --transactions "$TRANSACTIONS" | tee -a "$RESULTS"
mv "$OUT/sessions.txt" "$OUT/sessions-pg.txt"

step "SQLite: server under wrk"
start_server sqlite "$OUT/sqlite-data"
relogin
for c in $CONCURRENCIES; do settle_sqlite; wrk_run sqlite post "$c" "$RUN_SECONDS"; done
wait_drained "sqlite POST runs" sqlite_outbox
relogin
for c in $CONCURRENCIES; do settle_sqlite; wrk_run sqlite get "$c" "$RUN_SECONDS"; done
sleep 5
"$HELPER" rss --pid "$SERVER_PID" --label "sqlite server after the load, idle 5 s" | tee -a "$RESULTS"
stop_server

step "SQLite: direct loop with the server's statements (server stopped)"
for request in post get; do
  for c in $CONCURRENCIES; do
    settle_sqlite
    "$HELPER" sqlite-loop --sqlite "$OUT/sqlite-data/examplebank.sqlite" --tokens "$OUT/sessions.txt" \
      --kind "$request" --concurrency "$c" --seconds "$RUN_SECONDS" | tee -a "$RESULTS"
  done
done

step "P5: start-up and idle memory of serve --roles all (SQLite, 5 s idle)"
"$HELPER" startup --binary "$BIN" --addr 127.0.0.1:$((PORT + 1)) --log "$OUT/startup-sqlite.log" \
  --label "SQLite, seeded" -- serve --roles all --addr 127.0.0.1:$((PORT + 1)) --data-dir "$OUT/sqlite-data" \
  | tee -a "$RESULTS"
"$HELPER" startup --binary "$BIN" --addr 127.0.0.1:$((PORT + 1)) --log "$OUT/startup-empty.log" \
  --label "SQLite, first start in an empty directory" -- serve --roles all --addr 127.0.0.1:$((PORT + 1)) \
  --data-dir "$OUT/empty-data" | tee -a "$RESULTS"

# ---- report --------------------------------------------------------------------------------
step "results ($(nproc) cores, $(free -h | awk '/^Mem:/ { print $2 }') memory, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
python3 bench/report.py "$RESULTS"
