#!/usr/bin/env bash
# MQTT fan-out, our relay (`clasp relay --mqtt-port`) beside Debian's mosquitto, in the same run:
# one publisher, SUBSCRIBERS subscribers on one topic, QoS 0 (`clasp-bench mqtt`). Each round
# runs every workload against each broker, each started fresh on 127.0.0.1 for each run and
# stopped after it; the order of the brokers is reversed every other round. Prints the rounds and
# the medians with their spread side by side, and writes every result line to
# target/bench-mqtt/results.jsonl. Not part of the test suite: run by hand. Figures and how to
# read them: docs/benchmarks-mqtt.md.
#
# Workloads:
#   fanout  the publisher sends as fast as the slowest subscriber keeps up, at most WINDOW
#           messages ahead of it: deliveries/s the broker sustains (latency is then mostly the
#           window's queueing: compare it at equal windows only)
#   paced   open loop at RATE messages/s (RATE x SUBSCRIBERS deliveries/s): latency at a load
#           both brokers should carry; what one cannot carry shows as loss or as sent/s < RATE
#
# Settings (environment):
#   ROUNDS=5                  rounds (each runs every workload against every broker)
#   BROKERS="mosquitto clasp" brokers; mosquitto-nodelay is mosquitto with set_tcp_nodelay true
#                             (Debian's mosquitto leaves Nagle on; our relay turns it off);
#                             clasp-base is the relay binary CLASP_BASE (an older build, to
#                             compare two builds in the same run)
#   CLASP_BASE=               path of that older `clasp` binary
#   WORKLOADS="fanout paced"
#   SUBSCRIBERS=100 SIZE=8    subscribers; payload bytes (at least 8)
#   SECONDS_=10 WARMUP=1      measured seconds per run, after WARMUP seconds of publishing
#                             (SECONDS_: bash keeps SECONDS for itself)
#   WINDOW=256                fanout: messages the publisher may be ahead of the slowest subscriber
#   RATE=500                  paced: messages/s
#   THREADS=1                 threads of clasp-bench (1 leaves the other core to the broker)
#   CLIENT=raw                subscribers' MQTT client: raw (hand-written) or rumqttc
#   PORT_MOSQUITTO=17383      mosquitto's port
#   PORT_CLASP=17384          our relay's MQTT port; its WebSocket and rendezvous ports are the
#                             next two (LAN discovery and mDNS off)
#   ROUTER_LOG=warn           RUST_LOG of our relay
#
# Quick smoke run:
#   ROUNDS=1 SECONDS_=2 WARMUP=0.5 scripts/bench-mqtt.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ROUNDS="${ROUNDS:-5}"
BROKERS="${BROKERS:-mosquitto clasp}"
WORKLOADS="${WORKLOADS:-fanout paced}"
SUBSCRIBERS="${SUBSCRIBERS:-100}"
SIZE="${SIZE:-8}"
SECONDS_="${SECONDS_:-10}"
WARMUP="${WARMUP:-1}"
WINDOW="${WINDOW:-256}"
RATE="${RATE:-500}"
THREADS="${THREADS:-1}"
CLIENT="${CLIENT:-raw}"
PORT_MOSQUITTO="${PORT_MOSQUITTO:-17383}"
PORT_CLASP="${PORT_CLASP:-17384}"
PORT_CLASP_WS=$((PORT_CLASP + 1))
PORT_CLASP_RDV=$((PORT_CLASP + 2))
ROUTER_LOG="${ROUTER_LOG:-warn}"

OUT="$ROOT/target/bench-mqtt"
RESULTS="$OUT/results.jsonl"
LOGS="$OUT/logs"
mkdir -p "$OUT" "$LOGS"

SERVER_PID=""
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

# mosquitto, from Debian, only when missing (same pattern as scripts/test.sh).
mosquitto_bin() { command -v mosquitto 2>/dev/null || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; }; }
if [[ -z "$(mosquitto_bin)" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing mosquitto (apt-get)"
    sudo_=""
    [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo_=sudo
    $sudo_ apt-get install -y -qq mosquitto >/dev/null 2>&1 ||
        { $sudo_ apt-get update -qq >/dev/null 2>&1 && $sudo_ apt-get install -y -qq mosquitto >/dev/null 2>&1; } ||
        true
fi
MOSQUITTO="$(mosquitto_bin)"
if [[ -z "$MOSQUITTO" ]]; then
    echo "mosquitto is needed (Debian package mosquitto) and could not be installed" >&2
    exit 1
fi

echo "== building (release): clasp, clasp-bench"
cargo build --release -p clasp-cli -p clasp-bench
CLASP="$ROOT/target/release/clasp"
BENCH="$ROOT/target/release/clasp-bench"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# shellcheck source=scripts/ports-lib.sh
source "$ROOT/scripts/ports-lib.sh"

# Starts broker $1 (mosquitto|mosquitto-nodelay|clasp) for run name $2; sets SERVER_PID and
# PORT.
start_server() {
    local which="$1" log="$LOGS/$2.log" i
    case "$which" in
        mosquitto | mosquitto-nodelay)
            PORT="$PORT_MOSQUITTO"
            wait_port_free "$PORT"
            # Stock settings otherwise (queue limits; Nagle left on for client sockets unless
            # mosquitto-nodelay); `user` keeps it from switching to the mosquitto user, which
            # could not write the log here.
            cat >"$OUT/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest file $log
log_type error
log_type warning
user $(id -un)
EOF
            [[ "$which" == mosquitto-nodelay ]] && echo "set_tcp_nodelay true" >>"$OUT/mosquitto.conf"
            "$MOSQUITTO" -c "$OUT/mosquitto.conf" >/dev/null 2>>"$log" &
            ;;
        clasp | clasp-base)
            local bin="$CLASP"
            if [[ "$which" == clasp-base ]]; then
                bin="${CLASP_BASE:?clasp-base needs CLASP_BASE=path/to/clasp}"
            fi
            PORT="$PORT_CLASP"
            wait_port_free "$PORT"
            wait_port_free "$PORT_CLASP_WS"
            wait_port_free "$PORT_CLASP_RDV"
            # In memory, like mosquitto with persistence off; the per-session rate limit
            # (default 10,000 messages/s) and the per-IP connection limit off: mosquitto has
            # neither. No LAN discovery, no mDNS: nothing leaves 127.0.0.1.
            RUST_LOG="$ROUTER_LOG" "$bin" relay --memory --bind 127.0.0.1 \
                --port "$PORT_CLASP_WS" --rendezvous-port "$PORT_CLASP_RDV" \
                --mqtt-port "$PORT" --discovery-port 0 --no-mdns \
                --rate-limit 0 --max-connections-per-ip 0 >"$log" 2>&1 &
            ;;
        *) echo "unknown broker $which" >&2; return 1 ;;
    esac
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do
        if port_open "$PORT"; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "$which exited at start; log:" >&2
            cat "$log" >&2
            SERVER_PID=""
            return 1
        fi
        sleep 0.1
    done
    echo "$which did not listen on $PORT within 10 s" >&2
    return 1
}

# SIGTERM, then wait (at most 10 s, then SIGKILL).
stop_server() {
    local i
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# Runs workload $1 against broker $2 ($3 = round).
run_one() {
    local workload="$1" which="$2" round="$3" name="$1-$2-r$3"
    local args=(mqtt --subscribers "$SUBSCRIBERS" --size "$SIZE" --seconds "$SECONDS_"
        --warmup-secs "$WARMUP" --threads "$THREADS" --client "$CLIENT")
    case "$workload" in
        fanout) args+=(--window "$WINDOW") ;;
        paced) args+=(--rate "$RATE") ;;
        *) echo "unknown workload $workload" >&2; return 1 ;;
    esac
    start_server "$which" "$name"
    args+=(--addr "127.0.0.1:$PORT" --pid "$SERVER_PID")
    echo "-- $workload, $which, round $round"
    # JSON lines to the results file; the tables to the terminal and a log.
    if ! "$BENCH" --json --label "$which" --round "$round" "${args[@]}" 2>&1 >>"$RESULTS" |
        tee "$LOGS/$name.bench.log" >&2; then
        echo "!! $workload against $which failed (round $round); see $LOGS/$name.bench.log" >&2
    fi
    stop_server
}

: >"$RESULTS"
for ((round = 1; round <= ROUNDS; round++)); do
    # Reverse the order every other round, so no broker always runs on a machine another has
    # just warmed (or loaded).
    read -r -a order <<<"$BROKERS"
    if ((round % 2 == 0)); then
        for ((i = 0, j = ${#order[@]} - 1; i < j; i++, j--)); do
            t="${order[i]}" order[i]="${order[j]}" order[j]="$t"
        done
    fi
    for workload in $WORKLOADS; do
        for which in "${order[@]}"; do
            run_one "$workload" "$which" "$round"
        done
    done
done

echo
echo "== machine"
echo "cpus:      $(nproc)"
echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel:    $(uname -sr)"
echo "mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1 | sed 's/^mosquitto version //')"
echo "clasp:     $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) ($("$CLASP" --version))"
echo "workload:  1 publisher -> $SUBSCRIBERS subscribers, one topic, QoS 0, $SIZE B payloads,"
echo "           $SECONDS_ s measured after $WARMUP s warm-up, $ROUNDS rounds; fanout window $WINDOW, paced $RATE messages/s"
echo "client:    clasp-bench mqtt, $CLIENT client, $THREADS thread(s)"
echo
echo "== clasp (clasp relay --memory, rate and per-IP limits off) vs mosquitto (Debian, stock settings, persistence off)"
labels="clasp"
for b in $BROKERS; do [[ "$b" == clasp ]] || labels+=",$b"; done
"$BENCH" mqtt-report --input "$RESULTS" --labels "$labels"
echo
echo "raw results: $RESULTS"
