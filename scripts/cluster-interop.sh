#!/usr/bin/env bash
# Cluster interop: three `clasp server --cluster` routers on one Debian nats-server (JetStream,
# 127.0.0.1), the official Python client on router A, the official JS client on router B, a late
# Python client on router C. Needs the clients scripts/interop.sh installs, and nats-server.
#
#   ./scripts/cluster-interop.sh [path/to/clasp]
set -euo pipefail
cd "$(dirname "$0")/.."
clasp=${1:-target/debug/clasp}
cache=.cache/interop
venv="$cache/venv"
say() { printf '\n== %s\n' "$*"; }
if ! command -v nats-server >/dev/null; then
    echo "!! SKIPPED: nats-server is not installed (scripts/test.sh installs it)"
    exit 0
fi
[[ -x "$venv/bin/python" && -d tests/interop/js/node_modules/@clasp-to/core ]] ||
    { echo "run scripts/interop.sh first (it installs the official clients)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    # Routers are started in command substitutions (subshells): their pids are in a file.
    [[ -f "$work/pids" ]] && while read -r p; do pids+=("$p"); done <"$work/pids"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

# Starts a clustered router logging to $work/$1.log; prints its URL.
router() {
    local log="$work/$1.log"
    "$clasp" server --bind 127.0.0.1 --port 0 --memory --cluster "nats://127.0.0.1:$port" \
        --cluster-name interop >"$log" 2>&1 &
    echo $! >>"$work/pids"
    for _ in $(seq 150); do
        url=$(grep -o 'ready: ws://[0-9.:]*/' "$log" | head -1 | sed 's/ready: //') || true
        [[ -n "$url" ]] && { echo "$url"; return 0; }
        sleep 0.1
    done
    cat "$log" >&2
    echo "router $1 did not become ready" >&2
    return 1
}
a=$(router a)
b=$(router b)
c=$(router c)
say "Python clasp-to 3.3.0 on A ($a), JS @clasp-to/core 3.3.2 on B ($b), late client on C ($c)"
status=0
(cd tests/interop/js && timeout 120 node cluster.mjs "$b") &
js=$!
timeout 120 "$venv/bin/python" tests/interop/python/cluster.py "$a" "$c" || status=1
wait "$js" || status=1
exit $status
