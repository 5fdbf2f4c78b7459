#!/usr/bin/env bash
# The long soak of issue 25: the release myba-server against Tests/soak/upstream.py (replies
# racing the deadline, hangs, resets mid-response, dripping bodies, 500s, an outage midway) with
# thousands of clients for minutes, then the same checks as the soak test: sockets back to the
# baseline, no CLOSE-WAIT, /api/health fast, tokens spent = tickets answered, ledger verify clean,
# SIGTERM within its bound with calls hanging upstream. Prints a table (BENCHMARKS.md keeps it).
#   benchmarks/soak.sh [--clients N] [--requests N] [--deadline-ms N] …   (soak.py's options)
# Defaults: 2000 clients × 40 generations, deadline 2000 ms. Only loopback; every loop bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product myba-server >/dev/null
swift build -c release --product myba-admin >/dev/null
bin=$(swift build -c release --show-bin-path)
echo "# soak: $(git rev-parse --short HEAD), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 Tests/soak/soak.py --server "$bin/myba-server" --admin "$bin/myba-admin" \
  --clients 2000 --requests 40 --deadline-ms 2000 --max-connections-per-host 4096 --max-in-flight 4096 --settle-seconds 30 --term-requests 200 "$@"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
