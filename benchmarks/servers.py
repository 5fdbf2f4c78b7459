#!/usr/bin/env python3
"""Several servers on PostgreSQL against one on SQLite (issue 20), on loopback.

For each configuration (SQLite with one server; PostgreSQL with one, two and three servers on
one database), on a fresh database:
  1. the servers started (release build, mock AI, development auth, Stripe webhooks on, no
     Stripe API), USERS users funded with `myba-admin tokens adjust`;
  2. wrk GET /api/health, one wrk per server at once (CONNECTIONS spread over the servers),
     SECONDS long: requests/s summed over the servers, the worst server's p99;
  3. the same for POST /api/generate (benchmarks/generate.lua: the funded users rotated, every
     request a new generation that costs a token);
  4. WEBHOOKS signed checkout.session.completed deliveries, each a new event, from 8 client
     threads sending round-robin to the servers: client p50/p99, and every event processed;
  5. `myba-admin ledger verify` on the database.
Prints one markdown table. Compare within a run: the machine is shared and noisy, and every
server, PostgreSQL and wrk share its cores.

Usage: benchmarks/servers.py --server BIN --admin BIN --postgres URL [--seconds S] [--users N]
                             [--connections C] [--webhooks N] [--configs sqlite:1,postgres:1,…]
"""
import argparse
import concurrent.futures
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "whsec_bench_servers_" + os.urandom(8).hex()


def say(text):
    sys.stderr.write(f"[servers] {text}\n")
    sys.stderr.flush()


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def free_port():
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A release myba-server on a port of its own, logging warnings only (as a loaded
    production server would be set to), ready once /api/health answers."""

    def __init__(self, binary, database, log_dir, index):
        self.port = free_port()
        env = {
            "PATH": "/usr/bin:/bin", "PORT": str(self.port), "MYBA_DATABASE": database,
            "MYBA_LOG_FILE": os.path.join(log_dir, f"server-{index}.jsonl"), "MYBA_LOG_LEVEL": "warning",
            "STRIPE_WEBHOOK_SECRET": SECRET, "MYBA_MAX_GENERATIONS_PER_ACCOUNT": "10000", "MYBA_MAX_GENERATIONS_IN_FLIGHT": "10000",
        }
        self.process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server {index} ended: {self.process.stderr.read()[-2000:]}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/api/health")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server {index} did not answer within 60 s")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk(port, seconds, connections, script=None, path="/api/health", env=None):
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        command += ["-s", script]
    command.append(f"http://127.0.0.1:{port}{path}")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text):
    result = {"rps": 0.0, "p99": float("nan"), "non2xx": 0, "errors": 0}
    if match := re.search(r"Requests/sec:\s+([0-9.]+)", text):
        result["rps"] = float(match.group(1))
    if match := re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s|m)", text, re.M):
        result["p99"] = float(match.group(1)) * UNITS[match.group(2)]
    if match := re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", text):
        result["non2xx"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        result["errors"] = sum(int(g) for g in match.groups())
    return result


def load(servers, seconds, connections, script=None, path="/api/health", env=None):
    per_server = max(1, connections // len(servers))
    runs = [wrk(server.port, seconds, per_server, script, path, env) for server in servers]
    results = [parse_wrk(run.communicate()[0]) for run in runs]
    return {
        "rps": sum(r["rps"] for r in results),
        "p99": max(r["p99"] for r in results),
        "bad": sum(r["non2xx"] + r["errors"] for r in results),
    }


def checkout_completed(event_id, user):
    event = {
        "id": event_id, "object": "event", "api_version": "2024-06-20", "created": int(time.time()), "livemode": False,
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": "cs_" + event_id, "object": "checkout.session", "amount_total": 500, "currency": "usd",
            "client_reference_id": user, "metadata": {"user_id": user, "plan_id": "starter", "tokens": "10"},
            "mode": "payment", "payment_intent": "pi_" + event_id, "payment_status": "paid", "status": "complete",
        }},
    }
    return json.dumps(event, separators=(",", ":")).encode()


def webhooks(servers, count, users, run_id):
    latencies, statuses = [], {}
    lock = threading.Lock()

    def worker(worker_index):
        connections = {}
        for index in range(worker_index, count, 8):
            server = servers[index % len(servers)]
            connection = connections.get(server.port) or http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            connections[server.port] = connection
            body = checkout_completed(f"evt_{run_id}_{index}", f"user_bench{index % users + 1}")
            timestamp = int(time.time())
            signature = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "Stripe-Signature": f"t={timestamp},v1={signature}"}
            start = time.perf_counter()
            connection.request("POST", "/api/webhook/stripe", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            elapsed = (time.perf_counter() - start) * 1000
            try:
                status = json.loads(payload).get("status", "?") if response.status == 200 else f"http {response.status}"
            except ValueError:
                status = f"http {response.status}"
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
        for connection in connections.values():
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "statuses": statuses}


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True)


def run_config(args, backend, count, work):
    label = f"{backend}, {count} server{'s' if count > 1 else ''}"
    say(f"{label}: fresh database")
    if backend == "sqlite":
        database = os.path.join(work, f"bench-{count}.sqlite")
    else:
        name = f"myba_bench_{count}_{os.getpid()}"
        psql(args.postgres, f"DROP DATABASE IF EXISTS {name}")
        psql(args.postgres, f"CREATE DATABASE {name}")
        parts = urllib.parse.urlsplit(args.postgres)
        database = urllib.parse.urlunsplit(parts._replace(path="/" + name))
    log_dir = tempfile.mkdtemp(dir=work)
    servers = [Server(args.server, database, log_dir, index) for index in range(count)]
    try:
        say(f"{label}: funding {args.users} users")
        env = dict(os.environ, MYBA_OPERATOR="bench")
        for user in range(1, args.users + 1):
            # Signing in opens the account (development auth); the console funds it.
            connection = http.client.HTTPConnection("127.0.0.1", servers[0].port, timeout=30)
            connection.request("GET", "/api/account", headers={"Authorization": f"Bearer dev:user_bench{user}"})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 200:
                raise RuntimeError(f"GET /api/account for user_bench{user}: HTTP {response.status}")
            subprocess.run([args.admin, "tokens", "adjust", f"user_bench{user}", "+1000000", "--reason", "bench", "--yes", "--db", database],
                           check=True, capture_output=True, env=env)
        load(servers, 2, args.connections)  # warm-up
        say(f"{label}: health {args.seconds} s")
        health = load(servers, args.seconds, args.connections)
        say(f"{label}: generate {args.seconds} s")
        script_env = dict(os.environ, BENCH_USERS=str(args.users), BENCH_USER_PREFIX="user_bench")
        generate = load(servers, args.seconds, args.connections, os.path.join(HERE, "generate.lua"), "/api/generate", script_env)
        say(f"{label}: {args.webhooks} webhooks")
        hooks = webhooks(servers, args.webhooks, args.users, f"{backend}{count}")
        verify = subprocess.run([args.admin, "ledger", "verify", "--db", database], capture_output=True, text=True)
        return {
            "label": label, "health": health, "generate": generate, "webhooks": hooks,
            "verify": "clean" if verify.returncode == 0 else f"exit {verify.returncode}",
        }
    finally:
        for server in servers:
            server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--admin", required=True)
    parser.add_argument("--postgres", required=True, help="the cluster's URL (its maintenance database)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--configs", default="sqlite:1,postgres:1,postgres:2,postgres:3")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="myba-bench-servers.")
    rows = []
    try:
        for config in args.configs.split(","):
            backend, count = config.split(":")
            rows.append(run_config(args, backend, int(count), work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| configuration | health req/s | health p99 ms | generate req/s | generate p99 ms | webhook p50 ms | webhook p99 ms | non-2xx or errors | webhooks processed | ledger verify |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        processed = row["webhooks"]["statuses"].get("processed", 0)
        print(
            f"| {row['label']} | {row['health']['rps']:.0f} | {row['health']['p99']:.1f} | {row['generate']['rps']:.0f} | "
            f"{row['generate']['p99']:.1f} | {row['webhooks']['p50']:.1f} | {row['webhooks']['p99']:.1f} | "
            f"{row['health']['bad'] + row['generate']['bad']} | {processed}/{args.webhooks} | {row['verify']} |"
        )


if __name__ == "__main__":
    main()
