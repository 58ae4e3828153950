#!/usr/bin/env bash
# Property-based API testing with schemathesis against the OpenAPI document the server serves
# at /openapi.json (crates/app/src/openapi.json). Starts `examplebank serve` on a fresh SQLite
# data directory, signs up and registers a person and creates an administrator, logs both in
# through the real authorization-code + PKCE flow, then lets schemathesis generate requests
# from the document and check every answer: no 5xx, and status code, content type, headers and
# body as documented. Exits non-zero on any failure. The figures of the run are written into
# docs/schemathesis.md.
#
# Three runs, in this order:
#   person   every operation except the erasure requests, as the registered person
#   admin    the administration routes and the reward write-back, as the administrator
#   erasure  DELETE /bank/v1/users/self and POST /bank/v1/users/self/erasure, last, because
#            they end the person (and so every later request of theirs)
#
# Environment:
#   EXAMPLEBANK_BIN           the binary (default: $CARGO_TARGET_DIR/debug/examplebank, or
#                             target/debug/examplebank; built with cargo when missing)
#   SCHEMATHESIS_MAX_EXAMPLES test cases per operation and phase (default 100)
#   SCHEMATHESIS_SEED         the random seed (default fixed, so runs are reproducible)
#   SCHEMATHESIS_WORKERS      concurrent workers (default 1)
#   SCHEMATHESIS_REPORT_DIR   keep schemathesis' NDJSON event reports there
#   SCHEMATHESIS_DATABASE_URL run the server on this (empty) PostgreSQL database, not SQLite
#   SCHEMATHESIS_NO_DOCS=1    do not update docs/schemathesis.md
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
SEED="${SCHEMATHESIS_SEED:-20261201}"
# One worker: with several, hypothesis (describing its strategies with Python's ast module from
# several threads at once) fails on CPython 3.11 with "AST constructor recursion depth mismatch".
WORKERS="${SCHEMATHESIS_WORKERS:-1}"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

# --- schemathesis ---------------------------------------------------------------------------
if [ "$(schemathesis --version 2>/dev/null || true)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION"
  pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "schemathesis==$SCHEMATHESIS_VERSION"
fi
schemathesis --version

# --- the server -----------------------------------------------------------------------------
BIN="${EXAMPLEBANK_BIN:-${CARGO_TARGET_DIR:-target}/debug/examplebank}"
if [ ! -x "$BIN" ]; then
  log "building $BIN"
  cargo build -p examplebank --locked
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The server refuses EXAMPLEBANK_* variables it does not know (CI exports
# EXAMPLEBANK_TEST_POSTGRES_URL for the tests), and inherited settings would change the run:
# start from none.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^EXAMPLEBANK_' || true)
# Generous limits: schemathesis sends thousands of requests from one address as one person,
# and many failed sign-ins.
export EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE=1000000
export EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE=1000000
export EXAMPLEBANK_LOGIN_FAILURES_PER_ADDRESS=1000000
export EXAMPLEBANK_LOGIN_FAILURES_PER_ACCOUNT=1000000
export EXAMPLEBANK_LOG_FORMAT=text
export EXAMPLEBANK_LOG_LEVEL=warn
if [ -n "${SCHEMATHESIS_DATABASE_URL:-}" ]; then
  # PostgreSQL instead of SQLite: the database should be empty; a master key and the rewards
  # client's secret are required.
  export EXAMPLEBANK_DATABASE_URL="$SCHEMATHESIS_DATABASE_URL"
  EXAMPLEBANK_MASTER_KEY="st:$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')"
  EXAMPLEBANK_REWARDS_CLIENT_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
  export EXAMPLEBANK_MASTER_KEY EXAMPLEBANK_REWARDS_CLIENT_SECRET
fi

random_secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

# The administrator is created before the server starts, in the same data directory.
ADMIN_USERNAME="schemathesis-admin-$RANDOM"
ADMIN_PASSWORD="st-$(random_secret)"
printf '%s\n' "$ADMIN_PASSWORD" |
  "$BIN" admin create "$ADMIN_USERNAME" --data-dir "$WORK/data" >/dev/null 2>"$WORK/admin.log" ||
  { log "cannot create the administrator:"; cat "$WORK/admin.log" >&2; exit 1; }

# Port 0: the server takes a free port and prints the URL it listens on.
"$BIN" serve --addr 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/stdout" 2>"$WORK/server.log" &
SERVER_PID=$!
URL=""
for _ in $(seq 1 100); do
  URL="$(grep -o 'http://[0-9.:]*' "$WORK/stdout" 2>/dev/null | head -n 1 || true)"
  [ -n "$URL" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server stopped:"; cat "$WORK/server.log" >&2; exit 1
  fi
  sleep 0.1
done
if [ -z "$URL" ]; then
  log "the server did not start:"; cat "$WORK/server.log" >&2; exit 1
fi
log "server at $URL"

# --- real access tokens ---------------------------------------------------------------------
# login USERNAME PASSWORD SCOPE: the authorization-code flow with PKCE (S256), as the phone
# app does it; prints the access token.
login() {
  local verifier challenge redirect location code
  verifier="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
  challenge="$(python3 -c 'import base64, hashlib, sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).decode().rstrip("="))' "$verifier")"
  redirect="$URL/callback"
  location="$(curl -sS -o /dev/null -w '%{redirect_url}' -X POST "$URL/identity/v1/authorize" \
    --data-urlencode response_type=code \
    --data-urlencode client_id=simulator \
    --data-urlencode "redirect_uri=$redirect" \
    --data-urlencode "scope=$3" \
    --data-urlencode state=schemathesis \
    --data-urlencode "code_challenge=$challenge" \
    --data-urlencode code_challenge_method=S256 \
    --data-urlencode "username=$1" \
    --data-urlencode "password=$2")"
  code="$(python3 -c 'import sys, urllib.parse as u; q = u.parse_qs(u.urlsplit(sys.argv[1]).query); print(q.get("code", [""])[0])' "$location")"
  [ -n "$code" ] || { log "login of $1 did not return a code (redirect: $location)"; return 1; }
  curl -sS -X POST "$URL/identity/v1/token" \
    --data-urlencode grant_type=authorization_code \
    --data-urlencode "code=$code" \
    --data-urlencode "redirect_uri=$redirect" \
    --data-urlencode "code_verifier=$verifier" \
    --data-urlencode client_id=simulator |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

USERNAME="schemathesis-$RANDOM$RANDOM"
PASSWORD="st-$(random_secret)"
status="$(curl -sS -o "$WORK/signup.json" -w '%{http_code}' -X POST "$URL/identity/v1/signup" \
  -H 'Content-Type: application/json' \
  --data "{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\",\"givenName\":\"Schema\",\"familyName\":\"Thesis\",\"email\":\"schemathesis@example.org\"}")"
[ "$status" = 201 ] || { log "sign-up answered $status: $(cat "$WORK/signup.json")"; exit 1; }
TOKEN="$(login "$USERNAME" "$PASSWORD" 'openid bank')"
ADMIN_TOKEN="$(login "$ADMIN_USERNAME" "$ADMIN_PASSWORD" 'openid admin')"

expect() { # STATUS METHOD PATH [JSON], as the person
  local want="$1" method="$2" path="$3" body=() got
  if [ $# -ge 4 ]; then body=(-H 'Content-Type: application/json' --data "$4"); fi
  got="$(curl -sS -o /dev/null -w '%{http_code}' -X "$method" "$URL$path" \
    -H "Authorization: Bearer $TOKEN" "${body[@]}")"
  [ "$got" = "$want" ] || { log "$method $path answered $got, expected $want"; exit 1; }
}
# Registered with every consent and a few charges, so listings, spending, points, export and
# insights have something to show.
expect 204 POST /bank/v1/users '{"consentGiven": true}'
expect 200 PUT /bank/v1/users/self/consents/analytics '{"granted": true}'
expect 200 PUT /bank/v1/users/self/consents/profiling '{"granted": true}'
expect 204 POST /bank/v1/transactions '{"transactionName": "Corner Coffee", "category": "coffee", "amount": "3.50"}'
expect 204 POST /bank/v1/transactions '{"transactionName": "Fresh Market", "category": "groceries", "amount": 42.1}'
expect 204 POST /bank/v1/transactions '{"transactionName": "City Rail", "category": "transport", "amount": "12"}'
log "signed in as the registered person $USERNAME and the administrator $ADMIN_USERNAME"

# --- schemathesis -------------------------------------------------------------------------
REPORTS="${SCHEMATHESIS_REPORT_DIR:-$WORK/reports}"
mkdir -p "$REPORTS"
REPORTS="$(cd "$REPORTS" && pwd)"
rm -f "$REPORTS"/*.ndjson
run_schemathesis() { # NAME TOKEN [filter options...]
  local name="$1" token="$2"
  shift 2
  log "run: $name"
  # From the scratch directory, so schemathesis' local cache (.schemathesis/) stays out of the
  # work tree and every run starts afresh.
  (cd "$WORK" && schemathesis run "$URL/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,response_headers_conformance \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers "$WORKERS" \
    --max-redirects 0 \
    --request-timeout 30 \
    --generation-database none \
    --no-color \
    --report ndjson --report-ndjson-path "$REPORTS/$name.ndjson" \
    "$@")
}

failed=0
STARTED=$(date +%s)
run_schemathesis person "$TOKEN" \
  --exclude-operation-id deleteSelf \
  --exclude-operation-id requestErasure || failed=1
run_schemathesis admin "$ADMIN_TOKEN" \
  --include-path-regex '^/admin/|^/bank/v1/transactions/reward/' || failed=1
run_schemathesis erasure "$TOKEN" \
  --include-operation-id deleteSelf \
  --include-operation-id requestErasure || failed=1
ELAPSED=$(( $(date +%s) - STARTED ))

if grep -q -i 'panicked' "$WORK/server.log"; then
  log "the server panicked:"; grep -i -A3 'panicked' "$WORK/server.log" >&2
  failed=1
fi
if [ "$failed" != 0 ]; then
  log "server log (last 40 lines):"; tail -n 40 "$WORK/server.log" >&2
fi

# --- figures --------------------------------------------------------------------------------
# From schemathesis' NDJSON events: the operations tested, and the test cases and requests of
# every scenario (one request per test case, plus the steps of stateful scenarios).
FIGURES="$(python3 - "$REPORTS" <<'PY'
import json, pathlib, sys

operations = set()
cases = requests = 0
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.ndjson")):
    for line in path.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if not scenario:
            continue
        recorder = scenario.get("recorder") or {}
        label = recorder.get("label") or ""
        method, _, rest = label.partition(" ")
        if method.isupper() and rest.startswith("/"):
            operations.add(label)
        cases += len(recorder.get("cases", {}))
        requests += len(recorder.get("interactions", {}))
print(len(operations), cases, requests)
PY
)"
read -r OPERATIONS CASES REQUESTS <<<"$FIGURES"
RESULT=passed
[ "$failed" = 0 ] || RESULT=failed
log "$RESULT: $OPERATIONS operations, $CASES test cases, $REQUESTS requests in ${ELAPSED}s (schemathesis $SCHEMATHESIS_VERSION, seed $SEED, at most $MAX_EXAMPLES examples per operation and phase)"

if [ "${SCHEMATHESIS_NO_DOCS:-0}" != 1 ] && [ -f docs/schemathesis.md ]; then
  python3 - docs/schemathesis.md "$(date -u +%Y-%m-%d)" "$RESULT" "$OPERATIONS" "$CASES" \
    "$REQUESTS" "$ELAPSED" "$SCHEMATHESIS_VERSION" "$SEED" "$MAX_EXAMPLES" <<'PY'
import re, sys

path, date, result, operations, cases, requests, elapsed, version, seed, examples = sys.argv[1:]
figures = (
    "<!-- figures: written by scripts/schemathesis.sh -->\n"
    "| date (UTC) | result | operations | test cases | requests | time | schemathesis | seed | examples |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
    f"| {date} | {result} | {operations} | {cases} | {requests} | {elapsed} s | {version} | {seed} | {examples} |\n"
    "<!-- end figures -->"
)
text = open(path).read()
text = re.sub(r"<!-- figures:.*?<!-- end figures -->", lambda _: figures, text, flags=re.S)
open(path, "w").write(text)
PY
fi

exit "$failed"
