#!/usr/bin/env bash
# Bridges against real apps from other languages: python-osc as an OSC control surface
# talking to `clasp bridge osc` (tests/bridges/osc_app.py), python-socketio (aiohttp) as a
# web app's Socket.IO server that `clasp bridge socketio` joins (tests/bridges/socketio_app.py),
# and node `oscquery` 1.1.1 as an OSCQuery app mirrored by the bridge and as the mDNS browser
# that finds the bridge (tests/bridges/oscquery/, in a network namespace of its own with a veth
# pair, so multicast and the 0.0.0.0 binds stay inside).
# Installs the Python packages into a venv under target/ and the npm package only when missing.
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

if [[ ! -d tests/bridges/oscquery/node_modules/oscquery ]] && command -v npm >/dev/null; then
    echo "installing oscquery@1.1.1 (npm) into tests/bridges/oscquery"
    (cd tests/bridges/oscquery && npm ci --silent --no-audit --no-fund)
fi

status=0
echo "-- OSC: python-osc through clasp bridge osc"
timeout 120 "$venv/bin/python" tests/bridges/osc_app.py "$clasp" || status=1
echo "-- Socket.IO: a python-socketio server joined by clasp bridge socketio"
timeout 120 "$venv/bin/python" tests/bridges/socketio_app.py "$clasp" || status=1
echo "-- OSCQuery: node oscquery mirrored by clasp bridge osc, and finding it over mDNS"
if ! command -v node >/dev/null || [[ ! -d tests/bridges/oscquery/node_modules/oscquery ]]; then
    echo "node or the npm package oscquery is missing" >&2
    status=1
elif ! unshare -rn true 2>/dev/null || ! command -v ip >/dev/null; then
    echo "!! SKIPPED: cannot create a network namespace here (unshare -rn refused or no iproute2)"
else
    clasp_abs=$(realpath "$clasp")
    # Both ends of the veth pair live in the one namespace: a packet sent out of v0 arrives on
    # v1 and the other way round. mdns-sd listens and answers on both; node's mDNS library
    # joins the group on one interface and sends on the default one, which the kernel picks
    # among two equal routes — pinned to v0 by the multicast route, or its answers can arrive
    # on the interface it did not join.
    (cd tests/bridges/oscquery && timeout 120 unshare -rn sh -c '
        ip link set lo up &&
        ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up &&
        ip addr add 10.9.0.1/24 dev v0 && ip addr add 10.9.0.2/24 dev v1 &&
        ip route add 224.0.0.0/4 dev v0 &&
        exec node oscquery_app.mjs "$0"' "$clasp_abs") || status=1
fi
exit $status
