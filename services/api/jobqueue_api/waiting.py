"""Long polls (``?wait=``): wake a waiting request the moment its job reaches a final status.

Workers publish a job's id on ``keys.JOB_DONE_CHANNEL`` when it ends. Each API process runs one
subscriber (started on first use, so after gunicorn forks; a greenlet under gevent) that wakes the
requests waiting for that id: one Redis connection per process, however many waiters. A second
loop re-reads every waited-for job in one ``MGET`` each ``SAFETY_POLL_SECONDS`` and wakes those
that are final, so a finish nobody announced (a worker killed between its write and its publish,
a message lost while the subscriber reconnects) costs about a second, never a stuck request.

At most ``max_waiters`` requests wait per process (``MAX_WAITERS``); beyond that a poll answers at
once with the job's current state, as if ``wait`` had run out, and the client simply polls again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict

import redis

from jobqueue import keys
from jobqueue.jobs import JobStatus

from .metrics import LONG_POLLS, LONG_POLLS_REFUSED

log = logging.getLogger("jobqueue.api")

SAFETY_POLL_SECONDS = 1.0
_FINAL = frozenset(s.value for s in JobStatus if s.is_final)
_MGET_CHUNK = 500


class DoneWaiter:
    def __init__(self, client: redis.Redis, max_waiters: int = 1000):
        self._client = client
        self.max_waiters = max_waiters
        self.safety_poll_seconds = SAFETY_POLL_SECONDS
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = defaultdict(list)
        self._count = 0
        self._threads: list[threading.Thread] = []
        self._subscribed = threading.Event()

    # --- request side ------------------------------------------------------------------
    def register(self, job_id: str) -> threading.Event | None:
        """An event set whenever ``job_id`` may have become final; None when this process
        already holds ``max_waiters`` waiters (the caller answers at once)."""
        self._ensure_threads()
        event = threading.Event()
        with self._lock:
            if self._count >= self.max_waiters:
                LONG_POLLS_REFUSED.inc()
                return None
            self._waiting[job_id].append(event)
            self._count += 1
        LONG_POLLS.inc()
        return event

    def unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiting.get(job_id)
            if events is None or event not in events:
                return
            events.remove(event)
            self._count -= 1
            if not events:
                del self._waiting[job_id]
        LONG_POLLS.dec()

    @property
    def waiting(self) -> int:
        return self._count

    def wait_subscribed(self, timeout: float) -> bool:
        """Tests use this to know a publish from now on will be seen."""
        self._ensure_threads()
        return self._subscribed.wait(timeout)

    # --- background loops --------------------------------------------------------------
    def _ensure_threads(self) -> None:
        if self._threads and all(t.is_alive() for t in self._threads):
            return
        with self._lock:
            if not self._threads or not all(t.is_alive() for t in self._threads):
                self._threads = [threading.Thread(target=fn, name=name, daemon=True)
                                 for fn, name in ((self._listen, "jobqueue-done-listener"),
                                                  (self._sweep, "jobqueue-done-sweeper"))]
                for thread in self._threads:
                    thread.start()

    def _wake(self, job_ids) -> None:
        with self._lock:
            events = [e for i in job_ids for e in self._waiting.get(i, ())]
        for event in events:
            event.set()

    def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(keys.JOB_DONE_CHANNEL)
                self._subscribed.set()
                backoff = 0.1
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        self._wake((data.decode() if isinstance(data, bytes) else data,))
            except Exception as exc:  # Redis gone: the sweeper still catches finished jobs
                if self._subscribed.is_set():  # once per outage, not once per retry
                    log.warning("done-channel subscriber lost Redis; reconnecting", extra={"error": str(exc)})
                self._subscribed.clear()
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _sweep(self) -> None:
        while True:
            time.sleep(self.safety_poll_seconds)
            with self._lock:
                ids = list(self._waiting)
            try:
                for start in range(0, len(ids), _MGET_CHUNK):
                    chunk = ids[start:start + _MGET_CHUNK]
                    raws = self._client.mget([keys.job(i) for i in chunk])
                    self._wake([i for i, raw in zip(chunk, raws) if raw is None or _is_final(raw)])
            except redis.exceptions.RedisError:
                continue  # the waiters' own deadlines still hold; try again next round


def _is_final(raw: str | bytes) -> bool:
    try:
        return json.loads(raw).get("status") in _FINAL
    except (ValueError, AttributeError):
        return True  # unreadable: let the request read it and report what it finds
