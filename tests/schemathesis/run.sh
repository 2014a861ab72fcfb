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
# The binary just built, wherever CARGO_TARGET_DIR (or cargo's configuration) puts it.
ordo="$(cargo metadata --locked --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/ordo"
[ -x "$ordo" ] || { echo "no ordo binary at $ordo" >&2; exit 1; }
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cleanup() { [ -n "${server:-}" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export ORDO_DATABASE_URL="sqlite://$work/ordo.db" ORDO_LOG=warn
"$ordo" demo > "$work/demo.txt"
staff="$(awk '/^staff token/ {print $NF}' "$work/demo.txt")"
customer="$(awk '/^customer token/ {print $NF}' "$work/demo.txt")"
# The fuzzer may register endpoints at any address and send requests as fast as it can.
# Every request is logged as JSON (ordo::http at info), so that server errors are counted
# from the server's own log below, whatever schemathesis made of them.
ORDO_RATE_LIMIT_PER_SECOND=0 ORDO_WEBHOOK_ALLOW_PRIVATE=true ORDO_WEBHOOK_SECRET=fuzz \
  ORDO_LOG=warn,ordo::http=info ORDO_LOG_FORMAT=json \
  "$ordo" serve --listen "127.0.0.1:$port" --no-dispatch 2> "$work/serve.log" &
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
# The log must hold the requests (else this check could never fail), and none may be a 5xx.
python3 - "$work/serve.log" <<'PY' || status=1
import json, sys
requests, errors = 0, []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    fields = entry.get("fields", {})
    if entry.get("target") == "ordo::http" and fields.get("message") == "request":
        requests += 1
        if int(fields.get("status", 0)) >= 500:
            errors.append(f'{fields.get("method")} {fields.get("path")} -> {fields.get("status")}')
print(f"server log: {requests} requests, {len(errors)} answered with a 5xx")
for error in errors[:20]:
    print("  " + error)
sys.exit(1 if requests == 0 or errors else 0)
PY
exit $status
