#!/usr/bin/env bash
# Runs one ignored test of the `it` binary by its full name and fails unless exactly that
# test ran and passed: a name that matches nothing (a test renamed or moved) would
# otherwise pass as "0 passed".
#
#   bash tests/run-one.sh service::postgres_restart_is_survived [more libtest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: tests/run-one.sh MODULE::TEST [libtest arguments]}"
shift
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --locked --test it -- --ignored --exact "$name" "$@" 2>&1 | tee "$log"
if ! grep -q '^test result: ok\. 1 passed; 0 failed;' "$log"; then
  echo "expected exactly one test, $name, to run and pass" >&2
  exit 1
fi
