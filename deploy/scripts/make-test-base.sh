#!/usr/bin/env bash
# Build a local stand-in for the official Node 20 image (node:20-bookworm-slim), for machines that
# cannot pull images (such as this project's CI): a Debian bookworm minbase root made by debootstrap
# from this machine's Debian mirror, with this machine's `node`, its `npm` folder and its CA bundle,
# imported as a local image. deploy/Dockerfile then builds on it unchanged:
#
#   deploy/scripts/start-docker.sh
#   deploy/scripts/make-test-base.sh                       # -> local/gradhub-base:test
#   docker build -f deploy/Dockerfile --build-arg BASE_IMAGE=local/gradhub-base:test -t gradhub:test .
#
# Why the CA bundle: `npm ci` inside the build must reach the npm registry, whose TLS certificate
# here is signed by a CA only this machine's bundle holds; the image sets NODE_EXTRA_CA_CERTS to it.
# Users with a registry never need this script: the Dockerfile's default base is the official image.
#
# Idempotent: does nothing when the image exists (pass --force to rebuild). Root only (debootstrap).
# Environment: GRADHUB_BASE_IMAGE (image name, default local/gradhub-base:test),
# GRADHUB_DEBIAN_MIRROR (default: the first non-security Debian URI in /etc/apt/sources.list*),
# GRADHUB_DEBIAN_SUITE (default bookworm, the Debian release of node:20-bookworm-slim).
set -euo pipefail

IMAGE=${GRADHUB_BASE_IMAGE:-local/gradhub-base:test}
SUITE=${GRADHUB_DEBIAN_SUITE:-bookworm}
FORCE=0
[[ "${1:-}" == --force ]] && FORCE=1

if [[ $FORCE -eq 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base: $IMAGE exists (pass --force to rebuild)"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "base: debootstrap needs root" >&2
  exit 1
fi

# The Debian archive this machine installs from: one-line .list entries ("deb [opts] URI suite ...")
# and deb822 .sources files ("URIs: ..."), skipping the security archive.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    case "$f" in
      *.sources)
        awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" ;;
      *)
        awk '/^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; break } }' "$f" ;;
    esac
  done | grep -E '/debian/?$' | grep -v -- '-security' | head -n 1
}
MIRROR=${GRADHUB_DEBIAN_MIRROR:-$(debian_mirror || true)}
if [[ -z "$MIRROR" ]]; then
  echo "base: no Debian mirror found in /etc/apt/sources.list*; set GRADHUB_DEBIAN_MIRROR" >&2
  exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base: installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

NODE_BIN=$(readlink -f "$(command -v node)")
NPM_DIR=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")   # .../node_modules/npm
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[[ -f "$NPM_DIR/package.json" ]] || { echo "base: cannot find npm's folder (got $NPM_DIR)" >&2; exit 1; }
[[ -f "$CA_BUNDLE" ]] || { echo "base: no CA bundle at $CA_BUNDLE" >&2; exit 1; }

WORK=$(mktemp -d /tmp/gradhub-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"

echo "base: debootstrap --variant=minbase $SUITE from $MIRROR"
start=$SECONDS
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
  { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
echo "base: debootstrap took $((SECONDS - start)) s"

# Node and npm where the official image has them (/usr/local), and the CA bundle.
install -D -m 0755 "$NODE_BIN" "$ROOT/usr/local/bin/node"
mkdir -p "$ROOT/usr/local/lib/node_modules"
cp -a "$NPM_DIR" "$ROOT/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"
install -D -m 0644 "$CA_BUNDLE" "$ROOT/etc/ssl/certs/ca-certificates.crt"
# Slimmer: apt's caches and lists are not needed in an image.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/*

# The host's node must run on this root (libstdc++ and glibc of bookworm).
if ! chroot "$ROOT" /usr/local/bin/node -e 'process.exit(0)'; then
  echo "base: this machine's node does not run in a $SUITE root (libraries?)" >&2
  exit 1
fi

tar -C "$ROOT" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV NODE_VERSION='"$(node --version | sed 's/^v//')" \
  --change 'CMD ["node"]' \
  --message "gradhub test base: debian $SUITE minbase + host node $(node --version)" \
  - "$IMAGE" >/dev/null
echo "base: $IMAGE built in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
