#!/usr/bin/env bash
# Browser P2P (js/clasp-p2p) in a real browser: Debian's chromium driven by puppeteer-core
# (tests/browser/p2p.mjs) against `clasp server`: page ↔ page and page ↔ native
# (clasp_client::p2p, the p2p-echo example) both ways on both channels, and the router
# fallback. Run twice: on this host, then inside a network namespace with only loopback
# (`unshare -rn`), where Chromium needs --allow-loopback-in-peer-connection,
# --disable-features=WebRtcHideLocalIpsWithMdns and media permission to offer host candidates.
#
#   ./scripts/browser-p2p-check.sh [path/to/clasp] [path/to/p2p-echo]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
inside=false
if [[ ${1:-} == --inside ]]; then
    inside=true
    shift
fi
# Paths given are taken from where the script was started.
clasp=$(realpath -m "${1:-$root/target/debug/clasp}")
echo_bin=$(realpath -m "${2:-$root/target/debug/examples/p2p-echo}")
cd "$root"
if ! $inside; then
    [[ -x $clasp ]] || cargo build -p clasp-cli --locked
    [[ -x $echo_bin ]] || cargo build -p clasp-client --example p2p-echo --locked
fi
chromium=${CHROMIUM:-/usr/bin/chromium}
command -v node >/dev/null || { echo "!! SKIPPED: node is not installed"; exit 0; }
[[ -x $chromium ]] || { echo "!! SKIPPED: no chromium at $chromium (scripts/test.sh installs Debian's)"; exit 0; }
if [[ ! -d tests/browser/node_modules/puppeteer-core ]]; then
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

# Runs a router on a free port, then the browser scenario against it.
run() {
    local log url
    work=$(mktemp -d)
    log="$work/router.log"
    "$clasp" server --bind 127.0.0.1 --port 0 --memory >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 150); do
        url=$(grep -o 'ready: ws://[0-9.:]*/' "$log" | head -1 | sed 's/ready: //') || true
        [[ -n "$url" ]] && break
        sleep 0.1
    done
    local status=0
    if [[ -z "$url" ]]; then
        cat "$log" >&2
        status=1
    else
        timeout 240 node tests/browser/p2p.mjs "$url" "$echo_bin" || status=1
    fi
    cleanup
    return $status
}
work=
pid=
cleanup() {
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ -n $work ]]; then rm -rf "$work"; fi
    pid= work=
}
trap cleanup EXIT

if $inside; then
    run
    exit $?
fi

echo "== on this host"
run
if unshare -rn true 2>/dev/null && command -v ip >/dev/null 2>&1; then
    echo "== inside a network namespace with only loopback (unshare -rn)"
    unshare -rn sh -c 'ip link set lo up && ip -o link | grep -v " lo:" | grep -q . && exit 3; exec "$0" --inside "$1" "$2"' \
        "$root/scripts/browser-p2p-check.sh" "$clasp" "$echo_bin"
else
    echo "!! cannot create a network namespace here (unshare -rn refused or no iproute2): ran on this host only"
fi
