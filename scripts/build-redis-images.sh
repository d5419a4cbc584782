#!/usr/bin/env bash
# Build local stand-ins for the chart's third-party images, redis and oliver006/redis_exporter, from
# Debian's redis-server and prometheus-redis-exporter (tests/images/redis/Dockerfile says what they
# reproduce and where they differ), for machines that cannot pull images. The tests play the
# chart's Redis StatefulSet, backup and restore pods under podman with them.
#
#   scripts/build-redis-images.sh [redis] [exporter]     # both when none is named
#
# Environment:
#   BASE_IMAGE    base of both (default docker.io/library/debian:bookworm-slim); `local` builds a
#                 Debian base with debootstrap first (scripts/make-base-image.sh), as PYTHON_IMAGE=local
#                 does for scripts/build-images.sh
#   IMAGE_REPO    name prefix (default localhost/atx-jobqueue -> localhost/atx-jobqueue-redis,
#                 localhost/atx-jobqueue-redis-exporter)
#   IMAGE_TAG     tag (default dev)
#   STORAGE_DRIVER, BUILDAH_ISOLATION  as for scripts/build-images.sh
# Prints one line per image: name, id and size. Build logs go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_REPO=${IMAGE_REPO:-localhost/atx-jobqueue}
IMAGE_TAG=${IMAGE_TAG:-dev}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
buildah_() { buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} "$@"; }

command -v buildah >/dev/null || { echo "build-redis-images: buildah is not installed (make setup installs it)" >&2; exit 2; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(redis exporter)

args=(--layers)
if [ "${BASE_IMAGE:-}" = local ]; then
  BASE_IMAGE=$(scripts/make-base-image.sh)
fi
if [ -n "${BASE_IMAGE:-}" ]; then
  args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  if buildah_ inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then args+=(--pull=never); fi
fi

for target in "${targets[@]}"; do
  case $target in
    redis) image=$IMAGE_REPO-redis:$IMAGE_TAG ;;
    exporter) image=$IMAGE_REPO-redis-exporter:$IMAGE_TAG ;;
    *) echo "build-redis-images: unknown image '$target' (redis, exporter)" >&2; exit 2 ;;
  esac
  start=$SECONDS
  echo "build-redis-images: building $image" >&2
  buildah_ build "${args[@]}" --target "$target" -f tests/images/redis/Dockerfile -t "$image" tests/images/redis >&2
  read -r id size < <(buildah_ images --noheading --format '{{.ID}} {{.Size}}' "$image" | awk 'NR == 1 {print $1, $2 $3}')
  echo "build-redis-images: $image built in $((SECONDS - start)) s" >&2
  echo "$image $id $size"
done
