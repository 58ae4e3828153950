#!/usr/bin/env bash
# Profiles the server under one kind of request with valgrind's callgrind (this machine's perf
# has no hardware counters: `perf stat -e instructions true` says "not supported").
# Run by hand, after bench/run.sh, never in CI:
#
#   bench/profile.sh post      # POST /bank/v1/transactions
#   bench/profile.sh get       # GET /bank/v1/transactions?limit=50
#   bench/profile.sh logins    # POST /identity/v1/authorize (the password check)
#
# It seeds a small PostgreSQL database (table sizes hardly change the per-request CPU profile),
# starts the release server under callgrind, drives BENCH_SECONDS (60) of load with wrk at 16
# connections (the login case with the bench helper), stops the server so callgrind writes its
# file, and prints the functions with the highest inclusive cost. Output in
# target/bench/profile-<kind>/.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:-post}
case "$KIND" in post|get|logins) ;; *) echo "usage: bench/profile.sh post|get|logins" >&2; exit 2 ;; esac
ROOT=$PWD
OUT=$ROOT/target/bench/profile-$KIND
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/examplebank
HELPER=$TARGET_DIR/release/examplebank-bench
PG_SERVER=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
DB=eb_profile
PG_URL=$PG_SERVER/$DB
PORT=${BENCH_PORT:-18090}
URL=http://127.0.0.1:$PORT
RUN_SECONDS=${BENCH_SECONDS:-60}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

rm -rf "$OUT"; mkdir -p "$OUT/data"
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  psql "$PG_SERVER/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for name in $(compgen -e | grep '^EXAMPLEBANK_' || true); do unset "$name"; done
export EXAMPLEBANK_MASTER_KEY="m1:$(python3 -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')"
export EXAMPLEBANK_REWARDS_CLIENT_SECRET=bench-rewards-client-secret
export EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE=1000000000
export EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE=1000000000
export EXAMPLEBANK_LOGIN_FAILURES_PER_ADDRESS=1000000000
# Slow under valgrind: give requests and pool waits room.
export EXAMPLEBANK_REQUEST_TIMEOUT_SECONDS=300

cargo build --release -p examplebank -p examplebank-bench
psql "$PG_SERVER/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql "$PG_SERVER/postgres" -qAtc "CREATE DATABASE $DB" >/dev/null
"$HELPER" seed --database-url "$PG_URL" --keys-dir "$OUT/data/keys" --people 1000 --transactions 100000 >/dev/null
psql "$PG_URL" -qAtc "VACUUM ANALYZE" >/dev/null

# Sessions first, from the server at full speed (logins under callgrind take seconds each).
EXAMPLEBANK_DATABASE_URL=$PG_URL "$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$OUT/data" \
  >/dev/null 2>"$OUT/server-plain.log" &
SERVER_PID=$!
until curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; do sleep 0.1; done
"$HELPER" login --url "$URL" --first 1 --count 16 --out "$OUT/sessions.txt"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true

EXAMPLEBANK_DATABASE_URL=$PG_URL valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$OUT/data" >/dev/null 2>"$OUT/server.log" &
SERVER_PID=$!
until curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; do sleep 0.5; done
if [ "$KIND" = logins ]; then
  "$HELPER" logins --url "$URL" --first 100 --people 800 --capacity-seconds "$RUN_SECONDS" \
    --seconds 1 --factor 1 | tee "$OUT/load.json"
else
  BENCH_TOKENS=$OUT/sessions.txt BENCH_BACKEND=postgres-callgrind BENCH_REQUEST=$KIND BENCH_CONCURRENCY=16 \
    wrk -t2 -c16 -d"${RUN_SECONDS}s" --timeout 60s -s bench/wrk/requests.lua "$URL" | tee "$OUT/load.txt"
fi
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
SERVER_PID=
callgrind_annotate --inclusive=yes "$OUT/callgrind.out" >"$OUT/inclusive.txt" 2>/dev/null || true
callgrind_annotate "$OUT/callgrind.out" >"$OUT/exclusive.txt" 2>/dev/null || true
echo "== highest inclusive cost (all threads; $OUT/inclusive.txt)"
grep -E '^ *[0-9,]+ \(' "$OUT/inclusive.txt" | head -n 60 | cut -c1-220 || true
echo "== highest self cost ($OUT/exclusive.txt)"
grep -E '^ *[0-9,]+ \(' "$OUT/exclusive.txt" | head -n 40 | cut -c1-220 || true
