#!/usr/bin/env bash
# The test command: makes sure the Python tools the tests drive (the official stripe-python
# SDK, run against the Stripe emulator) are in .venv, then runs every Swift test.
# Arguments go to `swift test` (for example --filter Ledger).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import stripe" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r Tests/sdk/requirements.txt
fi
exec swift test "$@"
