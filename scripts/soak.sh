#!/usr/bin/env bash
# Soak: the verify endpoint at a steady ~70 % of this machine's measured maximum for a long
# time, watching for errors and for memory that keeps growing. Not part of CI.
#
#   scripts/soak.sh [extra twofold-loadgen flags...]
#
# 1. builds the release binaries (twofold, twofold-loadgen) unless SKIP_BUILD=1;
# 2. starts `twofold serve` on a fresh temporary data directory and port, and creates an
#    operator key with the CLI;
# 3. unless RATE is given, measures the maximum: a short closed-loop run of valid codes
#    (MEASURE_SECONDS, MEASURE_CONCURRENCY workers) after the factor cache has expired (cold,
#    as in the soak, which cycles through more users than the cache holds for long), taking
#    the verifications/s while users were available;
# 4. runs the load generator open-loop at RATE (default: FRACTION x the maximum) requests/s of
#    valid codes for DURATION seconds, with enough users for one use per user per TOTP step,
#    while this script samples the server's RSS every SAMPLE_SECONDS and prints progress;
# 5. reports requests, errors, p50/p99 and RSS at start/end/max, and fails if any request
#    failed, or if RSS at the end exceeds the highest RSS seen during the warm-up (the first
#    WARMUP seconds of the soak: caches and the allocator fill up) by more than
#    MAX_GROWTH_PCT percent.
#
# Settings (environment variables):
#   DURATION=600          seconds of soak
#   RATE=                 requests/s; empty: measure the maximum first
#   FRACTION=0.7          share of the measured maximum to soak at
#   MEASURE_SECONDS=8     length of the closed-loop measurement
#   MEASURE_CONCURRENCY=64
#   CONCURRENCY=256       most requests in flight during the soak (open loop)
#   TOTP_PERIOD=30        TOTP period of the provisioned factors (15-300 s); 15 halves the
#                         users to provision, and so the set-up time, for the same rate
#   USERS=                users to provision [default: RATE x TOTP_PERIOD x 1.2, one valid
#                         code per user per step + 20 %]; fewer make the load generator skip
#                         requests that fall due while every user has been used in the step
#   WARMUP=               seconds of the soak counted as warm-up [default: DURATION / 5,
#                         at least 30]
#   MAX_GROWTH_PCT=10     allowed RSS growth after the warm-up, in percent
#   SAMPLE_SECONDS=5      RSS sampling interval
#   PORT=                 port on 127.0.0.1 for the server [default: a free one]
#   OUT=target/soak       where the JSON results, RSS samples and server log are kept
#   SKIP_BUILD=1          use the existing release binaries
#   TWOFOLD_*             passed on to the server
set -euo pipefail

DURATION="${DURATION:-600}"
RATE="${RATE:-}"
FRACTION="${FRACTION:-0.7}"
MEASURE_SECONDS="${MEASURE_SECONDS:-8}"
MEASURE_CONCURRENCY="${MEASURE_CONCURRENCY:-64}"
CONCURRENCY="${CONCURRENCY:-256}"
MAX_GROWTH_PCT="${MAX_GROWTH_PCT:-10}"
SAMPLE_SECONDS="${SAMPLE_SECONDS:-5}"
PORT="${PORT:-}"
TOTP_PERIOD="${TOTP_PERIOD:-30}"
for v in TOTP_PERIOD DURATION MEASURE_SECONDS MEASURE_CONCURRENCY CONCURRENCY MAX_GROWTH_PCT SAMPLE_SECONDS; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
        echo "soak.sh: $v must be a positive whole number (got '${!v}')" >&2
        exit 2
    fi
done
if [ -n "$PORT" ] && ! [[ "$PORT" =~ ^[1-9][0-9]*$ ]]; then
    echo "soak.sh: PORT must be a port number (got '$PORT')" >&2
    exit 2
fi
if [ -n "$RATE" ] && ! [[ "$RATE" =~ ^[0-9]+$ && "$RATE" -ge 1 ]]; then
    echo "soak.sh: RATE must be a positive whole number of requests/s (got '$RATE')" >&2
    exit 2
fi
if ! [[ "$FRACTION" =~ ^0?\.[0-9]+$|^1(\.0*)?$ ]]; then
    echo "soak.sh: FRACTION must be a number in (0, 1] such as 0.7 (got '$FRACTION')" >&2
    exit 2
fi
WARMUP="${WARMUP:-$(( DURATION / 5 > 30 ? DURATION / 5 : 30 ))}"
if [ "$WARMUP" -ge "$DURATION" ]; then
    echo "soak.sh: WARMUP ($WARMUP s) must be shorter than DURATION ($DURATION s)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
OUT="${OUT:-$target/soak}"
mkdir -p "$OUT"
stamp="$(date +%Y%m%d-%H%M%S)"
server_log="$OUT/server-$stamp.log"
rss_file="$OUT/rss-$stamp.tsv"
json="$OUT/soak-$stamp.json"

# shellcheck source=lib/serve.sh
. "$root/scripts/lib/serve.sh"
serve_release_binaries
PORT="${PORT:-$(serve_free_port)}"
serve_port_free "$PORT"

data="$(mktemp -d "${TMPDIR:-/tmp}/twofold-soak.XXXXXX")"
sampler_pid=""
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    serve_stop
    rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

key="$(serve_operator_key "$bin" "$data" soak)"
echo "==> starting twofold serve on 127.0.0.1:$PORT (log: $server_log)"
serve_start "$bin" "$data" "$PORT" "$server_log"
export TWOFOLD_API_KEY="$key"
url="http://127.0.0.1:$PORT"

if [ -z "$RATE" ]; then
    # Enough users for the measurement not to starve at up to ~3,000 verifications/s.
    measure_users=$(( MEASURE_SECONDS * 3000 ))
    echo "==> measuring the maximum: closed loop, $MEASURE_CONCURRENCY workers, ${MEASURE_SECONDS}s, $measure_users users"
    "$loadgen" --url "$url" --users "$measure_users" --concurrency "$MEASURE_CONCURRENCY" \
        --duration "$MEASURE_SECONDS" --mode valid \
        --json "$OUT/measure-$stamp.json" >"$OUT/measure-$stamp.txt"
    max="$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["runs"][0]; print(int(r["good_rps_unstarved"]))' "$OUT/measure-$stamp.json")"
    RATE="$(python3 -c 'import sys; print(max(1, int(float(sys.argv[1]) * float(sys.argv[2]))))' "$max" "$FRACTION")"
    echo "    maximum ${max} verifications/s; soaking at $RATE/s ($FRACTION of it)"
fi
# One success per user per step, plus 20 %.
users="${USERS:-$(( RATE * TOTP_PERIOD * 6 / 5 + 100 ))}"
echo "==> provisioning $users users first (about 500 users/s here: $(( users / 500 ))s)"

start_rss="$(rss_kib "$server_pid")"
echo "==> soak: $RATE requests/s of valid codes for ${DURATION}s, $users users (RSS now $(mib "$start_rss") MiB)"
# The sampler starts when the timed run does (the loadgen prints that line), so that the
# warm-up window is measured from the start of the load, not of provisioning.
printf 't_s\trss_kib\n' >"$rss_file"
fifo="$OUT/.loadgen-$stamp.fifo"
mkfifo "$fifo"
"$loadgen" --url "$url" --users "$users" --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --totp-period "$TOTP_PERIOD" --rate "$RATE" --mode valid --cool-down 0 --server-pid "$server_pid" --json "$json" "$@" \
    >"$OUT/soak-$stamp.txt" 2>"$fifo" &
loadgen_pid=$!
while IFS= read -r line; do
    echo "    $line"
    if [ -z "$sampler_pid" ] && [[ "$line" == "valid codes: "* ]]; then
        (
            t=0
            while kill -0 "$server_pid" 2>/dev/null; do
                r="$(rss_kib "$server_pid")"
                printf '%s\t%s\n' "$t" "$r" >>"$rss_file"
                [ $(( t % 30 )) -eq 0 ] && echo "    soak: ${t}s  server RSS $(mib "$r") MiB"
                sleep "$SAMPLE_SECONDS"
                t=$(( t + SAMPLE_SECONDS ))
            done
        ) &
        sampler_pid=$!
    fi
done <"$fifo"
rm -f "$fifo"
set +e
wait "$loadgen_pid"
loadgen_status=$?
set -e
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=""
cat "$OUT/soak-$stamp.txt"

python3 - "$json" "$rss_file" "$WARMUP" "$MAX_GROWTH_PCT" "$start_rss" "$loadgen_status" <<'EOF'
import json, sys
report, rss_path, warmup, max_pct, start_rss, loadgen_status = sys.argv[1:]
warmup, max_pct, start_rss = int(warmup), float(max_pct), int(start_rss)
r = json.load(open(report))["runs"][0]
samples = [tuple(map(int, l.split("\t"))) for l in open(rss_path).read().splitlines()[1:] if l]
if not samples:
    sys.exit("soak.sh: no RSS samples were taken")
mib = lambda k: k / 1024
warm = max([k for t, k in samples if t <= warmup] or [samples[0][1]])
end = samples[-1][1]
peak = max(k for _, k in samples)
growth = (end - warm) * 100.0 / warm
lat = r["latency_us"]
errors = r["errors"] + r["unexpected"]
print()
print(f"soak: {r['duration_s']:.0f}s at {r['rate_rps']:.0f} req/s asked, {r['throughput_rps']:.0f} req/s done, "
      f"{r['requests']} requests, {r['verified']} verified, errors {errors} "
      f"(HTTP {r['http_errors']}, transport {r['transport_errors']}, unexpected {r['unexpected']}), "
      f"not sent for lack of users {r['skipped']}")
print(f"latency (from when due): p50 {lat['p50'] / 1e3:.2f} ms  p99 {lat['p99'] / 1e3:.2f} ms  "
      f"p99.9 {lat['p999'] / 1e3:.2f} ms  max {lat['max'] / 1e3:.2f} ms")
print(f"server RSS: before load {mib(start_rss):.1f} MiB, end of warm-up ({warmup}s) {mib(warm):.1f} MiB, "
      f"end {mib(end):.1f} MiB, max {mib(peak):.1f} MiB; growth after warm-up {growth:+.1f}% "
      f"(bound {max_pct:.0f}%)")
failed = []
if errors:
    failed.append(f"{errors} requests failed")
if int(loadgen_status) != 0:
    failed.append(f"the load generator exited with {loadgen_status}")
if growth > max_pct:
    failed.append(f"RSS grew {growth:.1f}% after the warm-up (more than {max_pct:.0f}%)")
if failed:
    sys.exit("soak.sh: FAILED: " + "; ".join(failed))
print("soak: OK")
EOF
