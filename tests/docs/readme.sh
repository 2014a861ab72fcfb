#!/usr/bin/env bash
# Runs the README's commands as a newcomer types them: every shell block of README.md and
# README.zh-CN.md marked run-by:tests/docs/readme.sh, in order, in one shell, in a scratch
# directory and a network namespace of its own (so that localhost:8080 is free whatever
# else runs on this machine). `cargo run --release [-q] -- ARGS` runs the ordo that
# `cargo build` made: the same commands, without a second, optimized build. A block that
# starts a server in the foreground (`... serve`) is run in the background until it
# answers /readyz and then stopped with SIGTERM, which must end it with status 0. At the
# end it checks what the commands did: the order placed is paid, the endpoint exists.
#
#   bash tests/docs/readme.sh          (as root: it needs `unshare --net`)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --locked -q
export ORDO_BIN="$PWD/target/debug/ordo"
for tool in curl jq openssl unshare python3; do
  command -v "$tool" >/dev/null || { echo "readme.sh: $tool is missing" >&2; exit 2; }
done

run_document() {
  local document="$1" work
  work="$(mktemp -d)"
  python3 tests/docs/markdown.py blocks "$document" run-by:tests/docs/readme.sh > "$work/blocks.sh"
  [ -s "$work/blocks.sh" ] || { echo "readme.sh: no blocks in $document" >&2; return 1; }
  # `cargo run … -- ARGS` becomes that ordo with ARGS (a program, so that `&` and $! are
  # ordo itself); any other cargo command is cargo's.
  mkdir -p "$work/bin"
  cat > "$work/bin/cargo" <<EOF
#!/usr/bin/env bash
if [ "\${1:-}" = run ]; then
  while [ "\$#" -gt 0 ] && [ "\$1" != -- ]; do shift; done
  shift
  exec "$ORDO_BIN" "\$@"
fi
exec "$(command -v cargo)" "\$@"
EOF
  chmod +x "$work/bin/cargo"
  cat > "$work/session.sh" <<'EOF'
set -euo pipefail
export PATH="$PWD/bin:$PATH" ORDO_LOG=warn
# Whatever the blocks left running goes with the session, failed or not.
trap 'for job in $(jobs -p); do kill "$job" 2>/dev/null; done' EXIT
ready() { for _ in $(seq 1 100); do curl -sf localhost:8080/readyz >/dev/null && return 0; sleep 0.1; done; return 1; }
block() { echo; echo "== $1"; }
EOF
  # Each block in turn; a server started in the foreground is tried and stopped.
  python3 - "$work/blocks.sh" >> "$work/session.sh" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
for chunk in re.split(r"^(?=# \S+:\d+$)", text, flags=re.M):
    if not chunk.strip():
        continue
    header, _, body = chunk.partition("\n")
    print(f"block '{header[2:]}'")
    lines = [l for l in body.strip().split("\n") if l.strip()]
    if len(lines) == 1 and lines[0].strip().endswith(" serve"):
        print(lines[0] + " &")
        print("foreground=$!; ready; kill -TERM $foreground; wait $foreground")
        print("echo \"(the server answered /readyz and stopped on SIGTERM)\"")
    else:
        print(body)
PY
  cat >> "$work/session.sh" <<'EOF'

block "what the commands did"
order="$(jq .order.id order.json)"
status="$(curl -s "localhost:8080/api/v1/orders/$order" -H "Authorization: Bearer $STAFF" | jq -r .status)"
[ "$status" = paid ] || { echo "order $order is $status, not paid" >&2; exit 1; }
replayed="$(curl -s -X POST localhost:8080/api/v1/payments/webhook -H 'Content-Type: application/json' \
  -H "X-Ordo-Signature: $sig" -d "$body" | jq -r .outcome)"
[ "$replayed" = replayed ] || { echo "the same event again answered $replayed" >&2; exit 1; }
endpoints="$(curl -s localhost:8080/api/v1/webhook-endpoints -H "Authorization: Bearer $STAFF" | jq '.items | length')"
[ "$endpoints" -ge 1 ] || { echo "no webhook endpoint was made" >&2; exit 1; }
for server in $(jobs -p); do kill -TERM "$server"; wait "$server"; done
echo "order $order paid, the event replayed, $endpoints endpoint(s)"
EOF
  echo "=== $document"
  (cd "$work" && unshare --net bash -c 'ip link set lo up && bash session.sh') || {
    echo "readme.sh: $document's commands failed (session: $work/session.sh)" >&2; return 1; }
  rm -rf "$work"
}

for document in ${READMES:-README.md README.zh-CN.md}; do
  run_document "$document"
done
echo "readme.sh: the README's commands ran as written"
