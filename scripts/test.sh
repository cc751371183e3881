#!/usr/bin/env bash
# The whole test suite. Installs what the tests need when it is missing, then runs formatting and
# lint checks and every test of the default workspace members.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh --quick    # tests only (no fmt/clippy)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

say() { printf '\n== %s\n' "$*"; }

# A run from a fresh clone gains nothing from incremental compilation and it costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# A full run needs a few GB under target/; say so up front rather than failing mid-build.
free_kb=$(df -Pk . 2>/dev/null | awk 'NR == 2 { print $4 }')
if [[ -n "$free_kb" ]]; then
    printf 'disk: %s MB free under %s\n' "$((free_kb / 1024))" "$PWD"
    if ((free_kb < 4 * 1024 * 1024)); then
        echo "!! less than 4 GB free: the build may fail with 'No space left on device'" >&2
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required (https://rustup.rs); this project builds with stable Rust >= 1.85" >&2
    exit 1
fi

if [[ $quick == 0 ]]; then
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy (all workspace crates, all targets, warnings are errors)"
    # With ALSA's headers (Debian libasound2-dev) the optional ALSA sequencer MIDI code is
    # checked too.
    alsa=()
    if ! pkg-config --exists alsa 2>/dev/null && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        apt-get install -y -qq libasound2-dev pkg-config >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libasound2-dev pkg-config >/dev/null 2>&1; } || true
    fi
    if pkg-config --exists alsa 2>/dev/null; then
        alsa=(--features clasp-bridge/alsa)
    else
        echo "!! libasound2-dev missing: the ALSA sequencer MIDI code (feature alsa) is not checked"
    fi
    cargo clippy --workspace --all-targets --locked "${alsa[@]}" -- -D warnings
fi

# Debian packages the tests use: coturn (a real TURN server for the P2P relay test), iproute2
# (the loopback-only namespace below, and the veth pair of the LAN discovery test) and
# mosquitto-clients (mosquitto_pub and mosquitto_sub against the MQTT listener), nginx with
# openssl (the reverse-proxy guide's nginx configuration, checked in front of a real relay), and
# tshark (Wireshark's dissectors read what the lighting bridges send), nats-server (JetStream,
# for the cluster tests), haproxy (the cluster guide's load balancer configuration, checked in
# front of real routers; Debian's default haproxy.cfg listens on nothing).
need=()
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
# OpenSSL's headers: the official Rust client 4.5.0 (interop) builds native-tls.
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev pkg-config)
if [[ ${#need[@]} -gt 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need[*]} (apt-get)"
    sudo_=""
    [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo_=sudo
    export DEBIAN_FRONTEND=noninteractive
    # tshark's package asks whether non-root users may capture: no.
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        $sudo_ debconf-set-selections 2>/dev/null || true
    $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 ||
        { $sudo_ apt-get update -qq >/dev/null 2>&1 && $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; } ||
        echo "!! could not install ${need[*]}: the tests that need them will say SKIPPED" >&2
fi
# Debian's chromium for the browser tests (without its recommends: no sandbox helper or extra
# fonts are needed headless, and it saves about 30 MB).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium (apt-get, no recommends)"
    sudo_=""
    [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo_=sudo
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
        { $sudo_ apt-get update -qq >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } ||
        echo "!! could not install chromium: the browser tests will say SKIPPED" >&2
fi

say "cargo test"
cargo test --locked

# P2P must work on a host whose only interface is loopback (what CI has to assume), so its
# tests run again inside a fresh network namespace with nothing but `lo`.
say "P2P tests inside a network namespace with only loopback (unshare -rn)"
p2p_bin=$(cargo test --locked -p clasp-client --test p2p --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
if [[ -z "$p2p_bin" ]]; then
    echo "could not find the p2p test binary" >&2
    exit 1
fi
if unshare -rn true 2>/dev/null && command -v ip >/dev/null 2>&1; then
    unshare -rn sh -c 'ip link set lo up && ip -o link | grep -v " lo:" | grep -q . && exit 3; exec "$0"' "$p2p_bin"
else
    echo "!! cannot create a network namespace here (unshare -rn refused or no iproute2);"
    echo "!! the P2P tests ran above on this host's interfaces only"
fi

# sACN multicast on a real link: a veth pair inside a fresh network namespace (v0 10.9.0.1,
# v1 10.9.0.2, multicast routed out of v0, v1 taking packets from its own namespace's address).
say "sACN multicast inside a network namespace (unshare -rn, veth pair)"
mc_bin=$(cargo test --locked -p clasp-bridge --test sacn_multicast --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
if [[ -z "$mc_bin" ]]; then
    echo "could not find the sacn_multicast test binary" >&2
    exit 1
fi
if unshare -rn true 2>/dev/null && command -v ip >/dev/null 2>&1; then
    timeout 120 unshare -rn sh -c '
        ip link set lo up &&
        ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up &&
        ip addr add 10.9.0.1/24 dev v0 && ip addr add 10.9.0.2/24 dev v1 &&
        ip route add 224.0.0.0/4 dev v0 &&
        echo 1 >/proc/sys/net/ipv4/conf/v1/accept_local &&
        echo 0 >/proc/sys/net/ipv4/conf/v1/rp_filter &&
        echo 0 >/proc/sys/net/ipv4/conf/all/rp_filter &&
        exec "$0" --ignored' "$mc_bin"
else
    echo "!! SKIPPED: cannot create a network namespace here (unshare -rn refused or no iproute2)"
fi

say "interop: official Python and JS clients against our router"
cargo build -p clasp-cli --locked
./scripts/interop.sh target/debug/clasp

say "cluster interop: the official Python and JS clients on different routers of one NATS cluster"
./scripts/cluster-interop.sh target/debug/clasp

say "cluster behind load balancers: deploy/haproxy/clasp.cfg and deploy/nginx/cluster.conf in front of two routers"
./scripts/cluster-lb-check.sh target/debug/clasp

say "web console in a real browser: Debian's chromium driven by puppeteer-core"
./scripts/console-check.sh target/debug/clasp

say "browser P2P: js/clasp-p2p in chromium, page ↔ page and page ↔ native, on this host and with loopback only"
cargo build -p clasp-client --example p2p-echo --locked
./scripts/browser-p2p-check.sh target/debug/clasp target/debug/examples/p2p-echo

say "MQTT conformance: the same client scenarios against Debian's mosquitto and our MQTT listener"
./scripts/mqtt-conformance.sh target/debug/clasp

say "bridges against real apps: python-osc (OSC) and python-socketio (Socket.IO) through clasp bridge"
./scripts/bridge-interop.sh target/debug/clasp

say "reverse proxy: deploy/nginx/clasp.conf in front of clasp relay (wss:// and /api/v1)"
if command -v nginx >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1; then
    ./scripts/proxy-check.sh target/debug/clasp
else
    echo "!! SKIPPED: nginx or openssl missing (apt-get install nginx openssl)"
fi
