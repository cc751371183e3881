#!/usr/bin/env bash
# The web console in a real browser: Debian's chromium, headless, driven by puppeteer-core
# (tests/browser, installed here from npm when missing; no browser download), against
# `clasp server` with tokens on 127.0.0.1. Screenshots go to target/console-screenshots.
#
#   ./scripts/console-check.sh [path/to/clasp]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# A path given is taken from where the script was started.
clasp=$(realpath -m "${1:-$root/target/debug/clasp}")
cd "$root"
if [[ ! -x $clasp ]]; then
    [[ $# -eq 0 ]] || { echo "no clasp binary at $clasp" >&2; exit 1; }
    cargo build -p clasp-cli --locked
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
for tool in node npm python3; do
    command -v "$tool" >/dev/null || { echo "!! SKIPPED: $tool is not installed"; exit 0; }
done
[[ -x $chromium ]] || { echo "!! SKIPPED: no chromium at $chromium (scripts/test.sh installs Debian's)"; exit 0; }
if [[ ! -d tests/browser/node_modules/puppeteer-core ]]; then
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
work=$(mktemp -d)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

tokens="$work/tokens.json"
admin=$("$clasp" token create --file "$tokens" --scopes 'admin:/**' --subject console-admin)
viewer=$("$clasp" token create --file "$tokens" --scopes 'read:/**,write:/show/**' --subject console-viewer)
# An OSC bridge inside the router, for the console's bridge list.
osc_port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/router.toml" <<TOML
bridge_token = "$admin"

[[bridge]]
kind = "osc"
listen = "127.0.0.1:$osc_port"
targets = []
TOML
"$clasp" server --bind 127.0.0.1 --port 0 --memory --token-file "$tokens" --config "$work/router.toml" \
    >"$work/router.log" 2>&1 &
pid=$!
for _ in $(seq 150); do
    url=$(grep -o 'ready: ws://[0-9.:]*/' "$work/router.log" | head -1 | sed 's/ready: ws/http/; s|/$||') || true
    [[ -n "$url" ]] && break
    sleep 0.1
done
[[ -n "$url" ]] || { cat "$work/router.log" >&2; echo "the router did not start" >&2; exit 1; }
echo "console at $url/console ($("$chromium" --version 2>/dev/null | head -1))"
node tests/browser/console.mjs "$url" "$admin" "$viewer" "$clasp" target/console-screenshots
