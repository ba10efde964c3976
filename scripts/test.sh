#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one:
#   1. installs what the tests need and nobody here wrote: oathtool, zbarimg (zbar-tools),
#      Python's pyotp, openapi-spec-validator and aiosmtpd (the SMTP server the delivery tests
#      send real mail to);
#   2. checks formatting and lints (cargo fmt, cargo clippy -D warnings);
#   3. runs every test of the workspace (cargo test);
#   4. builds the cargo-fuzz targets and runs each for a few seconds (FUZZ_SECONDS, default 5).
# Set SKIP_FUZZ=1 to leave out step 4 while iterating locally (CI never sets it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v oathtool >/dev/null 2>&1 || need_apt+=(oathtool)
command -v zbarimg >/dev/null 2>&1 || need_apt+=(zbar-tools)
if [ "${#need_apt[@]}" -gt 0 ]; then
    step "installing ${need_apt[*]} (apt-get)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "need root to apt-get install ${need_apt[*]}; install them and run again" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
need_pip=()
python3 -c 'import pyotp' >/dev/null 2>&1 || need_pip+=(pyotp)
python3 -c 'import openapi_spec_validator' >/dev/null 2>&1 || need_pip+=(openapi-spec-validator)
python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need_pip+=(aiosmtpd)
if [ "${#need_pip[@]}" -gt 0 ]; then
    step "installing ${need_pip[*]} (pip)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${need_pip[@]}"
fi
echo "oathtool: $(oathtool --version | head -n1)"
echo "zbarimg:  $(zbarimg --version 2>&1 | head -n1)"
echo "pyotp:    $(python3 -c 'import pyotp; print(pyotp.__version__ if hasattr(pyotp, "__version__") else "installed")')"
echo "aiosmtpd: $(python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)')"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test (workspace)"
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
test_status="${PIPESTATUS[0]}"
if [ "$test_status" -ne 0 ]; then
    echo "tests failed; see the 'FAILED' lines above (full log: target/test-output.txt)" >&2
    exit "$test_status"
fi

if [ "${SKIP_FUZZ:-0}" != "1" ]; then
    step "fuzz smoke run (${FUZZ_SECONDS:-5}s per target)"
    scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
fi

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
step "all checks passed"
echo "tests: ${passed} passed, ${failed} failed"
