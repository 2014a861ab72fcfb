#!/usr/bin/env bash
# Fuzzes a running ordo from its own OpenAPI document with schemathesis (`--checks all`),
# once with a customer's token and once with a staff token, on a fresh SQLite shop made by
# `ordo demo`. Exits non-zero when schemathesis reports a failure.
#
#   bash tests/schemathesis/run.sh [MAX_EXAMPLES]     (default 100 per operation and token)
#
# Installs schemathesis from PyPI into target/schemathesis-venv when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
examples="${1:-100}"
venv="$PWD/target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4,<5'
fi
cargo build --locked -q
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export ORDO_DATABASE_URL="sqlite://$work/ordo.db" ORDO_LOG=warn
target/debug/ordo demo > "$work/demo.txt"
staff="$(awk '/^staff token/ {print $NF}' "$work/demo.txt")"
customer="$(awk '/^customer token/ {print $NF}' "$work/demo.txt")"
# The fuzzer may register endpoints at any address and send requests as fast as it can.
ORDO_RATE_LIMIT_PER_SECOND=0 ORDO_WEBHOOK_ALLOW_PRIVATE=true ORDO_WEBHOOK_SECRET=fuzz \
  target/debug/ordo serve --listen "127.0.0.1:$port" --no-dispatch 2> "$work/serve.log" &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
status=0
for who in customer staff; do
  token="$customer"; [ "$who" = staff ] && token="$staff"
  echo "== schemathesis as $who ($examples examples per operation)"
  "$venv/bin/schemathesis" --config-file tests/schemathesis/schemathesis.toml run \
    "http://127.0.0.1:$port/openapi.json" --checks all --max-examples "$examples" \
    --exclude-path /api/v1/payments/webhook \
    -H "Authorization: Bearer $token" --workers 2 --seed 20261129 || status=1
done
if grep -q ' 5[0-9][0-9] ' "$work/serve.log"; then echo "server errors logged"; status=1; fi
exit $status
