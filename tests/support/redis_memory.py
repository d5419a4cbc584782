"""Drive a real Redis to its ``maxmemory`` (noeviction) with filler results, for memory-pressure tests."""

from __future__ import annotations

import redis

from jobqueue import keys

FILLER_VALUE = 65536
MIN_FILLER = 1024 * 1024


def fill_to_maxmemory(client: redis.Redis, headroom: int = 1024 * 1024) -> list[str]:
    """Store filler results until Redis refuses, at least ``MIN_FILLER`` bytes of them, then pull
    maxmemory under what the data set holds by half the filler, so every write that grows memory is
    refused until the filler is deleted. Returns the filler keys.

    "What the data set holds" leaves out what can shrink while the filler is still there, so that
    shrinking cannot let writes through again:
    - the clients' memory (``mem_clients_normal``): their query buffers, trimmed once idle for
      about 2 s (a client that sent a big value keeps a buffer that size), and each connection's
      own ~20 KB, freed when it closes;
    - the AOF buffer (``mem_not_counted_for_evict``): Redis leaves it out of the maxmemory check,
      and with ``appendfsync everysec`` on a busy disk it holds up to 2 s of writes.
    Other clients writing while this fills (a busy worker storing plots) can take most of the
    headroom: filling goes on until the filler is big enough for its half to be a margin."""
    filler: list[str] = []
    while len(filler) * FILLER_VALUE < MIN_FILLER:
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + headroom)
        try:
            for _ in range(100_000):
                key = keys.result(f"filler-{len(filler)}")
                client.set(key, b"x" * FILLER_VALUE)
                filler.append(key)
            raise AssertionError("Redis never refused a write")
        except redis.exceptions.OutOfMemoryError:
            pass
    memory = client.info("memory")
    held = int(memory["used_memory"]) - int(memory.get("mem_clients_normal", 0))
    held -= int(memory.get("mem_not_counted_for_evict", 0))
    client.config_set("maxmemory", held - len(filler) * FILLER_VALUE // 2)
    return filler
