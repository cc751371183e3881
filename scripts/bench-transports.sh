#!/usr/bin/env bash
# Single-hop SET latency through `clasp server` over each transport it serves: WebSocket, raw
# TCP and QUIC, with clasp-client at both ends (`clasp-bench transports`). The router is started
# fresh for each round (release build, in-memory state, self-signed certificate for QUIC only).
# Prints each round's figures and the median of the rounds per transport; every result line
# goes to target/bench-transports/results.jsonl.
#
# Settings (environment):
#   ROUNDS=3 SAMPLES=5000 WARMUP=200 SIZE=8
#   PORT_WS=17340 PORT_TCP=17341 PORT_QUIC=17342
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
SAMPLES="${SAMPLES:-5000}"
WARMUP="${WARMUP:-200}"
SIZE="${SIZE:-8}"
PORT_WS="${PORT_WS:-17340}"
PORT_TCP="${PORT_TCP:-17341}"
PORT_QUIC="${PORT_QUIC:-17342}"

OUT="$ROOT/target/bench-transports"
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT"
: >"$RESULTS"

cargo build --release --locked -p clasp-cli -p clasp-bench
CLASP="$ROOT/target/release/clasp"
BENCH="$ROOT/target/release/clasp-bench"

# shellcheck source=scripts/router-lib.sh
source "$ROOT/scripts/router-lib.sh"
trap stop_router EXIT

for ((round = 1; round <= ROUNDS; round++)); do
    data="$OUT/data"
    rm -rf "$data"
    log="$OUT/router-$round.log"
    # The certificate serves QUIC only (--quic-tls-only): the WebSocket stays ws://, as the
    # other benchmarks use it. Limits a benchmark would trip are off.
    start_router "$log" server --data-dir "$data" --bind 127.0.0.1 --port "$PORT_WS" \
        --tcp-port "$PORT_TCP" --quic-port "$PORT_QUIC" --tls-self-signed --quic-tls-only \
        --rate-limit 0 --max-connections-per-ip 0
    echo "== round $round of $ROUNDS"
    "$BENCH" --json --label ours --round "$round" transports \
        --url "ws://127.0.0.1:$PORT_WS/" --tcp "127.0.0.1:$PORT_TCP" \
        --quic "127.0.0.1:$PORT_QUIC" --ca-cert "$data/tls/self-signed.crt" \
        --samples "$SAMPLES" --warmup "$WARMUP" --size "$SIZE" >>"$RESULTS"
    stop_router
done

echo
echo "== median of $ROUNDS rounds ($SAMPLES samples each, $SIZE B value), µs"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    d = r.get("result", r)
    by.setdefault(d["transport"], []).append(d)
print(f"{'transport':<10} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>9}")
for t in ("websocket", "tcp", "quic"):
    if t not in by:
        continue
    m = lambda k: statistics.median(x[k] for x in by[t])
    print(f"{t:<10} {m('p50_us'):>8.1f} {m('p95_us'):>8.1f} {m('p99_us'):>8.1f} {m('max_us'):>9.1f}")
EOF
