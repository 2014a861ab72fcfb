#!/usr/bin/env bash
# Builds the container image localhost/ordo:latest, offline: ordo linked statically against
# glibc (-C target-feature=+crt-static; x86_64-unknown-linux-gnu is the Rust target this
# toolchain has), this machine's CA roots (ca-certificates) and time zone data (tzdata),
# and a passwd entry for the user it runs as (10001, "ordo"), on `FROM scratch`.
#
#   bash deploy/container/build.sh [TAG]       (default TAG: localhost/ordo:latest)
#
# Needs podman, ca-certificates and tzdata (Debian packages). Webhook host names resolve
# in Rust (hickory) from the container's /etc/hosts and /etc/resolv.conf; the database host
# through glibc's built-in files and dns lookups.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag="${1:-localhost/ordo:latest}"
triple=x86_64-unknown-linux-gnu
# Random numbers straight from the getrandom(2) call that static glibc carries, not through
# a dlsym() lookup that a static binary cannot make (which falls back to /dev/urandom).
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
  cargo build --locked --profile image --target "$triple"
binary="target/$triple/image/ordo"
if readelf --program-headers "$binary" | grep -q INTERP; then
  echo "build.sh: $binary is dynamically linked" >&2
  exit 1
fi
context="target/container-context"
rm -rf "$context"
mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc/ssl/certs" \
  "$context/rootfs/usr/share" "$context/rootfs/tmp" "$context/data"
cp "$binary" "$context/rootfs/usr/local/bin/ordo"
cp /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/"
cp -a /usr/share/zoneinfo "$context/rootfs/usr/share/"
rm -rf "$context/rootfs/usr/share/zoneinfo/right"   # leap-second variants: unused
chmod 1777 "$context/rootfs/tmp"
printf 'root:x:0:0:root:/:/sbin/nologin\nordo:x:10001:10001:ordo:/var/lib/ordo:/sbin/nologin\n' \
  > "$context/rootfs/etc/passwd"
printf 'root:x:0:\nordo:x:10001:\n' > "$context/rootfs/etc/group"
# glibc's own lookups (the PostgreSQL host): the hosts file, then DNS.
printf 'hosts: files dns\n' > "$context/rootfs/etc/nsswitch.conf"
podman build --pull=never --network=none -f deploy/container/Containerfile -t "$tag" "$context"
podman image inspect --format '{{.Id}} {{.Size}}' "$tag" |
  awk -v tag="$tag" '{ printf "%s: %s, %.1f MB\n", tag, substr($1, 1, 12), $2 / 1e6 }'
