#!/usr/bin/env bash
# Runs the same clasp-bench workloads against our router (`clasp server`) and the reference
# router (crates.io clasp-router 3.3.0, bench/peers/reference-router), alternating ours and the
# reference for each workload and round, each router started fresh for each run. The latency
# workloads also run against `clasp-bench echo-server` (label `echo`), a zero-work server that
# gives the floor of single-hop latency on this machine. Prints medians side by side, the
# acceptance targets with PASS/FAIL, and writes every result line to
# target/bench-routers/results.jsonl.
#
# Settings (environment):
#   ROUNDS=3                  rounds per workload (each round runs ours, the reference[, echo])
#   WORKLOADS="latency latency_loaded fanout throughput memory"
#                             latency: idle single hop; latency_loaded: the same while a
#                             background fan-out load runs
#   SAMPLES=10000 WARMUP=200  latency samples and warm-up
#   LOAD_SUBSCRIBERS=100 LOAD_RATE=200000
#                             latency_loaded: load subscribers and total deliveries/s
#   SIZE=8                    value size in bytes (8: f64; more: a string of that size)
#   SUBSCRIBERS=10,100,1000   fan-out subscriber counts
#   MESSAGES=1000             fan-out messages per subscriber count (at least)
#   MIN_DELIVERIES=1000000    fan-out: more messages when needed for this many deliveries per
#                             run (N=10: 100,000 SETs, N=100: 10,000), so each run is long
#                             enough to measure a steady rate rather than its start-up
#   TP_MESSAGES=100000        throughput messages
#   CONNECTIONS=1000,10000    memory: idle connection counts
#   PORT_OURS=17330 PORT_REF=17331 PORT_ECHO=17332 PORT_BASE=17334
#   BASE=                     path of an older `clasp` build: it runs as router `base` beside
#                             ours in every round (same flags), to compare two builds in one run
#
# Each run records the machine's background CPU use (everything else, sampled for 0.5 s just
# before the router starts) in target/bench-routers/background.tsv; the latency summary at the
# end gives the p50 medians per background band, since on this kind of VM an idle CPU halts and
# waking it dominates an idle hop (see docs/benchmarks-latency.md).
#   ROUTER_LOG=warn           RUST_LOG of our router
#
# Quick smoke run:
#   ROUNDS=1 SAMPLES=1000 MESSAGES=200 MIN_DELIVERIES=0 TP_MESSAGES=5000 CONNECTIONS=200 \
#     scripts/bench-routers.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
WORKLOADS="${WORKLOADS:-latency latency_loaded fanout throughput memory}"
SAMPLES="${SAMPLES:-10000}"
WARMUP="${WARMUP:-200}"
LOAD_SUBSCRIBERS="${LOAD_SUBSCRIBERS:-100}"
LOAD_RATE="${LOAD_RATE:-200000}"
SIZE="${SIZE:-8}"
SUBSCRIBERS="${SUBSCRIBERS:-10,100,1000}"
MESSAGES="${MESSAGES:-1000}"
MIN_DELIVERIES="${MIN_DELIVERIES:-1000000}"
TP_MESSAGES="${TP_MESSAGES:-100000}"
CONNECTIONS="${CONNECTIONS:-1000,10000}"
PORT_OURS="${PORT_OURS:-17330}"
PORT_REF="${PORT_REF:-17331}"
PORT_ECHO="${PORT_ECHO:-17332}"
PORT_BASE="${PORT_BASE:-17334}"
BASE="${BASE:-}"
ROUTER_LOG="${ROUTER_LOG:-warn}"

OUT="$ROOT/target/bench-routers"
RESULTS="$OUT/results.jsonl"
BACKGROUND="$OUT/background.tsv"
LOGS="$OUT/logs"
REF_TARGET="$ROOT/target/reference-router"
mkdir -p "$OUT" "$LOGS"

ROUTER_PID=""
FLOOR_PID=""
PORT_FLOOR_LOAD="${PORT_FLOOR_LOAD:-17333}"
trap 'stop_router' EXIT
trap 'exit 130' INT TERM

echo "== building (release): clasp, clasp-bench, reference-router"
cargo build --release -p clasp-cli -p clasp-bench
CARGO_TARGET_DIR="$REF_TARGET" cargo build --release \
    --manifest-path bench/peers/reference-router/Cargo.toml
CLASP="$ROOT/target/release/clasp"
BENCH="$ROOT/target/release/clasp-bench"
REF="$REF_TARGET/release/reference-router"

# Both routers and this tool may need many descriptors (memory workload).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# shellcheck source=scripts/ports-lib.sh
source "$ROOT/scripts/ports-lib.sh"

# Starts router $1 (ours|reference|echo) for run name $2; sets ROUTER_PID and PORT.
start_router() {
    local which="$1" log="$LOGS/$2.log" i
    case "$which" in
        ours | base)
            local bin="$CLASP"
            PORT="$PORT_OURS"
            if [[ "$which" == base ]]; then
                bin="$BASE"
                PORT="$PORT_BASE"
            fi
            wait_port_free "$PORT"
            # Limits that a benchmark blast or 10,000 local connections would trip are off,
            # as they are for the reference peer.
            RUST_LOG="$ROUTER_LOG" "$bin" server --memory --bind 127.0.0.1 --port "$PORT" \
                --max-sessions 20000 --rate-limit 0 --max-connections-per-ip 0 >"$log" 2>&1 &
            ;;
        reference)
            PORT="$PORT_REF"
            wait_port_free "$PORT"
            "$REF" --listen "127.0.0.1:$PORT" --max-sessions 20000 >"$log" 2>&1 &
            ;;
        echo)
            PORT="$PORT_ECHO"
            wait_port_free "$PORT"
            "$BENCH" echo-server --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
            ;;
        floor)
            # Two of our routers: the probe's (idle) and one that carries the load, so the
            # probe measures what the machine adds under that load, not what a router does.
            PORT="$PORT_ECHO"
            wait_port_free "$PORT"
            wait_port_free "$PORT_FLOOR_LOAD"
            RUST_LOG="$ROUTER_LOG" "$CLASP" server --memory --bind 127.0.0.1 --port "$PORT_FLOOR_LOAD" \
                --rate-limit 0 --max-connections-per-ip 0 >"$log.load" 2>&1 &
            FLOOR_PID=$!
            RUST_LOG="$ROUTER_LOG" "$CLASP" server --memory --bind 127.0.0.1 --port "$PORT" \
                --rate-limit 0 --max-connections-per-ip 0 >"$log" 2>&1 &
            ;;
        *) echo "unknown router $which" >&2; return 1 ;;
    esac
    ROUTER_PID=$!
    for ((i = 0; i < 100; i++)); do
        if port_open "$PORT"; then
            return 0
        fi
        if ! kill -0 "$ROUTER_PID" 2>/dev/null; then
            echo "router $which exited at start; log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "router $which did not listen on $PORT within 10 s" >&2
    return 1
}

# CPU busy % of the whole machine over 0.5 s (nothing of this run is running then).
background_cpu() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep 0.5
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}

# SIGTERM, then wait (at most 10 s, then SIGKILL).
stop_router() {
    local i
    if [[ -n "$FLOOR_PID" ]]; then
        kill -TERM "$FLOOR_PID" 2>/dev/null || true
        wait "$FLOOR_PID" 2>/dev/null || true
        FLOOR_PID=""
    fi
    [[ -n "$ROUTER_PID" ]] || return 0
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$ROUTER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$ROUTER_PID" 2>/dev/null || true
    wait "$ROUTER_PID" 2>/dev/null || true
    ROUTER_PID=""
}

# Runs workload $1 against router $2 ($3 = round).
run_one() {
    local workload="$1" which="$2" round="$3" name="$1-$2-r$3"
    local url args=() kind="$which"
    # Under load, the zero-work echo server would forward the load to the probe too; the
    # calibration there is the floor instead (see start_router), still labelled `echo`.
    [[ "$workload" == latency_loaded && "$which" == echo ]] && kind=floor
    printf '%s\t%s\t%s\t%s\n' "$workload" "$which" "$round" "$(background_cpu)" >>"$BACKGROUND"
    start_router "$kind" "$name"
    url="ws://127.0.0.1:$PORT/"
    case "$workload" in
        latency) args=(latency --url "$url" --samples "$SAMPLES" --warmup "$WARMUP" --size "$SIZE") ;;
        latency_loaded)
            args=(latency --url "$url" --samples "$SAMPLES" --warmup "$WARMUP" --size "$SIZE"
                --load-subscribers "$LOAD_SUBSCRIBERS" --load-rate "$LOAD_RATE")
            [[ "$kind" == floor ]] && args+=(--load-url "ws://127.0.0.1:$PORT_FLOOR_LOAD/")
            ;;
        fanout) args=(fanout --url "$url" --subscribers "$SUBSCRIBERS" --messages "$MESSAGES" --min-deliveries "$MIN_DELIVERIES") ;;
        throughput) args=(throughput --url "$url" --messages "$TP_MESSAGES" --size "$SIZE") ;;
        memory)
            args=(memory --url "$url" --pid "$ROUTER_PID" --connections "$CONNECTIONS")
            [[ "$which" == ours ]] && args+=(--metrics-url "http://127.0.0.1:$PORT/metrics")
            ;;
        *) echo "unknown workload $workload" >&2; stop_router; return 1 ;;
    esac
    echo "-- $workload, $which, round $round"
    # JSON lines to the results file; the tables to the terminal and a log.
    if ! "$BENCH" --json --label "$which" --round "$round" "${args[@]}" 2>&1 >>"$RESULTS" |
        tee "$LOGS/$name.bench.log" >&2; then
        echo "!! $workload against $which failed (round $round); see $LOGS/$name.bench.log" >&2
    fi
    stop_router
}

: >"$RESULTS"
: >"$BACKGROUND"
for workload in $WORKLOADS; do
    routers=(ours reference)
    [[ -n "$BASE" ]] && routers+=(base)
    # The zero-work echo server only makes sense as a latency floor.
    [[ "$workload" == latency* ]] && routers+=(echo)
    for ((round = 1; round <= ROUNDS; round++)); do
        # The order is reversed every other round, so no router always runs first or last.
        order=("${routers[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((k = ${#routers[@]} - 1; k >= 0; k--)); do order+=("${routers[k]}"); done
        fi
        for which in "${order[@]}"; do
            run_one "$workload" "$which" "$round"
        done
    done
done

echo
echo "== machine"
echo "cpus:   $(nproc)"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel: $(uname -sr)"
echo "rounds: $ROUNDS (medians), value size $SIZE B"
echo "load:   latency_loaded with $LOAD_SUBSCRIBERS subscribers, $LOAD_RATE deliveries/s asked for"
echo "        (its echo column is the floor: the probe on an idle router of ours while a second one carries the load)"
echo
echo "== ours (clasp server --memory, rate and per-IP limits off) vs reference (clasp-router 3.3.0, max_sessions 20000, rate limit off)"
echo "   and, for latency, echo (clasp-bench echo-server: zero-work floor)"
"$BENCH" report --input "$RESULTS" --ours ours --reference reference --echo echo
if [[ -n "$BASE" ]]; then
    echo
    echo "== base ($BASE) vs reference, same runs"
    "$BENCH" report --input "$RESULTS" --ours base --reference reference --echo echo
fi
if command -v python3 >/dev/null 2>&1 && [[ " $WORKLOADS " == *" latency "* ]]; then
    echo
    echo "== idle latency p50 (µs) by the machine's background CPU use before each run"
    python3 - "$RESULTS" "$BACKGROUND" <<'PY'
import json, statistics, sys
bg = {}
for line in open(sys.argv[2]):
    w, who, r, cpu = line.rstrip("\n").split("\t")
    if cpu:
        bg[(w, who, r)] = float(cpu)
rows = {}
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("workload") != "latency" or "p50_us" not in j:
        continue
    key = ("latency", j.get("label"), str(j.get("round")))
    cpu = bg.get(key)
    if cpu is None:
        continue
    band = "idle (<15%)" if cpu < 15 else "15-45%" if cpu < 45 else "busy (>=45%)"
    rows.setdefault(band, {}).setdefault(j["label"], []).append(j["p50_us"])
for band in ["idle (<15%)", "15-45%", "busy (>=45%)"]:
    if band not in rows:
        continue
    cells = ", ".join(f"{who} {statistics.median(v):.1f} (n={len(v)})" for who, v in sorted(rows[band].items()))
    print(f"  {band:14} {cells}")
PY
fi
echo
echo "raw results: $RESULTS"
