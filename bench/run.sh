#!/usr/bin/env bash
# One command for every benchmark (make bench): writes bench/RESULTS.md.
# Everything runs on 127.0.0.1; every wait has a deadline; every process started is stopped by PID.
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

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$DB\`" 2>/dev/null || true
    redis-cli -n $REDIS_DB --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -n $REDIS_DB del >/dev/null || true
}
trap cleanup EXIT

wait_http() {  # wait_http URL SECONDS
    local deadline=$((SECONDS + $2))
    until curl -sf -o /dev/null "$1"; do
        ((SECONDS < deadline)) || { echo "bench: $1 did not answer" >&2; return 1; }
        sleep 0.2
    done
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
ulimit -n 65536 || ulimit -n 8192 || true

echo "bench: preparing (MariaDB database $DB, Redis db $REDIS_DB prefix $PREFIX)"
mysql -h127.0.0.1 -uroot -e "CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4"
export DATABASE_URL="mysql+pymysql://root@127.0.0.1:3306/$DB" REDIS_URL="redis://127.0.0.1:6379/$REDIS_DB"
"$PY" -m service migrate >/dev/null 2>&1

# --- HTTP throughput: the bare reference, then the service, same uvicorn settings -----------
BARE_PORT=$(free_port)
# On the service's own stack (service/__main__.py: uvloop and httptools), so the ratios are fair.
"$PY" -m uvicorn bench.bare_app:app --host 127.0.0.1 --port "$BARE_PORT" --log-level warning --no-access-log --no-server-header \
    --loop uvloop --http httptools &
PIDS+=($!)
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
MEM_PORT=$(free_port)
HOST=127.0.0.1 PORT=$MEM_PORT AURORA_REDIS_PREFIX=$PREFIX AURORA_AUTH=enabled \
    AURORA_ADMIN_TOKEN=$ADMIN_TOKEN AURORA_LOG_LEVEL=WARNING "$PY" -m service > "$OUT/service-mem.log" 2>&1 &
MEM_PID=$!
PIDS+=($MEM_PID)
wait_http "http://127.0.0.1:$MEM_PORT/health/ready" 60
"$PY" bench/sse.py memory --port "$MEM_PORT" --token "$ADMIN_TOKEN" --subscribers 1000 --pid "$MEM_PID" > "$OUT/mem-service.json"
kill "$MEM_PID"
"$PY" bench/sse.py memory --port "$BARE_PORT" --subscribers 1000 --pid "${PIDS[0]}" --path /sse > "$OUT/mem-bare.json"
echo "bench: memory $(cat "$OUT/mem-service.json") vs bare $(cat "$OUT/mem-bare.json")"

run_wrk() {  # run_wrk NAME URL [header]
    local name=$1 url=$2
    local header=${3:-X-Bench: 1}
    wrk -t2 -c50 -d3s -H "$header" "$url" >/dev/null  # warm-up
    wrk -t2 -c50 -d"${DURATION}s" --latency -H "$header" "$url" > "$OUT/wrk-$name.txt"
    echo "bench: $name $(grep Requests/sec "$OUT/wrk-$name.txt")"
}
run_wrk bare "http://127.0.0.1:$BARE_PORT/check"
run_wrk check "$S/feature-flags/check/new_dashboard?user_id=123" "$AUTH"
run_wrk value "$S/configurations/value/database.max_connections?environment=production&service_name=user-service" "$AUTH"
run_wrk evaluate "$S/feature-flags/evaluate/new_dashboard?user_id=123" "$AUTH"
run_wrk bare-again "http://127.0.0.1:$BARE_PORT/check"

# --- Write -> SSE delivery ---------------------------------------------------------------------
"$PY" bench/sse.py delivery --port "$SERVICE_PORT" --token "$ADMIN_TOKEN" --subscribers 1 --writes 100 > "$OUT/sse-1.json"
echo "bench: delivery 1 $(cat "$OUT/sse-1.json")"
"$PY" bench/sse.py delivery --port "$SERVICE_PORT" --token "$ADMIN_TOKEN" --subscribers 1000 --writes 100 --spacing 0.05 > "$OUT/sse-1000.json"
echo "bench: delivery 1000 $(cat "$OUT/sse-1000.json")"

# --- Rebuild of 100,000 items -----------------------------------------------------------------
"$PY" bench/rebuild.py --database-url "$DATABASE_URL" --redis-url "$REDIS_URL" --items 100000 > "$OUT/rebuild.json"
echo "bench: rebuild $(cat "$OUT/rebuild.json")"

# --- Write throughput, 1 and 8 writers of one environment (issue 9: the committed sequence) -----
for writers in 1 8; do
    WDB="aurora_bench_writes_$$_$writers"
    mysql -h127.0.0.1 -uroot -e "CREATE DATABASE \`$WDB\` CHARACTER SET utf8mb4"
    "$PY" bench/writes.py --url "mysql+pymysql://root@127.0.0.1:3306/$WDB" --writers $writers \
        --seconds "$DURATION" > "$OUT/writes-$writers.json"
    mysql -h127.0.0.1 -uroot -e "DROP DATABASE \`$WDB\`"
    echo "bench: writes $writers $(cat "$OUT/writes-$writers.json")"
done

# --- SDK: ns per call, with the Unleash SDK in a bench-only virtualenv ---------------------------
if [ ! -x "$BENCH_VENV/bin/python" ]; then "$(command -v python3.11 || command -v python3)" -m venv "$BENCH_VENV"; fi
"$BENCH_VENV/bin/python" -m pip install --quiet -c constraints.txt "UnleashClient==6.9.1" ./client 2>/dev/null
"$BENCH_VENV/bin/python" bench/sdk.py > "$OUT/sdk.json"
echo "bench: sdk $(cat "$OUT/sdk.json")"

"$PY" bench/report.py "$OUT" > bench/RESULTS.md
echo "bench: wrote bench/RESULTS.md (raw output in $OUT)"
