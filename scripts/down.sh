#!/usr/bin/env bash
# `make down`: stop exactly the processes `make up` started (pid files under $RUN_DIR/pids).
# Workers get SIGTERM and the grace period to finish their job; Redis stops last so it can flush.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/caller-dir.sh   # RUN_DIR: a relative one is the caller's folder's, as make up read it
# the workers' grace in whole seconds: a number as they read it (1e1, 2.5, .5); shell arithmetic on
# the raw value took only digits, and SHUTDOWN_GRACE_SECONDS=1e1 stopped no worker (and exited 0)
GRACE=$(printf %.0f "${SHUTDOWN_GRACE_SECONDS:-60}" 2>/dev/null) || GRACE=60

stop() {  # pidfile, seconds to wait before SIGKILL
  local pidfile=$1 wait_s=$2 pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq $((wait_s * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "down: $(basename "$pidfile" .pid) ignored SIGTERM for ${wait_s}s; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    echo "down: stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
}

shopt -s nullglob
pidfiles=("$RUN_DIR"/pids/*.pid)
if [ ${#pidfiles[@]} = 0 ]; then  # a bare `make down` for a stack started with RUN_DIR=... said nothing
  echo "down: nothing to stop under $RUN_DIR (a stack started with RUN_DIR=<dir> stops with RUN_DIR=<dir> $MAKE_HERE down)"
  exit 0
fi
for f in "$RUN_DIR"/pids/worker-*.pid; do stop "$f" "$((GRACE + 5))" & done
[ -f "$RUN_DIR/pids/api.pid" ] && stop "$RUN_DIR/pids/api.pid" 30 &
[ -f "$RUN_DIR/pids/prometheus.pid" ] && stop "$RUN_DIR/pids/prometheus.pid" 30 &  # make observe
[ -f "$RUN_DIR/pids/redis-exporter.pid" ] && stop "$RUN_DIR/pids/redis-exporter.pid" 30 &  # make observe
wait
[ -f "$RUN_DIR/pids/redis.pid" ] && stop "$RUN_DIR/pids/redis.pid" 30
exit 0
