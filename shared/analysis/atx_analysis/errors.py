"""Errors the analysis package raises on purpose, so callers can tell bad data from bugs."""

from __future__ import annotations


class DataFormatError(ValueError):
    """The file is in none of the recognised formats, or cannot be read at all.

    The message names what was found and the columns each recognised format expects, so a user
    holding the wrong file knows at once which file they need.
    """


class MissingColumnError(DataFormatError):
    """The data was loaded (e.g. a SODA ``$select`` subset) but lacks a column an operation needs."""

    def __init__(self, column: str, operation: str | None = None):
        self.column = column
        self.operation = operation
        what = f"operation {operation!r} needs" if operation else "this needs"
        super().__init__(f"{what} the {column!r} column, which the loaded data does not have "
                         f"(a SODA $select subset without it?)")
