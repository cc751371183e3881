#!/usr/bin/env bash
# QoS Commit (ACK once the write is on disk) through `clasp server` with its redb database:
# writes/s and write-to-ACK latency for 1, 8 and 64 concurrent writers, beside QoS Confirm (ACK
# before the disk) with one writer (`clasp-bench commit`). The router is started fresh for each
# round (release build, a new data directory under target/). Prints each round's figures and
# the median of the rounds; result lines go to target/bench-commit/results.jsonl.
#
# Settings (environment):
#   ROUNDS=3 SECONDS_EACH=5 WRITERS=1,8,64 SIZE=64 PORT=17350
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
SECONDS_EACH="${SECONDS_EACH:-5}"
WRITERS="${WRITERS:-1,8,64}"
SIZE="${SIZE:-64}"
PORT="${PORT:-17350}"

OUT="$ROOT/target/bench-commit"
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
    start_router "$log" server --data-dir "$data" --bind 127.0.0.1 --port "$PORT" \
        --rate-limit 0 --max-connections-per-ip 0
    echo "== round $round of $ROUNDS"
    "$BENCH" --json --label ours --round "$round" commit --url "ws://127.0.0.1:$PORT/" \
        --writers "$WRITERS" --seconds "$SECONDS_EACH" --size "$SIZE" >>"$RESULTS"
    stop_router
done

echo
echo "== median of $ROUNDS rounds ($SECONDS_EACH s each, $SIZE B values)"
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["qos"], r["writers"]), []).append(r)
print(f"{'qos':<8} {'writers':>7} {'writes/s':>10} {'p50 µs':>9} {'p99 µs':>9} {'max µs':>10}")
for (qos, w), xs in sorted(by.items(), key=lambda kv: (kv[0][0] != "confirm", kv[0][1])):
    m = lambda k: statistics.median(x[k] for x in xs)
    print(f"{qos:<8} {w:>7} {m('writes_per_sec'):>10.0f} {m('p50_us'):>9.1f} {m('p99_us'):>9.1f} {m('max_us'):>10.1f}")
PY
