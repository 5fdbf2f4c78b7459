#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the tests from the machine's own PostgreSQL (the
# Debian package): initdb into a temporary folder, trust authentication on 127.0.0.1 only, a
# free port. Prints `URL DIRECTORY`; `scripts/postgres-test-cluster.sh stop DIRECTORY` stops it
# and removes the folder. PostgreSQL refuses to run as root: as root it runs as `postgres`.
set -euo pipefail
bin=""
for candidate in /usr/lib/postgresql/*/bin; do
  if [ -x "$candidate/initdb" ]; then bin=$candidate; fi
done
if [ -z "$bin" ] && command -v initdb > /dev/null; then bin=$(dirname "$(command -v initdb)"); fi
if [ -z "$bin" ]; then
  echo "scripts/postgres-test-cluster.sh: no PostgreSQL server (apt install postgresql)" >&2
  exit 2
fi
as_owner=()
if [ "$(id -u)" -eq 0 ]; then as_owner=(runuser -u postgres --); fi

if [ "${1:-}" = "stop" ]; then
  "${as_owner[@]}" "$bin/pg_ctl" -D "$2/data" -m immediate stop > /dev/null 2>&1 || true
  rm -rf "$2"
  exit 0
fi

directory=$(mktemp -d /tmp/myba-postgres.XXXXXX)
chmod 755 "$directory"
if [ "${#as_owner[@]}" -gt 0 ]; then chown postgres "$directory"; fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_owner[@]}" "$bin/initdb" -D "$directory/data" -U postgres --auth=trust --encoding=UTF8 --no-sync > "$directory/initdb.log" 2>&1 ||
  { cat "$directory/initdb.log" >&2; exit 1; }
# fsync off: the tests' cluster is thrown away, and its speed is not what they measure. A
# benchmark sets MYBA_CLUSTER_FSYNC=on, to compare with SQLite's synchronous=FULL.
fsync=${MYBA_CLUSTER_FSYNC:-off}
"${as_owner[@]}" "$bin/pg_ctl" -D "$directory/data" -l "$directory/server.log" -w \
  -o "-p $port -k $directory -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=300" start > /dev/null ||
  { cat "$directory/server.log" >&2; exit 1; }
echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable $directory"
