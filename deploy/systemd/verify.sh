#!/usr/bin/env bash
# Checks the units as systemd loads them, in a scratch root that holds ordo at
# /usr/local/bin/ordo and this machine's system units: `systemd-analyze verify` (any
# message fails), and `systemd-analyze security --offline` (an exposure above 2.0 fails).
#
#   bash deploy/systemd/verify.sh [ORDO_BINARY]     (default: target/debug/ordo)
#
# Needs systemd-analyze (Debian package systemd; .ci/run installs it when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${1:-target/debug/ordo}"
[ -x "$binary" ] || { echo "verify.sh: no ordo binary at $binary (cargo build first)" >&2; exit 2; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp "$binary" "$root/usr/local/bin/ordo"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
units=(ordo.service ordo-sweep.service ordo-sweep.timer)
for unit in "${units[@]}"; do cp "deploy/systemd/$unit" "$root/etc/systemd/system/"; done
cd "$root"
said="$(systemd-analyze verify --root="$root" "${units[@]/#/etc/systemd/system/}" 2>&1)" || {
  echo "$said"; echo "systemd-analyze verify failed" >&2; exit 1; }
if [ -n "$said" ]; then echo "$said"; echo "systemd-analyze verify had something to say" >&2; exit 1; fi
for unit in ordo.service ordo-sweep.service; do
  systemd-analyze security --offline=true --threshold=20 --root="$root" \
    "etc/systemd/system/$unit" > security.txt 2>&1 || { cat security.txt; exit 1; }
  grep 'Overall exposure level' security.txt
done
echo "systemd units verified: ${units[*]}"
