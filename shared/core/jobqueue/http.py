"""HTTP sessions that retry what a server asks to be retried, waiting as long as it says.

``urllib3.util.Retry`` (installed with requests) mounted on a ``requests`` session: 429 and 503
are retried for every method, POST included, because they mean "not processed, come back"; the
``Retry-After`` header sets the wait (capped, so a hostile or confused server cannot park a
client for an hour). Connection failures before anything was sent are retried; a read that
failed midway is retried only for GETs (``idempotent=True``), never for a POST that may have
been processed. Used by the API client and ``jobqueue data fetch``.
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

RETRY_AFTER_MAX = 60


def retrying_session(*, attempts: int = 5, backoff: float = 0.5, idempotent: bool = False,
                     statuses: tuple[int, ...] = (429, 503)) -> requests.Session:
    """A session retrying up to ``attempts`` times on ``statuses`` and failed connections."""
    retry = Retry(total=attempts, connect=attempts, read=attempts if idempotent else 0, status=attempts,
                  status_forcelist=statuses, allowed_methods=None, backoff_factor=backoff,
                  respect_retry_after_header=True, retry_after_max=RETRY_AFTER_MAX, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
