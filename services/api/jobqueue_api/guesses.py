"""A budget of wrong tokens per client (``TOKEN_FAILURE_LIMIT`` within a sliding
``TOKEN_FAILURE_WINDOW_SECONDS``, 60 by default; a limit of 0 turns it off).

Without it a guesser tries tokens as fast as the API answers 401s, and ``/ui/login``'s 0.5 s per
wrong guess slows one connection, not guesses sent in parallel: a token picked by hand falls to a
word list.

The client is the rate limiter's (``ratelimit.client_of``) for a request with no known token: its
address as the API sees it. The count lives in Redis, one sorted set per client
(``keys.wrong_tokens``) of token digests scored with when each was last sent, written by one atomic
script on Redis's clock (``lua/count_guess.lua``): a wrong token is answered 401 while fewer than
``limit`` distinct ones were sent in the last window; from then every token that client presents,
the right one too, gets ``429 too_many_token_failures`` with ``Retry-After`` counted to when the
oldest of them leaves the window. The same wrong token again (a stale cookie an open page keeps
sending) counts once, and the set never holds more than the limit. The window slides: it counted
in fixed minutes before, and a guesser sent the limit just before a minute's edge and as many just
after, twice the limit in a second.

Why the right token is refused too: a guesser learns from any answer that differs. If a right token
were still accepted past the limit, a 429 would mean "wrong" and a 200 "right", and the limit would
limit nothing. The cost: a legitimate user behind the same address (a NAT, a proxy that hides
client addresses) is locked out with the guesser until the guesser's oldest wrong token is a window
old. docs/security.md says so and how to avoid it (FORWARDED_ALLOW_IPS behind an Ingress;
TOKEN_FAILURE_LIMIT=0 turns it off).

Since the script is atomic, all API processes and pods together answer at most ``limit`` wrong
tokens 401 per client and window, however many arrive at once. A right token costs nothing while
this process has seen no wrong token from that client within the window; after one, it costs one
script call that counts and adds nothing. What stays open: a process that has seen no wrong token from
a client answers that client's right token without asking, so a guesser gets at most one extra try
per API process per window, and only if that one try is the right token. The table of clients this
process has seen a wrong token from is bounded (:data:`MAX_CLIENTS`); when it is full every right
token asks Redis for a window, so forgetting never opens a door. Redis unreachable: a request that
needs the count gets the API's 503 as every route that needs Redis does; a right token that needs
no count still works. A Redis ACL that refuses a command of the script (``PEXPIRE`` after its
``ZADD`` would leave the set without a TTL) is checked first, as for the API's other scripts that
write (``jobqueue.aclcheck.Guard``): the token gets that 503, and nothing is written.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from importlib import resources

import redis

from jobqueue import keys
from jobqueue.aclcheck import Guard

from .errors import ApiError

MAX_CLIENTS = 4_096  # per process: clients seen sending a wrong token; past it, every right token asks Redis
MARGIN_SECONDS = 1.0  # this process remembers a suspect this much past the window: its clock is not Redis's
COUNT_GUESS_LUA = resources.files("jobqueue").joinpath("lua", "count_guess.lua").read_text(encoding="utf-8")
REFUSED = "too_many_token_failures"

Verdict = tuple[bool, str | None]


class TokenGuesses:
    """The per-client budget of wrong tokens, counted in Redis; this process remembers only which
    clients it saw a wrong token from (they must be asked about) and which it knows are spent, and
    until when (its own clock)."""

    def __init__(
        self,
        client: redis.Redis,
        limit: int,
        window_seconds: int = 60,
        acl_guard: Callable[[], Guard] | None = None,
    ) -> None:
        self.client = client
        self.limit = limit
        self.window = window_seconds
        # the API's ACL check (Delivery.acl_guard): the script stops at a refused PEXPIRE after its ZADD
        self.acl_guard = acl_guard
        self.count_guess = client.register_script(COUNT_GUESS_LUA)
        self.suspects: dict[str, float] = {}  # client -> until when a right token from it must ask Redis
        self.spent: dict[str, float] = {}  # client -> until when this process knows its budget is spent
        self.full_until = 0.0  # the suspects table filled up: every client is asked about until then

    def must_ask(self, client: str) -> bool:
        """Whether a right token from ``client`` needs the count in Redis before it is accepted (the
        path below Flask, ``fastpath.py``, then leaves the request to Flask's, which asks)."""
        if self.limit <= 0:
            return False
        now = time.time()
        return now < self.full_until or self.suspects.get(client, 0.0) > now

    def judge(self, client: str, given: str, compare: Callable[[str], Verdict]) -> Verdict:
        """``compare(given)`` (the token's verdict) when ``client`` has budget left; a wrong token
        is counted against it. Raises the 429 when its budget is spent (right token or not)."""
        if self.limit <= 0:
            return compare(given)
        now = time.time()
        until = self.spent.get(client, 0.0)
        if until > now:
            raise self.refusal(until - now)
        verdict = compare(given)
        if verdict[0]:
            if not self.must_ask(client):
                return verdict
            digest = ""  # only asks
        else:
            self._suspect(client, now)  # before the call yields: this process's other requests ask from now
            digest = hashlib.sha256(given.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        wait_ms = self._count(keys.wrong_tokens(client), digest)
        if wait_ms is not None:
            left = wait_ms / 1000
            self._remember(self.spent, client, time.time() + left)
            raise self.refusal(left)
        return verdict

    def _count(self, key: str, digest: str) -> int | None:
        """One call of ``lua/count_guess.lua``: None when the token may be answered (a wrong one is
        counted), else the ms until the budget has room again. Raises the NOPERM, sending nothing,
        while the ACL refuses a command of the script."""
        guard = self.acl_guard() if self.acl_guard is not None else None
        try:
            allowed, wait_ms = self.count_guess(keys=[key], args=[digest, self.limit, self.window * 1000])
        except redis.exceptions.ResponseError as exc:
            if guard is not None:
                guard.saw(exc)
            raise
        return None if int(allowed) else int(wait_ms)

    def _suspect(self, client: str, now: float) -> None:
        until = now + self.window + MARGIN_SECONDS
        if now < self.full_until or not self._remember(self.suspects, client, until):
            self.full_until = until  # full: every client is asked about for a window

    @staticmethod
    def _remember(table: dict[str, float], client: str, until: float) -> bool:
        """``table[client] = until``, dropping lapsed entries when the table is full; False when it
        stays full (the entry is not kept)."""
        if client not in table and len(table) >= MAX_CLIENTS:
            now = time.time()
            for lapsed in [c for c, t in table.items() if t <= now]:
                del table[lapsed]
            if len(table) >= MAX_CLIENTS:
                return False
        table[client] = until
        return True

    def refusal(self, left: float) -> ApiError:
        """The 429: the client's budget is spent for ``left`` seconds more (``Retry-After``), until
        its oldest wrong token leaves the window."""
        retry = max(1, math.ceil(left))
        err = ApiError(
            429,
            REFUSED,
            f"this client (its address) has sent {self.limit} wrong tokens within {self.window} s; no token "
            f"from it is checked, the right one included, for {retry} s",
            retry_after=retry,
        )
        err.headers["Retry-After"] = str(retry)
        return err
