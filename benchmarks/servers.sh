#!/usr/bin/env bash
# Several servers on PostgreSQL against one on SQLite (issue 20): release builds, a throwaway
# PostgreSQL cluster from the machine's PostgreSQL (fsync on, as SQLite's synchronous=FULL), then
# benchmarks/servers.py (which says what each column is). Prints the table BENCHMARKS.md keeps,
# with the machine's load before and after.
#   benchmarks/servers.sh [--seconds S] [--connections C] [--webhooks N] [--configs sqlite:1,postgres:3] …
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk psql; do
  command -v "$tool" > /dev/null || { echo "benchmarks/servers.sh needs $tool (apt install wrk postgresql-client)" >&2; exit 2; }
done
swift build -c release --product myba-server > /dev/null
swift build -c release --product myba-admin > /dev/null
bin=$(swift build -c release --show-bin-path)
read -r url cluster < <(MYBA_CLUSTER_FSYNC=on scripts/postgres-test-cluster.sh start)
trap 'scripts/postgres-test-cluster.sh stop "$cluster"' EXIT
echo "# servers: $(git rev-parse --short HEAD), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 benchmarks/servers.py --server "$bin/myba-server" --admin "$bin/myba-admin" --postgres "$url" "$@"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
