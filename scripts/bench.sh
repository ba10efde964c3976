#!/usr/bin/env bash
# Benchmarks the verify endpoint end to end on this machine:
#   1. builds the release binaries (twofold, twofold-loadgen);
#   2. starts `twofold serve` on a fresh temporary data directory and port;
#   3. creates an operator key with the CLI and measures the server's idle RSS;
#   4. runs twofold-loadgen (provisioning, then valid-code and wrong-code runs) against it;
#   5. stops the server, prints the results and removes the data directory.
#
#   scripts/bench.sh [extra twofold-loadgen flags...]
#
# Settings (environment variables):
#   USERS=100000       users to provision (about 800/s here); a valid-code run is aligned to a
#                      30 s TOTP step and needs about throughput x DURATION users, else it
#                      waits for the next step ("starved"; the loadgen prints how many to use)
#   CONCURRENCY=64     concurrent requests during the timed runs; a list like 16,64,256 runs
#                      every level on the same users (valid-code runs first, then wrong-code)
#   DURATION=10        seconds per timed run
#   MODE=both          valid | wrong | both
#   PORT=18181         port on 127.0.0.1 for the server
#   TIMEOUT=1200       hard limit in seconds for the load generator (provisioning included)
#   OUT=target/bench   where the JSON results and the server log are kept
#   SKIP_BUILD=1       use the existing release binaries
#   TWOFOLD_*          passed on to the server, e.g. TWOFOLD_CACHE_TTL_MS
#   TENANT_FAILURES=1000000000  the server's [throttle] tenant_failures_per_hour: the default
#                      (10,000/h) fills within a second of a wrong-code run, after which the run
#                      measures refusals instead of judged wrong codes; every failure is still
#                      charged to the tenant's budget row, so its cost is measured
#
# By default every run starts with the server's factor cache cold (the load generator waits
# --cool-down 31 s between runs), which is how real logins look. To measure the warm-cache path:
#   TWOFOLD_CACHE_TTL_MS=300000 USERS=220000 scripts/bench.sh --warm-up --cool-down 0
set -euo pipefail

USERS="${USERS:-100000}"
CONCURRENCY="${CONCURRENCY:-64}"
DURATION="${DURATION:-10}"
MODE="${MODE:-both}"
PORT="${PORT:-18181}"
TIMEOUT="${TIMEOUT:-1200}"

if ! [[ "$CONCURRENCY" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]]; then
    echo "bench.sh: CONCURRENCY must be a positive number or a list like 16,64,256 (got '$CONCURRENCY')" >&2
    exit 2
fi
for v in USERS DURATION PORT TIMEOUT; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "bench.sh: $v must be a positive whole number (got '${!v}')" >&2
        exit 2
    fi
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/target/bench}"
mkdir -p "$OUT"
stamp="$(date +%Y%m%d-%H%M%S)"
json="$OUT/bench-$stamp-c${CONCURRENCY//,/-}.json"
server_log="$OUT/server-$stamp.log"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "==> building release binaries (a few minutes on a cold cache)"
    cargo build --release -p twofold-server -p twofold-loadgen
fi
bin="$root/target/release/twofold"
loadgen="$root/target/release/twofold-loadgen"
for b in "$bin" "$loadgen"; do
    if [ ! -x "$b" ]; then
        echo "bench.sh: $b is missing; run without SKIP_BUILD=1" >&2
        exit 1
    fi
done

if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz"; then
    echo "bench.sh: something already answers on 127.0.0.1:$PORT; stop it or pick another PORT=" >&2
    exit 1
fi

data="$(mktemp -d "${TMPDIR:-/tmp}/twofold-bench.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> creating an operator key in $data"
key_out="$("$bin" apikey create --operator --label bench --data-dir "$data")"
token="$(grep -o 'tfk_[A-Za-z0-9_-]*' <<<"$key_out" | head -n1 || true)"
if [ -z "$token" ]; then
    echo "bench.sh: could not find a tfk_ token in the output of 'twofold apikey create':" >&2
    echo "$key_out" >&2
    exit 1
fi

printf '[throttle]\ntenant_failures_per_hour = %s\n' "${TENANT_FAILURES:-1000000000}" >"$data/bench.toml"
echo "==> starting twofold serve on 127.0.0.1:$PORT (log: $server_log)"
TWOFOLD_LOG_LEVEL="${TWOFOLD_LOG_LEVEL:-warn}" \
    "$bin" serve --config "$data/bench.toml" --data-dir "$data" --listen "127.0.0.1:$PORT" \
    >"$server_log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz"; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "bench.sh: the server exited during startup; its log:" >&2
        cat "$server_log" >&2
        exit 1
    fi
    sleep 0.1
done
if ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz"; then
    echo "bench.sh: the server did not answer /healthz within 10 s; see $server_log" >&2
    exit 1
fi
sleep 1
idle_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")"
echo "==> server pid $server_pid, idle RSS ${idle_kib} KiB ($((idle_kib / 1024)) MiB)"

echo "==> load: USERS=$USERS CONCURRENCY=$CONCURRENCY DURATION=${DURATION}s MODE=$MODE on $(nproc) CPUs"
status=0
timeout --signal=TERM "$TIMEOUT" "$loadgen" \
    --url "http://127.0.0.1:$PORT" \
    --api-key "$token" \
    --users "$USERS" \
    --concurrency "$CONCURRENCY" \
    --duration "$DURATION" \
    --mode "$MODE" \
    --server-pid "$server_pid" \
    --json "$json" \
    "$@" || status=$?

hwm_kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)"
db_bytes="$(stat -c %s "$data/twofold.db" 2>/dev/null || echo 0)"
wal_bytes="$(stat -c %s "$data/twofold.db-wal" 2>/dev/null || echo 0)"
echo
echo "==> server: idle RSS $((idle_kib / 1024)) MiB, peak RSS (VmHWM) $((hwm_kib / 1024)) MiB," \
    "database $((db_bytes / 1024 / 1024)) MiB + WAL $((wal_bytes / 1024 / 1024)) MiB"
if [ "$status" = 124 ]; then
    echo "bench.sh: the load generator hit TIMEOUT=${TIMEOUT}s; lower USERS or raise TIMEOUT" >&2
elif [ "$status" != 0 ]; then
    echo "bench.sh: the load generator failed (exit $status); server log: $server_log" >&2
fi
if [ -f "$json" ]; then
    echo "==> results: $json"
fi
exit "$status"
