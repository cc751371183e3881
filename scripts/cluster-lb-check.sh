#!/usr/bin/env bash
# Checks the load balancer configurations of docs/deploy.md for real: HAProxy with
# deploy/haproxy/clasp.cfg and nginx with deploy/nginx/cluster.conf (Debian packages), each in
# front of the same two `clasp server --cluster` routers on one nats-server, all on 127.0.0.1
# (only the addresses, ports and certificate paths are changed from the files):
#   * a value set through one balancer is read through the other;
#   * after kill -9 of one router, writes and reads through both balancers go on, first try;
#   * with NATS down, the router says cluster_down and HAProxy's health check takes it out;
#     with NATS back, it is put back and the value is still there.
#
#   ./scripts/cluster-lb-check.sh [path/to/clasp]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# A path given is taken from where the script was started.
clasp=$(realpath -m "${1:-$root/target/debug/clasp}")
cd "$root"
if [[ ! -x $clasp ]]; then
    [[ $# -eq 0 ]] || { echo "no clasp binary at $clasp" >&2; exit 1; }
    cargo build -p clasp-cli --locked
fi
for tool in nats-server haproxy nginx openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "!! SKIPPED: $tool is not installed (scripts/test.sh installs it)"; exit 0; }
done
say() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; for f in "$work"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
    [[ -f "$work/pids" ]] && while read -r p; do pids+=("$p"); done <"$work/pids"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats=$(port); r1=$(port); r2=$(port); hp=$(port); tls=$(port)

start_nats() {
    nats-server -a 127.0.0.1 -p "$nats" -js -sd "$work/js" >>"$work/nats.log" 2>&1 &
    echo $! >"$work/nats.pid"
    echo $! >>"$work/pids"
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$nats") 2>/dev/null && return 0
        sleep 0.1
    done
    fail "nats-server did not start"
}
start_nats

# Two routers of cluster "lb" on fixed ports (the balancers' configurations name them).
for r in "$r1" "$r2"; do
    "$clasp" server --bind 127.0.0.1 --port "$r" --memory --cluster "nats://127.0.0.1:$nats" \
        --cluster-name lb >"$work/router-$r.log" 2>&1 &
    echo $! >"$work/router-$r.pid"
    echo $! >>"$work/pids"
done
for r in "$r1" "$r2"; do
    for _ in $(seq 150); do
        grep -q 'ready: ws://' "$work/router-$r.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q 'ready: ws://' "$work/router-$r.log" || fail "router on $r did not start"
done

# HAProxy: the guide's file with this test's addresses (the third router's line removed).
sed -e "s|bind 0.0.0.0:7330|bind 127.0.0.1:$hp|" \
    -e "s|server r1 10.0.0.1:7330|server r1 127.0.0.1:$r1|" \
    -e "s|server r2 10.0.0.2:7330|server r2 127.0.0.1:$r2|" -e "/server r3 /d" \
    deploy/haproxy/clasp.cfg >"$work/haproxy.cfg"
haproxy -c -q -f "$work/haproxy.cfg" || fail "haproxy refuses deploy/haproxy/clasp.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
echo $! >>"$work/pids"
sleep 0.3
kill -0 $! 2>/dev/null || fail "haproxy did not start"

# nginx: the guide's file with this test's addresses and a certificate for 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
sed -e "s|server 10.0.0.1:7330|server 127.0.0.1:$r1|" -e "s|server 10.0.0.2:7330|server 127.0.0.1:$r2|" \
    -e "/server 10.0.0.3:7330/d" \
    -e "s|listen 443 ssl;|listen 127.0.0.1:$tls ssl;|; /listen \[::\]:443/d" \
    -e "s|/etc/letsencrypt/live/clasp.example.com/fullchain.pem|$work/cert.pem|" \
    -e "s|/etc/letsencrypt/live/clasp.example.com/privkey.pem|$work/key.pem|" \
    deploy/nginx/cluster.conf >"$work/cluster.conf"
cat >"$work/nginx.conf" <<CONF
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.log;
events {}
http {
    access_log $work/access.log;
    client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
    uwsgi_temp_path $work; scgi_temp_path $work;
    include $work/cluster.conf;
}
CONF
nginx -t -q -c "$work/nginx.conf" -p "$work" || fail "nginx refuses deploy/nginx/cluster.conf"
nginx -c "$work/nginx.conf" -p "$work" &
echo $! >>"$work/pids"

via_hp="ws://127.0.0.1:$hp/"
via_nginx=(--url "wss://127.0.0.1:$tls/" --ca-cert "$work/cert.pem")
# Waits until `curl ARGS` answers HTTP status $1.
wait_status() {
    local want=$1; shift
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$@") == "$want" ]] && return 0
        sleep 0.1
    done
    fail "$* never answered $want"
}
wait_status 200 "http://127.0.0.1:$hp/healthz"
wait_status 200 --cacert "$work/cert.pem" "https://127.0.0.1:$tls/healthz"

say "a value set through HAProxy is read through nginx, and the other way"
"$clasp" set /lb/a 1 --url "$via_hp" || fail "a write through HAProxy"
[[ $("$clasp" get /lb/a "${via_nginx[@]}") == 1 ]] || fail "nginx did not read what HAProxy wrote"
"$clasp" set /lb/b 2 "${via_nginx[@]}" || fail "a write through nginx"
[[ $("$clasp" get /lb/b --url "$via_hp") == 2 ]] || fail "HAProxy did not read what nginx wrote"

say "kill -9 of router 1: both balancers go on through router 2, first try"
kill9() { kill -9 "$1"; wait "$1" 2>/dev/null || true; }
kill9 "$(cat "$work/router-$r1.pid")"
for i in $(seq 1 10); do
    "$clasp" set "/lb/k/$i" "$i" --url "$via_hp" || fail "write $i through HAProxy after the kill"
    [[ $("$clasp" get "/lb/k/$i" "${via_nginx[@]}") == "$i" ]] || fail "read $i through nginx after the kill"
done
echo "10 writes through HAProxy and 10 reads through nginx after the kill: all first try"

say "NATS down: router 2 says cluster_down, HAProxy takes it out; NATS back: put back"
kill9 "$(cat "$work/nats.pid")"
wait_status 503 "http://127.0.0.1:$r2/healthz"
body=$(curl -s "http://127.0.0.1:$r2/healthz")
[[ $body == *'"status":"cluster_down"'* ]] || fail "no cluster_down: $body"
# Out of HAProxy's rotation: its own 503, not the router's.
for _ in $(seq 100); do
    body=$(curl -s "http://127.0.0.1:$hp/healthz")
    [[ $body != *cluster_down* && $body == *"No server is available"* ]] && break
    sleep 0.1
done
[[ $body == *"No server is available"* ]] || fail "HAProxy kept a router whose cluster is down: $body"
echo "HAProxy: $(echo "$body" | grep -o 'No server is available[^<]*' | head -1)"
start_nats
wait_status 200 "http://127.0.0.1:$hp/healthz"
[[ $("$clasp" get /lb/k/10 --url "$via_hp") == 10 ]] || fail "the state did not survive the NATS restart"
echo "router 2 back in HAProxy's rotation; /lb/k/10 still 10"
echo
echo "load balancer check: passed"
