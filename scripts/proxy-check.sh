#!/usr/bin/env bash
# Checks the reverse-proxy guide for real: nginx (Debian package) with deploy/nginx/clasp.conf,
# TLS on 127.0.0.1, in front of `clasp relay`; then a CLASP client over wss:// through nginx and
# the rendezvous API over https:// through nginx.
#
#   ./scripts/proxy-check.sh [path/to/clasp]
set -euo pipefail
cd "$(dirname "$0")/.."
clasp=${1:-target/debug/clasp}
[[ -x $clasp ]] || cargo build -p clasp-cli --locked
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ws=$(port); rdv=$(port); tls=$(port)

# A certificate for 127.0.0.1 and the relay behind nginx.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
"$clasp" relay --memory --host 127.0.0.1 --ws-port "$ws" --rendezvous-port "$rdv" \
    --discovery-port 0 --no-mdns >"$work/relay.log" 2>&1 &
pids+=($!)

# The guide's server block, pointed at this test's ports and certificate.
sed -e "s|127.0.0.1:7330|127.0.0.1:$ws|; s|127.0.0.1:7340|127.0.0.1:$rdv|" \
    -e "s|listen 443 ssl;|listen 127.0.0.1:$tls ssl;|; /listen \[::\]:443/d" \
    -e "s|/etc/letsencrypt/live/clasp.example.com/fullchain.pem|$work/cert.pem|" \
    -e "s|/etc/letsencrypt/live/clasp.example.com/privkey.pem|$work/key.pem|" \
    deploy/nginx/clasp.conf >"$work/clasp.conf"
cat >"$work/nginx.conf" <<CONF
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events {}
http {
    access_log $work/access.log;
    client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
    uwsgi_temp_path $work; scgi_temp_path $work;
    include $work/clasp.conf;
}
CONF
nginx -t -c "$work/nginx.conf" -p "$work" 2>&1 | grep -v '^$' || true
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
for _ in $(seq 100); do
    grep -q 'ready: ws://' "$work/relay.log" 2>/dev/null && curl -sk "https://127.0.0.1:$tls/healthz" >/dev/null && break
    sleep 0.1
done

echo "== wss:// through nginx"
"$clasp" set /proxy/check 42 --url "wss://127.0.0.1:$tls/" --ca-cert "$work/cert.pem"
got=$("$clasp" get /proxy/check --url "wss://127.0.0.1:$tls/" --ca-cert "$work/cert.pem")
[[ $got == 42 ]] || { echo "get through the proxy returned '$got'" >&2; exit 1; }
"$clasp" ping --count 2 --url "wss://127.0.0.1:$tls/" --ca-cert "$work/cert.pem"

echo "== https://…/api/v1 through nginx"
curl -sf --cacert "$work/cert.pem" "https://127.0.0.1:$tls/api/v1/health"; echo
curl -sf --cacert "$work/cert.pem" -H 'content-type: application/json' \
    -d "{\"name\":\"proxied\",\"endpoints\":{\"ws\":\"wss://127.0.0.1:$tls/\"}}" \
    "https://127.0.0.1:$tls/api/v1/register"; echo
"$clasp" discover --rendezvous "https://127.0.0.1:$tls" --ca-cert "$work/cert.pem"
"$clasp" discover --rendezvous "https://127.0.0.1:$tls" --ca-cert "$work/cert.pem" --json | grep -q '"proxied"'
echo "proxy check: OK"
