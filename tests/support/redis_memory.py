"""Drive a real Redis to its ``maxmemory`` (noeviction) with filler results, for memory-pressure tests."""

from __future__ import annotations

import redis

from jobqueue import keys


def fill_to_maxmemory(client: redis.Redis, headroom: int = 512 * 1024) -> list[str]:
    """Set maxmemory just above what is used, store filler results until Redis refuses, then pull
    maxmemory under what is used (a refused request's own buffer stops counting once it is
    answered), so every write that grows memory is refused until the filler is deleted. Returns
    the filler keys."""
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + headroom)
    filler: list[str] = []
    try:
        for i in range(100_000):
            key = keys.result(f"filler-{i}")
            client.set(key, b"x" * 65536)
            filler.append(key)
    except redis.exceptions.OutOfMemoryError:
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 131072)
        return filler
    raise AssertionError("Redis never refused a write")
