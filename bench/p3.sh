#!/usr/bin/env bash
# P3 alone, repeated: the time from an acknowledged charge to its points, under P1's load, on
# fresh copies of one seeded PostgreSQL database. Run by hand, never in CI; for A-B comparisons
# of the reward path, which a full bench/run.sh measures only once (docs/performance.md, "P3").
#
#   bench/p3.sh                                   # 4 runs of the release build
#   BENCH_BINS="/tmp/before /tmp/after" BENCH_RUNS=2 bench/p3.sh     # A-B-B-A, 2 pairs
#   BENCH_STALL=1 bench/p3.sh                     # hold the reward write-back for 1 s mid-run
#
# Each run: a copy of the seeded database (CREATE DATABASE ... TEMPLATE), `serve --roles all`,
# 64 people signed in, wrk POSTing at 64 connections for BENCH_SECONDS + 4 s, and the probe
# (examplebank-bench reward-latency) charging one more person and polling for the points.
# BENCH_STALL=<seconds> locks points_accounts (which, of this load, only the reward write-back
# touches; redemptions and erasure would wait too) for
# that long, 12 s into the run: a stand-in for a slow commit or checkpoint, after which the
# worker must catch up with the backlog while the charges keep coming.
# Same variables as bench/run.sh for the database and the size; the seeded template
# (eb_p3_seed) is kept between invocations with its keys under target/bench/p3-seed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PEOPLE=${BENCH_PEOPLE:-10000}
TRANSACTIONS=${BENCH_TRANSACTIONS:-1000000}
RUN_SECONDS=${BENCH_SECONDS:-34}
RUNS=${BENCH_RUNS:-4}
STALL=${BENCH_STALL:-}
PG_SERVER=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
SEED_DB=eb_p3_seed
DB=eb_p3
PORT=${BENCH_PORT:-18080}
URL=http://127.0.0.1:$PORT
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HELPER=${BENCH_HELPER:-$TARGET_DIR/release/examplebank-bench}
BINS=${BENCH_BINS:-$TARGET_DIR/release/examplebank}
SEED_DIR=$ROOT/target/bench/p3-seed
OUT=${BENCH_OUT:-$ROOT/target/bench/p3-$(date -u +%Y%m%dT%H%M%SZ)}

die() { echo "p3: $*" >&2; exit 1; }
for tool in psql wrk curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (see bench/run.sh)"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT"

if [ -z "${BENCH_BINS:-}" ] || [ -z "${BENCH_HELPER:-}" ]; then
  cargo build --release -p examplebank -p examplebank-bench
fi

for name in $(compgen -e | grep '^EXAMPLEBANK_' || true); do unset "$name"; done
export EXAMPLEBANK_REWARDS_CLIENT_SECRET=bench-rewards-client-secret
export EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE=1000000000
export EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE=1000000000
export EXAMPLEBANK_LOGIN_FAILURES_PER_ADDRESS=1000000000

# The template: seeded once, with the master key that wraps its people's keys.
has_seed=$(psql "$PG_SERVER/postgres" -qAtc "SELECT count(*) FROM pg_database WHERE datname = '$SEED_DB'")
if [ "$has_seed" != 1 ] || [ ! -s "$SEED_DIR/master" ]; then
  echo "p3: seeding $SEED_DB ($PEOPLE people, $TRANSACTIONS transactions)"
  rm -rf "$SEED_DIR" && mkdir -p "$SEED_DIR"
  python3 -c 'import base64,os;print("m1:"+base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))' \
    >"$SEED_DIR/master"
  psql "$PG_SERVER/postgres" -qAtc "DROP DATABASE IF EXISTS $SEED_DB WITH (FORCE)" >/dev/null
  psql "$PG_SERVER/postgres" -qAtc "CREATE DATABASE $SEED_DB" >/dev/null
  EXAMPLEBANK_MASTER_KEY=$(cat "$SEED_DIR/master") "$HELPER" seed --database-url "$PG_SERVER/$SEED_DB" \
    --keys-dir "$SEED_DIR/keys" --people "$PEOPLE" --transactions "$TRANSACTIONS" >/dev/null
  psql "$PG_SERVER/$SEED_DB" -qAtc "VACUUM ANALYZE" >/dev/null
fi
export EXAMPLEBANK_MASTER_KEY
EXAMPLEBANK_MASTER_KEY=$(cat "$SEED_DIR/master")

SERVER_PID=
LOAD_PID=
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=
  psql "$PG_SERVER/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# one_run LABEL BINARY
one_run() {
  local label=$1 bin=$2 data=$OUT/data-$1
  psql "$PG_SERVER/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  psql "$PG_SERVER/postgres" -qAtc "CREATE DATABASE $DB TEMPLATE $SEED_DB" >/dev/null
  rm -rf "$data" && mkdir -p "$data" && cp -a "$SEED_DIR/keys" "$data/keys"
  EXAMPLEBANK_DATABASE_URL=$PG_SERVER/$DB "$bin" serve --roles all --addr "127.0.0.1:$PORT" \
    --data-dir "$data" >"$OUT/server-$label.out" 2>"$OUT/server-$label.log" &
  SERVER_PID=$!
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null && break; sleep 0.1; done
  curl -fsS -o /dev/null "$URL/readyz" || die "the server did not become ready; see $OUT/server-$label.log"
  "$HELPER" login --url "$URL" --first 1 --count 64 --out "$OUT/sessions.txt" >/dev/null 2>&1
  "$HELPER" login --url "$URL" --first 65 --count 1 --out "$OUT/probe.txt" >/dev/null 2>&1
  [ "$(wc -l <"$OUT/sessions.txt")" = 64 ] || die "fewer than 64 sessions"
  psql "$PG_SERVER/$DB" -qAtc "VACUUM ANALYZE" >/dev/null
  psql "$PG_SERVER/$DB" -qAtc "CHECKPOINT" >/dev/null
  BENCH_TOKENS=$OUT/sessions.txt BENCH_BACKEND=$label BENCH_REQUEST=post BENCH_CONCURRENCY=64 \
    wrk -t2 -c64 -d"$((RUN_SECONDS + 4))s" --timeout 30s -s bench/wrk/requests.lua "$URL" \
    >"$OUT/wrk-$label.txt" &
  LOAD_PID=$!
  sleep 2
  if [ -n "$STALL" ]; then
    ( sleep 12
      psql "$PG_SERVER/$DB" -qAt -c "BEGIN" -c "LOCK TABLE points_accounts IN EXCLUSIVE MODE" \
        -c "SELECT pg_sleep($STALL)" -c "COMMIT" >/dev/null ) &
  fi
  local probe
  probe=$("$HELPER" reward-latency --url "$URL" --token-file "$OUT/probe.txt" --seconds "$RUN_SECONDS")
  wait "$LOAD_PID" || true
  LOAD_PID=
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  local rps
  rps=$(grep '^{"kind":"wrk"' "$OUT/wrk-$label.txt" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["rps"]))')
  python3 -c 'import json,sys; p=json.loads(sys.argv[1]); print(json.dumps({"kind":"p3_run","run":sys.argv[2],"binary":sys.argv[3],"stall_s":sys.argv[4] or None,"p50_ms":p["p50_ms"],"p99_ms":p["p99_ms"],"max_ms":p["max_ms"],"probes":p["samples"],"post_rps":int(sys.argv[5]),"pass":(p["p99_ms"]<=100) if not sys.argv[4] else None}))' \
    "$probe" "$label" "$bin" "$STALL" "$rps" | tee -a "$OUT/results.jsonl"
}

# A-B-B-A over the binaries given (one binary: RUNS runs of it).
read -r -a bins <<<"$BINS"
n=0
for ((i = 0; i < RUNS; i++)); do
  if ((i % 2 == 0)); then order=("${bins[@]}"); else order=(); for ((j = ${#bins[@]} - 1; j >= 0; j--)); do order+=("${bins[j]}"); done; fi
  for bin in "${order[@]}"; do
    n=$((n + 1))
    one_run "run$n" "$bin"
  done
done
echo "p3: results in $OUT/results.jsonl"
