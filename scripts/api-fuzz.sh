#!/usr/bin/env bash
# API fuzzing: schemathesis (from PyPI) against a real `twofold serve` and its /openapi.json.
#
#   scripts/api-fuzz.sh
#
# 1. starts `twofold serve` on a fresh temporary data directory and a free port on 127.0.0.1;
# 2. with the CLI on the same data directory: an operator key, a tenant `fuzz`, and a user
#    `alice` with an email address and a phone, so that authenticated paths are reachable
#    (path parameters `tenant` and `user` are pinned to them; everything else is generated);
# 3. runs schemathesis with the checks: no 5xx (not_a_server_error), every response matches
#    the documented schema and status codes, content types and headers as documented;
# 4. stops the server; fails if schemathesis found anything, or if the server logged a panic.
#
# Settings (environment variables):
#   API_FUZZ_SECONDS=150  time budget of schemathesis (CI: the default, about 3 minutes in all
#                         on 2 cores); raise it for longer runs by hand, e.g. 1800
#   API_FUZZ_EXAMPLES=    most test cases per operation and phase (default: schemathesis's)
#   API_FUZZ_SEED=        a seed to reproduce a run (schemathesis prints the one it used)
#   TWOFOLD_BIN=          the server binary [default: the debug build the test run made,
#                         $CARGO_TARGET_DIR or target/, built here if missing]
#   OUT=target/api-fuzz   where the server log and schemathesis's report are kept
# Installs schemathesis with pip if it is missing.
set -euo pipefail

seconds="${API_FUZZ_SECONDS:-150}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "api-fuzz.sh: API_FUZZ_SECONDS must be a positive whole number (got '$seconds')" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="${TWOFOLD_BIN:-$target/debug/twofold}"
if [ ! -x "$bin" ]; then
    echo "==> building $bin"
    cargo build -p twofold-server --bin twofold
fi
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
    echo "==> installing schemathesis (pip)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore schemathesis
fi
st=(python3 -m schemathesis.cli)
echo "schemathesis: $("${st[@]}" --version 2>&1 | tail -n1)"

OUT="${OUT:-$target/api-fuzz}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
data="$(mktemp -d "${TMPDIR:-/tmp}/twofold-api-fuzz.XXXXXX")"
server_log="$OUT/server.log"
# shellcheck source=lib/serve.sh
. "$root/scripts/lib/serve.sh"
cleanup() {
    serve_stop
    rm -rf "$data"
}
trap cleanup EXIT

port="$(serve_free_port)"
base="http://127.0.0.1:$port"
twofold() { "$bin" --data-dir "$data" "$@"; }

# The CLI creates the data directory, its keys and the database before the server starts.
operator_key="$(serve_operator_key "$bin" "$data" api-fuzz)"
twofold tenant create --slug fuzz --name "Fuzz Inc" >/dev/null
twofold user create --tenant fuzz --external-id alice --email alice@example.com \
    --phone +447700900123 >/dev/null

echo "==> starting twofold serve on $base (log: $server_log)"
serve_start "$bin" "$data" "$port" "$server_log"

config="$OUT/schemathesis.toml"
cat >"$config" <<EOF
# Written by scripts/api-fuzz.sh for one run.
headers = { Authorization = "Bearer \${TWOFOLD_API_FUZZ_KEY}" }

[parameters]
"path.tenant" = "fuzz"
"path.user" = "alice"
EOF

flags=(
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
    --max-time "$seconds"
    --workers 2
    --request-timeout 30
    --report "${API_FUZZ_REPORT:-junit}"
    --report-dir "$OUT"
    --warnings off
)
[ -n "${API_FUZZ_EXAMPLES:-}" ] && flags+=(--max-examples "$API_FUZZ_EXAMPLES")
[ -n "${API_FUZZ_SEED:-}" ] && flags+=(--seed "$API_FUZZ_SEED")

echo "==> schemathesis against $base/openapi.json for at most ${seconds}s"
set +e
# From $OUT, where schemathesis keeps its .schemathesis cache (not in the checkout).
(cd "$OUT" && TWOFOLD_API_FUZZ_KEY="$operator_key" \
    "${st[@]}" --config-file "$config" run "$base/openapi.json" "${flags[@]}")
status=$?
set -e

if grep -n "panicked" "$server_log" >&2; then
    echo "api-fuzz.sh: the server panicked (above; full log: $server_log)" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "api-fuzz.sh: FAILED (schemathesis exit $status); server log: $server_log, report: $OUT" >&2
    exit "$status"
fi
echo "==> api-fuzz: no server error and no schema mismatch found"
