#!/usr/bin/env bash
# The README's screenshots of `twofold demo` (docs/img/demo-*.png), taken by the demo's own
# browser tests (crates/server/tests/demo.rs) in headless Chromium at 1024×700: they run the
# real `twofold demo` binary and save a PNG of each page when TWOFOLD_DEMO_SCREENSHOTS names
# a folder. Needs chromium, chromium-driver and oathtool (scripts/test.sh installs them);
# shrinks the PNGs with optipng when it is installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/docs/img"
mkdir -p "$out"
rm -f "$out"/demo-*.png
TWOFOLD_DEMO_SCREENSHOTS="$out" cargo test -p twofold-server --test demo
if command -v optipng >/dev/null 2>&1; then
    optipng -quiet -o2 "$out"/demo-*.png
fi
ls -l "$out"/demo-*.png
du -ch "$out"/demo-*.png | tail -n1
