#!/usr/bin/env python3
"""Generation at real AI latency (issue 16): the release myba-server against a local OpenRouter
stand-in that answers after a fixed latency L, with C concurrent clients, plain and streamed.

For each (L, C, mode) it prints: tickets/s ÷ (C / L) (1.0: every client always has a ticket on
the way), p50 and p99 latency ÷ L, for streams the time to the first delta minus the upstream's
(the stand-in writes its first delta at L/4), the server's peak RSS, errors, and whether the
ledger is exact afterwards (`myba-admin ledger verify` clean, tokens spent = tickets answered).

Clients are signed in (`Bearer dev:…`); a client moves to a fresh account every 6 tickets (the
welcome grant), so no request is refused for want of tokens. Their first requests are spread over
L (independent users), and what is measured starts after that ramp; `--lockstep` starts them all
at once instead (a burst of C requests every L). Also per run: the CPU of the server, the clients
and the stand-in (its own process), the server's own p50/p99 from its access log, and the
kernel's listen-queue overflows. Standard library only; loopback.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "soak"))
from soak import Server, raise_fd_limit  # noqa: E402

TICKET = json.dumps({
    "title": "Add CSV export to reports",
    "description": "Users need to export report tables as CSV.",
    "acceptanceCriteria": ["An Export button downloads the table as CSV", "Columns match the table"],
    "priority": "high", "storyPoints": 5, "labels": ["reports", "export"],
})


class FixedLatencyUpstream:
    """POST /api/v1/chat/completions answered after `latency` s; with "stream": true, five
    `data:` chunks from latency/4 to latency, then [DONE] (chunked transfer encoding)."""

    def __init__(self, latency: float):
        self.latency = latency
        self.open = 0

    async def handle(self, reader, writer):
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))) or b"{}")
                if body.get("stream"):
                    await self.stream(writer)
                else:
                    await asyncio.sleep(self.latency)
                    payload = json.dumps({"id": "gen-bench", "choices": [{"index": 0, "message": {"role": "assistant", "content": TICKET}}]}).encode()
                    writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError, asyncio.CancelledError):
            # Cancelled: the run is over and its loop closes the idle connections.
            pass
        finally:
            self.open -= 1
            writer.close()

    async def stream(self, writer):
        def chunk(data: bytes) -> bytes:
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        size = len(TICKET) // 5 + 1
        pieces = [TICKET[i:i + size] for i in range(0, len(TICKET), size)]
        start = time.monotonic()
        for index, piece in enumerate(pieces):
            due = self.latency / 4 + index * (self.latency * 3 / 4) / max(len(pieces) - 1, 1)
            await asyncio.sleep(max(0, due - (time.monotonic() - start)))
            event = json.dumps({"id": "gen-bench", "choices": [{"index": 0, "delta": {"content": piece}}]})
            writer.write(chunk(f"data: {event}\n\n".encode()))
            await writer.drain()
        writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


def serve_upstream(latency: float, port_pipe) -> None:
    """The stand-in in a process of its own, so that its event loop neither waits on the
    clients' nor hides in their CPU time."""
    raise_fd_limit(65536)

    async def main():
        listener = await asyncio.start_server(FixedLatencyUpstream(latency).handle, "127.0.0.1", 0, backlog=8192)
        port_pipe.send(listener.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def generate(port: int, user: str, key: str, streamed: bool, timeout: float):
    """One ticket: (ok, seconds to the answer, seconds to the first delta or None)."""
    started = time.monotonic()
    payload = json.dumps({"input": "Export reports as CSV"}).encode()
    lines = [
        "POST /api/generate HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", "Content-Type: application/json",
        f"Content-Length: {len(payload)}", f"Authorization: Bearer dev:{user}", f"Idempotency-Key: {key}",
    ]
    if streamed:
        lines.append("Accept: text/event-stream")
    writer = None
    first = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        received = b""
        deadline = started + timeout
        while True:
            piece = await asyncio.wait_for(reader.read(65536), max(deadline - time.monotonic(), 0.001))
            if not piece:
                break
            received += piece
            if streamed and first is None and b"event: delta" in received:
                first = time.monotonic() - started
    except (OSError, asyncio.TimeoutError, ConnectionError):
        return False, time.monotonic() - started, first
    finally:
        if writer is not None:
            writer.close()
    elapsed = time.monotonic() - started
    head, _, rest = received.partition(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.1 200") and (b"event: ticket" in rest if streamed else b'"tokensRemaining"' in rest)
    return ok, elapsed, first


async def drive(port: int, clients: int, latency: float, seconds: float, streamed: bool, tag: str, stagger: bool):
    """Each client asks for tickets back to back until the time is up. Staggered, client i makes
    its first request at i/C × L, so that the C clients are spread over the upstream's latency
    as independent users are; in lockstep they all start at once and stay in waves (a burst of
    C requests every L). Results: (ok, seconds, first delta, started, ended)."""
    began = time.monotonic()
    stop_at = began + seconds
    results = []

    async def client(index: int):
        if stagger:
            await asyncio.sleep(index / clients * latency)
        count = 0
        while time.monotonic() < stop_at:
            user = f"bench_{tag}_{index}_{count // 6}"
            started = time.monotonic()
            ok, elapsed, first = await generate(port, user, f"{tag}-{index}-{count}", streamed, timeout=latency * 4 + 10)
            results.append((ok, elapsed, first, started, time.monotonic()))
            count += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return results, began, time.monotonic()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process's CPU time: the clients' (the stand-in runs in a process of its own)."""
    times = os.times()
    return times.user + times.system


def server_side_latencies(log: str) -> list:
    """The server's own duration.ms (seconds) of every POST /api/generate, from its access log:
    compared with the clients' times it says how much of the latency the server added."""
    durations = []
    with open(log, "rb") as handle:
        for raw in handle:
            if b'"msg":"request"' not in raw or b"/api/generate" not in raw:
                continue
            line = json.loads(raw)
            if line.get("http.path") == "/api/generate" and line.get("http.method") == "POST":
                durations.append(float(line["duration.ms"]) / 1000)
    return durations


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    with open("/proc/net/netstat") as handle:
        lines = [line.split() for line in handle if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0][1:], lines[1][1:])).get("ListenOverflows", 0))


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ledger_exact(admin: str, database: str, answered: int):
    verify = subprocess.run([admin, "ledger", "verify", "--db", database], capture_output=True, text=True)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        spent = db.execute("SELECT COALESCE(SUM(tokens_used), 0) FROM balances WHERE user_id LIKE 'bench_%'").fetchone()[0]
    return verify.returncode == 0, spent == answered, spent


def percentile(values, share):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_one(args, latency: float, clients: int, streamed: bool) -> dict:
    receiving, sending = multiprocessing.get_context("fork").Pipe(duplex=False)
    upstream = multiprocessing.get_context("fork").Process(target=serve_upstream, args=(latency, sending), daemon=True)
    upstream.start()
    upstream_port = receiving.recv()
    workdir = tempfile.mkdtemp(prefix="myba-latency-")
    database = os.path.join(workdir, "myba.sqlite")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORT": "0", "MYBA_DATABASE": database,
        "MYBA_LOG_FILE": os.path.join(workdir, "myba.jsonl"),
        "OPENROUTER_API_KEY": "sk-or-bench", "OPENROUTER_API_BASE": f"http://127.0.0.1:{upstream_port}/api/v1",
        "MYBA_AI_MODELS": "bench-model", "MYBA_AI_TIMEOUT_MS": str(int(latency * 4000 + 5000)),
        "MYBA_MAX_GENERATIONS_IN_FLIGHT": "4096", "MYBA_HTTP_MAX_CONNECTIONS_PER_HOST": "4096",
    }
    server = Server(args.server, workdir, env)
    try:
        tag = f"{int(latency * 1000)}_{clients}_{'s' if streamed else 'p'}"
        server_cpu_before, driver_cpu_before, upstream_cpu_before = cpu_seconds(server.process.pid), own_cpu_seconds(), cpu_seconds(upstream.pid)
        overflows_before = listen_overflows()
        seconds = args.seconds * (1 if latency <= 1 else 1.5) + (latency if args.stagger else 0)
        results, began, ended = await drive(server.port, clients, latency, seconds, streamed, tag, args.stagger)
        # Staggered, the first L seconds are the ramp: measured are the requests started after
        # it, and the answers that arrived after it.
        window = began + (latency if args.stagger else 0)
        elapsed = ended - window
        server_cpu = cpu_seconds(server.process.pid) - server_cpu_before
        driver_cpu = own_cpu_seconds() - driver_cpu_before
        upstream_cpu = cpu_seconds(upstream.pid) - upstream_cpu_before
        overflows = listen_overflows() - overflows_before
        rss = peak_rss_mb(server.process.pid)
    finally:
        server.stop()
        upstream.terminate()
        upstream.join(10)
    every_answer = [r for r in results if r[0]]
    errors = len(results) - len(every_answer)
    verified, exact, spent = ledger_exact(args.admin, database, len(every_answer))
    answered = [r for r in every_answer if r[3] >= window]
    delivered = len([r for r in every_answer if r[4] >= window])
    latencies = [r[1] for r in answered]
    served = server_side_latencies(os.path.join(workdir, "myba.jsonl"))
    firsts = [r[2] for r in answered if r[2] is not None]
    return {
        "latency_s": latency, "clients": clients, "mode": "stream" if streamed else "plain",
        "arrivals": "staggered" if args.stagger else "lockstep",
        "tickets": delivered, "seconds": round(elapsed, 1), "tickets_per_s": round(delivered / elapsed, 1),
        "throughput_ratio": round(delivered / elapsed / (clients / latency), 3),
        "p50_ratio": round(statistics.median(latencies) / latency, 3) if latencies else None,
        "p99_ratio": round(percentile(latencies, 0.99) / latency, 3) if latencies else None,
        "first_delta_minus_upstream_ms": round((statistics.median(firsts) - latency / 4) * 1000, 1) if firsts else None,
        "first_delta_p99_minus_upstream_ms": round((percentile(firsts, 0.99) - latency / 4) * 1000, 1) if firsts else None,
        "peak_rss_mb": round(rss, 1), "errors": errors, "ledger_verify_clean": verified, "spent_equals_answered": exact,
        # Where the two cores went: the server's and the driver's (clients + stand-in, one Python
        # process, so at most one core) average cores, and the server's CPU per ticket, which
        # bounds what the server alone could answer: cores / (CPU s per ticket).
        "server_cores": round(server_cpu / (ended - began), 2), "driver_cores": round(driver_cpu / (ended - began), 2),
        "upstream_cores": round(upstream_cpu / (ended - began), 2),
        "server_cpu_ms_per_ticket": round(server_cpu / len(every_answer) * 1000, 2) if every_answer else None,
        # The same percentiles from the server's access log (request received to answer written).
        "server_p50_ratio": round(statistics.median(served) / latency, 3) if served else None,
        "server_p99_ratio": round(percentile(served, 0.99) / latency, 3) if served else None,
        # Connections the kernel dropped for a full listen queue during the run (each one waits a
        # SYN retransmission, a whole second, before it is even accepted).
        "listen_overflows": overflows,
    }


def table(rows) -> str:
    header = (
        "| L | C | arrivals | mode | tickets/s | ÷ C/L | p50 ÷ L | p99 ÷ L | first delta − upstream's (p50 / p99 ms) | peak RSS MB | errors | ledger exact "
        "| server / clients / stand-in cores | server CPU ms / ticket | server's own p50 / p99 ÷ L | listen overflows |"
    )
    lines = [header, "|" + "---|" * 16]
    for r in rows:
        first = "—" if r["first_delta_minus_upstream_ms"] is None else f"{r['first_delta_minus_upstream_ms']} / {r['first_delta_p99_minus_upstream_ms']}"
        lines.append(
            f"| {r['latency_s']:g} s | {r['clients']} | {r['arrivals']} | {r['mode']} | {r['tickets_per_s']} | {r['throughput_ratio']} | {r['p50_ratio']} | "
            f"{r['p99_ratio']} | {first} | {r['peak_rss_mb']} | {r['errors']} | {'yes' if r['ledger_verify_clean'] and r['spent_equals_answered'] else 'NO'} | "
            f"{r['server_cores']} / {r['driver_cores']} / {r['upstream_cores']} | {r['server_cpu_ms_per_ticket']} | {r['server_p50_ratio']} / {r['server_p99_ratio']} | {r['listen_overflows']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True, help="the myba-server binary (release)")
    parser.add_argument("--admin", required=True, help="the myba-admin binary")
    parser.add_argument("--latencies", default="1,3", help="upstream latencies in seconds, comma-separated")
    parser.add_argument("--clients", default="100,500,1000", help="concurrent clients, comma-separated")
    parser.add_argument("--modes", default="plain,stream")
    parser.add_argument("--seconds", type=float, default=10, help="load per run (×1.5 above L = 1 s)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--lockstep", dest="stagger", action="store_false",
        help="start every client at once (waves of C requests every L) instead of spreading their first requests over L")
    args = parser.parse_args()
    raise_fd_limit(65536)
    rows = []
    for latency in [float(x) for x in args.latencies.split(",")]:
        for clients in [int(x) for x in args.clients.split(",")]:
            for mode in args.modes.split(","):
                rows.append(asyncio.run(run_one(args, latency, clients, mode == "stream")))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
