#!/usr/bin/env bash
# Build the API and worker images with buildah (no daemon needed), from the repository root as the
# build context and the real Dockerfiles. `make images` calls this; so does tests/images/.
#
#   scripts/build-images.sh [api] [worker]        # both when none is named
#
# Environment:
#   PYTHON_IMAGE   base image (default: the Dockerfiles' own, docker.io/library/python:3.11-slim);
#                  `local` builds a Debian base with debootstrap first (scripts/make-base-image.sh),
#                  for machines that cannot pull images
#   IMAGE_REPO     name prefix (default localhost/atx-jobqueue -> localhost/atx-jobqueue-api)
#   IMAGE_TAG      tag (default dev)
#   BUILD_CA_BUNDLE  CA bundle mounted over the build containers' one during RUN steps, for builds
#                  behind a TLS-inspecting proxy (default: this machine's, when it has one; `none` off)
#   STORAGE_DRIVER buildah storage driver (default: buildah's own, overlay where it works; vfs always works)
#   BUILDAH_ISOLATION  default chroot, which works as root in a VM or a container without a runtime
# Prints one line per image: name, id and size. Build logs go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_REPO=${IMAGE_REPO:-localhost/atx-jobqueue}
IMAGE_TAG=${IMAGE_TAG:-dev}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
BUILD_CA_BUNDLE=${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
buildah_() { buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} "$@"; }

command -v buildah >/dev/null || { echo "build-images: buildah is not installed (make setup installs it)" >&2; exit 2; }
[ -f data/traffic_incidents_sample.csv ] \
  || { echo "build-images: data/traffic_incidents_sample.csv is missing; the images bundle it" >&2; exit 2; }

services=("$@")
[ ${#services[@]} -gt 0 ] || services=(api worker)

args=(--layers)
if [ "${PYTHON_IMAGE:-}" = local ]; then
  PYTHON_IMAGE=$(scripts/make-base-image.sh)
fi
if [ -n "${PYTHON_IMAGE:-}" ]; then
  args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
  # A base already in the store is used as is (a localhost/ one cannot be pulled anyway).
  if buildah_ inspect --type image "$PYTHON_IMAGE" >/dev/null 2>&1; then args+=(--pull=never); fi
fi
if [ "$BUILD_CA_BUNDLE" != none ] && [ -s "$BUILD_CA_BUNDLE" ]; then
  args+=(--volume "$BUILD_CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
fi

for service in "${services[@]}"; do
  case $service in api|worker) ;; *) echo "build-images: unknown image '$service' (api, worker)" >&2; exit 2;; esac
  image=$IMAGE_REPO-$service:$IMAGE_TAG
  start=$SECONDS
  echo "build-images: building $image" >&2
  buildah_ build "${args[@]}" -f "services/$service/Dockerfile" -t "$image" . >&2
  read -r id size < <(buildah_ images --noheading --format '{{.ID}} {{.Size}}' "$image" | awk 'NR == 1 {print $1, $2 $3}')
  echo "build-images: $image built in $((SECONDS - start)) s" >&2
  echo "$image $id $size"
done
