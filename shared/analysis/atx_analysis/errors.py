"""Errors the analysis package raises on purpose, in one hierarchy that says what a retry can do
(dramatiq's idea: the class decides, not the catcher).

    AnalysisError
    ├── PermanentError        the same input fails the same way: fail the job now, answer 4xx
    │   ├── ParamError        a parameter is missing, unknown, mistyped or out of bounds (400)
    │   ├── UnknownOperation  no operation of that name (400 at submit, 404 on /analysis/<op>)
    │   └── DataFormatError   the data file is in no recognised form (422)
    │       └── MissingColumnError  the loaded data lacks a column an operation needs (422)
    │           └── NoTimeOfDayError  its published values are dates without a time (422)
    ├── TransientError        may work later (the data not there yet): retry with backoff, 503
    └── FetchError            a download failed (the CLI reports it; exit 1)

Anything else (a bug, a Redis outage) is not ours to classify: the worker retries it while attempts
remain and the API answers 500 or 503. ``jobqueue.errors`` maps these to job outcomes and
``jobqueue_api.errors`` to HTTP answers.
"""

from __future__ import annotations


class AnalysisError(Exception):
    """Base of every error this package raises on purpose."""


class PermanentError(AnalysisError):
    """Retrying cannot help: the request or the data must change first."""


class TransientError(AnalysisError):
    """Retrying may help: something the operation needs is not available yet."""


class DataFormatError(PermanentError, ValueError):
    """The file is in none of the recognised formats, or cannot be read at all.

    The message names what was found and the columns each recognised format expects, so a user
    holding the wrong file knows at once which file they need.
    """


class MissingColumnError(DataFormatError):
    """The data was loaded (e.g. a SODA ``$select`` subset) but lacks a column an operation needs."""

    def __init__(self, column: str, operation: str | None = None, data_format: str | None = None):
        self.column = column
        self.operation = operation
        what = f"operation {operation!r} needs" if operation else "this needs"
        if data_format and not data_format.startswith("soda"):  # the tutorial's CSV: no coordinates, no status
            why = f"its form, {data_format}, has no such column"
        else:
            why = "a SODA $select subset without it?"
        super().__init__(f"{what} the {column!r} column, which the loaded data does not have ({why})")


class NoTimeOfDayError(MissingColumnError):
    """The published column holds dates with no time of day (the tutorial's ``date``), so there is
    no hour to count: every row at midnight would be a made-up answer."""

    def __init__(self, operation: str, data_format: str | None = None):
        super().__init__("published", operation, data_format)
        form = f" (its form, {data_format})" if data_format else ""
        self.args = (
            f"operation {operation!r} needs a time of day, and the loaded data's published values are dates "
            f"without one{form}: load data with times, such as the City's portal export",
        )


class FetchError(AnalysisError, RuntimeError):
    """A download failed; the message says which request and why."""
