#!/usr/bin/env bash
# Ledger consumes per second against bare single-row UPDATE transactions on the same SQLite
# file, in one run (the machines are noisy: compare the ratio, not the absolute rates).
# Usage: benchmarks/ledger.sh [--operations N] [--rounds N] [--directory DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product myba-bench >&2
exec .build/release/myba-bench ledger "$@"
