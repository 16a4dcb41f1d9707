#!/usr/bin/env bash
# Builds a local stand-in for node:20-bookworm-slim where no image registry is reachable:
# Debian bookworm (minbase, from this machine's apt mirror) with this machine's Node.js 20 and
# npm, a `node` user with uid 1000, and this machine's npm configuration and CA bundle (so npm ci
# inside the build reaches the same registry the host does). Needs root, debootstrap and a
# running Docker daemon. Where the real image can be pulled, `docker pull node:20-bookworm-slim`
# is all it takes instead.
#
#   sudo docker/base-image.sh            # ~1-2 minutes; tags node:20-bookworm-slim
set -euo pipefail
tag=node:20-bookworm-slim
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag is already there"; exit 0; fi
command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
node -e 'process.exit(process.versions.node.split(".")[0] === "20" ? 0 : 1)' || { echo "needs Node.js 20 on the host" >&2; exit 2; }
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /tmp/lenet-base-XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
node_bin=$(command -v node)
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")   # .../node_modules/npm
mkdir -p "$root/usr/lib/node_modules" "$root/usr/local/bin" "$root/usr/etc" "$root/etc/ssl/certs"
cp -a "$node_bin" "$root/usr/bin/node"
cp -a "$npm_dir" "$root/usr/lib/node_modules/npm"
ln -sf /usr/bin/node "$root/usr/local/bin/node"
ln -sf /usr/lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -sf /usr/lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
[ -f /usr/etc/npmrc ] && cp /usr/etc/npmrc "$root/usr/etc/npmrc"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["node"]' - "$tag" >/dev/null
echo "built $tag from Debian bookworm and Node $(node --version)"
