"""Long polls (``?wait=``): wake a waiting request the moment its job reaches a final status.

Workers publish a job's id and final document on ``keys.JOB_DONE_CHANNEL`` when it ends. Each API
process runs one subscriber thread (started on first use, so after gunicorn forks) that hands the
document to the requests waiting for that id and wakes them: they answer without reading the job
again. A waiter also re-reads the job every ``SAFETY_POLL_SECONDS``, so a lost message or a
subscriber reconnecting after a Redis restart costs latency, never a stuck request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from jobqueue.jobs import Job, JobStore

log = logging.getLogger("jobqueue.api")

SAFETY_POLL_SECONDS = 1.0


class DoneWaiter:
    def __init__(self, store: JobStore):
        self._store = store
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = defaultdict(list)
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()

    # --- request side ------------------------------------------------------------------
    def wait_final(self, job_id: str, timeout: float) -> Job | None:
        """The job once final, or as it is after ``timeout`` seconds; None if it does not exist."""
        event = self.register(job_id)
        try:
            job = self._store.get(job_id)
            deadline = time.monotonic() + timeout
            while job is not None and not job.status.is_final:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if event.wait(min(remaining, SAFETY_POLL_SECONDS)):
                    doc = getattr(event, "doc", None)
                    self.unregister(job_id, event)
                    event = self.register(job_id)
                    if doc is not None:   # the final document came with the message
                        job = Job.from_json(doc)
                        continue
                job = self._store.get(job_id)
        finally:
            self.unregister(job_id, event)
        return job

    def register(self, job_id: str) -> threading.Event:
        self._ensure_thread()
        event = threading.Event()
        with self._lock:
            self._waiting[job_id].append(event)
        return event

    def unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiting.get(job_id)
            if events is not None:
                if event in events:
                    events.remove(event)
                if not events:
                    del self._waiting[job_id]

    def wait_subscribed(self, timeout: float) -> bool:
        """Tests use this to know a publish from now on will be seen."""
        self._ensure_thread()
        return self._subscribed.wait(timeout)

    # --- subscriber thread -------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="jobqueue-done-listener", daemon=True)
                self._thread.start()

    def _notify(self, job_id: str, doc: str | None = None) -> None:
        with self._lock:
            events = self._waiting.pop(job_id, ())
        for event in events:
            event.doc = doc  # type: ignore[attr-defined]
            event.set()

    def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = None
            try:
                pubsub = self._store.subscribe_done()
                self._subscribed.set()
                backoff = 0.1
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message and message.get("type") == "message":
                        self._notify(*JobStore.done_message(message["data"]))
            except Exception as exc:  # Redis gone: waiters fall back to their safety poll
                if self._subscribed.is_set():  # once per outage, not once per retry
                    log.warning("done-channel subscriber lost Redis; reconnecting", extra={"error": str(exc)})
                self._subscribed.clear()
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    if pubsub is not None:
                        pubsub.close()
                except Exception:
                    pass
