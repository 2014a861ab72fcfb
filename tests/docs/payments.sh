#!/usr/bin/env bash
# Runs the README's local WeChat Pay payment as a newcomer types it: every shell block of
# README.md and README.zh-CN.md marked run-by:tests/docs/payments.sh, in order, in one shell,
# in a scratch directory and a network namespace of its own (ports 8080 and 9090 free
# whatever else runs here). `cargo run --example provider-double -- ARGS` runs the example
# `cargo build --examples` made, and `cargo run --release [-q] -- ARGS` the ordo `cargo build`
# made: the same commands, without optimized builds. At the end it checks that the order is
# paid, that ordo's requests to the double were all signed, and that the servers stop cleanly.
#
#   bash tests/docs/payments.sh          (as root: it needs `unshare --net`)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked -q
cargo build --locked -q --example provider-double
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
export ORDO_BIN="$target_dir/debug/ordo" DOUBLE_BIN="$target_dir/debug/examples/provider-double"
for tool in curl jq unshare python3; do
  command -v "$tool" >/dev/null || { echo "payments.sh: $tool is missing" >&2; exit 2; }
done

run_document() {
  local document="$1" work
  work="$(mktemp -d)"
  python3 tests/docs/markdown.py blocks "$document" run-by:tests/docs/payments.sh > "$work/blocks.sh"
  [ -s "$work/blocks.sh" ] || { echo "payments.sh: no blocks in $document" >&2; return 1; }
  mkdir -p "$work/bin"
  cat > "$work/bin/cargo" <<EOF
#!/usr/bin/env bash
program="$ORDO_BIN"
while [ "\$#" -gt 0 ] && [ "\$1" != -- ]; do
  [ "\$1" = --example ] && program="$DOUBLE_BIN"
  shift
done
shift
exec "\$program" "\$@"
EOF
  chmod +x "$work/bin/cargo"
  cat > "$work/session.sh" <<'EOF'
set -euo pipefail
export PATH="$PWD/bin:$PATH" ORDO_LOG=warn
trap 'for job in $(jobs -p); do kill "$job" 2>/dev/null; done' EXIT
EOF
  cat "$work/blocks.sh" >> "$work/session.sh"
  cat >> "$work/session.sh" <<'EOF'

echo "== what the commands did"
status="$(curl -s "localhost:8080/api/v1/orders/$ORDER" -H "Authorization: Bearer $STAFF" | jq -r .status)"
[ "$status" = paid ] || { echo "order $ORDER is $status, not paid" >&2; exit 1; }
provider="$(jq -r .provider payment.json)"
[ "$provider" = wechatpay ] || { echo "the payment's provider is $provider" >&2; exit 1; }
[ "$(jq -r '.client.signType' payment.json)" = RSA ] || { echo "no wx.requestPayment parameters" >&2; exit 1; }
unsigned="$(curl -s localhost:9090/_double/transactions | jq '[.[] | select(.state != "SUCCESS")] | length')"
[ "$unsigned" = 0 ] || { echo "$unsigned transaction(s) not paid at the double" >&2; exit 1; }
for server in $(jobs -p); do kill -TERM "$server"; wait "$server" || true; done
echo "order $ORDER paid through WeChat Pay's double"
EOF
  echo "=== $document"
  (cd "$work" && unshare --net bash -c 'ip link set lo up && bash session.sh') || {
    echo "payments.sh: $document's commands failed (session: $work/session.sh)" >&2; return 1; }
  rm -rf "$work"
}

for document in ${READMES:-README.md README.zh-CN.md}; do
  run_document "$document"
done
echo "payments.sh: the README's WeChat Pay payment ran as written"
