#!/usr/bin/env bash
# Differential MQTT conformance: the same scripted client scenarios against Debian's mosquitto
# (the reference) and our `clasp relay --mqtt-port`, compared observation by observation
# (tests/mqtt-conformance/run.py; known-differences.txt lists what differs today). Installs
# mosquitto (apt-get) and paho-mqtt (a venv under target/) only when they are missing. Each run
# starts its own mosquitto on a free port of 127.0.0.1; a system service is neither used nor
# needed.
#
#   ./scripts/mqtt-conformance.sh [path/to/clasp] [--only NAME] [--verbose] [--keep-logs]
#
# Prints SKIPPED and exits 0 when mosquitto is missing and cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
clasp=target/debug/clasp
if [[ $# -gt 0 && "$1" != -* ]]; then
    clasp=$1
    shift
fi
mosquitto=/usr/sbin/mosquitto
paho=2.1.0

[[ -x "$clasp" ]] || cargo build -p clasp-cli --locked
command -v python3 >/dev/null || { echo "python3 is required for the MQTT conformance test" >&2; exit 1; }

if [[ ! -x $mosquitto ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto (apt-get)"
    sudo_=""
    [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo_=sudo
    $sudo_ apt-get install -y -qq mosquitto >/dev/null 2>&1 ||
        { $sudo_ apt-get update -qq >/dev/null 2>&1 && $sudo_ apt-get install -y -qq mosquitto >/dev/null 2>&1; } ||
        true
fi
if [[ ! -x $mosquitto ]]; then
    echo "!! SKIPPED: $mosquitto is missing and could not be installed (apt-get install mosquitto)"
    exit 0
fi

venv=target/mqtt-conformance/venv
if ! "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("paho-mqtt") != sys.argv[1])' "$paho" 2>/dev/null; then
    echo "installing paho-mqtt==$paho into $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "paho-mqtt==$paho"
fi

exec timeout 180 "$venv/bin/python" tests/mqtt-conformance/run.py "$clasp" "$@"
