# Shared by benchmarks/server.sh and benchmarks/backup.sh (sourced, not run). Expects `root`,
# `scratch`, `build`, `threads`, `connections`, `say` and `helper` from the script that sources it.
#   bench_install_tools TOOL…   apt-get what is missing
#   bench_build_and_locate       release builds (unless build=0); sets server_bin, admin_bin
#   bench_prepare_work           the temp dir and clean-up; sets work, db, secret, server_pid
#   start_server LABEL, run_wrk NAME SECONDS ARGS…, check_server WHAT, stop_server

bench_install_tools() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]}"
  local sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq >&2
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

bench_build_and_locate() {
  if ((build)); then
    for product in myba-server myba-admin; do
      say "building $product (release, $scratch)"
      swift build -c release --scratch-path "$scratch" --product "$product" >&2
    done
  fi
  local bin="$root/$scratch/release"
  case "$scratch" in /*) bin="$scratch/release" ;; esac
  server_bin="$bin/myba-server"
  admin_bin="$bin/myba-admin"
  for binary in "$server_bin" "$admin_bin"; do
    [ -x "$binary" ] || { echo "missing $binary (build it or drop --no-build)" >&2; exit 1; }
  done
}

# --- temp dir, servers, cleanup ------------------------------------------------------------------
bench_prepare_work() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/mybabench.XXXXXX")
  # The server runs as a copy named mbench-srv (and no path with "myba-server" in it), so that a
  # developer's `pkill myba-server` / `pkill -f myba-server` on this machine does not stop it
  # mid-run (it did: a graceful "server stopped" in the middle of a wrk run).
  cp "$server_bin" "$work/mbench-srv"
  server_bin="$work/mbench-srv"
  db="$work/myba.sqlite"
  secret="whsec_bench_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  server_pid=""
  background_pids=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

cleanup() {
  for pid in "${background_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_server
  if [ "${MYBA_BENCH_KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}

# start_server LABEL: a release server on a free loopback port with the bench database, mock AI,
# development auth, Stripe webhooks on (no Stripe API), no session reaper of its own.
start_server() {
  local label=$1
  log="$work/server-$label.jsonl"
  local out="$work/server-$label.out"
  env -u OPENAI_API_KEY -u OPENROUTER_API_KEY -u CLERK_JWT_KEY -u CLERK_SECRET_KEY -u CLERK_JWKS_URL \
      -u CLERK_WEBHOOK_SECRET -u STRIPE_SECRET_KEY -u MYBA_SESSION_TTL -u MYBA_FAULT_INJECTION -u MYBA_PLANS_FILE \
      -u MYBA_LOG_LEVEL -u MYBA_TRUST_PROXY \
      PORT=0 MYBA_HOST=127.0.0.1 MYBA_DATABASE="$db" MYBA_LOG_FILE="$log" MYBA_LOG_MAX_BYTES=2147483647 \
      STRIPE_WEBHOOK_SECRET="$secret" \
      "$server_bin" >"$out" 2>&1 &
  server_pid=$!
  port=""
  for _ in $(seq 300); do
    port=$(grep -m1 '"msg":"server listening"' "$out" 2>/dev/null | grep -o '"http.port":"\{0,1\}[0-9]*' | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$out" >&2; echo "myba-server exited at start-up" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$out" >&2; echo "myba-server did not report its port" >&2; exit 1; }
  url="http://127.0.0.1:$port"
  say "myba-server ($label) pid $server_pid on $url"
}

# run_wrk NAME DURATION [extra wrk arguments…]: writes $work/wrk-NAME.txt and .json.
run_wrk() {
  local name=$1 seconds=$2; shift 2
  wrk -t"$threads" -c"$connections" -d"${seconds}s" --timeout 10s --latency "$@" >"$work/wrk-$name.txt" 2>&1
  helper wrk "$work/wrk-$name.txt" >"$work/wrk-$name.json"
  check_server "wrk $name"
}

# check_server WHAT: fails the run when the server is gone (a result without it means nothing).
check_server() {
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "myba-server (pid $server_pid) is gone after $1; last lines of its output:" >&2
    grep -v '"msg":"request"\|"msg":"ticket generated"' "$work"/server-*.out | tail -5 >&2
    exit 1
  fi
}
