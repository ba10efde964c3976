# Shared by scripts/bench.sh, scripts/soak.sh and scripts/api-fuzz.sh (sourced, not run):
# an operator key from the CLI, and a `twofold serve` on a data directory and port that is
# started, waited for and stopped the same way everywhere.
#
#   serve_release_binaries              builds them unless SKIP_BUILD=1; sets bin and loadgen
#   serve_free_port                     prints a port on 127.0.0.1 that nothing listens on
#   serve_port_free PORT                fails if something answers on 127.0.0.1:PORT
#   serve_operator_key BIN DATA LABEL   prints a new operator key (tfk_…), or fails
#   serve_start BIN DATA PORT LOG [ARG…] starts the server (extra serve flags after LOG), sets
#                                       server_pid, waits for /healthz
#   serve_stop                          stops it (TERM, then KILL after 10 s)

server_pid=""

serve_release_binaries() {
    local target="${CARGO_TARGET_DIR:-$root/target}"
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        echo "==> building release binaries (a few minutes on a cold cache)"
        cargo build --release -p twofold-server -p twofold-loadgen
    fi
    bin="$target/release/twofold"
    loadgen="$target/release/twofold-loadgen"
    for b in "$bin" "$loadgen"; do
        if [ ! -x "$b" ]; then
            echo "$b is missing; run without SKIP_BUILD=1" >&2
            return 1
        fi
    done
}

serve_free_port() {
    # Bind port 0 and give it back: the server binds it a moment later.
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

serve_port_free() {
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/healthz"; then
        echo "something already answers on 127.0.0.1:$1; stop it or pick another PORT=" >&2
        return 1
    fi
}

serve_operator_key() {
    local out token
    out="$("$1" --data-dir "$2" apikey create --operator --label "$3")"
    token="$(grep -o 'tfk_[A-Za-z0-9_-]*' <<<"$out" | head -n1 || true)"
    if [ -z "$token" ]; then
        echo "no tfk_ token in the output of 'twofold apikey create':" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$token"
}

serve_start() {
    local bin="$1" data="$2" port="$3" log="$4"
    shift 4
    TWOFOLD_LOG_LEVEL="${TWOFOLD_LOG_LEVEL:-warn}" \
        "$bin" serve --data-dir "$data" --listen "127.0.0.1:$port" "$@" >"$log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "the server exited during startup; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "the server did not answer /healthz within 10 s; see $log" >&2
    return 1
}

serve_stop() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
}
