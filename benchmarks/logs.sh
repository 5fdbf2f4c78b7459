#!/usr/bin/env bash
# `myba-admin logs trace` against `grep -F` and `jq` for one request id in a generated log of
# SIZE_MB megabytes (default 1024). Prints a Markdown table; compare the ratios, not the seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
swift build -c release --product myba-admin >&2
swift build -c release --product myba-bench >&2
.build/release/myba-bench generate-log --out "$dir/myba.jsonl" --megabytes "$size" >&2
cat "$dir/myba.jsonl" > /dev/null  # warm the page cache for every contender alike

time_it() {
  local start end
  start=$(date +%s.%N)
  "$@" > "$dir/out.txt"
  end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc) $(wc -l < "$dir/out.txt")"
}

read -r trace_s trace_n < <(time_it .build/release/myba-admin logs trace req_needle --file "$dir/myba.jsonl" --json --db /nonexistent)
read -r grep_s grep_n < <(time_it grep -F '"request.id":"req_needle"' "$dir/myba.jsonl")
read -r jq_s jq_n < <(time_it jq -c 'select(."request.id" == "req_needle")' "$dir/myba.jsonl")

echo "| tool | seconds | lines found | time ÷ myba-admin's |"
echo "| --- | ---: | ---: | ---: |"
printf '| myba-admin logs trace | %.2f | %d | 1.00 |\n' "$trace_s" "$trace_n"
printf '| grep -F | %.2f | %d | %.2f |\n' "$grep_s" "$grep_n" "$(echo "$grep_s / $trace_s" | bc -l)"
printf '| jq select | %.2f | %d | %.2f |\n' "$jq_s" "$jq_n" "$(echo "$jq_s / $trace_s" | bc -l)"
echo
echo "${size} MB log, page cache warm. Goals: grep's ratio ≥ 0.50 (myba-admin at least half grep's speed) and jq's ≥ 10."
