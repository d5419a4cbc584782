"""A budget of wrong tokens per client (``TOKEN_FAILURE_LIMIT`` a minute; 0 turns it off).

Without it a guesser tries tokens as fast as the API answers 401s, and ``/ui/login``'s 0.5 s per
wrong guess slows one connection, not guesses sent in parallel: a token picked by hand falls to a
word list.

The client is the rate limiter's (``ratelimit.client_of``) for a request with no known token: its
address as the API sees it. The count lives in Redis, one set of token digests per client and
60 s window (``keys.token_failures``, TTL 65 s), written by one atomic script
(``lua/count_guess.lua``): the first ``limit`` distinct wrong tokens are answered 401; from then to
the window's end every token that client presents, the right one too, gets ``429
too_many_token_failures`` with ``Retry-After``. The same wrong token again (a stale cookie an open
page keeps sending) counts once, and the set never holds more than the limit.

Why the right token is refused too: a guesser learns from any answer that differs. If a right token
were still accepted past the limit, a 429 would mean "wrong" and a 200 "right", and the limit would
limit nothing. The cost: a legitimate user behind the same address (a NAT, a proxy that hides
client addresses) is locked out with the guesser until the minute ends. docs/security.md says so
and how to avoid it (FORWARDED_ALLOW_IPS behind an Ingress; TOKEN_FAILURE_LIMIT=0 turns it off).

Since the script is atomic, all API processes and pods together answer at most ``limit`` wrong
tokens 401 per client and window, however many arrive at once. A right token costs nothing while
this process has seen no wrong token from that client in the window; after one, it costs one
``SCARD`` (so a right token from a client whose budget another process spent is refused as well).
What stays open: a process that has seen no wrong token from a client answers that client's right
token without asking, so a guesser gets at most one extra try per API process per window, and
only if that one try is the right token. The table of clients this process has seen a wrong token
from is bounded (:data:`MAX_CLIENTS`); when it is full every right token asks Redis until the
window ends, so forgetting never opens a door. Redis unreachable: a request that needs the count
gets the API's 503 as every route that needs Redis does; a right token that needs no count still
works. A Redis ACL that refuses a command of the script (``EXPIRE`` after its ``SADD`` would leave
the set without a TTL) is checked first, as for the API's other scripts that write
(``jobqueue.aclcheck.Guard``): the wrong token gets that 503, and nothing is written.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from importlib import resources

import redis

from jobqueue import keys
from jobqueue.aclcheck import Guard

from .errors import ApiError

WINDOW_SECONDS = 60
KEY_TTL_SECONDS = WINDOW_SECONDS + 5
MAX_CLIENTS = 4_096  # per process and window: clients seen sending a wrong token; past it, every right token asks Redis
COUNT_GUESS_LUA = resources.files("jobqueue").joinpath("lua", "count_guess.lua").read_text(encoding="utf-8")
REFUSED = "too_many_token_failures"

Verdict = tuple[bool, str | None]


class TokenGuesses:
    """The per-client budget of wrong tokens, counted in Redis; this process remembers only which
    clients it saw a wrong token from (they must be asked about) and which it knows are spent."""

    def __init__(self, client: redis.Redis, limit: int, acl_guard: Callable[[], Guard] | None = None) -> None:
        self.client = client
        self.limit = limit
        # the API's ACL check (Delivery.acl_guard): the script stops at a refused EXPIRE after its SADD
        self.acl_guard = acl_guard
        self.count_guess = client.register_script(COUNT_GUESS_LUA)
        self.window = -1
        self.suspects: set[str] = set()  # clients this process saw a wrong token from, this window
        self.spent: set[str] = set()  # clients this process knows have no budget left, this window
        self.full = False  # the suspects table filled up: every client is asked about

    def _roll(self, now: float) -> int:
        window = int(now // WINDOW_SECONDS)
        if window != self.window:
            self.window, self.suspects, self.spent, self.full = window, set(), set(), False
        return window

    def must_ask(self, client: str) -> bool:
        """Whether a right token from ``client`` needs the count in Redis before it is accepted (the
        path below Flask, ``fastpath.py``, then leaves the request to Flask's, which asks)."""
        if self.limit <= 0:
            return False
        self._roll(time.time())
        return self.full or client in self.suspects

    def judge(self, client: str, given: str, compare: Callable[[str], Verdict]) -> Verdict:
        """``compare(given)`` (the token's verdict) when ``client`` has budget left; a wrong token
        is counted against it. Raises the 429 when its budget is spent (right token or not)."""
        if self.limit <= 0:
            return compare(given)
        now = time.time()
        window = self._roll(now)
        if client in self.spent:
            raise self.refusal(window, now)
        verdict = compare(given)
        key = keys.token_failures(client, window)
        if verdict[0]:
            if not (self.full or client in self.suspects):
                return verdict
            spent = int(self.client.scard(key)) >= self.limit
        else:
            self._suspect(client)  # before the call yields: this process's other requests ask from now
            digest = hashlib.sha256(given.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            spent = not self._count(key, digest)
        if spent:
            if self.window == window and len(self.spent) < MAX_CLIENTS:
                self.spent.add(client)
            raise self.refusal(window, time.time())
        return verdict

    def _count(self, key: str, digest: str) -> bool:
        """Count one wrong token (``lua/count_guess.lua``): whether it may be answered 401. Raises
        the NOPERM, sending nothing, while the ACL refuses a command of the script."""
        guard = self.acl_guard() if self.acl_guard is not None else None
        try:
            return bool(int(self.count_guess(keys=[key], args=[digest, self.limit, KEY_TTL_SECONDS])))
        except redis.exceptions.ResponseError as exc:
            if guard is not None:
                guard.saw(exc)
            raise

    def _suspect(self, client: str) -> None:
        if len(self.suspects) >= MAX_CLIENTS:
            self.full = True
        else:
            self.suspects.add(client)

    def refusal(self, window: int, now: float) -> ApiError:
        """The 429: the client's budget is spent until the window ends (``Retry-After``)."""
        retry = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
        err = ApiError(
            429,
            REFUSED,
            f"this client (its address) has sent {self.limit} wrong tokens this minute; no token from "
            f"it is checked, the right one included, for {retry} s",
            retry_after=retry,
        )
        err.headers["Retry-After"] = str(retry)
        return err
