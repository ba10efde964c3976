#!/usr/bin/env bash
# Benchmarks verification on several `twofold serve` nodes sharing one PostgreSQL database:
#   1. builds the release binaries (twofold, twofold-loadgen);
#   2. creates a fresh database `twofold_bench_<stamp>` on PG_URL's server (dropped at the end);
#   3. starts NODES nodes (127.0.0.1:PORT, PORT+1, …) on it, sharing one master and one hashing
#      key from the environment as a real deployment does, and an operator key made with the CLI;
#   4. runs twofold-loadgen over the first 1, 2, … NODES nodes on the same users, reporting
#      throughput and latency, the server CPU time per request (all nodes together), PostgreSQL's
#      CPU time per request (when PostgreSQL runs on this machine) and its transactions per
#      request (pg_stat_database);
#   5. stops the nodes and drops the database.
#
#   scripts/bench-multinode.sh [extra twofold-loadgen flags...]
#
# Settings (environment variables):
#   PG_URL=postgres://postgres@127.0.0.1:5432/postgres   a server where we may create databases
#   NODES=3             nodes to start; runs use 1, 2, … NODES of them (or NODE_COUNTS=1,3)
#   USERS=60000         users to provision (a valid run needs about throughput x DURATION)
#   CONCURRENCY=64      concurrent requests, spread over the nodes of a run
#   DURATION=10         seconds per timed run
#   MODE=both           valid | wrong | both
#   POOL=16             database connections per node
#   PORT=18281          first node's port on 127.0.0.1
#   TIMEOUT=3600        hard limit in seconds for the load generator
#   OUT=target/bench    where the JSON results and the nodes' logs are kept
#   SKIP_BUILD=1        use the existing release binaries
#   TENANT_FAILURES=1000000000  [throttle] tenant_failures_per_hour (see scripts/bench.sh)
#
# The SQLite single-node baseline for the same table is scripts/bench.sh with the same USERS,
# CONCURRENCY and DURATION. docs/PERFORMANCE.md explains how to read the results.
set -euo pipefail

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
NODES="${NODES:-3}"
USERS="${USERS:-60000}"
CONCURRENCY="${CONCURRENCY:-64}"
DURATION="${DURATION:-10}"
MODE="${MODE:-both}"
POOL="${POOL:-16}"
PORT="${PORT:-18281}"
TIMEOUT="${TIMEOUT:-3600}"

for v in NODES USERS CONCURRENCY DURATION POOL PORT TIMEOUT; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "bench-multinode.sh: $v must be a positive whole number (got '${!v}')" >&2
        exit 2
    fi
done
NODE_COUNTS="${NODE_COUNTS:-$(seq -s, 1 "$NODES")}"
if ! [[ "$NODE_COUNTS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
    echo "bench-multinode.sh: NODE_COUNTS must be a list like 1,2,3 (got '$NODE_COUNTS')" >&2
    exit 2
fi
for n in ${NODE_COUNTS//,/ }; do
    if [ "$n" -gt "$NODES" ]; then
        echo "bench-multinode.sh: NODE_COUNTS names $n nodes but NODES=$NODES" >&2
        exit 2
    fi
done
for tool in psql curl python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench-multinode.sh: $tool is missing (scripts/test.sh installs what is needed)" >&2
        exit 1
    fi
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/target/bench}"
mkdir -p "$OUT"
stamp="$(date +%Y%m%d-%H%M%S)"
json="$OUT/multinode-$stamp.json"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "==> building release binaries (a few minutes on a cold cache)"
    cargo build --release -p twofold-server -p twofold-loadgen
fi
bin="$root/target/release/twofold"
loadgen="$root/target/release/twofold-loadgen"
for b in "$bin" "$loadgen"; do
    if [ ! -x "$b" ]; then
        echo "bench-multinode.sh: $b is missing; run without SKIP_BUILD=1" >&2
        exit 1
    fi
done

if ! pg_version="$(psql "$PG_URL" -w -XAtq -c 'SHOW server_version' 2>&1)"; then
    echo "bench-multinode.sh: PostgreSQL does not answer at PG_URL: $pg_version" >&2
    echo "  start one (scripts/test.sh does) or set PG_URL=postgres://user@host:port/db" >&2
    exit 1
fi
db="twofold_bench_${stamp//-/_}"
db_url="$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$PG_URL" "$db")"
# The postmaster's pid, for PostgreSQL's CPU time: only when it runs on this machine.
pg_pid=""
data_directory="$(psql "$PG_URL" -w -XAtq -c 'SHOW data_directory' 2>/dev/null || true)"
if [ -n "$data_directory" ] && [ -r "$data_directory/postmaster.pid" ]; then
    pg_pid="$(head -n1 "$data_directory/postmaster.pid")"
fi

dirs="$(mktemp -d "${TMPDIR:-/tmp}/twofold-multinode.XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    psql "$PG_URL" -w -XAtq -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$dirs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> PostgreSQL $pg_version: creating database $db${pg_pid:+ (postmaster pid $pg_pid)}"
psql "$PG_URL" -w -XAtq -c "CREATE DATABASE $db" >/dev/null

# Every node must seal and hash with the same keys; a deployment passes them the same way.
TWOFOLD_MASTER_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
TWOFOLD_HASHING_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export TWOFOLD_MASTER_KEY TWOFOLD_HASHING_KEY
export TWOFOLD_DATABASE_URL="$db_url" TWOFOLD_DATABASE_POOL_SIZE="$POOL"
export TWOFOLD_LOG_LEVEL="${TWOFOLD_LOG_LEVEL:-warn}"

echo "==> creating an operator key (this also migrates the database)"
key_out="$("$bin" apikey create --operator --label bench --data-dir "$dirs/cli")"
token="$(grep -o 'tfk_[A-Za-z0-9_-]*' <<<"$key_out" | head -n1 || true)"
if [ -z "$token" ]; then
    echo "bench-multinode.sh: no tfk_ token in the output of 'twofold apikey create':" >&2
    echo "$key_out" >&2
    exit 1
fi

printf '[throttle]\ntenant_failures_per_hour = %s\n' "${TENANT_FAILURES:-1000000000}" >"$dirs/bench.toml"
urls=()
for i in $(seq 0 $((NODES - 1))); do
    port=$((PORT + i))
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then
        echo "bench-multinode.sh: something already answers on 127.0.0.1:$port; pick another PORT=" >&2
        exit 1
    fi
    log="$OUT/multinode-$stamp-node$((i + 1)).log"
    "$bin" serve --config "$dirs/bench.toml" --data-dir "$dirs/node$i" --listen "127.0.0.1:$port" \
        >"$log" 2>&1 &
    pids+=("$!")
    urls+=("http://127.0.0.1:$port")
    echo "==> node $((i + 1)): pid $!, http://127.0.0.1:$port (log: $log)"
done
for i in "${!urls[@]}"; do
    for _ in $(seq 1 150); do
        curl -s -o /dev/null --max-time 1 "${urls[$i]}/healthz" && break
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "bench-multinode.sh: node $((i + 1)) exited during startup; its log:" >&2
            cat "$OUT/multinode-$stamp-node$((i + 1)).log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if ! curl -s -o /dev/null --max-time 1 "${urls[$i]}/healthz"; then
        echo "bench-multinode.sh: node $((i + 1)) did not answer /healthz within 15 s" >&2
        exit 1
    fi
done

join() { local IFS=,; echo "$*"; }
echo "==> load: USERS=$USERS CONCURRENCY=$CONCURRENCY DURATION=${DURATION}s MODE=$MODE" \
    "nodes $NODE_COUNTS, pool $POOL per node, on $(nproc) CPUs"
status=0
timeout --signal=TERM "$TIMEOUT" "$loadgen" \
    --url "$(join "${urls[@]}")" \
    --nodes "$NODE_COUNTS" \
    --server-pid "$(join "${pids[@]}")" \
    ${pg_pid:+--pg-pid "$pg_pid"} \
    --pg-url "$db_url" \
    --api-key "$token" \
    --users "$USERS" \
    --concurrency "$CONCURRENCY" \
    --duration "$DURATION" \
    --mode "$MODE" \
    --json "$json" \
    "$@" || status=$?

if [ "$status" = 124 ]; then
    echo "bench-multinode.sh: the load generator hit TIMEOUT=${TIMEOUT}s; lower USERS or raise TIMEOUT" >&2
elif [ "$status" != 0 ]; then
    echo "bench-multinode.sh: the load generator failed (exit $status); node logs in $OUT" >&2
fi
[ -f "$json" ] && echo "==> results: $json"
exit "$status"
