#!/bin/sh
# The official redis image's entrypoint contract: `<image> --port 7000` or `<image> my.conf` runs
# redis-server with those arguments, and redis-server started as root runs as the redis user
# (999:999) after taking ownership of its working directory. Any other command runs as given.
# (The chart always sets its own command, so its pods never pass through here.)
set -e
case "${1:-}" in
  -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
  chown -R redis:redis .
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
exec "$@"
