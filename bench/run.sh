#!/usr/bin/env bash
# One command for every benchmark (make bench): writes bench/RESULTS.md.
# Everything runs on 127.0.0.1; every wait has a deadline; every process started is stopped by PID;
# every database made for the run is dropped at the end.
#
#   BENCH_DURATION=10   seconds per wrk measurement (after a 3 s warm-up)
#   BENCH_PARTS=...     a subset of: memory http sse rebuild writes sdk (default: all of them);
#                       a part left out shows as "not measured" in RESULTS.md
#   BENCH_UNLEASH=0     leave Unleash OSS out (its rows show as "not measured")
#   BENCH_RESULTS=path  where to write the report (default bench/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(mktemp -d /tmp/aurora-bench.XXXXXX)
PY=$ROOT/.venv/bin/python
BENCH_VENV=$ROOT/bench/.venv
DB="aurora_bench_$$"
REDIS_DB=13
PREFIX="aurora-bench-$$:"
ADMIN_TOKEN="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PIDS=()
DURATION=${BENCH_DURATION:-10}
PARTS=" ${BENCH_PARTS:-memory http sse rebuild writes sdk} "
WITH_UNLEASH=${BENCH_UNLEASH:-1}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
part() { [[ $PARTS == *" $1 "* ]]; }

wait_http() {  # wait_http URL SECONDS
    local deadline=$((SECONDS + $2))
    until curl -sf -o /dev/null "$1"; do
        ((SECONDS < deadline)) || { echo "bench: $1 did not answer" >&2; return 1; }
        sleep 0.2
    done
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# shellcheck source=bench/unleash.sh
source bench/unleash.sh

cleanup() {
    unleash_stop
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$DB\`" 2>/dev/null || true
    redis-cli -n $REDIS_DB --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -n $REDIS_DB del >/dev/null || true
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
ulimit -n 65536 || ulimit -n 8192 || true
echo "$PARTS" > "$OUT/parts.txt"
echo "$DURATION" > "$OUT/duration.txt"
cut -d' ' -f1-3 /proc/loadavg > "$OUT/load-before.txt"  # other work on the machine skews everything

echo "bench: preparing (MariaDB database $DB, Redis db $REDIS_DB prefix $PREFIX)"
mysql -h127.0.0.1 -uroot -e "CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4"
export DATABASE_URL="mysql+pymysql://root@127.0.0.1:3306/$DB" REDIS_URL="redis://127.0.0.1:6379/$REDIS_DB"
# `plain` and `targeted` hold the 100-flag scenarios (bench/targeted.py), apart from the rest.
export AURORA_ENVIRONMENTS=development,staging,production,plain,targeted
"$PY" -m service migrate >/dev/null 2>&1

# --- The bare reference and the service, same uvicorn settings ---------------------------------
BARE_PORT=$(free_port)
# On the service's own stack (service/__main__.py: uvloop and httptools), so the ratios are fair.
"$PY" -m uvicorn bench.bare_app:app --host 127.0.0.1 --port "$BARE_PORT" --log-level warning --no-access-log --no-server-header \
    --loop uvloop --http httptools &
BARE_PID=$!
PIDS+=($BARE_PID)
SERVICE_PORT=$(free_port)
HOST=127.0.0.1 PORT=$SERVICE_PORT AURORA_REDIS_PREFIX=$PREFIX AURORA_AUTH=enabled \
    AURORA_ADMIN_TOKEN=$ADMIN_TOKEN AURORA_LOG_LEVEL=WARNING AURORA_SSE_QUEUE_SIZE=1000 \
    "$PY" -m service > "$OUT/service.log" 2>&1 &
SERVICE_PID=$!
PIDS+=($SERVICE_PID)
wait_http "http://127.0.0.1:$BARE_PORT/check" 30
wait_http "http://127.0.0.1:$SERVICE_PORT/health/ready" 60
AUTH="Authorization: Bearer $ADMIN_TOKEN"
S="http://127.0.0.1:$SERVICE_PORT/api/v1"
curl -sf -X POST "$S/feature-flags/" -H "$AUTH" -H 'content-type: application/json' \
    -d '{"flag_key": "new_dashboard", "is_enabled": true, "rollout_percentage": 25}' >/dev/null
curl -sf -X POST "$S/feature-flags/" -H "$AUTH" -H 'content-type: application/json' \
    -d '{"flag_key": "bench_flag", "is_enabled": true, "rollout_percentage": 1}' >/dev/null
curl -sf -X POST "$S/configurations/" -H "$AUTH" -H 'content-type: application/json' \
    -d '{"config_key": "database.max_connections", "config_value": 100, "environment": "production", "service_name": "user-service"}' >/dev/null

# --- Memory per idle stream: on fresh processes of their own (an allocator keeps what it grew) ---
if part memory; then
    MEM_PORT=$(free_port)
    HOST=127.0.0.1 PORT=$MEM_PORT AURORA_REDIS_PREFIX=$PREFIX AURORA_AUTH=enabled \
        AURORA_ADMIN_TOKEN=$ADMIN_TOKEN AURORA_LOG_LEVEL=WARNING "$PY" -m service > "$OUT/service-mem.log" 2>&1 &
    MEM_PID=$!
    PIDS+=($MEM_PID)
    wait_http "http://127.0.0.1:$MEM_PORT/health/ready" 60
    "$PY" bench/sse.py memory --port "$MEM_PORT" --token "$ADMIN_TOKEN" --subscribers 1000 --pid "$MEM_PID" > "$OUT/mem-service.json"
    kill "$MEM_PID"
    "$PY" bench/sse.py memory --port "$BARE_PORT" --subscribers 1000 --pid "$BARE_PID" --path /sse > "$OUT/mem-bare.json"
    echo "bench: memory $(cat "$OUT/mem-service.json") vs bare $(cat "$OUT/mem-bare.json")"
fi

# run_wrk NAME URL HEADER [BODY]: a 3 s warm-up, then DURATION seconds; with BODY, a POST of it.
# An endpoint that does not answer 200 to a first request is not measured (the reason is kept).
run_wrk() {
    local name=$1 url=$2 header=$3 body=${4:-} code
    local args=(-t2 -c50 --timeout 10s -H "$header")  # 10 s: a slow answer counts in p99, not as lost
    if [ -n "$body" ]; then
        printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[%s]==]\n' \
            "$body" > "$OUT/$name.lua"
        args+=(-s "$OUT/$name.lua")
        code=$(curl -sg -o "$OUT/probe-$name.txt" -w '%{http_code}' -X POST -H "$header" \
            -H 'content-type: application/json' -d "$body" "$url" || true)
    else
        code=$(curl -sg -o "$OUT/probe-$name.txt" -w '%{http_code}' -H "$header" "$url" || true)
    fi
    if [ "$code" != 200 ]; then
        echo "not measured: it answered $code ($(head -c 120 "$OUT/probe-$name.txt" | tr -d "\n|"))" > "$OUT/wrk-$name.skip"
        echo "bench: $name $(cat "$OUT/wrk-$name.skip")"
        return 0
    fi
    if ! "$PY" bench/targeted.py expect "$name" "$OUT/probe-$name.txt" > "$OUT/wrk-$name.skip"; then
        echo "bench: $name $(cat "$OUT/wrk-$name.skip")"
        return 0
    fi
    rm -f "$OUT/wrk-$name.skip"
    wrk "${args[@]}" -d3s "$url" >/dev/null  # warm-up
    wrk "${args[@]}" -d"${DURATION}s" --latency "$url" > "$OUT/wrk-$name.txt"
    echo "bench: $name $(grep Requests/sec "$OUT/wrk-$name.txt")"
}

# --- HTTP reads, targeting, and Unleash OSS over the same flags ---------------------------------
if part http; then
    DOCUMENT=$OUT/unleash-features.json
    if [ "$WITH_UNLEASH" = 1 ]; then
        unleash_install
        unleash_start
        echo "bench: Unleash $UNLEASH_VERSION on $UNLEASH_URL (node $(cat "$OUT/unleash-node.txt"))"
        "$PY" bench/targeted.py unleash-seed --url "$UNLEASH_URL" --admin-token "$UNLEASH_ADMIN_TOKEN" \
            --plain-token "$UNLEASH_PLAIN_TOKEN" --targeted-token "$UNLEASH_TARGETED_TOKEN" \
            --client-token "$UNLEASH_CLIENT_TOKEN" --document "$DOCUMENT" > "$OUT/unleash-seed.json"
    else
        echo "not measured: BENCH_UNLEASH=0" > "$OUT/unleash.skip"
        "$PY" bench/targeted.py document > "$DOCUMENT"
    fi
    "$PY" bench/targeted.py aurora-seed --url "http://127.0.0.1:$SERVICE_PORT" --token "$ADMIN_TOKEN" \
        --document "$DOCUMENT" --status "$OUT/aurora-seed.json" >/dev/null
    echo "bench: seeded $(cat "$OUT/aurora-seed.json")"
    if [ "$WITH_UNLEASH" = 1 ]; then
        "$PY" bench/targeted.py compare --url "http://127.0.0.1:$SERVICE_PORT" --token "$ADMIN_TOKEN" \
            --unleash-url "$UNLEASH_URL" --targeted-token "$UNLEASH_TARGETED_TOKEN" \
            --status "$OUT/aurora-seed.json" > "$OUT/compare.json"
        echo "bench: answers compared $(cat "$OUT/compare.json")"
    fi
    QUERY=$("$PY" -c 'import sys; sys.path.insert(0, "bench"); import targeted; print(targeted.AURORA_QUERY)')
    UNLEASH_QUERY=$("$PY" -c 'import sys; sys.path.insert(0, "bench"); import targeted; print(targeted.UNLEASH_QUERY)')
    BODY=$("$PY" bench/targeted.py body)  # {"environment": "targeted", "context": {...}}
    # Without the targeted flags in Aurora, their rows would measure an empty environment.
    TARGETED=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["targeted"])' "$OUT/aurora-seed.json")
    run_targeted() {  # run_wrk, only when the targeted flags are in Aurora
        if [ "$TARGETED" = 100 ]; then run_wrk "$@"; else echo "$TARGETED" > "$OUT/wrk-$1.skip"; fi
    }

    run_wrk bare "http://127.0.0.1:$BARE_PORT/check" "X-Bench: 1"
    run_wrk check "$S/feature-flags/check/new_dashboard?user_id=123" "$AUTH"
    run_targeted check-targeted "$S/feature-flags/check/flag-000?environment=targeted&$QUERY" "$AUTH"
    run_wrk value "$S/configurations/value/database.max_connections?environment=production&service_name=user-service" "$AUTH"
    run_wrk evaluate "$S/feature-flags/evaluate/new_dashboard?user_id=123" "$AUTH"
    run_targeted evaluate-post "$S/feature-flags/evaluate/flag-000" "$AUTH" "$BODY"
    run_wrk bare-post "http://127.0.0.1:$BARE_PORT/echo" "X-Bench: 1" "$BODY"
    run_targeted evaluate-all "$S/feature-flags/evaluate" "$AUTH" "$BODY"
    run_targeted bulk-targeted "$S/feature-flags/bulk?environment=targeted&$QUERY" "$AUTH"
    run_wrk bulk-plain "$S/feature-flags/bulk?environment=plain&user_id=123" "$AUTH"
    if [ "$WITH_UNLEASH" = 1 ]; then
        run_wrk unleash-targeted "$UNLEASH_URL/api/frontend?$UNLEASH_QUERY" "Authorization: $UNLEASH_TARGETED_TOKEN"
        run_wrk unleash-plain "$UNLEASH_URL/api/frontend?userId=123" "Authorization: $UNLEASH_PLAIN_TOKEN"
    fi
    run_wrk bare-again "http://127.0.0.1:$BARE_PORT/check" "X-Bench: 1"
    unleash_stop  # the parts below measure the service alone
fi

# --- Write -> SSE delivery ---------------------------------------------------------------------
if part sse; then
    "$PY" bench/sse.py delivery --port "$SERVICE_PORT" --token "$ADMIN_TOKEN" --subscribers 1 --writes 100 > "$OUT/sse-1.json"
    echo "bench: delivery 1 $(cat "$OUT/sse-1.json")"
    "$PY" bench/sse.py delivery --port "$SERVICE_PORT" --token "$ADMIN_TOKEN" --subscribers 1000 --writes 100 --spacing 0.05 > "$OUT/sse-1000.json"
    echo "bench: delivery 1000 $(cat "$OUT/sse-1000.json")"
fi

# --- Rebuild of 100,000 items -----------------------------------------------------------------
if part rebuild; then
    "$PY" bench/rebuild.py --database-url "$DATABASE_URL" --redis-url "$REDIS_URL" --items 100000 > "$OUT/rebuild.json"
    echo "bench: rebuild $(cat "$OUT/rebuild.json")"
fi

# --- Write throughput, 1 and 8 writers of one environment (issue 9: the committed sequence) -----
if part writes; then
    for writers in 1 8; do
        WDB="aurora_bench_writes_$$_$writers"
        mysql -h127.0.0.1 -uroot -e "CREATE DATABASE \`$WDB\` CHARACTER SET utf8mb4"
        "$PY" bench/writes.py --url "mysql+pymysql://root@127.0.0.1:3306/$WDB" --writers $writers \
            --seconds "$DURATION" > "$OUT/writes-$writers.json"
        mysql -h127.0.0.1 -uroot -e "DROP DATABASE \`$WDB\`"
        echo "bench: writes $writers $(cat "$OUT/writes-$writers.json")"
    done
fi

# --- SDK: ns per call, with the Unleash SDK in a bench-only virtualenv ---------------------------
if part sdk; then
    if [ ! -x "$BENCH_VENV/bin/python" ]; then "$(command -v python3.11 || command -v python3)" -m venv "$BENCH_VENV"; fi
    "$BENCH_VENV/bin/python" -m pip install --quiet -c constraints.txt "UnleashClient==6.9.1" ./client 2>/dev/null
    "$BENCH_VENV/bin/python" bench/sdk.py > "$OUT/sdk.json"
    echo "bench: sdk $(cat "$OUT/sdk.json")"
fi

cut -d' ' -f1-3 /proc/loadavg > "$OUT/load-after.txt"
"$PY" bench/report.py "$OUT" > "$RESULTS"
echo "bench: wrote $RESULTS (raw output in $OUT)"
