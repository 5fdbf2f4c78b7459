#!/usr/bin/env python3
"""Helpers of benchmarks/server.sh (standard library only).

  webhooks        send N signed checkout.session.completed deliveries, one at a time, over one
                  keep-alive connection; print client-side latencies and the answers' statuses
  log-durations   percentiles of the access log's duration.ms for one method and path, optionally
                  only for requests that ended inside a time window
  repl            time myba-admin from spawn (under a pseudo-terminal) until its prompt shows
  insert-sessions write N stale, untransferred anonymous sessions in one transaction
  insert-ledger   write U customers and N ledger entries (adjust) with their balances in one
                  transaction, so that `myba-admin ledger verify` is clean (benchmarks/backup.sh)
  wrk             parse wrk --latency output into JSON
"""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import pty
import re
import select
import signal
import sqlite3
import statistics
import sys
import time
from datetime import datetime, timezone


def percentile(values, fraction):
    """Nearest-rank percentile (what wrk and most tools report)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def checkout_completed(event_id, session_id, user_id, tokens, amount, payment_intent):
    """The exact shape of Tests/MyBAServerTests/WebhookTests.swift's Deliveries.checkoutCompleted."""
    event = {
        "id": event_id, "object": "event", "api_version": "2024-06-20", "created": int(time.time()),
        "livemode": False, "type": "checkout.session.completed",
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "amount_total": amount, "currency": "usd",
            "customer": f"cus_{user_id}", "client_reference_id": user_id,
            "metadata": {"user_id": user_id, "plan_id": "starter", "tokens": str(tokens)},
            "mode": "payment", "payment_intent": payment_intent, "payment_status": "paid", "status": "complete",
        }},
    }
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()


def stripe_signature(body, secret, timestamp):
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def cmd_webhooks(args):
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
    latencies, statuses, failures = [], {}, []
    run = args.run_id
    for index in range(args.count):
        user = f"{args.user_prefix}{index % args.users + 1}"
        body = checkout_completed(f"evt_bench_{run}_{index}", f"cs_bench_{run}_{index}", user,
                                  tokens=50, amount=1600, payment_intent=f"pi_bench_{run}_{index}")
        headers = {"Content-Type": "application/json",
                   "Stripe-Signature": stripe_signature(body, args.secret, int(time.time()))}
        start = time.perf_counter()
        connection.request("POST", "/api/webhook/stripe", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        latencies.append((time.perf_counter() - start) * 1000)
        try:
            status = json.loads(payload).get("status", "?") if response.status == 200 else f"http {response.status}"
        except ValueError:
            status = f"http {response.status} (not JSON)"
        statuses[status] = statuses.get(status, 0) + 1
        if status != "processed" and len(failures) < 5:
            failures.append(payload.decode(errors="replace")[:300])
    connection.close()
    json.dump({"count": args.count, "client_p50_ms": percentile(latencies, 0.50),
               "client_p99_ms": percentile(latencies, 0.99), "client_max_ms": max(latencies),
               "statuses": statuses, "failures": failures}, sys.stdout)
    print()


def cmd_latency(args):
    """Sequential GETs over one keep-alive connection: the latency of a lone request."""
    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
    times = []
    for _ in range(args.count):
        start = time.perf_counter()
        connection.request("GET", args.path)
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter() - start) * 1000)
        if response.status != 200:
            sys.stderr.write(f"GET {args.path}: HTTP {response.status}\n")
            sys.exit(1)
    connection.close()
    json.dump({"count": args.count, "median_ms": statistics.median(times), "p90_ms": percentile(times, 0.9)}, sys.stdout)
    print()


def parse_ts(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def cmd_log_durations(args):
    since = datetime.fromtimestamp(args.since, timezone.utc) if args.since is not None else None
    until = datetime.fromtimestamp(args.until, timezone.utc) if args.until is not None else None
    durations, statuses = [], {}
    with open(args.log, "rb") as handle:
        for raw in handle:
            if b'"msg":"request"' not in raw or args.path.encode() not in raw:
                continue
            line = json.loads(raw)
            if line.get("http.path") != args.path or line.get("http.method") != args.method:
                continue
            if since or until:
                ts = parse_ts(line["ts"])
                if (since and ts < since) or (until and ts > until):
                    continue
            durations.append(float(line["duration.ms"]))
            status = str(line.get("http.status"))
            statuses[status] = statuses.get(status, 0) + 1
    json.dump({"count": len(durations), "p50_ms": percentile(durations, 0.50), "p99_ms": percentile(durations, 0.99),
               "max_ms": max(durations) if durations else float("nan"), "statuses": statuses}, sys.stdout)
    print()


ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]|[\x01\x02]")


def time_repl_once(argv, env, pattern, timeout):
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    seen = b""
    elapsed = None
    deadline = start + timeout
    try:
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.perf_counter()))
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if pattern.search(ANSI.sub(b"", seen)):
                elapsed = (time.perf_counter() - start) * 1000
                break
        if elapsed is not None:
            os.write(fd, b"exit\n")
            end = time.time() + 5
            while time.time() < end:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                try:
                    select.select([fd], [], [], 0.05) and os.read(fd, 4096)
                except OSError:
                    pass
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return elapsed, ANSI.sub(b"", seen).decode(errors="replace")


def cmd_repl(args):
    env = dict(os.environ)
    env["MYBA_ADMIN_HISTORY"] = args.history
    env.setdefault("TERM", "xterm")
    argv = [os.path.abspath(args.binary), "--db", args.db]
    pattern = re.compile(rb"myba-admin \[[^\]]*\] [^\n]*> ")
    times = []
    for index in range(args.warmup + args.runs):
        elapsed, seen = time_repl_once(argv, env, pattern, timeout=10)
        if elapsed is None:
            sys.stderr.write(f"no prompt within 10 s; the terminal showed:\n{seen}\n")
            sys.exit(1)
        if index >= args.warmup:
            times.append(elapsed)
    json.dump({"runs": args.runs, "median_ms": statistics.median(times), "mean_ms": statistics.mean(times),
               "min_ms": min(times), "max_ms": max(times)}, sys.stdout)
    print()


def cmd_insert_sessions(args):
    """Rows as AnonymousSessions.startAnonymousSession writes them: id anon_ + 48 random hex,
    fingerprint as 64 random hex (what a salted HMAC-SHA256 looks like; unique), client address
    as the salted HMAC-SHA256 of one of 4096 addresses, granted 3, 0 <= used <= granted, UTC timestamps in SQLTimestamp's
    form, never transferred; last seen 2 days ago and earlier, 2 s apart. One transaction, the
    rows made by SQL itself (a recursive CTE) so a million take seconds."""
    connection = sqlite3.connect(args.db, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA cache_size = -524288")  # 512 MiB: the random-key indexes stay in memory
    address_key = b"myba-bench:address"
    connection.execute("CREATE TEMP TABLE bench_addresses (i INTEGER PRIMARY KEY, hash TEXT NOT NULL)")
    connection.executemany("INSERT INTO bench_addresses VALUES (?, ?)", (
        (i, hmac.new(address_key, f"10.{i // 256}.{i % 256}.1".encode(), hashlib.sha256).hexdigest()) for i in range(4096)))
    start = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("""
        WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < ?)
        INSERT INTO anonymous_sessions (id, fingerprint_hash, client_address_hash, granted, used, created_at, last_seen_at)
        SELECT 'anon_' || lower(hex(randomblob(24))), lower(hex(randomblob(32))), a.hash, 3, n % 4,
               strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 days', '-1 hours', '-' || (2 * n) || ' seconds'),
               strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 days', '-' || (2 * n) || ' seconds')
        FROM seq JOIN bench_addresses a ON a.i = n % 4096
        """, (args.count,))
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - start
    total = connection.execute("SELECT COUNT(*) FROM anonymous_sessions WHERE transferred_to IS NULL").fetchone()[0]
    connection.close()
    json.dump({"inserted": args.count, "seconds": seconds, "untransferred": total}, sys.stdout)
    print()


def cmd_insert_ledger(args):
    """U customers named PREFIX1..U, each with N/U ledger entries and the balance they sum to, as
    the ledger writes them: kind 'adjust' (its rule moves `tokens` only, so verify recomputes
    tokens = SUM(delta) and nothing else), a user's first entry funding it with --funding tokens
    (so that the benchmark's generations never run out) and every other one +1, a random
    idempotency key and request id like the server's, UTC timestamps in SQLTimestamp's form
    spread over the past (ids and times increase together), actor 'bench'. Entries rotate over
    the users, as a real ledger interleaves them. One transaction, the rows made by SQL itself
    (a recursive CTE) so a million take seconds. No stripe_outbox rows: the seeded history is
    old, long mirrored (verify and db check do not look at the outbox)."""
    if args.users < 1 or args.count < args.users:
        sys.stderr.write("insert-ledger needs 1 <= --users <= --count\n")
        sys.exit(2)
    connection = sqlite3.connect(args.db, isolation_level=None)
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA cache_size = -524288")  # 512 MiB: the random-key indexes stay in memory
    connection.execute("CREATE TEMP TABLE bench_users (i INTEGER PRIMARY KEY, user_id TEXT NOT NULL)")
    connection.executemany("INSERT INTO bench_users VALUES (?, ?)",
                           ((i, f"{args.user_prefix}{i}") for i in range(1, args.users + 1)))
    spacing = args.spacing
    start = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("""
        INSERT INTO customers (user_id, email, created_at)
        SELECT user_id, NULL, strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (? * ? + 3600) || ' seconds')
        FROM bench_users ORDER BY i
        """, (args.count, spacing))
    connection.execute("""
        WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < ?)
        INSERT INTO ledger_entries (user_id, kind, delta, idempotency_key, actor, reason, request_id, created_at)
        SELECT u.user_id, 'adjust', CASE WHEN n < ? THEN ? ELSE 1 END,
               'bench:' || lower(hex(randomblob(16))), 'bench', 'benchmark seed', lower(hex(randomblob(16))),
               strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ((? - n) * ?) || ' seconds')
        FROM seq JOIN bench_users u ON u.i = n % ? + 1
        """, (args.count, args.users, args.funding, args.count, spacing, args.users))
    connection.execute("""
        INSERT INTO balances (user_id, tokens, tokens_used, tokens_purchased, tokens_transferred, updated_at)
        SELECT e.user_id, SUM(e.delta), 0, 0, 0, MAX(e.created_at)
        FROM ledger_entries e JOIN bench_users u ON u.user_id = e.user_id
        GROUP BY e.user_id
        """)
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - start
    entries = connection.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0]
    customers = connection.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    connection.close()
    json.dump({"inserted": args.count, "users": args.users, "seconds": seconds, "entries": entries,
               "customers": customers, "bytes": os.path.getsize(args.db)}, sys.stdout)
    print()


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    return float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")


def cmd_wrk(args):
    text = open(args.file).read()
    result = {"requests_per_s": float("nan"), "requests": 0, "non_2xx": 0, "socket_errors": 0, "timeouts": 0}
    if match := re.search(r"Requests/sec:\s+([0-9.]+)", text):
        result["requests_per_s"] = float(match.group(1))
    if match := re.search(r"([0-9]+) requests in", text):
        result["requests"] = int(match.group(1))
    for percent in ("50", "75", "90", "99"):
        if match := re.search(rf"^\s+{percent}%\s+(\S+)", text, re.M):
            result[f"p{percent}_ms"] = to_ms(match.group(1))
    if match := re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", text):
        result["non_2xx"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        result["socket_errors"] = sum(int(g) for g in match.groups()[:3])
        result["timeouts"] = int(match.group(4))
    json.dump(result, sys.stdout)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("webhooks")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--user-prefix", default="user_bench")
    p.add_argument("--run-id", default=str(os.getpid()))
    p.set_defaults(run=cmd_webhooks)

    p = commands.add_parser("latency")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/api/health")
    p.add_argument("--count", type=int, default=50)
    p.set_defaults(run=cmd_latency)

    p = commands.add_parser("log-durations")
    p.add_argument("--log", required=True)
    p.add_argument("--method", default="POST")
    p.add_argument("--path", required=True)
    p.add_argument("--since", type=float, help="unix time: only requests logged at or after it")
    p.add_argument("--until", type=float, help="unix time: only requests logged at or before it")
    p.set_defaults(run=cmd_log_durations)

    p = commands.add_parser("repl")
    p.add_argument("--binary", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.set_defaults(run=cmd_repl)

    p = commands.add_parser("insert-sessions")
    p.add_argument("--db", required=True)
    p.add_argument("--count", type=int, default=1_000_000)
    p.set_defaults(run=cmd_insert_sessions)

    p = commands.add_parser("insert-ledger")
    p.add_argument("--db", required=True)
    p.add_argument("--count", type=int, default=1_000_000, help="ledger entries")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--user-prefix", default="user_bench")
    p.add_argument("--funding", type=int, default=1_000_000, help="delta of each user's first entry")
    p.add_argument("--spacing", type=int, default=30, help="seconds between consecutive entries")
    p.set_defaults(run=cmd_insert_ledger)

    p = commands.add_parser("wrk")
    p.add_argument("file")
    p.set_defaults(run=cmd_wrk)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
