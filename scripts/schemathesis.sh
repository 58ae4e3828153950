#!/usr/bin/env bash
# Property-based API testing with schemathesis against the OpenAPI document the server serves
# at /openapi.json (crates/app/src/openapi.json): starts `examplebank serve` on a fresh SQLite
# data directory, signs up and registers a person, logs in through the real PKCE flow, then
# lets schemathesis generate requests from the document and check every answer: no 5xx, and
# status code, content type, headers and body as documented. Exits non-zero on any failure.
# The figures of the run are written into docs/schemathesis.md.
#
# Environment:
#   EXAMPLEBANK_BIN           the binary (default: $CARGO_TARGET_DIR/debug/examplebank, or
#                             target/debug/examplebank; built with cargo when missing)
#   SCHEMATHESIS_MAX_EXAMPLES test cases per operation and phase (default 40)
#   SCHEMATHESIS_SEED         the random seed (default fixed, so runs are reproducible)
#   SCHEMATHESIS_WORKERS      concurrent workers (default 1)
#   SCHEMATHESIS_REPORT_DIR   keep schemathesis' NDJSON event reports there
#   SCHEMATHESIS_NO_DOCS=1    do not update docs/schemathesis.md
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-40}"
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

# Generous limits: schemathesis sends thousands of requests from one address as one person,
# and many failed sign-ins.
export EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE=1000000
export EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE=1000000
export EXAMPLEBANK_LOGIN_FAILURES_PER_ADDRESS=1000000
export EXAMPLEBANK_LOGIN_FAILURES_PER_ACCOUNT=1000000
export EXAMPLEBANK_LOG_FORMAT=text
export EXAMPLEBANK_LOG_LEVEL=warn
unset EXAMPLEBANK_DATABASE_URL EXAMPLEBANK_CONFIG EXAMPLEBANK_PUBLIC_BASE_URL

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

# --- a signed-up, registered person with a real access token --------------------------------
USERNAME="schemathesis-$(date +%s)-$RANDOM"
PASSWORD="st-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
status="$(curl -sS -o "$WORK/signup.json" -w '%{http_code}' -X POST "$URL/identity/v1/signup" \
  -H 'Content-Type: application/json' \
  --data "{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\",\"givenName\":\"Schema\",\"familyName\":\"Thesis\",\"email\":\"schemathesis@example.org\"}")"
[ "$status" = 201 ] || { log "sign-up answered $status: $(cat "$WORK/signup.json")"; exit 1; }

# PKCE: a random verifier and its S256 challenge.
VERIFIER="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
CHALLENGE="$(python3 -c 'import base64, hashlib, sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).decode().rstrip("="))' "$VERIFIER")"
REDIRECT="$URL/callback"
LOCATION="$(curl -sS -o /dev/null -w '%{redirect_url}' -X POST "$URL/identity/v1/authorize" \
  --data-urlencode response_type=code \
  --data-urlencode client_id=simulator \
  --data-urlencode "redirect_uri=$REDIRECT" \
  --data-urlencode 'scope=openid bank' \
  --data-urlencode state=schemathesis \
  --data-urlencode "code_challenge=$CHALLENGE" \
  --data-urlencode code_challenge_method=S256 \
  --data-urlencode "username=$USERNAME" \
  --data-urlencode "password=$PASSWORD")"
CODE="$(python3 -c 'import sys, urllib.parse as u; q = u.parse_qs(u.urlsplit(sys.argv[1]).query); print(q.get("code", [""])[0])' "$LOCATION")"
[ -n "$CODE" ] || { log "login did not return a code (redirect: $LOCATION)"; exit 1; }
curl -sS -o "$WORK/token.json" -X POST "$URL/identity/v1/token" \
  --data-urlencode grant_type=authorization_code \
  --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT" \
  --data-urlencode "code_verifier=$VERIFIER" \
  --data-urlencode client_id=simulator
TOKEN="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["access_token"])' "$WORK/token.json")"
AUTH=(-H "Authorization: Bearer $TOKEN")

call() { # METHOD PATH [JSON] -> prints the status
  local body=()
  if [ $# -ge 3 ]; then body=(-H 'Content-Type: application/json' --data "$3"); fi
  curl -sS -o /dev/null -w '%{http_code}' -X "$1" "$URL$2" "${AUTH[@]}" "${body[@]}"
}
expect() { # STATUS METHOD PATH [JSON]
  local want="$1"; shift
  local got; got="$(call "$@")"
  [ "$got" = "$want" ] || { log "$1 $2 answered $got, expected $want"; exit 1; }
}
# Registered with every consent and a few charges, so listings, spending, points, export and
# insights have something to show.
expect 204 POST /bank/v1/users '{"consentGiven": true}'
expect 200 PUT /bank/v1/users/self/consents/analytics '{"granted": true}'
expect 200 PUT /bank/v1/users/self/consents/profiling '{"granted": true}'
expect 204 POST /bank/v1/transactions '{"transactionName": "Corner Coffee", "category": "coffee", "amount": "3.50"}'
expect 204 POST /bank/v1/transactions '{"transactionName": "Fresh Market", "category": "groceries", "amount": 42.1}'
expect 204 POST /bank/v1/transactions '{"transactionName": "City Rail", "category": "transport", "amount": "12"}'
log "signed up, registered and signed in as $USERNAME"

# --- schemathesis -------------------------------------------------------------------------
REPORTS="${SCHEMATHESIS_REPORT_DIR:-$WORK/reports}"
mkdir -p "$REPORTS"
run_schemathesis() { # NAME [filter options...]
  local name="$1"; shift
  local status=0
  schemathesis run "$URL/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
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
    "$@" || status=$?
  return "$status"
}

failed=0
STARTED=$(date +%s)
# Everything but the erasure requests, which end the person and so every later request.
run_schemathesis main \
  --exclude-operation-id deleteSelf \
  --exclude-operation-id requestErasure || failed=1
# Then the erasure requests, last.
run_schemathesis erasure \
  --include-operation-id deleteSelf \
  --include-operation-id requestErasure || failed=1
ELAPSED=$(( $(date +%s) - STARTED ))

if grep -q -i 'panicked' "$WORK/server.log"; then
  log "the server panicked:"; grep -i -A3 'panicked' "$WORK/server.log" >&2
  failed=1
fi

# --- figures --------------------------------------------------------------------------------
FIGURES="$(python3 - "$REPORTS" <<'PY'
import json, pathlib, sys

operations = set()
cases = requests = 0
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.ndjson")):
    for line in path.read_text().splitlines():
        event = json.loads(line)
        scenario = event.get("ScenarioFinished")
        if not scenario:
            continue
        recorder = scenario.get("recorder") or {}
        label = recorder.get("label") or ""
        # Stateful scenarios are labelled by their chain of links; operations by "METHOD /path".
        if label.split(" ")[0].isupper() and " /" in label and "->" not in label:
            operations.add(label)
        cases += len(recorder.get("cases", {}))
        requests += len(recorder.get("interactions", {}))
print(f"{len(operations)} {cases} {requests}")
PY
)"
read -r OPERATIONS CASES REQUESTS <<<"$FIGURES"
RESULT=passed
[ "$failed" = 0 ] || RESULT=failed
log "$RESULT: $OPERATIONS operations, $CASES test cases, $REQUESTS requests in ${ELAPSED}s (schemathesis $SCHEMATHESIS_VERSION, seed $SEED, $MAX_EXAMPLES examples per operation and phase)"

if [ "${SCHEMATHESIS_NO_DOCS:-0}" != 1 ] && [ -f docs/schemathesis.md ]; then
  python3 - docs/schemathesis.md "$(date -u +%Y-%m-%d)" "$RESULT" "$OPERATIONS" "$CASES" "$REQUESTS" "$ELAPSED" "$SCHEMATHESIS_VERSION" "$SEED" "$MAX_EXAMPLES" <<'PY'
import re, sys

path, date, result, operations, cases, requests, elapsed, version, seed, examples = sys.argv[1:]
text = open(path).read()
figures = (
    "<!-- figures: written by scripts/schemathesis.sh -->\n"
    f"| date | result | operations | test cases | requests | time | schemathesis | seed | examples |\n"
    f"|---|---|---|---|---|---|---|---|---|\n"
    f"| {date} | {result} | {operations} | {cases} | {requests} | {elapsed} s | {version} | {seed} | {examples} |\n"
    "<!-- end figures -->"
)
text = re.sub(r"<!-- figures:.*?<!-- end figures -->", lambda _: figures, text, flags=re.S)
open(path, "w").write(text)
PY
fi

exit "$failed"
