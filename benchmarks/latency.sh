#!/usr/bin/env bash
# Generation at real AI latency (issue 16): the release myba-server against a fixed-latency
# OpenRouter stand-in (L = 1 s and 3 s) at C = 100, 500 and 1000 concurrent clients, plain and
# streamed; prints the table BENCHMARKS.md keeps (benchmarks/latency.py says what each column is).
#   benchmarks/latency.sh [--latencies 1,3] [--clients 100,500,1000] [--seconds 10] [--lockstep] …
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product myba-server >/dev/null
swift build -c release --product myba-admin >/dev/null
bin=$(swift build -c release --show-bin-path)
echo "# latency: $(git rev-parse --short HEAD), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 benchmarks/latency.py --server "$bin/myba-server" --admin "$bin/myba-admin" "$@"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
