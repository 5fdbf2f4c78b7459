#!/usr/bin/env bash
# The test command: makes sure the Python tools the tests drive (the official stripe-python
# SDK, run against the Stripe emulator; schemathesis, which fuzzes the running server) are in
# .venv, builds, then runs every Swift test under a time limit.
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

swift build --build-tests

# A test that hangs must fail the run, not stall it: the whole test run is bounded
# (MYBA_TEST_TIMEOUT seconds), and when it ends badly the tests that started but never
# finished are named, since a CI log keeps only the tail of the output.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
timeout --kill-after=30 "${MYBA_TEST_TIMEOUT:-1800}" swift test --skip-build "$@" 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
  echo "swift test ended with status $status" >&2
  python3 - "$log" >&2 <<'PY'
import re, sys
started, finished = [], set()
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r'Test "(.*)" (started|passed|failed|skipped)', line)
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
