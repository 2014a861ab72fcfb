#!/usr/bin/env bash
# Builds the image (build.sh) and tries it the way a container runtime would run it, except
# that this machine runs no containers: the image's file system is exported (`podman create`
# + `podman export`) and its binary run under chroot, as the image's user, with the image's
# environment. Checks: the image is at most 30 MB; ordo is statically linked; `ordo migrate`,
# `ordo token create` and `ordo backup` work; `ordo serve` answers /healthz and /readyz and
# delivers an order's event to a webhook receiver it reaches by a host name from the
# image's /etc/hosts; SIGTERM stops it with exit status 0.
#
#   bash deploy/container/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=localhost/ordo:latest
bash deploy/container/build.sh "$tag"

size="$(podman image inspect --format '{{.Size}}' "$tag")"
echo "image size: $size bytes"
[ "$size" -le 30000000 ] || { echo "the image is over 30 MB" >&2; exit 1; }

work="$(mktemp -d)"
root="$work/root"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${container:-}" ] && podman rm -f "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
container="$(podman create "$tag")"
mkdir -p "$root"
podman export "$container" | tar -x -C "$root"
podman rm "$container" >/dev/null
container=

# What the image says to run, as whom, with which environment.
config="$(podman image inspect --format '{{json .Config}}' "$tag")"
user="$(jq -r '.User' <<<"$config")"
entrypoint="$(jq -r '.Entrypoint[0]' <<<"$config")"
mapfile -t image_env < <(jq -r '.Env[]' <<<"$config")
[ "$user" = "10001:10001" ] || { echo "the image runs as $user, not a non-root user" >&2; exit 1; }
if readelf --program-headers "$root$entrypoint" | grep -q INTERP; then
  echo "$entrypoint is dynamically linked" >&2; exit 1
fi
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] && [ -s "$root/usr/share/zoneinfo/Asia/Shanghai" ] ||
  { echo "CA roots or time zone data missing" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
receiver_port="$(free_port)"
# What a runtime provides: /etc/hosts (with a name for the receiver) and /etc/resolv.conf.
printf '127.0.0.1 localhost\n127.0.0.1 receiver.shop.internal\n' > "$root/etc/hosts"
printf 'nameserver 127.0.0.1\n' > "$root/etc/resolv.conf"

# The receiver: records each POST's body, answers 204.
python3 - "$receiver_port" "$work/received" <<'PY' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "ab") as f:
            f.write(body + b"\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Hook).serve_forever()
PY
pids+=($!)

in_image() {
  (exec_in_image "$@")
}
# Replaces the calling (sub)shell, so that `exec_in_image serve &` leaves $! = ordo's pid.
exec_in_image() {
  exec env -i "${image_env[@]}" ORDO_LISTEN="127.0.0.1:$port" ORDO_WEBHOOK_ALLOW_PRIVATE=true \
    ORDO_LOG="${ORDO_LOG:-warn}" ORDO_RATE_LIMIT_PER_SECOND=0 \
    chroot --userspec="$user" "$root" "$entrypoint" "$@"
}
in_image migrate
in_image migrate
staff="$(in_image token create --name ops --role staff | tail -n 1)"
customer="$(in_image token create --name shopper --role customer | tail -n 1)"
ORDO_LOG=info,ordo=debug exec_in_image serve 2> "$work/serve.log" &
server=$!
pids+=($server)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/healthz" && echo
curl -fsS "http://127.0.0.1:$port/readyz" && echo
api() { curl -fsS -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "${@:2}"; }
api "$staff" -X POST "http://127.0.0.1:$port/api/v1/webhook-endpoints" \
  -d "{\"url\": \"http://receiver.shop.internal:$receiver_port/hook\", \"event_types\": [\"order.created\"]}" >/dev/null
product="$(api "$staff" -X POST "http://127.0.0.1:$port/api/v1/products" \
  -d '{"sku": "IMG-1", "name": "Tea", "price_cents": 1200, "currency": "CNY", "stock": 5}' | jq -r .id)"
order="$(api "$customer" -X POST "http://127.0.0.1:$port/api/v1/orders" \
  -d "{\"items\": [{\"product_id\": $product, \"quantity\": 1}]}" | jq -r .order.id)"
for _ in $(seq 1 100); do [ -s "$work/received" ] && break; sleep 0.1; done
jq -e --argjson order "$order" 'select(.type == "order.created" and .data.order.id == $order)' \
  "$work/received" >/dev/null 2>&1 || {
    tail -n 20 "$work/serve.log"
    api "$staff" "http://127.0.0.1:$port/api/v1/webhook-deliveries" | jq -c '.items[] | {status, attempts}' || true
    echo "the receiver got no order.created for order $order" >&2; exit 1; }
echo "order $order's event reached receiver.shop.internal"
in_image backup --to /var/lib/ordo/backups/image-test.db
kill -TERM "$server"
status=0; wait "$server" || status=$?
[ "$status" -eq 0 ] || { echo "ordo serve exited $status on SIGTERM" >&2; exit 1; }
echo "container image: ok ($size bytes)"
