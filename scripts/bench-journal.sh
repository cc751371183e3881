#!/usr/bin/env bash
# What time costs: the sustained SET rate through `clasp server` (one writer over 100 addresses,
# one wildcard subscriber, `clasp-bench throughput`) with no history kept at all
# (--history-depth 0), with the default recent values per address (depth 8), and with the
# journal on disk (--journal, redb), in the same run, round after round; then the REPLAY of a
# journal of 1,000,000 entries (`clasp-bench replay`). Release build, a fresh data directory per
# router under target/bench-journal/. Prints each round and the medians; result lines go to
# target/bench-journal/results.jsonl.
#
# Settings (environment):
#   ROUNDS=3 MESSAGES=500000 SIZE=8 FILL=1000000 PORT=17360
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
MESSAGES="${MESSAGES:-500000}"
SIZE="${SIZE:-8}"
FILL="${FILL:-1000000}"
PORT="${PORT:-17360}"

OUT="$ROOT/target/bench-journal"
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT"
: >"$RESULTS"

cargo build --release --locked -p clasp-cli -p clasp-bench
CLASP="$ROOT/target/release/clasp"
BENCH="$ROOT/target/release/clasp-bench"

# shellcheck source=scripts/router-lib.sh
source "$ROOT/scripts/router-lib.sh"
trap stop_router EXIT

common=(server --bind 127.0.0.1 --port "$PORT" --rate-limit 0 --max-connections-per-ip 0)
for ((round = 1; round <= ROUNDS; round++)); do
    echo "== round $round of $ROUNDS"
    for variant in none recent journal; do
        data="$OUT/data-$variant"
        rm -rf "$data"
        case $variant in
            none) extra=(--data-dir "$data" --history-depth 0) ;;
            recent) extra=(--data-dir "$data") ;;
            journal) extra=(--data-dir "$data" --journal) ;;
        esac
        start_router "$OUT/router-$variant-$round.log" "${common[@]}" "${extra[@]}"
        "$BENCH" --json --label "$variant" --round "$round" throughput \
            --url "ws://127.0.0.1:$PORT/" --messages "$MESSAGES" --size "$SIZE" >>"$RESULTS"
        if [[ $variant == journal ]]; then
            dropped=$(curl -s "127.0.0.1:$PORT/metrics" | awk '$1 == "clasp_journal_dropped_total" { print $2 }')
            echo "   journal entries dropped: ${dropped:-?}"
        fi
        stop_router
    done
    data="$OUT/data-replay"
    rm -rf "$data"
    start_router "$OUT/router-replay-$round.log" "${common[@]}" --data-dir "$data" --journal
    "$BENCH" --json --label journal --round "$round" replay --url "ws://127.0.0.1:$PORT/" \
        --fill "$FILL" >>"$RESULTS"
    stop_router
done

echo
echo "== medians of $ROUNDS rounds ($MESSAGES SETs of $SIZE B; REPLAY of $FILL entries)"
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tp = [r for r in rows if r.get("workload") == "throughput"]
print(f"{'history kept':<14} {'sent/s':>10} {'settled/s':>10} {'delivered':>10}")
for label in ("none", "recent", "journal"):
    xs = [r for r in tp if r.get("label") == label]
    if not xs:
        continue
    m = lambda k: statistics.median(x[k] or 0 for x in xs)
    print(f"{label:<14} {m('sent_per_sec'):>10.0f} {m('settled_per_sec'):>10.0f} {m('delivered_fraction'):>10.3f}")
rp = [r for r in rows if r.get("workload") == "replay"]
if rp:
    m = lambda k: statistics.median(x[k] for x in rp)
    print(f"\nREPLAY: fill {m('fill_per_sec'):.0f} SETs/s, {m('entries'):.0f} entries in {m('replay_ms'):.0f} ms "
          f"({m('entries_per_sec'):.0f} entries/s, first after {m('first_entry_ms'):.0f} ms)")
PY
