#!/usr/bin/env bash
# Bridges against real apps from other languages: python-osc as an OSC control surface
# talking to `clasp bridge osc` (tests/bridges/osc_app.py). Installs python-osc into a venv
# under target/ only when it is missing.
#
#   ./scripts/bridge-interop.sh [path/to/clasp]
set -euo pipefail
cd "$(dirname "$0")/.."
clasp=${1:-target/debug/clasp}
pyosc=1.10.2

[[ -x "$clasp" ]] || cargo build -p clasp-cli --locked
command -v python3 >/dev/null || { echo "python3 is required for the bridge interop test" >&2; exit 1; }

venv=target/bridge-interop/venv
if ! "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("python-osc") != sys.argv[1])' "$pyosc" 2>/dev/null; then
    echo "installing python-osc==$pyosc into $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "python-osc==$pyosc"
fi

exec timeout 120 "$venv/bin/python" tests/bridges/osc_app.py "$clasp"
