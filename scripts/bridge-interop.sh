#!/usr/bin/env bash
# Bridges against real apps from other languages: python-osc as an OSC control surface
# talking to `clasp bridge osc` (tests/bridges/osc_app.py), and python-socketio (aiohttp) as a
# web app's Socket.IO server that `clasp bridge socketio` joins (tests/bridges/socketio_app.py).
# Installs the Python packages into a venv under target/ only when they are missing.
#
#   ./scripts/bridge-interop.sh [path/to/clasp]
set -euo pipefail
cd "$(dirname "$0")/.."
clasp=${1:-target/debug/clasp}
pyosc=1.10.2
pysio=5.18.1
aiohttp=3.14.5

[[ -x "$clasp" ]] || cargo build -p clasp-cli --locked
command -v python3 >/dev/null || { echo "python3 is required for the bridge interop test" >&2; exit 1; }

venv=target/bridge-interop/venv
have() {
    "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' "$1" "$2" 2>/dev/null
}
if ! have python-osc "$pyosc" || ! have python-socketio "$pysio" || ! have aiohttp "$aiohttp"; then
    echo "installing python-osc==$pyosc python-socketio==$pysio aiohttp==$aiohttp into $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "python-osc==$pyosc" "python-socketio==$pysio" "aiohttp==$aiohttp"
fi

status=0
echo "-- OSC: python-osc through clasp bridge osc"
timeout 120 "$venv/bin/python" tests/bridges/osc_app.py "$clasp" || status=1
echo "-- Socket.IO: a python-socketio server joined by clasp bridge socketio"
timeout 120 "$venv/bin/python" tests/bridges/socketio_app.py "$clasp" || status=1
exit $status
