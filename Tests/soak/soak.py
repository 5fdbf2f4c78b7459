#!/usr/bin/env python3
"""Soak of myba-server's generation path against a misbehaving AI upstream (issue 25).

Starts Tests/soak/upstream.py (latencies around the deadline, hangs, mid-response resets, slow
bodies, errors) and the real myba-server in development auth, then:
  1. load: CLIENTS signed-in users each make REQUESTS generations one after another; midway the
     upstream is killed (connections reset, new ones refused) and comes back after a pause;
  2. settle: the upstream is killed for good; the server's open descriptors must return to their
     baseline with no CLOSE-WAIT socket, /api/health must answer quickly;
  3. accounts: tokens spent equal tickets answered, no generation still reserved, and
     `myba-admin ledger verify` is clean;
  4. shutdown: with TERM_REQUESTS generations hanging upstream, SIGTERM; the server must exit 0
     within its shutdown bound and give every reserved token back.
Prints a table, and with --json one JSON object of every measurement (what the Swift test
asserts on). Every loop is bounded; only loopback addresses are used.
"""
import argparse
import asyncio
import json
import os
import random
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Upstream:
    def __init__(self, deadline_ms: int, seed: int):
        self.deadline_ms, self.seed, self.port, self.process = deadline_ms, seed, 0, None

    def start(self, mode: str = "mix") -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "upstream.py"), "--port", str(self.port), "--deadline-ms", str(self.deadline_ms),
             "--seed", str(self.seed), "--mode", mode],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        self.port = json.loads(line)["port"]

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


async def http(port: int, method: str, path: str, body=None, headers=None, timeout: float = 60):
    """One request on its own connection: (status, parsed JSON or None, seconds); status -1 when
    the connection failed or was closed without an answer."""
    started = time.monotonic()
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", f"Content-Length: {len(payload)}"]
    if body is not None:
        lines.append("Content-Type: application/json")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, asyncio.TimeoutError, ConnectionError):
        return -1, None, time.monotonic() - started
    finally:
        if writer is not None:
            writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return -1, None, time.monotonic() - started
    try:
        parsed = json.loads(rest) if rest else None
    except ValueError:
        parsed = None
    return status, parsed, time.monotonic() - started


def descriptors(pid: int):
    """(open descriptors, sockets among them, TCP sockets in CLOSE-WAIT) of a process."""
    inodes = set()
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        count += 1
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    close_wait = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    if fields[3] == "08" and fields[9] in inodes:
                        close_wait += 1
        except OSError:
            pass
    return count, len(inodes), close_wait


class Server:
    def __init__(self, binary: str, workdir: str, env: dict, name: str = "server"):
        self.log = os.path.join(workdir, f"{name}.out")
        self.process = subprocess.Popen([binary], env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + 60
        self.port = None
        while self.port is None:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit(f"myba-server did not start:\n{open(self.log).read()[-4000:]}")
            time.sleep(0.05)
            with open(self.log) as handle:
                for line in handle:
                    if '"server listening"' in line:
                        self.port = json.loads(line)["http.port"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def spent_and_answered(database: str):
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        spent = -(db.execute("SELECT COALESCE(SUM(delta), 0) FROM ledger_entries WHERE kind IN ('consume', 'release') AND user_id LIKE 'soak_%'").fetchone()[0])
        completed = db.execute("SELECT COUNT(*) FROM generations WHERE payer_id LIKE 'soak_%' AND status = 'completed'").fetchone()[0]
        reserved = db.execute("SELECT COUNT(*) FROM generations WHERE payer_id LIKE 'soak_%' AND status = 'reserved'").fetchone()[0]
        negative = db.execute("SELECT COUNT(*) FROM balances WHERE tokens < 0").fetchone()[0]
    return spent, completed, reserved, negative


async def load(port: int, clients: int, requests: int, timeout: float, upstream: Upstream, gone_for: float, seed: int):
    """Every client's generations; the upstream disappears once 40 % of them are answered and
    comes back `gone_for` seconds later."""
    statuses: dict = {}
    latencies = []
    answered_keys = set()
    think = random.Random(seed)
    outage_due = asyncio.Event()
    total = clients * requests

    async def client(index: int) -> None:
        for number in range(requests):
            # People read a ticket before asking for the next: a pause of up to half a second.
            await asyncio.sleep(think.uniform(0, 0.5))
            key = f"soak-{index}-{number}"
            status, body, seconds = await http(
                port, "POST", "/api/generate", {"input": f"Soak request {index}/{number}: export reports as CSV"},
                {"Authorization": f"Bearer dev:soak_{index}", "Idempotency-Key": key}, timeout)
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(seconds)
            if status == 200:
                answered_keys.add(key)
            if len(latencies) >= total * 0.4:
                outage_due.set()

    async def disappear() -> None:
        await outage_due.wait()
        upstream.kill()
        await asyncio.sleep(gone_for)
        upstream.start()

    started = time.monotonic()
    outage = asyncio.create_task(disappear())
    await asyncio.gather(*(client(index) for index in range(clients)))
    elapsed = time.monotonic() - started
    if not outage.done():
        outage.cancel()
        if upstream.process is None or upstream.process.poll() is not None:
            upstream.start()
    return statuses, latencies, elapsed, len(answered_keys)


async def health_latencies(port: int, count: int):
    results = []
    for _ in range(count):
        status, body, seconds = await http(port, "GET", "/api/health", timeout=5)
        results.append((status, (body or {}).get("status"), seconds))
    return results


async def run(args) -> dict:
    raise_fd_limit(max(4096, args.clients * 4 + 1024))
    workdir = tempfile.mkdtemp(prefix="myba-soak-")
    database = os.path.join(workdir, "myba.sqlite")
    upstream = Upstream(args.deadline_ms, args.seed)
    upstream.start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
        "PORT": "0", "MYBA_DATABASE": database, "MYBA_LOG_FILE": os.path.join(workdir, "myba.jsonl"),
        "OPENROUTER_API_KEY": "sk-or-soak", "OPENROUTER_API_BASE": f"http://127.0.0.1:{upstream.port}/api/v1",
        "MYBA_AI_MODELS": "soak/model-a,soak/model-b", "MYBA_AI_TIMEOUT_MS": str(args.deadline_ms),
        "MYBA_SHUTDOWN_TIMEOUT_MS": str(args.shutdown_ms), "MYBA_HTTP_IDLE_CLOSE_MS": str(args.idle_close_ms),
    }
    if args.max_connections_per_host:
        env["MYBA_HTTP_MAX_CONNECTIONS_PER_HOST"] = str(args.max_connections_per_host)
    if args.max_in_flight:
        env["MYBA_MAX_GENERATIONS_IN_FLIGHT"] = str(args.max_in_flight)
    server = Server(args.server, workdir, env)
    logs = []
    result: dict = {"clients": args.clients, "requests_per_client": args.requests, "deadline_ms": args.deadline_ms, "workdir": workdir}
    try:
        # Warm-up: one generation, then concurrent reads that open the database's reader pool (up
        # to 5 connections, 2 descriptors each, kept for the process's life); once the idle
        # outbound connections are closed, that is the baseline.
        request_timeout = args.deadline_ms / 1000 * 2 + 30
        await http(upstream.port, "POST", "/control", {"mode": "fast"})
        await http(server.port, "POST", "/api/generate", {"input": "Warm-up ticket"}, {"Authorization": "Bearer dev:warmup"}, request_timeout)
        await http(upstream.port, "POST", "/control", {"mode": "mix"})
        await asyncio.gather(*(http(server.port, "GET", "/api/user-tokens/warmup", headers={"Authorization": "Bearer dev:warmup"}) for _ in range(100)))
        await asyncio.sleep(args.idle_close_ms / 1000 + 1)
        result["fds_baseline"], result["sockets_baseline"], _ = descriptors(server.process.pid)
        # The welcome grant (6) covers up to 6 requests a client; beyond that each account is
        # opened and funded through the console, as an operator would.
        if args.requests > 6:
            await asyncio.gather(*(http(server.port, "GET", f"/api/user-tokens/soak_{index}", headers={"Authorization": f"Bearer dev:soak_{index}"})
                                   for index in range(args.clients)))
            script = "".join(f"tokens adjust soak_{index} +{args.requests - 6} --reason soak --key soak-fund-{index} --yes\n" for index in range(args.clients))
            funded = subprocess.run([args.admin, "--db", database], input=script, capture_output=True, text=True, timeout=600)
            if funded.returncode != 0:
                raise SystemExit(f"funding failed: {funded.stderr[-2000:]}")
        statuses, latencies, elapsed, answered = await load(
            server.port, args.clients, args.requests, request_timeout, upstream, gone_for=1.0, seed=args.seed)
        result.update({
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "load_seconds": round(elapsed, 2),
            "answered": answered, "requests": sum(statuses.values()),
            "latency_p50_s": round(statistics.median(latencies), 3), "latency_max_s": round(max(latencies), 3),
            "server_alive_after_load": server.process.poll() is None,
        })
        upstream.kill()
        # Settle: descriptors back to the baseline, nothing in CLOSE-WAIT.
        settle_started = time.monotonic()
        fds, sockets, close_wait = descriptors(server.process.pid)
        result["fds_after_load"], result["sockets_after_load"], result["close_wait_after_load"] = fds, sockets, close_wait
        while time.monotonic() - settle_started < args.settle_seconds:
            fds, sockets, close_wait = descriptors(server.process.pid)
            if fds <= result["fds_baseline"] and sockets <= result["sockets_baseline"] and close_wait == 0:
                break
            await asyncio.sleep(0.25)
        result.update({"fds_settled": fds, "sockets_settled": sockets, "close_wait_settled": close_wait,
                       "settle_seconds": round(time.monotonic() - settle_started, 2)})
        health = await health_latencies(server.port, 20)
        result["health_statuses"] = sorted({f"{status}:{state}" for status, state, _ in health})
        result["health_max_ms"] = round(max(seconds for _, _, seconds in health) * 1000, 1)
        result["health_within_100ms"] = sum(1 for _, _, seconds in health if seconds < 0.1)
        spent, completed, reserved, negative = spent_and_answered(database)
        result.update({"tokens_spent": spent, "generations_completed": completed, "generations_reserved": reserved, "negative_balances": negative})
        verify = subprocess.run([args.admin, "--db", database, "ledger", "verify", "--json"], capture_output=True, text=True, timeout=120)
        result["verify_exit"] = verify.returncode

        # Shutdown with generations hanging upstream: the same database under a server whose AI
        # deadline is longer than its shutdown bound, so only the shutdown can end those calls.
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=args.shutdown_ms / 1000 + 20)
        except subprocess.TimeoutExpired:
            server.stop()
        result["idle_term_exit_code"] = server.process.returncode
        upstream.start(mode="hang")
        logs.append(server.log)
        server = Server(args.server, workdir, dict(env, MYBA_AI_TIMEOUT_MS="120000", OPENROUTER_API_BASE=f"http://127.0.0.1:{upstream.port}/api/v1"), name="server-term")
        answered_before = answered
        term_tasks = [asyncio.create_task(http(
            server.port, "POST", "/api/generate", {"input": f"Shutdown request {index}"},
            {"Authorization": f"Bearer dev:soak_term_{index}", "Idempotency-Key": f"soak-term-{index}"}, request_timeout))
            for index in range(args.term_requests)]
        for _ in range(100):
            stats = (await http(upstream.port, "GET", "/stats"))[1] or {}
            if stats.get("open", 0) > args.term_requests:
                break
            await asyncio.sleep(0.05)
        term_started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_code = None
        while time.monotonic() - term_started < args.shutdown_ms / 1000 + 20:
            exit_code = server.process.poll()
            if exit_code is not None:
                break
            await asyncio.sleep(0.05)
        result["term_exit_code"] = exit_code
        result["term_seconds"] = round(time.monotonic() - term_started, 2)
        term_statuses: dict = {}
        for status, _, _ in await asyncio.gather(*term_tasks):
            term_statuses[str(status)] = term_statuses.get(str(status), 0) + 1
        result["term_statuses"] = term_statuses
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
            result["term_reserved"] = db.execute("SELECT COUNT(*) FROM generations WHERE payer_id LIKE 'soak_term_%' AND status = 'reserved'").fetchone()[0]
            result["term_tokens_held"] = -(db.execute("SELECT COALESCE(SUM(delta), 0) FROM ledger_entries WHERE kind IN ('consume', 'release') AND user_id LIKE 'soak_term_%'").fetchone()[0])
            result["term_answered"] = db.execute("SELECT COUNT(*) FROM generations WHERE payer_id LIKE 'soak_term_%' AND status = 'completed'").fetchone()[0]
        verify = subprocess.run([args.admin, "--db", database, "ledger", "verify", "--json"], capture_output=True, text=True, timeout=120)
        result["verify_exit_after_term"] = verify.returncode
        result["answered_before_term"] = answered_before
    finally:
        server.stop()
        upstream.kill()
        # Errors other than the 502s of failed provider chains (which the mix makes on purpose).
        errors = []
        for log in logs + [server.log]:
            with open(log) as handle:
                errors += [line.strip()[:300] for line in handle
                           if ('"level":"error"' in line or '"level":"critical"' in line) and '"error.code":"provider_error"' not in line]
        result["server_log_errors"] = errors[:10]
    return result


def table(result: dict) -> str:
    rows = [
        ("clients × requests", f"{result['clients']} × {result['requests_per_client']} (deadline {result['deadline_ms']} ms)"),
        ("load time", f"{result.get('load_seconds')} s"),
        ("answers by status", json.dumps(result.get("statuses"))),
        ("latency p50 / max", f"{result.get('latency_p50_s')} s / {result.get('latency_max_s')} s"),
        ("descriptors baseline / after load / settled", f"{result.get('fds_baseline')} / {result.get('fds_after_load')} / {result.get('fds_settled')} in {result.get('settle_seconds')} s"),
        ("sockets baseline / after load / settled", f"{result.get('sockets_baseline')} / {result.get('sockets_after_load')} / {result.get('sockets_settled')}"),
        ("CLOSE-WAIT after load / settled", f"{result.get('close_wait_after_load')} / {result.get('close_wait_settled')}"),
        ("/api/health max of 20", f"{result.get('health_max_ms')} ms {result.get('health_statuses')}"),
        ("tokens spent / tickets answered / reserved", f"{result.get('tokens_spent')} / {result.get('answered')} / {result.get('generations_reserved')}"),
        ("ledger verify exit", str(result.get("verify_exit"))),
        ("SIGTERM when idle: exit", str(result.get("idle_term_exit_code"))),
        ("SIGTERM with hung calls: exit / seconds", f"{result.get('term_exit_code')} / {result.get('term_seconds')} s, answers {result.get('term_statuses')}"),
        ("after SIGTERM: reserved / tokens held / verify", f"{result.get('term_reserved')} / {result.get('term_tokens_held')} / {result.get('verify_exit_after_term')}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True, help="the myba-server binary")
    parser.add_argument("--admin", required=True, help="the myba-admin binary")
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--requests", type=int, default=5, help="generations per client, one after another (beyond the welcome grant's 6, accounts are funded through myba-admin)")
    parser.add_argument("--deadline-ms", type=int, default=1000, help="MYBA_AI_TIMEOUT_MS")
    parser.add_argument("--shutdown-ms", type=int, default=10000, help="MYBA_SHUTDOWN_TIMEOUT_MS")
    parser.add_argument("--idle-close-ms", type=int, default=2000, help="MYBA_HTTP_IDLE_CLOSE_MS")
    parser.add_argument("--term-requests", type=int, default=40)
    parser.add_argument("--settle-seconds", type=float, default=20)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--max-connections-per-host", type=int, default=0, help="MYBA_HTTP_MAX_CONNECTIONS_PER_HOST (0: the server's default)")
    parser.add_argument("--max-in-flight", type=int, default=0, help="MYBA_MAX_GENERATIONS_IN_FLIGHT (0: the server's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    args.server, args.admin = os.path.abspath(args.server), os.path.abspath(args.admin)
    result = asyncio.run(run(args))
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()
