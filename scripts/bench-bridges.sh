#!/usr/bin/env bash
# Bridge latency and throughput: `clasp-bench bridges` against a release `clasp server` running
# MIDI and OSC bridges in-process (a pty as the MIDI device, UDP sockets as the OSC apps), next
# to the direct path with no router. Results as JSON lines in target/bench-bridges/results.jsonl.
#
#   ROUNDS=3 SAMPLES=10000 RATE=10000 SECONDS_=5 scripts/bench-bridges.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"
SAMPLES="${SAMPLES:-10000}"
RATE="${RATE:-10000}"
SECONDS_="${SECONDS_:-5}"
OUT="$ROOT/target/bench-bridges"
mkdir -p "$OUT"
: >"$OUT/results.jsonl"
cargo build --release --locked -p clasp-cli -p clasp-bench
for ((round = 1; round <= ROUNDS; round++)); do
    echo "== round $round of $ROUNDS"
    target/release/clasp-bench --json --label ours --round "$round" bridges \
        --clasp target/release/clasp --samples "$SAMPLES" --rate "$RATE" --seconds "$SECONDS_" \
        >>"$OUT/results.jsonl"
done
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["workload"], []).append(r)
for w, rs in by.items():
    keys = [k for k in rs[0] if k not in ("workload", "label", "round", "url", "path")]
    med = {k: statistics.median(r[k] for r in rs) for k in keys if isinstance(rs[0][k], (int, float))}
    print(w, json.dumps(med))
PY
