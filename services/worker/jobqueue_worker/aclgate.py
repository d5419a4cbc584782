"""Whether Redis's ACL lets this worker's user run every command its scripts call.

Redis does not undo a script's writes before a refused call, so a claim, start, finish, give back,
reap or sweep refused part-way could leave a job in no list. The gate checks every command as the
scripts call it, keys included (``jobqueue.aclcheck``, Redis 7.0+), at start and on each
heartbeat; while one is refused the worker sends none of them (:attr:`AclGate.refused`), says so
in its log and records it for the API's stall check. A NOPERM met on the way (the ACL narrowed
between two heartbeats) makes it check at once (:meth:`AclGate.recheck`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from jobqueue.aclcheck import AclCheck, acl_user
from jobqueue.connections import acl_refusal
from jobqueue.settings import Settings

log = logging.getLogger("jobqueue.worker")

REFUSAL_LOG_SECONDS = 60.0  # while Redis's ACL refuses our user a command, the error again this often
HOLD_POLL_SECONDS = 0.05


class AclGate:
    """What Redis's ACL refuses this worker of the commands its scripts call: ``refused`` (None
    while everything is allowed, or the Redis cannot tell), checked by the main and heartbeat
    threads one at a time."""

    def __init__(self, client: redis.Redis, settings: Settings, worker: str) -> None:
        self.worker = worker
        self.settings = settings
        self.acl = AclCheck(client, settings, worker)
        self.refused: str | None = None
        self._logged_at = 0.0
        self._unchecked_said = False
        self._lock = threading.Lock()  # one check at a time, one log line

    def check(self) -> None:
        """Check every command; set :attr:`refused` and say so when that changes (the error again
        every REFUSAL_LOG_SECONDS while it lasts), and record it for the API's stall check. Raises
        RedisError when Redis does not answer."""
        with self._lock:
            self._check()

    def _check(self) -> None:
        try:
            found = self.acl.refused()
        except redis.exceptions.RedisError as exc:
            if not acl_refusal(exc):
                raise
            refused: str | None = acl_refusal(exc)  # the check's own script call (EVALSHA) refused
        else:
            if found is None:  # Redis before 7.0: no redis.acl_check_cmd
                if not self._unchecked_said:
                    self._unchecked_said = True
                    log.info(
                        "this Redis cannot check its ACL for the worker's commands (redis.acl_check_cmd: Redis 7.0+)",
                        extra={"worker": self.worker},
                    )
                return
            refused = summary([r.describe() for r in found])
        now = time.monotonic()
        if refused is not None and (refused != self.refused or now - self._logged_at >= REFUSAL_LOG_SECONDS):
            self._logged_at = now
            user = acl_user(self.settings)
            log.error(
                "redis ACL refuses this worker's user a command its scripts call (NOPERM): taking no jobs",
                extra={
                    "worker": self.worker,
                    "refused": refused,
                    "acl_user": user,
                    "hint": (
                        f"give the Redis user {user!r} the command (ACL SETUSER {user} +<command>, or the key "
                        "pattern); the worker holds what it has and takes jobs again at its next heartbeat"
                    ),
                },
            )
        elif refused is None and self.refused is not None:
            log.info("redis ACL allows this worker's commands again: taking jobs", extra={"worker": self.worker})
        if refused is not None or self.refused is not None:
            self.acl.record(refused)
        self.refused = refused

    def recheck(self) -> None:
        """After a NOPERM on the way (the ACL narrowed since the last heartbeat): check now, so
        nothing more is sent until it is fixed, rather than at the next heartbeat."""
        try:
            self.check()
        except redis.exceptions.RedisError:
            pass

    def hold(self, grace_over: Callable[[], bool]) -> None:
        """Wait while a command is refused (the heartbeat thread checks again), so no script stops
        half-way; raise the refusal once ``grace_over()`` (the shutdown grace has ended)."""
        while self.refused is not None:
            if grace_over():
                raise redis.exceptions.NoPermissionError(
                    f"this user has no permissions to run {self.refused} (held until the shutdown grace ended)"
                )
            time.sleep(HOLD_POLL_SECONDS)


def summary(refused: list[str]) -> str | None:
    """The refused commands in one line (the first three), or None when none is."""
    names = list(dict.fromkeys(refused))
    if not names:
        return None
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def log_refusal(exc: BaseException, worker: str, retry_in: float, job_id: str | None = None) -> None:
    """A call refused on the way (NOPERM), to be retried once the ACL is fixed."""
    log.error(
        "redis ACL refuses this worker's user (NOPERM): fix the deployment's Redis ACL; retrying",
        extra={
            "worker": worker,
            "refused": acl_refusal(exc),
            "error": str(exc),
            "retry_in": round(retry_in, 2),
            **({"job_id": job_id} if job_id else {}),
        },
    )
