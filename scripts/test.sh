#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one:
#   1. installs what the tests need and nobody here wrote: OpenSSL's headers (libssl-dev, for
#      webauthn-rs), oathtool, zbarimg (zbar-tools),
#      qrencode (makes the QR images the vault imports), chromium and chromium-driver (the
#      hosted pages' tests drive headless Chromium over WebDriver),
#      Python's pyotp, openapi-spec-validator, aiosmtpd (the SMTP server the delivery tests
#      send real mail to) and mmdb-writer (writes the MaxMind DB the geo tests read), and
#      PostgreSQL (the store conformance suite runs against it): started if installed,
#      installed with apt-get if not, with trust auth for loopback TCP. Set
#      TWOFOLD_TEST_PG_URL to test against another server instead (then nothing is started).
#      The TLS test starts a private server of its own with the package's initdb and pg_ctl,
#      so the server package is installed even then (TWOFOLD_TEST_PG_BIN: another directory);
#   2. checks formatting and lints (cargo fmt, cargo clippy -D warnings);
#   3. runs every test of the workspace (cargo test);
#   4. API fuzzing: schemathesis against the debug `twofold` binary step 3 built
#      (scripts/api-fuzz.sh, about 3 minutes; API_FUZZ_SECONDS);
#   5. builds the cargo-fuzz targets and runs each for a few seconds (FUZZ_SECONDS, default 5).
# Set SKIP_FUZZ=1 to leave out steps 4 and 5 while iterating locally (CI never sets it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v oathtool >/dev/null 2>&1 || need_apt+=(oathtool)
command -v zbarimg >/dev/null 2>&1 || need_apt+=(zbar-tools)
command -v qrencode >/dev/null 2>&1 || need_apt+=(qrencode)
# TWOFOLD_CHROMIUM / TWOFOLD_CHROMEDRIVER may name other binaries (crates/testkit/src/browser.rs).
[ -n "${TWOFOLD_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -n "${TWOFOLD_CHROMEDRIVER:-}" ] || command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# With TWOFOLD_TEST_PG_URL the server is elsewhere, but psql still reports its version.
if [ -n "${TWOFOLD_TEST_PG_URL:-}" ] && ! command -v psql >/dev/null 2>&1; then
    need_apt+=(postgresql-client)
fi
# initdb and pg_ctl for crates/store/tests/postgres_tls.rs (its private server with TLS).
pg_initdb() {
    if [ -n "${TWOFOLD_TEST_PG_BIN:-}" ]; then
        echo "$TWOFOLD_TEST_PG_BIN/initdb"
    else
        compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n1 || command -v initdb || true
    fi
}
[ -x "$(pg_initdb)" ] || need_apt+=(postgresql)
# OpenSSL's headers for webauthn-rs (crates/webauthn), found through pkg-config.
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev)
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
python3 -c 'import mmdb_writer' >/dev/null 2>&1 || need_pip+=(mmdb-writer)
if [ "${#need_pip[@]}" -gt 0 ]; then
    step "installing ${need_pip[*]} (pip)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${need_pip[@]}"
fi

# PostgreSQL for crates/store/tests/postgres_conformance.rs, which creates a database per test.
pg_url="${TWOFOLD_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_cluster() { pg_lsclusters --no-header 2>/dev/null | awk 'NR == 1 { print $1, $2 }'; }
pg_query() { psql "$pg_url" -w -XAtq -c "$1" 2>&1; }
if [ -z "${TWOFOLD_TEST_PG_URL:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    if [ -z "$(pg_cluster)" ]; then
        step "installing postgresql (apt-get)"
        if [ "$(id -u)" -ne 0 ]; then
            echo "need root to apt-get install postgresql; install it and run again" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    read -r pg_version pg_name <<<"$(pg_cluster)" || true
    if [ -z "${pg_version:-}" ]; then
        echo "postgresql is installed but has no cluster; create one (pg_createcluster) and run again" >&2
        exit 1
    fi
    step "starting PostgreSQL ${pg_version}/${pg_name}"
    pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$pg_name" start || true
    for _ in $(seq 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break
        sleep 1
    done
fi
if [ -z "${TWOFOLD_TEST_PG_URL:-}" ] && [[ "$(pg_query 'SELECT 1')" == *password* ]]; then
    # A fresh install asks for a password over TCP; the test databases hold nothing, so trust
    # loopback connections as the development machines do.
    step "trusting loopback TCP connections to PostgreSQL (pg_hba.conf)"
    hba="$(runuser -u postgres -- psql -XAtq -c 'SHOW hba_file')"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    runuser -u postgres -- psql -XAtq -c 'SELECT pg_reload_conf()' >/dev/null
fi
if ! pg_version="$(pg_query 'SHOW server_version')"; then
    echo "PostgreSQL does not answer at ${TWOFOLD_TEST_PG_URL:+TWOFOLD_TEST_PG_URL}${TWOFOLD_TEST_PG_URL:-127.0.0.1:5432}: ${pg_version}" >&2
    exit 1
fi

echo "oathtool: $(oathtool --version | head -n1)"
echo "zbarimg:  $(zbarimg --version 2>&1 | head -n1)"
echo "chromium: $("${TWOFOLD_CHROMIUM:-chromium}" --version 2>/dev/null | head -n1)"
echo "chromedriver: $("${TWOFOLD_CHROMEDRIVER:-chromedriver}" --version | head -n1)"
echo "pyotp:    $(python3 -c 'import pyotp; print(pyotp.__version__ if hasattr(pyotp, "__version__") else "installed")')"
echo "aiosmtpd: $(python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)')"
echo "mmdb-writer: $(python3 -c 'import mmdb_writer; print(mmdb_writer.__version__)')"
echo "postgres: PostgreSQL ${pg_version}"
echo "initdb:   $("$(pg_initdb)" --version) (private TLS server of crates/store/tests/postgres_tls.rs)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test (workspace)"
log="${CARGO_TARGET_DIR:-target}/test-output.txt"
mkdir -p "$(dirname "$log")"
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
test_status="${PIPESTATUS[0]}"
if [ "$test_status" -ne 0 ]; then
    echo "tests failed; see the 'FAILED' lines above (full log: $log)" >&2
    exit "$test_status"
fi

if [ "${SKIP_FUZZ:-0}" != "1" ]; then
    step "API fuzzing (schemathesis, ${API_FUZZ_SECONDS:-150}s)"
    scripts/api-fuzz.sh
    step "fuzz smoke run (${FUZZ_SECONDS:-5}s per target)"
    scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
fi

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
step "all checks passed"
echo "tests: ${passed} passed, ${failed} failed"
