#!/usr/bin/env bash
# An online backup of a big ledger under load (issue 18), in one run against release builds on
# loopback, fresh temp dir:
#   1. The database: the server started once to create the schema, then 1,000,000 ledger entries
#      written straight into the file (Python sqlite3, one transaction; `server_bench.py
#      insert-ledger`): 1000 customers user_bench1..1000, each with its entries (kind adjust,
#      the first one funding the user, the rest +1) and the balance they sum to; then
#      `myba-admin ledger verify` on it (exit status and seconds in the table).
#   2. The release server on that file (mock AI, development auth, Stripe webhooks on, no Stripe
#      API), warmed up 2 s; wrk POST /api/generate (the seeded users rotated per request) for a
#      baseline of 20 s: p50 and p99 from wrk and from the server's own duration.ms (access log).
#   3. `myba-admin db backup` once with the server idle, right after the baseline (so it copies
#      about what the loaded one will): the backup's own time.
#   4. The same load with a long limit (240 s), `myba-admin db backup --to …` started 0.5 s into
#      it and timed, the load stopped (SIGINT) when the backup returns: the backup's seconds,
#      file size and manifest entry count, generate p50/p99 during it (wrk: the whole loaded run;
#      server side: only requests that ended while the backup ran) and each p99 ÷ the baseline's.
#      A backup outlasting the limit is reported as such. Also the source's file and WAL sizes
#      when the backup starts and the WAL's right after it. The copy holds more than the seeded
#      ledger: every generation of the benchmark keeps its answer (about 1.3 KB a row; a 20 s
#      baseline at 5000 requests/s adds some 100,000), so its generations are counted too.
#   5. The loaded backup checked on its own: `myba-admin ledger verify` and `db check` on the copy.
# Progress goes to stderr; one markdown table to stdout. Compare ratios within a run: the machine
# is noisy.
#
# Usage: benchmarks/backup.sh [--scratch-path DIR] [--entries N] [--users N] [--baseline S]
#                             [--limit S] [--no-build]
# Environment: MYBA_BENCH_SCRATCH (build folder, default .build), MYBA_BENCH_ENTRIES (1000000),
#              MYBA_BENCH_USERS (1000), MYBA_BENCH_BASELINE (20, seconds of load without a
#              backup), MYBA_BENCH_BACKUP_LIMIT (240, the longest the loaded run may last),
#              MYBA_BENCH_KEEP=1 keeps the temp dir with every raw output.
# Needs python3 (standard library), wrk and curl (installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scratch=${MYBA_BENCH_SCRATCH:-.build}
entries=${MYBA_BENCH_ENTRIES:-1000000}
users=${MYBA_BENCH_USERS:-1000}
baseline=${MYBA_BENCH_BASELINE:-20}
limit=${MYBA_BENCH_BACKUP_LIMIT:-240}
build=1
threads=2
connections=32
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
while (($#)); do
  case "$1" in
    --scratch-path) scratch=$2; shift 2 ;;
    --entries) entries=$2; shift 2 ;;
    --users) users=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if ((users < 1 || entries < users)); then echo "need 1 <= --users <= --entries" >&2; exit 2; fi

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
helper() { python3 "$root/benchmarks/server_bench.py" "$@"; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
now() { date +%s.%N; }
seconds_between() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# --- tools and build (benchmarks/bench_server.sh) ------------------------------------------------
# shellcheck source=benchmarks/bench_server.sh
source "$root/benchmarks/bench_server.sh"
bench_install_tools wrk curl
bench_build_and_locate
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no -- Sources Package.swift Package.resolved 2>/dev/null)" ]; then
  commit="$commit (+ uncommitted changes in Sources)"
fi

# --- temp dir, server, cleanup ------------------------------------------------------------------
bench_prepare_work

# run_admin NAME COMMAND…: myba-admin with stdout to $work/NAME.out and stderr to $work/NAME.err;
# sets admin_exit and admin_seconds (never fails the run: the table reports the exit status).
run_admin() {
  local name=$1; shift
  local started
  started=$(now)
  set +e
  "$admin_bin" "$@" >"$work/$name.out" 2>"$work/$name.err"
  admin_exit=$?
  set -e
  admin_seconds=$(seconds_between "$started" "$(now)")
}

file_bytes() { stat -c %s "$1" 2>/dev/null || echo 0; }

export BENCH_USERS=$users BENCH_USER_PREFIX=user_bench

# --- 1. the database ---------------------------------------------------------------------------------
say "creating the schema (server started once)"
start_server init
stop_server
say "inserting $entries ledger entries for $users users (server stopped)"
helper insert-ledger --db "$db" --count "$entries" --users "$users" --user-prefix user_bench >"$work/insert.json"
say "inserted in $(python3 -c "print(round($(field "$work/insert.json" seconds), 1))") s, file $(field "$work/insert.json" bytes) bytes"
say "myba-admin ledger verify on the seeded file"
run_admin verify-seeded ledger verify --json --db "$db"
verify_seeded_exit=$admin_exit verify_seeded_seconds=$admin_seconds
say "ledger verify exit $verify_seeded_exit in $verify_seeded_seconds s"
db_bytes=$(file_bytes "$db")

# --- 2. the server --------------------------------------------------------------------------------------
start_server backup
generate_wrk=(-s "$root/benchmarks/generate.lua" "$url/api/generate")
curl -sf -o /dev/null -X POST -H "Authorization: Bearer dev:user_bench1" -H 'Content-Type: application/json' \
  -d '{"input":"smoke"}' "$url/api/generate" || { echo "POST /api/generate failed before the load" >&2; exit 1; }
# --- 3. baseline ---------------------------------------------------------------------------------------
say "warm-up (2 s)"
run_wrk warm 2 "${generate_wrk[@]}"
say "wrk POST /api/generate without a backup: -t$threads -c$connections -d${baseline}s (load average $(cut -d' ' -f1 /proc/loadavg))"
base_start=$(now)
run_wrk base "$baseline" "${generate_wrk[@]}"
base_end=$(now)

# --- backup with the server idle (after the baseline, so that it copies about what the loaded one will)
say "myba-admin db backup, server idle"
run_admin backup-idle db backup --to "$work/backup-idle.sqlite" --json --db "$db"
idle_backup_exit=$admin_exit idle_backup_seconds=$admin_seconds
say "idle backup exit $idle_backup_exit in $idle_backup_seconds s"
check_server "the idle backup"

# --- 4. backup under load ------------------------------------------------------------------------------
# The loaded window is exactly the backup: wrk runs with a long limit and is stopped (SIGINT, after
# which it prints its figures) when the backup returns; a backup outlasting the limit is reported.
say "wrk POST /api/generate with db backup started 0.5 s in (load stops when the backup ends, at most ${limit}s)"
load_start=$(now)
wrk -t"$threads" -c"$connections" -d"${limit}s" --timeout 10s --latency "${generate_wrk[@]}" >"$work/wrk-load.txt" 2>&1 &
wrk_pid=$!
background_pids+=("$wrk_pid")
sleep 0.5
source_bytes=$(file_bytes "$db") source_wal_bytes=$(file_bytes "$db-wal")
backup_start=$(now)
set +e
"$admin_bin" db backup --to "$work/backup.sqlite" --json --db "$db" >"$work/backup.out" 2>"$work/backup.err"
backup_exit=$?
set -e
backup_end=$(now)
wal_after_backup=$(file_bytes "$db-wal")
backup_outlasted=1
if kill -0 "$wrk_pid" 2>/dev/null; then backup_outlasted=0; kill -INT "$wrk_pid"; fi
wait "$wrk_pid" || true
load_end=$(now)
helper wrk "$work/wrk-load.txt" >"$work/wrk-load.json"
check_server "the backup under load"
say "backup exit $backup_exit in $(seconds_between "$backup_start" "$backup_end") s; loaded run $(seconds_between "$load_start" "$load_end") s"
[ "$backup_exit" -eq 0 ] || say "backup failed: $(tail -1 "$work/backup.err")"
sleep 0.5
helper log-durations --log "$log" --path /api/generate --since "$base_start" --until "$base_end" >"$work/base-server.json"
helper log-durations --log "$log" --path /api/generate --since "$backup_start" --until "$backup_end" >"$work/load-server.json"
stop_server
load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 5. the backup checked on its own -------------------------------------------------------------------
backup_bytes=$(file_bytes "$work/backup.sqlite")
# What the copy holds besides the seeded ledger: each generation also keeps its answer.
python3 - "$work/backup.sqlite" >"$work/backup-rows.json" <<'PY' || true
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
json.dump({t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("ledger_entries", "generations")}, sys.stdout)
PY
verify_backup_exit=-1 verify_backup_seconds=0 check_backup_exit=-1 check_backup_seconds=0
if [ -f "$work/backup.sqlite" ]; then
  say "myba-admin ledger verify and db check on the backup"
  run_admin verify-backup ledger verify --json --db "$work/backup.sqlite"
  verify_backup_exit=$admin_exit verify_backup_seconds=$admin_seconds
  run_admin check-backup db check --json --db "$work/backup.sqlite"
  check_backup_exit=$admin_exit check_backup_seconds=$admin_seconds
  say "backup: ledger verify exit $verify_backup_exit ($verify_backup_seconds s), db check exit $check_backup_exit ($check_backup_seconds s)"
fi

# --- table ------------------------------------------------------------------------------------------
python3 - "$work" <<EOF
import json, math, os, sys
w = sys.argv[1]
def j(name):
    try:
        with open(os.path.join(w, name)) as f: return json.load(f)
    except (OSError, ValueError):
        return {}
def first_line(name):
    try:
        lines = [l.strip() for l in open(os.path.join(w, name)) if l.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
def manifest_entries(doc):
    for key in ("ledgerEntries", "ledger_entries"):
        if key in doc: return doc[key]
    return None
def verified(name):
    doc = j(name)
    for key in ("checkedEntries", "checked_entries"):
        if key in doc: return doc[key]
    return None

insert, base, load = j("insert.json"), j("wrk-base.json"), j("wrk-load.json")
base_server, load_server = j("base-server.json"), j("load-server.json")
idle_manifest, manifest = j("backup-idle.out"), j("backup.out")
entries, users = $entries, $users
backup_exit, idle_backup_exit = $backup_exit, $idle_backup_exit
verify_seeded_exit, verify_backup_exit, check_backup_exit = $verify_seeded_exit, $verify_backup_exit, $check_backup_exit
backup_seconds = $backup_end - $backup_start
load_seconds = $load_end - $load_start
outlasted = bool($backup_outlasted)
mb = lambda b: f"{b / 1048576:.1f}"
def ms(v): return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
def ok(flag): return "PASS" if flag else "**FAIL**"
def ratio(a, b):
    try:
        r = a / b
    except (TypeError, ZeroDivisionError):
        return "n/a"
    return "n/a" if math.isnan(r) else f"{r:.2f}"
rows = []
def row(measure, value, goal="", result=""): rows.append((measure, value, goal, result))

row(f"ledger seeded: entries / users (Python sqlite3, one transaction), s", f"{insert.get('entries', '?')} / {insert.get('customers', '?')} in {insert.get('seconds', float('nan')):.1f}")
row("database file, MB", mb($db_bytes))
seeded_checked = verified("verify-seeded.out")
row(f"ledger verify on the seeded file: exit (entries checked), s",
    f"{verify_seeded_exit} ({seeded_checked if seeded_checked is not None else '?'}) in $verify_seeded_seconds", "0", ok(verify_seeded_exit == 0))
idle_text = f"$idle_backup_seconds ({mb($(file_bytes "$work/backup-idle.sqlite"))} MB)" if idle_backup_exit == 0 else f"exit {idle_backup_exit}: {first_line('backup-idle.err')}"
row(f"generate, wrk -t$threads -c$connections -d${baseline}s without backup: req/s, p50 / p99 ms",
    f"{base.get('requests_per_s', float('nan')):.0f}, {ms(base.get('p50_ms'))} / {ms(base.get('p99_ms'))}")
row(f"generate without backup, server duration.ms p50 / p99 ({base_server.get('count', 0)} requests)",
    f"{ms(base_server.get('p50_ms'))} / {ms(base_server.get('p99_ms'))}")
if backup_exit == 0:
    backup_text = f"{backup_seconds:.2f}" + (" (outlasted the ${limit}s load)" if outlasted else "")
else:
    backup_text = f"exit {backup_exit} after {backup_seconds:.2f}: {first_line('backup.err')}"
row("db backup, server idle (right after the baseline): s (file MB)", idle_text)
row("**db backup under generate load, s**", backup_text, "exit 0", ok(backup_exit == 0))
backup_rows = j("backup-rows.json")
row("  backup file MB / manifest ledger entries / generations in it (the benchmark's own)",
    f"{mb($backup_bytes)} / {manifest_entries(manifest) if manifest_entries(manifest) is not None else 'n/a'} / {backup_rows.get('generations', '?')}")
row("  source file + WAL when the backup started / WAL right after it, MB", f"{mb($source_bytes)} + {mb($source_wal_bytes)} / {mb($wal_after_backup)}")
row(f"generate during the backup, wrk (whole loaded run, {load_seconds:.1f}s): req/s, p50 / p99 ms",
    f"{load.get('requests_per_s', float('nan')):.0f}, {ms(load.get('p50_ms'))} / {ms(load.get('p99_ms'))}")
row(f"generate during the backup, server duration.ms p50 / p99 ({load_server.get('count', 0)} requests ended while it ran)",
    f"{ms(load_server.get('p50_ms'))} / {ms(load_server.get('p99_ms'))}")
row("  **p99 during the backup ÷ idle (wrk)**", ratio(load.get("p99_ms"), base.get("p99_ms")))
row("  **p99 during the backup ÷ idle (server side)**", ratio(load_server.get("p99_ms"), base_server.get("p99_ms")))
if verify_backup_exit == -1:
    row("backup: ledger verify / db check", "no backup file", "clean", ok(False))
else:
    backup_checked = verified("verify-backup.out")
    row("backup: ledger verify exit (entries checked), s / db check exit, s",
        f"{verify_backup_exit} ({backup_checked if backup_checked is not None else '?'}), $verify_backup_seconds / {check_backup_exit}, $check_backup_seconds",
        "0 / 0", ok(verify_backup_exit == 0 and check_backup_exit == 0))
errors = {n: (r.get("non_2xx", 0), r.get("socket_errors", 0), r.get("timeouts", 0)) for n, r in (("no backup", base), ("backup", load))}
bad = {n: e for n, e in errors.items() if any(e)}
row("wrk non-2xx / socket errors / timeouts", "none" if not bad else "; ".join(f"{n}: {a} / {b} / {c}" for n, (a, b, c) in bad.items()), "none", ok(not bad))
row("load average (1, 5, 15 min) at start / end (nproc $(nproc); well above 0 means something else ran)", "$load_at_start / $load_at_end")
row("commit", "$commit")
print("| measure | value | goal | result |")
print("| --- | ---: | --- | --- |")
for measure, value, goal, result in rows:
    print(f"| {measure} | {value} | {goal} | {result} |")
EOF
