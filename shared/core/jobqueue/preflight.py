"""``make up``'s checks before it starts anything (scripts/up.sh), run as ``python -m jobqueue.preflight``.

``settings``: every variable as the API and the workers will read it, then the addresses a client
here reaches them at (:func:`jobqueue.settings.print_reach_addresses`), then REDIS_URL as make up
may print it (:func:`jobqueue.settings.masked_redis_url`: its password ``***``). A malformed one (the
tutorial's ``REDIS_URL=127.0.0.1:6379``, ``LOG_LEVEL=verbose``) used to be named only by the API's
log, after make up's Redis wait and ``READY_TIMEOUT``: about 90 s, with the API and the workers
started (and exited) for nothing.

``redis SECONDS``: the Redis the stack will use answers, in both of its dbs, with the password it
will be given, within SECONDS; else its last error and exit status 1. A REDIS_URL naming a Redis
that was not running had make up wait about 3 minutes of dots before it showed the API's log.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

from .settings import SettingsError, Settings, load_settings, masked_redis_url, print_reach_addresses

# make up gives each worker a metrics port of its own (WORKER_METRICS_BASE + i - 1)
SET_BY_MAKE_UP = ("WORKER_METRICS_PORT",)


def stack_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings the stack's processes will read from this environment (SettingsError if one is bad)."""
    env = os.environ if environ is None else environ
    return load_settings({k: v for k, v in env.items() if k not in SET_BY_MAKE_UP})


def check_settings() -> None:
    try:
        settings = stack_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print_reach_addresses()
    # make up's banner and messages name the URL with this: one masking for them all
    print(masked_redis_url(settings.redis_url))


def redis_problem(settings: Settings, seconds: float) -> str | None:
    """None once the jobs db and the queue db both answer PING, else the last error after ``seconds``;
    a refused password or a db the server does not have at once (``wire.SetupRefused``: waiting
    does not change the settings)."""
    import redis

    from .connections import jobs_redis, queue_redis
    from .wire import SetupRefused

    clients = [jobs_redis(settings), queue_redis(settings)]
    deadline = time.monotonic() + seconds
    while True:
        try:
            for client in clients:
                client.ping()
            return None
        except SetupRefused as exc:
            return str(exc)
        except redis.exceptions.RedisError as exc:
            problem = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            return problem
        time.sleep(0.1)


def main(argv: list[str]) -> None:
    if argv[:1] == ["settings"]:
        check_settings()
    elif argv[:1] == ["redis"] and len(argv) == 2:
        problem = redis_problem(stack_settings(), float(argv[1]))
        if problem:
            print(problem)
            raise SystemExit(1)
    else:
        raise SystemExit("usage: python -m jobqueue.preflight settings | redis SECONDS")


if __name__ == "__main__":
    main(sys.argv[1:])
