#!/usr/bin/env bash
# Interop tests: the official Python (PyPI clasp-to==3.3.0 and 4.2.0), JS (npm @clasp-to/core@3.3.2
# with ws, Node 20) and Rust (crates.io clasp-client 4.5.0) clients against our router. Installs
# (builds) the clients when missing.
#
#   ./scripts/interop.sh [path/to/clasp]
set -euo pipefail
cd "$(dirname "$0")/.."
clasp=${1:-target/debug/clasp}
cache=.cache/interop
mkdir -p "$cache"

say() { printf '\n== %s\n' "$*"; }

[[ -x "$clasp" ]] || cargo build -p clasp-cli --locked
command -v python3 >/dev/null || { echo "python3 is required for the interop tests" >&2; exit 1; }
command -v node >/dev/null || { echo "node (20 or later) is required for the interop tests" >&2; exit 1; }

venv="$cache/venv"
if ! "$venv/bin/python" -c 'import clasp, importlib.metadata as m; assert m.version("clasp-to") == "3.3.0"' 2>/dev/null; then
    say "installing the Python client (clasp-to==3.3.0) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check clasp-to==3.3.0
fi

venv4="$cache/venv4"
if ! "$venv4/bin/python" -c 'import clasp, importlib.metadata as m; assert m.version("clasp-to") == "4.2.0"' 2>/dev/null; then
    say "installing the Python client (clasp-to==4.2.0) into $venv4"
    rm -rf "$venv4"
    python3 -m venv "$venv4"
    "$venv4/bin/pip" install --quiet --disable-pip-version-check clasp-to==4.2.0
fi

# The official Rust client 4.5.0 in a small program of its own (not part of the workspace; its
# dependencies need OpenSSL's headers).
rust_v4="$cache/rust-v4-target/debug/clasp-interop-rust-v4"
say "building the Rust client scenarios (crates.io clasp-client 4.5.0)"
CARGO_TARGET_DIR="$cache/rust-v4-target" cargo build --quiet --locked \
    --manifest-path tests/interop/rust-v4/Cargo.toml

if [[ ! -d tests/interop/js/node_modules/@clasp-to/core ]]; then
    say "installing the JS client (@clasp-to/core 3.3.2, ws)"
    (cd tests/interop/js && npm ci --silent --no-audit --no-fund)
fi

# Starts `clasp server --memory ARGS` logging to $1; sets pid and url.
start_router() {
    local log="$1"
    shift
    "$clasp" server --bind 127.0.0.1 --port 0 --memory "$@" >"$log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
    url=""
    for _ in $(seq 100); do
        url=$(grep -o 'ready: ws://[0-9.:]*/' "$log" | head -1 | sed 's/ready: //') || true
        [[ -n "$url" ]] && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "router failed to start" >&2; exit 1; }
        sleep 0.1
    done
    cat "$log" >&2
    echo "router did not become ready" >&2
    exit 1
}

start_router "$cache/router.log"

status=0
say "Python client clasp-to 3.3.0 against $url"
timeout 300 "$venv/bin/python" tests/interop/python/interop.py "$url" || status=1
say "JS client @clasp-to/core 3.3.2 against $url"
(cd tests/interop/js && timeout 300 node interop.mjs "$url") || status=1

kill -TERM "$pid"
if ! wait "$pid"; then
    echo "router did not exit cleanly on SIGTERM" >&2
    status=1
fi
trap - EXIT

# The v4 clients on a fresh router of their own (the scenarios expect one), with a journal:
# the 3.x scenarios, then v4's per-SET TTLs, expiry notices and history.
start_router "$cache/router-v4.log" --journal
say "Python client clasp-to 4.2.0 (the 3.x scenarios) against $url"
timeout 300 "$venv4/bin/python" tests/interop/python/interop.py "$url" || status=1
say "Rust client clasp-client 4.5.0 against $url"
timeout 120 "$rust_v4" "$url" || status=1
say "Python client clasp-to 4.2.0 (TTL, expiry, history) against $url"
timeout 120 "$venv4/bin/python" tests/interop/python/v4.py "$url" || status=1
kill -TERM "$pid"
wait "$pid" || status=1
trap - EXIT
start_router "$cache/router-v4-ttl.log" --param-ttl 1
say "Rust client clasp-client 4.5.0 (Ttl::Never over the router's default TTL) against $url"
timeout 120 "$rust_v4" "$url" --default-ttl || status=1
kill -TERM "$pid"
wait "$pid" || status=1
trap - EXIT

# An authenticated router: tokens made with `clasp token create`.
tokens="$cache/tokens.json"
rm -f "$tokens"
rw=$("$clasp" token --file "$tokens" create --scopes "read:/**,write:/auth/**" --subject interop 2>/dev/null)
ro=$("$clasp" token --file "$tokens" create --scopes "read:/auth/**" 2>/dev/null)
start_router "$cache/router-auth.log" --token-file "$tokens"
say "Python client with tokens against $url"
timeout 120 "$venv/bin/python" tests/interop/python/auth.py "$url" "$rw" "$ro" || status=1
say "JS client with tokens against $url"
(cd tests/interop/js && timeout 120 node auth.mjs "$url" "$rw" "$ro") || status=1
kill -TERM "$pid"
wait "$pid" || status=1
trap - EXIT
exit $status
