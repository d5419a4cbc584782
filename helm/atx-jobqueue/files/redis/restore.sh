#!/bin/sh
# Restore an RDB snapshot into a Redis data directory whose server is stopped.
# Redis 7 ignores dump.rdb when AOF is on and no AOF exists, so: move the old AOF aside, load the
# snapshot in a private server with AOF off, switch AOF on (Redis writes a fresh AOF from memory),
# and shut down. The normal server then starts from that AOF. Nothing is deleted: the previous
# appendonlydir and dump.rdb are kept with a .before-restore-<time> suffix.
set -eu
: "${RESTORE_FILE:?RESTORE_FILE is required (a dump-*.rdb on the backup volume)}"
data="${DATA_DIR:-/data}"
src="${BACKUP_DIR:-/backup}/$RESTORE_FILE"
port="${RESTORE_PORT:-6390}"
unset REDISCLI_AUTH
if [ ! -s "$src" ]; then
  echo "restore: $src is missing or empty" >&2
  exit 1
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
[ -d "$data/appendonlydir" ] && mv "$data/appendonlydir" "$data/appendonlydir.before-restore-$stamp"
[ -f "$data/dump.rdb" ] && mv "$data/dump.rdb" "$data/dump.rdb.before-restore-$stamp"
cp "$src" "$data/dump.rdb.partial"
mv "$data/dump.rdb.partial" "$data/dump.rdb"

redis-server --port "$port" --bind 127.0.0.1 --dir "$data" --dbfilename dump.rdb \
  --appendonly no --appenddirname appendonlydir --save "" --protected-mode yes &
pid=$!
until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; do
  kill -0 "$pid" 2>/dev/null || { echo "restore: redis-server exited while loading" >&2; exit 1; }
  sleep 0.2
done
redis-cli -p "$port" config set appendonly yes >/dev/null
# wait until the AOF written from the loaded data is complete
while :; do
  info=$(redis-cli -p "$port" info persistence | tr -d '\r')
  case "$info" in
    *aof_enabled:1*) ;;
    *) sleep 0.2; continue ;;
  esac
  case "$info" in
    *aof_rewrite_in_progress:0*aof_rewrite_scheduled:0*) break ;;
  esac
  sleep 0.2
done
echo "restore: loaded $RESTORE_FILE: $(redis-cli -p "$port" info keyspace | tr -d '\r' | grep '^db' | tr '\n' ' ')"
redis-cli -p "$port" shutdown >/dev/null 2>&1 || true
wait "$pid" || true
echo "restore: done; start Redis again (scale the StatefulSet to 1)"
