#!/usr/bin/env bash
# `make observe`: the local stack (`make up`) plus a Prometheus on 127.0.0.1:9090 that scrapes the
# API and the workers with the project's rules loaded, so you can look at the metrics, recording
# rules and alerts. Data under $RUN_DIR/prometheus; `make down` stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# absolute (caller-dir.sh): Prometheus resolves the file_sd paths in its config against the config
# file's own folder, so a relative RUN_DIR (RUN_DIR=myrun) had it scrape nothing but itself
. scripts/caller-dir.sh
export RUN_DIR
# as make up's hint: a bare `make down` looks in the default RUN_DIR and would leave all this running
STOP="$MAKE_HERE down"
if [ "$RUN_DIR" != "$ROOT/.run" ]; then STOP="RUN_DIR=$(printf %q "$RUN_DIR") $MAKE_HERE down"; fi
PROM_PORT=${PROMETHEUS_PORT:-9090}
if ! [[ $PROM_PORT =~ ^[0-9]+$ ]]; then
  echo "observe: PROMETHEUS_PORT must be a whole number, got '$PROM_PORT'" >&2
  exit 2
fi
PORT=${PORT:-5000}
WORKERS=${WORKERS:-2}
WORKER_METRICS_BASE=${WORKER_METRICS_BASE:-9101}

scripts/up.sh

# as up.sh reads them (which has refused anything but whole numbers): a leading zero is dropped, not
# octal; the targets below said 3904 for PORT=07500 (and an 8 or 9 in it stopped printf)
for var in PORT WORKERS WORKER_METRICS_BASE API_METRICS_PORT; do
  if [[ ${!var:-} =~ ^[0-9]+$ ]]; then printf -v "$var" %d "$((10#${!var}))"; fi
done

command -v prometheus >/dev/null || { echo "observe: no prometheus binary (apt-get install prometheus)" >&2; exit 1; }
PROM_DIR=$RUN_DIR/prometheus
mkdir -p "$PROM_DIR/targets" "$PROM_DIR/data" "$RUN_DIR/pids" "$RUN_DIR/logs"

# The API's and the workers' metrics addresses as make up reaches them (BIND_HOST=::1: [::1]).
hosts=$(BIND_HOST=${BIND_HOST:-127.0.0.1} "$ROOT/.venv/bin/python" -c "from jobqueue.settings import print_reach_addresses as p; p()")
API_HOST=$(sed -n 1p <<<"$hosts")
METRICS_HOST=$(sed -n 2p <<<"$hosts")
# Targets as a Kubernetes scrape would label them (one pod label per process).
targets() {  # pod-name-prefix, host, first port, count[, metrics path]
  local sep="" i
  printf '['
  for i in $(seq "$4"); do
    printf '%s{"targets": ["%s:%d"], "labels": {"pod": "%s-%d", "__metrics_path__": "%s"}}' \
      "$sep" "$2" $(($3 + i - 1)) "$1" "$i" "${5:-/metrics}"
    sep=", "
  done
  printf ']\n'
}
# the API's /metrics: on PORT, or on its own listener when API_METRICS_PORT is set (as in the chart)
API_SCRAPE_PORT=$PORT
if [ "${API_METRICS_PORT:-0}" != 0 ]; then API_SCRAPE_PORT=$API_METRICS_PORT; fi
# under SCRIPT_NAME gunicorn serves every listener, the metrics one too, only inside the prefix
PREFIX=${SCRIPT_NAME:-}
targets api "$API_HOST" "$API_SCRAPE_PORT" 1 "${PREFIX%/}/metrics" >"$PROM_DIR/targets/api.json.tmp" && mv "$PROM_DIR/targets/api.json.tmp" "$PROM_DIR/targets/api.json"
targets worker "$METRICS_HOST" "$WORKER_METRICS_BASE" "$WORKERS" >"$PROM_DIR/targets/worker.json.tmp" \
  && mv "$PROM_DIR/targets/worker.json.tmp" "$PROM_DIR/targets/worker.json"

# The dashboard's Redis row (memory, clients, commands/s) and JobQueueRedisMemoryHigh read the
# redis_exporter sidecar's series in a cluster; here Debian's prometheus-redis-exporter plays it, for
# make up's own Redis (which has no password).
EXPORTER_PORT=${REDIS_EXPORTER_PORT:-9121}
if ! [[ $EXPORTER_PORT =~ ^[0-9]+$ ]]; then
  echo "observe: REDIS_EXPORTER_PORT must be a whole number, got '$EXPORTER_PORT'" >&2
  exit 2
fi
exporter_pidfile=$RUN_DIR/pids/redis-exporter.pid
EXPORTER_NOTE=""
if [ -n "${REDIS_URL:-}" ]; then
  EXPORTER_NOTE="no Redis exporter (REDIS_URL names a Redis make up did not start): the dashboard's Redis row stays empty"
elif ! command -v prometheus-redis-exporter >/dev/null; then
  EXPORTER_NOTE="no prometheus-redis-exporter (apt-get install prometheus-redis-exporter): the dashboard's Redis row stays empty"
elif [ -f "$exporter_pidfile" ] && kill -0 "$(cat "$exporter_pidfile")" 2>/dev/null; then
  EXPORTER_PORT=$(cat "$RUN_DIR/prometheus/redis-exporter.port" 2>/dev/null || echo "$EXPORTER_PORT")
elif (exec 3<>"/dev/tcp/127.0.0.1/$EXPORTER_PORT") 2>/dev/null; then
  EXPORTER_NOTE="port $EXPORTER_PORT is taken by another program, so no Redis exporter (set REDIS_EXPORTER_PORT=...): the dashboard's Redis row stays empty"
else
  nohup prometheus-redis-exporter -redis.addr "redis://127.0.0.1:${REDIS_PORT:-6379}" \
    -web.listen-address "127.0.0.1:$EXPORTER_PORT" >>"$RUN_DIR/logs/redis-exporter.log" 2>&1 &
  echo $! >"$exporter_pidfile"
  echo "$EXPORTER_PORT" >"$PROM_DIR/redis-exporter.port"
  echo "observe: started prometheus-redis-exporter (pid $!, log $RUN_DIR/logs/redis-exporter.log)"
fi
SCRAPED_REDIS=" and the Redis exporter on :$EXPORTER_PORT"
if [ -n "$EXPORTER_NOTE" ]; then
  SCRAPED_REDIS=""
  echo "observe: $EXPORTER_NOTE" >&2
  echo '[]' >"$PROM_DIR/targets/redis.json"
else
  targets redis 127.0.0.1 "$EXPORTER_PORT" 1 >"$PROM_DIR/targets/redis.json.tmp" && mv "$PROM_DIR/targets/redis.json.tmp" "$PROM_DIR/targets/redis.json"
fi

# The config as committed, with the target paths and own port made absolute for this RUN_DIR.
sed -e "s#\.\./\.run/prometheus/targets/#$PROM_DIR/targets/#" \
    -e "s#\.\./helm/#$ROOT/helm/#" \
    -e "s#127\.0\.0\.1:9090#127.0.0.1:$PROM_PORT#" \
    observability/prometheus.yml >"$PROM_DIR/prometheus.yml"

pidfile=$RUN_DIR/pids/prometheus.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "observe: prometheus already running (pid $(cat "$pidfile")); reloading its config"
  "$ROOT/.venv/bin/python" -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$PROM_PORT/-/reload', method='POST'), timeout=10)" \
    || echo "observe: reload failed; $STOP && $MAKE_HERE observe" >&2
else
  if (exec 3<>"/dev/tcp/127.0.0.1/$PROM_PORT") 2>/dev/null; then
    echo "observe: port $PROM_PORT is taken by another program; set PROMETHEUS_PORT=..." >&2
    exit 1
  fi
  nohup prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle --storage.tsdb.retention.time=7d \
    >>"$RUN_DIR/logs/prometheus.log" 2>&1 &
  echo $! >"$pidfile"
  echo "observe: started prometheus (pid $!, log $RUN_DIR/logs/prometheus.log)"
fi

ready=0
for _ in $(seq 100); do
  if "$ROOT/.venv/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PROM_PORT/-/ready', timeout=1)" \
    2>/dev/null; then ready=1; break; fi
  kill -0 "$(cat "$pidfile")" 2>/dev/null || break  # it exited: no use waiting
  sleep 0.2
done
if [ "$ready" = 0 ]; then  # the banner below used to be printed all the same
  echo "observe: prometheus did not become ready; last lines of its log:" >&2
  tail -n 15 "$RUN_DIR/logs/prometheus.log" >&2 || true
  echo "observe: the rest of the stack is still running; stop it with: $STOP" >&2
  exit 1
fi
cat <<MSG

Prometheus: http://127.0.0.1:$PROM_PORT  (scraping the API on $API_HOST:$API_SCRAPE_PORT, $WORKERS workers$SCRAPED_REDIS every 5 s, rules loaded)
  Targets: http://127.0.0.1:$PROM_PORT/targets   Alerts: http://127.0.0.1:$PROM_PORT/alerts
  Try:     http://127.0.0.1:$PROM_PORT/graph?g0.expr=jobqueue%3Abacklog%3Amax
Grafana (optional): import helm/atx-jobqueue/files/grafana/atx-jobqueue-dashboard.json with this Prometheus as data source.
Stop everything with: $STOP
MSG
