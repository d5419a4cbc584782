#!/usr/bin/env bash
# Build a Python base image from scratch with debootstrap and import it into buildah, for machines
# that cannot pull python:3.11-slim (no registry access) but can reach a Debian mirror. The image
# build then uses it via `--build-arg PYTHON_IMAGE=<this image>`; see docs/images.md.
#
# The root filesystem is cached as a tarball under $ATX_CACHE_DIR (default ~/.cache/atx-jobqueue)
# keyed by suite and date, so only the first run of a day pays for debootstrap (~40 s); the buildah
# image is re-imported only when its label says it came from another tarball.
# Prints the image name on stdout (everything else goes to stderr). Needs root.
set -euo pipefail

SUITE=${BASE_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=${BASE_IMAGE_NAME:-localhost/atx-jobqueue-base:$SUITE}
CACHE_DIR=${ATX_CACHE_DIR:-$HOME/.cache/atx-jobqueue}/base
KEY=$SUITE-$(date -u +%Y%m%d)
TARBALL=$CACHE_DIR/debian-$KEY-python3.tar.gz
# What a Python slim image offers: the interpreter, venv/ensurepip, CA certificates. Nothing else.
PACKAGES=python3,python3-venv,ca-certificates

log() { echo "make-base-image: $*" >&2; }
buildah_() { buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} "$@"; }

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, buildah)"; exit 2; }
for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || { log "$tool is not installed (make setup installs it)"; exit 2; }
done

# One build at a time per cache: test sessions or worktrees starting together on a new day each ran
# their own debootstrap (15 minutes each on a loaded machine) and imported the same image name; the
# next one waits here, then finds the tarball and the image made.
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
flock 9

if [ ! -s "$TARBALL" ]; then
  work=$(mktemp -d "$CACHE_DIR/.rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "debootstrap $SUITE from $MIRROR (minbase + $PACKAGES)"
  start=$SECONDS
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  # Slim it down the way the official slim images do: no package lists or caches, docs, man pages
  # or translations (apt-get update restores the lists when someone needs them).
  rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/* "$work"/rootfs/var/log/* \
         "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/locale/* \
         "$work"/rootfs/usr/share/info/* "$work"/rootfs/tmp/* "$work"/rootfs/root/.cache
  # A clean resolv.conf/hostname: the container runtime provides both.
  : >"$work/rootfs/etc/resolv.conf"
  tar -C "$work/rootfs" --numeric-owner -czf "$TARBALL.part" .
  mv "$TARBALL.part" "$TARBALL"
  rm -rf "$work"; trap - EXIT
  # Older days' tarballs are dead weight.
  find "$CACHE_DIR" -maxdepth 1 -name "debian-$SUITE-*-python3.tar.gz" ! -name "$(basename "$TARBALL")" -delete
  log "rootfs cached at $TARBALL ($((SECONDS - start)) s, $(du -h "$TARBALL" | cut -f1))"
fi

current=$(buildah_ inspect --type image --format '{{index .ImageAnnotations "org.atx-jobqueue.base-key"}}' "$IMAGE" 2>/dev/null || true)
if [ "$current" != "$KEY" ]; then
  log "importing $TARBALL as $IMAGE"
  ctr=$(buildah_ from scratch)
  trap 'buildah_ rm "$ctr" >/dev/null 2>&1 || true' EXIT
  buildah_ add "$ctr" "$TARBALL" / >/dev/null
  # The same defaults python:3.11-slim sets, so Dockerfiles behave alike on both.
  buildah_ config --env LANG=C.UTF-8 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 --annotation "org.atx-jobqueue.base-key=$KEY" \
    --label "org.opencontainers.image.description=Debian $SUITE minbase + python3 (debootstrap, for offline image builds)" \
    "$ctr"
  buildah_ commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
  trap - EXIT
fi
echo "$IMAGE"
