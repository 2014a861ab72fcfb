#!/usr/bin/env bash
# The PostgreSQL restore drill: back up a database that ordo is serving and taking orders
# on, restore it into a new empty database, and prove the copy: `ordo check` is clean,
# every order acknowledged before the backup began is there, and `ordo serve` on the copy
# takes new orders (its id sequences came back too).
#
#   bash deploy/postgres/restore-drill.sh [SERVER_URL]
#       (default: postgres://postgres@127.0.0.1:5432/postgres; ORDO=path/to/ordo, default
#       target/debug/ordo)
#
# It makes two databases of its own on that server (ordo_drill_PID_live and _restored) and
# drops them at the end; nothing else on the server is touched. The commands an operator
# types are the ones marked "the drill" below (docs/operations.md shows them).
set -euo pipefail
cd "$(dirname "$0")/../.."
server="${1:-postgres://postgres@127.0.0.1:5432/postgres}"
ordo="${ORDO:-target/debug/ordo}"
export ORDO_LOG=warn
[ -x "$ordo" ] || cargo build --locked -q
for tool in pg_dump pg_restore psql curl jq; do
  command -v "$tool" >/dev/null || { echo "restore-drill.sh: $tool is missing" >&2; exit 2; }
done
with_db() { python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$server" "$1"; }
live_db="ordo_drill_$$_live"
restored_db="ordo_drill_$$_restored"
live="$(with_db "$live_db")"
restored="$(with_db "$restored_db")"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "$live_db" "$restored_db"; do
    psql -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$server" -c "CREATE DATABASE $live_db" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
serve() { # URL PORT
  ORDO_DATABASE_URL="$1" ORDO_LOG=warn ORDO_RATE_LIMIT_PER_SECOND=0 ORDO_MAX_PENDING_ORDERS_PER_CUSTOMER=0 \
    "$ordo" serve --listen "127.0.0.1:$2" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$2/readyz" >/dev/null && return; sleep 0.1; done
  echo "ordo serve did not start on $1" >&2; exit 1
}

# A shop that takes orders all through the backup.
ORDO_DATABASE_URL="$live" "$ordo" migrate >/dev/null
staff="$(ORDO_DATABASE_URL="$live" "$ordo" token create --name drill --role staff | tail -n 1)"
customer="$(ORDO_DATABASE_URL="$live" "$ordo" token create --name buyer --role customer | tail -n 1)"
port="$(free_port)"
serve "$live" "$port"
api() { curl -fsS -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "${@:2}"; }
product="$(api "$staff" -X POST "http://127.0.0.1:$port/api/v1/products" \
  -d '{"sku": "DRILL-1", "name": "Drill", "price_cents": 990, "currency": "EUR", "stock": 1000000}' | jq -r .id)"
place() { api "$customer" -X POST "http://127.0.0.1:$port/api/v1/orders" \
  -d "{\"items\": [{\"product_id\": $product, \"quantity\": 1}]}" | jq -r .order.id; }
( while :; do echo "$(date +%s.%N) $(place)"; done ) > "$work/acknowledged" 2>/dev/null &
placing=$!
pids+=($placing)
sleep 2
began="$(date +%s.%N)"

# The drill: a consistent copy while ordo serves ...
pg_dump --format=custom --file "$work/ordo.dump" "$live"
sleep 0.5
kill "$placing"; wait "$placing" 2>/dev/null || true
# ... restored into a new, empty database ...
psql -q "$server" -c "CREATE DATABASE $restored_db" >/dev/null
pg_restore --exit-on-error --no-owner --dbname "$restored" "$work/ordo.dump"
# ... and checked.
ORDO_DATABASE_URL="$restored" "$ordo" check

before="$(awk -v began="$began" '$1 < began && $2 ~ /^[0-9]+$/ { print $2 }' "$work/acknowledged")"
count="$(wc -w <<<"$before")"
[ "$count" -gt 0 ] || { echo "no order was acknowledged before the backup" >&2; exit 1; }
ids="$(tr '\n' ',' <<<"$before" | sed 's/,$//')"
held="$(psql -At "$restored" -c "SELECT COUNT(*) FROM orders WHERE id IN ($ids)")"
[ "$held" -eq "$count" ] || { echo "the copy holds $held of the $count orders acknowledged before the backup" >&2; exit 1; }
total="$(psql -At "$restored" -c "SELECT COUNT(*) FROM orders")"

# The copy serves: a new order gets a new id.
port="$(free_port)"
serve "$restored" "$port"
new="$(place)"
[ "$new" -gt "$(psql -At "$restored" -c "SELECT MAX(id) FROM orders WHERE id <> $new")" ] ||
  { echo "the restored database gave a new order an old id" >&2; exit 1; }
echo "restore drill: ok ($count orders acknowledged before pg_dump began, all restored; $total in the copy; order $new placed on it)"
