"""Drive a real Redis to its ``maxmemory`` (noeviction) with filler results, for memory-pressure tests."""

from __future__ import annotations

import redis

from jobqueue import keys


def fill_to_maxmemory(client: redis.Redis, headroom: int = 1024 * 1024) -> list[str]:
    """Set maxmemory just above what is used, store filler results until Redis refuses, then pull
    maxmemory under what is used by half the filler, so every write that grows memory is refused
    until the filler is deleted. Returns the filler keys.

    The margin is that wide because Redis's used memory also counts its clients: their buffers
    (trimmed once idle for about 2 s) and each connection (about 20 KB, freed when it closes). A
    margin of 128 KiB left about 19 KB once the buffers were trimmed, so one other client closing
    its connection let writes through again while the filler was still there."""
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + headroom)
    filler: list[str] = []
    try:
        for i in range(100_000):
            key = keys.result(f"filler-{i}")
            client.set(key, b"x" * 65536)
            filler.append(key)
    except redis.exceptions.OutOfMemoryError:
        margin = len(filler) * 65536 // 2
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - margin)
        return filler
    raise AssertionError("Redis never refused a write")
