#!/usr/bin/env bash
# Lighting through the router: `clasp-bench lighting` against a release `clasp server` running
# Art-Net bridges in-process (64 universes at 44 Hz in, through a mapping, and out again; then a
# client's SET of one channel to the ArtDmx on the wire). Results as JSON lines in
# target/bench-lighting/results.jsonl, medians over the rounds printed at the end.
#
#   ROUNDS=3 UNIVERSES=64 HZ=44 SECONDS_=10 SAMPLES=300 scripts/bench-lighting.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"
UNIVERSES="${UNIVERSES:-64}"
HZ="${HZ:-44}"
SECONDS_="${SECONDS_:-10}"
SAMPLES="${SAMPLES:-300}"
OUT="$ROOT/target/bench-lighting"
mkdir -p "$OUT"
: >"$OUT/results.jsonl"
cargo build --release --locked -p clasp-cli -p clasp-bench
for ((round = 1; round <= ROUNDS; round++)); do
    echo "== round $round of $ROUNDS"
    target/release/clasp-bench --json --label ours --round "$round" lighting \
        --clasp target/release/clasp --universes "$UNIVERSES" --hz "$HZ" \
        --seconds "$SECONDS_" --samples "$SAMPLES" >>"$OUT/results.jsonl"
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
