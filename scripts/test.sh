#!/usr/bin/env bash
# The test command: makes sure the Python tools the tests drive (the official stripe-python
# SDK, run against the Stripe emulator; schemathesis, which fuzzes the running server;
# Selenium, which drives Chromium through the web page) are in .venv, builds, then runs every
# Swift test under a time limit, then the browser journey.
# Arguments go to `swift test` (for example --filter Ledger).
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=Tests/sdk/requirements.txt
stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cmp -s "$requirements" "$stamp"; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

# The time limit below needs these; without them a hang would stall CI instead of failing it.
for tool in ps pkill setsid stdbuf; do
  command -v "$tool" > /dev/null || { echo "scripts/test.sh: $tool is missing (install procps, util-linux, coreutils): the time limit cannot be enforced" >&2; exit 2; }
done

swift build --build-tests

# PostgreSQL for the backend's tests: a throwaway cluster of the machine's own PostgreSQL,
# unless MYBA_TEST_POSTGRES_URL names one already.
cluster=""
if [ -z "${MYBA_TEST_POSTGRES_URL:-}" ]; then
  started=$(scripts/postgres-test-cluster.sh)
  read -r MYBA_TEST_POSTGRES_URL cluster <<< "$started"
  export MYBA_TEST_POSTGRES_URL
fi

# A test that hangs must fail the run, not stall it: the whole test run is bounded
# (MYBA_TEST_TIMEOUT seconds), and when it ends badly the tests that started but never
# finished are named, since a CI log keeps only the tail of the output. SwiftPM starts the test
# runner in a process group of its own and the tests start servers in theirs, so `timeout`
# alone would leave them running: the run gets a session of its own and the whole session is
# killed when time is up. stdbuf keeps the output flowing line by line through the pipe.
log=$(mktemp)
trap 'rm -f "$log"; if [ -n "$cluster" ]; then scripts/postgres-test-cluster.sh stop "$cluster"; fi' EXIT
# Stopped from outside (CI's limit, Ctrl-C): still stop the cluster, through the EXIT trap.
trap 'exit 143' TERM INT
limit=${MYBA_TEST_TIMEOUT:-1800}
set +m
# A whole run leaves the PostgreSQL suites and drills (thousands of concurrent transactions over
# three connection pools, three servers) for a run of their own below: beside the timing checks
# of the other suites they starve this process's threads on two cores. Their suites' names
# contain "Postgres" or "SeveralServers"; the suites that run on both backends (a TestBackend
# argument) run on SQLite only in the first run (no MYBA_TEST_POSTGRES_URL) and on both in the
# second.
postgres_suites='Postgres|SeveralServers'
both_backends='MyBAOpsTests.LedgerTests|GenerationLedgerTests|VerifyTests'
arguments=("$@")
first_run_environment=()
if [ "$#" -eq 0 ]; then
  arguments=(--skip "$postgres_suites")
  first_run_environment=(-u MYBA_TEST_POSTGRES_URL)
fi
setsid --wait stdbuf -oL -eL env "${first_run_environment[@]}" swift test --skip-build "${arguments[@]}" > >(tee "$log") 2>&1 &
runner=$!
# The run's session: the runner itself once setsid has made it a session leader (it does not
# fork for a background job of a script). Never fall back to our own session.
session=""
for _ in $(seq 100); do
  sid=$(ps -o sid= -p "$runner" 2>/dev/null | tr -d ' ')
  if [ "$sid" = "$runner" ]; then session=$runner; break; fi
  sleep 0.05
done
if [ -z "$session" ]; then
  echo "scripts/test.sh: could not find the test run's session: the time limit cannot be enforced" >&2
  kill "$runner" 2>/dev/null || true
  exit 2
fi
stop_session() {
  if [ -n "$session" ]; then pkill "-$1" -s "$session" 2>/dev/null || true; fi
}
(
  sleep "$limit" > /dev/null 2>&1 < /dev/null &
  sleeper=$!
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  wait "$sleeper"
  echo "scripts/test.sh: the tests ran longer than ${limit}s; stopping them" >&2
  stop_session TERM
  sleep 20
  stop_session KILL
) &
watchdog=$!
status=0
wait "$runner" || status=$?
kill "$watchdog" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true
# Whatever the tests started and left behind (servers, fuzzers) goes with them.
stop_session KILL
sleep 0.2
# A whole run (no filter) that ran far fewer tests than the suite has did not test the project:
# a target not built, a filter matching nothing. The floor is kept in Tests/minimum-test-count.
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
  ran=$(grep -oE 'Test run with [0-9]+ tests' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  floor=$(cat Tests/minimum-test-count)
  if [ "${ran:-0}" -lt "$floor" ]; then
    echo "scripts/test.sh: only ${ran:-0} tests ran; the suite has at least $floor (Tests/minimum-test-count)" >&2
    status=1
  fi
fi
# The PostgreSQL drills, alone (see above).
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
  if ! timeout 900 swift test --skip-build --filter "$postgres_suites|$both_backends" 2>&1 | tee "$log.postgres" | grep -E "✘|Test run with"; then
    status=1
  fi
  if ! grep -q "Test run with .* passed" "$log.postgres"; then
    echo "scripts/test.sh: the PostgreSQL drills failed" >&2
    status=1
  fi
  rm -f "$log.postgres"
fi
# The web page in Chromium (Tests/browser/journey.py) runs after the Swift tests, alone: a
# browser and three servers beside the timing drills would make both flaky on two cores.
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ]; then
  shots=$(mktemp -d)
  if ! timeout 600 .venv/bin/python Tests/browser/journey.py --bin "$(swift build --show-bin-path)" --screenshots "$shots"; then
    echo "scripts/test.sh: the browser journey failed" >&2
    status=1
  fi
  rm -rf "$shots"
fi
if [ "$status" -ne 0 ]; then
  echo "swift test ended with status $status" >&2
  python3 - "$log" >&2 <<'PY'
import re, sys
started, finished = [], set()
for line in open(sys.argv[1], errors="replace"):
    # A parameterised test ends with `Test "…" with N test cases passed`.
    m = re.search(r'Test "(.*?)"(?: with \d+ test cases?)? (started|passed|failed|skipped)', line)
    if not m:
        continue
    if m.group(2) == "started":
        started.append(m.group(1))
    else:
        finished.add(m.group(1))
unfinished = [name for name in started if name not in finished]
if unfinished:
    print("tests that started and never finished:")
    for name in unfinished:
        print("  - " + name)
PY
fi
exit "$status"
