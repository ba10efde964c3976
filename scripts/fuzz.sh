#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target for SECONDS each (default 10): the OTP maths
# (otpauth_uri, base32, code_verify), the core's code parsing and TOTP windows (code_parse),
# every token decoder (tokens) and the API's JSON request types (api_json).
#
#   scripts/fuzz.sh [SECONDS]
#
# Uses the stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Zsanitizer), installs
# cargo-fuzz if it is missing (about a minute), and seeds each run from fuzz/seeds/<target>
# with the dictionary fuzz/dicts/<target>.dict when there is one. New corpus entries go to
# fuzz/corpus/<target> and crashes to fuzz/artifacts/<target> (both ignored by git).
set -euo pipefail

seconds="${1:-10}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS]  (a positive whole number, default 10)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

targets=(otpauth_uri base32 code_verify code_parse tokens api_json)

echo "==> building ${#targets[@]} fuzz targets"
cargo fuzz build

for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${seconds}s"
    mkdir -p "corpus/$target"
    corpora=("corpus/$target")
    [ -d "seeds/$target" ] && corpora+=("seeds/$target")
    flags=("-max_total_time=$seconds")
    [ -f "dicts/$target.dict" ] && flags+=("-dict=dicts/$target.dict")
    # Keep libFuzzer's progress and crash lines; its exit status decides.
    set +e
    cargo fuzz run "$target" "${corpora[@]}" -- "${flags[@]}" 2>&1 |
        grep --line-buffered -E '^(#[0-9]+[[:space:]]+(DONE|pulse)|Done |INFO: seed corpus|==[0-9]+==|SUMMARY|thread .* panicked|Error|Failing input)'
    status="${PIPESTATUS[0]}"
    set -e
    if [ "$status" -ne 0 ]; then
        echo "==> $target FAILED (exit $status); the crashing input is under fuzz/artifacts/$target" >&2
        exit "$status"
    fi
    echo "==> $target ok"
done
echo "==> all fuzz targets ran ${seconds}s without a finding"
