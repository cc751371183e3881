#!/usr/bin/env bash
# Soak benchmark (not part of CI): runs `clasp relay` (router + OSC listener) with a data
# directory (so persistence is part of the load) and drives it with `clasp-bench soak`: SETs over
# a fixed address space, events, streams, gestures, bundles, wildcard subscribers and client
# churn, sampling the router's resident memory every 10 s. After the warm-up (the first fifth)
# attackers join: announce and QUERY floods, oversize patterns, gesture floods, slow readers and
# 200 unverified OSC sources; an honest client's single-hop latency is reported before and
# during the attack. Prints the series and PASS/FAIL for the RSS plateau.
#
#   scripts/soak.sh                       # 30 minutes
#   DURATION=120 scripts/soak.sh          # a 2-minute smoke run
#   ATTACK=0 scripts/soak.sh              # without attackers
#
# Settings (environment): DURATION=1800 INTERVAL=10 SETS_PER_SEC=20000 ADDRESSES=10000
# SUBSCRIBERS=20 CHURN_PER_SEC=5 ATTACK=1 OSC_SOURCES=200 PORT=17350 OSC_PORT=17351. Output also
# goes to target/soak/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-1800}"
INTERVAL="${INTERVAL:-10}"
SETS_PER_SEC="${SETS_PER_SEC:-20000}"
ADDRESSES="${ADDRESSES:-10000}"
SUBSCRIBERS="${SUBSCRIBERS:-20}"
CHURN_PER_SEC="${CHURN_PER_SEC:-5}"
PORT="${PORT:-17350}"
OSC_PORT="${OSC_PORT:-17351}"
ATTACK="${ATTACK:-1}"
OSC_SOURCES="${OSC_SOURCES:-200}"
OUT="$ROOT/target/soak"
mkdir -p "$OUT"
DATA="$(mktemp -d)"
ROUTER_PID=""
cleanup() {
    if [[ -n "$ROUTER_PID" ]]; then kill "$ROUTER_PID" 2>/dev/null || true; wait "$ROUTER_PID" 2>/dev/null || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT

echo "== building (release): clasp, clasp-bench"
cargo build --release --locked -p clasp-cli -p clasp-bench

RUST_LOG=warn target/release/clasp relay --host 127.0.0.1 --ws-port "$PORT" --data-dir "$DATA" \
    --rendezvous-port 0 --osc-port "$OSC_PORT" --no-mdns --discovery-port 0 \
    >"$OUT/router.log" 2>&1 &
ROUTER_PID=$!
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.1
done
attack=()
if [[ "$ATTACK" == 1 ]]; then
    attack=(--attack --osc "127.0.0.1:$OSC_PORT" --osc-sources "$OSC_SOURCES")
fi
echo "== soak: ${DURATION}s, ${SETS_PER_SEC} SETs/s over ${ADDRESSES} addresses, ${SUBSCRIBERS} subscribers, ${CHURN_PER_SEC} new clients/s, attackers: ${ATTACK}"
target/release/clasp-bench --json soak --url "ws://127.0.0.1:$PORT/" --pid "$ROUTER_PID" \
    --duration-secs "$DURATION" --interval-secs "$INTERVAL" --sets-per-sec "$SETS_PER_SEC" \
    --addresses "$ADDRESSES" --subscribers "$SUBSCRIBERS" --churn-per-sec "$CHURN_PER_SEC" "${attack[@]}" \
    >"$OUT/result.json" 2> >(tee "$OUT/soak.log" >&2)
echo "== raw result: $OUT/result.json"
