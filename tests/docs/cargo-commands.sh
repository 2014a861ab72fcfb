#!/usr/bin/env bash
# The long test runs the documents describe (a 60 s workload, 20,000 fuzz cases, ...) are
# too long for every CI run, so each `cargo test` command in a shell block marked
# run-by:tests/docs/cargo-commands.sh is run here with `--list` added: cargo must accept
# it as written (filters after `--`, known flags) and its filters must select at least one
# test. Its environment assignments are kept (they change nothing when listing).
#
#   bash tests/docs/cargo-commands.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
checked=0
for document in README.md README.zh-CN.md RELIABILITY.md BENCHMARKS.md docs/*.md; do
  while IFS= read -r command; do
    [ -n "$command" ] || continue
    case "$command" in
      *"cargo test"*) ;;
      *) echo "cargo-commands.sh: $document: not a cargo test command: $command" >&2; exit 1 ;;
    esac
    if [[ "$command" == *" -- "* ]]; then listing="$command --list"; else listing="$command -- --list"; fi
    echo "== $document: $command"
    out="$(bash -c "$listing" 2>&1)" || { echo "$out" | tail -20; echo "cargo refused: $command" >&2; exit 1; }
    tests="$(grep -cE ': (test|benchmark)$' <<<"$out" || true)"
    [ "$tests" -gt 0 ] || { echo "$out" | tail -5; echo "selects no test: $command" >&2; exit 1; }
    echo "   $tests test(s) selected"
    checked=$((checked + 1))
  done < <(python3 - "$document" <<'PY'
import sys
sys.path.insert(0, "tests/docs")
import markdown
blocks, _, _ = markdown.parse(open(sys.argv[1], encoding="utf-8").read())
for _, info, body in blocks:
    language, words = markdown.marks(info)
    if language in markdown.SHELLS and "run-by:tests/docs/cargo-commands.sh" in words:
        for command in markdown.commands(body):
            print(command)
PY
)
done
[ "$checked" -gt 0 ] || { echo "cargo-commands.sh: no command found" >&2; exit 1; }
echo "cargo-commands.sh: $checked documented cargo test command(s) accepted, each selecting tests"
