# Shared by the benchmark scripts: start `clasp` (a router or relay) in the background and wait
# until it is ready; stop it again. Source it after setting CLASP to the binary.
#
#   start_router LOG server --data-dir D --port P ...   # sets ROUTER_PID
#   stop_router                                          # SIGTERM, then wait

ROUTER_PID=""

stop_router() {
    [[ -n "$ROUTER_PID" ]] || return 0
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    wait "$ROUTER_PID" 2>/dev/null || true
    ROUTER_PID=""
}

start_router() {
    local log="$1"
    shift
    RUST_LOG=info NO_COLOR=1 "$CLASP" "$@" >"$log" 2>&1 &
    ROUTER_PID=$!
    for ((i = 0; i < 100; i++)); do
        grep -q "ready: ws://" "$log" 2>/dev/null && return 0
        if ! kill -0 "$ROUTER_PID" 2>/dev/null; then
            echo "the router exited at start; log:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "the router did not get ready; log:" >&2
    cat "$log" >&2
    exit 1
}
