#!/usr/bin/env python3
"""Reads bench/run.sh's results.jsonl and prints the figures, the ratios (written like 0.83x
with the multiplication sign) and PASS/FAIL for targets P1-P6 of issue 7. Also writes the
same as Markdown next to the results (report.md), for docs/performance.md.

  report.py RESULTS_JSONL
"""
import json
import math
import os
import sys

TIMES = "\u00d7"


def ratio(a, b):
    if not b or math.isnan(a) or math.isnan(b):
        return float("nan")
    return a / b


def fmt_ratio(r):
    return "n/a" if math.isnan(r) else f"{r:.2f}{TIMES}"


def fmt(v, digits=1):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:,.{digits}f}"


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    by_kind = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)

    def find(kind, **match):
        for row in by_kind.get(kind, []):
            if all(str(row.get(k)) == str(v) for k, v in match.items()):
                return row
        return None

    lines = []
    say = lines.append
    say("| backend | request | clients | server req/s | p50 ms | p99 ms | DB limit req/s | p50 ms | p99 ms | req/s ratio | p99 ratio | errors |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")
    comparisons = {}
    for backend, limit_kind, limit_name in (("postgres", "pgbench", "pgbench"),
                                            ("postgres-alone", "pgbench", "pgbench"),
                                            ("sqlite", "sqlite_loop", "direct loop")):
        for request in ("post", "get"):
            for row in sorted((r for r in by_kind.get("wrk", [])
                               if r["backend"] == backend and r["request"] == request),
                              key=lambda r: int(r["concurrency"])):
                c = int(row["concurrency"])
                limit = find(limit_kind, request=request, concurrency=c) or {}
                rr = ratio(row["rps"], limit.get("rps", float("nan")))
                pr = ratio(row["p99_ms"], limit.get("p99_ms", float("nan")))
                comparisons[(backend, request, c)] = (rr, pr, row)
                errors = row.get("non2xx", 0) + row.get("socket_errors", 0)
                method = "POST" if request == "post" else "GET"
                say(f"| {backend} | {method} /bank/v1/transactions | {c} | {fmt(row['rps'])} | "
                    f"{fmt(row['p50_ms'], 2)} | {fmt(row['p99_ms'], 2)} | "
                    f"{fmt(limit.get('rps'))} ({limit_name}) | {fmt(limit.get('p50_ms'), 2)} | "
                    f"{fmt(limit.get('p99_ms'), 2)} | **{fmt_ratio(rr)}** | {fmt_ratio(pr)} | {errors} |")

    verdicts = []

    def verdict(name, ok, detail):
        status = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        verdicts.append((name, status, detail))

    def compare_target(name, request, floor, p99_cap=None, backend="postgres"):
        parts, oks = [], []
        for (b, r, c), (rr, pr, row) in sorted(comparisons.items()):
            if b != backend or r != request:
                continue
            ok = not math.isnan(rr) and rr >= floor
            text = f"c={c}: {fmt_ratio(rr)} req/s"
            if p99_cap is not None:
                ok = ok and not math.isnan(pr) and pr <= p99_cap
                text += f", p99 {fmt_ratio(pr)}"
            if row.get("non2xx", 0) or row.get("socket_errors", 0):
                ok = False
                text += " (errors)"
            oks.append(ok)
            parts.append(text)
        goal = f"req/s >= {floor}{TIMES}" + (f", p99 <= {p99_cap}{TIMES}" if p99_cap else "")
        verdict(name, all(oks) if oks else None, f"{goal} of the DB limit; " + "; ".join(parts))

    compare_target("P1 POST /bank/v1/transactions (PostgreSQL vs pgbench)", "post", 0.8, 3.0)
    compare_target("P1 with the reward worker stopped (the request's statements alone, as pgbench runs them)",
                   "post", 0.8, 3.0, "postgres-alone")
    compare_target("P2 GET /bank/v1/transactions, 50 a page (PostgreSQL vs pgbench)", "get", 0.7)
    compare_target("P1 on SQLite vs direct loop (same thresholds, for reference)", "post", 0.8, 3.0, "sqlite")
    compare_target("P2 on SQLite vs direct loop (same threshold, for reference)", "get", 0.7, None, "sqlite")

    p3 = find("reward_latency")
    if p3:
        ok = p3["samples"] > 0 and p3["timeouts"] == 0 and p3["p99_ms"] <= 100
        verdict("P3 charge -> points visible under P1's load (c=64)", ok,
                f"p99 {fmt(p3['p99_ms'])} ms (<= 100), p50 {fmt(p3['p50_ms'])} ms, max "
                f"{fmt(p3['max_ms'])} ms, {p3['samples']} samples, {p3['timeouts']} not visible within 60 s")
    else:
        verdict("P3 charge -> points visible", None, "not measured")

    p4 = find("logins")
    if p4:
        ok = (p4["server_errors"] == 0 and p4["too_many_without_retry_after"] == 0
              and p4["transport_errors"] == 0 and p4["admitted"] > 0
              and p4["admitted_p99_ms"] <= 200)
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(p4["statuses"].items()))
        verdict("P4 logins at 10x capacity", ok,
                f"capacity {fmt(p4['capacity_per_s'])}/s, offered {fmt(p4['offered_per_s'])}/s; "
                f"statuses {statuses}; 5xx {p4['server_errors']}; 429 without Retry-After "
                f"{p4['too_many_without_retry_after']}; no answer {p4['transport_errors']} "
                f"({p4.get('connection_errors', 0)} connections closed unanswered, {p4.get('timeouts', 0)} timeouts); "
                f"admitted p50 {fmt(p4['admitted_p50_ms'])} ms, p99 {fmt(p4['admitted_p99_ms'])} ms (<= 200)")
    else:
        verdict("P4 logins at 10x capacity", None, "not measured")

    for cap in by_kind.get("connection_cap", []):
        verdicts.append(("(info) connections beyond the server's cap (max_connections)", "info",
                         f"{cap.get('answered', 0)} answered 503 with Retry-After, {cap['closed']} closed "
                         f"unanswered, during the PostgreSQL runs (only P4 opens more than 1,024)"))
    starts = by_kind.get("startup", [])
    if starts:
        oks, parts = [], []
        for s in starts:
            mib = s["idle_rss_kib"] / 1024
            ready = s["ready_ms"]
            ok = ready is not None and ready <= 500 and mib <= 30
            oks.append(ok)
            parts.append(f"{s['label']}: ready {fmt(ready)} ms, idle RSS {mib:.1f} MiB")
        verdict("P5 serve --roles all: idle RSS <= 30 MiB, ready <= 0.5 s", all(oks), "; ".join(parts))
    for s in by_kind.get("rss", []):
        verdicts.append((f"(info) RSS {s['label']}", "info",
                         f"{s['rss_kib'] / 1024:.1f} MiB now, peak {s['hwm_kib'] / 1024:.1f} MiB"))
    split = sorted((r for r in by_kind.get("wrk", []) if r["backend"] == "postgres-split"),
                   key=lambda r: int(r["concurrency"]))
    if split:
        oks, parts = [], []
        for row in split:
            c = int(row["concurrency"])
            mono = find("wrk", backend="postgres", request="post", concurrency=c) or {}
            rr = ratio(row["rps"], mono.get("rps", float("nan")))
            ok = not math.isnan(rr) and rr >= 0.7
            text = (f"c={c}: {fmt(row['rps'])} req/s (p50 {fmt(row['p50_ms'], 2)} ms, p99 "
                    f"{fmt(row['p99_ms'], 2)} ms) vs monolith {fmt(mono.get('rps'))}: {fmt_ratio(rr)}")
            if row.get("non2xx", 0) or row.get("socket_errors", 0):
                ok = False
                text += f" ({row.get('non2xx', 0) + row.get('socket_errors', 0)} errors)"
            oks.append(ok)
            parts.append(text)
        verdict("P6 split mode >= 0.7x monolith on P1 (POST against the transactions process)",
                all(oks), "; ".join(parts))
    else:
        verdict("P6 split mode >= 0.7x monolith on P1", None, "not measured")
    for st in by_kind.get("stuck", []):
        verdicts.append((f"(info) connections left inside a transaction, after {st['after']}", "info",
                         f"{st['idle_in_transaction']} sessions idle in transaction for > 2 s; "
                         f"{st['warnings']} 'transaction in progress' warnings in the server log so far"))
    for d in by_kind.get("drain", []):
        verdicts.append((f"(info) reward worker drain after {d['after']}", "info",
                         f"{d['events']} events in {fmt(d['seconds'])} s = {fmt(d['per_s'])} events/s"
                         + (f", {d['left']} STILL PENDING (gave up waiting)" if d.get('left') else "")))

    say("")
    say("| target | result | figures |")
    say("|---|---|---|")
    for name, status, detail in verdicts:
        say(f"| {name} | **{status}** | {detail} |")
    seed = by_kind.get("seed", [])
    if seed:
        say("")
        for s in seed:
            say(f"Seeded {s['people']:,} people and {s['transactions']:,} transactions in {s['seconds']:.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(os.path.dirname(path), "report.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1])
