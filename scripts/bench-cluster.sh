#!/usr/bin/env bash
# The cluster against one router, in the same run: a release `clasp server` on its own, and
# three release `clasp server --cluster` routers on one Debian nats-server (JetStream, file
# store, 127.0.0.1), driven by `clasp-bench`:
#
#   * latency: one router; a clustered router with publisher and subscriber on it; publisher on
#     router 1 and subscriber on router 2 (the cross-router hop through NATS);
#   * fan-out to 100 subscribers: on one router; spread over the three clustered routers (the
#     publisher on router 1);
#   * sustained SETs (throughput): one router; writer on router 1, subscriber on router 2.
#
# Results as JSON lines in target/bench-cluster/results.jsonl, medians printed at the end.
#
#   ROUNDS=3 SAMPLES=5000 MESSAGES=20000 scripts/bench-cluster.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"
SAMPLES="${SAMPLES:-5000}"
MESSAGES="${MESSAGES:-20000}"
FANOUT_MESSAGES="${FANOUT_MESSAGES:-1000}"
OUT="$ROOT/target/bench-cluster"
mkdir -p "$OUT"
: >"$OUT/results.jsonl"
command -v nats-server >/dev/null || { echo "nats-server is needed (apt install nats-server)" >&2; exit 1; }
cargo build --release --locked -p clasp-cli -p clasp-bench
clasp=target/release/clasp
bench=target/release/clasp-bench

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done

# Starts a router with ARGS logging to $work/$1.log; prints its URL.
router() {
    local name=$1
    shift
    "$clasp" server --bind 127.0.0.1 --port 0 --memory --rate-limit 0 "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 150); do
        url=$(grep -o 'ready: ws://[0-9.:]*/' "$work/$name.log" | head -1 | sed 's/ready: //') || true
        [[ -n "$url" ]] && { echo "$url"; return 0; }
        sleep 0.1
    done
    cat "$work/$name.log" >&2
    return 1
}
single=$(router single)
cluster=(--cluster "nats://127.0.0.1:$nats_port" --cluster-name bench)
r1=$(router r1 "${cluster[@]}")
r2=$(router r2 "${cluster[@]}")
r3=$(router r3 "${cluster[@]}")
echo "one router: $single; cluster: $r1 $r2 $r3 on nats://127.0.0.1:$nats_port"

run() {
    local label=$1 round=$2
    shift 2
    "$bench" --json --label "$label" --round "$round" "$@" >>"$OUT/results.jsonl"
}
for ((round = 1; round <= ROUNDS; round++)); do
    echo "== round $round of $ROUNDS"
    run single "$round" latency --url "$single" --samples "$SAMPLES"
    run cluster-same-router "$round" latency --url "$r1" --samples "$SAMPLES"
    run cluster-cross-router "$round" latency --url "$r1" --sub-url "$r2" --samples "$SAMPLES"
    run single "$round" fanout --url "$single" --subscribers 100 --messages "$FANOUT_MESSAGES"
    run cluster-3-routers "$round" fanout --url "$r1" --sub-urls "$r1,$r2,$r3" \
        --subscribers 100 --messages "$FANOUT_MESSAGES"
    run single "$round" throughput --url "$single" --messages "$MESSAGES"
    run cluster-cross-router "$round" throughput --url "$r1" --sub-url "$r2" --messages "$MESSAGES"
done
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["workload"], r["label"]), []).append(r)
for (w, label), rs in sorted(by.items()):
    keys = [k for k in rs[0] if k not in ("workload", "label", "round", "url", "path")]
    med = {k: statistics.median(r[k] for r in rs) for k in keys if isinstance(rs[0][k], (int, float))}
    print(w, label, json.dumps(med))
PY
