#!/usr/bin/env python3
"""pgbench scripts and results for bench/run.sh.

  pgbench.py scripts SESSIONS_FILE OUT_DIR   writes post_N.sql and get_N.sql, one per session
  pgbench.py result LOG_PREFIX STDOUT_FILE REQUEST CONCURRENCY   prints one JSON result line

Each script issues exactly the statements the server issues for one request (see
crates/store/src/identity.rs `session_state`, transactions.rs `create_charge` (on PostgreSQL
without an Idempotency-Key, `create_charge_in_one_statement`) and `list_transactions`), with
the person and session of one real login; the server sends its values as typed parameters,
which the casts here stand for. pgbench picks one of the scripts at random for each
transaction (equal weights), as wrk picks one of the same tokens.
"""
import glob
import json
import os
import random
import re
import sys
import time

SESSION_CHECK = (
    "SELECT a.status, (SELECT f.revoked_at FROM token_families f WHERE f.id = '{sid}' "
    "AND f.account_id = a.id) AS revoked_at, "
    "(SELECT COUNT(*) FROM token_families f WHERE f.id = '{sid}' AND f.account_id = a.id) AS known "
    "FROM accounts a WHERE a.id = '{sub}';"
)
CATEGORIES = ["groceries", "fuel", "dining", "coffee", "transport", "shopping", "travel",
              "entertainment", "utilities", "health", "other"]


def scripts(sessions_file, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    now = int(time.time() * 1_000_000)
    month = time.strftime("%Y-%m", time.gmtime())
    paths = []
    with open(sessions_file) as f:
        sessions = [line.split() for line in f if line.strip()]
    for n, (sub, sid, _token) in enumerate(sessions, 1):
        check = SESSION_CHECK.format(sub=sub, sid=sid)
        # A sealed merchant name is 24 bytes of nonce, the name, and a 16-byte tag.
        sealed = os.urandom(24 + len("Bench merchant 123") + 16).hex()
        category = random.choice(CATEGORIES)
        tx_id = "CAST(:r1 AS TEXT) || '-' || CAST(:r2 AS TEXT)"
        post = "\n".join([
            "\\set amount random(100, 20000)",
            "\\set r1 random(1, 9000000000000000000)",
            "\\set r2 random(1, 9000000000000000000)",
            f"\\set now {now} + random(0, 1000000000)",
            check,
            # create_charge_in_one_statement: the standing check and both inserts, one statement.
            "WITH standing AS ("
            f"SELECT consent_rewards, restricted_at, erasure_requested_at FROM bank_users WHERE id = '{sub}'), "
            "created AS ("
            "INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, month, created_at) "
            f"SELECT {tx_id}, '{sub}', '\\x{sealed}'::bytea, '{category}', CAST(:amount AS BIGINT), '{month}', CAST(:now AS BIGINT) "
            "FROM standing WHERE erasure_requested_at IS NULL AND consent_rewards = 1 AND restricted_at IS NULL "
            "RETURNING id), "
            "queued AS ("
            "INSERT INTO outbox (kind, subject, created_at, available_at) "
            "SELECT 'transaction.created', id, CAST(:now AS BIGINT), CAST(:now AS BIGINT) FROM created) "
            "SELECT consent_rewards, restricted_at, erasure_requested_at FROM standing;",
            "",
        ])
        get = "\n".join([
            check,
            "SELECT seq, id, user_id, name_enc, category, amount_minor, points_earned, processed, "
            f"created_at FROM transactions WHERE user_id = '{sub}' AND seq < 9223372036854775807 "
            "ORDER BY seq DESC LIMIT 50;",
            "",
        ])
        for kind, text in (("post", post), ("get", get)):
            path = os.path.join(out_dir, f"{kind}_{n}.sql")
            with open(path, "w") as out:
                out.write(text)
            paths.append(path)


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), -(-int(p * len(sorted_values)) // 100)))
    return sorted_values[rank - 1]


def result(log_prefix, stdout_file, request, concurrency):
    latencies = []
    for path in glob.glob(log_prefix + ".*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us
                if len(parts) >= 3:
                    latencies.append(int(parts[2]))
    latencies.sort()
    with open(stdout_file) as f:
        text = f.read()
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    print(json.dumps({
        "kind": "pgbench",
        "backend": "postgres",
        "request": request,
        "concurrency": int(concurrency),
        "requests": len(latencies),
        "rps": float(tps.group(1)) if tps else float("nan"),
        "p50_ms": percentile(latencies, 50) / 1000,
        "p99_ms": percentile(latencies, 99) / 1000,
        "failed": int(failed.group(1)) if failed else 0,
    }))


if __name__ == "__main__":
    if sys.argv[1] == "scripts":
        scripts(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "result":
        result(*sys.argv[2:6])
    else:
        sys.exit("usage: pgbench.py scripts|result ...")
