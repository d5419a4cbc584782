#!/bin/sh
# Snapshot a running Redis into BACKUP_DIR as dump-<UTC time>.rdb and keep the newest BACKUP_KEEP.
# `redis-cli --rdb` asks the server for a consistent RDB over the replication protocol, so Redis
# keeps serving and nothing is copied half-written. Auth: the password file mounted from the
# Secret (REDIS_PASSWORD_FILE), or REDISCLI_AUTH.
set -eu
if [ -n "${REDIS_PASSWORD_FILE:-}" ]; then
  REDISCLI_AUTH=$(cat "$REDIS_PASSWORD_FILE")
  export REDISCLI_AUTH
fi
: "${REDIS_HOST:?REDIS_HOST is required}"
: "${BACKUP_DIR:?BACKUP_DIR is required}"
port="${REDIS_PORT:-6379}"
keep="${BACKUP_KEEP:-48}"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
partial="$BACKUP_DIR/.dump-$stamp.rdb.partial"
redis-cli -h "$REDIS_HOST" -p "$port" --no-auth-warning --rdb "$partial"
if [ "$(head -c 5 "$partial")" != "REDIS" ]; then
  echo "backup: $partial is not an RDB file" >&2
  rm -f "$partial"
  exit 1
fi
mv "$partial" "$BACKUP_DIR/dump-$stamp.rdb"
ls -1 "$BACKUP_DIR"/dump-*.rdb | sort -r | tail -n +"$((keep + 1))" | while read -r old; do rm -f "$old"; done
echo "backup: wrote $BACKUP_DIR/dump-$stamp.rdb ($(wc -c < "$BACKUP_DIR/dump-$stamp.rdb") bytes)"
