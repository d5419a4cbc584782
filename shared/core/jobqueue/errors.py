"""What happens to a job whose operation raised: fail it now, or retry it later.

The analysis package's hierarchy (``atx_analysis.errors``) decides: a ``PermanentError`` (a bad
parameter, an unknown operation, data without the column an operation needs) fails the job at
once with its message, because the next attempt would fail the same way. Everything else,
``TransientError`` and the unexpected alike, is retried with backoff while JOB_MAX_ATTEMPTS lasts:
an unknown exception might be a bug, but it might as well be a lost connection, and a job that
fails three times still ends ``failed`` with the error in its document.
"""

from __future__ import annotations

from atx_analysis.errors import PermanentError, TransientError
from atx_analysis.registry import ParamError

__all__ = ["PermanentError", "TransientError", "failure_message", "is_permanent"]


def is_permanent(exc: BaseException) -> bool:
    """True when retrying cannot help."""
    return isinstance(exc, PermanentError)


def failure_message(exc: BaseException) -> str:
    """The ``error`` a failed job's document carries: what a user needs to fix the request."""
    if isinstance(exc, ParamError):
        return f"bad parameter: {exc.message}"
    if isinstance(exc, PermanentError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
