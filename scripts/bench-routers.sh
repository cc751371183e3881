#!/usr/bin/env bash
# Runs the same clasp-bench workloads against our router (`clasp server`) and the reference
# router (crates.io clasp-router 3.3.0, bench/peers/reference-router), alternating ours and the
# reference for each workload and round, each router started fresh for each run. Prints medians
# side by side and writes every result line to target/bench-routers/results.jsonl.
#
# Settings (environment):
#   ROUNDS=3                  rounds per workload (each round runs ours, then the reference)
#   WORKLOADS="latency fanout throughput memory"
#   SAMPLES=10000 WARMUP=200  latency samples and warm-up
#   SIZE=8                    value size in bytes (8: f64; more: a string of that size)
#   SUBSCRIBERS=10,100,1000   fan-out subscriber counts
#   MESSAGES=1000             fan-out messages per subscriber count
#   TP_MESSAGES=100000        throughput messages
#   CONNECTIONS=1000,10000    memory: idle connection counts
#   PORT_OURS=17330 PORT_REF=17331
#   ROUTER_LOG=warn           RUST_LOG of our router
#
# Quick smoke run:
#   ROUNDS=1 SAMPLES=500 MESSAGES=200 TP_MESSAGES=5000 CONNECTIONS=200,1000 \
#     scripts/bench-routers.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-3}"
WORKLOADS="${WORKLOADS:-latency fanout throughput memory}"
SAMPLES="${SAMPLES:-10000}"
WARMUP="${WARMUP:-200}"
SIZE="${SIZE:-8}"
SUBSCRIBERS="${SUBSCRIBERS:-10,100,1000}"
MESSAGES="${MESSAGES:-1000}"
TP_MESSAGES="${TP_MESSAGES:-100000}"
CONNECTIONS="${CONNECTIONS:-1000,10000}"
PORT_OURS="${PORT_OURS:-17330}"
PORT_REF="${PORT_REF:-17331}"
ROUTER_LOG="${ROUTER_LOG:-warn}"

OUT="$ROOT/target/bench-routers"
RESULTS="$OUT/results.jsonl"
LOGS="$OUT/logs"
REF_TARGET="$ROOT/target/reference-router"
mkdir -p "$OUT" "$LOGS"

ROUTER_PID=""
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

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits (at most 10 s) until nothing listens on port $1 any more.
wait_port_free() {
    local i
    for ((i = 0; i < 100; i++)); do
        port_open "$1" || return 0
        sleep 0.1
    done
    echo "port $1 is still in use" >&2
    return 1
}

# Starts router $1 (ours|reference) for run name $2; sets ROUTER_PID and PORT.
start_router() {
    local which="$1" log="$LOGS/$2.log" i
    if [[ "$which" == ours ]]; then
        PORT="$PORT_OURS"
        wait_port_free "$PORT"
        RUST_LOG="$ROUTER_LOG" "$CLASP" server --memory --bind 127.0.0.1 --port "$PORT" \
            --max-sessions 20000 >"$log" 2>&1 &
    else
        PORT="$PORT_REF"
        wait_port_free "$PORT"
        "$REF" --listen "127.0.0.1:$PORT" --max-sessions 20000 >"$log" 2>&1 &
    fi
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

# SIGTERM, then wait (at most 10 s, then SIGKILL).
stop_router() {
    local i
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
    local url args=()
    start_router "$which" "$name"
    url="ws://127.0.0.1:$PORT/"
    case "$workload" in
        latency) args=(latency --url "$url" --samples "$SAMPLES" --warmup "$WARMUP" --size "$SIZE") ;;
        fanout) args=(fanout --url "$url" --subscribers "$SUBSCRIBERS" --messages "$MESSAGES") ;;
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
for workload in $WORKLOADS; do
    for ((round = 1; round <= ROUNDS; round++)); do
        run_one "$workload" ours "$round"
        run_one "$workload" reference "$round"
    done
done

echo
echo "== machine"
echo "cpus:   $(nproc)"
echo "cpu:    $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel: $(uname -sr)"
echo "rounds: $ROUNDS (medians), value size $SIZE B"
echo
echo "== ours (clasp server --memory) vs reference (clasp-router 3.3.0, max_sessions 20000, rate limit off)"
"$BENCH" report --input "$RESULTS" --ours ours --reference reference
echo
echo "raw results: $RESULTS"
